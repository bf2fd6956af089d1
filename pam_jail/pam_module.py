"""PAM entry points for Debian's pam_python.so (runs inside /usr/bin/python3 3.11).

    account  required pam_python.so /usr/local/lib/pam_jail/pam_jail_pam.py
    session  required pam_python.so /usr/local/lib/pam_jail/pam_jail_pam.py

Module arguments: `config=PATH` (default /etc/pam_jail/jails.ini).
acct_mgmt refuses a jailed user whose jail is unknown or unsafe; open_session (root, in
the service's process, before it drops privileges) confines mode "pam" users. Every
exception becomes a refusal: one line to the user, one syslog line (auth facility).
"""

from __future__ import annotations

import grp

from pam_jail.errors import Denied, PamJailError
from pam_jail.log import LOG_ERR, LOG_INFO, LOG_NOTICE, SysLog
from pam_jail.login import admit
from pam_jail.resolve import Jail

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~15 ms of import time on every login
    from typing import Any

_log = SysLog("pam_jail")


def _options(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        opts[key] = value
    return opts


def _tell(pamh: Any, text: str) -> None:
    try:
        pamh.conversation(pamh.Message(pamh.PAM_ERROR_MSG, f"pam_jail: {text}"))
    except Exception:  # noqa: S110 - the service may have no conversation; log stands
        pass


def _run(pamh: Any, argv: list[str], phase: str, fail: int) -> int:
    user: object = "-"
    jail_name = "-"
    ctx = {"service": getattr(pamh, "service", None), "rhost": getattr(pamh, "rhost", None)}
    try:
        _log.connect()
        user = pamh.get_user(None)
        if not user:
            raise Denied("no user name")
        config = _options(argv).get("config") or "/etc/pam_jail/jails.ini"
        ident, cfg, jail = admit(str(user), config, check_shell_jails=False)
        if jail is None:
            if cfg.unmapped == "deny":
                raise Denied(f"user {ident.name} is in no jail and unmapped users are refused")
            return int(pamh.PAM_IGNORE)
        jail_name = jail.name
        if phase == "session":
            _open_session(pamh, jail)
        _log.decision(LOG_INFO, f"{phase} allowed", user=user, jail=jail_name, **ctx)
        return int(pamh.PAM_SUCCESS)
    except PamJailError as err:
        problems = getattr(err, "problems", [])
        reason = str(err) + (": " + "; ".join(problems[:3]) if problems else "")
        jail_name = err.jail or jail_name
        _log.decision(LOG_NOTICE, f"{phase} refused", user=user, jail=jail_name,
                      reason=reason, **ctx)
        _tell(pamh, f"login refused: {err}")
        return fail
    except BaseException as err:  # never an unjailed session, never a traceback
        _log.decision(LOG_ERR, f"{phase} refused", user=user, jail=jail_name,
                      reason=f"internal error: {type(err).__name__}: {err}", **ctx)
        _tell(pamh, "login refused: internal error (see the system log)")
        return fail


def _open_session(pamh: Any, jail: Jail) -> None:
    from pam_jail.confine import confine_pam_session
    from pam_jail.safety import open_checked

    if jail.mode == "shell":
        return  # pam-jail-shell, the login shell, confines
    if jail.mode == "sftp":
        if not str(getattr(pamh, "service", "")).startswith("sshd"):
            raise Denied(f"jail {jail.name} is an sshd ChrootDirectory jail; service "
                         f"{pamh.service} cannot enter it")
        return  # sshd's Match block (pam-jail sshd-config) chroots
    try:
        tty_gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_gid = 5
    try:
        jail_fd = open_checked(jail.root)
    except OSError as err:
        raise Denied(f"open jail {jail.root}: {err}") from None
    confine_pam_session(jail_fd, jail.root, jail.home, network=jail.flag("network"),
                        devpts=jail.flag("devpts", True), tty_gid=tty_gid,
                        hostname=jail.options.get("hostname", ""), pid=jail.flag("pid"))


def pam_sm_acct_mgmt(pamh: Any, flags: int, argv: list[str]) -> int:
    return _run(pamh, argv, "account", int(pamh.PAM_PERM_DENIED))


def pam_sm_open_session(pamh: Any, flags: int, argv: list[str]) -> int:
    return _run(pamh, argv, "session", int(pamh.PAM_SESSION_ERR))


def pam_sm_close_session(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_SUCCESS)


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)


def pam_sm_chauthtok(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)
