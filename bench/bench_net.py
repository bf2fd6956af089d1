#!/usr/bin/env python3
"""What isolating a `network = yes` session costs (issue 19): a TCP client talking to a
server on the host's 127.0.0.1, run three ways:

  plain     the host's network namespace, nothing applied (today's network = yes)
  landlock  the host's network namespace + no_new_privs + confine.scope_ipc (Landlock
            scopes: abstract unix sockets, signals), the step the login paths run
  pasta     its own network namespace with user-mode networking by pasta (Debian's
            passt package), the port forwarded to the host's loopback (-T PORT: pasta's
            spliced loopback path)
  pasta-tap the same namespace, the client connecting to the default gateway's address,
            which pasta maps to the host (its tap path: what traffic to any other host
            takes)

For each: connect latency (connect + a 1-byte answer, median and p90 of many), the
throughput of one 200 MB upload, and the per-login cost of the set-up itself (scope_ipc;
pasta's start until the program inside runs, against a plain start of the same program).

pasta is not a dependency of pam_jail: the bench uses the one on PATH, or `apt-get
download passt` into /var/tmp/pjn-bench-cache and unpacks it there (nothing installed).
It runs pasta as `nobody` in a private mount namespace where /dev/net/tun is a 0666 node
(this VM's is 0600; the host's node is not changed). Run as root:

    flock /run/pam_jail-tests.lock .venv/bin/python bench/bench_net.py [--mb 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"
CACHE = "/var/tmp/pjn-bench-cache"
CHUNK = 256 * 1024


# ------------------------------------------------------------------- server side

def serve() -> None:
    """Print the port, then answer forever: b'p' -> b'p'; b'd' + data -> byte count."""
    import threading

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    print(lsock.getsockname()[1], flush=True)

    def handle(conn: socket.socket) -> None:
        with conn:
            kind = conn.recv(1)
            if kind == b"p":
                conn.sendall(b"p")
                return
            total = 0
            while data := conn.recv(CHUNK):
                total += len(data)
            conn.sendall(str(total).encode())

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


# ------------------------------------------------------------------- client side

def client(host: str, port: int, pings: int, megabytes: int, landlock: bool) -> None:
    """One line: setup_us median_us p90_us mb_per_s."""
    setup_us = 0.0
    if landlock:
        sys.path.insert(0, str(REPO))
        from pam_jail.login.confine import set_no_new_privs

        start = time.perf_counter()
        set_no_new_privs()
        from pam_jail.login.confine import scope_ipc
        scope_ipc(True)
        setup_us = (time.perf_counter() - start) * 1e6
    times = []
    for _ in range(pings):
        start = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            s.sendall(b"p")
            if s.recv(1) != b"p":
                raise SystemExit("bad answer")
        times.append((time.perf_counter() - start) * 1e6)
    block = b"x" * CHUNK
    total = megabytes * 1024 * 1024
    start = time.perf_counter()
    with socket.create_connection((host, port)) as s:
        s.sendall(b"d")
        sent = 0
        while sent < total:
            s.sendall(block)
            sent += len(block)
        s.shutdown(socket.SHUT_WR)
        got = int(s.recv(64))
    secs = time.perf_counter() - start
    if got != sent:
        raise SystemExit(f"server got {got} of {sent} bytes")
    times.sort()
    print(f"{setup_us:.0f} {statistics.median(times):.1f} {times[int(len(times) * 0.9)]:.1f} "
          f"{sent / secs / 1e6:.0f}", flush=True)


# ------------------------------------------------------------------- the runs

def find_pasta() -> str:
    found = shutil.which("pasta")
    if found:
        return found
    unpacked = f"{CACHE}/root/usr/bin/pasta"
    if not os.path.exists(unpacked):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(["apt-get", "download", "passt"], cwd=CACHE, check=True,
                       capture_output=True)
        deb = next(p for p in os.listdir(CACHE) if p.startswith("passt_"))
        subprocess.run(["dpkg", "-x", f"{CACHE}/{deb}", f"{CACHE}/root"], check=True)
    return unpacked


def pasta_argv(pasta: str, port: int, tun_dir: str, inner: list[str]) -> list[str]:
    """pasta as nobody, in a private mount namespace with a usable /dev/net/tun."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in inner)
    script = (f"mount -t tmpfs pjn {tun_dir} && mknod -m 666 {tun_dir}/tun c 10 200 && "
              f"mount --bind {tun_dir}/tun /dev/net/tun && exec setpriv --reuid=65534 "
              f"--regid=65534 --clear-groups {pasta} -q -f --config-net -T {port} -- {quoted}")
    return ["unshare", "-m", "sh", "-c", script]


def default_gateway() -> str | None:
    out = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True,
                         text=True, check=False).stdout.split()
    return out[2] if len(out) > 2 and out[0] == "default" and out[1] == "via" else None


def run_client(argv: list[str]) -> list[float]:
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{argv[0]}: {out.stderr.strip()}")
    return [float(x) for x in out.stdout.split()[-4:]]


def startup_ms(argv: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="upload size (MB)")
    parser.add_argument("--pings", type=int, default=2000, help="connections per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setup (median)")
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--landlock", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        serve()
        return 0
    if args.client:
        client(args.host, args.client, args.pings, args.mb, args.landlock)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("bench_net: run as root (pasta runs as nobody in its own mounts)")

    pasta = find_pasta()
    server = subprocess.Popen([PY, __file__, "--server"], stdout=subprocess.PIPE, text=True)
    tun_dir = tempfile.mkdtemp(prefix="pjn-tun.")
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        me = [PY, "-I", "-S", __file__, "--pings", str(args.pings), "--mb", str(args.mb),
              "--client", str(port)]
        setups = {
            "plain": me,
            "landlock": [*me, "--landlock"],
            "pasta": pasta_argv(pasta, port, tun_dir, me),
        }
        gateway = default_gateway()
        if gateway:        # pasta maps the gateway's address to the host: the tap path
            setups["pasta-tap"] = pasta_argv(pasta, port, tun_dir, [*me, "--host", gateway])
        results: dict[str, list[list[float]]] = {name: [] for name in setups}
        for _ in range(args.rounds):       # interleaved: load from others spreads evenly
            for name, argv in setups.items():
                results[name].append(run_client(argv))
        true = ["/bin/true"]
        plain_start = startup_ms(true, 20)
        pasta_start = startup_ms(pasta_argv(pasta, port, tun_dir, true), 20)
        unshare_start = startup_ms(["unshare", "-m", "sh", "-c", "exec /bin/true"], 20)
    finally:
        server.kill()
        server.wait()
        os.rmdir(tun_dir)

    print(f"TCP to 127.0.0.1 ({args.pings} connections, {args.mb} MB upload; median of "
          f"{args.rounds} runs; {os.cpu_count()} CPUs, kernel {os.uname().release})")
    print(f"{'setup':<10} {'connect+1B median':>18} {'p90':>9} {'throughput':>12} "
          f"{'per-login set-up':>17}")
    base = statistics.median(r[3] for r in results["plain"])
    for name, runs in results.items():
        med = statistics.median(r[1] for r in runs)
        p90 = statistics.median(r[2] for r in runs)
        mbs = statistics.median(r[3] for r in runs)
        if name == "landlock":
            setup = f"{statistics.median(r[0] for r in runs):.0f} us"
        elif name.startswith("pasta"):
            setup = f"{pasta_start - unshare_start:.1f} ms"
        else:
            setup = "-"
        each = "/".join(f"{r[3]:.0f}" for r in runs)
        print(f"{name:<10} {med:>15.1f} us {p90:>6.1f} us {mbs:>7.0f} MB/s {setup:>17}"
              f"   ({mbs / base:.2f}x; runs {each} MB/s)")
    print(f"(pasta set-up: `unshare -m` + pasta -- /bin/true {pasta_start:.1f} ms minus "
          f"`unshare -m sh -c true` {unshare_start:.1f} ms; /bin/true alone "
          f"{plain_start:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
