"""Local mail delivery to a jailed user runs nothing on the host (issue 18).

exim4 and postfix (Debian's defaults) run `|command` lines of ~/.forward as the user with
/bin/sh, outside any jail; procmail (exim4's procmail router, postfix's mailbox_command)
runs the recipes of ~/.procmailrc. They read these files from the passwd home. A user
jailed by `pam-jail jailuser` has a root-owned home stub there; the home the user writes
(JAIL/home/USER, over sftp) is named by no passwd entry.

Real MTAs, real delivery: exim4 is the Debian package scripts/setup installs, run in the
foreground (`exim4 -odi`, no daemon) with Debian's own configuration; postfix conflicts
with it as a package, so its .deb is fetched with `apt-get download`, unpacked with
`dpkg -x` into a private directory and run there with its own config directory (no inet
service in its master.cf: it listens on nothing), its own queue, and a mail_owner and
setgid group made for the test. Both deliver to the host's /var/mail. Every test first
puts the file where sftp would (JAIL/home/USER) and proves the command did not run;
then it sets jailkit's home JAIL/./home/USER and proves the same mail DOES run it (the
test can fail), and that `pam-jail doctor` FAILs for that home.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import SBINDIR
from sshd_harness import make_group, make_user, remove_group, remove_user, unique_name
from util import SAFE_BASE, safe_tmpdir

pytestmark = [pytest.mark.root]
PAM_JAIL = f"{SBINDIR}/pam-jail"
EXIM = "/usr/sbin/exim4"
PROCMAIL = "/usr/bin/procmail"
MAIL_SPOOL = "/var/mail"
DEB_CACHE = f"{SAFE_BASE}/mailtest-cache"      # the downloaded postfix .deb, kept


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False,
        **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc


# --------------------------------------------------------------------------- the user


@dataclass
class Jailed:
    name: str
    jail: str
    config: str                 # a jails.ini of our own for doctor (the marker jails)
    stub_home: str              # the passwd home jailuser set (root's)
    writable: str               # JAIL/home/USER: what sftp writes

    @property
    def legacy_home(self) -> str:
        return f"{self.jail}/./home/{self.name}"


def _root_owned_home(user: str) -> str:
    """The passwd home jailuser set: root's, not writable by others (issue 18: before it,
    jailuser set jailkit's JAIL/./home/USER, the user's own)."""
    home = pwd.getpwnam(user).pw_dir
    st = os.stat(home)
    assert st.st_uid == 0 and not st.st_mode & 0o022, \
        f"jailuser set the passwd home {home} of {user}: not root's"
    return home


@pytest.fixture(scope="module")
def jailed() -> Iterator[Jailed]:
    if os.geteuid() != 0:
        pytest.fail("run as root (real users, real MTAs): scripts/test")
    for tool in (EXIM, PROCMAIL, PAM_JAIL):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} missing: run scripts/setup")
    base = safe_tmpdir("mail")
    name = unique_name("pjt")
    try:
        make_user(name, "/bin/sh", create_home=False)
        jail = f"{base}/jail"
        # the README's way (sftp-only account); no --jail-config: the home marker jails
        run([PAM_JAIL, "jailuser", "-j", jail, "--mode", "sftp", "-p", "uidbasics", name])
        config = f"{base}/jails.ini"
        with open(config, "w") as fh:
            fh.write("[jails]\n[users]\n[groups]\n[options]\n")
        os.chmod(config, 0o644)
        home = _root_owned_home(name)
        writable = f"{jail}/home/{name}"
        assert os.stat(writable).st_uid == pwd.getpwnam(name).pw_uid
        yield Jailed(name, jail, config, home, writable)
    finally:
        subprocess.run([PAM_JAIL, "jailuser", "--undo", name], capture_output=True,
                       check=False)
        remove_user(name, remove_home=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{MAIL_SPOOL}/{name}")
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- the MTAs


class Exim:
    """Debian's exim4 with Debian's configuration, delivering in the foreground."""

    name = "exim4"

    def deliver(self, user: str, text: str) -> None:
        run([EXIM, "-odi", "-oi", "-f", user, user], input=text)

    def log(self) -> str:
        with open("/var/log/exim4/mainlog", errors="replace") as fh:
            return fh.read()[-2000:]


MASTER_CF = """\
# pam_jail test: unix-domain services only; no inet line, so nothing listens.
# local(8) serves one delivery a process: a reused one keeps the passwd entry (the home)
# it looked up first, and the test changes homes between deliveries.
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
  -o max_use=1
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """Debian's postfix .deb unpacked into a private directory, run with its own config
    directory, queue and owner. Debian's postinst sets mailbox_command to procmail when
    procmail is installed: so does this main.cf."""

    name = "postfix"

    def __init__(self, base: str) -> None:
        self.base = base
        self.root = f"{base}/root"
        self.conf = f"{base}/conf"
        self.queue = f"{base}/queue"
        self.owner = unique_name("pjt")
        self.group = unique_name("pjg")
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "LD_LIBRARY_PATH": f"{self.root}/usr/lib/postfix"}

    def _deb(self) -> str:
        found = sorted(glob.glob(f"{DEB_CACHE}/postfix_*.deb"))
        if not found:
            os.makedirs(DEB_CACHE, mode=0o755, exist_ok=True)
            run(["apt-get", "download", "postfix"], cwd=DEB_CACHE)
            found = sorted(glob.glob(f"{DEB_CACHE}/postfix_*.deb"))
        assert found, f"apt-get download postfix left nothing in {DEB_CACHE}"
        return found[-1]

    def start(self) -> Postfix:
        run(["dpkg", "-x", self._deb(), self.root])
        make_group(self.group)
        run(["useradd", "-r", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
             self.owner])
        for path, mode in ((self.conf, 0o755), (self.queue, 0o755), (f"{self.base}/data",
                                                                     0o700)):
            os.makedirs(path, mode=mode)
            os.chmod(path, mode)
        shutil.chown(f"{self.base}/data", self.owner)
        r = self.root
        main_cf = f"""\
compatibility_level = 3.6
myhostname = pjt-mail.localdomain
mydomain = localdomain
mydestination = $myhostname, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
biff = no
mailbox_command = {PROCMAIL} -a "$EXTENSION"
mail_owner = {self.owner}
setgid_group = {self.group}
queue_directory = {self.queue}
data_directory = {self.base}/data
command_directory = {r}/usr/sbin
daemon_directory = {r}/usr/lib/postfix/sbin
meta_directory = {r}/etc/postfix
shlib_directory = {r}/usr/lib/postfix
sendmail_path = {r}/usr/sbin/sendmail
newaliases_path = {r}/usr/bin/newaliases
mailq_path = {r}/usr/bin/mailq
manpage_directory = {r}/usr/share/man
maillog_file = {self.base}/maillog
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C
  LD_LIBRARY_PATH={r}/usr/lib/postfix
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH
"""
        for name, text in (("main.cf", main_cf), ("master.cf", MASTER_CF)):
            with open(f"{self.conf}/{name}", "w") as fh:
                fh.write(text)
        run([f"{r}/usr/sbin/postfix", "-c", self.conf, "start"], env=self.env)
        return self

    def master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError), \
                open(f"{self.queue}/pid/master.pid") as fh:
            return int(fh.read().strip())
        return None

    def listening(self) -> list[str]:
        """The sockets of ours in /proc/net/tcp* in LISTEN state (none expected)."""
        pids = subprocess.run(["pgrep", "-f", self.root], capture_output=True, text=True,
                              check=False).stdout.split()
        inodes = set()
        for pid in pids:
            for fd in glob.glob(f"/proc/{pid}/fd/*"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as fh:
                for line in fh.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:
                        found.append(f"{table}: {fields[1]}")
        return found

    def deliver(self, user: str, text: str) -> None:
        run([f"{self.root}/usr/sbin/sendmail", "-C", self.conf, "-i", "-f", user, user],
            input=text, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queued = [f for d in ("maildrop", "incoming", "active", "deferred")
                      for f in glob.glob(f"{self.queue}/{d}/**/*", recursive=True)
                      if os.path.isfile(f)]
            if not queued:
                return
            time.sleep(0.2)
        raise AssertionError(f"postfix did not deliver within 60 s: {self.log()}")

    def log(self) -> str:
        with open(f"{self.base}/maillog", errors="replace") as fh:
            return fh.read()[-2000:]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            subprocess.run([f"{self.root}/usr/sbin/postfix", "-c", self.conf, "stop"],
                           env=self.env, capture_output=True, timeout=60, check=False)
        pid = self.master_pid()
        deadline = time.monotonic() + 10
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        for leftover in subprocess.run(["pgrep", "-f", self.root], capture_output=True,
                                       text=True, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(leftover), signal.SIGKILL)
        remove_user(self.owner, remove_home=False)
        remove_group(self.group)


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    base = safe_tmpdir("postfix")
    mta = Postfix(base)
    try:
        yield mta.start()
    finally:
        mta.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["exim4", "postfix"])
def mta(request: pytest.FixtureRequest) -> Exim | Postfix:
    if request.param == "exim4":
        return Exim()
    found: Postfix = request.getfixturevalue("postfix")
    return found


# --------------------------------------------------------------------------- the tests

# What the jailed user uploads: a command to run on delivery, per file.
PAYLOADS: dict[str, Callable[[str], str]] = {
    ".forward": lambda marker: f'"|/usr/bin/touch {marker}"\n',
    ".procmailrc": lambda marker: f":0 c\n| /usr/bin/touch {marker}\n",
}


def place(user: str, directory: str, name: str, text: str) -> str:
    """Write a file owned by the user, mode 0644, as sftp would."""
    path = f"{directory}/{name}"
    with open(path, "w") as fh:
        fh.write(text)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o644)
    return path


def mailbox(user: str) -> str:
    try:
        with open(f"{MAIL_SPOOL}/{user}", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def doctor(user: Jailed) -> dict[str, dict[str, str]]:
    proc = subprocess.run([PAM_JAIL, "doctor", "--json", "--config", user.config,
                           user.name], capture_output=True, text=True, timeout=120,
                          check=False)
    report = json.loads(proc.stdout)
    return {c["name"]: c for c in report["checks"] if c["name"] in ("user.home", "mail")}


@pytest.fixture
def clean(jailed: Jailed) -> Iterator[Callable[[str], str]]:
    """A fresh marker path per test; files, mailbox and marker removed afterwards, the
    root-owned home put back."""
    markers: list[str] = []

    def marker(kind: str) -> str:
        path = f"/tmp/pjtmail-{kind}-{secrets.token_hex(4)}"
        markers.append(path)
        return path

    yield marker
    run(["usermod", "-d", jailed.stub_home, jailed.name])
    for name in PAYLOADS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{jailed.writable}/{name}")
    for path in [*markers, f"{MAIL_SPOOL}/{jailed.name}"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@pytest.mark.parametrize("filename", list(PAYLOADS))
def test_delivery_runs_nothing_the_jailed_user_wrote(
        jailed: Jailed, mta: Exim | Postfix, filename: str,
        clean: Callable[[str], str]) -> None:
    marker = clean(mta.name)
    token = f"pjt-{secrets.token_hex(6)}"
    message = f"From: {jailed.name}\nSubject: {token}\n\nbody {token}\n"
    place(jailed.name, jailed.writable, filename, PAYLOADS[filename](marker))

    # the home sshd and the MTA read: root's; the file is where sftp put it
    assert pwd.getpwnam(jailed.name).pw_dir == jailed.stub_home
    mta.deliver(jailed.name, message)
    assert not os.path.lexists(marker), f"{mta.name} ran {filename} of the jail home"
    assert token in mailbox(jailed.name), f"{mta.name}: the mail was not delivered"
    fine = doctor(jailed)
    assert fine["user.home"]["status"] == "ok", fine

    # the same file under jailkit's home JAIL/./home/USER runs on the host: the test can
    # fail, and doctor says so
    run(["usermod", "-d", jailed.legacy_home, jailed.name])
    token2 = f"pjt-{secrets.token_hex(6)}"
    mta.deliver(jailed.name, message.replace(token, token2))
    deadline = time.monotonic() + 10
    while not os.path.lexists(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.path.lexists(marker), \
        f"{mta.name} did not run {filename} of the legacy home: {mta.log()}"
    assert os.stat(marker).st_uid == pwd.getpwnam(jailed.name).pw_uid   # as the user
    bad = doctor(jailed)
    assert bad["user.home"]["status"] == "fail", bad
    assert "host services read files" in bad["user.home"]["message"]
    assert bad["user.home"]["fix"].startswith(f"pam-jail jailuser {jailed.name} -j ")
    assert bad["mail"]["status"] == "fail" and "exim4" in bad["mail"]["message"], bad


def test_private_postfix_listens_on_nothing(postfix: Postfix) -> None:
    assert postfix.master_pid() is not None
    assert postfix.listening() == []
