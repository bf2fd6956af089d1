"""jails.ini's lookup index (pam_jail/login/config_index.py) against the full parse: for every
user and group of generated files the index decides exactly what the file decides, and
anything that is not the index of the current file (stale, unsafe, damaged) is not used.

Root: the index, like jails.ini, counts only when root owns it."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator

import pytest
from util import safe_tmpdir

from pam_jail.login.config_file import install_config, load_config
from pam_jail.login.config_index import config_for, index_path
from pam_jail.login.errors import PamJailError
from pam_jail.login.resolve import Identity, resolve

pytestmark = pytest.mark.root

SHELL = "/usr/local/sbin/pam-jail-shell"


@pytest.fixture
def confdir() -> Iterator[str]:
    path = safe_tmpdir("idx")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def generated(rng: random.Random, users: int) -> str:
    jails = [f"j{n}" for n in range(5)] + ["odd%name"]
    lines = ["[jails]"]
    for n, name in enumerate(jails):
        lines += [f"  [[{name}]]", f"  root = /srv/jails/{name}",
                  f"  mode = {('pam', 'shell', 'sftp')[n % 3]}",
                  f"  allow_shell = {'yes' if n % 2 else 'no'}",
                  f"  hostname = h{n}%09x", f"  memory = {n + 1}G"]
        if n == 2:
            lines += ["  seccomp_allow = keyring, ptrace", "  private = no"]
    lines.append("[users]")
    lines += [f"u{n} = {rng.choice(jails)}" for n in range(users)]
    lines += ["user.with-dots = j1", "u%25 = odd%name"]
    lines.append("[groups]")
    lines += [f"g{n} = {rng.choice(jails)}" for n in range(users // 3)]
    lines += ["[options]", "default = j3", "unmapped = deny"]
    return "\n".join(lines) + "\n"


def decision(ident: Identity, cfg: object) -> object:
    try:
        jail = resolve(ident, cfg)  # type: ignore[arg-type]
    except PamJailError as err:
        return ("refused", str(err))
    if jail is None:
        return None
    return (jail.name, jail.root, jail.mode, jail.allow_shell, jail.source, jail.options,
            jail.home)


def identities(users: int, groups: int) -> Iterator[Identity]:
    names = [f"u{n}" for n in range(users)] + ["user.with-dots", "u%25", "nobody-mapped"]
    for n, name in enumerate(names):
        group = f"g{n % (groups + 5)}"
        extra = tuple(f"g{(n * 7 + k) % (groups + 5)}" for k in range(n % 4))
        yield Identity(name, 1000 + n, 1000 + n, f"/home/{name}", SHELL, group, extra)
    yield Identity("root", 0, 0, "/root", "/bin/bash", "root")
    yield Identity("marked", 2000, 2000, "/srv/jails/j4/./home/marked", SHELL, "nogroup")


@pytest.mark.parametrize("users", [0, 10, 500])
def test_the_index_decides_what_the_file_decides(confdir: str, users: int) -> None:
    path = f"{confdir}/jails.ini"
    install_config(path, generated(random.Random(users), users))
    full = load_config(path)
    seen = 0
    for ident in identities(users, users // 3):
        indexed = config_for(path, ident.name, (ident.group, *ident.groups))
        assert indexed is not None
        assert (indexed.default, indexed.unmapped) == (full.default, full.unmapped)
        assert decision(ident, indexed) == decision(ident, full), ident
        seen += decision(ident, full) is not None
    assert seen > users // 2          # most of them are jailed: the comparison means something


def test_a_file_changed_behind_validate_is_parsed_not_looked_up(confdir: str) -> None:
    path = f"{confdir}/jails.ini"
    install_config(path, generated(random.Random(1), 20))
    assert config_for(path, "u1", ()) is not None
    with open(path, "a") as fh:              # an editor, a template: no validate
        fh.write("# edited\n")
    assert config_for(path, "u1", ()) is None
    os.replace(path + ".good", path)         # even the same text under another inode
    assert config_for(path, "u1", ()) is None


@pytest.mark.parametrize("damage", ["group-writable", "not-root", "truncated", "garbage",
                                    "symlink", "absent"])
def test_an_index_that_is_not_safe_and_whole_is_not_used(confdir: str, damage: str) -> None:
    path = f"{confdir}/jails.ini"
    install_config(path, generated(random.Random(2), 50))
    index = index_path(path)
    if damage == "group-writable":
        os.chmod(index, 0o664)
    elif damage == "not-root":
        os.chown(index, 1, 1)
    elif damage == "truncated":
        with open(index, "r+b") as fh:
            fh.truncate(os.path.getsize(index) // 2)
    elif damage == "garbage":
        with open(index, "r+b") as fh:
            fh.seek(200)
            fh.write(b"\xff" * 64)
    elif damage == "symlink":
        os.rename(index, index + ".real")
        os.symlink(index + ".real", index)
    else:
        os.unlink(index)
    # never an exception, never a made-up decision: either the real one or None
    full = load_config(path)
    for ident in identities(50, 16):
        got = config_for(path, ident.name, (ident.group, *ident.groups))
        if damage in ("group-writable", "not-root", "symlink", "absent"):
            assert got is None
        elif got is not None:
            assert decision(ident, got) == decision(ident, full), ident


def test_an_unsafe_jails_ini_is_never_answered_from_its_index(confdir: str) -> None:
    path = f"{confdir}/jails.ini"
    install_config(path, generated(random.Random(3), 5))
    os.chmod(path, 0o666)
    assert config_for(path, "u1", ()) is None


def test_the_index_holds_each_jails_seccomp_program_as_the_profile_builds_it(
        confdir: str) -> None:
    """Precomputed when jails.ini is installed, loaded at login instead of built: byte
    for byte what syscalls.program() builds for the jail's seccomp_allow on this machine;
    one per distinct allow list; never for other options, another profile or a stale
    file."""
    from pam_jail.login import config_index
    from pam_jail.login.config_index import seccomp_program
    from pam_jail.login.syscalls import from_options, program

    path = f"{confdir}/jails.ini"
    text = ("[jails]\n  [[plain]]\n  root = /srv/jails/a\n  mode = pam\n"
            "  [[loose]]\n  root = /srv/jails/b\n  mode = shell\n"
            "  seccomp_allow = keyring, ptrace\n"
            "  [[off]]\n  root = /srv/jails/c\n  mode = shell\n  seccomp = no\n")
    cfg = install_config(path, text)
    machine = os.uname().machine
    for name in ("plain", "loose"):
        allow = from_options(cfg.jails[name].options)
        assert allow is not None
        assert seccomp_program(path, allow) == program(machine, allow)
    assert seccomp_program(path, ()) != seccomp_program(path, ("ptrace", "keyring"))
    assert seccomp_program(path, ("keyring",)) is None      # no jail has these options
    real = config_index.profile_identity
    config_index.profile_identity = lambda: "0 0 0 0"           # another syscalls.py
    try:
        assert seccomp_program(path, ()) is None
    finally:
        config_index.profile_identity = real
    with open(path, "a") as fh:                                # changed behind validate
        fh.write("\n")
    assert seccomp_program(path, ()) is None


def test_a_login_gets_its_jails_program_in_the_same_lookup(confdir: str) -> None:
    """config_for (what admit reads) carries each jail's precomputed filter on its
    JailDef, so a login opens the index once; none for `seccomp = no`, none when the
    profile changed (then the login builds it), none from a full parse of the file."""
    from pam_jail.login import config_index
    from pam_jail.login.syscalls import program

    path = f"{confdir}/jails.ini"
    install_config(path, "[jails]\n  [[loose]]\n  root = /srv/jails/b\n  mode = shell\n"
                   "  seccomp_allow = keyring, ptrace\n"
                   "  [[off]]\n  root = /srv/jails/c\n  mode = shell\n  seccomp = no\n"
                   "[users]\nann = loose\nbob = off\n")
    machine = os.uname().machine
    ann = config_for(path, "ann", ())
    bob = config_for(path, "bob", ())
    assert ann is not None and bob is not None
    assert ann.jails["loose"].program == program(machine, ("keyring", "ptrace"))
    assert bob.jails["off"].program is None
    ident = Identity("ann", 1500, 1500, "/home/ann", SHELL)
    jail = resolve(ident, ann)
    assert jail is not None and jail.program == ann.jails["loose"].program
    assert load_config(path).jails["loose"].program is None    # the file: built at login
    real = config_index.profile_identity
    config_index.profile_identity = lambda: "0 0 0 0"
    try:
        again = config_for(path, "ann", ())
        assert again is not None and again.jails["loose"].program is None
    finally:
        config_index.profile_identity = real
