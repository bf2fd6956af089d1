"""safety.py: the one path-safety rule (pure judgements, then on a real tree)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator

import pytest
from util import safe_tmpdir

from pam_jail.login.safety import (
    check_jail,
    check_path_chain,
    components,
    judge_component,
    judge_system_entry,
    open_checked,
)

D = stat.S_IFDIR
L = stat.S_IFLNK
F = stat.S_IFREG


@pytest.mark.parametrize("mode,uid,expect", [
    (D | 0o755, 0, None),
    (D | 0o1777, 0, "writable by group or other"),
    (D | 0o775, 0, "writable by group or other"),
    (D | 0o755, 1000, "not root"),
    (L | 0o777, 0, "symlink"),
    (F | 0o644, 0, "not a directory"),
])
def test_judge_component(mode: int, uid: int, expect: str | None) -> None:
    result = judge_component("/x", mode, uid)
    assert (result is None) if expect is None else (expect in (result or ""))


def test_judge_system_entry() -> None:
    assert judge_system_entry("/j/etc", D | 0o755, 0) is None
    assert judge_system_entry("/j/lib", L | 0o777, 0) is None  # root-owned link: fine
    assert "not root" in (judge_system_entry("/j/etc/passwd", F | 0o644, 1000) or "")
    assert "writable" in (judge_system_entry("/j/etc/passwd", F | 0o664, 0) or "")


def test_components() -> None:
    assert components("/srv/jails/web") == ["/", "/srv", "/srv/jails", "/srv/jails/web"]
    assert components("/") == ["/"]


@pytest.fixture
def jail() -> Iterator[str]:
    base = safe_tmpdir("safe")
    root = f"{base}/jail"
    for d in ("etc/pam_jail", "bin", "home/u", "tmp"):
        os.makedirs(f"{root}/{d}")
    for d in ("", "etc", "etc/pam_jail", "bin", "home"):
        os.chmod(f"{root}/{d}", 0o755)
    os.chmod(f"{root}/tmp", 0o1777)
    with open(f"{root}/etc/passwd", "w") as fh:
        fh.write("root:x:0:0::/:/bin/sh\n")
    os.chmod(f"{root}/etc/passwd", 0o644)
    os.chown(f"{root}/home/u", 65534, 65534)
    yield root
    shutil.rmtree(base)


def test_clean_jail_passes(jail: str) -> None:
    assert check_jail(jail) == []
    fd = open_checked(jail)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(jail))
    finally:
        os.close(fd)


def test_tmp_is_world_writable_parent_is_refused() -> None:
    # /tmp itself is 1777: a jail below it can never pass
    problems = check_path_chain("/tmp/anything")
    assert problems and "/tmp: writable by group or other" in problems[0]


@pytest.mark.parametrize("planted,expect", [
    ("chmod etc 777", "etc: writable"),
    ("chown etc/passwd", "etc/passwd: owned by uid 65534"),
    ("chmod etc/passwd 666", "etc/passwd: writable"),
    ("chown bin", "bin: owned by uid 65534"),
    ("chmod root 775", "jail: writable"),
    ("chown root", "jail: owned by uid 65534"),
])
def test_unsafe_jail_detected(jail: str, planted: str, expect: str) -> None:
    verb, target, *arg = planted.split()
    path = jail if target == "root" else f"{jail}/{target}"
    if verb == "chmod":
        os.chmod(path, int(arg[0], 8))
    else:
        os.chown(path, 65534, 65534)
    problems = check_jail(jail)
    assert any(expect in p for p in problems), problems
    if target in ("root",):
        with pytest.raises(OSError):
            os.close(open_checked(jail))


def test_symlinked_jail_path_refused(jail: str) -> None:
    link = f"{os.path.dirname(jail)}/link"
    os.symlink(jail, link)
    assert any("symlink" in p for p in check_path_chain(link))
    with pytest.raises(OSError):
        os.close(open_checked(link))


def test_dotdot_refused() -> None:
    assert check_path_chain("/srv/../etc")
    with pytest.raises(OSError):
        open_checked("/srv/../etc")


def test_check_exec_looks_at_each_path_once_and_reports_each_problem_once(
        jail: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script, its interpreter and the library directories (LIB_DIRS: /lib is a link
    to usr/lib here, as on merged-/usr systems): every path is lstat'ed once per check
    (the walks share /, /usr, /usr/lib), and a group-writable /usr/lib, on the way to
    several of them, is one problem."""
    import posix

    from pam_jail.login.safety import LIB_DIRS, check_exec

    for d in ("usr/bin", "usr/lib/x86_64-linux-gnu"):
        os.makedirs(f"{jail}/{d}", mode=0o755, exist_ok=True)
    for d in ("usr", "usr/bin", "usr/lib", "usr/lib/x86_64-linux-gnu"):
        os.chmod(f"{jail}/{d}", 0o755)
    os.symlink("usr/lib", f"{jail}/lib")
    with open(f"{jail}/usr/bin/interp", "wb") as fh:
        fh.write(b"\x7fELF-not-really\n")
    with open(f"{jail}/usr/bin/script", "w") as fh:
        fh.write("#!/usr/bin/interp\n")
    os.chmod(f"{jail}/usr/bin/interp", 0o755)
    os.chmod(f"{jail}/usr/bin/script", 0o755)
    assert check_exec(jail, "/usr/bin/script", dirs=LIB_DIRS) == []
    calls: list[str] = []
    lstat = posix.lstat

    def counting(path: str) -> os.stat_result:
        calls.append(path)
        return lstat(path)

    monkeypatch.setattr(posix, "lstat", counting)
    os.chmod(f"{jail}/usr/lib", 0o775)
    problems = check_exec(jail, "/usr/bin/script", dirs=LIB_DIRS)
    assert problems == ["/usr/lib: writable by group or other (mode 0775; it could replace "
                        "what this login runs)"], problems
    assert sorted(set(calls)) == sorted(calls), calls
    assert f"{jail}/usr/lib/x86_64-linux-gnu" in calls and f"{jail}/usr/bin/interp" in calls
