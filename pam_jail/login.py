"""The admission decision shared by both login entries (PAM module, pam-jail-shell):
who is this user, which jail, is that jail safe right now. Refusals raise."""

from __future__ import annotations

from pam_jail.config import DEFAULT_PATH, Config, load_config
from pam_jail.errors import Denied, PamJailError, UnsafeJail
from pam_jail.resolve import Identity, Jail, identity_from_passwd, is_shell_entry, resolve
from pam_jail.safety import check_jail


def admit(user: str | int | Identity, config_path: str = DEFAULT_PATH, *,
          check_shell_jails: bool = True) -> tuple[Identity, Config, Jail | None]:
    """Identity from the real passwd database, jail from root-owned config, jail
    checked. Returns jail None for a user in no jail (the caller decides by
    cfg.unmapped). Raises Denied, ConfigError or UnsafeJail.

    check_shell_jails=False (the PAM module): a mode "shell" jail is checked by
    pam-jail-shell itself at every login, which can also tell the user why; the PAM
    module then only makes sure the login shell really is pam-jail-shell."""
    ident = user if isinstance(user, Identity) else identity_from_passwd(user)
    cfg = load_config(config_path)
    jail = resolve(ident, cfg)
    if jail is None:
        return ident, cfg, None
    try:
        if jail.mode == "shell" and not is_shell_entry(ident.shell):
            raise Denied(f"jail {jail.name} is entered through pam-jail-shell, but the "
                         f"login shell of {ident.name} is {ident.shell}")
        problems = [] if jail.mode == "shell" and not check_shell_jails else \
            check_jail(jail.root)
        if problems:
            raise UnsafeJail(f"check jail {jail.name}: unsafe", problems=problems,
                             hint=f"run `pam-jail check {jail.name}`")
    except PamJailError as err:
        err.jail = jail.name
        raise
    return ident, cfg, jail
