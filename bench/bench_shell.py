"""pam-jail-shell start-to-exec time, next to the interpreter's own start-up.

Run as root: `.venv/bin/python bench/bench_shell.py [--rounds N]`. Uses the INSTALLED
entry (/usr/local/sbin/pam-jail-shell, scripts/install) and a real shell-path user in
a real jail (tests/jail_fixtures.make_jailed_pair); everything it makes is removed.

Rows (medians of N interleaved rounds, one machine, one run; ratios to row 1):
  1. `/usr/bin/python3 -I -S -c pass`: the floor any Python entry pays
  2. the same interpreter importing pam_jail.login.shell_entry (the installed copy) as
     the entry script does: from its login bundle (pam_jail.login.preload)
  3. start-to-exec: `setpriv ... pam-jail-shell -c /usr/local/bin/pjstamp` as the
     user. pjstamp is a static program in the jail that prints CLOCK_MONOTONIC the
     moment it runs; start-to-exec = its stamp minus a stamp taken just before fork.
     (CLOCK_MONOTONIC is the same clock inside the user/PID namespaces.)
  4. the whole command's wall time (exit of pjstamp and of the relaying parent)
  5. `setpriv ... /usr/bin/true` wall time: what setpriv itself costs
  6. with `--old ENTRY`: start-to-exec of another install's stub (e.g. the previous
     commit's tree built by scripts/build-entries into a scratch LIBDIR/SBINDIR), same
     user, same jail, interleaved: before/after in one run
Then decide() per command (µs), as the login path calls it.

jails.ini's lookup index is written (config_index.write_index, what validate, edit and
jailuser leave behind) after the bench's users are mapped, as on a host set up with
`pam-jail jailuser`: without it a login parses the whole file.

Target (issue 4): start-to-exec under 12 ms on these machines.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sshd_harness import User  # noqa: E402
from testbed import SHELL_ENTRY, add_twin, make_jailed_pair, write_login_index  # noqa: E402

LIBDIR = "/usr/local/lib/pam_jail"
STAMP = "/usr/local/bin/pjstamp"
STAMP_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return 0;
}
"""
LSH = f"""\
[default]
programs = {STAMP}, /usr/bin/rsync, /usr/bin/scp
  [[rules]]
  {STAMP} = none
"""
COMMANDS = [
    "scp -t up.txt",
    "rsync --server -vlogDtpre.iLsfxCIvu . dest/",
    "rsync --server -e 'sh -c id' . x",
    "/bin/sh -c id",
    STAMP,
]


def as_user(user: User, *argv: str) -> list[str]:
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
            "--", *argv]


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - start


def start_to_exec(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    start_ns = time.monotonic_ns()
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: {proc.returncode} {proc.stderr.strip()}")
    return (int(proc.stdout.strip()) - start_ns) / 1e9, total


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds (default 40)")
    parser.add_argument("--old", metavar="ENTRY", default=None,
                        help="another pam-jail-shell stub to time beside the installed one")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_shell: run as root", file=sys.stderr)
        return 1
    for tool in ("setpriv", "gcc"):
        if shutil.which(tool) is None:
            print(f"bench_shell: {tool} not installed", file=sys.stderr)
            return 1
    undo: list[Callable[[], object]] = []
    try:
        pair = make_jailed_pair(LSH, undo)
        user, jail = pair.shell_user, pair.shell_jail
        shared = add_twin(jail, SHELL_ENTRY, "shellj_shared", "private = no", undo)
        write_login_index()                       # as jailuser leaves it
        os.makedirs(f"{jail}/usr/local/bin", mode=0o755, exist_ok=True)
        subprocess.run(["gcc", "-static", "-O2", "-x", "c", "-o", f"{jail}{STAMP}", "-"],
                       input=STAMP_C, text=True, check=True)
        os.chmod(f"{jail}{STAMP}", 0o755)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
        imp = (f"import sys; sys.path[:0]=[{LIBDIR!r}]; sys.path += "
               "['/usr/local/lib/python3/dist-packages', '/usr/lib/python3/dist-packages']; "
               "import pam_jail.login; pam_jail.login.preload('pam-jail-shell'); "
               "import pam_jail.login.shell_entry")
        variants: dict[str, Callable[[], float]] = {
            "python3 -I -S -c pass": lambda: wall(["/usr/bin/python3", "-I", "-S", "-c",
                                                    "pass"], env),
            "python3 -I -S: import shell_entry": lambda: wall(
                ["/usr/bin/python3", "-I", "-S", "-c", imp], env),
            "setpriv /usr/bin/true (as the user)": lambda: wall(
                as_user(user, "/usr/bin/true"), env),
        }
        results: dict[str, list[float]] = {k: [] for k in variants}
        s2e: list[float] = []
        total: list[float] = []
        s2e_shared: list[float] = []
        s2e_old: list[float] = []
        shell_cmd = as_user(user, SHELL_ENTRY, "-c", STAMP)
        shared_cmd = as_user(shared, SHELL_ENTRY, "-c", STAMP)
        old_cmd = as_user(user, args.old, "-c", STAMP) if args.old else []
        start_to_exec(shell_cmd, env)  # warm caches; fails loudly if the setup is wrong
        start_to_exec(shared_cmd, env)
        if old_cmd:
            start_to_exec(old_cmd, env)
        for _ in range(args.rounds):
            order = [*variants, "shell", "shared", *(["old"] if old_cmd else [])]
            random.shuffle(order)
            for name in order:
                if name == "shell":
                    a, b = start_to_exec(shell_cmd, env)
                    s2e.append(a)
                    total.append(b)
                elif name == "shared":
                    s2e_shared.append(start_to_exec(shared_cmd, env)[0])
                elif name == "old":
                    s2e_old.append(start_to_exec(old_cmd, env)[0])
                else:
                    results[name].append(variants[name]())
        base = ms(results["python3 -I -S -c pass"])
        rows = [
            ("python3 -I -S -c pass", base),
            ("python3 -I -S: import shell_entry", ms(results["python3 -I -S: import "
                                                             "shell_entry"])),
            (f"pam-jail-shell -c {STAMP}: start-to-exec", ms(s2e)),
            (f"pam-jail-shell -c {STAMP}: whole command", ms(total)),
            ("start-to-exec, jail with private = no (no per-customer view)",
             ms(s2e_shared)),
            ("setpriv /usr/bin/true (as the user)",
             ms(results["setpriv /usr/bin/true (as the user)"])),
        ]
        if s2e_old:
            rows.append((f"start-to-exec, --old {args.old}"[:58], ms(s2e_old)))
        print(f"== start-up, medians of {args.rounds} interleaved rounds (ms)")
        print(f"{'what':<58} {'ms':>8} {'x pass':>8}")
        for label, value in rows:
            print(f"{label:<58} {value:8.2f} {value / base:8.2f}")
        print("(start-to-exec includes setpriv's own start: see the last row)")
        print(f"the per-customer view's mounts (private = yes, the default) add "
              f"{ms(s2e) - ms(s2e_shared):+.2f} ms to start-to-exec")
        floor = base + ms(results["setpriv /usr/bin/true (as the user)"])
        print(f"pam_jail's own share (start-to-exec - setpriv - python3 -I -S -c pass): "
              f"{ms(s2e) - floor:.2f} ms" + (f"; --old: {ms(s2e_old) - floor:.2f} ms"
                                             if s2e_old else ""))

        sys.path.insert(0, LIBDIR)
        from pam_jail.login.policy import decide, parse_lsh, select_policy

        policy = select_policy(parse_lsh(LSH, "bench"), user.name, [])
        print("\n== decide() per command (µs, median of 2000 calls)")
        for command in COMMANDS:
            times = []
            for _ in range(2000):
                t0 = time.perf_counter()
                d = decide(policy, command, user=user.name, home=f"/home/{user.name}",
                           client_env={"LANG": "C"})
                times.append(time.perf_counter() - t0)
            print(f"{command!r:<52} {'allowed' if d.allowed else 'refused':>8} "
                  f"{statistics.median(times) * 1e6:8.1f}")
    finally:
        for step in reversed(undo):
            step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
