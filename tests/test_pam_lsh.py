"""The PAM path with the limited shell: the PAM module confines the session, and the
user's login shell INSIDE the jail is pam-jail-lsh (built into the jail by the `lsh`
profile), which checks every command against the jail's /etc/pam_jail/lsh.ini."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import pytest
from jail_fixtures import PAM_STACK, build_jail, remove_jail, unique
from sshd_harness import Sshd, make_user, remove_user
from syslog_capture import SyslogCapture

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH_SHELL = "/usr/local/sbin/pam-jail-lsh"
LSH = """[default]
programs = /usr/bin/id, /usr/bin/rsync, /usr/bin/scp, /usr/lib/openssh/sftp-server
  [[rules]]
  /usr/bin/id = none
"""


def test_pam_path_with_limited_shell(system_config: Callable[[str], str],
                                     syslog: SyslogCapture, tmp_path: object) -> None:
    name = unique("pjl")
    user = make_user(name, LSH_SHELL, f"/home/{name}", create_home=False)
    root = None
    sshd = None
    stops: list[Callable[[], object]] = []
    try:
        root = build_jail(["lsh", "basicshell", "ptys", "sftp", "scp", "rsync"], [name],
                          lsh=LSH, shell=LSH_SHELL)
        system_config(f"[jails]\n  [[lshj]]\n  root = {root}\n  mode = pam\n"
                      f"[users]\n{name} = lshj\n")
        from pam_jail.admin.sshd_config import generate
        from pam_jail.login.config_file import load_config

        # inside the jail, /dev/log is the jail's: the log relay forwards it to the host
        relay = subprocess.Popen(["/usr/local/sbin/pam-jail", "logrelay", "--foreground",
                                  "-j", "lshj"], stdout=subprocess.DEVNULL)
        stops.append(relay.terminate)
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{root}/dev/log") and time.monotonic() < deadline:
            time.sleep(0.05)
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        ok = sshd.ssh(user, "/usr/bin/id")
        assert ok.returncode == 0, ok.stderr + sshd.log_text()[-2000:]
        assert f"uid={user.uid}({name})" in ok.stdout
        bad = sshd.ssh(user, "/bin/sh -c id")
        assert bad.returncode == 126, (bad.stdout, bad.stderr)
        assert bad.stderr.strip().startswith("pam_jail: refused:")
        assert "uid=" not in bad.stdout
        interactive = sshd.ssh(user, tty=True, input="id\nexit\n")
        assert interactive.returncode != 0 and "uid=" not in interactive.stdout
        src = os.path.join(str(tmp_path), "f.txt")
        with open(src, "w") as fh:
            fh.write("through the limited shell\n")
        put = sshd.sftp_batch(user, f"put {src} f.txt\n")
        assert put.returncode == 0, put.stderr
        with open(f"{root}/home/{name}/f.txt") as fh:
            assert fh.read() == "through the limited shell\n"
        lines = syslog.wait_for("command refused", f"user={name}", "command=/bin/sh -c id",
                                "[jail=lshj")   # the relay names the jail
        assert len(lines) == 1, syslog.lines
    finally:
        if sshd:
            sshd.stop()
        for stop in stops:
            stop()
        remove_user(name, remove_home=False)
        if root:
            remove_jail(root)
