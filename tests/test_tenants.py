"""Customers sharing a jail (issue 19): one customer attacks another through what the
jail has in common. Two customers in one mode-pam jail and two in one mode-shell jail,
a real sshd on 127.0.0.1, real ssh sessions; each attack runs in customer A's session
against customer B (jails.ini `private`, default yes: pam_jail/login/view.py).

The worst case on purpose: B's home is 0755 with a 0644 file (an admin's chmod, a
useradd default), and this host does not protect symlinks in sticky dirs unless asked."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import PAM_STACK, undoing
from sshd_harness import Sshd, User, make_group, make_user, remove_group, remove_user
from testbed import (
    LSH_SHELL,
    SHELL_ENTRY,
    build_jail,
    remove_jail,
    restore_config,
    save_config,
    unique,
    write_config,
)

pytestmark = [pytest.mark.root, pytest.mark.e2e]

MODES = ["pam", "shell"]
LSH = """\
[default]
programs = /bin/sh, /bin/ls, /bin/cat
pass_env = LANG
  [[rules]]
  /bin/sh = any
  /bin/ls = any
  /bin/cat = any
"""


@dataclass
class Tenants:
    sshd: Sshd
    jails: dict[str, str]                 # mode -> jail root
    users: dict[str, tuple[User, User]]   # mode -> (customer A, customer B)

    def sh(self, mode: str, who: int, script: str) -> subprocess.CompletedProcess[str]:
        return self.sshd.ssh(self.users[mode][who], f"/bin/sh -c '{script}'")

    def background(self, mode: str, who: int, script: str) -> subprocess.Popen[str]:
        argv = self.sshd.ssh_argv(self.users[mode][who], f"/bin/sh -c '{script}'")
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


@pytest.fixture(scope="module")
def tenants() -> Iterator[Tenants]:
    from pam_jail.admin.build import add_users, copy_into
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        saved = save_config()
        undo.append(lambda: restore_config(saved))
        jails: dict[str, str] = {}
        users: dict[str, tuple[User, User]] = {}
        for mode, shell in (("pam", LSH_SHELL), ("shell", SHELL_ENTRY), ("sftp", SHELL_ENTRY)):
            names = [unique(f"pjt{mode[0]}a"), unique(f"pjt{mode[0]}b")]
            team = unique("pjtg")
            gid = make_group(team)
            undo.append(lambda g=team: remove_group(g))
            made = []
            for name in names:
                made.append(make_user(name, shell, f"/home/{name}", [team],
                                      create_home=False))
                undo.append(lambda n=name: remove_user(n, remove_home=False))
            profiles = {"pam": ["basicshell", "ptys", "lsh"], "shell": ["basicshell", "ptys"],
                        "sftp": ["uidbasics"]}[mode]
            root = build_jail(profiles, names, lsh=LSH, shell=shell if mode == "pam" else None)
            undo.append(lambda r=root: remove_jail(r))
            if mode != "sftp":
                copy_into(root, ["/bin/ln", "/bin/df", "/bin/dd"])
            if mode != "sftp" and not os.path.exists(f"{root}/dev/zero"):
                # the host's node is bound over it
                os.mknod(f"{root}/dev/zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
            os.makedirs(f"{root}/var/tmp", mode=0o1777, exist_ok=True)
            os.chmod(f"{root}/var/tmp", 0o1777)   # a disk /var/tmp the customers share
            for name in names:
                subprocess.run(["usermod", "-d", f"{root}/./home/{name}", name], check=True)
            if mode == "pam":
                add_users(root, names, shell=LSH_SHELL)
            # sharing on purpose: home/shared-GROUP of a group both have; one of a group
            # neither has
            os.mkdir(f"{root}/home/shared-{team}")
            os.chown(f"{root}/home/shared-{team}", 0, gid)
            os.chmod(f"{root}/home/shared-{team}", 0o2770)
            os.mkdir(f"{root}/home/shared-adm", 0o755)
            victim = made[1]
            os.chmod(f"{root}/home/{victim.name}", 0o755)
            with open(f"{root}/home/{victim.name}/secret", "w") as fh:
                fh.write("b's secret\n")
            os.chmod(f"{root}/home/{victim.name}/secret", 0o644)
            jails[mode] = root
            users[mode] = (made[0], made[1])
        (pa, pb), (sa, sb), (fa, fb) = users["pam"], users["shell"], users["sftp"]
        write_config(f"[jails]\n  [[tpam]]\n  root = {jails['pam']}\n  mode = pam\n"
                     "  allow_shell = yes\n  tmp_size = 8M\n"
                     f"  [[tshell]]\n  root = {jails['shell']}\n  mode = shell\n"
                     "  allow_shell = yes\n  tmp_size = 8M\n"
                     f"  [[tsftp]]\n  root = {jails['sftp']}\n  mode = sftp\n"
                     f"[users]\n{pa.name} = tpam\n{pb.name} = tpam\n"
                     f"{sa.name} = tshell\n{sb.name} = tshell\n"
                     f"{fa.name} = tsftp\n{fb.name} = tsftp\n")
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        undo.append(sshd.stop)
        yield Tenants(sshd, jails, users)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_the_other_customers_home_cannot_be_named(tenants: Tenants, mode: str) -> None:
    a, b = tenants.users[mode]
    listing = _ok(tenants.sh(mode, 0, "ls -a /home")).split()
    assert a.name in listing and b.name not in listing, listing
    result = tenants.sh(mode, 0, f"cat /home/{b.name}/secret")
    assert result.returncode != 0 and "secret" not in result.stdout, result
    # their own home stays theirs, read and write
    _ok(tenants.sh(mode, 0, f"echo mine > /home/{a.name}/own && cat /home/{a.name}/own"))
    with open(f"{tenants.jails[mode]}/home/{a.name}/own") as fh:
        assert fh.read() == "mine\n"


@pytest.mark.parametrize("mode", MODES)
def test_a_shared_group_directory_stays_shared(tenants: Tenants, mode: str) -> None:
    a, b = tenants.users[mode]
    shared = [n for n in _ok(tenants.sh(mode, 0, "ls -a /home")).split()
              if n.startswith("shared-")]
    assert len(shared) == 1 and shared[0] != "shared-adm", shared
    _ok(tenants.sh(mode, 0, f"umask 007; echo from-a > /home/{shared[0]}/note"))
    assert _ok(tenants.sh(mode, 1, f"cat /home/{shared[0]}/note")) == "from-a\n"


@pytest.mark.parametrize("mode", MODES)
def test_tmp_dirs_are_the_sessions_own(tenants: Tenants, mode: str) -> None:
    a, b = tenants.users[mode]
    for d in ("/tmp", "/var/tmp"):
        _ok(tenants.sh(mode, 0, f"echo planted > {d}/from-a"))
        assert "from-a" not in _ok(tenants.sh(mode, 1, f"ls -a {d}"))
        assert not os.path.exists(f"{tenants.jails[mode]}{d}/from-a"), "written to the disk"


@pytest.mark.parametrize("mode", MODES)
def test_a_symlink_planted_in_tmp_cannot_redirect_anothers_write(tenants: Tenants,
                                                                 mode: str) -> None:
    """The plant and the race: A keeps replanting /tmp/report -> B's own file while B
    writes /tmp/report over and over; B's file must never be created."""
    a, b = tenants.users[mode]
    victim = f"{tenants.jails[mode]}/home/{b.name}/clobbered"
    target = f"/home/{b.name}/clobbered"
    planter = tenants.background(
        mode, 0, f"i=0; while [ $i -lt 300 ]; do ln -sfn {target} /tmp/report; "
                 f"ln -sfn {target} /var/tmp/report; i=$((i+1)); sleep 0.01; done")
    try:
        time.sleep(0.5)
        _ok(tenants.sh(mode, 1, "i=0; while [ $i -lt 100 ]; do echo x > /tmp/report; "
                                "echo x > /var/tmp/report; rm -f /tmp/report /var/tmp/report;"
                                " i=$((i+1)); done"))
    finally:
        planter.wait(timeout=60)
    assert planter.returncode == 0, planter.stderr.read() if planter.stderr else ""
    assert not os.path.lexists(victim), "A's symlink redirected B's write"


@pytest.mark.parametrize("mode", MODES)
def test_passwd_and_group_name_only_the_user_and_the_system(tenants: Tenants,
                                                            mode: str) -> None:
    a, b = tenants.users[mode]
    passwd = _ok(tenants.sh(mode, 0, "cat /etc/passwd"))
    names = [line.split(":")[0] for line in passwd.splitlines()]
    assert "root" in names and a.name in names and b.name not in names, names
    group = _ok(tenants.sh(mode, 0, "cat /etc/group"))
    assert a.name in group and b.name not in group, group
    # the jail on disk still names both; the session cannot change its copy
    with open(f"{tenants.jails[mode]}/etc/passwd") as fh:
        assert b.name in fh.read()
    result = tenants.sh(mode, 0, "echo evil::0:0::/:/bin/sh >> /etc/passwd")
    assert result.returncode != 0
    assert "evil" not in _ok(tenants.sh(mode, 0, "cat /etc/passwd"))


@pytest.mark.parametrize("mode", MODES)
def test_tmp_is_sized_by_the_jail_option(tenants: Tenants, mode: str) -> None:
    result = tenants.sh(mode, 0, "dd if=/dev/zero of=/tmp/big bs=1M count=20 2>&1; "
                                 "ls -l /tmp/big")
    assert "No space left" in result.stdout, result
    size = int(result.stdout.split()[-5])
    assert size <= 8 * 1024 * 1024, size


def test_sftp_customers_of_one_jail_see_their_own_home_and_tmp(tenants: Tenants,
                                                               tmp_path: str) -> None:
    """Mode sftp (sshd's ChrootDirectory, internal-sftp): the same view, mounted by the
    PAM module in sshd's process before sshd enters the jail."""
    a, b = tenants.users["sftp"]
    sftp = tenants.sshd.sftp_batch
    listing = sftp(a, "ls -1a /home\n")
    assert listing.returncode == 0, listing.stderr
    assert a.name in listing.stdout and b.name not in listing.stdout, listing.stdout
    got = sftp(a, f"get /home/{b.name}/secret {tmp_path}/stolen\n")
    assert got.returncode != 0 and not os.path.exists(f"{tmp_path}/stolen"), got
    local = f"{tmp_path}/plant"
    with open(local, "w") as fh:
        fh.write("planted\n")
    put = sftp(a, f"put {local} /tmp/from-a\nput {local} /home/{a.name}/kept\n")
    assert put.returncode == 0, put.stderr
    assert "from-a" not in sftp(b, "ls -1a /tmp\n").stdout
    assert not os.path.exists(f"{tenants.jails['sftp']}/tmp/from-a")
    assert os.path.exists(f"{tenants.jails['sftp']}/home/{a.name}/kept")


def test_a_stub_home_leaves_sshd_nothing_to_complain_about(tenants: Tenants) -> None:
    """A user jailed by jailuser (passwd home: the root-owned stub JAIL/./.home/USER) in
    mode pam: sshd chdirs to that stub inside the jail after the PAM chroot. The view
    covers /.home but keeps the user's own stub: no "Could not chdir" on the login."""
    from pam_jail.admin import users
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    name = unique("pjtst")
    user = make_user(name, "/bin/sh", f"/home/{name}", create_home=False)
    try:
        users.jail_user(tenants.jails["pam"], name, mode="pam", jail_config="tpam",
                        config_file="/etc/pam_jail/jails.ini")
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        try:
            result = sshd.ssh(user, "/bin/ls /home")
        finally:
            sshd.stop()
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
        assert result.stdout.split() == [name], result.stdout
    finally:
        users.undo_user(name)
        remove_user(name, remove_home=False)
