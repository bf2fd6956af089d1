"""cli.py: the command table matches what the modules register; one module per command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pam_jail.admin import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subcommands(parser: object) -> set[str]:
    for action in parser._actions:  # type: ignore[attr-defined]
        if getattr(action, "choices", None) and action.dest == "command":
            return set(action.choices)
    return set()


def test_table_matches_registration() -> None:
    table = {c for _m, commands in cli.COMMAND_MODULES for c in commands}
    assert subcommands(cli.build_parser()) == table
    for _module, commands in cli.COMMAND_MODULES:
        for command in commands:
            assert command in subcommands(cli.build_parser(command))


@pytest.mark.parametrize("command,absent", [("check", "elftools"), ("list", "pam_jail.admin.build"),
                                            ("explain", "pam_jail.admin.doctor")])
def test_a_command_imports_only_its_module(command: str, absent: str) -> None:
    code = (f"import sys; from pam_jail.admin import cli; cli.build_parser({command!r}); "
            f"print(any(m == {absent!r} or m.startswith({absent!r} + '.') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2


def test_bash_completion() -> None:
    """The completion script completes subcommands and a subcommand's options."""
    import subprocess

    script = os.path.join(REPO, "etc", "bash_completion", "pam-jail")
    probe = ('source "$1"; COMP_WORDS=(pam-jail jail); COMP_CWORD=1; _pam_jail; '
             'echo "${COMPREPLY[@]}"; COMP_WORDS=(pam-jail jailuser --und); COMP_CWORD=2; '
             '_pam_jail; echo "${COMPREPLY[@]}"')
    env = {"PATH": f"/usr/local/sbin:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", probe, "bash", script], capture_output=True,
                         text=True, check=True, env=env).stdout.splitlines()
    assert out[0] == "jailuser" and out[1] == "--undo", out


def test_errors_are_one_line_and_json_has_one_shape(capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from pam_jail.admin.cli import main

    assert main(["init"]) == 2                       # usage: the subcommand's usage shown
    err = capsys.readouterr().err
    assert err.startswith("pam_jail: init: -j JAIL is required") and \
        "usage: pam-jail init" in err
    assert main(["validate", "--json", "/nonexistent/jails.ini"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert set(data["error"]) == {"message", "exit_code", "kind", "problems", "hint"}


@pytest.mark.root
def test_scripts_install_installs_the_man_pages() -> None:
    """man pam-jail works after scripts/install, with every subcommand and this
    install's paths (the test run installs before it starts: scripts/test)."""
    page = subprocess.run(["man", "-P", "cat", "-l", "/usr/local/share/man/man8/pam-jail.8"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "MANWIDTH": "200"}).stdout
    for command in subcommands(cli.build_parser()):
        assert f"pam-jail {command}" in page, command
    for name in ("man8/pam_jail.8", "man8/pam-jail-shell.8", "man8/pam-jail-lsh.8",
                 "man5/jails.ini.5", "man5/lsh.ini.5", "man5/profiles.ini.5"):
        with open(f"/usr/local/share/man/{name}") as fh:
            text = fh.read()
        assert "/usr/lib/pam_jail" not in text, name      # this install's LIBDIR


def test_one_version_everywhere() -> None:
    """pam_jail.__version__, pyproject.toml, the Debian changelog's newest entry and the
    man pages name the same release."""
    import re

    from pam_jail import __version__

    with open(f"{REPO}/pyproject.toml") as fh:
        assert f'\nversion = "{__version__}"\n' in fh.read()
    with open(f"{REPO}/packaging/debian/changelog") as fh:
        assert fh.readline().startswith(f"pam-jail ({__version__}) ")
    for name in os.listdir(f"{REPO}/man"):
        with open(f"{REPO}/man/{name}") as fh:
            head = fh.readline()
        assert re.search(rf'"pam_jail {re.escape(__version__)}"', head), (name, head)


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`pam-jail ... | head -1`: when the reader is gone, no traceback and no error line,
    and the status a shell shows for SIGPIPE (stdout here: a pipe whose reader is
    closed, unbuffered, so the first print meets EPIPE inside the command)."""
    script = ("import os, sys\n"
              "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
              f"sys.path.insert(0, {REPO!r})\n"
              "from pam_jail.admin.cli import main\n"
              f"code = main(['init', '--list', '-c', {REPO + '/etc/pam_jail/profiles.ini'!r}])\n"
              "sys.stderr.write(f'status={code}\\n')\n")
    result = subprocess.run([sys.executable, "-u", "-c", script], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.stderr == "status=141\n", result.stderr
    assert result.returncode == 0


def test_an_error_renders_its_own_reason() -> None:
    """One rendering of a refusal's reason (the PAM module's, pam-jail-shell's and the
    CLI's log lines used to build it each): the message and its first problems."""
    from pam_jail.login.errors import ConfigError, Denied, UnsafeJail

    assert Denied("user x is in no jail").reason() == "user x is in no jail"
    err = UnsafeJail("check jail web: unsafe", problems=["a", "b", "c", "d"])
    assert err.reason() == "check jail web: unsafe: a; b; c"
    assert ConfigError("load f: 1 problem(s)", problems=["p"]).reason(1) == \
        "load f: 1 problem(s): p"
    assert Denied("x").problems == []
