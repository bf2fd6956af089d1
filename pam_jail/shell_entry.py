"""pam-jail-shell: the login-shell / ForceCommand entry (jailkit's jk_chrootsh + jk_lsh).

It is the user's shell in the real /etc/passwd and runs as the user, with no setuid bit.
sshd starts it as `pam-jail-shell -c COMMAND` (commands, scp, rsync, sftp subsystem) or
with no arguments for an interactive login. The sequence, top to bottom:

  1. identity from getuid() and the real passwd; never from the environment
  2. jail from root-owned /etc/pam_jail/jails.ini; jail checked (safety.check_jail)
  3. every inherited fd above 2 closed; syslog connected (close-on-exec)
  4. the jail path opened component by component (O_PATH|O_NOFOLLOW), each checked
  5. confine_unprivileged(): user namespace + mount/PID/IPC/UTS/net, nosuid,nodev,
     pivot_root, no capabilities, no_new_privs, drop proven
  6. inside the jail: /etc/pam_jail/lsh.ini read, must not be the user's nor writable
  7. policy decision on the command (policy.decide), umask, execve with a clean env

Any refusal: one line on stderr for the user, one syslog line, non-zero exit.
Everything the confined part needs is imported here, before confinement.
"""

from __future__ import annotations

import os
import stat
import sys

from pam_jail.confine import confine_unprivileged, relay_child
from pam_jail.errors import Denied, PamJailError
from pam_jail.log import LOG_ERR, LOG_INFO, LOG_NOTICE, SysLog
from pam_jail.login import admit
from pam_jail.policy import decide, parse_lsh, select_policy
from pam_jail.resolve import identity_from_passwd
from pam_jail.safety import open_checked

LSH_PATH = "/etc/pam_jail/lsh.ini"
EXIT_REFUSED = 1
EXIT_COMMAND_REFUSED = 126


def _userns_available() -> str | None:
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            if int(fh.read()) == 0:
                return "user namespaces are disabled (user.max_user_namespaces = 0)"
    except (OSError, ValueError):
        return "user namespaces are not available on this kernel"
    return None


def read_allow_list(uid: int) -> str:
    """Read the allow-list inside the jail; refuse one the user owns or could write."""
    try:
        fd = os.open(LSH_PATH, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise Denied(f"read {LSH_PATH} in the jail: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid == uid or not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            raise Denied(f"read {LSH_PATH} in the jail: owned or writable by the user")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _parse_args(args: list[str]) -> str | None:
    if not args:
        return None
    if len(args) == 2 and args[0] == "-c":
        return args[1]
    raise Denied("usage: pam-jail-shell [-c COMMAND]")


def run(args: list[str], log: SysLog) -> int:
    user: object = os.getuid()
    jail_name = "-"
    ctx = {"rhost": os.environ.get("SSH_CONNECTION", "").split(" ")[0] or None}
    try:
        command = _parse_args(args)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise Denied("root is never put in a jail")
        ident = identity_from_passwd(os.getuid())                   # 1
        user = ident.name
        _cfg, jail = admit(ident)[1:]                               # 2
        if jail is None:
            raise Denied(f"user {ident.name} is in no jail")
        jail_name = jail.name
        if jail.mode != "shell":
            raise Denied(f"jail {jail.name} has mode {jail.mode}, not shell")
        missing = _userns_available()
        if missing:
            raise Denied(f"cannot confine: {missing}",
                         hint="use the PAM path (mode = pam) on this host")
        try:
            jail_fd = open_checked(jail.root)                         # 4
        except OSError as err:
            raise Denied(f"open jail {jail.root}: {err}") from None
        confine_unprivileged(jail_fd, jail.root, jail.home, uid=ident.uid,   # 5
                             gid=ident.gid, network=jail.flag("network"),
                             proc=jail.flag("proc"), hostname=jail.options.get("hostname", ""),
                             on_parent=relay_child)
        # --- from here on: inside the jail, as the user, without privileges ---
        policy = select_policy(parse_lsh(read_allow_list(ident.uid), LSH_PATH),  # 6
                               ident.name, [g for g in (ident.group, *ident.groups) if g])
        decision = decide(policy, command, user=ident.name, home=jail.home,      # 7
                          client_env=dict(os.environ))
        if not decision.allowed:
            log.decision(LOG_NOTICE, "command refused", user=user, jail=jail_name,
                         reason=f"{decision.rule}: {decision.reason}",
                         command=command, **ctx)
            reason = decision.reason.removeprefix("pam_jail: ")
            print(f"pam_jail: refused: {reason} (rule: {decision.rule})", file=sys.stderr)
            return EXIT_COMMAND_REFUSED
        log.decision(LOG_INFO, "command allowed" if command is not None else "shell allowed",
                     user=user, jail=jail_name, command=command, rule=decision.rule, **ctx)
        log.close()
        os.umask(decision.umask)
        try:
            os.execve(decision.argv[0], list(decision.argv), decision.env)
        except OSError as err:
            raise Denied(f"execute {decision.argv[0]}: {err.strerror}") from None
    except PamJailError as err:
        problems = getattr(err, "problems", [])
        reason = str(err) + (": " + "; ".join(problems[:3]) if problems else "")
        jail_name = err.jail or jail_name
        log.decision(LOG_NOTICE, "login refused", user=user, jail=jail_name, reason=reason,
                     **ctx)
        print(f"pam_jail: login refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except BaseException as err:  # never a traceback on the user's terminal
        log.decision(LOG_ERR, "login refused", user=user, jail=jail_name,
                     reason=f"internal error: {type(err).__name__}: {err}", **ctx)
        print("pam_jail: login refused: internal error (see the system log)", file=sys.stderr)
        return EXIT_REFUSED


def main() -> int:
    from pam_jail.confine import close_fds

    close_fds()                                                      # 3
    log = SysLog("pam-jail-shell")
    log.connect()
    status = run(sys.argv[1:], log)
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
