"""`pam-jail validate` and `pam-jail edit`: change jails.ini the way visudo changes sudoers.

The login path never guesses from a broken jails.ini: users it jails are refused, and
everyone else is left alone (pam_jail.login.admission.admit). To keep jailed users working while
the file is broken (an editor saving in place, a typo), the login path falls back to the
last-known-good copy, JAILS.INI.good, which only these commands (and the tools that
write jails.ini) write: the last text that passed validation, installed by
write-temporary-fsync-rename, so a reader never sees half a file.

  pam-jail validate [FILE]           check FILE (default: the live jails.ini); when it is
                                     the live file and valid, record it as last-known-good
  pam-jail validate NEW --install    check NEW; if valid, install it as the live file
  pam-jail edit                      edit a copy, check it, install it only when valid
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

from pam_jail.login.config import DEFAULT_PATH, Config, check_config_file
from pam_jail.login.config_file import good_path, install_config, parse_config
from pam_jail.login.errors import ConfigError, PamJailError, UsageError
from pam_jail.login.resolve import JAILING_SHELLS, is_jailing_shell

TEMPLATE = """\
# /etc/pam_jail/jails.ini -- which users go to which jail (docs/config.md).
[jails]
[users]
[groups]
[options]
default = ""
unmapped = allow
"""


def warnings_for(cfg: Config) -> list[str]:
    """What is valid but will not work as meant: mapped users that do not exist, and
    users mapped by [users] or [groups] whose login shell is not the jail's pam_jail
    shell. Those are NOT jailed: the shipped pam.d guard lets their logins through to that
    shell on the host (without the guard, the PAM module refuses them). The shell is what
    binds a user to a jail (docs/config.md, [users])."""
    import pwd

    from pam_jail.login.resolve import identity_from_passwd, resolve

    out = []
    for name, definition in cfg.jails.items():
        if not os.path.isdir(definition.root):
            out.append(f"jails/{name}: root {definition.root} does not exist: every login "
                       "of its users is refused until it is built (pam-jail init -j "
                       f"{definition.root} PROFILE...)")
    for user in cfg.users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            out.append(f"users/{user}: no such user on this host")
    if not cfg.users and not cfg.groups:
        return out
    for pw in pwd.getpwall():        # members of mapped groups too (primary or not)
        if pw.pw_uid == 0:
            continue                 # never jailed (a [users] line for it is an error)
        try:
            jail = resolve(identity_from_passwd(pw.pw_name), cfg)
        except PamJailError:
            continue                 # refused at login anyway (resolve says why)
        if jail is None or not (jail.source == "user" or jail.source.startswith("group:")):
            continue                 # unmapped, the default, or a /./ marker alone
        if not is_jailing_shell(jail.mode, pw.pw_shell):
            wanted = " or ".join(JAILING_SHELLS.get(jail.mode, ()))
            where = "users" if jail.source == "user" else f"groups/{jail.source[6:]}"
            out.append(f"{where}: {pw.pw_name} is NOT jailed: login shell {pw.pw_shell} "
                       f"does not refuse outside jail {jail.name} (mode {jail.mode} needs "
                       f"{wanted}); the pam.d guard lets the login through to it on the "
                       f"host: pam-jail jailuser {pw.pw_name} -j {jail.root}")
    return out


def _check_text(text: str, source: str) -> tuple[Config | None, list[str]]:
    try:
        return parse_config(text, source), []
    except ConfigError as err:
        return None, [str(err), *err.problems]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"read {path}: {err}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    live = os.path.abspath(args.config)
    path = os.path.abspath(args.file or live)
    text = _read(path)
    cfg, problems = _check_text(text, path)
    if path == live and cfg is not None:
        problems += check_config_file(path)
    warnings = warnings_for(cfg) if cfg is not None else []
    valid = cfg is not None and not problems
    action = "none"
    if valid and not args.dry_run:
        if args.install:
            install_config(live, text)
            action = f"installed as {live} (and {good_path(live)})"
        elif path == live:
            install_config(live, text)
            action = f"recorded as last-known-good {good_path(live)}"
    if args.json:
        print(json.dumps({"file": path, "valid": valid, "problems": problems,
                          "warnings": warnings, "action": action}, indent=2))
    else:
        for line in problems:
            print(f"pam-jail validate: {line}", file=sys.stderr)
        for line in warnings:
            print(f"pam-jail validate: warning: {line}", file=sys.stderr)
        if valid:
            print(f"{path}: valid ({len(cfg.jails) if cfg else 0} jail(s)); {action}")
    return 0 if valid else ConfigError.exit_code


def _editor() -> list[str]:
    for name in ("VISUAL", "EDITOR"):
        value = os.environ.get(name, "").strip()
        if value:
            return shlex.split(value)
    for candidate in ("/usr/bin/sensible-editor", "/usr/bin/editor", "/usr/bin/vi"):
        if os.access(candidate, os.X_OK):
            return [candidate]
    raise UsageError("edit: no editor: set VISUAL or EDITOR")


def cmd_edit(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UsageError("edit: needs root (jails.ini is root's)")
    live = os.path.abspath(args.config)
    original = _read(live) if os.path.exists(live) else TEMPLATE
    directory = os.path.dirname(live)
    fd, tmp = tempfile.mkstemp(prefix=".jails.ini.edit-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, original.encode("utf-8"))
        os.close(fd)
        while True:
            status = subprocess.run([*_editor(), tmp], check=False).returncode
            if status != 0:
                print(f"pam-jail edit: the editor exited with {status}; nothing changed",
                      file=sys.stderr)
                return 1
            text = _read(tmp)
            if text == original:
                print(f"pam-jail edit: no changes to {live}")
                return 0
            cfg, problems = _check_text(text, live)
            if cfg is not None:
                for line in warnings_for(cfg):
                    print(f"pam-jail edit: warning: {line}", file=sys.stderr)
                install_config(live, text)
                print(f"pam-jail edit: installed {live} (last-known-good updated)")
                return 0
            for line in problems:
                print(f"pam-jail edit: {line}", file=sys.stderr)
            if not sys.stdin.isatty():
                print(f"pam-jail edit: not installed; {live} unchanged", file=sys.stderr)
                return ConfigError.exit_code
            answer = input("What now? (e)dit again, e(x)it without saving: ").strip().lower()
            if answer != "e":
                print(f"pam-jail edit: {live} unchanged", file=sys.stderr)
                return ConfigError.exit_code
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cmd_limits_conf(args: argparse.Namespace) -> int:
    from pam_jail.login.config_file import load_config
    from pam_jail.login.limits import limits_of, pam_limits_conf

    cfg = load_config(args.config)
    text = pam_limits_conf(cfg.users, cfg.groups,
                           {name: limits_of(j.options).procs for name, j in cfg.jails.items()})
    if args.output is None or args.dry_run:
        sys.stdout.write(text)
        return 0
    from pam_jail.login.config_file import write_atomically

    write_atomically(args.output, text.encode())
    print(f"pam-jail limits-conf: wrote {args.output}")
    return 0


EPILOG = """\
exit status:
  0 valid (validate) / installed or unchanged (edit); 1 error; 2 usage; 3 invalid

The login path reads the live file; if it is broken it decides with the last-known-good
copy (JAILS.INI.good) and logs that loudly. Keep that copy current: change jails.ini with
`pam-jail edit`, or run `pam-jail validate` after changing it by other means.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check jails.ini; record or install it when valid",
                       description="Check a jails.ini text (syntax, every key, mappings, and "
                       "for the live file its owner and mode). When the live file is valid, "
                       "record it as the last-known-good copy the login path falls back to; "
                       "with --install, install a valid FILE as the live file.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="the file to check (default: the live jails.ini)")
    p.add_argument("--config", default=DEFAULT_PATH, help=f"the live file (default {DEFAULT_PATH})")
    p.add_argument("--install", action="store_true",
                   help="install FILE as the live file when it is valid (atomic rename)")
    p.add_argument("-n", "--dry-run", action="store_true", help="check only, write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_validate)
    e = sub.add_parser("edit", help="edit jails.ini safely (like visudo)",
                       description="Edit a copy of jails.ini with $VISUAL/$EDITOR, check it, "
                       "and install it (atomic rename, last-known-good updated) only when "
                       "valid. An invalid edit is offered again or dropped; the live file "
                       "never holds a broken text.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--config", default=DEFAULT_PATH, help=f"the live file (default {DEFAULT_PATH})")
    e.set_defaults(func=cmd_edit)
    lc = sub.add_parser(
        "limits-conf", help="pam_limits nproc lines for the jailed users and groups",
        description="Write /etc/security/limits.d/pam_jail.conf (or print it): `hard nproc` "
        "for every user and group jails.ini maps, from each jail's max_procs. For hosts "
        "where pam_jail's PAM module does not run (it sets the cgroup and RLIMIT_NPROC "
        "itself); pam_limits applies the file at login. Regenerate after changing jails.ini.",
        epilog="exit status:\n  0 written or printed; 3 bad config",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lc.add_argument("--config", default=DEFAULT_PATH, help=f"jails.ini (default {DEFAULT_PATH})")
    lc.add_argument("-o", "--output", help="the file to write, e.g. "
                    "/etc/security/limits.d/pam_jail.conf (default: print)")
    lc.add_argument("-n", "--dry-run", action="store_true", help="print, write nothing")
    lc.set_defaults(func=cmd_limits_conf)
