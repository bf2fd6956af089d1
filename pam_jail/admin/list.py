"""`pam-jail list` (jailkit's jk_list): the jailed processes, read from /proc.

Which processes count (decided here, documented in docs/check.md):

1. jailed: the process's root directory, stat'ed through the magic link /proc/PID/root,
   has the (st_dev, st_ino) of a known jail root. This holds in every namespace: the
   PAM path chroots into the jail (bound nosuid,nodev on itself: a bind mount keeps the
   inode), the login-shell path pivot_roots into it inside its own mount, PID and user
   namespaces. readlink(/proc/PID/root) is not used: in another mount namespace it
   shows the path as that namespace sees it ("/").
2. unknown: a process of a pam-jail-shell session (pam-jail-shell itself or one of its
   ancestors) whose root is neither the host's nor a known jail: a jail removed from the
   config, or moved, while still in use (seen: a session whose jail was deleted).

pam-jail-shell's own process (the relay that waits for the PID-namespace init) is in
the jail too by the time the session runs, so it is listed as jailed; its NSPID is its
host pid, while the command it started is PID 1 of its namespace.
Processes in other mount namespaces with a root that is not a known jail (containers)
are not listed. Known jails: the config file's jails plus the roots of `/./` home markers.
Columns: pid, ppid, user (real uid), jail, state, pid inside its PID namespace, whether
its mount namespace differs from init's, command line. --json also gives the namespace
ids (`ns`: the inode numbers of /proc/PID/ns/mnt, pid and net, as `lsns` shows them;
null when unreadable): processes of one session share them, and a process whose ids
equal init's shares that namespace with the host.
The text table escapes what a jailed process controls (its command line, and the user
and jail names) with log.escape: a newline or an escape sequence in an argv shows as
`\\x0a`, `\\x1b`, never as a second row or a terminal command. --json keeps the raw
strings (JSON escapes control characters itself).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
from dataclasses import asdict, dataclass

from pam_jail.admin.check import targets
from pam_jail.login.config import DEFAULT_PATH
from pam_jail.login.log import escape

SHELL_ENTRY = "pam-jail-shell"
NS_KINDS = ("mnt", "pid", "net")


@dataclass
class Proc:
    pid: int
    ppid: int
    uid: int
    user: str
    jail: str
    root: str
    state: str              # jailed | unknown
    nspid: int              # pid inside its innermost PID namespace
    own_mntns: bool         # mount namespace differs from PID 1's
    command: str
    ns: dict[str, int | None]   # mnt, pid, net: namespace inode numbers (lsns's NS)


@dataclass
class _Raw:
    pid: int
    ppid: int
    uid: int
    nspid: int
    root: tuple[int, int] | None
    mntns: str
    argv: list[str]
    comm: str
    ns: dict[str, int | None]


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _raw(pid: int) -> _Raw | None:
    base = f"/proc/{pid}"
    try:
        status = _read(f"{base}/status").decode("utf-8", "replace")
        argv = [a.decode("utf-8", "replace") for a in _read(f"{base}/cmdline").split(b"\0")]
    except OSError:
        return None                                   # gone
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        st = os.stat(f"{base}/root")
        root: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        root = None                                   # gone, or a kernel thread
    try:
        mntns = os.readlink(f"{base}/ns/mnt")
    except OSError:
        mntns = ""
    ns = {kind: _ns_id(f"{base}/ns/{kind}") for kind in NS_KINDS}
    return _Raw(pid=pid, ppid=int(fields.get("PPid", "0").strip() or 0),
                uid=int(fields.get("Uid", "-1").split()[0]),
                nspid=int(fields.get("NSpid", str(pid)).split()[-1]),
                root=root, mntns=mntns, argv=[a for a in argv if a] if argv else [],
                comm=fields.get("Name", "").strip(), ns=ns)


def _ns_id(path: str) -> int | None:
    """'mnt:[4026531841]' -> 4026531841 (the namespace's inode); None if unreadable."""
    try:
        link = os.readlink(path)
    except OSError:
        return None
    _kind, _sep, rest = link.partition(":[")
    return int(rest[:-1]) if rest.endswith("]") and rest[:-1].isdigit() else None


def _is_shell_entry(raw: _Raw) -> bool:
    if raw.comm == SHELL_ENTRY[:15]:
        return True
    # the installed entry is a static stub that execs python3 -IS LIBDIR/pam-jail-shell.py
    return any(os.path.basename(a) in (SHELL_ENTRY, f"{SHELL_ENTRY}.py") for a in raw.argv[:3])


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def list_jailed(jail_roots: dict[str, str]) -> list[Proc]:
    """Jailed processes. `jail_roots`: jail name -> root path."""
    by_inode: dict[tuple[int, int], tuple[str, str]] = {}
    for name, root in jail_roots.items():
        try:
            st = os.stat(root)
        except OSError:
            continue
        by_inode[(st.st_dev, st.st_ino)] = (name, root)
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            raw = _raw(int(entry))
            if raw is not None:
                procs[raw.pid] = raw
    init = procs.get(1) or _raw(1)
    host_root = init.root if init else None
    init_mntns = init.mntns if init else ""

    def ancestors(raw: _Raw) -> list[_Raw]:
        chain, seen = [], set()
        while raw.ppid in procs and raw.ppid not in seen:
            seen.add(raw.ppid)
            raw = procs[raw.ppid]
            chain.append(raw)
        return chain

    out: list[Proc] = []
    jailed_pids: dict[int, tuple[str, str]] = {}
    for raw in procs.values():
        if raw.root is not None and raw.root in by_inode:
            jailed_pids[raw.pid] = by_inode[raw.root]
    for raw in sorted(procs.values(), key=lambda r: r.pid):
        if raw.pid in jailed_pids:
            (name, root), state = jailed_pids[raw.pid], "jailed"
        elif raw.root not in (None, host_root) and any(
                _is_shell_entry(a) for a in [raw, *ancestors(raw)]):
            name, root, state = "?", "?", "unknown"
        else:
            continue
        out.append(Proc(pid=raw.pid, ppid=raw.ppid, uid=raw.uid, user=_user(raw.uid),
                        jail=name, root=root, state=state, nspid=raw.nspid,
                        own_mntns=raw.mntns != init_mntns,
                        command=" ".join(raw.argv)[:200] or f"[{raw.comm}]",
                        ns=raw.ns))
    return out


DESCRIPTION = """\
List the processes that run inside jails (jailkit's jk_list): every process whose root
directory (/proc/PID/root) is a configured jail or a jail named by a user's /./ home
marker, in any namespace (PAM-path chroots and login-shell pivot_roots alike), plus the
processes of pam-jail-shell sessions whose root is no known jail (state unknown)."""

EPILOG = """\
columns: PID, PPID, USER (real uid), JAIL (marker:ROOT for a jail known only from a
/./ home marker), STATE (jailed; unknown: a pam-jail-shell session whose root matches
no known jail), NSPID (pid inside the process's PID namespace), MNTNS (own: another
mount namespace than init's), COMMAND. USER, JAIL and COMMAND show control,
invisible and bidi characters as \\xNN or \\uNNNN and a backslash as \\\\ (a jailed
process chooses its command line). --json adds "ns": {"mnt", "pid", "net"}, the
namespace ids (inode numbers, as lsns prints them); its strings are raw (JSON-escaped).

exit status:
  0 success (also when nothing is jailed); 2 usage; 3 bad config file

examples:
  pam-jail list
  pam-jail list --json | jq '.[] | select(.jail == "web") | .pid'"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `list` subcommand."""
    p = sub.add_parser("list", help="list the processes running inside jails",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", metavar="FILE", default=None,
                   help=f"jails.ini to read (default {DEFAULT_PATH})")
    p.add_argument("--json", action="store_true", help="print a JSON list of processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    roots = {t.name: t.root for t in targets([], args.config)}
    procs = list_jailed(roots)
    if args.json:
        print(json.dumps([asdict(p) for p in procs], indent=2))
        return 0
    print(f"{'PID':>7} {'PPID':>7} {'USER':12} {'JAIL':16} {'STATE':7} {'NSPID':>5} "
          f"{'MNTNS':5} COMMAND")
    for p in procs:      # a jailed process chose its argv: one row each, never a raw byte
        print(f"{p.pid:>7} {p.ppid:>7} {escape(p.user)[:12]:12} {escape(p.jail)[:16]:16} "
              f"{p.state:7} {p.nspid:>5} {'own' if p.own_mntns else 'host':5} "
              f"{escape(p.command)}")
    return 0
