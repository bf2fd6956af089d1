"""pam_jail.admin.build: system tests (root) that build real jails and run programs in them.

Jails live under /srv (root-owned, not world-writable: /tmp and /var/tmp would fail the
jail path rule by design) and are removed afterwards.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_jail.admin import build, cli
from pam_jail.login.errors import BuildError, PamJailError, UnsafeJail, UsageError

REPO = Path(__file__).resolve().parent.parent
PROFILES = str(REPO / "etc" / "pam_jail" / "profiles.ini")
BASE = "/srv/pam_jail-build-test"
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.root


@pytest.fixture
def base() -> Iterator[str]:
    assert os.geteuid() == 0, "the builder tests run as root (CI does)"
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    os.chmod(BASE, 0o755)
    path = tempfile.mkdtemp(prefix="t", dir=BASE)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def init(root: str, *profiles: str, **kwargs: object) -> build.BuildReport:
    return build.init_jail(root, profiles, profiles_file=PROFILES, **kwargs)  # type: ignore[arg-type]


def in_jail(root: str, *argv: str, user: str | None = None,
            confined: bool = False) -> subprocess.CompletedProcess[str]:
    """chroot ROOT ARGV as USER; confined=True first does what a pam_jail confinement
    always does and a bare chroot does not (a private mount namespace with the jail
    bound nosuid,nodev, no_new_privs): pam-jail-lsh refuses to run without it."""
    cmd = [shutil.which("chroot") or "/usr/sbin/chroot"]
    if user:
        cmd.append(f"--userspec={user}")
    cmd = [*cmd, root, *argv]
    if confined:
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
               'mount --bind "$0" "$0"; mount -o remount,bind,nosuid,nodev "$0"; '
               'exec setpriv --no-new-privs "$@"', root, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C"}, timeout=60)


def walk_jail(root: str) -> Iterator[tuple[str, os.stat_result]]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            yield path[len(root):], os.lstat(path)


def assert_jail_rules(root: str, homes: tuple[str, ...] = ()) -> None:
    """Everything the builder made is root-owned, not g/o-writable, without s-bits."""
    for rel, st in walk_jail(root):
        mode = stat.S_IMODE(st.st_mode)
        if rel in ("/tmp", "/run/screen"):           # sticky dirs: JAIL/tmp, stickydirs
            assert mode == 0o1777 and st.st_uid == 0, rel
            continue
        if rel in homes:
            assert mode == 0o750, rel
            continue
        assert (st.st_uid, st.st_gid) == (0, 0), rel
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_ISCHR(st.st_mode):
            assert rel in build.DEVICES and mode == 0o666, rel
            continue
        assert not mode & (stat.S_ISUID | stat.S_ISGID), rel
        if stat.S_ISDIR(st.st_mode):
            assert mode == 0o755, rel
        else:
            assert stat.S_ISREG(st.st_mode), rel
            assert not mode & 0o022, rel
        assert not os.path.basename(rel).startswith(build.TMP_PREFIX), rel


def leftovers(base: str) -> list[str]:
    return sorted(os.listdir(base))


# --------------------------------------------------------------------------- profiles

def test_every_profile_builds_and_follows_the_rules(base: str) -> None:
    names = list(build.load_profiles(PROFILES))
    for required in ("uidbasics", "basicshell", "sftp", "scp", "rsync", "git", "cvs", "lsh",
                     "netbasics", "logbasics", "terminfo", "locale", "ptys"):
        assert required in names
    for name in names:
        root = f"{base}/{name}"
        report = init(root, name)
        assert report.files > 0 or report.symlinks > 0 or report.dirs > 0, name
        assert_jail_rules(root)
        assert leftovers(base) == sorted(os.listdir(base))
    assert not [n for n in os.listdir(base) if ".tmp-" in n]


def test_basicshell_names_resolve(base: str) -> None:
    root = f"{base}/jail"
    init(root, "basicshell", users=["nobody"])
    out = in_jail(root, "/bin/bash", "-c", "id; whoami; ls -l /")
    assert out.returncode == 0, out.stderr
    assert "uid=0(root) gid=0(root)" in out.stdout
    assert "\nroot\n" in out.stdout
    assert " root root " in out.stdout  # ls -l resolved the owner through the jail
    out = in_jail(root, "/bin/bash", "-c", "id; whoami; cd ~nobody && pwd",
                  user=f"{NOBODY.pw_uid}:{NOBODY.pw_gid}")
    assert out.returncode == 0, out.stderr
    assert f"uid={NOBODY.pw_uid}(nobody)" in out.stdout
    assert "\nnobody\n" in out.stdout
    assert "/home/nobody" in out.stdout
    for prog in ("sh", "ls", "cat", "echo", "pwd", "mkdir", "rm", "cp", "mv", "touch", "head",
                 "tail", "wc", "grep", "env", "true", "sleep"):
        assert os.path.exists(f"{root}/usr/bin/{prog}"), prog
    assert_jail_rules(root, homes=("/home/nobody",))


def test_sftp_scp_rsync_git_cvs_run_inside(base: str) -> None:
    root = f"{base}/jail"
    init(root, "sftp", "scp", "rsync", "git", "cvs")
    out = in_jail(root, "/usr/lib/openssh/sftp-server", "-h")
    assert "usage: sftp-server" in out.stderr
    out = in_jail(root, "/usr/bin/scp")
    assert "usage: scp" in out.stderr
    out = in_jail(root, "/usr/bin/rsync", "--version")
    assert out.returncode == 0 and "rsync  version" in out.stdout, out.stderr
    out = in_jail(root, "/usr/bin/git", "--version")
    assert out.returncode == 0 and out.stdout.startswith("git version"), out.stderr
    out = in_jail(root, "/usr/lib/git-core/git-upload-pack", "--help")
    assert "error while loading shared libraries" not in out.stderr
    out = in_jail(root, "/usr/bin/cvs", "--version")
    assert out.returncode == 0 and "Concurrent Versions System" in out.stdout, out.stderr


LSH_INI = """[default]
programs = /usr/bin/id
  [[rules]]
  /usr/bin/id = none
"""


def test_lsh_runtime_for_the_pam_path(base: str) -> None:
    """pam-jail-lsh runs inside a jail built from the lsh profile alone (plus the program
    it allows): python3 -IS finds the installed pam_jail (scripts/install) and every
    module the login path imports; an allowed command runs, a refused one exits 126."""
    root = f"{base}/jail"
    report = init(root, "lsh", users=["nobody"])
    # a new jail: everything written, plus etc/passwd and etc/group
    assert report.footprint_files + 2 == report.files
    assert "the profiles need" in report.summary("init")
    assert report.footprint_bytes < 20_000_000  # the whole stdlib was 45 MB
    assert not os.path.lexists(f"{root}/usr/lib/python3/dist-packages")  # no configobj
    build.copy_into(root, ["/usr/bin/id"])
    os.makedirs(f"{root}/etc/pam_jail", mode=0o755, exist_ok=True)
    Path(f"{root}/etc/pam_jail/lsh.ini").write_text(LSH_INI)
    os.chmod(f"{root}/etc/pam_jail/lsh.ini", 0o644)
    user = f"{NOBODY.pw_uid}:{NOBODY.pw_gid}"
    # a bare chroot is not a pam_jail confinement: the limited shell refuses to run there
    bare = in_jail(root, "/usr/local/sbin/pam-jail-lsh", "-c", "/usr/bin/id", user=user)
    assert bare.returncode == 1 and "uid=" not in bare.stdout
    assert bare.stderr.startswith("pam_jail: login refused: not inside a jail"), bare.stderr
    ok = in_jail(root, "/usr/local/sbin/pam-jail-lsh", "-c", "/usr/bin/id", user=user,
                 confined=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"uid={NOBODY.pw_uid}(nobody) ")
    assert ok.stderr == ""  # no warning from the interpreter (prefix found, no traceback)
    bad = in_jail(root, "/usr/local/sbin/pam-jail-lsh", "-c", "/bin/sh -c id", user=user,
                  confined=True)
    assert bad.returncode == 126, (bad.stdout, bad.stderr)
    assert bad.stderr.startswith("pam_jail: refused: ") and "uid=" not in bad.stdout
    with open(f"{root}/usr/local/lib/pam_jail/pam-jail-lsh.py") as fh:
        assert fh.readline().startswith("#!/usr/bin/python3 -IS")
    with open(f"{root}/usr/local/sbin/pam-jail-lsh", "rb") as fh:   # the static exec stub
        assert fh.read(4) == b"\x7fELF"
    again = build.update_jail(root, prune=True)
    assert (again.files, again.removed) == (0, 0) and not again.warnings
    assert Path(f"{root}/etc/pam_jail/lsh.ini").read_text() == LSH_INI  # not the host's
    # the runtime is exactly what it needs: without the C extension the shell cannot start
    os.unlink(f"{root}/usr/local/lib/pam_jail/pam_jail/login/_sys.cpython-311-x86_64-linux-gnu.so")
    broken = in_jail(root, "/usr/local/sbin/pam-jail-lsh", "-c", "/usr/bin/id", user=user,
                     confined=True)
    assert broken.returncode == 1 and "installation broken" in broken.stderr


def _login_path_files() -> set[str]:
    """Host files the limited shell loads: pam-jail-lsh's import run in Debian's python3
    with -IS (frozen and built-in modules have no file), the repo's pam_jail named by its
    installed path, each source with its cached .pyc where that exists."""
    code = ("import sys; sys.path[:0] = [sys.argv[1]]\n"
            "from pam_jail.login.shell_entry import lsh_main\n"
            "for m in list(sys.modules.values()):\n"
            "    s = getattr(m, '__spec__', None)\n"
            "    if s is not None and s.has_location and s.origin: print(s.origin)\n")
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c", code, str(REPO)],
                         capture_output=True, text=True, check=True).stdout
    import importlib.util

    files: set[str] = set()
    for origin in out.split():
        if origin.startswith(f"{REPO}/pam_jail/"):
            origin = "/usr/local/lib/pam_jail" + origin[len(str(REPO)):]
        files.add(origin)
        if origin.endswith(".py"):
            cached = importlib.util.cache_from_source(origin)
            if os.path.exists(cached) or origin.startswith("/usr/local/lib/pam_jail/"):
                files.add(cached)
    return files


def test_lsh_profile_is_exactly_what_the_login_path_imports() -> None:
    """The lsh profile copies the installed pam_jail/login directory whole: everything
    pam-jail-lsh loads must be in the plan (an import from outside login/ would break every
    PAM-path jail), and nothing else of pam_jail is (encodings and the os.py landmark
    aside)."""
    plan = build.plan_profiles(build.expand_profiles(build.load_profiles(PROFILES), ["lsh"]))
    planned = {p for p, kind in plan.entries.items() if kind == "file"
               and p.startswith(("/usr/lib/python3.11/", "/usr/local/lib/pam_jail/"))}
    needed = _login_path_files()
    assert any(p.endswith("/login/shell_entry.py") for p in needed)
    assert needed - planned == set()
    login_dir = "/usr/local/lib/pam_jail/pam_jail/login/"
    extra = {p for p in planned - needed if not p.startswith("/usr/lib/python3.11/encodings/")
             and not p.startswith(login_dir)
             and p not in ("/usr/local/lib/pam_jail/pam-jail-shell.py",    # the entry
                           "/usr/local/lib/pam_jail/pam-jail-lsh.py")}     # scripts
    assert extra == {"/usr/lib/python3.11/os.py"}
    assert f"{login_dir}pam_module.py" in planned            # the directory, whole
    assert "/usr/lib/python3.11/encodings/utf_8.py" in planned


def test_ptys_profile(base: str) -> None:
    root = f"{base}/jail"
    init(root, "ptys")
    assert os.path.isdir(f"{root}/dev/pts") and not os.listdir(f"{root}/dev/pts")
    assert os.readlink(f"{root}/dev/ptmx") == "pts/ptmx"
    st = os.lstat(f"{root}/dev/tty")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(5, 0)
    assert stat.S_IMODE(st.st_mode) == 0o666
    tty_gid = grp.getgrnam("tty").gr_gid
    assert f"tty:x:{tty_gid}:\n" in Path(f"{root}/etc/group").read_text()
    assert not os.path.exists(f"{root}/dev/null")  # devices only when a profile names them


def test_symlink_chains_recreated(base: str) -> None:
    root = f"{base}/jail"
    init(root, "basicshell")
    for link in ("/bin", "/lib", "/lib64", "/usr/lib64/ld-linux-x86-64.so.2"):
        if os.path.islink(link):
            assert os.readlink(f"{root}{link}") == os.readlink(link), link
    assert os.path.islink(f"{root}/usr/bin/sh")


def test_rerun_is_idempotent_and_compares_content(base: str) -> None:
    root = f"{base}/jail"
    first = init(root, "sftp", "ptys", users=["nobody"])
    assert first.files > 0
    again = init(root, "sftp", "ptys", users=["nobody"])
    assert (again.files, again.symlinks, again.dirs, again.devices) == (0, 0, 0, 0)
    assert again.unchanged > 0
    # a tool reads "changed": true, then false; the text says so too
    assert first.as_dict()["changed"] is True and again.as_dict()["changed"] is False
    assert ": no change (" in again.summary("init")
    # Same size and mtime, different content: must be copied again.
    target = Path(f"{root}/usr/lib/openssh/sftp-server")
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    fixed = init(root, "sftp", "ptys", users=["nobody"])
    assert fixed.files == 1
    assert target.read_bytes() == Path("/usr/lib/openssh/sftp-server").read_bytes()
    # A wrong mode is corrected without a copy.
    os.chmod(target, 0o777)
    init(root, "sftp")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert Path(f"{root}/etc/passwd").read_text().count("\nnobody:") == 1


def jail_tree(root: str) -> dict[str, tuple[object, ...]]:
    """Every entry of a jail: kind and mode, owner, link target or content and mtime."""
    tree: dict[str, tuple[object, ...]] = {}
    for rel, st in walk_jail(root):
        what: object = None
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(root + rel)
        elif stat.S_ISREG(st.st_mode):  # the host's mtime, except for files made here
            what = (Path(root + rel).read_bytes(),
                    None if rel in ("/etc/passwd", "/etc/group", build.MANIFEST)
                    else st.st_mtime_ns)
        elif stat.S_ISCHR(st.st_mode):
            what = st.st_rdev
        tree[rel] = (st.st_mode, st.st_uid, st.st_gid, what)
    return tree


def test_new_jail_same_as_built_in_place(base: str) -> None:
    """A new jail is written straight into its fresh JAIL.tmp-XXXXXX tree (no temporary
    name per file); building into an existing empty directory takes the general path
    (lstat, temporary name, rename). Both give the same jail and the same counts, also
    when a profile writes one path twice (a `symlinks` entry over a copied file)."""
    conf = write_profiles(base, open(PROFILES).read() +  # noqa: SIM115
                          "\n[twice]\npaths = /etc/hosts, /etc/nsswitch.conf\n"
                          "symlinks = /etc/hosts -> nsswitch.conf\n")
    defs = build.load_profiles(conf)
    for names in (("basicshell", "ptys", "cvs"), ("sftp", "twice")):
        fresh = build.init_jail(f"{base}/fresh", names, users=["nobody"], definitions=defs)
        os.mkdir(f"{base}/in-place", 0o755)
        in_place = build.init_jail(f"{base}/in-place", names, users=["nobody"],
                                   profiles_file=conf)
        assert jail_tree(f"{base}/fresh") == jail_tree(f"{base}/in-place"), names
        for key in ("files", "bytes", "dirs", "symlinks", "devices", "unchanged",
                    "warnings"):
            assert getattr(fresh, key) == getattr(in_place, key), (names, key)
        assert_jail_rules(f"{base}/fresh", homes=("/home/nobody",))
        if "twice" in names:
            assert os.readlink(f"{base}/fresh/etc/hosts") == "nsswitch.conf"
        shutil.rmtree(f"{base}/fresh")
        shutil.rmtree(f"{base}/in-place")


def test_dry_run_writes_nothing(base: str) -> None:
    root = f"{base}/jail"
    dry = init(root, "basicshell", dry_run=True)
    assert dry.dry_run and dry.files > 0
    assert leftovers(base) == []
    real = init(root, "basicshell")
    assert (dry.files, dry.bytes) == (real.files, real.bytes)
    assert init(root, "basicshell", dry_run=True).files == 0


def test_add_users_entries_and_homes(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics")
    build.add_users(root, ["nobody"], shell="/bin/false")
    passwd = Path(f"{root}/etc/passwd").read_text().splitlines()
    assert passwd[0].startswith("root:x:0:0:")
    assert f"nobody:x:{NOBODY.pw_uid}:{NOBODY.pw_gid}:{NOBODY.pw_gecos}:/home/nobody:/bin/false" \
        in passwd
    groups = Path(f"{root}/etc/group").read_text()
    assert "root:x:0:" in groups and f"tty:x:{grp.getgrnam('tty').gr_gid}:" in groups
    home = os.lstat(f"{root}/home/nobody")
    assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (NOBODY.pw_uid, 0o750)
    assert stat.S_IMODE(os.lstat(f"{root}/tmp").st_mode) == 0o1777
    with pytest.raises(BuildError, match="no such user"):
        build.add_users(root, ["no-such-user-pj"])


def test_jail_home() -> None:
    assert build.jail_home("/srv/jail/./home/alice", "alice") == "/home/alice"
    assert build.jail_home("/srv/a/./b/./srv/alice/", "alice") == "/srv/alice"
    assert build.jail_home("/home/alice", "alice") == "/home/alice"


# --------------------------------------------------------------------------- cp

def test_cp_strips_setuid(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics")
    assert os.stat("/usr/bin/passwd").st_mode & stat.S_ISUID
    report = build.copy_into(root, ["/usr/bin/passwd"])
    mode = os.stat(f"{root}/usr/bin/passwd").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID)
    assert stat.S_IMODE(mode) == 0o755
    assert any("setuid" in w for w in report.warnings)
    # its libraries came along
    assert os.path.exists(f"{root}/usr/lib/x86_64-linux-gnu/libpam.so.0")
    assert_jail_rules(root)


def test_cp_shell_metacharacters_fine_control_characters_refused(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics")
    src = tempfile.mkdtemp(dir=BASE)
    try:
        odd = os.path.join(src, "a b;$(x)`y`&")
        Path(odd).write_text("data")
        build.copy_into(root, [odd])
        assert Path(f"{root}{odd}").read_text() == "data"
        bad = os.path.join(src, "new\nline")
        Path(bad).write_text("x")
        with pytest.raises(BuildError, match="control character"):
            build.copy_into(root, [bad])
    finally:
        shutil.rmtree(src)


def test_cp_missing_program(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics")
    before = sorted(p for p, _ in walk_jail(root))
    with pytest.raises(BuildError, match="/usr/bin/no-such-program-pj: No such file"):
        build.copy_into(root, ["/usr/bin/true", "/usr/bin/no-such-program-pj"])
    assert sorted(p for p, _ in walk_jail(root)) == before
    with pytest.raises(BuildError, match="no such jail"):
        build.copy_into(f"{base}/absent", ["/usr/bin/true"])


def test_never_writes_through_a_jail_symlink(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics")
    outside = tempfile.mkdtemp(dir=BASE)
    try:
        os.makedirs(f"{root}/usr", exist_ok=True)
        os.symlink(outside, f"{root}/usr/bin")
        with pytest.raises(BuildError, match="is a symlink in the jail"):
            build.copy_into(root, ["/usr/bin/true"])
        assert os.listdir(outside) == []
    finally:
        shutil.rmtree(outside)


def test_never_writes_into_a_user_owned_dir(base: str) -> None:
    root = f"{base}/jail"
    init(root, "uidbasics", users=["nobody"])
    os.makedirs(f"{root}/usr/bin", exist_ok=True)
    os.chown(f"{root}/usr/bin", NOBODY.pw_uid, -1)
    with pytest.raises(BuildError, match="not root-owned"):
        build.copy_into(root, ["/usr/bin/true"])
    assert os.listdir(f"{root}/usr/bin") == []
    # homes and tmp are the users'; re-running init leaves them alone
    Path(f"{root}/tmp/x").write_text("x")
    init(root, "uidbasics", users=["nobody"])
    assert Path(f"{root}/tmp/x").exists()


# --------------------------------------------------------------------------- bad input

def test_unknown_profile_leaves_nothing(base: str) -> None:
    with pytest.raises(BuildError, match="profile nosuch: unknown profile"):
        init(f"{base}/jail", "sftp", "nosuch")
    assert leftovers(base) == []


def test_unsafe_parent_refused(base: str) -> None:
    parent = f"{base}/open"
    os.mkdir(parent)
    os.chmod(parent, 0o775)
    with pytest.raises(UnsafeJail) as info:
        init(f"{parent}/jail", "sftp")
    assert any("writable by group or other" in p for p in info.value.problems)
    assert os.listdir(parent) == []
    os.chmod(parent, 0o755)
    os.chown(parent, NOBODY.pw_uid, -1)
    with pytest.raises(UnsafeJail):
        init(f"{parent}/jail", "sftp")
    assert os.listdir(parent) == []
    with pytest.raises(UnsafeJail):  # /tmp is world-writable
        init("/tmp/pj-never", "sftp")
    assert not os.path.exists("/tmp/pj-never")


def test_bad_jail_paths() -> None:
    for bad in ("relative/jail", "/", "/srv/../tmp/x", "/srv/x\n"):
        with pytest.raises((UsageError, BuildError)):
            init(bad, "sftp")


def write_profiles(base: str, text: str) -> str:
    path = f"{base}/profiles.ini"
    Path(path).write_text(text)
    return path


def test_missing_path_in_profile_fails_cleanly_optional_warns(base: str) -> None:
    conf = write_profiles(base, "[broken]\nexecutables = true, /usr/bin/no-such-pj\n"
                                "[soft]\nexecutables = true\noptional = /no/such/file\n")
    with pytest.raises(BuildError, match="profile broken: executable /usr/bin/no-such-pj: "
                                         "not found"):
        build.init_jail(f"{base}/jail", ["broken"], profiles_file=conf)
    assert leftovers(base) == ["profiles.ini"]
    report = build.init_jail(f"{base}/jail", ["soft"], profiles_file=conf)
    assert any("optional /no/such/file absent" in w for w in report.warnings)


def test_failure_during_build_rolls_back(base: str) -> None:
    # /dev/null in `paths` is refused only while planning; a link leaving the jail is
    # refused too; both must leave nothing behind.
    conf = write_profiles(base, "[dev]\nexecutables = true\npaths = /dev/null\n"
                                "[escape]\nsymlinks = /etc/x -> ../../../etc/shadow\n"
                                "[absolute]\nsymlinks = /etc/y -> /../../etc/shadow\n")
    # the builder and `pam-jail check` share one rule (safety.link_leaves_root): an
    # absolute target that climbs past / is refused too (the builder once made it)
    for name, message in (("dev", "not a regular file"), ("escape", "leaves the jail"),
                          ("absolute", "leaves the jail")):
        with pytest.raises(BuildError, match=message):
            build.init_jail(f"{base}/jail", [name], profiles_file=conf)
        assert leftovers(base) == ["profiles.ini"]


def test_failure_while_writing_rolls_back(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = build._Writer.copy_file

    def failing(self: build._Writer, src: str, path: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device")
        real(self, src, path)

    monkeypatch.setattr(build._Writer, "copy_file", failing)
    with pytest.raises(OSError):
        init(f"{base}/jail", "basicshell")
    assert leftovers(base) == []


def test_profiles_file_errors(base: str) -> None:
    for text, message in (
        ("[p]\npathz = /bin/true\n", "unknown key"),
        ("[p]\ndevices = /dev/sda\n", "not one of"),
        ("[p]\npaths = relative\n", "not an absolute path"),
        ("[p]\nsymlinks = /a b\n", "LINK -> TARGET"),
        ("[a]\nincludesections = b\n[b]\nincludesections = a\n", "loop"),
        ("[p]\nstickydirs = /var/www\n", "stickydirs: /var/www is not one of"),
    ):
        conf = write_profiles(base, text)
        with pytest.raises(BuildError, match=message):
            names = list(build.load_profiles(conf))
            build.init_jail(f"{base}/jail", names, profiles_file=conf)
    with pytest.raises(BuildError, match="read /no/such/profiles.ini"):
        build.load_profiles("/no/such/profiles.ini")


def test_stickydirs_and_missing_parents(base: str) -> None:
    """A profile's stickydirs are root:root 1777 and pass the login's jail check; a new
    jail's missing parent directories are made root:root 0755 (README: /srv/jails)."""
    from pam_jail.login.safety import check_jail

    conf = write_profiles(base, "[p]\nstickydirs = /run/screen\nemptydirs = /etc\n")
    root = f"{base}/a/b/jail"
    build.init_jail(root, ["p"], profiles_file=conf)
    for parent in (f"{base}/a", f"{base}/a/b"):
        st = os.lstat(parent)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755
    st = os.lstat(f"{root}/run/screen")
    assert stat.S_IMODE(st.st_mode) == 0o1777 and st.st_uid == 0
    assert check_jail(root) == []
    os.chmod(f"{base}/a", 0o777)                       # an unsafe parent is still refused
    with pytest.raises(UnsafeJail):
        build.init_jail(f"{base}/a/c/jail", ["p"], profiles_file=conf)
    assert not os.path.exists(f"{base}/a/c")


def test_lists_accept_commas_and_whitespace(base: str) -> None:
    conf = write_profiles(base, '[p]\nexecutables = """true, false\n   echo  env"""\n'
                                "comment = a, b\n")
    profile = build.load_profiles(conf)["p"]
    assert profile.executables == ["true", "false", "echo", "env"]
    assert profile.comment == "a, b"


# --------------------------------------------------------------------------- CLI

def test_cli_init_cp_update(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = f"{base}/jail"
    assert cli.main(["init", "-j", root, "-c", PROFILES, "sftp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"init {root}: ") and " files (" in out and out.endswith(" s\n")
    assert cli.main(["init", "-j", root, "-c", PROFILES, "--json", "--dry-run", "sftp"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["files"] == 0 and data["dry_run"] is True
    assert cli.main(["cp", "-j", root, "/usr/bin/true"]) == 0
    assert capsys.readouterr().out.startswith(f"cp {root}: ")
    assert os.path.exists(f"{root}/usr/bin/true")
    assert cli.main(["init", "-j", root, "-c", PROFILES, "nosuch"]) == BuildError.exit_code
    assert "pam_jail: profile nosuch: unknown profile" in capsys.readouterr().err
    assert cli.main(["init", "--list", "-c", PROFILES]) == 0
    assert "basicshell" in capsys.readouterr().out
    assert cli.main(["update", "-j", root]) == 0
    assert capsys.readouterr().out.startswith(f"update {root}: no change (")


def test_cli_help_texts() -> None:
    parser = cli.build_parser()
    for command in ("init", "cp", "update"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])


def test_errors_are_pam_jail_errors(base: str) -> None:
    with pytest.raises(PamJailError):
        build.copy_into(f"{base}/absent", ["/bin/true"])


# --------------------------------------------------------------------------- update

def test_update_refreshes_and_prunes(base: str) -> None:
    root = f"{base}/jail"
    init(root, "scp", users=["nobody"])
    target = Path(f"{root}/usr/bin/scp")
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    stale = Path(f"{root}/usr/bin/pj-removed-from-host")
    stale.write_text("old")
    with open(root + build.MANIFEST, "a") as fh:      # as if pam_jail had placed it
        fh.write("/usr/bin/pj-removed-from-host\n")
    Path(f"{root}/home/nobody/keep").write_text("user data")
    # a file pam_jail did not place, at a host path (jailkit's jk_lsh.ini): never touched
    theirs = Path(f"{root}/etc/hostname")
    theirs.write_text("the admin's own\n")
    dry = build.update_jail(root, dry_run=True)
    assert dry.files == 1 and target.read_bytes() == bytes(data)
    assert dry.changed_paths == ["/usr/bin/scp"]       # --dry-run lists the paths
    report = build.update_jail(root)
    assert report.files == 1
    assert target.read_bytes() == Path("/usr/bin/scp").read_bytes()
    assert any("pj-removed-from-host" in w for w in report.warnings) and stale.exists()
    assert build.update_jail(root, prune=True, dry_run=True).removed == 1 and stale.exists()
    pruned = build.update_jail(root, prune=True)
    assert pruned.removed == 1 and not stale.exists()
    assert Path(f"{root}/home/nobody/keep").exists()
    assert Path(f"{root}/etc/passwd").exists()
    again = build.update_jail(root, prune=True)
    assert (again.files, again.removed, again.symlinks) == (0, 0, 0)
    assert theirs.read_text() == "the admin's own\n"          # not pam_jail's: left alone
    assert "/usr/bin/pj-removed-from-host" not in (build.read_manifest(root) or set())
    # a jail with no record (jailkit's, an older pam_jail's) is refused, not guessed at
    os.unlink(root + build.MANIFEST)
    with pytest.raises(BuildError, match="no record of what pam_jail placed"):
        build.update_jail(root)


# --------------------------------------------------------------------------- shared base

def jail_files(root: str) -> dict[str, os.stat_result]:
    return {rel: st for rel, st in walk_jail(root) if stat.S_ISREG(st.st_mode)}


def test_shared_base_hard_links_across_jails(base: str) -> None:
    shared = f"{base}/.base"
    one, two = f"{base}/one", f"{base}/two"
    first = init(one, "basicshell", "sftp", shared=shared, users=["nobody"])
    assert first.shared == shared and first.linked > 20 and first.files > 20
    second = init(two, "basicshell", "sftp", shared=shared)
    # the second jail copies nothing: its files are links to the base's copies
    assert second.linked == first.linked
    assert second.files == 2 and second.bytes < 10_000  # only etc/passwd, etc/group
    own = {"/etc/passwd", "/etc/group", build.MANIFEST}
    base_files = jail_files(shared)
    assert "/.pam_jail-shared-base" in base_files
    for rel, st in jail_files(one).items():
        if rel in own:
            assert st.st_nlink == 1, rel
            continue
        twin = jail_files(two)[rel]
        assert (st.st_ino, st.st_dev) == (twin.st_ino, twin.st_dev) == \
            (base_files[rel].st_ino, base_files[rel].st_dev), rel
        assert st.st_nlink >= 3 and st.st_uid == 0 and not st.st_mode & 0o7022, rel
    assert_jail_rules(one, homes=("/home/nobody",))
    assert_jail_rules(two)
    assert_jail_rules(shared)
    out = in_jail(two, "/bin/bash", "-c", "id; whoami; ls -l /usr/bin/bash")
    assert out.returncode == 0 and " root root " in out.stdout, out.stderr
    assert in_jail(one, "/usr/lib/openssh/sftp-server", "-h").returncode in (0, 1)
    again = init(one, "basicshell", "sftp", shared=shared, users=["nobody"])
    assert (again.files, again.linked, again.bytes) == (0, 0, 0)


def test_shared_update_relinks_by_rename(base: str) -> None:
    shared = f"{base}/.base"
    one, two = f"{base}/one", f"{base}/two"
    init(one, "scp", shared=shared)
    init(two, "scp", shared=shared)
    good = os.lstat(f"{two}/usr/bin/scp")
    # an older version in the base, linked into jail one only (as after an upgrade of
    # the base that jail two has not seen): replaced by rename, never rewritten in place
    stale = f"{shared}/usr/bin/.stale"
    Path(stale).write_bytes(b"old scp")
    os.rename(stale, f"{shared}/usr/bin/scp")
    os.link(f"{shared}/usr/bin/scp", f"{one}/usr/bin/.stale")
    os.rename(f"{one}/usr/bin/.stale", f"{one}/usr/bin/scp")
    with pytest.raises(BuildError, match="hard links"):
        build.update_jail(one)  # would silently unshare every file
    dry = build.update_jail(one, shared=shared, dry_run=True)
    assert (dry.files, dry.linked) == (1, 1)
    assert Path(f"{one}/usr/bin/scp").read_bytes() == b"old scp"
    report = build.update_jail(one, shared=shared)
    assert (report.files, report.linked) == (1, 1), report
    host = Path("/usr/bin/scp").read_bytes()
    assert Path(f"{one}/usr/bin/scp").read_bytes() == host
    new = os.lstat(f"{shared}/usr/bin/scp")
    assert os.lstat(f"{one}/usr/bin/scp").st_ino == new.st_ino
    # jail two still holds its own whole inode until its update
    assert os.lstat(f"{two}/usr/bin/scp").st_ino == good.st_ino != new.st_ino
    assert build.update_jail(two, shared=shared).linked == 1
    assert os.lstat(f"{two}/usr/bin/scp").st_ino == new.st_ino
    # --unshare: the jail's own copies, the base untouched
    own = build.update_jail(two, unshare=True)
    assert own.files >= 5 and any("replaced by copies" in w for w in own.warnings)
    assert all(st.st_nlink == 1 for st in jail_files(two).values())
    assert os.lstat(f"{one}/usr/bin/scp").st_ino == new.st_ino
    with pytest.raises(BuildError, match="hard links"):
        init(one, "scp")
    assert in_jail(one, "/usr/bin/scp").returncode == 1  # runs: usage message


def test_shared_base_refusals(base: str) -> None:
    with pytest.raises(UsageError, match="contain"):
        init(f"{base}/jail", "uidbasics", shared=f"{base}/jail/base")
    os.mkdir(f"{base}/open", 0o777)
    os.chmod(f"{base}/open", 0o777)
    with pytest.raises(UnsafeJail):
        init(f"{base}/jail", "uidbasics", shared=f"{base}/open/base")
    assert not os.path.lexists(f"{base}/jail")
    mnt = f"{base}/mnt"
    os.mkdir(mnt, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs", mnt],
                   check=True)
    try:
        with pytest.raises(BuildError, match="another file system"):
            init(f"{base}/jail", "uidbasics", shared=f"{mnt}/base")
    finally:
        subprocess.run(["umount", "-l", mnt], check=True)
    assert not os.path.lexists(f"{base}/jail")
    dry = init(f"{base}/jail", "uidbasics", shared=f"{base}/.base", dry_run=True)
    assert dry.linked > 0 and not os.path.lexists(f"{base}/.base")
    assert not os.path.lexists(f"{base}/jail")


def test_cli_shared(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    root, shared = f"{base}/jail", f"{base}/.base"
    assert cli.main(["init", "-j", root, "-c", PROFILES, "--shared", shared, "scp"]) == 0
    assert f"hard links into {shared}" in capsys.readouterr().out
    assert cli.main(["update", "-j", root]) == BuildError.exit_code
    assert "--shared BASE" in capsys.readouterr().err
    assert cli.main(["update", "-j", root, "--shared", shared, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["files"], data["linked"], data["shared"]) == (0, 0, shared)


def test_progress_on_a_terminal_only(base: str) -> None:
    """A long cp shows progress when stderr is a terminal (script(1) gives it one), and
    nothing when piped."""
    tree = f"{base}/many"
    os.makedirs(tree)
    for i in range(4000):
        Path(f"{tree}/f{i}").write_text(str(i))
    root = f"{base}/jail"
    init(root, "uidbasics")
    cmd = f"{sys.executable} -m pam_jail.admin.cli cp -j {root} {tree}"
    on_tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                            text=True, cwd=REPO, check=False, timeout=300)
    assert on_tty.returncode == 0, on_tty.stdout
    assert f"{root}: " in on_tty.stdout and " entries" in on_tty.stdout, on_tty.stdout[-500:]
    shutil.rmtree(root)
    init(root, "uidbasics")
    piped = subprocess.run(cmd.split(), capture_output=True, text=True, cwd=REPO, check=False,
                           timeout=300)
    assert piped.returncode == 0 and "entries" not in piped.stderr, piped.stderr


def test_update_all_jails_of_the_config(base: str) -> None:
    """`update --all` (the apt hook): every jail of jails.ini; one that fails (no record of
    what pam_jail placed) is reported and the others are still updated."""
    good, foreign = f"{base}/good", f"{base}/foreign"
    init(good, "scp")
    init(foreign, "scp")
    os.unlink(foreign + build.MANIFEST)
    target = Path(f"{good}/usr/bin/scp")
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    config = f"{base}/jails.ini"
    Path(config).write_text(f"[jails]\n  [[a]]\n  root = {good}\n  [[b]]\n  root = {foreign}\n")
    result = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "update", "--all",
                             "--config", config], capture_output=True, text=True, cwd=REPO,
                            check=False, timeout=120)
    assert result.returncode == 1, result
    assert f"FAILED: update {foreign}: no record" in result.stderr
    assert f"[2/2] update {good}: 1 files" in result.stdout
    assert target.read_bytes() == Path("/usr/bin/scp").read_bytes()


def test_the_limited_shells_runtime_is_the_packages_not_a_profiles_list(base: str) -> None:
    """A profiles.ini kept from an older version lists that version's modules (flat
    pam_jail/*.py): whoever names any runtime path gets today's runtime whole; update
    brings a jail built with an older runtime to today's: new modules arrive and are
    recorded; modules the package no longer has stay (a downgrade's update refreshes
    them) until --prune."""
    lib = "/usr/local/lib/pam_jail"
    old_profiles = f"{base}/profiles-0.1.ini"
    Path(old_profiles).write_text(
        "[oldlsh]\npaths = @LIBDIR@/pam_jail/__init__.py, @LIBDIR@/pam_jail/confine.py, "
        "@LIBDIR@/pam_jail/__pycache__/confine.cpython-311.pyc\n")
    root = f"{base}/jail"
    build.init_jail(root, ["oldlsh"], profiles_file=old_profiles)
    for module in ("shell_entry.py", "confine.py", "plan.py", "_sys.cpython-311-x86_64-"
                   "linux-gnu.so", "__pycache__/shell_entry.cpython-311.pyc"):
        assert os.path.isfile(f"{root}{lib}/pam_jail/login/{module}"), module
    assert os.path.isfile(f"{root}/usr/local/sbin/pam-jail-lsh")
    assert not os.path.exists(f"{root}{lib}/pam_jail/confine.py")   # 0.1's, gone here
    # a jail as 0.1 left it: flat modules recorded, the login directory missing
    shutil.rmtree(f"{root}{lib}/pam_jail/login")
    old = f"{root}{lib}/pam_jail/confine.py"
    Path(old).write_text("# 0.1's confine\n")
    os.chmod(old, 0o644)
    with open(f"{root}{build.MANIFEST}", "a") as fh:
        fh.write(f"{lib}/pam_jail/confine.py\n")
    report = build.update_jail(root)
    assert os.path.isfile(f"{root}{lib}/pam_jail/login/shell_entry.py")
    assert os.path.exists(old) and report.removed_paths == []
    assert any("confine.py: not on the host any more" in w for w in report.warnings)
    placed = build.read_manifest(root) or set()
    assert f"{lib}/pam_jail/login/shell_entry.py" in placed
    again = build.update_jail(root)                       # up to date: nothing to do
    assert again.removed_paths == [] and again.files == 0
    # before a downgrade to the flat layout: this version's directory goes, the old stays
    dropped = build.drop_runtime(root)
    assert not os.path.exists(f"{root}{lib}/pam_jail/login") and os.path.exists(old)
    assert f"{lib}/pam_jail/login/shell_entry.py" in dropped.removed_paths
    assert not [p for p in build.read_manifest(root) or set()
                if p.startswith(f"{lib}/pam_jail/login/")]
    build.update_jail(root)                     # and the upgrade after it brings it back
    assert os.path.isfile(f"{root}{lib}/pam_jail/login/shell_entry.py")
    pruned = build.update_jail(root, prune=True)
    assert not os.path.exists(old) and f"{lib}/pam_jail/confine.py" in pruned.removed_paths
    assert f"{lib}/pam_jail/confine.py" not in (build.read_manifest(root) or set())
