"""The set-up shared by the demo (scripts/demo.py), the benches and the tests: real users
(useradd), real jails (the builder), the system-wide /etc/pam_jail/jails.ini (backed up and
restored), a loopback sshd and a syslog receiver.

It imports no test tool (no pytest, no hypothesis): the demo runs it under Debian's bare
/usr/bin/python3 (scripts/check-imports proves that before every test run). The pytest
fixtures in jail_fixtures.py wrap it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from sshd_harness import Sshd, User, make_user, remove_user
from syslog_capture import DEVLOG, SyslogCapture
from util import safe_tmpdir

SYSTEM_CONFIG = "/etc/pam_jail/jails.ini"
# Where the installed pam_jail is: scripts/install's /usr/local layout unless the caller
# names another one (tests/test_package.py runs the demo against the .deb's /usr/lib/pam_jail
# and /usr/sbin). Test and demo code only: the product never takes paths from the environment.
LIBDIR = os.environ.get("PAM_JAIL_LIBDIR", "/usr/local/lib/pam_jail")
SBINDIR = os.environ.get("PAM_JAIL_SBINDIR", "/usr/local/sbin")
SHELL_ENTRY = f"{SBINDIR}/pam-jail-shell"
PAM_MODULE = f"{LIBDIR}/pam_jail_pam.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


# The PAM stack of the e2e sshd and the demo: Debian's common files plus our module.
PAM_STACK = (f"@include common-auth\n@include common-account\n"
             f"account required pam_python.so {PAM_MODULE}\n"
             f"session required pam_python.so {PAM_MODULE}\n"
             "@include common-session-noninteractive\n")


@dataclass
class JailedPair:
    """One user on the PAM path (jail pamj), one on the login-shell path (jail shellj)."""

    pam_user: User
    shell_user: User
    pam_jail: str
    shell_jail: str


def make_jailed_pair(lsh: str, undo: list[Callable[[], object]]) -> JailedPair:
    """Real users, real jails, /etc/pam_jail/jails.ini mapping them; every step pushes
    its undo on `undo` (the caller runs them in reverse, also after a failure)."""
    saved = None
    if os.path.exists(SYSTEM_CONFIG):
        with open(SYSTEM_CONFIG) as fh:
            saved = fh.read()
    undo.append(lambda: restore_config(saved))
    pam_name, shell_name = unique("pjp"), unique("pjs")
    pam_user = make_user(pam_name, "/bin/bash", f"/home/{pam_name}", create_home=False)
    undo.append(lambda: remove_user(pam_name, remove_home=False))
    shell_user = make_user(shell_name, SHELL_ENTRY, f"/home/{shell_name}", create_home=False)
    undo.append(lambda: remove_user(shell_name, remove_home=False))
    pam_jail = build_jail(["basicshell", "ptys", "sftp", "scp", "rsync"], [pam_name])
    undo.append(lambda: remove_jail(pam_jail))
    shell_jail = build_jail(["basicshell", "sftp", "scp", "rsync"], [shell_name], lsh=lsh)
    undo.append(lambda: remove_jail(shell_jail))
    os.makedirs(f"{shell_jail}/proc", mode=0o755, exist_ok=True)
    # jailkit's convention: the real home names the jail (sshd can chdir there)
    subprocess.run(["usermod", "-d", f"{shell_jail}/./home/{shell_name}", shell_name],
                   check=True)
    write_config(f"[jails]\n  [[pamj]]\n  root = {pam_jail}\n  mode = pam\n  pid = yes\n"
                  f"  [[shellj]]\n  root = {shell_jail}\n  mode = shell\n  proc = yes\n"
                  f"[users]\n{pam_name} = pamj\n{shell_name} = shellj\n")
    return JailedPair(pam_user, shell_user, pam_jail, shell_jail)


def write_config(text: str) -> None:
    os.makedirs("/etc/pam_jail", mode=0o755, exist_ok=True)
    tmp = SYSTEM_CONFIG + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, SYSTEM_CONFIG)


def restore_config(saved: str | None) -> None:
    if saved is not None:
        write_config(saved)
    elif os.path.exists(SYSTEM_CONFIG):
        os.unlink(SYSTEM_CONFIG)


def build_jail(profiles: list[str], users: list[str], lsh: str | None = None,
               shell: str | None = None) -> str:
    from pam_jail.build import init_jail

    base = safe_tmpdir("jail")
    root = f"{base}/jail"
    init_jail(root, profiles, users=users, profiles_file=f"{REPO}/etc/pam_jail/profiles.ini",
              shell=shell)
    if lsh is not None:
        os.makedirs(f"{root}/etc/pam_jail", mode=0o755, exist_ok=True)
        with open(f"{root}/etc/pam_jail/lsh.ini", "w") as fh:
            fh.write(lsh)
        os.chmod(f"{root}/etc/pam_jail/lsh.ini", 0o644)
    return root


def remove_jail(root: str) -> None:
    subprocess.run(["umount", "-R", "-l", f"{root}/dev/pts"], stderr=subprocess.DEVNULL,
                   check=False)
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)



__all__ = ["DEVLOG", "LIBDIR", "PAM_MODULE", "PAM_STACK", "REPO", "SBINDIR", "SHELL_ENTRY",
           "SYSTEM_CONFIG", "JailedPair", "Sshd", "SyslogCapture", "User", "build_jail",
           "make_jailed_pair", "make_user", "remove_jail", "remove_user", "restore_config",
           "unique", "write_config"]
