"""pam-jail-shell: the login-shell / ForceCommand entry (jailkit's jk_chrootsh + jk_lsh).

It is the user's shell in the real /etc/passwd and runs as the user, with no setuid bit.
sshd starts it as `pam-jail-shell -c COMMAND` (commands, scp, rsync, sftp subsystem) or
with no arguments for an interactive login. The sequence, top to bottom:

  1. identity from getuid() and the real passwd; never from the environment
  2. jail from root-owned /etc/pam_jail/jails.ini; jail checked (safety.check_jail)
  3. every inherited fd above 2 closed; syslog connected (close-on-exec)
  4. the jail path opened component by component (O_PATH|O_NOFOLLOW), each checked
  5. confine_unprivileged(): user namespace + mount/PID/IPC/UTS/net, nosuid,nodev,
     pivot_root, no capabilities, no_new_privs, drop proven, seccomp filter
  6. inside the jail: /etc/pam_jail/lsh.ini read, must not be the user's nor writable
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

import errno
import os
import stat
import sys

from pam_jail.config import DEFAULT_PATH, seccomp_of
from pam_jail.confine import (
    confine_unprivileged,
    confinement_missing,
    read_text,
    relay_child,
    userns_unavailable,
)
from pam_jail.errors import Denied, PamJailError
from pam_jail.limits import cgroups_missing, in_cgroup, limits_of
from pam_jail.log import LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, SysLog
from pam_jail.login import admit
from pam_jail.policy import FileFacts, PathFacts, decide, parse_lsh, select_policy
from pam_jail.resolve import (
    HOST_PID_ENV,
    JAIL_ENV,
    NO_SHELL_ENV,
    Identity,
    Jail,
    identity_from_passwd,
)
from pam_jail.safety import LIB_DIRS, MISSING, check_exec, open_checked

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

LSH_PATH = "/etc/pam_jail/lsh.ini"
SENT_PREFIX = "PAM_JAIL_SENT_"   # shells/entry.c: a locale variable the client sent
EXIT_REFUSED = 1
EXIT_COMMAND_REFUSED = 126


def read_allow_list(uid: int, path: str = LSH_PATH) -> str:
    """Read the allow-list (inside the jail: LSH_PATH; explain/doctor pass JAIL + it):
    a regular file, never through a symlink, not owned by the user, not group/other-
    writable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise Denied(f"read {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid == uid or not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            raise Denied(f"read {path}: owned or writable by the user")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


class JailFacts(FileFacts):
    """The policy's view of the file system (policy.FileFacts): lstat and access(W_OK)
    of a path, as this process sees it. Inside the jail, as the user, that is exactly
    what the user can do. `root` prefixes every path and `uid`/`gids` stand for the
    user when root asks on the host (pam-jail explain: mode bits only, no ACLs)."""

    def __init__(self, root: str = "", uid: int | None = None,
                 gids: frozenset[int] = frozenset()) -> None:
        self.root = root.rstrip("/")
        self.uid = os.getuid() if uid is None else uid
        self.gids = gids
        self.ask_kernel = uid is None

    def stat(self, path: str) -> PathFacts:
        full = self.root + path
        try:
            st = os.lstat(full)
        except OSError as err:
            missing = err.errno in (errno.ENOENT, errno.ENOTDIR)
            return PathFacts("missing" if missing else "unknown")
        mode = st.st_mode
        kind = ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
                else "link" if stat.S_ISLNK(mode) else "other")
        if kind == "link":
            writable = False
        elif self.ask_kernel:
            writable = os.access(full, os.W_OK, follow_symlinks=False)
        else:
            writable = bool(mode & 0o002 or (mode & 0o020 and st.st_gid in self.gids)
                            or (mode & 0o200 and st.st_uid == self.uid))
        return PathFacts(kind, st.st_uid == self.uid, writable, stat.S_IMODE(mode))

    def entries(self, path: str) -> tuple[str, ...]:
        try:
            names = os.listdir(self.root + path)
        except OSError:
            return ()
        return tuple(sorted(names))  # all of them: an entry left out would go unchecked


def _parse_args(args: list[str], own: str = "pam-jail-shell") -> str | None:
    """The command to decide on: `-c COMMAND` as sshd passes it, None for an interactive
    login. `-c PATH/OWN` (OWN: this entry's name) or no argument at all, with
    SSH_ORIGINAL_COMMAND set, is sshd's `ForceCommand PATH/OWN` (pam-jail sshd-config
    writes pam-jail-shell for mode shell, pam-jail-lsh for mode pam): the request,
    subsystems included, is in SSH_ORIGINAL_COMMAND; sshd names the sftp subsystem
    `internal-sftp` there, which is the jail's sftp-server. Either way the text is the
    user's own request and goes through the allow-list like any other."""
    forced = os.environ.get("SSH_ORIGINAL_COMMAND")
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


def _is_locale(name: str) -> bool:
    return name in ("LANG", "LANGUAGE") or name.startswith("LC_")


def client_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the client sent, as the exec stub received it, for the policy's
    `pass_env`. Python's start-up writes locale variables into its own environ (PEP 538:
    LC_CTYPE=C.UTF-8 when the locale is C or cannot be loaded, even over a client's
    LC_CTYPE), so the stub (shells/entry.c) hands the client's LANG, LANGUAGE and LC_*
    over as PAM_JAIL_SENT_NAME: those are put back, and every locale variable under its
    own name here is the interpreter's and dropped. Without the stub no locale variable
    passes (never one the interpreter invented)."""
    env = {name: value for name, value in environ.items()
           if not _is_locale(name) and not name.startswith(SENT_PREFIX)}
    for name, value in environ.items():
        sent = name.removeprefix(SENT_PREFIX)
        if sent != name and _is_locale(sent):
            env[sent] = value
    return env


class _Session:
    """What the one log line of this login names (filled in as it becomes known)."""

    __slots__ = ("user", "jail", "rhost")

    def __init__(self) -> None:
        self.user: object = os.getuid()
        self.jail = "-"
        self.rhost = os.environ.get("SSH_CONNECTION", "").split(" ")[0] or None


def _no_shell_why(jail: Jail, user: str) -> str:
    """Why an interactive login is refused when jails.ini's allow_shell is off: a jail
    known only from the home's /./ marker has no jails.ini entry to say yes."""
    if jail.source == "marker":
        return (f"jails.ini maps {user} to no jail; {jail.name} comes from the home's /./ "
                "marker, and only a jails.ini jail can say allow_shell = yes")
    return f"jails.ini: allow_shell = no for jail {jail.name}"


def limited_shell(ident: Identity, home: str, command: str | None, log: SysLog,
                  session: _Session, *, in_userns: bool, shell_ok: bool = True,
                  no_shell_why: str = "jails.ini: allow_shell = no") -> int:
    """Steps 6-7, inside the jail: allow-list, decision, exec (or one refusal line).
    An interactive login needs both jails.ini's allow_shell (`shell_ok`) and the jail's
    lsh.ini allow_shell."""
    if command is None and not shell_ok:
        log.decision(LOG_NOTICE, "command refused", user=session.user, jail=session.jail,
                     reason=f"interactive: {no_shell_why}", rhost=session.rhost)
        print("pam_jail: refused: interactive login is not allowed for this jail "
              f"({no_shell_why})", file=sys.stderr)
        return EXIT_COMMAND_REFUSED
    policy = select_policy(parse_lsh(read_allow_list(ident.uid), LSH_PATH),
                           ident.name, [g for g in (ident.group, *ident.groups) if g])
    decision = decide(policy, command, user=ident.name, home=home,
                      client_env=client_environment(os.environ), facts=JailFacts())
    if not decision.allowed:
        log.decision(LOG_DEBUG if decision.quiet else LOG_NOTICE, "command refused",
                     user=session.user, jail=session.jail,
                     reason=f"{decision.rule}: {decision.reason}", command=command,
                     rhost=session.rhost)
        reason = decision.reason.removeprefix("pam_jail: ")
        print(f"pam_jail: refused: {reason} (rule: {decision.rule})", file=sys.stderr)
        return EXIT_COMMAND_REFUSED
    unsafe = check_exec("", decision.argv[0], dirs=LIB_DIRS,                    # 7b
                        user=ident.uid if in_userns else None)
    if unsafe == [f"{decision.argv[0]}: {MISSING}"]:
        raise Denied(f"execute {decision.argv[0]}: No such file or directory")
    if unsafe:
        raise Denied(f"run {decision.argv[0]}: unsafe in this jail: {unsafe[0]}",
                     hint="pam-jail check JAIL; pam-jail update")
    log.decision(LOG_INFO, "command allowed" if command is not None else "shell allowed",
                 user=session.user, jail=session.jail, command=command, rule=decision.rule,
                 rhost=session.rhost)
    log.close()
    os.umask(decision.umask)
    try:
        os.execve(decision.argv[0], list(decision.argv), decision.env)
    except OSError as err:
        raise Denied(f"execute {decision.argv[0]}: {err.strerror}") from None
    return EXIT_REFUSED  # not reached


def _build_filter(allow: tuple[str, ...]) -> bytes | None:
    """The seccomp program built here, before the fork and the pivot (the jail need not
    hold pam_jail's modules); None: no table for this machine (load_syscall_filter then
    refuses, naming it)."""
    from pam_jail import syscalls

    try:
        return syscalls.program(os.uname().machine, allow)
    except ValueError:
        return None


def confine_and_run(args: list[str], log: SysLog, session: _Session) -> int:
    """pam-jail-shell: steps 1-7."""
    command = _parse_args(args)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise Denied("root is never put in a jail")
    ident = identity_from_passwd(os.getuid())                       # 1
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
    limits = limits_of(jail.options)
    if limits.memory is not None or limits.cpu:                     # made by root, or none
        joined = in_cgroup(read_text("/proc/self/cgroup"), jail.name, ident.name)
        if cgroups_missing(limits, joined):
            raise Denied(f"jail {jail.name} sets memory/cpu limits: this session is not in "
                         "its cgroup", hint="add pam_jail's PAM lines to the service "
                         "(etc/pam.d/pam_jail): root makes the cgroup at login")
    missing = userns_unavailable()
    if missing:
        raise Denied(f"cannot confine: {missing}",
                     hint="use the PAM path (mode = pam) on this host")
    from pam_jail.config_index import seccomp_program  # (outside the jail only)
    from pam_jail.view import private_view_of

    try:
        jail_fd = open_checked(jail.root)                             # 4
    except OSError as err:
        raise Denied(f"open jail {jail.root}: {err}") from None
    seccomp = seccomp_of(jail.options)          # its program: precomputed, or built
    prog = None if seccomp is None else \
        seccomp_program(DEFAULT_PATH, seccomp) or _build_filter(seccomp)
    confine_unprivileged(jail_fd, jail.root, jail.home, uid=ident.uid,       # 5
                         gid=ident.gid, network=jail.flag("network"),
                         proc=jail.flag("proc"), hostname=jail.options.get("hostname", ""),
                         on_parent=relay_child, limits=limits, seccomp=seccomp,
                         view=private_view_of(jail, ident), seccomp_program=prog)
    # --- from here on: inside the jail, as the user, without privileges ---
    return limited_shell(ident, jail.home, command, log, session,   # 6, 7
                         in_userns=True, shell_ok=jail.allow_shell,
                         no_shell_why=_no_shell_why(jail, ident.name))


def told_by_pam(log: SysLog, session: _Session, environ: Mapping[str, str]) -> None:
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


def run_in_jail(args: list[str], log: SysLog, session: _Session) -> int:
    """pam-jail-lsh: the limited shell alone, for a session the PAM module has already
    confined (it is the login shell INSIDE the jail; identity from the jail's passwd)."""
    command = _parse_args(args, "pam-jail-lsh")
    if os.getuid() == 0 or os.geteuid() == 0:
        raise Denied("the limited shell never runs as root")
    outside = confinement_missing()                                 # not confined: refuse
    if outside:
        raise Denied(f"not inside a jail ({outside}): pam-jail-lsh runs only in a session "
                     "the pam_jail PAM module confined",
                     hint="the PAM session line is missing, optional or skipped for this "
                          "service (etc/pam.d/pam_jail)")
    told_by_pam(log, session, os.environ)          # jail= and the host pid of its lines
    ident = identity_from_passwd(os.getuid())
    session.user = ident.name
    try:   # the rules read relative paths against the home: the program must start there
        os.chdir(ident.home)   # (sshd chdirs to the passwd home, a root-owned stub)
    except OSError as err:
        raise Denied(f"chdir {ident.home[:128]}: {err.strerror}") from None
    return limited_shell(ident, ident.home, command, log, session, in_userns=False,
                         shell_ok=NO_SHELL_ENV not in os.environ)


def run(args: list[str], log: SysLog,
        body: Callable[[list[str], SysLog, _Session], int] = confine_and_run) -> int:
    """Run `body`; every refusal becomes one line for the user and one syslog line."""
    session = _Session()
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


def main(body: Callable[[list[str], SysLog, _Session], int] = confine_and_run,
         ident: str = "pam-jail-shell") -> int:
    from pam_jail.confine import close_fds

    close_fds()                                                      # 3
    log = SysLog(ident)
    log.connect()
    status = run(sys.argv[1:], log, body)
    sys.stdout.flush()
    os._exit(status)


def lsh_main() -> int:
    """Entry point of pam-jail-lsh (the login shell inside a PAM-path jail)."""
    return main(run_in_jail, "pam-jail-lsh")


if __name__ == "__main__":
    main()
