"""`pam-jail apply FILE` (issue 21): a declared state of jails and users, converged with
real users, a real jail and a private jails.ini; what a configuration-management tool
relies on: --check changes nothing, the first run reports changed, the second ok, a
user declared absent is undone once, a bad file does nothing."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from util import safe_tmpdir

from pam_jail.admin import users
from pam_jail.login import config_file

pytestmark = pytest.mark.root
CLI = [sys.executable, "-m", "pam_jail.admin.cli"]


@pytest.fixture
def base() -> Iterator[str]:
    path = safe_tmpdir("apply")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pam_jail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600,
                          check=False)


def declared(base: str, present: list[str], absent: list[str]) -> str:
    path = f"{base}/state.ini"
    with open(path, "w") as fh:
        fh.write(f"[jails]\n  [[web]]\n  root = {base}/jails/web\n  mode = shell\n"
                 "  profiles = basicshell\n[users]\n"
                 + "".join(f"{u} = web\n" for u in present)
                 + (f"[absent]\nusers = {', '.join(absent)}\n" if absent else "")
                 + f"[options]\nconfig = {base}/jails.ini\n")
    return path


def run_json(*args: str) -> dict[str, object]:
    result = pam_jail("apply", "--json", *args)
    assert result.returncode == 0, (result.stdout, result.stderr)
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_apply_converges_and_reports_changed_once(base: str,
                                                   user_factory: Callable[..., object]) -> None:
    alice, bob = user_factory(), user_factory()
    names = [alice.name, bob.name]  # type: ignore[attr-defined]
    state = declared(base, names, [])
    try:
        plan = run_json("--check", state)
        assert plan["changed"] is True and plan["failed"] == 0
        assert not os.path.exists(f"{base}/jails/web"), "--check built the jail"
        assert pwd.getpwnam(names[0]).pw_shell == "/bin/sh"

        first = run_json(state)
        assert first["changed"] is True and first["failed"] == 0, first
        cfg = config_file.load_config(f"{base}/jails.ini")
        assert {cfg.users[n] for n in names} == {"web"}
        assert cfg.jails["web"].root == f"{base}/jails/web"
        for name in names:
            assert pwd.getpwnam(name).pw_shell == users.DEFAULT_SHELL

        second = run_json(state)
        assert second["changed"] is False, second
        assert all(not i["changed"] and not i["error"]  # type: ignore[index]
                   for i in second["items"])  # type: ignore[attr-defined]
        text = pam_jail("apply", "--check", state)
        assert text.returncode == 0 and "(no change)" in text.stderr, text.stderr
        assert f"user {names[0]}: ok" in text.stdout, text.stdout

        # bob leaves: undone once, then nothing to do
        state = declared(base, names[:1], names[1:])
        gone = run_json(state)
        assert gone["changed"] is True
        assert pwd.getpwnam(names[1]).pw_shell == "/bin/sh"
        assert config_file.load_config(f"{base}/jails.ini").users.get(names[1]) is None
        assert run_json(state)["changed"] is False
    finally:
        for name in names:
            users.undo_user(name)


def test_a_bad_file_or_a_conflicting_jail_is_refused(base: str,
                                                     user_factory: Callable[..., object]
                                                     ) -> None:
    alice = user_factory()
    name = alice.name  # type: ignore[attr-defined]
    bad = f"{base}/bad.ini"
    with open(bad, "w") as fh:
        fh.write(f"[jails]\n  [[web]]\n  root = relative\n  mode = jail\n[users]\n"
                 f"{name} = nosuch\n[colours]\n")
    result = pam_jail("apply", bad)
    assert result.returncode == 3, result.stderr
    for problem in ("jails/web/root", "jails/web/mode", "jail nosuch is not in [jails]",
                    "unknown section [colours]"):
        assert problem in result.stderr, (problem, result.stderr)
    assert pwd.getpwnam(name).pw_shell == "/bin/sh"
    # jails.ini already has a jail `web` elsewhere: that item fails, nothing is rewritten
    os.makedirs(f"{base}/other", mode=0o755)
    config_file.install_config(f"{base}/jails.ini",
                          f"[jails]\n  [[web]]\n  root = {base}/other\n  mode = shell\n")
    result = pam_jail("apply", declared(base, [name], []))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "jail web: failed: jails.ini defines jail web with root" in result.stdout
    assert f"user {name}: failed" in result.stdout
    assert pwd.getpwnam(name).pw_shell == "/bin/sh"
