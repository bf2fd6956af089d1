"""The admission decision shared by both login entries (PAM module, pam-jail-shell):
who is this user, which jail, is that jail safe right now. Refusals raise.

Safe by construction: a jailed user's login shell is one that refuses to run outside
its jail (resolve.JAILING_SHELLS), so every doubt below ends in "refused" for such a
user, and in "not jailed" for root and for users whose shell could not jail them anyway.
"""

from __future__ import annotations

from pam_jail.login.config import DEFAULT_PATH, Config
from pam_jail.login.errors import ConfigError, Denied, PamJailError, UnsafeJail
from pam_jail.login.resolve import (
    Identity,
    Jail,
    identity_from_passwd,
    is_jailing_shell,
    jailing_anywhere,
    resolve,
)
from pam_jail.login.safety import check_jail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def admit(user: str | int | Identity, config_path: str = DEFAULT_PATH, *,
          check_shell_jails: bool = True,
          on_fallback: Callable[[ConfigError, Identity], None] | None = None,
          ) -> tuple[Identity, Config | None, Jail | None]:
    """Identity from the real passwd database, jail from root-owned config, jail
    checked. Returns jail None for a user in no jail (the caller decides by
    cfg.unmapped; cfg is None when no valid config could be read). Raises Denied,
    ConfigError or UnsafeJail.

    Root (uid 0) is never jailed, and refused only when [users] names it (a uid-0 alias
    mapped to a jail: fail closed); a group, the default or a bad file never lock it out.
    A bad jails.ini falls back to its last-known-good copy (`on_fallback` is told, to
    log it loudly); with none, a user whose login shell is a jailing one is refused and
    anyone else is treated as unjailed (no valid config can be jailing them: a jailed
    user's shell is always a jailing one, see below).

    The config comes from jails.ini's lookup index when it matches the file
    (pam_jail/login/config_index.py: a few reads, whatever the number of users), else from
    the file itself.

    check_shell_jails=False (the PAM module): a mode "shell" jail is checked by
    pam-jail-shell itself at every login, which can also tell the user why."""
    from pam_jail.login.config_index import config_for  # (outside the jail only)

    ident = user if isinstance(user, Identity) else identity_from_passwd(user)
    fallback: ConfigError | None = None
    cfg = config_for(config_path, ident.name, (ident.group, *ident.groups))  # the index
    if cfg is None:                                                           # or the file
        from pam_jail.login.config_file import load_config_lkg  # (parse it whole)

        try:
            cfg, fallback = load_config_lkg(config_path)
        except ConfigError:
            if ident.uid != 0 and jailing_anywhere(ident.shell):
                raise
            return ident, None, None
    if ident.uid == 0:    # never jailed; refused only if jails.ini names it to be jailed
        if ident.name in cfg.users:
            raise Denied(f"user {ident.name} has uid 0: root is never put in a jail")
        return ident, cfg, None
    if fallback is not None and on_fallback is not None:
        on_fallback(fallback, ident)
    jail = resolve(ident, cfg)
    if jail is None:
        return ident, cfg, None
    try:
        if not is_jailing_shell(jail.mode, ident.shell):
            raise Denied(f"the login shell {ident.shell} of {ident.name} would run outside "
                         f"jail {jail.name} (mode {jail.mode}) if this login path were "
                         "bypassed", hint=f"run `pam-jail jailuser {ident.name} -j "
                         f"{jail.root}` (it sets a shell that refuses outside the jail)")
        problems = [] if jail.mode == "shell" and not check_shell_jails else \
            check_jail(jail.root)
        if problems:
            raise UnsafeJail(f"check jail {jail.name}: unsafe", problems=problems,
                             hint=f"run `pam-jail check {jail.name}`")
    except PamJailError as err:
        err.jail = jail.name
        raise
    return ident, cfg, jail
