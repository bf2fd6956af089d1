"""`pam-jail check` (jailkit's jk_check): find what makes a jail unsafe or stale.

The judgements are the pure `judge_*` functions of pam_jail.login.safety, the module the login
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
  differs          a file whose content differs from the file at the same path on the
                   host, judged on the WHOLE content: the same inode (hard link) is the
                   same content; another size is other content; otherwise every byte of
                   both files is read and compared (no hash, no sample). Homes, tmp,
                   dev, proc, etc/passwd, etc/group and etc/pam_jail are not compared
  passwd, group    jail entries whose name or id disagrees with the host's databases
  mount            (info) the jail's file system is mounted without nosuid or nodev
  home-readable    the home of a customer of the jail (a user jails.ini maps to it, or
                   whose passwd home names it) that another customer can read or enter:
                   any bit for others, or a group bit with a group another customer of
                   that jail has (safety.judge_home_privacy); the hint names the chmod

Severity: "error" (the jail is unsafe), "warning" (stale or suspicious), "info" (does not
change the exit status: the login path binds every jail nosuid,nodev itself).

Speed: one walk (os.scandir on directory fds, one lstat per entry); the judges run only
for entries a rule can apply to (_QUIET_BITS); files are opened relative to the
directory fds of the jail and of the host and compared with os.pread (see compare_fds).
A big jail is split between forked worker processes (--jobs): each walks all pending
directories but looks only at the entries whose path hashes to its number, and hands its
results back through a pipe; a worker that fails fails the whole check (PamJailError),
it never passes silently. docs/check.md has the numbers.
"""

from __future__ import annotations

import grp
import marshal
import os
import pwd
import stat
import sys
import time

from pam_jail.login import safety
from pam_jail.login.config import DEFAULT_PATH
from pam_jail.login.config_file import load_config
from pam_jail.login.errors import PamJailError, UsageError
from pam_jail.login.log import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Iterator, Sequence

SEVERITY = {
    "jail-path": "error", "setuid": "error", "device": "error", "writable": "error",
    "system-owner": "error", "hardlink": "error", "passwd": "error", "group": "error",
    "symlink-outside": "warning", "symlink-dangling": "warning", "differs": "warning",
    "unreadable": "warning", "mount": "info", "home-readable": "error",
}
FIXABLE = ("setuid", "writable")

# Directories whose content the login path mounts at login: links into them dangle in
# the stored tree by design (dev/ptmx -> pts/ptmx).
MOUNTED_AT_LOGIN = ("/dev/pts", "/proc")
# Never compared with the host: the builder writes them for this jail.
NOT_COMPARED = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
NOT_COMPARED_TREES = ("/etc/pam_jail", "/dev", "/proc", "/tmp", "/var/tmp", "/home")


def _names_by_dir(paths: Iterable[str]) -> dict[str, frozenset[str]]:
    """{'/etc': {'passwd', ...}, '': {'dev', ...}}: one dict lookup per directory."""
    out: dict[str, frozenset[str]] = {}
    for path in paths:
        parent, name = path.rsplit("/", 1)
        out[parent] = out.get(parent, frozenset()) | {name}
    return out


_NOT_COMPARED_NAMES = _names_by_dir(NOT_COMPARED + NOT_COMPARED_TREES)
# Where an outside twin of a hard-linked jail file is looked for (only on the jail's
# file system: hard links cannot cross file systems). Whether a twin exists at all is
# decided by counting (st_nlink against the links seen in the jail); this search only
# names it.
TWIN_SEARCH = ("/etc", "/root", "/home", "/srv", "/opt", "/var", "/usr", "/boot", "/tmp")
# Mounts inside a jail that the walk does not enter (when on another device).
_NOT_ENTERED = ("/proc", "/dev/pts", "/sys")

# Content comparison: files up to _SMALL bytes are read whole (one pread per side, two
# bytes objects, one memcmp); bigger ones in _CHUNK pieces into two reused buffers.
# Measured here: 64 KiB pieces read and compare as fast as 128 KiB ones, and unlike
# those, buffers of that size come from the heap (no fresh mmap to fault in per run).
_SMALL = 1 << 16
_CHUNK = 1 << 16
# Fork workers once this much work is done and more is pending (work: entries seen
# plus bytes compared / _BYTES_PER_UNIT); a smaller jail is checked in one process.
_FORK_AFTER = 2000
_BYTES_PER_UNIT = 1 << 14
# The judges can find nothing in a root-owned regular file or directory without
# setuid/setgid or group/other-write bits (judge_setid, judge_device, judge_writable,
# judge_system_entry and the symlink rules all return None for it): such entries, the
# bulk of every jail, skip them. tests/test_check.py checks this against the judges.
_QUIET_BITS = stat.S_ISUID | stat.S_ISGID | 0o022
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, stat.S_IFREG, stat.S_IFDIR

_O_CLOEXEC = os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
_HOST_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC        # follows links, as stat
# O_NONBLOCK: a FIFO swapped in by a user never blocks the checker
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _O_CLOEXEC
_HOST_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _O_CLOEXEC


class Finding:
    """One finding. `ident` (st_dev, st_ino) lets --fix make sure it changes the entry
    the walk saw; it does not take part in comparisons."""

    __slots__ = ("kind", "path", "detail", "severity", "fixable", "ident", "hint")

    def __init__(self, kind: str, path: str, detail: str, severity: str = "error",
                 fixable: bool = False, ident: tuple[int, int] | None = None,
                 hint: str = "") -> None:
        self.kind = kind
        self.path = path            # host path of the entry (jail root + path in the jail)
        self.detail = detail
        self.severity = severity
        self.fixable = fixable
        self.ident = ident
        self.hint = hint            # what the admin can do ("" = see docs/check.md)

    def _key(self) -> tuple[str, str, str, str, bool]:
        return (self.kind, self.path, self.detail, self.severity, self.fixable)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Finding(kind={self.kind!r}, path={self.path!r}, detail={self.detail!r}, "
                f"severity={self.severity!r}, fixable={self.fixable!r})")

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail,
                "severity": self.severity, "fixable": self.fixable, "hint": self.hint}


def finding(kind: str, path: str, detail: str,
            ident: tuple[int, int] | None = None) -> Finding:
    return Finding(kind, path, detail, SEVERITY[kind], kind in FIXABLE, ident)


class Customer:
    """A user of a jail: uid, every group id (primary and supplementary), and the home
    inside the jail."""

    __slots__ = ("uid", "gids", "home")

    def __init__(self, uid: int, gids: frozenset[int], home: str) -> None:
        self.uid, self.gids, self.home = uid, gids, home


class Target:
    """A jail to check: its name, root, the homes inside it (paths in the jail) and its
    customers (user name -> Customer; filled by jail_customers for `check`)."""

    __slots__ = ("name", "root", "homes", "customers")

    def __init__(self, name: str, root: str, homes: set[str] | None = None) -> None:
        self.name = name
        self.root = root
        self.homes: set[str] = set() if homes is None else homes
        self.customers: dict[str, Customer] = {}

    def __repr__(self) -> str:
        return f"Target(name={self.name!r}, root={self.root!r}, homes={self.homes!r})"


class JailReport:
    __slots__ = ("name", "root", "findings", "entries", "compared", "compared_bytes",
                 "seconds", "fixed", "workers")

    def __init__(self, name: str, root: str) -> None:
        self.name = name
        self.root = root
        self.findings: list[Finding] = []
        self.entries = 0             # directory entries looked at
        self.compared = 0            # files compared with a regular host file
        self.compared_bytes = 0      # bytes read and compared, both sides
        self.seconds = 0.0
        self.fixed: list[str] = []
        self.workers = 0             # worker processes forked for this jail

    @property
    def problems(self) -> list[Finding]:
        """The findings that count for the exit status (not "info")."""
        return [f for f in self.findings if f.severity != "info"]

    def as_dict(self) -> dict[str, object]:
        return {"jail": self.name, "root": self.root, "entries": self.entries,
                "compared": self.compared, "compared_bytes": self.compared_bytes,
                "seconds": round(self.seconds, 4), "clean": not self.problems,
                "findings": [f.as_dict() for f in self.findings], "fixed": self.fixed}


# ------------------------------------------------------------------ whole-content compare

def _fill(fd: int, view: memoryview, want: int, offset: int) -> int:
    """pread `want` bytes at `offset` into view (short reads retried); the count read,
    less than `want` only at end of file."""
    got = os.preadv(fd, [view[:want]], offset)
    while 0 < got < want:
        more = os.preadv(fd, [view[got:want]], offset + got)
        if not more:
            break
        got += more
    return got


def _pread_all(fd: int, want: int) -> bytes:
    data = os.pread(fd, want, 0)
    while 0 < len(data) < want:                 # a short read: go on to end of file
        more = os.pread(fd, want - len(data), len(data))
        if not more:
            break
        data += more
    return data


def _first_difference(a: bytes | bytearray, b: memoryview | bytes, size: int) -> int:
    """Index of the first byte where a[:size] and b[:size] differ (they do): a binary
    search on prefixes, each compared by memcmp (startswith)."""
    lo, hi = 0, size            # a[:lo] == b[:lo]; a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a.startswith(b[:mid]):
            lo = mid
        else:
            hi = mid
    return lo


def _rel(rel_dir: str, name: str) -> str:
    return rel_dir + "/" + name


class _Buffers:
    __slots__ = ("a", "b", "va", "vb")

    def __init__(self) -> None:
        self.a, self.b = bytearray(_CHUNK), bytearray(_CHUNK)
        self.va, self.vb = memoryview(self.a), memoryview(self.b)


def compare_fds(jail_fd: int, host_fd: int, size: int,
                buffers: _Buffers | None = None) -> int | None:
    """Compare the first `size` bytes (the size both files had when stat'ed) of two
    files, every byte: None when equal, else the offset of the first difference (or of
    the end of the file that came up short: it changed during the check)."""
    if size <= _SMALL:
        mine, theirs = _pread_all(jail_fd, size), _pread_all(host_fd, size)
        if mine == theirs and len(mine) == size:
            return None
        common = min(len(mine), len(theirs))
        if mine[:common] == theirs[:common]:
            return common
        return _first_difference(mine, theirs, common)
    bufs = buffers or _Buffers()
    a, b, va, vb = bufs.a, bufs.b, bufs.va, bufs.vb
    offset = 0
    while offset < size:
        want = min(_CHUNK, size - offset)
        got_a = _fill(jail_fd, va, want, offset)
        got_b = _fill(host_fd, vb, want, offset)
        if got_a != want or got_b != want:
            common = min(got_a, got_b)
            if not a.startswith(vb[:common]):
                return offset + _first_difference(a, vb, common)
            return offset + common
        if not (a == b if want == _CHUNK else a.startswith(vb[:want])):
            return offset + _first_difference(a, vb, want)
        offset += want
    return None


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


# What a part of the walk hands back (marshal-able: a worker sends it through a pipe):
# entries, compared, compared bytes, findings as (kind, path, detail, ident) tuples,
# regular files with more than one link as {(dev, ino): (nlink, [paths in the jail])}.
_Links = dict[tuple[int, int], tuple[int, list[str]]]


def _host_listing(hfd: int, files: list[tuple[str, os.stat_result]]) -> dict[str, bool] | None:
    """{name: is a regular file (by d_type, no stat)} of the host directory hfd for the
    names in `files` (absent: no such entry), or None when stat'ing each file is cheaper
    (the host directory is much bigger than the list; its st_size tells)."""
    if len(files) < 8 or os.fstat(hfd).st_size > 256 * len(files):
        return None
    wanted = {name for name, _st in files}
    listed = {}
    with os.scandir(hfd) as it:
        for entry in it:
            if entry.name in wanted:
                listed[entry.name] = entry.is_file(follow_symlinks=False)
    return listed


class _Walk:
    """Walks one jail: judges every entry and compares the files. Once the jail shows
    itself big (_FORK_AFTER), it may fork workers (see _fork); then each process takes
    the entries whose path hashes to its index."""

    def __init__(self, root: str, user_areas: tuple[str, ...], compare: bool,
                 jobs: int) -> None:
        self.root = root
        self.root_dev = os.lstat(root).st_dev
        self.user_areas = user_areas
        self.compare = compare
        self.spare = jobs - 1               # workers this walk may still fork
        self.share, self.index = 1, 0       # after the fork: processes, this one's index
        self.entries = self.compared = self.nbytes = 0
        self.findings: list[tuple[str, str, str, tuple[int, int] | None]] = []
        self.links: _Links = {}
        self.workers: list[tuple[int, int]] = []   # (pid, read end of its pipe)
        self.buffers = _Buffers()

    # -- one directory
    def _dir(self, rel_dir: str, stack: list[str]) -> None:
        root = self.root
        try:
            dfd = os.open(root + rel_dir if rel_dir else root, _DIR_FLAGS)
        except OSError as err:
            self.findings.append(("unreadable", root + rel_dir,
                                  f"{rel_dir or '/'}: {err.strerror}", None))
            return
        try:
            dst = os.fstat(dfd)
            # entries of a root-owned, not group/other-writable directory can only be
            # replaced by root: no per-file fstat is needed to trust the walk's lstat
            trusted = dst.st_uid == 0 and not dst.st_mode & 0o022
            # entries below a home or tmp (the directory itself is judged like any other)
            in_user_area = any(rel_dir == top or rel_dir.startswith(top + "/")
                               for top in self.user_areas)
            comparable = self.compare and not in_user_area and not _under(
                rel_dir, NOT_COMPARED_TREES)
            files: list[tuple[str, os.stat_result]] = []
            links = self.links
            share, index = self.share, self.index
            prefix = rel_dir + "/"
            count = 0
            with os.scandir(dfd) as it:
                for entry in it:
                    rel = prefix + entry.name
                    if share > 1 and hash(rel) % share != index:
                        # another process's entry: only the walk goes on (by d_type)
                        if entry.is_dir(follow_symlinks=False) and not (
                                rel in _NOT_ENTERED and self._other_mount(entry)):
                            stack.append(rel)
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue              # removed meanwhile
                    count += 1
                    mode = st.st_mode
                    kind = mode & _S_IFMT
                    if mode & _QUIET_BITS or st.st_uid or (kind != _S_IFREG and
                                                           kind != _S_IFDIR):
                        self._judge(dfd, rel, st, in_user_area)
                    if kind == _S_IFREG:
                        if st.st_nlink > 1:
                            links.setdefault((st.st_dev, st.st_ino),
                                             (st.st_nlink, []))[1].append(rel)
                        if comparable:
                            files.append((entry.name, st))
                    elif kind == _S_IFDIR and not (
                            rel in _NOT_ENTERED and st.st_dev != self.root_dev):
                        stack.append(rel)
            self.entries += count
            if files:
                self._compare_dir(dfd, rel_dir, files, trusted)
        finally:
            os.close(dfd)

    def _other_mount(self, entry: os.DirEntry[str]) -> bool:
        try:
            return entry.stat(follow_symlinks=False).st_dev != self.root_dev
        except OSError:
            return True

    def _judge(self, dfd: int, rel: str, st: os.stat_result, user_area: bool) -> None:
        root = self.root
        path, mode = root + rel, st.st_mode
        ident = (st.st_dev, st.st_ino)
        out = self.findings
        if problem := safety.judge_setid(rel, mode):
            out.append(("setuid", path, problem, ident))
        if problem := safety.judge_device(rel, mode, st.st_rdev):
            out.append(("device", path, problem, None))
        if not user_area and (problem := safety.judge_writable(rel, mode)):
            out.append(("writable", path, problem, ident))
        if st.st_uid != 0 and safety.is_system_path(rel) and \
                (problem := safety.judge_system_entry(rel, mode, st.st_uid)):
            out.append(("system-owner", path, problem, None))
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(rel.rsplit("/", 1)[1], dir_fd=dfd)
            except OSError:
                return
            if problem := safety.judge_symlink(rel, target):
                out.append(("symlink-outside", path, problem, None))
            elif not user_area and not self._resolves(dfd, rel, target):
                inside = os.path.normpath(os.path.join(os.path.dirname(rel), target))
                if not _under(inside, MOUNTED_AT_LOGIN):
                    out.append(("symlink-dangling", path,
                                f"{rel} -> {target}: no such file in the jail", None))

    def _resolves(self, dfd: int, rel: str, target: str) -> bool:
        """Does the link rel -> target resolve inside the jail (safety.resolve_in_jail)?
        A target that names an entry of the link's own directory, which is not itself
        a link, resolves to exactly that entry: one lstat instead of a walk from the
        jail root (the walk reached this directory through real directories)."""
        if "/" not in target and target not in ("", ".", ".."):
            try:
                if not stat.S_ISLNK(os.lstat(target, dir_fd=dfd).st_mode):
                    return True
            except OSError:
                return False
        return safety.resolve_in_jail(self.root, rel) is not None

    def _compare_dir(self, dfd: int, rel_dir: str,
                     files: list[tuple[str, os.stat_result]], trusted: bool) -> None:
        """Compare the regular files `files` of the jail directory dfd with the host's
        files of the same names in the host directory rel_dir."""
        try:
            hfd = os.open(rel_dir or "/", _HOST_DIR_FLAGS)
        except OSError:
            return                        # not on the host: nothing to compare
        skip = _NOT_COMPARED_NAMES.get(rel_dir, frozenset())
        open_, pread, close = os.open, os.pread, os.close
        compared = nbytes = 0
        try:
            listed = _host_listing(hfd, files)
            for name, st in files:
                if name in skip:
                    continue
                size = st.st_size
                try:
                    if listed is not None and st.st_nlink == 1:
                        regular = listed.get(name)
                        if regular is None:
                            continue      # only in the jail: nothing to compare
                        if regular:       # by d_type; one link, so not the host's inode
                            try:
                                hf = open_(name, _HOST_FILE_FLAGS, dir_fd=hfd)
                            except OSError:
                                continue  # gone from the host meanwhile
                            try:
                                if trusted and size <= _SMALL:
                                    # the bulk, inline: equal sizes (the host's read
                                    # ends at `size`) and equal bytes
                                    theirs = pread(hf, size + 1, 0)
                                    if len(theirs) == size:
                                        fd = open_(name, _FILE_FLAGS, dir_fd=dfd)
                                        try:
                                            same = pread(fd, size, 0) == theirs
                                        finally:
                                            close(fd)
                                        if same:
                                            compared += 1
                                            nbytes += size
                                            continue
                                # anything else, differences included: judged and
                                # worded by _against
                                self._against(dfd, hf, name, _rel(rel_dir, name), st,
                                              None, trusted)
                            finally:
                                close(hf)
                            continue
                    try:
                        host = os.stat(name, dir_fd=hfd)     # follows links, as the host
                    except OSError:
                        continue          # only in the jail: nothing to compare
                    if host.st_mode & _S_IFMT != _S_IFREG:
                        continue
                    if host.st_ino == st.st_ino and host.st_dev == st.st_dev:
                        compared += 1
                        continue          # the same file (hard link): the same content
                    if host.st_size != size:
                        self._against(dfd, -1, name, _rel(rel_dir, name), st,
                                      host.st_size, trusted)
                        continue
                    try:
                        hf = open_(name, _HOST_FILE_FLAGS, dir_fd=hfd)
                    except OSError:
                        continue          # gone from the host meanwhile
                    try:
                        self._against(dfd, hf, name, _rel(rel_dir, name), st,
                                      size, trusted)
                    finally:
                        close(hf)
                except FileNotFoundError:
                    continue              # removed from the jail meanwhile
                except OSError as err:
                    rel = _rel(rel_dir, name)
                    self.findings.append(("unreadable", self.root + rel,
                                          f"{rel}: {err.strerror}", None))
        finally:
            close(hfd)
            self.compared += compared
            self.nbytes += 2 * nbytes

    def _against(self, dfd: int, hf: int, name: str, rel: str, st: os.stat_result,
                 host_size: int | None, trusted: bool) -> None:
        """Judge the jail file `name` (lstat `st`) against the open host file hf, whose
        size is `host_size` (None: not stat'ed, found here)."""
        self.compared += 1
        size = st.st_size
        theirs = None
        if host_size is None:
            if size <= _SMALL:            # one pread: also tells a bigger host file
                theirs = os.pread(hf, size + 1, 0)
                host_size = size if len(theirs) == size else os.lseek(hf, 0, os.SEEK_END)
            else:
                host_size = os.lseek(hf, 0, os.SEEK_END)
        if host_size != size:
            self.findings.append(("differs", self.root + rel, f"{rel}: {size} bytes in "
                                  f"the jail, {host_size} on the host (pam-jail update "
                                  "refreshes it)", None))
            return
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            if not trusted:               # a user could have swapped it since the lstat
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or \
                        not stat.S_ISREG(now.st_mode):
                    raise OSError(0, "replaced during the check")
            where: int | None = None
            if size <= _SMALL:            # the common case, inline: one pread a side
                mine = os.pread(fd, size, 0)
                if theirs is None or len(theirs) != size:
                    theirs = os.pread(hf, size, 0)
                if mine != theirs or len(mine) != size:
                    where = compare_fds(fd, hf, size, self.buffers)
            else:
                where = compare_fds(fd, hf, size, self.buffers)
        finally:
            os.close(fd)
        self.nbytes += 2 * size
        if where is not None:
            self.findings.append(("differs", self.root + rel, f"{rel}: content differs "
                                  f"from the host's from byte {where} of {size} (whole "
                                  "files compared; pam-jail update refreshes it)", None))

    # -- the whole walk, with the one fork
    def run(self, stack: list[str]) -> None:
        while stack:
            if self.spare and self.entries + self.nbytes // _BYTES_PER_UNIT >= _FORK_AFTER:
                self._fork(stack)
            self._dir(stack.pop(), stack)

    def _fork(self, stack: list[str]) -> None:
        """Start the workers. Every process goes on with the same pending directories
        and lists all of them, but looks at (lstat, judge, compare) only the entries
        whose path hashes to its own index: an even split wherever the work is, and
        no entry is left out (the hash seed is the same in the forked processes)."""
        share = self.spare + 1
        self.spare = 0
        for index in range(1, share):
            read_end, write_end = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                raise
            if pid == 0:                                  # the worker
                os.close(read_end)
                self.share, self.index = share, index
                _worker(self, stack, write_end)           # never returns
            os.close(write_end)
            self.workers.append((pid, read_end))
        self.share, self.index = share, 0

    def collect(self) -> None:
        """Wait for every worker and merge its results. A worker that did not finish
        cleanly makes the check fail: never a silent pass on a part not looked at."""
        failed = []
        while self.workers:
            pid, read_end = self.workers.pop(0)
            chunks = []
            try:
                while chunk := os.read(read_end, 1 << 16):
                    chunks.append(chunk)
            except BaseException:
                _kill(pid)
                raise
            finally:
                os.close(read_end)
            _pid, status = os.waitpid(pid, 0)
            data = b"".join(chunks)
            try:
                part = marshal.loads(data)  # noqa: S302 - our own child's output
            except (EOFError, ValueError, TypeError):
                part = None
            exited = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            if not (exited and isinstance(part, tuple) and len(part) == 6 and
                    part[0] == "done"):
                why = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) \
                    else f"exit status {os.WEXITSTATUS(status)}"
                if isinstance(part, tuple) and len(part) == 2 and part[0] == "error":
                    why += f": {part[1]}"
                failed.append(f"worker {pid} ({why})")
                continue
            _done, entries, compared, nbytes, findings, links = part
            self.entries += entries
            self.compared += compared
            self.nbytes += nbytes
            self.findings += [(k, p, d, tuple(i) if i else None) for k, p, d, i in findings]
            for key, (nlink, rels) in links.items():
                self.links.setdefault(key, (nlink, []))[1].extend(rels)
        if failed:
            raise PamJailError(f"check {self.root}: {', '.join(failed)} failed; the "
                               "check is incomplete")

    def abandon(self) -> None:
        """After an error in this process: stop and reap the workers."""
        for pid, read_end in self.workers:
            os.close(read_end)
            _kill(pid)
        self.workers = []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _worker(walk: _Walk, stack: list[str], write_end: int) -> None:
    """In the forked worker: walk `stack`, send the results, exit. Any error is sent as
    ("error", text) and a non-zero exit: the parent fails the check."""
    code = 1
    try:
        for _pid, read_end in walk.workers:      # the earlier workers' pipes
            os.close(read_end)
        walk.entries = walk.compared = walk.nbytes = 0
        walk.findings, walk.links, walk.workers = [], {}, []
        walk.run(stack)
        data = marshal.dumps(("done", walk.entries, walk.compared, walk.nbytes,
                              walk.findings, walk.links))
        code = 0
    except BaseException as err:  # noqa: BLE001 - reported to the parent, then exit
        data = marshal.dumps(("error", f"{type(err).__name__}: {err}"))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


class Checker:
    """One run over one or more jails. `jobs`: processes per jail (the caller and
    jobs-1 forked workers, used only when the jail is big enough); `compare`: compare
    file contents with the host; `shared`: --shared bases (hard links into them are
    expected)."""

    def __init__(self, *, jobs: int | None = None, compare: bool = True,
                 shared: Sequence[str] = ()) -> None:
        if jobs is not None and jobs < 0:
            raise UsageError(f"check -j {jobs}: a number of processes, 1 or more")
        self.jobs = jobs or min(4, os.cpu_count() or 1)
        self.compare = compare
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
        walk = _Walk(root, user_areas, self.compare, self.jobs)
        try:
            walk.run([""])
            report.workers = len(walk.workers)
            walk.collect()
        except BaseException:
            walk.abandon()
            raise
        report.entries, report.compared = walk.entries, walk.compared
        report.compared_bytes = walk.nbytes
        report.findings += [finding(kind, path, detail, ident)
                            for kind, path, detail, ident in walk.findings]
        for _nlink, rels in walk.links.values():
            rels.sort()                   # the walk order depends on the split
        report.findings += self._hardlinks(root, walk.links)
        report.findings += check_ids(root)
        report.findings += check_mount(root)
        report.findings += check_homes(root, target.customers)
        report.findings.sort(key=lambda f: (f.path, f.kind))
        report.seconds = time.perf_counter() - start
        return report

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

    def _hardlinks(self, root: str, links: _Links) -> list[Finding]:
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
    from pam_jail.admin.build import SHARED_MARKER

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


def check_homes(root: str, customers: dict[str, Customer]) -> list[Finding]:
    """Every customer's home in the jail must be private from the other customers
    (safety.judge_home_privacy). The hint is jailuser's rule: 0750 when the home's group
    is the user's own private group, else 0700."""
    from pam_jail.admin.account import own_private_group

    out = []
    for name, me in sorted(customers.items()):
        path = root + me.home
        try:
            st = os.lstat(path)
        except OSError:
            continue                          # no home yet: nothing to read
        if not stat.S_ISDIR(st.st_mode):
            continue
        sharing = [other for other, them in customers.items()
                   if them.uid != me.uid and st.st_gid in them.gids]
        group = _getgrgid(st.st_gid)
        problem = safety.judge_home_privacy(me.home, st.st_mode,
                                            group.gr_name if group else str(st.st_gid),
                                            sharing)
        if problem:
            want = safety.private_home_mode(st.st_mode, not sharing and
                                            own_private_group(name, st.st_gid))
            out.append(Finding("home-readable", path, problem, SEVERITY["home-readable"],
                               hint=f"chmod {want:04o} {path}; to share files on purpose, a "
                                    "group directory in the jail (chgrp GROUP, chmod 2770), "
                                    "never a home (docs/check.md)"))
    return out


def jail_customers(config_path: str | None) -> dict[str, dict[str, Customer]]:
    """Jail root -> its customers: the users jails.ini maps to it ([users], [groups])
    and the users whose passwd home names it (the /./ marker), as resolve() decides at
    login; a user in a jail only through [options] default is not counted (every host
    user would be)."""
    from pam_jail.admin.account import user_gids
    from pam_jail.login.config import Config
    from pam_jail.login.errors import Denied
    from pam_jail.login.resolve import identity_from_passwd, resolve

    path = config_path or DEFAULT_PATH
    cfg = load_config(path) if config_path is not None or os.path.exists(path) else \
        Config(jails={}, users={}, groups={})
    out: dict[str, dict[str, Customer]] = {}
    for pw in pwd.getpwall():
        if pw.pw_name not in cfg.users and not cfg.groups and "/./" not in pw.pw_dir:
            continue                              # cannot be mapped: no NSS group lookup
        try:
            jail = resolve(identity_from_passwd(pw.pw_name), cfg)
        except Denied:
            continue
        if jail is None or jail.source == "default":
            continue
        home = os.path.normpath("/" + jail.home.lstrip("/"))
        out.setdefault(os.path.normpath(jail.root), {})[pw.pw_name] = Customer(
            pw.pw_uid, user_gids(pw.pw_name, pw.pw_gid), home)
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
    known jail (pam_jail/admin/known.py: jails.ini's, and those a user's `/./` home marker
    names)."""
    from pam_jail.admin.known import known_jails

    path = config_path or DEFAULT_PATH
    cfg = None
    if config_path is not None or os.path.exists(path):
        cfg = load_config(path)
    known = known_jails(cfg)
    if not names:
        return [Target(k.name, k.root, set(k.homes)) for k in known]
    by_root = {k.root: k for k in known}
    found: dict[str, Target] = {}
    for name in names:
        if name.startswith("/"):
            root = os.path.normpath(name)
            label = root
        elif cfg is not None and name in cfg.jails:
            root, label = cfg.jails[name].root, name
        else:
            raise UsageError(f"check {name}: no such jail in {path}",
                             hint="name a configured jail or give an absolute path")
        homes = set(by_root[root].homes) if root in by_root else set()
        found.setdefault(root, Target(label, root, homes))
    return list(found.values())


# ---------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Check jails for what makes them unsafe or stale: setuid/setgid files, device nodes
outside the allow-list (null zero full random urandom tty), group/other-writable files
and directories (a sticky /tmp is fine), system entries (etc, bin, sbin, lib*, usr, the
allow-list etc/pam_jail/lsh.ini) not owned by root, hard links to files outside the
jail, symlinks that climb above the jail root or point at nothing inside it, files
whose content differs from the host's file at the same path (the whole file, no
hash and no sample: the same inode is the same content, another size is other
content, otherwise every byte of both files is compared),
jail etc/passwd and etc/group entries that disagree with the host, the home of a
customer of the jail (mapped in jails.ini or by a /./ home marker) that another
customer can read (o+r/x, or a group another customer has: hint chmod 0750/0700),
and a jail on a mount without nosuid/nodev (info only: the login path remounts it so
itself).

Without JAIL arguments: every jail in the config file plus every jail named by a
user's home marker (/jail/./home/user). Home directories and tmp are scanned for
setuid files, devices and hard links but not compared with the host."""

EPILOG = """\
exit status:
  0 no findings (info-only findings do not count); 1 findings (after --fix: findings
  that remain), or the check could not be completed (a worker process failed);
  2 usage; 3 bad config file

examples:
  pam-jail check                      every configured and marker jail
  pam-jail check web /srv/jails/ftp   one configured jail and one path
  pam-jail check --json web | jq '.jails[].findings[] | select(.kind=="setuid")'
  pam-jail check --fix --dry-run web  show the chmods that --fix would do

A big jail is split between worker processes (--jobs, default one per CPU): each takes
the entries whose path hashes to its number; a worker that fails fails the check.
See docs/check.md for every finding kind, how files are compared and what --fix
changes."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `check` subcommand."""
    import argparse  # loaded by the caller (cli) already; only annotations need it above

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
    p.add_argument("-j", "--jail", dest="jail_opts", action="append", default=[],
                   metavar="JAIL", help="a jail to check, as -j means everywhere else "
                   "(repeatable; the same as naming it)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes per jail for a big jail (default: one per CPU, at "
                        "most 4; 1: no worker processes)")
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
    jails = targets([*args.jails, *args.jail_opts], args.config)
    customers = jail_customers(args.config)
    for target in jails:
        target.customers = customers.get(os.path.normpath(target.root), {})
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
        import json  # only for --json

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
    """One line a jail and a finding, through log.escape: findings name the files that
    jailed users made (a file name may hold a newline or an escape sequence)."""
    if not reports:
        print("no jails configured (and no /./ home markers)")
    for r in reports:
        shown = r.findings if verbose else r.problems
        state = "clean" if not r.problems else f"{len(r.problems)} finding(s)"
        print(f"jail {escape(r.name)} ({escape(r.root)}): {state}; {r.entries} entries, "
              f"{r.compared} compared with the host, {r.seconds:.2f} s")
        for f in shown:
            mark = " [fixable]" if f.fixable and not r.fixed else ""
            print(f"  {f.kind:16} {f.severity:7} {escape(f.path)}: {escape(f.detail)}{mark}")
            if f.hint:
                print(f"  {'':16} hint: {escape(f.hint)}")
        for line in r.fixed:
            print(f"  {'would ' if dry_run else ''}{escape(line)}")
