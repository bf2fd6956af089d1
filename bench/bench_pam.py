#!/usr/bin/env python3
"""What a login pays for the PAM module: pamtester through real libpam, interleaved.

Each service is `auth required pam_permit.so` plus one `account` and one `session` line,
each followed by pam_permit.so;
every run is `pamtester SERVICE USER acct_mgmt open_session close_session` (a fresh
process: libpam, pam_python's embedded interpreter, the module, as sshd's per-connection
process pays them). Variants:

  pam_permit                 the two lines are pam_permit.so: libpam and pamtester alone
  pam_python no-op           pam_python.so with a module whose pam_sm_* return success:
                             pam_python's own floor (interpreter start, site, its imports)
  pam_jail, unmapped user    the installed pam_jail_pam.py, a user in no jail
  pam_jail, shell-path user  the same, a mode-shell user (acct_mgmt checks the login shell)
  pam_jail, PAM-path user    the same, a mode-pam user: open_session confines pamtester
                             (namespaces, bind mounts, chroot) in its own process
  guarded, unmapped user     etc/pam.d/pam_jail's lines: the pam_succeed_if guard in front
  guarded, root              of pam_python; users whose login shell is not pam_jail's
                             never reach pam_python (the target: zero over pam_permit)

    flock /run/pam_jail-tests.lock .venv/bin/python bench/bench_pam.py [--rounds 15]

The stacks stand for login's (module argument service=login: a service that execs the
login shell; a renamed stack would otherwise be confined like cron's jobs, and sshd's
own check needs a real connection). Root only. Users, jails, /etc/pam_jail/jails.ini and
the /etc/pam.d services are made for the run and removed at the end, also on failure.
Measures the installed copy (scripts/install): pam_python loads
/usr/local/lib/pam_jail/pam_jail_pam.py. jails.ini's lookup index is written, as
`pam-jail jailuser` leaves it.

Of what a jailed login pays here, the move into the user's cgroup of the jail (the first
write to cgroup.procs) is kernel time that depends on the pace of logins: the kernel
waits for an RCU grace period (5-20 ms on this VM) when no other cgroup migration
happened in the last ~20 ms, and ~50 µs when one did (docs/benchmarks.md); rounds here
are spaced, so every login pays it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from bench_jailkit import LSH, installed_note, rounds_of
from sshd_harness import make_user, remove_user
from testbed import (
    LSH_SHELL,
    PAM_MODULE,
    add_twin,
    make_jailed_pair,
    pam_lines,
    unique,
    write_login_index,
)

NOOP_MODULE = """\
def pam_sm_acct_mgmt(pamh, flags, argv):
    return pamh.PAM_SUCCESS


pam_sm_open_session = pam_sm_close_session = pam_sm_authenticate = pam_sm_setcred = \\
    pam_sm_acct_mgmt
"""


def write_service(name: str, line: str) -> str:
    with open(f"/etc/pam.d/{name}", "w") as fh:
        # pam_permit after the line: a stack whose modules all return PAM_IGNORE (what
        # pam_jail answers for an unmapped user) fails
        fh.write(f"auth required pam_permit.so\naccount required {line}\n"
                 "account required pam_permit.so\n"
                 f"session required {line}\nsession required pam_permit.so\n")
    return name


def pamtester(service: str, user: str) -> Callable[[], float]:
    argv = ["pamtester", service, user, "acct_mgmt", "open_session", "close_session"]

    def run() -> float:
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            with open(f"/etc/pam.d/{service}") as fh:
                stack = fh.read()
            raise SystemExit(f"bench_pam: {' '.join(argv)} failed: {proc.stdout}{proc.stderr}"
                             f"with /etc/pam.d/{service}:\n{stack}")
        return seconds

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--old", metavar="MODULE", default=None,
                        help="another install's pam_python file (e.g. the previous commit's "
                             "LIBDIR/pam_jail_pam.py) timed beside the installed one, "
                             "same users: before/after in one run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_pam: run as root", file=sys.stderr)
        return 2
    if shutil.which("pamtester") is None or not os.path.isfile(PAM_MODULE):
        print("bench_pam: needs pamtester and the installed module (scripts/setup)",
              file=sys.stderr)
        return 2
    installed_note()
    undo: list[Callable[[], object]] = []
    try:
        pair = make_jailed_pair(LSH, undo)
        shared = add_twin(pair.pam_jail, LSH_SHELL, "pamj_shared", "private = no", undo)
        write_login_index()                       # as jailuser leaves it (one lookup)
        plain = make_user(unique("pjn"), "/bin/bash")
        undo.append(lambda: remove_user(plain.name, remove_home=True))
        noop = f"/etc/pam_jail-bench-noop-{unique('')}.py"
        with open(noop, "w") as fh:
            fh.write(NOOP_MODULE)
        undo.append(lambda: os.unlink(noop))
        services = {}
        lines = [("permit", "pam_permit.so"), ("noop", f"pam_python.so {noop}"),
                 ("jail", f"pam_python.so {PAM_MODULE} service=login")]
        if args.old:
            lines.append(("old", f"pam_python.so {args.old} service=login"))
        for key, line in lines:
            name = write_service(unique("pjbench"), line)
            undo.append(lambda name=name: os.unlink(f"/etc/pam.d/{name}"))
            services[key] = name
        guarded = unique("pjbench")
        with open(f"/etc/pam.d/{guarded}", "w") as fh:
            fh.write("auth required pam_permit.so\n"
                     + pam_lines("account", extra="service=login")
                     + "account required pam_permit.so\n"
                     + pam_lines("session", extra="service=login")
                     + "session required pam_permit.so\n")
        undo.append(lambda: os.unlink(f"/etc/pam.d/{guarded}"))
        variants = {
            "pam_permit only, plain user": pamtester(services["permit"], plain.name),
            "pam_python no-op module, plain user": pamtester(services["noop"], plain.name),
            "pam_jail module, unmapped user": pamtester(services["jail"], plain.name),
            "pam_jail module, shell-path user": pamtester(services["jail"],
                                                          pair.shell_user.name),
            "pam_jail module, PAM-path user": pamtester(services["jail"], pair.pam_user.name),
            "pam_jail module, PAM-path user, private=no": pamtester(services["jail"],
                                                                    shared.name),
            "guarded lines, unmapped user": pamtester(guarded, plain.name),
            "guarded lines, root": pamtester(guarded, "root"),
            "guarded lines, PAM-path user": pamtester(guarded, pair.pam_user.name),
        }
        if args.old:   # its own runtime in the PAM-path jails too (it checks its LIBDIR's)
            libdir = os.path.dirname(os.path.abspath(args.old))
            for root in (pair.pam_jail,):
                os.makedirs(os.path.dirname(root + libdir), mode=0o755, exist_ok=True)
                shutil.copytree(libdir, root + libdir, dirs_exist_ok=True)
            variants["pam_jail --old module, shell-path user"] = pamtester(
                services["old"], pair.shell_user.name)
            variants["pam_jail --old module, PAM-path user"] = pamtester(
                services["old"], pair.pam_user.name)
        for run in variants.values():   # one untimed round: page cache, .pyc files
            run()
        times = rounds_of(args.rounds, variants, seed=7)
        base = statistics.median(times["pam_permit only, plain user"])
        print(f"== pamtester acct_mgmt open_session close_session, {args.rounds} "
              "interleaved rounds, median ms")
        print(f"{'variant':40s} {'ms':>8s} {'minus pam_permit':>17s}")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:40s} {med * 1000:8.1f} {(med - base) * 1000:+17.1f}")
        floor = statistics.median(times["pam_python no-op module, plain user"])
        print("pam_jail's own share over pam_python's floor (ms): " + ", ".join(
            f"{name.split(', ', 1)[1]} {(statistics.median(times[name]) - floor) * 1000:+.1f}"
            for name in times if name.startswith("pam_jail")))
        print("the guard's cost for users it keeps out (ms over pam_permit): " + ", ".join(
            f"{name.split(', ', 1)[1]} {(statistics.median(times[name]) - base) * 1000:+.1f}"
            for name in times if name.startswith("guarded") and "PAM-path" not in name))
        view = (statistics.median(times["pam_jail module, PAM-path user"])
                - statistics.median(times["pam_jail module, PAM-path user, private=no"]))
        print(f"the per-customer view's mounts (private = yes, the default) add "
              f"{view * 1000:+.1f} ms")
    finally:
        for step in reversed(undo):
            try:
                step()
            except Exception as err:  # noqa: BLE001 - undo the rest regardless
                print(f"bench_pam: cleanup: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
