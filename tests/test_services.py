"""A jailed account is jailed everywhere on the host (issue 18): the real cron and atd
daemons, su, su-l, runuser-l and login, each with pam_jail's lines as `pam-jail pam-setup`
writes them, for users of modes pam, shell and sftp.

Nothing here touches the host's /etc/pam.d or spool directories: every daemon and every
su/login runs in a private mount namespace (unshare -m --propagation private) in which a
test copy of /etc/pam.d/SERVICE (made by pam-setup --pam-dir), private spool directories
and a private /run are bind-mounted over the real ones. A job writes a marker to /tmp:
found in the jail's /tmp it ran in the jail, found in the host's it did not. Afterwards no
process of the user may remain (the job's background sleep, pam_jail's namespace init)
and the daemon may have no child left (cron's root CRON process)."""

from __future__ import annotations

import contextlib
import grp
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sshd_harness import User, make_user, remove_user, unique_name
from syslog_capture import SyslogCapture
from testbed import (
    SBINDIR,
    SHELL_ENTRY,
    SYSTEM_CONFIG,
    build_jail,
    make_jailed_pair,
    remove_jail,
    write_config,
)
from util import safe_tmpdir, wait_until

pytestmark = [pytest.mark.root, pytest.mark.e2e]

PAM_JAIL = f"{SBINDIR}/pam-jail"
MODES = ("pam", "shell", "sftp")
LSH = """\
[default]
programs = /usr/bin/id, /bin/ls, /bin/cat
pass_env = LANG
allow_shell = yes
shell = /bin/bash
  [[rules]]
  /usr/bin/id = none
  /bin/ls = any
  /bin/cat = any
"""
PASSWORD = "Pjt-services-7e1c"


@dataclass
class World:
    users: dict[str, User]         # mode -> user
    jails: dict[str, str]          # mode -> jail root
    plain: User                    # an unjailed user (the non-root caller of su)
    pam_dir: str                   # /etc/pam.d copy with pam-setup's lines
    host_marker: str               # a file in the host's /etc, in no jail
    syslog: SyslogCapture


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    undo: list[Callable[[], object]] = []
    syslog = SyslogCapture().start()
    undo.append(syslog.stop)
    try:
        pair = make_jailed_pair(LSH, undo, pam_lsh=LSH)
        sftp_name, plain_name = unique_name("pjt"), unique_name("pjt")
        sftp_jail = build_jail(["uidbasics", "basicshell"], [])
        undo.append(lambda: remove_jail(sftp_jail))
        sftp = make_user(sftp_name, SHELL_ENTRY, f"{sftp_jail}/./home/{sftp_name}",
                         create_home=False)
        undo.append(lambda: remove_user(sftp_name, remove_home=False))
        from pam_jail.admin.build import add_users

        add_users(sftp_jail, [sftp_name])
        plain = make_user(plain_name, "/bin/sh")
        undo.append(lambda: remove_user(plain_name))
        with open(SYSTEM_CONFIG) as fh:
            config = fh.read().replace(
                "[users]\n", f"  [[drop]]\n  root = {sftp_jail}\n  mode = sftp\n[users]\n"
                f"{sftp_name} = drop\n")
        write_config(config)
        users = {"pam": pair.pam_user, "shell": pair.shell_user, "sftp": sftp}
        for user in users.values():
            subprocess.run(["chpasswd"], input=f"{user.name}:{PASSWORD}\n", text=True,
                           check=True)
        base = safe_tmpdir("services")
        undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
        pam_dir = f"{base}/pam.d"
        shutil.copytree("/etc/pam.d", pam_dir, symlinks=True)
        setup = subprocess.run([PAM_JAIL, "pam-setup", "--pam-dir", pam_dir],
                               capture_output=True, text=True, timeout=60, check=False)
        assert setup.returncode == 0, setup
        host_marker = f"/etc/{unique_name('pjt-host-')}"
        with open(host_marker, "w") as fh:
            fh.write("host\n")
        undo.append(lambda: os.unlink(host_marker))
        yield World(users, {"pam": pair.pam_jail, "shell": pair.shell_jail,
                            "sftp": sftp_jail}, plain, pam_dir, host_marker, syslog)
    finally:
        for step in reversed(undo):
            with contextlib.suppress(Exception):
                step()


# --------------------------------------------------------------------------- helpers


def binds(pam_dir: str, *services: str) -> str:
    """Shell text: bind the test copies of these pam.d files over the real ones."""
    return "".join(f"mount --bind {pam_dir}/{s} /etc/pam.d/{s} && " for s in services)


def private(script: str) -> list[str]:
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def processes_of(uid: int) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if match and int(match.group(1)) == uid:
            found.append(f"{pid} {cmd}")
    return found


def children_of(ppid: int) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            found.append(pid)
    return found




def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def job_text(tag: str, user: User) -> str:
    """The job: a marker in /tmp (on the host: the host's; in the jail: the job's own
    tmpfs) and in its home, the root listing, a background sleep that must not outlive
    it."""
    home = f"/home/{user.name}"
    return (f"echo ran-$(id -u) > /tmp/{tag}; echo ran-$(id -u) > {home}/{tag}; "
            f"ls / > {home}/{tag}.ls; sleep 300 >/dev/null 2>&1 &")


def marks(world: World, mode: str, tag: str) -> list[str]:
    home = f"{world.jails[mode]}/home/{world.users[mode].name}"
    return [f"/tmp/{tag}", f"{home}/{tag}", f"{home}/{tag}.ls"]


def where_it_ran(world: World, mode: str, tag: str) -> str:
    host_mark, jail_mark, _ = marks(world, mode, tag)
    if os.path.exists(host_mark):
        return "host"
    if os.path.exists(jail_mark):
        return "jail"
    return "nowhere"


def assert_ran_in_the_jail(world: World, mode: str, tag: str) -> None:
    """The job left its marks in the jail, all of them (it writes the listing last: a
    test that reads it must not race the job), and none on the host."""
    user = world.users[mode]
    listing = marks(world, mode, tag)[2]
    def listed() -> bool:
        try:
            return os.path.getsize(listing) > 0      # `ls / > FILE`: written when ls ends
        except OSError:
            return False

    ran = wait_until(lambda: where_it_ran(world, mode, tag) == "host" or listed(), 20)
    assert ran and where_it_ran(world, mode, tag) == "jail", (
        where_it_ran(world, mode, tag), "\n".join(
            line for line in world.syslog.lines if user.name in line or "CRON" in line
            or "atd" in line))


def clean_up_job(world: World, mode: str, tag: str, proc: subprocess.Popen[bytes],
                 work: str) -> None:
    """After a cron or at test, also a failed one: the user's and the daemon's leftovers,
    the daemon, the job's marks, the spool."""
    kill_leftovers(world.users[mode].uid, proc.pid)
    stop(proc)
    for path in marks(world, mode, tag):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    shutil.rmtree(work, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def kill_leftovers(uid: int, daemon: int) -> None:
    """Cleanup after a failure: the user's processes, the daemon's children."""
    for line in processes_of(uid):
        with contextlib.suppress(OSError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    for pid in children_of(daemon):
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)


def assert_nothing_left(user: User, daemon: int) -> None:
    assert wait_until(lambda: not processes_of(user.uid) and not children_of(daemon), 15), \
        (processes_of(user.uid), children_of(daemon))


# --------------------------------------------------------------------------- cron, atd


@pytest.mark.parametrize("mode", MODES)
def test_cron_job_runs_in_the_jail_and_leaves_nothing(world: World, mode: str) -> None:
    user = world.users[mode]
    tag = unique_name("pjt-cron-")
    work = safe_tmpdir("cron")
    crontab_gid = grp.getgrnam("crontab").gr_gid
    spool = f"{work}/crontabs"
    os.mkdir(spool)
    os.chown(spool, 0, crontab_gid)
    os.chmod(spool, 0o1730)
    with open(f"{spool}/{user.name}", "w") as fh:       # what `crontab -u USER` writes
        fh.write(f"@reboot {job_text(tag, user)}\n")
    os.chown(f"{spool}/{user.name}", user.uid, crontab_gid)
    os.chmod(f"{spool}/{user.name}", 0o600)
    # @reboot jobs run when cron starts without /run/crond.reboot: a private /run
    script = (binds(world.pam_dir, "cron") + "mount -t tmpfs tmpfs /run && "
              f"mount --bind {spool} /var/spool/cron/crontabs && exec cron -f")
    proc = subprocess.Popen(private(script), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert_ran_in_the_jail(world, mode, tag)
        with open(marks(world, mode, tag)[2]) as fh:
            assert "sys" not in fh.read().split()              # the jail is its /
        assert_nothing_left(user, proc.pid)
        assert world.syslog.wait_for("session allowed", user.name, "cron")
    finally:
        clean_up_job(world, mode, tag, proc, work)


@pytest.mark.parametrize("mode", MODES)
def test_at_job_runs_in_the_jail_and_leaves_nothing(world: World, mode: str) -> None:
    user = world.users[mode]
    tag = unique_name("pjt-at-")
    work = safe_tmpdir("atd")
    daemon = grp.getgrnam("daemon").gr_gid
    for name in ("atjobs", "atspool"):
        os.mkdir(f"{work}/{name}")
        os.chown(f"{work}/{name}", 1, daemon)       # daemon:daemon 1770, as Debian's
        os.chmod(f"{work}/{name}", 0o1770)
    with open(f"{work}/atjobs/.SEQ", "w") as fh:
        fh.write("0\n")
    os.chown(f"{work}/atjobs/.SEQ", 1, daemon)
    os.chmod(f"{work}/atjobs/.SEQ", 0o600)
    script = (binds(world.pam_dir, "atd") + "mount -t tmpfs tmpfs /run && "
              f"mount --bind {work}/atjobs /var/spool/cron/atjobs && "
              f"mount --bind {work}/atspool /var/spool/cron/atspool && exec atd -f")
    proc = subprocess.Popen(private(script), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_file = f"/proc/{proc.pid}/root/run/atd.pid"      # written, not only made

        def started() -> bool:
            try:
                return os.path.getsize(pid_file) > 0
            except OSError:
                return False

        assert wait_until(lambda: started() or proc.poll() is not None, 10)
        assert proc.poll() is None
        # the job is the user's own, submitted in atd's namespace (its spool, its pid file)
        submit = subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "--", "setpriv",
                                 f"--reuid={user.uid}", f"--regid={user.gid}",
                                 "--init-groups", "at", "now"],
                                input=job_text(tag, user) + "\n", capture_output=True, text=True,
                                timeout=30, check=False, cwd="/",
                                env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"})
        assert submit.returncode == 0, submit.stderr
        assert_ran_in_the_jail(world, mode, tag)
        assert_nothing_left(user, proc.pid)
        assert world.syslog.wait_for("session allowed", user.name, "atd")
    finally:
        clean_up_job(world, mode, tag, proc, work)


# --------------------------------------------------------------------------- su, login


def on_pty(argv: list[str], answers: list[tuple[str, str]] = (),  # type: ignore[assignment]
           timeout: float = 30.0) -> tuple[int, str]:
    """Run argv on a new pty; write each answer once its prompt was seen. Returns
    (exit status, everything written to the terminal)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    out, pending, seen = b"", list(answers), 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if pending and pending[0][0].encode() in out[seen:]:
                seen = len(out)
                os.write(fd, pending.pop(0)[1].encode())
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def listing_is_jailed(world: World, output: str) -> bool:
    return os.path.basename(world.host_marker) not in output and "passwd" in output


@pytest.mark.parametrize("mode", ("pam", "shell"))
def test_su_and_su_l_as_root_run_in_the_jail(world: World, mode: str) -> None:
    """su and su-l with pam_jail's lines in both (the way an admin follows
    etc/pam.d/pam_jail for each file: su-l includes su, so the session line is reached
    twice): the session is confined once and the login shell runs in the jail (issue 21:
    mode pam was refused with "load /etc/pam_jail/jails.ini: unsafe config file")."""
    user = world.users[mode]
    base = safe_tmpdir("su")
    try:
        with open("/etc/pam.d/su-l") as fh:
            su_l = fh.read()
        lines = [line.split("  #")[0] for line in read(f"{world.pam_dir}/su").splitlines()
                 if line.rstrip().endswith("# pam-jail pam-setup")]
        with open(f"{base}/su-l", "w") as fh:    # by hand: both types, after the include
            fh.write(su_l + "\n".join(lines) + "\n")
        for command, pam in ((f"su {user.name} -c 'ls /etc'", f"{world.pam_dir}/su"),
                             (f"su - {user.name} -c 'ls /etc'", f"{base}/su-l")):
            script = (binds(world.pam_dir, "su") + f"mount --bind {pam} /etc/pam.d/"
                      f"{os.path.basename(pam)} && exec {command}")
            status, out = on_pty(private(script))
            assert status == 0 and listing_is_jailed(world, out), (command, out)
        assert wait_until(lambda: not processes_of(user.uid), 10), processes_of(user.uid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", ("pam", "shell"))
def test_root_su_without_allow_shell_says_why_in_one_line(world: World, mode: str) -> None:
    """Root's `su USER` and `su - USER` (lines in both su and su-l) for a jailed user
    whose jail says allow_shell = no: the login shell runs in the jail and refuses the
    interactive shell in one line naming the real reason (jails.ini's allow_shell, and
    the jail); nothing of the host, no other pam_jail line. A command (`-c`) still runs
    in the jail, and root's own su is untouched."""
    user = world.users[mode]
    jail = {"pam": "pamj", "shell": "shellj"}[mode]
    base = safe_tmpdir("su")
    saved = read(SYSTEM_CONFIG)
    try:
        section = f"  [[{jail}]]\n"
        head, rest = saved.split(section, 1)
        write_config(head + section + rest.replace("allow_shell = yes", "allow_shell = no", 1))
        with open("/etc/pam.d/su-l") as fh:
            su_l = fh.read()
        lines = [line.split("  #")[0] for line in read(f"{world.pam_dir}/su").splitlines()
                 if line.rstrip().endswith("# pam-jail pam-setup")]
        with open(f"{base}/su-l", "w") as fh:
            fh.write(su_l + "\n".join(lines) + "\n")
        both = binds(world.pam_dir, "su") + f"mount --bind {base}/su-l /etc/pam.d/su-l && "
        for command in (f"su {user.name}", f"su - {user.name}"):
            status, out = on_pty(private(both + f"exec {command}"), [("$ ", "ls /etc\n")])
            said = [line for line in out.splitlines() if line.strip()]
            assert status == 126 and len(said) == 1, (command, status, out)
            assert said[0].startswith("pam_jail: refused: interactive login is not allowed"), said
            assert f"allow_shell = no for jail {jail}" in said[0], said
            if mode == "pam":           # root is told how to get a shell there instead
                assert f"as root: pam-jail chrootlaunch -j {jail} -u {user.name} -- " \
                    "/bin/sh" in said[0], said
            assert "passwd" not in out and os.path.basename(world.host_marker) not in out, out
        status, out = on_pty(private(both + f"exec su - {user.name} -c 'ls /etc'"))
        assert status == 0 and listing_is_jailed(world, out), out
        status, out = on_pty(private(both + "exec su - root -c 'id -u; ls /etc'"))
        assert status == 0 and out.splitlines()[0].strip() == "0", out
        assert os.path.basename(world.host_marker) in out, out
        assert wait_until(lambda: not processes_of(user.uid), 10), processes_of(user.uid)
    finally:
        write_config(saved)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", ("pam", "shell"))
def test_runuser_l_and_login_run_the_login_shell_in_the_jail(world: World, mode: str) -> None:
    user = world.users[mode]
    script = binds(world.pam_dir, "runuser", "runuser-l") + \
        f"exec runuser -l {user.name} -c 'ls /etc'"
    status, out = on_pty(private(script))
    assert status == 0 and listing_is_jailed(world, out), out
    script = binds(world.pam_dir, "login") + f"exec login -f {user.name}"
    status, out = on_pty(private(script), [("$ ", "ls /etc; exit\n")])
    assert listing_is_jailed(world, out), out
    assert wait_until(lambda: not processes_of(user.uid), 10), processes_of(user.uid)


def test_su_l_of_sftp_user_is_refused(world: World) -> None:
    """mode sftp is an sshd ChrootDirectory jail: su gives no session (one syslog line)."""
    user = world.users["sftp"]
    script = binds(world.pam_dir, "su") + f"exec su {user.name} -c 'ls /etc'"
    status, out = on_pty(private(script))
    assert status != 0 and os.path.basename(world.host_marker) not in out, out
    assert world.syslog.wait_for("session refused", user.name, "drop")


@pytest.mark.parametrize("mode", ("pam", "shell"))
def test_su_s_by_a_non_root_user_stays_in_the_jail(world: World, mode: str) -> None:
    """With the password, `su -s /bin/bash USER` as a normal user: su honours -s only for
    a target whose shell is in /etc/shells, and no pam_jail shell is listed there."""
    with open("/etc/shells") as fh:
        assert "pam-jail" not in fh.read()
    user = world.users[mode]
    script = binds(world.pam_dir, "su") + (
        f"exec setpriv --reuid={world.plain.uid} --regid={world.plain.gid} --init-groups "
        f"su -s /bin/bash {user.name} -c 'ls /etc'")
    status, out = on_pty(private(script), [("assword:", PASSWORD + "\n")])
    assert os.path.basename(world.host_marker) not in out, out
    assert "passwd" in out, out                               # it ran, in the jail


# --------------------------------------------------------------------------- pam-setup


def pam_setup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PAM_JAIL, "pam-setup", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_pam_setup_adds_marked_lines_once_and_undo_removes_only_its_own() -> None:
    import json

    base = safe_tmpdir("pamsetup")
    try:
        pam_dir = f"{base}/pam.d"
        shutil.copytree("/etc/pam.d", pam_dir, symlinks=True)
        with open(f"{pam_dir}/login", "a") as fh:            # an admin's own line
            fh.write("session optional pam_python.so /x/pam_jail_pam.py\n")
        before = {name: read(f"{pam_dir}/{name}") for name in os.listdir(pam_dir)}
        dry = pam_setup("--pam-dir", pam_dir, "--dry-run", "--json")
        assert dry.returncode == 0 and json.loads(dry.stdout)["changed"] is True, dry
        assert {n: read(f"{pam_dir}/{n}") for n in os.listdir(pam_dir)} == before
        first = pam_setup("--pam-dir", pam_dir)
        assert first.returncode == 0, first
        with open(f"{pam_dir}/cron") as fh:
            cron = fh.read().splitlines()
        marked = [i for i, line in enumerate(cron) if line.endswith("# pam-jail pam-setup")]
        assert len(marked) == 4 and cron[-1].startswith("session required pam_python.so")
        assert cron[marked[0] - 1].startswith("@include common-account")
        for name in ("su-l", "runuser-l"):                  # reached through the include
            assert read(f"{pam_dir}/{name}") == before[name]
        again = pam_setup("--pam-dir", pam_dir, "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False, again
        text = pam_setup("--pam-dir", pam_dir)
        assert text.returncode == 0 and "no change" in text.stdout, text
        undo = pam_setup("--pam-dir", pam_dir, "--undo")
        assert undo.returncode == 0, undo
        after = {name: read(f"{pam_dir}/{name}") for name in os.listdir(pam_dir)}
        assert after == before                          # the admin's line is still there
        os.unlink(f"{pam_dir}/atd")
        missing = pam_setup("--pam-dir", pam_dir, "--services", "cron,atd")
        assert missing.returncode == 1 and missing.stderr.startswith("pam_jail: "), missing
        assert len(missing.stderr.splitlines()[0]) < 120
        assert read(f"{pam_dir}/cron") == before["cron"]      # all or nothing
        os.chmod(f"{pam_dir}/cron", 0o666)
        odd = pam_setup("--pam-dir", pam_dir, "--services", "cron")
        assert odd.returncode == 1 and "writable" in odd.stderr, odd
        helptext = pam_setup("--help")
        assert helptext.returncode == 0 and "exit status" in helptext.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
