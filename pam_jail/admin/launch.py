"""`pam-jail uchroot` and `pam-jail chrootlaunch` (jailkit's jk_uchroot, jk_chrootlaunch).

uchroot: a user enters a jail the configuration allows them and runs a program there.
It runs as the user, without any privilege (no setuid bit): the login shell's sequence,
confine.confine_unprivileged (user namespace mapping the user to itself, mount/PID/IPC/
UTS/net namespaces, nosuid,nodev bind, the customer's private view of a shared jail
(jails.ini `private`), pivot_root, no capabilities, no_new_privs, the drop proven, the
jail's rlimits and seccomp filter: plan.plan_login's "userns" plan, as pam-jail-shell's).
Root is refused. The jails allowed (allowed_jails, pure): the one
jails.ini resolves for the user (per user, per group, default, or a `/./` home marker),
the same decision as at login, then those the optional root-owned
/etc/pam_jail/uchroot.ini lists for the user and for their groups (jailkit's
jk_uchroot.ini: `[users] [[NAME]] jails = A, B`, `[groups] [[NAME]] jails = ...`, only
jails of jails.ini). Without `-j` the login jail is entered (or the only one allowed);
`--list` shows them. Every refusal: one line for the user, one auth-facility syslog line
with user, jail and reason. (jk_uchroot is setuid root; unprivileged namespaces make
that unnecessary: the user gains nothing the host did not already give them.)

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

from pam_jail.login.config import DEFAULT_PATH, Config, read_ini
from pam_jail.login.config_file import load_config, read_root_owned
from pam_jail.login.errors import ConfigError, Denied, PamJailError, UnsafeJail, UsageError
from pam_jail.login.log import LOG_INFO, LOG_NOTICE, SysLog, escape
from pam_jail.login.resolve import Identity, Jail, identity_from_passwd, resolve, split_marker
from pam_jail.login.safety import check_jail

UCHROOT_PATH = "/etc/pam_jail/uchroot.ini"
DEFAULT_PATH_ENV = "/usr/local/bin:/usr/bin:/bin"
KEPT_ENV = ("TERM", "LANG", "LC_ALL")


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

class UchrootRules:
    """uchroot.ini, validated: user or group name -> names of jails of jails.ini."""

    __slots__ = ("users", "groups", "source")

    def __init__(self, users: dict[str, list[str]] | None = None,
                 groups: dict[str, list[str]] | None = None, source: str = UCHROOT_PATH
                 ) -> None:
        self.users = users or {}
        self.groups = groups or {}
        self.source = source


_NAME_BAD = set(" \t\n\r\0,*?!:/\\\"'")


def parse_uchroot(text: str, cfg: Config, source: str = UCHROOT_PATH) -> UchrootRules:
    """uchroot.ini's text -> UchrootRules. Pure. Every problem at once (ConfigError):
    unknown sections or keys, a user/group that is no [[section]], a jail that jails.ini
    does not define, root."""
    tree, problems = read_ini(text, source)
    rules = UchrootRules(source=source)
    for top, value in tree.items():
        if top not in ("users", "groups"):
            problems.append(f"{source}: unknown section or key {top!r} (expected [users] "
                            "and [groups])")
            continue
        if not isinstance(value, dict):
            problems.append(f"{source}: {top}: must be a section [{top}]")
            continue
        into = rules.users if top == "users" else rules.groups
        for name, section in value.items():
            where = f"{source}: [{top}] [[{name}]]"
            if not isinstance(section, dict):
                problems.append(f"{source}: [{top}] {name}: expected a [[{name}]] section "
                                "with `jails = NAME, NAME`")
                continue
            if not name or set(name) & _NAME_BAD or name.startswith("-"):
                problems.append(f"{where}: invalid name")
                continue
            if top == "users" and name == "root":
                problems.append(f"{where}: root is never put in a jail")
                continue
            for key in section:
                if key != "jails":
                    problems.append(f"{where}: unknown key {key!r} (only `jails`)")
            jails = section.get("jails", [])
            names = [jails] if isinstance(jails, str) else jails
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                problems.append(f"{where}: jails: expected jail names")
                continue
            unknown = [n for n in names if n not in cfg.jails]
            if unknown:
                problems.append(f"{where}: jails: not defined in {cfg.source}: "
                                f"{', '.join(unknown)}")
                continue
            into[name] = [n for n in names if n]
    if problems:
        raise ConfigError(f"load {source}: invalid", problems=problems,
                          hint="format: [users] [[NAME]] jails = JAIL, JAIL (docs/tools.md)")
    return rules


def load_uchroot(cfg: Config, path: str = UCHROOT_PATH) -> UchrootRules:
    """The optional uchroot.ini: absent -> no extra jails; present -> it must pass the
    rule jails.ini passes (root-owned, not group/other-writable, up to /)."""
    if not os.path.lexists(path):
        return UchrootRules(source=path)
    return parse_uchroot(read_root_owned(path), cfg, path)


def allowed_jails(ident: Identity, cfg: Config, rules: UchrootRules) -> list[Jail]:
    """The jails `ident` may enter, in order: the login jail (resolve), then uchroot.ini's
    for the user, then for the primary group and the supplementary groups (by name);
    each jail once. Pure. Root gets none (Denied); a mapping resolve() refuses is
    refused here too."""
    if ident.uid == 0:
        raise Denied("uchroot as root: refused (root is never put in a jail)",
                     hint="root starts programs in jails with `pam-jail chrootlaunch`")
    out: list[Jail] = []
    login = resolve(ident, cfg)
    if login is not None:
        out.append(login)
    marker = split_marker(ident.home)
    home = marker[1] if marker is not None else ident.home
    sources = [("user", rules.users.get(ident.name, []))]
    sources += [(f"group:{g}", rules.groups.get(g, []))
                for g in [ident.group, *sorted(ident.groups)] if g]
    for source, names in sources:
        for name in names:
            d = cfg.jails[name]
            if any(j.name == d.name or j.root == d.root for j in out):
                continue
            out.append(Jail(name=d.name, root=d.root, home=home, mode=d.mode,
                            allow_shell=d.allow_shell, source=f"uchroot.ini {source}",
                            options=dict(d.options)))
    return out


def uchroot_jail(ident: Identity, cfg: Config, wanted: str | None,
                 rules: UchrootRules | None = None) -> Jail:
    """The jail `ident` enters (wanted: a name or root, else the login jail, else the
    only one allowed), or Denied naming user, jail and reason. Pure."""
    allowed = allowed_jails(ident, cfg, rules or UchrootRules())
    names = ", ".join(j.name for j in allowed)
    if not allowed:
        raise Denied(f"uchroot: user {ident.name} may enter no jail",
                     hint=f"map the user or a group of theirs to a jail in {cfg.source}, "
                          f"or list jails for them in {UCHROOT_PATH}")
    if wanted is None:
        if not allowed[0].source.startswith("uchroot.ini") or len(allowed) == 1:
            return allowed[0]                       # the login jail, or the only one
        raise Denied(f"uchroot: user {ident.name} has no login jail: name one with -j "
                     f"(allowed: {names})")
    for jail in allowed:
        if wanted in (jail.name, jail.root):
            return jail
    err = Denied(f"uchroot {wanted[:64]}: not allowed for user {ident.name} "
                 f"(allowed: {names})")
    err.jail = wanted[:64]
    raise err


def _list_allowed(ident: Identity, jails: list[Jail], as_json: bool) -> int:
    """--list: each jail the caller may enter, where it comes from, whether it is safe
    now (safety.check_jail, the rule the entry applies)."""
    rows = []
    for jail in jails:
        problems = check_jail(jail.root)
        rows.append({"jail": jail.name, "root": jail.root, "home": jail.home,
                     "source": jail.source, "safe": not problems,
                     "problem": problems[0] if problems else ""})
    if as_json:
        print(json.dumps({"user": ident.name, "jails": rows}, indent=2))
        return 0
    if not rows:
        print(f"uchroot: user {ident.name} may enter no jail")
    for row in rows:
        state = "ok" if row["safe"] else f"unsafe: {row['problem']}"
        print("\t".join(escape(v) for v in (row["jail"], row["root"], row["source"], state)))
    return 0


def run_uchroot(args: argparse.Namespace) -> int:
    from pam_jail.login.confine import close_fds

    close_fds()                                                   # nothing leads out
    log = SysLog("pam_jail")
    who: object = os.getuid()
    try:
        if os.getuid() == 0 or os.geteuid() == 0:
            raise Denied("uchroot as root: refused (root is never put in a jail)",
                         hint="root starts programs in jails with `pam-jail chrootlaunch`")
        ident = identity_from_passwd(os.getuid())                 # never the environment
        who = ident.name
        return _uchroot(args, ident, log)
    except UsageError:
        raise
    except PamJailError as err:                                   # one syslog line each
        log.decision(LOG_NOTICE, "uchroot refused", user=who,
                     jail=err.jail or (args.jail or "-"), reason=str(err))
        raise
    finally:
        log.close()


def _uchroot(args: argparse.Namespace, ident: Identity, log: SysLog) -> int:
    from pam_jail.login.confine import confine_unprivileged, relay_child
    from pam_jail.login.plan import plan_login
    from pam_jail.login.safety import open_checked

    cfg = load_config(DEFAULT_PATH)
    rules = load_uchroot(cfg)
    if args.list:
        return _list_allowed(ident, allowed_jails(ident, cfg, rules), args.json)
    jail = uchroot_jail(ident, cfg, args.jail, rules)
    _checked(jail.name, jail.root)
    home = jail.home if os.path.isdir(jail.root + jail.home) else "/"
    argv = _program(args) or [ident.shell]
    env = _env(home, ident.name, ident.shell, [])
    if args.dry_run:
        print(json.dumps({"user": ident.name, "jail": jail.name, "root": jail.root,
                          "home": home, "argv": argv}) if args.json else
              escape(f"uchroot: would run {' '.join(argv)} as {ident.name} in jail "
                     f"{jail.name} ({jail.root}), cwd {home}"))
        return 0
    from pam_jail.login.confine import userns_unavailable

    missing = userns_unavailable()
    if missing:
        err = Denied(f"uchroot: cannot confine: {missing}",
                     hint="root can start the program with `pam-jail chrootlaunch`")
        err.jail = jail.name
        raise err
    log.connect()
    try:
        jail_fd = open_checked(jail.root)
    except OSError as oserr:
        err = Denied(f"open jail {jail.root}: {oserr}")
        err.jail = jail.name
        raise err from None
    log.decision(LOG_INFO, "uchroot", user=ident.name, jail=jail.name, via=jail.source,
                 command=" ".join(argv))
    plan = plan_login("userns", jail, ident)     # as pam-jail-shell's: the customer's
    plan.home = home                              # private view, the rlimits (no cgroup:
    if plan.limits is not None:                   # root makes those at login)
        plan.limits.memory, plan.limits.cpu = None, 0
    plan.build_program()
    try:
        confine_unprivileged(jail_fd, plan, relay_child)
    except PamJailError as cerr:
        cerr.jail = cerr.jail or jail.name
        raise
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
    from pam_jail.login.confine import close_fds, confine_launch
    from pam_jail.login.plan import plan_launch as confinement_for_launch
    from pam_jail.login.safety import open_checked

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
            print(escape(f"chrootlaunch: would run {' '.join(plan.argv)} in jail {plan.jail} "
                         f"({plan.root}) as {plan.user} (uid {plan.uid}, gid {plan.gid}, "
                         f"groups {','.join(map(str, plan.groups))}), cwd {plan.workdir}"))
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
    confinement = confinement_for_launch(plan.jail, plan.root, plan.workdir, plan.user,
                                         plan.uid, plan.gid, tuple(plan.groups), opts,
                                         devpts=devpts, tty_gid=tty_gid)
    confinement.build_program()
    try:
        confine_launch(jail_fd, confinement)
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
Enter a jail you are allowed (jailkit's jk_uchroot) and run PROGRAM there (default:
your login shell), as yourself, without privileges: a user namespace that maps you to
yourself, new mount/PID/IPC/UTS/net namespaces, the jail bound nosuid,nodev, pivot_root
into it, no capabilities, no_new_privs. Allowed: the jail your login gets from
/etc/pam_jail/jails.ini (user, group, default mapping or a /./ home marker), plus the
jails /etc/pam_jail/uchroot.ini lists for you or your groups. Without -j: your login
jail (or the only one allowed). The jail is checked (pam-jail check's path rule) first.
Needs unprivileged user namespaces."""

UCHROOT_EPILOG = f"""\
{UCHROOT_PATH} (optional; root-owned, not group/other-writable; only jails
defined in jails.ini):
  [users]
    [[alice]]
    jails = web, build
  [groups]
    [[developers]]
    jails = build

environment: rebuilt, not inherited: PATH, HOME, USER, LOGNAME, SHELL, and TERM, LANG,
LC_ALL when set.

refusals: one line on stderr and one syslog line (auth facility):
  uchroot refused user=NAME jail=JAIL reason="..."

exit status:
  the program's own status (128+N when killed by signal N); 1 error; 2 usage;
  3 bad config (jails.ini or uchroot.ini); 4 unsafe jail; 5 denied (root, no jail, a
  jail not allowed); 6 confinement failed; --list: 0

examples:
  pam-jail uchroot --list              # the jails you may enter (TAB-separated)
  pam-jail uchroot                     # your login shell, inside your jail
  pam-jail uchroot -j build -- make    # another jail uchroot.ini allows you
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
                   help="the jail to enter (name or root); must be one you are allowed")
    p.add_argument("--list", action="store_true",
                   help="print the jails you may enter (name, root, why, safe); enter "
                        "nothing")
    p.add_argument("--dry-run", action="store_true",
                   help="print the jail, directory and command; enter nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run or --list: JSON")
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
