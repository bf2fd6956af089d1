"""Mode pam's PID-namespace init (confine.spawn_namespace_init) through a real sshd: it
shows its own title while the session runs, and when the session ends its parent, sshd's
per-connection monitor (`sshd: USER [priv]`), reaps it at pam_close_session — at a
normal logout, when the client is killed, and when the session left a background
process — and no logout hangs.

What sshd 9.2 does (strace of a real login): the monitor calls pam_close_session before
it reaps its privsep child (`sshd: USER@notty`, PID 2 of the namespace), which an
exiting PID 1 must wait for: at a normal logout the client's disconnect ends the privsep
child (cleanup_exit(255)), the monitor sees the EOF and calls close_session, then _exit
without ever reaping it; when the client is killed, the privsep child sends
MONITOR_REQ_TERM and exits, the monitor calls close_session, then waitpid.

To tell "reaped by its parent" from "reaped by whoever inherits it", sshd runs under a
child subreaper that reaps nothing but sshd: an init its parent did not reap is
reparented there and stays a zombie, where the host's init would reap it a few seconds
later and hide the difference."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import LIBDIR, PAM_STACK, make_jailed_pair, undoing
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture
from util import safe_tmpdir, wait_until

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH = """\
[default]
programs = /usr/bin/id, /bin/sleep
allow_shell = yes
shell = /bin/bash
  [[rules]]
  /usr/bin/id = none
  /bin/sleep = any
"""

# sshd's parent: a child subreaper (PR_SET_CHILD_SUBREAPER = 36) that waits for sshd only
# (the harness's SIGTERM to the process group ends sshd; this one outlives it to reap it)
SUBREAPER = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("prctl PR_SET_CHILD_SUBREAPER: " + os.strerror(ctypes.get_errno()))
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
"""


@dataclass
class World:
    sshd: Sshd
    user: User
    subreaper: int       # sshd's parent
    listener: int        # sshd -D


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of `pid`, or None when it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _children(ppid: int) -> list[tuple[int, str]]:
    """(pid, state) of every child of `ppid`, zombies included."""
    found = []
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[1] == ppid:
            found.append((pid, st[0]))
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _ps(pid: int, field: str) -> str:
    """What ps shows: `args` (the command line) or `comm`."""
    return subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True,
                          text=True, timeout=10, check=False).stdout.strip()


def _processes_of(uid: int) -> list[str]:
    found = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(f"{pid} {_cmdline(pid)}")
    return found




@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
        pair = make_jailed_pair(LSH, undo, pam_lsh=LSH)
        sshd = Sshd(PAM_STACK, "AcceptEnv LANG\n" + generate(load_config()),
                    wrapper=["/usr/bin/python3", "-I", "-c", SUBREAPER])
        sshd.start()
        undo.append(sshd.stop)
        assert sshd.proc is not None
        wrapper = sshd.proc.pid
        listeners = [pid for pid, _state in _children(wrapper)]
        assert len(listeners) == 1, listeners
        yield World(sshd, pair.pam_user, wrapper, listeners[0])


def _init_of(world: World) -> tuple[int, int]:
    """(PID 1, its parent) of the user's running session, as ps names the init."""
    title = f"pam_jail: init of {world.user.name}'s session in pamj"
    found: list[int] = []

    def seen() -> bool:
        found[:] = [pid for pid in _all_pids() if _cmdline(pid).startswith(title)]
        return bool(found)

    assert wait_until(seen, 15), "no init with its own title while the session runs"
    assert len(found) == 1, found
    st = _stat(found[0])
    assert st is not None and st[0] != "Z", st
    return found[0], st[1]


def _assert_title(world: World, init: int, monitor: int) -> None:
    """ps shows the init's own title, not the `sshd: USER [priv]` of its parent."""
    args = _ps(init, "args")
    assert args.startswith(f"pam_jail: init of {world.user.name}'s session in pamj"), args
    assert "[priv]" not in args and "sshd" not in args, args
    assert _ps(init, "comm") == "pam_jail: init", _ps(init, "comm")
    assert _ps(monitor, "args").endswith(f"{world.user.name} [priv]"), _ps(monitor, "args")
    parent = _stat(monitor)
    assert parent is not None and parent[1] == world.listener, parent


def _assert_reaped_by_its_parent(world: World, init: int, monitor: int) -> None:
    """Within 5 s of the logout: the monitor is gone, the init is gone (not a zombie of
    the subreaper, which it would be if its parent had exited without reaping it), and
    nothing of the session is left."""
    assert wait_until(lambda: _stat(monitor) is None, 5), \
        f"sshd's monitor {monitor} still there: {_stat(monitor)} {_cmdline(monitor)}"
    assert wait_until(lambda: _stat(init) is None, 2), \
        f"init {init} left as {_stat(init)} (parent {monitor} exited without reaping it)"
    assert [c for c in _children(world.listener) if c[1] == "Z"] == []
    assert [c for c in _children(world.subreaper) if c[0] != world.listener] == [], \
        _children(world.subreaper)
    assert wait_until(lambda: not _processes_of(world.user.uid), 5), \
        _processes_of(world.user.uid)


def test_init_is_titled_and_reaped_by_sshd_at_a_normal_logout(world: World) -> None:
    proc = subprocess.Popen(world.sshd.ssh_argv(world.user, "/bin/sleep 2"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        init, monitor = _init_of(world)
        _assert_title(world, init, monitor)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        _assert_reaped_by_its_parent(world, init, monitor)
    finally:
        proc.kill()
        proc.wait()


def test_killed_client_ends_the_session_without_a_hang(world: World) -> None:
    """The client is killed (SIGKILL) while the session's command runs: sshd's
    MONITOR_REQ_TERM path, where the monitor waits for its privsep child right after
    pam_close_session."""
    proc = subprocess.Popen(world.sshd.ssh_argv(world.user, "/bin/sleep 60"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        init, monitor = _init_of(world)
        assert wait_until(lambda: any("sleep 60" in p for p in
                                       _processes_of(world.user.uid)), 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_reaped_by_its_parent(world, init, monitor)
    finally:
        proc.kill()
        proc.wait()


def test_background_process_of_the_session_ends_with_it(world: World) -> None:
    """An interactive shell leaves a detached `sleep 300` (reparented to the namespace's
    PID 1) and logs out: the logout does not wait for it, and it ends with the session."""
    proc = subprocess.Popen(world.sshd.ssh_argv(world.user, tty=True),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert proc.stdin is not None
        init, monitor = _init_of(world)
        proc.stdin.write(b"(sleep 300 </dev/null >/dev/null 2>&1 &)\n")
        proc.stdin.flush()
        assert wait_until(lambda: any("sleep 300" in p for p in
                                       _processes_of(world.user.uid)), 10)
        proc.stdin.write(b"exit\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        _assert_reaped_by_its_parent(world, init, monitor)
    finally:
        proc.kill()
        proc.wait()


# --- the title where argv is short ------------------------------------------------

# Run as `python3 SCRIPT` (a short argv, like the system sshd's `/usr/sbin/sshd -D -R`):
# with `overflow`, first do what sshd's setproctitle does (a title running past argv
# over the environment strings), then set_title; print cmdline, comm, and whether the
# environment strings are still there.
TITLE_CHILD = """\
import os, sys
sys.path.insert(0, os.environ["PJT_LIBDIR"])
from pam_jail.login.confine import set_title
title, mode = os.environ["PJT_TITLE"], os.environ["PJT_MODE"]
with open("/proc/self/stat", "rb") as fh:
    start, end, env_start, env_end = (int(f) for f in fh.read().rsplit(b")", 1)[1].split()[45:49])
if mode == "overflow":
    old = b"sshd: someone [priv]".ljust(end - start + 8, b"x")
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(old + bytes(env_end - start - len(old)))
set_title(title, os.open("/proc", os.O_PATH | os.O_DIRECTORY))
for name in ("cmdline", "comm", "environ"):
    with open(f"/proc/self/{name}", "rb") as fh:
        print(repr(fh.read()))
print(end - start)
"""


@pytest.mark.parametrize("mode", ["overflow", "argv-only"])
def test_title_uses_the_area_the_current_title_has(mode: str) -> None:
    """sshd's title of the monitor runs on over the environment strings when argv is
    short: the init's title may use that area too, and shows in full; a process whose
    title stays inside argv keeps its environment strings (the title is cut)."""
    base = safe_tmpdir("title")
    try:
        script = f"{base}/t.py"
        with open(script, "w") as fh:
            fh.write(TITLE_CHILD)
        title = "pam_jail: init of " + "u" * 30 + "'s session in " + "j" * 40
        env = {"PJT_LIBDIR": LIBDIR, "PJT_TITLE": title, "PJT_MODE": mode,
               "PJT_PAD": "p" * 300}
        out = subprocess.run(["/usr/bin/python3", "-I", script], env=env, capture_output=True,
                             text=True, timeout=30, check=True).stdout.splitlines()
        cmdline, comm, environ = (ast.literal_eval(line) for line in out[:3])
        argv_len = int(out[3])
        assert argv_len < len(title)
        assert comm == b"pam_jail: init \n", comm
        if mode == "overflow":
            assert cmdline.rstrip(b"\0") == title.encode(), cmdline
            assert b"[priv]" not in cmdline and b"PJT_PAD" not in environ
        else:
            assert cmdline.rstrip(b"\0") == title.encode()[: argv_len - 1], cmdline
            assert b"PJT_PAD=" + b"p" * 300 in environ
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
