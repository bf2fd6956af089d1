"""`pam-jail uchroot` and `pam-jail chrootlaunch` (jailkit's jk_uchroot, jk_chrootlaunch).

uchroot: a user enters the jail the configuration gives them and runs a program there.
It runs as the user, without any privilege (no setuid bit): the login shell's sequence,
confine.confine_unprivileged (user namespace mapping the user to itself, mount/PID/IPC/
UTS/net namespaces, nosuid,nodev bind, pivot_root, no capabilities, no_new_privs, the
drop proven). Root is refused. The jail allowed: the one jails.ini resolves for the user
(per user, per group, default, or a `/./` home marker), the same decision as at login;
`-j` may only name that jail. (jk_uchroot is setuid root and reads its own allow-list;
unprivileged namespaces make both unnecessary: the user gains nothing the host did not
already give them.)

chrootlaunch: root starts a program (a daemon) in a configured jail as a given user and
group: confine.confine_launch, the PAM path's namespaces and mounts (no PID namespace, no
fork: the program keeps the launcher's pid and may daemonize), chroot through the
checked fd, then the drop done in full: bounding set, setgroups/setresgid/setresuid, all
capabilities, no_new_privs, chdir, the drop proven. uid 0 and group 0 are refused, so
are unknown users, groups and jails, and jails that fail safety.check_jail.

Both: every inherited fd above 2 is closed first, the environment is rebuilt (never
passed through), one syslog line (auth facility) records who ran what in which jail.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import sys

from pam_jail.config import DEFAULT_PATH, Config, load_config
from pam_jail.errors import Denied, PamJailError, UnsafeJail, UsageError
from pam_jail.log import LOG_INFO, LOG_NOTICE, SysLog
from pam_jail.resolve import Identity, Jail, identity_from_passwd, resolve
from pam_jail.safety import check_jail

DEFAULT_PATH_ENV = "/usr/local/bin:/usr/bin:/bin"
KEPT_ENV = ("TERM", "LANG", "LC_ALL")


def _userns_missing() -> str | None:
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            if int(fh.read()) == 0:
                return "user namespaces are disabled (user.max_user_namespaces = 0)"
    except (OSError, ValueError):
        return "user namespaces are not available on this kernel"
    return None


def _checked(name: str, root: str) -> None:
    problems = check_jail(root)
    if problems:
        err = UnsafeJail(f"check jail {name}: unsafe", problems=problems,
                         hint=f"run `pam-jail check {name}`")
        err.jail = name
        raise err


def _env(home: str, user: str, shell: str, extra: list[str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env.update(PATH=DEFAULT_PATH_ENV, HOME=home, USER=user, LOGNAME=user, SHELL=shell)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key or "\0" in item:
            raise UsageError(f"--env {item[:64]!r}: expected VAR=VALUE")
        env[key] = value
    return env


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """execvpe inside the jail (PATH from the rebuilt environment)."""
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as err:
        raise Denied(f"execute {argv[0][:200]} in the jail: {err.strerror}") from None


def _program(args: argparse.Namespace) -> list[str]:
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return argv


# ---------------------------------------------------------------------- uchroot

def uchroot_jail(ident: Identity, cfg: Config, wanted: str | None) -> Jail:
    """The jail `ident` may enter, or Denied. Pure."""
    if ident.uid == 0:
        raise Denied("uchroot as root: refused (root is never put in a jail)",
                     hint="root starts programs in jails with `pam-jail chrootlaunch`")
    jail = resolve(ident, cfg)
    if jail is None:
        raise Denied(f"uchroot: user {ident.name} may enter no jail",
                     hint=f"map the user or a group of theirs to a jail in {cfg.source}")
    if wanted is not None and wanted not in (jail.name, jail.root):
        raise Denied(f"uchroot {wanted[:64]}: not allowed for user {ident.name} "
                     f"(allowed: {jail.name})")
    return jail


def run_uchroot(args: argparse.Namespace) -> int:
    from pam_jail.confine import close_fds, confine_unprivileged, relay_child
    from pam_jail.safety import open_checked

    close_fds()                                                   # nothing leads out
    if os.getuid() == 0 or os.geteuid() == 0:
        raise Denied("uchroot as root: refused (root is never put in a jail)",
                     hint="root starts programs in jails with `pam-jail chrootlaunch`")
    ident = identity_from_passwd(os.getuid())                     # never the environment
    jail = uchroot_jail(ident, load_config(DEFAULT_PATH), args.jail)
    _checked(jail.name, jail.root)
    home = jail.home if os.path.isdir(jail.root + jail.home) else "/"
    argv = _program(args) or [ident.shell]
    env = _env(home, ident.name, ident.shell, [])
    if args.dry_run:
        print(json.dumps({"user": ident.name, "jail": jail.name, "root": jail.root,
                          "home": home, "argv": argv}) if args.json else
              f"uchroot: would run {' '.join(argv)} as {ident.name} in jail {jail.name} "
              f"({jail.root}), cwd {home}")
        return 0
    missing = _userns_missing()
    if missing:
        raise Denied(f"uchroot: cannot confine: {missing}",
                     hint="root can start the program with `pam-jail chrootlaunch`")
    log = SysLog("pam_jail")
    log.connect()
    try:
        jail_fd = open_checked(jail.root)
    except OSError as err:
        raise Denied(f"open jail {jail.root}: {err}") from None
    log.decision(LOG_INFO, "uchroot", user=ident.name, jail=jail.name,
                 command=" ".join(argv))
    confine_unprivileged(jail_fd, jail.root, home, uid=ident.uid, gid=ident.gid,
                         network=jail.flag("network"), proc=jail.flag("proc"),
                         hostname=jail.options.get("hostname", ""), on_parent=relay_child)
    # --- inside the jail, as the user, without privileges (the parent relays) ---
    log.close()
    _exec(argv, env)
    return 1  # not reached


# ------------------------------------------------------------------ chrootlaunch

class LaunchPlan:
    """What chrootlaunch will do, decided before anything changes."""

    def __init__(self, jail: str, root: str, user: str, uid: int, gid: int,
                 groups: list[int], workdir: str, argv: list[str],
                 env: dict[str, str], options: dict[str, str]) -> None:
        self.jail, self.root, self.user = jail, root, user
        self.uid, self.gid, self.groups = uid, gid, groups
        self.workdir, self.argv, self.env, self.options = workdir, argv, env, options

    def as_dict(self) -> dict[str, object]:
        return {"jail": self.jail, "root": self.root, "user": self.user, "uid": self.uid,
                "gid": self.gid, "groups": self.groups, "workdir": self.workdir,
                "argv": self.argv, "env": self.env}


def _group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid if not name.isdigit() else \
            grp.getgrgid(int(name)).gr_gid
    except KeyError:
        raise Denied(f"chrootlaunch: unknown group {name[:64]}") from None


def plan_launch(cfg: Config, jail_name: str, user: str, group: str | None, workdir: str,
                argv: list[str], extra_env: list[str]) -> LaunchPlan:
    """Resolve and refuse: unknown jail/user/group, uid or gid 0, unsafe jail."""
    if not argv:
        raise UsageError("chrootlaunch: no program given (… -- PROGRAM [ARGS])")
    jails = {j.name: j for j in cfg.jails.values()}
    jail = jails.get(jail_name) or next(
        (j for j in cfg.jails.values() if jail_name.startswith("/") and j.root == jail_name),
        None)
    if jail is None:
        raise Denied(f"chrootlaunch {jail_name[:64]}: no such jail in {cfg.source}",
                     hint="`pam-jail chrootlaunch` only enters configured jails")
    ident = identity_from_passwd(int(user) if user.isdigit() else user)
    if ident.uid == 0:
        raise Denied(f"chrootlaunch as {ident.name}: uid 0 refused (never root in a jail)")
    gid = ident.gid if group is None else _group(group)
    if gid == 0:
        raise Denied("chrootlaunch with group 0: refused (never the root group in a jail)")
    groups = sorted(set(os.getgrouplist(ident.name, gid)))
    if 0 in groups:
        raise Denied(f"chrootlaunch as {ident.name}: member of group 0, refused")
    if not workdir.startswith("/"):
        raise UsageError(f"--chdir {workdir[:64]}: must be absolute (inside the jail)")
    _checked(jail.name, jail.root)
    env = _env(workdir, ident.name, "/bin/sh", extra_env)
    return LaunchPlan(jail.name, jail.root, ident.name, ident.uid, gid, groups, workdir,
                      argv, env, dict(jail.options))


def run_chrootlaunch(args: argparse.Namespace) -> int:
    from pam_jail.confine import close_fds, confine_launch
    from pam_jail.safety import open_checked

    close_fds()                                                   # no fd of root's
    if os.geteuid() != 0:
        raise Denied("chrootlaunch: must be run as root",
                     hint="a user enters their own jail with `pam-jail uchroot`")
    cfg = load_config(args.config or DEFAULT_PATH)
    plan = plan_launch(cfg, args.jail, args.user, args.group, args.chdir, _program(args),
                       args.env)
    if args.dry_run:
        if args.json:
            print(json.dumps(plan.as_dict(), indent=2))
        else:
            print(f"chrootlaunch: would run {' '.join(plan.argv)} in jail {plan.jail} "
                  f"({plan.root}) as {plan.user} (uid {plan.uid}, gid {plan.gid}, groups "
                  f"{','.join(map(str, plan.groups))}), cwd {plan.workdir}")
        return 0
    try:
        tty_gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_gid = 5
    log = SysLog("pam_jail")
    log.connect()
    try:
        jail_fd = open_checked(plan.root)
    except OSError as err:
        raise Denied(f"open jail {plan.root}: {err}") from None
    opts = plan.options
    devpts = opts.get("devpts", "yes") == "yes" and os.path.isdir(f"{plan.root}/dev/pts")
    try:
        confine_launch(jail_fd, plan.root, plan.workdir, uid=plan.uid, gid=plan.gid,
                       groups=plan.groups, network=opts.get("network") == "yes",
                       devpts=devpts, tty_gid=tty_gid, hostname=opts.get("hostname", ""))
    except PamJailError as err:
        log.decision(LOG_NOTICE, "chrootlaunch refused", user=plan.user, jail=plan.jail,
                     reason=str(err))
        raise
    log.decision(LOG_INFO, "chrootlaunch", user=plan.user, jail=plan.jail,
                 command=" ".join(plan.argv))
    log.close()
    sys.stdout.flush()
    _exec(plan.argv, plan.env)
    return 1  # not reached


# ---------------------------------------------------------------------- the parsers

UCHROOT_DESCRIPTION = """\
Enter the jail that /etc/pam_jail/jails.ini gives you (jailkit's jk_uchroot) and run
PROGRAM there (default: your login shell), as yourself, without privileges: a user
namespace that maps you to yourself, new mount/PID/IPC/UTS/net namespaces, the jail
bound nosuid,nodev, pivot_root into it, no capabilities, no_new_privs. The jail is the
one your login would get (user, group, default mapping or a /./ home marker); it is
checked (pam-jail check's path rule) first. Needs unprivileged user namespaces."""

UCHROOT_EPILOG = """\
environment: rebuilt, not inherited: PATH, HOME, USER, LOGNAME, SHELL, and TERM, LANG,
LC_ALL when set.

exit status:
  the program's own status (128+N when killed by signal N); 1 error; 2 usage;
  3 bad config; 4 unsafe jail; 5 denied (root, no jail, other jail); 6 confinement failed

examples:
  pam-jail uchroot                     # your login shell, inside your jail
  pam-jail uchroot -- ls -l /          # one command
  pam-jail uchroot --dry-run --json    # which jail, which directory"""

LAUNCH_DESCRIPTION = """\
Start PROGRAM inside a configured jail as USER (jailkit's jk_chrootlaunch), as root:
new mount/IPC/UTS (and, unless the jail sets network = yes, net) namespaces, the jail
bound nosuid,nodev, the host's null/zero/full/random/urandom/tty bound over the jail's
own nodes, chroot through the checked directory fd, then the drop: bounding set,
supplementary groups, gid, uid, every capability, no_new_privs, and the drop proven
(setuid(0) must fail). No PID namespace and no fork: PROGRAM keeps this pid and may
daemonize. Refused: uid 0, group 0, unknown user/group/jail, an unsafe jail."""

LAUNCH_EPILOG = """\
environment: rebuilt: PATH, HOME (= --chdir), USER, LOGNAME, SHELL=/bin/sh, TERM, LANG,
LC_ALL when set, and each --env VAR=VALUE.

exit status:
  the program's own (it replaces this process); 1 error; 2 usage; 3 bad config;
  4 unsafe jail; 5 denied; 6 confinement failed

examples:
  pam-jail chrootlaunch -j web -u www-data -- /usr/sbin/lighttpd -D -f /etc/lighttpd.conf
  pam-jail chrootlaunch -j web -u alice -g web --dry-run -- /usr/bin/id"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `uchroot` and `chrootlaunch` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("uchroot", help="enter your jail and run a program there (as you)",
                       description=UCHROOT_DESCRIPTION, epilog=UCHROOT_EPILOG,
                       formatter_class=fmt)
    p.add_argument("-j", "--jail", metavar="JAIL", default=None,
                   help="the jail to enter (name or root); must be the one you are given")
    p.add_argument("--dry-run", action="store_true",
                   help="print the jail, directory and command; enter nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]",
                   help="run inside the jail (default: your login shell)")
    p.set_defaults(func=run_uchroot)

    q = sub.add_parser("chrootlaunch", help="start a program in a jail as a user (root)",
                       description=LAUNCH_DESCRIPTION, epilog=LAUNCH_EPILOG,
                       formatter_class=fmt)
    q.add_argument("-j", "--jail", metavar="JAIL", required=True,
                   help="a jail of jails.ini (name, or its root path)")
    q.add_argument("-u", "--user", metavar="USER", required=True,
                   help="user (name or uid) to run as; never root")
    q.add_argument("-g", "--group", metavar="GROUP", default=None,
                   help="primary group (default: the user's); never group 0")
    q.add_argument("-C", "--chdir", metavar="DIR", default="/",
                   help="working directory inside the jail (default /); also HOME")
    q.add_argument("-e", "--env", metavar="VAR=VALUE", action="append", default=[],
                   help="set an environment variable (repeatable)")
    q.add_argument("-c", "--config", metavar="FILE", default=None,
                   help=f"jails.ini to read (default {DEFAULT_PATH})")
    q.add_argument("--dry-run", action="store_true",
                   help="resolve and check everything, print the plan, start nothing")
    q.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    q.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]",
                   help="the program to start inside the jail and its arguments")
    q.set_defaults(func=run_chrootlaunch)
