"""The login bundles: pam_jail/admin/bundle.py writes them, pam_jail.login.preload reads
them at the start of every login (pam-jail-shell, pam-jail-lsh, the PAM module).

A bundle is a cache: used only when current, root's and from this Python; anything else
and the login imports its modules from their files, as before. These tests build bundles
of a copy of the package, load them under Debian's python3 -IS as the entry scripts do,
and compare the result with plain imports."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_layout import AFTER_THE_PIVOT

import pam_jail.login as pam_jail_login
from pam_jail.admin import bundle

REPO = Path(__file__).resolve().parent.parent
INSTALLED = "/usr/local/lib/pam_jail"      # scripts/install's LIBDIR (scripts/test installs)

# Run under /usr/bin/python3 -IS with argv LIBDIR NAME PRELOAD(0/1) MODULE...: what a
# login of entry NAME has loaded, as "module loader file names..." lines, after preload
# (or not) and importing each MODULE as that entry does.
PROBE = """\
import sys
sys.path[:0] = [sys.argv[1]]
import pam_jail.login
ok = pam_jail.login.preload(sys.argv[2]) if sys.argv[3] == "1" else None
for name in sys.argv[4:]:           # the entry module, and what its logins import later
    __import__("pam_jail.login." + name)
print("preloaded", ok)
def kind(loader):
    return loader.__name__ if isinstance(loader, type) else type(loader).__name__
print("__future__", kind(sys.modules["__future__"].__loader__))
for name, module in sorted(sys.modules.items()):
    if name.startswith("pam_jail.login."):
        public = sorted(k for k in vars(module) if not k.startswith("__"))
        print(name, kind(module.__loader__), module.__file__, *public)
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` under Debian's python3 -IS (the entries' interpreter), with `args`."""
    return subprocess.run(["/usr/bin/python3", "-IS", "-c", code, *args],
                          capture_output=True, text=True, check=False)


def probe(libdir: str, name: str, preload: bool) -> list[str]:
    root, also, _hold = bundle.BUNDLES[name]
    out = run_python(PROBE, libdir, name, "1" if preload else "0", root, *also)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture()
def libdir(tmp_path: Path) -> Iterator[str]:
    """A root-owned copy of the package (with its built extension), its bundles written."""
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    lib = tmp_path / "lib" / "pam_jail"             # an install's LIBDIR (install_dirs)
    lib.mkdir(parents=True)
    shutil.copytree(REPO / "pam_jail", lib / "pam_jail",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    for directory in (tmp_path, tmp_path / "lib", lib):
        os.chmod(directory, 0o755)
    assert len(bundle.write(str(lib))) == len(bundle.BUNDLES)
    yield str(lib)


@pytest.mark.parametrize("name", sorted(bundle.BUNDLES))
def test_a_bundle_loads_what_the_imports_would(libdir: str, name: str) -> None:
    """Same modules, same names in each, same files; served by MemoryFinder."""
    plain = probe(libdir, name, preload=False)
    loaded = probe(libdir, name, preload=True)
    assert plain[0] == "preloaded None" and loaded[0] == "preloaded True"
    # the standard library's __future__ (every module says `from __future__ import
    # annotations`) comes from the bundle too
    assert plain[1] == "__future__ SourceFileLoader" and loaded[1] == "__future__ MemoryFinder"

    def strip(lines: list[str]) -> list[tuple[str, ...]]:
        return [(w[0], *w[2:]) for w in (line.split() for line in lines[2:])]

    assert strip(loaded) == strip(plain)
    loaders = {line.split()[0]: line.split()[1] for line in loaded[2:]}
    root = f"pam_jail.login.{bundle.BUNDLES[name][0]}"
    assert loaders[root] == "MemoryFinder"
    assert {m: v for m, v in loaders.items() if v != "MemoryFinder"} == \
        {m: "ExtensionFileLoader" for m in loaders if m.endswith("._sys")}  # (a .so: its file)
    assert len(loaders) >= 8


def _preloads(libdir: str, name: str = "pam-jail-shell") -> str:
    return probe(libdir, name, preload=True)[0]


def test_a_stale_bundle_is_not_used(libdir: str) -> None:
    """A source changed after the bundle was written (size or mtime): the login imports
    the files, and gets the changed module."""
    source = Path(libdir) / "pam_jail/login/errors.py"
    source.write_text(source.read_text() + "\nEDITED = True\n")
    out = probe(libdir, "pam-jail-shell", preload=True)
    assert out[0] == "preloaded False"
    errors = next(line for line in out if line.startswith("pam_jail.login.errors "))
    assert "EDITED" in errors.split() and "SourceFileLoader" in errors.split()
    st = source.stat()
    bundle.write(libdir)
    assert _preloads(libdir) == "preloaded True"
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1))     # same size, newer
    assert _preloads(libdir) == "preloaded False"
    bundle.write(libdir)
    ext = next((Path(libdir) / "pam_jail/login").glob("_sys.*.so"))   # loaded from its
    st = ext.stat()                                                   # file: checked too
    os.utime(ext, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert _preloads(libdir) == "preloaded False"


def test_a_bundle_that_is_not_roots_or_not_this_pythons_is_not_used(libdir: str) -> None:
    path = bundle.path_of(libdir, "pam-jail-shell")
    os.chmod(path, 0o664)
    assert _preloads(libdir) == "preloaded False"                   # group-writable
    os.chmod(path, 0o644)
    os.chown(path, 65534, 0)
    assert _preloads(libdir) == "preloaded False"                   # not root's
    os.chown(path, 0, 0)
    assert _preloads(libdir) == "preloaded True"
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:16] + b"\x00\x00\r\n" + data[20:])  # another magic
    assert _preloads(libdir) == "preloaded False"
    Path(path).write_bytes(data[:len(data) // 2])                   # cut short
    assert _preloads(libdir) == "preloaded False"
    os.unlink(path)
    os.symlink(f"{path}.elsewhere", path)
    Path(f"{path}.elsewhere").write_bytes(data)
    assert _preloads(libdir) == "preloaded False"                   # a link: not followed


def test_the_shell_bundle_holds_the_rule_families_across_the_pivot(libdir: str) -> None:
    """pam-jail-shell's bundle carries every rule family marshalled: hold_families then
    reads no file, and with every file finder gone (as after the pivot) each rule's
    family still loads, from memory."""
    code = (
        "import sys\nsys.path[:0] = [sys.argv[1]]\nimport pam_jail.login\n"
        "assert pam_jail.login.preload('pam-jail-shell')\n"
        "import posix\nopened = []\n_open = posix.open\n"
        "def counting(path, *a, **k):\n    opened.append(path)\n    return _open(path, *a, **k)\n"
        "posix.open = counting\n"
        "from pam_jail.login.policy import RULES, Policy, decide, hold_families\n"
        "hold_families()\nassert opened == [], opened\n"
        + AFTER_THE_PIVOT +
        "print('ok')\n")
    out = run_python(code, libdir)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


@pytest.mark.parametrize("name", sorted(bundle.BUNDLES))
def test_the_install_leaves_current_bundles(name: str) -> None:
    """scripts/install (which scripts/test runs) writes them for what it installed."""
    assert _preloads(INSTALLED, name) == "preloaded True"


def test_a_changed_standard_library_module_is_left_to_its_own_import(libdir: str) -> None:
    """A python3 update that changes __future__ after the bundle was written: the bundle
    still serves pam_jail's modules, and __future__ is imported from its file."""
    import marshal

    path = Path(bundle.path_of(libdir, "pam-jail-shell"))
    data = path.read_bytes()
    head = len(pam_jail_login.BUNDLE_MAGIC) + 4             # then the magic number
    entries = marshal.loads(data[head:])
    assert entries[0][:2] == ("__future__", "/usr/lib/python3.11/__future__.py")
    entries[0] = (entries[0][0], entries[0][1], entries[0][2] + 1, *entries[0][3:])
    path.write_bytes(data[:head] + marshal.dumps(entries))
    out = probe(libdir, "pam-jail-shell", preload=True)
    assert out[:2] == ["preloaded True", "__future__ SourceFileLoader"]
    assert "pam_jail.login.confine MemoryFinder" in " ".join(out)


def test_a_module_that_fails_leaves_nothing_half_made(libdir: str) -> None:
    """A bundled module whose code raises: preload raises it (the entry then refuses,
    "installation broken"), and none of the bundle's modules stays in sys.modules, so a
    later import reads the files, as after any failed import."""
    import marshal

    path = Path(bundle.path_of(libdir, "pam-jail-shell"))
    data = path.read_bytes()
    head = len(pam_jail_login.BUNDLE_MAGIC) + 4
    entries = marshal.loads(data[head:])
    at = next(i for i, e in enumerate(entries) if e[0] == "pam_jail.login.confine")
    entries[at] = (*entries[at][:4], compile("raise RuntimeError('boom')", "x", "exec"))
    path.write_bytes(data[:head] + marshal.dumps(entries))
    code = ("import sys\nsys.path[:0] = [sys.argv[1]]\nimport pam_jail.login\n"
            "try:\n    pam_jail.login.preload('pam-jail-shell')\n"
            "except RuntimeError as err:\n    print('raised', err)\n"
            "print('left', sorted(m for m in sys.modules if m.startswith('pam_jail.login.')))\n"
            "import pam_jail.login.shell_entry as e\nprint('then', type(e.__loader__).__name__)\n")
    out = run_python(code, libdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["raised boom", "left []", "then SourceFileLoader"]


def test_doctor_says_whether_the_bundles_are_used(libdir: str) -> None:
    """pam-jail doctor's login.bundle: ok when every bundle is current; a warning naming
    the bundle and why (here: a pam_jail file changed), with the command that rewrites
    them."""
    code = ("import sys\nsys.path[:0] = [sys.argv[1]]\n"
            "from pam_jail.admin.doctor import check_bundles\n"
            "c = check_bundles()\nprint(c.status, c.message, '|', c.fix)\n")

    def doctor() -> str:
        out = run_python(code, libdir)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert doctor().startswith("ok login bundles current (pam-jail-shell, pam-jail-lsh, "
                               "pam_jail_pam)")
    source = Path(libdir) / "pam_jail/login/log.py"
    source.write_text(source.read_text() + "\n")
    said = doctor()
    assert said.startswith(f"warn pam-jail-shell: {source} changed since the bundle was "
                           "written: its logins import their modules one by one"), said
    assert said.endswith("| dpkg-reconfigure pam-jail (the Debian package writes them), or "
                         "scripts/install again (a source install)"), said
