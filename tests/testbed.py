"""The set-up shared by the demo (scripts/demo.py), the benches and the tests: real users
(useradd), real jails (the builder), the system-wide /etc/pam_jail/jails.ini (backed up and
restored), a loopback sshd and a syslog receiver.

It imports no test tool (no pytest, no hypothesis): the demo runs it under Debian's bare
/usr/bin/python3 (scripts/check-imports proves that before every test run). The pytest
fixtures in jail_fixtures.py wrap it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sshd_harness import PERMIT_PAM, Sshd, User, make_user, remove_user
from syslog_capture import DEVLOG, SyslogCapture
from util import safe_tmpdir

SYSTEM_CONFIG = "/etc/pam_jail/jails.ini"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the installed pam_jail is: scripts/install's /usr/local layout unless the caller
# names another one (tests/test_package.py runs the demo against the .deb's /usr/lib/pam_jail
# and /usr/sbin). Test and demo code only: the product never takes paths from the environment.
LIBDIR = os.environ.get("PAM_JAIL_LIBDIR", "/usr/local/lib/pam_jail")
SBINDIR = os.environ.get("PAM_JAIL_SBINDIR", "/usr/local/sbin")
SHELL_ENTRY = f"{SBINDIR}/pam-jail-shell"
# The profiles name the installed files (the lsh profile copies the installed runtime):
# the source tree's for scripts/install's layout, the installed package's otherwise.
PROFILES = ("/etc/pam_jail/profiles.ini" if "PAM_JAIL_LIBDIR" in os.environ
            else f"{REPO}/etc/pam_jail/profiles.ini")
PAM_MODULE = f"{LIBDIR}/pam_jail_pam.py"


def write_login_index() -> None:
    """jails.ini's lookup index, written by the installed copy (what validate, edit and
    jailuser leave behind; its seccomp programs name the installed profile): the
    benches time logins as on a host set up with `pam-jail jailuser`."""
    import subprocess

    subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", (
        f"import sys; sys.path[:0] = [{LIBDIR!r}, '/usr/lib/python3/dist-packages']; "
        "from pam_jail.login.config import DEFAULT_PATH; "
        "from pam_jail.login.config_file import load_config; "
        "from pam_jail.login.config_index import write_index; "
        "write_index(DEFAULT_PATH, load_config(DEFAULT_PATH))")], check=True)


@contextlib.contextmanager
def undoing() -> Iterator[list[Callable[[], object]]]:
    """A list to push undo steps on (make_jailed_pair, add_twin ... push theirs): run in
    reverse when the block ends, also after a failure; every step runs."""
    undo: list[Callable[[], object]] = []
    try:
        yield undo
    finally:
        errors = []
        for step in reversed(undo):
            try:
                step()
            except Exception as err:  # noqa: BLE001 - undo the rest regardless
                errors.append(err)
        if errors:
            raise errors[0]


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


LSH_SHELL = f"{SBINDIR}/pam-jail-lsh"


def pam_lines(kind: str, module: str = PAM_MODULE, extra: str = "") -> str:
    """etc/pam.d/pam_jail's two lines for `kind` (account/session), for this install: the
    pam_succeed_if guard (only pam_jail's login shells reach pam_python), then pam_python."""
    args = f"{module} {extra}".strip()
    return (f"{kind} [success=1 default=ignore] pam_succeed_if.so quiet shell notin "
            f"{SHELL_ENTRY}:{LSH_SHELL}\n{kind} required pam_python.so {args}\n")


# The PAM stack of the e2e sshd and the demo: Debian's common files plus our lines where
# etc/pam.d/pam_jail says (account after common-account; session last).
PAM_STACK = ("@include common-auth\n@include common-account\n" + pam_lines("account")
             + "@include common-session-noninteractive\n" + pam_lines("session"))


@dataclass
class JailedPair:
    """One user on the PAM path (jail pamj), one on the login-shell path (jail shellj)."""

    pam_user: User
    shell_user: User
    pam_jail: str
    shell_jail: str


def make_jailed_pair(lsh: str, undo: list[Callable[[], object]],
                     pam_lsh: str | None = None) -> JailedPair:
    """Real users, real jails, /etc/pam_jail/jails.ini mapping them; every step pushes
    its undo on `undo` (the caller runs them in reverse, also after a failure).

    The PAM-path user's login shell is pam-jail-lsh (its jail carries the limited shell's
    runtime, the `lsh` profile) with the allow-list `pam_lsh` (default: `lsh`); the
    login-shell user's is pam-jail-shell. Both homes carry jailkit's `/./` marker."""
    saved = save_config()
    undo.append(lambda: restore_config(saved))
    pam_name, shell_name = unique("pjp"), unique("pjs")
    pam_user = make_user(pam_name, LSH_SHELL, f"/home/{pam_name}", create_home=False)
    undo.append(lambda: remove_user(pam_name, remove_home=False))
    shell_user = make_user(shell_name, SHELL_ENTRY, f"/home/{shell_name}", create_home=False)
    undo.append(lambda: remove_user(shell_name, remove_home=False))
    pam_jail = build_jail(["lsh", "basicshell", "ptys", "sftp", "scp", "rsync"], [pam_name],
                          lsh=lsh if pam_lsh is None else pam_lsh, shell=LSH_SHELL)
    undo.append(lambda: remove_jail(pam_jail))
    shell_jail = build_jail(["basicshell", "ptys", "sftp", "scp", "rsync"], [shell_name],
                            lsh=lsh)
    undo.append(lambda: remove_jail(shell_jail))
    os.makedirs(f"{shell_jail}/proc", mode=0o755, exist_ok=True)
    # jailkit's convention: the real home names the jail (`/./` marks where it ends)
    for name, jail in ((pam_name, pam_jail), (shell_name, shell_jail)):
        subprocess.run(["usermod", "-d", f"{jail}/./home/{name}", name], check=True)
    from pam_jail.admin.build import add_users

    add_users(pam_jail, [pam_name], shell=LSH_SHELL)   # the home link for the marker
    pam_user = dataclasses.replace(pam_user, home=f"{pam_jail}/./home/{pam_name}")
    shell_user = dataclasses.replace(shell_user, home=f"{shell_jail}/./home/{shell_name}")
    # allow_shell = yes: whether an interactive login runs is then the jail's lsh.ini's call
    write_config(f"[jails]\n  [[pamj]]\n  root = {pam_jail}\n  mode = pam\n  allow_shell = yes\n"
                 f"  [[shellj]]\n  root = {shell_jail}\n  mode = shell\n  proc = yes\n"
                 "  allow_shell = yes\n"
                 f"[users]\n{pam_name} = pamj\n{shell_name} = shellj\n")
    return JailedPair(pam_user, shell_user, pam_jail, shell_jail)


def add_twin(root: str, shell: str, jail: str, options: str,
             undo: list[Callable[[], object]]) -> User:
    """One more user in jail directory `root`, mapped to a new jails.ini entry `jail`
    for the same root with extra `options` (e.g. "private = no"): the benches compare
    two settings of one jail in one run. The jails.ini of make_jailed_pair grows."""
    from pam_jail.admin.build import add_users

    name = unique("pjw")
    user = make_user(name, shell, f"{root}/./home/{name}", create_home=False)
    undo.append(lambda: remove_user(name, remove_home=False))
    add_users(root, [name], shell=shell if shell == LSH_SHELL else None)
    with open(SYSTEM_CONFIG) as fh:
        text = fh.read()
    mode = "pam" if shell == LSH_SHELL else "shell"
    section = (f"  [[{jail}]]\n  root = {root}\n  mode = {mode}\n  allow_shell = yes\n"
               + "".join(f"  {line.strip()}\n" for line in options.split(";")))
    head, users = text.split("[users]\n", 1)
    write_config(f"{head}{section}[users]\n{users}{name} = {jail}\n")
    return user


def save_config() -> tuple[str | None, str | None]:
    """The text of jails.ini and of its last-known-good copy (None: absent)."""
    out: list[str | None] = []
    for path in (SYSTEM_CONFIG, SYSTEM_CONFIG + ".good"):
        try:
            with open(path) as fh:
                out.append(fh.read())
        except FileNotFoundError:
            out.append(None)
    return out[0], out[1]


def write_config(text: str, path: str = SYSTEM_CONFIG) -> None:
    """Write jails.ini (or `path`) by rename, root:root 0644, as an admin would."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def restore_config(saved: tuple[str | None, str | None] | str | None) -> None:
    """Put back what save_config() returned (a bare text: jails.ini only)."""
    texts = saved if isinstance(saved, tuple) else (saved, None)
    for path, text in zip((SYSTEM_CONFIG, SYSTEM_CONFIG + ".good"), texts, strict=True):
        if text is not None:
            write_config(text, path)
        elif os.path.exists(path):
            os.unlink(path)


def build_jail(profiles: list[str], users: list[str], lsh: str | None = None,
               shell: str | None = None) -> str:
    from pam_jail.admin.build import init_jail

    base = safe_tmpdir("jail")
    root = f"{base}/jail"
    init_jail(root, profiles, users=users, profiles_file=PROFILES, shell=shell)
    if lsh is not None:
        os.makedirs(f"{root}/etc/pam_jail", mode=0o755, exist_ok=True)
        with open(f"{root}/etc/pam_jail/lsh.ini", "w") as fh:
            fh.write(lsh)
        os.chmod(f"{root}/etc/pam_jail/lsh.ini", 0o644)
    return root


def remove_jail(root: str) -> None:
    subprocess.run(["umount", "-R", "-l", f"{root}/dev/pts"], stderr=subprocess.DEVNULL,
                   check=False)
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)



__all__ = ["DEVLOG", "LIBDIR", "LSH_SHELL", "PAM_MODULE", "PAM_STACK", "PERMIT_PAM", "REPO",
           "SBINDIR", "SHELL_ENTRY", "SYSTEM_CONFIG", "JailedPair", "Sshd", "SyslogCapture",
           "User", "build_jail", "make_jailed_pair", "make_user", "pam_lines", "remove_jail",
           "remove_user", "restore_config", "save_config", "unique", "write_config"]
