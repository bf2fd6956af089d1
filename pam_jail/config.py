"""Load and validate /etc/pam_jail/jails.ini (configobj + a validate spec).

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
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field

from pam_jail.errors import ConfigError

DEFAULT_PATH = "/etc/pam_jail/jails.ini"
MODES = ("pam", "shell", "sftp")

_SPEC = """
[jails]
  [[__many__]]
  root = string(min=2)
  mode = option('pam', 'shell', 'sftp', default='pam')
  allow_shell = boolean(default=False)
  devpts = boolean(default=True)
  proc = boolean(default=False)
  network = boolean(default=False)
  hostname = string(default='')
[users]
__many__ = string(min=1)
[groups]
__many__ = string(min=1)
[options]
default = string(default='')
unmapped = option('allow', 'deny', default='allow')
"""

_NAME_FORBIDDEN = set(" \t\n\r\0,*?!:/\\\"'")


@dataclass(frozen=True)
class JailDef:
    name: str
    root: str
    mode: str = "pam"
    allow_shell: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.options.get(key)
        return default if value is None else value == "yes"


@dataclass(frozen=True)
class Config:
    jails: dict[str, JailDef]
    users: dict[str, str]
    groups: dict[str, str]
    default: str | None = None
    unmapped: str = "allow"
    source: str = DEFAULT_PATH


def check_config_file(path: str) -> list[str]:
    """The file and every directory above it: root-owned, not group/other-writable."""
    from pam_jail.safety import check_path_chain

    problems = check_path_chain(posixpath.dirname(path) or "/")
    try:
        st = os.lstat(path)
    except OSError as err:
        return problems + [f"{path}: {err.strerror}"]
    if not stat.S_ISREG(st.st_mode):
        problems.append(f"{path}: not a regular file")
    if st.st_uid != 0:
        problems.append(f"{path}: owned by uid {st.st_uid}, not root")
    if st.st_mode & 0o022:
        problems.append(f"{path}: writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})")
    return problems


def _valid_name(name: str) -> bool:
    return bool(name) and not (set(name) & _NAME_FORBIDDEN) and not name.startswith("-")


def parse_config(lines: list[str], source: str = DEFAULT_PATH) -> Config:
    """Parse and validate the text of jails.ini. Pure: no file access."""
    from configobj import ConfigObj, ConfigObjError, flatten_errors  # noqa: I001
    from validate import Validator

    try:
        raw = ConfigObj(lines, configspec=_SPEC.splitlines(), list_values=True,
                        interpolation=False, file_error=False, raise_errors=False)
    except ConfigObjError as err:
        details = [str(e) for e in getattr(err, "errors", [])] or [str(err)]
        raise ConfigError(f"parse {source}: invalid syntax", problems=details) from None
    result = raw.validate(Validator(), preserve_errors=True)
    problems: list[str] = []
    if result is not True:
        for sections, key, error in flatten_errors(raw, result):
            where = "/".join([*sections, key or ""]).rstrip("/")
            problems.append(f"{where}: {error or 'missing'}")
    known = {"jails", "users", "groups", "options"}
    problems += [f"unknown section [{s}]" for s in raw.sections if s not in known]

    jails: dict[str, JailDef] = {}
    for name in raw.get("jails", {}).sections if "jails" in raw else []:
        sect = raw["jails"][name]
        if not _valid_name(name):
            problems.append(f"jails/{name}: invalid jail name")
            continue
        root = sect.get("root")
        if not isinstance(root, str):
            continue
        if not root.startswith("/") or posixpath.normpath(root) != root.rstrip("/") or root == "/":
            problems.append(f"jails/{name}/root: must be an absolute normalised path, not '/'"
                            f" (got {root!r})")
            continue
        extra = set(sect.scalars) - {"root", "mode", "allow_shell", "devpts", "proc",
                                      "network", "hostname"}
        problems += [f"jails/{name}/{k}: unknown key" for k in sorted(extra)]
        options = {k: ("yes" if v is True else "no" if v is False else str(v))
                   for k, v in sect.items() if k not in ("root", "mode", "allow_shell")}
        jails[name] = JailDef(name=name, root=root.rstrip("/"), mode=str(sect["mode"]),
                              allow_shell=bool(sect["allow_shell"]), options=options)

    def mapping(section: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in (raw.get(section) or {}).items():
            if not isinstance(value, str):
                problems.append(f"{section}/{key}: must be a single jail name")
            elif not _valid_name(key):
                problems.append(f"{section}/{key}: invalid {section[:-1]} name")
            elif value not in jails:
                problems.append(f"{section}/{key}: unknown jail '{value}'")
            else:
                out[key] = value
        return out

    users = mapping("users")
    groups = mapping("groups")
    opts = raw.get("options") or {}
    default = str(opts.get("default") or "") or None
    if default is not None and default not in jails:
        problems.append(f"options/default: unknown jail '{default}'")
    if "root" in users:
        problems.append("users/root: root cannot be jailed (pam_jail never runs root in a jail)")
    if problems:
        raise ConfigError(f"load {source}: {len(problems)} problem(s)", problems=problems,
                          hint="fix the file; every login of a mapped user is refused until then")
    return Config(jails=jails, users=users, groups=groups, default=default,
                  unmapped=str(opts.get("unmapped", "allow")), source=source)


def load_config(path: str = DEFAULT_PATH, *, check_owner: bool = True) -> Config:
    """Read, check ownership of, and parse the config file. Raises ConfigError."""
    if check_owner:
        problems = check_config_file(path)
        if problems:
            raise ConfigError(f"load {path}: unsafe config file", problems=problems,
                              hint="chown root:root and chmod go-w the file and its directories")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"read {path}: {err}") from None
    return parse_config(lines, path)
