"""cli.py: the command table matches what the modules register; one module per command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pam_jail import cli


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


@pytest.mark.parametrize("command,absent", [("check", "elftools"), ("list", "pam_jail.build"),
                                            ("explain", "pam_jail.doctor")])
def test_a_command_imports_only_its_module(command: str, absent: str) -> None:
    code = (f"import sys; from pam_jail import cli; cli.build_parser({command!r}); "
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
