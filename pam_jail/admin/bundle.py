"""Write the login bundles that pam_jail.login.preload reads at every login.

A bundle is one file per entry (BUNDLES: pam-jail-shell, pam-jail-lsh, the PAM module),
beside the package's byte-code: the modules that entry loads from files, in the order
they complete (recorded by importing the entry module, and what every login of it
imports later, in a fresh /usr/bin/python3 -IS, as the entry scripts run it), each with
its file's size and mtime: source modules (pam_jail's, the standard library's
__future__) as code objects, the C extension as its path; for pam-jail-shell also the
rule families it holds across its pivot, marshalled, run only if imported. The other
modules are imported from their files when needed. Like a .pyc it is a cache: a bundle
that is missing, not root's, from another Python or older than one of pam_jail's files is
not used, and the login imports the files one by one as before (about 1 ms slower); a
standard library module changed since (a python3 update) is imported from its file.

Written by scripts/install and the Debian package's postinst, as root, after the
package's byte-code; removed by the package's prerm.

    /usr/bin/python3 -IS -c 'import sys; sys.path[:0] = [sys.argv[1]]
        from pam_jail.admin.bundle import main; sys.exit(main())' LIBDIR
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from importlib.util import MAGIC_NUMBER

from pam_jail.login import BUNDLE_MAGIC

# bundle name (what the entry script passes to preload) -> (entry module, modules every
# login of that entry imports later (run at start-up too), hold: the rule families that
# pam-jail-shell holds across its pivot (policy.hold_families) go in marshalled)
BUNDLES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "pam-jail-shell": ("shell_entry", ("config_index", "policy.held"), True),
    "pam-jail-lsh": ("shell_entry", (), False),
    "pam_jail_pam": ("pam_module", (), False),
}
PYTHON = "/usr/bin/python3"

# Run by PYTHON -IS with argv LIBDIR ROOT HOLD ALSO...: prints, a "NAME\tPATH\tKIND" line
# each, the modules that importing ROOT and then each ALSO loads from files (KIND source
# or extension), in the order they complete, then "--" and, if HOLD is 1, the names of
# what hold_families holds (or imports, without .pyc files).
_RECORD = """\
import sys
sys.path[:0] = [sys.argv[1]]
sys.path += ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]
import pam_jail.login
ext = sys.modules["_frozen_importlib_external"]
done = []
def recording(run, kind):
    def exec_module(self, module):
        run(self, module)
        done.append(f"{module.__name__}\\t{module.__file__}\\t{kind}")
    return exec_module
ext._LoaderBasics.exec_module = recording(ext._LoaderBasics.exec_module, "source")
ext.ExtensionFileLoader.exec_module = recording(ext.ExtensionFileLoader.exec_module,
                                                "extension")
for name in [sys.argv[2], *sys.argv[4:]]:
    __import__("pam_jail.login." + name)
out = [*done, "--"]
if sys.argv[3] == "1":   # held from .pyc files, or imported when there are none
    from pam_jail.login.policy import hold_families
    before = set(sys.modules)
    hold_families()
    out += sorted(set(pam_jail.login.MemoryFinder.code) | (set(sys.modules) - before))
print("\\n".join(out))
"""


class BundleError(Exception):
    pass


def _sources(login: str) -> list[str]:
    """Every module source under `login`, relative to it, sorted."""
    out = []
    for directory, dirs, files in os.walk(login):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(directory, login)
        out += [f.removeprefix("./") for f in (f"{rel}/{name}" for name in sorted(files))
                if f.endswith(".py")]
    return sorted(out)


def _module(relpath: str) -> str:
    name = relpath.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    return f"pam_jail.login.{name}"


def run_order(libdir: str, name: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """([(module, file, kind)] that bundle NAME loads at start-up, as they complete; the
    login modules it holds marshalled)."""
    root, also, hold = BUNDLES[name]
    proc = subprocess.run([PYTHON, "-IS", "-c", _RECORD, libdir, root, "1" if hold else "0",
                           *also], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleError(f"import pam_jail.login.{root} under {PYTHON}: {last}")
    lines = proc.stdout.splitlines()
    cut = lines.index("--")
    loaded = [(m, f, k) for m, f, k in (line.split("\t") for line in lines[:cut])]
    return loaded, [m for m in lines[cut + 1:] if m.startswith("pam_jail.login.")]


def build(libdir: str, name: str) -> bytes:
    """Bundle NAME (BUNDLES) of the install in LIBDIR: (module, path, mtime_ns, size,
    payload) in load order. path: relative to pam_jail/login for its own modules (a
    jail's copy of the runtime sits elsewhere on the host), else absolute; payload: a
    code object, None for an extension (loaded from its file), or marshalled code for a
    module held for later."""
    login = f"{libdir}/pam_jail/login"
    by_name = {_module(rel): rel for rel in _sources(login)}
    loaded, held = run_order(libdir, name)
    root = f"pam_jail.login.{BUNDLES[name][0]}"
    if root not in [m for m, _f, _k in loaded]:
        raise BundleError(f"{root} was not imported from {login}")
    entries: list[tuple[str, str, int, int, object]] = []
    for module, path, kind in [*loaded, *((m, f"{login}/{by_name[m]}", "held")
                                          for m in held if m in by_name)]:
        rel = os.path.relpath(path, login)
        stored = path if rel.startswith("..") else rel
        if module.startswith("pam_jail.") and rel.startswith(".."):
            raise BundleError(f"{module} ran from {path}, outside {login}")
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
        payload: object = None
        if kind != "extension":
            code = compile(data, path, "exec", dont_inherit=True, optimize=0)
            payload = code if kind == "source" else marshal.dumps(code)
        entries.append((module, stored, st.st_mtime_ns, st.st_size, payload))
    return BUNDLE_MAGIC + MAGIC_NUMBER + marshal.dumps(entries)


def path_of(libdir: str, name: str) -> str:
    """pam_jail.login.bundle_path for the install in LIBDIR."""
    return f"{libdir}/pam_jail/login/__pycache__/{name}.{sys.implementation.cache_tag}.bundle"


def write(libdir: str, names: tuple[str, ...] = tuple(BUNDLES)) -> list[str]:
    """Every bundle of LIBDIR, each replaced whole (rename), mode 0644."""
    written = []
    for name in names:
        data = build(libdir, name)
        target = path_of(libdir, name)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        tmp = f"{target}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: bundle LIBDIR   (writes LIBDIR's login bundles)", file=sys.stderr)
        return 2
    try:
        for path in write(args[0].rstrip("/")):
            print(f"bundle: {path}")
    except (OSError, BundleError, SyntaxError) as err:
        print(f"bundle: {err}", file=sys.stderr)
        return 1
    return 0
