"""`pam-jail pam-setup`: pam_jail's guarded lines (etc/pam.d/pam_jail) in the PAM services
that start processes as a user: cron, atd, su, su-l, runuser, runuser-l, login, sshd.

A jailed account is jailed everywhere on the host only where every such service reaches
pam_python: cron and atd run jobs with /bin/sh, never the login shell, so without the
lines a job of a jailed user runs on the host.

Each line it adds ends with the marker comment MARKER, so `--undo` removes exactly its
own lines and never an admin's. The plan is pure (plan_service: text in, text out); the
files are read, checked (regular, root's, not writable by group or other) and only then
written, each atomically, all or none checked first.

Where the lines go (etc/pam.d/pam_jail): the two account lines after the file's last
account line (Debian: `@include common-account`), none where the file has no account
stack; the two session lines at the very end, after every other session line. A
service whose stack already reaches pam_jail's module for a type, by its own lines (an
admin's) or through `include`/`substack`/`@include` of another file (su-l includes su,
runuser-l includes runuser), gets no lines of that type: pam_jail runs once per stack.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import stat
import sys
from dataclasses import asdict, dataclass

from pam_jail import install_dirs
from pam_jail.login.errors import PamJailError, UsageError

PAM_DIR = "/etc/pam.d"
MARKER = "# pam-jail pam-setup"
MODULE_FILE = "pam_jail_pam.py"
# In this order: a service that includes another comes after it.
SERVICES = ("cron", "atd", "su", "su-l", "runuser", "runuser-l", "login", "sshd")
MAX_DEPTH = 8


def jail_lines(kind: str, libdir: str, sbindir: str) -> list[str]:
    """etc/pam.d/pam_jail's two lines of `kind`, with this install's paths and MARKER."""
    shells = f"{sbindir}/pam-jail-shell:{sbindir}/pam-jail-lsh"
    return [f"{kind} [success=1 default=ignore] pam_succeed_if.so quiet shell notin "
            f"{shells}  {MARKER}",
            f"{kind} required pam_python.so {libdir}/{MODULE_FILE}  {MARKER}"]


def _words(line: str) -> list[str]:
    return line.split("#", 1)[0].split()


def _kind(words: list[str]) -> str:
    return words[0].lstrip("-").lower() if words else ""


def reaches_module(text: str, kind: str, texts: dict[str, str], depth: int = 0) -> bool:
    """Does the `kind` stack of this file text reach pam_jail's module (own lines or
    through @include / include / substack of the files in `texts`, by name)?"""
    if depth > MAX_DEPTH:
        return False
    for line in text.splitlines():
        words = _words(line)
        if not words:
            continue
        if words[0] == "@include" and len(words) > 1:
            if reaches_module(texts.get(posixpath.basename(words[1]), ""), kind, texts,
                              depth + 1):
                return True
            continue
        if _kind(words) != kind or len(words) < 3:
            continue
        if words[1] in ("include", "substack"):
            if reaches_module(texts.get(posixpath.basename(words[2]), ""), kind, texts,
                              depth + 1):
                return True
            continue
        if any(posixpath.basename(w) == MODULE_FILE for w in words[2:]):
            return True
    return False


def remove_marked(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.rstrip().endswith(MARKER))


def plan_service(text: str, texts: dict[str, str], libdir: str, sbindir: str,
                 ) -> tuple[str, list[str]]:
    """The file's new text and what was done (pure). `texts`: the other files by name,
    as they will be (for includes). Raises PamJailError on a line of ours that was
    edited (it carries the marker but is not one we write)."""
    ours = {line for kind in ("account", "session")
            for line in jail_lines(kind, libdir, sbindir)}
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.rstrip().endswith(MARKER) and line.rstrip() not in ours:
            raise PamJailError(f"line {number} carries the marker {MARKER!r} but is not "
                               "pam-setup's (edited by hand?)",
                               hint="fix or remove it by hand, then run pam-setup again")
    done: list[str] = []
    for kind in ("account", "session"):
        current = "\n".join(lines) + "\n"
        if reaches_module(current, kind, texts):
            continue
        new = jail_lines(kind, libdir, sbindir)
        if kind == "session":
            lines += new
            done.append("session lines added at the end")
            continue
        last = max((i for i, line in enumerate(lines)
                    if _kind(_words(line)) == "account"
                    or _words(line)[:2] == ["@include", "common-account"]), default=-1)
        if last < 0:
            done.append("no account stack: no account lines")
            continue
        lines[last + 1:last + 1] = new
        done.append(f"account lines added after line {last + 1}")
    return "\n".join(lines) + "\n", done


@dataclass
class Change:
    service: str
    path: str
    action: str          # added, removed, unchanged, skipped
    detail: str


def _read_checked(path: str) -> str:
    """The file's text; refuses what is not a root-owned regular file writable by root
    alone (a symlink, a directory, another owner's file is not ours to edit)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise PamJailError(f"pam-setup {path}: no such file",
                           hint="install the service's package, or leave it out of "
                                "--services") from None
    if not stat.S_ISREG(st.st_mode):
        raise PamJailError(f"pam-setup {path}: not a regular file (a symlink or other)",
                           hint="make it a plain file, or add the lines by hand")
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise PamJailError(f"pam-setup {path}: not root's, or writable by group or other",
                           hint=f"chown root:root {path}; chmod 644 {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise PamJailError(f"pam-setup {path}: not UTF-8 text") from None


def _write(path: str, text: str) -> None:
    from pam_jail.login.config_file import write_atomically
    from pam_jail.login.errors import ConfigError

    try:
        write_atomically(path, text.encode("utf-8"))
    except ConfigError as err:
        raise PamJailError(f"pam-setup {err}") from None


def setup(pam_dir: str, services: list[str], *, undo: bool, explicit: bool,
          libdir: str, sbindir: str) -> tuple[list[Change], dict[str, str]]:
    """The changes and the new texts by path (nothing written). All files are read and
    checked first: one odd file refuses the whole run."""
    changes: list[Change] = []
    new_texts: dict[str, str] = {}
    if undo and not explicit:
        services = sorted(name for name in os.listdir(pam_dir)
                          if not name.startswith(".")
                          and os.path.isfile(posixpath.join(pam_dir, name))
                          and not os.path.islink(posixpath.join(pam_dir, name))
                          and MARKER in _text_or_empty(posixpath.join(pam_dir, name)))
    texts: dict[str, str] = {}
    for name in os.listdir(pam_dir):
        if not name.startswith("."):
            texts[name] = _text_or_empty(posixpath.join(pam_dir, name))
    for service in services:
        path = posixpath.join(pam_dir, service)
        if not explicit and not os.path.lexists(path):
            changes.append(Change(service, path, "skipped", "not installed (no such file)"))
            continue
        text = _read_checked(path)
        if undo:
            new = remove_marked(text)
            detail = f"{text.count(MARKER)} lines removed" if new != text else "none of ours"
        else:
            new, done = plan_service(text, texts, libdir, sbindir)
            detail = "; ".join(done) if new != text else \
                "no change (its stack reaches pam_jail already)"
        texts[service] = new
        if new != text:
            new_texts[path] = new
        changes.append(Change(service, path, ("removed" if undo else "added")
                              if new != text else "unchanged", detail))
    return changes, new_texts


def _text_or_empty(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def run(args: argparse.Namespace) -> int:
    import json

    explicit = args.services is not None
    services = [s for part in (args.services or []) for s in part.split(",") if s] \
        if explicit else list(SERVICES)
    for service in services:
        if not service or "/" in service or service.startswith("."):
            raise UsageError(f"pam-setup: bad service name {service!r}")
    if not os.path.isdir(args.pam_dir):
        raise PamJailError(f"pam-setup {args.pam_dir}: not a directory")
    libdir, sbindir = install_dirs()
    changes, new_texts = setup(args.pam_dir, services, undo=args.undo, explicit=explicit,
                               libdir=libdir, sbindir=sbindir)
    if not args.dry_run:
        for path, text in new_texts.items():
            _write(path, text)
    changed = bool(new_texts)
    if args.json:
        print(json.dumps({"changed": changed, "dry_run": args.dry_run, "undo": args.undo,
                          "services": [asdict(c) for c in changes]}, indent=2))
        return 0
    verb = "would change" if args.dry_run else "changed"
    for change in changes:
        print(f"{change.service}: {change.action}: {change.detail} ({change.path})")
    print(f"pam-setup: {verb} {len(new_texts)} file(s)" if changed else "pam-setup: no change",
          file=sys.stdout)
    return 0


DESCRIPTION = """\
Put pam_jail's guarded lines (the form of etc/pam.d/pam_jail: a pam_succeed_if guard
that lets only pam_jail's login shells reach pam_python, then pam_python with the
module) into the PAM services that start processes as a user, or take them out again
(--undo). A jailed account is then jailed by every such service: cron and atd run a
job inside the user's jail (they never run the login shell), su, runuser and login
confine the session or leave it to the login shell, which refuses outside its jail.

Each added line ends with the comment "# pam-jail pam-setup": --undo removes those lines
and no other. A re-run changes nothing and says "no change"."""

EPILOG = f"""\
services (default, in this order; a missing file is skipped unless named):
  {' '.join(SERVICES)}
  su-l and runuser-l include su and runuser (`session include su`): their stacks reach
  pam_jail through the include and get no lines of their own.

where the lines go:
  account: after the file's last account line (`@include common-account`); a file with
  no account stack (Debian's runuser) gets none. session: last, after every other
  session line (a module after it would run inside the jail).

refused (exit 1, nothing written):
  a named file that is missing; a symlink or other non-regular file; a file not owned
  by root or writable by group or other; a line carrying the marker that pam-setup did
  not write (edited by hand).

examples:
  pam-jail pam-setup --dry-run            show what would be added
  pam-jail pam-setup                      add the lines where they are missing
  pam-jail pam-setup --services cron,atd --json
  pam-jail pam-setup --undo               remove every line pam-setup added

exit status:
  0 done (also: no change); 1 a file missing or odd, or not written; 2 usage

The Debian package runs `pam-setup` on configure and `pam-setup --undo` on removal.
docs/login-paths.md ("Host services") says what each mode gets from each service."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "pam-setup", help="add (or --undo) pam_jail's lines in cron, atd, su, login ...",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", metavar="LIST", action="append",
                        help="comma-separated PAM service names (default: the list below)")
    parser.add_argument("--pam-dir", metavar="DIR", default=PAM_DIR,
                        help=f"the PAM configuration directory (default: {PAM_DIR})")
    parser.add_argument("--undo", action="store_true",
                        help="remove the lines pam-setup added (without --services: from "
                             "every file of --pam-dir that has any)")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="show what would change, write nothing")
    parser.add_argument("--json", action="store_true",
                        help='machine-readable: {"changed": ..., "services": [...]}')
    parser.set_defaults(func=run)
