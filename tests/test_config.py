"""config.py: parsing, validation (all errors at once), file ownership rules."""

from __future__ import annotations

import os

import pytest
from util import safe_tmpdir

from pam_jail.config import check_config_file, load_config, parse_config
from pam_jail.errors import ConfigError

GOOD = """
[jails]
  [[web]]
  root = /srv/jails/web
  mode = pam
  allow_shell = yes
  [[files]]
  root = /srv/jails/files/
  mode = sftp
[users]
alice = web
[groups]
sftponly = files
[options]
default = web
unmapped = deny
"""


def test_parse_good() -> None:
    cfg = parse_config(GOOD.splitlines())
    assert set(cfg.jails) == {"web", "files"}
    web = cfg.jails["web"]
    assert (web.root, web.mode, web.allow_shell) == ("/srv/jails/web", "pam", True)
    assert web.flag("devpts", False) is True  # spec default
    assert cfg.jails["files"].root == "/srv/jails/files"
    assert cfg.users == {"alice": "web"}
    assert cfg.groups == {"sftponly": "files"}
    assert (cfg.default, cfg.unmapped) == ("web", "deny")


def test_defaults_when_sections_missing() -> None:
    cfg = parse_config(["[jails]", "[[a]]", "root = /j/a"])
    assert cfg.jails["a"].mode == "pam" and cfg.jails["a"].allow_shell is False
    assert cfg.users == {} and cfg.default is None and cfg.unmapped == "allow"


def test_every_error_reported_at_once() -> None:
    text = """
[jails]
  [[a]]
  root = relative/path
  [[b]]
  root = /srv/b
  mode = chroot
  colour = blue
  [[c]]
  mode = pam
[users]
bob = nosuch
root = b
[options]
default = missing
unmapped = maybe
[extra]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text.splitlines())
    problems = "\n".join(info.value.problems)
    for needle in ("jails/a/root", "jails/b/mode", "jails/b/colour: unknown key",
                   "jails/c/root", "users/bob: unknown jail 'nosuch'", "users/root",
                   "options/default", "options/unmapped", "unknown section [extra]"):
        assert needle in problems, needle
    assert len(info.value.problems) >= 9


@pytest.mark.parametrize("root", ["/", "/srv/../etc", "/srv/./x", "srv/x"])
def test_bad_roots(root: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(["[jails]", "[[a]]", f"root = {root}"])


@pytest.mark.parametrize("name", ["al*ce", "a,b", "-x", "a b"])
def test_bad_user_names_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(["[jails]", "[[a]]", "root = /j/a", "[users]", f"'{name}' = a"])


def test_syntax_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(["[jails", "x = 1"])
    assert "invalid syntax" in str(info.value)


@pytest.fixture
def cfgdir() -> str:
    import shutil

    path = safe_tmpdir("cfg")
    yield path
    shutil.rmtree(path)


def test_load_refuses_unsafe_file(cfgdir: str) -> None:
    path = f"{cfgdir}/jails.ini"
    with open(path, "w") as fh:
        fh.write(GOOD)
    os.chmod(path, 0o644)
    assert load_config(path).users == {"alice": "web"}
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("writable by group or other" in p for p in info.value.problems)
    os.chmod(path, 0o644)
    os.chown(path, 65534, 0)
    assert any("not root" in p for p in check_config_file(path))
    os.chown(path, 0, 0)
    os.chmod(cfgdir, 0o777)
    assert any(cfgdir in p for p in check_config_file(path))
    os.chmod(cfgdir, 0o755)
    assert check_config_file(path) == []
    assert load_config(path, check_owner=False).default == "web"


def test_load_missing_file(cfgdir: str) -> None:
    with pytest.raises(ConfigError):
        load_config(f"{cfgdir}/nope.ini")
