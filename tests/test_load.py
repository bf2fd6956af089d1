"""Load: 50 concurrent ssh sessions of jailed users against one sshd on 127.0.0.1.

Five users on the PAM path (one jail, mode pam) and five on the login-shell path (one
jail, mode shell) run a mix of scp (sftp protocol), scp -O, sftp and rsync sessions, all
started together. Every remote path is absolute (/home/USER/...): that directory exists
only inside the jails, so a session that was not jailed cannot complete its transfer.
Checked: every upload and download by SHA-256, the file landed in the jail, sftp's
`ls /` shows the jail, and a sampler watching /proc sees every sftp-server, scp and rsync
process of these users with its root at the user's jail. Afterwards no process of these
users, no sshd child and no process rooted in a jail is left, and the host's mount table
is unchanged. The whole run is bounded by LOAD_SECONDS.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from jail_fixtures import (
    LSH_SHELL,
    PAM_STACK,
    SHELL_ENTRY,
    build_jail,
    remove_jail,
    restore_config,
    save_config,
    undoing,
    unique,
    write_config,
)
from sshd_harness import Sshd, User, make_user, remove_user
from util import SAFE_BASE, safe_tmpdir, wait_until

pytestmark = [pytest.mark.root, pytest.mark.e2e]

SESSIONS = 50
USERS_PER_PATH = 5
LOAD_SECONDS = 120.0
KINDS = ("scp", "scp-O", "sftp", "rsync")
TRANSFER_COMMS = {"sftp-server", "scp", "rsync"}

LSH = """\
[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/scp, /usr/bin/rsync
paths = %h
"""


@dataclass
class Jailed:
    user: User
    path: str          # "pam" or "shell"
    jail: str          # jail root on the host


@dataclass
class Load:
    sshd: Sshd
    users: list[Jailed]
    local: str         # root-only directory for the client side files
    jails: dict[str, str]


@dataclass
class Sampler:
    """Watches /proc while the load runs: the root of every transfer process."""

    uids: dict[int, tuple[int, int]]          # uid -> (st_dev, st_ino) of the jail root
    seen: int = 0
    scans: int = 0
    peak_sessions: int = 0
    unjailed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            sessions = 0
            for pid, uid, comm in user_processes(set(self.uids)):
                if comm.startswith("sshd"):   # sshd-pjt-...: the harness's argv[0]
                    sessions += 1
                if comm not in TRANSFER_COMMS:
                    continue
                try:
                    st = os.stat(f"/proc/{pid}/root")
                except OSError:
                    continue  # gone meanwhile
                self.seen += 1
                if (st.st_dev, st.st_ino) != self.uids[uid]:
                    self.unjailed.append(f"pid {pid} uid {uid} {comm}: root is not its jail")
            self.peak_sessions = max(self.peak_sessions, sessions)
            self.scans += 1
            time.sleep(0.05)


def user_processes(uids: set[int]) -> list[tuple[int, int, str]]:
    """(pid, real uid, comm) of every process whose real uid is in uids."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "-1 0").split()[0])
        if uid in uids:
            found.append((int(entry), uid, fields.get("Name", "").strip()))
    return found


def children_of(ppid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            kids.append(int(entry))
    return kids


def rooted_in(roots: set[tuple[int, int]]) -> list[int]:
    """Processes (any user, root included) whose root directory is one of `roots`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/root")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in roots:
            pids.append(int(entry))
    return pids


def mount_lines() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split(" - ")[0].split(" ", 4)[4] for line in fh]


def sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()




@pytest.fixture(scope="module")
def load() -> Iterator[Load]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        saved = save_config()
        undo.append(lambda: restore_config(saved))
        pam_names = [unique("pjlp") for _ in range(USERS_PER_PATH)]
        shell_names = [unique("pjls") for _ in range(USERS_PER_PATH)]
        made: list[tuple[User, str]] = []
        for names, shell, path in ((pam_names, LSH_SHELL, "pam"),
                                   (shell_names, SHELL_ENTRY, "shell")):
            for name in names:
                undo.append(lambda n=name: remove_user(n, remove_home=False))  # type: ignore[misc]
                made.append((make_user(name, shell, f"/home/{name}", create_home=False), path))
        pam_jail = build_jail(["lsh", "basicshell", "ptys", "sftp", "scp", "rsync"], pam_names,
                              lsh=LSH, shell=LSH_SHELL)
        undo.append(lambda: remove_jail(pam_jail))
        shell_jail = build_jail(["basicshell", "sftp", "scp", "rsync"], shell_names, lsh=LSH)
        undo.append(lambda: remove_jail(shell_jail))
        os.makedirs(f"{shell_jail}/proc", mode=0o755, exist_ok=True)
        for name in shell_names:  # jailkit's convention: the real home names the jail
            subprocess.run(["usermod", "-d", f"{shell_jail}/./home/{name}", name], check=True)
        write_config(
            f"[jails]\n  [[loadpam]]\n  root = {pam_jail}\n  mode = pam\n"
            f"  [[loadshell]]\n  root = {shell_jail}\n  mode = shell\n  proc = yes\n[users]\n"
            + "".join(f"{n} = loadpam\n" for n in pam_names)
            + "".join(f"{n} = loadshell\n" for n in shell_names))
        sshd = Sshd(PAM_STACK, generate(load_config()), log_level="INFO").start()
        undo.append(sshd.stop)
        local = safe_tmpdir("load")
        os.chmod(local, 0o700)
        undo.append(lambda: shutil.rmtree(local, ignore_errors=True))
        jails = {"pam": pam_jail, "shell": shell_jail}
        users = [Jailed(user, path, jails[path]) for user, path in made]
        yield Load(sshd, users, local, jails)


# --------------------------------------------------------------------------- sessions


@dataclass
class Outcome:
    index: int
    user: str
    path: str
    kind: str
    ok: bool
    detail: str
    seconds: float


def _run_session(world: Load, index: int, who: Jailed, kind: str, deadline: float,
                 start: threading.Barrier) -> Outcome:
    user, sshd = who.user, world.sshd
    rng = random.Random(index)
    local = f"{world.local}/s{index}"
    os.makedirs(local)
    remote = f"/home/{user.name}/load-{index}"       # exists only inside the jail
    landed = f"{who.jail}{remote}"

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def fail(step: str, proc: subprocess.CompletedProcess[str]) -> str:
        return f"{step}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}"

    start.wait(timeout=60)
    began = time.monotonic()
    try:
        if kind == "rsync":
            src = f"{local}/tree"
            for i in range(5):
                os.makedirs(f"{src}/d{i % 2}", exist_ok=True)
                with open(f"{src}/d{i % 2}/f{i}", "wb") as fh:
                    fh.write(rng.randbytes(rng.randint(1000, 60000)))
            up = sshd.rsync(user, "-a", f"{src}/", f":{remote}/", timeout=left())
            if up.returncode != 0:
                return Outcome(index, user.name, who.path, kind, False, fail("upload", up),
                               time.monotonic() - began)
            down = sshd.rsync(user, "-a", f":{remote}/", f"{local}/back/", timeout=left())
            if down.returncode != 0:
                return Outcome(index, user.name, who.path, kind, False, fail("download", down),
                               time.monotonic() - began)
            for i in range(5):
                rel = f"d{i % 2}/f{i}"
                want = sha(f"{src}/{rel}")
                if sha(f"{landed}/{rel}") != want or sha(f"{local}/back/{rel}") != want:
                    return Outcome(index, user.name, who.path, kind, False,
                                   f"checksum mismatch on {rel}", time.monotonic() - began)
            return Outcome(index, user.name, who.path, kind, True, "5 files both ways",
                           time.monotonic() - began)
        src = f"{local}/up.bin"
        with open(src, "wb") as fh:
            fh.write(rng.randbytes(rng.randint(64 << 10, 512 << 10)))
        back = f"{local}/down.bin"
        want = sha(src)
        if kind == "sftp":
            out = sshd.sftp_batch(user, f"put {src} {remote}\nget {remote} {back}\nls -1 /\n",
                                  timeout=left())
            if out.returncode != 0:
                return Outcome(index, user.name, who.path, kind, False, fail("sftp", out),
                               time.monotonic() - began)
            listing = {line.strip().lstrip("/") for line in out.stdout.splitlines()
                       if line.startswith("/") and not line.startswith("sftp>")}
            jail_top = {e for e in os.listdir(who.jail) if not e.startswith(".")}
            if listing != jail_top:
                return Outcome(index, user.name, who.path, kind, False,
                               f"ls / shows {sorted(listing)}, jail has {sorted(jail_top)}",
                               time.monotonic() - began)
        else:
            legacy = kind == "scp-O"
            up = sshd.scp(user, src, f":{remote}", legacy=legacy, timeout=left())
            if up.returncode != 0:
                return Outcome(index, user.name, who.path, kind, False, fail("upload", up),
                               time.monotonic() - began)
            down = sshd.scp(user, f":{remote}", back, legacy=legacy, timeout=left())
            if down.returncode != 0:
                return Outcome(index, user.name, who.path, kind, False, fail("download", down),
                               time.monotonic() - began)
        if sha(landed) != want or sha(back) != want:
            return Outcome(index, user.name, who.path, kind, False, "checksum mismatch",
                           time.monotonic() - began)
        return Outcome(index, user.name, who.path, kind, True, "up and down",
                       time.monotonic() - began)
    except subprocess.TimeoutExpired as err:
        return Outcome(index, user.name, who.path, kind, False, f"timeout: {err.cmd[0]}",
                       time.monotonic() - began)


def test_fifty_concurrent_jailed_sessions(load: Load) -> None:
    users = load.users
    uids = {j.user.uid for j in users}
    root_ids: dict[str, tuple[int, int]] = {}
    for path, root in load.jails.items():
        st = os.stat(root)
        root_ids[path] = (st.st_dev, st.st_ino)
    host_root = os.stat("/")
    assert all(r != (host_root.st_dev, host_root.st_ino) for r in root_ids.values())
    mounts_before = mount_lines()

    # session j: user j % 10; kinds rotate so that every user runs every kind
    plan = [(j, users[j % len(users)], KINDS[(j + j // len(users)) % len(KINDS)])
            for j in range(SESSIONS)]
    assert {(w.user.name, k) for _, w, k in plan} >= {(w.user.name, k) for w in users
                                                       for k in KINDS}
    sampler = Sampler({j.user.uid: root_ids[j.path] for j in users}).start()
    barrier = threading.Barrier(SESSIONS)
    deadline = time.monotonic() + LOAD_SECONDS
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
            futures = [pool.submit(_run_session, load, j, who, kind, deadline, barrier)
                       for j, who, kind in plan]
            outcomes = [f.result(timeout=LOAD_SECONDS + 30) for f in futures]
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started

    failed = [o for o in outcomes if not o.ok]
    slowest = max(o.seconds for o in outcomes)
    summary = (f"{SESSIONS} sessions in {elapsed:.1f} s, slowest {slowest:.1f} s, peak "
               f"{sampler.peak_sessions} concurrent user sshd processes, {sampler.scans} "
               f"scans of /proc saw {sampler.seen} transfer processes")
    print(summary)
    assert not failed, summary + "\n" + "\n".join(
        f"#{o.index} {o.path} {o.user} {o.kind}: {o.detail}" for o in failed) + \
        "\n--- sshd log tail:\n" + load.sshd.log_text()[-3000:]
    assert elapsed < LOAD_SECONDS, summary
    assert {(o.path, o.kind) for o in outcomes} == {(p, k) for p in ("pam", "shell")
                                                     for k in KINDS}
    # every transfer process seen under load ran inside its user's jail
    assert not sampler.unjailed, sampler.unjailed[:10]
    assert sampler.seen > 0, "the sampler never saw a transfer process: nothing was checked"
    assert sampler.peak_sessions >= 10, summary   # the sessions did overlap

    # nothing left: user processes, sshd's per-connection children, jail-rooted processes
    assert wait_until(lambda: not user_processes(uids), 15), user_processes(uids)
    assert load.sshd.proc is not None
    sshd_pid = load.sshd.proc.pid
    assert wait_until(lambda: not children_of(sshd_pid), 15), children_of(sshd_pid)
    assert wait_until(lambda: not rooted_in(set(root_ids.values())), 15), \
        rooted_in(set(root_ids.values()))
    # no mount of the run is visible on the host (they lived in the sessions' namespaces)
    added = [m for m in mount_lines() if m not in mounts_before]
    assert not [m for m in added if SAFE_BASE in m], added
    for root in load.jails.values():
        assert not any(root in m for m in mount_lines())
