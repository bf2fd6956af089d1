"""Benchmark the jail builder against a naive builder that spawns `ldd` per file.

Run as root: `.venv/bin/python bench/bench_build.py [--repeat N]`. Jails are built under
/srv/pam_jail-bench (removed afterwards). For each profile set it prints the files and
bytes written and the best wall time of N fresh builds, the time of a re-run on the built
jail (nothing to copy), and the same set built naively: `ldd FILE` for every input file,
then `cp -L` semantics (shutil.copy2) for every file and library. Target: git < 1.5 s.
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

from pam_jail import build, elf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROFILES = str(REPO / "etc" / "pam_jail" / "profiles.ini")
BASE = "/srv/pam_jail-bench"
SETS = [("sftp", "scp", "rsync", "lsh"), ("basicshell",), ("git",), ("cvs",)]


def ours(names: tuple[str, ...], top: str) -> tuple[int, int, float, float]:
    root = f"{top}/jail"
    elf.clear_caches()
    start = time.perf_counter()
    report = build.init_jail(root, names, profiles_file=PROFILES)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    build.init_jail(root, names, profiles_file=PROFILES)
    rerun = time.perf_counter() - start
    return report.files, report.bytes, fresh, rerun


def naive(names: tuple[str, ...], top: str) -> tuple[int, int, float]:
    """What a shell-script builder does: ldd per file, copy everything dereferenced."""
    profiles = build.expand_profiles(build.load_profiles(PROFILES), names)
    planner = build._Planner()
    for profile in profiles:
        for name in profile.executables:
            planner.add_executable(name, profile.name)
        for path in profile.paths + [p for p in profile.optional if os.path.exists(p)]:
            planner.add_path(path, profile.name, profile.exclude, optional=True)
        for lib in profile.libraries:
            planner.add_library(lib, profile.name)
    inputs = list(dict.fromkeys(planner.elf_inputs))
    root = f"{top}/naive"
    start = time.perf_counter()
    files = set(inputs)
    for path in inputs:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if "=>" in words and len(words) > 2 and words[2].startswith("/"):
                files.add(words[2])
            elif words and words[0].startswith("/"):
                files.add(words[0])
    written = 0
    for path in sorted(files):
        if not os.path.exists(path):
            continue
        dest = root + os.path.realpath(path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(path, dest)
        written += os.path.getsize(dest)
    return len(files), written, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh builds per set (best)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_build: run as root (the builder chowns and makes device nodes)",
              file=sys.stderr)
        return 2
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    os.chmod(BASE, 0o755)
    header = (f"{'profile set':24} {'files':>6} {'bytes':>11} {'seconds':>8} {'rerun s':>8} "
              f"{'naive files':>11} {'naive s':>8} {'naive/ours':>10}")
    print(f"{os.cpu_count()} CPUs; best of {args.repeat} fresh builds")
    print(header)
    print("-" * len(header))
    for names in SETS:
        best: tuple[int, int, float, float] | None = None
        for _ in range(args.repeat):
            top = tempfile.mkdtemp(dir=BASE)
            os.chmod(top, 0o755)
            try:
                result = ours(names, top)
            finally:
                shutil.rmtree(top)
            if best is None or result[2] < best[2]:
                best = result
        assert best is not None
        top = tempfile.mkdtemp(dir=BASE)
        try:
            n_files, n_bytes, n_secs = naive(names, top)
        finally:
            shutil.rmtree(top)
        files, size, secs, rerun = best
        print(f"{' '.join(names):24} {files:6d} {size:11d} {secs:8.3f} {rerun:8.3f} "
              f"{n_files:11d} {n_secs:8.3f} {n_secs / secs:9.1f}x")
    shutil.rmtree(BASE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
