"""lsh.ini parsed and validated (parse_lsh), and the section that applies to a user
(select_policy)."""

from __future__ import annotations

from pam_jail.login.config import read_ini
from pam_jail.login.errors import ConfigError
from pam_jail.login.paths import basename
from pam_jail.login.policy.env import _DENY_EXACT, _DENY_PREFIX, _FIXED_ENV, _denied_name
from pam_jail.login.policy.records import (
    _DIGIT_CHARS,
    _LETTERS,
    DEFAULT_PATH,
    DEFAULT_PATHS,
    DEFAULT_SHELL,
    DEFAULT_UMASK,
    NO_POLICY,
    RULES,
    LshConfig,
    Policy,
    _is_name,
    _is_octal_umask,
    _norm,
    _only,
)
from pam_jail.login.policy.words import _control_char

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

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


_KEYS = frozenset(
    {"programs", "paths", "umask", "env", "pass_env", "allow_shell", "shell", "path"}
)
_ACCOUNT_CHARS = _LETTERS + _DIGIT_CHARS + "_.-"
_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


def _extras_problem(rule: str | None, extras: Sequence[str]) -> str | None:
    """What is wrong with the options [[rules]] forces after a rule's name, or None.
    Only the borg rule takes any; its family is loaded only when some are given."""
    if not extras:
        return None
    if rule == "borg":
        from pam_jail.login.policy.borg import _borg_extras_problem

        return _borg_extras_problem(extras)
    return f"rule {rule} takes no options"


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
        elif any(basename(p) == basename(prog) for p in programs):
            bad("programs", f"{prog}: two programs named {basename(prog)!r}; "
                "a bare name could not tell them apart")
        else:
            programs.append(prog)
    explicit: dict[str, str] = {}
    for prog, value in rules_section.items():
        words = (_scalar(value) or "").split()
        rule = words[0] if words else None
        extras_problem = _extras_problem(rule, words[1:])
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
        rule_name = explicit.get(prog) or _RULE_BY_BASENAME.get(basename(prog))
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
