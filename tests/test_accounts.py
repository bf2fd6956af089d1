"""The admin's sequence from README.md (issue 14 item 6), run with the installed commands
and checked through a real sshd: four accounts in five pam-jail commands and one edit
(the pam.d lines), as with jailkit.

    pam-jail jailuser -j J/drop   --jail-config drop   --mode sftp -p uidbasics   alice
    pam-jail jailuser -j J/backup --jail-config backup             -p rsync       bob
    pam-jail jailuser -j J/git    --jail-config git                -p git         carol
    pam-jail jailuser -j J/shell  --jail-config shell  --allow-shell -p basicshell dave
    pam-jail sshd-config -o /etc/ssh/sshd_config.d/pam_jail.conf
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import PAM_STACK, SBINDIR
from sshd_harness import Sshd, User, make_user, remove_user
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]
PAM_JAIL = f"{SBINDIR}/pam-jail"


def pam_jail(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PAM_JAIL, *args], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


@pytest.fixture
def accounts(system_config: Callable[[str], str]) -> Iterator[dict[str, User]]:
    system_config("[jails]\n[users]\n[groups]\n[options]\n")
    base = safe_tmpdir("accounts")
    names = {kind: f"pja{kind[:2]}{os.getpid() % 10000}" for kind in
             ("sftp", "backup", "git", "shell")}
    made: dict[str, User] = {}
    try:
        for kind, name in names.items():
            made[kind] = make_user(name, "/bin/sh")
        yield {**made, "_base": base}  # type: ignore[dict-item]
    finally:
        for user in made.values():
            subprocess.run([PAM_JAIL, "jailuser", "--undo", user.name], capture_output=True,
                           check=False)
            remove_user(user.name)
        shutil.rmtree(base, ignore_errors=True)


def test_four_accounts_in_five_commands(accounts: dict[str, User], tmp_path: str) -> None:
    base = str(accounts.pop("_base"))  # type: ignore[arg-type]
    j = {k: f"{base}/{k}" for k in ("drop", "backup", "git", "shell")}
    pam_jail("jailuser", "-j", j["drop"], "--jail-config", "drop", "--mode", "sftp",
             "-p", "uidbasics", accounts["sftp"].name)
    pam_jail("jailuser", "-j", j["backup"], "--jail-config", "backup", "-p", "rsync",
             accounts["backup"].name)
    pam_jail("jailuser", "-j", j["git"], "--jail-config", "git", "-p", "git",
             accounts["git"].name)
    pam_jail("jailuser", "-j", j["shell"], "--jail-config", "shell", "--allow-shell",
             "-p", "basicshell", accounts["shell"].name)
    snippet = f"{base}/pam_jail.conf"
    pam_jail("sshd-config", "-o", snippet)
    with open(snippet) as fh:
        sshd = Sshd(PAM_STACK, "AcceptEnv LANG\n" + fh.read()).start()
    try:
        src = os.path.join(str(tmp_path), "f.txt")
        with open(src, "w") as fh:
            fh.write("data\n")
        sftp = accounts["sftp"]
        put = sshd.sftp_batch(sftp, f"put {src} up.txt\n")
        assert put.returncode == 0, put.stderr
        assert os.path.isfile(f"{j['drop']}/home/{sftp.name}/up.txt")
        assert sshd.ssh(sftp, "id").returncode != 0                 # sftp only
        backup = accounts["backup"]
        up = sshd.rsync(backup, "-a", src, ":r.txt")
        assert up.returncode == 0, up.stderr
        assert sshd.ssh(backup, "/bin/sh -c id").returncode == 126  # commands refused
        dave = accounts["shell"]
        shell = sshd.ssh(dave, tty=True, input="echo shell-$((6*7)); exit\n")
        assert "shell-42" in shell.stdout, shell
        carol = accounts["git"]
        assert sshd.ssh(carol, "/bin/sh -c id").returncode == 126
        listing = sshd.ssh(dave, tty=True, input="ls /; exit\n").stdout.split()
        assert "home" in listing and "sys" not in listing           # the jail is /
        for jail in (j["backup"], j["git"], j["shell"]):             # allow-lists placed
            assert os.path.isfile(f"{jail}/etc/pam_jail/lsh.ini")
    finally:
        sshd.stop()
