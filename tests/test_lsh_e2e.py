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
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jail_fixtures import PAM_STACK, SHELL_ENTRY, make_jailed_pair, undoing
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture
from test_lsh_home import GIT_CORE, add_server_tools, as_user, seed_repo
from util import safe_tmpdir

from pam_jail.admin.build import copy_into
from pam_jail.login.lsh import JailFacts
from pam_jail.login.policy import Decision, decide, parse_lsh, select_policy, split_command

pytestmark = [pytest.mark.root, pytest.mark.e2e]

HERE = os.path.dirname(os.path.abspath(__file__))
ARGV = "/usr/local/bin/pjargv"
LSH = f"""\
[default]
programs = /usr/bin/scp, /usr/bin/rsync, /usr/lib/openssh/sftp-server, \
{GIT_CORE}/git-upload-pack, {GIT_CORE}/git-receive-pack, /usr/bin/cvs, \
/usr/bin/svnserve, /usr/bin/md5sum, /usr/bin/sha1sum, /usr/bin/df, /usr/bin/echo, {ARGV}
paths = %h, /srv/git, /srv/cvs, /srv/svn
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


ADMIN_HOOK = "#!/bin/sh\n/usr/bin/touch /tmp/admin-hook-ran\n"


def shared_git_repo(jail: str, repo: str, user: User, hooks_owner: int = 0) -> str:
    """A bare repository kept by root, as an administrator shares one (docs/lsh.md):
    config and hooks/ (with a hook) root's and not writable; the directory itself, its
    objects/ and refs/ the user's group and group-writable (what a push writes), the
    directory sticky. Returns the host path."""
    host = f"{jail}{repo}"
    os.makedirs(os.path.dirname(host), mode=0o755, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", host], check=True)
    with open(f"{host}/hooks/pre-receive", "w") as fh:
        fh.write(ADMIN_HOOK)
    os.chmod(f"{host}/hooks/pre-receive", 0o755)
    for sub in ("objects", "refs"):
        for base, dirs, files in os.walk(f"{host}/{sub}"):
            for name in (base, *(f"{base}/{n}" for n in dirs + files)):
                os.chown(name, 0, user.gid)
                os.chmod(name, 0o2775 if os.path.isdir(name) else 0o664)
    os.chown(f"{host}/hooks", hooks_owner, 0)
    # a push to the branch HEAD names creates HEAD.lock here: group-writable, sticky
    os.chown(host, 0, user.gid)
    os.chmod(host, 0o3775)
    return host


def shared_cvs_root(jail: str, root: str, user: User, work: str) -> None:
    """A cvs repository kept by root with one module the user may commit to."""
    host = f"{jail}{root}"
    os.makedirs(os.path.dirname(host), mode=0o755, exist_ok=True)
    subprocess.run(["cvs", "-Q", "-d", host, "init"], check=True)
    os.makedirs(f"{work}/mod", exist_ok=True)
    with open(f"{work}/mod/m.txt", "w") as fh:
        fh.write("cvs content\n")
    subprocess.run(["cvs", "-Q", "-d", host, "import", "-m", "i", "mod", "v", "r1"],
                   cwd=f"{work}/mod", check=True, env={"PATH": "/usr/bin:/bin", "HOME": work})
    _chown_tree(f"{host}/mod", user.uid, user.gid)
    for name in ("history", "val-tags"):
        if os.path.exists(f"{host}/CVSROOT/{name}"):
            os.chmod(f"{host}/CVSROOT/{name}", 0o666)


def _chown_tree(top: str, uid: int, gid: int) -> None:
    for base, dirs, files in os.walk(top):
        for name in (base, *(f"{base}/{n}" for n in dirs + files)):
            os.lchown(name, uid, gid)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
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
        copy_into(jail, ["/usr/bin/md5sum", "/usr/bin/sha1sum", "/usr/bin/df"])
        # the user's own bare repository and cvs repository, in the home (refused: the
        # user can write their hooks and CVSROOT), and the shared ones kept by root
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", f"{home}/r.git"],
                       check=True)
        subprocess.run(["cvs", "-Q", "-d", f"{home}/cvsroot", "init"], check=True)
        _chown_tree(home, user.uid, user.gid)
        shared_git_repo(jail, "/srv/git/r.git", user)
        shared_cvs_root(jail, "/srv/cvs", user, work)
        os.makedirs(f"{jail}/srv/svn", mode=0o755)
        # sshd passes the client's environment only for LANG (the PAM module refuses a
        # jailed login where AcceptEnv admits loader variables: tests/test_wiring.py)
        extra = "AcceptEnv LANG LC_* TERM\n" + generate(load_config())
        sshd = Sshd(PAM_STACK, extra).start()
        undo.append(sshd.stop)
        yield World(sshd, user, jail, home, work, syslog)


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
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../../../etc . x", RSYNC),
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
    ("svnserve -t", SVN),                       # root: the home, the user's
    ("svnserve -t -r /srv/git", SVN),           # holds non-repositories
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
    """The contrast with the refusals above: `svnserve -t -r /srv/svn` (a root kept by
    root) passes the rule, then the jail has no svnserve (exit 1, 'login refused:
    execute ...'). Plain `svnserve -t` serves the first allowed directory, the home:
    the user's, refused (the bypass table)."""
    result = world.ssh("svnserve -t -r /srv/svn")
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


def _seed(world: World, name: str) -> list[str]:
    """A local repository with one commit; the git command prefix to use on it."""
    return seed_repo(f"{world.work}/{name}", "g.txt", "git\n")


def _git(world: World, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": world.ssh_command(),
           "HOME": world.work}
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def test_git_push_and_clone_shared_repository(world: World) -> None:
    """A repository kept by root: push and clone work (safe.directory is pinned to it:
    in mode shell its owner shows as 65534, which git calls dubious ownership), and its
    hooks do not run (core.hooksPath is pinned to /dev/null)."""
    admin_marker = f"{world.jail}/tmp/admin-hook-ran"
    if os.path.exists(admin_marker):
        os.unlink(admin_marker)
    url = f"{world.user.name}@127.0.0.1:/srv/git/r"
    push = _git(world, *_seed(world, "seed"), "push", "-q", url, "main")
    assert push.returncode == 0, push.stderr
    clone = _git(world, "git", "clone", "-q", url, f"{world.work}/clone")
    assert clone.returncode == 0, clone.stderr
    with open(f"{world.work}/clone/g.txt") as fh:
        assert fh.read() == "git\n"
    assert not os.path.exists(admin_marker), "a repository hook ran"


def test_the_administrators_git_hooks_run_and_the_repositorys_do_not(world: World) -> None:
    """Issue 20: JAIL/etc/pam_jail/hooks/git (root's) is git's hooks directory for every
    push: its post-receive runs, as the user, inside the jail; the repository's own
    hooks/ does not. Left to the user (owner of the directory): the push is refused."""
    hooks = f"{world.jail}/etc/pam_jail/hooks/git"
    shared_git_repo(world.jail, "/srv/git/hooked.git", world.user)
    with open(f"{world.jail}/srv/git/hooked.git/hooks/post-receive", "w") as fh:
        fh.write("#!/bin/sh\necho REPO-HOOK >&2\n")
    os.chmod(f"{world.jail}/srv/git/hooked.git/hooks/post-receive", 0o755)
    os.makedirs(hooks, mode=0o755)
    try:
        with open(f"{hooks}/post-receive", "w") as fh:
            fh.write("#!/bin/sh\nread old new ref\necho \"ADMIN-HOOK $ref\" >&2\n")
        os.chmod(f"{hooks}/post-receive", 0o755)
        url = f"{world.user.name}@127.0.0.1:/srv/git/hooked.git"
        push = _git(world, *_seed(world, "seed-hooked"), "push", url, "main")
        assert push.returncode == 0, push.stderr
        assert "remote: ADMIN-HOOK refs/heads/main" in push.stderr, push.stderr
        assert "REPO-HOOK" not in push.stderr
        os.chown(hooks, world.user.uid, 0)           # an administrator's slip
        again = _git(world, *_seed(world, "seed-hooked2"), "push", "-f", url, "main")
        assert again.returncode != 0, again.stderr
        assert "admin git hooks" in again.stderr and "owned by the user" in again.stderr, \
            again.stderr
        assert "ADMIN-HOOK" not in again.stderr
    finally:
        shutil.rmtree(f"{world.jail}/etc/pam_jail/hooks", ignore_errors=True)


EVIL_HOOK = "#!/bin/sh\n/usr/bin/touch /home/{user}/hook-ran\necho HOOK-RAN >&2\n"


def _evil_repo(world: World, name: str) -> str:
    """A bare repository on the client with a pre-receive hook (and core.hooksPath
    pointing at it), as a user would prepare one to upload."""
    evil = f"{world.work}/{name}"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", evil], check=True)
    hook = f"{evil}/hooks/pre-receive"
    with open(hook, "w") as fh:
        fh.write(EVIL_HOOK.format(user=world.user.name))
    os.chmod(hook, 0o755)
    subprocess.run(["git", "config", "-f", f"{evil}/config", "core.hooksPath", "hooks"],
                   check=True)
    return evil


def test_git_hook_uploaded_by_the_user_does_not_run(world: World) -> None:
    """Issue 11.3: the user uploads a bare repository with hooks/pre-receive (rsync
    through sshd), then pushes to it. Before the fix git-receive-pack ran the hook
    (`hook-ran` appeared in the home); now the push is refused and nothing runs."""
    marker = f"{world.home}/hook-ran"
    evil = _evil_repo(world, "evil.git")
    up = world.sshd.rsync(world.user, "-a", f"{evil}/", ":evil.git/")
    assert up.returncode == 0, up.stderr
    assert os.path.exists(f"{world.home}/evil.git/hooks/pre-receive")
    for url in (f"{world.user.name}@127.0.0.1:evil.git",
                f"{world.user.name}@127.0.0.1:~/evil.git",
                f"ssh://{world.user.name}@127.0.0.1:{world.sshd.port}/home/"
                f"{world.user.name}/evil"):
        push = _git(world, *_seed(world, "seed"), "push", "-q", url, "main")
        assert push.returncode != 0, (url, push.stderr)
        assert "HOOK-RAN" not in push.stderr
        assert "owned by the user" in push.stderr or "writable by the user" in push.stderr, \
            push.stderr
        assert not os.path.exists(marker), f"the uploaded hook ran ({url})"


def test_git_hook_in_a_user_writable_hooks_dir_does_not_run(world: World) -> None:
    """A repository kept by root whose hooks/ the user owns (an administrator's slip):
    the user uploads a hook with scp; the push is refused, the hook never runs."""
    marker = f"{world.home}/hook-ran"
    host = shared_git_repo(world.jail, "/srv/git/slip.git", world.user,
                           hooks_owner=world.user.uid)
    os.unlink(f"{host}/hooks/pre-receive")
    hook = f"{world.work}/pre-receive"
    with open(hook, "w") as fh:
        fh.write(EVIL_HOOK.format(user=world.user.name))
    os.chmod(hook, 0o755)
    up = world.sshd.scp(world.user, hook, ":/srv/git/slip.git/hooks/pre-receive")
    assert up.returncode == 0, up.stderr
    push = _git(world, *_seed(world, "seed"), "push", "-q",
                f"{world.user.name}@127.0.0.1:/srv/git/slip.git", "main")
    assert push.returncode != 0, push.stderr
    assert "repository hooks" in push.stderr and "owned by the user" in push.stderr, \
        push.stderr
    assert not os.path.exists(marker), "the uploaded hook ran"


def _cvs(world: World, root: str, *argv: str) -> subprocess.CompletedProcess[str]:
    rsh = f"{world.work}/cvs-rsh"
    with open(rsh, "w") as fh:
        fh.write(f"#!/bin/sh\nexec {world.ssh_command()} \"$@\"\n")
    os.chmod(rsh, 0o755)
    co = f"{world.work}/co"
    os.makedirs(co, exist_ok=True)
    return subprocess.run(["cvs", "-Q", "-d", f":ext:{world.user.name}@127.0.0.1:{root}",
                           *argv], cwd=co, capture_output=True, text=True, timeout=60,
                          check=False,
                          env={"PATH": "/usr/bin:/bin", "CVS_RSH": rsh, "HOME": world.work})


def test_cvs_checkout_over_ext(world: World) -> None:
    result = _cvs(world, "/srv/cvs", "checkout", "mod")
    assert result.returncode == 0, result.stderr
    with open(f"{world.work}/co/mod/m.txt") as fh:
        assert fh.read() == "cvs content\n"


def test_cvs_users_own_repository_is_not_served(world: World) -> None:
    """The user's own CVSROOT (loginfo, commitinfo... would run the user's programs):
    cvs runs with --allow-root for the repositories kept by root only."""
    result = _cvs(world, f"/home/{world.user.name}/cvsroot", "checkout", "CVSROOT")
    assert result.returncode != 0, result.stdout
    assert "Bad root" in result.stderr, result.stderr


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
    facts = JailFacts(world.jail, world.user.uid, frozenset({world.user.gid}))
    return decide(policy, command, user=world.user.name, home=f"/home/{world.user.name}",
                  client_env={}, facts=facts)


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


# --- issue 13: --files-from, ~/, rclone's probes -------------------------------------

def _tree(world: World, name: str, files: dict[str, str]) -> str:
    top = f"{world.work}/{name}"
    for rel, text in files.items():
        os.makedirs(os.path.dirname(f"{top}/{rel}"), exist_ok=True)
        with open(f"{top}/{rel}", "w") as fh:
            fh.write(text)
    return top


def test_rsync_files_from(world: World) -> None:
    """The list over the protocol (--files-from=LOCAL: the server gets --files-from=-
    --from0) and a list file on the server inside the allowed paths both work; a list
    outside is refused."""
    src = _tree(world, "ffsrc", {"a/one": "1\n", "a/two": "2\n", "b/three": "3\n"})
    up = world.sshd.rsync(world.user, "-a", f"{src}/", ":ff/")
    assert up.returncode == 0, up.stderr
    with open(f"{world.work}/ff.list", "w") as fh:
        fh.write("a/one\nb/three\n")
    pull = world.sshd.rsync(world.user, "-a", f"--files-from={world.work}/ff.list", ":ff/",
                            f"{world.work}/ffback/")
    assert pull.returncode == 0, pull.stderr
    assert sorted(os.listdir(f"{world.work}/ffback/a")) == ["one"]
    assert os.path.exists(f"{world.work}/ffback/b/three")
    up = world.sshd.rsync(world.user, f"{world.work}/ff.list", ":ff.list")
    assert up.returncode == 0, up.stderr
    remote = world.sshd.rsync(world.user, "-a", "--files-from=:ff.list", ":ff/",
                              f"{world.work}/ffback2/")
    assert remote.returncode == 0, remote.stderr
    assert os.path.exists(f"{world.work}/ffback2/b/three")
    assert not os.path.exists(f"{world.work}/ffback2/a/two")
    outside = world.sshd.rsync(world.user, "-a", "--files-from=:/etc/passwd", ":ff/",
                               f"{world.work}/ffback3/")
    assert outside.returncode != 0
    assert "--files-from /etc/passwd: outside the allowed directories" in outside.stderr, \
        outside.stderr


@pytest.mark.parametrize("how", ["scp-sftp", "scp-O", "rsync"])
def test_tilde_paths(world: World, how: str) -> None:
    """`host:~/x` is the home's x, as on an unjailed host (issue 13.2)."""
    with open(f"{world.home}/tilde.txt", "w") as fh:
        fh.write("tilde\n")
    os.chown(f"{world.home}/tilde.txt", world.user.uid, world.user.gid)
    back = f"{world.work}/tilde-{how}"
    if how == "rsync":
        result = world.sshd.rsync(world.user, ":~/tilde.txt", back)
    else:
        result = world.sshd.scp(world.user, ":~/tilde.txt", back, legacy=how == "scp-O")
    assert result.returncode == 0, result.stderr
    with open(back) as fh:
        assert fh.read() == "tilde\n"
    up = (world.sshd.rsync(world.user, back, f":~/up-{how}.txt") if how == "rsync" else
          world.sshd.scp(world.user, back, f":~/up-{how}.txt", legacy=how == "scp-O"))
    assert up.returncode == 0, up.stderr
    assert os.path.exists(f"{world.home}/up-{how}.txt")
    assert not os.path.exists(f"{world.home}/~")


def test_rclone_hashes_over_ssh(world: World) -> None:
    """rclone's sftp backend asks the shell type (echo), whether md5sum/sha1sum work,
    then md5sum PATH per file: allowed by the hashsum/echo rules, the hashes match, and
    no probe is refused at notice level (issue 13.5). The first run names one file:
    rclone 1.60 answers "hash unsupported" for files listed while its first probe is
    still running (it saves what it found in its config for the runs after)."""
    import hashlib

    src = _tree(world, "rcsrc", {"r/a.txt": "alpha\n", "r/b c.txt": "beta\n"})
    up = world.sshd.rsync(world.user, "-a", f"{src}/", ":rc/")
    assert up.returncode == 0, up.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": world.work,
           "RCLONE_CONFIG": f"{world.work}/rclone.conf",
           "RCLONE_CONFIG_PJ_TYPE": "sftp", "RCLONE_CONFIG_PJ_HOST": "127.0.0.1",
           "RCLONE_CONFIG_PJ_PORT": str(world.sshd.port),
           "RCLONE_CONFIG_PJ_USER": world.user.name,
           "RCLONE_CONFIG_PJ_KEY_FILE": world.user.key}
    world.syslog.clear()
    first = subprocess.run(["rclone", "-vv", "md5sum", "pj:rc/r/a.txt"], capture_output=True,
                           text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[0] == hashlib.md5(b"alpha\n").hexdigest(), first.stdout
    for cmd in ("echo ${ShellId}%ComSpec%", "md5sum", "sha1sum",
                f"md5sum /home/{world.user.name}/rc/r/a.txt"):
        assert f"Running remote command: {cmd}\n" in first.stderr or \
            f"remote command: {cmd}\n" in first.stderr, (cmd, first.stderr)
    for kind, algo in (("md5sum", hashlib.md5), ("sha1sum", hashlib.sha1)):
        result = subprocess.run(["rclone", "-vv", kind, "pj:rc/r"], capture_output=True, text=True,
                                env=env, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        got = dict(reversed(line.split("  ", 1)) for line in result.stdout.splitlines())
        for name, text in (("a.txt", "alpha\n"), ("b c.txt", "beta\n")):
            assert got[name] == algo(text.encode()).hexdigest(), (kind, got)
    check = subprocess.run(["rclone", "check", f"{src}/r", "pj:rc/r"], capture_output=True,
                           text=True, env=env, timeout=120, check=False)
    assert check.returncode == 0, check.stderr
    assert "0 differences found" in check.stderr and "hash" not in check.stderr.lower() \
        .replace("0 hashes could not be checked", ""), check.stderr
    allowed = world.syslog.wait_for("command allowed", f"user={world.user.name}",
                                    "/usr/bin/md5sum")
    assert allowed, world.syslog.lines
    notices = [line for line in world.syslog.lines
               if line.startswith("<37>") and "command refused" in line]
    assert notices == [], notices


def test_refused_probe_is_logged_at_debug_level(world: World) -> None:
    """`md5 -r` (rclone's BSD fallback) has no rule here: refused, logged at debug
    (<39>), not notice, so probing clients do not flood the log."""
    world.syslog.clear()
    result = world.ssh("md5 -r")
    assert result.returncode == 126
    lines = world.syslog.wait_for("command refused", f"user={world.user.name}")
    assert len(lines) == 1 and lines[0].startswith("<39>"), lines
