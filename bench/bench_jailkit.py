"""pam_jail side by side with jailkit: build, check, shell start-to-exec, ssh end to end.

Run as root: `.venv/bin/python bench/bench_jailkit.py [--rounds N] [--build-rounds N]`.
Needs jailkit (`apt-get install jailkit`, Debian 12 ships 2.23) and pam_jail installed
(scripts/install: sshd and pam_python run the installed copy, not this tree).

Every measurement is a whole command, timed from the outside, run in interleaved rounds
(each round runs every variant once, in a shuffled order) on this noisy 2-core machine;
the tables give medians and ratios from one run, never absolute targets.

1. Jail build: `jk_init -j J sftp scp rsync jk_lsh basicshell` vs `pam-jail init -j J
   sftp scp rsync basicshell` (this tree's code, started as the installed command is),
   each into a fresh directory. Files, symlinks and bytes of both jails are printed too:
   jailkit's basicshell and its netbasics/uidbasics sections carry more than ours.
2. Jail check: `jk_check -c INI JAIL` vs `pam-jail check` (only if pam_jail/admin/check.py
   exists; otherwise the row says so).
3. Shell start-to-exec, no ssh: as the user (setpriv), `jk_chrootsh -c /usr/bin/id`
   (setuid root, chroot, jk_lsh from the jail's passwd) vs `pam-jail-shell -c
   /usr/bin/id` (user namespace, pivot_root, limited shell), and `/usr/bin/id` unjailed.
4. ssh end to end on one sshd (tests/sshd_harness.Sshd, PAM stack
   tests/jail_fixtures.PAM_STACK): a plain user (/bin/bash, no jail), a jailkit user
   (jk_chrootsh, home JAIL/./home/U, jk_lsh in the jail), a pam_jail shell-path user and
   a pam_jail PAM-path user (tests/jail_fixtures.make_jailed_pair). Operations: `ssh U
   rsync --version`, `scp -O` of 1 MiB up, one `sftp -b` session with put+get of 1 MiB,
   `rsync -a` of a 100-file tree up. Printed: median per user, and jailed minus plain
   (median of the per-round differences). Target of issue 6: pam_jail's jailed-minus-
   plain within 5 ms of jailkit's.
   Variant column pj-shell-nopam: the same shell-path user on a second sshd whose PAM
   stack is PAM_STACK without the pam_python lines (a host whose jailed users are all
   mode `shell` needs no PAM module; jk_chrootsh needs none either), compared with the
   plain user on that same sshd (plain-nopam).

The PAM stack is PAM_STACK with pam_jail's two lines skipped (pam_succeed_if) for the
plain and the jailkit user: pam_jail honours jailkit's home marker, so its PAM module
would otherwise chroot the jailkit user itself and sshd would then miss jk_chrootsh in
the jail. "Jailed minus plain" is therefore everything pam_jail adds to a login
(pam_python, the module, the shell entry). The line "module pass for an unmapped user"
shows what the pam_jail lines cost an unmapped user: the plain user on a second sshd
with PAM_STACK unchanged. "all four, pooled": every operation is one login, so the median
of all per-round differences of the four operations estimates the same per-login
overhead with four times the samples.

Bench-only deviation: the shell path's lsh.ini gives /usr/bin/rsync the rule `any`
(the `rsync` rule admits only `rsync --server ...`, so `rsync --version` would be
refused); jk_lsh checks no arguments at all. Decision time is in bench_policy.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sshd_harness import Sshd, User, make_user, remove_user  # noqa: E402
from testbed import (  # noqa: E402
    PAM_STACK,
    SHELL_ENTRY,
    make_jailed_pair,
    unique,
    write_login_index,
)
from util import safe_tmpdir  # noqa: E402

PYTHON = "/usr/bin/python3"
DIST = ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]
INSTALLED_LIB = "/usr/local/lib/pam_jail/pam_jail"
# this tree's pam-jail, started as the installed shebang starts it (-IS, own sys.path)
PAM_JAIL_CLI = [PYTHON, "-IS", "-c",
                f"import sys; sys.path[:0] = [{str(REPO)!r}]; sys.path += {DIST!r}; "
                "from pam_jail.admin.cli import main; sys.exit(main(sys.argv[1:]))"]
JK_TOOLS = ("jk_init", "jk_check", "jk_chrootsh", "jk_lsh")
JK_PROFILES = ["sftp", "scp", "rsync", "jk_lsh", "basicshell"]
PJ_PROFILES = ["sftp", "scp", "rsync", "basicshell"]
ID = "/usr/bin/id"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

LSH = f"""\
[default]
programs = {SFTP_SERVER}, /usr/bin/scp, /usr/bin/rsync, {ID}
paths = %h
umask = 0027
  [[rules]]
  /usr/bin/rsync = any
  {ID} = none
"""

JK_LSH = f"""\
[DEFAULT]
executables = {SFTP_SERVER}, /usr/bin/scp, /usr/bin/rsync, {ID}
paths = /usr/bin, /usr/lib/openssh
allow_word_expansion = 0
umask = 027
"""

Undo = list[Callable[[], object]]


class Failed(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def run_checked(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run; raise Failed with the output if it did not exit 0 (never time a failure)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120,
                          check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise Failed(f"{' '.join(argv)[:200]} -> exit {proc.returncode}\n"
                     f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    result: subprocess.CompletedProcess[str] = proc
    return result


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def tree_stats(root: str) -> tuple[int, int, int, set[str]]:
    """files, symlinks, bytes of regular files, and the set of relative paths."""
    files = links = size = 0
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                links += 1
                names.add(rel)
            elif os.path.isfile(path):
                files += 1
                size += st.st_size
                names.add(rel)
    return files, links, size, names


def tree_digest(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")  # .pyc, bundles
        for name in sorted(filenames):
            if name.endswith((".pyc", ".c")):   # scripts/install leaves out _sys.c
                continue
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (users, jails, sshd)")
    missing = [t for t in JK_TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin") is None]
    if missing:
        problems.append(f"jailkit not installed ({', '.join(missing)} missing): "
                        "apt-get install jailkit")
    for tool in ("setpriv", "ssh", "scp", "sftp", "rsync"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not installed: run scripts/setup")
    if not os.access(SHELL_ENTRY, os.X_OK):
        problems.append(f"{SHELL_ENTRY} missing: run scripts/install")
    return problems


def rounds_of(n: int, variants: dict[str, Callable[[], float]],
              seed: int) -> dict[str, list[float]]:
    """Every variant once per round, in a shuffled order; returns seconds per variant."""
    rng = random.Random(seed)
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(n):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            out[name].append(variants[name]())
    return out


# --------------------------------------------------------------------------- 1. build


def bench_build(base: str, n: int) -> None:
    counter = [0]

    def fresh(kind: str) -> str:
        counter[0] += 1
        top = f"{base}/b{counter[0]}"
        os.makedirs(top, mode=0o755)
        return f"{top}/{kind}"

    kept: dict[str, str] = {}

    def build(kind: str) -> float:
        root = fresh(kind)
        argv = (["jk_init", "-j", root, *JK_PROFILES] if kind == "jailkit"
                else [*PAM_JAIL_CLI, "init", "-j", root, *PJ_PROFILES])
        secs = timed(lambda: run_checked(argv))
        if kind in kept:
            shutil.rmtree(os.path.dirname(root))
        else:
            kept[kind] = root
        return secs

    times = rounds_of(n, {"jailkit": lambda: build("jailkit"),
                          "pam_jail": lambda: build("pam_jail")}, seed=1)
    jk, pj = (statistics.median(times[k]) for k in ("jailkit", "pam_jail"))
    jf, jl, jb, jn = tree_stats(kept["jailkit"])
    pf, pl, pb, pn = tree_stats(kept["pam_jail"])
    print(f"\n== 1. jail build, {n} interleaved rounds, fresh directory each, median")
    print(f"{'builder':<10} {'profiles':<38} {'files':>6} {'links':>6} {'MB':>7} "
          f"{'ms':>8}")
    print(f"{'jailkit':<10} {'jk_init ' + ' '.join(JK_PROFILES):<38} {jf:6d} {jl:6d} "
          f"{jb / 1e6:7.2f} {ms(jk)}")
    print(f"{'pam_jail':<10} {'pam-jail init ' + ' '.join(PJ_PROFILES):<38} {pf:6d} {pl:6d} "
          f"{pb / 1e6:7.2f} {ms(pj)}")
    print(f"build time jailkit/pam_jail: {jk / pj:.2f}x  (target: > 1, pam_jail faster); "
          f"MB/s jailkit {jb / 1e6 / jk:.0f}, pam_jail {pb / 1e6 / pj:.0f}")
    print(f"paths only in jailkit's jail: {len(jn - pn)}, only in pam_jail's: {len(pn - jn)}"
          f", in both: {len(jn & pn)}")
    for label, names in (("only jailkit", jn - pn), ("only pam_jail", pn - jn)):
        tops = sorted({p.rsplit("/", 1)[0] if "/" in p else p for p in names})
        print(f"  {label}: " + ", ".join(
            f"{d}/ ({sum(1 for p in names if p.startswith(d + '/') or p == d)})"
            for d in tops))


# --------------------------------------------------------------------------- 2. check


def bench_check(base: str, jk_root: str, pj_root: str, n: int) -> None:
    print(f"\n== 2. jail check, {n} interleaved rounds, median")
    ini = f"{base}/jk_check.ini"
    with open(ini, "w") as fh:
        fh.write(f"[{jk_root}]\nignorepathoncompare = {jk_root}/home, {jk_root}/etc\n"
                 f"ignorewritableforothers = {jk_root}/tmp\n")
    jk_argv = ["jk_check", "-c", ini, jk_root]
    bare_argv = [PYTHON, "-IS", "-c", "pass"]
    variants: dict[str, Callable[[], float]] = {
        "jailkit": lambda: timed(lambda: run_checked(jk_argv)),
        "python": lambda: timed(lambda: run_checked(bare_argv))}
    have_check = (REPO / "pam_jail" / "check.py").exists()
    if have_check:
        pj_argv = [*PAM_JAIL_CLI, "check", pj_root]
        variants["pam_jail"] = lambda: timed(lambda: run_checked(pj_argv))
    try:
        for variant in variants.values():     # untimed: page cache and CPU caches warm
            variant()
        times = rounds_of(n, variants, seed=2)
    except Failed as err:
        print(f"check row not measured: {err}")
        return
    jk = statistics.median(times["jailkit"])
    print(f"{'jailkit':<10} {' '.join(jk_argv[:3]) + ' JAIL':<38} {ms(jk)} ms")
    if not have_check:
        print(f"{'pam_jail':<10} {'pam-jail check':<38}  not measured: pam_jail/admin/check.py "
              "does not exist yet (issue 5)")
        return
    pj = statistics.median(times["pam_jail"])
    print(f"{'pam_jail':<10} {'pam-jail check JAIL':<38} {ms(pj)} ms")
    print(f"{'(python)':<10} {'python3 -IS -c pass':<38} {ms(statistics.median(times['python']))}"
          " ms  (the interpreter alone)")
    print(f"check time jailkit/pam_jail: {jk / pj:.2f}x  (target: > 1)")


# --------------------------------------------------------------------------- setup


def make_jailkit_user(base: str, undo: Undo) -> tuple[User, str]:
    """A jailkit jail (jk_init) and a user: jk_chrootsh outside, jk_lsh inside."""
    top = f"{base}/jk-login"
    os.makedirs(top, mode=0o755)
    root = f"{top}/jail"
    run_checked(["jk_init", "-j", root, *JK_PROFILES])
    run_checked(["jk_cp", "-j", root, ID])
    with open(f"{root}/etc/jailkit/jk_lsh.ini", "w") as fh:
        fh.write(JK_LSH)
    name = unique("pjk")
    user = make_user(name, "/usr/sbin/jk_chrootsh", f"{root}/./home/{name}",
                     create_home=False)
    undo.append(lambda: remove_user(name, remove_home=False))
    home = f"{root}/home/{name}"
    os.makedirs(home, mode=0o750)
    os.chown(home, user.uid, user.gid)
    with open(f"{root}/etc/passwd", "a") as fh:
        fh.write(f"{name}:x:{user.uid}:{user.gid}::/home/{name}:/usr/sbin/jk_lsh\n")
    with open(f"{root}/etc/group", "a") as fh:
        fh.write(f"{name}:x:{user.gid}:\n")
    return user, root


def bench_pam_stack(skip: Sequence[str]) -> str:
    """tests/jail_fixtures.PAM_STACK, with pam_jail's two lines skipped for `skip`.

    Needed for jailkit's users: pam_jail honours the jailkit home marker, so its PAM
    module would chroot a jk_chrootsh user into the jailkit jail itself (and then sshd
    cannot find jk_chrootsh there). The plain user skips them too: "jailed minus plain"
    then holds everything pam_jail adds to a login."""
    cond = f"pam_succeed_if.so quiet user in {':'.join(skip)}"
    out = []
    for line in PAM_STACK.splitlines():
        if "pam_python.so" in line:
            out.append(f"{line.split()[0]} [success=1 default=ignore] {cond}")
        out.append(line)
    return "\n".join(out) + "\n"


def no_module_stack() -> str:
    """PAM_STACK without pam_jail's lines: what a host whose jailed users are all mode
    `shell` needs (pam-jail-shell enforces; jk_chrootsh needs no PAM module either).
    The guard lines go too: a guard `[success=1 ...]` left without the pam_python line
    it skips jumps past the end of the account stack, and PAM refuses every user whose
    shell is not pam_jail's ("Access denied ... by PAM account configuration": the
    plain-nopam row failed with "scp -O: lost connection")."""
    return "".join(line + "\n" for line in PAM_STACK.splitlines()
                   if "pam_python.so" not in line and " shell notin " not in line)


def as_user(user: User, *argv: str) -> list[str]:
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
            "--reset-env", *argv]


# --------------------------------------------------------------------------- 3. shell


def bench_shell(jk_user: User, pj_user: User, plain: User, n: int) -> None:
    def run_id(user: User, argv: list[str]) -> Callable[[], float]:
        def call() -> float:
            secs = timed(lambda: _expect_id(user, run_checked(argv, cwd="/")))
            return secs
        return call

    variants = {
        "unjailed": run_id(plain, as_user(plain, ID)),
        "jailkit": run_id(jk_user, as_user(jk_user, "/usr/sbin/jk_chrootsh", "-c", ID)),
        "pam_jail": run_id(pj_user, as_user(pj_user, SHELL_ENTRY, "-c", ID)),
    }
    times = rounds_of(n, variants, seed=3)
    base = statistics.median(times["unjailed"])
    print(f"\n== 3. shell start-to-exec of {ID} as the user (setpriv), no ssh, {n} "
          "interleaved rounds, median")
    print(f"{'entry':<46} {'ms':>8} {'minus unjailed':>15}")
    for label, key in (("unjailed: /usr/bin/id", "unjailed"),
                       ("jailkit: jk_chrootsh -c (+ jk_lsh in the jail)", "jailkit"),
                       ("pam_jail: pam-jail-shell -c", "pam_jail")):
        med = statistics.median(times[key])
        print(f"{label:<46} {ms(med)} {ms(med - base)}")
    jk = statistics.median(times["jailkit"]) - base
    pj = statistics.median(times["pam_jail"]) - base
    print(f"start-to-exec overhead pam_jail/jailkit: {pj / jk:.1f}x "
          f"({(pj - jk) * 1000:+.1f} ms)")


def _expect_id(user: User, proc: subprocess.CompletedProcess[str]) -> None:
    if f"uid={user.uid}(" not in proc.stdout:
        raise Failed(f"id as {user.name} printed {proc.stdout!r} {proc.stderr!r}")


# --------------------------------------------------------------------------- 4. ssh


def make_payloads(base: str) -> tuple[str, str]:
    local = f"{base}/local"
    os.makedirs(f"{local}/tree", mode=0o700)
    rng = random.Random(4)
    mib = f"{local}/one.bin"
    with open(mib, "wb") as fh:
        fh.write(rng.randbytes(1 << 20))
    for i in range(100):
        sub = f"{local}/tree/d{i % 5}"
        os.makedirs(sub, exist_ok=True)
        with open(f"{sub}/f{i:03d}", "wb") as fh:
            fh.write(rng.randbytes(rng.randint(100, 4000)))
    return mib, f"{local}/tree"


@dataclass(frozen=True)
class Login:
    """One column of the ssh table: a user on one sshd, where its files land, and the
    plain column it is compared with (the same sshd, so both pay the same PAM stack
    apart from pam_jail's lines)."""

    user: User
    server: Sshd
    home: str
    baseline: str


def bench_ssh(logins: dict[str, Login], full: Sshd, base: str, n: int) -> None:
    mib, tree = make_payloads(base)
    with open(mib, "rb") as fh:
        mib_sum = hashlib.sha256(fh.read()).hexdigest()
    seq = {"i": 0}

    def rsync_version(login: Login, server: Sshd, kind: str) -> float:
        def call() -> None:
            out = server.ssh(login.user, "rsync --version")
            if out.returncode != 0 or "rsync  version" not in out.stdout:
                raise Failed(f"{kind}: rsync --version: {out.returncode} {out.stderr}")
        return timed(call)

    def scp_put(login: Login, kind: str) -> float:
        seq["i"] += 1
        name = f"scp{seq['i']}.bin"

        def call() -> None:
            out = login.server.scp(login.user, mib, f":{name}", legacy=True)
            if out.returncode != 0:
                raise Failed(f"{kind}: scp -O: {out.stderr}")
        secs = timed(call)
        _verify(f"{login.home}/{name}", mib_sum)
        return secs

    def sftp_put_get(login: Login, kind: str) -> float:
        seq["i"] += 1
        name = f"sftp{seq['i']}.bin"
        back = f"{base}/local/{name}"

        def call() -> None:
            out = login.server.sftp_batch(login.user,
                                          f"put {mib} {name}\nget {name} {back}\n")
            if out.returncode != 0:
                raise Failed(f"{kind}: sftp: {out.stderr}")
        secs = timed(call)
        _verify(back, mib_sum)
        os.unlink(back)
        return secs

    def rsync_tree(login: Login, kind: str) -> float:
        seq["i"] += 1
        name = f"tree{seq['i']}"

        def call() -> None:
            out = login.server.rsync(login.user, "-a", f"{tree}/", f":{name}/")
            if out.returncode != 0:
                raise Failed(f"{kind}: rsync: {out.stderr}")
        secs = timed(call)
        got = sum(len(f) for _, _, f in os.walk(f"{login.home}/{name}"))
        if got != 100:
            raise Failed(f"{kind}: rsync tree landed {got} files, not 100")
        return secs

    ops: dict[str, Callable[[Login, str], float]] = {
        "ssh rsync --version": lambda lg, k: rsync_version(lg, lg.server, k),
        "scp -O put 1 MiB": scp_put,
        "sftp put+get 1 MiB": sftp_put_get,
        "rsync -a 100-file tree": rsync_tree,
    }
    kinds = list(logins)
    variants: dict[str, Callable[[], float]] = {}
    for op, fn in ops.items():
        for kind in kinds:
            variants[f"{op}|{kind}"] = _bind(fn, logins[kind], kind)
    variants["full|plain"] = lambda: rsync_version(logins["plain"], full, "full|plain")
    times = rounds_of(n, variants, seed=5)

    def diff(op: str, kind: str) -> float:
        ref = logins[kind].baseline
        return statistics.median(a - b for a, b in zip(times[f"{op}|{kind}"],
                                                       times[f"{op}|{ref}"], strict=True))

    jailed = [k for k in kinds if not k.startswith("plain")]
    pj = [k for k in jailed if k != "jailkit"]
    print(f"\n== 4. ssh end to end on 127.0.0.1, {n} interleaved rounds: median ms per "
          "login, jailed minus plain (median of per-round differences, against the plain "
          "user on the same sshd), and that minus jailkit's")
    for kind in kinds:
        lg = logins[kind]
        print(f"  {kind:<13} {lg.user.name:<12} sshd {lg.server.service}"
              + (f"  minus {lg.baseline}" if kind in jailed else ""))
    print("median ms per login")
    head = f"{'operation':<24}" + "".join(f"{k:>15}" for k in kinds)
    print(head)
    print("-" * len(head))
    for op in ops:
        print(f"{op:<24}" + "".join(
            f"{statistics.median(times[f'{op}|{k}']) * 1000:15.1f}" for k in kinds))
    print("jailed minus plain (ms), and pam_jail's minus jailkit's")
    head = f"{'operation':<24}" + "".join(f"{k:>15}" for k in jailed)
    head += "".join(f"{k + '-jk':>18}" for k in pj)
    print(head)
    print("-" * len(head))
    missed = False
    for op in ops:
        d = {k: diff(op, k) for k in jailed}
        line = f"{op:<24}" + "".join(f"{d[k] * 1000:15.1f}" for k in jailed)
        for k in pj:
            over = (d[k] - d["jailkit"]) * 1000
            missed |= over > 5
            line += f"{over:+17.1f}{'*' if over > 5 else ' '}"
        print(line)
    # Every operation is one login (one shell start), so the per-login overhead is the
    # same in all four: pooling their per-round differences gives 4x the samples.
    pooled = {k: statistics.median(a - b for op in ops for a, b in zip(
        times[f"{op}|{k}"], times[f"{op}|{logins[k].baseline}"], strict=True))
        for k in jailed}
    line = f"{'all four, pooled':<24}" + "".join(f"{pooled[k] * 1000:15.1f}" for k in jailed)
    for k in pj:
        over = (pooled[k] - pooled["jailkit"]) * 1000
        line += f"{over:+17.1f}{'*' if over > 5 else ' '}"
    print(line)
    full_med = statistics.median(times["full|plain"])
    plain_med = statistics.median(times["ssh rsync --version|plain"])
    dd = statistics.median(a - b for a, b in zip(times["full|plain"],
                                                 times["ssh rsync --version|plain"],
                                                 strict=True))
    print(f"module pass for an unmapped user: plain user's `ssh rsync --version` "
          f"{ms(full_med).strip()} ms through PAM_STACK (pam_jail lines run), "
          f"{ms(plain_med).strip()} ms with them skipped: {dd * 1000:+.1f} ms per login")
    if "plain-nopam" in logins:
        dp = statistics.median(a - b for a, b in zip(times["ssh rsync --version|plain-nopam"],
                                                     times["ssh rsync --version|plain"],
                                                     strict=True))
        print(f"sshd without pam_python lines vs pam_succeed_if-skipped lines, plain user, "
              f"`ssh rsync --version`: {dp * 1000:+.1f} ms (the two baselines agree "
              "within this)")
    print("* = misses the target (jailed-minus-plain more than 5 ms above jailkit's)"
          + ("" if missed else "; none missed"))


def _bind(fn: Callable[[Login, str], float], login: Login, kind: str) -> Callable[[], float]:
    return lambda: fn(login, kind)


def _verify(path: str, want: str) -> None:
    with open(path, "rb") as fh:
        got = hashlib.sha256(fh.read()).hexdigest()
    if got != want:
        raise Failed(f"{path}: checksum {got} != {want}")


# --------------------------------------------------------------------------- main


def installed_note() -> None:
    if not os.path.isdir(INSTALLED_LIB):
        return
    if tree_digest(INSTALLED_LIB) != tree_digest(str(REPO / "pam_jail")):
        print("note: the installed pam_jail (/usr/local/lib/pam_jail) differs from this tree;"
              " the login rows measure the installed copy (scripts/install to update)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="ssh and shell rounds")
    parser.add_argument("--build-rounds", type=int, default=5, help="build and check rounds")
    parser.add_argument("--only", choices=["build", "check", "shell", "ssh"], action="append",
                        help="run only these sections (repeatable)")
    args = parser.parse_args()
    problems = preflight()
    if problems:
        for p in problems:
            print(f"bench_jailkit: {p}", file=sys.stderr)
        return 2
    only = set(args.only or ["build", "check", "shell", "ssh"])
    jk_ver = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "jailkit"],
                            capture_output=True, text=True, check=False).stdout
    print(f"{os.cpu_count()} CPUs, jailkit {jk_ver or '?'}, OpenSSH "
          f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}")
    installed_note()
    undo: Undo = []
    servers: list[Sshd] = []
    base = safe_tmpdir("bench-jk")
    undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
    try:
        if "build" in only:
            bench_build(base, args.build_rounds)
        if not only & {"check", "shell", "ssh"}:
            return 0
        jk_user, jk_root = make_jailkit_user(base, undo)
        pair = make_jailed_pair(LSH, undo)   # shell user, PAM user, jails.ini
        write_login_index()                  # its lookup index, as jailuser leaves it
        if "check" in only:
            bench_check(base, jk_root, pair.shell_jail, args.build_rounds)
        plain = make_user(unique("pjn"), "/bin/bash")
        undo.append(lambda: remove_user(plain.name, remove_home=True))
        for root in (pair.shell_jail, pair.pam_jail):
            run_checked([*PAM_JAIL_CLI, "cp", "-j", root, ID])
        if "shell" in only:
            bench_shell(jk_user, pair.shell_user, plain, args.rounds)
        if "ssh" in only:
            from pam_jail.admin.sshd_config import generate
            from pam_jail.login.config_file import load_config

            config = generate(load_config())
            sshd = Sshd(bench_pam_stack([plain.name, jk_user.name]), config).start()
            undo.append(sshd.stop)
            full = Sshd(PAM_STACK).start()
            undo.append(full.stop)
            nopam = Sshd(no_module_stack(), config).start()
            undo.append(nopam.stop)
            servers += [sshd, full, nopam]
            shell_home = f"{pair.shell_jail}/home/{pair.shell_user.name}"
            logins = {
                "plain": Login(plain, sshd, plain.home, "plain"),
                "jailkit": Login(jk_user, sshd, f"{jk_root}/home/{jk_user.name}", "plain"),
                "pj-shell": Login(pair.shell_user, sshd, shell_home, "plain"),
                "pj-pam": Login(pair.pam_user, sshd,
                                f"{pair.pam_jail}/home/{pair.pam_user.name}", "plain"),
                "plain-nopam": Login(plain, nopam, plain.home, "plain-nopam"),
                "pj-shell-nopam": Login(pair.shell_user, nopam, shell_home, "plain-nopam"),
            }
            bench_ssh(logins, full, base, args.rounds)
    except Failed as err:
        print(f"bench_jailkit: FAILED: {err}", file=sys.stderr)
        for server in servers:
            print(f"--- {server.service} log tail:\n{server.log_text()[-2500:]}",
                  file=sys.stderr)
        return 1
    finally:
        for step in reversed(undo):
            step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
