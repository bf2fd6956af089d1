"""The e2e harness itself: a plain (unjailed) sshd with real clients, and the PAM
service-name trick (sshd started through a symlink reads /etc/pam.d/<symlink name>)."""

from __future__ import annotations

import os
import stat

import pytest
from sshd_harness import AUTH_KEYS_DIR, PERMIT_PAM, Sshd, User

pytestmark = [pytest.mark.root, pytest.mark.e2e]


@pytest.fixture
def plain(sshd_factory, user_factory) -> tuple[Sshd, User]:  # type: ignore[no-untyped-def]
    return sshd_factory(), user_factory(shell="/bin/sh")


def test_login_runs_command_as_user(plain: tuple[Sshd, User]) -> None:
    sshd, user = plain
    proc = sshd.ssh(user, "id", "-un")
    assert proc.returncode == 0, proc.stderr + sshd.log_text()
    assert proc.stdout.strip() == user.name
    assert sshd.wait_for_log(f"Accepted publickey for {user.name}")


def test_harness_files_are_private_and_cleaned_up(sshd_factory, user_factory) -> None:  # type: ignore[no-untyped-def]
    sshd = sshd_factory()
    user = user_factory()
    st = os.stat(sshd.dir)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
    assert not sshd.dir.startswith("/tmp")
    st = os.stat(f"{AUTH_KEYS_DIR}/{user.name}")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert os.readlink(sshd.binary) == "/usr/sbin/sshd"
    assert "Subsystem sftp /usr/lib/openssh/sftp-server" in sshd.config_text()
    pid = sshd.proc.pid
    sshd.stop()
    assert not os.path.exists(sshd.dir)
    assert not os.path.lexists(sshd.binary)
    assert not os.path.exists(sshd.pam_path)
    assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "scp-O"])
def test_scp_upload_and_download(plain: tuple[Sshd, User], tmp_path, legacy: bool) -> None:  # type: ignore[no-untyped-def]
    sshd, user = plain
    src = tmp_path / "up.txt"
    src.write_text("hello scp\n")
    proc = sshd.scp(user, str(src), ":up.txt", legacy=legacy)
    assert proc.returncode == 0, proc.stderr
    remote = os.path.join(user.home, "up.txt")
    with open(remote) as fh:
        assert fh.read() == "hello scp\n"
    assert os.stat(remote).st_uid == user.uid
    back = tmp_path / "down.txt"
    proc = sshd.scp(user, ":up.txt", str(back), legacy=legacy)
    assert proc.returncode == 0, proc.stderr
    assert back.read_text() == "hello scp\n"
    # -O uses the scp protocol (server runs a command: `scp -t`), the default the sftp
    # subsystem
    log = sshd.log_text()
    if legacy:
        assert f"Starting session: command for {user.name}" in log
        assert "subsystem 'sftp'" not in log
    else:
        assert f"Starting session: subsystem 'sftp' for {user.name}" in log


def test_sftp_batch(plain: tuple[Sshd, User], tmp_path) -> None:  # type: ignore[no-untyped-def]
    sshd, user = plain
    (tmp_path / "a.txt").write_text("via sftp\n")
    batch = f"put {tmp_path}/a.txt a.txt\nls -1\nget a.txt {tmp_path}/b.txt\npwd\n"
    proc = sshd.sftp_batch(user, batch)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.txt").read_text() == "via sftp\n"
    assert f"Remote working directory: {user.home}" in proc.stdout
    # a failing command fails the batch
    proc = sshd.sftp_batch(user, "get does-not-exist /dev/null\n")
    assert proc.returncode != 0


def test_rsync_upload_and_download(plain: tuple[Sshd, User], tmp_path) -> None:  # type: ignore[no-untyped-def]
    sshd, user = plain
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("via rsync\n")
    proc = sshd.rsync(user, "-a", f"{tree}/", ":tree/")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(user.home, "tree/sub/f.txt")) as fh:
        assert fh.read() == "via rsync\n"
    proc = sshd.rsync(user, "-a", ":tree/", f"{tmp_path}/back/")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "sub" / "f.txt").read_text() == "via rsync\n"


def test_forwarding_helpers_see_data_on_plain_sshd(plain: tuple[Sshd, User]) -> None:
    """Positive control: without restrictions, -W, -L and -D carry bytes both ways."""
    sshd, user = plain
    for attempt in (sshd.try_forward_w, sshd.try_forward_l, sshd.try_forward_d):
        result = attempt(user)
        assert result.data_through, (attempt.__name__, result, sshd.log_text())


def test_forwarding_helpers_see_refusal(sshd_factory, user_factory) -> None:  # type: ignore[no-untyped-def]
    """Negative control: DisableForwarding yes stops all three."""
    sshd = sshd_factory(extra_config="DisableForwarding yes\n")
    user = user_factory()
    for attempt in (sshd.try_forward_w, sshd.try_forward_l, sshd.try_forward_d):
        result = attempt(user)
        assert not result.data_through, (attempt.__name__, result)
        assert result.target_received == b""


def test_tty_allocation(plain: tuple[Sshd, User]) -> None:
    sshd, user = plain
    proc = sshd.ssh(user, "tty", tty=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("/dev/pts/")


# ---- the PAM service-name trick


def test_pam_service_name_is_symlink_name(sshd_factory, user_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """pam_exec reports PAM_SERVICE: it is the symlink's basename, not 'sshd'."""
    out = tmp_path / "service.txt"
    script = tmp_path / "record.sh"  # pam.d lines are split on blanks: no shell quoting there
    script.write_text(f'#!/bin/sh\necho "$PAM_SERVICE $PAM_TYPE $PAM_USER" >> {out}\n')
    script.chmod(0o755)
    pam = PERMIT_PAM + f"account optional pam_exec.so {script}\n" \
        f"session optional pam_exec.so {script}\n"
    sshd = sshd_factory(pam_text=pam)
    user = user_factory()
    proc = sshd.ssh(user, "true")
    assert proc.returncode == 0, proc.stderr + sshd.log_text()
    seen = out.read_text().splitlines()
    assert f"{sshd.service} account {user.name}" in seen
    assert f"{sshd.service} open_session {user.name}" in seen
    assert sshd.service.startswith("sshd-pjt-")


@pytest.mark.parametrize("stack", ["account", "session"])
def test_pam_deny_in_own_service_refuses_login(sshd_factory, user_factory, stack: str) -> None:  # type: ignore[no-untyped-def]
    """The sshd started through the symlink obeys /etc/pam.d/<symlink name>.

    account: sshd refuses the login (client exit 255).
    session: sshd 9.2 does NOT drop the connection; it logs the pam_open_session()
    error, restricts the session (auth_restrict_session) and runs no command (client
    exit 254, no output) and no forwarding.
    """
    if stack == "account":
        pam = "@include common-auth\naccount requisite pam_deny.so\n" \
              "@include common-session-noninteractive\n"
    else:
        pam = "@include common-auth\n@include common-account\nsession requisite pam_deny.so\n"
    sshd = sshd_factory(pam_text=pam)
    user = user_factory()
    marker = os.path.join(user.home, "ran")
    proc = sshd.ssh(user, "touch", marker, ";", "id", "-un")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert not os.path.exists(marker)
    if stack == "account":
        assert proc.returncode == 255
        assert sshd.wait_for_log(f"Access denied for user {user.name} by PAM account")
    else:
        assert proc.returncode == 254
        assert sshd.wait_for_log("PAM: pam_open_session(): ")
        assert not sshd.try_forward_w(user).data_through
    # the same user and key log in through a second sshd whose service permits
    other = sshd_factory()
    proc = other.ssh(user, "touch", marker, ";", "id", "-un")
    assert proc.stdout.strip() == user.name
    assert os.path.exists(marker)


def test_pam_auth_stack_not_consulted_for_publickey(sshd_factory, user_factory) -> None:  # type: ignore[no-untyped-def]
    """`auth requisite pam_deny.so` alone does NOT stop a key login: sshd runs only the
    account and session stacks for publickey (pam_authenticate is for passwords and
    keyboard-interactive). A jail that must refuse has to do it in account/session."""
    pam = "auth requisite pam_deny.so\n@include common-account\n" \
          "@include common-session-noninteractive\n"
    sshd = sshd_factory(pam_text=pam)
    user = user_factory()
    proc = sshd.ssh(user, "id", "-un")
    assert proc.returncode == 0, proc.stderr + sshd.log_text()
    assert proc.stdout.strip() == user.name
