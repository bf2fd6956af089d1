"""The jail builder: `pam-jail init` (profiles) and `pam-jail cp` (files with their ELF deps).

What the builder guarantees (docs/builder.md says the same for administrators):
  - the jail path is refused unless every component from / down is a real directory, owned
    by root and not group/other-writable (the rule sshd's ChrootDirectory applies);
  - every directory it creates is root:root 0755, except user homes (user, 0750) and tmp
    (1777); every file it writes is root-owned, never group/other-writable, and never
    setuid/setgid; device nodes exist only when a profile names them;
  - symlinks are recreated as symlinks with the host's target; a relative target that would
    climb above the jail root is refused; nothing is ever written *through* a symlink or
    into a path component that is not a real directory;
  - files are written to a temporary name in the target directory and renamed into place,
    so a reader never sees a half-written file;
  - a NEW jail is built in JAIL.tmp-XXXXXX next to it and renamed to JAIL only when
    complete: a failure removes the temporary tree and leaves nothing behind;
  - re-running updates an existing jail in place: files whose size, mtime and content
    already match are left alone (mode and owner are still corrected).
Nothing goes through a shell and no host program is run: ELF dependencies come from
pam_jail.admin.elf.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import grp
import json
import os
import pwd
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pam_jail.admin import elf
from pam_jail.login.errors import BuildError, PamJailError, UnsafeJail, UsageError
from pam_jail.login.safety import STICKY_DIRS, resolve_in_jail

DEFAULT_PROFILES_FILE = "/etc/pam_jail/profiles.ini"
EXEC_PATH = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
# The only device nodes a profile may ask for, with their standard Linux numbers.
DEVICES = {
    "/dev/null": (1, 3),
    "/dev/zero": (1, 5),
    "/dev/random": (1, 8),
    "/dev/urandom": (1, 9),
    "/dev/tty": (5, 0),
}
LD_SO_CACHE = "/etc/ld.so.cache"
PROFILE_KEYS = frozenset({
    "comment", "executables", "paths", "optional", "libraries", "exclude", "devices",
    "emptydirs", "stickydirs", "symlinks", "users", "groups", "includesections",
})
COPY_CHUNK = 1 << 20
TMP_PREFIX = ".pam_jail-tmp-"
# The jail's record of the paths pam_jail placed (one per line): `update` touches nothing
# else (a jailkit jail's jk_lsh.ini, an admin's own file at a host path stay as they are).
MANIFEST = "/.pam_jail-placed"


LOCK_FILE = "/run/pam_jail.lock"


@contextlib.contextmanager
def admin_lock(path: str = LOCK_FILE) -> Iterator[None]:
    """One pam-jail command that changes jails, users or jails.ini at a time (init, cp,
    update, jailuser): an exclusive flock on LOCK_FILE, waited for."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_manifest(root: str) -> set[str] | None:
    """The paths pam_jail placed in the jail at `root`; None when it keeps no record."""
    try:
        with open(root + MANIFEST, "rb", opener=_nofollow_opener) as fh:
            return {line for line in fh.read().decode("utf-8", "replace").splitlines()
                    if line.startswith("/")}
    except FileNotFoundError:
        return None


class _Progress:
    """`JAIL: 1200/53000 entries` on stderr, redrawn at most 4 times a second, when stderr
    is a terminal and the work is long; nothing when piped or logged."""

    def __init__(self, root: str, total: int) -> None:
        self.root, self.total, self.count = root, total, 0
        self.shown = False
        self.next = time.monotonic() + 0.5
        self.on = total >= 200 and sys.stderr.isatty()

    def step(self) -> None:
        self.count += 1
        if self.on and time.monotonic() >= self.next:
            self.next = time.monotonic() + 0.25
            sys.stderr.write(f"\r{self.root}: {self.count}/{self.total} entries")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write(f"\r{self.root}: {self.total}/{self.total} entries\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- results

@dataclass
class BuildReport:
    """What a build did (or, with dry_run, would do)."""

    files: int = 0  # regular files written (new or changed)
    bytes: int = 0  # bytes written
    dirs: int = 0  # directories created
    warnings: list[str] = field(default_factory=list)
    symlinks: int = 0  # symlinks created or replaced
    devices: int = 0  # device nodes created or replaced
    unchanged: int = 0  # files and symlinks already up to date
    removed: int = 0  # entries removed (update --prune)
    linked: int = 0  # hard links made to files of the shared base (--shared)
    footprint_files: int = 0  # regular files the profiles need (written or not), init only
    footprint_bytes: int = 0  # their size
    shared: str = ""  # the shared base tree, if any
    seconds: float = 0.0
    root: str = ""
    dry_run: bool = False
    changed_paths: list[str] = field(default_factory=list)  # written (or would be)
    removed_paths: list[str] = field(default_factory=list)  # removed (update --prune)

    @property
    def changed(self) -> bool:
        """Something was (with dry_run: would be) written, made or removed."""
        return bool(self.files or self.dirs or self.symlinks or self.devices
                    or self.removed or self.linked)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}

    def summary(self, action: str) -> str:
        if not self.changed:
            return (f"{action} {self.root}: no change ({self.unchanged} entries up to date)"
                    f" in {self.seconds:.2f} s")
        text = (f"{action} {self.root}: {self.files} files ({_human(self.bytes)}), "
                f"{self.symlinks} symlinks, {self.dirs} dirs, {self.unchanged} unchanged")
        if self.devices:
            text += f", {self.devices} devices"
        if self.shared:
            text += f", {self.linked} hard links into {self.shared}"
        if self.removed:
            text += f", {self.removed} removed"
        if self.footprint_files:
            text += (f" (the profiles need {self.footprint_files} files, "
                     f"{_human(self.footprint_bytes)})")
        text += f" in {self.seconds:.2f} s"
        return text + (" (dry run: nothing written)" if self.dry_run else "")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- profiles

@dataclass
class Profile:
    name: str
    comment: str = ""
    executables: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    emptydirs: list[str] = field(default_factory=list)
    stickydirs: list[str] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    includesections: list[str] = field(default_factory=list)


def _words(value: object) -> list[str]:
    """A configobj value as a list: commas (configobj) and whitespace both separate."""
    items = value if isinstance(value, list) else [value]
    return [word for item in items for word in str(item).replace(",", " ").split()]


def load_profiles(path: str = DEFAULT_PROFILES_FILE) -> dict[str, Profile]:
    """Parse profiles.ini. Raises BuildError naming the file and the problem."""
    import configobj  # only the builder needs it; keep `import pam_jail.admin.build` cheap

    from pam_jail import install_dirs

    libdir, sbindir = install_dirs()
    try:
        with open(path, encoding="utf-8") as fh:   # @LIBDIR@/@SBINDIR@: this install's
            text = fh.read().replace("@LIBDIR@", libdir).replace("@SBINDIR@", sbindir)
        conf = configobj.ConfigObj(text.splitlines(), list_values=True,
                                   interpolation=False, encoding="utf-8")
    except OSError as err:
        raise BuildError(f"read {path}: {err.strerror or err}") from err
    except configobj.ConfigObjError as err:
        raise BuildError(f"parse {path}: {err}") from err
    profiles: dict[str, Profile] = {}
    for name in conf.sections:
        section = conf[name]
        if section.sections:
            raise BuildError(f"parse {path}: [{name}] has subsections")
        unknown = sorted(set(section.scalars) - PROFILE_KEYS)
        if unknown:
            raise BuildError(f"parse {path}: [{name}] unknown key(s) {', '.join(unknown)}",
                             hint=f"known keys: {', '.join(sorted(PROFILE_KEYS))}")
        comment = section.get("comment", "")
        profile = Profile(name=name, comment=", ".join(comment) if isinstance(comment, list)
                          else str(comment))
        for key in ("executables", "paths", "optional", "libraries", "exclude", "devices",
                    "emptydirs", "stickydirs", "users", "groups", "includesections"):
            setattr(profile, key, _words(section.get(key, [])))
        words = _words(section.get("symlinks", []))
        if len(words) % 3 or any(words[i + 1] != "->" for i in range(0, len(words), 3)):
            raise BuildError(f"parse {path}: [{name}] symlinks: expected LINK -> TARGET, ...")
        profile.symlinks = [(words[i], words[i + 2]) for i in range(0, len(words), 3)]
        for key in ("executables", "paths", "optional", "emptydirs"):
            for item in getattr(profile, key):
                _check_name(item, f"parse {path}: [{name}] {key}")
        for link, target in profile.symlinks:
            _check_name(link, f"parse {path}: [{name}] symlinks")
            _check_name(target, f"parse {path}: [{name}] symlinks")
            if not link.startswith("/"):
                raise BuildError(f"parse {path}: [{name}] symlinks: {link} is not absolute")
        for item in profile.stickydirs:    # world-writable: only where check allows it
            if item not in STICKY_DIRS or item == "/dev/shm":
                raise BuildError(f"parse {path}: [{name}] stickydirs: {item} is not one of "
                                 f"{', '.join(d for d in STICKY_DIRS if d != '/dev/shm')}")
        for dev in profile.devices:
            if dev not in DEVICES:
                raise BuildError(f"parse {path}: [{name}] devices: {dev} is not one of "
                                 f"{', '.join(DEVICES)}")
        for item in (*profile.paths, *profile.optional, *profile.emptydirs):
            if not item.startswith("/"):
                raise BuildError(f"parse {path}: [{name}]: {item} is not an absolute path")
        profiles[name] = profile
    return profiles


def expand_profiles(profiles: Mapping[str, Profile], names: Sequence[str]) -> list[Profile]:
    """The named profiles and everything they include, each once, includes first."""
    order: list[Profile] = []
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise BuildError(f"profile {name}: includesections loop "
                             f"({' -> '.join((*stack, name))})")
        profile = profiles.get(name)
        if profile is None:
            where = f" (included by {stack[-1]})" if stack else ""
            raise BuildError(f"profile {name}: unknown profile{where}",
                             hint=f"known profiles: {', '.join(sorted(profiles))}")
        for sub in profile.includesections:
            visit(sub, (*stack, name))
        done.add(name)
        order.append(profile)

    for name in names:
        visit(name, ())
    return order


# --------------------------------------------------------------------------- checks

_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f]")


def _check_name(path: str, what: str) -> None:
    if _CONTROL_CHAR.search(path):
        raise BuildError(f"{what}: {path!r}: control character in file name")


def check_path_chain(path: str) -> list[str]:
    """The one path-safety rule (pam_jail.login.safety): problems with `path` and every directory
    above it; [] when safe."""
    from pam_jail.login.safety import check_path_chain as check

    return check(path)


def _normalize_root(root: str) -> str:
    _check_name(root, "jail")
    if not root.startswith("/"):
        raise UsageError(f"jail {root}: not an absolute path")
    if any(part in (".", "..") for part in root.split("/")):
        raise UsageError(f"jail {root}: '.' and '..' are not allowed in the jail path")
    root = root.rstrip("/")
    if not root:
        raise UsageError("jail /: refusing to build into the host's root")
    return root


def _check_root(root: str, *, must_exist: bool) -> bool:
    """Refuse an unsafe jail path; return whether the jail already exists."""
    exists = os.path.lexists(root)
    if must_exist and not exists:
        raise BuildError(f"build {root}: no such jail", hint="create it with `pam-jail init`")
    checked = root if exists else os.path.dirname(root)
    while checked != "/" and not os.path.lexists(checked):   # made by _make_parents
        checked = os.path.dirname(checked)
    problems = check_path_chain(checked)
    if problems:
        raise UnsafeJail(f"build {root}: unsafe jail path", problems=problems,
                         hint="every directory from / to the jail must be a real directory, "
                              "owned by root and not group/other-writable")
    return exists


def _link_stays_inside(link: str, target: str) -> bool:
    """The symlink `link` -> `target` stays inside the jail: safety's one rule (what
    `pam-jail check` judges), so the builder never makes a link the checker fails."""
    from pam_jail.login.safety import link_leaves_root

    return not link_leaves_root(link, target)


# --------------------------------------------------------------------------- planning

@dataclass
class Plan:
    """Host paths to mirror into the jail, keyed by path: 'file', 'link' or 'dir'."""

    entries: dict[str, str] = field(default_factory=dict)
    devices: dict[str, tuple[int, int]] = field(default_factory=dict)
    emptydirs: list[str] = field(default_factory=list)
    stickydirs: list[str] = field(default_factory=list)
    symlinks: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Planner:
    def __init__(self) -> None:
        self.plan = Plan()
        self.elf_inputs: list[str] = []

    def add_executable(self, name: str, what: str) -> None:
        if "/" in name:
            hits = [name] if os.path.exists(name) else []
        else:
            hits = [os.path.join(d, name) for d in EXEC_PATH
                    if os.path.exists(os.path.join(d, name))]
        if not hits:
            where = "" if "/" in name else f" in {':'.join(EXEC_PATH)}"
            raise BuildError(f"{what}: executable {name}: not found{where}",
                             hint="install the package that provides it, or drop it from the "
                                  "profile")
        for hit in hits:
            st = os.stat(hit)
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
                raise BuildError(f"{what}: {hit}: not an executable file")
            self.elf_inputs.append(hit)

    def add_path(self, path: str, what: str, exclude: Sequence[str], optional: bool) -> None:
        _check_name(path, what)
        if not os.path.lexists(path):
            if optional:
                self.plan.warnings.append(f"{what}: optional {path} absent on this host, "
                                          "skipped")
                return
            raise BuildError(f"{what}: {path}: No such file or directory",
                             hint="install the package that provides it, or list it under "
                                  "`optional`")
        try:
            links, canonical = elf.path_chain(path)
        except OSError as err:
            raise BuildError(f"{what}: {path}: {err.strerror or err}") from err
        for link in links:
            self.plan.entries[link] = "link"
        st = os.stat(canonical)
        if stat.S_ISDIR(st.st_mode):
            self.walk(canonical, what, exclude)
        elif stat.S_ISREG(st.st_mode):
            self.elf_inputs.append(canonical)
        else:
            raise BuildError(f"{what}: {path}: not a regular file or directory "
                             "(device nodes come from the `devices` key)")

    def walk(self, top: str, what: str, exclude: Sequence[str]) -> None:
        def excluded(path: str) -> bool:
            return any(fnmatch.fnmatchcase(path, pattern) for pattern in exclude)

        self.plan.entries[top] = "dir"
        for dirpath, dirnames, filenames in os.walk(top, onerror=_raise_walk_error):
            kept = []
            for name in sorted(dirnames):
                path = os.path.join(dirpath, name)
                if excluded(path):
                    continue
                _check_name(path, what)
                if os.path.islink(path):  # os.walk lists links to dirs as dirs
                    self.add_link(path, what)
                else:
                    self.plan.entries[path] = "dir"
                    kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if excluded(path):
                    continue
                _check_name(path, what)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    self.add_link(path, what)
                elif stat.S_ISREG(st.st_mode):
                    self.elf_inputs.append(path)
                else:
                    self.plan.warnings.append(f"{what}: {path}: not a regular file, skipped")

    def add_link(self, path: str, what: str) -> None:
        self.plan.entries[path] = "link"
        try:
            links, canonical = elf.path_chain(path)
        except OSError:
            self.plan.warnings.append(f"{what}: {path}: dangling symlink copied as is")
            return
        if os.path.isdir(canonical):
            for link in links:
                self.plan.entries[link] = "link"
            self.plan.entries.setdefault(canonical, "dir")
        else:
            self.elf_inputs.append(path)

    def add_library(self, name: str, what: str) -> None:
        found = elf.find_library(name)
        if found is None:
            raise BuildError(f"{what}: library {name}: not found in "
                             f"{':'.join(elf.system_dirs())}")
        self.elf_inputs.append(found)

    def finish(self) -> Plan:
        """Resolve ELF dependencies and classify every path."""
        for path in elf.closure(dict.fromkeys(self.elf_inputs)):
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                kind = "link"
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                raise BuildError(f"copy {path}: not a regular file, directory or symlink")
            _check_name(path, "copy")
            self.plan.entries[path] = kind
        # Libraries found through ld.so.conf-only directories need the jail's ld.so to have
        # the cache; the default directories are searched without it.
        default = {_canonical(d) for d in elf.DEFAULT_LIB_DIRS}
        conf_only = {_canonical(d) for d in elf.ld_so_conf_dirs()} - default
        if os.path.isfile(LD_SO_CACHE) and any(
                os.path.dirname(p) in conf_only for p in self.plan.entries):
            for link in elf.path_chain(LD_SO_CACHE)[0]:
                self.plan.entries[link] = "link"
            self.plan.entries[os.path.realpath(LD_SO_CACHE)] = "file"
        for path, kind in self.plan.entries.items():
            if kind == "link" and not _link_stays_inside(path, os.readlink(path)):
                raise BuildError(f"copy {path}: symlink target {os.readlink(path)} leaves the "
                                 "jail")
        return self.plan


def _canonical(directory: str) -> str:
    """The canonical path of a library directory, through elf.path_chain's cache (the
    closure has just resolved these directories); an absent one as written: no planned
    path can lie in it."""
    try:
        return elf.path_chain(directory)[1]
    except OSError:
        return directory


def _raise_walk_error(err: OSError) -> None:
    raise BuildError(f"copy {err.filename}: {err.strerror}") from err


def _runtime() -> tuple[str, list[str]]:
    """(this install's package directory, the two entries with their scripts)."""
    from pam_jail import install_dirs

    libdir, sbindir = install_dirs()
    return f"{libdir}/pam_jail", [f"{sbindir}/pam-jail-shell", f"{sbindir}/pam-jail-lsh",
                                  f"{libdir}/pam-jail-shell.py", f"{libdir}/pam-jail-lsh.py"]


def runtime_paths() -> tuple[list[str], list[str]]:
    """The limited shell's runtime as this very install has it: (paths, optional paths).
    The whole pam_jail/login directory (what a login runs, pam_jail/login/__init__.py),
    the package's __init__ with its byte-code, and the two entries with their scripts."""
    import importlib.util

    package, entries = _runtime()
    return ([f"{package}/__init__.py", f"{package}/login", *entries],
            [importlib.util.cache_from_source(f"{package}/__init__.py")])


def is_runtime_path(path: str) -> bool:
    """A path of pam_jail's own runtime (the package's files and its two entries): the
    package's business, never a profile's list. A profiles.ini kept from an older version
    names that version's modules; whoever names any of them gets today's runtime whole
    (runtime_paths), and update adds what an upgrade brought."""
    package, entries = _runtime()
    return path == package or path.startswith(f"{package}/") or path in entries


def _add_runtime(planner: _Planner, what: str) -> None:
    paths, optional = runtime_paths()
    for path in paths:
        planner.add_path(path, what, (), optional=False)
    for path in optional:
        planner.add_path(path, what, (), optional=True)


def plan_profiles(profiles: Sequence[Profile]) -> Plan:
    planner = _Planner()
    runtime = ""
    for profile in profiles:
        what = f"profile {profile.name}"
        for name in profile.executables:
            planner.add_executable(name, what)
        for path in profile.paths:
            if is_runtime_path(path):
                runtime = runtime or what
                continue
            planner.add_path(path, what, profile.exclude, optional=False)
        for path in profile.optional:
            if is_runtime_path(path):
                runtime = runtime or what
                continue
            planner.add_path(path, what, profile.exclude, optional=True)
        for lib in profile.libraries:
            planner.add_library(lib, what)
        for dev in profile.devices:
            planner.plan.devices[dev] = DEVICES[dev]
        planner.plan.emptydirs.extend(profile.emptydirs)
        planner.plan.stickydirs.extend(profile.stickydirs)
        for link, target in profile.symlinks:
            if not _link_stays_inside(link, target):
                raise BuildError(f"{what}: symlink {link} -> {target} leaves the jail")
            planner.plan.symlinks[link] = target
        planner.plan.users.extend(u for u in profile.users if u not in planner.plan.users)
        planner.plan.groups.extend(g for g in profile.groups if g not in planner.plan.groups)
    if runtime:
        _add_runtime(planner, what=runtime)
    return planner.finish()


def plan_files(files: Sequence[str]) -> Plan:
    planner = _Planner()
    for path in files:
        if not path.startswith("/"):
            raise UsageError(f"copy {path}: not an absolute path")
        planner.add_path(path, "copy", (), optional=False)
    return planner.finish()


# --------------------------------------------------------------------------- writing

class _Writer:
    """Mirrors host paths under `root`. With dry_run, checks and counts but never writes.

    With `shared` (the writer of a shared base tree), a regular file is first brought up
    to date in the base, then hard-linked into the jail (by rename of a new link: a jail
    never sees a half-made entry, and a file is never rewritten in place, so the other
    jails linking the old inode keep a whole old file until their own update).

    With `fresh` (a new jail's JAIL.tmp-XXXXXX tree, made by this build and renamed into
    place only when complete), directories, files and symlinks are created directly at
    their names (mkdir, O_CREAT|O_EXCL|O_NOFOLLOW, symlink: none of them follows or
    replaces an existing entry) instead of under a temporary name renamed into place: the
    rename of the whole tree is what makes a new jail appear complete. An entry that
    already exists there falls back to the general path (checked, replaced by rename).
    Device nodes always take the general path."""

    def __init__(self, root: str, report: BuildReport, dry_run: bool,
                 shared: _Writer | None = None, *, fresh: bool = False) -> None:
        self.root = root
        self.report = report
        self.dry_run = dry_run
        self.dirs_ok: set[str] = {"/"}
        self.shared = shared
        self.links_expected = False  # True for a shared base: its files have many links
        self.unshared = 0  # hard-linked jail files replaced by copies (no `shared`)
        self.fresh = fresh and not dry_run

    def jail(self, path: str) -> str:
        return self.root + path

    def ensure_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
                   *, foreign_ok: bool = False) -> None:
        """Make `path` (a path inside the jail) and its parents real directories. An existing
        one must be root-owned and not group/other-writable (someone else could swap it for
        a symlink while we write into it), unless `foreign_ok` (a home, tmp: never written)."""
        if path in self.dirs_ok:
            return
        parent = os.path.dirname(path)
        self.ensure_dir(parent)
        target = self.jail(path)
        if self.fresh:
            try:
                os.mkdir(target, 0o700)
            except FileExistsError:
                pass  # checked below
            else:
                os.chown(target, uid, gid, follow_symlinks=False)
                os.chmod(target, mode)
                self.report.dirs += 1
                self.dirs_ok.add(path)
                return
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            if not self.dry_run:
                os.mkdir(target, 0o700)
                os.chown(target, uid, gid, follow_symlinks=False)
                os.chmod(target, mode)
            self.report.dirs += 1
        else:
            if stat.S_ISLNK(st.st_mode):
                raise BuildError(f"build {target}: is a symlink in the jail, refusing to write "
                                 "through it")
            if not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"build {target}: exists and is not a directory")
            if not foreign_ok and (st.st_uid != 0 or st.st_mode & 0o022):
                raise BuildError(f"build {target}: not root-owned or group/other-writable, "
                                 "refusing to write into it")
        self.dirs_ok.add(path)

    def _existing(self, target: str) -> os.stat_result | None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            raise BuildError(f"build {target}: is a directory in the jail, expected a file "
                             "or symlink")
        return st

    def copy_file(self, src: str, path: str) -> None:
        if self.shared is not None:
            self.link_file(src, path)
            return
        target = self.jail(path)
        self.ensure_dir(os.path.dirname(path))
        with open(src, "rb", opener=_nofollow_opener) as source:
            st = os.fstat(source.fileno())
            mode = stat.S_IMODE(st.st_mode)
            if mode & (stat.S_ISUID | stat.S_ISGID):
                self.report.warnings.append(f"copy {src}: setuid/setgid bits stripped")
            mode &= 0o755  # no s-bits, no sticky, not group/other-writable

            def fill(fd: int) -> None:
                _sendfile_all(source.fileno(), fd, st.st_size)
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

            if self.fresh and self._create_file(target, mode, fill):
                self.report.files += 1
                self.report.bytes += st.st_size
                self.report.changed_paths.append(path)
                return
            old = self._existing(target)
            if old is not None and stat.S_ISREG(old.st_mode) and old.st_nlink > 1 \
                    and not self.links_expected:
                self.unshared += 1
            if old is not None and stat.S_ISREG(old.st_mode) \
                    and (old.st_nlink == 1 or self.links_expected) \
                    and old.st_size == st.st_size and old.st_mtime_ns == st.st_mtime_ns \
                    and _same_content(source, target):
                if (old.st_uid, old.st_gid, stat.S_IMODE(old.st_mode)) != (0, 0, mode) \
                        and not self.dry_run:
                    os.chown(target, 0, 0, follow_symlinks=False)
                    os.chmod(target, mode, follow_symlinks=False)
                self.report.unchanged += 1
                return
            self.report.files += 1
            self.report.bytes += st.st_size
            self.report.changed_paths.append(path)
            if self.dry_run:
                return
            source.seek(0)
            self._replace_file(target, mode, fill)

    def link_file(self, src: str, path: str) -> None:
        """Bring `path` up to date in the shared base, then make the jail's `path` a hard
        link to the base's file (replacing a copy or a link to an older inode)."""
        assert self.shared is not None
        written = self.shared.report.files
        self.shared.copy_file(src, path)
        target = self.jail(path)
        self.ensure_dir(os.path.dirname(path))
        base_file = self.shared.jail(path)
        old = self._existing(target)
        if self.dry_run and self.shared.report.files > written:
            self.report.linked += 1  # the base copy would be new: so would the link
            return
        base = os.lstat(base_file)
        if old is not None and (old.st_dev, old.st_ino) == (base.st_dev, base.st_ino):
            self.report.unchanged += 1
            return
        self.report.linked += 1
        self.report.changed_paths.append(path)
        if self.dry_run:
            return
        tmp = self._tmpname(target)
        os.link(base_file, tmp, follow_symlinks=False)
        try:
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def symlink(self, path: str, link_target: str) -> None:
        target = self.jail(path)
        self.ensure_dir(os.path.dirname(path))
        if self.fresh:
            try:
                os.symlink(link_target, target)
            except FileExistsError:
                pass  # the general path below replaces it
            else:
                os.lchown(target, 0, 0)
                self.report.symlinks += 1
                return
        old = self._existing(target)
        if old is not None and stat.S_ISLNK(old.st_mode) and os.readlink(target) == link_target:
            if old.st_uid != 0 and not self.dry_run:
                os.lchown(target, 0, 0)
            self.report.unchanged += 1
            return
        self.report.symlinks += 1
        self.report.changed_paths.append(path)
        if self.dry_run:
            return
        tmp = self._tmpname(target)
        os.symlink(link_target, tmp)
        try:
            os.lchown(tmp, 0, 0)
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def device(self, path: str, numbers: tuple[int, int]) -> None:
        target = self.jail(path)
        self.ensure_dir(os.path.dirname(path))
        rdev = os.makedev(*numbers)
        old = self._existing(target)
        if old is not None and stat.S_ISCHR(old.st_mode) and old.st_rdev == rdev \
                and stat.S_IMODE(old.st_mode) == 0o666 and (old.st_uid, old.st_gid) == (0, 0):
            self.report.unchanged += 1
            return
        self.report.devices += 1
        self.report.changed_paths.append(path)
        if self.dry_run:
            return
        tmp = self._tmpname(target)
        os.mknod(tmp, stat.S_IFCHR | 0o600, rdev)
        try:
            os.chown(tmp, 0, 0, follow_symlinks=False)
            os.chmod(tmp, 0o666, follow_symlinks=False)  # noqa: S103 - a profile's device
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    @staticmethod
    def _create_file(target: str, mode: int, fill: Callable[[int], None]) -> bool:
        """Create `target` (O_EXCL|O_NOFOLLOW: never an existing entry, never through a
        symlink), root-owned with `mode`, filled by `fill`; False if it already exists.
        On a failure part-way the file is removed."""
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        try:
            try:
                fill(fd)
                os.fchown(fd, 0, 0)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(target)
            raise
        return True

    def _replace_file(self, target: str, mode: int, fill: Callable[[int], None]) -> None:
        """Write a new root-owned file beside `target` (O_EXCL|O_NOFOLLOW), let `fill`
        write its content, then rename it over `target`; on any failure remove it."""
        tmp = self._tmpname(target)
        if not self._create_file(tmp, mode, fill):
            raise FileExistsError(f"{tmp}: exists")
        try:
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    @staticmethod
    def _tmpname(target: str) -> str:
        return os.path.join(os.path.dirname(target),
                            TMP_PREFIX + os.path.basename(target)[:64] + "-" + os.urandom(4).hex())

    def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
        target = self.jail(path)
        self.ensure_dir(os.path.dirname(path))
        data = text.encode("utf-8", "surrogateescape")
        if self.fresh and self._create_file(target, mode, lambda fd: _write_all(fd, data)):
            self.report.files += 1
            self.report.bytes += len(data)
            return
        old = self._existing(target)
        if old is not None and stat.S_ISREG(old.st_mode) and old.st_size == len(data):
            with open(target, "rb", opener=_nofollow_opener) as fh:
                if fh.read() == data and (old.st_uid, stat.S_IMODE(old.st_mode)) == (0, mode):
                    self.report.unchanged += 1
                    return
        self.report.files += 1
        self.report.bytes += len(data)
        if self.dry_run:
            return
        self._replace_file(target, mode, lambda fd: _write_all(fd, data))

    def apply(self, plan: Plan) -> None:
        progress = _Progress(self.root, len(plan.entries))
        for path in sorted(plan.entries):
            progress.step()
            kind = plan.entries[path]
            if kind == "dir":
                self.ensure_dir(path)
            elif kind == "link":
                self.symlink(path, os.readlink(path))
            else:
                self.copy_file(path, path)
        for path in plan.emptydirs:
            self.ensure_dir(os.path.normpath(path))
        for path in plan.stickydirs:          # like /tmp: never written into by us
            self.ensure_dir(path, 0o1777, foreign_ok=True)
            self.dirs_ok.discard(path)
        for path, target in sorted(plan.symlinks.items()):
            self.symlink(os.path.normpath(path), target)
        for path, numbers in sorted(plan.devices.items()):
            self.device(path, numbers)
        progress.done()
        self.finish()
        placed = {p for p, kind in plan.entries.items() if kind != "dir"}
        placed |= {os.path.normpath(p) for p in plan.symlinks} | set(plan.devices)
        self.record_placed(placed)

    def record_placed(self, paths: set[str]) -> None:
        """Add `paths` to the jail's record of what pam_jail placed (MANIFEST): update
        refreshes and prunes only those, never a file someone else put in the jail."""
        if self.dry_run or not paths:
            return
        known = read_manifest(self.root) or set()
        if paths <= known:
            return
        self.write_manifest(known | paths)

    def write_manifest(self, paths: set[str]) -> None:
        """The jail's record of what pam_jail placed is `paths` (by rename)."""
        data = ("\n".join(sorted(paths)) + "\n").encode()
        self._replace_file(self.jail(MANIFEST), 0o644, lambda fd: _write_all(fd, data))

    def finish(self) -> None:
        """Fold the shared base's counts into the report; warn about lost sharing."""
        if self.shared is not None:
            base = self.shared.report
            self.report.files += base.files
            self.report.bytes += base.bytes
            self.report.dirs += base.dirs
            self.report.warnings += base.warnings
            base.files = base.bytes = base.dirs = 0
            base.warnings = []
        if self.unshared:
            self.report.warnings.append(
                f"{self.unshared} hard-linked files in {self.root} were replaced by copies "
                "(a jail built with --shared BASE keeps sharing when updated with "
                "--shared BASE)")
            self.unshared = 0


def _nofollow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _sendfile_all(src: int, dst: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
        if sent == 0:
            raise BuildError("copy: source file shrank while copying")
        offset += sent


def _same_content(source: Any, target: str) -> bool:
    source.seek(0)
    with open(target, "rb", opener=_nofollow_opener) as other:
        while True:
            a = source.read(COPY_CHUNK)
            b = other.read(COPY_CHUNK)
            if a != b:
                return False
            if not a:
                return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# --------------------------------------------------------------------------- identity

def _passwd_line(entry: pwd.struct_passwd, home: str, shell: str) -> str:
    return f"{entry.pw_name}:x:{entry.pw_uid}:{entry.pw_gid}:{entry.pw_gecos}:{home}:{shell}"


def jail_home(host_home: str, user: str) -> str:
    """jailkit's convention: the part after the last `/./` in the host home (a home stub
    JAIL/./.home/USER means /home/USER: resolve.split_marker), else /home/USER."""
    from pam_jail.login.resolve import split_marker

    marker = split_marker(host_home)
    return marker[1] if marker is not None else f"/home/{user}"


def _read_entries(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape",
                  opener=_nofollow_opener) as fh:
            return [line for line in fh.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _merge(lines: list[str], new: dict[str, str]) -> str:
    """Replace entries whose name is in `new`, keep the others, append the rest."""
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        name = line.split(":", 1)[0]
        if name in new:
            if name not in seen:
                out.append(new[name])
                seen.add(name)
        else:
            out.append(line)
    out.extend(line for name, line in new.items() if name not in seen)
    return "\n".join(out) + "\n"


def home_link(marker_root: str) -> tuple[str, str]:
    """The symlink that makes a jailkit-style passwd home `/JAIL/./home/u` resolve inside
    the jail as well: JAIL's own path, inside the jail, points back to the jail's root,
    relatively ('/srv/jails/web' -> '../..'; it never climbs above the root, and on the
    host it names the jail itself). sshd chdirs to the passwd home after the PAM path's
    chroot (mode pam) and after its own ChrootDirectory (mode sftp); without the link it
    cannot ("Could not chdir to home directory", sftp users start in /)."""
    depth = len([p for p in marker_root.split("/") if p]) - 1
    return marker_root, "/".join([".."] * depth) or "."


def _write_identity(writer: _Writer, users: Sequence[str], groups: Sequence[str],
                    shell: str | None, homes: bool, jail_root: str = "",
                    passwd_homes: Mapping[str, str] | None = None) -> None:
    """Write JAIL/etc/passwd and etc/group entries (root and tty always; each user's
    primary group, and its supplementary groups listing it as a member, as on the host),
    create homes/tmp, and the home_link of users whose host home carries the jail's
    `/./` marker."""
    passwd: dict[str, str] = {}
    group: dict[str, str] = {}
    home_dirs: list[tuple[str, int, int]] = []
    links: set[tuple[str, str]] = set()
    root_pw = pwd.getpwuid(0)
    passwd[root_pw.pw_name] = _passwd_line(root_pw, root_pw.pw_dir, root_pw.pw_shell)
    wanted_groups = ["root", "tty", *groups]
    supplementary: dict[str, set[str]] = {}
    for user in users:
        _check_name(user, "user")
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise BuildError(f"add user {user}: no such user on this host") from None
        if entry.pw_uid == 0:
            continue
        host_home = (passwd_homes or {}).get(user, entry.pw_dir)   # (one being set)
        home = jail_home(host_home, user)
        user_shell = shell or entry.pw_shell
        passwd[entry.pw_name] = _passwd_line(entry, home, user_shell)
        try:
            wanted_groups.append(grp.getgrgid(entry.pw_gid).gr_name)
        except KeyError:
            raise BuildError(f"add user {user}: primary group {entry.pw_gid} not on this "
                             "host") from None
        home_dirs.append((home, entry.pw_uid, entry.pw_gid))
        for gid in os.getgrouplist(user, entry.pw_gid):   # supplementary: sshd's
            if gid != entry.pw_gid:                       # initgroups reads them in the
                try:                                      # jail (mode pam): shared-GROUP
                    supplementary.setdefault(grp.getgrgid(gid).gr_name, set()).add(user)
                except KeyError:
                    pass
        if jail_root and host_home.startswith(jail_root + "/./"):
            links.add(home_link(jail_root))
        if resolve_in_jail(writer.root, user_shell) is None and not writer.dry_run:
            writer.report.warnings.append(
                f"add user {user}: shell {user_shell} does not exist in the jail (sshd runs "
                "the shell inside the jail)")
    old_groups = _read_entries(writer.jail("/etc/group"))
    old_members = {f[0]: {m for m in f[3].split(",") if m} for f in
                   (line.split(":") for line in old_groups) if len(f) == 4}
    for name in [*wanted_groups, *sorted(supplementary)]:
        try:
            g = grp.getgrnam(name)
        except KeyError:
            raise BuildError(f"add group {name}: no such group on this host") from None
        members = old_members.get(g.gr_name, set()) | supplementary.get(g.gr_name, set())
        group[g.gr_name] = f"{g.gr_name}:x:{g.gr_gid}:{','.join(sorted(members))}"
    writer.write_text("/etc/passwd",
                      _merge(_read_entries(writer.jail("/etc/passwd")), passwd))
    writer.write_text("/etc/group", _merge(old_groups, group))
    if not homes:
        return
    for home, uid, gid in home_dirs:
        _check_name(home, "home")
        writer.ensure_dir(os.path.dirname(home))
        if home not in writer.dirs_ok:
            writer.ensure_dir(home, 0o750, uid, gid, foreign_ok=True)
            writer.dirs_ok.discard(home)  # never write into a user's home
    writer.ensure_dir("/tmp", 0o1777, foreign_ok=True)
    writer.dirs_ok.discard("/tmp")
    for path, target in sorted(links):
        try:
            st = os.lstat(writer.jail(path))
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISLNK(st.st_mode):
            writer.report.warnings.append(f"home link {path}: exists in the jail and is not a "
                                          "symlink; sshd cannot chdir to /./ homes")
            continue
        writer.symlink(path, target)


# --------------------------------------------------------------------------- shared base

SHARED_MARKER = "/.pam_jail-shared-base"
SHARED_MARKER_TEXT = """\
This tree is a pam_jail shared base: its files are hard-linked into jails built with
`pam-jail init --shared` (docs/builder.md). Never edit a file here in place: every jail
linking it would change at once. Update with `pam-jail update -j JAIL --shared BASE`.
"""


def _refuse_unsharing(root: str, linked: int, unshare: bool) -> None:
    """A jail whose files are hard links (built with --shared) is not silently turned
    into copies by a run without --shared: that would multiply its disk use."""
    if linked and not unshare:
        raise BuildError(f"build {root}: {linked} files are hard links (built with "
                         "--shared?)",
                         hint="pass --shared BASE to keep sharing them, or --unshare to turn "
                              "them into the jail's own copies")


def _count_linked(root: str, paths: Sequence[str]) -> int:
    count = 0
    for path in paths:
        try:
            st = os.lstat(root + path)
        except FileNotFoundError:
            continue
        count += stat.S_ISREG(st.st_mode) and st.st_nlink > 1
    return count


def _shared_writer(base: str, root: str, dry_run: bool) -> _Writer:
    """The writer of the shared base tree `base` for the jail `root`: checked like a
    jail path (root-owned chain), created if absent, on the jail's file system."""
    base = _normalize_root(base)
    if base == root or base.startswith(root + "/") or root.startswith(base + "/"):
        raise UsageError(f"--shared {base}: the base and the jail {root} may not contain "
                         "each other")
    exists = _check_root(base, must_exist=False)
    if exists and (os.path.islink(base) or not os.path.isdir(base)):
        raise BuildError(f"build {base}: shared base exists and is not a directory")
    jail_dev = os.stat(root if os.path.isdir(root) else os.path.dirname(root) or "/").st_dev
    base_dev = os.stat(base if exists else os.path.dirname(base) or "/").st_dev
    if base_dev != jail_dev:
        raise BuildError(f"build {root}: shared base {base} is on another file system",
                         hint="hard links cannot cross file systems: put the base and the "
                              "jails on one file system")
    writer = _Writer(base, BuildReport(root=base), dry_run)
    writer.links_expected = True
    if not exists and not dry_run:
        os.mkdir(base, 0o700)
        os.chown(base, 0, 0)
        os.chmod(base, 0o755)  # noqa: S103 - like a jail root
    if not dry_run:
        writer.write_text(SHARED_MARKER, SHARED_MARKER_TEXT)
    return writer


# --------------------------------------------------------------------------- public API

def init_jail(root: str, profiles: Sequence[str], *, users: Sequence[str] = (),
              profiles_file: str = DEFAULT_PROFILES_FILE, dry_run: bool = False,
              shell: str | None = None, shared: str | None = None,
              unshare: bool = False,
              definitions: Mapping[str, Profile] | None = None) -> BuildReport:
    """Build (or update) the jail at `root` from the named profiles and add `users`.
    With `shared` (a base directory on the jail's file system), regular files are
    hard links to copies kept in that base instead of copies of their own.
    `definitions` (what load_profiles returned) is used instead of reading
    `profiles_file`, e.g. by a caller building many jails from one file."""
    start = time.perf_counter()
    root = _normalize_root(root)
    if not profiles:
        raise UsageError("init: name at least one profile")
    exists = _check_root(root, must_exist=False)
    if definitions is None:
        definitions = load_profiles(profiles_file)
    chosen = expand_profiles(definitions, profiles)
    plan = plan_profiles(chosen)
    report = BuildReport(root=root, dry_run=dry_run, warnings=list(plan.warnings))
    for path, kind in plan.entries.items():
        if kind == "file":
            report.footprint_files += 1
            report.footprint_bytes += os.lstat(path).st_size
    groups = [g for g in plan.groups if g not in ("root", "tty")]
    all_users = [*plan.users, *(u for u in users if u not in plan.users)]
    if exists and not shared:
        _refuse_unsharing(root, _count_linked(
            root, [p for p, kind in plan.entries.items() if kind == "file"]), unshare)
    base = _shared_writer(shared, root, dry_run) if shared else None
    report.shared = base.root if base else ""

    def build(target: str, fresh: bool) -> None:
        writer = _Writer(target, report, dry_run, shared=base, fresh=fresh)
        writer.apply(plan)
        _write_identity(writer, all_users, groups, shell, homes=True, jail_root=root)

    if exists:
        if not os.path.isdir(root) or os.path.islink(root):
            raise BuildError(f"build {root}: exists and is not a directory")
        build(root, False)
    elif dry_run:
        report.dirs += 1
        build(root, False)
    else:
        _build_new(root, build)
    report.seconds = time.perf_counter() - start
    return report


def _make_parents(root: str) -> None:
    """The missing directories above a new jail (/srv/jails for /srv/jails/web), each
    root:root 0755 like the jail itself; the existing ones passed _check_root."""
    missing = []
    parent = os.path.dirname(root)
    while parent != "/" and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            raise UnsafeJail(f"build {root}: {path} appeared meanwhile and is not root's "
                             "directory")
        os.chmod(path, 0o755)  # noqa: S103 - a directory above jails, like /srv


def _build_new(root: str, build: Callable[[str, bool], None]) -> None:
    """Build a new jail in JAIL.tmp-XXXXXX and rename it into place; remove it on failure.
    `build(tmp, True)`: the tree is fresh (see _Writer). Missing parents are made."""
    _make_parents(root)
    parent = os.path.dirname(root) or "/"
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
    try:
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o755)  # noqa: S103 - the jail root, like any jail directory
        build(tmp, True)
        try:
            os.rename(tmp, root)  # fails if a non-empty directory appeared meanwhile
        except OSError as err:
            raise BuildError(f"build {root}: cannot move new jail into place: "
                             f"{err.strerror}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_into(root: str, files: Sequence[str], *, dry_run: bool = False,
              shared: str | None = None) -> BuildReport:
    """jk_cp: copy `files` (absolute host paths; directories recursively) into the existing
    jail at `root`, with their ELF dependencies and symlink chains."""
    start = time.perf_counter()
    root = _normalize_root(root)
    if not files:
        raise UsageError("cp: name at least one file")
    _check_root(root, must_exist=True)
    plan = plan_files(files)
    report = BuildReport(root=root, dry_run=dry_run, warnings=list(plan.warnings))
    base = _shared_writer(shared, root, dry_run) if shared else None
    report.shared = base.root if base else ""
    _Writer(root, report, dry_run, shared=base).apply(plan)
    report.seconds = time.perf_counter() - start
    return report


def add_users(root: str, users: Sequence[str], *, shell: str | None = None,
              passwd_homes: Mapping[str, str] | None = None) -> BuildReport:
    """Write jail etc/passwd + etc/group entries for host `users` (plus root, and the root
    and tty groups), create their homes (owner user, 0750) and JAIL/tmp (1777)."""
    start = time.perf_counter()
    root = _normalize_root(root)
    _check_root(root, must_exist=True)
    report = BuildReport(root=root)
    _write_identity(_Writer(root, report, False), users, (), shell, homes=True,
                    jail_root=root, passwd_homes=passwd_homes)
    report.seconds = time.perf_counter() - start
    return report


def identity_changes(root: str, users: Sequence[str], *, shell: str | None = None,
                     passwd_homes: Mapping[str, str] | None = None) -> int:
    """How many files, directories and links add_users would write or make (0: the jail's
    entries and homes for `users` are current). Writes nothing."""
    root = _normalize_root(root)
    report = BuildReport(root=root)
    _write_identity(_Writer(root, report, True), users, (), shell, homes=True, jail_root=root,
                    passwd_homes=passwd_homes)
    return report.files + report.dirs + report.symlinks


def update_jail(root: str, *, prune: bool = False, dry_run: bool = False,
                shared: str | None = None, unshare: bool = False) -> BuildReport:
    """Refresh every file of the jail that also exists on the host from the host copy (by
    content), with the ELF dependencies of the refreshed files. With `prune`, remove jail
    files whose host path no longer exists. Homes, tmp, etc/passwd, etc/group, etc/pam_jail
    and device nodes are never touched."""
    start = time.perf_counter()
    root = _normalize_root(root)
    _check_root(root, must_exist=True)
    placed = read_manifest(root)
    if placed is None:
        raise BuildError(f"update {root}: no record of what pam_jail placed in it ({MANIFEST};"
                         " a jail built by jailkit or an older pam_jail)",
                         hint=f"run `pam-jail init -j {root} PROFILE...` with its profiles "
                              "once: it records them; update then refreshes only those")
    keep = {"/etc/passwd", "/etc/group", MANIFEST}
    # the jail's own pam_jail config (its lsh.ini allow-list) is never the host's
    skip_dirs = {"/tmp", "/home", "/dev", "/proc", "/etc/pam_jail"}
    for line in _read_entries(root + "/etc/passwd"):
        fields = line.split(":")
        if len(fields) >= 6 and fields[5] not in ("", "/"):
            skip_dirs.add(os.path.normpath(fields[5]))
    present: list[str] = []
    stale: list[str] = []
    linked = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise_walk_error):
        rel_dir = dirpath[len(root):] or "/"
        dirnames[:] = sorted(d for d in dirnames
                             if os.path.join(rel_dir, d) not in skip_dirs)
        for name in sorted([*filenames, *(d for d in dirnames
                                          if os.path.islink(os.path.join(dirpath, d)))]):
            rel = os.path.join(rel_dir, name)
            if rel in keep or name.startswith(TMP_PREFIX) or rel not in placed:
                continue                            # not pam_jail's: never touched
            st = os.lstat(root + rel)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            linked += stat.S_ISREG(st.st_mode) and st.st_nlink > 1
            host_ok = os.path.lexists(rel) and (
                stat.S_ISLNK(os.lstat(rel).st_mode) or os.path.isfile(rel))
            if not host_ok and stat.S_ISLNK(st.st_mode) \
                    and resolve_in_jail(root, rel) is not None:
                continue  # a jail-only link (a profile's `symlinks`) that resolves: kept
            (present if host_ok else stale).append(rel)
    if not shared:
        _refuse_unsharing(root, linked, unshare)
    # the limited shell's runtime is the package's: today's whole (files a new version
    # added arrive). What the package no longer has stays until --prune: a downgrade's
    # update then finds its own modules again (it refreshes, it does not add)
    runtime = any(is_runtime_path(rel) for rel in placed)
    planner = _Planner()
    for rel in present:
        if os.path.islink(rel):
            planner.add_link(rel, "update")
        else:
            planner.elf_inputs.append(rel)
    if runtime:
        _add_runtime(planner, what="update: the limited shell's runtime")
    plan = planner.finish()
    report = BuildReport(root=root, dry_run=dry_run, warnings=list(plan.warnings))
    base = _shared_writer(shared, root, dry_run) if shared else None
    report.shared = base.root if base else ""
    _Writer(root, report, dry_run, shared=base).apply(plan)
    for rel in stale:
        if prune:
            report.removed += 1
            report.removed_paths.append(rel)
            if not dry_run:
                os.unlink(root + rel)
        else:
            report.warnings.append(f"update {root}{rel}: not on the host any more "
                                   "(--prune removes it)")
    if prune and not dry_run and report.removed_paths:
        known = read_manifest(root) or set()
        _Writer(root, BuildReport(root=root), False).write_manifest(
            known - set(report.removed_paths))
    report.seconds = time.perf_counter() - start
    return report


def drop_runtime(root: str, *, dry_run: bool = False) -> BuildReport:
    """Remove this version's limited-shell runtime directory (LIBDIR/pam_jail/login,
    what pam_jail placed there) from the jail, and from its record. The package's prerm
    runs it before a downgrade to 0.2.x (the flat layout), whose postinst's update puts
    0.2's entry scripts into the jail: the package directory pam_jail/login would then
    shadow 0.2's module pam_jail/login.py (that update refreshes files, never removes). The
    older version's own modules were kept by update (they are refreshed by its own)."""
    start = time.perf_counter()
    root = _normalize_root(root)
    _check_root(root, must_exist=True)
    placed = read_manifest(root)
    if placed is None:
        raise BuildError(f"update {root}: no record of what pam_jail placed in it ({MANIFEST})")
    prefix = f"{_runtime()[0]}/login/"
    report = BuildReport(root=root, dry_run=dry_run)
    gone = sorted(rel for rel in placed if rel.startswith(prefix))
    for rel in gone:
        report.removed += 1
        report.removed_paths.append(rel)
        if not dry_run and os.path.lexists(root + rel) and not os.path.isdir(root + rel):
            os.unlink(root + rel)
    if not dry_run and gone:
        for dirpath, _dirs, _files in sorted(os.walk(root + prefix), reverse=True):
            try:
                os.rmdir(dirpath)                    # empty now, or someone else's files
            except OSError:
                pass
        _Writer(root, BuildReport(root=root), False).write_manifest(placed - set(gone))
    report.seconds = time.perf_counter() - start
    return report


# --------------------------------------------------------------------------- CLI

INIT_DESCRIPTION = """\
Create the jail JAIL, or update it in place, with everything the named PROFILEs need:
programs with their shared libraries and dynamic loader (found without running them),
directories, device nodes, and minimal etc/passwd and etc/group entries.

A new jail is built in JAIL.tmp-XXXXXX beside it and renamed to JAIL only when complete;
a failed build leaves nothing behind. Re-running on an existing jail updates it: files
that already match the host (size, mtime and content) are left alone.

Every directory from / to JAIL must be root-owned and not group/other-writable. Copies
are root-owned, never group/other-writable, and lose setuid/setgid bits."""

INIT_EPILOG = """\
examples:
  pam-jail init -j /srv/jail sftp scp rsync
  pam-jail init -j /srv/jail --user alice --user bob basicshell ptys
  pam-jail init -j /srv/jails/c1042 --shared /srv/jails/.base sftp scp
  pam-jail init --list

files:
  /etc/pam_jail/profiles.ini   profile definitions (docs/builder.md lists the keys)"""

CP_DESCRIPTION = """\
Copy FILEs (absolute host paths; directories recursively) into the existing jail JAIL,
each at the same path, with its ELF dependencies and every symlink on the way (like
jailkit's jk_cp). The same rules as `init` apply: root-owned copies, setuid/setgid bits
stripped, symlinks kept as symlinks, unchanged files left alone."""

UPDATE_DESCRIPTION = """\
Refresh the jail JAIL from the host: every jail file whose host copy differs in content
is copied again, with the ELF dependencies of the current host files (a new library
version comes along). Homes, tmp, dev, etc/passwd, etc/group and etc/pam_jail (the
jail's own lsh.ini) are not touched, and neither is any file pam_jail did not place
itself: init and cp record what they place in JAIL/.pam_jail-placed, and update refreshes
and prunes only those (a jailkit jail's jk_lsh.ini, an admin's own file stay). A jail with
no record is refused until `pam-jail init` has been run on it with its profiles. With
--prune, recorded files whose host path no longer exists are removed."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `init`, `cp` and `update` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    init = sub.add_parser("init", help="create or update a jail from profiles",
                          description=INIT_DESCRIPTION, epilog=INIT_EPILOG,
                          formatter_class=fmt)
    init.add_argument("-j", "--jail", metavar="JAIL",
                      help="absolute path of the jail directory (required unless --list)")
    init.add_argument("-u", "--user", dest="users", action="append", default=[],
                      metavar="USER", help="host user to add to the jail's etc/passwd, with "
                      "a home inside the jail (repeatable)")
    init.add_argument("--shell", metavar="PATH",
                      help="login shell written for --user entries (default: the host's)")
    init.add_argument("-c", "--profiles-file", default=DEFAULT_PROFILES_FILE, metavar="FILE",
                      help=f"profile definitions (default: {DEFAULT_PROFILES_FILE})")
    init.add_argument("-n", "--dry-run", action="store_true",
                      help="list the paths that would be written or removed; write nothing")
    init.add_argument("--json", action="store_true",
                      help="print the report as JSON instead of the summary line")
    init.add_argument("--shared", metavar="BASE",
                      help="hard-link regular files to copies kept in the shared base "
                           "directory BASE (same file system) instead of copying them into "
                           "each jail; see docs/builder.md for the trade-off")
    init.add_argument("--unshare", action="store_true",
                      help="on an existing jail built with --shared, replace its hard links "
                           "by copies of its own")
    init.add_argument("--list", action="store_true",
                      help="list the profiles in the profiles file and exit")
    init.add_argument("profiles", nargs="*", metavar="PROFILE",
                      help="profile names from the profiles file")
    init.set_defaults(func=_cmd_init)

    cp = sub.add_parser("cp", help="copy files with their libraries into a jail",
                        description=CP_DESCRIPTION, formatter_class=fmt,
                        epilog="example:\n  pam-jail cp -j /srv/jail /usr/bin/less "
                               "/usr/share/terminfo")
    cp.add_argument("-j", "--jail", required=True, metavar="JAIL",
                    help="absolute path of an existing jail")
    cp.add_argument("-n", "--dry-run", action="store_true",
                    help="list the paths that would be written or removed; write nothing")
    cp.add_argument("--json", action="store_true",
                    help="print the report as JSON instead of the summary line")
    cp.add_argument("--shared", metavar="BASE",
                    help="hard-link the files to copies in the shared base BASE")
    cp.add_argument("files", nargs="+", metavar="FILE", help="absolute host paths")
    cp.set_defaults(func=_cmd_cp)

    update = sub.add_parser("update", help="refresh a jail's files from the host",
                            description=UPDATE_DESCRIPTION, formatter_class=fmt)
    which = update.add_mutually_exclusive_group(required=True)
    which.add_argument("-j", "--jail", metavar="JAIL",
                       help="absolute path of an existing jail")
    which.add_argument("--all", action="store_true",
                       help="every jail of jails.ini (what the apt hook runs after upgrades); "
                            "a jail that fails is reported, the others are still updated")
    update.add_argument("--config", default="/etc/pam_jail/jails.ini", metavar="FILE",
                        help="jails.ini for --all (default /etc/pam_jail/jails.ini)")
    update.add_argument("--prune", action="store_true",
                        help="remove jail files whose host path no longer exists")
    update.add_argument("--shared", metavar="BASE",
                        help="the jail's shared base: refresh the base's copies and re-link "
                             "the jail's files to them (without it, linked files that differ "
                             "from the host become the jail's own copies)")
    update.add_argument("--unshare", action="store_true",
                        help="replace the jail's hard links by copies of its own")
    update.add_argument("--drop-runtime", action="store_true",
                        help="only remove this version's limited-shell runtime directory "
                             "(LIBDIR/pam_jail/login) from the jail: what the package does "
                             "before a downgrade to 0.2.x")
    update.add_argument("-n", "--dry-run", action="store_true",
                        help="list the paths that would be written or removed; write nothing")
    update.add_argument("--json", action="store_true",
                        help="print the report as JSON instead of the summary line")
    update.set_defaults(func=_cmd_update)


def _print_report(report: BuildReport, action: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for warning in report.warnings:
        print(f"pam_jail: warning: {warning}", file=sys.stderr)
    if report.dry_run:       # what would change, path by path
        for path in report.changed_paths:
            print(f"would write {report.root}{path}")
        for path in report.removed_paths:
            print(f"would remove {report.root}{path}")
    print(report.summary(action))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    if args.list:
        for name, profile in load_profiles(args.profiles_file).items():
            print(f"{name:12} {profile.comment}")
        return 0
    if not args.jail:
        raise UsageError("init: -j JAIL is required")
    if not args.profiles:
        raise UsageError("init: name at least one profile",
                         hint="`pam-jail init --list` shows them")
    with admin_lock():
        report = init_jail(args.jail, args.profiles, users=args.users,
                           profiles_file=args.profiles_file, dry_run=args.dry_run,
                           shell=args.shell, shared=args.shared, unshare=args.unshare)
    return _print_report(report, "init", args.json)


def _cmd_cp(args: argparse.Namespace) -> int:
    with admin_lock():
        report = copy_into(args.jail, args.files, dry_run=args.dry_run, shared=args.shared)
    return _print_report(report, "cp", args.json)


def _cmd_update(args: argparse.Namespace) -> int:
    if args.all:
        return _update_all(args)
    with admin_lock():
        report = drop_runtime(args.jail, dry_run=args.dry_run) if args.drop_runtime else \
            update_jail(args.jail, prune=args.prune, dry_run=args.dry_run,
                        shared=args.shared, unshare=args.unshare)
    return _print_report(report, "update", args.json)


def _update_all(args: argparse.Namespace) -> int:
    """update every jail of jails.ini, one report line each; exit 1 if any failed."""
    from pam_jail.login.config_file import load_config

    roots = sorted({j.root for j in load_config(args.config).jails.values()})
    failed = 0
    results = []
    with admin_lock():
        for index, root in enumerate(roots, 1):
            try:
                report = drop_runtime(root, dry_run=args.dry_run) if args.drop_runtime \
                    else update_jail(root, prune=args.prune, dry_run=args.dry_run)
            except PamJailError as err:
                failed += 1
                results.append({"root": root, "error": str(err)})
                if not args.json:
                    print(f"[{index}/{len(roots)}] FAILED: {err}",
                          file=sys.stderr)
                continue
            results.append(report.as_dict())
            if not args.json:
                print(f"[{index}/{len(roots)}] {report.summary('update')}")
    if args.json:
        print(json.dumps({"jails": results, "failed": failed}, indent=2))
    return 1 if failed else 0
