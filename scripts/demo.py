"""The demo behind scripts/demo (run that, not this file).

Against an install other than scripts/install's /usr/local layout (the .deb: /usr/lib/pam_jail
and /usr/sbin), set PAM_JAIL_LIBDIR and PAM_JAIL_SBINDIR (scripts/demo --libdir/--sbindir):
the users' shell, the PAM stack's module and this script's own `import pam_jail` then come
from there, not from the source tree. --syslog: receive /dev/log here for the run
(tests/syslog_capture.py moves a running daemon's socket aside and puts it back) and check
that every decision shown left its syslog line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# the pam_jail package: the installed one when PAM_JAIL_LIBDIR names it, else the source tree
PACKAGE_DIR = os.environ.get("PAM_JAIL_LIBDIR") or REPO
sys.path[:0] = [PACKAGE_DIR, os.path.join(REPO, "tests")]

from testbed import (  # noqa: E402
    DEVLOG,
    PAM_MODULE,
    PAM_STACK,
    PERMIT_PAM,
    SHELL_ENTRY,
    Sshd,
    SyslogCapture,
    make_jailed_pair,
)

import pam_jail  # noqa: E402
from pam_jail.admin.sshd_config import generate  # noqa: E402
from pam_jail.login.config_file import load_config  # noqa: E402

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


def installed_files() -> list[str]:
    """Print which pam_jail this demo runs; the problems (empty: all there and consistent)."""
    package = os.path.dirname(os.path.abspath(pam_jail.__file__))
    print(f"== pam_jail package {package}\n   PAM module {PAM_MODULE}\n"
          f"   login shell {SHELL_ENTRY}")
    problems = [f"missing: {path}" for path in (PAM_MODULE, SHELL_ENTRY)
                if not os.path.isfile(path)]
    if os.path.dirname(package) != os.path.abspath(PACKAGE_DIR):
        problems.append(f"pam_jail imported from {package}, not from {PACKAGE_DIR}")
    return problems


def syslog_rows(lines: list[str], pam_name: str, shell_name: str, refused: list[str]) -> None:
    """One check per decision the log must hold: the PAM session, an allowed command and
    every command the limited shell refused."""
    def logged(*needles: str) -> bool:
        return any(all(n in line for n in needles) for line in lines)

    wanted = [("pam", "session allowed", (f"session allowed user={pam_name} jail=pamj",)),
              ("shell", "command allowed",
               (f"command allowed user={shell_name} jail=shellj", "command=/usr/bin/id"))]
    wanted += [("shell", cmd,
                (f"command refused user={shell_name} jail=shellj", f"command={cmd}"))
               for cmd in refused]
    for who, what, needles in wanted:
        verdict = "logged" if logged(*needles) else "MISSING  <-- UNEXPECTED"
        rows.append((who, f"syslog: {what}", verdict, ""))
        print(f"  {who:<6} {'syslog: ' + what:<44} {verdict}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo")
    parser.add_argument("--syslog", action="store_true",
                        help=f"receive {DEVLOG} for the run and check the decisions logged")
    capture_syslog = parser.parse_args(argv).syslog
    undo: list[Callable[[], object]] = []
    try:
        problems = installed_files()
        if problems:
            print("demo: " + "; ".join(problems), file=sys.stderr)
            return 2
        capture = None
        if capture_syslog:
            capture = SyslogCapture().start()
            undo.append(capture.stop)
            print(f"== syslog: this demo receives {DEVLOG} (a daemon's socket is put back after)")
        print("== users (useradd), jails (the builder: lsh basicshell ptys sftp scp rsync), "
              "/etc/pam_jail/jails.ini")
        pair = make_jailed_pair(LSH, undo)
        pam_user, shell_user = pair.pam_user, pair.shell_user
        print(f"   PAM path: {pam_user.name} in {pair.pam_jail} (login shell pam-jail-lsh)")
        print(f"   login-shell path: {shell_user.name} in {pair.shell_jail}")
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        undo.append(sshd.stop)
        print(f"== sshd on 127.0.0.1:{sshd.port} (own config {sshd.config_path})\n")
        tmp = tempfile.mkdtemp()
        undo.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
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
            verdict = "allowed  <-- UNEXPECTED" if fwd.data_through else "REFUSED"
            detail = "data went through" if fwd.data_through else "no data through"
            rows.append((who, "ssh -W 127.0.0.1:port (forwarding)", verdict, detail))
            print(f"  {who:<6} {'ssh -W 127.0.0.1:port (forwarding)':<44} {verdict:<8} {detail}",
                  flush=True)
        refused = ["/bin/sh -c id", "rsync --server -e 'sh -c id' . x", "scp -S /bin/sh -t x",
                   "id; /bin/sh"]
        for cmd in refused:
            show("shell", cmd, sshd.ssh(shell_user, cmd), False)
        print("\n== the same users on a second sshd whose PAM stack lacks pam_jail's lines "
              "(an admin's mistake):\n   every jailed user's login shell refuses to run "
              "outside its jail", flush=True)
        bare = Sshd(PERMIT_PAM, generate(load_config())).start()
        undo.append(bare.stop)
        show("pam", "ssh id, no pam_jail lines", bare.ssh(pam_user, "/usr/bin/id"), False)
        show("shell", "ssh ls /, no pam_jail lines: still jailed",
             bare.ssh(shell_user, "/bin/ls /"), True)
        if capture is not None:
            print("\n== syslog lines (one per decision; refused commands by their command)")
            capture.wait_for(f"command={refused[-1]}")
            syslog_rows(list(capture.lines), pam_user.name, shell_user.name, refused)
        bad = [r for r in rows if "UNEXPECTED" in r[2]]
        print(f"\n{len(rows)} checks, {len(bad)} unexpected.")
        if capture is None:
            print("Every refusal above also left one syslog line (auth facility) naming user, "
                  "jail and reason (scripts/demo --syslog shows and checks them).")
        return 1 if bad else 0
    finally:
        for step in reversed(undo):
            step()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
