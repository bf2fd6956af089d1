#!/usr/bin/env python3
"""What the seccomp filter costs: building it (pam_jail.login.syscalls.program) and loading it
(confine.load_syscall_filter) on the login path, and a system call under it. Each round a
fresh forked child; ratios in one run.

    .venv/bin/python bench/bench_seccomp.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pam_jail.login import syscalls  # noqa: E402
from pam_jail.login.confine import load_syscall_filter, set_no_new_privs  # noqa: E402

CALLS = 200_000


def in_child(filtered: bool) -> tuple[float, float]:
    """(ms to build+load the filter, ns per getppid call) measured in a fresh child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        start = time.perf_counter()
        if filtered:
            set_no_new_privs()
            load_syscall_filter(())
        load_ms = (time.perf_counter() - start) * 1000
        getppid = os.getppid
        start = time.perf_counter()
        for _ in range(CALLS):
            getppid()
        per_call = (time.perf_counter() - start) / CALLS * 1e9
        os.write(w, f"{load_ms} {per_call}".encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 100).split()
    os.close(r)
    os.waitpid(pid, 0)
    return float(data[0]), float(data[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    build = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        syscalls.program(os.uname().machine, ())
        build.append((time.perf_counter() - start) * 1000)
    rows: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for filtered in (False, True):
            rows[filtered].append(in_child(filtered))
    plain = statistics.median(c for _, c in rows[False])
    with_filter = statistics.median(c for _, c in rows[True])
    print(f"== seccomp filter, {args.rounds} rounds (medians)")
    print(f"build the program (pure)           {statistics.median(build):8.3f} ms")
    load = statistics.median(t for t, _ in rows[True])
    print(f"build + load in the login process  {load:8.3f} ms")
    print(f"getppid() without the filter       {plain:8.1f} ns")
    print(f"getppid() under the filter         {with_filter:8.1f} ns  ({with_filter / plain:.2f}x)")
    print(f"program length: {len(syscalls.build(os.uname().machine))} instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
