"""The program's environment: the fixed variables, the rule's and the section's, and
what the client sent that `pass_env` names and no deny-list refuses."""

from __future__ import annotations

from pam_jail.login.policy.records import (
    _DIGIT_CHARS,
    _LETTERS,
    MAX_ENV_VALUE,
    NO_SHELL,
    Policy,
    _is_name,
    _names,
    _only,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

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
