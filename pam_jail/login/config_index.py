"""jails.ini's lookup index: what one login needs of jails.ini in a few reads, however
many users and groups the file maps (issue 21: parsing a 10,000-user jails.ini cost
every login 40 ms).

`install_config` (pam-jail validate and edit, jailuser: every writer that validates)
writes JAILS.ini.index next to the file, from the Config it has just validated. The
index names the file it was made from by its stat identity (device, inode, size,
mtime and ctime in ns): a file changed any other way (an editor, a template) no longer
matches, and the login parses jails.ini in full, as before, until the next validate.
So the index can make a login faster, never different: a missing, stale, unsafe or
malformed index gives None and the caller falls back to the full parse (with its
last-known-good and fail-closed rules).

The file (text, UTF-8, root-owned, not group/other-writable, checked like jails.ini):

    pam_jail-index 1
    source DEV INO SIZE MTIME_NS CTIME_NS
    default NAME            (escaped; empty: none)
    unmapped allow|deny
    buckets N
    N+1 lines of 12 hex digits: the byte offset where bucket i starts (the last: end)
    the buckets: lines KIND<TAB>NAME<TAB>VALUE, in bucket FNV-1a(KIND<TAB>NAME) mod N
      u NAME JAIL           [users]
      g NAME JAIL           [groups]
      j NAME ROOT<TAB>MODE<TAB>0|1<TAB>KEY=VALUE...   [jails] (allow_shell, options)
      s ALLOW MACHINE<TAB>PROFILE<TAB>HEX  a seccomp program, precomputed (ALLOW: the
                                         sorted seccomp_allow names, `,`-joined)

Fields are escaped (`%` -> %25, TAB -> %09, LF -> %0A). A lookup is two preads.

The `s` records: the seccomp filter of every jail (pam_jail/login/syscalls.py less its
`seccomp_allow`, on this machine; one record per distinct allow list) as
syscalls.program() built it when the index was written, so a login loads it instead of
building it (1.5-2 ms of a forked child's time).
PROFILE is the stat identity (device, inode, size, mtime in ns) of the syscalls.py the
program was built from: a reinstalled or changed profile no longer matches, and the
login builds the program as before (seccomp_program returns None). Never a different
filter: only one built by this very profile for these very options.
"""

from __future__ import annotations

import posix

from pam_jail.login import paths
from pam_jail.login.config import Config, JailDef, check_config_file, seccomp_of
from pam_jail.login.paths import S_ISREG

MAGIC = "pam_jail-index 1"
SUFFIX = ".index"
_ENTRY = 13               # "%012x\n"
_HEADER_MAX = 4096


def index_path(path: str) -> str:
    return path + SUFFIX


def _fnv(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _esc(text: str) -> str:
    return text.replace("%", "%25").replace("\t", "%09").replace("\n", "%0A")


def _unesc(text: str) -> str:
    return text.replace("%0A", "\n").replace("%09", "\t").replace("%25", "%")


def _identity(st: posix.stat_result) -> str:
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def build(cfg: Config, source: posix.stat_result) -> bytes:
    """The index of `cfg`, validated from the file whose stat is `source`."""
    records = [("u", name, _esc(jail)) for name, jail in cfg.users.items()]
    records += [("g", name, _esc(jail)) for name, jail in cfg.groups.items()]
    for name, jail in cfg.jails.items():
        fields = [_esc(jail.root), jail.mode, "1" if jail.allow_shell else "0"]
        fields += [f"{_esc(k)}={_esc(v)}" for k, v in jail.options.items()]
        records.append(("j", name, "\t".join(fields)))
    records += _seccomp_records(cfg)
    count = max(1, len(records) // 4)
    buckets: list[list[bytes]] = [[] for _ in range(count)]
    for kind, name, value in records:
        key = f"{kind}\t{_esc(name)}".encode()
        buckets[_fnv(key) % count].append(key + b"\t" + value.encode() + b"\n")
    header = (f"{MAGIC}\nsource {_identity(source)}\ndefault {_esc(cfg.default or '')}\n"
              f"unmapped {cfg.unmapped}\nbuckets {count}\n").encode()
    offset = len(header) + _ENTRY * (count + 1)
    table, body = [], []
    for bucket in buckets:
        table.append(b"%012x\n" % offset)
        chunk = b"".join(bucket)
        body.append(chunk)
        offset += len(chunk)
    table.append(b"%012x\n" % offset)
    return header + b"".join(table) + b"".join(body)


def profile_identity() -> str | None:
    """The stat identity of the seccomp profile (syscalls.py beside this module)."""
    try:
        st = posix.stat(paths.join(paths.dirname(paths.abspath(__file__)), "syscalls.py"))
    except OSError:
        return None
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns}"


def _allow_key(allow: tuple[str, ...]) -> str:
    return ",".join(sorted(set(allow))) or "-"


def _seccomp_records(cfg: Config) -> list[tuple[str, str, str]]:
    """An `s` record per distinct seccomp_allow of the jails with a filter that this
    machine's profile can build."""
    from pam_jail.login.syscalls import program

    profile = profile_identity()
    if profile is None:
        return []
    machine = posix.uname().machine
    out: dict[str, str] = {}
    for jail in cfg.jails.values():
        allow = seccomp_of(jail.options)
        if allow is None or _allow_key(allow) in out:
            continue
        try:
            prog = program(machine, allow)
        except ValueError:                 # no table for this machine: built (and refused)
            continue                       # at login as before
        out[_allow_key(allow)] = f"{_esc(machine)}\t{profile}\t{prog.hex()}"
    return [("s", key, value) for key, value in out.items()]


def seccomp_program(path: str, allow: tuple[str, ...]) -> bytes | None:
    """The precomputed filter for a jail's `seccomp_allow` names `allow` (as the login
    read them from this jails.ini), or None: no usable index for jails.ini `path`, no
    record for these names, another machine or another profile (the caller then builds
    it: syscalls.program). A login gets it from config_for (JailDef.program), in the
    same open of the index; this is for the tools and the tests."""
    opened = _open_matching(path)
    if opened is None:
        return None
    fd, head = opened
    try:
        return _program(_Reader(fd, *_layout(head)).get("s", _allow_key(allow)))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        posix.close(fd)


def _program(value: str | None) -> bytes | None:
    """An `s` record's program, when it was built on this machine by this very profile
    and looks like a filter; else None."""
    if value is None:
        return None
    machine, profile, hexed = (value.split("\t") + ["", "", ""])[:3]
    if _unesc(machine) != posix.uname().machine or profile != profile_identity():
        return None
    try:
        prog = bytes.fromhex(hexed)
    except ValueError:
        return None
    if not prog or len(prog) % 8 or len(prog) > 8 * 4096:
        return None
    return prog


def _open_matching(path: str) -> tuple[int, list[str]] | None:
    """An fd of `path`'s index and its header lines (read once) when jails.ini passes
    check_config_file and the index is root's, not writable by others, and names the
    file as it is now; else None."""
    if check_config_file(path):
        return None
    try:
        source = posix.stat(path)
        fd = posix.open(index_path(path), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        head = posix.pread(fd, _HEADER_MAX, 0).decode("utf-8", "replace").split("\n")
    except OSError:
        posix.close(fd)
        return None
    if (not S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022
            or len(head) < 6 or head[0] != MAGIC
            or head[1] != f"source {_identity(source)}"):
        posix.close(fd)
        return None
    return fd, head


def _layout(head: list[str]) -> tuple[int, int]:
    """(bucket count, offset of the bucket table) from an index's header lines."""
    count = int(head[4].removeprefix("buckets "))
    if count < 1:
        raise ValueError("bad bucket count")
    return count, sum(len(line.encode()) + 1 for line in head[:5])


def write_index(path: str, cfg: Config) -> None:
    """After `path` was installed from `cfg`: its index, by rename (root-owned 0644)."""
    from pam_jail.login.config_file import write_atomically

    write_atomically(index_path(path), build(cfg, posix.stat(path)))


def remove_stale(path: str) -> None:
    """Drop the index of `path` (a writer that cannot index it; readers fall back)."""
    try:
        posix.unlink(index_path(path))
    except FileNotFoundError:
        pass


class _Reader:
    __slots__ = ("fd", "count", "table")

    def __init__(self, fd: int, count: int, table: int) -> None:
        self.fd, self.count, self.table = fd, count, table

    def get(self, kind: str, name: str) -> str | None:
        key = f"{kind}\t{_esc(name)}\t"
        slot = _fnv(key[:-1].encode()) % self.count
        raw = posix.pread(self.fd, 2 * _ENTRY, self.table + slot * _ENTRY)
        start, end = int(raw[:12], 16), int(raw[_ENTRY:_ENTRY + 12], 16)
        if not 0 <= start <= end or end - start > 1 << 24:
            raise ValueError("bad bucket offsets")
        raw = posix.pread(self.fd, end - start, start)
        if len(raw) != end - start:             # a cut file: never a cut record
            raise ValueError("index shorter than its table")
        data = raw.decode()
        for line in data.split("\n"):
            if line.startswith(key):
                return line[len(key):]
        return None


def _jail(name: str, value: str) -> JailDef:
    root, mode, shell, *pairs = value.split("\t")
    options = {}
    for pair in pairs:
        key, _, val = pair.partition("=")
        options[_unesc(key)] = _unesc(val)
    return JailDef(name=name, root=_unesc(root), mode=mode, allow_shell=shell == "1",
                   options=options)


def config_for(path: str, user: str, groups: list[str] | tuple[str, ...]) -> Config | None:
    """The part of jails.ini `path` that decides for `user` with `groups` (its entry,
    its groups' entries, the jails they and the default name, [options]) as a Config
    that resolve() reads like the whole file; None when the index cannot be used (the
    caller then parses the file). jails.ini itself must pass check_config_file."""
    opened = _open_matching(path)
    if opened is None:
        return None
    fd, head = opened
    try:
        default = _unesc(head[2].removeprefix("default "))
        unmapped = head[3].removeprefix("unmapped ")
        if unmapped not in ("allow", "deny"):
            return None
        count, table = _layout(head)
        reader = _Reader(fd, count, table)
        users: dict[str, str] = {}
        jail = reader.get("u", user)
        if jail is not None:
            users[user] = _unesc(jail)
        mapped: dict[str, str] = {}
        for group in groups:
            if group and group not in mapped:
                jail = reader.get("g", group)
                if jail is not None:
                    mapped[group] = _unesc(jail)
        jails: dict[str, JailDef] = {}
        for name in {*users.values(), *mapped.values(), *([default] if default else [])}:
            value = reader.get("j", name)
            if value is None:
                return None                 # a mapping to no jail: not what validate wrote
            jails[name] = jail_def = _jail(name, value)
            allow = seccomp_of(jail_def.options)     # the filter, in the same open
            if allow is not None:
                jail_def.program = _program(reader.get("s", _allow_key(allow)))
        return Config(jails=jails, users=users, groups=mapped, default=default or None,
                      unmapped=unmapped, source=path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        posix.close(fd)
