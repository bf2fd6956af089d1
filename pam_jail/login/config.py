"""/etc/pam_jail/jails.ini: one format definition, one reader, the records a login gets.

The keys and their types (JAIL_KEYS, OPTION_KEYS), JailDef and Config, the INI reader
`read_ini` (also lsh.ini's), seccomp_of and check_config_file: what every login needs.
Parsing and validating a whole file, loading it with its last-known-good copy and
installing it are pam_jail/login/config_file.py's (a login parses the file only when
jails.ini's lookup index cannot be used). Every error is collected and reported at once;
a file that is not root-owned, or is writable by group or other, or sits in such a
directory, is refused before it is parsed.

    [jails]
      [[web]]
      root = /srv/jails/web
      mode = pam            # pam | shell | sftp
      allow_shell = no      # may the user get an interactive shell
    [users]
    alice = web
    [groups]
    sftponly = web
    [options]
    default = ""            # jail for every other (non-root) user; empty = none
    unmapped = allow        # allow | deny: PAM module's answer for users in no jail

The file syntax is the configobj subset `read_ini` accepts (also used for lsh.ini):

    line      := blank | '#' comment | section | key '=' value
    section   := '[' NAME ']' | '[[' NAME ']]'      (then optional '# comment')
                 NAME: no [ ] ' " # , no control character, no surrounding blanks;
                 '[[x]]' only inside a '[x]' section; no deeper nesting
    key       := BARE | 'quoted' | "quoted"       BARE: no blank, [ ] ' " = # ,
    value     := [items] [ '#' comment ]          the first '#' outside quotes starts
                                                  the comment
    items     := ',' (an empty list) | item (',' item)* [',']
    item      := 'text' | "text" | plain          plain: no quote, no comma; inner blanks
                                                  kept, outer blanks dropped
    A value with a comma outside quotes is a list, else a string. Refused: duplicate
    keys or sections, triple-quoted values, control characters, non-ASCII blanks.

Every text `read_ini` accepts is read by configobj (list_values, no interpolation) to
the same values (tests/test_config.py checks this on generated files), but pam_jail
never imports configobj: the login path needs no `re`. The keys, their types and
defaults are defined once, in JAIL_KEYS and OPTION_KEYS below.
"""

from __future__ import annotations

import posix

from pam_jail.login import paths
from pam_jail.login.paths import S_IMODE, S_ISREG

DEFAULT_PATH = "/etc/pam_jail/jails.ini"
MODES = ("pam", "shell", "sftp")

# ----------------------------------------------------------------- the format, once
# key -> (type, default); type: "string:N" (a string of at least N characters),
# "option:a|b|c", "boolean", "integer:MIN:MAX", "names:seccomp" (a list of names
# syscalls.ALLOWABLE knows; one name or an empty value is a list too). A default of None
# means: required.
JAIL_KEYS: dict[str, tuple[str, object]] = {
    "root": ("string:2", None),
    "mode": ("option:pam|shell|sftp", "pam"),
    "allow_shell": ("boolean", False),
    "devpts": ("boolean", True),
    "proc": ("boolean", False),       # the jail's own /proc (of its PID namespace)
    "network": ("boolean", False),
    "hostname": ("string:0", ""),
    "private": ("boolean", True),     # each customer's own view (pam_jail/login/view.py)
    "tmp_size": ("string:0", "256M"),  # its /tmp, /var/tmp, /dev/shm; empty: half the RAM
    "pid": ("boolean", True),         # own PID namespace: always (`no` refused for mode pam)
    "max_procs": ("integer:1:1000000", 512),   # tasks of one user in the jail (login.limits)
    "memory": ("string:0", ""),       # e.g. 1G; empty: no limit
    "cpu": ("integer:0:100000", 0),   # percent of one CPU; 0: no limit
    "max_file_size": ("string:0", ""),  # RLIMIT_FSIZE, e.g. 10G; empty: no limit
    "seccomp": ("boolean", True),     # the seccomp filter of pam_jail/login/syscalls.py
    "seccomp_allow": ("names:seccomp", []),   # its groups/rules to leave out
}
OPTION_KEYS: dict[str, tuple[str, object]] = {
    "default": ("string:0", ""),
    "unmapped": ("option:allow|deny", "allow"),
}
MAPPING_TYPE = "string:1"  # [users] and [groups]: NAME = JAIL
SECTIONS = ("jails", "users", "groups", "options")
BOOLEANS = {"true": True, "on": True, "1": True, "yes": True,
            "false": False, "off": False, "0": False, "no": False}

_NAME_FORBIDDEN = set(" \t\n\r\0,*?!:/\\\"'")

class JailDef:
    """One [[jail]] of jails.ini, validated."""

    __slots__ = ("name", "root", "mode", "allow_shell", "options", "program")

    def __init__(self, name: str, root: str, mode: str = "pam", allow_shell: bool = False,
                 options: dict[str, str] | None = None, program: bytes | None = None,
                 ) -> None:
        self.name = name
        self.root = root
        self.mode = mode
        self.allow_shell = allow_shell
        self.options: dict[str, str] = {} if options is None else options
        # its seccomp filter as jails.ini's index holds it, precomputed for this machine
        # and profile (config_index.config_for); None: read from the file, built at login
        self.program = program

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.options.get(key)
        return default if value is None else value == "yes"

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.root, self.mode, self.allow_shell, self.options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JailDef) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"JailDef(name={self.name!r}, root={self.root!r}, mode={self.mode!r}, "
                f"allow_shell={self.allow_shell!r}, options={self.options!r})")


class Config:
    """jails.ini, validated."""

    __slots__ = ("jails", "users", "groups", "default", "unmapped", "source")

    def __init__(self, jails: dict[str, JailDef], users: dict[str, str],
                 groups: dict[str, str], default: str | None = None,
                 unmapped: str = "allow", source: str = DEFAULT_PATH) -> None:
        self.jails = jails
        self.users = users
        self.groups = groups
        self.default = default
        self.unmapped = unmapped
        self.source = source

    def _key(self) -> tuple[object, ...]:
        return (self.jails, self.users, self.groups, self.default, self.unmapped,
                self.source)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Config(jails={self.jails!r}, users={self.users!r}, groups={self.groups!r}, "
                f"default={self.default!r}, unmapped={self.unmapped!r}, "
                f"source={self.source!r})")


# --------------------------------------------------------------------- the reader

_BLANKS = " \t"
_NAME_BAD = "[]'\"#,"
_KEY_BAD = " \t[]'\"=#,"


def _bad_char(text: str) -> int:
    """Index of a control character or a non-ASCII blank, or -1."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if (code < 32 and ch != "\t") or 127 <= code < 160 or (code > 127 and ch.isspace()):
            return i
    return -1


def _split_value(text: str) -> str | list[str] | None:
    """The value part of `key = value` (after the '='); None if not in the subset."""
    items: list[str] = []
    quoted: list[bool] = []
    current: list[str] = []
    quote = ""
    was_quoted = False
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
            continue
        if ch == "#":
            break
        if ch in "'\"":
            if was_quoted or "".join(current).strip(_BLANKS):
                return None  # a quote inside or after an item
            current = []
            quote = ch
            was_quoted = True
            continue
        if ch == ",":
            items.append("".join(current) if was_quoted else "".join(current).strip(_BLANKS))
            quoted.append(was_quoted)
            current, was_quoted = [], False
            continue
        if was_quoted:
            if ch not in _BLANKS:
                return None  # text after a closing quote
            continue
        current.append(ch)
    if quote:
        return None  # no closing quote
    last = "".join(current) if was_quoted else "".join(current).strip(_BLANKS)
    if not items:
        return last
    if len(items) == 1 and not quoted[0] and items[0] == "" and not was_quoted and not last:
        return []  # a lone ','
    if any(item == "" and not q for item, q in zip(items, quoted, strict=True)):
        return None  # an empty item before a comma
    if last or was_quoted:
        items.append(last)
    return items


def _section_marker(line: str) -> tuple[int, str] | None:
    depth = len(line) - len(line.lstrip("["))
    if depth not in (1, 2):
        return None
    body, hash_, _comment = line.partition("#")
    body = body.rstrip(_BLANKS)
    if not body.endswith("]" * depth) or body.endswith("]" * (depth + 1)):
        return None
    name = body[depth:-depth]
    if not name or name != name.strip(_BLANKS) or any(c in _NAME_BAD for c in name):
        return None
    return depth, name


def _key_of(line: str) -> tuple[str, str] | None:
    """(key, rest after '=') or None."""
    if line[0] in "'\"":
        end = line.find(line[0], 1)
        if end < 0:
            return None
        key, rest = line[1:end], line[end + 1:].lstrip(_BLANKS)
        if not rest.startswith("="):
            return None
        return key, rest[1:]
    key, eq, rest = line.partition("=")
    key = key.rstrip(_BLANKS)
    if not eq or not key or any(c in _KEY_BAD for c in key):
        return None
    return key, rest


def read_ini(text: str, source: str) -> tuple[dict[str, object], list[str]]:
    """Read the configobj subset described above. Pure. Returns the tree (a section is
    a dict; keys and sections in file order) and the problems, one line each."""
    top: dict[str, object] = {}
    current: dict[str, object] = top
    parent: dict[str, object] | None = None  # the depth-1 section, when in one
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{source}: line {number}"
        line = raw.strip(_BLANKS)
        if not line or line.startswith("#"):
            if _bad_char(line) >= 0:
                problems.append(f"{where}: control character")
            continue
        if _bad_char(line) >= 0:
            problems.append(f"{where}: control character or non-ASCII blank")
            continue
        if line.startswith("["):
            marker = _section_marker(line)
            if marker is None:
                problems.append(f"{where}: invalid section line {line[:60]!r} (use [name] "
                                "or [[name]], no quotes, no deeper nesting)")
                continue
            depth, name = marker
            if depth == 2 and parent is None:
                problems.append(f"{where}: Section too nested: [[{name}]] outside a section")
                continue
            into = top if depth == 1 else parent
            assert into is not None
            if name in into:
                problems.append(f"{where}: Duplicate section name [{name}]")
                continue
            section: dict[str, object] = {}
            into[name] = section
            current = section
            if depth == 1:
                parent = section
            continue
        parsed = _key_of(line)
        if parsed is None:
            problems.append(f"{where}: invalid line {line[:60]!r} (expected key = value)")
            continue
        key, rest = parsed
        value = _split_value(rest)
        if value is None:
            problems.append(f"{where}: {key}: invalid value (quote a whole item; no "
                            "triple quotes, no empty list item)")
            continue
        if key in current:
            problems.append(f"{where}: Duplicate keyword name {key!r}")
            continue
        current[key] = value
    return top, problems


def seccomp_of(options: dict[str, str]) -> tuple[str, ...] | None:
    """A jail's filter setting from its jails.ini options: None when `seccomp = no`,
    else the names `seccomp_allow` re-allows (validate checked them against
    pam_jail/login/syscalls.py). Here, not in syscalls.py: a login whose filter jails.ini's
    index holds precomputed (config_index.seccomp_program) never loads the profile."""
    if options.get("seccomp", "yes") == "no":
        return None
    return tuple(n.strip() for n in options.get("seccomp_allow", "").split(",") if n.strip())


def check_config_file(path: str) -> list[str]:
    """The file and every directory above it: root-owned, not group/other-writable."""
    from pam_jail.login.safety import check_path_chain

    problems = check_path_chain(paths.dirname(path) or "/")
    try:
        st = posix.lstat(path)
    except OSError as err:
        return problems + [f"{path}: {err.strerror}"]
    if not S_ISREG(st.st_mode):
        problems.append(f"{path}: not a regular file")
    if st.st_uid != 0:
        problems.append(f"{path}: owned by uid {st.st_uid}, not root")
    if st.st_mode & 0o022:
        problems.append(f"{path}: writable by group or other (mode {S_IMODE(st.st_mode):04o})")
    return problems


