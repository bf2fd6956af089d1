#!/usr/bin/env python3
"""What the resource-limit step costs a login: confine.join_limits_cgroup (mkdir, writes,
join in every hierarchy that carries pids/memory/cpu) plus set_rlimits, timed in a fresh
forked child per round (as sshd's per-connection process pays it), against a child that
does nothing. Root only; the cgroups made are removed at the end.

    flock /run/pam_jail-tests.lock .venv/bin/python bench/bench_limits.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pam_jail.login.confine import join_limits_cgroup, set_rlimits  # noqa: E402
from pam_jail.login.limits import Limits  # noqa: E402


def child_ms(work: bool, limits: Limits) -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        start = time.perf_counter()
        if work:
            join_limits_cgroup(limits, "benchjail", "benchuser")
            set_rlimits(limits)
        os.write(w, str(time.perf_counter() - start).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    return float(data) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_limits: run as root", file=sys.stderr)
        return 2
    rows = {"nothing": [], "cgroup (max_procs only) + rlimits": [],
            "cgroup (max_procs, memory, cpu) + rlimits": []}
    variants = {"nothing": (False, Limits()),
                "cgroup (max_procs only) + rlimits": (True, Limits(procs=512)),
                "cgroup (max_procs, memory, cpu) + rlimits":
                    (True, Limits(procs=512, memory=1 << 30, cpu=100))}
    try:
        for _ in range(args.rounds):
            for name, (work, limits) in variants.items():
                rows[name].append(child_ms(work, limits))
    finally:
        for top in ("pids", "memory", "cpu"):
            for path in (f"/sys/fs/cgroup/{top}/pam_jail/benchjail/benchuser",
                         f"/sys/fs/cgroup/{top}/pam_jail/benchjail"):
                if os.path.isdir(path):
                    os.rmdir(path)
    print(f"== the limits step in a fresh child, {args.rounds} interleaved rounds")
    print(f"{'variant':44s} {'median ms':>10s} {'p90 ms':>8s}")
    for name, values in rows.items():
        values.sort()
        print(f"{name:44s} {statistics.median(values):10.3f} "
              f"{values[int(len(values) * 0.9) - 1]:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
