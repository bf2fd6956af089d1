"""The limited shell (jailkit's jk_lsh), steps 6-7 of both entries, inside the jail as
the user: read the allow-list (never the user's, never writable), decide on the command
(policy.decide, asking the file system through JailFacts), check the program and exec it
with a clean environment, or refuse with one line for the user and one syslog line.

pam-jail-shell runs it after confining (shell_entry.confine_and_run), pam-jail-lsh in a
session the PAM module confined (shell_entry.run_in_jail); explain and doctor read the
allow-list and the facts the same way (JailFacts with a root prefix).
"""

from __future__ import annotations

import posix
import sys

from pam_jail.login.errors import Denied
from pam_jail.login.log import LOG_DEBUG, LOG_INFO, LOG_NOTICE, SysLog
from pam_jail.login.paths import (
    S_IMODE,
    S_ISDIR,
    S_ISLNK,
    S_ISREG,
    environ,
    getenv,
    read_fd,
)
from pam_jail.login.policy import FileFacts, PathFacts, decide, parse_lsh, select_policy
from pam_jail.login.resolve import Identity
from pam_jail.login.safety import LIB_DIRS, MISSING, check_exec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

LSH_PATH = "/etc/pam_jail/lsh.ini"
SENT_PREFIX = "PAM_JAIL_SENT_"   # shells/entry.c: a locale variable the client sent
EXIT_REFUSED = 1
EXIT_COMMAND_REFUSED = 126


def read_allow_list(uid: int, path: str = LSH_PATH) -> str:
    """Read the allow-list (inside the jail: LSH_PATH; explain/doctor pass JAIL + it):
    a regular file, never through a symlink, not owned by the user, not group/other-
    writable."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError as err:
        raise Denied(f"read {path}: {err.strerror}") from None
    try:
        st = posix.fstat(fd)
        if st.st_uid == uid or not S_ISREG(st.st_mode) or st.st_mode & 0o022:
            raise Denied(f"read {path}: owned or writable by the user")
        data = read_fd(fd)
    finally:
        posix.close(fd)
    return data.decode("utf-8", "replace")


class JailFacts(FileFacts):
    """The policy's view of the file system (policy.FileFacts): lstat and access(W_OK)
    of a path, as this process sees it. Inside the jail, as the user, that is exactly
    what the user can do. `root` prefixes every path and `uid`/`gids` stand for the
    user when root asks on the host (pam-jail explain: mode bits only, no ACLs)."""

    def __init__(self, root: str = "", uid: int | None = None,
                 gids: frozenset[int] = frozenset()) -> None:
        self.root = root.rstrip("/")
        self.uid = posix.getuid() if uid is None else uid
        self.gids = gids
        self.ask_kernel = uid is None

    def stat(self, path: str) -> PathFacts:
        full = self.root + path
        try:
            st = posix.lstat(full)
        except OSError as err:
            missing = isinstance(err, (FileNotFoundError, NotADirectoryError))
            return PathFacts("missing" if missing else "unknown")
        mode = st.st_mode
        kind = ("dir" if S_ISDIR(mode) else "file" if S_ISREG(mode)
                else "link" if S_ISLNK(mode) else "other")
        if kind == "link":
            writable = False
        elif self.ask_kernel:
            writable = posix.access(full, posix.W_OK, follow_symlinks=False)
        else:
            writable = bool(mode & 0o002 or (mode & 0o020 and st.st_gid in self.gids)
                            or (mode & 0o200 and st.st_uid == self.uid))
        return PathFacts(kind, st.st_uid == self.uid, writable, S_IMODE(mode))

    def entries(self, path: str) -> tuple[str, ...]:
        try:
            names = posix.listdir(self.root + path)
        except OSError:
            return ()
        return tuple(sorted(names))  # all of them: an entry left out would go unchecked


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


class Session:
    """What the one log line of this login names (filled in as it becomes known)."""

    __slots__ = ("user", "jail", "rhost")

    def __init__(self) -> None:
        self.user: object = posix.getuid()
        self.jail = "-"
        self.rhost = (getenv("SSH_CONNECTION") or "").split(" ")[0] or None


def limited_shell(ident: Identity, home: str, command: str | None, log: SysLog,
                  session: Session, *, in_userns: bool, shell_ok: bool = True,
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
                      client_env=client_environment(environ()), facts=JailFacts())
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
    posix.umask(decision.umask)
    try:
        posix.execve(decision.argv[0], list(decision.argv), decision.env)
    except OSError as err:
        raise Denied(f"execute {decision.argv[0]}: {err.strerror}") from None
    return EXIT_REFUSED  # not reached
