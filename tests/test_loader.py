"""The loader environment (issue 11 item 4): LD_PRELOAD and its kind, set through sshd's
AcceptEnv or ~/.ssh/environment (PermitUserEnvironment yes), must never run the user's
code in pam_jail's login shells, on the host or in a jail. The installed pam-jail-shell and
pam-jail-lsh are static exec stubs (shells/entry.c): no dynamic loader ever reads their
environment, and they pass python3 none of the variables glibc drops for setuid programs.

These tests use a PAM stack WITHOUT pam_jail's lines on purpose: with them the PAM module
already refuses such an sshd (tests/test_wiring.py); here the entry itself is the defence."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import LSH_SHELL, SBINDIR, SHELL_ENTRY, make_jailed_pair, undoing
from sshd_harness import PERMIT_PAM, Sshd, User
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]

MARK = "PRELOAD-RAN-3f9a"
EVIL = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
    static const char m[] = "\n%s in %%d\n";
    char buf[64];
    int n = snprintf(buf, sizeof buf, m, getpid());
    write(2, buf, (size_t)n);
    write(1, buf, (size_t)n);
}
""".replace("%s", MARK)
LSH = """\
[default]
programs = /usr/bin/id
pass_env = LANG
  [[rules]]
  /usr/bin/id = none
"""


@dataclass
class World:
    sshd: Sshd
    shell: User
    pam: User
    shell_jail: str
    pam_jail: str
    evil: str          # host path of the preload library (readable by everyone)


def _compile(path: str) -> None:
    src = path + ".c"
    with open(src, "w") as fh:
        fh.write(EVIL)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", path, src], check=True)
    os.chmod(path, 0o755)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        pair = make_jailed_pair(LSH, undo)
        base = safe_tmpdir("loader")
        undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
        evil = f"{base}/evil.so"
        _compile(evil)
        for jail, user in ((pair.pam_jail, pair.pam_user), (pair.shell_jail, pair.shell_user)):
            inside = f"{jail}/home/{user.name}/evil.so"     # the user's own, in the jail
            shutil.copy(evil, inside)
            os.chown(inside, user.uid, user.gid)
        # the generated Match blocks would narrow AcceptEnv again: without that line the
        # loader variables really reach the login shell (the escape's precondition)
        match = "\n".join(line for line in generate(load_config()).splitlines()
                          if not line.strip().startswith("AcceptEnv"))
        extra = ("AcceptEnv LANG LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT GCONV_PATH\n"
                 "PermitUserEnvironment yes\n" + match + "\n")
        sshd = Sshd(PERMIT_PAM, extra).start()
        undo.append(sshd.stop)
        yield World(sshd, pair.shell_user, pair.pam_user, pair.shell_jail, pair.pam_jail,
                    evil)


def test_the_library_really_preloads(world: World) -> None:
    """The contrast: a dynamically linked program started the same way runs it."""
    result = subprocess.run(["/usr/bin/true"], env={"LD_PRELOAD": world.evil},
                            capture_output=True, text=True, timeout=30)
    assert MARK in result.stderr


def test_entries_are_static(world: World) -> None:
    from pam_jail.login.safety import elf_interpreter

    for entry in (SHELL_ENTRY, LSH_SHELL):
        with open(entry, "rb") as fh:
            head = fh.read(65536)
        assert head.startswith(b"\x7fELF") and elf_interpreter(head) is None, entry
    assert SBINDIR in SHELL_ENTRY


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_AUDIT"])
def test_acceptenv_ld_preload_does_not_run_in_pam_jail_shell(world: World, name: str) -> None:
    for lib in (world.evil, f"/home/{world.shell.name}/evil.so"):
        result = world.sshd.ssh(world.shell, "/usr/bin/id",
                                options=["-o", f"SetEnv={name}={lib}"])
        assert MARK not in result.stdout + result.stderr, result
        assert result.returncode == 0 and f"uid={world.shell.uid}(" in result.stdout, result


def test_user_environment_file_does_not_preload(world: World) -> None:
    """PermitUserEnvironment yes: sshd reads ~/.ssh/environment from the passwd home (the
    jail's home, the user's own) before it starts the login shell."""
    home = f"{world.shell_jail}/home/{world.shell.name}"
    os.makedirs(f"{home}/.ssh", exist_ok=True)
    with open(f"{home}/.ssh/environment", "w") as fh:
        fh.write(f"LD_PRELOAD={world.evil}\nLD_LIBRARY_PATH=/home/{world.shell.name}\n"
                 "GCONV_PATH=/home/x\nLANG=../../home/x\n")
    for path in (f"{home}/.ssh", f"{home}/.ssh/environment"):
        os.chown(path, world.shell.uid, world.shell.gid)
    try:
        result = world.sshd.ssh(world.shell, "/usr/bin/id")
        assert MARK not in result.stdout + result.stderr, result
        assert result.returncode == 0, result
    finally:
        shutil.rmtree(f"{home}/.ssh")


def test_ld_preload_does_not_run_in_pam_jail_lsh(world: World) -> None:
    """pam-jail-lsh inside a confined PAM-path jail (what the PAM module sets up: a
    private mount namespace with the jail bound nosuid,nodev, no_new_privs), started with
    the user's own library in LD_PRELOAD."""
    root = world.pam_jail
    lib = f"/home/{world.pam.name}/evil.so"
    script = ('mount --bind "$0" "$0"; mount -o remount,bind,nosuid,nodev "$0"; '
              'exec setpriv --no-new-privs chroot --userspec="$1" "$0" "$2" -c /usr/bin/id')
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, root,
         f"{world.pam.uid}:{world.pam.gid}", LSH_SHELL],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LD_PRELOAD": lib, "LANG": "C"},
        capture_output=True, text=True, timeout=60)
    assert MARK not in result.stdout + result.stderr, result
    assert result.returncode == 0 and f"uid={world.pam.uid}(" in result.stdout, result
