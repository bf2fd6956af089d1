"""jails.ini as a file: parse and validate it whole, load it (with its last-known-good
copy), install it, write files atomically.

The format and its records are pam_jail/login/config.py's (the keys and their types,
JailDef and Config, the INI reader); this module applies them to a whole file. A login
needs it only when jails.ini's lookup index cannot be used (pam_jail/login/config_index.py:
then it parses the file); the tools (validate, edit, jailuser, sshd-config...) always.
"""

from __future__ import annotations

import posix

from pam_jail.login import paths
from pam_jail.login.config import (
    _NAME_FORBIDDEN,
    BOOLEANS,
    DEFAULT_PATH,
    JAIL_KEYS,
    MAPPING_TYPE,
    OPTION_KEYS,
    SECTIONS,
    Config,
    JailDef,
    check_config_file,
    read_ini,
)
from pam_jail.login.errors import ConfigError
from pam_jail.login.limits import parse_size

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
