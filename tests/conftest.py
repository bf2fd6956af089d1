"""Shared fixtures. Only the test harness is imported here (no pam_jail modules), so
collection never fails because a module another developer writes is not there yet."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# fixtures for system tests: syslog, users, system_config, pam_service
pytest_plugins = ["jail_fixtures"]

from sshd_harness import (  # noqa: E402
    PERMIT_PAM,
    Sshd,
    User,
    make_group,
    make_user,
    remove_group,
    remove_user,
    unique_name,
)


def _need_root_and_sshd() -> None:
    """CI runs as root with scripts/setup done: a missing piece is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.fail("run as root (real users, sshd, /etc/pam.d): scripts/test")
    for tool in ("ssh", "scp", "sftp", "ssh-keygen", "useradd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run scripts/setup")
    if not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.fail("openssh-server not installed: run scripts/setup")


SshdFactory = Callable[..., Sshd]
UserFactory = Callable[..., User]


@pytest.fixture
def sshd_factory() -> Iterator[SshdFactory]:
    """sshd_factory(pam_text=PERMIT_PAM, extra_config="", start=True) -> Sshd.

    Every sshd made is stopped (and its files removed) at teardown.
    """
    _need_root_and_sshd()
    made: list[Sshd] = []

    def factory(pam_text: str = PERMIT_PAM, extra_config: str = "", *,
                start: bool = True, log_level: str = "VERBOSE") -> Sshd:
        sshd = Sshd(pam_text, extra_config, log_level=log_level)
        made.append(sshd)
        return sshd.start() if start else sshd

    yield factory
    for sshd in made:
        sshd.stop()


@pytest.fixture
def user_factory() -> Iterator[UserFactory]:
    """user_factory(shell="/bin/sh", home=None, groups=(), *, name=None,
    create_home=True) -> User. Every user made is removed at teardown (even on failure)."""
    _need_root_and_sshd()
    made: list[User] = []
    names: list[str] = []

    def factory(shell: str = "/bin/sh", home: str | None = None, groups: Sequence[str] = (),
                *, name: str | None = None, create_home: bool = True) -> User:
        name = name or unique_name()
        names.append(name)
        user = make_user(name, shell, home, groups, create_home=create_home)
        made.append(user)
        return user

    yield factory
    for user in made:
        remove_user(user.name, remove_home=user.created_home)
    for name in names:  # a make_user that failed half-way
        remove_user(name, remove_home=False)


@pytest.fixture
def group_factory() -> Iterator[Callable[..., str]]:
    """group_factory(name=None) -> group name; groupdel at teardown."""
    _need_root_and_sshd()
    made: list[str] = []

    def factory(name: str | None = None) -> str:
        name = name or unique_name("pjg")
        made.append(name)
        make_group(name)
        return name

    yield factory
    for name in made:
        remove_group(name)
