"""A hosting customer's shell (issue 20): jails built with the `hosting` profile, one user
on the PAM path (mode pam) and one on the login-shell path (mode shell), logged in through
a real sshd with a pty (`ssh -tt`): the terminal (`tty`, /dev/tty), tmux and screen with
their ptys and sockets, python3's standard library, php-cli, and the everyday tools, each
run for real as the user inside the jail."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import (
    LSH_SHELL,
    PAM_STACK,
    SHELL_ENTRY,
    Sshd,
    User,
    build_jail,
    make_user,
    remove_jail,
    remove_user,
    restore_config,
    save_config,
    undoing,
    unique,
    write_config,
)

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH = """\
[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/scp, /usr/bin/rsync
allow_shell = yes
shell = /bin/bash
pass_env = LANG, LC_*, TERM
umask = 0022
"""
PATHS = ["pam", "shell"]


@dataclass
class Hosting:
    sshd: Sshd
    users: dict[str, User]
    jails: dict[str, str]


@pytest.fixture(scope="module")
def hosting() -> Iterator[Hosting]:
    from pam_jail.admin.build import add_users
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        saved = save_config()
        undo.append(lambda: restore_config(saved))
        users: dict[str, User] = {}
        jails: dict[str, str] = {}
        for path, shell in (("pam", LSH_SHELL), ("shell", SHELL_ENTRY)):
            name = unique("pjh")
            users[path] = make_user(name, shell, f"/home/{name}", create_home=False)
            undo.append(lambda name=name: remove_user(name, remove_home=False))  # type: ignore[misc]
            profiles = ["lsh", "hosting"] if path == "pam" else ["hosting"]
            jails[path] = build_jail(profiles, [name], lsh=LSH,
                                     shell=LSH_SHELL if path == "pam" else None)
            undo.append(lambda root=jails[path]: remove_jail(root))  # type: ignore[misc]
            os.makedirs(f"{jails[path]}/proc", mode=0o755, exist_ok=True)
            subprocess.run(["usermod", "-d", f"{jails[path]}/./home/{name}", name], check=True)
            if path == "pam":                           # the home link for the marker
                add_users(jails[path], [name], shell=LSH_SHELL)
        write_config(f"[jails]\n  [[hostp]]\n  root = {jails['pam']}\n  mode = pam\n"
                     "  allow_shell = yes\n"
                     f"  [[hosts]]\n  root = {jails['shell']}\n  mode = shell\n  proc = yes\n"
                     "  allow_shell = yes\n"
                     f"[users]\n{users['pam'].name} = hostp\n{users['shell'].name} = hosts\n")
        sshd = Sshd(PAM_STACK, "AcceptEnv LANG LC_* \n" + generate(load_config())).start()
        undo.append(sshd.stop)
        yield Hosting(sshd, users, jails)


def session(hosting: Hosting, path: str, script: str) -> str:
    """Run `script` in an interactive login with a pty (ssh -tt: the jailed bash reads it
    from the terminal); the output, with the terminal's echo of the input."""
    result = hosting.sshd.ssh(hosting.users[path], tty=True, input=script + "\nexit\n",
                              options=["-o", "SetEnv=TERM=xterm"], timeout=60)
    out = result.stdout.replace("\r", "")
    assert "pam_jail: " not in out + result.stderr, (out, result.stderr)
    return out


@pytest.mark.parametrize("path", PATHS)
def test_controlling_terminal_opens(hosting: Hosting, path: str) -> None:
    """Issue 20 item 2: /dev/tty (the controlling terminal) opens in both modes; a jail
    without the ptys profile has no /dev/tty node ("Permission denied": the shell tries
    to create it in the root-owned /dev)."""
    out = session(hosting, path, "test -t 0 && echo x > /dev/tty && echo devtty-$((40+2))\n"
                                 "ls /dev/pts | grep -qx ptmx && echo ptmx-$((1+1))")
    assert "devtty-42" in out and "ptmx-2" in out, out


@pytest.mark.parametrize("path", PATHS)
def test_tty_names_the_session_pty(hosting: Hosting, path: str) -> None:
    """`tty` (ttyname) names the session's pty inside the jail: mode pam, where sshd
    allocates it in the jail's devpts, and mode shell, where PID 1 takes a pty of the
    jail's devpts and pam-jail-shell relays (confine.take_terminal), with the host
    pty's size; what is typed reaches the jailed shell through it (every test here)."""
    out = session(hosting, path, "echo T=$(tty) S=$(stty size) $((6*7))")
    assert re.search(r"^T=/dev/pts/\d+ S=\d+ \d+ 42$", out, re.M), out


@pytest.mark.parametrize("path", PATHS)
def test_tmux_and_screen_get_ptys(hosting: Hosting, path: str) -> None:
    out = session(hosting, path,
                  "tmux new-session -d -s pjh 'sleep 20' && tmux ls && echo tmux-$((1+1))\n"
                  "screen -dmS pjs sleep 20; echo screen-$?; screen -ls\n"
                  "tmux kill-server; screen -S pjs -X quit")
    assert "tmux-2" in out and re.search(r"^pjh: 1 windows", out, re.M), out
    assert "screen-0" in out and re.search(r"\d+\.pjs\s.*\(Detached\)", out), out


@pytest.mark.parametrize("path", PATHS)
def test_python3_and_php(hosting: Hosting, path: str) -> None:
    out = session(hosting, path,
                  "python3 -c 'import json, sqlite3, ssl, zlib; print(\"py\", 6*7, "
                  "sqlite3.connect(\":memory:\").execute(\"select 1+1\").fetchone()[0])' 2>&1\n"
                  "php -r 'echo \"php-\", 6*7, \" \", date(\"Y\"), \"\\n\";' 2>&1")
    year = subprocess.run(["date", "+%Y"], capture_output=True, text=True).stdout.strip()
    assert re.search(r"^py 42 2$", out, re.M), out
    assert re.search(rf"^php-42 {year}$", out, re.M), out
    assert "Warning" not in out and "Traceback" not in out, out


@pytest.mark.parametrize("path", PATHS)
def test_everyday_tools(hosting: Hosting, path: str) -> None:
    script = " && ".join([
        "cd && mkdir -p w && cd w && seq 1 300 > n.txt && cp n.txt m.txt",
        "tar czf a.tgz n.txt && tar tzf a.tgz | grep -qx n.txt",
        "gzip -k n.txt && bzip2 -k n.txt && xz -k n.txt && zcat n.txt.gz | cmp - n.txt",
        "bzcat n.txt.bz2 | cmp - n.txt && xzcat n.txt.xz | cmp - n.txt",
        "find . -name '*.txt' | sort | xargs wc -l | tail -1 | grep -q 600",
        "diff n.txt m.txt && sed -i s/^7$/seven/ m.txt && ! diff -q n.txt m.txt >/dev/null",
        "grep -c seven m.txt | grep -qx 1 && awk '{s+=$1} END {print s}' n.txt | grep -qx 45150",
        "less -FX n.txt | tail -1 | grep -qx 300",
        "vi -Es -c 'normal! ihello' -c wq v.txt </dev/null && grep -qx hello v.txt",
        "LC_ALL=C.UTF-8 printf '\\u00e9\\n' | wc -c | grep -qx 3",
        "nano --version | grep -q nano && unzip -v | head -1 | grep -q UnZip",
        "echo tools-$((40+2))",
    ])
    out = session(hosting, path, script)
    assert "tools-42" in out, out

