"""The trusted core's rules, kept by reading the code (pam_jail/login/__init__.py).

- pam_jail/login/ holds everything a login runs; nothing under it imports pam_jail.admin,
  and nothing in the package imports the two entry modules (shell_entry, pam_module).
- At run time, the entries load only modules of pam_jail/login (plus pam_jail/__init__)
  and none of the slow or steerable standard modules listed below; nothing under login/
  imports os or os.path (posix and login/paths.py instead).
- Only confine.py calls the privileged system calls.
The login/ directory is the one list of the trusted core's files: the lsh profile copies
it whole (tests/test_build.py checks that) and scripts/check-imports walks it.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "pam_jail"
LOGIN = PACKAGE / "login"
ENTRIES = ("pam_jail.login.shell_entry", "pam_jail.login.pam_module")
# loaded by no login: slow to import (typing ~15 ms, enum, re...) or not the login's job.
# os too (~1 ms a login, most of it _collections_abc for os.environ's class): the core
# calls the built-in posix, and login/paths.py has the few os.path helpers it needs;
# stat, one import a login: paths has its tests. _socket is imported only where a step
# needs it (a terminal's hand-over in mode shell), never at start-up: _sys makes the
# syslog socket (AT_START).
AT_START = ("_socket",)
FORBIDDEN = ("re", "shlex", "typing", "dataclasses", "subprocess", "socket", "signal",
             "enum", "configobj", "elftools", "ctypes", "argparse", "json", "importlib",
             "os", "posixpath", "genericpath", "_collections_abc", "stat")
# the system calls that change privileges, namespaces, mounts or filters
PRIVILEGED = {"unshare", "mount", "umount", "umount2", "chroot", "pivot_root", "setresuid",
              "setresgid", "setreuid", "setregid", "setuid", "setgid", "seteuid", "setegid",
              "setgroups", "initgroups", "capset", "prctl", "seccomp_filter",
              "landlock_create_ruleset", "landlock_restrict_self"}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import the file runs: at module level and inside functions,
    the `if TYPE_CHECKING:` blocks left out (never executed). `from pam_jail.login import
    x` counts as pam_jail.login.x."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module in ("pam_jail", "pam_jail.login", "pam_jail.admin"):
                found.extend((node.lineno, f"{node.module}.{alias.name}")
                             for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def test_the_core_is_a_directory_and_the_admin_tools_another() -> None:
    login = {_name(p) for p in _modules(LOGIN)}
    for name in ("admission", "config", "config_index", "confine", "errors", "limits", "log",
                 "lsh", "pam_module", "resolve", "safety", "shell_entry", "syscalls", "view"):
        assert f"pam_jail.login.{name}" in login
    assert (LOGIN / "policy" / "__init__.py").exists() or (LOGIN / "policy.py").exists()
    assert not [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"], \
        "every module is either login/ or admin/"


@pytest.mark.parametrize("path", _modules(LOGIN), ids=lambda p: _name(p))
def test_login_imports_nothing_of_admin_nor_a_forbidden_module(path: Path) -> None:
    bad = [(line, m) for line, m in _imports(path)
           if m.startswith("pam_jail.admin") or m.partition(".")[0] in FORBIDDEN]
    assert bad == [], f"{_name(path)}: {bad}"


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: _name(p))
def test_nothing_imports_an_entry_module(path: Path) -> None:
    bad = [(line, m) for line, m in _imports(path) if m in ENTRIES]
    assert bad == [], f"{_name(path)} imports an entry module: {bad}"


SYSCALL_MODULES = ("os", "posix", "_sys", "pam_jail.login._sys")


def _calls(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every use of a privileged system call: `os.chroot(...)`,
    `_call("...", _sys.capset, ...)` (passed, not called), `from os import setuid`.
    confine's own wrappers (confine.unshare, ...) are what the other modules call."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in PRIVILEGED \
                and isinstance(node.value, ast.Name) and node.value.id in SYSCALL_MODULES:
            out.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module in SYSCALL_MODULES:
            out.extend((node.lineno, a.name) for a in node.names if a.name in PRIVILEGED)
    return out


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: _name(p))
def test_only_confine_calls_the_privileged_syscalls(path: Path) -> None:
    if path == LOGIN / "confine.py":
        assert {name for _, name in _calls(path)} >= {"unshare", "mount", "pivot_root",
                                                       "chroot", "prctl", "capset",
                                                       "seccomp_filter", "setresuid"}
        return
    assert _calls(path) == [], f"{_name(path)} calls a privileged system call itself"


def test_the_checker_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The readers above find what they must (else every test above would pass blind)."""
    sample = tmp_path / "x.py"
    sample.write_text("import re\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n    import typing\n"
                      "def f():\n    from pam_jail.admin import build\n    os.chroot('/')\n"
                      "    from pam_jail.login import shell_entry\n"
                      "    call(_sys.capset, 0)\n    args.unshare(1)\n"
                      "    from posix import setresuid, getuid\n"
                      "    import os.path\n    from os import environ\n")
    names = [m for _, m in _imports(sample)]
    assert names == ["re", "pam_jail.admin", "pam_jail.admin.build", "pam_jail.login",
                     "pam_jail.login.shell_entry", "posix", "os.path", "os"]
    assert [m for m in names if m.partition(".")[0] in FORBIDDEN] == ["re", "os.path", "os"]
    assert sorted(_calls(sample)) == [(7, "chroot"), (9, "capset"), (11, "setresuid")]


@pytest.mark.parametrize("entry", ENTRIES)
def test_an_entry_loads_only_the_core(entry: str) -> None:
    """What importing an entry really loads under Debian's python3 -IS: of pam_jail only
    login/ (and the package's __init__), and no forbidden module (os included: -IS loads
    no site, hence no os, at start-up, so the difference shows it)."""
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; before = set(sys.modules)\n"
            f"import {entry}\n"
            "print('\\n'.join(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c", code, str(REPO)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert entry in out
    ours = [m for m in out if m.startswith("pam_jail")]
    assert [m for m in ours if m not in ("pam_jail", "pam_jail.login")
            and not m.startswith("pam_jail.login.")] == []
    assert [m for m in out if m.partition(".")[0] in (*FORBIDDEN, *AT_START)] == []


POLICY = "pam_jail.login.policy"


def _pam_jail_modules_after(code: str) -> set[str]:
    """The pam_jail modules loaded once `code` ran under Debian's python3 -IS."""
    script = ("import sys; sys.path[:0] = [sys.argv[1]]\n" + code +
              "\nprint('\\n'.join(m for m in sys.modules if m.startswith('pam_jail')))\n")
    return set(subprocess.run(["/usr/bin/python3", "-IS", "-c", script, str(REPO)],
                              capture_output=True, text=True, check=True).stdout.split())


def test_the_policy_loads_a_rule_family_only_for_a_command_that_needs_it() -> None:
    """Every login imports the policy package: that loads no family of argument rules
    (nor the option scanner they share); deciding an rsync command loads the rsync
    family, and no other (pam_jail/login/policy/__init__.py)."""
    from pam_jail.login.policy import RULES

    families = {f"{POLICY}.{module}" for _label, module, _check in RULES.values() if module}
    on_disk = {f"{POLICY}.{p.stem}" for p in (LOGIN / "policy").glob("*.py")}
    assert {f"{POLICY}.rsync", f"{POLICY}.borg", f"{POLICY}.repos"} <= families <= on_disk
    imported = _pam_jail_modules_after("import pam_jail.login.policy")
    assert POLICY in imported
    assert imported & families == set()
    assert f"{POLICY}.options" not in imported
    decided = _pam_jail_modules_after(
        "from pam_jail.login.policy import Policy, decide\n"
        "policy = Policy('t', programs=(('/usr/bin/rsync', 'rsync'),))\n"
        "d = decide(policy, 'rsync --server -vlogDtpre.iLsfxCIvu . dest/', user='u',\n"
        "           home='/home/u', client_env={})\n"
        "assert d.allowed, d\n")
    assert decided & families == {f"{POLICY}.rsync"}
    assert f"{POLICY}.options" in decided


# Python code, after `from pam_jail.login.policy import RULES, Policy, decide`: the pivot
# simulated (no finder that reads files left), then every rule decides once.
AFTER_THE_PIVOT = (
    "sys.meta_path[:] = [f for f in sys.meta_path if f.__name__ != 'PathFinder']\n"
    "sys.path[:] = []\n"
    "for rule in sorted(RULES):\n"
    "    policy = Policy('t', programs=(('/usr/bin/prog', rule),))\n"
    "    d = decide(policy, 'prog', user='u', home='/home/u', client_env={})\n"
    "    assert d.rule.startswith('program /usr/bin/prog'), (rule, d.rule)\n")


def test_the_shell_path_holds_every_rule_family_across_its_pivot() -> None:
    """pam-jail-shell decides inside a jail without pam_jail. Before it confines, it
    calls policy.hold_families(): every family RULES can ask for is then either held
    (its byte-code in memory) or imported, and executed only when a command needs it.
    Here the pivot is simulated by dropping the finder that reads files: every rule
    still decides, and each decision loads its own family and no other."""
    code = (
        "import sys\n"
        "from pam_jail.login.policy import RULES, Policy, decide, hold_families\n"
        "hold_families()\n"
        "from pam_jail.login import MemoryFinder\n"
        "families = {m for _l, m, _f in RULES.values() if m}\n"
        "assert families <= {n.rsplit('.', 1)[1] for n in MemoryFinder.code}, "
        "MemoryFinder.code.keys()\n"
        "assert not [m for m in sys.modules if m.rsplit('.', 1)[-1] in families]\n"
        + AFTER_THE_PIVOT +
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules\n"
        "             if m.startswith('pam_jail.login.policy.')))\n")
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c",
                          f"import sys; sys.path[:0] = [{str(REPO)!r}]\n" + code],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    body = ast.get_source_segment(
        (LOGIN / "shell_entry.py").read_text(),
        next(n for n in ast.parse((LOGIN / "shell_entry.py").read_text()).body
             if isinstance(n, ast.FunctionDef) and n.name == "confine_and_run"))
    assert body is not None
    assert 0 < body.index("hold_families()") < body.index("confine_unprivileged(")


def test_held_byte_code_is_what_the_source_compiles_to(tmp_path: Path) -> None:
    """held serves a family only from a .pyc that is current for its source (as Python's
    loader checks it); a stale or missing one makes it import the source instead."""
    import py_compile
    import shutil

    from pam_jail.login.policy import held

    pkg = tmp_path / "heldpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fam.py").write_text("WHO = 'compiled'\n")
    py_compile.compile(str(pkg / "fam.py"), doraise=True)
    code = held._current_bytecode(str(pkg / "fam.py"))
    assert code is not None
    scope: dict[str, object] = {}
    exec(__import__("marshal").loads(code), scope)  # noqa: S102
    assert scope["WHO"] == "compiled"
    (pkg / "fam.py").write_text("WHO = 'edited after compiling'\n")   # size differs
    assert held._current_bytecode(str(pkg / "fam.py")) is None
    shutil.rmtree(pkg / "__pycache__")
    assert held._current_bytecode(str(pkg / "fam.py")) is None
