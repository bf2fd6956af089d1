"""Fixtures for system tests: real users (useradd), real jails (the builder), the
system-wide /etc/pam_jail/jails.ini (backed up and restored), a syslog receiver."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from syslog_capture import SyslogCapture
from util import safe_tmpdir

SYSTEM_CONFIG = "/etc/pam_jail/jails.ini"
SHELL_ENTRY = "/usr/local/sbin/pam-jail-shell"
PAM_MODULE = "/usr/local/lib/pam_jail/pam_jail_pam.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def useradd(name: str, shell: str, home: str, groups: tuple[str, ...] = ()) -> User:
    cmd = ["useradd", "-M", "-d", home, "-s", shell, "-U"]
    if groups:
        cmd += ["-G", ",".join(groups)]
    subprocess.run([*cmd, name], check=True)
    import pwd

    pw = pwd.getpwnam(name)
    return User(name, pw.pw_uid, pw.pw_gid, home, shell)


def userdel(name: str) -> None:
    subprocess.run(["userdel", "-f", name], stderr=subprocess.DEVNULL, check=False)


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


@pytest.fixture
def syslog() -> Iterator[SyslogCapture]:
    cap = SyslogCapture().start()
    yield cap
    cap.stop()


@pytest.fixture
def users() -> Iterator[Callable[..., User]]:
    made: list[str] = []

    def make(prefix: str = "pjs", shell: str = "/bin/bash", home: str | None = None,
             groups: tuple[str, ...] = ()) -> User:
        name = unique(prefix)
        made.append(name)
        return useradd(name, shell, home or f"/home/{name}", groups)

    yield make
    for name in made:
        userdel(name)


@pytest.fixture
def system_config() -> Iterator[Callable[[str], str]]:
    """Write /etc/pam_jail/jails.ini (the shell entry reads only that file)."""
    saved = None
    if os.path.exists(SYSTEM_CONFIG):
        with open(SYSTEM_CONFIG) as fh:
            saved = fh.read()

    def write(text: str) -> str:
        os.makedirs("/etc/pam_jail", mode=0o755, exist_ok=True)
        tmp = SYSTEM_CONFIG + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, SYSTEM_CONFIG)
        return SYSTEM_CONFIG

    yield write
    if saved is None:
        os.unlink(SYSTEM_CONFIG)
    else:
        write(saved)


@pytest.fixture
def pam_service() -> Iterator[Callable[[str, str], str]]:
    """Write /etc/pam.d/<unique> with our module on account+session lines."""
    made: list[str] = []

    def make(config_path: str, extra_args: str = "") -> str:
        name = unique("pamjailtest")
        made.append(name)
        line = f"pam_python.so {PAM_MODULE} config={config_path} {extra_args}".strip()
        with open(f"/etc/pam.d/{name}", "w") as fh:
            fh.write(f"auth required pam_permit.so\naccount required {line}\n"
                     f"session required {line}\n")
        return name

    yield make
    for name in made:
        os.unlink(f"/etc/pam.d/{name}")
