"""pam-jail chrootlaunch (root starts a program in a jail as a user) and pam-jail uchroot
(a user enters their own jail), with real users, real jails (the builder) and a static
probe (tests/escape/pjescape.c) run inside the jail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import LIBDIR, build_jail, remove_jail
from sshd_harness import User
from syslog_capture import SyslogCapture

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROBE = "/usr/local/bin/pjescape"
MARKER = "/var/lib/pam_jail-test/launch-host-marker"
# the installed pam-jail (scripts/test installs the tree first), run by the system
# interpreter as a user would: the checkout itself may not be readable by other users
BOOT = (f"import sys; sys.path[:0] = [{LIBDIR!r}]; "
        "sys.path += ['/usr/lib/python3/dist-packages']; "
        "from pam_jail.admin.cli import main; sys.exit(main(sys.argv[1:]))")


def pam_jail(*args: str, user: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/python3", "-IS", "-c", BOOT, *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


@dataclass
class World:
    user: User
    other: User
    root: str
    config: str


def _install_probe(root: str) -> None:
    os.makedirs(f"{root}/usr/local/bin", mode=0o755, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O1", "-o", f"{root}{PROBE}",
                    f"{HERE}/escape/pjescape.c"], check=True)
    os.chmod(f"{root}{PROBE}", 0o755)


@pytest.fixture
def world(user_factory: Callable[..., User],
          system_config: Callable[[str], str]) -> Iterator[World]:
    user = user_factory("/bin/bash", create_home=False)
    other = user_factory("/bin/bash", create_home=False)
    root = build_jail(["basicshell"], [user.name])
    try:
        _install_probe(root)
        assert os.path.isdir(f"{root}/home/{user.name}")  # the builder made it
        with open(MARKER, "w") as fh:
            fh.write("host\n")
        config = system_config(f"[jails]\n  [[lj]]\n  root = {root}\n  mode = pam\n"
                               f"[users]\n{user.name} = lj\n")
        yield World(user, other, root, config)
    finally:
        remove_jail(root)
        if os.path.exists(MARKER):
            os.unlink(MARKER)


def _ids(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split())


# ------------------------------------------------------------------ chrootlaunch

def test_chrootlaunch_runs_inside_as_user_without_privileges(world: World) -> None:
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "ids")
    assert r.returncode == 0, r.stderr
    ids = _ids(r.stdout.strip())
    assert ids["uid"] == ids["euid"] == str(world.user.uid)
    assert ids["gid"] == ids["egid"] == str(world.user.gid)
    assert ids["capeff"] == "000000000" and ids["capprm"] == "000000000", r.stdout
    # no way back to root, no fd to the host, the host's files invisible
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "setuid0")
    assert "ESCAPED" not in r.stdout and r.stdout.count("blocked") == 2, r.stdout
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "fds",
                 MARKER)
    assert r.returncode == 0 and "blocked" in r.stdout, r.stdout
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "read",
                 MARKER)
    assert "blocked" in r.stdout, r.stdout


def test_chrootlaunch_no_new_privs_and_bounding_set(world: World) -> None:
    """chrootlaunch mounts no /proc in the jail (no PID namespace): the kernel's view
    of the launched process is read from the host's /proc while it runs."""
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-IS", "-c", BOOT, "chrootlaunch", "-j", "lj", "-u",
         world.user.name, "--", "/bin/sleep", "30"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        status = ""
        for _ in range(100):
            with open(f"/proc/{proc.pid}/status") as fh:
                status = fh.read()
            if f"Uid:\t{world.user.uid}" in status and "sleep" in status:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Name"].strip() == "sleep", status
        assert fields["NoNewPrivs"].strip() == "1"
        assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0
        assert int(fields["CapPrm"], 16) == 0 and int(fields["CapAmb"], 16) == 0
        assert fields["Uid"].split() == [str(world.user.uid)] * 4
        assert os.stat(f"/proc/{proc.pid}/root").st_ino == os.stat(world.root).st_ino
        # its own mount and net namespaces
        assert os.readlink(f"/proc/{proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        proc.kill()
        proc.wait()
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "userns")
    assert "blocked" in r.stdout, r.stdout


def test_chrootlaunch_group_and_env(world: World, group_factory: Callable[..., str]) -> None:
    import grp

    group = group_factory()
    gid = grp.getgrnam(group).gr_gid
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "-g", group, "-e",
                 "PJ_X=1", "--", PROBE, "ids")
    assert r.returncode == 0, r.stderr
    assert _ids(r.stdout)["gid"] == str(gid)
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "-e", "PJ_X=1",
                 "--", PROBE, "env")
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert env["PJ_X"] == "1" and env["USER"] == world.user.name
    assert "SSH_AUTH_SOCK" not in env and "PYTEST_CURRENT_TEST" not in env


@pytest.mark.parametrize("user", ["root", "0"])
def test_chrootlaunch_refuses_root(world: World, user: str) -> None:
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", user, "--", PROBE, "ids")
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "uid 0 refused" in r.stderr and r.stdout == ""


def test_chrootlaunch_refuses_group_0_unknowns(world: World) -> None:
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "-g", "root", "--",
                 PROBE, "ids")
    assert r.returncode == 5 and "group 0" in r.stderr, r.stderr
    r = pam_jail("chrootlaunch", "-j", "nosuchjail", "-u", world.user.name, "--", PROBE)
    assert r.returncode == 5 and "no such jail" in r.stderr, r.stderr
    r = pam_jail("chrootlaunch", "-j", "/srv", "-u", world.user.name, "--", PROBE)
    assert r.returncode == 5 and "no such jail" in r.stderr, r.stderr
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", "pjnosuchuser", "--", PROBE)
    assert r.returncode == 5 and "unknown user" in r.stderr, r.stderr
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name)
    assert r.returncode == 2 and "no program" in r.stderr, r.stderr


def test_chrootlaunch_refuses_unsafe_jail(world: World) -> None:
    os.chmod(f"{world.root}/etc", 0o777)
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "ids")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert f"{world.root}/etc: writable by group or other" in r.stderr
    assert r.stdout == ""
    os.chmod(f"{world.root}/etc", 0o755)
    os.chown(world.root, world.user.uid, 0)
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "ids")
    assert r.returncode == 4 and "not root" in r.stderr, r.stderr
    os.chown(world.root, 0, 0)


def test_chrootlaunch_dry_run_changes_nothing(world: World) -> None:
    import json

    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--dry-run", "--json",
                 "--", PROBE, "write", "/dryrun")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["uid"] == world.user.uid and plan["root"] == world.root
    assert plan["argv"] == [PROBE, "write", "/dryrun"]
    assert not os.path.exists(f"{world.root}/dryrun")


def test_chrootlaunch_needs_root(world: World) -> None:
    r = pam_jail("chrootlaunch", "-j", "lj", "-u", world.user.name, "--", PROBE, "ids",
                 user=world.user.name)
    assert r.returncode == 5 and "must be run as root" in r.stderr, r.stderr


# ---------------------------------------------------------------------- uchroot

def test_uchroot_enters_own_jail_unprivileged(world: World) -> None:
    r = pam_jail("uchroot", "--", PROBE, "ids", user=world.user.name)
    assert r.returncode == 0, r.stderr
    ids = _ids(r.stdout.strip())
    assert ids["uid"] == ids["euid"] == str(world.user.uid)
    assert ids["capeff"] == "000000000" and ids["capprm"] == "000000000", r.stdout
    r = pam_jail("uchroot", "-j", "lj", "--", PROBE, "fds", MARKER, user=world.user.name)
    assert r.returncode == 0 and "blocked" in r.stdout, r.stdout
    r = pam_jail("uchroot", "--", PROBE, "setuid0", user=world.user.name)
    assert "ESCAPED" not in r.stdout and "blocked" in r.stdout, r.stdout
    r = pam_jail("uchroot", "--", PROBE, "userns", user=world.user.name)
    assert "blocked" in r.stdout, r.stdout
    # inside the jail: its home, its files; the status of the program comes back
    r = pam_jail("uchroot", "--", "/bin/bash", "-c", "pwd; ls /; exit 7",
                 user=world.user.name)
    assert r.returncode == 7, r.stderr
    lines = r.stdout.split()
    assert lines[0] == f"/home/{world.user.name}" and "usr" in lines
    assert "var" not in lines and "work" not in lines


@pytest.mark.parametrize("private", ["yes", "no"])
def test_uchroot_gets_the_customers_private_view(world: World, private: str) -> None:
    """A shared jail entered with uchroot shows the user what a login shows (plan
    "userns", private = yes by default): other customers' homes hidden, /tmp the
    session's own, etc/passwd naming the user alone; private = no shows the jail as it
    is (the test can fail)."""
    neighbour = f"{world.root}/home/pjneighbour"
    os.makedirs(neighbour, mode=0o755, exist_ok=True)
    with open(f"{neighbour}/notes.txt", "w") as fh:
        fh.write("a neighbour's\n")
    with open(f"{world.root}/tmp/planted", "w") as fh:
        fh.write("planted\n")
    with open(world.config) as fh:
        saved = fh.read()
    try:
        with open(world.config, "w") as fh:
            fh.write(saved.replace("  mode = pam\n", f"  mode = pam\n  private = {private}\n"))
        r = pam_jail("uchroot", "--", "/bin/bash", "-c", "ls /home; echo ==; ls /tmp",
                     user=world.user.name)
        assert r.returncode == 0, r.stderr
        homes, _, tmp = r.stdout.partition("==")
        if private == "yes":
            assert homes.split() == [world.user.name] and tmp.split() == [], r.stdout
        else:
            assert "pjneighbour" in homes.split() and "planted" in tmp.split(), r.stdout
    finally:
        with open(world.config, "w") as fh:
            fh.write(saved)
        shutil.rmtree(neighbour, ignore_errors=True)
        os.unlink(f"{world.root}/tmp/planted")


def test_uchroot_refusals(world: World) -> None:
    r = pam_jail("uchroot", "--", PROBE, "ids", user=world.other.name)
    assert r.returncode == 5 and "may enter no jail" in r.stderr, r.stderr
    r = pam_jail("uchroot", "-j", "elsewhere", "--", PROBE, "ids", user=world.user.name)
    assert r.returncode == 5 and "not allowed" in r.stderr, r.stderr
    r = pam_jail("uchroot", "--", PROBE, "ids")
    assert r.returncode == 5 and "as root: refused" in r.stderr, r.stderr
    os.chmod(f"{world.root}/usr", 0o775)
    try:
        r = pam_jail("uchroot", "--", PROBE, "ids", user=world.user.name)
        assert r.returncode == 4 and "/usr: writable" in r.stderr, r.stderr
        assert r.stdout == ""
    finally:
        os.chmod(f"{world.root}/usr", 0o755)


def test_uchroot_dry_run(world: World) -> None:
    import json

    r = pam_jail("uchroot", "--dry-run", "--json", user=world.user.name)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"user": world.user.name, "jail": "lj", "root": world.root,
                   "home": f"/home/{world.user.name}", "argv": ["/bin/bash"]}


# ------------------------------------------------------- uchroot.ini (jk_uchroot.ini)

UCHROOT_INI = "/etc/pam_jail/uchroot.ini"


def as_user(user: User, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real command, run as the user (setpriv: real+effective uid/gid, the user's
    supplementary groups, a fresh environment)."""
    cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
           "--reset-env", "--", "/usr/bin/python3", "-IS", "-c", BOOT, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


@pytest.fixture
def uchroot_ini() -> Iterator[Callable[[str], str]]:
    """Write /etc/pam_jail/uchroot.ini (root-owned 0644); the old one (or none) comes
    back afterwards."""
    saved = None
    if os.path.exists(UCHROOT_INI):
        with open(UCHROOT_INI) as fh:
            saved = fh.read()

    def write(text: str) -> str:
        tmp = UCHROOT_INI + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o644)
        os.rename(tmp, UCHROOT_INI)
        return UCHROOT_INI

    try:
        yield write
    finally:
        if saved is not None:
            write(saved)
        elif os.path.exists(UCHROOT_INI):
            os.unlink(UCHROOT_INI)


@dataclass
class Extra:
    world: World
    group: str
    member: User                       # no login jail; in `group`
    lj2: str
    lj3: str


@pytest.fixture
def extra(world: World, user_factory: Callable[..., User],
          group_factory: Callable[..., str], system_config: Callable[[str], str],
          uchroot_ini: Callable[[str], str]) -> Iterator[Extra]:
    """Jails lj (alice's login jail), lj2 and lj3 in jails.ini; uchroot.ini gives the
    user lj2 and the group lj3; `member` (no login jail) is in the group. Each jail has
    a root-owned /which naming it."""
    group = group_factory()
    member = user_factory("/bin/bash", groups=[group], create_home=False)
    lj2 = build_jail(["basicshell"], [world.user.name])
    lj3 = build_jail(["basicshell"], [member.name])
    try:
        for name, root in (("lj", world.root), ("lj2", lj2), ("lj3", lj3)):
            with open(f"{root}/which", "w") as fh:
                fh.write(f"{name}\n")
        system_config(f"[jails]\n  [[lj]]\n  root = {world.root}\n"
                      f"  [[lj2]]\n  root = {lj2}\n  [[lj3]]\n  root = {lj3}\n"
                      f"[users]\n{world.user.name} = lj\n")
        uchroot_ini(f"[users]\n  [[{world.user.name}]]\n  jails = lj2\n"
                    f"[groups]\n  [[{group}]]\n  jails = lj3,\n")
        yield Extra(world, group, member, lj2, lj3)
    finally:
        remove_jail(lj2)
        remove_jail(lj3)


def test_uchroot_ini_lets_user_and_group_enter_more_jails(extra: Extra) -> None:
    import json

    user, member = extra.world.user, extra.member
    r = as_user(user, "uchroot", "--list", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert listed["user"] == user.name
    assert [(j["jail"], j["root"], j["source"], j["safe"]) for j in listed["jails"]] == [
        ("lj", extra.world.root, "user", True),
        ("lj2", extra.lj2, "uchroot.ini user", True)]
    r = as_user(user, "uchroot", "--list")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stdout
    assert r.stdout.splitlines()[1].split("\t") == [
        "lj2", extra.lj2, "uchroot.ini user", "ok"]
    # no -j: the login jail; -j lj2 (by name or root): the extra one, as the user
    r = as_user(user, "uchroot", "--", "/bin/cat", "/which")
    assert (r.returncode, r.stdout) == (0, "lj\n"), r.stderr
    r = as_user(user, "uchroot", "-j", "lj2", "--", "/bin/bash", "-c", "cat /which; id -u")
    assert (r.returncode, r.stdout.split()) == (0, ["lj2", str(user.uid)]), r.stderr
    r = as_user(user, "uchroot", "-j", extra.lj2, "--", "/bin/cat", "/which")
    assert (r.returncode, r.stdout) == (0, "lj2\n"), r.stderr
    # the group's jail: a member with no login jail enters it without -j (the only one)
    r = as_user(member, "uchroot", "--list", "--json")
    assert [(j["jail"], j["source"]) for j in json.loads(r.stdout)["jails"]] == [
        ("lj3", f"uchroot.ini group:{extra.group}")], r.stdout
    r = as_user(member, "uchroot", "--", "/bin/cat", "/which")
    assert (r.returncode, r.stdout) == (0, "lj3\n"), r.stderr
    # a jail turned unsafe shows in --list, and entering it is refused
    os.chmod(f"{extra.lj2}/etc", 0o777)
    try:
        r = as_user(user, "uchroot", "--list", "--json")
        row = json.loads(r.stdout)["jails"][1]
        assert row["safe"] is False and f"{extra.lj2}/etc: writable" in row["problem"]
        r = as_user(user, "uchroot", "-j", "lj2", "--", "/bin/cat", "/which")
        assert r.returncode == 4 and r.stdout == "", r.stderr
    finally:
        os.chmod(f"{extra.lj2}/etc", 0o755)


def test_uchroot_refusals_one_line_and_one_syslog_line(extra: Extra,
                                                       syslog: SyslogCapture) -> None:
    user, member = extra.world.user, extra.member
    cases = [
        (user, ["-j", "lj3"], 5, f"pam_jail: uchroot lj3: not allowed for user {user.name} "
                                 "(allowed: lj, lj2)", "lj3"),
        (member, ["-j", "lj"], 5, f"pam_jail: uchroot lj: not allowed for user "
                                  f"{member.name} (allowed: lj3)", "lj"),
        (member, ["-j", "nosuch"], 5, "pam_jail: uchroot nosuch: not allowed", "nosuch"),
    ]
    for who, args, status, first_line, jail in cases:
        syslog.clear()
        r = as_user(who, "uchroot", *args, "--", "/bin/cat", "/which")
        assert r.returncode == status and r.stdout == "", (args, r.stdout, r.stderr)
        assert r.stderr.splitlines()[0].startswith(first_line), r.stderr
        logged = syslog.wait_for("uchroot refused", f"user={who.name}")
        assert len(logged) == 1, syslog.lines
        assert f"jail={jail} " in logged[0] and 'reason="uchroot ' in logged[0]
        assert logged[0].startswith(f"<{4 << 3 | 5}>")               # auth.notice
    # root: refused and logged too
    syslog.clear()
    r = pam_jail("uchroot", "--list")
    assert r.returncode == 5 and "as root: refused" in r.stderr
    assert syslog.wait_for("uchroot refused", "user=0 ")


def test_uchroot_ini_checked_like_jails_ini(extra: Extra, syslog: SyslogCapture,
                                           uchroot_ini: Callable[[str], str]) -> None:
    user, member = extra.world.user, extra.member
    os.chown(UCHROOT_INI, user.uid, 0)                       # not root's: refused
    r = as_user(user, "uchroot", "--list")
    assert r.returncode == 3 and "unsafe config file" in r.stderr, r.stderr
    assert f"{UCHROOT_INI}: owned by uid {user.uid}, not root" in r.stderr
    assert syslog.wait_for("uchroot refused", f"user={user.name}", "unsafe config")
    os.chown(UCHROOT_INI, 0, 0)
    os.chmod(UCHROOT_INI, 0o666)
    r = as_user(user, "uchroot", "--list")
    assert r.returncode == 3 and "writable by group or other" in r.stderr, r.stderr
    uchroot_ini(f"[users]\n  [[{user.name}]]\n  jails = lj2, elsewhere\n  shell = x\n"
                "  [[root]]\n  jails = lj\n[hosts]\n")
    r = as_user(user, "uchroot", "--list")
    assert r.returncode == 3, r.stderr
    for needle in ("not defined in /etc/pam_jail/jails.ini: elsewhere",
                   "unknown key 'shell'", "root is never put in a jail", "'hosts'"):
        assert needle in r.stderr, r.stderr
    # two extra jails and no login jail: -j must choose
    uchroot_ini(f"[users]\n  [[{member.name}]]\n  jails = lj2\n"
                f"[groups]\n  [[{extra.group}]]\n  jails = lj3\n")
    r = as_user(member, "uchroot", "--", "/bin/cat", "/which")
    assert r.returncode == 5 and "name one with -j (allowed: lj2, lj3)" in r.stderr
    r = as_user(member, "uchroot", "-j", "lj2", "--", "/bin/cat", "/which")
    assert (r.returncode, r.stdout) == (0, "lj2\n"), r.stderr
    # no uchroot.ini at all: only the login jail
    os.unlink(UCHROOT_INI)
    r = as_user(member, "uchroot", "--list")
    assert r.returncode == 0 and "may enter no jail" in r.stdout, r.stdout
    r = as_user(user, "uchroot", "-j", "lj2", "--", "/bin/cat", "/which")
    assert r.returncode == 5 and "(allowed: lj)" in r.stderr, r.stderr


def test_help_pages() -> None:
    for cmd in ("uchroot", "chrootlaunch"):
        r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", cmd, "--help"],
                           capture_output=True, text=True, cwd=REPO, check=True)
        assert "exit status" in r.stdout and "examples" in r.stdout
