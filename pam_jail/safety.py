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

import os
import stat
from collections.abc import Iterable

# Inside a jail: entries that must be root-owned and not group/other-writable if present.
SYSTEM_ENTRIES = (
    "etc", "etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/ld.so.preload",
    "etc/ld.so.cache", "etc/pam_jail", "etc/pam_jail/lsh.ini",
    "bin", "sbin", "lib", "lib64", "lib32", "usr", "usr/bin", "usr/sbin", "usr/lib",
    "usr/lib64", "usr/libexec", "usr/local", "usr/local/bin", "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu", "dev",
)

_O_PATH = getattr(os, "O_PATH", 0o10000000)


def judge_component(path: str, mode: int, uid: int, *, final: bool = True) -> str | None:
    """One component of a jail path. Pure."""
    if stat.S_ISLNK(mode):
        return f"{path}: is a symlink (a jail path may not pass through links)"
    if not stat.S_ISDIR(mode):
        return f"{path}: not a directory"
    if uid != 0:
        return f"{path}: owned by uid {uid}, not root"
    if mode & 0o022:
        return f"{path}: writable by group or other (mode {stat.S_IMODE(mode):04o})"
    return None


def judge_system_entry(path: str, mode: int, uid: int) -> str | None:
    """A system file or directory inside the jail. Root-owned symlinks are fine: they
    resolve inside the jail after chroot and only root could change them. Pure."""
    if uid != 0:
        return f"{path}: owned by uid {uid}, not root (a jailed user could replace it)"
    if not stat.S_ISLNK(mode) and mode & 0o022:
        return f"{path}: writable by group or other (mode {stat.S_IMODE(mode):04o})"
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
            st = os.lstat(comp)
        except OSError as err:
            return problems + [f"{comp}: {err.strerror}"]
        problem = judge_component(comp, st.st_mode, st.st_uid)
        if problem:
            problems.append(problem)
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                break
    return problems


def check_system_entries(root: str, entries: Iterable[str] = SYSTEM_ENTRIES) -> list[str]:
    problems: list[str] = []
    for rel in entries:
        path = f"{root}/{rel}"
        try:
            st = os.lstat(path)
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
    flags = _O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        _judge_fd(fd, "/")
        current = ""
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise OSError(f"{path}: contains '.' or '..' components")
            current += "/" + part
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as err:
                raise OSError(f"{current}: {err.strerror}") from None
            os.close(fd)
            fd = nfd
            _judge_fd(fd, current)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _judge_fd(fd: int, path: str) -> None:
    st = os.fstat(fd)
    problem = judge_component(path, st.st_mode, st.st_uid)
    if problem:
        raise OSError(problem)
