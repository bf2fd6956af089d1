"""End to end: a real sshd on 127.0.0.1, real users, real ssh/scp/sftp/rsync clients, for
one user on the PAM path (mode pam) and one on the login-shell path (mode shell).

Every escape is attempted for real from inside a session by tests/escape/pjescape.c, a
static program placed in both jails (the strongest attacker: arbitrary code inside the
jail). Each attempt prints "blocked: ..." or "ESCAPED: ..."."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import PAM_STACK, make_jailed_pair, undoing
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture
from util import wait_until

pytestmark = [pytest.mark.root, pytest.mark.e2e]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MARKER = "/etc/pam_jail-test-host-marker"   # exists on the host, never in a jail
ESCAPE = "/usr/local/bin/pjescape"

LSH = f"""\
[default]
programs = /usr/bin/id, /bin/ls, /bin/sleep, /usr/bin/rsync, /usr/bin/scp, \
/usr/lib/openssh/sftp-server, {ESCAPE}
pass_env = LANG
  [[rules]]
  /usr/bin/id = none
  /bin/ls = any
  /bin/sleep = any
  {ESCAPE} = any
"""

# The PAM-path user may also log in interactively (the limited shell then runs bash).
PAM_LSH = LSH.replace("pass_env = LANG\n", "pass_env = LANG\nallow_shell = yes\n"
                                           "shell = /bin/bash\n")


@dataclass
class World:
    sshd: Sshd
    pam_user: User
    shell_user: User
    pam_jail: str
    shell_jail: str
    syslog: SyslogCapture
    host_sleeper: subprocess.Popen[bytes]

    def user(self, path: str) -> User:
        return self.pam_user if path == "pam" else self.shell_user

    def jail(self, path: str) -> str:
        return self.pam_jail if path == "pam" else self.shell_jail


def _install_escape_tool(root: str) -> None:
    os.makedirs(f"{root}/usr/local/bin", mode=0o755, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O1", "-o", f"{root}{ESCAPE}",
                    f"{HERE}/escape/pjescape.c"], check=True)
    os.chmod(f"{root}{ESCAPE}", 0o755)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
        pair = make_jailed_pair(LSH, undo, pam_lsh=PAM_LSH)
        for root in (pair.pam_jail, pair.shell_jail):
            _install_escape_tool(root)
        with open(MARKER, "w") as fh:
            fh.write("host\n")
        undo.append(lambda: os.unlink(MARKER))
        extra = "AcceptEnv LANG\n" + generate(load_config())
        sshd = Sshd(PAM_STACK, extra).start()
        undo.append(sshd.stop)
        # targets on the host: a process of the jailed user, a SysV shared memory segment
        sleeper = subprocess.Popen(["setpriv", f"--reuid={pair.shell_user.uid}",
                                    f"--regid={pair.shell_user.gid}", "--clear-groups",
                                    "sleep", "600"])
        undo.append(lambda: (sleeper.kill(), sleeper.wait()))   # no zombie of a reused uid
        subprocess.run(["ipcmk", "-M", "4096", "-p", "0666"], check=True, capture_output=True)
        undo.append(lambda: subprocess.run(["ipcrm", "--all=shm"], check=False))
        yield World(sshd, pair.pam_user, pair.shell_user, pair.pam_jail, pair.shell_jail,
                    syslog, sleeper)


PATHS = ["pam", "shell"]


def run(world: World, path: str, *command: str) -> subprocess.CompletedProcess[str]:
    return world.sshd.ssh(world.user(path), " ".join(command))


def attempt(world: World, path: str, what: str, arg: str = "") -> str:
    result = run(world, path, ESCAPE, what, arg)
    out = result.stdout.strip()
    assert "ESCAPED" not in out, out
    assert out.startswith("blocked:"), (out, result.stderr)
    return out


# --- the sessions work -----------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_command_runs_inside_the_jail(world: World, path: str) -> None:
    user = world.user(path)
    result = run(world, path, "/usr/bin/id")
    assert result.returncode == 0, result.stderr
    assert f"uid={user.uid}({user.name})" in result.stdout
    listing = run(world, path, "/bin/ls", "/")
    assert sorted(listing.stdout.split()) == sorted(
        e for e in os.listdir(world.jail(path)) if not e.startswith("."))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-O"])
def test_scp_upload_download(world: World, path: str, legacy: bool, tmp_path: str) -> None:
    user = world.user(path)
    src = os.path.join(str(tmp_path), "up.txt")
    with open(src, "w") as fh:
        fh.write(f"hello {path} {legacy}\n" * 100)
    name = f"scp-{int(legacy)}.txt"
    up = world.sshd.scp(user, src, f":{name}", legacy=legacy)
    assert up.returncode == 0, up.stderr + world.sshd.log_text()[-3000:]
    landed = f"{world.jail(path)}/home/{user.name}/{name}"
    with open(landed) as fh, open(src) as orig:
        assert fh.read() == orig.read()
    back = os.path.join(str(tmp_path), "down.txt")
    down = world.sshd.scp(user, f":{name}", back, legacy=legacy)
    assert down.returncode == 0, down.stderr
    with open(back) as fh, open(src) as orig:
        assert fh.read() == orig.read()


@pytest.mark.parametrize("path", PATHS)
def test_sftp_batch(world: World, path: str, tmp_path: str) -> None:
    user = world.user(path)
    src = os.path.join(str(tmp_path), "s.txt")
    with open(src, "w") as fh:
        fh.write("sftp data\n")
    back = os.path.join(str(tmp_path), "s2.txt")
    result = world.sshd.sftp_batch(user, f"put {src} s.txt\nget s.txt {back}\nls /\n")
    assert result.returncode == 0, result.stderr
    with open(back) as fh:
        assert fh.read() == "sftp data\n"
    assert "/etc" in result.stdout and "/home" in result.stdout
    # sftp cannot leave the jail either
    result = world.sshd.sftp_batch(user, f"get {MARKER} {back}.m\n")
    assert result.returncode != 0 and not os.path.exists(back + ".m")


@pytest.mark.parametrize("path", PATHS)
def test_rsync_upload_download(world: World, path: str, tmp_path: str) -> None:
    user = world.user(path)
    tree = os.path.join(str(tmp_path), "tree")
    os.makedirs(f"{tree}/sub")
    for i in range(5):
        with open(f"{tree}/sub/f{i}", "w") as fh:
            fh.write(str(i) * 1000)
    up = world.sshd.rsync(user, "-a", f"{tree}/", ":rtree/")
    assert up.returncode == 0, up.stderr
    assert sorted(os.listdir(f"{world.jail(path)}/home/{user.name}/rtree/sub")) == \
        [f"f{i}" for i in range(5)]
    down = world.sshd.rsync(user, "-a", ":rtree/", f"{tmp_path}/back/")
    assert down.returncode == 0, down.stderr
    with open(f"{tmp_path}/back/sub/f3") as fh:
        assert fh.read() == "3" * 1000


def test_interactive_shell_gets_a_pty_in_the_pam_jail(world: World) -> None:
    result = world.sshd.ssh(world.pam_user, tty=True,
                            input="test -t 0 && echo is-a-tty; ls /dev/pts; id -un; exit\n")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.split()
    assert "is-a-tty" in lines and "ptmx" in lines and "0" in lines   # private devpts
    assert world.pam_user.name in lines


# --- escapes ---------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_no_fd_leads_out(world: World, path: str) -> None:
    attempt(world, path, "fds", MARKER)


@pytest.mark.parametrize("path", PATHS)
def test_rechroot_fails(world: World, path: str) -> None:
    assert "chroot" in attempt(world, path, "rechroot", MARKER)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target", ["/etc/shadow", MARKER, "/../../etc/shadow",
                                    "../../../../../../etc/shadow"])
def test_host_files_unreachable(world: World, path: str, target: str) -> None:
    attempt(world, path, "read", target)


@pytest.mark.parametrize("path", PATHS)
def test_jail_root_and_system_dirs_not_writable(world: World, path: str) -> None:
    for target in ("/pwned", "/etc/pwned", "/usr/lib/pwned", "/bin/pwned"):
        attempt(world, path, "write", target)


@pytest.mark.parametrize("path", PATHS)
def test_signals_to_host_process_blocked(world: World, path: str) -> None:
    """A host process of the same uid (the PAM-path jail has `pid = yes`)."""
    sleeper = subprocess.Popen(["setpriv", f"--reuid={world.user(path).uid}",
                                f"--regid={world.user(path).gid}", "--clear-groups",
                                "sleep", "600"])
    try:
        attempt(world, path, "kill", str(sleeper.pid))
        attempt(world, path, "ptrace", str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("path", PATHS)
def test_no_network_to_host(world: World, path: str) -> None:
    # the sshd itself listens on the host's 127.0.0.1
    out = attempt(world, path, "tcp", str(world.sshd.port))
    assert "connect" in out or "socket" in out


@pytest.mark.parametrize("path", PATHS)
def test_host_sysv_shm_unreachable(world: World, path: str) -> None:
    keys = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
    key = next(line.split()[0] for line in keys.splitlines() if line.startswith("0x"))
    attempt(world, path, "shm", key)


@pytest.mark.parametrize("path", PATHS)
def test_device_node_planted_in_jail_is_powerless(world: World, path: str) -> None:
    user = world.user(path)
    node = f"{world.jail(path)}/home/{user.name}/mem"
    os.mknod(node, 0o20666, os.makedev(1, 1))  # /dev/mem, world read-write
    try:
        attempt(world, path, "open", f"/home/{user.name}/mem")
        attempt(world, path, "mknod", f"/home/{user.name}/null2")
    finally:
        os.unlink(node)


@pytest.mark.parametrize("path", PATHS)
def test_setuid_file_planted_in_jail_is_powerless(world: World, path: str) -> None:
    """A root-owned setuid-root program in the jail runs with the user's ids (nosuid).
    On the shell path only allow-listed programs run, so the listed tool itself is
    made setuid root; on the PAM path a copy is planted in the home."""
    user = world.user(path)
    jail = world.jail(path)
    planted = f"/home/{user.name}/suid" if path == "pam" else ESCAPE
    if path == "pam":
        shutil.copy(f"{jail}{ESCAPE}", f"{jail}{planted}")
    os.chown(f"{jail}{planted}", 0, 0)
    os.chmod(f"{jail}{planted}", 0o4755)
    try:
        if path == "pam":   # not an allowed program: run it from the interactive shell
            result = world.sshd.ssh(user, tty=True, input=f"{planted} ids; exit\n")
        else:
            result = run(world, path, planted, "ids")
        assert f"euid={user.uid} " in result.stdout, result.stdout + result.stderr
    finally:
        if path == "pam":
            os.unlink(f"{jail}{planted}")
        else:
            os.chmod(f"{jail}{planted}", 0o755)


@pytest.mark.parametrize("path", PATHS)
def test_privileges_cannot_be_regained(world: World, path: str) -> None:
    user = world.user(path)
    ids = run(world, path, ESCAPE, "ids").stdout
    assert f"uid={user.uid} euid={user.uid}" in ids and "capeff=000000000 capprm=000000000" \
        in ids, ids
    attempt(world, path, "setuid0")
    attempt(world, path, "userns")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["L", "D", "W"])
def test_port_forwarding_refused(world: World, path: str, kind: str) -> None:
    user = world.user(path)
    result = {"L": world.sshd.try_forward_l, "D": world.sshd.try_forward_d,
              "W": world.sshd.try_forward_w}[kind](user)
    assert not result.data_through, result


@pytest.mark.parametrize("path", PATHS)
def test_user_ssh_rc_not_run(world: World, path: str) -> None:
    user = world.user(path)
    home = f"{world.jail(path)}/home/{user.name}"
    os.makedirs(f"{home}/.ssh", exist_ok=True)
    with open(f"{home}/.ssh/rc", "w") as fh:
        fh.write("touch $HOME/rc-ran\n")
    for p in (f"{home}/.ssh", f"{home}/.ssh/rc"):
        os.chown(p, user.uid, user.gid)
    try:
        assert run(world, path, "/usr/bin/id").returncode == 0
        assert not os.path.exists(f"{home}/rc-ran")
    finally:
        shutil.rmtree(f"{home}/.ssh")


def test_environment_injection_dropped_in_shell_path(world: World) -> None:
    result = world.sshd.ssh(world.shell_user, f"{ESCAPE} env", options=[
        "-o", "SetEnv=LD_PRELOAD=/home/x/evil.so BASH_ENV=/home/x/rc PATH=/home/x ENV=/x "
        "LANG=C.UTF-8"])
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "LD_PRELOAD" not in env and "BASH_ENV" not in env and "ENV" not in env
    assert env.get("PATH") != "/home/x"
    assert env.get("LANG") == "C.UTF-8"   # named in pass_env: passes


@pytest.mark.parametrize("command", [
    "rsync --server -e 'sh -c id' . x",
    "rsync --server --rsh=/bin/sh . x",
    "scp -S /bin/sh -t x",
    "scp -oProxyCommand=id -t x",
    "/bin/sh -c id",
    "id; /bin/sh",
    "/usr/bin/id -u",
    "/bin/cat /etc/passwd",
])
def test_argument_injection_refused_in_shell_path(world: World, command: str) -> None:
    result = world.sshd.ssh(world.shell_user, command)
    assert result.returncode == 126, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.strip().startswith("pam_jail: refused:"), result.stderr
    assert world.syslog.wait_for("command refused", f"user={world.shell_user.name}")


def test_unsafe_jail_refuses_login_with_one_line(world: World) -> None:
    for path in PATHS:
        world.syslog.clear()
        os.chmod(f"{world.jail(path)}/etc", 0o777)
        try:
            result = run(world, path, "/usr/bin/id")
        finally:
            os.chmod(f"{world.jail(path)}/etc", 0o755)
        assert result.returncode != 0 and "uid=" not in result.stdout
        user = world.user(path).name
        assert world.syslog.wait_for("refused", f"user={user}", "writable by group or other")
        if path == "shell":
            assert result.stderr.strip() == \
                "pam_jail: login refused: check jail shellj: unsafe", result.stderr
        else:  # sshd 9.2 shows PAM account messages to nobody: the log line stands alone
            assert result.stdout == ""


def _rooted_in(jail: str) -> list[int]:
    jail_id = os.stat(jail)
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                st = os.stat(f"/proc/{name}/root")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (jail_id.st_dev, jail_id.st_ino):
                pids.append(int(name))
    return pids


def _pids_running(needle: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if needle.encode() in fh.read():
                    pids.append(int(name))
        except (OSError, ValueError):
            continue
    return pids


def test_killing_the_relay_kills_the_jailed_session(world: World) -> None:
    """pam-jail-shell's relay (outside the PID namespace) killed with SIGKILL: the
    jailed PID 1 and its children must not live on."""
    import signal
    import time

    proc = subprocess.Popen(world.sshd.ssh_argv(world.shell_user, "/bin/sleep 300"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _rooted_in(world.shell_jail) and time.monotonic() < deadline:
            time.sleep(0.05)
        jailed = _rooted_in(world.shell_jail)
        assert jailed, "the session never started"
        # pivot_root moved the relay's root too (same mount namespace): it is rooted in
        # the jail as well, but outside the PID namespace, running pam-jail-shell
        relays = [pid for pid in _pids_running("pam-jail-shell") if pid in jailed]
        assert relays
        for pid in relays:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _rooted_in(world.shell_jail) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rooted_in(world.shell_jail) == []
    finally:
        proc.kill()
        proc.wait()


def _inits_of(user: str) -> list[int]:
    """Host pids whose command line is the title of `user`'s PID-namespace init."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if fh.read().startswith(f"pam_jail: init of {user}'s".encode()):
                        out.append(int(name))
            except OSError:
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_pam_sessions_init_is_titled_and_ends_with_the_session(world: World) -> None:
    """Mode pam's PID 1 shows what it is in ps (not `sshd: USER [priv]`), and when the
    session ends it ends too and is reaped (by its parent at close_session, in a bounded
    wait: tests/test_pam_reaper.py shows who reaps it): nothing is left behind, and the
    monitor never waits for it unbounded (an exiting PID 1 waits for the monitor's own
    privsep child: a blocking wait would hang every logout)."""
    import time

    user = world.pam_user
    proc = subprocess.Popen(world.sshd.ssh_argv(user, "/bin/sleep 2"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _inits_of(user.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        inits = _inits_of(user.name)
        assert len(inits) == 1, "no titled init while the session runs"
        with open(f"/proc/{inits[0]}/cmdline", "rb") as fh:
            assert b"in pamj" in fh.read()
        assert proc.wait(timeout=30) == 0
        assert wait_until(lambda: _state(inits[0]) == "gone", 5), \
            f"init {inits[0]} left as {_state(inits[0])}"

        def monitors() -> list[int]:
            return [pid for pid in _pids_running("[priv]") if user.name in _cmdline(pid)]

        # and the session's sshd monitor did not hang in its logout (it exits right after
        # its close_session: within a few seconds, never waiting for ever)
        assert wait_until(lambda: not monitors(), 5), monitors()
    finally:
        proc.kill()
        proc.wait()


def test_multiplexed_channels_work_with_a_pam_pid_namespace(world: World) -> None:
    """`pid = yes` on the PAM path: three channels over one ControlMaster connection all
    run, jailed (the namespace's PID 1 is sshd's long-lived session child)."""
    import time

    user = world.pam_user
    ctl = f"/var/lib/pam_jail-test/ctl-{os.getpid()}"
    master = subprocess.Popen(world.sshd.ssh_argv(user, options=[
        "-o", "ControlMaster=yes", "-o", f"ControlPath={ctl}", "-N"]),
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(ctl) and time.monotonic() < deadline:
            time.sleep(0.05)
        for command in ("/usr/bin/id", "/bin/ls /", "/usr/bin/id"):
            result = subprocess.run(world.sshd.ssh_argv(user, command, options=[
                "-o", f"ControlPath={ctl}"]), capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
        assert f"uid={user.uid}(" in result.stdout
        listing = subprocess.run(world.sshd.ssh_argv(user, "/bin/ls /", options=[
            "-o", f"ControlPath={ctl}"]), capture_output=True, text=True, timeout=30)
        assert sorted(listing.stdout.split()) == sorted(
            e for e in os.listdir(world.pam_jail) if not e.startswith("."))
    finally:
        master.kill()
        master.wait()
        if os.path.exists(ctl):
            os.unlink(ctl)


# --- the seccomp filter (issue 11 item 2) ------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("what", ["bpf", "perf", "userfaultfd", "iouring", "handle", "i386"])
def test_kernel_interfaces_denied(world: World, path: str, what: str) -> None:
    """Each of these reaches the kernel on the host (pjescape run there says so); from a
    jailed session the filter answers EPERM (ENOSYS for the 32-bit entry)."""
    attempt(world, path, what)


@pytest.mark.parametrize("path", PATHS)
def test_tiocsti_denied(world: World, path: str) -> None:
    result = world.sshd.ssh(world.user(path), f"{ESCAPE} tiocsti", tty=True)
    assert "blocked: TIOCSTI" in result.stdout and "ESCAPED" not in result.stdout, result


@pytest.mark.parametrize("path", PATHS)
def test_host_keyring_unreachable(world: World, path: str) -> None:
    """The escape of the adversarial run: a host process of the same uid keeps a secret in
    the uid's user keyring; another host process of that uid reads it (the contrast), a
    jailed session cannot."""
    import time

    user = world.user(path)
    tool = f"{world.jail(path)}{ESCAPE}"
    ids = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
    holder = subprocess.Popen([*ids, "sh", "-c", f"{tool} keyadd s3cr3t-{path}; exec sleep 60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        host = subprocess.run([*ids, tool, "keyread"], capture_output=True, text=True,
                              timeout=30)
        assert f"read the host's keyring: s3cr3t-{path}" in host.stdout, host
        out = attempt(world, path, "keyread")
        assert "keyctl" in out
    finally:
        holder.kill()
        holder.wait()


def test_pam_lsh_log_lines_name_the_jail_and_a_host_pid(world: World) -> None:
    """Mode pam: pam-jail-lsh runs inside the jail's PID namespace and does not know its
    jail; its syslog lines still say jail=NAME and carry the host pid of the sshd session
    process the PAM module confined (it is in the host's /proc while the session runs).
    The PAM module hands both over in the PAM environment, which sshd copies over what a
    client sends: an sshd that accepts the same names from the client (SendEnv) logs the
    module's values, not the client's."""

    import sys
    import time

    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    config = generate(load_config())
    assert "LANG LC_* GIT_PROTOCOL\n" in config        # the Match blocks' AcceptEnv
    sshd = Sshd(PAM_STACK, "AcceptEnv LANG PAM_JAIL_*\n" + config.replace(
        "LANG LC_* GIT_PROTOCOL\n", "LANG LC_* GIT_PROTOCOL PAM_JAIL_*\n"))
    sshd.start()
    user = world.pam_user
    jail = load_config().users[user.name]
    # the jail's /dev/log: pam-jail-lsh writes there (inside the jail), the relay passes
    # its lines on to the host's syslog (pam-jail logrelay, as a host runs it)
    relay = subprocess.Popen([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-j", jail,
                              "--foreground"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{world.pam_jail}/dev/log") and time.monotonic() < deadline:
            time.sleep(0.05)
        world.syslog.clear()
        env = {**os.environ, "PAM_JAIL_JAIL": "forged", "PAM_JAIL_HOST_PID": "1"}
        proc = subprocess.Popen(sshd.ssh_argv(user, "/bin/sleep 2", options=[
            "-o", "SendEnv=PAM_JAIL_JAIL", "-o", "SendEnv=PAM_JAIL_HOST_PID"]), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            lines = world.syslog.wait_for("pam-jail-lsh[", "command allowed",
                                          f"user={user.name}", timeout=20)
            assert len(lines) == 1, world.syslog.lines
            monitors = [pid for pid in _pids_running("[priv]") if user.name in _cmdline(pid)]
            line = lines[0]
            pid = int(line.split("pam-jail-lsh[", 1)[1].split("]", 1)[0])
            assert os.path.exists(f"/proc/{pid}"), line          # a host pid, running
            assert monitors == [pid], (monitors, line)           # sshd's session process
            assert f": {user.name} [priv]" in _cmdline(pid), _cmdline(pid)
            assert f" jail={jail} " in line, line
            assert "forged" not in line, line
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            proc.kill()
            proc.wait()
    finally:
        relay.terminate()
        relay.wait(10)
        sshd.stop()
