"""`pam-jail explain`: real users, real jails, the installed-tree code through cli.main."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout

import pytest
from jail_fixtures import make_jailed_pair, undoing

from pam_jail.admin.cli import main

pytestmark = [pytest.mark.root]

LSH = """\
[default]
programs = /usr/bin/rsync, /usr/bin/scp, /usr/lib/openssh/sftp-server
pass_env = LANG
umask = 0027
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    with undoing() as undo:
        yield make_jailed_pair(LSH, undo)


def explain(*argv: str) -> tuple[int, dict[str, object]]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        status = main(["explain", "--json", *argv])
    return status, json.loads(buf.getvalue())


def test_allowed_command_shows_exact_execve(pair: object) -> None:
    user = pair.shell_user  # type: ignore[attr-defined]
    status, info = explain(user.name, "--", "rsync", "--server", "-vlogDtpre.iLsfxCIvu", ".",
                           "dest\\ dir/")
    assert status == 0 and info["allowed"] is True, info
    jail = info["jail"]
    assert isinstance(jail, dict) and jail["name"] == "shellj" and jail["mode"] == "shell"
    assert info["check"] == [] and info["section"] == "default"
    execve = info["execve"]
    assert isinstance(execve, dict)
    assert execve["argv"] == ["/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", ".",
                              "dest dir/"]
    assert execve["umask"] == "0027" and execve["env"]["HOME"] == f"/home/{user.name}"
    assert "rsync --server" in str(info["rule"])


def test_quoted_command_as_one_word(pair: object) -> None:
    user = pair.shell_user  # type: ignore[attr-defined]
    status, info = explain(user.name, "--", "scp -t 'up load.txt'")
    assert status == 0 and info["execve"]["argv"] == [  # type: ignore[index]
        "/usr/bin/scp", "-t", "up load.txt"]


@pytest.mark.parametrize("command, rule", [
    ("rsync --server -e 'sh -c id' . x", "rsync --server rule"),
    ("scp -S /bin/sh -t x", "scp -t/-f rule"),
    ("/bin/sh -c id", "no rule for /bin/sh"),
    ("scp -t x\nid", "parse: control character"),
])
def test_refused_command_names_rule(pair: object, command: str, rule: str) -> None:
    user = pair.shell_user  # type: ignore[attr-defined]
    status, info = explain(user.name, "--", command)
    assert status == 5 and info["allowed"] is False and "execve" not in info
    assert rule in str(info["rule"]), info


def test_interactive_refused_without_allow_shell(pair: object) -> None:
    status, info = explain(pair.shell_user.name)  # type: ignore[attr-defined]
    assert status == 5 and "interactive" in str(info["rule"])


def test_unsafe_jail_is_reported(pair: object) -> None:
    jail = pair.shell_jail  # type: ignore[attr-defined]
    os.chmod(f"{jail}/etc", 0o777)
    try:
        status, info = explain(pair.shell_user.name, "--", "scp -t x")  # type: ignore[attr-defined]
    finally:
        os.chmod(f"{jail}/etc", 0o755)
    assert status == 5 and any("writable by group or other" in p
                               for p in info["check"])  # type: ignore[attr-defined]


def test_user_writable_lsh_is_refused(pair: object) -> None:
    user = pair.shell_user  # type: ignore[attr-defined]
    path = f"{pair.shell_jail}/etc/pam_jail/lsh.ini"  # type: ignore[attr-defined]
    os.chown(path, user.uid, user.gid)
    try:
        status, info = explain(user.name, "--", "scp -t x")
    finally:
        os.chown(path, 0, 0)
    # the jail check (the same as the login's) already names the file
    assert status == 5 and "unsafe" in str(info["reason"])
    assert any("lsh.ini" in p and "not root" in p for p in info["check"])  # type: ignore[attr-defined]


def test_pam_path_user(pair: object) -> None:
    """The PAM-path user's login shell is pam-jail-lsh: its commands go through the same
    allow-list (read inside the jail) as the login-shell user's."""
    user = pair.pam_user.name  # type: ignore[attr-defined]
    status, info = explain(user, "--", "scp -t up.txt")
    assert status == 0 and info["jail"]["mode"] == "pam", info  # type: ignore[index]
    assert info["execve"]["path"] == "/usr/bin/scp"  # type: ignore[index]
    status, info = explain(user, "--", "/bin/sh -c id")
    assert status == 5 and "no rule for /bin/sh" in str(info["rule"])
    status, info = explain(user)          # no interactive shell in this allow-list
    assert status == 5 and info["jail"]["mode"] == "pam"  # type: ignore[index]


def test_text_output_and_help(pair: object, capsys: pytest.CaptureFixture[str]) -> None:
    user = pair.shell_user  # type: ignore[attr-defined]
    assert main(["explain", user.name, "--", "scp -t up.txt"]) == 0
    out = capsys.readouterr().out
    assert "verdict:  ALLOWED" in out and 'execve:   /usr/bin/scp ["/usr/bin/scp", "-t", ' \
        '"up.txt"]' in out
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "exit status" in capsys.readouterr().out


def test_unknown_user_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, info = explain("no-such-user-pjx")
    assert status == 5 and "unknown user" in str(info["reason"])
    assert main(["explain", "no-such-user-pjx"]) == 5
    out = capsys.readouterr().out
    assert "no-such-user-pjx (unknown)" in out and "None" not in out, out


def test_options_after_the_user_are_options(pair: object,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`explain USER --json -- CMD` is what an admin types: --json is not the command."""
    user = pair.shell_user  # type: ignore[attr-defined]
    assert main(["explain", user.name, "--json", "--", "scp -t up.txt"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["command"] == "scp -t up.txt" and info["allowed"] is True
    assert main(["explain", user.name, "--json"]) in (0, 5)
    assert json.loads(capsys.readouterr().out)["command"] is None


def test_jailkit_jailed_user_is_named_as_such(pair: object, user_factory: Callable[..., object]
                                             ) -> None:
    """A jailkit user (jk_chrootsh, home /JAIL/./home/u, not in jails.ini) is jailed by
    jailkit, not "not jailed"."""
    user = user_factory(shell="/usr/sbin/jk_chrootsh", home="/srv/jk/./home/jkuser",
                        create_home=False)
    status, info = explain(user.name)  # type: ignore[attr-defined]
    assert status == 0 and info["jail"]["mode"] == "jailkit", info  # type: ignore[index]
    assert "jailed by jailkit" in str(info["reason"])


def test_allowed_program_missing_from_the_jail_is_not_allowed(pair: object,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    """Issue 20: the allow-list names sftp-server, the jail lacks it: the login would end
    in a bare "Connection closed", so explain must not say ALLOWED, and names the profile
    that provides the program."""
    user = pair.shell_user  # type: ignore[attr-defined]
    program = f"{pair.shell_jail}/usr/lib/openssh/sftp-server"  # type: ignore[attr-defined]
    os.rename(program, program + ".away")
    try:
        status, info = explain(user.name, "--", "/usr/lib/openssh/sftp-server")
        assert main(["explain", user.name, "--", "/usr/lib/openssh/sftp-server"]) == 5
        text = capsys.readouterr().out
    finally:
        os.rename(program + ".away", program)
    assert status == 5 and info["allowed"] is False and "execve" not in info, info
    assert "missing from the jail" in str(info["reason"]), info
    assert info["provided_by"] == ["sftp"], info
    assert "verdict:  REFUSED" in text and "init -j" in text and " sftp`" in text, text
    status, info = explain(user.name, "--", "/usr/lib/openssh/sftp-server")   # back: allowed
    assert status == 0 and info["allowed"] is True, info


def test_the_plan_a_login_would_get(pair: object,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """explain prints the confinement plan the login's own entry builds (plan.plan_login):
    pam-jail-shell's user-namespace plan for a mode-shell user, the PAM module's session
    plan for a mode-pam user; the seccomp program as the login would find it."""
    shell = pair.shell_user.name  # type: ignore[attr-defined]
    _status, info = explain(shell)
    plan = info["plan"]
    assert isinstance(plan, dict), plan
    assert plan["kind"] == "userns" and plan["namespaces"][0] == "user"
    assert plan["pid_init"] == "ours" and plan["devpts"] is True
    assert plan["private_view"]["home"] == f"/home/{shell}"        # private = yes: default
    assert plan["seccomp"]["allow"] == []
    assert plan["steps"][-1] == "seccomp filter"
    _status, info = explain(pair.pam_user.name)  # type: ignore[attr-defined]
    plan = info["plan"]
    assert isinstance(plan, dict) and plan["kind"] == "session"
    assert plan["namespaces"] == ["mount", "IPC", "UTS", "net", "PID"]
    assert main(["explain", shell]) in (0, 5)
    out = capsys.readouterr().out
    assert "plan:     confinement: userns (user, mount, IPC, UTS, net, PID namespaces)" in out
    assert "plan:     steps: " in out and "pivot_root" in out
    assert "plan:     before it, the PAM module (where the service's stack has pam_jail's " \
        "lines): limits (cgroup, rlimits); empty network namespace; no_new_privs" in out
