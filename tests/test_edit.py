"""`pam-jail validate` and `pam-jail edit`: jails.ini changed like visudo changes sudoers;
the last-known-good copy the login path falls back to is written only from valid text."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
from util import safe_tmpdir

from pam_jail.login.config_file import good_path, load_config_lkg
from pam_jail.login.errors import ConfigError

pytestmark = pytest.mark.root

GOOD = "[jails]\n  [[web]]\n  root = /srv/jails/web\n[users]\nalice = web\n"
BAD = "[jails]\n  [[web]]\n  root = srv/relative\n"
CLI = [sys.executable, "-m", "pam_jail.admin.cli"]


@pytest.fixture
def live() -> Iterator[str]:
    base = safe_tmpdir("edit")
    path = f"{base}/jails.ini"
    with open(path, "w") as fh:
        fh.write(GOOD)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(base, ignore_errors=True)


def pam_jail(*args: str, env: dict[str, str] | None = None,
             stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, input=stdin,
                          env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_validate_records_last_known_good(live: str) -> None:
    result = pam_jail("validate", "--config", live)
    assert result.returncode == 0, result.stderr
    assert "recorded as last-known-good" in result.stdout
    with open(good_path(live)) as fh:
        assert fh.read() == GOOD
    st = os.stat(good_path(live))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    # a broken live file: validate says so (exit 3), the good copy stays, the login path
    # decides with it
    with open(live, "w") as fh:
        fh.write(BAD)
    bad = pam_jail("validate", "--config", live, "--json")
    assert bad.returncode == 3
    report = json.loads(bad.stdout)
    assert not report["valid"] and any("jails/web/root" in p for p in report["problems"])
    with open(good_path(live)) as fh:
        assert fh.read() == GOOD
    cfg, why = load_config_lkg(live)
    assert cfg.users == {"alice": "web"} and isinstance(why, ConfigError)


def test_validate_install_and_dry_run(live: str) -> None:
    new = os.path.join(os.path.dirname(live), "new.ini")
    with open(new, "w") as fh:
        fh.write(GOOD.replace("alice", "bob"))
    dry = pam_jail("validate", new, "--config", live, "--install", "--dry-run")
    assert dry.returncode == 0 and not os.path.exists(good_path(live))
    with open(live) as fh:
        assert "alice" in fh.read()
    done = pam_jail("validate", new, "--config", live, "--install")
    assert done.returncode == 0, done.stderr
    for path in (live, good_path(live)):
        with open(path) as fh:
            assert "bob = web" in fh.read()
    with open(new, "w") as fh:
        fh.write(BAD)
    refused = pam_jail("validate", new, "--config", live, "--install")
    assert refused.returncode == 3
    with open(live) as fh:
        assert "bob = web" in fh.read()


def test_validate_warns_about_shells_that_would_not_jail(live: str) -> None:
    with open(live, "w") as fh:
        fh.write(GOOD.replace("alice", "root2x").replace("[users]\n", "[users]\nnobody = web\n"))
    result = pam_jail("validate", "--config", live, "--dry-run")
    assert result.returncode == 0
    assert "users/root2x: no such user on this host" in result.stderr
    assert "users: nobody is NOT jailed: login shell /usr/sbin/nologin does not refuse " \
        "outside jail web" in result.stderr


def test_validate_warns_about_a_jail_root_that_does_not_exist(live: str) -> None:
    with open(live, "w") as fh:
        fh.write(GOOD.replace("[users]\n", "  [[gone]]\n  root = /srv/pam-jail-no-such-root"
                              "\n[users]\n"))
    result = pam_jail("validate", "--config", live, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr          # valid: it may be built later
    warnings = json.loads(result.stdout)["warnings"]
    assert any(w.startswith("jails/gone: root /srv/pam-jail-no-such-root does not exist")
               for w in warnings), warnings


def test_validate_names_group_members_a_shell_leaves_unjailed(live: str) -> None:
    """A member of a mapped group (nobody: primary group nogroup) whose shell is not
    pam_jail's is not jailed by the guarded pam.d lines: validate says so, by name."""
    with open(live, "w") as fh:
        fh.write(GOOD.replace("alice = web\n", "[groups]\nnogroup = web\n"))
    result = pam_jail("validate", "--config", live, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert [w for w in warnings if w.startswith("groups/nogroup: nobody is NOT jailed: "
                                                "login shell /usr/sbin/nologin")], warnings
    assert not [w for w in warnings if "root" in w.split(":")[1]
                and not w.startswith("jails/")], warnings


def _editor(tmp: str, text: str) -> str:
    """An $EDITOR that replaces the file with `text` (what a person would type)."""
    script = f"{tmp}/editor.sh"
    payload = f"{tmp}/payload"
    with open(payload, "w") as fh:
        fh.write(text)
    with open(script, "w") as fh:
        fh.write(f"#!/bin/sh\ncat {payload} > \"$1\"\n")
    os.chmod(script, 0o755)
    return script


def test_edit_installs_only_valid_text(live: str) -> None:
    tmp = safe_tmpdir("editor")
    try:
        bad = pam_jail("edit", "--config", live, env={"EDITOR": _editor(tmp, BAD)})
        assert bad.returncode == 3 and "not installed" in bad.stderr
        with open(live) as fh:
            assert fh.read() == GOOD
        assert not os.path.exists(good_path(live))
        good = pam_jail("edit", "--config", live,
                        env={"EDITOR": _editor(tmp, GOOD.replace("alice", "carol"))})
        assert good.returncode == 0, good.stderr
        for path in (live, good_path(live)):
            with open(path) as fh:
                assert "carol = web" in fh.read()
        same = pam_jail("edit", "--config", live, env={"EDITOR": "true"})
        assert same.returncode == 0 and "no changes" in same.stdout
        # no editor's temporary file is left behind
        assert sorted(os.listdir(os.path.dirname(live))) == ["jails.ini", "jails.ini.good",
                                                             "jails.ini.index"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
