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

from pam_jail.login.log import escape

CRONTABS = "/var/spool/cron/crontabs"
ATJOBS = "/var/spool/cron/atjobs"
# The PAM service of each spool's daemon.
SPOOL_SERVICE = {"crontab": "cron", "at": "atd"}


def user_gids(user: str, gid: int) -> frozenset[int]:
    """The user's primary and supplementary group ids."""
    try:
        return frozenset(os.getgrouplist(user, gid))
    except OSError:
        return frozenset({gid})


def own_private_group(user: str, gid: int) -> bool:
    """Is `gid` the user's own private group: the user's primary group, with no other
    member in the group database and no other account's primary group? (Then a home of
    that group may keep its group bits: no one else reads it through the group.)"""
    import grp
    import pwd

    try:
        primary = pwd.getpwnam(user).pw_gid
        members = grp.getgrgid(gid).gr_mem
    except KeyError:
        return False
    return primary == gid and all(m == user for m in members) and \
        not any(pw.pw_gid == gid and pw.pw_name != user for pw in pwd.getpwall())


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
        found.append((int(entry), escape(status.get("Name", "?").strip(), 64)))
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
    """Does /etc/pam.d/SERVICE carry pam_jail's lines? doctor's rule (pam.SERVICE:
    includes followed, a required session line nothing jumps over)."""
    from pam_jail.admin.doctor import parse_pam_stack
    from pam_jail.admin.doctor_host import stack_has_lines
    from pam_jail.login.config import DEFAULT_PATH

    path = f"{pam_dir}/{service}"
    if not os.path.exists(path):
        return False
    return not stack_has_lines(parse_pam_stack(path)[0], path, DEFAULT_PATH)


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


def outside_the_jail(user: str, uid: int, gids: frozenset[int], passwd_home: str,
                     jail_root: str, jail_home: str) -> list[str]:
    """What of a jailed account still acts on the host (for explain): jobs cron/atd
    would run with /bin/sh on the host, processes running there, a passwd home host
    services read files of the user's from (doctor's user.home judgement)."""
    from pam_jail.admin.doctor import FAIL
    from pam_jail.admin.doctor_host import gather_home, judge_home

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
    home = judge_home(gather_home(user, uid, gids, passwd_home, jail_root, jail_home))
    if home.status == FAIL:
        found.append(f"passwd home {passwd_home} is the user's: {home.message}; "
                     f"fix: {home.fix}")
    return found
