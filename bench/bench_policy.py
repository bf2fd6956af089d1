"""Benchmark the limited shell's decision code; prints tables.

    .venv/bin/python bench/bench_policy.py [--runs N]

1. decide() per command, in microseconds (median of repeats, parse once).
2. Process start-up with the login path's interpreter flags: `/usr/bin/python3 -I -S`
   running `pass`, then importing pam_jail.login.policy. With -I -S there is no site
   module, so the command puts the repository and Debian's dist-packages (for
   configobj) on sys.path itself, as the installed shebang scripts do.
3. The biggest imports under `-X importtime` (cumulative, microseconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pam_jail.login.policy import decide, parse_lsh, select_policy  # noqa: E402

PYTHON = "/usr/bin/python3"
DIST = "/usr/lib/python3/dist-packages"
SETUP = f"import sys; sys.path[:0] = [{str(REPO)!r}, {DIST!r}]"

CONFIG = """\
[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/scp, /usr/bin/rsync, \
/usr/bin/git-upload-pack, /usr/bin/cvs, /usr/bin/md5sum
paths = %h, /srv/git
pass_env = LANG, LC_*, TERM
"""

COMMANDS = [
    "/usr/lib/openssh/sftp-server",
    "scp -t up.txt",
    "scp -r -p -f 'src dir'",
    "rsync --server -vlogDtpre.iLsfxCIvu . dest/",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu --partial-dir .p . src/a src/b src/c",
    "git-upload-pack '/srv/git/x'",  # ~20 lstat/access of a real repository (JailFacts)
    "md5sum /home/alice/a /home/alice/b",
    "cvs server",
    "rsync --server -e 'sh -c id' . x",  # refused
    "scp -t x\ny",  # refused in split
    "/bin/sh",  # refused: no rule
]


def _jail_with_repository() -> str:
    """A scratch directory standing for a jail root, with /srv/git/x.git in it."""
    import subprocess
    import tempfile

    root = tempfile.mkdtemp(prefix="pjbench")
    os.makedirs(f"{root}/srv/git")
    subprocess.run(["git", "init", "-q", "--bare", f"{root}/srv/git/x.git"], check=True)
    return root


def bench_decide(repeat: int) -> None:
    import shutil

    from pam_jail.login.lsh import JailFacts

    root = _jail_with_repository()
    facts = JailFacts(root, uid=65533)  # a uid that owns nothing there
    try:
        _bench_decide(repeat, facts)
    finally:
        shutil.rmtree(root)


def _bench_decide(repeat: int, facts: object) -> None:
    cfg = parse_lsh(CONFIG, "bench.ini")
    policy = select_policy(cfg, "alice", [])
    env = {"LANG": "C.UTF-8", "TERM": "xterm", "LD_PRELOAD": "/x", "PATH": "/tmp"}
    parse_us = _median_us(lambda: parse_lsh(CONFIG, "bench.ini"), repeat)
    print(f"{'decide() command':<78} {'allowed':>7} {'us':>8}")
    print("-" * 95)
    for command in COMMANDS:
        def call(command: str = command) -> object:
            return decide(policy, command, user="alice", home="/home/alice", client_env=env,
                          facts=facts)  # type: ignore[arg-type]

        d = decide(policy, command, user="alice", home="/home/alice", client_env=env,
                   facts=facts)  # type: ignore[arg-type]
        print(f"{command!r:<78} {str(d.allowed):>7} {_median_us(call, repeat):8.1f}")
    print(f"{'parse_lsh() of the 5-line config above':<78} {'':>7} {parse_us:8.1f}")


def _median_us(func: object, repeat: int) -> float:
    timer = timeit.Timer(func)  # type: ignore[arg-type]
    number = 200
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e6


def _wall_ms(args: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def bench_startup(runs: int) -> None:
    cases = [
        ("python3 -I -S -c pass", [PYTHON, "-I", "-S", "-c", "pass"]),
        ("python3 -I -S -c '<sys.path setup>'", [PYTHON, "-I", "-S", "-c", SETUP]),
        ("python3 -I -S -c 'import pam_jail.login.policy'",
         [PYTHON, "-I", "-S", "-c", SETUP + "; import pam_jail.login.policy"]),
        ("python3 -I -S -c 'import configobj, shlex'",
         [PYTHON, "-I", "-S", "-c", SETUP + "; import configobj, shlex"]),
        ("python3 -I -S -c 'import configobj, shlex, dataclasses'",
         [PYTHON, "-I", "-S", "-c", SETUP + "; import configobj, shlex, dataclasses"]),
    ]
    print()
    print(f"{'start-up (median of ' + str(runs) + ' runs)':<56} {'ms':>8}")
    print("-" * 65)
    base = None
    for label, args in cases:
        ms = _wall_ms(args, runs)
        base = ms if base is None else base
        extra = "" if ms is base else f"  (+{ms - base:.1f})"
        print(f"{label:<56} {ms:8.1f}{extra}")


def bench_importtime(top: int) -> None:
    proc = subprocess.run(
        [PYTHON, "-I", "-S", "-X", "importtime", "-c", SETUP + "; import pam_jail.login.policy"],
        check=True, capture_output=True, text=True,
    )
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line[12:].split("|")
        depth = len(name) - len(name.lstrip(" "))
        if depth <= 3:  # what the -c code and pam_jail.login.policy import directly
            rows.append((int(cumulative), name.strip()))
    print()
    print(f"{'direct imports under -X importtime':<50} {'us':>8}")
    print("-" * 59)
    for micros, module in sorted(rows, reverse=True)[:top]:
        print(f"{module:<50} {micros:8d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="start-up runs per case")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats")
    args = parser.parse_args()
    bench_decide(args.repeat)
    bench_startup(args.runs)
    bench_importtime(12)


if __name__ == "__main__":
    main()
