"""pam-jail-shell: the login-shell / ForceCommand entry (jailkit's jk_chrootsh + jk_lsh).

It is the user's shell in the real /etc/passwd and runs as the user, with no setuid bit.
sshd starts it as `pam-jail-shell -c COMMAND` (commands, scp, rsync, sftp subsystem) or
with no arguments for an interactive login. The sequence, top to bottom:

  1. identity from getuid() and the real passwd (groups: those the login service gave
     the session, resolve.identity_from_passwd); never from the environment
  2. jail from root-owned /etc/pam_jail/jails.ini; jail checked (safety.check_jail)
  3. every inherited fd above 2 closed; syslog connected (close-on-exec)
  4. the jail path opened component by component (O_PATH|O_NOFOLLOW), each checked
  5. confine_unprivileged(): user namespace + mount/PID/IPC/UTS/net, nosuid,nodev,
     pivot_root, no capabilities, no_new_privs, drop proven, seccomp filter
  6. inside the jail (lsh.limited_shell): /etc/pam_jail/lsh.ini read, must not be the
     user's nor writable
  7. policy decision on the command (policy.decide; the repository rules ask JailFacts:
     lstat/access as the user); the program, its interpreter and the library
     directories must be root's and not group/other-writable (7b); umask, execve with a
     clean env

pam-jail-lsh (run_in_jail) does 6-7 only, and first proves it runs inside a jail the
PAM module confined (confine.confinement_missing): if the PAM line was missing or
skipped it refuses, never runs a command on the host.

Any refusal: one line on stderr for the user, one syslog line, non-zero exit.
Everything the confined part needs is imported here, before confinement.
"""

from __future__ import annotations

import posix
import sys

from pam_jail.login.admission import admit
from pam_jail.login.confine import (
    confine_unprivileged,
    confinement_missing,
    read_text,
    relay_child,
    userns_unavailable,
)
from pam_jail.login.errors import Denied, PamJailError
from pam_jail.login.limits import cgroups_missing, in_cgroup
from pam_jail.login.log import LOG_ERR, LOG_NOTICE, SysLog, escape
from pam_jail.login.lsh import EXIT_REFUSED, Session, limited_shell
from pam_jail.login.paths import environ, getenv
from pam_jail.login.plan import plan_login
from pam_jail.login.policy import hold_families
from pam_jail.login.resolve import (
    HOST_PID_ENV,
    JAIL_ENV,
    NO_SHELL_ENV,
    Jail,
    identity_from_passwd,
)
from pam_jail.login.safety import open_checked

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def _parse_args(args: list[str], own: str = "pam-jail-shell") -> str | None:
    """The command to decide on: `-c COMMAND` as sshd passes it, None for an interactive
    login. `-c PATH/OWN` (OWN: this entry's name) or no argument at all, with
    SSH_ORIGINAL_COMMAND set, is sshd's `ForceCommand PATH/OWN` (pam-jail sshd-config
    writes pam-jail-shell for mode shell, pam-jail-lsh for mode pam): the request,
    subsystems included, is in SSH_ORIGINAL_COMMAND; sshd names the sftp subsystem
    `internal-sftp` there, which is the jail's sftp-server. Either way the text is the
    user's own request and goes through the allow-list like any other."""
    forced = getenv("SSH_ORIGINAL_COMMAND")
    if not args or (len(args) == 2 and args[0] == "-c" and " " not in args[1]
                    and args[1].rsplit("/", 1)[-1] == own):
        if forced is None:
            return None          # an interactive login (sshd sets no original command)
        words = forced.split(" ", 1)
        if words[0] == "internal-sftp":
            return "sftp-server" + (f" {words[1]}" if len(words) > 1 else "")
        return forced
    if len(args) == 2 and args[0] == "-c":
        return args[1]
    raise Denied("usage: pam-jail-shell [-c COMMAND] (or pam-jail-lsh)")


def _no_shell_why(jail: Jail, user: str) -> str:
    """Why an interactive login is refused when jails.ini's allow_shell is off: a jail
    known only from the home's /./ marker has no jails.ini entry to say yes."""
    if jail.source == "marker":
        return (f"jails.ini maps {user} to no jail; {jail.name} comes from the home's /./ "
                "marker, and only a jails.ini jail can say allow_shell = yes")
    return f"jails.ini: allow_shell = no for jail {jail.name}"


def confine_and_run(args: list[str], log: SysLog, session: Session) -> int:
    """pam-jail-shell: steps 1-7."""
    command = _parse_args(args)
    if posix.getuid() == 0 or posix.geteuid() == 0:
        raise Denied("root is never put in a jail")
    ident = identity_from_passwd(posix.getuid(), posix.getgroups())  # 1
    session.user = ident.name
    jail = admit(ident)[2]                                          # 2
    if jail is None:
        raise Denied(f"user {ident.name} is in no jail")
    session.jail = jail.name
    if jail.mode == "sftp":
        raise Denied(f"{ident.name} is an sftp-only account (jail {jail.name}): no "
                     "commands, no shell")
    if jail.mode != "shell":
        raise Denied(f"jail {jail.name} has mode {jail.mode}, not shell")
    plan = plan_login("userns", jail, ident)                        # what step 5 does
    limits = plan.limits
    if limits is not None and (limits.memory is not None or limits.cpu):  # made by root
        joined = in_cgroup(read_text("/proc/self/cgroup"), jail.name, ident.name)
        if cgroups_missing(limits, joined):
            raise Denied(f"jail {jail.name} sets memory/cpu limits: this session is not in "
                         "its cgroup", hint="add pam_jail's PAM lines to the service "
                         "(etc/pam.d/pam_jail): root makes the cgroup at login")
    missing = userns_unavailable()
    if missing:
        raise Denied(f"cannot confine: {missing}",
                     hint="use the PAM path (mode = pam) on this host")
    try:
        jail_fd = open_checked(jail.root)                             # 4
    except OSError as err:
        raise Denied(f"open jail {jail.root}: {err}") from None
    plan.build_program()                # when the index held none: now, before the pivot
    hold_families()         # the rule families' byte-code: the jail holds no pam_jail
    confine_unprivileged(jail_fd, plan, relay_child)                # 5
    # --- from here on: inside the jail, as the user, without privileges ---
    return limited_shell(ident, jail.home, command, log, session,   # 6, 7
                         in_userns=True, shell_ok=jail.allow_shell,
                         no_shell_why=_no_shell_why(jail, ident.name))


def told_by_pam(log: SysLog, session: Session, environ: Mapping[str, str]) -> None:
    """pam-jail-lsh, in a session the PAM module confined: its log lines name the jail
    and the host pid of the process the module confined (sshd's session process), as
    the module put them in the PAM environment; inside the jail's PID namespace this
    process knows neither. Log fields only (escaped by log.clip); decides nothing."""
    jail = environ.get(JAIL_ENV, "")
    if jail:
        session.jail = jail
    pid = environ.get(HOST_PID_ENV, "")
    if pid.isascii() and pid.isdigit() and 0 < len(pid) <= 10:
        log.pid = int(pid)


def _told_why(told: str | None) -> str:
    """The PAM module's reason for refusing an interactive login (NO_SHELL_ENV), as one
    escaped line of at most 200 characters; a bare marker gives the general reason."""
    if told is None or told in ("", "1"):
        return "jails.ini: allow_shell = no"
    return escape(told, 200)


def run_in_jail(args: list[str], log: SysLog, session: Session) -> int:
    """pam-jail-lsh: the limited shell alone, for a session the PAM module has already
    confined (it is the login shell INSIDE the jail; identity from the jail's passwd)."""
    command = _parse_args(args, "pam-jail-lsh")
    if posix.getuid() == 0 or posix.geteuid() == 0:
        raise Denied("the limited shell never runs as root")
    outside = confinement_missing()                                 # not confined: refuse
    if outside:
        raise Denied(f"not inside a jail ({outside}): pam-jail-lsh runs only in a session "
                     "the pam_jail PAM module confined",
                     hint="the PAM session line is missing, optional or skipped for this "
                          "service (etc/pam.d/pam_jail)")
    told_by_pam(log, session, environ())           # jail= and the host pid of its lines
    ident = identity_from_passwd(posix.getuid())
    session.user = ident.name
    try:   # the rules read relative paths against the home: the program must start there
        posix.chdir(ident.home)   # (sshd chdirs to the passwd home, a root-owned stub)
    except OSError as err:
        raise Denied(f"chdir {ident.home[:128]}: {err.strerror}") from None
    told = getenv(NO_SHELL_ENV)        # set by the PAM module: allow_shell = no, and why
    return limited_shell(ident, ident.home, command, log, session, in_userns=False,
                         shell_ok=told is None, no_shell_why=_told_why(told))


def run(args: list[str], log: SysLog,
        body: Callable[[list[str], SysLog, Session], int] = confine_and_run) -> int:
    """Run `body`; every refusal becomes one line for the user and one syslog line."""
    session = Session()
    try:
        return body(args, log, session)
    except PamJailError as err:
        log.decision(LOG_NOTICE, "login refused", user=session.user,
                     jail=err.jail or session.jail, reason=err.reason(),
                     rhost=session.rhost)
        print(f"pam_jail: login refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except BaseException as err:  # never a traceback on the user's terminal
        log.decision(LOG_ERR, "login refused", user=session.user, jail=session.jail,
                     reason=f"internal error: {type(err).__name__}: {err}",
                     rhost=session.rhost)
        print("pam_jail: login refused: internal error (see the system log)", file=sys.stderr)
        return EXIT_REFUSED


def main(body: Callable[[list[str], SysLog, Session], int] = confine_and_run,
         ident: str = "pam-jail-shell") -> int:
    from pam_jail.login.confine import close_fds

    close_fds()                                                      # 3
    log = SysLog(ident)
    log.connect()
    status = run(sys.argv[1:], log, body)
    sys.stdout.flush()
    posix._exit(status)


def lsh_main() -> int:
    """Entry point of pam-jail-lsh (the login shell inside a PAM-path jail)."""
    return main(run_in_jail, "pam-jail-lsh")


if __name__ == "__main__":
    main()
