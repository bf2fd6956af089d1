"""The rule families' byte-code, read before pam-jail-shell's pivot and executed after it
only for the family the command needs.

pam-jail-shell decides inside a jail that holds no pam_jail: after the pivot no module
file can be read any more. Importing every family before the pivot costs each login
about 0.9 ms (ten modules, nine never used); reading their cached byte-code costs a tenth
of that. `hold()` reads it, checked as Python's own loader checks a .pyc against its
source (magic number, source mtime and size), and puts a finder first on sys.meta_path
that serves those modules from memory: the import statement in policy.decide works as
anywhere else. A family without a current .pyc (a source tree, a stale cache) is
imported at once instead, so nothing is missing after the pivot either way. With the
login bundle (pam_jail.login.preload) every family is in memory already: nothing to read.
"""

from __future__ import annotations

import sys

from pam_jail.login import MemoryFinder

_EXTERNAL = sys.modules["_frozen_importlib_external"]   # importlib's own (no file read)


def _current_bytecode(source: str) -> bytes | None:
    """The code of `source`'s cached .pyc when it is current (what SourceFileLoader
    would run: timestamp-checked, same magic number, source mtime and size), else None."""
    import posix

    directory, _, name = source.rpartition("/")
    cached = f"{directory}/__pycache__/{name[:-3]}.{sys.implementation.cache_tag}.pyc"
    try:
        st = posix.stat(source)
        fd = posix.open(cached, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:   # one read of its size (importlib replaces a .pyc whole, never rewrites it)
        size = posix.fstat(fd).st_size
        data = posix.read(fd, size)
    except OSError:
        return None
    finally:
        posix.close(fd)
    if len(data) != size:
        return None
    if len(data) < 16 or data[:4] != _EXTERNAL.MAGIC_NUMBER \
            or int.from_bytes(data[4:8], "little") != 0 \
            or int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF \
            or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF:
        return None
    return data[16:]


def hold(package: str, names: set[str]) -> None:
    """Before a pivot: every module `package`.NAME of `names` not loaded yet is either
    held (its current byte-code in memory, served by pam_jail.login.MemoryFinder) or
    imported now."""
    directory = sys.modules[package].__path__[0]
    for name in sorted(names):
        full = f"{package}.{name}"
        if full in sys.modules or full in MemoryFinder.code:
            continue
        source = f"{directory}/{name}.py"
        code = _current_bytecode(source)
        if code is None:
            __import__(full)
        else:
            MemoryFinder.code[full] = (source, code)
    if MemoryFinder.code:
        MemoryFinder.serve()
