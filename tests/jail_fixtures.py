"""pytest fixtures for system tests, over testbed.py (the pytest-free set-up that the demo
shares): syslog, system_config, pam_service."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from testbed import (  # noqa: F401 - re-exported for the tests
    LIBDIR,
    LSH_SHELL,
    PAM_MODULE,
    PAM_STACK,
    REPO,
    SBINDIR,
    SHELL_ENTRY,
    SYSTEM_CONFIG,
    JailedPair,
    Sshd,
    SyslogCapture,
    User,
    build_jail,
    make_jailed_pair,
    make_user,
    pam_lines,
    remove_jail,
    remove_user,
    restore_config,
    save_config,
    undoing,
    unique,
    write_config,
)


@pytest.fixture
def syslog() -> Iterator[SyslogCapture]:
    cap = SyslogCapture().start()
    yield cap
    cap.stop()


@pytest.fixture
def system_config() -> Iterator[Callable[[str], str]]:
    """Write /etc/pam_jail/jails.ini (the shell entry reads only that file)."""
    saved = save_config()

    def write(text: str) -> str:
        write_config(text)
        return SYSTEM_CONFIG

    yield write
    restore_config(saved)


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
