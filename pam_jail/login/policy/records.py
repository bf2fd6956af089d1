"""The limited shell's records and the small checks every part shares.

Policy (one lsh.ini section), LshConfig, Decision, PathFacts/FileFacts (the caller's view
of the jail's files), Refused, the built-in defaults and limits, the context a rule runs
in (_Ctx), and RULES: every rule's name, label and the module of the family that checks
it (decide imports that module when a command needs it).
"""

from __future__ import annotations

from pam_jail.login.errors import Denied
from pam_jail.login.paths import basename, normpath

# Start-up time matters here (the login path imports this package): no re, shlex,
# configobj, dataclasses or typing at run time. Type-only names come from here:
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PATH = "/usr/bin:/bin"
DEFAULT_UMASK = 0o077
DEFAULT_SHELL = "/bin/sh"
NO_SHELL = "/usr/sbin/nologin"  # SHELL for users who may not have a shell
DEFAULT_PATHS = ("%h",)
MAX_COMMAND = 131072  # characters; longer commands are refused
MAX_ENV_VALUE = 256  # characters of one client-supplied environment value


class Refused(Denied):
    """A command refused by the limited shell. `rule` names what decided."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class _Bad(Exception):
    """A rule's objection (internal); decide() turns it into a refusal."""


# --------------------------------------------------------------------------- data


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_LETTERS = _LOWER + _LOWER.upper()
_DIGIT_CHARS = "0123456789"


def _only(text: str, chars: str) -> bool:
    """True if every character of `text` is in `chars` (cheaper than a regex here)."""
    return all(c in chars for c in text)


def _is_name(text: str) -> bool:
    """An environment variable name: [A-Za-z_][A-Za-z0-9_]*."""
    return bool(text) and text[0] in _LETTERS + "_" and _only(text, _LETTERS + _DIGIT_CHARS + "_")


def _is_octal_umask(text: str) -> bool:
    return 1 <= len(text) <= 4 and _only(text, "01234567") and int(text, 8) <= 0o777


class _Record:
    """A small immutable record: equality and repr over its __slots__ (no dataclasses:
    they import inspect, ast and dis, about 15 ms of the login path)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values.pop(name))
        if values:
            raise TypeError(f"unknown fields {sorted(values)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Policy(_Record):
    """One section of lsh.ini, validated. Missing keys hold the built-in defaults."""

    __slots__ = ("name", "programs", "paths", "umask", "env", "pass_env", "allow_shell",
                 "shell", "path")
    name: str  # "user:alice", "group:sftp", "default" or "none"
    programs: tuple[tuple[str, str], ...]  # (absolute path, rule name), file order
    paths: tuple[str, ...]  # may hold %h (home), %u (user), %%
    umask: int
    env: tuple[tuple[str, str], ...]
    pass_env: tuple[str, ...]  # names, or prefixes ending in "*"
    allow_shell: bool
    shell: str
    path: str

    def __init__(self, name: str, programs: tuple[tuple[str, str], ...] = (),
                 paths: tuple[str, ...] = DEFAULT_PATHS, umask: int = DEFAULT_UMASK,
                 env: tuple[tuple[str, str], ...] = (), pass_env: tuple[str, ...] = (),
                 allow_shell: bool = False, shell: str = DEFAULT_SHELL,
                 path: str = DEFAULT_PATH) -> None:
        super().__init__(name=name, programs=programs, paths=paths, umask=umask, env=env,
                         pass_env=pass_env, allow_shell=allow_shell, shell=shell, path=path)

    def rule_for(self, program: str) -> str | None:
        """The rule bound to an absolute program path, or None if not allowed."""
        for prog, rule in self.programs:
            if prog == program:
                return rule
        return None

    def program_named(self, name: str) -> str | None:
        """The allowed program whose basename is `name` (what real clients send)."""
        for prog, _rule in self.programs:
            if basename(prog) == name:
                return prog
        return None


NO_POLICY = Policy(name="none")


class LshConfig(_Record):
    """A parsed, validated lsh.ini."""

    __slots__ = ("source", "default", "users", "groups")
    source: str
    default: Policy | None
    users: Mapping[str, Policy]
    groups: tuple[tuple[str, Policy], ...]  # file order: the first match wins

    def __init__(self, source: str, default: Policy | None = None,
                 users: Mapping[str, Policy] | None = None,
                 groups: tuple[tuple[str, Policy], ...] = ()) -> None:
        super().__init__(source=source, default=default, users=users or {}, groups=groups)


class Decision(_Record):
    """What the limited shell does with one command.

    If `allowed`, execve(argv[0], argv, env) after umask(umask); argv[0] is absolute.
    If refused, argv is () and env is {}; print `reason` (one line, ready to show).
    `rule` names what decided (for the log and for `pam-jail explain`); `policy` is
    the lsh.ini section that applied.
    """

    __slots__ = ("allowed", "argv", "env", "umask", "rule", "reason", "interactive",
                 "policy", "quiet")
    allowed: bool
    argv: tuple[str, ...]
    env: dict[str, str]
    umask: int
    rule: str
    reason: str
    interactive: bool
    policy: str
    quiet: bool  # a refused probe (rclone's md5sum, echo...): log at debug level

    def __init__(self, allowed: bool, argv: tuple[str, ...], env: dict[str, str], umask: int,
                 rule: str, reason: str, interactive: bool, policy: str = "none",
                 quiet: bool = False) -> None:
        super().__init__(allowed=allowed, argv=argv, env=env, umask=umask, rule=rule,
                         reason=reason, interactive=interactive, policy=policy, quiet=quiet)


class PathFacts(_Record):
    """What the caller saw at one path inside the jail, as the user, without following
    a symbolic link at the last component (lstat): the facts the repository rules need
    (docs/lsh.md, "Repositories: hooks and configuration")."""

    __slots__ = ("kind", "owned", "writable", "mode")
    kind: str  # dir, file, link, other, missing, or unknown (lstat failed otherwise)
    owned: bool  # owned by the user
    writable: bool  # the user may write it (access W_OK as the user)
    mode: int  # permission bits, st_mode & 0o7777

    def __init__(self, kind: str, owned: bool = False, writable: bool = False,
                 mode: int = 0) -> None:
        super().__init__(kind=kind, owned=owned, writable=writable, mode=mode)


MISSING = PathFacts("missing")


class FileFacts:
    """The caller's view of the file system, asked for by the rules that serve
    repositories (git, cvs, svnserve). The policy does no I/O: the caller implements
    this (pam_jail.login.lsh.JailFacts: lstat and access as the user, inside the jail)
    and a rule asks only about the paths it needs. Without it those rules refuse."""

    def stat(self, path: str) -> PathFacts:
        raise NotImplementedError

    def entries(self, path: str) -> tuple[str, ...]:
        """The names in a directory, sorted ('' entries never); () if unreadable."""
        raise NotImplementedError


# --------------------------------------------------------------------------- rule context


class _Ctx:
    """What a rule needs to know about the caller, and what it may change.

    A rule may set `argv` (the arguments after argv[0], rewritten: `~/` expanded, a
    repository path resolved, options forced) and add to `env` (set after the section's
    own `env`, so a section cannot undo them).
    """

    __slots__ = ("program", "home", "dirs", "facts", "extras", "argv", "env")

    def __init__(self, program: str, home: str, dirs: tuple[str, ...],
                 facts: FileFacts | None = None, extras: tuple[str, ...] = ()) -> None:
        self.program = program  # absolute path of the program being run
        self.home = home  # normalised absolute home
        self.dirs = dirs  # normalised absolute directories path arguments must stay in
        self.facts = facts  # the caller's view of the file system (repository rules)
        self.extras = extras  # options the administrator forces ([[rules]] PROG = RULE OPT...)
        self.argv: list[str] | None = None
        self.env: list[tuple[str, str]] = []


def _norm(path: str) -> str:
    out = normpath(path)
    if out.startswith("//"):  # normpath keeps a leading "//"
        out = "/" + out.lstrip("/")
    return out


# --------------------------------------------------------------------------- rules

# rule name -> (label used in Decision.rule, family module under pam_jail.login.policy
# that holds the checker ("": the package itself), checker function). decide imports the
# family module when a command needs it (pam-jail-shell holds them all: policy.held).
RULES: Mapping[str, tuple[str, str, str]] = {
    "scp": ("scp -t/-f", "scp", "_rule_scp"),
    "sftp-server": ("sftp-server", "sftp", "_rule_sftp"),
    "rsync": ("rsync --server", "rsync", "_rule_rsync"),
    "git": ("git service", "repos", "_rule_git"),
    "cvs": ("cvs server", "repos", "_rule_cvs"),
    "svnserve": ("svnserve -t", "repos", "_rule_svnserve"),
    "borg": ("borg serve", "borg", "_rule_borg"),
    "hg": ("hg serve --stdio", "hg", "_rule_hg"),
    "rdiff-backup": ("rdiff-backup server", "rdiff_backup", "_rule_rdiff_backup"),
    "unison": ("unison -server", "unison", "_rule_unison"),
    "hashsum": ("checksum of files", "probes", "_rule_hashsum"),
    "df": ("df of paths", "probes", "_rule_df"),
    "echo": ("echo words", "probes", "_rule_echo"),
    "none": ("no arguments", "", "_rule_none"),
    "any": ("unchecked arguments", "", "_rule_any"),
}

# --------------------------------------------------------------------------- python

# The programs of the borg, hg and rdiff-backup rules are Python scripts: each would import a
# `.pth` file from the user's site directory (~/.local/lib/python3.X/site-packages) at
# start-up: code the user uploads. Set after the section's `env`, for those rules.
PYTHON_PINS = (("PYTHONNOUSERSITE", "1"),)
