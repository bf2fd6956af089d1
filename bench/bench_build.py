"""Benchmark the jail builder against a naive builder that spawns `ldd` per file.

Run as root: `.venv/bin/python bench/bench_build.py [--repeat N]`. Jails are built under
/srv/pam_jail-bench (removed afterwards). For each profile set it prints the files and
bytes written and the best wall time of N fresh builds, the time of a re-run on the built
jail (nothing to copy), and the same set built naively, best of N too: `ldd FILE` for
every input file, then `cp -L` semantics (shutil.copy2) for every file and library. The
last two columns are a stronger naive builder: `ldd` once per distinct ELF file (by real
path; the non-ELF inputs and the second name of a file are not run through ldd), same
copies. Target: git < 1.5 s; every set at least 5x faster than the ldd-per-file builder.

What is timed, for both builders alike: from the parsed profiles to the finished jail.
Reading profiles.ini is outside both timed regions (the naive builder gets its input list
from the same parsed profiles, before its clock starts); pam-jail's timed region still
includes finding the input files (executables on the PATH, directory walks, NSS modules),
the path safety checks, etc/passwd, etc/group, symlinks and device nodes, which the naive
builder does not do. Each round runs both builders one after the other (ours first) after
an `os.sync()`, so the page cache write-back of the previous build does not land in the
next one's time. ELF caches are cleared before every pam-jail build. Both jails are
checked to hold the same regular files (pam-jail's also has etc/passwd and etc/group).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pam_jail.admin import build, elf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROFILES = str(REPO / "etc" / "pam_jail" / "profiles.ini")
BASE = "/srv/pam_jail-bench"
SETS = [("sftp", "scp", "rsync", "lsh"), ("basicshell",), ("git",), ("cvs",)]
IDENTITY = {"/etc/passwd", "/etc/group"}  # written by pam-jail only


def ours(names: tuple[str, ...], top: str,
         definitions: dict[str, build.Profile]) -> tuple[int, int, float, float]:
    root = f"{top}/jail"
    elf.clear_caches()
    start = time.perf_counter()
    report = build.init_jail(root, names, definitions=definitions)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    build.init_jail(root, names, definitions=definitions)
    rerun = time.perf_counter() - start
    return report.files, report.bytes, fresh, rerun


def naive_inputs(names: tuple[str, ...], definitions: dict[str, build.Profile],
                 elf_once: bool) -> tuple[list[str], list[str]]:
    """(files to run ldd on, files to copy) from the profiles, as a script would list
    them. With `elf_once`, ldd runs once per distinct ELF file (by real path)."""
    profiles = build.expand_profiles(definitions, names)
    planner = build._Planner()
    for profile in profiles:
        for name in profile.executables:
            planner.add_executable(name, profile.name)
        for path in profile.paths + [p for p in profile.optional if os.path.exists(p)]:
            planner.add_path(path, profile.name, profile.exclude, optional=True)
        for lib in profile.libraries:
            planner.add_library(lib, profile.name)
    inputs = list(dict.fromkeys(planner.elf_inputs))
    if not elf_once:
        return inputs, inputs
    by_real: dict[str, str] = {}
    for path in inputs:
        with open(path, "rb") as fh:
            if fh.read(4) == elf.ELF_MAGIC:
                by_real.setdefault(os.path.realpath(path), path)
    return list(by_real.values()), inputs


def naive(names: tuple[str, ...], top: str, definitions: dict[str, build.Profile],
          elf_once: bool = False) -> tuple[int, int, float]:
    """What a shell-script builder does: ldd per file, copy everything dereferenced."""
    run_ldd, inputs = naive_inputs(names, definitions, elf_once)
    root = f"{top}/naive"
    start = time.perf_counter()
    files = set(inputs)
    for path in run_ldd:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if "=>" in words and len(words) > 2 and words[2].startswith("/"):
                files.add(words[2])
            elif words and words[0].startswith("/"):
                files.add(words[0])
    written: dict[str, int] = {}
    for path in sorted(files):
        if not os.path.exists(path):
            continue
        dest = root + os.path.realpath(path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(path, dest)
        written[dest] = os.path.getsize(dest)
    seconds = time.perf_counter() - start
    return len(written), sum(written.values()), seconds


def regular_files(root: str) -> set[str]:
    """Regular files under `root`, as paths inside it."""
    found: set[str] = set()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.isfile(path):
                found.add(path[len(root):])
    return found


def same_job(top: str) -> None:
    """Both builders copied the same regular files (pam-jail adds passwd and group)."""
    ours_files = regular_files(f"{top}/jail") - IDENTITY
    naive_files = regular_files(f"{top}/naive")
    if ours_files != naive_files:
        raise SystemExit(f"bench_build: the jails differ: only pam-jail "
                         f"{sorted(ours_files - naive_files)[:5]}, only naive "
                         f"{sorted(naive_files - ours_files)[:5]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per set, each a fresh build by every builder (best)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_build: run as root (the builder chowns and makes device nodes)",
              file=sys.stderr)
        return 2
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    os.chmod(BASE, 0o755)
    header = (f"{'profile set':24} {'files':>6} {'bytes':>11} {'seconds':>8} {'rerun s':>8} "
              f"{'naive files':>11} {'naive s':>8} {'naive/ours':>10} "
              f"{'ELF-once s':>10} {'ratio':>6}")
    print(f"{os.cpu_count()} CPUs; best of {args.repeat} rounds")
    print(header)
    print("-" * len(header))
    for names in SETS:
        definitions = build.load_profiles(PROFILES)
        best: tuple[int, int, float, float] | None = None
        best_naive: tuple[int, int, float] | None = None
        best_once = float("inf")
        for round_ in range(args.repeat):
            top = tempfile.mkdtemp(dir=BASE)
            os.chmod(top, 0o755)
            try:
                os.sync()
                result = ours(names, top, definitions)
                os.sync()
                n_result = naive(names, top, definitions)
                if round_ == 0:
                    same_job(top)
                shutil.rmtree(f"{top}/naive")
                os.sync()
                best_once = min(best_once, naive(names, top, definitions, elf_once=True)[2])
                if round_ == 0:
                    same_job(top)
            finally:
                shutil.rmtree(top)
            if best is None or result[2] < best[2]:
                best = result
            if best_naive is None or n_result[2] < best_naive[2]:
                best_naive = n_result
        assert best is not None and best_naive is not None
        files, size, secs, rerun = best
        n_files, _n_bytes, n_secs = best_naive
        print(f"{' '.join(names):24} {files:6d} {size:11d} {secs:8.3f} {rerun:8.3f} "
              f"{n_files:11d} {n_secs:8.3f} {n_secs / secs:9.1f}x "
              f"{best_once:10.3f} {best_once / secs:5.1f}x")
    shutil.rmtree(BASE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
