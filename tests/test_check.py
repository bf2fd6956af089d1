"""pam-jail check: each problem planted in a real jail built by the builder, and the
checker must report exactly it (and nothing else); a fresh jail reports nothing; --fix
repairs modes and s-bits, --dry-run changes nothing. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import User, build_jail, remove_jail
from util import safe_tmpdir

from pam_jail import cli, safety
from pam_jail.check import Checker, Finding, JailReport, Target, check_mount, targets

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
    assert report.hashed_bytes > 1_000_000                   # whole files, both sides
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
    assert "sha256" in f.detail and f.severity == "warning"
    with open(path, "ab") as fh:                # another size
        fh.write(b"x")
    f = only(run_check(jail), "differs", "/usr/bin/ls")
    assert "bytes in the jail" in f.detail
    assert Checker(compare=False).check(Target("t", jail)).problems == []


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
    from pam_jail.check import fix
    from pam_jail.errors import PamJailError

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
    from pam_jail.build import init_jail
    from pam_jail.errors import UsageError

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
