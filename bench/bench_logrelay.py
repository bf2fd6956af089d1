#!/usr/bin/env python3
"""`pam-jail logrelay` under a burst: one sender floods JAIL/dev/log as fast as a
blocking datagram socket allows; the relay forwards to a receiver socket of this
script (--host-socket, so the host's real /dev/log is not touched). Prints, per
scenario, how long the sender took, messages/s received by the relay, and how many
were forwarded, dropped by the rate limit and dropped because the receiver was full.

    .venv/bin/python bench/bench_logrelay.py [--messages 50000] [--size 120]

Root only (the jail's dev dir must be root-owned). Everything lives under
/var/lib/pam_jail-test and is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from util import safe_tmpdir  # noqa: E402

SCENARIOS = (  # name, relay flags, receiver reads?
    ("no limit, fast host", ["--base", "10000000", "--peak", "10000000"], True),
    ("default limits (50/s, peak 200)", [], True),
    ("no limit, host stalled", ["--base", "10000000", "--peak", "10000000"], False),
)


def receiver(path: str, reading: bool, stop: threading.Event, count: list[int]) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    while not stop.is_set():
        if not reading:
            time.sleep(0.05)
            continue
        try:
            sock.recv(65536)
            count[0] += 1
        except TimeoutError:
            continue
    sock.close()


def run(base: str, root: str, flags: list[str], reading: bool, messages: int,
        size: int) -> dict[str, float]:
    config = f"{base}/jails.ini"
    host = f"{base}/host.sock"
    if os.path.exists(host):
        os.unlink(host)
    stop, got = threading.Event(), [0]
    thread = threading.Thread(target=receiver, args=(host, reading, stop, got), daemon=True)
    thread.start()
    while not os.path.exists(host):
        time.sleep(0.01)
    relay = subprocess.Popen([sys.executable, "-m", "pam_jail.admin.cli", "logrelay", "-c", config,
                              "--foreground", "--json", "--host-socket", host, *flags],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None
        json.loads(relay.stdout.readline())                      # ready
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.settimeout(30)
        sender.connect(f"{root}/dev/log")
        payload = b"<14>bench[1]: " + b"x" * size
        start = time.perf_counter()
        for _ in range(messages):
            sender.send(payload)
        sent = time.perf_counter() - start
        sender.close()
        time.sleep(0.5)
        relay.send_signal(signal.SIGTERM)
        counters = {}
        for line in relay.stdout:
            event = json.loads(line)
            if event.get("event") == "exit":
                counters = event["jails"]["bench"]
        relay.wait(10)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
        stop.set()
        thread.join(2)
    return {"sent_s": sent, **counters, "host_got": got[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--size", type=int, default=120, help="payload bytes per message")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_logrelay: run as root", file=sys.stderr)
        return 1
    base = safe_tmpdir("benchrelay")
    try:
        root = f"{base}/jail"
        os.makedirs(f"{root}/dev", mode=0o755)
        with open(f"{base}/jails.ini", "w") as fh:
            fh.write(f"[jails]\n  [[bench]]\n  root = {root}\n")
        os.chmod(f"{base}/jails.ini", 0o644)
        print(f"{args.messages} messages of {args.size + 14} bytes from one blocking sender\n")
        print(f"{'scenario':34} {'sender s':>8} {'recv/s':>9} {'forwarded':>9} "
              f"{'fwd/s':>9} {'drop rate':>9} {'drop host':>9} {'host got':>8}")
        for name, flags, reading in SCENARIOS:
            r = run(base, root, flags, reading, args.messages, args.size)
            secs = max(r["sent_s"], 1e-9)
            assert r["received"] == r["forwarded"] + r["dropped_rate"] + r["dropped_host"]
            print(f"{name:34} {r['sent_s']:8.2f} {r['received'] / secs:9.0f} "
                  f"{r['forwarded']:9.0f} {r['forwarded'] / secs:9.0f} "
                  f"{r['dropped_rate']:9.0f} {r['dropped_host']:9.0f} {r['host_got']:8.0f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
