"""`pam-jail apply` driven by Ansible (issue 21): the task docs/tools.md shows, run by
Debian's ansible-core against localhost: the first run reports changed, the second ok,
and a run in check mode changes nothing."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from util import safe_tmpdir

from pam_jail.admin import users

pytestmark = pytest.mark.root
PAM_JAIL = "/usr/local/sbin/pam-jail"

PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: jails and jailed users
      ansible.builtin.command: "{pam_jail} apply --json {state}"
      register: jails
      changed_when: (jails.stdout | from_json).changed
      when: not ansible_check_mode
    - name: what apply would change (check mode)
      ansible.builtin.command: "{pam_jail} apply --check --json {state}"
      register: plan
      check_mode: false
      changed_when: (plan.stdout | from_json).changed
      when: ansible_check_mode
"""


@pytest.fixture
def base() -> Iterator[str]:
    path = safe_tmpdir("ansible")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def play(base: str, *extra: str) -> str:
    env = {**os.environ, "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": f"{base}/tmp", "ANSIBLE_HOME": f"{base}/home",
           "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", *extra,
                           f"{base}/site.yml"], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout)
    assert recap is not None, done.stdout
    return recap.group(1)


def test_ansible_reports_changed_once_then_ok(base: str,
                                             user_factory: Callable[..., object]) -> None:
    assert shutil.which("ansible-playbook"), "scripts/setup installs ansible-core"
    user = user_factory()
    name = user.name  # type: ignore[attr-defined]
    state = f"{base}/state.ini"
    with open(state, "w") as fh:
        fh.write(f"[jails]\n  [[web]]\n  root = {base}/jails/web\n  mode = shell\n"
                 f"  profiles = basicshell\n[users]\n{name} = web\n"
                 f"[options]\nconfig = {base}/jails.ini\n")
    with open(f"{base}/site.yml", "w") as fh:
        fh.write(PLAYBOOK.format(pam_jail=PAM_JAIL, state=state))
    try:
        assert play(base, "--check") == "1"            # would change ...
        assert pwd.getpwnam(name).pw_shell == "/bin/sh"  # ... and changed nothing
        assert play(base) == "1"
        assert pwd.getpwnam(name).pw_shell == users.DEFAULT_SHELL
        assert play(base) == "0"
        assert play(base, "--check") == "0"
    finally:
        users.undo_user(name)
