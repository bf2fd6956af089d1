"""`pam-jail logrelay` (jailkit's jk_socketd): a /dev/log inside every jail, relayed to
the host's syslog with per-jail rate limits.

A chrooted program that calls syslog(3) writes to /dev/log *inside* its jail. This
daemon (root, one process, no threads) gives each jail such a socket and forwards what
arrives. The jails: every jail of jails.ini, plus every jail known only from a passwd
user's `/./` home marker (resolve.split_marker; named `marker:ROOT`, as in `check` and
`list`; users with jailkit's own shell are left to jailkit, as resolve() does).

  jails -> each jail: JAIL/dev opened with safety.open_checked (root-owned path, no
    links, not group/other-writable) -> a datagram socket bound to a temporary name in
    that directory (through the checked fd), chmod 0666, renamed over JAIL/dev/log
    (atomic: a sender never sees a missing socket while the relay restarts)
  loop (epoll): read every readable jail socket until it is empty (the jail side must
    never fill: a full queue would block the jailed sender) -> per jail, a two-bucket
    rate limit -> rewrite (below) -> one non-blocking send to the host's /dev/log
  host down (send refused, socket gone) -> reconnect at most every 0.2 s and drop+count
  meanwhile; host full (EAGAIN) -> drop+count; the host's /dev/log replaced (its inode
    changed: a syslog restart) -> reconnect
  SIGUSR1 -> print the counters; SIGTERM/SIGINT -> print them, remove our sockets, exit
  SIGHUP -> re-read jails.ini, the markers and logrelay.ini: bind the sockets of new
    jails, remove those of jails gone (only a socket this relay bound: same inode),
    retune the limits of the others; counters are kept. A file that fails to load
    leaves everything as it was (reported; the relay keeps running).

Counters per jail: received == forwarded + dropped_rate + dropped_host, always.

The line the host gets (rewrite(); no text of the sender comes before our tag, so no jail
line can pass for sshd's, PAM's or pam_jail's):
    <PRI>Mmm dd hh:mm:ss jail-NAME[PID]: TEXT [jail=NAME uid=UID pid=PID]
  PRI: the jail's configured facility (`facility`, default user; kern, auth, authpriv
    and syslog are refused at load) with the severity the sender asked for; the
    sender's facility is discarded. The timestamp is the relay's.
  jail-NAME: the tag is ours; NAME is the jail's name with every character other than
    A-Z a-z 0-9 . _ - made `_` (`marker:/srv/j` -> `jail-marker__srv_j`).
  PID, uid: the sender as the host sees it (SO_PASSCRED), never from the message.
  TEXT: what the sender wrote after its <PRI> and its own timestamp (its claimed tag
    and message), cut to max_length characters, then log.escape (a newline, an ESC or
    a bidi override shows as \\x0a, \\x1b, \\u202e: one datagram, one line).

Settings: /etc/pam_jail/logrelay.ini (see etc/pam_jail/logrelay.ini and docs/tools.md):
    [relay]   host_socket, max_length, facility   (facility: the default of every jail)
    [limits]  base, peak, interval               (defaults for every jail)
    [jails]   [[NAME]] base, peak, interval, facility, relay = yes|no   (per jail)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pam_jail.login.config import DEFAULT_PATH, read_ini
from pam_jail.login.config_file import load_config, read_root_owned
from pam_jail.login.errors import ConfigError, PamJailError
from pam_jail.login.log import escape
from pam_jail.login.safety import open_checked

SETTINGS_PATH = "/etc/pam_jail/logrelay.ini"
HOST_SOCKET = "/dev/log"
RECV_SIZE = 16384                 # a longer datagram is cut (MSG_TRUNC) and then clipped
BATCH = 256                       # reads per socket per round (fairness between jails)
RECONNECT_EVERY = 0.2             # seconds between attempts while the host is down
HOST_CHECK_EVERY = 1.0            # seconds between checks that /dev/log is still ours
DEFAULT_SEVERITY = 5              # notice, for a message without a valid <PRI>
_UCRED = struct.Struct("3i")

# [relay] and [limits] keys: name -> (type, default, minimum)
RELAY_KEYS: dict[str, tuple[type, object, float]] = {
    "host_socket": (str, HOST_SOCKET, 0),
    "max_length": (int, 1024, 16),
}
LIMIT_KEYS: dict[str, tuple[type, object, float]] = {
    "base": (float, 50.0, 0.01),      # messages/s on average over `interval`
    "peak": (float, 200.0, 1.0),      # messages at once (and per second at most)
    "interval": (float, 10.0, 0.1),   # seconds over which base is averaged
}

# The facilities a jail's lines may be given (syslog(3)'s codes). Refused: kern (0: only
# the kernel logs there, and readers trust it as such), auth (4) and authpriv (10): sshd's,
# PAM's and pam_jail's own lines, what fail2ban and auditors read; syslog (5): the syslog
# daemon's own messages.
FACILITIES = {"user": 1, "mail": 2, "daemon": 3, "lpr": 6, "news": 7, "uucp": 8,
              "cron": 9, "ftp": 11, **{f"local{n}": 16 + n for n in range(8)}}
REFUSED_FACILITIES = ("kern", "auth", "authpriv", "security", "syslog")
DEFAULT_FACILITY = "user"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")
_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


# --------------------------------------------------------------------- settings

@dataclass
class Limits:
    base: float = 50.0
    peak: float = 200.0
    interval: float = 10.0


@dataclass
class Settings:
    host_socket: str = HOST_SOCKET
    max_length: int = 1024
    facility: str = DEFAULT_FACILITY
    limits: Limits = field(default_factory=Limits)
    per_jail: dict[str, Limits] = field(default_factory=dict)
    facilities: dict[str, str] = field(default_factory=dict)     # per jail, when set
    disabled: set[str] = field(default_factory=set)

    def facility_of(self, jail: str) -> int:
        """The facility code every line of `jail` gets."""
        return FACILITIES[self.facilities.get(jail, self.facility)]


def _facility(section: object, where: str, problems: list[str]) -> str | None:
    """The section's `facility`, checked; None when absent or refused (a problem)."""
    value = section.get("facility") if isinstance(section, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: facility: expected one value")
    elif value in REFUSED_FACILITIES:
        problems.append(f"{where}: facility: {value} is refused: a jail's lines must "
                        f"never pass for the kernel's, sshd's/PAM's (auth, authpriv) or "
                        f"the syslog daemon's; use {DEFAULT_FACILITY}, daemon or local0-7")
    elif value not in FACILITIES:
        problems.append(f"{where}: facility: unknown {value[:32]!r} (one of "
                        f"{', '.join(FACILITIES)})")
    else:
        return value
    return None


def _typed(section: object, keys: dict[str, tuple[type, object, float]], where: str,
           problems: list[str], extra: tuple[str, ...] = ()) -> dict[str, str | float]:
    out: dict[str, str | float] = {}
    if not isinstance(section, dict):
        problems.append(f"{where}: not a section")
        return out
    for key, value in section.items():
        if key in extra:
            continue
        if key not in keys:
            problems.append(f"{where}: unknown key {key!r}")
            continue
        kind, _default, minimum = keys[key]
        if not isinstance(value, str):
            problems.append(f"{where}: {key}: expected one value")
            continue
        if kind is str:
            if not value.startswith("/"):
                problems.append(f"{where}: {key}: expected an absolute path")
                continue
            out[key] = value
            continue
        try:
            number = kind(value)
        except ValueError:
            problems.append(f"{where}: {key}: expected a number, got {value[:32]!r}")
            continue
        if not number >= minimum:  # also refuses nan
            problems.append(f"{where}: {key}: must be at least {minimum}")
            continue
        out[key] = number
    return out


def _limits(values: dict[str, str | float], base: Limits) -> Limits:
    def number(key: str, default: float) -> float:
        value = values.get(key, default)
        return float(value)

    return Limits(base=number("base", base.base), peak=number("peak", base.peak),
                  interval=number("interval", base.interval))


def parse_settings(text: str, source: str = SETTINGS_PATH) -> Settings:
    """logrelay.ini, validated. Pure. Raises ConfigError listing every problem."""
    tree, problems = read_ini(text, source)
    for name in tree:
        if name not in ("relay", "limits", "jails"):
            problems.append(f"{source}: unknown section or key {name!r}")
    relay = _typed(tree.get("relay", {}), RELAY_KEYS, f"{source}: [relay]", problems,
                   extra=("facility",))
    limits = _typed(tree.get("limits", {}), LIMIT_KEYS, f"{source}: [limits]", problems)
    settings = Settings()
    settings.host_socket = str(relay.get("host_socket", HOST_SOCKET))
    settings.max_length = int(relay.get("max_length", 1024))
    settings.facility = _facility(tree.get("relay", {}), f"{source}: [relay]",
                                  problems) or DEFAULT_FACILITY
    settings.limits = _limits(limits, Limits())
    jails = tree.get("jails", {})
    if not isinstance(jails, dict):
        problems.append(f"{source}: [jails]: not a section")
        jails = {}
    for name, section in jails.items():
        where = f"{source}: [[{name}]]"
        own = _typed(section, LIMIT_KEYS, where, problems, extra=("relay", "facility"))
        facility = _facility(section, where, problems)
        if facility is not None:
            settings.facilities[name] = facility
        relay_flag = section.get("relay", "yes") if isinstance(section, dict) else "yes"
        if relay_flag not in ("yes", "no"):
            problems.append(f"{where}: relay: expected yes or no")
        elif relay_flag == "no":
            settings.disabled.add(name)
        settings.per_jail[name] = _limits(own, settings.limits)
    if problems:
        raise ConfigError(f"load {source}: invalid", problems=problems)
    return settings


def load_settings(path: str | None) -> Settings:
    """The settings file, checked like jails.ini (root-owned, not writable by others).
    The default path may be absent (built-in defaults); a path given must exist."""
    if path is None:
        path = SETTINGS_PATH
        if not os.path.exists(path):
            return Settings()
    return parse_settings(read_root_owned(path, "settings file"), path)


# --------------------------------------------------------------- pure decisions

class Bucket:
    """Two token buckets (tc's rate and ceil): `base` tokens/s up to base*interval (the
    average over any `interval` seconds stays at base), and `peak` tokens/s up to peak
    (never more than peak at once). A message passes when both hold a token."""

    __slots__ = ("base", "peak", "avg_cap", "avg", "burst", "last")

    def __init__(self, limits: Limits, now: float) -> None:
        self.base, self.peak = limits.base, limits.peak
        self.avg_cap = max(1.0, limits.base * limits.interval)
        self.avg, self.burst, self.last = self.avg_cap, limits.peak, now

    def retune(self, limits: Limits) -> None:
        """New limits (a reload); the tokens held stay, clipped to the new caps."""
        self.base, self.peak = limits.base, limits.peak
        self.avg_cap = max(1.0, limits.base * limits.interval)
        self.avg, self.burst = min(self.avg, self.avg_cap), min(self.burst, self.peak)

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.last)
        self.last = now
        self.avg = min(self.avg_cap, self.avg + elapsed * self.base)
        self.burst = min(self.peak, self.burst + elapsed * self.peak)
        if self.avg < 1.0 or self.burst < 1.0:
            return False
        self.avg -= 1.0
        self.burst -= 1.0
        return True


def _skip_timestamp(data: bytes) -> bytes:
    """Drop a leading RFC 3164 timestamp (`Mmm dd hh:mm:ss `, what syslog(3) sends): the
    relay puts its own in front of the tag. Anything else is left as the sender wrote it."""
    if len(data) >= 16 and data[:3].decode("ascii", "replace") in _MONTHS and \
            data[3:4] == b" " and data[6:7] == b" " and data[15:16] == b" " and \
            data[4:6].strip().isdigit() and data[9:13:3] == b"::" and \
            data[7:9].isdigit() and data[10:12].isdigit() and data[13:15].isdigit():
        return data[16:]
    return data


def jail_tag(jail: str) -> str:
    """Our syslog tag for a jail: `jail-` and its name in tag-safe characters."""
    return "jail-" + "".join(c if c in _TAG_CHARS else "_" for c in jail)


def rewrite(data: bytes, jail: str, uid: int | None, pid: int | None, max_length: int,
            facility: int = FACILITIES[DEFAULT_FACILITY], stamp: str | None = None) -> bytes:
    """One jailed datagram -> the line for the host (format: the module docstring). Pure,
    but for the clock when `stamp` is None. The sender's severity is kept when its <PRI>
    is a valid <0..191> (else notice), its facility never: `facility` (a code) is the
    jail's. The rest, after the sender's own timestamp, is decoded (invalid UTF-8
    replaced), trailing newlines/NULs dropped, cut to max_length characters ('...' marks
    a cut) and escaped (log.escape); it follows our tag `jail-NAME[PID]: `, and the
    trailer names the jail and the sender's kernel-reported uid and pid."""
    severity = DEFAULT_SEVERITY
    if data[:1] == b"<":
        end = data.find(b">", 1, 5)
        digits = data[1:end] if end > 1 else b""
        if digits.isdigit() and int(digits) <= 191 and (digits == b"0" or digits[:1] != b"0"):
            severity = int(digits) & 7
            data = data[end + 1:]
    data = _skip_timestamp(data)
    text = data[: max_length * 4].decode("utf-8", "replace").rstrip("\n\0")
    text = escape(text, max_length)
    if stamp is None:
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
    who = f" uid={uid} pid={pid}" if uid is not None else ""
    return (f"<{facility << 3 | severity}>{stamp} {jail_tag(jail)}"
            f"{'' if pid is None else f'[{pid}]'}: {text} [jail={escape(jail)}{who}]"
            ).encode("utf-8", "replace")


# ------------------------------------------------------------------- the daemon

@dataclass
class JailSocket:
    name: str
    root: str
    path: str                          # JAIL/dev/log
    sock: socket.socket
    dev_fd: int                        # O_PATH fd of the checked JAIL/dev
    ino: tuple[int, int]               # our socket file, to remove only ours
    bucket: Bucket
    received: int = 0
    forwarded: int = 0
    dropped_rate: int = 0
    dropped_host: int = 0
    noticed_rate: int = 0              # dropped_rate at the last notice
    notice_at: float = 0.0

    def counters(self) -> dict[str, int]:
        return {"received": self.received, "forwarded": self.forwarded,
                "dropped_rate": self.dropped_rate, "dropped_host": self.dropped_host}


def open_jail_socket(name: str, root: str) -> tuple[socket.socket, int, tuple[int, int]]:
    """Bind JAIL/dev/log atomically through the checked JAIL/dev fd. Raises OSError."""
    dev_fd = open_checked(f"{root}/dev")              # root-owned chain, no links
    try:
        tmp = f".log.pam_jail-{os.getpid()}"
        try:
            os.unlink(tmp, dir_fd=dev_fd)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                             | socket.SOCK_NONBLOCK)
        try:
            sock.bind(f"/proc/self/fd/{dev_fd}/{tmp}")     # in the checked directory
            os.chmod(tmp, 0o666, dir_fd=dev_fd)  # noqa: S103 - a /dev/log: everyone logs
            st = os.stat(tmp, dir_fd=dev_fd, follow_symlinks=False)
            if not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0:
                raise OSError(errno.EPERM, f"{root}/dev/{tmp}: not our socket")
            existing = _lstat_at("log", dev_fd)
            if existing is not None and not stat.S_ISSOCK(existing.st_mode):
                raise OSError(errno.EEXIST, f"{root}/dev/log exists and is not a socket")
            os.rename(tmp, "log", src_dir_fd=dev_fd, dst_dir_fd=dev_fd)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            except OSError:
                pass
        except BaseException:
            sock.close()
            try:
                os.unlink(tmp, dir_fd=dev_fd)
            except OSError:
                pass
            raise
        return sock, dev_fd, (st.st_dev, st.st_ino)
    except BaseException:
        os.close(dev_fd)
        raise


def _lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class Host:
    """The host's /dev/log: connected, non-blocking; reopened when refused or replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.ident: tuple[int, int] | None = None
        self.next_try = 0.0
        self.next_check = 0.0
        self.reconnects = 0

    def _connect(self, now: float) -> bool:
        self.close()
        self.next_try = now + RECONNECT_EVERY
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                             | socket.SOCK_NONBLOCK)
        try:
            st = os.stat(self.path)
            sock.connect(self.path)
        except OSError:
            sock.close()
            return False
        self.sock, self.ident = sock, (st.st_dev, st.st_ino)
        self.reconnects += 1
        return True

    def check(self, now: float) -> None:
        """A syslog restart may leave our connection pointing at a dead or replaced
        socket that still accepts nothing: reconnect when /dev/log is another inode."""
        if now < self.next_check:
            return
        self.next_check = now + HOST_CHECK_EVERY
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            current = None
        if current is not None and current != self.ident:
            self._connect(now)

    def send(self, data: bytes, now: float) -> bool:
        """True when the host took the message; False: dropped (down or full)."""
        for attempt in (0, 1):
            if self.sock is None and (now < self.next_try or not self._connect(now)):
                return False
            assert self.sock is not None
            try:
                self.sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
                return True
            except BlockingIOError:
                return False                    # host queue full: never wait
            except OSError as err:
                if err.errno == errno.EMSGSIZE:
                    return False
                self.close()                    # refused/reset/gone: host restarted
                if attempt == 0 and now < self.next_try:
                    return False
        return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


Loader = Callable[[], tuple[list[tuple[str, str]], Settings]]


class Relay:
    def __init__(self, jails: list[tuple[str, str]], settings: Settings, *,
                 as_json: bool = False, loader: Loader | None = None) -> None:
        self.settings = settings
        self.host = Host(settings.host_socket)
        self.as_json = as_json
        self.loader = loader               # SIGHUP: the jails and settings, read again
        self.jails: list[JailSocket] = []
        self.problems: list[str] = []
        self.selector = selectors.DefaultSelector()
        self.flags = {"report": False, "stop": False, "reload": False}
        self.log_reports = False           # detached: reports go to the host syslog too
        now = time.monotonic()
        for name, root in jails:
            self._bind(name, root, now, self.problems)

    def _bind(self, name: str, root: str, now: float, problems: list[str]) -> None:
        """Bind JAIL/dev/log and serve it; a failure is a problem, never fatal."""
        try:
            sock, dev_fd, ino = open_jail_socket(name, root)
        except OSError as err:
            problems.append(f"bind {root}/dev/log for jail {name}: {err.strerror or err}")
            return
        limits = self.settings.per_jail.get(name, self.settings.limits)
        js = JailSocket(name, root, f"{root}/dev/log", sock, dev_fd, ino, Bucket(limits, now))
        self.jails.append(js)
        self.selector.register(sock, selectors.EVENT_READ, js)

    def _retire(self, js: JailSocket) -> None:
        """Stop serving one jail: remove JAIL/dev/log only if it is still the socket we
        bound (same inode, looked up through the checked dev fd), close our fds."""
        try:
            st = _lstat_at("log", js.dev_fd)
            if st is not None and (st.st_dev, st.st_ino) == js.ino:
                os.unlink("log", dir_fd=js.dev_fd)
        except OSError:
            pass
        self.selector.unregister(js.sock)
        js.sock.close()
        os.close(js.dev_fd)

    def reload(self) -> None:
        """SIGHUP: read jails.ini, the markers and logrelay.ini again and apply them.
        Jails are matched by (name, root): a kept jail keeps its socket and counters and
        gets the new limits; a jail gone has its socket removed (only ours); a new jail
        is bound. If loading fails, nothing changes."""
        if self.loader is None:
            return
        try:
            jails, settings = self.loader()
        except PamJailError as err:
            errors = [str(err), *err.problems]
            self._emit({"event": "reload", "error": errors},
                       [f"logrelay: reload failed, nothing changed: {p}" for p in errors])
            for line in errors:
                print(f"pam_jail: logrelay: reload: {escape(line)}", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        self.settings = settings
        if settings.host_socket != self.host.path:
            reconnects = self.host.reconnects
            self.host.close()
            self.host = Host(settings.host_socket)
            self.host.reconnects = reconnects
        wanted = set(jails)
        removed = [js for js in self.jails if (js.name, js.root) not in wanted]
        for js in removed:
            self._retire(js)
        self.jails = [js for js in self.jails if (js.name, js.root) in wanted]
        for js in self.jails:
            js.bucket.retune(settings.per_jail.get(js.name, settings.limits))
        have = {(js.name, js.root) for js in self.jails}
        problems: list[str] = []
        before = len(self.jails)
        for name, root in jails:
            if (name, root) not in have:
                self._bind(name, root, now, problems)
        added = self.jails[before:]
        self.problems += problems
        for line in problems:
            print(f"pam_jail: logrelay: reload: {escape(line)}", file=sys.stderr, flush=True)
        event: dict[str, object] = {
            "event": "reload",
            "added": [{"jail": js.name, "socket": js.path} for js in added],
            "removed": [{"jail": js.name, "socket": js.path, **js.counters()}
                        for js in removed],
            "problems": problems, "sockets": [js.path for js in self.jails]}
        text = [f"logrelay: reload: added jail={js.name} {js.path}" for js in added]
        text += [f"logrelay: reload: removed jail={js.name} {js.path} " +
                 " ".join(f"{k}={v}" for k, v in js.counters().items()) for js in removed]
        text += [f"logrelay: reload: serving {len(self.jails)} jail(s)"]
        self._emit(event, text)

    # ---- the loop
    def run(self, idle: float | None = None) -> None:
        """Relay until SIGTERM/SIGINT, or (idle set) until no message came for `idle`
        seconds."""
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(rfd, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(wfd)
        handlers = {signal.SIGUSR1: "report", signal.SIGTERM: "stop", signal.SIGINT: "stop",
                    signal.SIGHUP: "reload"}
        saved = {sig: signal.signal(sig, self._on_signal) for sig in handlers}
        last_message = time.monotonic()
        try:
            while not self.flags["stop"]:
                events = self.selector.select(0.5 if idle is None else min(idle, 0.5))
                now = time.monotonic()
                for key, _mask in events:
                    if key.data is None:
                        _drain_pipe(rfd)
                    elif self._drain(key.data, now):
                        last_message = now
                self.host.check(now)
                self._notices(now)
                if self.flags["reload"]:
                    self.flags["reload"] = False
                    self.reload()
                if self.flags["report"]:
                    self.flags["report"] = False
                    self.report("counters")
                if idle is not None and now - last_message >= idle:
                    break
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            self.selector.unregister(rfd)
            os.close(rfd)
            os.close(wfd)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.flags["stop"] = True
        else:
            self.flags["reload" if signum == signal.SIGHUP else "report"] = True

    def _drain(self, js: JailSocket, now: float) -> bool:
        got = False
        anc = socket.CMSG_SPACE(_UCRED.size)
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, _addr = js.sock.recvmsg(RECV_SIZE, anc)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break                                # never die on a jail's socket
            got = True
            js.received += 1
            if not js.bucket.take(now):
                js.dropped_rate += 1
                continue
            uid = pid = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS \
                        and len(value) >= _UCRED.size:
                    pid, uid, _gid = _UCRED.unpack_from(value)
            line = rewrite(data, js.name, uid, pid, self.settings.max_length,
                           self.settings.facility_of(js.name))
            if self.host.send(line, now):
                js.forwarded += 1
            else:
                js.dropped_host += 1
        return got

    def _notices(self, now: float) -> None:
        """At most one line per jail and interval about messages the limit dropped."""
        for js in self.jails:
            dropped = js.dropped_rate - js.noticed_rate
            if dropped and now >= js.notice_at:
                limits = self.settings.per_jail.get(js.name, self.settings.limits)
                js.notice_at = now + limits.interval
                js.noticed_rate = js.dropped_rate
                self.host.send(f"<{4 << 3 | 4}>pam_jail-logrelay[{os.getpid()}]: jail "
                               f"{escape(js.name)}: {dropped} messages dropped (rate limit base="
                               f"{limits.base:g}/s peak={limits.peak:g})".encode(), now)

    # ---- output
    def counters(self) -> dict[str, dict[str, int]]:
        return {js.name: js.counters() for js in self.jails}

    def report(self, event: str) -> None:
        counters = self.counters()
        self._emit({"event": event, "jails": counters,
                    "host_reconnects": self.host.reconnects},
                   [f"logrelay: {event}: jail={name} " +
                    " ".join(f"{k}={v}" for k, v in c.items())
                    for name, c in counters.items()] or [f"logrelay: {event}: no jails"])

    def _emit(self, obj: dict[str, object], text: list[str]) -> None:
        """One JSON object (--json) or the text lines on stdout; detached, to the host's
        syslog too."""
        lines = [json.dumps(obj)] if self.as_json else [escape(line) for line in text]
        for line in lines:
            print(line, flush=True)
            if self.log_reports:
                self.host.send(f"<{4 << 3 | 6}>pam_jail-logrelay[{os.getpid()}]: "
                               f"{line}".encode(), time.monotonic())

    def close(self) -> None:
        """Remove our sockets (only if JAIL/dev/log is still the one we bound)."""
        for js in self.jails:
            self._retire(js)
        self.jails = []
        self.host.close()
        self.selector.close()


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


# ---------------------------------------------------------------------- command

def marker_jails(taken: set[str]) -> list[tuple[str, str]]:
    """Jails known only from a passwd home with jailkit's `/./` marker (split by
    resolve.split_marker), named `marker:ROOT` like `check` and `list` name them. Roots
    in `taken` (configured jails) are skipped, and so are roots that are not absolute or
    are `/` (the host's own /dev/log), roots that are no directory (yet: a reload picks
    them up), roots with no JAIL/dev at all (an sftp-only jail: nothing in it can reach a
    /dev/log, and no admin asked for one; a configured jail without /dev is a problem),
    and users whose shell is jailkit's own: resolve() leaves those to jailkit,
    whose jk_socketd serves them. The socket is bound with the
    same rule as for a configured jail (safety.open_checked on JAIL/dev)."""
    from pam_jail.admin.known import known_jails

    return [(k.name, k.root) for k in sorted(known_jails(None), key=lambda k: k.root)
            if not k.jailkit_only and k.root not in taken and os.path.isdir(k.root)
            and os.path.lexists(os.path.join(k.root, "dev"))]


def wanted_jails(config_path: str | None, settings: Settings, only: list[str], *,
                 strict: bool = True) -> list[tuple[str, str]]:
    """(name, root) of every jail to serve: jails.ini's, then the marker-only ones,
    without those `relay = no` disables, limited to `only` when given. jails.ini may be
    absent only at its default path. strict: a name in `only` that is no jail is an
    error (at start; on reload such a jail is simply no longer served)."""
    path = config_path or DEFAULT_PATH
    configured: list[tuple[str, str]] = []
    if config_path is not None or os.path.exists(path):
        cfg = load_config(path)
        configured = [(j.name, j.root) for j in cfg.jails.values()]
    every = configured + marker_jails({root for _name, root in configured})
    unknown = [n for n in only if n not in {name for name, _root in every}]
    if unknown and strict:
        raise ConfigError(f"logrelay: no such jail in {path} or a /./ home marker: "
                          f"{', '.join(unknown)}")
    return [(name, root) for name, root in every
            if (not only or name in only) and name not in settings.disabled]


def _detach() -> None:
    """The classic double fork: no controlling terminal, not a process group leader."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir("/")


def _settings(args: argparse.Namespace) -> Settings:
    """logrelay.ini, with the command line's flags over it (for every jail)."""
    settings = load_settings(args.settings)
    for key in ("base", "peak", "interval"):
        value = getattr(args, key)
        if value is not None:
            if not value >= LIMIT_KEYS[key][2]:
                raise PamJailError(f"logrelay: --{key} must be at least {LIMIT_KEYS[key][2]}")
            setattr(settings.limits, key, value)
            for limits in settings.per_jail.values():
                setattr(limits, key, value)
    if args.host_socket:
        settings.host_socket = args.host_socket
    return settings


def run(args: argparse.Namespace) -> int:
    # absolute before _detach() changes to /: SIGHUP reads the same files again
    for key in ("config", "settings"):
        if getattr(args, key) is not None:
            setattr(args, key, os.path.abspath(getattr(args, key)))
    settings = _settings(args)
    jails = wanted_jails(args.config, settings, args.jail)

    def loader() -> tuple[list[tuple[str, str]], Settings]:
        fresh = _settings(args)
        return wanted_jails(args.config, fresh, args.jail, strict=False), fresh

    if args.dry_run:
        plan = [{"jail": name, "socket": f"{root}/dev/log",
                 "facility": settings.facilities.get(name, settings.facility),
                 **vars(settings.per_jail.get(name, settings.limits))} for name, root in jails]
        if args.json:
            print(json.dumps({"host_socket": settings.host_socket, "jails": plan}, indent=2))
        else:
            for item in plan:
                print(escape(f"logrelay: would bind {item['socket']} (jail {item['jail']}, "
                             f"facility {item['facility']}, base {item['base']:g}/s, peak "
                             f"{item['peak']:g}, interval {item['interval']:g}s) -> "
                             f"{settings.host_socket}"))
        return 0
    if not args.foreground and not args.once:
        _detach()
    relay = Relay(jails, settings, as_json=args.json, loader=loader)
    relay.log_reports = not args.foreground and not args.once
    try:
        for problem in relay.problems:
            print(f"pam_jail: {escape(problem)}", file=sys.stderr, flush=True)
        if not relay.jails:
            print("pam_jail: logrelay: no jail socket could be bound" if jails else
                  "pam_jail: logrelay: no jails configured", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps({"event": "ready", "sockets": [j.path for j in relay.jails]}),
                  flush=True)
        else:
            print("logrelay: ready: " + " ".join(j.path for j in relay.jails), flush=True)
        relay.run(idle=args.idle if args.once else None)
        relay.report("exit")
    finally:
        relay.close()
    return 1 if relay.problems else 0


DESCRIPTION = """\
Give every jail of jails.ini, and every jail known only from a user's /./ home marker
(named marker:ROOT), a syslog socket at JAIL/dev/log and relay what jailed programs
log to the host's /dev/log (jailkit's jk_socketd). Each socket is bound under
a temporary name in the checked JAIL/dev (root-owned path, no symlinks) and renamed
over dev/log, mode 0666. Each message is sent as
  <PRI>Mmm dd hh:mm:ss jail-NAME[PID]: TEXT [jail=NAME uid=UID pid=PID]
with the jail's facility (default user; kern, auth, authpriv and syslog are refused)
and the sender's severity, our tag first, the sender's text (its own tag and message)
cut to max_length characters with control, invisible and bidi characters escaped
(\\xNN, \\uNNNN), uid/pid as the kernel reports the sender. Per jail, a
rate limit drops what exceeds `base` messages/s averaged over `interval` seconds or
`peak` messages at once. The relay never blocks: it empties the jail sockets as fast
as they fill, sends to the host without waiting, drops and counts when the host's
syslog is full or down, and reconnects when it comes back (or /dev/log is replaced)."""

EPILOG = f"""\
settings ({SETTINGS_PATH}, optional, root-owned):
  [relay]   host_socket = /dev/log   max_length = 1024   facility = user
  [limits]  base = 50   peak = 200   interval = 10        (every jail)
  [jails]   [[NAME]] base/peak/interval/facility = ...  relay = no  (one jail)
  facility: user, mail, daemon, lpr, news, uucp, cron, ftp, local0-local7
  Flags given on the command line override the file for every jail.

counters (per jail, printed on SIGUSR1 and at exit; --json: one JSON object a line):
  received = forwarded + dropped_rate + dropped_host

signals: SIGUSR1 prints the counters; SIGTERM and SIGINT remove the sockets, print
the counters and exit; SIGHUP reloads: jails.ini, the /./ markers of passwd and
logrelay.ini are read again, new jails get their socket, the sockets of jails gone are
removed (only one this relay bound), the others keep socket and counters and get the
new limits (a file that fails to load changes nothing). Prints a reload line (JSON:
{{"event": "reload", "added", "removed" with final counters, "problems", "sockets"}}).

exit status:
  0 stopped cleanly; 1 a jail socket could not be bound (the others were served) or no
  jails; 2 usage; 3 bad jails.ini or logrelay.ini

examples:
  pam-jail logrelay --foreground                  (what the systemd unit runs)
  pam-jail logrelay --dry-run
  pam-jail logrelay --foreground --json -j web --base 5 --peak 20
  kill -USR1 $(pidof -s pam-jail)                 (print counters)
  systemctl kill -s HUP pam-jail-logrelay         (reload after adding a jail)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `logrelay` subcommand."""
    p = sub.add_parser("logrelay", help="relay the jails' /dev/log to the host's syslog",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", metavar="FILE", default=None,
                   help=f"jails.ini to read (default {DEFAULT_PATH})")
    p.add_argument("-s", "--settings", metavar="FILE", default=None,
                   help=f"logrelay.ini to read (default {SETTINGS_PATH}, if present)")
    p.add_argument("-j", "--jail", metavar="NAME", action="append", default=[],
                   help="serve only this jail (repeatable; a marker jail is "
                        "marker:ROOT; default: every jail)")
    p.add_argument("--host-socket", metavar="PATH", default=None,
                   help=f"the host's syslog socket (default {HOST_SOCKET})")
    p.add_argument("--base", type=float, default=None, metavar="N",
                   help="messages/s a jail may send on average (every jail)")
    p.add_argument("--peak", type=float, default=None, metavar="N",
                   help="messages a jail may send at once (every jail)")
    p.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="seconds over which base is averaged (every jail)")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground (systemd, tests); default: detach")
    p.add_argument("--once", action="store_true",
                   help="stay in the foreground and stop after --idle seconds without a "
                        "message")
    p.add_argument("--idle", type=float, default=2.0, metavar="SECONDS",
                   help="with --once: the quiet time that ends the relay (default 2)")
    p.add_argument("--json", action="store_true",
                   help="print the ready line and the counters as JSON objects")
    p.add_argument("--dry-run", action="store_true",
                   help="print the sockets and limits it would use; bind nothing")
    p.set_defaults(func=run)
