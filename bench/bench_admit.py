#!/usr/bin/env python3
"""What admission costs a login as jails.ini grows: 10, 1,000, 10,000, 100,000 users.

Admission is login.admit(): the config for this user, resolve, the shell rule (the
jail check is left out: it does not depend on the number of users). Two ways, each
call timed in a fresh interpreter (as every login is one; the modules imported before
the clock starts), interleaved:

  index   jails.ini's lookup index (pam_jail/login/config_index.py), written by install_config
          as `pam-jail validate` does: a few reads
  parse   the same file without its index: the whole file parsed (the fallback, and
          every login before the index)

Plus what an admin pays once per change at that size: install_config (validate: parse,
write, index) and sshd_config.generate (the Match blocks).

    flock /run/pam_jail-tests.lock .venv/bin/python bench/bench_admit.py [--rounds 30]

Root only (jails.ini and its index count only when root owns them). Measures this tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pam_jail.login.admission import admit  # noqa: E402
from pam_jail.login.config_file import install_config  # noqa: E402
from pam_jail.login.config_index import index_path  # noqa: E402
from pam_jail.login.resolve import Identity  # noqa: E402

SIZES = (10, 1_000, 10_000, 100_000)
SHELL = "/usr/local/sbin/pam-jail-shell"


def config_text(users: int) -> str:
    jails = max(1, users // 100)
    lines = ["[jails]"]
    for n in range(jails):
        lines += [f"  [[j{n}]]", f"  root = /srv/jails/j{n}", "  mode = shell",
                  "  allow_shell = yes"]
    lines.append("[users]")
    lines += [f"customer{n} = j{n % jails}" for n in range(users)]
    lines += ["[groups]", "webdev = j0"]
    return "\n".join(lines) + "\n"


CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
from pam_jail.login.admission import admit
from pam_jail.login.resolve import Identity
who = Identity({user!r}, 5000, 5000, "/home/x", {shell!r}, "staff", ("users", "webdev"))
t0 = time.perf_counter()
admit(who, {path!r}, check_shell_jails=False)
print(time.perf_counter() - t0)
"""


def in_fresh_process(path: str, user: str) -> float:
    """Seconds of one admit() in a new interpreter (modules imported before the clock)."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(repo=REPO, user=user,
                                                             shell=SHELL, path=path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_admit: run as root", file=sys.stderr)
        return 2
    os.makedirs("/var/lib/pam_jail-bench", mode=0o755, exist_ok=True)   # root-owned chain
    base = tempfile.mkdtemp(prefix="admit-", dir="/var/lib/pam_jail-bench")
    os.chmod(base, 0o755)
    try:
        rows = []
        for users in SIZES:
            path = f"{base}/jails-{users}.ini"
            bare = f"{base}/bare-{users}.ini"          # the same text, never indexed
            text = config_text(users)
            t0 = time.perf_counter()
            install_config(path, text)
            validate = time.perf_counter() - t0
            with open(bare, "w") as fh:
                fh.write(text)
            os.chmod(bare, 0o644)
            assert os.path.exists(index_path(path)) and not os.path.exists(index_path(bare))
            from pam_jail.admin.sshd_config import generate
            from pam_jail.login.config_file import load_config

            t0 = time.perf_counter()
            generate(load_config(path))
            sshd = time.perf_counter() - t0
            who = Identity(f"customer{users // 2}", 5000, 5000, "/home/x", SHELL, "staff",
                           ("users", "webdev"))
            for cfg_path in (path, bare):   # both decide, and decide alike
                jail = admit(who, cfg_path, check_shell_jails=False)[2]
                assert jail is not None and jail.name == f"j{(users // 2) % max(1, users // 100)}"
            times: dict[str, list[float]] = {"index": [], "parse": []}
            for _ in range(args.rounds):    # a fresh process each time, as a login is
                for name, cfg_path in (("index", path), ("parse", bare)):
                    times[name].append(in_fresh_process(cfg_path, who.name))
            rows.append((users, median_ms(times["index"]), median_ms(times["parse"]),
                         validate, sshd))
        print(f"== admission per login (median ms of {args.rounds} fresh processes)")
        print(f"{'users':>8} {'index':>8} {'x at 10':>8} {'parse':>9} {'x at 10':>8} "
              f"{'validate s':>11} {'sshd-config s':>14}")
        for users, idx, parse, validate, sshd in rows:
            print(f"{users:>8} {idx:8.3f} {idx / rows[0][1]:8.2f} {parse:9.2f} "
                  f"{parse / rows[0][2]:8.1f} {validate:11.2f} {sshd:14.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
