"""Load and validate /etc/pam_jail/jails.ini: one reader, one format definition.

Every error is collected and reported at once; a file that is not root-owned, or is
writable by group or other, or sits in such a directory, is refused before it is parsed.

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
from pam_jail.login.errors import ConfigError
from pam_jail.login.limits import parse_size
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


# ----------------------------------------------------------------- validation


def _check_type(kind: str, value: object) -> tuple[object, str | None]:
    """Apply one JAIL_KEYS/OPTION_KEYS type to a raw value: (value, problem)."""
    name, _, arg = kind.partition(":")
    if name == "names":
        return _check_names(arg, value)
    if not isinstance(value, str):
        return value, "must be a single value, not a list"
    if name == "string":
        if len(value) < int(arg):
            return value, f"must be at least {arg} character(s)"
        return value, None
    if name == "option":
        choices = arg.split("|")
        if value not in choices:
            return value, f"{value!r} is not one of {', '.join(choices)}"
        return value, None
    if name == "integer":
        low, _, high = arg.partition(":")
        if not value.strip().lstrip("-").isdigit():
            return value, f"{value!r} is not a whole number"
        number = int(value)
        if not int(low) <= number <= int(high):
            return value, f"{number} is not between {low} and {high}"
        return number, None
    if name == "boolean":
        if value.lower() not in BOOLEANS:
            return value, f"{value!r} is not a boolean (yes/no, true/false, on/off, 1/0)"
        return BOOLEANS[value.lower()], None
    raise AssertionError(kind)


def seccomp_of(options: dict[str, str]) -> tuple[str, ...] | None:
    """A jail's filter setting from its jails.ini options: None when `seccomp = no`,
    else the names `seccomp_allow` re-allows (validate checked them against
    pam_jail/login/syscalls.py). Here, not in syscalls.py: a login whose filter jails.ini's
    index holds precomputed (config_index.seccomp_program) never loads the profile."""
    if options.get("seccomp", "yes") == "no":
        return None
    return tuple(n.strip() for n in options.get("seccomp_allow", "").split(",") if n.strip())


def _check_names(table: str, value: object) -> tuple[object, str | None]:
    """A "names:TABLE" value: one name, an empty value (none) or a list; every name
    must be one the table knows (TABLE "seccomp": pam_jail/login/syscalls.py ALLOWABLE)."""
    from pam_jail.login import syscalls

    assert table == "seccomp", table
    names = value if isinstance(value, list) else [value] if value else []
    if not all(isinstance(n, str) for n in names):
        return value, "must be a list of names"
    unknown = syscalls.unknown_names([str(n) for n in names])
    if unknown:
        return value, (f"unknown name(s) {', '.join(repr(n) for n in unknown)} (known: the "
                       f"groups {', '.join(syscalls.GROUPS)}, or a rule of one)")
    return list(names), None


def _typed(section: dict[str, object], keys: dict[str, tuple[str, object]], where: str,
           problems: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, (kind, default) in keys.items():
        if key not in section:
            if default is None:
                problems.append(f"{where}/{key}: missing")
            else:
                out[key] = default
            continue
        value, problem = _check_type(kind, section[key])
        if problem:
            problems.append(f"{where}/{key}: {problem}")
        else:
            out[key] = value
    for key in section:
        if key not in keys:
            problems.append(f"{where}/{key}: unknown key")
    return out


def _valid_name(name: str) -> bool:
    return bool(name) and not (set(name) & _NAME_FORBIDDEN) and not name.startswith("-")


def _normal_root(root: str) -> bool:
    return root.startswith("/") and paths.normpath(root) == root.rstrip("/") \
        and root != "/"


def validate(tree: dict[str, object], problems: list[str], source: str) -> Config:
    """Turn a read tree into a Config; every problem appended to `problems`."""
    def section(name: str) -> dict[str, object]:
        value = tree.get(name, {})
        if isinstance(value, dict):
            return value
        problems.append(f"{name}: must be a section [{name}]")
        return {}

    for key, value in tree.items():
        if key not in SECTIONS:
            problems.append(f"unknown section [{key}]" if isinstance(value, dict)
                            else f"{key}: key outside any section")
    jails: dict[str, JailDef] = {}
    for name, sect in section("jails").items():
        if not isinstance(sect, dict):
            problems.append(f"jails/{name}: unknown key (a jail is a [[{name}]] section)")
            continue
        if not _valid_name(name):
            problems.append(f"jails/{name}: invalid jail name")
            continue
        for sub, value in sect.items():
            if isinstance(value, dict):
                problems.append(f"jails/{name}/{sub}: unknown subsection")
        values = _typed({k: v for k, v in sect.items() if not isinstance(v, dict)},
                        JAIL_KEYS, f"jails/{name}", problems)
        root = values.get("root")
        if not isinstance(root, str):
            continue
        if not _normal_root(root):
            problems.append(f"jails/{name}/root: must be an absolute normalised path, not '/'"
                            f" (got {root!r})")
            continue
        if len(values) != len(JAIL_KEYS):
            continue
        bad_size = False
        for key in ("memory", "max_file_size", "tmp_size"):
            try:
                parse_size(str(values[key]))
            except ValueError as err:
                problems.append(f"jails/{name}/{key}: {err}")
                bad_size = True
        if bad_size:
            continue
        if values["pid"] is False and values["mode"] == "pam":
            problems.append(f"jails/{name}/pid: 'no' is not allowed: without its own PID "
                            "namespace a jailed session can signal and trace the user's host "
                            "processes (a way out of the jail)")
            continue
        options = {k: ("yes" if v is True else "no" if v is False
                       else ", ".join(v) if isinstance(v, list) else str(v))
                   for k, v in values.items() if k not in ("root", "mode", "allow_shell")}
        jails[name] = JailDef(name=name, root=root.rstrip("/"), mode=str(values["mode"]),
                              allow_shell=bool(values["allow_shell"]), options=options)

    def mapping(name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in section(name).items():
            kind = name[:-1]
            if isinstance(value, dict):
                problems.append(f"{name}/{key}: unknown subsection")
            elif not isinstance(value, str):
                problems.append(f"{name}/{key}: must be a single jail name")
            elif not value:
                problems.append(f"{name}/{key}: empty jail name")
            elif not _valid_name(key):
                problems.append(f"{name}/{key}: invalid {kind} name")
            elif value not in jails:
                problems.append(f"{name}/{key}: unknown jail '{value}'")
            else:
                out[key] = value
        return out

    users = mapping("users")
    groups = mapping("groups")
    opts_raw = section("options")
    for key, value in opts_raw.items():
        if isinstance(value, dict):
            problems.append(f"options/{key}: unknown subsection")
    opts = _typed({k: v for k, v in opts_raw.items() if not isinstance(v, dict)},
                  OPTION_KEYS, "options", problems)
    default = str(opts.get("default") or "") or None
    if default is not None and default not in jails:
        problems.append(f"options/default: unknown jail '{default}'")
    if "root" in users:
        problems.append("users/root: root cannot be jailed (pam_jail never runs root in a jail)")
    return Config(jails=jails, users=users, groups=groups, default=default,
                  unmapped=str(opts.get("unmapped", "allow")), source=source)


def configspec_lines() -> list[str]:
    """JAIL_KEYS and OPTION_KEYS as a configobj/validate configspec (the tests read
    every generated file with configobj + validate too and compare)."""
    def spec(kind: str, default: object) -> str:
        name, _, arg = kind.partition(":")
        low, _, high = arg.partition(":")
        text = {"string": f"string(min={arg}", "boolean": "boolean(",
                "integer": f"integer(min={low}, max={high}",
                "names": f"pam_jail_names({arg!r}",
                "option": "option(" + ", ".join(repr(c) for c in arg.split("|"))}[name]
        if default is not None:
            shown = (repr(default) if isinstance(default, str) else "list()"
                     if isinstance(default, list) else str(default))
            text += (", " if text[-1] != "(" else "") + f"default={shown}"
        return text + ")"

    out = ["[jails]", "[[__many__]]"]
    out += [f"{k} = {spec(*v)}" for k, v in JAIL_KEYS.items()]
    out += ["[users]", f"__many__ = {spec(MAPPING_TYPE, None)}",
            "[groups]", f"__many__ = {spec(MAPPING_TYPE, None)}", "[options]"]
    out += [f"{k} = {spec(*v)}" for k, v in OPTION_KEYS.items()]
    return out


def parse_config(lines: list[str] | str, source: str = DEFAULT_PATH) -> Config:
    """Parse and validate the text of jails.ini (a string or its lines). Pure."""
    text = lines if isinstance(lines, str) else "\n".join(lines)
    tree, syntax = read_ini(text, source)
    if syntax:
        raise ConfigError(f"parse {source}: invalid syntax", problems=syntax,
                          hint="see the format in pam_jail/login/config.py")
    problems: list[str] = []
    cfg = validate(tree, problems, source)
    if problems:
        raise ConfigError(f"load {source}: {len(problems)} problem(s)", problems=problems,
                          hint="fix the file (docs/config.md); every login of a mapped user "
                               "is refused until then")
    return cfg


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


def read_root_owned(path: str, what: str = "config file", *, check_owner: bool = True) -> str:
    """The text of a root-owned config file (jails.ini, logrelay.ini, uchroot.ini): the
    file and every directory above it pass check_config_file first. Raises ConfigError."""
    if check_owner:
        problems = check_config_file(path)
        if problems:
            raise ConfigError(f"load {path}: unsafe {what}", problems=problems,
                              hint="chown root:root and chmod go-w the file and its directories")
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"read {path}: {err}") from None


def load_config(path: str = DEFAULT_PATH, *, check_owner: bool = True) -> Config:
    """Read, check ownership of, and parse the config file. Raises ConfigError."""
    return parse_config(read_root_owned(path, check_owner=check_owner), path)


# ------------------------------------------------------------- last-known-good

GOOD_SUFFIX = ".good"


def good_path(path: str) -> str:
    """Where the last-known-good copy of `path` lives (same directory, same rules)."""
    return path + GOOD_SUFFIX


def load_config_lkg(path: str = DEFAULT_PATH, *,
                    check_owner: bool = True) -> tuple[Config, ConfigError | None]:
    """The config to decide with, and why it is not `path` itself (None when it is).

    A bad `path` (unsafe, unreadable, invalid) falls back to its last-known-good copy
    PATH.good, which only `install_config` writes (pam-jail validate/edit, jailuser): the
    copy of the last text that passed validation. The caller logs loudly when the
    fallback is used. With no valid last-known-good either, the file's ConfigError is
    raised: the caller then decides without any config (login.admit)."""
    try:
        return load_config(path, check_owner=check_owner), None
    except ConfigError as err:
        try:
            good = load_config(good_path(path), check_owner=check_owner)
        except ConfigError:
            raise err from None
        return good, err


def install_config(path: str, text: str) -> Config:
    """Validate `text`; if valid, install it as `path` and as its last-known-good copy,
    each by writing a temporary file in the same directory, fsync and rename (readers see
    the old file or the new one, never a part), then its lookup index (config_index).
    Root-owned, mode 0644. Raises ConfigError and changes nothing when `text` is
    invalid."""
    cfg = parse_config(text, path)
    for target in (path, good_path(path)):
        write_atomically(target, text.encode("utf-8"))
    from pam_jail.login.config_index import write_index

    try:   # logins read it instead of parsing the whole file (pam_jail/login/config_index.py)
        write_index(path, cfg)
    except (ConfigError, OSError):
        pass   # a missing or stale index only makes logins parse the file: never wrong
    return cfg


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """The one writer of a whole file on the host (jails.ini and its copies, the index,
    the sshd snippet, pam.d files, jailuser's records): a temporary file in the same
    directory (O_EXCL, O_NOFOLLOW), root:root `mode` when run as root, fsync, rename over
    `path`, fsync of the directory. A reader sees the old file or the new one, never a
    part. Raises ConfigError. (Files inside a jail are the builder's _Writer's: it also
    refuses links on the way.)"""
    directory = paths.dirname(path) or "."
    tmp = paths.join(directory, f".{paths.basename(path)}.{posix.getpid()}.tmp")
    try:
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
                        | posix.O_CLOEXEC, 0o600)
        try:
            posix.fchmod(fd, mode)
            if posix.geteuid() == 0:
                posix.fchown(fd, 0, 0)
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view):]
            posix.fsync(fd)
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
        dfd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            posix.fsync(dfd)
        finally:
            posix.close(dfd)
    except OSError as err:
        try:
            posix.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"write {path}: {err.strerror}") from None
