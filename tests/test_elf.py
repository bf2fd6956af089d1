"""pam_jail.admin.elf: the resolver against what the dynamic loader really loads on this machine.

The oracle runs a program with LD_TRACE_LOADED_OBJECTS=1 (ld.so lists what it would map and
exits without running main); that is allowed in tests only, never in pam_jail itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pam_jail.admin import elf
from pam_jail.login.errors import BuildError

PROGRAMS = [
    "/bin/bash",
    "/usr/bin/ssh",
    "/usr/bin/rsync",
    "/usr/lib/openssh/sftp-server",
    "/usr/bin/git",
    "/usr/bin/python3",
    "/usr/bin/scp",
    "/usr/bin/cvs",
]



def traced(program: str, env: dict[str, str] | None = None) -> tuple[set[str], bool]:
    """Real paths of the objects ld.so maps for `program`, and whether any was not found."""
    out = subprocess.run([program], env={"LD_TRACE_LOADED_OBJECTS": "1", **(env or {})},
                         capture_output=True, text=True, check=False).stdout
    found: set[str] = set()
    missing = False
    for line in out.splitlines():
        words = line.split()
        if "not" in words and "found" in words:
            missing = True
        elif "=>" in words and words[2].startswith("/"):
            found.add(os.path.realpath(words[2]))
        elif words and words[0].startswith("/"):
            found.add(os.path.realpath(words[0]))
    return found, missing


def objects(paths: list[str], program: str) -> set[str]:
    """The ELF objects in a closure, as real paths, without the program itself."""
    return {os.path.realpath(p) for p in paths if not os.path.islink(p)} - {
        os.path.realpath(program)}


@pytest.mark.parametrize("program", PROGRAMS)
def test_closure_matches_dynamic_loader(program: str) -> None:
    if not os.path.exists(program):
        pytest.fail(f"{program} missing: run scripts/setup")
    expected, missing = traced(program)
    assert not missing
    assert objects(elf.closure([program]), program) == expected


@pytest.mark.parametrize("program", PROGRAMS)
def test_closure_paths_have_canonical_parents(program: str) -> None:
    for path in elf.closure([program]):
        assert os.path.lexists(path), path
        parent = os.path.dirname(path)
        assert os.path.realpath(parent) == parent, path
        assert path == os.path.normpath(path)


def test_closure_sorted_and_contains_program_chain() -> None:
    paths = elf.closure(["/bin/bash"])
    assert paths == sorted(paths)
    assert "/usr/bin/bash" in paths
    if os.path.islink("/bin"):  # usr-merged Debian 12
        assert "/bin" in paths


def test_interpreter_symlink_chain_is_complete() -> None:
    paths = set(elf.closure(["/bin/bash"]))
    # Follow /lib64/ld-linux-x86-64.so.2 step by step: every link met must be listed.
    links, canonical = elf.path_chain("/lib64/ld-linux-x86-64.so.2")
    assert canonical in paths
    assert set(links) <= paths
    for link in links:
        assert os.path.islink(link)
    assert os.path.realpath("/lib64/ld-linux-x86-64.so.2") == canonical


def test_library_symlink_kept() -> None:
    paths = elf.closure(["/bin/bash"])
    tinfo = [p for p in paths if os.path.basename(p) == "libtinfo.so.6"]
    assert tinfo and all(os.path.islink(p) for p in tinfo)
    assert os.path.realpath(tinfo[0]) in paths


def test_path_chain_relative_dotdot_and_loop(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("x")
    (tmp_path / "a").symlink_to("real")
    (tmp_path / "b").symlink_to("a/../real/f")
    links, canonical = elf.path_chain(str(tmp_path / "b"))
    base = os.path.realpath(tmp_path)
    assert canonical == os.path.join(base, "real", "f")
    assert os.path.join(base, "b") in links and os.path.join(base, "a") in links
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    with pytest.raises(OSError):
        elf.path_chain(str(tmp_path / "loop1"))


def test_missing_file_is_build_error() -> None:
    with pytest.raises(BuildError, match=r"^resolve /nonexistent/prog: No such file"):
        elf.closure(["/nonexistent/prog"])


def test_relative_path_refused() -> None:
    with pytest.raises(BuildError, match="not an absolute path"):
        elf.closure(["bin/bash"])


def test_non_elf_gives_chain_only(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert elf.closure([str(script)]) == [os.path.realpath(script)]


def test_unresolvable_needed(tmp_path: Path) -> None:
    # Same-length rename of a DT_NEEDED string in a copy of bash.
    data = Path("/bin/bash").read_bytes()
    assert b"libtinfo.so.6\0" in data
    broken = tmp_path / "bash-broken"
    broken.write_bytes(data.replace(b"libtinfo.so.6\0", b"libtinfo.so.9\0", 1))
    broken.chmod(0o755)
    with pytest.raises(BuildError, match=r"^resolve .*bash-broken: libtinfo\.so\.9 .*not found"):
        elf.closure([str(broken)])
    _, missing = traced(str(broken))
    assert missing


def test_ld_so_conf_include_globs(tmp_path: Path) -> None:
    conf = tmp_path / "ld.so.conf"
    confd = tmp_path / "ld.so.conf.d"
    confd.mkdir()
    conf.write_text("# comment\n/opt/first\ninclude ld.so.conf.d/*.conf\n/opt/last # trailing\n"
                    f"include {conf}\n")  # a loop is ignored
    (confd / "b.conf").write_text("/opt/b1 /opt/b2\n")
    (confd / "a.conf").write_text("/opt/a\n/opt/first\n")
    (confd / "ignored.txt").write_text("/opt/no\n")
    # a loop through another name of the same file ends too
    (tmp_path / "again.conf").symlink_to("ld.so.conf")
    (confd / "z.conf").write_text("include ../again.conf\n")
    assert elf.ld_so_conf_dirs(str(conf)) == (
        "/opt/first", "/opt/a", "/opt/b1", "/opt/b2", "/opt/last")
    assert elf.ld_so_conf_dirs(str(tmp_path / "absent")) == ()


def test_system_dirs_end_with_defaults() -> None:
    dirs = elf.system_dirs()
    for d in elf.DEFAULT_LIB_DIRS:
        assert d in dirs


def test_expand_dst() -> None:
    assert elf.expand_dst("$ORIGIN/../lib", "/opt/x/bin") == "/opt/x/bin/../lib"
    assert elf.expand_dst("${ORIGIN}/a:$LIB/$PLATFORM", "/o") == (
        f"/o/a:lib/x86_64-linux-gnu/{os.uname().machine}")


def test_runtime_libs_nss() -> None:
    paths = elf.runtime_libs()
    names = {os.path.basename(p) for p in paths}
    assert {"libnss_files.so.2", "libnss_compat.so.2"} <= names
    assert not any("gconv" in p for p in paths)
    with pytest.raises(BuildError, match="libnss_nonesuch.so.2"):
        elf.runtime_libs(["nonesuch"])


def test_runtime_libs_gconv_only_when_asked() -> None:
    paths = elf.runtime_libs(gconv=True)
    assert any(p.endswith("/gconv/gconv-modules") for p in paths)
    assert any(p.endswith("/gconv/UTF-16.so") for p in paths)


def _with_search_paths(built: Path) -> list[str]:
    """The test programs with RPATH/$ORIGIN/$LIB: the same names, other directories."""
    return [str(built / "app" / "bin" / "rpath"), str(built / "app" / "bin" / "dstlib"),
            str(built / "link-to-app" / "bin" / "rpath")]


def test_one_run_equals_separate_runs(built: Path) -> None:
    """One closure() run shares its stat, read and search answers between programs: the
    result must be the union of runs with every cache cleared before each program."""
    programs = [*PROGRAMS, *elf.runtime_libs(gconv=True), *_with_search_paths(built)]
    elf.clear_caches()
    together = set(elf.closure(programs))
    separate: set[str] = set()
    for program in programs:
        elf.clear_caches()
        separate |= set(elf.closure([program]))
    assert together == separate


def _plain_search(name: str, dirs: tuple[str, ...], flavour: tuple[int, bool, str]) -> list[str]:
    """The search of elf._Resolver.find written out without any cache: the first
    directory with a compatible ELF object `name`, after the glibc-hwcaps hits."""
    extras: list[str] = []
    for directory in dirs:
        if not directory or not os.path.isdir(directory):
            continue
        for sub in elf.HWCAPS_SUBDIRS:
            path = os.path.join(directory, sub, name)
            if os.path.isdir(os.path.join(directory, sub)) and _compatible(path, flavour):
                extras.append(path)
        if _compatible(os.path.join(directory, name), flavour):
            return [os.path.join(directory, name), *extras]
    return []


def _compatible(path: str, flavour: tuple[int, bool, str]) -> bool:
    try:
        with open(path, "rb") as stream:
            if stream.read(4) != elf.ELF_MAGIC:
                return False
            info = elf._parse(path, stream)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    return (info.elfclass, info.little_endian, info.machine) == flavour


def test_cached_search_answers_equal_uncached_ones(built: Path) -> None:
    """Every library search answered (and cached) while resolving the host's common
    programs, the NSS modules, gconv and programs with their own search paths equals a
    plain search without caches."""
    elf.clear_caches()
    resolver = elf._Resolver()
    for program in [*PROGRAMS, *elf.runtime_libs(gconv=True), *_with_search_paths(built)]:
        resolver.program(program)
    assert len(resolver.search_memo) > 30
    for (name, dirs, flavour), found in resolver.search_memo.items():
        assert found == _plain_search(name, dirs, flavour), name
    # and each file read through the caches gives what a fresh parse of it gives
    for path, memo in resolver.read_memo.items():
        if isinstance(memo, OSError):
            assert not os.path.isfile(path), path
            continue
        st = os.stat(path)
        assert memo[0] == (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size), path
        if not os.path.isfile(path):  # a directory named in the inputs
            assert memo[1] is None, path
            continue
        with open(path, "rb") as stream:
            fresh = elf._parse(path, stream) if stream.read(4) == elf.ELF_MAGIC else None
        if fresh is None:
            assert memo[1] is None, path
        else:
            assert memo[1] is not None and memo[1].needed == fresh.needed, path
            assert (memo[1].interp, memo[1].rpath, memo[1].runpath, memo[1].soname) == (
                fresh.interp, fresh.rpath, fresh.runpath, fresh.soname), path


def test_one_parse_per_file_whatever_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real_parse = elf._parse

    def counting(path: str, stream: object, **kwargs: bool) -> elf.ElfInfo:
        parsed.append(path)
        return real_parse(path, stream, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(elf, "_parse", counting)
    elf.clear_caches()
    names = ["/lib/x86_64-linux-gnu/libc.so.6", os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"),
             "/lib64/ld-linux-x86-64.so.2", os.path.realpath("/lib64/ld-linux-x86-64.so.2")]
    infos = [elf.read_elf(name) for name in names]
    assert len(parsed) == 2
    for name, info in zip(names, infos, strict=True):
        assert info is not None and info.path == name
    assert infos[0] is not None and infos[1] is not None
    assert infos[0].needed == infos[1].needed and infos[0].soname == infos[1].soname


def test_path_chain_agrees_with_the_kernel(tmp_path: Path) -> None:
    """Canonical path = realpath, every link met is a symlink, for the host's library and
    program directories; 40 symlinks are followed, the 41st is ELOOP, like open()."""
    elf.clear_caches()
    checked = 0
    for top in ("/bin", "/lib", "/lib64", "/sbin", "/usr/lib/x86_64-linux-gnu"):
        for name in sorted(os.listdir(top))[:400]:
            path = os.path.join(top, name)
            try:
                links, canonical = elf.path_chain(path)
            except OSError:
                assert not os.path.exists(path), path
                continue
            assert canonical == os.path.realpath(path), path
            assert all(os.path.islink(link) for link in links), path
            checked += 1
    assert checked > 500
    (tmp_path / "f").write_text("x")
    previous = "f"
    for index in range(41):
        (tmp_path / f"l{index}").symlink_to(previous)
        previous = f"l{index}"
    base = os.path.realpath(tmp_path)
    links, canonical = elf.path_chain(f"{base}/l39")  # 40 links
    assert canonical == f"{base}/f" and len(links) == 40
    assert os.stat(f"{base}/l39")
    with pytest.raises(OSError) as raised:
        elf.path_chain(f"{base}/l40")
    assert raised.value.errno == 40
    with pytest.raises(OSError) as kernel:
        os.stat(f"{base}/l40")
    assert kernel.value.errno == 40


def test_path_chain_of_a_deep_tree(tmp_path: Path) -> None:
    """Deeper than Python's recursion limit: path_chain walks, it does not recurse."""
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    deep = os.path.realpath(tmp_path) + "/d" * 1100 + "/f"
    (tmp_path / "link").symlink_to(deep)
    try:
        assert elf.path_chain(deep) == ((), deep)
        assert elf.path_chain(str(tmp_path / "link"))[1] == deep
    finally:  # deeper than shutil.rmtree (recursive) can remove
        subprocess.run(["rm", "-rf", str(tmp_path / "d")], check=True)


# --------------------------------------------------------------------------- built ELFs

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree of small programs and libraries with RPATH, RUNPATH and $ORIGIN/$LIB."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc builds the test ELFs: run scripts/setup")
    top = tmp_path_factory.mktemp("elf")
    (top / "bar.c").write_text("int bar(void) { return 2; }\n")
    (top / "foo.c").write_text("int bar(void);\nint foo(void) { return bar() + 1; }\n")
    (top / "main.c").write_text("int foo(void);\nint main(void) { return foo() == 3 ? 0 : 1; }\n")

    def cc(*args: str) -> None:
        subprocess.run(["gcc", *args], cwd=top, check=True)

    libdir = top / "app" / "lib"
    libdir.mkdir(parents=True)
    (top / "app" / "bin").mkdir()
    cc("-shared", "-fPIC", "-Wl,-soname,libbar.so.1", "-o", str(libdir / "libbar.so.1"), "bar.c")
    # libfoo has no search path of its own: it finds libbar through its loader's RPATH.
    cc("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", str(libdir / "libfoo.so.1"),
       "foo.c", str(libdir / "libbar.so.1"))
    (libdir / "libfoo.so").symlink_to("libfoo.so.1")
    (libdir / "libbar.so").symlink_to("libbar.so.1")
    # A wrong-machine libfoo earlier in the search path must be skipped.
    wrong = top / "wrong"
    wrong.mkdir()
    data = bytearray((libdir / "libfoo.so.1").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    (wrong / "libfoo.so.1").write_bytes(bytes(data))
    cc("-o", "app/bin/rpath", "main.c", f"-L{libdir}", "-lfoo", "-lbar",
       f"-Wl,--disable-new-dtags,-rpath,{wrong}:$ORIGIN/../lib")
    cc("-o", "app/bin/runpath", "main.c", f"-L{libdir}", "-lfoo",
       "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib", "-Wl,--allow-shlib-undefined")
    lib_dst = top / "dst" / "lib" / "x86_64-linux-gnu"
    lib_dst.mkdir(parents=True)
    for name in ("libfoo.so.1", "libbar.so.1"):
        shutil.copy(libdir / name, lib_dst / name)
    cc("-o", "app/bin/dstlib", "main.c", f"-L{libdir}", "-lfoo", "-lbar",
       f"-Wl,--disable-new-dtags,-rpath,{top}/dst/$LIB")
    (top / "link-to-app").symlink_to("app")
    return top


def test_rpath_origin_and_wrong_machine(built: Path) -> None:
    program = str(built / "app" / "bin" / "rpath")
    expected, missing = traced(program)
    assert not missing
    paths = elf.closure([program])
    assert objects(paths, program) == expected
    assert str(built / "wrong" / "libfoo.so.1") not in paths
    assert subprocess.run([program], check=False).returncode == 0


def test_program_through_symlinked_dir(built: Path) -> None:
    program = str(built / "link-to-app" / "bin" / "rpath")
    paths = elf.closure([program])
    assert str(built / "link-to-app") in paths
    assert objects(paths, program) == traced(program)[0]


def test_runpath_is_not_inherited(built: Path) -> None:
    # libfoo needs libbar; the program's DT_RUNPATH does not apply to libfoo's needs.
    program = str(built / "app" / "bin" / "runpath")
    _, missing = traced(program)
    assert missing
    with pytest.raises(BuildError, match=r"libbar\.so\.1 \(needed by .*libfoo\.so\.1\) not found"):
        elf.closure([program])


def test_dst_lib(built: Path) -> None:
    program = str(built / "app" / "bin" / "dstlib")
    expected, missing = traced(program)
    assert not missing
    assert objects(elf.closure([program]), program) == expected
    assert any("/dst/lib/x86_64-linux-gnu/libfoo.so.1" in p for p in expected)


def test_cache_invalidated_on_change(tmp_path: Path) -> None:
    target = tmp_path / "prog"
    shutil.copy("/bin/true", target)
    assert elf.read_elf(str(target)) is not None
    target.write_text("#!/bin/sh\n")
    assert elf.read_elf(str(target)) is None


def _parse_both(path: str) -> tuple[object, object] | None:
    """(fast, pyelftools) results for an ELF file: the headers (class, byte order, machine,
    PT_INTERP, every PT_LOAD, PT_DYNAMIC) and the ElfInfo (DT_NEEDED, RPATH, RUNPATH,
    SONAME); an exception counts as a result (its type). None for a file that is not ELF."""
    with open(path, "rb") as stream:
        if stream.read(4) != elf.ELF_MAGIC:
            return None
        results: list[object] = []
        for fast in (True, False):
            try:
                headers = elf._headers_fast(stream) if fast else None
                if headers is None:
                    headers = elf._headers_pyelftools(stream)
                results.append((headers, elf._parse(path, stream, fast=fast)))
            except Exception as err:  # noqa: BLE001 - both parsers must fail alike
                results.append(type(err))
    return results[0], results[1]


def test_fast_header_path_agrees_with_pyelftools() -> None:
    """The struct fast path of elf._parse against pyelftools on every ELF file in
    /usr/bin, /usr/lib/x86_64-linux-gnu (recursively) and /usr/lib/openssh."""
    checked = 0
    disagree: list[str] = []
    for top in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/openssh"):
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                both = _parse_both(path)
                if both is None:
                    continue
                checked += 1
                if both[0] != both[1]:
                    disagree.append(f"{path}: {both[0]!r} != {both[1]!r}")
    assert checked > 1000, checked
    assert disagree == []


def test_fast_header_path_falls_back_on_odd_files(tmp_path: Path) -> None:
    """A truncated program header table: the fast path declines, pyelftools reports."""
    data = Path("/usr/bin/true").read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:80])  # the ELF header and part of one program header
    with open(cut, "rb") as stream:
        assert elf._headers_fast(stream) is None
    with pytest.raises(BuildError, match="malformed ELF"):
        elf.read_elf(str(cut))
    info = elf.read_elf("/usr/bin/true")
    assert info is not None and info.machine == "EM_X86_64" and info.elfclass == 64


def _corpus() -> list[str]:
    """The programs above, every file of /usr/bin and /usr/sbin, and the shared objects
    of the multiarch library directory: executables, PIE and static, libraries (libc's
    own PT_INTERP), scripts."""
    paths = list(PROGRAMS)
    for directory in ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False) and (
                    directory != "/usr/lib/x86_64-linux-gnu" or ".so" in entry.name):
                paths.append(entry.path)
    return paths


def test_elf_interpreter_agrees_with_pyelftools() -> None:
    """safety.elf_interpreter (read by hand at login: check_exec checks the interpreter
    it names) against pyelftools over the corpus: the same PT_INTERP for every file, and
    for every cut of a file's first bytes either the same answer or None (never another
    path, never an exception)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    from pam_jail.login.safety import elf_interpreter

    checked = with_interp = 0
    for path in _corpus():
        try:
            with open(path, "rb") as fh:
                head = fh.read(8192)
                fh.seek(0)
                try:
                    elf = ELFFile(fh)
                    want = next((seg.get_interp_name() for seg in elf.iter_segments()
                                 if seg["p_type"] == "PT_INTERP"), None)
                except ELFError:
                    want = None
        except OSError:
            continue
        got = elf_interpreter(head)
        if got != want:   # a PT_INTERP past the first 8 KiB would be read as None
            assert got is None and want is not None, (path, got, want)
            continue
        checked += 1
        with_interp += want is not None
        if want is not None and checked % 25 == 0:
            for cut in range(0, len(head), 97):
                assert elf_interpreter(head[:cut]) in (None, want), (path, cut)
    assert checked > 500 and with_interp > 200, (checked, with_interp)
