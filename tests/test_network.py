"""Issue 19, items 3 and 5: customers of one jail with `network = yes` share the host's
network namespace, so its abstract unix sockets and its NETLINK_SOCK_DIAG tables, but
must reach neither the host's nor each other's abstract sockets nor list foreign sockets
(confine.scope_ipc: Landlock scopes; syscalls.py: socket(AF_NETLINK, *,
NETLINK_SOCK_DIAG) denied), while outbound TCP keeps working (a git clone over http
from a server on 127.0.0.1).

End to end: a real sshd on 127.0.0.1, two real customers in ONE jail for mode pam and two
in one jail for mode shell, each attempt made for real from inside a session by
tests/escape/pjescape.c; each with `network = yes` and again with `network = no`.
The unit part: the pure decision (which scopes, or a refusal) for kernels with and
without Landlock ABI 6, and doctor's judgement of it."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import (
    LSH_SHELL,
    PAM_STACK,
    SHELL_ENTRY,
    SyslogCapture,
    build_jail,
    make_user,
    remove_jail,
    remove_user,
    restore_config,
    save_config,
    undoing,
    unique,
    write_config,
)
from sshd_harness import Sshd, User, free_port
from util import safe_tmpdir

from pam_jail.admin.doctor import FAIL, OK, WARN, judge_network
from pam_jail.login import confine
from pam_jail.login.confine import LANDLOCK_SCOPES, scope_decision
from pam_jail.login.resolve import Jail

HERE = os.path.dirname(os.path.abspath(__file__))
ESCAPE = "/usr/local/bin/pjescape"
GIT = "/usr/bin/git"

LSH = f"""\
[default]
programs = /usr/bin/id, {GIT}, {ESCAPE}
  [[rules]]
  /usr/bin/id = none
  {GIT} = any
  {ESCAPE} = any
"""


# --------------------------------------------------------------- the decision (unit)

def test_scope_decision_by_kernel_abi() -> None:
    """ABI >= 6: both scopes, whatever the network; below (or no Landlock: 0): a
    network = yes session is refused with one clear reason, a network = no one goes on
    without scopes (its own namespace holds no foreign abstract socket)."""
    for abi in (6, 7, 8, 42):
        assert scope_decision(abi, True) == (LANDLOCK_SCOPES, None)
        assert scope_decision(abi, False) == (LANDLOCK_SCOPES, None)
    for abi in (0, 1, 5):
        scoped, refusal = scope_decision(abi, True)
        assert scoped == 0 and refusal is not None and "\n" not in refusal
        assert "network = yes" in refusal and "ABI 6" in refusal
        assert (f"Landlock ABI {abi}" if abi else "no Landlock") in refusal
        assert scope_decision(abi, False) == (0, None)
    assert LANDLOCK_SCOPES == 0b11     # abstract unix sockets | signals


def test_doctor_judges_network_jails_by_the_same_rule() -> None:
    def jail(mode: str, network: str) -> Jail:
        return Jail("j", "/srv/j", "/home/u", mode, False, "user", {"network": network})

    for mode in ("pam", "shell"):
        bad = judge_network(jail(mode, "yes"), 5)
        assert bad is not None and bad.status == FAIL and bad.name == "jail.network"
        assert "Landlock ABI 5" in bad.message and "refused" in bad.message
        none = judge_network(jail(mode, "yes"), 0)
        assert none is not None and none.status == FAIL and "no Landlock" in none.message
        good = judge_network(jail(mode, "yes"), 7)
        assert good is not None and good.status == OK
        assert judge_network(jail(mode, "no"), 0) is None
    assert judge_network(jail("sftp", "yes"), 0) is None   # internal-sftp opens no socket
    for options in ({"seccomp": "no"}, {"seccomp_allow": "keyring, sockets"},
                    {"seccomp_allow": "sock_diag"}):
        loose = Jail("j", "/srv/j", "/home/u", "shell", False, "user",
                     {"network": "yes", **options})
        warned = judge_network(loose, 7)
        assert warned is not None and warned.status == WARN, options
        assert "NETLINK_SOCK_DIAG" in warned.message
    kept = Jail("j", "/srv/j", "/home/u", "shell", False, "user",
                {"network": "yes", "seccomp_allow": "keyring"})
    assert judge_network(kept, 7).status == OK    # type: ignore[union-attr]


def test_this_kernel_has_scopes() -> None:
    """This VM's kernel (6.18) has Landlock ABI 7: the e2e tests below run the scoped
    path; the refusal path is the decision above."""
    assert confine.landlock_abi() >= 6


def test_scope_ipc_in_a_child_blocks_abstract_connect_and_signals_out() -> None:
    """The step itself, in a forked child (no root needed): after scope_ipc the child
    cannot connect to its parent's abstract socket nor signal the parent, but still
    reaches a socket it made itself, and still makes TCP connections."""
    name = unique("pjn-unit-")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        lsock.bind("\0" + name)
        lsock.listen(4)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(4)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            report = b""
            try:
                os.close(r)

                def tries() -> bytes:
                    out = b""
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        try:
                            s.connect("\0" + name)
                            out += b"U"
                        except PermissionError:
                            out += b"u"
                    try:
                        os.kill(os.getppid(), 0)
                        out += b"K"
                    except PermissionError:
                        out += b"k"
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as own:
                        own.bind("\0" + name + "-own")
                        own.listen(1)
                        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                            s.connect("\0" + name + "-own")
                    with socket.create_connection(tcp.getsockname(), timeout=5):
                        out += b"T"
                    return out

                report = tries()
                confine.set_no_new_privs()
                confine.scope_ipc(True, "unit")
                report += b" " + tries()
            except BaseException as err:  # noqa: BLE001 - report it to the parent
                report = repr(err).encode()
            os.write(w, report)
            os._exit(0)
        os.close(w)
        got = os.read(r, 1000)
        os.close(r)
        os.waitpid(pid, 0)
    assert got == b"UKT ukT", got     # before: reaches both; after: neither, TCP works


# ------------------------------------------------------------------- end to end


@dataclass
class Net:
    sshd: Sshd
    users: dict[str, tuple[User, User]]     # mode -> (customer A, customer B)
    jails: dict[str, str]                   # mode -> jail root
    git_port: int
    set_network: Callable[[bool], None]


def _install_escape_tool(root: str) -> None:
    os.makedirs(f"{root}/usr/local/bin", mode=0o755, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O1", "-o", f"{root}{ESCAPE}",
                    f"{HERE}/escape/pjescape.c"], check=True)
    os.chmod(f"{root}{ESCAPE}", 0o755)


def _git_server(undo: list[Callable[[], object]]) -> int:
    """A bare repository served over git's dumb http protocol on 127.0.0.1."""
    top = safe_tmpdir("gitsrv")
    undo.append(lambda: shutil.rmtree(top, ignore_errors=True))
    work = f"{top}/work"
    env = {"PATH": "/usr/bin:/bin", "HOME": top, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", work], check=True, env=env)
    with open(f"{work}/README", "w") as fh:
        fh.write("cloned from the host\n")
    subprocess.run([*git, "-C", work, "add", "README"], check=True, env=env)
    subprocess.run([*git, "-C", work, "commit", "-q", "-m", "one"], check=True, env=env)
    subprocess.run([*git, "clone", "-q", "--bare", work, f"{top}/repo.git"], check=True,
                   env=env)
    subprocess.run([*git, "-C", f"{top}/repo.git", "update-server-info"], check=True, env=env)
    port = free_port()
    server = subprocess.Popen(["python3", "-m", "http.server", "--bind", "127.0.0.1",
                               "--directory", top, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    undo.append(lambda: (server.kill(), server.wait()))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the git http server did not start")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    from pam_jail.admin.build import add_users
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        saved = save_config()
        undo.append(lambda: restore_config(saved))
        users: dict[str, tuple[User, User]] = {}
        jails: dict[str, str] = {}
        for mode, shell, profiles in (
                ("pam", LSH_SHELL, ["lsh", "basicshell", "ptys", "git", "netbasics"]),
                ("shell", SHELL_ENTRY, ["basicshell", "ptys", "git", "netbasics"])):
            names = [unique("pjn"), unique("pjn")]
            made = []
            for name in names:
                made.append(make_user(name, shell, f"/home/{name}", create_home=False))
                undo.append(lambda name=name: remove_user(name, remove_home=False))
            root = build_jail(profiles, names, lsh=LSH,
                              shell=LSH_SHELL if mode == "pam" else None)
            undo.append(lambda root=root: remove_jail(root))
            _install_escape_tool(root)
            for i, name in enumerate(names):
                subprocess.run(["usermod", "-d", f"{root}/./home/{name}", name], check=True)
                made[i] = User(made[i].name, made[i].uid, made[i].gid,
                               f"{root}/./home/{name}", shell, made[i].key,
                               made[i].created_home)
            if mode == "pam":
                add_users(root, names, shell=LSH_SHELL)
            users[mode] = (made[0], made[1])
            jails[mode] = root

        def set_network(on: bool) -> None:
            flag = "yes" if on else "no"
            a, b = users["pam"]
            c, d = users["shell"]
            write_config(f"[jails]\n  [[netpam]]\n  root = {jails['pam']}\n  mode = pam\n"
                         f"  network = {flag}\n"
                         f"  [[netshell]]\n  root = {jails['shell']}\n  mode = shell\n"
                         f"  network = {flag}\n"
                         f"[users]\n{a.name} = netpam\n{b.name} = netpam\n"
                         f"{c.name} = netshell\n{d.name} = netshell\n")

        set_network(True)
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        undo.append(sshd.stop)
        port = _git_server(undo)
        yield Net(sshd, users, jails, port, set_network)


MODES = ["pam", "shell"]
NETWORK = [pytest.param(True, id="network-yes"), pytest.param(False, id="network-no")]


def _attempt(net: Net, user: User, what: str, *args: str) -> str:
    result = net.sshd.ssh(user, ESCAPE, what, *args)
    out = result.stdout.strip()
    assert "ESCAPED" not in out, out
    assert out.startswith("blocked:"), (out, result.stderr, net.sshd.log_text()[-2000:])
    return out


def _host_can_connect(name: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect("\0" + name)
        except OSError:
            return False
        return True


@pytest.fixture
def host_abstract() -> Iterator[str]:
    """A host process listening on an abstract unix socket (it could hand out fds)."""
    name = unique("pjn-host-")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind("\0" + name)
        s.listen(8)
        yield name


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("network", NETWORK)
@pytest.mark.parametrize("mode", MODES)
def test_host_abstract_socket_is_out_of_reach(net: Net, mode: str, network: bool,
                                              host_abstract: str) -> None:
    net.set_network(network)
    assert _host_can_connect(host_abstract)        # it is there, on the host
    for user in net.users[mode]:
        out = _attempt(net, user, "abstract", host_abstract)
        if network:     # the host's namespace: only Landlock's scope stops it
            assert "Operation not permitted" in out, out


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("network", NETWORK)
@pytest.mark.parametrize("mode", MODES)
def test_other_customers_abstract_socket_is_out_of_reach(net: Net, mode: str,
                                                         network: bool) -> None:
    """Customer A listens on an abstract socket in its session; customer B of the same
    jail cannot connect to it (nor can A from a second session)."""
    net.set_network(network)
    a, b = net.users[mode]
    name = unique("pjn-a-")
    listener = subprocess.Popen(net.sshd.ssh_argv(a, ESCAPE, "listen", name, "30"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        ready, _, _ = select.select([listener.stdout], [], [], 30)
        line = listener.stdout.readline() if ready else ""
        assert line.strip() == f"ready: {name}", (line, net.sshd.log_text()[-2000:])
        # with network = yes A's socket sits in the host's namespace: the host reaches
        # it (scoping stops what leaves a session, not what enters it), so B's attempt
        # below is a real one
        assert _host_can_connect(name) is network
        out = _attempt(net, b, "abstract", name)
        if network:
            assert "Operation not permitted" in out, out
        _attempt(net, a, "abstract", name)      # another session of A: its own domain
    finally:
        listener.kill()
        listener.communicate()


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("network", NETWORK)
@pytest.mark.parametrize("mode", MODES)
def test_sock_diag_lists_no_foreign_socket(net: Net, mode: str, network: bool,
                                           host_abstract: str) -> None:
    net.set_network(network)
    for user in net.users[mode]:
        out = _attempt(net, user, "sockdiag")
        assert "NETLINK_SOCK_DIAG" in out and "Operation not permitted" in out, out


def _live_processes_of(uid: int) -> list[str]:
    """Processes (not zombies) whose real uid is `uid`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(status.get("Uid", "-1").split()[0]) == uid and \
                not status.get("State", "").strip().startswith("Z"):
            found.append(f"{pid} {status.get('Name', '').strip()}")
    return found


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("network", NETWORK)
@pytest.mark.parametrize("mode", MODES)
def test_nothing_outlives_a_scoped_session(net: Net, mode: str, network: bool) -> None:
    """The session's processes, the PID namespace's PID 1 of ours included (mode pam),
    end with the session. (PID 1 must be inside the Landlock domain: a scoped parent's
    PDEATHSIG to a task outside its domain is refused, and PID 1 lived on.)"""
    net.set_network(network)
    user = net.users[mode][1]
    result = net.sshd.ssh(user, "/usr/bin/id")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    while _live_processes_of(user.uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_processes_of(user.uid) == []


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("network", NETWORK)
@pytest.mark.parametrize("mode", MODES)
def test_git_clone_over_http_from_127_0_0_1(net: Net, mode: str, network: bool) -> None:
    """Outbound TCP keeps working with network = yes (NETLINK_ROUTE and plain sockets
    are allowed); with network = no the clone finds nothing to connect to."""
    net.set_network(network)
    user = net.users[mode][0]
    dest = unique("clone")
    result = net.sshd.ssh(user, GIT, "clone", "-q",
                          f"http://127.0.0.1:{net.git_port}/repo.git", dest)
    cloned = f"{net.jails[mode]}/home/{user.name}/{dest}/README"
    if network:
        assert result.returncode == 0, (result.stdout, result.stderr,
                                        net.sshd.log_text()[-2000:])
        with open(cloned) as fh:
            assert fh.read() == "cloned from the host\n"
    else:
        assert result.returncode != 0 and not os.path.exists(cloned), result.stderr
        assert "127.0.0.1" in result.stderr, result.stderr


@pytest.mark.root
@pytest.mark.parametrize("network", NETWORK)
def test_chrootlaunch_scopes_the_daemon(user_factory: Callable[..., User],
                                        system_config: Callable[[str], str], network: bool,
                                        host_abstract: str) -> None:
    """pam-jail chrootlaunch (confine_launch): a daemon started in a network = yes jail
    reaches no host abstract socket and lists no socket either."""
    from testbed import LIBDIR

    user = user_factory("/bin/bash", name=unique("pjn"), create_home=False)
    root = build_jail(["basicshell"], [user.name])
    try:
        _install_escape_tool(root)
        system_config(f"[jails]\n  [[nl]]\n  root = {root}\n  mode = pam\n"
                      f"  network = {'yes' if network else 'no'}\n[users]\n{user.name} = nl\n")
        boot = (f"import sys; sys.path[:0] = [{LIBDIR!r}]; "
                "sys.path += ['/usr/lib/python3/dist-packages']; "
                "from pam_jail.admin.cli import main; sys.exit(main(sys.argv[1:]))")
        for what in (("abstract", host_abstract), ("sockdiag",)):
            r = subprocess.run(["/usr/bin/python3", "-IS", "-c", boot, "chrootlaunch", "-j",
                                "nl", "-u", user.name, "--", ESCAPE, *what],
                               capture_output=True, text=True, timeout=30, cwd="/")
            out = r.stdout.strip()
            assert out.startswith("blocked:") and "ESCAPED" not in out, (out, r.stderr)
            if network:
                assert "Operation not permitted" in out, out
    finally:
        remove_jail(root)


# A kernel without Landlock, simulated for real: sshd (and so everything it starts, the PAM
# module and pam-jail-shell included) runs under a seccomp filter that answers
# landlock_create_ruleset with ENOSYS, exactly what a kernel built without Landlock says.
# The login path itself is unchanged: it asks the kernel and gets that answer.
_NO_LANDLOCK = b"".join(
    code.to_bytes(2, "little") + bytes((jt, jf)) + k.to_bytes(4, "little")
    for code, jt, jf, k in (
        (0x20, 0, 0, 4),                      # ld arch
        (0x15, 0, 3, 0xC000003E),             # x86_64? else allow
        (0x20, 0, 0, 0),                      # ld nr
        (0x15, 0, 1, 444),                    # landlock_create_ruleset
        (0x06, 0, 0, 0x00050000 | 38),        # ERRNO(ENOSYS)
        (0x06, 0, 0, 0x7FFF0000)))            # ALLOW


def _without_landlock() -> None:
    from pam_jail.login import _sys

    confine.set_no_new_privs()
    _sys.seccomp_filter(_NO_LANDLOCK)


class SshdWithoutLandlock(Sshd):
    def start(self, timeout: float = 15.0) -> Sshd:
        self.port = free_port()
        self.prepare()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-D", "-e", "-f", self.config_path], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, preexec_fn=_without_landlock)
        if not self._wait_listening(timeout):
            self.stop()
            raise RuntimeError(f"sshd did not start:\n{self.log_text()}")
        return self


@pytest.mark.root
@pytest.mark.e2e
def test_kernel_without_landlock_refuses_network_yes_logins(net: Net,
                                                            syslog: SyslogCapture) -> None:
    """Fail closed: network = yes logins are refused with one syslog line (mode shell:
    pam-jail-shell's "login refused", and one line to the user; mode pam: the module's
    "session refused", and sshd's session process ends: the connection closes with
    nothing written to the channel, tests/test_refused_session.py); network = no logins
    still work, unscoped."""
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    reason = "scope abstract unix sockets of a network = yes jail: this kernel has no Landlock"
    net.set_network(True)
    with SshdWithoutLandlock(PAM_STACK, generate(load_config())) as sshd:
        for mode in MODES:
            user = net.users[mode][0]
            result = sshd.ssh(user, "/usr/bin/id")
            assert result.returncode != 0 and f"uid={user.uid}" not in result.stdout
            lines = [ln for ln in (result.stdout + result.stderr).splitlines()
                     if ln.startswith("pam_jail")]
            if mode == "pam":      # sshd ran nothing and wrote nothing to the channel
                assert result.returncode == 255 and result.stdout == "", result
                assert lines == [], result
            else:                  # pam-jail-shell's stderr
                assert lines == [f"pam_jail: login refused: {reason}, scoping needs ABI 6 "
                                 "(Linux 6.12)"], result
            found = syslog.wait_for("refused", f"user={user.name}", reason)
            assert len(found) == 1, (syslog.lines, sshd.log_text()[-2000:])
        net.set_network(False)
        for mode in MODES:
            user = net.users[mode][0]
            result = sshd.ssh(user, "/usr/bin/id")
            assert result.returncode == 0 and f"uid={user.uid}" in result.stdout, \
                (result.stderr, sshd.log_text()[-2000:])
