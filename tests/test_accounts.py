"""The admin's sequence from README.md (issues 14 item 6, 20 item 3), run from README's own
text: the blocks marked `<!-- test_accounts: ... -->` are read from README.md and run
with sh as they stand, with only what must differ on a test machine replaced (the user
names, /srv/jails, the sshd snippet's path, the sshd pid file: the test's own sshd, which
Includes the snippet, is the one README's `kill -HUP` reloads). The four users then log in
through that sshd: sftp upload, rsync backup, a real `git push` to the shared repository,
an interactive shell that uploads with sftp and has a terminal."""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from jail_fixtures import PAM_STACK, REPO, SBINDIR
from sshd_harness import Sshd, User, make_user, remove_user
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]
PAM_JAIL = f"{SBINDIR}/pam-jail"
README_NAMES = ("alice", "bob", "carol", "dave")


def readme_blocks() -> dict[str, str]:
    """README.md's marked shell blocks, by marker name."""
    with open(f"{REPO}/README.md", encoding="utf-8") as fh:
        text = fh.read()
    blocks = dict(re.findall(r"<!-- test_accounts: ([\w ]+) -->\n```sh\n(.*?)```", text, re.S))
    assert set(blocks) == {"accounts", "git repository"}, blocks
    return blocks


def localize(block: str, names: dict[str, str], base: str, snippet: str, pid_file: str) -> str:
    """Only what must differ on a test machine; everything else is README's text."""
    for readme_name, name in names.items():
        block = re.sub(rf"\b{readme_name}\b", name, block)
    replaced = (block.replace("/srv/jails/", f"{base}/srv/jails/")
                .replace("/etc/ssh/sshd_config.d/pam_jail.conf", snippet)
                .replace("/run/sshd.pid", pid_file))
    assert "/etc/ssh" not in replaced and "/run/" not in replaced, replaced
    assert not re.search(rf"(?<!{re.escape(base)})/srv/jails/", replaced), replaced
    return replaced


def run_block(block: str) -> None:
    env = {**os.environ, "PATH": f"{SBINDIR}:/usr/sbin:/usr/bin:/sbin:/bin"}
    result = subprocess.run(["sh", "-ec", block], capture_output=True, text=True, timeout=600,
                            env=env, check=False)
    assert result.returncode == 0, (block, result.stdout, result.stderr)


@pytest.fixture
def accounts(system_config: Callable[[str], str]) -> Iterator[tuple[dict[str, User], str]]:
    system_config("[jails]\n[users]\n[groups]\n[options]\n")
    base = safe_tmpdir("accounts")
    had_git_group = _group_exists("git")
    made: dict[str, User] = {}
    try:
        for readme_name in README_NAMES:
            made[readme_name] = make_user(f"pja{readme_name[:2]}{os.getpid() % 10000}",
                                          "/bin/sh")
        yield made, base
    finally:
        for user in made.values():
            subprocess.run([PAM_JAIL, "jailuser", "--undo", user.name], capture_output=True,
                           check=False)
            remove_user(user.name)
        if not had_git_group and _group_exists("git") and not grp.getgrnam("git").gr_mem:
            subprocess.run(["groupdel", "git"], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _ssh_command(sshd: Sshd, user: User) -> str:
    return " ".join(["ssh", *sshd.client_options(user), "-p", str(sshd.port)])


def test_readme_accounts_verbatim(accounts: tuple[dict[str, User], str], tmp_path: str) -> None:
    users, base = accounts
    names = {k: u.name for k, u in users.items()}
    jails = f"{base}/srv/jails"                 # does not exist: jailuser makes it
    snippet = f"{base}/pam_jail.conf"
    with open(snippet, "w") as fh:
        fh.write("")
    sshd = Sshd(PAM_STACK, f"AcceptEnv LANG\nInclude {snippet}\n").start()
    try:
        blocks = readme_blocks()
        run_block(localize(blocks["accounts"], names, base, snippet, sshd.pid_file))
        assert os.stat(jails).st_uid == 0 and os.stat(jails).st_mode & 0o777 == 0o755
        run_block(localize(blocks["git repository"], names, base, snippet, sshd.pid_file))
        with open(snippet) as fh:
            assert "ChrootDirectory" in fh.read()   # the sftp account's Match block
        _wait_reloaded(sshd, users["alice"])
        _check_logins(sshd, users, jails, str(tmp_path))
    finally:
        sshd.stop()


def _wait_reloaded(sshd: Sshd, user: User) -> None:
    """README's `kill -HUP` re-executes sshd (same pid): wait until it listens again."""
    for _ in range(50):
        if sshd.ssh(user, "true").returncode != 255:
            return
        time.sleep(0.2)


def _check_logins(sshd: Sshd, users: dict[str, User], jails: str, tmp: str) -> None:
    src = os.path.join(tmp, "f.txt")
    with open(src, "w") as fh:
        fh.write("data\n")
    alice, bob, carol, dave = (users[n] for n in README_NAMES)
    put = sshd.sftp_batch(alice, f"put {src} up.txt\n")
    assert put.returncode == 0, put.stderr
    assert os.path.isfile(f"{jails}/drop/home/{alice.name}/up.txt")
    assert sshd.ssh(alice, "id").returncode != 0                  # sftp only
    up = sshd.rsync(bob, "-a", src, ":r.txt")
    assert up.returncode == 0, up.stderr
    assert os.path.isfile(f"{jails}/backup/home/{bob.name}/r.txt")
    assert sshd.ssh(bob, "/bin/sh -c id").returncode == 126       # commands refused
    # carol pushes to the shared repository README's block made
    work = os.path.join(tmp, "work")
    env = {**os.environ, "GIT_SSH_COMMAND": _ssh_command(sshd, carol),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": "/dev/null"}
    git = ["git", "-C", work]
    subprocess.run(["git", "init", "-q", "-b", "main", work], check=True, env=env)
    with open(f"{work}/index.html", "w") as fh:
        fh.write("<p>site</p>\n")
    subprocess.run([*git, "add", "index.html"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "site"], check=True, env=env)
    push = subprocess.run([*git, "push", "-q", "ssh://127.0.0.1/srv/git/site.git", "main"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert push.returncode == 0, push.stderr
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    pushed = subprocess.run(["git", "--git-dir", f"{jails}/git/srv/git/site.git", "rev-parse",
                             "refs/heads/main"], capture_output=True, text=True,
                            env={**env, "GIT_CONFIG_COUNT": "1",
                                 "GIT_CONFIG_KEY_0": "safe.directory",
                                 "GIT_CONFIG_VALUE_0": "*"}, check=True).stdout.strip()
    assert pushed == head
    assert sshd.ssh(carol, "/bin/sh -c id").returncode == 126
    # dave: the site uploaded with sftp, and an interactive shell with a terminal
    put = sshd.sftp_batch(dave, f"put {src} site.txt\n")
    assert put.returncode == 0, put.stderr
    assert os.path.isfile(f"{jails}/shell/home/{dave.name}/site.txt")
    shell = sshd.ssh(dave, tty=True,
                     input="echo shell-$((6*7)); echo x > /dev/tty && echo tty-$((1+1)); exit\n")
    assert "shell-42" in shell.stdout and "tty-2" in shell.stdout, shell
    listing = sshd.ssh(dave, tty=True, input="ls /; exit\n").stdout.split()
    assert "home" in listing and "sys" not in listing             # the jail is /
    for jail in ("backup", "git", "shell"):                       # allow-lists placed
        assert os.path.isfile(f"{jails}/{jail}/etc/pam_jail/lsh.ini")
