"""Logins under concurrency: CPU and wall time per ssh login, plain vs jailkit vs pam_jail.

Run as root, under the test lock, against the INSTALLED copy (scripts/install first):
  flock /run/pam_jail-tests.lock .venv/bin/python bench/bench_load.py --sessions 50 --rounds 3
(--sessions 150 / 300: the load of the issue on a 2-core machine.)

bench_jailkit's users (its set-up functions, imported): plain (/bin/bash), jailkit
(jk_chrootsh, jk_lsh in a jk_init jail), pj-shell (pam-jail-shell login shell) and pj-pam
(PAM module, pam-jail-lsh), on one loopback sshd with bench_jailkit's PAM stack (pam_jail's
lines skipped for plain and jailkit) and pam_jail's generated Match blocks. A wave starts N
`ssh -T USER@127.0.0.1 /usr/bin/id` at once (jk_lsh.ini and lsh.ini both allow it) and waits
for all; each round runs one wave per kind, in a shuffled order. Per kind, medians over the
rounds (CPU, sshd, client, other: ms per login):
- wall s: first client started to last client exited.
- CPU: user+nice+system+irq+softirq jiffies of /proc/stat (SC_CLK_TCK), whole machine, from
  the wave's start until sshd has no process left (tail s after the last client), / N:
  clients, sshd, PAM, kernel threads, and whatever else runs on this shared host.
- -plain: CPU minus the plain user's (median of per-round differences), what jailing adds;
  /jk: CPU and wall divided by jailkit's.
- sshd: CPU of sshd and its descendants (/proc/PID/stat utime..cstime, plus the privsep
  children orphaned when their monitor exits first: this process is their subreaper);
  immune to other tenants, blind to kernel threads. client: the ssh clients' (getrusage).
  other: CPU - sshd - client (kernel threads, this script, other tenants).
- fails: exit status not 0 or no `uid=UID(` printed, all rounds; the first error.
sshd: the harness's `MaxStartups 50:30:100` is overridden by a later `MaxStartups` line
(--max-startups, default 1000; unlike most keywords, sshd 9.2 keeps its LAST value: checked
with sshd -T at start); MaxSessions (per connection) stays 10. "past MaxStartups" drops in
sshd's log are counted. Read ratios and differences: absolute numbers depend on
the machine and its load (2 cores are CPU-bound: wall ~ N * CPU / 2).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_jailkit import (
    ID,
    LSH,
    PAM_JAIL_CLI,
    Failed,
    Undo,
    bench_pam_stack,
    installed_note,
    make_jailkit_user,
    preflight,
    run_checked,
)
from sshd_harness import Sshd, User, make_user, remove_user
from testbed import SYSTEM_CONFIG, make_jailed_pair, unique, write_login_index
from util import safe_tmpdir

HZ = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
KINDS = ("plain", "jailkit", "pj-shell", "pj-pam")


def machine_jiffies() -> int:
    with open("/proc/stat") as fh:
        f = fh.readline().split()     # cpu user nice system idle iowait irq softirq ...
    return sum(int(f[i]) for i in (1, 2, 3, 6, 7))


def tree_jiffies(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()   # f[0] is field 3 (state)
    return sum(int(x) for x in f[11:15])          # utime stime cutime cstime


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(c) for c in fh.read().split()]


def reap_orphans(sshd: int) -> tuple[float, bool]:
    """Reap sshd processes reparented to this process (a subreaper: sshd's monitor may
    exit before its privsep child, which would otherwise be PID 1's and its CPU unseen);
    their CPU seconds, and whether anything of sshd's is still running."""
    cpu, busy = 0.0, bool(children(sshd))
    for pid in children(os.getpid()):
        if pid != sshd:
            done, _, ru = os.wait4(pid, os.WNOHANG)
            cpu += ru.ru_utime + ru.ru_stime if done else 0.0
            busy |= not done
    return cpu, busy


@dataclass
class Wave:
    wall: float
    cpu: float      # seconds, whole machine
    tree: float     # seconds, sshd tree
    client: float   # seconds, ssh clients
    tail: float     # seconds from the last client's exit until sshd had no children
    fails: int
    first_error: str


def wave(server: Sshd, user: User, n: int, connect_timeout: int, limit: float) -> Wave:
    argv = [f"ConnectTimeout={connect_timeout}" if a.startswith("ConnectTimeout=") else a
            for a in server.ssh_argv(user, ID)]
    assert server.proc is not None
    pid = server.proc.pid
    want = f"uid={user.uid}("
    fails, first = 0, ""
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0, t0, start = machine_jiffies(), tree_jiffies(pid), time.perf_counter()
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(0.1, start + limit - time.perf_counter()))
                rc: int | str = p.returncode
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                rc = f"timeout {limit:.0f}s"
            if rc != 0 or want not in out:
                fails += 1
                last = (err.strip().splitlines() or [out.strip()[:80]])[-1]
                first = first or f"rc={rc}: {last[:100]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - start
    orphans, busy = reap_orphans(pid)
    while busy and time.perf_counter() - start < limit + 30:
        time.sleep(0.01)
        cpu, busy = reap_orphans(pid)
        orphans += cpu
    tail = time.perf_counter() - start - wall
    m1, t1 = machine_jiffies(), tree_jiffies(pid) + orphans * HZ
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime) - orphans
    return Wave(wall, (m1 - m0) / HZ, (t1 - t0) / HZ, client, tail, fails, first)


def report(waves: dict[str, list[Wave]], users: dict[str, User], n: int) -> None:
    def med(kind: str, attr: str, per_login: bool = False) -> float:
        values: list[float] = [getattr(w, attr) for w in waves[kind]]
        return statistics.median(values) / (n if per_login else 1)

    jk_cpu, jk_wall = med("jailkit", "cpu", True), med("jailkit", "wall")
    head = (f"{'kind':<9} {'user':<10} {'wall s':>7} {'/jk':>5} {'CPU ms/login':>13} "
            f"{'-plain':>7} {'/jk':>5} {'sshd':>6} {'client':>7} {'other':>6} {'tail s':>7} "
            f"{'fails':>6}  first error")
    print(head)
    print("-" * len(head))
    for kind in KINDS:
        cpu = med(kind, "cpu", True)
        minus = statistics.median(a.cpu - b.cpu for a, b in zip(waves[kind], waves["plain"],
                                                               strict=True)) / n
        other = statistics.median(w.cpu - w.tree - w.client for w in waves[kind]) / n
        fails = sum(w.fails for w in waves[kind])
        first = next((w.first_error for w in waves[kind] if w.first_error), "")
        print(f"{kind:<9} {users[kind].name:<10} {med(kind, 'wall'):7.2f} "
              f"{med(kind, 'wall') / jk_wall:5.2f} {cpu * 1000:13.1f} {minus * 1000:7.1f} "
              f"{cpu / jk_cpu:5.2f} {med(kind, 'tree', True) * 1000:6.1f} "
              f"{med(kind, 'client', True) * 1000:7.1f} {other * 1000:6.1f} "
              f"{med(kind, 'tail'):7.2f} {fails:6d}  {first}")
    print("per round, CPU ms/login: " + "; ".join(
        f"{k} " + " ".join(f"{w.cpu / n * 1000:.1f}" for w in waves[k]) for k in KINDS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50, help="concurrent logins per wave")
    parser.add_argument("--rounds", type=int, default=3, help="waves per user kind")
    parser.add_argument("--max-startups", type=int, default=1000)
    parser.add_argument("--connect-timeout", type=int, default=60, help="ssh ConnectTimeout")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds allowed per wave")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between waves")
    args = parser.parse_args()
    problems = preflight()
    if problems:
        print("\n".join(f"bench_load: {p}" for p in problems), file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, loadavg(1 min) {os.getloadavg()[0]:.2f}, {args.sessions} "
          f"concurrent logins per wave, {args.rounds} rounds, CLK_TCK {HZ}")
    installed_note()
    undo: Undo = []
    server: Sshd | None = None
    base = safe_tmpdir("bench-load")
    undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
    index = Path(SYSTEM_CONFIG + ".index")
    old_index = index.read_bytes() if index.exists() else None
    undo.append(lambda: index.write_bytes(old_index) if old_index is not None  # as it was
                else index.unlink(missing_ok=True))
    try:
        jk_user, _ = make_jailkit_user(base, undo)
        pair = make_jailed_pair(LSH, undo)
        write_login_index()
        for root in (pair.shell_jail, pair.pam_jail):
            run_checked([*PAM_JAIL_CLI, "cp", "-j", root, ID])
        plain = make_user(unique("pjn"), "/bin/bash")
        undo.append(lambda: remove_user(plain.name, remove_home=True))
        from pam_jail.admin.sshd_config import generate
        from pam_jail.login.config_file import load_config

        server = Sshd(bench_pam_stack([plain.name, jk_user.name]),
                      f"MaxStartups {args.max_startups}\n{generate(load_config())}")
        undo.append(server.stop)
        if ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise Failed("prctl(PR_SET_CHILD_SUBREAPER) failed")
        server.start()
        eff = server.effective(plain.name)
        if not eff["maxstartups"][0].startswith(f"{args.max_startups}:"):
            raise Failed(f"sshd did not take MaxStartups {args.max_startups}: {eff['maxstartups']}")
        print(f"sshd {server.service}: maxstartups {eff['maxstartups'][0]}, maxsessions "
              f"{eff['maxsessions'][0]}, {' '.join(eff.get('persourcemaxstartups', ['']))}")
        users = {"plain": plain, "jailkit": jk_user, "pj-shell": pair.shell_user,
                 "pj-pam": pair.pam_user}
        for kind in KINDS:   # warm-up and smoke test: one login each, untimed
            w = wave(server, users[kind], 1, args.connect_timeout, 60)
            if w.fails:
                raise Failed(f"{kind}: a single login failed: {w.first_error}")
        waves: dict[str, list[Wave]] = {k: [] for k in KINDS}
        n = args.sessions
        rng = random.Random(7)
        for r in range(args.rounds):
            order = list(KINDS)
            rng.shuffle(order)
            for kind in order:
                time.sleep(args.pause)
                w = wave(server, users[kind], n, args.connect_timeout, args.limit)
                waves[kind].append(w)
                print(f"  round {r + 1} {kind:<9} wall {w.wall:6.2f} s, CPU {w.cpu / n * 1000:6.1f}"
                      f" ms/login, {w.fails} failed", flush=True)
        print(f"\n== {n} concurrent `ssh USER@127.0.0.1 {ID}`, median of {args.rounds} "
              "waves; CPU, sshd, client, other in ms per login")
        report(waves, users, n)
        log = server.log_text()
        errors = [ln for ln in log.splitlines() if "error" in ln.lower() or "fatal" in ln]
        print(f"sshd log: {log.count('past MaxStartups')} 'past MaxStartups' drops, "
              f"{len(errors)} error/fatal lines; first: {(errors or ['-'])[0][:160]}")
    except Failed as err:
        print(f"bench_load: FAILED: {err}", file=sys.stderr)
        if server is not None:
            print(f"--- sshd log tail:\n{server.log_text()[-2500:]}", file=sys.stderr)
        return 1
    finally:
        for step in reversed(undo):
            try:
                step()
            except Exception as err:   # every undo step runs
                print(f"bench_load: clean-up step failed: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
