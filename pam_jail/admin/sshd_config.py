"""`pam-jail sshd-config`: sshd_config Match blocks for the jailed users.

Whatever confines a user (the PAM module, the pam-jail-shell login shell, or sshd's own
ChrootDirectory for sftp-only jails), sshd itself must not hand a jailed user a way
around it: TCP/agent/X11/stream-local forwarding, tunnels and ~/.ssh/rc all act on the
host, outside any jail. The generated snippet turns them off for every jailed user and,
for `mode = sftp` jails, adds ChrootDirectory + ForceCommand internal-sftp; for mode shell
ForceCommand pam-jail-shell, for mode pam ForceCommand pam-jail-lsh (every request, and
every subsystem, through the login shell that refuses outside a jail).

How sshd reads it (OpenSSH 9.2, checked with `sshd -T`):
- A value set in a matching Match block replaces the global value, wherever the global
  line stands; among the Match blocks that match a user, the FIRST one to set a keyword
  wins. So the snippet belongs before any other Match block: Debian's sshd_config
  includes /etc/ssh/sshd_config.d/*.conf at its top. An earlier Match block that sets
  e.g. `DisableForwarding no` for a jailed user defeats the snippet (`--check` catches
  that).
- A Match block that starts in an included file ends at the end of that file: the
  global lines after the Include stay global.
- Match patterns: `*`, `?`, `!` and `,` are pattern syntax, so user and group names are
  emitted only if they are plain names (letters, digits, `.`, `_`, `-`, a trailing `$`);
  anything else is refused, never escaped.

Block order and exclusions follow pam_jail.login.resolve: a per-user mapping wins over a group
mapping, which wins over [options] default; root is never jailed. Every block excludes
the users and groups that an earlier block already claims, so each user matches exactly
one block. sshd cannot tell a primary group from a supplementary one: group blocks are
ordered by group name. Where that differs from resolve() for a real user (primary group
mapped and a supplementary mapped group sorting before it) the command warns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pam_jail.login.config import DEFAULT_PATH, Config, JailDef
from pam_jail.login.errors import ConfigError, PamJailError, UnsafeJail
from pam_jail.login.sshd_rules import (  # noqa: F401 - RESTRICTIONS... are this module's API too
    MATCH_ACCEPTENV,
    RESTRICTIONS,
    SFTP_SETTINGS,
    SSHD,
    SYSTEM_SSHD_CONFIG,
    lsh_entry_path,
    parse_sshd_T,
    shell_entry_path,
)
from pam_jail.login.sshd_rules import compare_effective as _compare_effective
from pam_jail.login.sshd_rules import expected_settings as _expected_settings

SUGGESTED_OUTPUT = "/etc/ssh/sshd_config.d/pam_jail.conf"

# A name sshd's Match reads as exactly itself (no pattern characters, no quoting).
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")
# A ChrootDirectory argument that needs no quoting; '%' is escaped as '%%' (sshd expands
# %h, %u ... in ChrootDirectory).
_PATH_RE = re.compile(r"/[A-Za-z0-9_./@+=,:%~-]*")

PathCheck = Callable[[str], list[str]]


@dataclass(frozen=True)
class Block:
    """One Match block: its criteria line, the jail it applies, why it exists."""

    criteria: str
    jail: JailDef
    comment: str
    default: bool = False        # the [options] default block (no user named it)


def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"generate sshd config: {kind} name {name!r}: not a plain name",
            hint="sshd Match reads * ? ! , and blanks as patterns; such names are refused")
    return name


def _chroot_arg(root: str) -> str:
    if not _PATH_RE.fullmatch(root) or root == "/":
        raise ConfigError(
            f"generate sshd config: jail root {root!r}: cannot be written as ChrootDirectory",
            hint="use an absolute path of letters, digits and ./_-@+=,:~")
    return root.replace("%", "%%")


def _patterns(positive: Iterable[str], negative: Iterable[str]) -> str:
    return ",".join([*positive, *(f"!{n}" for n in negative)])


def blocks(cfg: Config) -> list[Block]:
    """The Match blocks in sshd order: per-user blocks (one per jail), then one block per
    mapped group (by name), then the default block. Each block excludes what earlier
    blocks claim. Pure; raises ConfigError for names sshd would read as patterns."""
    users = sorted(_check_name("user", u) for u in cfg.users)
    groups = sorted(_check_name("group", g) for g in cfg.groups)
    if "root" in cfg.users:
        raise ConfigError("generate sshd config: user root is mapped to a jail",
                          hint="root is never jailed; remove it from [users]")
    out: list[Block] = []
    by_jail: dict[str, list[str]] = {}
    for user in users:                      # one pass: 100,000 users stay seconds
        by_jail.setdefault(cfg.users[user], []).append(user)
    for jail_name in sorted(by_jail):
        members = by_jail[jail_name]
        out.append(Block(f"User {_patterns(members, [])}", cfg.jails[jail_name],
                         f"users mapped to jail {jail_name}"))
    for index, group in enumerate(groups):
        earlier = groups[:index]
        criteria = f"Group {_patterns([group], earlier)} User {_patterns(['*'], ['root', *users])}"
        out.append(Block(criteria, cfg.jails[cfg.groups[group]],
                         f"members of group {group} -> jail {cfg.groups[group]}"
                         + (" (unless claimed by an earlier group)" if earlier else "")))
    if cfg.default is not None:
        criteria = f"User {_patterns(['*'], ['root', *users])}"
        if groups:
            criteria += f" Group {_patterns(['*'], groups)}"
        out.append(Block(criteria, cfg.jails[cfg.default],
                         f"[options] default: every other user except root -> jail "
                         f"{cfg.default}", default=True))
    return out


def match_jail(cfg: Config, user: str, groups: Iterable[str]) -> str | None:
    """The jail name whose block sshd applies to `user` (member of `groups`). Pure."""
    if user in cfg.users:
        return cfg.users[user]
    member = set(groups)
    for group in sorted(cfg.groups):
        if group in member:
            return cfg.groups[group]
    if cfg.default is not None and user != "root":
        return cfg.default
    return None


def _default_path_check(path: str) -> list[str]:
    from pam_jail.login.safety import check_path_chain

    return check_path_chain(path)


def sftp_problems(cfg: Config, check_path: PathCheck = _default_path_check) -> list[str]:
    """sshd's ChrootDirectory rule for every sftp-mode jail that a block uses."""
    problems: list[str] = []
    for jail in sorted({b.jail.name: b.jail for b in blocks(cfg)}.values(),
                       key=lambda j: j.name):
        if jail.mode == "sftp":
            problems += [f"jail {jail.name}: {p}" for p in check_path(jail.root)]
    return problems


def _render_block(block: Block, unsafe: Sequence[str]) -> list[str]:
    jail = block.jail
    lines = [f"# {block.comment} (mode {jail.mode})"]
    if jail.mode == "shell":
        lines += [
            "# mode shell: pam-jail-shell confines these users. ForceCommand sends every",
            "# request through it, subsystems too (sshd would run a global internal-sftp",
            "# in its own process, unjailed); the original is in SSH_ORIGINAL_COMMAND.",
        ]
    elif jail.mode == "pam" and block.default:
        lines += [
            "# mode pam: the pam_jail PAM module (session stack) confines the users whose",
            "# login shell is pam-jail-lsh; the default names no one, so it forces nothing",
            "# (an admin's own account with another shell keeps it).",
        ]
    elif jail.mode == "pam":
        lines += [
            "# mode pam: the pam_jail PAM module (session stack) confines these users;",
            "# their login shell pam-jail-lsh then runs inside the jail. ForceCommand sends",
            "# every request through pam-jail-lsh, subsystems too: a user mapped here whose",
            "# login shell is another (the guarded pam.d lines skip the PAM module for it)",
            "# runs pam-jail-lsh on the host, where it refuses. SSH_ORIGINAL_COMMAND holds",
            "# the request.",
        ]
    elif jail.mode == "sftp":
        lines += ["# mode sftp: sshd chroots itself; sftp only, no shell, no binaries needed."]
        lines += [f"# WARNING (--force): {p}" for p in unsafe]
    lines.append(f"Match {block.criteria}")
    settings = list(RESTRICTIONS)
    if jail.mode == "sftp":
        settings = [("ChrootDirectory", _chroot_arg(jail.root)), *SFTP_SETTINGS, *settings]
    elif jail.mode == "shell":
        settings = [("ForceCommand", shell_entry_path()), *settings]
    elif jail.mode == "pam" and not block.default:
        settings = [("ForceCommand", lsh_entry_path()), *settings]
    settings.append(("AcceptEnv", MATCH_ACCEPTENV))
    width = max(len(k) for k, _ in settings)
    lines += [f"    {key:<{width}} {value}" for key, value in settings]
    return lines


def generate(cfg: Config, *, force: bool = False,
             check_path: PathCheck = _default_path_check, source: str | None = None) -> str:
    """sshd_config text (a snippet for /etc/ssh/sshd_config.d/) for `cfg`.

    Raises ConfigError for names or roots sshd cannot take literally, and UnsafeJail when
    an sftp jail's root fails sshd's ChrootDirectory rule (unless force: then the
    problems become WARNING comments in the snippet).
    """
    for jail in cfg.jails.values():
        _check_name("jail", jail.name)
        if jail.mode not in ("pam", "shell", "sftp"):
            raise ConfigError(f"generate sshd config: jail {jail.name}: unknown mode "
                              f"{jail.mode!r}")
        _chroot_arg(jail.root)
    all_blocks = blocks(cfg)
    problems = sftp_problems(cfg, check_path)
    if problems and not force:
        raise UnsafeJail(
            "generate sshd config: sftp jail root unusable as ChrootDirectory",
            problems=problems,
            hint="sshd requires every component of the path root-owned and not writable "
                 "by group or other; fix it, or use --force to emit the snippet anyway")
    origin = source or getattr(cfg, "source", DEFAULT_PATH)
    head = [
        "# pam_jail: sshd Match blocks for jailed users. Generated by `pam-jail sshd-config`",
        f"# from {origin}; edit that file and regenerate, not this one.",
        "#",
        "# Match values replace global ones; among matching Match blocks the FIRST to set",
        "# a keyword wins: include this file before any other Match block (Debian's",
        "# sshd_config includes /etc/ssh/sshd_config.d/*.conf at its top). Its Match",
        "# blocks end with this file.",
        "# Check the result: sshd -T -C user=NAME,host=localhost,addr=127.0.0.1",
        "# Not settable inside Match (sshd 9.2): PermitUserEnvironment must stay `no` (the",
        "# default) in the global part; the PAM module refuses jailed logins otherwise.",
    ]
    if not all_blocks:
        head.append("# (no user, group or default is mapped to a jail: nothing to restrict)")
    out = head
    for block in all_blocks:
        unsafe = [p for p in problems if p.startswith(f"jail {block.jail.name}: ")]
        out += ["", *_render_block(block, unsafe)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- checks


def expected_settings(jail: JailDef) -> dict[str, str]:
    """What `sshd -T` must show (lowercase keywords) for a user of this jail."""
    return _expected_settings(jail.mode, jail.root)


def compare_effective(jail: JailDef, effective: dict[str, list[str]]) -> list[str]:
    """Differences between what a user of `jail` must get and what sshd -T reports (the
    same rule the PAM module applies at every jailed sshd login: pam_jail.login.sshd_rules)."""
    return _compare_effective(jail.mode, jail.root, effective)


def _passwd_users() -> list[tuple[str, int, int, str, str, str, tuple[str, ...]]]:
    """(name, uid, gid, home, shell, primary group, supplementary groups) of every user."""
    import grp
    import pwd

    groups = grp.getgrall()
    members: dict[str, set[str]] = {}
    for gr in groups:
        for member in gr.gr_mem:
            members.setdefault(member, set()).add(gr.gr_name)
    gid_names = {gr.gr_gid: gr.gr_name for gr in groups}
    out = []
    for pw in pwd.getpwall():
        primary = gid_names.get(pw.pw_gid, "")
        supplementary = tuple(sorted(members.get(pw.pw_name, set()) - {primary}))
        out.append((pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell, primary,
                    supplementary))
    return out


def passwd_mismatches(cfg: Config) -> list[str]:
    """Real users for whom the blocks' jail differs from pam_jail.login.resolve's jail."""
    from pam_jail.login.errors import Denied
    from pam_jail.login.resolve import Identity, resolve

    problems: list[str] = []
    for name, uid, gid, home, shell, primary, supplementary in _passwd_users():
        ident = Identity(name=name, uid=uid, gid=gid, home=home, shell=shell, group=primary,
                         groups=supplementary)
        sshd_jail = match_jail(cfg, name, [primary, *supplementary])
        try:
            jail = resolve(ident, cfg)
            pam_jail: str | None = jail.name if jail is not None else None
        except Denied as err:
            pam_jail = f"(refused: {err})"
        if sshd_jail != pam_jail:
            problems.append(f"user {name}: sshd blocks give jail {sshd_jail or '(none)'},"
                            f" pam_jail gives {pam_jail or '(none)'}")
    return problems


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """`text` to `path` by config.write_atomically (the one atomic writer)."""
    from pam_jail.login.config_file import write_atomically

    write_atomically(os.path.abspath(path), text.encode("utf-8"), mode)


def check_with_sshd(cfg: Config, snippet_path: str, *, sshd: str = SSHD,
                    system_config: str | None = SYSTEM_SSHD_CONFIG) -> list[str]:
    """`sshd -t` on a temporary full config that includes the snippet first, then the
    system config (read, never changed); then `sshd -T -C user=...` for every user in
    the passwd database that a block matches (per user, group or default), compared with
    what its jail requires. Returns the problems found."""
    workdir = tempfile.mkdtemp(prefix="pam_jail-sshd-check.")
    try:
        key = os.path.join(workdir, "hostkey")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                       capture_output=True, check=True, timeout=30)
        full = os.path.join(workdir, "sshd_config")
        lines = [f"Include {os.path.abspath(snippet_path)}"]
        if system_config and os.path.exists(system_config):
            lines.append(f"Include {system_config}")
        lines.append(f"HostKey {key}")
        with open(full, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        proc = subprocess.run([sshd, "-t", "-f", full], capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            return [f"sshd -t: {line}" for line in proc.stderr.strip().splitlines()]
        problems: list[str] = []
        for name, _uid, _gid, _home, _shell, primary, supplementary in _passwd_users():
            jail_name = match_jail(cfg, name, [primary, *supplementary])
            if jail_name is None:
                continue
            proc = subprocess.run(
                [sshd, "-T", "-f", full, "-C", f"user={name},host=localhost,addr=127.0.0.1"],
                capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode != 0:
                problems.append(f"user {name}: sshd -T: {proc.stderr.strip()}")
                continue
            effective = parse_sshd_T(proc.stdout)
            problems += [f"user {name}: {p}"
                         for p in compare_effective(cfg.jails[jail_name], effective)]
        return problems
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Print sshd_config Match blocks that take every forwarding away from jailed users
(DisableForwarding, AllowTcpForwarding, AllowAgentForwarding, AllowStreamLocalForwarding,
PermitTunnel, X11Forwarding, PermitUserRC, PermitListen, PermitOpen) and, for jails with
mode = sftp, chroot them with sshd's own ChrootDirectory + ForceCommand internal-sftp.

Users come from [users], [groups] and [options] default of the jails file. A per-user
mapping wins over a group, a group over the default; root is never matched."""

def reload_command() -> str:
    """How to make sshd re-read its config on this host: systemd's unit where systemd
    runs, else Debian's init script (which signals the pid in /run/sshd.pid)."""
    if os.path.isdir("/run/systemd/system"):
        return "systemctl reload ssh"
    return "service ssh reload"


EPILOG = f"""\
examples:
  pam-jail sshd-config                       print the snippet
  pam-jail sshd-config -o {SUGGESTED_OUTPUT} --check
                                             install it, then verify with sshd -t / -T
  systemctl reload ssh                       sshd reads it on reload (without systemd:
                                             service ssh reload, or
                                             kill -HUP $(cat /run/sshd.pid))

where the snippet goes:
  a value from a matching Match block replaces the global one; among the Match blocks
  that match a user, the first value read wins. Debian's sshd_config includes
  /etc/ssh/sshd_config.d/*.conf at its top, so a file there comes before every other
  Match block. A Match block in an included file ends with that file.

mode shell:
  the users' login shell must be pam-jail-shell, and the global `Subsystem sftp` must be
  /usr/lib/openssh/sftp-server, not internal-sftp (which runs without the login shell).

mode sftp:
  every component of the jail root must be root-owned and not writable by group or
  other (sshd refuses the login otherwise); without --force the command refuses too.

--check:
  runs `sshd -t` on a temporary config that includes the snippet, then the system
  {SYSTEM_SSHD_CONFIG} (read only), and `sshd -T -C user=NAME,...` for each mapped user
  that exists, and compares the effective settings with what its jail requires. It also
  warns about real users whom sshd's blocks and pam_jail's resolver put in different
  jails.

exit status:
  0 ok; 3 bad config or --check found problems; 4 unsafe sftp jail root"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "sshd-config", help="print sshd_config Match blocks for jailed users",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE", default=DEFAULT_PATH,
                        help=f"jails file (default: {DEFAULT_PATH})")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the snippet to FILE atomically (mode 0644) instead of "
                             f"printing it, e.g. {SUGGESTED_OUTPUT}")
    parser.add_argument("--check", action="store_true",
                        help="verify the snippet with sshd -t and sshd -T (see below)")
    parser.add_argument("--force", action="store_true",
                        help="emit sftp blocks even if the jail root fails sshd's "
                             "ChrootDirectory rule (as WARNING comments)")
    parser.add_argument("--sshd", metavar="PATH", default=SSHD, help=argparse.SUPPRESS)
    parser.add_argument("--sshd-config", metavar="FILE", default=SYSTEM_SSHD_CONFIG,
                        help=f"system config that --check includes after the snippet "
                             f"(default: {SYSTEM_SSHD_CONFIG}; 'none' for none)")
    parser.set_defaults(func=run)


# Where `sshd-config -o` last wrote the Match blocks, and from which jails.ini: jailuser
# regenerates that file when it changes the mapping.
LAST_OUTPUT = "/var/lib/pam_jail/sshd-config.last"


def remember_output(output: str, config_file: str, record: str = LAST_OUTPUT) -> None:
    import json

    os.makedirs(os.path.dirname(record), mode=0o755, exist_ok=True)
    write_atomic(record, json.dumps({"output": os.path.abspath(output),
                                     "config": os.path.abspath(config_file)}) + "\n")


def regenerate_remembered(config_file: str, record: str = LAST_OUTPUT) -> str | None:
    """Rewrite the Match blocks where `sshd-config -o` last wrote them from this
    `config_file`; returns that path, or None when there is no such record."""
    import json

    from pam_jail.login.config_file import load_config

    try:
        with open(record, encoding="utf-8") as fh:
            last = json.load(fh)
        output, source = str(last["output"]), str(last["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if source != os.path.abspath(config_file) or not os.path.isfile(output):
        return None
    write_atomic(output, generate(load_config(config_file), source=config_file))
    return output


def run(args: argparse.Namespace) -> int:
    from pam_jail.login.config_file import load_config

    cfg = load_config(args.config)
    text = generate(cfg, force=args.force, source=args.config)
    warnings: list[str] = []
    with contextlib.suppress(ImportError):
        warnings = passwd_mismatches(cfg)
    for warning in warnings:
        print(f"pam_jail: warning: {warning}", file=sys.stderr)
    if args.output:
        try:
            write_atomic(args.output, text)
        except OSError as err:
            raise PamJailError(f"write {args.output}: {err.strerror}") from None
        remember_output(args.output, args.config)
    else:
        sys.stdout.write(text)
    if not args.check:
        return 0
    system = None if args.sshd_config == "none" else args.sshd_config
    if args.output:
        problems = check_with_sshd(cfg, args.output, sshd=args.sshd, system_config=system)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="pam_jail.") as tmp:
            tmp.write(text)
            tmp.flush()
            problems = check_with_sshd(cfg, tmp.name, sshd=args.sshd, system_config=system)
    if problems:
        raise ConfigError("check sshd config: the snippet is not in effect as generated",
                          problems=problems,
                          hint="see `sshd -T -C user=NAME,host=localhost,addr=127.0.0.1`")
    print("pam_jail: sshd accepts the snippet; mapped users get the restrictions",
          file=sys.stderr)
    return 0
