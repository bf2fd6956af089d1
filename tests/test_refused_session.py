"""A mode-pam session that pam_jail refuses at open_session, under Debian's stock
/etc/pam.d/sshd stack (pam_motd before pam_jail's session lines, which come last): the
client gets a clean refusal, nothing of the host.

sshd opens the PAM session in its privileged session process right after
authentication; pam_motd's lines (the host's /run/motd.dynamic and /etc/motd) go to
sshd's conversation, which stores them. On a refused session sshd used to carry on, and
for the channel's subsystem write what it stored (the motd, then pam_jail's own
PAM_ERROR_MSG) to the channel's output: an sftp client read the text as a packet
("Received message too long"). The refusal here is sshd's settings check (step 4 of
pam_module: it runs only at open_session): this sshd has no Match blocks for the jail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jail_fixtures import make_jailed_pair, pam_lines, undoing
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH = """\
[default]
programs = /usr/bin/id, /usr/lib/openssh/sftp-server
  [[rules]]
  /usr/bin/id = none
"""
MOTD_FILES = ("/run/motd.dynamic", "/etc/motd")
World = tuple[Sshd, User, SyslogCapture]


def debian_sshd_stack() -> str:
    """The host's /etc/pam.d/sshd (Debian's stock stack, read, never changed) with
    pam_jail's lines where etc/pam.d/pam_jail puts them: account after
    `@include common-account`, session last."""
    with open("/etc/pam.d/sshd") as fh:
        lines = fh.read().splitlines(keepends=True)
    out: list[str] = []
    for line in lines:
        out.append(line)
        if line.split("#")[0].split() == ["@include", "common-account"]:
            out.append(pam_lines("account"))
    assert any(pam_lines("account") == ln for ln in out), "no common-account include"
    return "".join(out) + pam_lines("session")


def _motd_lines() -> list[str]:
    found = []
    for path in MOTD_FILES:
        try:
            with open(path) as fh:
                found += [ln.strip() for ln in fh if len(ln.strip()) > 12]
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
        pair = make_jailed_pair(LSH, undo, pam_lsh=LSH)
        sshd = Sshd(debian_sshd_stack(), "").start()      # no Match blocks: refused
        undo.append(sshd.stop)
        yield sshd, pair.pam_user, syslog


def test_the_stack_is_debians_with_pam_motd_before_pam_jail() -> None:
    stack = debian_sshd_stack()
    assert "pam_motd.so" in stack
    assert stack.index("pam_motd.so") < stack.rindex("pam_python.so")
    assert _motd_lines(), "the host has no motd text to leak: the test would prove nothing"


def test_refused_sftp_session_gets_nothing_of_the_host(world: World) -> None:
    sshd, user, syslog = world
    syslog.clear()
    result = sshd.sftp_batch(user, "ls /\n")
    assert result.returncode != 0, result
    text = result.stdout + result.stderr
    assert "message too long" not in text, text
    for line in _motd_lines():
        assert line not in text, (line, text)
    assert "Connection closed" in result.stderr, result.stderr
    found = syslog.wait_for("session refused", f"user={user.name}",
                            "is not set up for jail")
    assert len(found) == 1, syslog.lines
    assert len([ln for ln in syslog.lines if "refused" in ln]) == 1, syslog.lines


def test_refused_command_session_gets_nothing_of_the_host(world: World) -> None:
    sshd, user, _syslog = world
    result = sshd.ssh(user, "/usr/bin/id")
    assert result.returncode == 255 and "uid=" not in result.stdout, result
    assert result.stdout == "", result.stdout
    for line in _motd_lines():
        assert line not in result.stderr, (line, result.stderr)
