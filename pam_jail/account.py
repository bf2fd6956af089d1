"""What a host account has outside its login sessions, for `pam-jail jailuser` and doctor:
processes running on the host, crontab and at jobs (issue 18). cron and atd run jobs with
/bin/sh on the host unless their PAM stack has pam_jail's lines (then the job runs inside
the jail: pam-jail pam-setup). jailuser sets such jobs aside, with a record --undo
restores, and refuses an account with processes running outside any jail unless --force.
"""

from __future__ import annotations

import os
import shutil
import stat

CRONTABS = "/var/spool/cron/crontabs"
ATJOBS = "/var/spool/cron/atjobs"
# The PAM service of each spool's daemon.
SPOOL_SERVICE = {"crontab": "cron", "at": "atd"}
PAM_MODULE_FILE = "pam_jail_pam.py"


def printable(text: str, limit: int = 64) -> str:
    """A string a user controls (a process title), shown safely on one line."""
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def host_processes(uid: int, proc: str = "/proc") -> list[tuple[int, str]]:
    """(pid, name) of the processes whose real uid is `uid` and that run in the caller's
    (the admin's: the host's) mount namespace with its root: not inside any jail."""
    host_ns = os.readlink(f"{proc}/self/ns/mnt")
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/status", encoding="utf-8", errors="replace") as fh:
                status = dict(line.split(":", 1) for line in fh.read().splitlines()
                              if ":" in line)
            if int(status.get("Uid", "-1").split()[0]) != uid:
                continue
            if os.readlink(f"{proc}/{entry}/ns/mnt") != host_ns or \
                    os.readlink(f"{proc}/{entry}/root") != "/":
                continue
        except (OSError, ValueError):
            continue
        found.append((int(entry), printable(status.get("Name", "?").strip())))
    return sorted(found)


def end_processes(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM each, SIGKILL what is left after `grace` seconds; returns the pids still
    there afterwards."""
    import signal
    import time

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
        except OSError:
            return False

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [p for p in pids if alive(p)]


def spooled_jobs(user: str, uid: int) -> list[tuple[str, str]]:
    """(kind, path) of the user's crontab and at jobs in Debian's spools."""
    jobs: list[tuple[str, str]] = []
    crontab = f"{CRONTABS}/{user}"
    if os.path.isfile(crontab) and not os.path.islink(crontab):
        jobs.append(("crontab", crontab))
    try:
        names = sorted(os.listdir(ATJOBS))
    except OSError:
        names = []
    for name in names:
        path = f"{ATJOBS}/{name}"
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == uid and not name.startswith("."):
            jobs.append(("at", path))
    return jobs


def stack_jails(service: str, pam_dir: str = "/etc/pam.d") -> bool:
    """Does /etc/pam.d/SERVICE have an active session line of pam_jail's module?"""
    try:
        with open(f"{pam_dir}/{service}", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return False
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "session" and \
                any(w.endswith(PAM_MODULE_FILE) for w in words[2:]):
            return True
    return False


def set_aside(jobs: list[tuple[str, str]], dest: str) -> list[list[str]]:
    """Move each job file into `dest` (root's, 0700), keeping owner and mode; returns
    the [kind, original, saved] records --undo passes to restore()."""
    os.makedirs(dest, mode=0o700, exist_ok=True)
    os.chmod(dest, 0o700)
    records = []
    for kind, path in jobs:
        saved = f"{dest}/{kind}.{os.path.basename(path)}"
        shutil.move(path, saved)
        records.append([kind, path, saved])
    return records


def restore(records: list[list[str]]) -> list[str]:
    """Put set-aside jobs back; returns the problems (a job whose place is taken stays
    where it was saved)."""
    problems = []
    for _kind, path, saved in records:
        if os.path.lexists(path):
            problems.append(f"{path} exists: {saved} left in place")
            continue
        if os.path.lexists(saved):
            shutil.move(saved, path)
    return problems


def outside_the_jail(user: str, uid: int, passwd_home: str) -> list[str]:
    """What of a jailed account still acts on the host (for explain and doctor): jobs
    cron/atd would run with /bin/sh on the host, processes running there, a passwd home
    that is not root's stub (host services read it)."""
    from pam_jail.resolve import is_stub_home

    found = []
    for kind, path in spooled_jobs(user, uid):
        service = SPOOL_SERVICE[kind]
        if not stack_jails(service):
            found.append(f"{kind} {path} runs on the host (/etc/pam.d/{service} has no "
                         "pam_jail lines): `pam-jail pam-setup`, or `pam-jail jailuser` "
                         "sets it aside")
    running = host_processes(uid)
    if running:
        shown = ", ".join(f"{pid} {name}" for pid, name in running[:6])
        found.append(f"{len(running)} process(es) run on the host: {shown}")
    if not is_stub_home(passwd_home):
        try:
            st = os.stat(passwd_home)
            users_own = st.st_uid == uid or bool(st.st_mode & 0o002)
        except OSError:
            users_own = False
        if users_own:
            found.append(f"passwd home {passwd_home} is the user's: host services (MTA "
                         ".forward, pam_env) read files the user writes; `pam-jail jailuser` "
                         "makes it a root-owned stub")
    return found
