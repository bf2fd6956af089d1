"""Which jails exist: the one rule `check`, `list` and `logrelay` share.

A jail is every [[jail]] of jails.ini, named by its section, plus every root that a
passwd home names with jailkit's `/./` marker (resolve.split_marker) and jails.ini does
not define, named `marker:ROOT`. A marker root must be absolute and not `/` (a home
`/./home/x` names no jail). Each jail carries the homes the markers name inside it and
whether every user naming it has jailkit's own shell (jailkit's tools serve those; the
log relay leaves them to jk_socketd, `check` still checks them).
"""

from __future__ import annotations

import os
import pwd

from pam_jail.login.config import Config
from pam_jail.login.resolve import JAILKIT_SHELL_NAMES, split_marker


class KnownJail:
    __slots__ = ("name", "root", "homes", "jailkit_only")

    def __init__(self, name: str, root: str) -> None:
        self.name = name
        self.root = root
        self.homes: set[str] = set()      # paths inside the jail that markers name
        self.jailkit_only = True          # (marker jails) only jailkit-shell users name it

    def __repr__(self) -> str:
        return f"KnownJail({self.name!r}, {self.root!r})"


def known_jails(cfg: Config | None) -> list[KnownJail]:
    """jails.ini's jails (in file order), then the marker-only ones (by root)."""
    found: dict[str, KnownJail] = {}
    if cfg is not None:
        for jail in cfg.jails.values():
            found.setdefault(jail.root, KnownJail(jail.name, jail.root)).jailkit_only = False
    configured = set(found)
    for pw in pwd.getpwall():
        marker = split_marker(pw.pw_dir)
        if marker is None:
            continue
        root, home = marker
        root = os.path.normpath(root)
        if not root.startswith("/") or root == "/":
            continue
        known = found.setdefault(root, KnownJail(f"marker:{root}", root))
        known.homes.add(home)
        if root not in configured and os.path.basename(pw.pw_shell) not in JAILKIT_SHELL_NAMES:
            known.jailkit_only = False
    return list(found.values())
