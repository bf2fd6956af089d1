"""The demo behind scripts/demo (run that, not this file)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")]

from jail_fixtures import PAM_STACK, make_jailed_pair  # noqa: E402
from sshd_harness import Sshd  # noqa: E402

from pam_jail.config import load_config  # noqa: E402
from pam_jail.sshd_config import generate  # noqa: E402

LSH = """[default]
programs = /usr/bin/id, /bin/ls, /usr/bin/rsync, /usr/bin/scp, /usr/lib/openssh/sftp-server
pass_env = LANG
  [[rules]]
  /usr/bin/id = none
  /bin/ls = any
"""

rows: list[tuple[str, str, str, str]] = []


def show(who: str, what: str, result: subprocess.CompletedProcess[str], expect_ok: bool) -> None:
    ok = result.returncode == 0
    first = (result.stdout.strip() or result.stderr.strip()).splitlines()
    detail = first[0][:70] if first else f"exit {result.returncode}"
    verdict = ("allowed" if ok else "REFUSED") + ("" if ok == expect_ok else "  <-- UNEXPECTED")
    rows.append((who, what, verdict, detail))
    print(f"  {who:<6} {what:<44} {verdict:<8} {detail}", flush=True)


def main() -> int:
    undo: list[Callable[[], object]] = []
    try:
        print("== users (useradd), jails (the builder: basicshell ptys sftp scp rsync), "
              "/etc/pam_jail/jails.ini")
        pair = make_jailed_pair(LSH, undo)
        pam_user, shell_user = pair.pam_user, pair.shell_user
        print(f"   PAM path: {pam_user.name} in {pair.pam_jail}")
        print(f"   login-shell path: {shell_user.name} in {pair.shell_jail}")
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        undo.append(sshd.stop)
        print(f"== sshd on 127.0.0.1:{sshd.port} (own config {sshd.config_path})\n")
        tmp = tempfile.mkdtemp()
        with open(f"{tmp}/hello.txt", "w") as fh:
            fh.write("hello from the host\n")
        for who, user in (("pam", pam_user), ("shell", shell_user)):
            show(who, "ssh id", sshd.ssh(user, "/usr/bin/id"), True)
            show(who, "ssh ls /   (the jail is /)", sshd.ssh(user, "/bin/ls /"), True)
            show(who, "scp upload (sftp protocol)", sshd.scp(user, f"{tmp}/hello.txt", ":a.txt"),
                 True)
            show(who, "scp -O upload (scp protocol)",
                 sshd.scp(user, f"{tmp}/hello.txt", ":b.txt", legacy=True), True)
            show(who, "sftp -b: put, ls", sshd.sftp_batch(user, f"put {tmp}/hello.txt c.txt\nls\n"),
                 True)
            show(who, "rsync upload", sshd.rsync(user, f"{tmp}/hello.txt", ":d.txt"), True)
            show(who, "read /etc/shadow", sshd.ssh(user, "/bin/ls /etc/shadow"), False)
            fwd = sshd.try_forward_w(user)
            rows.append((who, "ssh -W 127.0.0.1:port (forwarding)",
                         "allowed  <-- UNEXPECTED" if fwd.data_through else "REFUSED", ""))
            print(f"  {who:<6} {'ssh -W 127.0.0.1:port (forwarding)':<44} "
                  f"{rows[-1][2]:<8} no data through" if not fwd.data_through else "")
        for cmd in ("/bin/sh -c id", "rsync --server -e 'sh -c id' . x", "scp -S /bin/sh -t x",
                    "id; /bin/sh"):
            show("shell", cmd, sshd.ssh(shell_user, cmd), False)
        bad = [r for r in rows if "UNEXPECTED" in r[2]]
        print(f"\n{len(rows)} checks, {len(bad)} unexpected.")
        print("Every refusal above also left one syslog line (auth facility) naming user, "
              "jail and reason.")
        return 1 if bad else 0
    finally:
        for step in reversed(undo):
            step()


if __name__ == "__main__":
    sys.exit(main())
