"""Is this jail safe to enter? One path-safety rule for the login path, the checker,
the builder and the tests.

The rule (OpenSSH's safely_chroot): every component of the jail path, from / down, is a
real directory (not a symlink), owned by root, not writable by group or other. Inside the
jail, the system directories and files a login depends on (etc, lib, usr, bin, sbin, the
allow-list) are root-owned and not group/other-writable, so a jailed user cannot plant
libraries, passwd entries or an allow-list.

`judge_*` functions are pure (stat facts in, problem text out); `check_*` read the file
system with lstat; `open_checked` opens the path component by component with
O_PATH|O_NOFOLLOW and checks each fd, so the login enters exactly what was checked.
"""

from __future__ import annotations

import posix

from pam_jail.login import paths
from pam_jail.login.paths import (
    S_IMODE,
    S_ISBLK,
    S_ISCHR,
    S_ISDIR,
    S_ISGID,
    S_ISLNK,
    S_ISREG,
    S_ISUID,
    S_ISVTX,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Inside a jail: entries that must be root-owned and not group/other-writable if present.
SYSTEM_ENTRIES = (
    "etc", "etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/ld.so.preload",
    "etc/ld.so.cache", "etc/pam_jail", "etc/pam_jail/lsh.ini",
    "bin", "sbin", "lib", "lib64", "lib32", "usr", "usr/bin", "usr/sbin", "usr/lib",
    "usr/lib64", "usr/libexec", "usr/local", "usr/local/bin", "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu", "dev",
)

_O_PATH = getattr(posix, "O_PATH", 0o10000000)


def judge_component(path: str, mode: int, uid: int, *, final: bool = True) -> str | None:
    """One component of a jail path. Pure."""
    if S_ISLNK(mode):
        return f"{path}: is a symlink (a jail path may not pass through links)"
    if not S_ISDIR(mode):
        return f"{path}: not a directory"
    if uid != 0:
        return f"{path}: owned by uid {uid}, not root"
    if mode & 0o022:
        return f"{path}: writable by group or other (mode {S_IMODE(mode):04o})"
    return None


def judge_system_entry(path: str, mode: int, uid: int) -> str | None:
    """A system file or directory inside the jail. Root-owned symlinks are fine: they
    resolve inside the jail after chroot and only root could change them. Pure."""
    if uid != 0:
        return f"{path}: owned by uid {uid}, not root (a jailed user could replace it)"
    if not S_ISLNK(mode) and mode & 0o022:
        return f"{path}: writable by group or other (mode {S_IMODE(mode):04o})"
    return None


def components(path: str) -> list[str]:
    """'/srv/jails/web' -> ['/', '/srv', '/srv/jails', '/srv/jails/web']."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def check_path_chain(path: str) -> list[str]:
    """Every component of an absolute path: root-owned dirs, no links, not g/o-writable."""
    if not path.startswith("/"):
        return [f"{path}: not an absolute path"]
    if "/../" in path + "/" or "/./" in path + "/":
        return [f"{path}: contains '.' or '..' components"]
    problems: list[str] = []
    for comp in components(path):
        try:
            st = posix.lstat(comp)
        except OSError as err:
            return problems + [f"{comp}: {err.strerror}"]
        problem = judge_component(comp, st.st_mode, st.st_uid)
        if problem:
            problems.append(problem)
            if S_ISLNK(st.st_mode) or not S_ISDIR(st.st_mode):
                break
    return problems


def check_system_entries(root: str, entries: Iterable[str] = SYSTEM_ENTRIES) -> list[str]:
    problems: list[str] = []
    for rel in entries:
        path = f"{root}/{rel}"
        try:
            st = posix.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            problems.append(f"{path}: {err.strerror}")
            continue
        problem = judge_system_entry(path, st.st_mode, st.st_uid)
        if problem:
            problems.append(problem)
    return problems


def check_jail(root: str) -> list[str]:
    """The login path's check: the jail path chain, then the jail's system entries."""
    problems = check_path_chain(root)
    if problems:
        return problems
    return check_system_entries(root)


def open_checked(path: str) -> int:
    """Open an absolute directory path with O_PATH|O_NOFOLLOW one component at a time,
    fstat each fd and apply judge_component to it. Returns an O_PATH fd of the last
    component: the caller enters exactly the directory that was checked. Raises OSError
    (with the problem as text) on the first unsafe component."""
    flags = _O_PATH | posix.O_NOFOLLOW | posix.O_DIRECTORY | posix.O_CLOEXEC
    fd = posix.open("/", flags)
    try:
        _judge_fd(fd, "/")
        current = ""
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise OSError(f"{path}: contains '.' or '..' components")
            current += "/" + part
            try:
                nfd = posix.open(part, flags, dir_fd=fd)
            except OSError as err:
                raise OSError(f"{current}: {err.strerror}") from None
            posix.close(fd)
            fd = nfd
            _judge_fd(fd, current)
        return fd
    except BaseException:
        posix.close(fd)
        raise


def _judge_fd(fd: int, path: str) -> None:
    st = posix.fstat(fd)
    problem = judge_component(path, st.st_mode, st.st_uid)
    if problem:
        raise OSError(problem)


# ------------------------------------------------------------------------------------
# Judgements of single entries inside a jail, shared by the checker (pam-jail check) and
# open to the login path. Pure: a path relative to the jail root ("/etc/passwd") and
# stat facts in, the problem as text out (None when fine).

# The device nodes a jail may hold: exactly those the login path binds from the host
# (confine.SAFE_DEVICES), as character devices with the standard Linux numbers.
ALLOWED_DEVICES: dict[str, tuple[int, int]] = {
    "/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
    "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0),
}
# The trees a login depends on: everything in them must be root-owned (a jailed user
# could otherwise replace libraries, programs, passwd entries or the allow-list).
SYSTEM_TREES = ("/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr")
# World-writable directories that are fine when sticky (each user can only remove their
# own files there); /run/screen is screen's socket directory (the multiplexers profile).
STICKY_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/screen")


def is_system_path(rel: str) -> bool:
    """Is the jail path `rel` ('/usr/bin/ls') one of the system entries or inside a
    system tree? The jail root itself counts (a user-owned root is as bad)."""
    if rel in ("/", "") or rel.lstrip("/") in SYSTEM_ENTRIES:
        return True
    return any(rel == top or rel.startswith(top + "/") for top in SYSTEM_TREES)


def judge_setid(rel: str, mode: int) -> str | None:
    """setuid/setgid bits on anything but a directory (setgid on a directory only sets
    the group of new files). Any owner counts: a user-owned setuid file is still one."""
    if S_ISDIR(mode) or S_ISLNK(mode):
        return None
    bits = [name for bit, name in ((S_ISUID, "setuid"), (S_ISGID, "setgid"))
            if mode & bit]
    if not bits:
        return None
    return f"{rel}: {' and '.join(bits)} (mode {S_IMODE(mode):04o})"


def judge_device(rel: str, mode: int, rdev: int) -> str | None:
    """A device node passes only when it is one of ALLOWED_DEVICES, at its own path, as
    a character device with the right major/minor numbers."""
    if not (S_ISCHR(mode) or S_ISBLK(mode)):
        return None
    kind = "block" if S_ISBLK(mode) else "character"
    numbers = (posix.major(rdev), posix.minor(rdev))
    expected = ALLOWED_DEVICES.get(rel)
    if expected is None:
        return f"{rel}: {kind} device {numbers[0]},{numbers[1]} not in the allow-list " \
               f"({', '.join(ALLOWED_DEVICES)})"
    if kind != "character" or numbers != expected:
        return f"{rel}: {kind} device {numbers[0]},{numbers[1]}, expected character " \
               f"device {expected[0]},{expected[1]}"
    return None


def judge_writable(rel: str, mode: int) -> str | None:
    """Group- or other-writable files and directories. Symlinks (always 0777) and device
    nodes (judged by judge_device) are not judged here; a sticky STICKY_DIRS directory
    may be world-writable."""
    if S_ISLNK(mode) or S_ISCHR(mode) or S_ISBLK(mode):
        return None
    if not mode & 0o022:
        return None
    if S_ISDIR(mode) and mode & S_ISVTX and rel in STICKY_DIRS:
        return None
    what = "directory" if S_ISDIR(mode) else "file"
    return f"{rel}: {what} writable by group or other (mode {S_IMODE(mode):04o})"


def private_home_mode(mode: int, group_private: bool) -> int:
    """The mode a home in a jail gets (jailuser) or should have (check): nothing for
    others, and the group's r/x bits only when the group is the user's own (0750 at
    most), else none (0700 at most). Special bits are dropped."""
    return S_IMODE(mode) & (0o750 if group_private else 0o700)


def judge_home_privacy(rel: str, mode: int, group: str, sharing: Iterable[str]) -> str | None:
    """A home in a jail that its other customers could read or enter: any bit for others,
    or a group bit when another customer of the jail (`sharing`: their names) has the
    home's group. Sharing on purpose goes through a group directory, never a home."""
    shown = sorted(sharing)
    if mode & 0o007:
        return f"{rel}: home readable by every user of the jail (mode {S_IMODE(mode):04o})"
    if mode & 0o070 and shown:
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        return (f"{rel}: home open to group {group} (mode {S_IMODE(mode):04o}), a group "
                f"of {', '.join(shown[:5])}{more}, customers of the same jail")
    return None


def link_leaves_root(rel: str, target: str) -> bool:
    """Does the text of the symlink `rel` -> `target` climb above the jail root? An
    absolute target starts at the root, a relative one at the link's directory; each
    '..' climbs one level. Inside the chroot such a link stops at the root, but a tool on
    the host that follows it (a backup, an admin's cp -r) leaves the jail."""
    depth = 0 if target.startswith("/") else len([p for p in rel.split("/") if p]) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def judge_symlink(rel: str, target: str) -> str | None:
    """A symlink whose target text climbs above the jail root (see link_leaves_root)."""
    if link_leaves_root(rel, target):
        return f"{rel} -> {target}: climbs above the jail root ('..' past /)"
    return None


def judge_id_entry(kind: str, name: str, jail_id: int, host_id: int | None,
                   host_owner: str | None) -> str | None:
    """An etc/passwd or etc/group entry of the jail against the host's databases.
    host_id: the host's id for `name` (None: no such name on the host); host_owner: the
    host's name for `jail_id` (None: unused there). The name must exist on the host with
    the same id: otherwise files show another owner inside the jail than outside, and a
    jail etc/group can hand out groups at login (the PAM path reads it)."""
    if host_id is None:
        if host_owner is not None:
            return f"{kind} {name}: not on the host, and id {jail_id} is {host_owner} there"
        return f"{kind} {name} (id {jail_id}): not on the host"
    if host_id != jail_id:
        return f"{kind} {name}: id {jail_id} in the jail, {host_id} on the host"
    return None


def resolve_in_jail(root: str, rel: str) -> str | None:
    """Host path of `rel` as a process chrooted to `root` sees it (absolute link
    targets start at the root, '..' stops there), or None when it does not exist."""
    return _walk_in_jail(root, rel)[0]


# ------------------------------------------------------------------------------------
# What a login executes (the program, its interpreter, the limited shell's runtime): at
# login, every file and directory on the way to it must be root's and not writable by
# group or other, or a jailed user who owns or can write any of them could replace what
# runs. Cheap on purpose: only the paths this login touches, one lstat each.

MISSING = "no such file in the jail"
# Library directories the dynamic loader searches by default (absent ones are skipped).
LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


def judge_exec_entry(rel: str, mode: int, uid: int, user: int | None = None) -> str | None:
    """One inode on the way to something a login executes. Pure. `user`: the jailed
    user's uid when seen from the user's own user namespace (mode shell), where every
    other uid, root included, shows as the overflow uid: then only the user's own
    ownership is refused; else (user None) the owner must be root."""
    if (uid != 0) if user is None else (uid == user):
        return f"{rel}: owned by uid {uid}, not root (it could replace what this login runs)"
    if not S_ISLNK(mode) and mode & 0o022:
        return f"{rel}: writable by group or other (mode {S_IMODE(mode):04o}; it " \
               "could replace what this login runs)"
    return None


def _walk_in_jail(root: str, rel: str,
                  memo: dict[str, posix.stat_result | OSError] | None = None,
                  ) -> tuple[str | None, list[tuple[str, posix.stat_result]]]:
    """Resolve `rel` as a process chrooted to `root` would (like resolve_in_jail) and
    return the host path reached (None: it does not exist) and every (jail path, lstat)
    visited: each directory, each symlink and the final entry. `memo`: the lstat of
    each path already visited by this check (the walks to LIB_DIRS share /, /usr...)."""
    memo = {} if memo is None else memo

    def lstat(path: str) -> posix.stat_result:
        st = memo.get(path)
        if st is None:
            try:
                st = memo[path] = posix.lstat(path)
            except OSError as err:
                memo[path] = err
                raise
        if isinstance(st, OSError):
            raise st
        return st

    seen: list[tuple[str, posix.stat_result]] = []
    try:
        seen.append(("/", lstat(root or "/")))
    except OSError:
        return None, seen
    resolved = ""
    parts = [p for p in rel.split("/") if p]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = paths.dirname(resolved) if resolved else ""
            resolved = "" if resolved == "/" else resolved
            continue
        candidate = f"{resolved}/{part}"
        try:
            st = lstat(root + candidate)
        except OSError:
            return None, seen
        seen.append((candidate, st))
        if S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return None, seen
            target = posix.readlink(root + candidate)
            if target.startswith("/"):
                resolved = ""
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved = candidate
    return root + (resolved or "/"), seen


def elf_interpreter(data: bytes) -> str | None:
    """PT_INTERP of an ELF file from its first bytes (None: not ELF or no interpreter).
    A few header fields read by hand: no struct, no pyelftools on the login path."""
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    big = data[5] == 2

    def num(off: int, size: int) -> int:
        return int.from_bytes(data[off:off + size], "big" if big else "little")

    if data[4] == 2:   # ELF64
        phoff, phentsize, phnum = num(0x20, 8), num(0x36, 2), num(0x38, 2)
        fields = ((0, 4), (8, 8), (32, 8))
    else:              # ELF32
        phoff, phentsize, phnum = num(0x1C, 4), num(0x2A, 2), num(0x2C, 2)
        fields = ((0, 4), (4, 4), (16, 4))
    for i in range(min(phnum, 64)):
        base = phoff + i * phentsize
        if base + phentsize > len(data):
            return None
        if num(base + fields[0][0], fields[0][1]) == 3:      # PT_INTERP
            off, size = num(base + fields[1][0], fields[1][1]), num(base + fields[2][0],
                                                                    fields[2][1])
            if off + size > len(data) or size == 0:
                return None
            return data[off:off + size].split(b"\0")[0].decode("utf-8", "replace")
    return None


def _interpreter_of(path: str) -> str | None:
    """The program that runs `path` (a host path): a script's #! line or an ELF's
    PT_INTERP; None if neither."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = posix.pread(fd, 8192, 0)
    finally:
        posix.close(fd)
    if data.startswith(b"#!"):
        line = data[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        return line.split()[0] if line else None
    return elf_interpreter(data)


def check_exec(root: str, rel: str, *, dirs: tuple[str, ...] = (), depth: int = 0,
               user: int | None = None,
               _memo: dict[str, posix.stat_result | OSError] | None = None) -> list[str]:
    """Problems with executing `rel` inside the jail at `root` ("" once inside the jail):
    every inode on the way (judge_exec_entry), the program itself a regular file, its
    interpreter (#! or PT_INTERP) the same way, and `dirs` (e.g. LIB_DIRS, a runtime's
    directories) where present. Each path is looked at once per check (`_memo`)."""
    memo: dict[str, posix.stat_result | OSError] = {} if _memo is None else _memo
    host, seen = _walk_in_jail(root, rel, memo)
    problems = [p for p in (judge_exec_entry(path, st.st_mode, st.st_uid, user)
                            for path, st in seen) if p]
    if host is None:
        problems.append(f"{rel}: {MISSING}")
        return problems
    if not S_ISREG(seen[-1][1].st_mode):
        problems.append(f"{rel}: not a regular file")
        return problems
    interpreter = _interpreter_of(host)
    if interpreter and depth < 2:
        problems += check_exec(root, interpreter, depth=depth + 1, user=user, _memo=memo)
    for directory in dirs:
        found, visited = _walk_in_jail(root, directory, memo)
        if found is None:
            continue
        problems += [p for p in (judge_exec_entry(path, st.st_mode, st.st_uid, user)
                                 for path, st in visited) if p]
    return list(dict.fromkeys(problems))
