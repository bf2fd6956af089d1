"""What the login path takes from os's Python layer, without importing os.

`import os` costs about 1 ms of every login under python3 -IS (most of it
_collections_abc, imported to define os.environ's class), and os.path (posixpath,
genericpath) imports os. The login path calls the built-in posix module instead (os
re-exports it), and takes from here the few os.path helpers it uses and the environment
as os.environ shows it. Each helper is posixpath's (Python 3.11) for str arguments, edge
cases included (normpath('//x') keeps both slashes, dirname('/a/') is '/a', ...);
tests/test_paths.py compares every one with the library on generated paths and on a tree
with links.
"""

from __future__ import annotations

import posix
import sys

SEP = "/"

# The stat module's file types and tests that the login path uses (stat.py is one more
# import at every login): its values, compared with it by tests/test_paths.py.
S_IFMT_BITS = 0o170000
S_IFDIR, S_IFCHR, S_IFBLK, S_IFREG = 0o040000, 0o020000, 0o060000, 0o100000
S_IFLNK = 0o120000
S_ISUID, S_ISGID, S_ISVTX = 0o4000, 0o2000, 0o1000


def S_IMODE(mode: int) -> int:  # noqa: N802 (the stat module's names)
    return mode & 0o7777


def S_IFMT(mode: int) -> int:  # noqa: N802
    return mode & S_IFMT_BITS


def S_ISDIR(mode: int) -> bool:  # noqa: N802
    return mode & S_IFMT_BITS == S_IFDIR


def S_ISREG(mode: int) -> bool:  # noqa: N802
    return mode & S_IFMT_BITS == S_IFREG


def S_ISLNK(mode: int) -> bool:  # noqa: N802
    return mode & S_IFMT_BITS == S_IFLNK


def S_ISCHR(mode: int) -> bool:  # noqa: N802
    return mode & S_IFMT_BITS == S_IFCHR


def S_ISBLK(mode: int) -> bool:  # noqa: N802
    return mode & S_IFMT_BITS == S_IFBLK


def read_fd(fd: int) -> bytes:
    """All of an open file's bytes through posix (no io layer): its size in one read,
    then whatever a file that grew, or a kernel file that reports size 0, still has."""
    chunks = [posix.read(fd, posix.fstat(fd).st_size + 1)]
    while chunks[-1]:
        chunks.append(posix.read(fd, 1 << 16))
    return b"".join(chunks)


def isabs(path: str) -> bool:
    """posixpath.isabs."""
    return path.startswith(SEP)


def join(a: str, *p: str) -> str:
    """posixpath.join: an absolute part drops every part before it; an empty last part
    leaves the path ending with a separator."""
    path = a
    for b in p:
        if b.startswith(SEP):
            path = b
        elif not path or path.endswith(SEP):
            path += b
        else:
            path += SEP + b
    return path


def basename(path: str) -> str:
    """posixpath.basename: what follows the last '/' ('' for a trailing one)."""
    return path[path.rfind(SEP) + 1:]


def dirname(path: str) -> str:
    """posixpath.dirname: up to the last '/', trailing slashes stripped unless the head
    is only slashes."""
    head = path[:path.rfind(SEP) + 1]
    if head and head != SEP * len(head):
        head = head.rstrip(SEP)
    return head


def normpath(path: str) -> str:
    """posixpath.normpath (its pure-Python version; 3.11 runs the same algorithm in C):
    A//B, A/./B and A/foo/../B become A/B; one or two leading slashes are kept, three or
    more become one (POSIX); '' becomes '.'."""
    if path == "":
        return "."
    initial_slashes = 0
    if path.startswith(SEP):
        initial_slashes = 2 if path.startswith("//") and not path.startswith("///") else 1
    comps: list[str] = []
    for comp in path.split(SEP):
        if comp in ("", "."):
            continue
        if (comp != ".." or (not initial_slashes and not comps)
                or (comps and comps[-1] == "..")):
            comps.append(comp)
        elif comps:
            comps.pop()
    path = SEP * initial_slashes + SEP.join(comps)
    return path or "."


def abspath(path: str) -> str:
    """posixpath.abspath: joined to the working directory when relative, normalised."""
    if not isabs(path):
        path = join(posix.getcwd(), path)
    return normpath(path)


def isdir(path: str) -> bool:
    """genericpath.isdir: stat (following links) says a directory; False on any error."""
    try:
        st = posix.stat(path)
    except (OSError, ValueError):
        return False
    return S_ISDIR(st.st_mode)


def islink(path: str) -> bool:
    """posixpath.islink: lstat says a symbolic link; False on any error."""
    try:
        st = posix.lstat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return S_ISLNK(st.st_mode)


def lexists(path: str) -> bool:
    """posixpath.lexists: lstat succeeds (a dangling link exists)."""
    try:
        posix.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def environ() -> dict[str, str]:
    """The environment as os.environ shows it now: posix.environ (bytes to bytes; os's
    backing store) decoded with the file system encoding and surrogateescape, a byte
    that does not decode kept as a lone surrogate."""
    encoding = sys.getfilesystemencoding()
    return {name.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
            for name, value in posix.environ.items()}


def getenv(name: str) -> str | None:
    """os.environ.get(name): one variable, decoded as environ() does."""
    encoding = sys.getfilesystemencoding()
    value = posix.environ.get(name.encode(encoding, "surrogateescape"))
    return None if value is None else value.decode(encoding, "surrogateescape")
