"""The per-customer view's pure rules (pam_jail/login/view.py): which directory is covered,
what the session's etc/passwd and etc/group say. The mounts themselves are tried for
real in tests/test_tenants.py."""

from __future__ import annotations

import pytest

from pam_jail.login.config_file import parse_config
from pam_jail.login.errors import ConfigError
from pam_jail.login.view import group_view, homes_dir, passwd_view

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
tty:x:5:5::/:/usr/sbin/nologin
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:1002::/home/bob:/bin/bash
alicebob:x:1003:100::/home/alicebob:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken line without fields
"""

GROUP = """\
root:x:0:
tty:x:5:
users:x:100:alice,bob,alicebob
alice:x:1001:
bob:x:1002:
web:x:2000:bob,alice
devs:x:2001:bob
nogroup:x:65534:
"""


def names(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines()]


def test_passwd_keeps_root_system_accounts_nobody_and_the_user() -> None:
    assert names(passwd_view(PASSWD, "alice")) == ["root", "daemon", "tty", "alice",
                                                    "nobody"]
    assert names(passwd_view(PASSWD, "bob")) == ["root", "daemon", "tty", "bob", "nobody"]
    # a name that is a prefix of another's is not a match
    assert "alicebob" not in names(passwd_view(PASSWD, "alice"))


def test_group_keeps_system_groups_the_users_own_and_its_member_lists_only_the_user() -> None:
    view = group_view(GROUP, "alice", 1001)
    assert names(view) == ["root", "tty", "users", "alice", "web", "nogroup"]
    lines = dict((line.split(":")[0], line) for line in view.splitlines())
    assert lines["users"] == "users:x:100:alice"      # bob and alicebob are not named
    assert lines["web"] == "web:x:2000:alice"
    assert "bob" not in view
    # a group whose gid is the user's primary gid, though it lists no one
    assert names(group_view(GROUP, "alicebob", 100)) == ["root", "tty", "users", "nogroup"]


@pytest.mark.parametrize(("home", "covered"), [
    ("/home/alice", "/home"),
    ("/home/alice/", "/home"),
    ("/srv/www/alice", "/srv/www"),
    ("/./home/alice", "/home"),
    ("/alice", None),
    ("/", None),
    ("/home/../etc/x", None),
])
def test_the_homes_directory_is_the_parent_of_the_home(home: str, covered: str | None) -> None:
    assert homes_dir(home) == covered


def test_private_and_tmp_size_are_jail_options() -> None:
    config = parse_config("[jails]\n  [[j]]\n  root = /srv/j\n")
    assert config.jails["j"].options["private"] == "yes"
    assert config.jails["j"].options["tmp_size"] == "256M"
    config = parse_config("[jails]\n  [[j]]\n  root = /srv/j\n  private = no\n"
                          "  tmp_size = 1G\n")
    assert config.jails["j"].options["private"] == "no"
    with pytest.raises(ConfigError) as err:
        parse_config("[jails]\n  [[j]]\n  root = /srv/j\n  tmp_size = lots\n")
    assert any("tmp_size" in problem for problem in err.value.problems), err.value.problems
