#!/usr/bin/env python3
"""`pam-jail check` speed: a small jail, a generated 50,000-file jail and the largest
realistic git jail, against a naive Python checker that hashes one 4 KiB sample block
per file (jail and host side). Both run in this process on a warm page cache (one
untimed run each first), best of --repeat runs; the checker compares every file whole
with the host's (every byte, unless the sizes or the inode already decide), with its
default worker processes (one per CPU, for jails big enough) and with -j 1; the naive
one reads one block of each. For scale, the bare walk: os.scandir plus one lstat per
entry and nothing else, the floor of any Python checker that looks at every entry.

    .venv/bin/python bench/bench_check.py [--files 50000] [--repeat 3]

Root only: the jails are built by the real builder under /var/lib/pam_jail-test and
removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import stat
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from util import safe_tmpdir  # noqa: E402

from pam_jail.admin.build import init_jail  # noqa: E402
from pam_jail.admin.check import Checker, JailReport, Target  # noqa: E402

PROFILES = f"{REPO}/etc/pam_jail/profiles.ini"


def naive_check(root: str) -> tuple[int, int]:
    """The straightforward checker: os.walk, lstat, the same mode rules, and one 4 KiB
    sample block of the jail file and of the host file, sha256'd and compared."""
    entries = findings = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = path[len(root):]
            st = os.lstat(path)
            entries += 1
            mode = st.st_mode
            if mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(mode):
                findings += 1
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                findings += 1
            if mode & 0o022 and not stat.S_ISLNK(mode) and rel != "/tmp":
                findings += 1
            if stat.S_ISREG(mode) and os.path.isfile(rel):
                with open(path, "rb") as fh:
                    mine = hashlib.sha256(fh.read(4096)).digest()
                with open(rel, "rb") as fh:
                    theirs = hashlib.sha256(fh.read(4096)).digest()
                if mine != theirs:
                    findings += 1
    return entries, findings


def bare_walk(root: str) -> int:
    """os.scandir and one lstat per entry, nothing else: the per-entry floor."""
    entries, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                entries += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return entries


def timed(func: Callable[[], object], repeat: int) -> tuple[float, object]:
    func()                                         # warm the page cache
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def generate(host_dir: str, count: int, top: float = 5.4) -> int:
    """`count` files in 100-file directories, sizes from 100 B to 10**top bytes
    (log-uniform, seeded). top 5.4 (256 KiB): a web tree of small pages with some
    images; top 3.6 (4 KiB): small files only, where the per-file cost decides."""
    rng = random.Random(42)
    total = 0
    for i in range(count):
        d = f"{host_dir}/d{i // 100:04d}"
        if i % 100 == 0:
            os.makedirs(d, mode=0o755)
        size = int(10 ** rng.uniform(2, top))
        with open(f"{d}/f{i:06d}", "wb") as fh:
            fh.write(rng.randbytes(size))
        total += size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_check: run as root", file=sys.stderr)
        return 2
    made: list[str] = []
    rows = []
    try:
        small = safe_tmpdir("bench")
        made.append(small)
        init_jail(f"{small}/jail", ["basicshell", "sftp", "scp", "rsync"],
                  profiles_file=PROFILES)
        git = safe_tmpdir("bench")
        made.append(git)
        git_profiles = ["git", "lsh", "basicshell", "terminfo", "locale", "sftp", "scp",
                        "rsync", "netbasics"]
        init_jail(f"{git}/jail", git_profiles, profiles_file=PROFILES)
        big = safe_tmpdir("bench")
        made.append(big)
        host_data = f"{big}/host/data"           # the "host" files ...
        size = generate(host_data, args.files)
        os.makedirs(f"{big}/jail", mode=0o755)
        shutil.copytree(host_data, f"{big}/jail{host_data}")   # ... and the jail's copy
        tiny = safe_tmpdir("bench")
        made.append(tiny)
        tiny_data = f"{tiny}/host/data"
        tiny_size = generate(tiny_data, args.files, top=3.6)
        os.makedirs(f"{tiny}/jail", mode=0o755)
        shutil.copytree(tiny_data, f"{tiny}/jail{tiny_data}")
        jails = [("small (sftp scp rsync basicshell)", f"{small}/jail"),
                 (f"generated {args.files} files, {size >> 20} MiB", f"{big}/jail"),
                 (f"generated {args.files} files <=4K, {tiny_size >> 20} MiB",
                  f"{tiny}/jail"),
                 (f"git + {' '.join(git_profiles[1:])}", f"{git}/jail")]
        for label, root in jails:
            # a new Checker for every timed run: nothing carried over between runs
            fast_s, report = timed(lambda r=root: Checker().check(Target("b", r)),
                                   args.repeat)
            one_s, _one = timed(lambda r=root: Checker(jobs=1).check(Target("b", r)),
                                args.repeat)
            naive_s, naive = timed(lambda r=root: naive_check(r), args.repeat)
            walk_s, _walked = timed(lambda r=root: bare_walk(r), args.repeat)
            assert isinstance(report, JailReport) and isinstance(naive, tuple)
            rows.append((label, report.entries, report.compared,
                         report.compared_bytes >> 20, report.workers, fast_s, one_s,
                         naive_s, naive[0], walk_s))
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
    print(f"pam-jail check vs naive sample-hash checker ({os.cpu_count()} CPUs, warm page "
          f"cache, best of {args.repeat}); check reads and compares whole files")
    print(f"{'jail':44} {'entries':>8} {'compared':>8} {'MiB read':>8} {'workers':>7} "
          f"{'check s':>8} {'files/s':>9} {'-j1 s':>7} {'naive s':>8} {'files/s':>9} "
          f"{'ratio':>6} {'-j1':>6} {'walk/s':>9}")
    for (label, entries, compared, mib, workers, fast_s, one_s, naive_s, naive_entries,
         walk_s) in rows:
        assert entries == naive_entries, (entries, naive_entries)
        print(f"{label[:44]:44} {entries:8} {compared:8} {mib:8} {workers:7} {fast_s:8.3f} "
              f"{entries / fast_s:9.0f} {one_s:7.3f} {naive_s:8.3f} {entries / naive_s:9.0f} "
              f"{naive_s / fast_s:6.2f}x {naive_s / one_s:5.2f}x {entries / walk_s:9.0f}")
    print("ratio: naive s / check s (target of issue 5: 3x); -j1: the same with one "
          "process; walk/s: entries/s of the bare os.scandir+lstat walk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
