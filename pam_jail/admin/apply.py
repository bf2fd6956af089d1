"""`pam-jail apply FILE`: bring jails, jailed users and jails.ini to a declared state.

For configuration management (Ansible, Salt, a shell loop): one file says which jails
exist (root, mode, profiles, interactive logins) and which users are in which jail, and
which users must be in none; apply does what is not yet so, with the same steps as
`pam-jail init` and `pam-jail jailuser` (nothing of its own on the system), and says per
item `ok` or `changed`. A second run changes nothing. --check does nothing and says
what would change; --diff also lists the steps.

The file (the jails.ini format: INI with [[subsections]]):

    [jails]
      [[web]]
      root = /srv/jails/web
      mode = shell              # pam | shell | sftp (default shell)
      profiles = basicshell, sftp, scp, rsync
      allow_shell = no
    [users]
    alice = web
    bob = web
    [absent]
    users = carol, dave         # jailed by jailuser before: --undo
    [options]
    move = yes                  # jailuser --move for new users (their files follow)
    config = /etc/pam_jail/jails.ini

A jail that jails.ini already defines with another root or mode is an error (apply does
not rewrite an admin's jail silently); its users are left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from pam_jail.admin import build, users
from pam_jail.login import config, config_file
from pam_jail.login.errors import ConfigError, PamJailError, UsageError
from pam_jail.login.log import escape

JAIL_KEYS = {"root", "mode", "profiles", "allow_shell"}
OPTION_KEYS = {"move", "config"}


@dataclass
class Item:
    kind: str                   # jail, user, absent
    name: str
    changed: bool = False
    steps: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Desired:
    jails: dict[str, dict[str, Any]]
    users: dict[str, str]
    absent: list[str]
    move: bool
    config: str


def _words(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [w.strip() for w in str(value).split(",") if w.strip()]


def parse(text: str, source: str) -> Desired:
    """The declared state, checked. Pure. Raises ConfigError with every problem."""
    tree, problems = config.read_ini(text, source)
    for name in tree:
        if name not in ("jails", "users", "absent", "options"):
            problems.append(f"{source}: unknown section [{name}]")
    jails: dict[str, dict[str, Any]] = {}
    raw_jails = tree.get("jails", {})
    for name, sect in (raw_jails.items() if isinstance(raw_jails, dict) else []):
        if not isinstance(sect, dict):
            problems.append(f"{source}: jails/{name}: a [[{name}]] subsection expected")
            continue
        unknown = set(sect) - JAIL_KEYS
        if unknown:
            problems.append(f"{source}: jails/{name}: unknown key(s) {', '.join(sorted(unknown))}")
        root = str(sect.get("root", ""))
        mode = str(sect.get("mode", "shell"))
        if not root.startswith("/") or os.path.normpath(root) != root or root == "/":
            problems.append(f"{source}: jails/{name}/root: an absolute normalised path, not "
                            f"{root!r}")
        if mode not in config.MODES:
            problems.append(f"{source}: jails/{name}/mode: one of {', '.join(config.MODES)}")
        shell = str(sect.get("allow_shell", "no")).lower()
        if shell not in config.BOOLEANS:
            problems.append(f"{source}: jails/{name}/allow_shell: not a boolean")
        jails[name] = {"root": root, "mode": mode, "profiles": _words(sect.get("profiles", "")),
                       "allow_shell": config.BOOLEANS.get(shell, False)}
    raw_users = tree.get("users", {})
    wanted: dict[str, str] = {}
    for user, jail in (raw_users.items() if isinstance(raw_users, dict) else []):
        if str(jail) not in jails:
            problems.append(f"{source}: users/{user}: jail {jail} is not in [jails]")
        wanted[user] = str(jail)
    absent_sect = tree.get("absent", {})
    absent = _words(absent_sect.get("users", "")) if isinstance(absent_sect, dict) else []
    for user in absent:
        if user in wanted:
            problems.append(f"{source}: {user} is both in [users] and in [absent]")
    options = tree.get("options", {})
    options = options if isinstance(options, dict) else {}
    for key in set(options) - OPTION_KEYS:
        problems.append(f"{source}: options/{key}: unknown key")
    move = str(options.get("move", "no")).lower()
    if move not in config.BOOLEANS:
        problems.append(f"{source}: options/move: not a boolean")
    if problems:
        raise ConfigError(f"apply {source}: {len(problems)} problem(s)", problems=problems,
                          hint="see `pam-jail apply --help` for the format")
    return Desired(jails=jails, users=wanted, absent=absent,
                   move=config.BOOLEANS.get(move, False),
                   config=str(options.get("config", config.DEFAULT_PATH)))


def _defined(path: str) -> dict[str, config.JailDef]:
    try:
        return dict(config_file.load_config(path).jails)
    except ConfigError:
        if not os.path.exists(path):
            return {}
        raise


def apply(desired: Desired, *, check: bool) -> list[Item]:
    """Converge; returns one Item per jail, user and absent user, in that order."""
    items: list[Item] = []
    if not os.path.exists(desired.config) and not check:
        config_file.install_config(desired.config, "[jails]\n[users]\n[groups]\n[options]\n")
    defined = _defined(desired.config)
    broken: set[str] = set()
    built: set[str] = set()
    for name, want in desired.jails.items():
        item = Item("jail", name)
        items.append(item)
        have = defined.get(name)
        if have is not None and (have.root, have.mode) != (want["root"], want["mode"]):
            item.error = (f"jails.ini defines jail {name} with root {have.root}, mode "
                          f"{have.mode}; the file wants {want['root']}, mode {want['mode']}")
            broken.add(name)
            continue
        profiles = [*want["profiles"], *(p for p in ("lsh", "ptys")
                                         if want["mode"] == "pam" and p not in want["profiles"])]
        try:
            if profiles or not os.path.isdir(want["root"]):
                made = build.init_jail(want["root"], profiles, dry_run=check)
                if made.changed:
                    item.changed = True
                    item.steps.append(f"build {want['root']} with profiles "
                                      f"{' '.join(profiles)} ({made.files} files, "
                                      f"{made.dirs} directories)")
            if os.path.isdir(want["root"]):
                built.add(name)
        except PamJailError as err:
            item.error = str(err)
            broken.add(name)
    for user, name in desired.users.items():
        item = Item("user", user)
        items.append(item)
        want = desired.jails[name]
        if name in broken:
            item.error = f"jail {name} is not in the wanted state"
            continue
        if name not in built:         # --check of a jail still to build
            item.changed = True
            item.steps.append(f"jail {user} in {want['root']} (mode {want['mode']}) once the "
                              "jail is built")
            continue
        try:
            report = users.jail_user(want["root"], user, jail_config=name,
                                     config_file=desired.config, dry_run=check,
                                     mode=want["mode"], allow_shell=want["allow_shell"],
                                     move=desired.move)
            item.changed, item.steps = report.changed, report.steps
        except PamJailError as err:
            item.error = str(err)
    for user in desired.absent:
        item = Item("absent", user)
        items.append(item)
        try:
            report = users.undo_user(user, dry_run=check)
            item.changed, item.steps = report.changed, report.steps
        except PamJailError as err:
            item.error = str(err)
    return items


DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""
EPILOG = """\
output: one line per item, `ok`, `changed` (--check: `would change`) or `failed`, then a
summary; --json: {"changed": BOOL, "failed": N, "items": [{"kind", "name", "changed",
"steps", "error"}]}.

exit status:
  0 every item is in the wanted state (changed or not: see "changed"); 1 some item
  failed (the others were still applied); 2 usage; 3 the file is bad (nothing done)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("apply", help="bring jails and jailed users to a declared state",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", metavar="FILE", help="the declared state (format above)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; say what would change")
    parser.add_argument("--diff", action="store_true", help="also list each item's steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UsageError("apply: needs root (it builds jails and changes users)")
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise UsageError(f"apply: read {args.file}: {err.strerror}") from None
    items = apply(parse(text, args.file), check=args.check)
    failed = sum(1 for i in items if i.error)
    changed = any(i.changed for i in items)
    if args.json:
        print(json.dumps({"changed": changed, "failed": failed, "check": args.check,
                          "items": [asdict(i) for i in items]}, indent=2))
        return 1 if failed else 0
    verb = "would change" if args.check else "changed"
    for item in items:
        state = "failed" if item.error else verb if item.changed else "ok"
        print(f"{item.kind} {escape(item.name)}: {state}"
              + (f": {escape(item.error)}" if item.error else ""))
        if args.diff or item.error:
            for step in item.steps:
                print(f"  {escape(step)}")
    counts = (sum(1 for i in items if i.changed and not i.error),
              sum(1 for i in items if not i.changed and not i.error), failed)
    print(f"apply: {counts[0]} {verb}, {counts[1]} ok, {counts[2]} failed"
          + ("" if changed or failed else " (no change)"), file=sys.stderr)
    return 1 if failed else 0
