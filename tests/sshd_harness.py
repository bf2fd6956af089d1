"""End-to-end harness: a real OpenSSH sshd on 127.0.0.1, real users, real clients.

Everything here needs root (useradd, sshd, /etc/pam.d). Nothing touches the system's
sshd or /etc/ssh/sshd_config:

- every `Sshd` gets a private root-owned 0700 directory under HARNESS_BASE
  (/var/lib/pam_jail-test/<random>/, never /tmp: sshd's StrictModes and ChrootDirectory
  rules refuse paths through a world-writable directory) holding its host key, config,
  pid file and log;
- its PAM service name is its own: sshd 9.2 has no PAMServiceName option and takes the
  service from basename(argv[0]), so it is started through a symlink
  /usr/local/sbin/sshd-pjt-XXXX -> /usr/sbin/sshd and the caller's PAM text is written
  to /etc/pam.d/sshd-pjt-XXXX (both removed on stop);
- public keys live in AUTH_KEYS_DIR/<user> (root:root 0644), outside any home or jail,
  so a jailed user can never edit its own authorized keys.

Remote paths in `scp`/`rsync` arguments are written with a leading ':' (":up.txt"); the
harness turns them into user@127.0.0.1:up.txt.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SSHD_BINARY = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
HARNESS_BASE = "/var/lib/pam_jail-test"
AUTH_KEYS_DIR = f"{HARNESS_BASE}/keys"
CLIENT_KEYS_DIR = f"{HARNESS_BASE}/clients"
SYMLINK_DIR = "/usr/local/sbin"
PAM_DIR = "/etc/pam.d"
PRIVSEP_DIR = "/run/sshd"
HOST = "127.0.0.1"

# A PAM stack that lets key-authenticated users in (Debian's common-* files).
PERMIT_PAM = """\
# pam_jail test harness: plain stack
@include common-auth
@include common-account
@include common-session-noninteractive
"""

CLIENT_TIMEOUT = 30.0


def unique_name(prefix: str = "pjt", length: int = 8) -> str:
    """A random, lowercase name usable as user, group and PAM service name (<= 32 chars)."""
    name = prefix + secrets.token_hex(length // 2 + 1)[:length]
    assert len(name) <= 32
    return name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float, alive: Iterator[bool] | None = None) -> bool:
    """Poll until 127.0.0.1:port accepts a TCP connection, or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not next(alive):
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _private_dir(path: str, mode: int = 0o700) -> str:
    os.makedirs(path, mode=mode, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a setup command; raise with its stderr if it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60,
                          check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    result: subprocess.CompletedProcess[str] = proc
    return result


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    key: str            # private key path (root-owned 0600, used by the root-run clients)
    created_home: bool  # whether useradd -m made the home (then userdel -r removes it)


def make_group(name: str) -> int:
    """groupadd NAME; returns the gid."""
    _run(["groupadd", name])
    return grp.getgrnam(name).gr_gid


def remove_group(name: str) -> None:
    with contextlib.suppress(KeyError):
        grp.getgrnam(name)
        subprocess.run(["groupdel", "-f", name], capture_output=True, check=False, timeout=30)


def make_user(name: str, shell: str = "/bin/sh", home: str | None = None,
              groups: Sequence[str] = (), *, create_home: bool = True) -> User:
    """useradd a real user (own primary group) with an ed25519 key pair, key authorized.

    `home` defaults to /home/NAME. With create_home=False the home directory is neither
    created nor removed later (use it for jail paths the test owns).
    """
    home = home or f"/home/{name}"
    argv = ["useradd", "-U", "-s", shell, "-d", home, "-p", "*"]
    argv += ["-m"] if create_home else ["-M"]
    if groups:
        argv += ["-G", ",".join(groups)]
    _run([*argv, name])
    try:
        pw = pwd.getpwnam(name)
        keydir = _private_dir(f"{CLIENT_KEYS_DIR}/{name}")
        key = f"{keydir}/id_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@pjtest", "-f", key])
        _private_dir(AUTH_KEYS_DIR, 0o755)
        auth = f"{AUTH_KEYS_DIR}/{name}"
        shutil.copyfile(f"{key}.pub", auth)
        os.chown(auth, 0, 0)
        os.chmod(auth, 0o644)
    except BaseException:
        remove_user(name, remove_home=create_home)
        raise
    return User(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=home, shell=shell, key=key,
                created_home=create_home)


def remove_user(name: str, *, remove_home: bool = True) -> None:
    """userdel -f (-r) NAME, its primary group, its keys. Never raises."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        argv = ["userdel", "-f", *(["-r"] if remove_home else []), name]
        subprocess.run(argv, capture_output=True, check=False, timeout=30)
    remove_group(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{AUTH_KEYS_DIR}/{name}")
    shutil.rmtree(f"{CLIENT_KEYS_DIR}/{name}", ignore_errors=True)


# --------------------------------------------------------------------------- forwarding


@dataclass
class ForwardResult:
    """What happened when a client tried to move bytes through a forwarding."""

    data_through: bool            # the target listener got our payload or we got its banner
    target_received: bytes        # everything the target listener read
    client_received: bytes        # everything we read back on the client side
    returncode: int | None        # ssh client's exit status (None: we had to kill it)
    stderr: str                   # ssh client's stderr


@dataclass
class TargetListener:
    """A TCP server on 127.0.0.1: sends BANNER to each connection, records what it reads."""

    banner: bytes = field(default_factory=lambda: b"PJT-BANNER-" + secrets.token_hex(4).encode())
    received: bytearray = field(default_factory=bytearray)
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> TargetListener:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((HOST, 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(3.0)
                with contextlib.suppress(OSError):
                    conn.sendall(self.banner + b"\n")
                    while chunk := conn.recv(4096):
                        self.received += chunk
                        if b"\n" in chunk:
                            break

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _socks5_connect(sock: socket.socket, port: int) -> bool:
    """SOCKS5 no-auth CONNECT to 127.0.0.1:port; True if the proxy says it succeeded."""
    sock.sendall(b"\x05\x01\x00")
    if sock.recv(2) != b"\x05\x00":
        return False
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(HOST) + port.to_bytes(2, "big"))
    reply = sock.recv(10)
    return len(reply) >= 2 and reply[1] == 0


def _read_some(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            data += chunk
            if b"\n" in data:
                break
    return data


# --------------------------------------------------------------------------- sshd


class Sshd:
    """One sshd on 127.0.0.1:port with its own config, host key, PAM service and log."""

    def __init__(self, pam_text: str = PERMIT_PAM, extra_config: str = "",
                 *, log_level: str = "VERBOSE", sftp_subsystem: str = SFTP_SERVER,
                 wrapper: Sequence[str] = ()) -> None:
        self.sftp_subsystem = sftp_subsystem
        self.wrapper = list(wrapper)    # e.g. nsenter into a mount namespace of the test's
        self.pam_text = pam_text
        self.extra_config = extra_config
        self.log_level = log_level
        self.service = unique_name("sshd-pjt-")
        self.dir = f"{HARNESS_BASE}/{self.service}"
        self.config_path = f"{self.dir}/sshd_config"
        self.host_key = f"{self.dir}/ssh_host_ed25519_key"
        self.pid_file = f"{self.dir}/sshd.pid"
        self.log_path = f"{self.dir}/sshd.log"
        self.binary = f"{SYMLINK_DIR}/{self.service}"   # argv[0]: PAM service name
        self.pam_path = f"{PAM_DIR}/{self.service}"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle

    def config_text(self) -> str:
        return (
            f"# pam_jail test harness sshd ({self.service}); not the system config\n"
            f"ListenAddress {HOST}:{self.port}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.pid_file}\n"
            f"LogLevel {self.log_level}\n"
            "UsePAM yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            f"AuthorizedKeysFile {AUTH_KEYS_DIR}/%u\n"
            "StrictModes yes\n"
            "PermitRootLogin no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "MaxStartups 50:30:100\n"
            f"Subsystem sftp {self.sftp_subsystem}\n"
            "# ---- extra_config (verbatim; Match blocks last)\n"
            f"{self.extra_config}\n"
        )

    def prepare(self) -> None:
        """Write dir, host key, config, PAM file, symlink (also used for `sshd -t`)."""
        _private_dir(HARNESS_BASE, 0o755)
        _private_dir(self.dir)
        _private_dir(PRIVSEP_DIR, 0o755)
        if not os.path.exists(self.host_key):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.host_key])
        if not self.port:
            self.port = free_port()
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(self.config_text())
        with open(self.pam_path, "w", encoding="utf-8") as fh:
            fh.write(self.pam_text)
        os.chmod(self.pam_path, 0o644)
        if not os.path.islink(self.binary):
            os.symlink(SSHD_BINARY, self.binary)

    def start(self, timeout: float = 15.0) -> Sshd:
        for _attempt in range(3):
            self.port = free_port()
            self.prepare()
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            try:
                self.proc = subprocess.Popen(
                    [*self.wrapper, self.binary, "-D", "-e", "-f", self.config_path],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            finally:
                log.close()
            if self._wait_listening(timeout):
                return self
            self._kill()
            if "Address already in use" not in self.log_text():
                break
        self.stop()
        raise RuntimeError(f"sshd {self.service} did not start:\n{self.log_text()}")

    def _wait_listening(self, timeout: float) -> bool:
        """sshd logs "Server listening on ..." after listen(); no probe connection needed."""
        needle = f"Server listening on {HOST} port {self.port}."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if needle in self.log_text():
                return True
            time.sleep(0.02)
        return False

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # sshd -D runs in its own session (start_new_session): its group id is its pid.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Kill and reap sshd; remove symlink, PAM file and directory. Idempotent."""
        self._kill()
        for path in (self.binary, self.pam_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """sshd's stderr so far (LogLevel as configured)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            time.sleep(0.05)
        return False

    def test_config(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """`sshd -t` (or -T with extra args such as '-C', 'user=x,...') on this config."""
        self.prepare()
        return subprocess.run([self.binary, "-f", self.config_path, *extra],
                              capture_output=True, text=True, timeout=30, check=False)

    def effective(self, user: str, host: str = "localhost",
                  addr: str = HOST) -> dict[str, list[str]]:
        """`sshd -T -C user=..,host=..,addr=..`: keyword -> values (lowercase keywords)."""
        proc = self.test_config("-T", "-C", f"user={user},host={host},addr={addr}")
        if proc.returncode != 0:
            raise RuntimeError(f"sshd -T failed: {proc.stderr.strip()}")
        out: dict[str, list[str]] = {}
        for line in proc.stdout.splitlines():
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value)
        return out

    # ---- clients

    def client_options(self, user: User) -> list[str]:
        """Options shared by ssh, scp, sftp (port given separately: -p vs -P)."""
        return [
            "-F", "/dev/null",
            "-i", user.key,
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=5",
            "-o", f"User={user.name}",
        ]

    def ssh_argv(self, user: User, *command: str, options: Sequence[str] = (),
                 tty: bool = False) -> list[str]:
        return ["ssh", *self.client_options(user), "-p", str(self.port),
                *(["-tt"] if tty else ["-T"]), *options, HOST,
                *(["--", *command] if command else [])]

    def ssh(self, user: User, *command: str, options: Sequence[str] = (),
            input: str | None = None, tty: bool = False,
            timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """ssh USER@127.0.0.1 COMMAND... (each word sent as is; the server's shell joins)."""
        return subprocess.run(self.ssh_argv(user, *command, options=options, tty=tty),
                              input=input if input is not None else "",
                              capture_output=True, text=True, timeout=timeout, check=False)

    def _remote(self, user: User, arg: str) -> str:
        return f"{user.name}@{HOST}:{arg[1:]}" if arg.startswith(":") else arg

    def scp(self, user: User, src: str, dst: str, legacy: bool = False,
            timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """scp SRC DST (':path' = remote). legacy=True: -O (scp protocol, not sftp)."""
        argv = ["scp", *self.client_options(user), "-P", str(self.port), "-q",
                *(["-O"] if legacy else []), self._remote(user, src), self._remote(user, dst)]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def sftp_batch(self, user: User, batch_text: str,
                   timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """sftp -b - (stops at the first failing command, unless prefixed with '-')."""
        argv = ["sftp", *self.client_options(user), "-P", str(self.port), "-b", "-", HOST]
        return subprocess.run(argv, input=batch_text, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def rsync(self, user: User, *args: str,
              timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """rsync -e 'ssh ...' ARGS (':path' = remote)."""
        import shlex

        rsh = shlex.join(["ssh", *self.client_options(user), "-p", str(self.port)])
        argv = ["rsync", "-e", rsh, *(self._remote(user, a) for a in args)]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def try_forward_w(self, user: User, timeout: float = 10.0) -> ForwardResult:
        """ssh -W 127.0.0.1:PORT (stdio forwarding) to a listener on the host."""
        with TargetListener() as target:
            payload = "PJT-PAYLOAD-W\n"
            try:
                proc = subprocess.run(
                    self.ssh_argv(user, options=["-W", f"{HOST}:{target.port}"]),
                    input=payload.encode(), capture_output=True, timeout=timeout, check=False)
                rc: int | None = proc.returncode
                out, err = proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, out, err = None, exc.stdout or b"", exc.stderr or b""
            time.sleep(0.2)
            got = bytes(target.received)
        through = b"PJT-PAYLOAD-W" in got or target.banner in out
        return ForwardResult(through, got, out, rc, err.decode(errors="replace"))

    def try_forward_l(self, user: User, timeout: float = 10.0) -> ForwardResult:
        """ssh -N -L LPORT:127.0.0.1:TPORT, then connect to LPORT and try to talk."""
        return self._try_local_listener(user, "L", timeout)

    def try_forward_d(self, user: User, timeout: float = 10.0) -> ForwardResult:
        """ssh -N -D LPORT (SOCKS5), then CONNECT through it to a host listener."""
        return self._try_local_listener(user, "D", timeout)

    def _try_local_listener(self, user: User, kind: str, timeout: float) -> ForwardResult:
        with TargetListener() as target:
            lport = free_port()
            spec = f"{HOST}:{lport}:{HOST}:{target.port}" if kind == "L" else f"{HOST}:{lport}"
            argv = self.ssh_argv(user, options=["-N", f"-{kind}", spec,
                                                "-o", "ExitOnForwardFailure=yes"])
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            client = b""
            try:
                alive = (proc.poll() is None for _ in iter(int, 1))
                if wait_for_port(lport, timeout, alive):
                    with socket.create_connection((HOST, lport), timeout=timeout) as sock:
                        ok = True
                        if kind == "D":
                            with contextlib.suppress(OSError):
                                ok = _socks5_connect(sock, target.port)
                        if ok:
                            with contextlib.suppress(OSError):
                                sock.sendall(f"PJT-PAYLOAD-{kind}\n".encode())
                            client = _read_some(sock, 3.0)
                time.sleep(0.2)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                try:
                    _, err = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate(timeout=5)
            got = bytes(target.received)
        through = f"PJT-PAYLOAD-{kind}".encode() in got or target.banner in client
        return ForwardResult(through, got, client, proc.returncode,
                             err.decode(errors="replace"))
