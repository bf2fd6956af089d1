"""`pam-jail <subcommand>`: the administrator's command.

Each tool module exposes `register(sub)` that adds its subcommand parsers with
`set_defaults(func=handler)`; a handler takes the parsed args and returns an exit
status. This is the one place that turns PamJailError into a message and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pam_jail import __version__
from pam_jail.login.errors import PamJailError, UsageError
from pam_jail.login.log import escape

# Modules that contribute subcommands, in the order they appear in --help, with the
# commands each registers: `pam-jail check` imports only pam_jail.admin.check (every command
# pays for the imports it needs, no more, and a broken module cannot break the others).
COMMAND_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pam_jail.admin.build", ("init", "cp", "update")),
    ("pam_jail.admin.users", ("jailuser",)),
    ("pam_jail.admin.apply", ("apply",)),
    ("pam_jail.admin.check", ("check",)),
    ("pam_jail.admin.list", ("list",)),
    ("pam_jail.admin.explain", ("explain",)),
    ("pam_jail.admin.launch", ("uchroot", "chrootlaunch")),
    ("pam_jail.admin.logrelay", ("logrelay",)),
    ("pam_jail.admin.sshd_config", ("sshd-config",)),
    ("pam_jail.admin.pam_setup", ("pam-setup",)),
    ("pam_jail.admin.doctor", ("doctor",)),
    ("pam_jail.admin.edit", ("validate", "edit", "limits-conf")),
)

EPILOG = """\
exit status:
  0 success; 1 error; 2 usage; 3 bad config; 4 unsafe jail; 5 denied;
  6 confinement failed; 7 build failed

files:
  /etc/pam_jail/jails.ini   which user or group goes to which jail (root-owned)
  JAIL/etc/pam_jail/lsh.ini the limited shell's allow-list, read inside the jail

See README.md and docs/ for the login paths (PAM module, pam-jail-shell).
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only the module that registers it is imported."""
    parser = argparse.ArgumentParser(
        prog="pam-jail",
        description="Build, check and wire up login jails (PAM module and login-shell entry).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pam-jail {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser._pam_jail_sub = sub  # type: ignore[attr-defined]
    wanted = [name for name, commands in COMMAND_MODULES if command in commands]
    for name in wanted or [name for name, _commands in COMMAND_MODULES]:
        importlib.import_module(name).register(sub)
    return parser


def report(err: PamJailError) -> None:
    """The error as text on stderr, every line through log.escape (messages name paths
    and values that jailed users made)."""
    print(f"pam_jail: {escape(err)}", file=sys.stderr)
    if err.problems:
        for problem in err.problems:
            print(f"  - {escape(problem)}", file=sys.stderr)
    if err.hint:
        print(f"hint: {escape(err.hint)}", file=sys.stderr)


# Commands that change the system: run as root (their --dry-run/--help excepted).
# (chrootlaunch: its own check)
NEEDS_ROOT = ("init", "cp", "update", "jailuser", "edit", "logrelay", "pam-setup")


def _json_error(err: PamJailError) -> None:
    """One error shape for every command's --json: {"error": {...}} on stdout."""
    import json

    print(json.dumps({"error": {"message": str(err), "exit_code": err.exit_code,
                                "kind": type(err).__name__,
                                "problems": list(err.problems),
                                "hint": err.hint or ""}}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    import os

    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    args, extra = parser.parse_known_args(words)
    sub = getattr(parser, "_pam_jail_sub", None)
    command = getattr(args, "command", None)
    if extra:    # the subcommand's own usage, not the top-level one
        chosen = sub.choices.get(command) if sub is not None and command else None
        (chosen or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    as_json = bool(getattr(args, "json", False))
    try:
        if command in NEEDS_ROOT and os.geteuid() != 0 and not getattr(args, "dry_run", False):
            raise UsageError(f"{command}: needs root", hint=f"sudo pam-jail {command} ...")
        status: int = func(args)
    except PamJailError as err:
        if as_json:
            _json_error(err)
        else:
            report(err)
            if isinstance(err, UsageError) and sub is not None and command in sub.choices:
                print(sub.choices[command].format_usage().rstrip(), file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:      # `pam-jail list | head`: the reader is gone, say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # (else the exit's flush raises again)
        return 141                               # 128 + SIGPIPE, as a shell reports it
    except OSError as err:       # never a traceback: the action, the object, the reason
        wrapped = PamJailError(f"{command}: {err.strerror or err}"
                               + (f": {err.filename}" if err.filename else ""),
                               hint="run as root" if err.errno in (1, 13) else None)
        if as_json:
            _json_error(wrapped)
        else:
            report(wrapped)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
