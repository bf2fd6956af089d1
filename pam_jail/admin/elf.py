"""ELF dependency closure, computed in-process with pyelftools: no ldd, no running the binary.

`closure(paths)` answers "which host paths must exist inside a jail for these programs to
run": each program, its PT_INTERP (the dynamic loader), every DT_NEEDED library found the way
glibc's ld.so finds it, and every symlink met on the way (the link itself *and* any symlinked
parent directory such as Debian 12's `/lib -> usr/lib`), so the jail can recreate the chain.

Invariant of the result: for every returned path P, dirname(P) is a canonical directory (no
symlink in it), and P itself is a symlink, a regular file or a directory. A builder can
therefore create the parents of P as real directories and recreate P exactly as on the host.

Search order, as in glibc 2.36 (elf/dl-load.c, `_dl_map_object`):
  1. a name containing '/' is used as a path (after $ORIGIN/$LIB/$PLATFORM expansion);
  2. an object already loaded under that name or SONAME is reused;
  3. DT_RPATH of the requesting object and of its loaders up to the executable, skipped
     entirely when the requesting object has DT_RUNPATH (and per loader that has one);
  4. (LD_LIBRARY_PATH: never used here; a jail must not depend on the builder's environment)
  5. DT_RUNPATH of the requesting object;
  6. the ld.so.conf directories (what /etc/ld.so.cache is built from), then the default
     directories.
In every directory the glibc-hwcaps subdirectories (x86-64-v4/v3/v2) are looked at first;
a hit there is *added* and the search goes on, so the jail gets a superset that works on any
CPU level. Candidates whose ELF class, data encoding or machine differ are skipped.

Only the ELF header, the program headers, the dynamic table and the dynamic string table are
read; results are cached per file (keyed by device, inode, mtime and size, so
`/lib/x86_64-linux-gnu/libc.so.6` and `/usr/lib/x86_64-linux-gnu/libc.so.6` are parsed once).
Within one `closure()` run every path is stat'ed and every search answered once.
"""

from __future__ import annotations

import glob
import os
import stat
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.structs import ELFStructs

from pam_jail.login.errors import BuildError

ELF_MAGIC = b"\x7fELF"
LD_SO_CONF = "/etc/ld.so.conf"
DEFAULT_LIB_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
)
# $LIB and $PLATFORM as Debian's x86_64 ld.so expands them (checked with LD_DEBUG=libs).
DST_LIB = "lib/x86_64-linux-gnu"
DST_PLATFORM = os.uname().machine
HWCAPS_SUBDIRS = ("glibc-hwcaps/x86-64-v4", "glibc-hwcaps/x86-64-v3", "glibc-hwcaps/x86-64-v2")
MAX_SYMLINKS = 40


@dataclass(frozen=True)
class ElfInfo:
    """What the loader needs to know about one ELF object."""

    path: str
    elfclass: int  # 32 or 64
    little_endian: bool
    machine: str  # e.g. "EM_X86_64"
    interp: str | None  # PT_INTERP
    needed: tuple[str, ...]  # DT_NEEDED, in order
    rpath: tuple[str, ...]  # DT_RPATH entries, unexpanded
    runpath: tuple[str, ...]  # DT_RUNPATH entries, unexpanded
    soname: str | None

    def compatible(self, other: ElfInfo) -> bool:
        return (self.elfclass, self.little_endian, self.machine) == (
            other.elfclass, other.little_endian, other.machine)


# A file's identity for the caches: (st_dev, st_ino, st_mtime_ns, st_size).
_FileKey = tuple[int, int, int, int]
# path -> (identity, info or None when not ELF)
_elf_cache: dict[str, tuple[_FileKey, ElfInfo | None]] = {}
# identity -> info: one parse per file, whatever path (e.g. through /lib -> usr/lib) names it
_inode_cache: dict[_FileKey, ElfInfo | None] = {}
# path -> (symlinks met, canonical path, is a directory, symlinks followed)
_chain_cache: dict[str, tuple[tuple[str, ...], str, bool, int]] = {}
# ld.so.conf file -> directories
_conf_cache: dict[str, tuple[str, ...]] = {}
_isdir_cache: dict[str, bool] = {}
# library directory -> its glibc-hwcaps subdirectories that exist
_hwcaps_cache: dict[str, tuple[str, ...]] = {}
# d_tag values (elf.h)
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29
# pyelftools' struct definitions per ELF flavour: building them (what ELFFile() does for
# every file) cost ~2 ms a file, most of the time of a small profile's build.
_structs_cache: dict[tuple[object, ...], ELFStructs] = {}


def clear_caches() -> None:
    """Forget everything cached (tests; a long-running process after a package upgrade)."""
    _elf_cache.clear()
    _inode_cache.clear()
    _chain_cache.clear()
    _conf_cache.clear()
    _isdir_cache.clear()
    _hwcaps_cache.clear()
    _structs_cache.clear()


# --------------------------------------------------------------------------- paths

def path_chain(path: str) -> tuple[tuple[str, ...], str]:
    """Resolve `path` like the kernel does, component by component.

    Returns (symlinks, canonical): every symlink met, named by its own canonical location
    (so `/lib/x86_64-linux-gnu/libc.so.6` gives (`/lib`,) and
    `/usr/lib/x86_64-linux-gnu/libc.so.6`), and the final canonical path.
    Raises OSError (FileNotFoundError, NotADirectoryError, ELOOP) like open() would.
    """
    if not path.startswith("/"):
        raise BuildError(f"resolve {path}: not an absolute path")
    cached = _chain_cache.get(path)
    if cached is None:
        cached = _chain(path, 0)
    return cached[0], cached[1]


_Chain = tuple[tuple[str, ...], str, bool, int]


def _chain(path: str, depth: int) -> _Chain:
    """path_chain of an absolute path, plus whether it is a directory and how many
    symlinks were followed. Walks on from the longest prefix already resolved (every
    prefix is cached), so the libraries of one directory cost one lstat each, not one per
    component. `depth` counts the symlinks being followed on the way here: only symlink
    targets recurse, and a loop ends at MAX_SYMLINKS."""
    cached = _chain_cache.get(path)
    if cached is not None:
        return cached
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done = len(parts)
    state: _Chain | None = None
    while state is None and done > 0:
        done -= 1
        state = _chain_cache.get("/" + "/".join(parts[:done])) if done else None
    if state is None:
        state = ((), "/", True, 0)
    for index in range(done, len(parts)):
        state = _step(state, parts[index], depth, path)
        _chain_cache["/" + "/".join(parts[:index + 1])] = state
    _chain_cache[path] = state
    return state


def _step(state: _Chain, part: str, depth: int, path: str) -> _Chain:
    """Resolve one more component `part` below the resolved directory `state`."""
    links, parent, parent_is_dir, hops = state
    if not parent_is_dir:  # a component followed by another must be a directory
        raise NotADirectoryError(20, "Not a directory", parent)
    if part == "..":
        return links, os.path.dirname(parent), True, hops
    candidate = parent + "/" + part if parent != "/" else "/" + part
    st = os.lstat(candidate)
    if not stat.S_ISLNK(st.st_mode):
        return links, candidate, stat.S_ISDIR(st.st_mode), hops
    if depth >= MAX_SYMLINKS or hops >= MAX_SYMLINKS:
        raise OSError(40, "Too many levels of symbolic links", path)
    target = os.readlink(candidate)
    if not target.startswith("/"):
        target = parent + "/" + target
    t_links, canonical, is_dir, t_hops = _chain(target, depth + 1)
    hops += 1 + t_hops
    if hops > MAX_SYMLINKS:
        raise OSError(40, "Too many levels of symbolic links", path)
    return tuple(dict.fromkeys((*links, candidate, *t_links))), canonical, is_dir, hops


def _isdir(path: str) -> bool:
    cached = _isdir_cache.get(path)
    if cached is None:
        cached = _isdir_cache[path] = os.path.isdir(path)
    return cached


def _hwcaps(directory: str) -> tuple[str, ...]:
    """The glibc-hwcaps subdirectories of `directory` that exist, in search order."""
    cached = _hwcaps_cache.get(directory)
    if cached is None:
        cached = ()
        if _isdir(os.path.join(directory, "glibc-hwcaps")):
            cached = tuple(sub for sub in (os.path.join(directory, s) for s in HWCAPS_SUBDIRS)
                           if _isdir(sub))
        _hwcaps_cache[directory] = cached
    return cached


# --------------------------------------------------------------------------- ELF parsing

def read_elf(path: str) -> ElfInfo | None:
    """Parse the ELF header, program headers and dynamic table of `path`.

    Returns None when the file is not ELF. Raises OSError if it cannot be read and
    BuildError if it is a malformed ELF file.
    """
    return _read_elf(path)[1]


def _read_elf(path: str) -> tuple[_FileKey, ElfInfo | None]:
    """read_elf, also returning the file's identity (st_dev, st_ino, mtime, size)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _elf_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached
    if key in _inode_cache:  # the same file, parsed under another name
        info = _inode_cache[key]
        if info is not None:
            info = replace(info, path=path)
    else:
        info = None
        if stat.S_ISREG(st.st_mode) and st.st_size >= 16:
            with open(path, "rb") as stream:
                if stream.read(4) == ELF_MAGIC:
                    stream.seek(0)
                    try:
                        info = _parse(path, stream)
                    except (ELFError, ValueError, OSError, KeyError, AttributeError) as err:
                        raise BuildError(f"resolve {path}: malformed ELF file ({err})") \
                            from err
        _inode_cache[key] = info
    result = _elf_cache[path] = (key, info)
    return result


def _structs(little_endian: bool, elfclass: int, *advanced: object) -> ELFStructs:
    """pyelftools' ELFStructs for one flavour (basic only when `advanced` is empty)."""
    key = (little_endian, elfclass, *advanced)
    structs = _structs_cache.get(key)
    if structs is None:
        structs = ELFStructs(little_endian=little_endian, elfclass=elfclass)
        structs.create_basic_structs()
        if advanced:
            structs.create_advanced_structs(*advanced)
        _structs_cache[key] = structs
    return structs


# What the header pass gives the dynamic-table pass: ELF class, little-endian, e_machine
# name, PT_INTERP, the PT_LOAD (vaddr, filesz, offset) list, PT_DYNAMIC (offset, filesz).
_Headers = tuple[int, bool, str, str | None, list[tuple[int, int, int]], tuple[int, int] | None]
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PN_XNUM = 0xFFFF
# Elf{32,64}_Ehdr after e_ident, and the Elf{32,64}_Phdr fields used (elf.h).
_EHDR = {32: "HHIIIIIHHHHHH", 64: "HHIQQQIHHHHHH"}
_PHDR = {32: "IIIIIIII", 64: "IIQQQQQQ"}
_struct_cache: dict[tuple[bool, int, str], struct.Struct] = {}
_machine_names: dict[int, str] = {}


def _machine_name(number: int) -> str:
    """e_machine as pyelftools names it ("EM_X86_64"; an unknown number as digits)."""
    if not _machine_names:
        from elftools.elf.enums import ENUM_E_MACHINE

        # last name wins for a shared number, as in construct's Enum decoding
        _machine_names.update({v: k for k, v in ENUM_E_MACHINE.items()
                               if isinstance(v, int)})
    return _machine_names.get(number, str(number))


def _cstruct(little_endian: bool, elfclass: int, table: dict[int, str]) -> struct.Struct:
    key = (little_endian, elfclass, table[elfclass])
    packed = _struct_cache.get(key)
    if packed is None:
        packed = _struct_cache[key] = struct.Struct(
            ("<" if little_endian else ">") + table[elfclass])
    return packed


def _interp(stream: BinaryIO, offset: int, size: int) -> str:
    stream.seek(offset)
    return stream.read(size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _headers_fast(stream: BinaryIO) -> _Headers | None:
    """The ELF header and program headers read with `struct` (two reads, no construct
    parse): the fast path of `_parse`. Returns None for anything unusual (a short read,
    PN_XNUM, an unknown class or encoding, an odd e_phentsize), which then goes to
    pyelftools. tests/test_elf.py checks that both agree on every ELF file of the host."""
    stream.seek(0)
    head = stream.read(64)
    if len(head) < 16:
        return None
    elfclass = {1: 32, 2: 64}.get(head[4])
    little_endian = {1: True, 2: False}.get(head[5])
    if elfclass is None or little_endian is None:
        return None
    ehdr = _cstruct(little_endian, elfclass, _EHDR)
    if len(head) < 16 + ehdr.size:
        return None
    (_type, machine, _version, _entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = ehdr.unpack_from(head, 16)
    phdr = _cstruct(little_endian, elfclass, _PHDR)
    if phnum == PN_XNUM or (phnum and phentsize < phdr.size):
        return None
    stream.seek(phoff)
    table = stream.read(phnum * phentsize)
    if len(table) < phnum * phentsize:
        return None
    interp: str | None = None
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        fields = phdr.unpack_from(table, index * phentsize)
        if elfclass == 64:
            ptype, _pflags, offset, vaddr, _paddr, filesz = fields[:6]
        else:
            ptype, offset, vaddr, _paddr, filesz = fields[:5]
        if ptype == PT_LOAD:
            loads.append((vaddr, filesz, offset))
        elif ptype == PT_DYNAMIC:
            dynamic = (offset, filesz)
        elif ptype == PT_INTERP:
            interp = _interp(stream, offset, filesz)
    return elfclass, little_endian, _machine_name(machine), interp, loads, dynamic


def _headers_pyelftools(stream: BinaryIO) -> _Headers:
    """The ELF header and program headers with pyelftools' structs (the parser of record;
    as ELFFile does, without rebuilding the struct definitions and the section name table
    for every file)."""
    stream.seek(4)
    ident = stream.read(2)
    elfclass = {1: 32, 2: 64}.get(ident[0])
    little_endian = {1: True, 2: False}.get(ident[1])
    if elfclass is None or little_endian is None:
        raise ELFError(f"invalid EI_CLASS/EI_DATA {ident!r}")
    header = struct_parse(_structs(little_endian, elfclass).Elf_Ehdr, stream, stream_pos=0)
    machine = header["e_machine"]
    structs = _structs(little_endian, elfclass, header["e_type"], machine,
                       header["e_ident"]["EI_OSABI"])
    phnum = header["e_phnum"]
    if phnum == PN_XNUM:  # the real count is sh_info of section header 0
        phnum = struct_parse(structs.Elf_Shdr, stream,
                             stream_pos=header["e_shoff"])["sh_info"]
    interp: str | None = None
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dynamic: tuple[int, int] | None = None  # (offset, filesz)
    # Read the program headers directly: iter_segments() would build a DynamicSegment,
    # which walks every section header to find .dynstr.
    for index in range(phnum):
        hdr = struct_parse(structs.Elf_Phdr, stream,
                           stream_pos=header["e_phoff"] + index * header["e_phentsize"])
        ptype = hdr["p_type"]
        if ptype == "PT_LOAD":
            loads.append((hdr["p_vaddr"], hdr["p_filesz"], hdr["p_offset"]))
        elif ptype == "PT_DYNAMIC":
            dynamic = (hdr["p_offset"], hdr["p_filesz"])
        elif ptype == "PT_INTERP":
            interp = _interp(stream, hdr["p_offset"], hdr["p_filesz"])
    return elfclass, little_endian, str(machine), interp, loads, dynamic


def _parse(path: str, stream: BinaryIO, *, fast: bool = True) -> ElfInfo:
    """Read what the loader reads: headers (fast path, else pyelftools), then the
    dynamic table and its strings."""
    headers = _headers_fast(stream) if fast else None
    if headers is None:
        headers = _headers_pyelftools(stream)
    elfclass, little_endian, machine, interp, loads, dynamic = headers
    needed_off: list[int] = []
    rpath_off: list[int] = []
    runpath_off: list[int] = []
    soname_off: int | None = None
    strtab_vaddr: int | None = None
    if dynamic is not None and dynamic[1] > 0:
        # The dynamic table is an array of (d_tag, d_val) word pairs: one read and one
        # struct.iter_unpack, not a pyelftools parse per entry.
        entry = struct.Struct(("<" if little_endian else ">") +
                              ("qQ" if elfclass == 64 else "iI"))
        stream.seek(dynamic[0])
        raw = stream.read(dynamic[1])
        raw = raw[:len(raw) - len(raw) % entry.size]  # a truncated file: whole entries
        for tag, value in entry.iter_unpack(raw):
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                needed_off.append(value)
            elif tag == DT_RPATH:
                rpath_off.append(value)
            elif tag == DT_RUNPATH:
                runpath_off.append(value)
            elif tag == DT_SONAME:
                soname_off = value
            elif tag == DT_STRTAB:
                strtab_vaddr = value
    strtab: int | None = None
    if strtab_vaddr is not None:
        for vaddr, filesz, offset in loads:
            if vaddr <= strtab_vaddr < vaddr + filesz:
                strtab = offset + strtab_vaddr - vaddr
                break
    if strtab is None and (needed_off or rpath_off or runpath_off or soname_off is not None):
        raise ValueError("DT_STRTAB not mapped by any PT_LOAD segment")

    def string(offset: int) -> str:
        assert strtab is not None
        stream.seek(strtab + offset)
        chunks = []
        while True:
            chunk = stream.read(256)
            if not chunk:
                break
            end = chunk.find(b"\0")
            if end >= 0:
                chunks.append(chunk[:end])
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "surrogateescape")

    def paths(offsets: list[int]) -> tuple[str, ...]:
        return tuple(p for off in offsets for p in string(off).split(":"))

    return ElfInfo(
        path=path,
        elfclass=elfclass,
        little_endian=little_endian,
        machine=machine,
        interp=interp,
        needed=tuple(string(off) for off in needed_off),
        rpath=paths(rpath_off),
        runpath=paths(runpath_off),
        soname=string(soname_off) if soname_off is not None else None,
    )


# --------------------------------------------------------------------------- search path

def ld_so_conf_dirs(conf: str = LD_SO_CONF) -> tuple[str, ...]:
    """Directories listed in ld.so.conf, following `include` globs (relative to the file's
    directory), in file order, without duplicates. A missing file gives ()."""
    cached = _conf_cache.get(conf)
    if cached is None:
        found: list[str] = []
        _read_conf(conf, found, set())
        cached = _conf_cache[conf] = tuple(found)
    return cached


def _read_conf(conf: str, found: list[str], seen: set[tuple[int, int]]) -> None:
    try:
        with open(conf, encoding="utf-8", errors="surrogateescape") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) in seen:  # an include loop: each file once
                return
            seen.add((st.st_dev, st.st_ino))
            lines = fh.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as err:
        raise BuildError(f"read {conf}: {err.strerror}") from err
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include":
            for pattern in words[1:]:
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(conf), pattern)
                for sub in sorted(glob.glob(pattern)):
                    _read_conf(sub, found, seen)
            continue
        if words[0] == "hwcap":  # obsolete ldconfig directive
            continue
        for word in line.replace(",", " ").replace(":", " ").split():
            word = word.split("=", 1)[0]  # old "dir=TYPE" syntax
            if word.startswith("/"):
                word = os.path.normpath(word)
                if word not in found:
                    found.append(word)


def system_dirs(conf: str = LD_SO_CONF) -> tuple[str, ...]:
    """ld.so.conf directories, then the default directories."""
    dirs = list(ld_so_conf_dirs(conf))
    for d in DEFAULT_LIB_DIRS:
        if d not in dirs:
            dirs.append(d)
    return tuple(dirs)


def expand_dst(entry: str, origin: str) -> str:
    """Expand $ORIGIN, $LIB and $PLATFORM (also in ${...} form)."""
    for name, value in (("ORIGIN", origin), ("LIB", DST_LIB), ("PLATFORM", DST_PLATFORM)):
        entry = entry.replace("${" + name + "}", value).replace("$" + name, value)
    return entry


# --------------------------------------------------------------------------- closure

@dataclass
class _Loaded:
    path: str  # path the loader opened it by
    info: ElfInfo
    origin: str
    loader: _Loaded | None
    ident: tuple[int, int]  # (st_dev, st_ino): ld.so's "already loaded" test


# (ELF class, little-endian, machine): what a candidate library must match
_Flavour = tuple[int, bool, str]


class _Resolver:
    """One resolution run: shares search results between the programs given.

    Within a run the file system is taken as fixed: each path is stat'ed (and read) once
    and each search (name, directories, ELF flavour) is answered once, so the second
    program needing libc.so.6 costs a dictionary look-up, not a walk of the search path.
    """

    def __init__(self, conf: str = LD_SO_CONF) -> None:
        self.system = system_dirs(conf)
        self.result: set[str] = set()
        # path -> (identity, info), or the OSError reading it raised
        self.read_memo: dict[str, tuple[_FileKey, ElfInfo | None] | OSError] = {}
        self.search_memo: dict[tuple[str, tuple[str, ...], _Flavour], list[str]] = {}

    def add_chain(self, path: str, what: str) -> str:
        """Add the symlink chain and canonical path of `path`; return the canonical path."""
        try:
            links, canonical = path_chain(path)
        except OSError as err:
            raise BuildError(f"resolve {what}: {err.strerror or err}") from err
        self.result.update(links)
        self.result.add(canonical)
        return canonical

    def read(self, path: str) -> tuple[_FileKey, ElfInfo | None]:
        """_read_elf once per path and run (OSError re-raised on every call)."""
        memo = self.read_memo.get(path)
        if memo is None:
            try:
                memo = _read_elf(path)
            except OSError as err:
                memo = err
            self.read_memo[path] = memo
        if isinstance(memo, OSError):
            raise memo.with_traceback(None)
        return memo

    def program(self, path: str) -> None:
        """Add `path` and, when it is a dynamic ELF object, everything it loads."""
        canonical = self.add_chain(path, path)
        try:
            key, info = self.read(canonical)
        except OSError as err:
            raise BuildError(f"resolve {path}: {err.strerror or err}") from err
        if info is None:
            return
        if info.interp is not None:
            self.add_chain(info.interp, f"{path}: interpreter {info.interp}")
        # The kernel gives ld.so the real path of the executable: $ORIGIN is its directory.
        root = _Loaded(path, info, os.path.dirname(canonical), None, key[:2])
        self.load_namespace(root)

    def load_namespace(self, root: _Loaded) -> None:
        by_name: dict[str, _Loaded] = {}
        by_ident: dict[tuple[int, int], _Loaded] = {}
        self.remember(root, root.path, by_name, by_ident)
        queue: deque[_Loaded] = deque([root])
        while queue:  # breadth first, as ld.so maps DT_NEEDED
            obj = queue.popleft()
            for name in obj.info.needed:
                if name in by_name:
                    continue
                found = self.find(name, obj, root)
                for extra in found[1:]:  # glibc-hwcaps variants: keep, with their deps
                    self.program(extra)
                path = found[0]
                self.add_chain(path, f"{root.path}: {name}")
                # read by the found path: the search read it already (same file as the
                # canonical path), so no second stat
                key, info = self.read(path)
                ident = key[:2]
                if ident in by_ident:
                    by_name[name] = by_ident[ident]
                    continue
                if info is None:
                    raise BuildError(f"resolve {root.path}: {path} (needed as {name}) "
                                     "is not an ELF object")
                if info.interp is not None:
                    self.add_chain(info.interp, f"{path}: interpreter {info.interp}")
                child = _Loaded(path, info, os.path.dirname(path), obj, ident)
                self.remember(child, name, by_name, by_ident)
                queue.append(child)

    @staticmethod
    def remember(obj: _Loaded, name: str, by_name: dict[str, _Loaded],
                 by_ident: dict[tuple[int, int], _Loaded]) -> None:
        by_name[name] = obj
        if obj.info.soname:
            by_name.setdefault(obj.info.soname, obj)
        by_ident[obj.ident] = obj

    def find(self, name: str, obj: _Loaded, root: _Loaded) -> list[str]:
        """Paths for DT_NEEDED `name` of `obj`: the one ld.so uses first, then hwcaps extras."""
        want = obj.info
        if "/" in name:
            path = expand_dst(name, obj.origin)
            if not path.startswith("/"):
                raise BuildError(f"resolve {root.path}: {name} (needed by {obj.path}) "
                                 "is a relative path")
            if self.candidate(path, want):
                return [path]
            raise BuildError(f"resolve {root.path}: {name} (needed by {obj.path}) not found")
        dirs: list[str] = []
        if not obj.info.runpath:
            loader: _Loaded | None = obj
            while loader is not None:
                if not loader.info.runpath:
                    dirs.extend(expand_dst(d, loader.origin) for d in loader.info.rpath)
                loader = loader.loader
        dirs.extend(expand_dst(d, obj.origin) for d in obj.info.runpath)
        dirs.extend(self.system)
        # The answer depends only on the name, the directories and the ELF flavour.
        memo_key = (name, tuple(dirs), (want.elfclass, want.little_endian, want.machine))
        found = self.search_memo.get(memo_key)
        if found is not None:
            return found
        extras: list[str] = []
        for directory in dirs:
            if not directory:  # an empty RPATH element means the current directory
                continue
            if not _isdir(directory):
                continue
            for subdir in _hwcaps(directory):
                if self.candidate(os.path.join(subdir, name), want):
                    extras.append(os.path.join(subdir, name))
            path = os.path.join(directory, name)
            if self.candidate(path, want):
                found = self.search_memo[memo_key] = [path, *extras]
                return found
        searched = ":".join(dict.fromkeys(d for d in dirs if d))
        raise BuildError(f"resolve {root.path}: {name} (needed by {obj.path}) not found "
                         f"in {searched}")

    def candidate(self, path: str, want: ElfInfo) -> bool:
        try:
            info = self.read(path)[1]
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
            return False
        return info is not None and info.compatible(want)


def _candidate(path: str, want: ElfInfo) -> bool:
    """Whether `path` is an ELF object ld.so would accept for a `want` requester."""
    try:
        info = read_elf(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return False
    return info is not None and info.compatible(want)


def closure(paths: Iterable[str]) -> list[str]:
    """Sorted absolute host paths (files, directories named directly, and every symlink on
    the way, parent-directory symlinks included) needed to run or load `paths`.

    Non-ELF files (scripts, data) are returned with their symlink chain only.
    Raises BuildError("resolve <path>: <reason>") for a missing file or an unresolvable
    DT_NEEDED.
    """
    resolver = _Resolver()
    for path in paths:
        if not path.startswith("/"):
            raise BuildError(f"resolve {path}: not an absolute path")
        resolver.program(path)
    return sorted(resolver.result)


def find_library(name: str, like: str = "/bin/sh") -> str | None:
    """Where the system search path (ld.so.conf, default dirs) has library `name` of the
    same ELF class and machine as `like`; None when absent."""
    want = read_elf(path_chain(like)[1])
    if want is None:
        raise BuildError(f"resolve {like}: not an ELF object")
    for directory in system_dirs():
        path = os.path.join(directory, name)
        if _candidate(path, want):
            return path
    return None


def runtime_libs(nss: Sequence[str] = ("files", "compat"), *, gconv: bool = False,
                 like: str = "/bin/sh") -> list[str]:
    """Libraries loaded at run time, which DT_NEEDED does not show, with their closure:
    libnss_<name>.so.2 for each name in `nss` (user/group name lookups) and, if `gconv`,
    the whole gconv directory (iconv charset modules and their gconv-modules config).
    A missing NSS module raises BuildError."""
    libs: list[str] = []
    for service in nss:
        name = f"libnss_{service}.so.2"
        found = find_library(name, like)
        if found is None:
            raise BuildError(f"resolve {name}: not found in {':'.join(system_dirs())}")
        libs.append(found)
    extra: list[str] = []
    if gconv:
        for directory in system_dirs():
            gdir = os.path.join(directory, "gconv")
            if os.path.isfile(os.path.join(gdir, "gconv-modules")):
                for dirpath, dirnames, filenames in os.walk(gdir):
                    dirnames.sort()
                    extra.extend(os.path.join(dirpath, f) for f in sorted(filenames))
                break
        else:
            raise BuildError("resolve gconv: no gconv/gconv-modules in the library path")
    return closure([*libs, *extra])
