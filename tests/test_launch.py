"""pam-jail chrootlaunch (root starts a program in a jail as a user) and pam-jail uchroot
(a user enters their own jail), with real users, real jails (the builder) and a static
probe (tests/escape/pjescape.c) run inside the jail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import build_jail, remove_jail
from sshd_harness import User

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROBE = "/usr/local/bin/pjescape"
MARKER = "/var/lib/pam_jail-test/launch-host-marker"
# the tree's pam-jail, run by the system interpreter (what a user would run; the
# .venv is root's test tooling)
BOOT = (f"import sys; sys.path[:0] = [{REPO!r}]; "
        "sys.path += ['/usr/lib/python3/dist-packages']; "
        "from pam_jail.cli import main; sys.exit(main(sys.argv[1:]))")


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


def test_help_pages() -> None:
    for cmd in ("uchroot", "chrootlaunch"):
        r = subprocess.run([sys.executable, "-m", "pam_jail.cli", cmd, "--help"],
                           capture_output=True, text=True, cwd=REPO, check=True)
        assert "exit status" in r.stdout and "examples" in r.stdout
