"""Directory users (issue 21): users from LDAP through nslcd, for real. The test starts
its own slapd on 127.0.0.1 (its own config and database) and nslcd in a private mount
namespace whose /etc/nsswitch.conf says `passwd: files ldap` (the host's NSS is never
touched); jailuser, the LDIF's ldapmodify and a real sshd run in that namespace.

jailuser does everything local and writes the directory change (--ldif); until that
change is applied the user is not jailed (the guard lets it through to its own shell),
after it a login lands in the jail; a user mapped through a directory group too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import PAM_STACK
from sshd_harness import AUTH_KEYS_DIR, CLIENT_KEYS_DIR, Sshd, User, free_port
from testbed import SHELL_ENTRY, build_jail, remove_jail, unique
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]

SUFFIX = "dc=pjtest"
ADMIN = f"cn=admin,{SUFFIX}"
SECRET = "pjtest-secret"  # noqa: S105 - a throwaway directory of the test's own
PAM_JAIL = "/usr/local/sbin/pam-jail"
LSH = """\
[default]
programs = /usr/bin/id
  [[rules]]
  /usr/bin/id = none
"""
SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {base}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{admin}"
rootpw {secret}
directory {base}/db
access to * by * read
"""


@dataclass
class Directory:
    uri: str
    holder: int                     # a process holding the mount namespace
    users: dict[str, User]          # "direct", "grouped" -> a directory user
    group: str
    jail: str
    base: str

    def run(self, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """A command in the namespace where NSS reads the directory."""
        return subprocess.run(["nsenter", "-t", str(self.holder), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=120, check=False,
                              **kw)  # type: ignore[call-overload]

    def modify(self, ldif_path: str) -> None:
        done = subprocess.run(["ldapmodify", "-x", "-H", self.uri, "-D", ADMIN, "-w", SECRET,
                               "-f", ldif_path], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "slapd exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("slapd did not listen")


def _entries(users: dict[str, int], group: str) -> str:
    out = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: pjtest\n"
           "dc: pjtest\n",
           f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
           f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
           f"dn: cn={group},ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: {group}\n"
           f"gidNumber: 7300\n" + "".join(f"memberUid: {u}\n" for u in users)]
    for name, uid in users.items():
        out.append(f"dn: uid={name},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\n"
                   f"objectClass: posixAccount\nuid: {name}\ncn: {name}\nsn: {name}\n"
                   f"uidNumber: {uid}\ngidNumber: 7300\nhomeDirectory: /home/{name}\n"
                   "loginShell: /bin/sh\n")
    return "\n".join(out)


def _holding(pid: int) -> bool:
    """The holder has made its mounts (it execs sleep after the last one)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().startswith(b"sleep")
    except OSError:
        return False


def _client_key(name: str, uid: int) -> User:
    os.makedirs(f"{CLIENT_KEYS_DIR}/{name}", mode=0o700, exist_ok=True)
    key = f"{CLIENT_KEYS_DIR}/{name}/id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    os.makedirs(AUTH_KEYS_DIR, mode=0o755, exist_ok=True)
    shutil.copyfile(f"{key}.pub", f"{AUTH_KEYS_DIR}/{name}")
    os.chmod(f"{AUTH_KEYS_DIR}/{name}", 0o644)
    return User(name=name, uid=uid, gid=7300, home=f"/home/{name}", shell="/bin/sh",
                key=key, created_home=False)


@pytest.fixture(scope="module")
def directory() -> Iterator[Directory]:
    for tool in ("slapd", "nslcd", "ldapmodify"):
        assert shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"), \
            f"{tool} missing: scripts/setup installs slapd ldap-utils nslcd libnss-ldapd"
    undo: list[Callable[[], object]] = []
    base = safe_tmpdir("ldap")
    undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
    procs: list[subprocess.Popen[bytes]] = []

    def stop_all() -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    undo.append(stop_all)
    try:
        os.mkdir(f"{base}/db", 0o700)
        with open(f"{base}/slapd.conf", "w") as fh:
            fh.write(SLAPD_CONF.format(base=base, suffix=SUFFIX, admin=ADMIN, secret=SECRET))
        port = free_port()
        uri = f"ldap://127.0.0.1:{port}/"
        slapd = subprocess.Popen(["/usr/sbin/slapd", "-f", f"{base}/slapd.conf", "-h", uri,
                                  "-d", "0"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        procs.append(slapd)
        _wait_port(port, slapd)
        names = {"direct": unique("pjd"), "grouped": unique("pjd")}
        uids = {names["direct"]: 7301, names["grouped"]: 7302}
        group = unique("pjdg")
        added = subprocess.run(["ldapadd", "-x", "-H", uri, "-D", ADMIN, "-w", SECRET],
                               input=_entries(uids, group), capture_output=True, text=True,
                               check=False)
        assert added.returncode == 0, added.stderr
        # the namespace where NSS reads the directory: nsswitch.conf, nslcd.conf, its socket
        with open(f"{base}/nsswitch.conf", "w") as fh:
            fh.write("passwd: files ldap\ngroup: files ldap\nshadow: files\n"
                     "hosts: files\n")
        with open(f"{base}/nslcd.conf", "w") as fh:
            fh.write(f"uid nslcd\ngid nslcd\nuri {uri}\nbase {SUFFIX}\n")
        os.chmod(f"{base}/nslcd.conf", 0o600)
        os.makedirs("/run/nslcd", mode=0o755, exist_ok=True)
        script = (f"mount --bind {base}/nsswitch.conf /etc/nsswitch.conf && "
                  f"mount --bind {base}/nslcd.conf /etc/nslcd.conf && "
                  "mount -t tmpfs -o mode=0755 tmpfs /run/nslcd && "
                  "chown nslcd:nslcd /run/nslcd && exec sleep 100000")
        holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "--",
                                   "sh", "-c", script])
        procs.append(holder)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _holding(holder.pid):
            time.sleep(0.05)
        nslcd = subprocess.Popen(["nsenter", "-t", str(holder.pid), "-m", "--",
                                  "/usr/sbin/nslcd", "-d"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        procs.append(nslcd)
        jail = build_jail(["basicshell"], [])
        undo.append(lambda: remove_jail(jail))
        users = {key: _client_key(name, uids[name]) for key, name in names.items()}
        for name in names.values():
            undo.append(lambda n=name: shutil.rmtree(f"{CLIENT_KEYS_DIR}/{n}",
                                                     ignore_errors=True))
            undo.append(lambda n=name: os.unlink(f"{AUTH_KEYS_DIR}/{n}"))
        d = Directory(uri, holder.pid, users, group, jail, base)
        deadline = time.monotonic() + 15
        while d.run("getent", "passwd", names["direct"]).returncode != 0:
            assert time.monotonic() < deadline, "nslcd never answered"
            time.sleep(0.2)
        yield d
    finally:
        for step in reversed(undo):
            step()


def test_jailuser_of_a_directory_user_writes_the_ldif_and_the_login_lands_in_the_jail(
        directory: Directory, system_config: Callable[[str], str]) -> None:
    user = directory.users["direct"]
    jail = directory.jail
    system_config(f"[jails]\n  [[dirj]]\n  root = {jail}\n  mode = shell\n[users]\n")
    assert os.path.exists("/etc/pam_jail/jails.ini")
    assert subprocess.run(["getent", "passwd", user.name], capture_output=True,
                          check=False).returncode == 2, "the host's NSS saw the directory"
    # without --ldif: refused before anything is done (the dry run says the same)
    for extra in (["--dry-run"], []):
        refused = directory.run(PAM_JAIL, "jailuser", "-j", jail, "--jail-config", "dirj",
                                *extra, user.name)
        assert refused.returncode == 2, refused.stderr
        assert "directory user" in refused.stderr and "--ldif" in refused.stderr
    ldif = f"{directory.base}/{user.name}.ldif"
    plan = directory.run(PAM_JAIL, "jailuser", "-j", jail, "--jail-config", "dirj",
                         "--ldif", ldif, "--dry-run", user.name)
    assert plan.returncode == 0, plan.stderr
    assert f"would: write {ldif}" in plan.stdout and "usermod" not in plan.stdout
    assert not os.path.exists(ldif)
    done = directory.run(PAM_JAIL, "jailuser", "-j", jail, "--jail-config", "dirj",
                         "--ldif", ldif, user.name)
    assert done.returncode == 0, done.stderr
    assert "NOT jailed until" in done.stderr
    assert "does not exist in the jail" not in done.stderr   # mode shell: runs outside
    with open(ldif) as fh:
        text = fh.read()
    assert f"dn: uid={user.name},ou=people,{SUFFIX}" in text, text   # asked of the directory
    assert f"loginShell: {SHELL_ENTRY}" in text
    with open(f"{jail}/etc/pam_jail/lsh.ini", "w") as fh:
        fh.write(LSH)
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    sshd = Sshd(PAM_STACK, generate(load_config()),
                wrapper=["nsenter", "-t", str(directory.holder), "-m", "--"])
    try:
        sshd.start()
        directory.modify(ldif)
        assert SHELL_ENTRY in directory.run("getent", "passwd", user.name).stdout
        after = sshd.ssh(user, "/usr/bin/id")
        assert after.returncode == 0, (after.stdout, after.stderr, sshd.log_text()[-2000:])
        assert after.stdout.startswith(f"uid={user.uid}({user.name})"), after.stdout
        refused = sshd.ssh(user, "/bin/sh -c true")          # the allow-list decides now
        assert refused.returncode != 0 and "pam_jail" in refused.stderr, refused
        # a re-run is a no-op: the directory already says what jailuser wants
        again = directory.run(PAM_JAIL, "jailuser", "-j", jail, "--jail-config", "dirj",
                              "--ldif", ldif, "--json", user.name)
        assert '"changed": false' in again.stdout, again.stdout
    finally:
        sshd.stop()
        undo = directory.run(PAM_JAIL, "jailuser", "--undo", "--ldif", ldif, user.name)
        assert undo.returncode == 0, undo.stderr
        directory.modify(ldif)
    assert "/bin/sh" in directory.run("getent", "passwd", user.name).stdout


def test_a_directory_group_maps_its_members_and_doctor_and_explain_know_them(
        directory: Directory, system_config: Callable[[str], str]) -> None:
    import json

    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    user = directory.users["grouped"]
    jail = directory.jail
    system_config(f"[jails]\n  [[dirj]]\n  root = {jail}\n  mode = shell\n"
                  f"[groups]\n{directory.group} = dirj\n")
    # before jailuser: its jail home is missing, and doctor says so (and how, for LDAP)
    doctor = directory.run(PAM_JAIL, "doctor", "--json", user.name)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]
              if c.get("user") == user.name}
    assert checks["user.jail"]["status"] == "ok", checks
    assert checks["user.jailhome"]["status"] == "fail", checks
    assert "--ldif" in checks["user.shell"]["fix"], checks["user.shell"]
    ldif = f"{directory.base}/{user.name}.ldif"
    done = directory.run(PAM_JAIL, "jailuser", "-j", jail, "--ldif", ldif, user.name)
    assert done.returncode == 0, done.stderr
    directory.modify(ldif)
    with open(f"{jail}/etc/pam_jail/lsh.ini", "w") as fh:
        fh.write(LSH)
    explained = directory.run(PAM_JAIL, "explain", "--json", user.name, "--", "/usr/bin/id")
    info = json.loads(explained.stdout)
    assert info["allowed"] is True, info
    assert info["jail"]["name"] == "dirj" and info["jail"]["source"] == \
        f"group:{directory.group}", info["jail"]
    doctor = directory.run(PAM_JAIL, "doctor", "--json", user.name)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]
              if c.get("user") == user.name}
    assert checks["user.jailhome"]["status"] == "ok", checks
    assert checks["user.shell"]["status"] == "ok", checks
    sshd = Sshd(PAM_STACK, generate(load_config()),
                wrapper=["nsenter", "-t", str(directory.holder), "-m", "--"])
    try:
        sshd.start()
        got = sshd.ssh(user, "/usr/bin/id")
        assert got.returncode == 0 and got.stdout.startswith(f"uid={user.uid}("), \
            (got.stdout, got.stderr)
        assert sshd.ssh(user, "/bin/sh -c true").returncode != 0   # the allow-list decides
    finally:
        sshd.stop()
        undo = directory.run(PAM_JAIL, "jailuser", "--undo", "--ldif", ldif, user.name)
        assert undo.returncode == 0, undo.stderr
        directory.modify(ldif)
