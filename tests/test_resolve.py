"""resolve.py: user -> jail, pure."""

from __future__ import annotations

import os

import pytest
from sshd_harness import make_group, make_user, remove_group, remove_user, unique_name

from pam_jail.login.config_file import parse_config
from pam_jail.login.errors import Denied
from pam_jail.login.resolve import Identity, identity_from_passwd, resolve, split_marker

CFG = parse_config("""
[jails]
  [[web]]
  root = /srv/jails/web
  [[sftp]]
  root = /srv/jails/sftp
  mode = sftp
  [[sh]]
  root = /srv/jails/sh
  mode = shell
[users]
alice = web
[groups]
sftponly = sftp
devs = sh
""".splitlines())


def ident(name: str = "bob", uid: int = 1000, home: str = "/home/bob", shell: str = "/bin/sh",
          group: str = "bob", groups: tuple[str, ...] = ()) -> Identity:
    return Identity(name=name, uid=uid, gid=uid, home=home, shell=shell, group=group,
                    groups=groups)


def test_user_mapping_wins_over_group() -> None:
    jail = resolve(ident("alice", home="/home/alice", groups=("sftponly",)), CFG)
    assert jail is not None
    assert (jail.name, jail.root, jail.home, jail.source) == ("web", "/srv/jails/web",
                                                              "/home/alice", "user")


def test_group_mapping_primary_first() -> None:
    jail = resolve(ident(group="devs", groups=("sftponly",)), CFG)
    assert jail is not None and (jail.name, jail.source) == ("sh", "group:devs")
    jail = resolve(ident(groups=("sftponly", "devs")), CFG)
    assert jail is not None and jail.name == "sh"  # supplementary in name order: devs < sftponly


def test_unmapped_user_is_in_no_jail() -> None:
    assert resolve(ident(), CFG) is None


def test_unmapped_user_with_jail_shell_is_refused() -> None:
    with pytest.raises(Denied, match="no jail"):
        resolve(ident(shell="/usr/local/sbin/pam-jail-shell"), CFG)


def test_root_never_jailed() -> None:
    with pytest.raises(Denied, match="uid 0"):
        resolve(ident("toor", uid=0, group="sftponly"), CFG)


def test_default_jail_skips_root() -> None:
    cfg = parse_config(["[jails]", "[[d]]", "root = /j/d", "[options]", "default = d"])
    jail = resolve(ident(), cfg)
    assert jail is not None and (jail.name, jail.source) == ("d", "default")
    assert resolve(ident("root", uid=0), cfg) is None


@pytest.mark.parametrize("home,expected", [
    ("/jail/./home/u", ("/jail", "/home/u")),
    ("/a/./b/./home/u", ("/a/./b", "/home/u")),   # the LAST marker splits
    ("/jail/./", ("/jail", "/")),
    ("/home/u", None),
    ("/./home/u", None),
])
def test_split_marker(home: str, expected: tuple[str, str] | None) -> None:
    if expected and "/./" in expected[0]:
        expected = ("/a/b", expected[1])  # normalised
    assert split_marker(home) == expected


def test_marker_alone_makes_a_jail() -> None:
    jail = resolve(ident(home="/srv/j/./home/bob", shell="/usr/sbin/pam-jail-shell"), CFG)
    assert jail is not None
    assert (jail.root, jail.home, jail.mode, jail.source) == ("/srv/j", "/home/bob", "shell",
                                                              "marker")


def test_marker_must_agree_with_mapping() -> None:
    with pytest.raises(Denied, match="differs"):
        resolve(ident("alice", home="/srv/other/./home/alice"), CFG)
    jail = resolve(ident("alice", home="/srv/jails/web/./home/alice"), CFG)
    assert jail is not None and jail.home == "/home/alice"


def test_jailkit_marker_users_are_left_to_jailkit() -> None:
    home = "/srv/jk/./home/bob"
    assert resolve(ident(home=home, shell="/usr/sbin/jk_chrootsh"), CFG) is None
    mapped = resolve(ident("alice", home="/srv/jails/web/./home/alice",
                           shell="/usr/sbin/jk_chrootsh"), CFG)
    assert mapped is not None and mapped.name == "web"   # an explicit mapping still wins


def test_an_interactive_refusal_names_the_real_reason() -> None:
    """Issue 20: a user no jails.ini entry maps, jailed by the /./ marker alone, was told
    `jails.ini: allow_shell = no`; the refusal now says the mapping is missing."""
    from pam_jail.login.resolve import Jail
    from pam_jail.login.shell_entry import _no_shell_why

    marker = Jail("marker:/srv/j", "/srv/j", "/home/ann", "shell", False, "marker")
    assert "maps ann to no jail" in _no_shell_why(marker, "ann")
    mapped = Jail("web", "/srv/web", "/home/ann", "shell", False, "user")
    assert _no_shell_why(mapped, "ann") == "jails.ini: allow_shell = no for jail web"


def test_the_groups_are_the_ones_the_login_service_gave_the_session() -> None:
    """pam-jail-shell passes its own getgroups(): used when it is what initgroups() sets
    (the primary group among them, not group root), else NSS's getgrouplist answers
    (a cleared list, root's inherited one)."""
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    extra, name = unique_name("pjg"), unique_name("pjr")
    extra_gid = make_group(extra)
    try:
        user = make_user(name, groups=(extra,), create_home=False)
        try:
            assert identity_from_passwd(name).groups == (extra,)             # NSS
            for session, want in (([user.gid, extra_gid], (extra,)),        # initgroups
                                  ([user.gid], ()),                         # the service's
                                  ([], (extra,)),                           # cleared: NSS
                                  ([0, user.gid], (extra,)),                # root's: NSS
                                  ([extra_gid], (extra,))):                 # no primary
                got = identity_from_passwd(user.uid, session)
                assert (got.groups, got.group) == (want, name), session
        finally:
            remove_user(name, remove_home=False)
    finally:
        remove_group(extra)
