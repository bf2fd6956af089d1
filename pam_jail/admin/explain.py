"""`pam-jail explain USER [-- COMMAND]`: what the login path would do for USER.

Runs the login path's own decisions, in its order, without confining anything:
identity from the real passwd (resolve.identity_from_passwd), jail from the root-owned
jails.ini (config.load_config + resolve.resolve, as login.admit does), the jail check
(safety.check_jail), the allow-list JAIL/etc/pam_jail/lsh.ini (policy.parse_lsh +
select_policy, the same ownership rule as pam-jail-shell) and the decision on COMMAND
(policy.decide) with the exact argv and environment that would reach execve, and the
login's own check of that program (safety.check_exec: a program the list allows but the
jail lacks is refused, with the profiles.ini profiles that provide it).
"""

from __future__ import annotations

import argparse
import json
import sys

from pam_jail.login.config import DEFAULT_PATH
from pam_jail.login.config_file import load_config
from pam_jail.login.errors import ConfigError, Denied
from pam_jail.login.log import escape
from pam_jail.login.lsh import JailFacts
from pam_jail.login.policy import Decision, decide, parse_lsh, select_policy
from pam_jail.login.resolve import (
    JAILING_SHELLS,
    JAILKIT_SHELL_NAMES,
    Identity,
    Jail,
    identity_from_passwd,
    is_jailing_shell,
    resolve,
    split_marker,
)
from pam_jail.login.safety import check_jail

LSH_INSIDE = "/etc/pam_jail/lsh.ini"
EXIT_ALLOWED = 0
EXIT_DENIED = Denied.exit_code

EPILOG = """\
COMMAND is what sshd would pass to the login shell after -c (several words are joined
with single spaces, as ssh does). Without COMMAND: an interactive login. The client
environment is taken as empty (sshd passes only what AcceptEnv names).

exit status:
  0 the login (and COMMAND) would be allowed
  5 refused: unknown user, unmapped user with unmapped = deny, unsafe jail, unusable
    lsh.ini, or COMMAND refused by the allow-list
  1 error; 2 usage; 3 jails.ini unsafe or invalid

examples:
  pam-jail explain alice
  pam-jail explain alice -- rsync --server -vlogDtpre.iLsfxCIvu . backup/
  pam-jail explain --json alice -- 'scp -t up.txt'
"""


def read_lsh(root: str, uid: int) -> str:
    """JAIL/etc/pam_jail/lsh.ini read by pam-jail-shell's own reader and rule."""
    from pam_jail.login.lsh import read_allow_list

    return read_allow_list(uid, root.rstrip("/") + LSH_INSIDE)


def _jail_facts(root: str, ident: Identity) -> JailFacts:
    """What the user would see of the jail's files, from the host (mode bits only)."""
    import grp

    gids = {ident.gid}
    for name in ident.groups:
        try:
            gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            pass
    return JailFacts(root, ident.uid, frozenset(gids))


def explain(user: str, command: str | None, config_path: str = DEFAULT_PATH) -> dict[str, object]:
    """The whole explanation as plain data (what --json prints)."""
    out: dict[str, object] = {"user": user, "command": command, "allowed": False}
    ident = identity_from_passwd(user)
    out["uid"] = ident.uid
    out["groups"] = [g for g in (ident.group, *ident.groups) if g]
    cfg = load_config(config_path)
    jail = resolve(ident, cfg)
    if jail is None and split_marker(ident.home) is not None \
            and ident.shell.rsplit("/", 1)[-1] in JAILKIT_SHELL_NAMES:
        marker = split_marker(ident.home)
        assert marker is not None
        root, home = marker
        out["jail"] = {"name": f"jailkit:{root}", "root": root, "home": home,
                       "mode": "jailkit", "source": "marker"}
        out["reason"] = (f"jailed by jailkit: login shell {ident.shell} chroots into {root} "
                         "(home marker /./); pam_jail leaves this user to jailkit unless "
                         "jails.ini maps them")
        out["allowed"] = True
        return out
    if jail is None:
        out["jail"] = None
        out["reason"] = (f"user {ident.name} is in no jail (unmapped = {cfg.unmapped}: "
                         f"{'not jailed' if cfg.unmapped == 'allow' else 'refused'})")
        out["allowed"] = cfg.unmapped == "allow"
        return out
    out["jail"] = {"name": jail.name, "root": jail.root, "home": jail.home,
                   "mode": jail.mode, "source": jail.source}
    from pam_jail.admin.account import outside_the_jail, user_gids

    out["outside"] = outside_the_jail(ident.name, ident.uid, user_gids(ident.name, ident.gid),
                                      ident.home, jail.root, jail.root.rstrip("/") + jail.home)
    if not is_jailing_shell(jail.mode, ident.shell):
        wanted = " or ".join(JAILING_SHELLS.get(jail.mode, ()))
        out["reason"] = (f"NOT jailed: the login shell of {ident.name} is {ident.shell}; "
                         f"jail {jail.name} (mode {jail.mode}) needs {wanted}, which "
                         "refuses to run outside the jail. The shipped pam.d guard lets this "
                         "user's logins through to that shell on the host (without the "
                         "guard the PAM module refuses them): pam-jail jailuser "
                         f"{ident.name} -j {jail.root}")
        return out
    out["plan"] = login_plan(jail, ident, config_path)
    problems = check_jail(jail.root)
    out["check"] = problems
    if problems:
        out["reason"] = f"check jail {jail.name}: unsafe"
        return out
    if jail.mode == "sftp":
        out["reason"] = ("mode sftp: sftp only (sshd's ChrootDirectory and internal-sftp); "
                         "every command and interactive login is refused")
        out["allowed"] = command is None
        return out
    try:
        lsh = parse_lsh(read_lsh(jail.root, ident.uid), LSH_INSIDE)
    except ConfigError as err:
        out["reason"] = str(err)
        out["lsh_problems"] = err.problems
        return out
    policy = select_policy(lsh, ident.name, out["groups"])  # type: ignore[arg-type]
    decision: Decision = decide(policy, command, user=ident.name, home=jail.home,
                                client_env={}, facts=_jail_facts(jail.root, ident))
    out["section"] = policy.name
    out["rule"] = decision.rule
    out["reason"] = decision.reason
    out["allowed"] = decision.allowed
    if decision.allowed:
        missing = program_missing(jail.root, decision.argv[0])
        if missing is not None:        # the login would fail at execve: say so, and why
            out["allowed"] = False
            out["reason"] = missing
            out["provided_by"] = providers(decision.argv[0])
            return out
        out["execve"] = {"path": decision.argv[0], "argv": list(decision.argv),
                         "env": decision.env, "umask": f"{decision.umask:04o}",
                         "cwd": jail.home}
    return out


def login_plan(jail: Jail, ident: Identity, config_path: str) -> dict[str, object] | str:
    """The confinement a login of `ident` would get (plan.plan_login, as the entry of
    the jail's mode builds it), or why it cannot be built. The seccomp program is the
    index's when the login would find it there."""
    import grp

    from pam_jail.login.config_index import seccomp_program
    from pam_jail.login.plan import plan_login

    kind = {"pam": "session", "shell": "userns", "sftp": "isolate"}.get(jail.mode, "session")
    try:
        tty_gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_gid = 5
    try:
        plan = plan_login(kind, jail, ident, tty_gid=tty_gid)
    except ValueError as err:
        return f"no plan: {err}"
    if plan.seccomp is not None:
        plan.program = seccomp_program(config_path, plan.seccomp)
    info = plan.as_dict()
    lines = plan.lines()
    if kind == "userns":     # sshd's session process first, where its stack has our lines
        first = plan_login("isolate", jail, ident)
        lines.append("before it, the PAM module (where the service's stack has pam_jail's "
                     "lines): " + "; ".join(first.steps()))
    info["lines"] = lines
    return info


def program_missing(root: str, program: str) -> str | None:
    """Why `program` (the path the login would execve) cannot run inside the jail at
    `root`, seen as the login's own check sees it (safety.check_exec: a regular file
    reached inside the jail, root's all the way, its interpreter too), or None."""
    from pam_jail.login.safety import LIB_DIRS, MISSING, check_exec

    problems = check_exec(root, program, dirs=LIB_DIRS)
    if not problems:
        return None
    if problems == [f"{program}: {MISSING}"]:
        names = providers(program)
        fix = (f"pam-jail init -j {root} {names[0]}" if names
               else f"pam-jail cp -j {root} {program}")
        return (f"allowed by the allow-list, but {program} is missing from the jail "
                f"(the login would fail at execve): add it with `{fix}`")
    return f"allowed by the allow-list, but {program} is unsafe in this jail: {problems[0]}"


def providers(program: str) -> list[str]:
    """The builder profiles (the installed profiles.ini) that place `program` themselves:
    as an executable (a bare name means the builder's EXEC_PATH) or under one of their
    paths. Empty when none does or the file is unreadable."""
    import posixpath

    from pam_jail.admin.build import EXEC_PATH, load_profiles
    from pam_jail.login.errors import BuildError

    try:
        profiles = load_profiles()
    except BuildError:
        return []
    found = []
    for profile in profiles.values():
        exes = {e if e.startswith("/") else f"{d}/{e}"
                for e in profile.executables for d in EXEC_PATH}
        under = [p.rstrip("/") for p in (*profile.paths, *profile.optional)]
        if program in exes or any(program == p or program.startswith(p + "/") for p in under):
            found.append(profile.name)
    # the profile named after the program first (rsync for /usr/bin/rsync), then by name
    return sorted(found, key=lambda n: (n != posixpath.basename(program), n))


def _line(text: str) -> None:
    """One line of the text report, through log.escape: it names what jailed users made
    (file names in the jail, commands). The argv line is JSON, escaped already."""
    print(escape(text))


def _print_text(info: dict[str, object]) -> None:
    jail = info.get("jail")
    if "uid" not in info:                  # unknown user: nothing more to say about it
        _line(f"user:     {info['user']} (unknown)")
    else:
        _line(f"user:     {info['user']} (uid {info['uid']}, groups "
              f"{', '.join(info.get('groups', []))})")  # type: ignore[arg-type]
    if isinstance(jail, dict):
        _line(f"jail:     {jail['name']} root={jail['root']} home={jail['home']} "
              f"mode={jail['mode']} (from {jail['source']})")
    else:
        _line("jail:     none")
    for trace in info.get("outside", []):  # type: ignore[attr-defined]
        _line(f"OUTSIDE:  {trace}")
    plan = info.get("plan")
    if isinstance(plan, dict):
        for text in plan["lines"]:
            _line(f"plan:     {text}")
    elif plan is not None:
        _line(f"plan:     {plan}")
    if "check" in info:
        problems = info["check"]
        _line("check:    " + ("ok" if not problems else "UNSAFE"))
        for p in problems:  # type: ignore[attr-defined]
            _line(f"  - {p}")
    for p in info.get("lsh_problems", []):  # type: ignore[attr-defined]
        _line(f"  - {p}")
    if "section" in info:
        _line(f"section:  [{info['section']}]")
        _line(f"rule:     {info['rule']}")
    cmd = info["command"]
    _line(f"command:  {'(interactive login)' if cmd is None else cmd}")
    _line(f"verdict:  {'ALLOWED' if info['allowed'] else 'REFUSED'}: {info.get('reason', '')}")
    if info.get("provided_by"):
        _line(f"profiles: {', '.join(info['provided_by'])} (profiles.ini) provide it")  # type: ignore[arg-type]
    execve = info.get("execve")
    if isinstance(execve, dict):
        print(f"execve:   {escape(execve['path'])} {json.dumps(execve['argv'])}")
        _line(f"umask:    {execve['umask']}, cwd {execve['cwd']}")
        for k, v in execve["env"].items():
            _line(f"env:      {k}={v}")


def _own_options(args: argparse.Namespace, words: list[str]) -> list[str]:
    """explain's own options written after USER (`explain alice --json -- ls`) are
    options, not the command: argparse's REMAINDER takes everything after USER."""
    while words and words[0] != "--":
        if words[0] == "--json":
            args.json = True
            words = words[1:]
        elif words[0] == "--config" and len(words) > 1:
            args.config, words = words[1], words[2:]
        elif words[0].startswith("--config="):
            args.config, words = words[0].split("=", 1)[1], words[1:]
        else:
            break
    return words


def run(args: argparse.Namespace) -> int:
    words = _own_options(args, list(args.command))
    if words and words[0] == "--":
        words = words[1:]
    command = " ".join(words) if words else None
    try:
        info = explain(args.user, command, args.config)
    except Denied as err:  # unknown user, unreadable lsh.ini: refused, say why
        info = {"user": args.user, "command": command, "allowed": False, "reason": str(err)}
    if args.json:
        json.dump(info, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        _print_text(info)
    return EXIT_ALLOWED if info["allowed"] else EXIT_DENIED


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain", help="which jail, which rules, and would COMMAND be allowed",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user", metavar="USER", help="login name")
    parser.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER,
                        help="the command after --, as ssh would send it")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", default=DEFAULT_PATH, metavar="PATH",
                        help=f"jails.ini (default {DEFAULT_PATH})")
    parser.set_defaults(func=run)
