"""pam-jail list: real processes confined by the real login paths (pam-jail-shell as a
jailed user; the PAM module through libpam in a child process), found in /proc with the
right user and jail. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import (
    LIBDIR,
    SHELL_ENTRY,
    SYSTEM_CONFIG,
    JailedPair,
    build_jail,
    make_jailed_pair,
    remove_jail,
    undoing,
)
from sshd_harness import User

from pam_jail.admin import cli

pytestmark = pytest.mark.root

LSH = """\
[default]
programs = /bin/sleep
  [[rules]]
  /bin/sleep = any
"""

# The PAM path as sshd drives it: open_session as root (confines this process), then
# drop to the user, then the "session" (a sleep) runs inside the jail.
PAM_CHILD = r"""
import ctypes, os, pwd, sys, time
ctypes.CDLL = ctypes.PyDLL
import pamela
pamela.open_session(sys.argv[1], service=sys.argv[2])
pw = pwd.getpwnam(sys.argv[1])
os.setgroups([]); os.setgid(pw.pw_gid); os.setuid(pw.pw_uid)
print("confined", flush=True)
time.sleep(300)
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[JailedPair]:
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    with undoing() as undo:
        yield make_jailed_pair(LSH, undo)


def lsns(pid: int) -> dict[str, int]:
    """The mnt, pid and net namespace ids of a process, as util-linux's lsns reports
    them (the oracle for `ns`)."""
    r = subprocess.run(["lsns", "--json", "--task", str(pid), "--output", "NS,TYPE"],
                       capture_output=True, text=True, check=True)
    rows = json.loads(r.stdout)["namespaces"]
    return {row["type"]: int(row["ns"]) for row in rows if row["type"] in ("mnt", "pid", "net")}


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert cli.main(["list", "--json"]) == 0
    out: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return out


def wait_for(capsys: pytest.CaptureFixture[str],
             match: Callable[[dict[str, object]], bool]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while True:
        procs = listed(capsys)
        if any(match(p) for p in procs) or time.monotonic() > deadline:
            return procs
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], jail: str) -> None:
    """Kill the session: the process we started and whatever it left in its jail (a
    PID-namespace init survives its relay and ignores signals it has no handler for,
    except SIGKILL from outside)."""
    from pam_jail.admin.list import list_jailed

    proc.kill()
    proc.wait(timeout=10)
    for left in list_jailed({"j": jail}):
        os.kill(left.pid, 9)


def is_sleeper(p: dict[str, object]) -> bool:
    return str(p["command"]).startswith("/bin/sleep 271") and p["state"] == "jailed"


def test_shell_entry_process_is_listed(pair: JailedPair,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    user = pair.shell_user
    proc = subprocess.Popen([SHELL_ENTRY, "-c", "/bin/sleep 271"], user=user.uid,
                            group=user.gid, extra_groups=[], cwd="/",
                            env={"PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE)
    try:
        procs = wait_for(capsys, is_sleeper)
        sleeper = [p for p in procs if str(p["command"]).startswith("/bin/sleep")]
        assert len(sleeper) == 1, (procs, proc.poll())
        s = sleeper[0]
        assert (s["user"], s["uid"], s["jail"], s["root"], s["state"]) == \
            (user.name, user.uid, "shellj", pair.shell_jail, "jailed")
        assert s["own_mntns"] is True and s["nspid"] == 1     # PID 1 of its namespace
        assert s["ns"] == lsns(int(str(s["pid"])))            # the kernel's ids (lsns)
        assert s["ns"]["pid"] != lsns(os.getpid())["pid"]     # type: ignore[index]
        # pam-jail-shell itself (the relay waiting for its PID-namespace init) is in the
        # jail too, outside the PID namespace
        relay = [p for p in procs if p["pid"] == proc.pid]
        assert len(relay) == 1 and relay[0]["state"] == "jailed"
        assert relay[0]["jail"] == "shellj" and relay[0]["user"] == user.name
        assert relay[0]["nspid"] == proc.pid and s["ppid"] == proc.pid
        # the jail no longer known (removed from the config): still listed, as unknown
        from pam_jail.admin.list import list_jailed
        unknown = {p.pid: p for p in list_jailed({})}
        assert unknown[int(str(s["pid"]))].state == "unknown"
        assert unknown[proc.pid].jail == "?"
        # nothing of the host is listed
        assert all(p["jail"] in ("shellj", "pamj") or p["state"] == "unknown" for p in procs)
        assert os.getpid() not in [p["pid"] for p in procs]
    finally:
        stop(proc, pair.shell_jail)
    time.sleep(0.2)
    after = listed(capsys)
    assert not [p for p in after if "sleep 271" in str(p["command"])]


def test_pam_path_process_is_listed(pair: JailedPair, pam_service: Callable[..., str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    user = pair.pam_user
    svc = pam_service(SYSTEM_CONFIG)
    venv_python = os.path.join(os.path.dirname(sys.executable), "python")
    proc = subprocess.Popen([venv_python, "-c", PAM_CHILD, user.name, svc],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"confined\n", proc.stderr.read() if proc.poll() is not None else line
        procs = listed(capsys)
        mine = [p for p in procs if p["pid"] == proc.pid]
        assert len(mine) == 1, procs
        assert (mine[0]["user"], mine[0]["jail"], mine[0]["root"], mine[0]["state"]) == \
            (user.name, "pamj", pair.pam_jail, "jailed")
        assert mine[0]["own_mntns"] is True and mine[0]["nspid"] == proc.pid  # no PID ns
        out = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "list"],
                             capture_output=True, text=True, check=True).stdout
        row = [ln for ln in out.splitlines() if ln.split()[:1] == [str(proc.pid)]]
        assert len(row) == 1 and user.name in row[0] and "pamj" in row[0]
    finally:
        stop(proc, pair.pam_jail)
    assert proc.pid not in [p["pid"] for p in listed(capsys)]


# A jailed process that chooses an argv to forge `pam-jail list` rows: a newline, a fake
# row after it, ANSI escapes (erase the line, colour), a bidi override, a backslash.
FORGED_ARGV0 = ("sleep\n      1       1 root         -                jailed      1 host  "
                "/usr/sbin/sshd -D\x1b[2K\x1b[31m\u202eevil\\x0a")
PAM_FORGER = PAM_CHILD.replace('time.sleep(300)',
                               f'os.execv("/bin/sleep", [{FORGED_ARGV0!r}, "293"])')


def test_forged_command_line_is_one_escaped_row(pair: JailedPair,
                                                pam_service: Callable[..., str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A real process in a real jail (the PAM path) with a newline and escape sequences
    in its argv: the text table has exactly one row for it, escaped, and no raw control
    character anywhere; --json keeps the real argv."""
    user = pair.pam_user
    svc = pam_service(SYSTEM_CONFIG)
    venv_python = os.path.join(os.path.dirname(sys.executable), "python")
    proc = subprocess.Popen([venv_python, "-c", PAM_FORGER, user.name, svc],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"confined\n", proc.stderr.read() if proc.poll() is not None else line
        procs = wait_for(capsys, lambda p: str(p["command"]).endswith(" 293"))
        mine = [p for p in procs if p["pid"] == proc.pid]
        assert len(mine) == 1 and mine[0]["command"] == f"{FORGED_ARGV0} 293", procs
        out = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "list"],
                             capture_output=True, text=True, check=True).stdout
        rows = out.split("\n")
        assert rows[-1] == ""                            # ends with a newline, nothing after
        # nothing but the header and one row a process (the listing may grow meanwhile)
        assert len(rows) - 2 >= len(procs) - 1 and len(rows) - 2 <= len(procs) + 4, out
        assert all(c.isprintable() for row in rows for c in row), repr(out)
        assert [r for r in rows if r.split()[:1] == ["1"]] == [], out   # no forged row
        mine_rows = [r for r in rows if r.split()[:1] == [str(proc.pid)]]
        assert len(mine_rows) == 1, out
        assert mine_rows[0].endswith(
            "sleep\\x0a      1       1 root         -                jailed      1 host  "
            "/usr/sbin/sshd -D\\x1b[2K\\x1b[31m\\u202eevil\\\\x0a 293"), mine_rows
        assert sum("/usr/sbin/sshd -D" in r for r in rows) == 1, out
    finally:
        stop(proc, pair.pam_jail)


# uchroot as the user (the tree's pam-jail, system interpreter), to put a real process
# into a jail that only the user's /./ home marker names
BOOT = (f"import sys; sys.path[:0] = [{LIBDIR!r}]; "
        "sys.path += ['/usr/lib/python3/dist-packages']; "
        "from pam_jail.admin.cli import main; sys.exit(main(sys.argv[1:]))")


def test_marker_only_jail_process_is_listed_with_namespace_ids(
        user_factory: Callable[..., User], system_config: Callable[[str], str],
        capsys: pytest.CaptureFixture[str]) -> None:
    root = build_jail(["basicshell"], [])
    proc: subprocess.Popen[bytes] | None = None
    try:
        user = user_factory("/bin/bash", f"{root}/./home/pjmk", create_home=False)
        os.makedirs(f"{root}/home/pjmk", mode=0o755)
        os.chown(f"{root}/home/pjmk", user.uid, user.gid)
        system_config("[jails]\n")                  # jails.ini knows no jail at all
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
             "--reset-env", "--", "/usr/bin/python3", "-IS", "-c", BOOT, "uchroot", "--",
             "/bin/sleep", "283"], stderr=subprocess.PIPE, cwd="/")

        def is_it(p: dict[str, object]) -> bool:
            return str(p["command"]) == "/bin/sleep 283"

        procs = wait_for(capsys, is_it)
        mine = [p for p in procs if is_it(p)]
        assert len(mine) == 1, (procs, proc.poll(),
                                proc.stderr.read() if proc.poll() is not None and proc.stderr
                                else "")
        s = mine[0]
        assert (s["user"], s["uid"], s["jail"], s["root"], s["state"]) == \
            (user.name, user.uid, f"marker:{root}", root, "jailed")
        pid = int(str(s["pid"]))
        kernel = lsns(pid)
        host = lsns(os.getpid())                            # the host side: this test
        assert s["ns"] == kernel, (s["ns"], kernel)
        ns = s["ns"]
        assert isinstance(ns, dict)
        for kind in ("mnt", "pid", "net"):                  # uchroot: all three its own
            assert ns[kind] != host[kind], kind
        assert s["nspid"] == 1 and s["own_mntns"] is True
        # the text output shows the marker jail too
        out = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "list"],
                             capture_output=True, text=True, check=True).stdout
        row = [ln for ln in out.splitlines() if ln.split()[:1] == [str(pid)]]
        assert len(row) == 1 and "marker:" in row[0] and user.name in row[0], out
        # the marker gone (usermod -d): the process is no longer listed as that jail
        subprocess.run(["usermod", "-d", f"/home/{user.name}", user.name], check=True)
        assert not [p for p in listed(capsys) if p["pid"] == pid and p["state"] == "jailed"]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            from pam_jail.admin.list import list_jailed
            for left in list_jailed({"j": root}):
                os.kill(left.pid, 9)
        remove_jail(root)
