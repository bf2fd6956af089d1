"""The limited shell's allow-list: parse lsh.ini, pick a policy, decide one command.

Pure: no file I/O, no syscalls, no subprocess. The caller (already inside the jail, as
the user) reads JAIL/etc/pam_jail/lsh.ini, passes its text to `parse_lsh`, picks the
user's section with `select_policy`, and for the command sshd passed after `-c` calls
`decide`. If `Decision.allowed`, it sets `Decision.umask`, chdirs to the user's home
and execve()s `Decision.argv[0]` with exactly `Decision.argv` and `Decision.env`.
No shell is ever involved: `split_command` reads quotes like a POSIX shell and
nothing else (no expansion of any kind, no globbing, no `;`, `|`, `&&`, `$(...)`).

The file format and the built-in argument rules are documented in docs/lsh.md.
"""

from __future__ import annotations

import posixpath

from pam_jail.config import read_ini
from pam_jail.errors import ConfigError, Denied

# Start-up time matters here (the login path imports this module): no re, shlex,
# configobj, dataclasses or typing at run time. Type-only names come from here:
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "Decision",
    "FileFacts",
    "PathFacts",
    "LshConfig",
    "Policy",
    "Refused",
    "RULES",
    "RULE_ENV",
    "decide",
    "parse_lsh",
    "select_policy",
    "split_command",
]

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
            if posixpath.basename(prog) == name:
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
    this (pam_jail.shell_entry.JailFacts: lstat and access as the user, inside the jail)
    and a rule asks only about the paths it needs. Without it those rules refuse."""

    def stat(self, path: str) -> PathFacts:
        raise NotImplementedError

    def entries(self, path: str) -> tuple[str, ...]:
        """The names in a directory, sorted ('' entries never); () if unreadable."""
        raise NotImplementedError


# --------------------------------------------------------------------------- parsing


def _show(text: str, limit: int = 60) -> str:
    """A client-controlled string made safe and short for a message."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable() and text.isascii() and " " not in text and text:
        return text
    return ascii(text)


def _control_char(text: str) -> int:
    """Index of the first C0/C1 control character or DEL in `text`, or -1."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if code < 32 or 127 <= code < 160:
            return i
    return -1


def split_command(command: str) -> list[str]:
    """Split the `-c` string into argv the way a POSIX shell reads quotes, and no more.

    Quotes and backslashes group and escape (shlex, POSIX mode); `#`, `;`, `|`, `&`,
    `$`, backticks, `*`, `~` and the like are plain characters. Refused: an empty
    command, any control character (C0, DEL, C1: this covers NUL, tab and newline),
    unbalanced quotes, a trailing backslash, more than MAX_COMMAND characters.
    """
    rule = "parse"
    if len(command) > MAX_COMMAND:
        raise Refused(f"command longer than {MAX_COMMAND} characters", rule)
    bad = _control_char(command)
    if bad >= 0:
        raise Refused(
            f"control character {ord(command[bad]):#04x} at offset {bad} in the command", rule
        )
    try:
        argv = _posix_words(command)
    except ValueError as err:  # "No closing quotation", "No escaped character"
        raise Refused(f"cannot parse the command: {str(err).lower()}", rule) from None
    if not argv:
        raise Refused("empty command", rule)
    return argv


_WHITESPACE = " \t\r\n"


def _posix_words(text: str) -> list[str]:
    """Exactly `list(shlex.shlex(text, posix=True, punctuation_chars=False))` with
    whitespace_split = True and no commenters (tests compare the two on many inputs),
    without importing shlex and re (about 4 ms at start-up). Raises ValueError."""
    words: list[str] = []
    token: list[str] = []
    in_word = False  # a word has started (it may still be empty: '' or "")
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch in _WHITESPACE:
            if in_word:
                words.append("".join(token))
                token, in_word = [], False
        elif ch == "\\":
            if i >= n:
                raise ValueError("No escaped character")
            token.append(text[i])
            i += 1
            in_word = True
        elif ch == "'":
            end = text.find("'", i)
            if end < 0:
                raise ValueError("No closing quotation")
            token.append(text[i:end])
            i = end + 1
            in_word = True
        elif ch == '"':
            while True:
                if i >= n:
                    raise ValueError("No closing quotation")
                ch = text[i]
                i += 1
                if ch == '"':
                    break
                if ch == "\\":
                    if i >= n:
                        raise ValueError("No escaped character")
                    nxt = text[i]
                    i += 1
                    if nxt not in '"\\':
                        token.append("\\")
                    token.append(nxt)
                else:
                    token.append(ch)
            in_word = True
        else:
            token.append(ch)
            in_word = True
    if in_word:
        words.append("".join(token))
    return words


# --------------------------------------------------------------------------- paths


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
    out = posixpath.normpath(path)
    if out.startswith("//"):  # normpath keeps a leading "//"
        out = "/" + out.lstrip("/")
    return out


def _inside(path: str, dirs: Sequence[str]) -> bool:
    return any(d == "/" or path == d or path.startswith(d + "/") for d in dirs)


def _check_path(arg: str, ctx: _Ctx, what: str = "path") -> str:
    """A path argument must name something inside the allowed directories.

    Lexical only: `..` components are refused outright, relative paths are taken
    relative to the home directory, `~` is an ordinary character. Symlinks the user
    made are not followed here: the jail is the boundary, `paths` narrows the shape.
    """
    if not arg:
        raise _Bad(f"{what}: empty path")
    if arg.startswith("-"):
        raise _Bad(f"{what} {_show(arg)}: a path may not start with '-'")
    if ".." in arg.split("/"):
        raise _Bad(f"{what} {_show(arg)}: '..' is not allowed in paths")
    full = _norm(arg if arg.startswith("/") else ctx.home + "/" + arg)
    if not _inside(full, ctx.dirs):
        raise _Bad(f"{what} {_show(arg)}: outside the allowed directories")
    return full


def _tilde(arg: str, ctx: _Ctx) -> str:
    """A leading `~` or `~/` made the home, as the shell on an unjailed host would do
    (`scp host:~/x`, `rsync host:~/x` send it unexpanded); `~user` is refused."""
    if arg == "~" or arg.startswith("~/"):
        return ctx.home + arg[1:]
    if arg.startswith("~"):
        raise _Bad(f"path {_show(arg)}: '~user' paths are not allowed")
    return arg


def _path_value(what: str) -> Callable[[str, _Ctx], None]:
    def check(value: str, ctx: _Ctx) -> None:
        _check_path(value, ctx, what)

    return check


# --------------------------------------------------------------------------- options

if TYPE_CHECKING:
    _Check = Callable[[str, _Ctx], None]


def _any_value(value: str, ctx: _Ctx) -> None:
    """An option value that names no file and runs nothing."""


class _Spec:
    """getopt/popt-like option table of one program's server side."""

    __slots__ = ("flags", "valued", "long_flags", "long_valued", "dashdash")

    def __init__(
        self,
        flags: str = "",
        valued: Mapping[str, _Check] | None = None,
        long_flags: frozenset[str] = frozenset(),
        long_valued: Mapping[str, _Check] | None = None,
        dashdash: bool = False,
    ) -> None:
        self.flags = flags  # short options without a value
        self.valued = valued or {}  # short options with a value -> value check
        self.long_flags = long_flags
        self.long_valued = long_valued or {}
        self.dashdash = dashdash  # accept a "--" token (checking goes on after it)


class _Scan:
    __slots__ = ("options", "spots", "positional", "where")

    def __init__(self) -> None:
        self.options: list[tuple[str, str | None]] = []  # ("-t", None), ("-l", "INFO")
        # for each option: (index of the argument that holds its value, the text before
        # the value in that argument: "--link-dest=", "-B" or ""); (-1, "") for a flag
        self.spots: list[tuple[int, str]] = []
        self.positional: list[str] = []
        self.where: list[int] = []  # index of each positional in the scanned arguments


def _next_value(args: Sequence[str], i: int, option: str) -> tuple[str, int]:
    """An option's value given as the next argument; it may not look like an option."""
    if i >= len(args) or args[i].startswith("-"):
        raise _Bad(f"option {option} needs a value")
    return args[i], i + 1


def _scan(args: Sequence[str], spec: _Spec, ctx: _Ctx) -> _Scan:
    """Classify every argument as an allowed option (value checked) or a positional.

    Options are recognised anywhere (GNU getopt and popt permute), combined short
    options are unpacked (`-vS prog`, `-6e prog`, `-lVERBOSE`), long options are read
    with and without `=`. A value in the next argument may not start with '-'.
    `--` is accepted only where the real client sends it and ends nothing: a later
    argument that starts with '-' is still refused (as an option or as a path).
    """
    out = _Scan()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if not spec.dashdash:
                raise _Bad("'--' is not allowed")
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in spec.long_flags:
                if eq:
                    raise _Bad(f"option --{_show(name)} takes no value")
                out.options.append(("--" + name, None))
                out.spots.append((-1, ""))
                continue
            lcheck = spec.long_valued.get(name)
            if lcheck is None:
                raise _Bad(f"option --{_show(name)} is not allowed")
            prefix = f"--{name}="
            if not eq:
                value, i = _next_value(args, i, f"--{_show(name)}")
                prefix = ""
            lcheck(value, ctx)
            out.options.append(("--" + name, value))
            out.spots.append((i - 1, prefix))
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                if letter in spec.flags:
                    out.options.append(("-" + letter, None))
                    out.spots.append((-1, ""))
                    continue
                scheck = spec.valued.get(letter)
                if scheck is None:
                    raise _Bad(f"option -{_show(letter)} is not allowed")
                value, prefix = arg[j:], arg[:j]
                if not value:
                    value, i = _next_value(args, i, f"-{_show(letter)}")
                    prefix = ""
                scheck(value, ctx)
                out.options.append(("-" + letter, value))
                out.spots.append((i - 1, prefix))
                break
            continue
        out.positional.append(arg)
        out.where.append(i - 1)
    return out


def _has(scan: _Scan, *names: str) -> bool:
    return any(opt in names for opt, _value in scan.options)


def _value_of(scan: _Scan, *names: str) -> str | None:
    """The value of the last of these options given, or None."""
    found = None
    for opt, value in scan.options:
        if opt in names:
            found = value
    return found


def _with_paths(args: Sequence[str], scan: _Scan, ctx: _Ctx, first: int = 0) -> list[str]:
    """`args` with each positional from index `first` of the scan `~`-expanded and
    checked against the allowed directories."""
    out = list(args)
    for at, arg in zip(scan.where[first:], scan.positional[first:], strict=True):
        out[at] = _tilde(arg, ctx)
        _check_path(out[at], ctx)
    return out


# --------------------------------------------------------------------------- rules


def _rule_none(argv: Sequence[str], ctx: _Ctx) -> None:
    if len(argv) > 1:
        raise _Bad("no arguments are allowed")


def _rule_any(argv: Sequence[str], ctx: _Ctx) -> None:
    """Unchecked: the administrator chose to trust every argument."""


_SCP = _Spec(flags="rpdvqTtf", dashdash=True)


def _rule_scp(argv: Sequence[str], ctx: _Ctx) -> None:
    """scp's server side: `scp [-r] [-p] [-d] [-v] [-q] [-T] -t|-f [--] PATH...`.

    -t (upload) takes one path, -f (download) one or more. A ':' before the first
    '/' is refused (it would read as host:path to an scp client). A leading `~/` is
    made the home (`scp -O host:~/x`).
    """
    args = argv[1:]
    scan = _scan(args, _SCP, ctx)
    sink, source = _has(scan, "-t"), _has(scan, "-f")
    if sink == source:
        raise _Bad("exactly one of -t (upload) or -f (download) is required")
    if sink and len(scan.positional) != 1:
        raise _Bad("-t takes exactly one path")
    if source and not scan.positional:
        raise _Bad("-f needs at least one path")
    for arg in scan.positional:
        if ":" in arg.split("/", 1)[0]:
            raise _Bad(f"path {_show(arg)}: host:path arguments are not allowed")
    ctx.argv = _with_paths(args, scan, ctx)


_LOG_LEVELS = _names("QUIET FATAL ERROR INFO VERBOSE DEBUG DEBUG1 DEBUG2 DEBUG3")
_FACILITIES = _names(
    "DAEMON USER AUTH AUTHPRIV LOCAL0 LOCAL1 LOCAL2 LOCAL3 LOCAL4 LOCAL5 LOCAL6 LOCAL7"
)
_REQUEST_CHARS = _LOWER + _DIGIT_CHARS + "@._-"


def _sftp_level(value: str, ctx: _Ctx) -> None:
    if value.upper() not in _LOG_LEVELS:
        raise _Bad(f"-l {_show(value)}: not a log level")


def _sftp_facility(value: str, ctx: _Ctx) -> None:
    if value.upper() not in _FACILITIES:
        raise _Bad(f"-f {_show(value)}: not a syslog facility")


def _sftp_umask(value: str, ctx: _Ctx) -> None:
    if not _is_octal_umask(value):
        raise _Bad(f"-u {_show(value)}: not an octal umask")


def _sftp_requests(value: str, ctx: _Ctx) -> None:
    if not all(name and _only(name, _REQUEST_CHARS) for name in value.split(",")):
        raise _Bad(f"-p/-P {_show(value)}: not a comma-separated list of request names")


def _sftp_dir(value: str, ctx: _Ctx) -> None:
    if "%" in value or value.startswith("~"):
        raise _Bad(f"-d {_show(value)}: '%' tokens and '~' are not allowed")
    _check_path(value, ctx, "-d")


_SFTP = _Spec(
    flags="eR",
    valued={
        "l": _sftp_level,
        "f": _sftp_facility,
        "u": _sftp_umask,
        "d": _sftp_dir,
        "p": _sftp_requests,
        "P": _sftp_requests,
    },
)


def _rule_sftp(argv: Sequence[str], ctx: _Ctx) -> None:
    """sftp-server: -e -R -l LEVEL -f FACILITY -u UMASK -d DIR -p/-P NAMES; no operands."""
    scan = _scan(argv[1:], _SFTP, ctx)
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")




def _rsync_caps(value: str, ctx: _Ctx) -> None:
    # `-e.LsfxCIvu`: with --server, -e carries rsync's protocol capability letters.
    if not (value.startswith(".") and _only(value[1:], _LETTERS)):
        raise _Bad(f"-e {_show(value)}: only rsync's '.xxx' capability string is allowed")


def _rsync_number(value: str, ctx: _Ctx) -> None:
    digits = value[1:] if value.startswith("-") else value
    if not (digits and _only(digits, _DIGIT_CHARS)):
        raise _Bad(f"option value {_show(value)}: not a number")


def _rsync_path_later(value: str, ctx: _Ctx) -> None:
    """A path-valued rsync option: checked and rewritten by `_rsync_paths` once the
    destination is known (every option named in _RSYNC_PATHS)."""


def _rsync_suffix(value: str, ctx: _Ctx) -> None:
    if "/" in value:
        raise _Bad(f"--suffix {_show(value)}: may not contain '/'")


# Short options rsync's client sends to a server (rrsync's list), minus `s`
# (--protect-args/--secluded-args: the real arguments would then arrive over the
# protocol, unchecked). `e`, `B` and `@` carry values.
_RSYNC_SHORT = "ACDEHIJKLNORSUWXbcdgklmnopqrtuvxyz"
_RSYNC_LONG_FLAGS = _names(
    """append copy-unsafe-links delay-updates delete delete-after delete-before
    delete-delay delete-during delete-excluded delete-missing-args existing fake-super
    force from0 fsync fuzzy group hard-links ignore-errors ignore-existing
    ignore-missing-args ignore-times inplace links list-only mkpath msgs2stderr
    munge-links new-compress no-W no-implied-dirs no-msgs2stderr no-r no-relative
    no-specials numeric-ids old-compress one-file-system open-noatime owner partial
    perms preallocate recursive remove-sent-files remove-source-files safe-links sender
    size-only sparse specials stats super times use-qsort"""
)
_RSYNC_LONG_VALUED: dict[str, _Check] = {
    # values that name no file and run nothing
    "block-size": _any_value,
    "bwlimit": _any_value,
    "checksum-choice": _any_value,
    "checksum-seed": _rsync_number,
    "compress-choice": _any_value,
    "compress-level": _rsync_number,
    "compress-threads": _rsync_number,
    "debug": _any_value,
    "groupmap": _any_value,
    "iconv": _any_value,
    "info": _any_value,
    "log-format": _any_value,
    "max-alloc": _any_value,
    "max-delete": _rsync_number,
    "max-size": _any_value,
    "min-size": _any_value,
    "modify-window": _rsync_number,
    "skip-compress": _any_value,
    "stderr": _any_value,
    "suffix": _rsync_suffix,
    "timeout": _rsync_number,
    "usermap": _any_value,
    # paths: checked (and `~` expanded) by _rsync_paths, below
    "backup-dir": _rsync_path_later,
    "compare-dest": _rsync_path_later,
    "copy-dest": _rsync_path_later,
    "link-dest": _rsync_path_later,
    "partial-dir": _rsync_path_later,
    "temp-dir": _rsync_path_later,
    "files-from": _rsync_path_later,
}
# Every path-valued option, and how rsync's receiver reads a relative value:
# "dest": against the destination directory (rsync chdirs into it; snapshot scripts
# write `--link-dest=../s1`), resolved here and sent absolute, '..' allowed when the
# result stays inside `paths`; "home": checked against the home with '..' refused (its
# resolution by rsync, under the destination or per file, then stays inside too).
# A leading `~` or `~/` is the home for all of them, as for the operands.
_RSYNC_PATHS = {
    "--backup-dir": "home",
    "--partial-dir": "home",
    "--temp-dir": "home",
    "--files-from": "home",      # `-`: the list comes over the protocol (needs --from0)
    "--compare-dest": "dest",
    "--copy-dest": "dest",
    "--link-dest": "dest",
}
# Not listed, hence refused: --rsh/-e COMMAND, --rsync-path, --daemon, --config,
# --write-batch, --read-batch, --only-write-batch, --log-file, --log-file-format,
# --exclude-from, --include-from, --filter/-f, -F, --remote-option/-M,
# --protect-args/--secluded-args/-s, --copy-devices, --write-devices, --no-munge-links,
# --chmod, --chown, --server (again), and anything else.
_RSYNC = _Spec(
    flags=_RSYNC_SHORT,
    valued={"e": _rsync_caps, "B": _rsync_number, "@": _rsync_number},
    long_flags=_RSYNC_LONG_FLAGS,
    long_valued=_RSYNC_LONG_VALUED,
)


def _rsync_path(option: str, value: str, base: str | None, ctx: _Ctx) -> str:
    """The value rsync gets for a path-valued option: `~` made the home; relative
    against `base` (the checked destination directory) when given, sent absolute."""
    if option == "--files-from" and value == "-":
        return value
    value = _tilde(value, ctx)
    if base is None or value.startswith("/"):
        _check_path(value, ctx, option)
        return value
    if not value or value.startswith("-"):
        raise _Bad(f"{option} {_show(value)}: not a path")
    full = _norm(base + "/" + value)
    if not _inside(full, ctx.dirs):
        raise _Bad(f"{option} {_show(value)}: outside the allowed directories (against "
                   f"the destination it is {_show(full)})")
    return full


def _rule_rsync(argv: Sequence[str], ctx: _Ctx) -> None:
    """`rsync --server [--sender] OPTIONS . PATH...` as an rsync client sends it."""
    if len(argv) < 2 or argv[1] != "--server":
        raise _Bad("only 'rsync --server ...' (what an rsync client sends) is allowed")
    args = argv[2:]
    scan = _scan(args, _RSYNC, ctx)
    if not scan.positional or scan.positional[0] != ".":
        raise _Bad("the first operand must be '.'")
    sender = _has(scan, "--sender")
    if not sender and len(scan.positional) > 2:
        raise _Bad("an upload takes at most one destination")
    files_from = _value_of(scan, "--files-from")
    if files_from == "-" and not _has(scan, "--from0"):
        raise _Bad("--files-from=- (the list over the protocol) needs --from0")
    out = _with_paths(args, scan, ctx, first=1)
    # the receiver's directory: its destination operand (none: the home it starts in)
    dest = None if sender else _check_path(
        _tilde(scan.positional[1], ctx) if len(scan.positional) > 1 else ".", ctx)
    for (option, value), (at, prefix) in zip(scan.options, scan.spots, strict=True):
        how = _RSYNC_PATHS.get(option)
        if how is None or value is None:
            continue
        out[at] = prefix + _rsync_path(option, value, dest if how == "dest" else None, ctx)
    ctx.argv = [argv[1], *out]


# --------------------------------------------------------------------------- repositories
#
# git, cvs and svnserve run programs named by files in the repository (git hooks/ and
# config, cvs CVSROOT/loginfo and friends, svnserve hooks/): a repository the user can
# write, or could swap for one, runs the user's code past the allow-list. These rules
# ask the caller's FileFacts and refuse unless every directory from / down to the
# repository and the repository's hook and config files are neither the user's nor
# writable by the user (a sticky directory such as /tmp may be writable: then only the
# entry below it must not be the user's). A symbolic link anywhere on that way is
# refused too: the checked path is then the path the program opens.


def _facts(ctx: _Ctx) -> FileFacts:
    if ctx.facts is None:
        raise _Bad("cannot check the repository (no file facts; this is a bug in the caller)")
    return ctx.facts


def _user_controlled(f: PathFacts) -> str | None:
    if f.kind == "unknown":
        return "cannot be examined"
    if f.owned:
        return "is owned by the user"
    if f.writable:
        return "is writable by the user"
    return None


def _trusted(facts: FileFacts, path: str, what: str, kind: str = "dir",
             may_miss: bool = False) -> bool:
    """`path` is of `kind` and neither the user's nor writable by the user. False if it
    is missing and `may_miss`."""
    f = facts.stat(path)
    if f.kind == "missing" and may_miss:
        return False
    if f.kind != kind:
        found = {"missing": "does not exist", "link": "is a symbolic link"}.get(
            f.kind, f"is not a {'directory' if kind == 'dir' else 'regular file'}")
        raise _Bad(f"{what} {_show(path)} {found}")
    problem = _user_controlled(f)
    if problem:
        raise _Bad(f"{what} {_show(path)} {problem}: its hooks and configuration would run "
                   "as the user")
    return True


def _trusted_way(facts: FileFacts, path: str, what: str) -> None:
    """Every directory from / down to the parent of `path`: a directory, not the
    user's, and not writable by the user unless sticky (then `path` must not be the
    user's, which its own check sees)."""
    parts = [p for p in path.split("/") if p]
    at = "/"
    for part in parts:
        f = facts.stat(at)
        if f.kind != "dir":
            raise _Bad(f"{what}: {_show(at)} on the way to it is not a directory")
        if f.kind == "unknown" or f.owned or (f.writable and not f.mode & 0o1000):
            raise _Bad(f"{what}: {_show(at)} on the way to it is the user's or writable "
                       "by the user (the repository could be replaced)")
        at = at.rstrip("/") + "/" + part


_GIT_SERVICES = frozenset({"git-upload-pack", "git-receive-pack", "git-upload-archive"})
# git's enter_repo() tries PATH/.git, PATH, PATH.git/.git, PATH.git, in this order.
_GIT_SUFFIXES = ("/.git", "", ".git/.git", ".git")
# Set for every git service (GIT_CONFIG_COUNT: git's command scope, above every file but
# below `git -c`, which no client can pass): no hooks, no file system monitor, no ssh;
# safe.directory names the one repository checked (git 2.39 matches whole paths only).
GIT_PINS = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.sshCommand", "false"),
)


def _git_path(arg: str, ctx: _Ctx) -> str:
    # git's enter_repo() expands "~/" and "~user/" itself: check what git will open.
    return _check_path(_tilde(arg, ctx), ctx)


def _is_git_dir(facts: FileFacts, path: str) -> bool:
    """git's is_git_directory(), from the facts: objects/ and refs/ directories and a
    HEAD (a file, or a symbolic link in old repositories)."""
    return (facts.stat(path + "/objects").kind == "dir"
            and facts.stat(path + "/refs").kind == "dir"
            and facts.stat(path + "/HEAD").kind in ("file", "link"))


def _git_repository(path: str, ctx: _Ctx) -> str:
    """The repository git would serve for `path` (absolute, normalised), checked."""
    facts = _facts(ctx)
    chosen = None
    for suffix in _GIT_SUFFIXES:
        candidate = path + suffix
        f = facts.stat(candidate)
        if f.kind == "missing":
            continue
        if f.kind != "dir":
            raise _Bad(f"repository {_show(candidate)}: only a repository directory is "
                       "served (no symbolic link, no .git file)")
        if _is_git_dir(facts, candidate):
            chosen = candidate
            break
    if chosen is None:
        raise _Bad(f"path {_show(path)}: not a git repository")
    _check_path(chosen, ctx)
    # git is given `chosen` and tries chosen/.git first, then chosen: nothing else
    for shadow in (chosen + "/.git", chosen + ".git/.git", chosen + ".git"):
        if facts.stat(shadow).kind != "missing":
            raise _Bad(f"repository {_show(chosen)}: {_show(shadow)} exists too; which "
                       "one git serves would be ambiguous")
    what = "repository"
    _trusted_way(facts, chosen, f"{what} {_show(chosen)}")
    # A push to the branch HEAD names creates HEAD.lock in the repository directory, so
    # a shared repository's directory may be group-writable if it is sticky (chmod 3775:
    # nobody removes or renames what is not theirs). It must then hold its config (else
    # the user could create one); commondir is overridden by GIT_COMMON_DIR below.
    top = facts.stat(chosen)
    shared = top.kind == "dir" and top.writable and not top.owned and bool(top.mode & 0o1000)
    if not shared:
        _trusted(facts, chosen, what)
    _trusted(facts, chosen + "/config", what + " config", "file", may_miss=not shared)
    _trusted(facts, chosen + "/config.worktree", what + " config", "file", may_miss=True)
    _trusted(facts, chosen + "/hooks", what + " hooks", may_miss=True)
    if facts.stat(chosen + "/commondir").kind != "missing":
        raise _Bad(f"repository {_show(chosen)}: a linked worktree (commondir) is not served")
    _trusted(facts, "/etc/gitconfig", "git system config", "file", may_miss=True)
    return chosen


# The administrator's git hooks for every repository of the jail (post-receive: deploy,
# notify): run by git as the user, inside the jail. Used only when the directory, every
# directory on the way to it and every file in it are neither the user's nor writable by
# the user (the repository rule): else the push is refused. No directory: no hooks.
GIT_ADMIN_HOOKS = "/etc/pam_jail/hooks/git"


def _git_admin_hooks(ctx: _Ctx) -> str:
    """core.hooksPath for this push: the administrator's hooks, or /dev/null (none). A
    repository's own hooks/ never run: hooksPath replaces it."""
    facts = _facts(ctx)
    if facts.stat(GIT_ADMIN_HOOKS).kind == "missing":
        return "/dev/null"
    what = f"admin git hooks {GIT_ADMIN_HOOKS}"
    _trusted_way(facts, GIT_ADMIN_HOOKS, what)
    _trusted(facts, GIT_ADMIN_HOOKS, "admin git hooks")
    for name in facts.entries(GIT_ADMIN_HOOKS):
        _trusted(facts, f"{GIT_ADMIN_HOOKS}/{name}", "admin git hook", "file")
    return GIT_ADMIN_HOOKS


def _rule_git(argv: Sequence[str], ctx: _Ctx) -> None:
    """`git-upload-pack PATH` (also receive-pack, upload-archive) or `git upload-pack PATH`.

    PATH (`~/` expanded as git does) must resolve, the way git resolves it, to a
    repository directory inside the allowed paths that the user can neither write nor
    swap; git is then given that absolute directory, with hooks and the like pinned off
    (GIT_PINS) and safe.directory naming it.
    """
    args = list(argv[1:])
    service: list[str] = []
    if posixpath.basename(ctx.program) == "git":
        if not args or "git-" + args[0] not in _GIT_SERVICES:
            raise _Bad("only 'git upload-pack|receive-pack|upload-archive PATH' is allowed")
        service, args = args[:1], args[1:]
    if len(args) != 1:
        raise _Bad("exactly one repository path is required")
    repo = _git_repository(_git_path(args[0], ctx), ctx)
    ctx.argv = [*service, repo]
    ctx.env.append(("GIT_COMMON_DIR", repo))  # never a commondir file's say
    pins = (("core.hooksPath", _git_admin_hooks(ctx)), *GIT_PINS[1:],
            ("safe.directory", repo))
    ctx.env.append(("GIT_CONFIG_COUNT", str(len(pins))))
    for i, (key, value) in enumerate(pins):
        ctx.env += [(f"GIT_CONFIG_KEY_{i}", key), (f"GIT_CONFIG_VALUE_{i}", value)]


# cvs runs what these CVSROOT files name (and `modules` -i/-o/-e/-t programs).
_CVS_ADMIN_FILES = (
    "checkoutlist", "commitinfo", "config", "cvswrappers", "editinfo", "loginfo", "modules",
    "notify", "postadmin", "postproxy", "posttag", "postwatch", "preproxy", "rcsinfo",
    "taginfo", "verifymsg",
)


def _cvs_root_problem(root: str, ctx: _Ctx) -> str | None:
    """None if `root` is a CVS repository the user can neither write nor swap."""
    facts = _facts(ctx)
    try:
        _trusted_way(facts, root, f"cvs repository {_show(root)}")
        _trusted(facts, root, "cvs repository")
        _trusted(facts, root + "/CVSROOT", "cvs repository")
        for name in _CVS_ADMIN_FILES:
            _trusted(facts, f"{root}/CVSROOT/{name}", "cvs administrative file", "file",
                     may_miss=True)
    except _Bad as err:
        return str(err)
    return None


def _rule_cvs(argv: Sequence[str], ctx: _Ctx) -> None:
    """`cvs server`, run as `cvs --allow-root=ROOT... server`: the client names its
    repository in the protocol, so cvs is told which ones it may open: each allowed
    directory that holds a CVSROOT/ the user can neither write nor swap."""
    if list(argv[1:]) != ["server"]:
        raise _Bad("only 'cvs server' is allowed")
    facts = _facts(ctx)
    roots: list[str] = []
    problems: list[str] = []
    for root in ctx.dirs:
        if facts.stat(root.rstrip("/") + "/CVSROOT").kind == "missing":
            continue
        problem = _cvs_root_problem(root, ctx)
        if problem:
            problems.append(problem)
        else:
            roots.append(root)
    if not roots:
        raise _Bad(problems[0] if problems else
                   "no cvs repository (a directory with CVSROOT/) in the allowed paths")
    ctx.argv = [*(f"--allow-root={r}" for r in roots), "server"]


_SVNSERVE = _Spec(
    flags="tR",
    valued={"r": _path_value("--root")},
    long_flags=frozenset({"tunnel", "read-only"}),
    long_valued={"root": _path_value("--root"), "log-file": _path_value("--log-file")},
)
_SVN_CONF_FILES = ("svnserve.conf", "passwd", "authz", "hooks-env")


def _svn_repository(repo: str, ctx: _Ctx) -> None:
    """A repository svnserve may open: it, its hooks and conf are not the user's."""
    facts = _facts(ctx)
    _trusted(facts, repo, "svn repository")
    if _trusted(facts, repo + "/hooks", "svn hooks", may_miss=True):
        for name in facts.entries(repo + "/hooks"):
            _trusted(facts, f"{repo}/hooks/{name}", "svn hook", "file")
    if _trusted(facts, repo + "/conf", "svn conf", may_miss=True):
        for name in _SVN_CONF_FILES:
            _trusted(facts, f"{repo}/conf/{name}", "svn conf", "file", may_miss=True)


def _is_svn_repository(facts: FileFacts, path: str) -> bool:
    return facts.stat(path + "/format").kind == "file" and facts.stat(path + "/db").kind == "dir"


def _rule_svnserve(argv: Sequence[str], ctx: _Ctx) -> None:
    """`svnserve -t [-r|--root DIR] [--log-file FILE] [-R|--read-only]`, run with a
    root: the client's -r inside `paths`, else the first allowed directory. The root
    (a repository, or a directory of repositories) and every repository directly in
    it must not be the user's nor writable by the user, nor their hooks and conf."""
    args = list(argv[1:])
    scan = _scan(args, _SVNSERVE, ctx)
    if not _has(scan, "-t", "--tunnel"):
        raise _Bad("only tunnel mode (-t) is allowed")
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")
    facts = _facts(ctx)
    given = _value_of(scan, "-r", "--root")
    if given is not None:
        root = _check_path(given, ctx, "--root")
    elif ctx.dirs:
        root = ctx.dirs[0]
        args.append("--root=" + root)
    else:
        raise _Bad("no allowed directory to serve repositories from")
    _trusted_way(facts, root, f"svn root {_show(root)}")
    if _is_svn_repository(facts, root):
        _svn_repository(root, ctx)
    else:
        _trusted(facts, root, "svn root")
        for name in facts.entries(root):
            path = root.rstrip("/") + "/" + name
            kind = facts.stat(path).kind
            if kind == "dir" and _is_svn_repository(facts, path):
                _svn_repository(path, ctx)
            elif kind in ("dir", "link", "unknown"):
                raise _Bad(f"svn root {_show(root)}: {_show(name)} is not a repository; "
                           "only repositories directly under the root are served")
    ctx.argv = args


# --------------------------------------------------------------------------- python

# Every program below that is a Python script (borg, hg, rdiff-backup) would import a
# `.pth` file from the user's site directory (~/.local/lib/python3.X/site-packages) at
# start-up: code the user uploads. Set after the section's `env`, for those rules.
PYTHON_PINS = (("PYTHONNOUSERSITE", "1"),)


# --------------------------------------------------------------------------- borg

_BORG_SIZE_CHARS = _DIGIT_CHARS + ".KMGTPEkmgtpe"


def _borg_size(value: str, ctx: _Ctx) -> None:
    if not (value and value[0] in _DIGIT_CHARS and _only(value, _BORG_SIZE_CHARS)):
        raise _Bad(f"--storage-quota {_show(value)}: not a size such as 5G or 1.5T")


def _borg_topic(value: str, ctx: _Ctx) -> None:
    if not (value and _only(value, _LOWER + _DIGIT_CHARS + "._")):
        raise _Bad(f"--debug-topic {_show(value)}: not a topic name")


def _octal(value: str, ctx: _Ctx) -> None:
    if not _is_octal_umask(value):
        raise _Bad(f"--umask {_show(value)}: not an octal umask")


def _borg_repo_path(what: str) -> Callable[[str, _Ctx], None]:
    def check(value: str, ctx: _Ctx) -> None:
        _check_path(_tilde(value, ctx), ctx, what)

    return check


_BORG = _Spec(
    flags="vp",
    long_flags=_names(
        """critical error warning info verbose debug progress iec log-json show-version
        show-rc append-only consider-part-files"""
    ),
    long_valued={
        "debug-topic": _borg_topic,
        "umask": _octal,
        "lock-wait": _rsync_number,
        "storage-quota": _borg_size,
        "upload-ratelimit": _rsync_number,
        "remote-ratelimit": _rsync_number,
        "upload-buffer": _rsync_number,
        "remote-buffer": _rsync_number,
        "restrict-to-path": _borg_repo_path("--restrict-to-path"),
        "restrict-to-repository": _borg_repo_path("--restrict-to-repository"),
    },
)
# Refused: --rsh, --remote-path, --debug-profile FILE (writes a file), --bypass-lock,
# -h/--help, abbreviations (argparse would accept them: the rule does not), operands.
# What an administrator may force in [[rules]] (`/usr/bin/borg = borg --append-only`):
BORG_EXTRAS = ("--append-only", "--storage-quota=")


def _borg_extras_problem(extras: Sequence[str]) -> str | None:
    for extra in extras:
        if extra == "--append-only":
            continue
        name, eq, value = extra.partition("=")
        if name != "--storage-quota" or not eq:
            return f"{extra!r}: the borg rule takes only --append-only and --storage-quota=SIZE"
        try:
            _borg_size(value, _Ctx("", "/", ()))
        except _Bad as err:
            return str(err)
    return None


def _rule_borg(argv: Sequence[str], ctx: _Ctx) -> None:
    """`borg serve OPTIONS` as a borg client sends it, run with --restrict-to-path for
    each allowed directory (as rsync.net and BorgBase do), then what [[rules]] forces
    (--append-only, --storage-quota=SIZE: after the client's, so they win)."""
    if len(argv) < 2 or argv[1] != "serve":
        raise _Bad("only 'borg serve ...' (what a borg client sends) is allowed")
    args = list(argv[2:])
    scan = _scan(args, _BORG, ctx)
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")
    if not ctx.dirs:
        raise _Bad("no allowed directory to keep repositories in")
    out: list[str] = []
    for arg in args:  # the client's own restrictions narrow further; ~/ made the home
        name, eq, value = arg.partition("=")
        if eq and name in ("--restrict-to-path", "--restrict-to-repository"):
            arg = f"{name}={_tilde(value, ctx)}"
        out.append(arg)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--restrict-to-path", "--restrict-to-repository"):
            out[i + 1] = _tilde(out[i + 1], ctx)
    ctx.argv = ["serve", *out, *(f"--restrict-to-path={d}" for d in ctx.dirs), *ctx.extras]
    ctx.env += list(PYTHON_PINS)


# --------------------------------------------------------------------------- hg

# Mercurial reads hooks and extensions (programs) from its configuration: the system
# files, the user's ~/.hgrc and the repository's .hg/hgrc. The rule keeps the system
# files (root's, in the jail: where an administrator's hooks go) and nothing the user
# can write: HGRCPATH names the system files only, HGRCSKIPREPO drops every .hg/hgrc.
HG_RCPATH = "/etc/mercurial/hgrc:/etc/mercurial/hgrc.d"


def _rule_hg(argv: Sequence[str], ctx: _Ctx) -> None:
    """`hg -R PATH serve --stdio` (also `--repository PATH`, sent as `-R`), as a
    Mercurial client sends it: PATH (`~/` made the home) a repository directory inside
    the allowed paths, given absolute; no `.hg/sharedpath` (its store elsewhere); hg
    reads no configuration the user can write (HG_RCPATH, HGRCSKIPREPO)."""
    args = list(argv[1:])
    if (len(args) != 4 or args[0] not in ("-R", "--repository")
            or args[2:] != ["serve", "--stdio"]):
        raise _Bad("only 'hg -R PATH serve --stdio' (what a Mercurial client sends) is allowed")
    if ":" in args[1]:   # hg reads `bundle:x`, `union:a+b`, `http://...` as repository URLs
        raise _Bad(f"repository {_show(args[1])}: ':' is not allowed (hg would read a URL)")
    repo = _check_path(_tilde(args[1], ctx), ctx, "repository")
    facts = _facts(ctx)
    if facts.stat(repo).kind != "dir" or facts.stat(repo + "/.hg").kind != "dir":
        raise _Bad(f"repository {_show(repo)}: not a Mercurial repository directory")
    if facts.stat(repo + "/.hg/sharedpath").kind != "missing":
        raise _Bad(f"repository {_show(repo)}: a share (.hg/sharedpath) is not served")
    if _trusted(facts, "/etc/mercurial", "Mercurial system config", may_miss=True):
        _trusted(facts, "/etc/mercurial/hgrc", "Mercurial system config", "file",
                 may_miss=True)
        if _trusted(facts, "/etc/mercurial/hgrc.d", "Mercurial system config",
                    may_miss=True):
            for name in facts.entries("/etc/mercurial/hgrc.d"):
                _trusted(facts, f"/etc/mercurial/hgrc.d/{name}", "Mercurial system config",
                         "file")
    ctx.argv = ["-R", repo, "serve", "--stdio"]
    ctx.env += [("HGRCPATH", HG_RCPATH), ("HGRCSKIPREPO", "1"), *PYTHON_PINS]


# --------------------------------------------------------------------------- rdiff-backup

_RDIFF_MODES = _names("read-write read-only update-only")
# server form -> the restriction options it takes (value: a path, or a mode)
_RDIFF_SERVER = {
    "server": {"--restrict-path": "path", "--restrict-mode": "mode"},
    "--server": {"--restrict": "path", "--restrict-read-only": "path",
                 "--restrict-update-only": "path"},
}
_RDIFF_GLOBAL = {"--terminal-verbosity": "digit", "--verbosity": "digit", "-v": "digit",
                 "--api-version": "number", "--tempdir": "path"}


def _rdiff_value(option: str, kind: str, value: str, ctx: _Ctx) -> str:
    if kind == "path":
        return _check_path(_tilde(value, ctx), ctx, option)
    ok = {"digit": len(value) == 1 and _only(value, _DIGIT_CHARS),
          "number": bool(value) and _only(value, _DIGIT_CHARS),
          "mode": value in _RDIFF_MODES}[kind]
    if not ok:
        raise _Bad(f"{option} {_show(value)}: not an allowed value")
    return value


def _rule_rdiff_backup(argv: Sequence[str], ctx: _Ctx) -> None:
    """`rdiff-backup [GLOBAL...] server [--restrict-path P] [--restrict-mode M]`, or the
    old `... --server [--restrict P|--restrict-read-only P|--restrict-update-only P]`, as
    an rdiff-backup client sends it (GLOBAL: --tempdir DIR, --terminal-verbosity N,
    -v/--verbosity N, --api-version N). Without a restriction of the client's, one to the
    first allowed directory is added (`--restrict-path DIR` / `--restrict DIR`); every
    path inside the allowed paths, given absolute. Not chosen by basename: the server
    unpickles what the client sends (docs/lsh.md)."""
    args = list(argv[1:])
    out: list[str] = []
    form: str | None = None
    restricted = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if form is None and arg in _RDIFF_SERVER:
            form = arg
            out.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        kind = (_RDIFF_GLOBAL if form is None else _RDIFF_SERVER[form]).get(name)
        if kind is None:
            raise _Bad(f"argument {_show(arg)} is not allowed")
        if not eq:
            value, i = _next_value(args, i, name)
        restricted = restricted or kind == "path" and name != "--tempdir"
        out += [name, _rdiff_value(name, kind, value, ctx)]
    if form is None:
        raise _Bad("only 'rdiff-backup server' / 'rdiff-backup --server' is allowed")
    if not restricted:
        if not ctx.dirs:
            raise _Bad("no allowed directory to restrict rdiff-backup to")
        out += ["--restrict-path" if form == "server" else "--restrict", ctx.dirs[0]]
    ctx.argv = out
    ctx.env += list(PYTHON_PINS)


# --------------------------------------------------------------------------- unison


def _rule_unison(argv: Sequence[str], ctx: _Ctx) -> None:
    """`unison -server` (unison 2.52 adds `__new-rpc-mode`), as a unison client sends
    it; nothing else (no -sshcmd, -servercmd, preferences or roots on this side)."""
    if list(argv[1:]) not in (["-server"], ["-server", "__new-rpc-mode"]):
        raise _Bad("only 'unison -server' (what a unison client sends) is allowed")


# --------------------------------------------------------------------------- probes
# Read-only commands clients run over ssh besides their transfer: rclone's sftp backend
# asks `echo ${ShellId}%ComSpec%` (shell type), `md5sum` / `sha1sum` with no operand
# (does it work?) and then `md5sum PATH` per file, and `df -k PATH` where sftp's statvfs
# extension is missing.

_HASHSUM = _Spec(flags="btz", long_flags=frozenset({"binary", "text", "tag", "zero"}),
                 dashdash=True)


def _rule_hashsum(argv: Sequence[str], ctx: _Ctx) -> None:
    """`md5sum [-b|-t|-z|--tag] [--] [PATH...]` (sha1sum, sha256sum... alike): files
    inside the allowed paths, or standard input; no -c (it reads names from a file)."""
    args = argv[1:]
    scan = _scan(args, _HASHSUM, ctx)
    ctx.argv = _with_paths(args, scan, ctx)


_DF = _Spec(flags="ahHiklPT", long_flags=_names(
    "all human-readable si inodes local portability print-type"))


def _rule_df(argv: Sequence[str], ctx: _Ctx) -> None:
    """`df [-k|-h|-P|-i|-T...] PATH...`: at least one path, inside the allowed paths."""
    args = argv[1:]
    scan = _scan(args, _DF, ctx)
    if not scan.positional:
        raise _Bad("df needs a path (the mount table of the jail is not shown)")
    ctx.argv = _with_paths(args, scan, ctx)


def _rule_echo(argv: Sequence[str], ctx: _Ctx) -> None:
    """`echo WORD...`: words printed as they are (no shell expands them); no options."""
    for arg in argv[1:]:
        if arg.startswith("-"):
            raise _Bad(f"echo {_show(arg)}: options are not allowed")


if TYPE_CHECKING:
    _RuleFn = Callable[[Sequence[str], _Ctx], None]

# rule name -> (label used in Decision.rule, checker)
RULES: Mapping[str, tuple[str, _RuleFn]] = {
    "scp": ("scp -t/-f", _rule_scp),
    "sftp-server": ("sftp-server", _rule_sftp),
    "rsync": ("rsync --server", _rule_rsync),
    "git": ("git service", _rule_git),
    "cvs": ("cvs server", _rule_cvs),
    "svnserve": ("svnserve -t", _rule_svnserve),
    "borg": ("borg serve", _rule_borg),
    "hg": ("hg serve --stdio", _rule_hg),
    "rdiff-backup": ("rdiff-backup server", _rule_rdiff_backup),
    "unison": ("unison -server", _rule_unison),
    "hashsum": ("checksum of files", _rule_hashsum),
    "df": ("df of paths", _rule_df),
    "echo": ("echo words", _rule_echo),
    "none": ("no arguments", _rule_none),
    "any": ("unchecked arguments", _rule_any),
}

# A program listed without an explicit rule gets the rule its basename names.
_RULE_BY_BASENAME = {
    "scp": "scp",
    "sftp-server": "sftp-server",
    "rsync": "rsync",
    "git": "git",
    "git-upload-pack": "git",
    "git-receive-pack": "git",
    "git-upload-archive": "git",
    "cvs": "cvs",
    "svnserve": "svnserve",
    "borg": "borg",
    "hg": "hg",
    "unison": "unison",
    # rdiff-backup: never by basename; name the rule (its server unpickles client data)
    "md5sum": "hashsum",
    "sha1sum": "hashsum",
    "sha224sum": "hashsum",
    "sha256sum": "hashsum",
    "sha384sum": "hashsum",
    "sha512sum": "hashsum",
    "b2sum": "hashsum",
    "df": "df",
    "echo": "echo",
}
# Options an administrator may force after a rule's name in [[rules]]: rule -> checker.
_RULE_EXTRAS: Mapping[str, Callable[[Sequence[str]], str | None]] = {
    "borg": _borg_extras_problem,
}
# What clients try without asking (rclone's probes): a refusal of these is not news.
PROBES = frozenset({"echo", "md5sum", "sha1sum", "sha256sum", "md5", "sha1", "sha256",
                    "rclone", "df", "b3sum", "xxh128sum", "xxhsum", "crc32"})

# --------------------------------------------------------------------------- env

_CLIENT_VALUE_CHARS = _LETTERS + _DIGIT_CHARS + "._@:=+,-"
_FIXED_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL"})
# Never passed from the client, whatever pass_env says.
_DENY_EXACT = _FIXED_ENV | _names(
    """IFS ENV BASH_ENV CDPATH GLOBIGNORE PS4 SHELLOPTS BASHOPTS PROMPT_COMMAND TMPDIR
    HOSTALIASES RES_OPTIONS LOCALDOMAIN LOCPATH NLSPATH GCONV_PATH TZ TZDIR TERMINFO
    TERMINFO_DIRS TERMCAP MAIL MAILPATH EDITOR VISUAL PAGER GLIBC_TUNABLES OPENSSL_CONF
    OPENSSL_ENGINES OPENSSL_MODULES SSL_CERT_FILE SSL_CERT_DIR CVSROOT CVS_RSH CVS_SERVER
    CVSUMASK HOME_ETC XDG_CONFIG_HOME XDG_CONFIG_DIRS XDG_DATA_HOME XDG_DATA_DIRS
    XDG_RUNTIME_DIR"""
)
_DENY_PREFIX = (
    "LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "PERL", "RUBY", "NODE_", "LUA_", "JAVA_",
    "TCL", "GIT_", "SVN_", "RSYNC_", "MALLOC_", "GCONV_", "SSH_", "HG", "UNISON",
)
_ALLOW_EXCEPT = frozenset({"GIT_PROTOCOL"})  # git v2 over ssh (SendEnv=GIT_PROTOCOL)


def _denied_name(name: str) -> bool:
    if name in _ALLOW_EXCEPT:
        return False
    return name in _DENY_EXACT or name.startswith(_DENY_PREFIX)


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


# Set for every program bound to the rule, before the section's `env` (which may
# override them): what keeps a program from reading configuration the user can plant
# in the home directory (docs/lsh.md, "Configuration read from the home directory").
# git-upload-pack honours `uploadpack.packObjectsHook` from ~/.gitconfig (and
# ~/.config/git/config): a command of the user's choice (tests/test_lsh_home.py).
# rsync --server and cvs server read no ~/.popt / ~/.cvsrc (same tests).
RULE_ENV: Mapping[str, tuple[tuple[str, str], ...]] = {
    "git": (("GIT_CONFIG_GLOBAL", "/dev/null"),),
}


def _build_env(
    policy: Policy, user: str, home: str, client_env: Mapping[str, str],
    defaults: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    env = {
        "PATH": policy.path,
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "SHELL": policy.shell if policy.allow_shell else NO_SHELL,
    }
    for name, value in (*defaults, *policy.env):
        env[name] = value
    for name in sorted(client_env):
        value = client_env[name]
        if name in env or not _is_name(name) or _denied_name(name):
            continue
        if len(value) > MAX_ENV_VALUE or not _only(value, _CLIENT_VALUE_CHARS):
            continue
        if any(_pattern_matches(p, name) for p in policy.pass_env):
            env[name] = value
    return env


# --------------------------------------------------------------------------- decide


def _expand_dir(template: str, user: str, home: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            token = template[i + 1]
            out.append({"h": home, "u": user, "%": "%"}.get(token, "%" + token))
            i += 2
            continue
        out.append(ch)
        i += 1
    return _norm("".join(out))


def _refuse(policy: Policy, rule: str, action: str, why: str, quiet: bool = False) -> Decision:
    return Decision(
        allowed=False,
        argv=(),
        env={},
        umask=policy.umask,
        rule=rule,
        reason=f"pam_jail: {action}: {why}",
        interactive=False,
        policy=policy.name,
        quiet=quiet,
    )


def decide(
    policy: Policy,
    command: str | None,
    *,
    user: str,
    home: str,
    client_env: Mapping[str, str],
    facts: FileFacts | None = None,
) -> Decision:
    """Allow or refuse one login. `command` is what sshd passed after `-c` (None:
    an interactive login). `facts` is the caller's view of the jail's file system, for
    the rules that serve repositories (without it they refuse). Never raises for
    anything the client sends."""
    if not home.startswith("/") or ".." in home.split("/") or _control_char(home) >= 0:
        return _refuse(policy, "home", "run command", "the home directory is not usable")
    if user in ("", ".", "..") or "/" in user or _control_char(user) >= 0:
        return _refuse(policy, "user", "run command", "the user name is not usable")
    home = _norm(home)
    # 1. interactive login: only where the policy allows a shell
    if command is None:
        if not policy.allow_shell:
            return _refuse(
                policy, "interactive: no shell allowed", "log in",
                "interactive login is not allowed; only file transfer commands may run",
            )
        return Decision(
            allowed=True,
            argv=(policy.shell,),
            env=_build_env(policy, user, home, client_env),
            umask=policy.umask,
            rule=f"interactive: shell {policy.shell}",
            reason="allowed",
            interactive=True,
            policy=policy.name,
        )
    # 2. split the command without a shell
    try:
        argv = split_command(command)
    except Refused as err:
        return _refuse(policy, f"parse: {err}", "run command", str(err))
    # 3. argv[0]: an allowed absolute path, or the basename of one (what clients send)
    name = argv[0]
    if "/" in name:
        program: str | None = name if policy.rule_for(name) is not None else None
    else:
        program = policy.program_named(name)
    if program is None:
        # rclone and the like try PROBES unasked: their refusal is logged at debug level
        return _refuse(policy, f"no rule for {_show(name)}", f"run {_show(name)}",
                       "not an allowed program", quiet=name in PROBES)
    spec = (policy.rule_for(program) or "").split()
    rule, extras = (spec[0], tuple(spec[1:])) if spec else (None, ())
    if rule is None or rule not in RULES:
        return _refuse(policy, f"program {program}: unknown rule", f"run {program}",
                       "no usable rule for this program")
    label, check = RULES[rule]
    # 4. the program's argument rule
    ctx = _Ctx(
        program=program,
        home=home,
        dirs=tuple(_expand_dir(d, user, home) for d in policy.paths),
        facts=facts,
        extras=extras,
    )
    try:
        check(argv, ctx)
    except _Bad as err:
        return _refuse(policy, f"program {program}: {label} rule", f"run {program}", str(err))
    # 5. the argv (as sent, or as the rule rewrote it), a clean environment
    env = _build_env(policy, user, home, client_env, RULE_ENV.get(rule, ()))
    env.update(ctx.env)
    return Decision(
        allowed=True,
        argv=(program, *(argv[1:] if ctx.argv is None else ctx.argv)),
        env=env,
        umask=policy.umask,
        rule=f"program {program}: {label} rule",
        reason="allowed",
        interactive=False,
        policy=policy.name,
    )


# --------------------------------------------------------------------------- lsh.ini

_KEYS = frozenset(
    {"programs", "paths", "umask", "env", "pass_env", "allow_shell", "shell", "path"}
)
_ACCOUNT_CHARS = _LETTERS + _DIGIT_CHARS + "_.-"
_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


def _is_account(name: str) -> bool:
    """A user or group name as Debian allows it: [A-Za-z0-9_][A-Za-z0-9_.-]*[$]?, <= 32."""
    stem = name[:-1] if name.endswith("$") else name
    return 1 <= len(stem) <= 32 and stem[0] not in ".-" and _only(stem, _ACCOUNT_CHARS)


def _dir_tokens(entry: str) -> list[str]:
    """The letters after each '%' ('' for a trailing '%')."""
    out: list[str] = []
    i = entry.find("%")
    while i >= 0:
        out.append(entry[i + 1 : i + 2])
        i = entry.find("%", i + 2)
    return out


def _words(value: object) -> list[str]:
    """A list key: commas (configobj) and/or whitespace separate the items."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out.extend(str(item).split())
    return out


def _scalar(value: object) -> str | None:
    if isinstance(value, list):
        return None
    return str(value).strip()


def _abs_path_problem(path: str) -> str | None:
    if _control_char(path) >= 0 or any(c.isspace() for c in path):
        return "contains whitespace or a control character"
    if not path.startswith("/"):
        return "must be an absolute path"
    if _norm(path) != path:
        return "must be normalised (no '.', '..', '//' or trailing '/')"
    if path == "/":
        return "must name a file, not /"
    return None


def _pass_env_problem(pattern: str) -> str | None:
    if pattern.endswith("*"):
        stem = pattern[:-1]
        if not _is_name(stem):
            return "is not a NAME or a PREFIX* (a bare '*' is not allowed)"
        if any(n.startswith(stem) for n in _DENY_EXACT) or any(
            p.startswith(stem) or stem.startswith(p) for p in _DENY_PREFIX
        ):
            return "could pass a dangerous variable (LD_*, PATH, ...)"
        return None
    if not _is_name(pattern):
        return "is not a NAME or a PREFIX*"
    if _denied_name(pattern):
        return "is a dangerous variable and is never passed"
    return None


def _parse_section(
    name: str, section: Mapping[str, object], where: str, problems: list[str]
) -> Policy:
    def bad(key: str, what: str) -> None:
        problems.append(f"{where}: [{name}] {key}: {what}")

    values: dict[str, object] = {}
    rules_section: Mapping[str, object] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            if key == "rules":
                rules_section = value
            else:
                bad(f"[[{key}]]", "unknown subsection (only [[rules]] is allowed)")
        elif key not in _KEYS:
            bad(key, f"unknown key (known: {', '.join(sorted(_KEYS))})")
        else:
            values[key] = value

    # programs + [[rules]]
    programs: list[str] = []
    for prog in _words(values.get("programs", [])):
        problem = _abs_path_problem(prog)
        if problem:
            bad("programs", f"{prog!r} {problem}")
        elif prog in programs:
            bad("programs", f"{prog} is listed twice")
        elif any(posixpath.basename(p) == posixpath.basename(prog) for p in programs):
            bad("programs", f"{prog}: two programs named {posixpath.basename(prog)!r}; "
                "a bare name could not tell them apart")
        else:
            programs.append(prog)
    explicit: dict[str, str] = {}
    for prog, value in rules_section.items():
        words = (_scalar(value) or "").split()
        rule = words[0] if words else None
        extras_check = _RULE_EXTRAS.get(rule or "")
        extras_problem = extras_check(words[1:]) if extras_check else (
            f"rule {rule} takes no options" if len(words) > 1 else None)
        if prog not in programs:
            bad("[[rules]]", f"{prog} is not in programs")
        elif rule is None or rule not in RULES or isinstance(value, list):
            bad("[[rules]]", f"{prog}: unknown rule {value!r} (known: {', '.join(RULES)})")
        elif extras_problem:
            bad("[[rules]]", f"{prog}: {extras_problem}")
        else:
            explicit[prog] = " ".join(words)
    bound: list[tuple[str, str]] = []
    for prog in programs:
        rule_name = explicit.get(prog) or _RULE_BY_BASENAME.get(posixpath.basename(prog))
        if rule_name is None:
            bad("programs", f"{prog} has no rule: name one under [[rules]] "
                "('none' allows it without arguments)")
        else:
            bound.append((prog, rule_name))

    # paths
    paths: list[str] = []
    for entry in _words(values.get("paths", list(DEFAULT_PATHS))):
        tokens = _dir_tokens(entry)
        if any(t not in ("h", "u", "%") for t in tokens):
            bad("paths", f"{entry!r}: only %h (home), %u (user) and %% are understood")
        elif not (entry.startswith("/") or entry.startswith("%h")):
            bad("paths", f"{entry!r} must be absolute or start with %h")
        elif ".." in entry.split("/") or _control_char(entry) >= 0:
            bad("paths", f"{entry!r} may not contain '..' or control characters")
        else:
            paths.append(entry)

    # umask
    umask = DEFAULT_UMASK
    if "umask" in values:
        text = _scalar(values["umask"]) or ""
        if not _is_octal_umask(text):
            bad("umask", f"{text!r} is not an octal umask such as 0077")
        else:
            umask = int(text, 8)

    # env
    env: list[tuple[str, str]] = []
    raw_env = values.get("env", [])
    for item in raw_env if isinstance(raw_env, list) else [raw_env]:
        key, eq, val = str(item).partition("=")
        key = key.strip()
        if not eq or not _is_name(key):
            bad("env", f"{item!r} is not NAME=VALUE")
        elif key in _FIXED_ENV:
            bad("env", f"{key} is set by pam_jail (use the 'path' key for PATH)")
        elif _control_char(val) >= 0:
            bad("env", f"{key}: control character in the value")
        else:
            env.append((key, val))

    # pass_env
    pass_env: list[str] = []
    for pattern in _words(values.get("pass_env", [])):
        problem = _pass_env_problem(pattern)
        if problem:
            bad("pass_env", f"{pattern!r} {problem}")
        else:
            pass_env.append(pattern)

    # allow_shell, shell, path
    allow_shell = False
    if "allow_shell" in values:
        text = (_scalar(values["allow_shell"]) or "").lower()
        if text in _TRUE:
            allow_shell = True
        elif text not in _FALSE:
            bad("allow_shell", f"{text!r} is not yes or no")
    shell = DEFAULT_SHELL
    if "shell" in values:
        text = _scalar(values["shell"]) or ""
        problem = _abs_path_problem(text)
        if problem:
            bad("shell", f"{text!r} {problem}")
        else:
            shell = text
    path = DEFAULT_PATH
    if "path" in values:
        text = _scalar(values["path"]) or ""
        parts = text.split(":")
        if any(not p or _abs_path_problem(p) for p in parts):
            bad("path", f"{text!r}: every entry must be an absolute directory (no empty entry)")
        else:
            path = text

    return Policy(
        name=name,
        programs=tuple(bound),
        paths=tuple(paths),
        umask=umask,
        env=tuple(env),
        pass_env=tuple(pass_env),
        allow_shell=allow_shell,
        shell=shell,
        path=path,
    )


def parse_lsh(text: str, source: str) -> LshConfig:
    """Parse and validate lsh.ini. Raises ConfigError listing every problem found."""
    raw, problems = read_ini(text, source)
    default: Policy | None = None
    users: dict[str, Policy] = {}
    groups: list[tuple[str, Policy]] = []
    for name, section in raw.items():
        if not isinstance(section, dict):
            problems.append(f"{source}: {name}: key outside any section")
            continue
        kind, colon, who = name.partition(":")
        if name == "default":
            default = _parse_section(name, section, source, problems)
        elif colon and kind in ("user", "group") and _is_account(who):
            policy = _parse_section(name, section, source, problems)
            if kind == "user":
                users[who] = policy
            else:
                groups.append((who, policy))
        else:
            problems.append(
                f"{source}: [{name}]: unknown section (use [default], [user:NAME], [group:NAME])"
            )
    if problems:
        raise ConfigError(
            f"load lsh config {source}: {len(problems)} problem"
            f"{'' if len(problems) == 1 else 's'}",
            problems,
            hint="see docs/lsh.md for the format",
        )
    return LshConfig(source=source, default=default, users=users, groups=tuple(groups))


def select_policy(cfg: LshConfig, user: str, groups: Sequence[str]) -> Policy:
    """[user:NAME] wins; else the first [group:NAME] *in file order* naming one of the
    user's groups; else [default]; else a policy that allows nothing."""
    if user in cfg.users:
        return cfg.users[user]
    member = set(groups)
    for group, policy in cfg.groups:
        if group in member:
            return policy
    return cfg.default if cfg.default is not None else NO_POLICY
