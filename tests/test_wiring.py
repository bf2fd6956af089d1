"""Fail-safe wiring, tried for real through sshd (issue 12 items 1-5, issue 11 items 5-6):
an admin's mistakes never give a jailed user an unjailed session, and never lock out root
or a user no valid config jails.

One module-scoped world: a mode-pam user (login shell pam-jail-lsh), a mode-shell user
(pam-jail-shell), a mode-sftp user (pam-jail-shell; sshd's ChrootDirectory), and an
unjailed user (/bin/sh); jails built by the builder, homes with jailkit's `/./` marker.
Each test starts the sshd it needs (own PAM stack, own sshd_config)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import (
    LIBDIR,
    LSH_SHELL,
    PAM_STACK,
    SHELL_ENTRY,
    SYSTEM_CONFIG,
    build_jail,
    make_jailed_pair,
    pam_lines,
    remove_jail,
    undoing,
    write_config,
)
from sshd_harness import PERMIT_PAM, Sshd, User, make_user, remove_user
from syslog_capture import SyslogCapture

pytestmark = [pytest.mark.root, pytest.mark.e2e]

MARKER = "/etc/pam_jail-wiring-host-marker"        # on the host, never in a jail
MARKER_TEXT = "only-on-the-host-7c1e"               # its content (never typed by a test)
LSH = """\
[default]
programs = /usr/bin/id, /bin/ls, /bin/cat, /usr/bin/scp, /usr/lib/openssh/sftp-server
pass_env = LANG
  [[rules]]
  /usr/bin/id = none
  /bin/ls = any
  /bin/cat = any
"""
PAM_LSH = LSH.replace("pass_env = LANG\n", "pass_env = LANG\nallow_shell = yes\n"
                                           "shell = /bin/bash\n")


@dataclass
class World:
    pam: User
    shell: User
    sftp: User
    plain: User
    pam_jail: str
    shell_jail: str
    sftp_jail: str
    config: str            # the valid jails.ini text
    syslog: SyslogCapture

    def jail_listing(self, jail: str) -> list[str]:
        return sorted(e for e in os.listdir(jail) if not e.startswith("."))

    def sshd(self, pam_text: str = PAM_STACK, *, match: bool = True, extra: str = "",
             sftp_subsystem: str | None = None, jails_ini: str | None = None) -> Sshd:
        from pam_jail.admin.sshd_config import generate
        from pam_jail.login.config_file import parse_config

        config = extra + (generate(parse_config(jails_ini or self.config)) if match else "")
        kw = {"sftp_subsystem": sftp_subsystem} if sftp_subsystem else {}
        return Sshd(pam_text, config, **kw).start()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
        pair = make_jailed_pair(LSH, undo, pam_lsh=PAM_LSH)
        sftp_name, plain_name = f"pjf{os.getpid() % 100000}", f"pjn{os.getpid() % 100000}"
        sftp_jail = build_jail(["uidbasics"], [])
        undo.append(lambda: remove_jail(sftp_jail))
        sftp = make_user(sftp_name, SHELL_ENTRY, f"{sftp_jail}/./home/{sftp_name}",
                         create_home=False)
        undo.append(lambda: remove_user(sftp_name, remove_home=False))
        from pam_jail.admin.build import add_users

        add_users(sftp_jail, [sftp_name])
        plain = make_user(plain_name, "/bin/sh")
        undo.append(lambda: remove_user(plain_name))
        with open(SYSTEM_CONFIG) as fh:
            config = fh.read().replace(
                "[users]\n", f"  [[drop]]\n  root = {sftp_jail}\n  mode = sftp\n[users]\n"
                f"{sftp_name} = drop\n")
        write_config(config)
        with open(MARKER, "w") as fh:
            fh.write(MARKER_TEXT + "\n")
        undo.append(lambda: os.unlink(MARKER))
        yield World(pair.pam_user, pair.shell_user, sftp, plain, pair.pam_jail,
                    pair.shell_jail, sftp_jail, config, syslog)


@pytest.fixture
def sshds() -> Iterator[list[Sshd]]:
    made: list[Sshd] = []
    yield made
    for sshd in made:
        sshd.stop()


def _unjailed(result: subprocess.CompletedProcess[str], world: World) -> bool:
    """Did this session see the host? (/ listed with the host's entries, or the marker.)"""
    words = result.stdout.split()
    return MARKER_TEXT in result.stdout or ("proc" in words and "sys" in words)


# --- 1. a missing, broken or bypassed PAM line gives "refused" ------------------------

BYPASSED = {
    "no pam_jail lines": PERMIT_PAM,
    "optional, module file missing": PERMIT_PAM.replace(
        "@include common-session-noninteractive",
        "@include common-session-noninteractive\n"
        "session optional pam_python.so /nonexistent/pam_jail_pam.py"),
    "behind a sufficient module": PERMIT_PAM.replace(
        "@include common-session-noninteractive",
        "@include common-session-noninteractive\nsession sufficient pam_permit.so\n"
        + pam_lines("session")),
    "pam_python.so removed": PERMIT_PAM.replace(
        "@include common-session-noninteractive",
        "@include common-session-noninteractive\n" + pam_lines("session").replace(
            "pam_python.so", "/lib/security/pam_python_removed.so").replace(
            "required", "optional")),
}


@pytest.mark.parametrize("variant", sorted(BYPASSED))
def test_bypassed_pam_line_never_gives_a_host_shell(world: World, sshds: list[Sshd],
                                                    variant: str) -> None:
    sshd = world.sshd(BYPASSED[variant])
    sshds.append(sshd)
    for command in ("/usr/bin/id", f"/bin/cat {MARKER}", "/bin/ls /"):
        result = sshd.ssh(world.pam, command)
        assert result.returncode != 0 and "uid=" not in result.stdout, result
        assert not _unjailed(result, world), result
        assert "pam_jail: login refused: not inside a jail" in result.stderr, result.stderr
    interactive = sshd.ssh(world.pam, tty=True, input=f"cat {MARKER}; ls /; exit\n")
    assert not _unjailed(interactive, world) and "not inside a jail" in interactive.stdout
    # mode shell confines itself; mode sftp's login shell refuses every command
    jailed = sshd.ssh(world.shell, "/bin/ls /")
    assert jailed.returncode == 0, jailed.stderr
    assert sorted(jailed.stdout.split()) == world.jail_listing(world.shell_jail)
    sftp_cmd = sshd.ssh(world.sftp, f"/bin/cat {MARKER}")
    assert sftp_cmd.returncode != 0 and not _unjailed(sftp_cmd, world)
    # the unjailed user is untouched
    assert sshd.ssh(world.plain, "id -un").stdout.strip() == world.plain.name


def test_pam_jail_lsh_run_on_the_host_refuses(world: World) -> None:
    result = subprocess.run(["setpriv", f"--reuid={world.pam.uid}", f"--regid={world.pam.gid}",
                             "--clear-groups", LSH_SHELL, "-c", "/usr/bin/id"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "uid=" not in result.stdout
    assert result.stderr.startswith("pam_jail: login refused: not inside a jail"), result.stderr


# --- 2. a broken jails.ini locks out no one it does not jail --------------------------

def _pamtester(pam_text: str, user: str) -> subprocess.CompletedProcess[str]:
    service = f"pjwiring{os.getpid()}"
    with open(f"/etc/pam.d/{service}", "w") as fh:
        fh.write(pam_text)
    try:
        return subprocess.run(["pamtester", service, user, "acct_mgmt", "open_session",
                               "close_session"], capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(f"/etc/pam.d/{service}")


BROKEN = {
    "syntax": "[jails\n",
    "unknown key": "[jails]\n  [[x]]\n  root = /srv/x\n  colour = red\n",
    "unknown jail": "[users]\nsomeone = nosuchjail\n",
    "relative root": "[jails]\n  [[x]]\n  root = srv/x\n",
    "bad mode": "[jails]\n  [[x]]\n  root = /srv/x\n  mode = chroot\n",
    "empty (truncated)": "",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_config_locks_out_neither_root_nor_unjailed(world: World, sshds: list[Sshd],
                                                            kind: str) -> None:
    sshd = world.sshd()
    sshds.append(sshd)
    write_config(BROKEN[kind])
    try:
        plain = sshd.ssh(world.plain, "id -un")
        pam = sshd.ssh(world.pam, f"/bin/cat {MARKER}")
        shell = sshd.ssh(world.shell, f"/bin/cat {MARKER}")
        root = _pamtester(PAM_STACK, "root")
        unguarded_root = _pamtester(PAM_STACK.replace(
            "[success=1 default=ignore] pam_succeed_if.so", "optional pam_permit.so"), "root")
    finally:
        write_config(world.config)
    assert plain.returncode == 0 and plain.stdout.strip() == world.plain.name, plain.stderr
    assert root.returncode == 0, root.stderr
    assert unguarded_root.returncode == 0, unguarded_root.stderr   # even without the guard
    for result in (pam, shell):
        assert result.returncode != 0 and not _unjailed(result, world), result


def test_last_known_good_keeps_jailed_users_working(world: World, sshds: list[Sshd]) -> None:
    from pam_jail.login.config_file import good_path, install_config

    sshd = world.sshd()
    sshds.append(sshd)
    install_config(SYSTEM_CONFIG, world.config)          # what pam-jail validate/edit do
    try:
        with open(SYSTEM_CONFIG, "w") as fh:             # an editor writing in place
            fh.write(world.config[: len(world.config) // 2] + "\n[broken")
        world.syslog.clear()
        pam = sshd.ssh(world.pam, "/bin/ls /")
        shell = sshd.ssh(world.shell, "/bin/ls /")
    finally:
        write_config(world.config)
        os.unlink(good_path(SYSTEM_CONFIG))
    assert pam.returncode == 0, pam.stderr
    assert sorted(pam.stdout.split()) == world.jail_listing(world.pam_jail)
    assert sorted(shell.stdout.split()) == world.jail_listing(world.shell_jail)
    assert world.syslog.wait_for("last-known-good used", f"user={world.pam.name}")


def test_in_place_rewrites_never_unjail(world: World, sshds: list[Sshd]) -> None:
    """jails.ini rewritten in place (truncate, then slow writes, as `cat >` or an editor
    do) while jailed users log in: each login is jailed or refused, never on the host."""
    sshd = world.sshd()
    sshds.append(sshd)
    stop = threading.Event()

    def rewrite() -> None:
        data = world.config.encode()
        while not stop.is_set():
            with open(SYSTEM_CONFIG, "r+b") as fh:
                fh.truncate(0)
                for i in range(0, len(data), 40):
                    fh.write(data[i:i + 40])
                    fh.flush()
                    time.sleep(0.002)

    writer = threading.Thread(target=rewrite)
    writer.start()
    outcomes = {"jailed": 0, "refused": 0}
    try:
        for i in range(24):
            user, jail = ((world.pam, world.pam_jail), (world.shell, world.shell_jail))[i % 2]
            result = sshd.ssh(user, "/bin/ls /")
            assert not _unjailed(result, world), result
            if result.returncode == 0:
                assert sorted(result.stdout.split()) == world.jail_listing(jail), result
                outcomes["jailed"] += 1
            else:
                outcomes["refused"] += 1
    finally:
        stop.set()
        writer.join()
        write_config(world.config)
    assert outcomes["jailed"] + outcomes["refused"] == 24, outcomes


# --- 3. the session stack: Debian's stock file, pam_jail last --------------------------

def _stock_sshd_stack() -> str:
    """Debian's /etc/pam.d/sshd as shipped, with etc/pam.d/pam_jail's lines where it
    says: account after common-account, session at the very end."""
    with open("/usr/share/openssh/sshd.pam" if os.path.exists("/usr/share/openssh/sshd.pam")
              else "/etc/pam.d/sshd") as fh:
        stock = fh.read()
    stock = stock.replace("@include common-account\n",
                          "@include common-account\n" + pam_lines("account"))
    return stock.rstrip("\n") + "\n" + pam_lines("session")


def test_debian_stock_stack_with_pam_jail_last(world: World, sshds: list[Sshd]) -> None:
    """pam_limits, pam_env, pam_motd... run before pam_jail, on the host; a forking
    module placed after pam_jail runs inside the PID namespace, whose PID 1 is ours: the
    session and a second channel still work."""
    stack = _stock_sshd_stack() + "session optional pam_exec.so quiet /bin/true\n"
    sshd = world.sshd(stack)
    sshds.append(sshd)
    result = sshd.ssh(world.pam, "/bin/ls /")
    assert result.returncode == 0, result.stderr + sshd.log_text()[-2000:]
    assert sorted(result.stdout.split()) == world.jail_listing(world.pam_jail)
    tty = sshd.ssh(world.pam, tty=True, input="id -un; echo pid-$$; exit\n")
    assert world.pam.name in tty.stdout, tty.stdout + tty.stderr
    for user in (world.shell, world.plain):
        assert sshd.ssh(user, "/usr/bin/id").returncode == 0


def test_homes_without_chdir_errors(world: World, sshds: list[Sshd], tmp_path: str) -> None:
    """The `/./` homes: sshd chdirs to the passwd home inside the jail (mode pam: after
    the PAM chroot; mode sftp: after ChrootDirectory) through the builder's home link."""
    sshd = world.sshd()
    sshds.append(sshd)
    result = sshd.ssh(world.pam, "/usr/bin/id")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    pwd = sshd.ssh(world.pam, tty=True, input="pwd; exit\n")
    assert f"/home/{world.pam.name}" in pwd.stdout.split(), pwd.stdout
    src = os.path.join(str(tmp_path), "h.txt")
    with open(src, "w") as fh:
        fh.write("relative upload\n")
    put = sshd.sftp_batch(world.sftp, f"put {src} h.txt\npwd\n")
    assert put.returncode == 0, put.stderr
    assert f"Remote working directory: /home/{world.sftp.name}" in put.stdout
    with open(f"{world.sftp_jail}/home/{world.sftp.name}/h.txt") as fh:
        assert fh.read() == "relative upload\n"


# --- 4. sshd settings that would bypass the jail: refused at login ---------------------

SETTINGS = {
    "no Match blocks": {"match": False},
    "internal-sftp subsystem": {"sftp_subsystem": "internal-sftp", "match": False,
                                "extra": "Match User *\n    DisableForwarding yes\n"
                                         "    AllowTcpForwarding no\n"
                                         "    AllowAgentForwarding no\n"
                                         "    AllowStreamLocalForwarding no\n"
                                         "    PermitTunnel no\n    X11Forwarding no\n"
                                         "    PermitUserRC no\n    PermitListen none\n"
                                         "    PermitOpen none\n"},
    # an earlier Match block: among matching blocks the first AcceptEnv wins
    "AcceptEnv LD_*": {"extra": "Match User *\n    AcceptEnv LANG LD_*\n"},
    "PermitUserEnvironment": {"extra": "PermitUserEnvironment yes\n"},
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_unsafe_sshd_settings_refuse_jailed_logins(world: World, sshds: list[Sshd],
                                                   setting: str) -> None:
    sshd = world.sshd(**SETTINGS[setting])   # type: ignore[arg-type]
    sshds.append(sshd)
    world.syslog.clear()
    affected = [world.pam, world.shell, world.sftp]
    if setting == "internal-sftp subsystem":   # only the login-shell mode could be bypassed
        affected = [world.shell]
    for user in affected:
        result = sshd.ssh(user, "/usr/bin/id")
        assert result.returncode != 0 and "uid=" not in result.stdout, (user.name, result)
        assert world.syslog.wait_for("session refused", f"user={user.name}",
                                     "is not set up for jail")
        listing = sshd.sftp_batch(user, f"get {MARKER} /dev/null\nls /\n")
        assert listing.returncode != 0 and "proc" not in listing.stdout
    assert sshd.ssh(world.plain, "id -un").returncode == 0


# --- 5. what this login runs must not be the user's (issue 11 item 6) -------------------

@pytest.mark.parametrize("who", ["pam", "shell"])
def test_user_owned_program_directory_refused(world: World, sshds: list[Sshd], who: str,
                                              tmp_path: str) -> None:
    """A user-owned JAIL/usr/lib/openssh: the user could put their own sftp-server
    there. The limited shell refuses to run anything from it."""
    user, jail = (world.pam, world.pam_jail) if who == "pam" else (world.shell,
                                                                   world.shell_jail)
    sshd = world.sshd()
    sshds.append(sshd)
    target = f"{jail}/usr/lib/openssh"
    os.chown(target, user.uid, user.gid)
    try:
        assert sshd.sftp_batch(user, "ls /\n").returncode != 0
        result = sshd.ssh(user, "/usr/lib/openssh/sftp-server")   # to see the one line
        assert result.returncode != 0, result.stdout
        assert "unsafe in this jail: /usr/lib/openssh: owned by uid" in result.stderr, \
            result.stderr
    finally:
        os.chown(target, 0, 0)
    assert sshd.sftp_batch(user, "ls /\n").returncode == 0


def test_user_owned_lsh_runtime_refused_at_login(world: World, sshds: list[Sshd]) -> None:
    """The pam_jail package inside a PAM-path jail, owned by the user: its policy could be
    replaced. The PAM module refuses the login before the limited shell runs."""

    lib = LIBDIR
    sshd = world.sshd()
    sshds.append(sshd)
    world.syslog.clear()
    target = f"{world.pam_jail}{lib}/pam_jail"
    os.chown(target, world.pam.uid, world.pam.gid)
    try:
        result = sshd.ssh(world.pam, "/usr/bin/id")
        assert result.returncode != 0 and "uid=" not in result.stdout
        assert world.syslog.wait_for("session refused", f"user={world.pam.name}",
                                     f"{lib}/pam_jail: owned by uid {world.pam.uid}")
    finally:
        os.chown(target, 0, 0)


# --- 6. unjailed users never reach pam_python -----------------------------------------

def test_guard_keeps_unjailed_users_out_of_pam_python(world: World, sshds: list[Sshd]) -> None:
    """The guard in front of the pam_python lines: with a pam_python.so that cannot be
    loaded, only users with pam_jail's login shells are refused."""
    broken = PAM_STACK.replace("pam_python.so", "/lib/security/pam_python_missing.so")
    sshd = world.sshd(broken)
    sshds.append(sshd)
    assert sshd.ssh(world.plain, "id -un").stdout.strip() == world.plain.name
    assert _pamtester(broken, "root").returncode == 0
    for user in (world.pam, world.shell, world.sftp):
        result = sshd.ssh(user, "/usr/bin/id")
        assert result.returncode != 0 and "uid=" not in result.stdout, result



def test_mapped_user_whose_shell_was_never_set_is_refused(world: World, sshds: list[Sshd],
                                                          tmp_path: str) -> None:
    """A user mapped to the mode-pam jail by hand whose login shell is still /bin/sh: the
    guard skips pam_python for that shell, and the regenerated Match block's ForceCommand
    runs pam-jail-lsh on the host, which refuses: commands, an interactive login and sftp.
    The jail's own users are unchanged (their requests arrive in SSH_ORIGINAL_COMMAND)."""
    mapped = world.config.replace("[users]\n", f"[users]\n{world.plain.name} = pamj\n")
    write_config(mapped)
    try:
        sshd = world.sshd(jails_ini=mapped)
        sshds.append(sshd)
        for command in ("/usr/bin/id", f"/bin/cat {MARKER}", "/bin/ls /"):
            result = sshd.ssh(world.plain, command)
            assert result.returncode != 0 and "uid=" not in result.stdout, result
            assert not _unjailed(result, world), result
            assert "pam_jail: login refused: not inside a jail" in result.stderr, result
        interactive = sshd.ssh(world.plain, tty=True, input=f"cat {MARKER}; ls /; exit\n")
        assert not _unjailed(interactive, world), interactive
        assert "not inside a jail" in interactive.stdout, interactive
        listing = sshd.sftp_batch(world.plain, f"get {MARKER} {tmp_path}/m\n")
        assert listing.returncode != 0 and not os.path.exists(f"{tmp_path}/m"), listing
        # the jail's own user: commands, interactive and sftp through the forced lsh
        assert f"({world.pam.name})" in sshd.ssh(world.pam, "/usr/bin/id").stdout
        assert sorted(sshd.ssh(world.pam, "/bin/ls /").stdout.split()) == \
            world.jail_listing(world.pam_jail)
        shell = sshd.ssh(world.pam, tty=True, input="echo in-$((6*7)); exit\n")
        assert "in-42" in shell.stdout, shell
        got = sshd.sftp_batch(world.pam, "ls /\n")
        assert got.returncode == 0 and "/sys" not in got.stdout, got
        refused = sshd.ssh(world.pam, "/bin/sh -c id")
        assert refused.returncode == 126 and "uid=" not in refused.stdout, refused
    finally:
        write_config(world.config)


def test_internal_sftp_goes_through_the_login_shell(world: World, sshds: list[Sshd],
                                                    tmp_path: str) -> None:
    """A global `Subsystem sftp internal-sftp` with the generated Match blocks: the mode
    shell block's ForceCommand pam-jail-shell routes sftp through the login shell, so it
    works, jailed; commands and interactive logins still go through the allow-list."""
    sshd = world.sshd(sftp_subsystem="internal-sftp")
    sshds.append(sshd)
    listing = sshd.sftp_batch(world.shell, f"ls /\nget {MARKER} {tmp_path}/m\n")
    assert "/etc" in listing.stdout and "/sys" not in listing.stdout, listing
    assert listing.returncode != 0 and not os.path.exists(f"{tmp_path}/m")   # not on host
    assert sshd.ssh(world.shell, "/usr/bin/id").returncode == 0
    refused = sshd.ssh(world.shell, "/bin/sh -c id")
    assert refused.returncode == 126 and "uid=" not in refused.stdout


def test_jails_ini_allow_shell_no_refuses_interactive_logins(world: World,
                                                             sshds: list[Sshd]) -> None:
    """An interactive login needs both files to allow it: jails.ini's allow_shell (read
    by pam-jail-shell; for mode pam passed by the PAM module) and the jail's lsh.ini."""
    sshd = world.sshd()
    sshds.append(sshd)
    ok = sshd.ssh(world.pam, tty=True, input="echo shell-$((6*7)); exit\n")
    assert "shell-42" in ok.stdout, ok                    # both allow: it runs
    write_config(world.config.replace("allow_shell = yes", "allow_shell = no"))
    try:
        for user in (world.pam, world.shell):
            result = sshd.ssh(user, tty=True, input="echo shell-$((6*7)); exit\n")
            assert "shell-42" not in result.stdout, (user.name, result)
            assert "allow_shell = no" in result.stdout + result.stderr, result
            assert sshd.ssh(user, "/usr/bin/id").returncode == 0     # commands still run
    finally:
        write_config(world.config)


def test_interactive_shell_mode_has_ptys_and_dev_tty(world: World, sshds: list[Sshd]) -> None:
    """Mode shell, `ssh -t`: /dev/tty works and a devpts instance of the user namespace
    hands out new ptys (/dev/ptmx)."""
    lsh = f"{world.shell_jail}/etc/pam_jail/lsh.ini"
    with open(lsh) as fh:
        original = fh.read()
    with open(lsh, "w") as fh:
        fh.write(original.replace("pass_env = LANG\n", "pass_env = LANG\nallow_shell = yes\n"
                                  "shell = /bin/bash\n"))
    sshd = world.sshd()
    sshds.append(sshd)
    try:
        result = sshd.ssh(world.shell, tty=True, input=(
            "echo x >/dev/tty && echo tty-$((1+1)); exec 3<>/dev/ptmx && echo ptmx-$((2+2)); "
            "ls /dev/pts; exit\n"))
    finally:
        with open(lsh, "w") as fh:
            fh.write(original)
    assert "tty-2" in result.stdout and "ptmx-4" in result.stdout, result


# --- issue 18: connection facts come from sshd, never from the PAM environment ------------

def test_pam_environment_cannot_pick_the_connection_sshd_is_asked_about(
        world: World, sshds: list[Sshd]) -> None:
    """Debian's stock stack runs `pam_env.so user_readenv=1` before pam_jail: a user who
    can write ~/.pam_environment sets SSH_CONNECTION (and every SSH_* name) in the PAM
    environment. An admin's Match block on this listener's LocalAddress opens
    forwarding; the PAM module must ask sshd about this very connection (read from the
    kernel) and refuse, whatever the environment names."""
    home = f"{world.shell_jail}/home/{world.shell.name}"       # a jailkit-style home
    assert os.path.realpath(f"{world.shell_jail}/./home/{world.shell.name}") == \
        os.path.realpath(home)
    env_file = f"{home}/.pam_environment"
    fake = "127.0.0.9 4444 127.0.0.2 22"
    with open(env_file, "w") as fh:
        for name in ("SSH_CONNECTION", "SSH_CLIENT"):
            fh.write(f'{name} DEFAULT="{fake}" OVERRIDE="{fake}"\n')
    os.chown(env_file, world.shell.uid, -1)
    opened = ("Match LocalAddress 127.0.0.1\n    DisableForwarding no\n"
              "    AllowStreamLocalForwarding yes\n    AllowTcpForwarding yes\n")
    try:
        stock = world.sshd(_stock_sshd_stack())
        sshds.append(stock)
        assert "user_readenv=1" in stock.pam_text
        # without the admin's block the user logs in: pam_env's file does not break it
        assert stock.ssh(world.shell, "/usr/bin/id").returncode == 0
        sshd = world.sshd(_stock_sshd_stack(), extra=opened)
        sshds.append(sshd)
        world.syslog.clear()
        result = sshd.ssh(world.shell, "/usr/bin/id")
        assert result.returncode != 0 and "uid=" not in result.stdout, result
        assert world.syslog.wait_for("session refused", f"user={world.shell.name}",
                                     "is not set up for jail")
        forward = sshd.try_forward_l(world.shell)
        assert not forward.data_through, forward
    finally:
        os.unlink(env_file)
