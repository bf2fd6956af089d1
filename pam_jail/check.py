"""`pam-jail check` (jailkit's jk_check): find what makes a jail unsafe or stale.

The judgements are the pure `judge_*` functions of pam_jail.safety, the module the login
path uses; this module only walks the tree, gathers stat facts and hands them over.
What is looked at, per jail (docs/check.md has the table):

  jail-path        the path from / to the jail (safety.check_path_chain, as at login)
  setuid           setuid/setgid files, any owner, anywhere (homes and tmp included)
  device           device nodes other than safety.ALLOWED_DEVICES, anywhere
  writable         group/other-writable files and dirs (sticky /tmp allowed); not
                   judged inside homes and tmp (the users' own business)
  system-owner     non-root entries in the system trees (etc, bin, sbin, lib*, usr, the
                   allow-list): a user could replace them, links included
  hardlink         a file with more links than the jail holds: a twin outside
  symlink-outside  a link whose text climbs above the jail root with '..'
  symlink-dangling a link whose target does not exist inside the jail
  differs          a file whose content (sha256 of the whole file) differs from the file
                   at the same path on the host; homes, tmp, dev, proc, etc/passwd,
                   etc/group and etc/pam_jail are not compared
  passwd, group    jail entries whose name or id disagrees with the host's databases
  mount            (info) the jail's file system is mounted without nosuid or nodev

Severity: "error" (the jail is unsafe), "warning" (stale or suspicious), "info" (does not
change the exit status: the login path binds every jail nosuid,nodev itself).
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import json
import os
import pwd
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from pam_jail import safety
from pam_jail.config import DEFAULT_PATH, load_config
from pam_jail.errors import PamJailError, UsageError
from pam_jail.resolve import split_marker

SEVERITY = {
    "jail-path": "error", "setuid": "error", "device": "error", "writable": "error",
    "system-owner": "error", "hardlink": "error", "passwd": "error", "group": "error",
    "symlink-outside": "warning", "symlink-dangling": "warning", "differs": "warning",
    "unreadable": "warning", "mount": "info",
}
FIXABLE = ("setuid", "writable")

# Directories whose content the login path mounts at login: links into them dangle in
# the stored tree by design (dev/ptmx -> pts/ptmx).
MOUNTED_AT_LOGIN = ("/dev/pts", "/proc")
# Never compared with the host: the builder writes them for this jail.
NOT_COMPARED = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
NOT_COMPARED_TREES = ("/etc/pam_jail", "/dev", "/proc", "/tmp", "/var/tmp", "/home")
# Where an outside twin of a hard-linked jail file is looked for (only on the jail's
# file system: hard links cannot cross file systems). Whether a twin exists at all is
# decided by counting (st_nlink against the links seen in the jail); this search only
# names it.
TWIN_SEARCH = ("/etc", "/root", "/home", "/srv", "/opt", "/var", "/usr", "/boot", "/tmp")
HASH = "sha256"          # OpenSSL's, with the CPU's SHA extensions: ~1.5 GB/s here
_CHUNK = 1 << 20
_BATCH = 64              # files per hashing task (amortises the pool's per-task cost)


@dataclass(frozen=True)
class Finding:
    kind: str
    path: str            # host path of the entry (jail root + path inside the jail)
    detail: str
    severity: str = "error"
    fixable: bool = False
    ident: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail,
                "severity": self.severity, "fixable": self.fixable}


def finding(kind: str, path: str, detail: str,
            ident: tuple[int, int] | None = None) -> Finding:
    return Finding(kind, path, detail, SEVERITY[kind], kind in FIXABLE, ident)


@dataclass
class Target:
    """A jail to check: its name, root, and the homes inside it (paths in the jail)."""

    name: str
    root: str
    homes: set[str] = field(default_factory=set)


@dataclass
class JailReport:
    name: str
    root: str
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0         # directory entries looked at
    compared: int = 0        # files compared with the host
    hashed_bytes: int = 0
    seconds: float = 0.0
    fixed: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """The findings that count for the exit status (not "info")."""
        return [f for f in self.findings if f.severity != "info"]

    def as_dict(self) -> dict[str, object]:
        return {"jail": self.name, "root": self.root, "entries": self.entries,
                "compared": self.compared, "hashed_bytes": self.hashed_bytes,
                "seconds": round(self.seconds, 4), "clean": not self.problems,
                "findings": [f.as_dict() for f in self.findings], "fixed": self.fixed}


# ------------------------------------------------------------------------ hashing

def _open_regular(path: str, nofollow: bool) -> tuple[int, os.stat_result] | None:
    """An fd and fstat of a regular file, or None (missing, not regular). O_NONBLOCK: a
    FIFO swapped in by a user never blocks the checker."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _digest_fd(fd: int, size: int) -> tuple[bytes, int]:
    """sha256 of the whole file behind fd (read to EOF, whatever `size` said)."""
    if size <= _CHUNK:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            h = hashlib.sha256(data)
            total = len(data)
            more = os.read(fd, _CHUNK) if len(data) == size + 1 else b""
            while more:
                h.update(more)
                total += len(more)
                more = os.read(fd, _CHUNK)
            return h.digest(), total
        h, total = hashlib.sha256(data), len(data)
    else:
        h, total = hashlib.sha256(), 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        h.update(view[:n])   # hashlib drops the GIL for more than 2 KiB
        total += n
    return h.digest(), total


class HostDigests:
    """Digests of host files, shared by every jail of one run (host hard links and the
    same library in many jails are read once). Keyed by (dev, ino, size, mtime, ctime):
    a file changed during the run gets a new key."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, ...], bytes] = {}

    def get(self, path: str) -> tuple[bytes, int] | None:
        opened = _open_regular(path, nofollow=False)
        if opened is None:
            return None
        fd, st = opened
        try:
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            cached = self._cache.get(key)
            if cached is not None:
                return cached, st.st_size
            digest, size = _digest_fd(fd, st.st_size)
        finally:
            os.close(fd)
        self._cache[key] = digest
        return digest, size


def _compare(root: str, rel: str, host: HostDigests) -> tuple[Finding | None, int]:
    """Compare the jail file root+rel with the host's rel. (finding, bytes hashed)."""
    path = root + rel
    try:
        host_st = os.stat(rel)
    except OSError:
        return None, 0                        # only in the jail: nothing to compare
    if not stat.S_ISREG(host_st.st_mode):
        return None, 0
    opened = _open_regular(path, nofollow=True)
    if opened is None:
        return None, 0
    fd, st = opened
    try:
        if st.st_size != host_st.st_size:
            return finding("differs", path, f"{rel}: {st.st_size} bytes in the jail, "
                           f"{host_st.st_size} on the host (pam-jail update refreshes it)"), 0
        digest, jail_bytes = _digest_fd(fd, st.st_size)
    finally:
        os.close(fd)
    got = host.get(rel)
    if got is None:
        return None, jail_bytes
    host_digest, host_bytes = got
    if digest != host_digest:
        return finding("differs", path, f"{rel}: content differs from the host ({HASH} "
                       f"{digest.hex()[:12]} in the jail, {host_digest.hex()[:12]} on the "
                       "host; pam-jail update refreshes it)"), jail_bytes + host_bytes
    return None, jail_bytes + host_bytes


# ---------------------------------------------------------------------- the walk

def _under(rel: str, tops: Iterable[str]) -> bool:
    return any(rel == top or rel.startswith(top + "/") for top in tops)


def jail_homes(root: str) -> set[str]:
    """Home directories named in the jail's etc/passwd (paths inside the jail)."""
    homes = {"/home"}
    for fields in _entries(root + "/etc/passwd", 7):
        home = os.path.normpath(fields[5] or "/")
        if home != "/" and not safety.is_system_path(home):
            homes.add(home)
    return homes


def _entries(path: str, nfields: int) -> Iterator[list[str]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= nfields and fields[0] and not line.startswith("#"):
                yield fields


class Checker:
    """One run over one or more jails: a thread pool for hashing and the host digest
    cache are shared by all of them."""

    def __init__(self, *, jobs: int | None = None, compare: bool = True,
                 shared: Sequence[str] = ()) -> None:
        self.jobs = jobs or min(8, 2 * (os.cpu_count() or 2))
        self.compare = compare
        self.host = HostDigests()
        self.shared = tuple(shared_bases(shared))

    def check(self, target: Target) -> JailReport:
        start = time.perf_counter()
        root = target.root.rstrip("/") or "/"
        report = JailReport(target.name, root)
        chain = safety.check_path_chain(root)
        report.findings += [finding("jail-path", root, p) for p in chain]
        if chain and not os.path.isdir(root):
            report.seconds = time.perf_counter() - start
            return report
        user_areas = tuple(sorted(target.homes | jail_homes(root) | set(safety.STICKY_DIRS)))
        links: dict[tuple[int, int], tuple[int, list[str]]] = {}
        results: list[Future[list[tuple[Finding | None, int]]]] = []
        batch: list[str] = []
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="check") as pool:
            def flush() -> None:
                if batch:
                    results.append(pool.submit(self._compare_batch, root, list(batch)))
                    batch.clear()

            for rel, st in self._walk(root, report):
                report.entries += 1
                # below a home or tmp (the directory itself is judged like any other)
                user_area = any(rel.startswith(top + "/") for top in user_areas)
                report.findings += self._judge(root, rel, st, user_area)
                mode = st.st_mode
                if stat.S_ISREG(mode) and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    _n, seen = links.setdefault(key, (st.st_nlink, []))
                    seen.append(rel)
                if (self.compare and stat.S_ISREG(mode) and not user_area
                        and rel not in NOT_COMPARED and not _under(rel, NOT_COMPARED_TREES)):
                    batch.append(rel)
                    if len(batch) >= _BATCH:
                        flush()
            flush()
            for fut in results:
                for found, nbytes in fut.result():
                    report.compared += 1
                    report.hashed_bytes += nbytes
                    if found is not None:
                        report.findings.append(found)
        report.findings += self._hardlinks(root, links)
        report.findings += check_ids(root)
        report.findings += check_mount(root)
        report.findings.sort(key=lambda f: (f.path, f.kind))
        report.seconds = time.perf_counter() - start
        return report

    def _compare_batch(self, root: str, rels: list[str]) -> list[tuple[Finding | None, int]]:
        out = []
        for rel in rels:
            try:
                out.append(_compare(root, rel, self.host))
            except OSError as err:
                out.append((finding("unreadable", root + rel, f"{rel}: {err.strerror}"), 0))
        return out

    def _walk(self, root: str, report: JailReport) -> Iterator[tuple[str, os.stat_result]]:
        """(path in the jail, lstat) of every entry below root; never follows links and
        does not descend into proc/devpts mounted inside the jail."""
        root_dev = os.lstat(root).st_dev
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            try:
                it = os.scandir(root + rel_dir or "/")
            except OSError as err:
                report.findings.append(finding("unreadable", root + rel_dir,
                                               f"{rel_dir or '/'}: {err.strerror}"))
                continue
            with it:
                for entry in it:
                    rel = f"{rel_dir}/{entry.name}"
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue              # removed meanwhile
                    yield rel, st
                    if stat.S_ISDIR(st.st_mode) and not (
                            st.st_dev != root_dev and rel in ("/proc", "/dev/pts", "/sys")):
                        stack.append(rel)

    def _judge(self, root: str, rel: str, st: os.stat_result,
               user_area: bool) -> list[Finding]:
        path, mode = root + rel, st.st_mode
        ident = (st.st_dev, st.st_ino)
        out = []
        if problem := safety.judge_setid(rel, mode):
            out.append(finding("setuid", path, problem, ident))
        if problem := safety.judge_device(rel, mode, st.st_rdev):
            out.append(finding("device", path, problem))
        if not user_area and (problem := safety.judge_writable(rel, mode)):
            out.append(finding("writable", path, problem, ident))
        if st.st_uid != 0 and safety.is_system_path(rel) and \
                (problem := safety.judge_system_entry(rel, mode, st.st_uid)):
            out.append(finding("system-owner", path, problem))
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError:
                return out
            if problem := safety.judge_symlink(rel, target):
                out.append(finding("symlink-outside", path, problem))
            elif not user_area and safety.resolve_in_jail(root, rel) is None:
                inside = os.path.normpath(os.path.join(os.path.dirname(rel), target))
                if not _under(inside, MOUNTED_AT_LOGIN):
                    out.append(finding("symlink-dangling", path,
                                       f"{rel} -> {target}: no such file in the jail"))
        return out

    def _in_shared_base(self, key: tuple[int, int], rel: str) -> bool:
        """A jail built with `init --shared BASE` hard-links BASE/rel: expected."""
        for base in self.shared:
            try:
                st = os.lstat(base + rel)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key:
                return True
        return False

    def _hardlinks(self, root: str,
                   links: dict[tuple[int, int], tuple[int, list[str]]]) -> list[Finding]:
        outside = {key: (n, rels) for key, (n, rels) in links.items()
                   if len(rels) < n and not self._in_shared_base(key, rels[0])}
        if not outside:
            return []
        twins = find_twins(set(outside), exclude=root)
        out = []
        for key, (nlink, rels) in sorted(outside.items(), key=lambda kv: kv[1][1][0]):
            names = twins.get(key, [])
            where = ", ".join(names[:3]) if names else \
                f"not in {', '.join(TWIN_SEARCH)} (another jail or an unsearched place)"
            out.append(finding("hardlink", root + rels[0],
                               f"{rels[0]}: {nlink} links, {len(rels)} in the jail; "
                               f"outside: {where}"))
        return out


def shared_bases(paths: Sequence[str]) -> list[str]:
    """The --shared bases: each must be a safe path (root-owned chain) carrying the
    builder's marker file, else UsageError: a link into an arbitrary tree is no excuse."""
    if not paths:
        return []  # keep pyelftools (via build) out of the common case
    from pam_jail.build import SHARED_MARKER

    bases = []
    for path in paths:
        base = path.rstrip("/")
        problems = safety.check_path_chain(base)
        if problems or not os.path.isfile(base + SHARED_MARKER):
            raise UsageError(f"check --shared {base}: not a safe pam_jail shared base",
                             hint="; ".join(problems) or f"no {SHARED_MARKER} in it")
        bases.append(base)
    return bases


def find_twins(keys: set[tuple[int, int]], exclude: str) -> dict[tuple[int, int], list[str]]:
    """Host paths of the inodes `keys`, searching TWIN_SEARCH on their devices only and
    skipping the jail itself; stops when every key has a name."""
    devs = {dev for dev, _ino in keys}
    found: dict[tuple[int, int], list[str]] = {}
    for top in TWIN_SEARCH:
        stack = [top]
        while stack and len(found) < len(keys):
            path = stack.pop()
            try:
                it = os.scandir(path)
            except OSError:
                continue
            with it:
                for entry in it:
                    if entry.path == exclude or entry.path.startswith(exclude + "/"):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev not in devs:
                        continue               # another file system: no twin there
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif (st.st_dev, st.st_ino) in keys:
                        found.setdefault((st.st_dev, st.st_ino), []).append(entry.path)
    return found


def check_ids(root: str) -> list[Finding]:
    """Jail etc/passwd and etc/group against the host's databases (NSS)."""
    out = []
    path = root + "/etc/passwd"
    for fields in _entries(path, 7):
        name = fields[0]
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            out.append(finding("passwd", path, f"passwd {name}: bad uid/gid field"))
            continue
        host = _getpw(name)
        owner = _getpwuid(uid)
        problem = safety.judge_id_entry("passwd", name, uid, host.pw_uid if host else None,
                                        owner.pw_name if owner else None)
        if problem is None and host is not None and host.pw_gid != gid:
            problem = f"passwd {name}: group id {gid} in the jail, {host.pw_gid} on the host"
        if problem:
            out.append(finding("passwd", path, problem))
    path = root + "/etc/group"
    for fields in _entries(path, 4):
        name = fields[0]
        try:
            gid = int(fields[2])
        except ValueError:
            out.append(finding("group", path, f"group {name}: bad gid field"))
            continue
        hgroup = _getgr(name)
        gowner = _getgrgid(gid)
        problem = safety.judge_id_entry("group", name, gid, hgroup.gr_gid if hgroup else None,
                                        gowner.gr_name if gowner else None)
        if problem is None and hgroup is not None:
            for member in filter(None, fields[3].split(",")):
                pw = _getpw(member)
                if member not in hgroup.gr_mem and not (pw and pw.pw_gid == gid):
                    problem = f"group {name}: member {member} is not a member on the host"
                    break
        if problem:
            out.append(finding("group", path, problem))
    return out


def _getpw(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _getpwuid(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def _getgr(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _getgrgid(gid: int) -> grp.struct_group | None:
    try:
        return grp.getgrgid(gid)
    except KeyError:
        return None


def mount_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> tuple[str, set[str]]:
    """(mount point, per-mount options) of the mount holding `path`."""
    real = os.path.realpath(path)
    best, opts = "/", set()
    with open(mountinfo, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and \
                    len(point) >= len(best):
                best, opts = point, set(fields[5].split(","))
    return best, opts


def check_mount(root: str) -> list[Finding]:
    point, opts = mount_of(root)
    missing = [o for o in ("nosuid", "nodev") if o not in opts]
    if not missing:
        return []
    return [finding("mount", root, f"on {point} mounted without {','.join(missing)}: the "
                    "login path binds the jail nosuid,nodev itself; host-side use of the "
                    "tree and sshd's ChrootDirectory (mode sftp) do not")]


# -------------------------------------------------------------------------- fixes

def fix(found: Finding, *, dry_run: bool = False) -> str:
    """Apply the safe fix of a setuid or writable finding: strip the s-bits / chmod
    g-w,o-w. The entry is opened O_PATH|O_NOFOLLOW and must still be the inode the walk
    saw (a user cannot swap in a link to a host file between check and fix)."""
    if not found.fixable or found.ident is None:
        raise UsageError(f"fix {found.path}: no safe automatic fix for {found.kind}")
    opath = getattr(os, "O_PATH", 0o10000000)
    fd = os.open(found.path, opath | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != found.ident or stat.S_ISLNK(st.st_mode):
            raise PamJailError(f"fix {found.path}: changed since it was checked; not fixed")
        mode = stat.S_IMODE(st.st_mode)
        new = mode & ~(stat.S_ISUID | stat.S_ISGID) if found.kind == "setuid" \
            else mode & ~0o022
        action = f"chmod {mode:04o} -> {new:04o} {found.path}"
        if not dry_run and new != mode:
            os.chmod(f"/proc/self/fd/{fd}", new)
    finally:
        os.close(fd)
    return action


# ------------------------------------------------------------------------ targets

def targets(names: Sequence[str], config_path: str | None) -> list[Target]:
    """The jails to check: NAMES (configured jail names or absolute paths), else every
    configured jail plus every jail named by a user's `/./` home marker."""
    path = config_path or DEFAULT_PATH
    cfg = None
    if config_path is not None or os.path.exists(path):
        cfg = load_config(path)
    found: dict[str, Target] = {}
    if names:
        for name in names:
            if name.startswith("/"):
                root = os.path.normpath(name)
                found.setdefault(root, Target(root, root))
            elif cfg is not None and name in cfg.jails:
                root = cfg.jails[name].root
                found.setdefault(root, Target(name, root))
            else:
                raise UsageError(f"check {name}: no such jail in {path}",
                                 hint="name a configured jail or give an absolute path")
    elif cfg is not None:
        for jail in cfg.jails.values():
            found.setdefault(jail.root, Target(jail.name, jail.root))
    for pw in pwd.getpwall():
        marker = split_marker(pw.pw_dir)
        if marker is None:
            continue
        root, home = marker
        if names and root not in found:
            continue
        target = found.setdefault(root, Target(f"marker:{root}", root))
        target.homes.add(home)
    return list(found.values())


# ---------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Check jails for what makes them unsafe or stale: setuid/setgid files, device nodes
outside the allow-list (null zero full random urandom tty), group/other-writable files
and directories (a sticky /tmp is fine), system entries (etc, bin, sbin, lib*, usr, the
allow-list etc/pam_jail/lsh.ini) not owned by root, hard links to files outside the
jail, symlinks that climb above the jail root or point at nothing inside it, files
whose content differs from the host's file at the same path (sha256 of the whole file),
jail etc/passwd and etc/group entries that disagree with the host, and a jail on a
mount without nosuid/nodev (info only: the login path remounts it so itself).

Without JAIL arguments: every jail in the config file plus every jail named by a
user's home marker (/jail/./home/user). Home directories and tmp are scanned for
setuid files, devices and hard links but not compared with the host."""

EPILOG = """\
exit status:
  0 no findings (info-only findings do not count); 1 findings (after --fix: findings
  that remain); 2 usage; 3 bad config file

examples:
  pam-jail check                      every configured and marker jail
  pam-jail check web /srv/jails/ftp   one configured jail and one path
  pam-jail check --json web | jq '.jails[].findings[] | select(.kind=="setuid")'
  pam-jail check --fix --dry-run web  show the chmods that --fix would do

See docs/check.md for every finding kind and what --fix changes."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `check` subcommand."""
    p = sub.add_parser("check", help="check jails for unsafe or stale files",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jails", nargs="*", metavar="JAIL",
                   help="configured jail names or absolute jail paths (default: all)")
    p.add_argument("-c", "--config", metavar="FILE", default=None,
                   help=f"jails.ini to read (default {DEFAULT_PATH})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--fix", action="store_true",
                   help="strip setuid/setgid bits and g/o-write bits, then check again")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="with --fix: print what would be changed, change nothing")
    p.add_argument("--no-compare", action="store_true",
                   help="do not compare file contents with the host")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="hashing threads (default: 2 per CPU, at most 8)")
    p.add_argument("--progress", action="store_true",
                   help="progress lines on stderr (default: only when it is a terminal)")
    p.add_argument("-v", "--verbose", action="store_true", help="also show info findings")
    p.add_argument("--shared", action="append", default=[], metavar="BASE",
                   help="a shared base the jails were built with (init --shared BASE): "
                        "hard links to the same file there are expected (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run and not args.fix:
        raise UsageError("check: --dry-run goes with --fix")
    jails = targets(args.jails, args.config)
    checker = Checker(jobs=args.jobs, compare=not args.no_compare, shared=args.shared)
    progress = _progress(len(jails), args.progress or sys.stderr.isatty())
    reports = []
    for i, target in enumerate(jails, 1):
        progress(f"[{i}/{len(jails)}] {target.name} {target.root} ...")
        report = checker.check(target)
        if args.fix:
            report = _apply_fixes(checker, target, report, dry_run=args.dry_run)
        progress(f"[{i}/{len(jails)}] {target.name}: {len(report.problems)} finding(s), "
                 f"{report.entries} entries, {report.seconds:.2f} s")
        reports.append(report)
    if args.json:
        print(json.dumps({"clean": all(not r.problems for r in reports), "dry_run":
                          args.dry_run, "jails": [r.as_dict() for r in reports]}, indent=2))
    else:
        _print_text(reports, verbose=args.verbose, dry_run=args.dry_run)
    return 1 if any(r.problems for r in reports) else 0


def _apply_fixes(checker: Checker, target: Target, report: JailReport, *,
                 dry_run: bool) -> JailReport:
    done = []
    for found in report.findings:
        if found.fixable:
            try:
                done.append(fix(found, dry_run=dry_run))
            except (OSError, PamJailError) as err:
                done.append(f"not fixed: {found.path}: {err}")
    if dry_run or not done:
        report.fixed = done
        return report
    again = checker.check(target)              # what is left after the fixes
    again.fixed = done
    return again


def _progress(count: int, wanted: bool) -> Callable[[str], None]:
    if count < 2 or not wanted:
        return lambda _text: None
    return lambda text: print(f"pam-jail check: {text}", file=sys.stderr, flush=True)


def _print_text(reports: list[JailReport], *, verbose: bool, dry_run: bool) -> None:
    if not reports:
        print("no jails configured (and no /./ home markers)")
    for r in reports:
        shown = r.findings if verbose else r.problems
        state = "clean" if not r.problems else f"{len(r.problems)} finding(s)"
        print(f"jail {r.name} ({r.root}): {state}; {r.entries} entries, {r.compared} "
              f"compared with the host, {r.seconds:.2f} s")
        for f in shown:
            mark = " [fixable]" if f.fixable and not r.fixed else ""
            print(f"  {f.kind:16} {f.severity:7} {f.path}: {f.detail}{mark}")
        for line in r.fixed:
            print(f"  {'would ' if dry_run else ''}{line}")
