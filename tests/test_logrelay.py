"""pam-jail logrelay: a real relay process, real jails (the builder), senders that chroot
into the jail and drop to nobody before they log to /dev/log, and tests/syslog_capture.py
bound on the host's real /dev/log as the host's syslog."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jail_fixtures import build_jail, remove_jail
from sshd_harness import User
from syslog_capture import SyslogCapture
from util import safe_tmpdir

from pam_jail.admin.logrelay import Bucket, Limits, parse_settings, rewrite
from pam_jail.login.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = 65534

# Runs as root, reads the messages (hex, JSON) from stdin, then chroots into the jail,
# drops to nobody and sends each one to the jail's /dev/log with a blocking socket and
# a 20 s timeout: a relay that let the jail side fill would make it fail.
SENDER = r"""
import json, os, socket, sys, time
msgs = [bytes.fromhex(m) for m in json.load(sys.stdin)]
os.chroot(sys.argv[1]); os.chdir("/")
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(20)
s.connect("/dev/log")
start = time.monotonic()
for m in msgs:
    s.send(m)
print(json.dumps({"sent": len(msgs), "seconds": time.monotonic() - start,
                  "pid": os.getpid()}))
"""


def send_from_jail(root: str, messages: list[bytes]) -> dict[str, float]:
    r = subprocess.run([sys.executable, "-I", "-c", SENDER, root],
                       input=json.dumps([m.hex() for m in messages]), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, float] = json.loads(r.stdout)
    return result


@dataclass
class RelayProc:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def events(self, kind: str) -> list[dict[str, object]]:
        out = []
        for line in list(self.lines):
            obj = json.loads(line)
            if obj.get("event") == kind:
                out.append(obj)
        return out

    def wait_event(self, kind: str, count: int = 1, timeout: float = 10) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(kind)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.02)
        raise AssertionError(f"no {kind!r} event from the relay: {self.lines} "
                             f"stderr: {self.proc.stderr.read() if self.proc.poll() else ''}")

    def counters(self, jail: str = "rj") -> dict[str, int]:
        """Ask for the counters (SIGUSR1) and return this jail's."""
        before = len(self.events("counters"))
        self.proc.send_signal(signal.SIGUSR1)
        event = self.wait_event("counters", before + 1)
        jails = event["jails"]
        assert isinstance(jails, dict)
        result: dict[str, int] = jails[jail]
        return result

    def stop(self) -> dict[str, object]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        return self.wait_event("exit")


@dataclass
class World:
    root: str
    base: str
    config: str
    start: Callable[..., RelayProc]


def _write_root_file(path: str, text: str) -> str:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def world(syslog: SyslogCapture) -> Iterator[World]:
    root = build_jail(["logbasics"], [])
    base = safe_tmpdir("relay")
    config = _write_root_file(f"{base}/jails.ini",
                              f"[jails]\n  [[rj]]\n  root = {root}\n  mode = pam\n")
    procs: list[RelayProc] = []

    def start(*args: str, config_path: str = config) -> RelayProc:
        proc = subprocess.Popen([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c",
                                 config_path, "--foreground", "--json", *args],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        relay = RelayProc(proc)
        procs.append(relay)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                relay.lines.append(line)

        threading.Thread(target=read, daemon=True).start()
        relay.wait_event("ready")
        return relay

    try:
        yield World(root, base, config, start)
    finally:
        for relay in procs:
            if relay.proc.poll() is None:
                relay.proc.kill()
            relay.proc.wait(10)
        remove_jail(root)
        shutil.rmtree(base, ignore_errors=True)


def _ours(cap: SyslogCapture, tag: str) -> list[str]:
    return [line for line in cap.lines if tag in line and "[jail=rj" in line]


def _parts(line: str) -> tuple[int, str, str, str]:
    """A relayed line -> (PRI, our tag with its [PID], the sender's text, the trailer)."""
    pri, rest = line[1:].split(">", 1)
    stamp, rest = rest[:15], rest[15:]
    assert stamp[:3] in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                         "Oct", "Nov", "Dec") and stamp[9] == ":", line
    tag, text = rest[1:].split(": ", 1)
    text, _sep, trailer = text.rpartition(" [jail=")
    return int(pri), tag, text, "[jail=" + trailer


# ------------------------------------------------------------------- the relay

def test_jailed_messages_reach_host_syslog(world: World, syslog: SyslogCapture) -> None:
    settings_file = _write_root_file(f"{world.base}/logrelay.ini",
                                     "[relay]\nmax_length = 60\n")
    relay = world.start("-s", settings_file)
    st_ = os.lstat(f"{world.root}/dev/log")
    assert stat.S_ISSOCK(st_.st_mode) and st_.st_uid == 0
    assert stat.S_IMODE(st_.st_mode) == 0o666
    assert not [n for n in os.listdir(f"{world.root}/dev") if n.startswith(".log")]
    send_from_jail(world.root, [
        b"<38>Nov 25 10:00:00 app[7]: hello-one",
        b"<999>app: bad-pri \x1b[31mred\nforged line\x00",
        b"app: " + b"long-" * 40,
        b"\xff\xfe not utf-8 \xc3",
    ])
    got = syslog.wait_for("hello-one", "[jail=rj uid=65534 pid=")
    pri, tag, text, trailer = _parts(got[0])
    assert (pri, text) == (8 | 6, "app[7]: hello-one") and tag.startswith("jail-rj[")
    assert trailer == f"[jail=rj uid=65534 pid={tag[len('jail-rj['):-1]}]"
    bad = syslog.wait_for("bad-pri")
    assert _parts(bad[0])[::2] == (13, "<999>app: bad-pri \\x1b[31mred\\x0aforged line")
    long = syslog.wait_for("long-long")
    body = _parts(long[0])[2]
    assert body.startswith("app: long-") and body.endswith("...")
    assert len(body) == 60 + 3
    assert syslog.wait_for("not utf-8", "\ufffd")
    exit_event = relay.stop()
    counters = exit_event["jails"]["rj"]  # type: ignore[index]
    assert counters == {"received": 4, "forwarded": 4, "dropped_rate": 0, "dropped_host": 0}
    assert relay.proc.returncode == 0
    assert not os.path.lexists(f"{world.root}/dev/log")    # removed at exit


def test_jail_cannot_pass_for_sshd_or_forge_lines(world: World,
                                                  syslog: SyslogCapture) -> None:
    """A jailed sender claims facility auth/authpriv and sshd's tag, and hides a second
    line behind a newline: the host gets the jail's configured facility, our jail-
    tag before any of its text, one line per datagram, no raw control character."""
    settings_file = _write_root_file(
        f"{world.base}/lr.ini", "[relay]\nfacility = daemon\n[jails]\n  [[rj]]\n"
        "  facility = local5\n")
    relay = world.start("-s", settings_file)
    sent = send_from_jail(world.root, [
        b"<38>Dec  7 10:00:00 sshd[1]: Accepted publickey for root from 10.0.0.1",
        b"<86>Dec  7 10:00:01 sshd[1]: pam_unix(sshd:session): session opened for root",
        b"<38>Dec  7 10:00:02 sshd[1]: Failed password for bob\n"
        b"<38>Dec  7 10:00:03 sshd[1]: Accepted password for root from 10.0.0.9\r\x1b[2K",
    ])
    lines = syslog.wait_for("[jail=rj uid=65534")
    deadline = time.monotonic() + 5
    while len(lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        lines = syslog.wait_for("[jail=rj uid=65534")
    assert len(lines) == 3, syslog.lines
    for line, severity in zip(lines, (6, 6, 6), strict=True):
        pri, tag, text, trailer = _parts(line)
        assert pri == 21 << 3 | severity, line           # local5: never auth/authpriv
        assert tag == f"jail-rj[{int(sent['pid'])}]", line   # ours, the host's pid
        assert text.startswith("sshd[1]: ") and line.index("jail-rj[") < line.index("sshd")
        assert trailer == f"[jail=rj uid=65534 pid={int(sent['pid'])}]"
        assert all(c.isprintable() for c in line), repr(line)   # one line, no ESC
    assert "Failed password for bob\\x0a<38>Dec  7 10:00:03 sshd[1]: Accepted password" \
        " for root from 10.0.0.9\\x0d\\x1b[2K" in lines[2]
    assert relay.stop()["jails"]["rj"]["forwarded"] == 3  # type: ignore[index]
    # a jail may not be given a facility that passes for sshd's: refused at load
    for facility in ("auth", "authpriv", "kern"):
        bad = _write_root_file(f"{world.base}/bad.ini",
                               f"[jails]\n  [[rj]]\n  facility = {facility}\n")
        r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c",
                            world.config, "-s", bad, "--dry-run"], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 3, r
        assert f"[[rj]]: facility: {facility} is refused" in r.stderr, r.stderr


def test_rate_limit_drops_and_counts(world: World, syslog: SyslogCapture) -> None:
    relay = world.start("--base", "5", "--peak", "10", "--interval", "1")
    start = time.monotonic()
    send_from_jail(world.root, [f"app: rate-{i}".encode() for i in range(200)])
    elapsed = time.monotonic() - start
    time.sleep(0.3)
    c = relay.counters()
    assert c["received"] == 200
    assert c["received"] == c["forwarded"] + c["dropped_rate"] + c["dropped_host"]
    assert c["dropped_rate"] >= 200 - (5 + 5 * elapsed + 1)
    assert 5 <= c["forwarded"] + c["dropped_host"] <= 5 + 5 * elapsed + 1
    # what the relay counts as forwarded is what the host received
    time.sleep(0.3)
    assert len(_ours(syslog, "rate-")) == c["forwarded"]
    notice = syslog.wait_for("pam_jail-logrelay", "jail rj:", "dropped (rate limit")
    assert notice, syslog.lines[-5:]
    # the bucket refills: a second later a message passes again
    time.sleep(1.1)
    send_from_jail(world.root, [b"app: after-pause"])
    assert syslog.wait_for("after-pause", "[jail=rj")


def test_burst_of_10000_keeps_relay_running_and_counts_add_up(
        world: World, syslog: SyslogCapture) -> None:
    import random

    rng = random.Random(5)
    messages = [f"<14>app[1]: burst-{i}".encode() for i in range(9000)]
    messages += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
                 for _ in range(1000)]                     # garbage, empty ones too
    rng.shuffle(messages)
    relay = world.start("--base", "1000000", "--peak", "1000000")
    result = send_from_jail(world.root, messages)
    assert result["sent"] == 10000
    c = relay.counters()
    deadline = time.monotonic() + 10
    while c["received"] < 10000 and time.monotonic() < deadline:
        time.sleep(0.1)
        c = relay.counters()
    assert relay.proc.poll() is None                       # still running
    assert c["received"] == 10000
    assert c["received"] == c["forwarded"] + c["dropped_rate"] + c["dropped_host"]
    assert c["dropped_rate"] == 0
    time.sleep(0.5)
    assert len(_ours(syslog, "")) == c["forwarded"]
    # and it still relays afterwards
    send_from_jail(world.root, [b"app: after-burst"])
    assert syslog.wait_for("after-burst", "[jail=rj")
    ex = relay.stop()["jails"]["rj"]  # type: ignore[index]
    assert ex["received"] == 10001
    assert ex["received"] == ex["forwarded"] + ex["dropped_rate"] + ex["dropped_host"]


def test_default_limits_under_burst(world: World, syslog: SyslogCapture) -> None:
    relay = world.start()                                  # base 50/s, peak 200
    send_from_jail(world.root, [f"app: dflt-{i}".encode() for i in range(2000)])
    c = relay.counters()
    assert c["received"] == 2000
    assert c["forwarded"] + c["dropped_host"] <= 200 + 50 * 5
    assert c["dropped_rate"] >= 1500
    assert c["received"] == c["forwarded"] + c["dropped_rate"] + c["dropped_host"]


def test_host_syslog_restart_reconnects(world: World, syslog: SyslogCapture) -> None:
    relay = world.start()
    send_from_jail(world.root, [b"app: before-restart"])
    assert syslog.wait_for("before-restart", "[jail=rj")
    syslog.stop()                                          # the host's syslog goes away
    restarted = SyslogCapture()
    try:
        send_from_jail(world.root, [b"app: while-down"])
        time.sleep(0.3)
        c = relay.counters()
        assert c["received"] == 2 and c["forwarded"] == 1 and c["dropped_host"] == 1
        restarted.start()                                  # ... and comes back
        time.sleep(1.3)                                    # > HOST_CHECK_EVERY
        send_from_jail(world.root, [b"app: after-restart"])
        assert restarted.wait_for("after-restart", "[jail=rj")
        assert not restarted.wait_for("while-down", timeout=0.2)
        c = relay.counters()
        assert c == {"received": 3, "forwarded": 2, "dropped_rate": 0, "dropped_host": 1}
        assert relay.proc.poll() is None
    finally:
        relay.stop()
        restarted.stop()
        syslog.start()                                     # the fixture stops it again


def test_unsafe_jail_dev_is_refused_others_served(world: World, syslog: SyslogCapture) -> None:
    bad = build_jail(["logbasics"], [])
    try:
        os.chmod(f"{bad}/dev", 0o777)
        config = _write_root_file(
            f"{world.base}/two.ini", f"[jails]\n  [[rj]]\n  root = {world.root}\n"
            f"  [[bad]]\n  root = {bad}\n")
        relay = world.start(config_path=config)
        assert not os.path.lexists(f"{bad}/dev/log")
        send_from_jail(world.root, [b"app: still-served"])
        assert syslog.wait_for("still-served", "[jail=rj")
        relay.stop()
        assert relay.proc.returncode == 1
        assert f"{bad}/dev: writable by group or other" in (relay.proc.stderr.read()
                                                            if relay.proc.stderr else "")
        # dev/log a directory: never replaced
        os.chmod(f"{bad}/dev", 0o755)
        os.mkdir(f"{bad}/dev/log")
        r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c", config,
                            "-j", "bad", "--once", "--idle", "0.2"], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "not a socket" in r.stderr, r.stderr
        assert os.path.isdir(f"{bad}/dev/log")
    finally:
        remove_jail(bad)


def test_dry_run_binds_nothing(world: World) -> None:
    r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c", world.config,
                        "--dry-run", "--json", "--base", "7"], cwd=REPO, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    # other jails this host knows from /./ home markers may be listed too
    assert [j for j in plan["jails"] if not j["jail"].startswith("marker:")] == [
        {"jail": "rj", "socket": f"{world.root}/dev/log", "facility": "user", "base": 7.0,
         "peak": 200.0, "interval": 10.0}]
    assert not os.path.lexists(f"{world.root}/dev/log")


def test_once_exits_when_idle(world: World) -> None:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c", world.config,
                        "--once", "--idle", "0.5"], cwd=REPO, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "logrelay: exit: jail=rj received=0 forwarded=0 dropped_rate=0 dropped_host=0" \
        in r.stdout
    assert time.monotonic() - start < 20
    assert not os.path.lexists(f"{world.root}/dev/log")


# ------------------------------------------------------- SIGHUP and /./ markers

def _sock(path: str) -> bool:
    return os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode)


def _reload(relay: RelayProc) -> dict[str, object]:
    before = len(relay.events("reload"))
    relay.proc.send_signal(signal.SIGHUP)
    return relay.wait_event("reload", before + 1)


def test_sighup_adds_and_removes_jails_keeps_counters(world: World,
                                                      syslog: SyslogCapture) -> None:
    second = build_jail(["logbasics"], [])
    try:
        settings_file = _write_root_file(f"{world.base}/lr.ini", "[relay]\nmax_length = 60\n")
        relay = world.start("-s", settings_file)
        assert not os.path.lexists(f"{second}/dev/log")
        send_from_jail(world.root, [b"app: before-hup"])
        assert syslog.wait_for("before-hup", "[jail=rj ")
        # a second jail in the jails.ini the relay was started with, shorter messages
        _write_root_file(world.config, f"[jails]\n  [[rj]]\n  root = {world.root}\n"
                         f"  [[rj2]]\n  root = {second}\n")
        _write_root_file(settings_file, "[relay]\nmax_length = 20\n")
        event = _reload(relay)
        assert event["added"] == [{"jail": "rj2", "socket": f"{second}/dev/log"}], event
        assert event["removed"] == [] and event["problems"] == []
        assert not relay.events("counters")                # SIGHUP prints no counters
        assert _sock(f"{second}/dev/log") and _sock(f"{world.root}/dev/log")
        send_from_jail(second, [b"app: from-second-" + b"x" * 40])
        got = syslog.wait_for("from-second-", "[jail=rj2 uid=65534")
        body = ("app: from-second-" + "x" * 40)[:20] + "..."    # the new max_length
        assert got and _parts(got[0])[2] == body, got
        send_from_jail(world.root, [b"app: after-hup"])
        assert syslog.wait_for("after-hup", "[jail=rj ")
        assert relay.counters("rj") == {"received": 2, "forwarded": 2, "dropped_rate": 0,
                                        "dropped_host": 0}   # kept across the reload
        assert relay.counters("rj2")["received"] == 1

        # rj leaves the config; its dev/log was replaced by someone else's socket
        # meanwhile: the relay stops serving rj and leaves that socket alone
        os.unlink(f"{world.root}/dev/log")
        foreign = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            foreign.bind(f"{world.root}/dev/log")
            foreign_ino = os.lstat(f"{world.root}/dev/log").st_ino
            _write_root_file(world.config, f"[jails]\n  [[rj2]]\n  root = {second}\n")
            event = _reload(relay)
            assert event["added"] == [] and event["problems"] == []
            assert event["removed"] == [{"jail": "rj", "socket": f"{world.root}/dev/log",
                                         "received": 2, "forwarded": 2, "dropped_rate": 0,
                                         "dropped_host": 0}], event
            assert _sock(f"{world.root}/dev/log")            # not ours: left in place
            assert os.lstat(f"{world.root}/dev/log").st_ino == foreign_ino
        finally:
            foreign.close()
            os.unlink(f"{world.root}/dev/log")
        # rj2 leaves too: its socket (ours) is removed
        _write_root_file(world.config, f"[jails]\n  [[rj]]\n  root = {world.root}\n")
        event = _reload(relay)
        assert [e["jail"] for e in event["removed"]] == ["rj2"]  # type: ignore[union-attr]
        assert [e["jail"] for e in event["added"]] == ["rj"]     # type: ignore[union-attr]
        assert not os.path.lexists(f"{second}/dev/log")
        assert _sock(f"{world.root}/dev/log")
        assert relay.counters("rj")["received"] == 0          # a new socket, new counters
        # a broken jails.ini changes nothing and the relay lives on
        _write_root_file(world.config, "[jails]\n  [[rj]]\n  mode = nonsense\n")
        event = _reload(relay)
        assert "error" in event and any("root: missing" in e
                                        for e in event["error"])  # type: ignore[union-attr]
        assert relay.proc.poll() is None and _sock(f"{world.root}/dev/log")
        send_from_jail(world.root, [b"app: bad-reload"])
        assert syslog.wait_for("bad-reload", "[jail=rj ")
        relay.stop()
        assert not os.path.lexists(f"{world.root}/dev/log")
    finally:
        remove_jail(second)


def test_marker_only_jails_are_served_and_picked_up_on_sighup(
        world: World, syslog: SyslogCapture, user_factory: Callable[..., User]) -> None:
    """Jails known only from a passwd home `ROOT/./home/USER`: served like configured
    ones (named marker:ROOT), a marker added later is served after SIGHUP; a jailkit
    user's marker (shell jk_chrootsh) is left to jailkit; a marker jail with no /dev at
    all (sftp-only) is not served and is no problem; an unsafe JAIL/dev refused."""
    marked, later, jailkit, devless = (build_jail(["logbasics"], []) for _ in range(4))
    try:
        user = user_factory("/bin/bash", f"{marked}/./home/pjm", create_home=False)
        user_factory("/usr/sbin/jk_chrootsh", f"{jailkit}/./home/pjk", create_home=False)
        shutil.rmtree(f"{devless}/dev")
        user_factory("/bin/bash", f"{devless}/./home/pjd", create_home=False)
        relay = world.start()
        ready = relay.events("ready")[0]["sockets"]
        assert f"{marked}/dev/log" in ready and f"{world.root}/dev/log" in ready  # type: ignore[operator]
        assert not [s for s in ready if s.startswith(devless)], ready  # type: ignore[union-attr]
        assert not os.path.lexists(f"{devless}/dev")
        assert _sock(f"{marked}/dev/log")
        assert not os.path.lexists(f"{jailkit}/dev/log")
        send_from_jail(marked, [b"app: from-marker"])
        got = syslog.wait_for("from-marker", f"[jail=marker:{marked} uid=65534")
        assert got, syslog.lines[-5:]
        assert relay.counters(f"marker:{marked}")["forwarded"] == 1
        # a second user gets a marker home in another jail; that jail's dev is unsafe
        os.chmod(f"{later}/dev", 0o777)
        later_user = user_factory("/bin/bash", f"{later}/./home/pjl", create_home=False)
        event = _reload(relay)
        assert event["added"] == [] and event["removed"] == []
        assert any(f"{later}/dev: writable by group or other" in p
                   for p in event["problems"]), event  # type: ignore[union-attr]
        assert not [p for p in event["problems"] if devless in p], event  # type: ignore[union-attr]
        assert not os.path.lexists(f"{later}/dev/log")
        os.chmod(f"{later}/dev", 0o755)
        event = _reload(relay)
        assert event["added"] == [{"jail": f"marker:{later}",
                                   "socket": f"{later}/dev/log"}], event
        send_from_jail(later, [b"app: from-later-marker"])
        assert syslog.wait_for("from-later-marker", f"[jail=marker:{later} ")
        # the marker goes away (usermod -d): that jail's socket goes too
        subprocess.run(["usermod", "-d", f"/home/{later_user.name}", later_user.name],
                       check=True)
        event = _reload(relay)
        assert [e["jail"] for e in event["removed"]] == [f"marker:{later}"]  # type: ignore[union-attr]
        assert not os.path.lexists(f"{later}/dev/log")
        assert relay.counters(f"marker:{marked}")["forwarded"] == 1       # kept
        relay.stop()
        assert relay.proc.returncode == 1                  # a bind failed at one point
        assert not os.path.lexists(f"{marked}/dev/log")
        assert user.home == f"{marked}/./home/pjm"
    finally:
        for root in (marked, later, jailkit, devless):
            remove_jail(root)


# ------------------------------------------------------------- pure parts

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.integers(16, 2000), st.sampled_from([1, 3, 16, 23]))
def test_rewrite_is_total_and_clean(data: bytes, limit: int, facility: int) -> None:
    out = rewrite(data, "web", 1000, 42, limit, facility, "Dec  7 17:00:00").decode("utf-8")
    prefix = "Dec  7 17:00:00 jail-web[42]: "
    assert out.startswith("<") and out.endswith(" [jail=web uid=1000 pid=42]")
    pri, rest = out[1:].split(">", 1)
    assert int(pri) >> 3 == facility                   # never the sender's facility
    assert rest.startswith(prefix)                     # no sender text before our tag
    body = rest[len(prefix):-len(" [jail=web uid=1000 pid=42]")]
    assert len(body) <= 10 * limit + 3                 # \\U0010ffff: ten for one at most
    assert all(c.isprintable() for c in out)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["", '"']))
def test_escape_is_one_printable_line_and_unambiguous(text: str, also: str) -> None:
    """log.escape, the one rule: every character out is printable (no newline, ESC,
    bidi or zero-width character survives), and the escapes can be read back to exactly
    the input (a literal backslash is escaped too: no two inputs look the same)."""
    from pam_jail.login.log import escape

    out = escape(text, also=also)
    assert all(c.isprintable() for c in out)
    assert not also or also not in out
    back = out.encode("latin-1", "backslashreplace").decode("unicode_escape")
    assert back == text
    assert escape("a\nb\x1b[31m\u202e\u200b\\", 4) == "a\\x0ab\\x1b..."


def test_bucket_base_peak_interval() -> None:
    b = Bucket(Limits(base=10, peak=5, interval=2), now=0.0)
    assert sum(b.take(0.0) for _ in range(100)) == 5          # peak: 5 at once
    assert sum(b.take(1.0) for _ in range(100)) == 5          # peak refills 5/s
    assert sum(b.take(2.0) for _ in range(100)) == 5
    # average: 20 tokens (base*interval) ... spent 15, +10/s refill; over 10 s at most
    # 20 + 10*10 pass however they are spread
    b = Bucket(Limits(base=10, peak=1000, interval=2), now=0.0)
    passed = sum(b.take(t / 100) for t in range(1000) for _ in range(3))
    assert 100 <= passed <= 20 + 10 * 10


def test_settings_parse_and_refuse() -> None:
    s = parse_settings("[relay]\nmax_length = 200\nhost_socket = /run/x.sock\n"
                       "facility = daemon\n[limits]\nbase = 5\n[jails]\n  [[web]]\n"
                       "  peak = 9\n  facility = local3\n  [[quiet]]\n  relay = no\n",
                       "t.ini")
    assert s.max_length == 200 and s.host_socket == "/run/x.sock"
    assert (s.facility_of("web"), s.facility_of("quiet"), s.facility_of("x")) == (19, 3, 3)
    assert s.limits == Limits(base=5, peak=200, interval=10)
    assert s.per_jail["web"] == Limits(base=5, peak=9, interval=10)
    assert s.disabled == {"quiet"}
    with pytest.raises(ConfigError) as err:
        parse_settings("[relay]\nmax_length = 3\ncolour = red\nfacility = authpriv\n"
                       "[limits]\nbase = nan\npeak = x\n[other]\n[jails]\n  [[w]]\n"
                       "  relay = maybe\n  facility = auth\n  [[k]]\n  facility = kern\n"
                       "  [[s]]\n  facility = syslog\n  [[u]]\n  facility = nope\n",
                       "t.ini")
    problems = "\n".join(err.value.problems)
    for needle in ("max_length: must be at least 16", "unknown key 'colour'",
                   "base: must be at least", "peak: expected a number", "'other'",
                   "relay: expected yes or no", "[relay]: facility: authpriv is refused",
                   "[[w]]: facility: auth is refused", "[[k]]: facility: kern is refused",
                   "[[s]]: facility: syslog is refused", "[[u]]: facility: unknown 'nope'"):
        assert needle in problems, problems


def test_settings_file_must_be_root_owned(world: World) -> None:
    path = _write_root_file(f"{world.base}/lr.ini", "[limits]\nbase = 1\n")
    os.chown(path, NOBODY, 0)
    r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c", world.config,
                        "-s", path, "--dry-run"], cwd=REPO, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 3 and "unsafe settings file" in r.stderr, r.stderr


def test_help_page() -> None:
    r = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "--help"],
                       cwd=REPO, capture_output=True, text=True, check=True)
    for needle in ("exit status", "examples", "SIGUSR1", "dropped_host", "base"):
        assert needle in r.stdout


def test_shipped_settings_are_the_defaults() -> None:
    from pam_jail.admin.logrelay import Settings

    with open(f"{REPO}/etc/pam_jail/logrelay.ini") as fh:
        assert parse_settings(fh.read()) == Settings()
    with open(f"{REPO}/packaging/systemd/pam-jail-logrelay.service") as fh:
        unit = fh.read()
    assert "Type=simple" in unit and "logrelay --foreground" in unit
    assert "NoNewPrivileges=yes" in unit and "CapabilityBoundingSet=\n" in unit
