"""The PAM module through real libpam: pamtester for account/session results, and
pamela (ctypes.PyDLL, see DESIGN.md 1b) in a child process to look at what
open_session did to that process. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import LSH_SHELL, SHELL_ENTRY, build_jail, remove_jail
from sshd_harness import User
from syslog_capture import SyslogCapture
from util import safe_tmpdir

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def jail() -> Iterator[str]:
    root = build_jail(["lsh", "basicshell", "ptys"], users=[], shell=LSH_SHELL)
    yield root
    remove_jail(root)


@pytest.fixture
def config(jail: str) -> Iterator[Callable[..., str]]:
    base = safe_tmpdir("cfg")

    def write(mapping: str, options: str = "", path: str = f"{base}/jails.ini") -> str:
        with open(path, "w") as fh:
            fh.write(f"[jails]\n  [[web]]\n  root = {jail}\n  mode = pam\n  hostname = webjail\n"
                     f"  [[sh]]\n  root = {jail}\n  mode = shell\n"
                     f"[users]\n{mapping}\n[options]\n{options}\n")
        os.chmod(path, 0o644)
        return path

    yield write
    shutil.rmtree(base, ignore_errors=True)


def pamtester(service: str, user: str, *ops: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pamtester", service, user, *ops], capture_output=True, text=True,
                          timeout=30)


def jailed_user(user_factory: Callable[..., User], jail: str) -> User:
    from pam_jail.admin.build import add_users

    user = user_factory(shell=LSH_SHELL, create_home=False)
    add_users(jail, [user.name], shell=LSH_SHELL)
    return user


def test_account_allows_safe_jail(jail: str, config: Callable[..., str], pam_service:
                                  Callable[..., str], user_factory: Callable[..., User],
                                  syslog: SyslogCapture) -> None:
    user = jailed_user(user_factory, jail)
    svc = pam_service(config(f"{user.name} = web"))
    result = pamtester(svc, user.name, "acct_mgmt")
    assert result.returncode == 0, result.stderr
    assert syslog.wait_for("account allowed", f"user={user.name}", "jail=web")


def test_unsafe_jail_refused_with_one_line_each(jail: str, config: Callable[..., str],
                                                 pam_service: Callable[..., str],
                                                 user_factory: Callable[..., User],
                                                 syslog: SyslogCapture) -> None:
    user = jailed_user(user_factory, jail)
    svc = pam_service(config(f"{user.name} = web"))
    os.chmod(f"{jail}/etc", 0o777)
    try:
        result = pamtester(svc, user.name, "acct_mgmt", "open_session")
    finally:
        os.chmod(f"{jail}/etc", 0o755)
    assert result.returncode != 0
    refusals = [line for line in result.stderr.splitlines() if line.startswith("pam_jail:")]
    assert refusals == ["pam_jail: login refused: check jail web: unsafe"]
    lines = syslog.wait_for("account refused", f"user={user.name}", "jail=web")
    assert len(lines) == 1 and "writable by group or other" in lines[0]
    assert lines[0].startswith("<37>")  # auth facility (4<<3 = 32) + LOG_NOTICE (5)


def test_bad_config_refuses_jailed_shells_only(pam_service: Callable[..., str],
                                               user_factory: Callable[..., User],
                                               syslog: SyslogCapture) -> None:
    """A bad jails.ini with no last-known-good: a user whose login shell is pam_jail's is
    refused (a valid config jailed them); root and other users are not locked out."""
    base = safe_tmpdir("cfg")
    path = f"{base}/jails.ini"
    with open(path, "w") as fh:
        fh.write("[jails]\n  [[web]]\n  root = relative\n")
    os.chmod(path, 0o644)
    svc = pam_service(path)
    with open(f"/etc/pam.d/{svc}", "a") as fh:   # PAM_IGNORE: the rest of the stack decides
        fh.write("account required pam_permit.so\nsession required pam_permit.so\n")
    jailed = user_factory(shell=LSH_SHELL, create_home=False)
    plain = user_factory(shell="/bin/bash", create_home=False)
    try:
        refused = pamtester(svc, jailed.name, "acct_mgmt")
        free = pamtester(svc, plain.name, "acct_mgmt", "open_session")
        root = pamtester(svc, "root", "acct_mgmt", "open_session")
    finally:
        shutil.rmtree(base)
    assert refused.returncode != 0 and "problem(s)" in refused.stderr
    assert syslog.wait_for("account refused", f"user={jailed.name}", "jails/web/root")
    assert free.returncode == 0, free.stderr
    assert syslog.wait_for("no valid config", f"user={plain.name}")
    assert root.returncode == 0, root.stderr


def test_bad_config_falls_back_to_last_known_good(jail: str, config: Callable[..., str],
                                                  pam_service: Callable[..., str],
                                                  user_factory: Callable[..., User],
                                                  syslog: SyslogCapture) -> None:
    """jails.ini broken after a good version was installed (pam-jail validate/edit write
    PATH.good): the jailed user is jailed by the last-known-good, and it is logged."""
    from pam_jail.login.config_file import good_path

    user = jailed_user(user_factory, jail)
    path = config(f"{user.name} = web")
    config(f"{user.name} = web", path=good_path(path))
    with open(path, "a") as fh:
        fh.write("[broken\n")
    result = pamtester(pam_service(path), user.name, "acct_mgmt")
    assert result.returncode == 0, result.stderr
    assert syslog.wait_for("last-known-good used", f"user={user.name}", "invalid syntax")
    assert syslog.wait_for("account allowed", f"user={user.name}", "jail=web")


def test_mapped_user_without_a_jailing_shell_refused(config: Callable[..., str],
                                                     pam_service: Callable[..., str],
                                                     user_factory: Callable[..., User],
                                                     syslog: SyslogCapture) -> None:
    """/bin/bash would run on the host whenever the PAM line is missing or skipped: such
    a mapping is refused, so no working set-up rests on the PAM line alone."""
    user = user_factory(shell="/bin/bash", create_home=False)
    result = pamtester(pam_service(config(f"{user.name} = web")), user.name, "acct_mgmt")
    assert result.returncode != 0
    assert "would run outside jail web" in result.stderr
    assert syslog.wait_for("account refused", f"user={user.name}", "would run outside")


def test_unmapped_user_passes_or_is_refused_by_option(config: Callable[..., str],
                                                      pam_service: Callable[..., str],
                                                      user_factory: Callable[..., User]) -> None:
    user = user_factory(shell="/bin/bash", create_home=False)
    # PAM_IGNORE: the rest of the stack decides; with only our line, libpam fails.
    svc = pam_service(config("", "unmapped = allow"))
    with open(f"/etc/pam.d/{svc}", "a") as fh:
        fh.write("account required pam_permit.so\nsession required pam_permit.so\n")
    assert pamtester(svc, user.name, "acct_mgmt", "open_session").returncode == 0
    svc = pam_service(config("", "unmapped = deny"))
    result = pamtester(svc, user.name, "acct_mgmt")
    assert result.returncode != 0 and "in no jail" in result.stderr


def test_uid0_target_refused(jail: str, config: Callable[..., str],
                             pam_service: Callable[..., str], syslog: SyslogCapture) -> None:
    from jail_fixtures import remove_user, unique

    name = unique("pjz")
    subprocess.run(["useradd", "-M", "-o", "-u", "0", "-g", "0", name], check=True)
    try:
        result = pamtester(pam_service(config(f"{name} = web")), name, "acct_mgmt",
                           "open_session")
    finally:
        remove_user(name, remove_home=False)
    assert result.returncode != 0 and "uid 0" in result.stderr
    assert syslog.wait_for("refused", f"user={name}", "uid 0")


PROBE = r"""
import ctypes, json, os, socket, sys
ctypes.CDLL = ctypes.PyDLL
import pamela
try:
    pamela.open_session(sys.argv[1], service=sys.argv[2])
except Exception as err:
    print(json.dumps({"error": str(err)})); sys.exit(0)
flags = os.statvfs("/").f_flag
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.write(w, str(os.getpid()).encode()); os._exit(0)
os.waitpid(child, 0)
print(json.dumps({
    "child_pid": int(os.read(r, 20)),
    "root": sorted(os.listdir("/")), "cwd": os.getcwd(),
    "nosuid": bool(flags & os.ST_NOSUID), "nodev": bool(flags & os.ST_NODEV),
    "ifaces": [n for _, n in socket.if_nameindex()], "hostname": socket.gethostname(),
    "nnp": [l for l in open("/proc/self/status").read().splitlines()
            if l.startswith("NoNewPrivs")] if os.path.exists("/proc/self/status") else None,
    "ptmx": os.path.exists("/dev/pts/ptmx"),
}))
"""


def probe(user: str, service: str) -> dict[str, object]:
    """PROBE in a child (pamela in-process, so open_session acts on that process)."""
    venv_python = os.path.join(os.path.dirname(sys.executable), "python")
    result = subprocess.run([venv_python, "-c", PROBE, user, service], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    return seen


def test_open_session_confines_the_process(jail: str, config: Callable[..., str],
                                           pam_service: Callable[..., str],
                                           user_factory: Callable[..., User],
                                           syslog: SyslogCapture) -> None:
    user = jailed_user(user_factory, jail)
    seen = probe(user.name, pam_service(config(f"{user.name} = web"), "service=login"))
    assert seen["root"] == sorted(os.listdir(jail))            # the jail is /
    assert seen["cwd"] == f"/home/{user.name}"                  # home inside the jail
    assert seen["nosuid"] and seen["nodev"]                     # setuid/devices powerless
    assert seen["ifaces"] == ["lo"]                             # own network namespace
    assert seen["hostname"] == "webjail"                        # own UTS namespace
    assert seen["ptmx"]                                         # private devpts for ptys
    assert seen["child_pid"] == 2            # own PID namespace, PID 1 is pam_jail's init
    assert seen["nnp"] == ["NoNewPrivs:\t1"] or seen["nnp"] is None
    assert syslog.wait_for("session allowed", f"user={user.name}", "jail=web")
    # the host is untouched: nothing leaked into the host's mount table
    with open("/proc/self/mountinfo") as fh:
        assert jail not in fh.read()


def test_open_session_isolates_a_shell_mode_session(jail: str, config: Callable[..., str],
                                                    pam_service: Callable[..., str],
                                                    user_factory: Callable[..., User]) -> None:
    """mode shell: pam-jail-shell confines; the PAM module gives everything sshd does
    beside it an empty network namespace and no_new_privs (the file system stays)."""
    user = user_factory(shell=SHELL_ENTRY, create_home=False)
    seen = probe(user.name, pam_service(config(f"{user.name} = sh"), "service=login"))
    assert seen["root"] == sorted(os.listdir("/"))            # not chrooted here
    assert seen["ifaces"] == ["lo"]                           # own, empty network namespace
    assert seen["nnp"] == ["NoNewPrivs:\t1"]
