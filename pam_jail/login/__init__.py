"""What a login runs: the trusted core.

The two entries (pam_module: the PAM module's body; shell_entry: pam-jail-shell and
pam-jail-lsh), admission (which jail, if any), the config reader and its index, the
limited shell's policy, the safety checks, the confinement (confine: the only module
that calls unshare, mount, chroot, pivot_root, setres*id, capset, prctl or seccomp),
its system-call tables, limits, the per-customer view, logging and errors.

Nothing here imports pam_jail.admin; the admin tools import from here. Every file of
this directory is also the limited shell's runtime inside a PAM-path jail (the `lsh`
profile copies the directory whole), so the file list is written nowhere else.
tests/test_layout.py reads the code and keeps these rules.
"""

# No `from __future__ import annotations` here (the annotations below are strings): the
# entries import this package before preload, which can then run __future__ from the
# bundle like the modules that use it.
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, ModuleType

# importlib's own, loaded at start-up (no `import importlib`, no file read)
_BOOTSTRAP = sys.modules["_frozen_importlib"]
_EXTERNAL = sys.modules["_frozen_importlib_external"]
_MODULE = type(sys)
BUNDLE_MAGIC = b"pam_jail-bundle\n"


class MemoryFinder:
    """Finder and loader, first on sys.meta_path, of modules whose byte-code is already in
    memory: the login bundle's modules not run at start-up (preload) and the rule
    families policy.held reads before pam-jail-shell's pivot. name -> (source path,
    marshalled code). Every other name goes on to the finders that read files."""

    code: "dict[str, tuple[str, bytes]]" = {}

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> object:
        held = cls.code.get(name)
        if held is None:
            return None
        spec = _BOOTSTRAP.ModuleSpec(name, cls, origin=held[0],
                                     is_package=held[0].endswith("/__init__.py"))
        spec.has_location = True
        if spec.submodule_search_locations is not None:
            spec.submodule_search_locations.append(held[0].rpartition("/")[0])
        return spec

    @staticmethod
    def create_module(spec: object) -> None:
        return None

    @classmethod
    def exec_module(cls, module: "ModuleType") -> None:
        import marshal

        _origin, data = cls.code.pop(module.__name__)
        exec(marshal.loads(data), module.__dict__)  # noqa: S102, S302

    @classmethod
    def serve(cls) -> None:
        finders: list[object] = sys.meta_path  # type: ignore[assignment]
        if cls not in finders:
            finders.insert(0, cls)


def bundle_path(name: str, login: str = "") -> str:
    """Where the install leaves login bundle `name` (pam-jail-shell, pam-jail-lsh,
    pam_jail_pam): beside the byte-code of `login` (this package's directory by
    default), for this interpreter."""
    return f"{login or __path__[0]}/__pycache__/{name}.{sys.implementation.cache_tag}.bundle"


_PRELOADED: "set[str]" = set()


def read_bundle(name: str, login: str = "",
                ) -> "tuple[list[tuple[str, str, CodeType | bytes | None]] | None, str]":
    """Bundle `name`'s entries (module, path, payload) when it can be used, else None;
    and why not, or which standard library module was left out (changed since it was
    written). `login`: the package directory it belongs to (this one by default). Runs
    nothing (preload; pam-jail doctor's login.bundle)."""
    import marshal
    import posix

    here = login or __path__[0]
    where = bundle_path(name, here)
    try:
        fd = posix.open(where, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError as err:
        return None, f"{where}: {err.strerror}"
    try:
        st = posix.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or st.st_uid != 0 or st.st_mode & 0o022:
            return None, f"{where}: not root's, or writable by others"
        data = posix.read(fd, st.st_size)
    except OSError as err:
        return None, f"{where}: {err.strerror}"
    finally:
        posix.close(fd)
    head = len(BUNDLE_MAGIC) + 4
    if len(data) != st.st_size or data[:head] != BUNDLE_MAGIC + _EXTERNAL.MAGIC_NUMBER:
        return None, f"{where}: cut short, or written for another Python"
    entries = []
    left_out = []
    try:
        for module, path, mtime_ns, size, payload in marshal.loads(  # noqa: S302 (checked)
                memoryview(data)[head:]):
            ours = path[0] != "/"
            path = f"{here}/{path}" if ours else path
            try:
                src = posix.stat(path)
                same = src.st_mtime_ns == mtime_ns and src.st_size == size
            except OSError:
                same = False
            if not same and ours:
                return None, f"{path} changed since the bundle was written"
            if same:     # (a changed standard library module, say after a python3.11
                entries.append((module, path, payload))  # update: imported from its file)
            else:
                left_out.append(module)
    except (ValueError, TypeError, EOFError, IndexError):
        return None, f"{bundle_path(name)}: unreadable"
    return entries, ", ".join(left_out)


def preload(name: str) -> bool:
    """The entries' start-up: the modules a login runs from one file instead of one import
    each (pam_jail/admin/bundle.py writes the file at install).

    Bundle `name` holds, in the order they complete when the entry is imported, the
    modules that import runs: source modules as code objects (pam_jail's, and the
    standard library's __future__), extension modules (_sys) as the path of their file,
    loaded from there without a search of sys.path; it may hold further modules
    marshalled (the rule families pam-jail-shell holds across its pivot), served by
    MemoryFinder when imported. Each with its file's size and mtime. Used only when the
    bundle is root's and not writable by others, carries this interpreter's magic number
    and every file of pam_jail is still the one recorded (as a .pyc is checked against
    its source); else False and nothing is loaded: the import statements that follow
    read the files as always. A standard library module that changed since (a python3
    update) is left to its own import. About 1 ms less per login than ~20 imports
    through importlib (each finds, stats, reads and unmarshals a file)."""
    if name in _PRELOADED:
        return True
    entries, _why = read_bundle(name)
    if entries is None:
        return False
    entries = [entry for entry in entries if entry[0] not in sys.modules]
    made: dict[str, ModuleType] = {}
    for module, path, payload in entries:
        if isinstance(payload, bytes):
            MemoryFinder.code[module] = (path, payload)
        elif path.endswith("/__init__.py"):
            made[module] = _new_module(module, path)
    MemoryFinder.serve()
    try:
        for module, path, payload in entries:
            if payload is None:
                _load_extension(module, path)
            elif not isinstance(payload, bytes):
                new = made.get(module) or _new_module(module, path)
                exec(payload, new.__dict__)  # noqa: S102
    except BaseException:   # as a failed import leaves it: none of these half-made
        for module, _path, _payload in entries:
            sys.modules.pop(module, None)
            MemoryFinder.code.pop(module, None)
        raise
    _PRELOADED.add(name)
    return True


def _load_extension(name: str, path: str) -> None:
    """An extension module from its file, as importlib loads it once found."""
    loader = _EXTERNAL.ExtensionFileLoader(name, path)
    spec = _BOOTSTRAP.ModuleSpec(name, loader, origin=path)
    spec.has_location = True
    module = _BOOTSTRAP.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _new_module(name: str, origin: str) -> "ModuleType":
    """A module as importlib makes it for a source file (its attributes set here, not by
    importlib's module_from_spec: ~8 us each), registered; its parent, a package of the
    bundle or this one, is registered before it."""
    package = origin.endswith("/__init__.py")
    spec = _BOOTSTRAP.ModuleSpec(name, MemoryFinder, origin=origin, is_package=package)
    spec.has_location = True
    module = _MODULE(name)
    module.__spec__ = spec
    module.__loader__ = MemoryFinder  # type: ignore[assignment]
    module.__file__ = origin
    if package:
        module.__package__ = name
        spec.submodule_search_locations.append(origin.rpartition("/")[0])
        module.__path__ = spec.submodule_search_locations
    else:
        module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module

