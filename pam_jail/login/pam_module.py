"""PAM entry points for Debian's pam_python.so (runs inside /usr/bin/python3 3.11).

    account  required pam_python.so /usr/local/lib/pam_jail/pam_jail_pam.py
    session  required pam_python.so /usr/local/lib/pam_jail/pam_jail_pam.py

(etc/pam.d/pam_jail has the full lines, with the guard that keeps every user whose
login shell is not one of pam_jail's out of pam_python, and the place in the stack.)

Module arguments: `config=PATH` (default /etc/pam_jail/jails.ini); `sshd_config=PATH`
(the sshd config to read when the listener's own -f cannot be seen); `service=NAME` (treat
this stack as service NAME's, e.g. `login` for a renamed copy of login's stack).

A login, in order (session; acct_mgmt stops after step 3):
  1. root (uid 0) is never jailed: PAM_IGNORE, no config read
  2. admit(): the jail from jails.ini (or its last-known-good copy, logged loudly); a
     mapped user whose login shell would not refuse outside the jail is refused
  3. no jail: PAM_IGNORE (or refused with `unmapped = deny`)
  4. sshd: the effective sshd settings of this very connection (sshd -T -C) must be the
     ones `pam-jail sshd-config` writes for the jail's mode, else refused
  5. the user's cgroup of the jail (max_procs, memory, cpu) and rlimits; then by service:
     - a service that execs the login shell (sshd, login, su, su-l, runuser, runuser-l):
       mode pam: the login shell, its interpreter, the limited shell's runtime and the
       library directories in the jail must be root's and not writable (5a); then
       confine_pam_session (namespaces incl. PID, nosuid/nodev, chroot, seccomp);
       mode shell/sftp: isolate_session (empty network namespace, no_new_privs): the
       login shell or sshd's ChrootDirectory confines, nothing sshd does beside them
       has network (mode sftp: sshd only, refused elsewhere);
     - any other service (cron, atd, one never heard of: it runs a program of its own,
       a job's /bin/sh, not the login shell), every mode: the jail checked, then
       confine_pam_session without a PID 1 of ours (the job is PID 1: when it ends,
       nothing of it is left, and cron's wait for its children returns)
A stack that reaches the session line twice (su-l includes su) is confined once.
Every exception becomes a refusal: one line to the user, one syslog line (auth facility).
In sshd a refused session ends sshd's session process right after its syslog line
(_end_refused_sshd_session): sshd would otherwise go on, open the channel and write every
message the session modules before ours stored (Debian's pam_motd: the host's motd) into
it, where an sftp client reads them as a packet ("Received message too long").
"""

from __future__ import annotations

import grp
import posix
import sys

from pam_jail.login import paths
from pam_jail.login.admission import admit
from pam_jail.login.errors import ConfigError, Denied, PamJailError
from pam_jail.login.log import LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING, SysLog
from pam_jail.login.resolve import HOST_PID_ENV, JAIL_ENV, NO_SHELL_ENV, Identity, Jail

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~15 ms of import time on every login
    from typing import Any

_log = SysLog("pam_jail")

# Services that exec the user's login shell (pam_jail's shells refuse outside their jail
# or confine themselves), plus sshd under any name starting with "sshd". Every other
# service gets the full confinement whatever the mode: an unknown name is never treated
# more weakly than cron.
LOGIN_SHELL_SERVICES = ("login", "su", "su-l", "runuser", "runuser-l")


def runs_login_shell(service: str) -> bool:
    return service in LOGIN_SHELL_SERVICES or service.startswith("sshd")


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

    def fallback(err: ConfigError, ident: Identity) -> None:
        _log.decision(LOG_ERR, "config invalid, last-known-good used", user=ident.name,
                      reason=err.reason(), **ctx)

    in_sshd = phase == "session" and _process_is_sshd()   # (before any chroot hides /proc)
    try:
        _log.connect()
        user = pamh.get_user(None)
        if not user:
            raise Denied("no user name")
        opts = _options(argv)
        if phase == "session":
            from pam_jail.login.confine import confined_for

            done = confined_for()
            if done is not None:      # an earlier pam_jail line of this stack confined it
                if done != str(user):
                    raise Denied(f"open a session for {user}: this process is already "
                                 f"confined for {done}")
                return int(pamh.PAM_SUCCESS)
        config = opts.get("config") or "/etc/pam_jail/jails.ini"
        # `service=NAME` (a module argument, root's): a stack under another name that
        # does what NAME does, e.g. a copy of login's stack; never sshd's check
        service = opts.get("service") or str(ctx["service"] or "")
        job = not runs_login_shell(service)   # cron, atd, unknown: no login shell runs
        ident, cfg, jail = admit(str(user), config, check_shell_jails=job,     # 1, 2
                                 on_fallback=fallback)
        if jail is None:                                                        # 3
            if ident.uid == 0:
                return int(pamh.PAM_IGNORE)
            if cfg is None:
                _log.decision(LOG_WARNING, f"{phase}: no valid config", user=user,
                              reason=f"{config} and its last-known-good unusable; user "
                              "treated as unjailed (login shell is not pam_jail's)", **ctx)
            elif cfg.unmapped == "deny":
                raise Denied(f"user {ident.name} is in no jail and unmapped users are refused")
            return int(pamh.PAM_IGNORE)
        jail_name = jail.name
        if phase == "session":
            uncarried = _open_session(pamh, jail, ident, opts, service, job)    # 4, 5
            if uncarried:
                _log.decision(LOG_WARNING, "limits left to rlimits", user=user,
                              jail=jail_name, reason=f"no cgroup controller for "
                              f"{', '.join(uncarried)} on this host", **ctx)
        _log.decision(LOG_INFO, f"{phase} allowed", user=user, jail=jail_name, **ctx)
        return int(pamh.PAM_SUCCESS)
    except PamJailError as err:
        reason = err.reason()
        jail_name = err.jail or jail_name
        _log.decision(LOG_NOTICE, f"{phase} refused", user=user, jail=jail_name,
                      reason=reason, **ctx)
        _end_refused_sshd_session(in_sshd)
        _tell(pamh, f"login refused: {err}")
        return fail
    except BaseException as err:  # never an unjailed session, never a traceback
        _log.decision(LOG_ERR, f"{phase} refused", user=user, jail=jail_name,
                      reason=f"internal error: {type(err).__name__}: {err}", **ctx)
        _end_refused_sshd_session(in_sshd)
        _tell(pamh, "login refused: internal error (see the system log)")
        return fail


def _process_is_sshd() -> bool:
    try:
        return paths.basename(posix.readlink("/proc/self/exe")).startswith("sshd")
    except OSError:
        return False


def _end_refused_sshd_session(in_sshd: bool) -> None:
    """A session refused inside sshd: end sshd's session process now (the connection
    closes; the client sees "Connection closed", like an account refusal, which sshd 9.2
    shows nobody either). sshd calls pam_open_session in its privileged session process
    right after authentication, before any channel exists; on a failure it would carry
    on, and for the channel's command or subsystem write the messages it stored from
    the stack's conversation (PAM_TEXT_INFO, PAM_ERROR_MSG: Debian's pam_motd lines
    before ours put the host's motd there, our own refusal too) to the channel's output
    (session.c do_child: display_loginmsg, exit 254): host text in an sftp or scp
    stream. Other services (login, su, cron) show them on a terminal or drop them: the
    refusal is returned to them as before. `in_sshd`: a session of sshd (sshd-session),
    as /proc/self/exe said before the refused step began."""
    if in_sshd:
        _log.close()
        posix._exit(255)


def _check_sshd(pamh: Any, jail: Jail, ident: Identity, opts: dict[str, str]) -> None:
    """Step 4: what sshd will do for this connection, read from sshd itself."""
    from pam_jail.login.sshd_rules import (
        SSHD,
        SYSTEM_SSHD_CONFIG,
        compare_effective,
        effective_settings,
        listener_config,
        own_connection,
    )

    try:
        exe = posix.readlink("/proc/self/exe")
    except OSError:
        exe = SSHD
    sshd = exe if paths.basename(exe).startswith("sshd") else SSHD
    config = listener_config(posix.getppid()) or opts.get("sshd_config") or SYSTEM_SSHD_CONFIG
    conn = own_connection()     # from the kernel, never from the PAM environment
    if conn is None:
        raise Denied("read sshd's settings for this connection: no single TCP "
                     "connection in this sshd process")
    rhost = str(getattr(pamh, "rhost", "") or "")   # PAM_RHOST: set by sshd itself
    addr = conn[0]
    spec = f"user={ident.name},host={rhost or addr},addr={addr},laddr={conn[2]}," \
           f"lport={conn[3]}"
    if any(c in spec for c in " \t\n"):
        raise Denied("read sshd's settings for this connection: odd client address")
    try:
        effective = effective_settings(sshd, config, spec)
    except OSError as err:
        raise Denied(f"read sshd's settings for this connection: {err}") from None
    problems = compare_effective(jail.mode, jail.root, effective)
    if problems:
        raise Denied(f"sshd ({config}) is not set up for jail {jail.name} (mode "
                     f"{jail.mode}): {problems[0]}",
                     hint="run `pam-jail sshd-config --check` and reload sshd")


def _lsh_runtime() -> tuple[str, ...]:
    """The directories pam-jail-lsh imports from, as paths inside the jail: the lsh
    profile puts them at the host's own paths (this package, Debian's stdlib: the
    directory of the encodings package, which every interpreter loads at start-up)."""
    login = paths.dirname(paths.abspath(__file__))              # LIBDIR/pam_jail/login
    package = paths.dirname(login)
    stdlib = paths.dirname(paths.dirname(sys.modules["encodings"].__file__ or ""))
    return (paths.dirname(package), package, f"{package}/__pycache__", login,
            f"{login}/__pycache__", f"{login}/policy", f"{login}/policy/__pycache__",
            stdlib, f"{stdlib}/__pycache__", f"{stdlib}/encodings", f"{stdlib}/lib-dynload")


# The services through which root takes on a user (su's refusal of an interactive login
# then says how root gets a shell in the jail instead)
ROOT_SWITCH_SERVICES = frozenset({"su", "su-l", "runuser", "runuser-l"})


def no_shell_why(jail: Jail, ident: Identity, service: str, uid: int) -> str:
    """Why an interactive login into a mode-pam jail is refused when jails.ini's
    allow_shell is off (pam-jail-lsh prints it): for root's su/runuser, with the command
    that gives root a shell as the user in the jail."""
    why = f"jails.ini: allow_shell = no for jail {jail.name}"
    if uid == 0 and service in ROOT_SWITCH_SERVICES:
        why += (f"; as root: pam-jail chrootlaunch -j {jail.name} -u {ident.name} -- "
                "/bin/sh")
    return why


def _check_login_shell(pamh: Any, jail: Jail, ident: Identity, service: str) -> None:
    """Step 5a, mode pam: the login shell, its interpreter, the limited shell's runtime
    and the library directories in the jail must be root's and not writable."""
    from pam_jail.login.safety import LIB_DIRS, check_exec

    runtime = _lsh_runtime()
    told = {JAIL_ENV: jail.name, HOST_PID_ENV: str(posix.getpid())}  # its log lines' fields
    if not jail.allow_shell:       # pam-jail-lsh refuses interactive logins seeing it
        told[NO_SHELL_ENV] = no_shell_why(jail, ident, service, posix.getuid())
    for name, value in told.items():
        try:
            pamh.env[name] = value
        except Exception as err:
            raise Denied(f"set {name}: {err}") from None
    unsafe = check_exec(jail.root, ident.shell, dirs=LIB_DIRS + runtime)
    unsafe += check_exec(jail.root, f"{runtime[0]}/pam-jail-lsh.py")   # what the stub runs
    if unsafe:
        raise Denied(f"run the login shell {ident.shell} in jail {jail.name}: {unsafe[0]}",
                     hint=f"pam-jail check {jail.name}; pam-jail update")


def _open_session(pamh: Any, jail: Jail, ident: Identity, opts: dict[str, str],
                  service: str, job: bool) -> list[str]:
    """Steps 4-5; returns the limits no cgroup controller carried (for the log).
    job: the service runs its own program (cron's /bin/sh), not the login shell: the
    mode-pam confinement in every mode (admit() checked a mode-shell jail too), without
    a PID 1 of ours, devpts or /proc: the job is PID 1, its end ends the namespace."""
    from pam_jail.login.confine import confine_pam_session, isolate_session
    from pam_jail.login.plan import plan_login
    from pam_jail.login.safety import open_checked

    if not job:                    # the service execs the login shell next
        is_sshd = service.startswith("sshd") and "service" not in opts
        if jail.mode == "sftp" and not is_sshd:
            raise Denied(f"jail {jail.name} is an sshd ChrootDirectory jail; service "
                         f"{service} cannot enter it")
        if is_sshd:
            _check_sshd(pamh, jail, ident, opts)                                # 4
        if jail.mode != "pam":
            return isolate_session(plan_login("isolate", jail, ident))         # 5
        _check_login_shell(pamh, jail, ident, service)                          # 5a
    try:
        tty_gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_gid = 5
    plan = plan_login("job" if job else "session", jail, ident, tty_gid=tty_gid)
    plan.build_program()                # when the index held none: before the chroot
    try:
        jail_fd = open_checked(jail.root)
    except OSError as err:
        raise Denied(f"open jail {jail.root}: {err}") from None
    return confine_pam_session(jail_fd, plan)                                   # 5


def pam_sm_acct_mgmt(pamh: Any, flags: int, argv: list[str]) -> int:
    return _run(pamh, argv, "account", int(pamh.PAM_PERM_DENIED))


def pam_sm_open_session(pamh: Any, flags: int, argv: list[str]) -> int:
    return _run(pamh, argv, "session", int(pamh.PAM_SESSION_ERR))


def pam_sm_close_session(pamh: Any, flags: int, argv: list[str]) -> int:
    """The session is over: the PID namespace's PID 1 this process forked at open (mode
    pam) ends, and is reaped here, by its parent."""
    try:
        from pam_jail.login.confine import end_namespace_init

        end_namespace_init()
    except BaseException:  # noqa: BLE001, S110 - closing never fails a logout
        pass
    return int(pamh.PAM_SUCCESS)


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)


def pam_sm_chauthtok(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)
