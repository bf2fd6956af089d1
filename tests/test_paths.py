"""pam_jail/login/paths.py against the library it stands in for: every helper gives what
posixpath (genericpath for isdir) gives, on generated paths and on a tree with links, and
environ()/getenv() what os.environ gives, non-UTF-8 bytes included. Pure: no root.
(The login path imports neither os nor os.path: tests/test_layout.py.)"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pam_jail.login import paths

REPO = Path(__file__).resolve().parent.parent

# the edge cases by name, then any NUL-free text (lone surrogates included: a file name
# that did not decode arrives as one), then paths made of awkward components
EDGES = ["", "/", "//", "///", ".", "..", "a//b/../c/", "//x", "///x", "/..", "//..",
         "../a", "a/..", "a/../..", "./", "a/./b/.", "~", "a b/ c", "\udcff/é", "é/../ü/",
         "/a\0/../b", "a\0b/.."]
CHARS = st.characters(blacklist_characters="\0")
COMPONENT = st.sampled_from(["", ".", "..", "a", "bc", "é", " ", "\udcff"]) \
    | st.text(CHARS, max_size=6)
BUILT = st.builds(lambda lead, parts, tail: lead + "/".join(parts) + tail,
                  st.sampled_from(["", "/", "//", "///"]),
                  st.lists(COMPONENT, max_size=6), st.sampled_from(["", "/", "//"]))
PATH = st.sampled_from(EDGES) | st.text(CHARS, max_size=20) | BUILT


@settings(max_examples=2000, deadline=None)
@given(PATH)
def test_pure_helpers_are_posixpaths(path: str) -> None:
    assert paths.normpath(path) == posixpath.normpath(path)
    assert paths.dirname(path) == posixpath.dirname(path)
    assert paths.basename(path) == posixpath.basename(path)
    assert paths.isabs(path) == posixpath.isabs(path)
    assert paths.abspath(path) == posixpath.abspath(path)   # against this process's cwd


@settings(max_examples=1000, deadline=None)
@given(PATH, st.lists(PATH, max_size=4))
@example("", [])
@example("a", [""])
@example("a/", ["/b", "", "c"])
@example("", ["", ""])
def test_join_is_posixpaths(first: str, rest: list[str]) -> None:
    assert paths.join(first, *rest) == posixpath.join(first, *rest)


def test_the_edge_cases_by_hand() -> None:
    """What the generated cases must include, spelled out (posixpath's own answers)."""
    assert paths.normpath("//x") == "//x" and paths.normpath("///x") == "/x"
    assert paths.normpath("") == "." and paths.normpath("a//b/../c/") == "a/c"
    assert paths.normpath("/../a") == "/a" and paths.normpath("../a/..") == ".."
    assert paths.dirname("/a/") == "/a" and paths.dirname("//") == "//"
    assert paths.dirname("a") == "" and paths.dirname("/a//b") == "/a"
    assert paths.basename("a/") == "" and paths.basename("") == ""
    assert paths.join("a", "/b", "c") == "/b/c" and paths.join("a", "") == "a/"


# ------------------------------------------------------------------- the file system

NAMES = ["d", "f", "ld", "lf", "dangling", "loop", "missing", "d/sub", "ld/sub", "f/x",
         "lf/x", ".", "..", "", "d/../f", "x" * 300]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A directory, a file, links to each, a dangling link, a link loop, a link to a
    link, and a path that goes through a link to a directory."""
    root = tmp_path_factory.mktemp("paths")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "f").write_text("x")
    (root / "ld").symlink_to("d")
    (root / "lf").symlink_to("f")
    (root / "dangling").symlink_to("nowhere")
    (root / "loop").symlink_to("loop")
    (root / "lld").symlink_to("ld")
    yield str(root)


FS_PATH = st.builds(lambda lead, parts, tail: lead + "/".join(parts) + tail,
                    st.sampled_from(["", "/", "//", "./", "../"]),
                    st.lists(st.sampled_from(NAMES + ["lld", "d/sub/..", "\udcff", "a\0b"]),
                             min_size=0, max_size=4),
                    st.sampled_from(["", "/", "/.", "//"]))


@settings(max_examples=1500, deadline=None)
@given(FS_PATH, st.booleans())
def test_file_system_helpers_are_posixpaths(tree: str, path: str, absolute: bool) -> None:
    """isdir, islink, lexists and abspath on the tree, relative to it (the working
    directory) and absolute; a NUL or an unencodable surrogate is False, never raised."""
    full = tree + "/" + path if absolute else path
    cwd = os.getcwd()
    os.chdir(tree)
    try:
        assert paths.isdir(full) == os.path.isdir(full), full
        assert paths.islink(full) == os.path.islink(full), full
        assert paths.lexists(full) == os.path.lexists(full), full
        assert paths.abspath(full) == os.path.abspath(full), full
    finally:
        os.chdir(cwd)


def test_the_tree_answers_what_it_should(tree: str) -> None:
    """The fixture does hold every kind (else the comparison above would be blind)."""
    ask = {name: (paths.isdir(f"{tree}/{name}"), paths.islink(f"{tree}/{name}"),
                  paths.lexists(f"{tree}/{name}"))
           for name in ("d", "f", "ld", "lf", "dangling", "loop", "missing", "f/x")}
    assert ask == {"d": (True, False, True), "f": (False, False, True),
                   "ld": (True, True, True), "lf": (False, True, True),
                   "dangling": (False, True, True), "loop": (False, True, True),
                   "missing": (False, False, False), "f/x": (False, False, False)}
    assert not paths.isdir("a\0b") and not paths.lexists("\ud800")


# ------------------------------------------------------------------- the environment

def test_environ_is_os_environ_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, after a change through os.environ (it writes posix.environ)."""
    monkeypatch.setenv("PAM_JAIL_TEST_PATHS", "vé\udcff")
    monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    assert paths.environ() == dict(os.environ)
    assert paths.getenv("PAM_JAIL_TEST_PATHS") == "vé\udcff"
    assert paths.getenv("SSH_ORIGINAL_COMMAND") is None


CHILD = """
import sys
sys.path[:0] = [sys.argv[1]]
from pam_jail.login import paths
env, one = paths.environ(), {k: paths.getenv(k) for k in ("K\\udcff", "V", "MISSING", "")}
assert "os" not in sys.modules, "paths imported os"
import os
assert env == dict(os.environ), (env, dict(os.environ))
assert one == {k: os.environ.get(k) for k in one}, one
print(ascii(env["V"]), ascii(env["K\\udcff"]), sys.getfilesystemencoding())
"""


@pytest.mark.parametrize("lang", ["C.UTF-8", "C", "POSIX"])
def test_environ_decodes_as_os_environ_does(lang: str) -> None:
    """Under Debian's python3 -IS, started with bytes that are not UTF-8 in a value and
    in a name, and under each locale a login may have: the same str as os.environ."""
    env = {b"LANG": lang.encode(), b"LC_ALL": lang.encode(), b"V": b"a\xff\xfe b\xc3\xa9",
           b"K\xff": b"\x80", b"EMPTY": b"", b"EQ": b"x=y"}
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c", CHILD, str(REPO)], env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["'a\\udcff\\udcfe", "b\\xe9'", "'\\udc80'"]


@given(mode=st.one_of(st.integers(0, 0o177777),
                      st.sampled_from([0o040755, 0o100644, 0o120777, 0o020620, 0o060660,
                                       0o010644, 0o140755, 0o104755, 0o102755, 0o041777])))
def test_the_stat_helpers_are_the_stat_modules(mode: int) -> None:
    """paths' copies of the stat module's file-type tests and constants (the login path
    does not import stat)."""
    import stat

    for name in ("S_IMODE", "S_IFMT", "S_ISDIR", "S_ISREG", "S_ISLNK", "S_ISCHR", "S_ISBLK"):
        assert getattr(paths, name)(mode) == getattr(stat, name)(mode), (name, oct(mode))
    for name in ("S_IFDIR", "S_IFCHR", "S_IFBLK", "S_IFREG", "S_IFLNK", "S_ISUID",
                 "S_ISGID", "S_ISVTX"):
        assert getattr(paths, name) == getattr(stat, name), name
