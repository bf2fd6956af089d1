"""config.py: parsing, validation (all errors at once), file ownership rules."""

from __future__ import annotations

import os

import pytest
from util import safe_tmpdir

from pam_jail.login.config import check_config_file
from pam_jail.login.config_file import load_config, parse_config
from pam_jail.login.errors import ConfigError

GOOD = """
[jails]
  [[web]]
  root = /srv/jails/web
  mode = pam
  allow_shell = yes
  [[files]]
  root = /srv/jails/files/
  mode = sftp
[users]
alice = web
[groups]
sftponly = files
[options]
default = web
unmapped = deny
"""


def test_parse_good() -> None:
    cfg = parse_config(GOOD.splitlines())
    assert set(cfg.jails) == {"web", "files"}
    web = cfg.jails["web"]
    assert (web.root, web.mode, web.allow_shell) == ("/srv/jails/web", "pam", True)
    assert web.flag("devpts", False) is True  # spec default
    assert cfg.jails["files"].root == "/srv/jails/files"
    assert cfg.users == {"alice": "web"}
    assert cfg.groups == {"sftponly": "files"}
    assert (cfg.default, cfg.unmapped) == ("web", "deny")


def test_defaults_when_sections_missing() -> None:
    cfg = parse_config(["[jails]", "[[a]]", "root = /j/a"])
    assert cfg.jails["a"].mode == "pam" and cfg.jails["a"].allow_shell is False
    assert cfg.users == {} and cfg.default is None and cfg.unmapped == "allow"


def test_every_error_reported_at_once() -> None:
    text = """
[jails]
  [[a]]
  root = relative/path
  [[b]]
  root = /srv/b
  mode = chroot
  colour = blue
  [[c]]
  mode = pam
[users]
bob = nosuch
root = b
[options]
default = missing
unmapped = maybe
[extra]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text.splitlines())
    problems = "\n".join(info.value.problems)
    for needle in ("jails/a/root", "jails/b/mode", "jails/b/colour: unknown key",
                   "jails/c/root", "users/bob: unknown jail 'nosuch'", "users/root",
                   "options/default", "options/unmapped", "unknown section [extra]"):
        assert needle in problems, needle
    assert len(info.value.problems) >= 9


@pytest.mark.parametrize("root", ["/", "/srv/../etc", "/srv/./x", "srv/x"])
def test_bad_roots(root: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(["[jails]", "[[a]]", f"root = {root}"])


@pytest.mark.parametrize("name", ["al*ce", "a,b", "-x", "a b"])
def test_bad_user_names_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(["[jails]", "[[a]]", "root = /j/a", "[users]", f"'{name}' = a"])


def test_syntax_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(["[jails", "x = 1"])
    assert "invalid syntax" in str(info.value)


@pytest.fixture
def cfgdir() -> str:
    import shutil

    path = safe_tmpdir("cfg")
    yield path
    shutil.rmtree(path)


def test_load_refuses_unsafe_file(cfgdir: str) -> None:
    path = f"{cfgdir}/jails.ini"
    with open(path, "w") as fh:
        fh.write(GOOD)
    os.chmod(path, 0o644)
    assert load_config(path).users == {"alice": "web"}
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("writable by group or other" in p for p in info.value.problems)
    os.chmod(path, 0o644)
    os.chown(path, 65534, 0)
    assert any("not root" in p for p in check_config_file(path))
    os.chown(path, 0, 0)
    os.chmod(cfgdir, 0o777)
    assert any(cfgdir in p for p in check_config_file(path))
    os.chmod(cfgdir, 0o755)
    assert check_config_file(path) == []
    assert load_config(path, check_owner=False).default == "web"


def test_load_missing_file(cfgdir: str) -> None:
    with pytest.raises(ConfigError):
        load_config(f"{cfgdir}/nope.ini")


# ------------------------------------------- the fast reader against configobj + validate
# pam_jail never imports configobj (start-up time of the login path); these tests hold
# read_ini to configobj's reading of every file it accepts, and the key table to the
# configspec validate applies.

import string  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pam_jail.login.config import JAIL_KEYS, OPTION_KEYS, read_ini  # noqa: E402
from pam_jail.login.config_file import _typed, configspec_lines, validate  # noqa: E402


def _configobj_tree(text: str) -> tuple[dict[str, object], bool]:
    from configobj import ConfigObj, ConfigObjError

    try:
        raw = ConfigObj(text.splitlines(), list_values=True, interpolation=False,
                        raise_errors=False, file_error=False, encoding=None)
    except ConfigObjError:
        return {}, False

    def plain(section: dict[str, object]) -> dict[str, object]:
        return {k: plain(v) if isinstance(v, dict) else v for k, v in section.items()}

    return plain(raw), True


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    """Equal, and in the same key order at every level."""
    if list(a) != list(b):
        return False
    return all(_same(v, b[k]) if isinstance(v, dict) and isinstance(b[k], dict)  # type: ignore[arg-type]
               else v == b[k] for k, v in a.items())


def _assert_agrees(text: str) -> None:
    tree, problems = read_ini(text, "t.ini")
    if problems:
        return  # outside the subset: refused (fail closed); configobj may read it
    ref, ok = _configobj_tree(text)
    assert ok, text
    assert _same(tree, ref), (text, tree, ref)


_PLAIN = st.text(alphabet=string.ascii_letters + string.digits + "/._-%*$=:@ ", min_size=1,
                 max_size=12).map(str.strip).filter(bool)
_BLANK = st.sampled_from(["", " ", "  ", "\t"])
_COMMENT = st.sampled_from(["", " # c", "# x, y", "  #'\"[]"])


@st.composite
def _item(draw: st.DrawFn) -> str:
    text = draw(st.one_of(_PLAIN, st.text(alphabet="ab ,#'=[]", max_size=6)))
    kind = draw(st.sampled_from(["plain", "single", "double"]))
    if kind == "single" and "'" not in text:
        return f"'{text}'"
    if kind == "double" and '"' not in text:
        return f'"{text}"'
    cleaned = "".join(c for c in text if c not in "'\",#").strip()
    return cleaned or "x"


@st.composite
def _value(draw: st.DrawFn) -> str:
    items = draw(st.lists(_item(), max_size=4))
    sep = draw(st.sampled_from([",", ", ", " ,", " , "]))
    text = sep.join(items)
    if draw(st.booleans()) and items:
        text += draw(st.sampled_from([",", " ,"]))
    if not items and draw(st.booleans()):
        text = ","
    return text + draw(_COMMENT)


_KEYS = st.one_of(st.sampled_from(["root", "mode", "allow_shell", "devpts", "proc",
                                   "network", "hostname", "default", "unmapped", "alice",
                                   "/usr/bin/scp"]),
                  st.from_regex(r"[a-z][a-z0-9_.$-]{0,8}", fullmatch=True))


@st.composite
def _ini(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for name in draw(st.lists(st.sampled_from(["jails", "users", "groups", "options",
                                               "default", "user:a", "group:b", "x"]),
                              max_size=4)):
        lines.append(draw(_BLANK) + f"[{name}]" + draw(_COMMENT))
        for key in draw(st.lists(_KEYS, max_size=3)):
            quote = draw(st.sampled_from(["", "'", '"']))
            lines.append(f"{draw(_BLANK)}{quote}{key}{quote}{draw(_BLANK)}={draw(_BLANK)}"
                         f"{draw(_value())}")
        for sub in draw(st.lists(st.sampled_from(["web", "rules", "s"]), max_size=2)):
            lines.append(draw(_BLANK) + f"[[{sub}]]")
            for key in draw(st.lists(_KEYS, max_size=3)):
                lines.append(f"{draw(_BLANK)}{key} = {draw(_value())}")
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# comment", "   "])))
    return "\n".join(lines)


@settings(max_examples=700, deadline=None)
@given(text=_ini())
def test_reader_agrees_with_configobj_on_generated_files(text: str) -> None:
    _assert_agrees(text)
    tree, problems = read_ini(text, "t.ini")
    # the generator writes the documented subset: only duplicates make it refuse
    if problems:
        assert all("Duplicate" in p for p in problems), (text, problems)


@settings(max_examples=700, deadline=None)
@given(text=st.text(alphabet="[]=,#'\" \tabc/\n", max_size=80))
def test_reader_never_accepts_what_configobj_reads_differently(text: str) -> None:
    _assert_agrees(text)


@pytest.mark.parametrize("value, expected", [
    ("a", "a"), ("a, b", ["a", "b"]), ("a,", ["a"]), (",", []), ("", ""), ('""', ""),
    ("'a, b'", "a, b"), ('"a#b" # c', "a#b"), ("a # c", "a"), ("a#c", "a"),
    ("/usr/bin/scp /usr/bin/rsync", "/usr/bin/scp /usr/bin/rsync"), ('a, ""', ["a", ""]),
    ("GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_GLOBAL=/dev/null"),
])
def test_reader_values(value: str, expected: object) -> None:
    tree, problems = read_ini(f"[s]\nk = {value}\n", "t")
    assert problems == [] and tree == {"s": {"k": expected}}
    _assert_agrees(f"[s]\nk = {value}\n")


@pytest.mark.parametrize("line", ["k = a'b", 'k = "a"b', "k = '''x'''", "k = a,,b", "k = ,a",
                                  "k = 'a", "a b = c", "[ x ]", "[x]]", "[[[x]]]",
                                  "k = a\x01", "k = a\u00a0b"])
def test_reader_refuses_outside_the_subset(line: str) -> None:
    _tree, problems = read_ini(f"[s]\n{line}\n", "t")
    assert problems


_TYPED_VALUES = st.one_of(st.sampled_from(["pam", "shell", "sftp", "chroot", "allow", "deny",
                                           "yes", "No", "TRUE", "off", "1", "0", "maybe",
                                           "", "/srv/j", "/", "web", "keyring",
                                           "TIOCSTI", "newer"]),
                          st.lists(st.sampled_from(["a", "yes", "ptrace", "clone"]),
                                   max_size=2))


def _pam_jail_names(value: object, table: str) -> list[str]:
    """validate's custom check for configspec_lines' `pam_jail_names(TABLE)`: a name,
    an empty value or a list, each name one syscalls.ALLOWABLE knows."""
    from validate import VdtTypeError, VdtValueError

    from pam_jail.login import syscalls

    assert table == "seccomp"
    names = value if isinstance(value, list) else [value] if value else []
    if not all(isinstance(n, str) for n in names):
        raise VdtTypeError(value)
    if any(n not in syscalls.ALLOWABLE for n in names):
        raise VdtValueError(value)
    return list(names)


@settings(max_examples=400, deadline=None)
@given(jail=st.dictionaries(st.sampled_from(list(JAIL_KEYS) + ["colour"]), _TYPED_VALUES),
       options=st.dictionaries(st.sampled_from(list(OPTION_KEYS)), _TYPED_VALUES))
def test_key_table_matches_validate(jail: dict[str, object],
                                    options: dict[str, object]) -> None:
    """One definition of the keys: read by validate (configobj's configspec made from
    JAIL_KEYS/OPTION_KEYS) and by pam_jail, the same values are accepted, typed alike."""
    from configobj import ConfigObj, flatten_errors
    from validate import Validator

    raw = ConfigObj({"jails": {"web": dict(jail)}, "options": dict(options)},
                    configspec=configspec_lines())
    result = raw.validate(Validator({"pam_jail_names": _pam_jail_names}),
                          preserve_errors=True)
    bad_ref = set() if result is True else {
        "/".join([*s, k or ""]) for s, k, _e in flatten_errors(raw, result)}
    problems: list[str] = []
    validate({"jails": {"web": dict(jail)}, "options": dict(options)}, problems, "t")
    ours = {p.split(":")[0] for p in problems
            if not p.endswith("unknown key") and "/root: must be an absolute" not in p
            and "unknown jail" not in p}
    assert ours == bad_ref, (jail, options, problems, bad_ref)
    if not bad_ref:  # both accept: the typed values (defaults filled in) are the same
        typed = _typed({k: v for k, v in jail.items() if k in JAIL_KEYS}, JAIL_KEYS, "j", [])
        assert typed == {k: raw["jails"]["web"][k] for k in JAIL_KEYS}
        typed = _typed(dict(options), OPTION_KEYS, "o", [])
        assert typed == {k: raw["options"][k] for k in OPTION_KEYS}


def test_pid_no_is_refused_for_mode_pam() -> None:
    """Without its own PID namespace a mode-pam session reaches the user's host processes
    (kill, ptrace: a way out), so `pid = no` makes the file invalid; mode shell always has
    one and ignores the key."""
    text = "[jails]\n  [[web]]\n  root = /srv/jails/web\n  pid = {}\n  mode = {}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text.format("no", "pam"))
    assert any(p.startswith("jails/web/pid: 'no' is not allowed") for p in info.value.problems)
    assert parse_config(text.format("yes", "pam")).jails["web"].flag("pid")
    assert parse_config(text.format("no", "shell")).jails["web"].mode == "shell"
