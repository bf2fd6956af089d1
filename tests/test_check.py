"""pam-jail check: each problem planted in a real jail built by the builder, and the
checker must report exactly it (and nothing else); a fresh jail reports nothing; --fix
repairs modes and s-bits, --dry-run changes nothing; the content comparison is exact
(one byte anywhere); the split over worker processes finds the same and fails closed.
Root only (CI runs as root)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import build_jail, remove_jail
from sshd_harness import User
from util import safe_tmpdir

from pam_jail.admin import check, cli
from pam_jail.admin.check import Checker, Finding, JailReport, Target, check_mount, targets
from pam_jail.login import safety
from pam_jail.login.errors import PamJailError

pytestmark = pytest.mark.root


@pytest.fixture
def jail() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    root = build_jail(["basicshell", "ptys"], users=["root"])
    yield root
    remove_jail(root)


def run_check(root: str) -> JailReport:
    return Checker().check(Target("t", root))


def kinds(report: JailReport) -> list[tuple[str, str]]:
    """(kind, path inside the jail) of every finding that counts."""
    return sorted((f.kind, f.path[len(report.root):] or "/") for f in report.problems)


def only(report: JailReport, kind: str, rel: str) -> Finding:
    assert kinds(report) == [(kind, rel)], [f.detail for f in report.problems]
    return report.problems[0]


# --------------------------------------------------------------- pure judgements

@pytest.mark.parametrize("rel,mode,rdev,bad", [
    ("/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3), False),
    ("/dev/tty", stat.S_IFCHR | 0o666, os.makedev(5, 0), False),
    ("/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 1), True),     # /dev/mem numbers
    ("/dev/null", stat.S_IFBLK | 0o666, os.makedev(1, 3), True),     # block, not char
    ("/dev/sda", stat.S_IFBLK | 0o660, os.makedev(8, 0), True),
    ("/home/u/null", stat.S_IFCHR | 0o666, os.makedev(1, 3), True),  # right numbers, wrong place
    ("/dev/log", stat.S_IFSOCK | 0o666, 0, False),                   # the log relay's socket
])
def test_judge_device(rel: str, mode: int, rdev: int, bad: bool) -> None:
    assert (safety.judge_device(rel, mode, rdev) is not None) == bad


@pytest.mark.parametrize("rel,mode,bad", [
    ("/tmp", stat.S_IFDIR | 0o1777, False),
    ("/tmp", stat.S_IFDIR | 0o777, True),          # not sticky
    ("/srv", stat.S_IFDIR | 0o1777, True),         # sticky, but not a tmp dir
    ("/etc/x", stat.S_IFREG | 0o664, True),
    ("/etc/x", stat.S_IFREG | 0o644, False),
    ("/lib/l", stat.S_IFLNK | 0o777, False),       # links are always 0777
])
def test_judge_writable(rel: str, mode: int, bad: bool) -> None:
    assert (safety.judge_writable(rel, mode) is not None) == bad


@pytest.mark.parametrize("rel,target,leaves", [
    ("/usr/lib/a", "../../../etc/shadow", True),
    ("/usr/lib/a", "../../etc/shadow", False),
    ("/a", "/../etc/shadow", True),
    ("/a", "/etc/../etc/shadow", False),
    ("/bin", "usr/bin", False),
    ("/x/y", "./../..", True),
])
def test_link_leaves_root(rel: str, target: str, leaves: bool) -> None:
    assert safety.link_leaves_root(rel, target) == leaves


def test_judge_setid_and_ids() -> None:
    assert safety.judge_setid("/b", stat.S_IFREG | 0o4755) is not None
    assert safety.judge_setid("/b", stat.S_IFREG | 0o2755) is not None
    assert safety.judge_setid("/d", stat.S_IFDIR | 0o2755) is None
    assert safety.judge_setid("/b", stat.S_IFREG | 0o755) is None
    assert safety.judge_id_entry("passwd", "a", 5, 5, "a") is None
    assert "on the host" in str(safety.judge_id_entry("passwd", "a", 5, 6, None))
    assert "is root there" in str(safety.judge_id_entry("passwd", "a", 0, None, "root"))


# ------------------------------------------------------------------ real jails

def test_fresh_jail_reports_nothing(jail: str) -> None:
    report = run_check(jail)
    assert report.problems == []
    assert report.entries > 30 and report.compared > 10      # it did look at files
    sizes = sum(os.lstat(jail + rel).st_size for rel in ("/usr/bin/ls", "/usr/bin/cat"))
    assert report.compared_bytes > 2 * sizes                 # whole files, both sides
    assert {f.kind for f in report.findings} <= {"mount"}    # info only


def test_login_path_rule_and_checker_agree(jail: str) -> None:
    assert safety.check_jail(jail) == [] and run_check(jail).problems == []
    os.chmod(f"{jail}/etc", 0o777)
    assert safety.check_jail(jail) != []
    only(run_check(jail), "writable", "/etc")


def test_setuid_in_system_dir_and_setgid_in_home(jail: str) -> None:
    os.chmod(f"{jail}/usr/bin/ls", 0o4755)
    f = only(run_check(jail), "setuid", "/usr/bin/ls")
    assert f.fixable and "setuid" in f.detail
    os.chmod(f"{jail}/usr/bin/ls", 0o755)
    home = f"{jail}/home/someone"
    os.makedirs(home)
    os.chown(home, 4321, 4321)
    with open(f"{home}/prog", "w") as fh:
        fh.write("x")
    os.chown(f"{home}/prog", 4321, 4321)
    os.chmod(f"{home}/prog", 0o2777)     # world-writable too: not judged in a home
    f = only(run_check(jail), "setuid", "/home/someone/prog")
    assert "setgid" in f.detail


@pytest.mark.parametrize("rel,kind,major,minor", [
    ("/dev/sda", stat.S_IFBLK, 8, 0),
    ("/dev/mem", stat.S_IFCHR, 1, 1),
    ("/dev/zero", stat.S_IFCHR, 1, 1),        # allowed name, wrong numbers
    ("/tmp/null", stat.S_IFCHR, 1, 3),        # allowed numbers, in tmp
])
def test_device_nodes(jail: str, rel: str, kind: int, major: int, minor: int) -> None:
    os.mknod(jail + rel, kind | 0o600, os.makedev(major, minor))
    f = only(run_check(jail), "device", rel)
    assert not f.fixable


def test_allowed_devices_pass(jail: str) -> None:
    for name in ("zero", "full", "random", "urandom", "tty"):
        path = f"{jail}/dev/{name}"
        if not os.path.exists(path):
            numbers = safety.ALLOWED_DEVICES[f"/dev/{name}"]
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(*numbers))
    assert run_check(jail).problems == []


def test_writable_dirs_and_files(jail: str) -> None:
    os.mkdir(f"{jail}/srv", 0o755)
    os.chmod(f"{jail}/srv", 0o1777)          # sticky, but not tmp
    only(run_check(jail), "writable", "/srv")
    os.chmod(f"{jail}/srv", 0o755)
    os.chmod(f"{jail}/tmp", 0o777)            # tmp without the sticky bit
    only(run_check(jail), "writable", "/tmp")
    os.chmod(f"{jail}/tmp", 0o1777)
    os.chmod(f"{jail}/usr/bin/cat", 0o775)
    only(run_check(jail), "writable", "/usr/bin/cat")


def test_user_owned_system_entries(jail: str) -> None:
    os.chown(f"{jail}/etc/nsswitch.conf", 4321, 0)
    f = only(run_check(jail), "system-owner", "/etc/nsswitch.conf")
    assert "uid 4321" in f.detail
    os.chown(f"{jail}/etc/nsswitch.conf", 0, 0)
    os.makedirs(f"{jail}/etc/pam_jail", mode=0o755)
    with open(f"{jail}/etc/pam_jail/lsh.ini", "w") as fh:
        fh.write("[default]\n")
    os.chown(f"{jail}/etc/pam_jail/lsh.ini", 4321, 4321)
    only(run_check(jail), "system-owner", "/etc/pam_jail/lsh.ini")
    os.unlink(f"{jail}/etc/pam_jail/lsh.ini")
    # a link a user could have made in a system dir: resolves fine, owned by the user
    os.symlink("ls", f"{jail}/usr/bin/myls")
    os.lchown(f"{jail}/usr/bin/myls", 4321, 4321)
    only(run_check(jail), "system-owner", "/usr/bin/myls")


def test_hard_link_to_outside(jail: str) -> None:
    outside = safe_tmpdir("twin")
    try:
        with open(f"{outside}/secret", "w") as fh:
            fh.write("host secret\n")
        os.makedirs(f"{jail}/srv", mode=0o755)
        os.link(f"{outside}/secret", f"{jail}/srv/secret")
        f = only(run_check(jail), "hardlink", "/srv/secret")
        assert f"{outside}/secret" in f.detail and "2 links, 1 in the jail" in f.detail
        # both links inside the jail: fine
        os.unlink(f"{outside}/secret")
        os.link(f"{jail}/srv/secret", f"{jail}/srv/secret2")
        assert run_check(jail).problems == []
    finally:
        shutil.rmtree(outside)


def test_symlinks(jail: str) -> None:
    os.symlink("../../../etc/shadow", f"{jail}/usr/lib/evil")
    f = only(run_check(jail), "symlink-outside", "/usr/lib/evil")
    assert f.severity == "warning"
    os.unlink(f"{jail}/usr/lib/evil")
    os.symlink("/etc/passwd", f"{jail}/usr/lib/ok")      # absolute: inside the jail
    os.symlink("../../etc/group", f"{jail}/usr/lib/ok2")
    assert run_check(jail).problems == []
    os.symlink("/usr/bin/not-here", f"{jail}/usr/bin/gone")
    only(run_check(jail), "symlink-dangling", "/usr/bin/gone")
    os.unlink(f"{jail}/usr/bin/gone")
    # dangling links in a home are the user's business; climbing ones are not
    home = f"{jail}/home/u"
    os.makedirs(home)
    os.symlink("/nowhere", f"{home}/x")
    assert run_check(jail).problems == []
    os.symlink("../../../../../etc", f"{home}/up")
    only(run_check(jail), "symlink-outside", "/home/u/up")


def test_content_differs_in_the_last_byte(jail: str) -> None:
    path = f"{jail}/usr/bin/ls"
    with open(path, "r+b") as fh:               # same size, last byte changed:
        fh.seek(-1, os.SEEK_END)                # a sampled hash would miss it
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0xFF]))
    f = only(run_check(jail), "differs", "/usr/bin/ls")
    size = os.path.getsize(path)
    assert f"from byte {size - 1} of {size}" in f.detail and f.severity == "warning"
    with open(path, "ab") as fh:                # another size
        fh.write(b"x")
    f = only(run_check(jail), "differs", "/usr/bin/ls")
    assert "bytes in the jail" in f.detail
    assert Checker(compare=False).check(Target("t", jail)).problems == []


LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def flip(path: str, offset: int) -> int:
    """Invert one byte of `path` in place (offset < 0: from the end); its position."""
    with open(path, "r+b") as fh:
        pos = fh.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        byte = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return pos


@pytest.mark.parametrize("rel,offset", [
    ("/usr/bin/cat", -1),          # up to 64 KiB: one read a side; the last byte
    ("/usr/bin/cat", 0),           # the first byte
    ("/usr/bin/ls", -1),           # bigger: compared in 64 KiB pieces; the last byte
    ("/usr/bin/ls", 100_000),      # a middle byte beyond the first 64 KiB
    (LIBC, 1_000_001),             # deep inside a big library
])
def test_one_byte_anywhere_differs(jail: str, rel: str, offset: int) -> None:
    path = jail + rel
    assert stat.S_ISREG(os.lstat(path).st_mode)
    size = os.path.getsize(path)
    assert (size <= 65536) == (rel == "/usr/bin/cat"), size    # both ways are tested
    assert size > abs(offset) + 1
    pos = flip(path, offset)
    f = only(run_check(jail), "differs", rel)
    assert f"from byte {pos} of {size}" in f.detail
    flip(path, offset)                         # back to the host's bytes: clean again
    assert run_check(jail).problems == []


def test_same_inode_as_the_host_is_not_read(jail: str) -> None:
    """A jail file that is the host's file (a hard link) has its content: no read."""
    before = run_check(jail)
    path = f"{jail}/usr/bin/cat"
    size = os.path.getsize(path)
    os.unlink(path)
    try:
        os.link("/usr/bin/cat", path)
    except OSError as err:
        # the test jails live under /var/lib/pam_jail-test (tests/util.safe_tmpdir), on
        # the root file system with /usr on the Debian machines this suite is for
        pytest.fail(f"cannot hard-link /usr/bin/cat into the test jail: {err}")
    after = run_check(jail)
    assert kinds(after) == [("hardlink", "/usr/bin/cat")]     # a twin outside, as ever
    assert after.compared == before.compared
    assert after.compared_bytes == before.compared_bytes - 2 * size


def test_differs_in_a_directory_a_user_could_change(jail: str) -> None:
    """Files of a directory that is not root's are opened and checked to be the entry
    the walk saw (another path through the compare): still every byte compared."""
    os.chown(f"{jail}/usr/bin", 4321, 0)
    pos = flip(f"{jail}/usr/bin/cat", -1)
    report = run_check(jail)
    assert kinds(report) == [("differs", "/usr/bin/cat"), ("system-owner", "/usr/bin")]
    assert f"from byte {pos} of" in next(f.detail for f in report.problems
                                          if f.kind == "differs")


def test_compare_fds_is_exact() -> None:
    """compare_fds directly, both ways (bytes objects, 64 KiB pieces): equal files,
    one byte changed at many places, and a file that ends early."""
    base = safe_tmpdir("cmp")
    try:
        for size in (0, 1, 100, 65535, 65536, 65537, 200_000, 300_001):
            data = bytes(range(256)) * (size // 256 + 1)
            data = data[:size]
            with open(f"{base}/a", "wb") as fh:
                fh.write(data)
            places = sorted({0, size // 2, 65535, 65536, 131072, size - 1} - {-1})
            for pos in [None] + [p for p in places if p < size]:
                other = bytearray(data)
                if pos is not None:
                    other[pos] ^= 0x01
                with open(f"{base}/b", "wb") as fh:
                    fh.write(other)
                a, b = os.open(f"{base}/a", os.O_RDONLY), os.open(f"{base}/b", os.O_RDONLY)
                try:
                    assert check.compare_fds(a, b, size) == pos, (size, pos)
                finally:
                    os.close(a)
                    os.close(b)
            if size:
                with open(f"{base}/b", "wb") as fh:
                    fh.write(data[:-1])                  # shrank after the stat
                a, b = os.open(f"{base}/a", os.O_RDONLY), os.open(f"{base}/b", os.O_RDONLY)
                try:
                    assert check.compare_fds(a, b, size) == size - 1
                finally:
                    os.close(a)
                    os.close(b)
    finally:
        shutil.rmtree(base)


def test_quiet_entries_need_no_judging() -> None:
    """The walk skips the judges for root-owned regular files and directories without
    s-bits or g/o-write (check._QUIET_BITS): none of them can find anything there."""
    for kind, perm, rel in itertools.product(
            (stat.S_IFREG, stat.S_IFDIR), range(0o10000), ("/usr/bin/x", "/srv/x", "/tmp")):
        mode = kind | perm
        if mode & check._QUIET_BITS:
            continue
        assert safety.judge_setid(rel, mode) is None
        assert safety.judge_device(rel, mode, os.makedev(1, 1)) is None
        assert safety.judge_writable(rel, mode) is None
        assert safety.judge_system_entry(rel, mode, 0) is None


def plant_problems(root: str) -> None:
    os.chmod(f"{root}/usr/bin/ls", 0o4755)
    os.chmod(f"{root}/usr/bin/cat", 0o775)
    flip(f"{root}{LIBC}", 777_777)
    os.mknod(f"{root}/dev/sda", stat.S_IFBLK | 0o600, os.makedev(8, 0))
    os.symlink("../../../etc/shadow", f"{root}/usr/lib/evil")
    os.makedirs(f"{root}/srv/a/b", mode=0o755)
    for i in range(40):
        with open(f"{root}/srv/a/b/f{i}", "w") as fh:
            fh.write(f"{i}\n")
    os.link(f"{root}/srv/a/b/f1", f"{root}/srv/f1")          # both links in the jail
    outside = os.path.dirname(root) + "/outside"
    with open(outside, "w") as fh:
        fh.write("x\n")
    os.link(outside, f"{root}/srv/a/twin")                    # one outside


def test_worker_processes_find_the_same(jail: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plant_problems(jail)
    one = Checker(jobs=1).check(Target("t", jail))
    assert one.workers == 0
    assert {f.kind for f in one.problems} == {
        "setuid", "writable", "differs", "device", "symlink-outside", "hardlink"}
    monkeypatch.setattr(check, "_FORK_AFTER", 0)            # split even a small jail
    for jobs in (2, 3):
        many = Checker(jobs=jobs).check(Target("t", jail))
        assert many.workers == jobs - 1
        assert [f.as_dict() for f in many.findings] == [f.as_dict() for f in one.findings]
        assert (many.entries, many.compared, many.compared_bytes) == \
            (one.entries, one.compared, one.compared_bytes)


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_a_failed_worker_fails_the_check(jail: str, monkeypatch: pytest.MonkeyPatch,
                                         how: str) -> None:
    monkeypatch.setattr(check, "_FORK_AFTER", 0)
    parent = os.getpid()
    real_dir = check._Walk._dir

    def dying_dir(self: check._Walk, rel_dir: str, stack: list[str]) -> None:
        if os.getpid() != parent:
            if how == "signal":
                os.kill(os.getpid(), 9)
            raise RuntimeError("boom")
        real_dir(self, rel_dir, stack)

    monkeypatch.setattr(check._Walk, "_dir", dying_dir)
    want = "killed by signal 9" if how == "signal" else "exit status 1: RuntimeError: boom"
    with pytest.raises(PamJailError, match=f"worker [0-9]+ \\({want}\\).*incomplete"):
        Checker(jobs=2).check(Target("t", jail))
    assert cli.main(["check", "--jobs", "2", "-j", jail]) == 1


def test_check_imports_stay_light() -> None:
    """`pam-jail check` starts fast: no hashlib (OpenSSL), dataclasses, concurrent.futures
    or json at import time (json only with --json)."""
    code = ("import sys; import pam_jail.admin.check; print(sorted(m for m in ('hashlib', "
            "'_hashlib', 'dataclasses', 'concurrent.futures', 'json', 'threading', "
            "'inspect') if m in sys.modules))")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(check.__file__)))
    out = subprocess.run([sys.executable, "-I", "-c",
                          f"import sys; sys.path.insert(0, {repo!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_homes_are_not_compared(jail: str) -> None:
    # root's home in the jail's passwd is /root: a file there that differs from the
    # host's /root/.profile is the user's own, and so are its modes
    assert os.path.isfile("/root/.profile")
    with open(f"{jail}/etc/passwd") as fh:
        assert "root:x:0:0:root:/root:" in fh.read()
    os.makedirs(f"{jail}/root", mode=0o700, exist_ok=True)
    with open(f"{jail}/root/.profile", "w") as fh:
        fh.write("# not the host's\n")
    os.chmod(f"{jail}/root/.profile", 0o666)
    assert run_check(jail).problems == []
    os.chmod(f"{jail}/root/.profile", 0o4755)            # but setuid is reported there
    only(run_check(jail), "setuid", "/root/.profile")


def test_passwd_and_group_disagree(jail: str) -> None:
    with open(f"{jail}/etc/passwd", "a") as fh:
        fh.write("pjnosuchuser:x:4242:4242::/nonexistent:/bin/sh\n")
    f = only(run_check(jail), "passwd", "/etc/passwd")
    assert "pjnosuchuser" in f.detail and "not on the host" in f.detail
    with open(f"{jail}/etc/passwd") as fh:
        lines = [ln for ln in fh if not ln.startswith("pjnosuchuser:")]
    with open(f"{jail}/etc/passwd", "w") as fh:
        fh.writelines(ln.replace("root:x:0:0:", "root:x:0:42:") for ln in lines)
    f = only(run_check(jail), "passwd", "/etc/passwd")
    assert "group id 42 in the jail, 0 on the host" in f.detail
    with open(f"{jail}/etc/passwd", "w") as fh:
        fh.writelines(lines)
    disk = __import__("grp").getgrnam("disk")
    assert "root" not in disk.gr_mem
    with open(f"{jail}/etc/group", "a") as fh:
        fh.write(f"disk:x:{disk.gr_gid}:root\n")       # grants a group at login
    f = only(run_check(jail), "group", "/etc/group")
    assert "member root is not a member on the host" in f.detail


def test_mount_without_nosuid_is_info_only() -> None:
    base = safe_tmpdir("mnt")
    try:
        assert [f.kind for f in check_mount(base)] in ([], ["mount"])
        os.makedirs(f"{base}/m")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=1m", "tmpfs",
                        f"{base}/m"], check=True)
        try:
            assert check_mount(f"{base}/m") == []
            subprocess.run(["mount", "-o", "remount,suid,dev", f"{base}/m"], check=True)
            found = check_mount(f"{base}/m")
            assert [(f.kind, f.severity) for f in found] == [("mount", "info")]
            assert "nosuid,nodev" in found[0].detail
        finally:
            subprocess.run(["umount", f"{base}/m"], check=True)
    finally:
        shutil.rmtree(base)


# ------------------------------------------------------------------ the command

def modes(root: str, *rels: str) -> list[int]:
    return [stat.S_IMODE(os.lstat(root + r).st_mode) for r in rels]


def test_cli_fix_dry_run_then_fix(jail: str, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(f"{jail}/usr/bin/ls", 0o6755)
    os.chmod(f"{jail}/usr/bin/cat", 0o777)
    os.mknod(f"{jail}/dev/sda", stat.S_IFBLK | 0o600, os.makedev(8, 0))
    before = modes(jail, "/usr/bin/ls", "/usr/bin/cat")
    assert cli.main(["check", "--fix", "--dry-run", "--json", jail]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and not out["clean"]
    assert modes(jail, "/usr/bin/ls", "/usr/bin/cat") == before      # nothing changed
    assert sorted(out["jails"][0]["fixed"]) == sorted([
        f"chmod 6755 -> 0755 {jail}/usr/bin/ls", f"chmod 0777 -> 0755 {jail}/usr/bin/cat"])
    # the device has no safe automatic fix: it remains, so the exit status stays 1
    assert cli.main(["check", "--fix", jail]) == 1
    text = capsys.readouterr().out
    assert modes(jail, "/usr/bin/ls", "/usr/bin/cat") == [0o755, 0o755]
    assert "device" in text and "setuid" not in text.split("chmod")[0]
    os.unlink(f"{jail}/dev/sda")
    assert cli.main(["check", jail]) == 0
    assert "clean" in capsys.readouterr().out


def test_fix_refuses_a_swapped_entry(jail: str) -> None:
    from pam_jail.admin.check import fix
    from pam_jail.login.errors import PamJailError

    os.chmod(f"{jail}/usr/bin/ls", 0o4755)
    f = only(run_check(jail), "setuid", "/usr/bin/ls")
    os.rename(f"{jail}/usr/bin/ls", f"{jail}/usr/bin/ls.old")
    os.symlink("/usr/bin/ls.old", f"{jail}/usr/bin/ls")   # swapped for a link
    with pytest.raises(PamJailError, match="changed since it was checked"):
        fix(f)
    assert modes(jail, "/usr/bin/ls.old") == [0o4755]


def test_cli_json_clean_and_usage(jail: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--json", jail]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clean"] and out["jails"][0]["root"] == jail
    assert out["jails"][0]["compared_bytes"] > 0
    assert [f["kind"] for f in out["jails"][0]["findings"]] in ([], ["mount"])
    assert cli.main(["check", "--dry-run", jail]) == 2                  # needs --fix
    assert cli.main(["check", "-c", "/nonexistent/jails.ini"]) == 3


def test_targets_config_and_markers(jail: str, user_factory: Callable[..., User],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = build_jail(["basicshell"], users=[])
    base = safe_tmpdir("cfg")
    try:
        cfg = f"{base}/jails.ini"
        with open(cfg, "w") as fh:
            fh.write(f"[jails]\n  [[web]]\n  root = {jail}\n")
        os.chmod(cfg, 0o644)
        user = user_factory(home=f"{other}/./home/pjm", create_home=False)
        found = {t.root: t for t in targets([], cfg)}
        assert found[jail].name == "web"
        assert found[other].name == f"marker:{other}" and found[other].homes == {"/home/pjm"}
        assert [t.root for t in targets(["web"], cfg)] == [jail]
        with pytest.raises(Exception, match="no such jail"):
            targets(["nope"], cfg)
        # the marker user's home is a home: not compared, not judged for modes
        os.makedirs(f"{other}/home/pjm/etc", mode=0o777)
        with open(f"{other}/home/pjm/etc/hostname", "w") as fh:
            fh.write("mine\n")
        os.chmod(f"{other}/usr/bin/ls", 0o4755)
        assert cli.main(["check", "-c", cfg, "--progress"]) == 1
        captured = capsys.readouterr()
        assert f"jail web ({jail}): clean" in captured.out
        assert "setuid" in captured.out and f"{other}/usr/bin/ls" in captured.out
        # other jails on this host (markers of other users) may be listed too
        count = len(found)
        assert f"[1/{count}] " in captured.err and f"[{count}/{count}] " in captured.err
        assert user.name
    finally:
        remove_jail(other)
        shutil.rmtree(base)


def test_shared_base_links_are_expected_only_when_named() -> None:
    """A jail built with `init --shared BASE` is all hard links into BASE: reported as
    links out of the jail unless check is told the base (which must carry the marker)."""
    from pam_jail.admin.build import init_jail
    from pam_jail.login.errors import UsageError

    top = safe_tmpdir("shared")
    try:
        base, root = f"{top}/base", f"{top}/jail"
        init_jail(root, ["basicshell"], shared=base)
        plain = Checker(compare=False).check(Target("s", root))
        assert {f.kind for f in plain.findings if f.severity == "error"} == {"hardlink"}
        named = Checker(compare=False, shared=[base]).check(Target("s", root))
        assert [f for f in named.findings if f.severity == "error"] == []
        os.unlink(base + "/.pam_jail-shared-base")
        with pytest.raises(UsageError):
            Checker(shared=[base])
    finally:
        shutil.rmtree(top)


# ------------------------------------------------- homes private between customers

def test_judge_home_privacy() -> None:
    judge = safety.judge_home_privacy
    assert judge("/home/a", 0o40750, "a", []) is None           # own group, no one shares
    assert judge("/home/a", 0o40700, "g", ["b"]) is None        # no group bits
    assert "every user of the jail" in (judge("/home/a", 0o40701, "a", []) or "")
    assert "group g" in (judge("/home/a", 0o40710, "g", ["b"]) or "")
    assert safety.private_home_mode(0o42755, True) == 0o750
    assert safety.private_home_mode(0o40755, False) == 0o700


def test_home_another_customer_can_read_fails(
        jail: str, user_factory: Callable[..., User], group_factory: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Three customers of one jail: a and b mapped in jails.ini, c by its /./ home
    marker. a's home is group-open to a group b is a member of; b's is open to others;
    c's home is group-open to b's own (primary) group; d's home is 0750 with its own
    private group: only a, b and c FAIL, each with the chmod that fixes it, in the text
    and in --json. After those chmods the jail is clean again."""
    from testbed import unique

    shared = group_factory(unique("pjlg"))
    names = [unique("pjl") for _ in range(4)]
    # the passwd homes of mapped users: /home/NAME, inside the jail JAIL/home/NAME
    a, b, d = (user_factory(name=n, home=f"/home/{n}", create_home=False,
                            groups=[shared] if n == names[1] else [])
               for n in names[:3])
    c = user_factory(name=names[3], home=f"{jail}/./home/{names[3]}", create_home=False)
    import grp
    import pwd

    b_gid = pwd.getpwnam(b.name).pw_gid
    homes = {}
    for user, group, mode in ((a, grp.getgrnam(shared).gr_gid, 0o750), (b, b_gid, 0o755),
                              (c, b_gid, 0o750), (d, pwd.getpwnam(d.name).pw_gid, 0o750)):
        home = f"{jail}/home/{user.name}"
        os.makedirs(home)
        os.chown(home, pwd.getpwnam(user.name).pw_uid, group)
        os.chmod(home, mode)
        homes[user.name] = home
    base = safe_tmpdir("cfg")
    try:
        cfg = f"{base}/jails.ini"
        with open(cfg, "w") as fh:
            fh.write(f"[jails]\n  [[web]]\n  root = {jail}\n  mode = shell\n[users]\n"
                     f"{a.name} = web\n{d.name} = web\n[groups]\n{shared} = web\n")
        os.chmod(cfg, 0o644)
        # b is a customer through [groups]; a and d through [users]; c by its marker
        assert cli.main(["check", "-c", cfg, "--json", "--no-compare", "web"]) == 1
        report = json.loads(capsys.readouterr().out)["jails"][0]
        found = {f["path"]: f for f in report["findings"] if f["kind"] == "home-readable"}
        assert sorted(found) == sorted(homes[u.name] for u in (a, b, c)), report
        assert all(f["severity"] == "error" for f in found.values())
        assert f"group {shared}" in found[homes[a.name]]["detail"]
        assert b.name in found[homes[a.name]]["detail"]
        assert "every user of the jail" in found[homes[b.name]]["detail"]
        assert b.name in found[homes[c.name]]["detail"]     # b's primary group
        assert found[homes[a.name]]["hint"].startswith(f"chmod 0700 {homes[a.name]};")
        assert found[homes[b.name]]["hint"].startswith(f"chmod 0750 {homes[b.name]};")
        assert found[homes[c.name]]["hint"].startswith(f"chmod 0700 {homes[c.name]};")
        assert "2770" in found[homes[a.name]]["hint"]
        # the text output names the home and carries the hint
        assert cli.main(["check", "-c", cfg, "--no-compare", "web"]) == 1
        text = capsys.readouterr().out
        assert f"home-readable    error   {homes[b.name]}: /home/{b.name}: home readable" \
            in text and f"hint: chmod 0750 {homes[b.name]}" in text, text
        # the hints applied: clean (d was never a finding)
        os.chmod(homes[a.name], 0o700)
        os.chmod(homes[b.name], 0o750)
        os.chmod(homes[c.name], 0o700)
        assert cli.main(["check", "-c", cfg, "--json", "--no-compare", "web"]) == 0, \
            capsys.readouterr().out
        capsys.readouterr()
    finally:
        shutil.rmtree(base)


def test_text_output_escapes_file_names_a_user_made(jail: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A jailed user names a setgid file in its home with a newline, a forged finding
    after it and escape sequences: the text report keeps it on one escaped line (and
    --json carries the real name)."""
    home = f"{jail}/home/pjlforger"
    os.makedirs(home)
    name = "prog\n  setuid  error passwd: FORGED\x1b[2K\x1b[32m\u202e"
    with open(f"{home}/{name}", "w") as fh:
        fh.write("x")
    os.chmod(f"{home}/{name}", 0o2755)
    assert cli.main(["check", "--no-compare", jail]) == 1
    out = capsys.readouterr().out
    assert all(c.isprintable() for line in out.splitlines() for c in line), repr(out)
    assert "FORGED" in out and not [ln for ln in out.splitlines() if "FORGED" in ln
                                    and "prog\\x0a" not in ln], out
    assert "prog\\x0a  setuid  error passwd: FORGED\\x1b[2K\\x1b[32m\\u202e" in out
    assert cli.main(["check", "--json", "--no-compare", jail]) == 1
    found = json.loads(capsys.readouterr().out)["jails"][0]["findings"]
    assert [f["path"] for f in found if f["kind"] == "setuid"] == [f"{home}/{name}"]
