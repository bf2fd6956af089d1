"""The limited shell's allow-list: parse lsh.ini, pick a policy, decide one command.

Pure: no file I/O, no syscalls, no subprocess. The caller (already inside the jail, as
the user) reads JAIL/etc/pam_jail/lsh.ini, passes its text to `parse_lsh`, picks the
user's section with `select_policy`, and for the command sshd passed after `-c` calls
`decide`. If `Decision.allowed`, it sets `Decision.umask`, chdirs to the user's home
and execve()s `Decision.argv[0]` with exactly `Decision.argv` and `Decision.env`.
No shell is ever involved: `split_command` reads quotes like a POSIX shell and
nothing else (no expansion of any kind, no globbing, no `;`, `|`, `&&`, `$(...)`).

The package, one concern a module:
  records    Policy, LshConfig, Decision, PathFacts/FileFacts, Refused, defaults, RULES
  words      split_command (POSIX quotes, nothing else), _show
  env        the program's environment
  lsh_ini    parse_lsh, select_policy
  options    path checks and the option scanner the argument rules share
  scp, sftp, rsync, repos (git, cvs, svnserve), borg, hg, rdiff_backup, unison,
  probes (md5sum and the like, df, echo): one family of argument rules each
  held       the families' byte-code held in memory across pam-jail-shell's pivot
Importing the package loads records, words, env and lsh_ini (every login needs all
four); `decide` imports the one family (and options) the command's rule lives in, when
it needs it. pam-jail-shell decides after its pivot into a jail that holds no pam_jail,
where no module file can be read any more: before confinement it calls hold_families(),
which reads every family's byte-code (executed only for the family the command needs).
Start-up time: every module file costs a login ~65 us (docs/benchmarks.md,
"pam_jail/login/policy as a package").

The file format and the built-in argument rules are documented in docs/lsh.md.
"""

from __future__ import annotations

from pam_jail.login.policy.env import RULE_ENV, _build_env
from pam_jail.login.policy.lsh_ini import parse_lsh, select_policy
from pam_jail.login.policy.records import (
    MISSING,
    NO_POLICY,
    PYTHON_PINS,
    RULES,
    Decision,
    FileFacts,
    LshConfig,
    PathFacts,
    Policy,
    Refused,
    _Bad,
    _Ctx,
    _norm,
)
from pam_jail.login.policy.words import _control_char, _show, split_command
from pam_jail.login.policy.words import _posix_words as _posix_words  # tests/test_policy.py

# Start-up time matters here (the login path imports this package): no re, shlex,
# configobj, dataclasses, typing or importlib at run time. Type-only names come from here:
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pam_jail.login.policy.borg import BORG_EXTRAS as BORG_EXTRAS
    from pam_jail.login.policy.hg import HG_RCPATH as HG_RCPATH
    from pam_jail.login.policy.repos import GIT_ADMIN_HOOKS as GIT_ADMIN_HOOKS
    from pam_jail.login.policy.repos import GIT_PINS as GIT_PINS

    _RuleFn = Callable[[Sequence[str], _Ctx], None]

__all__ = [
    "Decision",
    "FileFacts",
    "PathFacts",
    "LshConfig",
    "Policy",
    "Refused",
    "MISSING",
    "NO_POLICY",
    "PROBES",
    "PYTHON_PINS",
    "RULES",
    "RULE_ENV",
    "decide",
    "hold_families",
    "parse_lsh",
    "select_policy",
    "split_command",
]

# A family's public constants, served from the family module when asked for (PEP 562),
# so that importing the package does not load the family.
_FAMILY_NAMES = {
    "GIT_PINS": "repos",
    "GIT_ADMIN_HOOKS": "repos",
    "HG_RCPATH": "hg",
    "BORG_EXTRAS": "borg",
}


def __getattr__(name: str) -> object:
    module = _FAMILY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(__import__(f"{__name__}.{module}", fromlist=(name,)), name)


# What clients try without asking (rclone's probes): a refusal of these is not news.
PROBES = frozenset({"echo", "md5sum", "sha1sum", "sha256sum", "md5", "sha1", "sha256",
                    "rclone", "df", "b3sum", "xxh128sum", "xxhsum", "crc32"})


# --------------------------------------------------------------------------- rules


def _rule_none(argv: Sequence[str], ctx: _Ctx) -> None:
    if len(argv) > 1:
        raise _Bad("no arguments are allowed")


def _rule_any(argv: Sequence[str], ctx: _Ctx) -> None:
    """Unchecked: the administrator chose to trust every argument."""


_BUILT_IN: Mapping[str, _RuleFn] = {"_rule_none": _rule_none, "_rule_any": _rule_any}


def hold_families() -> None:
    """pam-jail-shell, before its pivot into a jail that holds no pam_jail: every rule
    family (and the option scanner they share) made ready to run after it, its byte-code
    read now and executed only when a command needs that family (policy.held)."""
    from pam_jail.login.policy import held

    held.hold(__name__, {module for _label, module, _fn in RULES.values() if module}
              | {"options"})


def _checker(rule: str) -> tuple[str, _RuleFn]:
    """The rule's label and checker. Its family module (RULES) is imported here, on the
    first command that needs it: a plain import statement's machinery (__import__)."""
    label, module, function = RULES[rule]
    if not module:
        return label, _BUILT_IN[function]
    check: _RuleFn = getattr(__import__(f"{__name__}.{module}", fromlist=(function,)),
                             function)
    return label, check


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
    label, check = _checker(rule)    # imports the rule's family, only that one
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
