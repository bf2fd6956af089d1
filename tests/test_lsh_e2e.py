"""The limited shell end to end: issue 4's bypass table through a real sshd, the real
clients' allowed forms, and a property test that the argv the policy allows is the argv
that reaches execve (tests/lsh_argv.c, a static printer inside the jail).

One module-scoped world: make_jailed_pair (the login-shell user is the one the limited
shell applies to), git and cvs added to its jail, a bare git repository and a cvs
repository in the user's home, and an sshd.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jail_fixtures import PAM_STACK, SHELL_ENTRY, make_jailed_pair
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture
from test_lsh_home import GIT_CORE, add_server_tools, as_user
from util import safe_tmpdir

from pam_jail.policy import Decision, decide, parse_lsh, select_policy, split_command

pytestmark = [pytest.mark.root, pytest.mark.e2e]

HERE = os.path.dirname(os.path.abspath(__file__))
ARGV = "/usr/local/bin/pjargv"
LSH = f"""\
[default]
programs = /usr/bin/scp, /usr/bin/rsync, /usr/lib/openssh/sftp-server, \
{GIT_CORE}/git-upload-pack, {GIT_CORE}/git-receive-pack, /usr/bin/cvs, \
/usr/bin/svnserve, {ARGV}
umask = 0022
pass_env = LANG
# cvs server makes its working directory in /var/tmp unless told: the jail has /tmp
env = TMPDIR=/tmp
  [[rules]]
  {ARGV} = any
"""


@dataclass
class World:
    sshd: Sshd
    user: User
    jail: str
    home: str          # host path of the jail home
    work: str          # host scratch directory
    syslog: SyslogCapture

    def ssh(self, command: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.sshd.ssh(self.user, command, **kw)  # type: ignore[arg-type]

    def ssh_command(self) -> str:
        return shlex.join(["ssh", *self.sshd.client_options(self.user),
                           "-p", str(self.sshd.port)])


def _chown_tree(top: str, uid: int, gid: int) -> None:
    for base, dirs, files in os.walk(top):
        for name in (base, *(f"{base}/{n}" for n in dirs + files)):
            os.lchown(name, uid, gid)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.config import load_config
    from pam_jail.sshd_config import generate

    undo: list[Callable[[], object]] = []
    syslog = SyslogCapture().start()
    undo.append(syslog.stop)
    try:
        pair = make_jailed_pair(LSH, undo)
        user, jail = pair.shell_user, pair.shell_jail
        add_server_tools(jail, user.name)
        os.makedirs(f"{jail}/usr/local/bin", mode=0o755, exist_ok=True)
        subprocess.run(["gcc", "-static", "-O1", "-o", f"{jail}{ARGV}",
                        f"{HERE}/lsh_argv.c"], check=True)
        os.chmod(f"{jail}{ARGV}", 0o755)
        home = f"{jail}/home/{user.name}"
        work = safe_tmpdir("lshe2e")
        undo.append(lambda: shutil.rmtree(work, ignore_errors=True))
        # a bare git repository and a cvs repository with one module, the user's
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", f"{home}/r.git"],
                       check=True)
        subprocess.run(["cvs", "-Q", "-d", f"{home}/cvsroot", "init"], check=True)
        os.makedirs(f"{work}/mod")
        with open(f"{work}/mod/m.txt", "w") as fh:
            fh.write("cvs content\n")
        subprocess.run(["cvs", "-Q", "-d", f"{home}/cvsroot", "import", "-m", "i", "mod",
                        "v", "r1"], cwd=f"{work}/mod", check=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": work})
        _chown_tree(home, user.uid, user.gid)
        # sshd passes the client's environment only for LANG (the PAM module refuses a
        # jailed login where AcceptEnv admits loader variables: tests/test_wiring.py)
        extra = "AcceptEnv LANG LC_* TERM\n" + generate(load_config())
        sshd = Sshd(PAM_STACK, extra).start()
        undo.append(sshd.stop)
        yield World(sshd, user, jail, home, work, syslog)
    finally:
        for step in reversed(undo):
            step()


# --- the bypass table ---------------------------------------------------------------

RSYNC = "program /usr/bin/rsync: rsync --server rule"
SCP = "program /usr/bin/scp: scp -t/-f rule"
GIT = f"program {GIT_CORE}/git-upload-pack: git service rule"
GITR = f"program {GIT_CORE}/git-receive-pack: git service rule"
CVS = "program /usr/bin/cvs: cvs server rule"
SVN = "program /usr/bin/svnserve: svnserve -t rule"
PARSE = "parse: "

BYPASSES = [
    # rsync: a command for the remote shell, in every spelling
    ("rsync --server -e 'sh -c id' . x", RSYNC),
    ("rsync --server -vlogDtpre.iLsfxCIvu -e sh . x", RSYNC),
    ("rsync --server -vesh . x", RSYNC),
    ("rsync --server -vS -e id . x", RSYNC),
    ("rsync --server -6e id . x", RSYNC),
    ("rsync --server --rsh=sh . x", RSYNC),
    ("rsync --server --rsh sh . x", RSYNC),
    ("rsync -e sh --server . x", RSYNC),
    ("rsync --server --daemon . x", RSYNC),
    ("rsync --daemon --server . x", RSYNC),
    ("rsync --server --config=/home/u/rsyncd.conf . x", RSYNC),
    ("rsync --server --rsync-path=id . x", RSYNC),
    ("rsync --server -s . x", RSYNC),
    ("rsync --server . x -- -e sh", RSYNC),
    ("rsync --server . -- --rsh=sh", RSYNC),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . /etc/passwd", RSYNC),
    ("rsync --server -vlogDtpre.iLsfxCIvu --temp-dir=/tmp . x", RSYNC),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../old . x", RSYNC),
    # scp: -S program, -o options, -F config, host:path, '--' tricks
    ("scp -S /bin/sh -t x", SCP),
    ("scp -tS/bin/sh x", SCP),
    ("scp -vS /bin/sh -f x", SCP),
    ("scp -o ProxyCommand=id -t x", SCP),
    ("scp -oProxyCommand=id -t x", SCP),
    ("scp -F /home/u/cfg -t x", SCP),
    ("scp -t -- -oProxyCommand=id", SCP),
    ("scp -f x -- -S id", SCP),
    ("scp -t evil:x", SCP),
    ("scp -t ../x", SCP),
    ("scp -f /etc/passwd", SCP),
    ("scp -f x/../../../etc/shadow", SCP),
    # git: options to the service, more than one path, paths outside
    ("git-upload-pack --upload-pack=id r.git", GIT),
    ("git-upload-pack -c core.sshCommand=id r.git", GIT),
    ("git-upload-pack -- --upload-pack=id", GIT),
    ("git-upload-pack r.git extra", GIT),
    ("git-upload-pack /etc", GIT),
    ("git-upload-pack ~root/x.git", GIT),
    ("git-receive-pack --receive-pack=id r.git", GITR),
    # cvs: anything but `cvs server`
    ("cvs -e id server", CVS),
    ("cvs -d /tmp/x server", CVS),
    ("cvs checkout mod", CVS),
    ("cvs server x", CVS),
    # svnserve: refused by its rule although it is not installed
    ("svnserve -t --tunnel-user=root", SVN),
    ("svnserve -t --tunnel-user root", SVN),
    ("svnserve -d", SVN),
    ("svnserve -t --config-file=/home/u/x", SVN),
    # shell syntax is plain text: nothing runs
    ("scp -t x; id", SCP),
    ("scp -t x && id", SCP),
    ("scp -t x | sh", SCP),
    ("id; scp -t x", "no rule for id;"),
    ("$(id)", "no rule for $(id)"),
    ("`id`", "no rule for `id`"),
    ("/bin/sh -c id", "no rule for /bin/sh"),
    ("/usr/bin//scp -t x", "no rule for /usr/bin//scp"),
    ("./scp -t x", "no rule for ./scp"),
    # control characters
    ("scp -t x\nid", PARSE + "control character 0x0a"),
    ("scp -t x\rid", PARSE + "control character 0x0d"),
    ("scp\t-t x", PARSE + "control character 0x09"),
    ("scp -t x\x1b[2J", PARSE + "control character 0x1b"),
    ("scp -t 'x", PARSE + "cannot parse"),
]


@pytest.mark.parametrize("command,rule", BYPASSES, ids=[c for c, _ in BYPASSES])
def test_bypass_refused_through_sshd(world: World, command: str, rule: str) -> None:
    world.syslog.clear()
    result = world.ssh(command)
    assert result.returncode == 126, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pam_jail: refused: "), lines
    assert f"(rule: {rule}" in lines[0], lines
    logged = world.syslog.wait_for("pam-jail-shell[", "command refused",
                                   f"user={world.user.name}")
    assert len(logged) == 1, logged
    line = logged[0]
    assert line.startswith("<37>"), line          # auth facility, notice
    assert "jail=shellj" in line and "reason=" in line and rule[:40] in line, line


def test_svnserve_allowed_form_fails_only_because_it_is_absent(world: World) -> None:
    """The contrast with the refusals above: `svnserve -t` passes the rule, then the
    jail has no svnserve (exit 1, 'login refused: execute ...')."""
    result = world.ssh("svnserve -t")
    assert result.returncode == 1, result
    assert "execute /usr/bin/svnserve" in result.stderr


def _printed(stdout: bytes) -> tuple[list[str], dict[str, str]]:
    parts = stdout.decode("utf-8", "surrogateescape").split("\0")
    assert parts and parts[-1] == "", stdout[-100:]
    count = int(parts[0])
    argv, env = parts[1:1 + count], parts[1 + count:-1]
    return argv, dict(e.split("=", 1) for e in env)


def test_metacharacters_reach_the_program_as_text(world: World) -> None:
    result = subprocess.run(world.sshd.ssh_argv(world.user, f"{ARGV} $(id) `id` ';' '|' "
                                                "'&&' $HOME ~ '*'"),
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    argv, _env = _printed(result.stdout)
    assert argv == [ARGV, "$(id)", "`id`", ";", "|", "&&", "$HOME", "~", "*"]


def test_environment_injection_through_setenv_dropped(world: World) -> None:
    injected = ["LD_PRELOAD=/home/x/evil.so", "BASH_ENV=/home/x/rc", "ENV=/x",
                "PATH=/home/x", "GIT_CONFIG_GLOBAL=/home/x/.gitconfig", "RSYNC_RSH=sh",
                "CVS_RSH=sh", "HOME=/", "GCONV_PATH=/home/x", "LANG=C.UTF-8"]
    result = subprocess.run(
        world.sshd.ssh_argv(world.user, ARGV, options=["-o", "SetEnv=" + " ".join(injected)]),
        capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    _argv, env = _printed(result.stdout)
    for name in ("LD_PRELOAD", "BASH_ENV", "ENV", "GIT_CONFIG_GLOBAL", "RSYNC_RSH",
                 "CVS_RSH", "GCONV_PATH"):
        assert name not in env, env
    assert env["PATH"] == "/usr/bin:/bin" and env["HOME"] == f"/home/{world.user.name}"
    assert env["LANG"] == "C.UTF-8"          # named in pass_env


# --- the allowed real client forms --------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-O"])
def test_scp_up_and_down(world: World, legacy: bool) -> None:
    src = f"{world.work}/up-{legacy}.txt"
    with open(src, "w") as fh:
        fh.write("scp\n" * 50)
    up = world.sshd.scp(world.user, src, f":scp-{legacy}.txt", legacy=legacy)
    assert up.returncode == 0, up.stderr
    down = world.sshd.scp(world.user, f":scp-{legacy}.txt", f"{src}.back", legacy=legacy)
    assert down.returncode == 0, down.stderr
    with open(f"{src}.back") as fh:
        assert fh.read() == "scp\n" * 50


def test_rsync_up_and_down(world: World) -> None:
    tree = f"{world.work}/tree"
    os.makedirs(f"{tree}/d", exist_ok=True)
    with open(f"{tree}/d/f", "w") as fh:
        fh.write("rsync\n")
    up = world.sshd.rsync(world.user, "-a", "--delete", f"{tree}/", ":rt/")
    assert up.returncode == 0, up.stderr
    down = world.sshd.rsync(world.user, "-a", ":rt/", f"{world.work}/rback/")
    assert down.returncode == 0, down.stderr
    with open(f"{world.work}/rback/d/f") as fh:
        assert fh.read() == "rsync\n"


def test_sftp(world: World) -> None:
    src = f"{world.work}/s.txt"
    with open(src, "w") as fh:
        fh.write("sftp\n")
    result = world.sshd.sftp_batch(world.user, f"put {src} s.txt\nget s.txt {src}.back\n")
    assert result.returncode == 0, result.stderr
    with open(f"{src}.back") as fh:
        assert fh.read() == "sftp\n"


def test_git_push_and_clone(world: World) -> None:
    seed = f"{world.work}/seed"
    subprocess.run(["git", "init", "-q", "-b", "main", seed], check=True)
    with open(f"{seed}/g.txt", "w") as fh:
        fh.write("git\n")
    git = ["git", "-C", seed, "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "g.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    env = {"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": world.ssh_command(),
           "HOME": world.work}
    url = f"{world.user.name}@127.0.0.1:r.git"
    push = subprocess.run([*git, "push", "-q", url, "main"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert push.returncode == 0, push.stderr
    clone = subprocess.run(["git", "clone", "-q", url, f"{world.work}/clone"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert clone.returncode == 0, clone.stderr
    with open(f"{world.work}/clone/g.txt") as fh:
        assert fh.read() == "git\n"


def test_cvs_checkout_over_ext(world: World) -> None:
    rsh = f"{world.work}/cvs-rsh"
    with open(rsh, "w") as fh:
        fh.write(f"#!/bin/sh\nexec {world.ssh_command()} \"$@\"\n")
    os.chmod(rsh, 0o755)
    root = f":ext:{world.user.name}@127.0.0.1:/home/{world.user.name}/cvsroot"
    os.makedirs(f"{world.work}/co", exist_ok=True)
    result = subprocess.run(["cvs", "-Q", "-d", root, "checkout", "mod"], cwd=f"{world.work}/co",
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "CVS_RSH": rsh, "HOME": world.work})
    assert result.returncode == 0, result.stderr
    with open(f"{world.work}/co/mod/m.txt") as fh:
        assert fh.read() == "cvs content\n"


# --- the argv that reaches execve ---------------------------------------------------

def _quote(word: str, style: int) -> str:
    if style == 0:
        return shlex.quote(word)
    if style == 1:
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join("\\" + c for c in word) if word else "''"


SAFE = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85")
WORDS = st.lists(st.tuples(st.text(SAFE, max_size=12), st.integers(0, 2)), max_size=6)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=WORDS, gap=st.sampled_from([" ", "  "]))
def test_argv_reaching_execve_is_the_allowed_argv(world: World,
                                                  words: list[tuple[str, int]],
                                                  gap: str) -> None:
    command = gap.join([ARGV, *(_quote(w, style) for w, style in words)])
    expected = split_command(command)
    assert expected[1:] == [w for w, _ in words]          # the quoting is right
    result = as_user(world.user, SHELL_ENTRY, "-c", command)
    assert result.returncode == 0, (command, result.stderr)
    argv, _env = _printed(result.stdout)
    assert argv == [ARGV, *expected[1:]]


def _decide(world: World, command: str) -> Decision:
    policy = select_policy(parse_lsh(LSH, "lsh.ini"), world.user.name, [])
    return decide(policy, command, user=world.user.name, home=f"/home/{world.user.name}",
                  client_env={})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.text(max_size=40), prefix=st.sampled_from(["", "x", "pjargv ", "pjargv",
                                                          f"{ARGV} ", "scp -t "]))
def test_random_strings_never_reach_execve_unless_allowed(world: World, junk: str,
                                                          prefix: str) -> None:
    """Random commands: what the policy refuses runs nothing (no output, exit 126); what
    it allows for the printer prints exactly the policy's argv."""
    command = prefix + junk
    if "\0" in command:
        return                    # execve cannot carry a NUL: no client can send one
    decision = _decide(world, command)
    result = as_user(world.user, SHELL_ENTRY, "-c", command)
    if not decision.allowed:
        assert result.returncode == 126 and result.stdout == b"", (command, result)
        return
    if decision.argv[0] == ARGV:
        assert result.returncode == 0, (command, result.stderr)
        assert tuple(_printed(result.stdout)[0]) == decision.argv
