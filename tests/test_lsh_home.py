"""Configuration the server-side programs read from the user's home, tried for real.

A jailed user can usually write the home directory (that is what scp, sftp and rsync
are for), so every file a server-side program reads from there is the user's to plant.
Each test plants the file in the jail home of a real shell-entry user, then runs the
allowed server-side form through the installed pam-jail-shell as that user (setpriv;
the clients run on the host with an ssh stand-in that does what sshd does: join the
command words and hand them to the login shell's `-c`). A control shows the planted
file is one the program would honour where it does read it, so a pass is not a file
the program never looks at by accident of its spelling.

Findings (docs/lsh.md, "Configuration read from the home directory"):
  rsync --server     ~/.popt: not read (aliases and exec entries ignored)
  cvs server         ~/.cvsrc: not read
  git-upload-pack    ~/.gitconfig and ~/.config/git/config: READ (packObjectsHook runs a
                     command) -> the git rule sets GIT_CONFIG_GLOBAL=/dev/null
  scp -t/-f, rsync   ~/.ssh/config: never read (the rules forbid what would spawn ssh)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import REPO, SHELL_ENTRY, make_jailed_pair, undoing
from sshd_harness import User
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]

GIT_CORE = "/usr/lib/git-core"
LSH = f"""\
[default]
programs = /usr/bin/rsync, /usr/bin/scp, /usr/bin/cvs, {GIT_CORE}/git-upload-pack, \
{GIT_CORE}/git-receive-pack
paths = %h, /srv/git, /srv/cvs
umask = 0022
"""
# The same, except that the administrator points git's global config at the user's
# file: the hole the built-in GIT_CONFIG_GLOBAL=/dev/null closes, opened on purpose.
LSH_GIT_OPEN = LSH + "env = GIT_CONFIG_GLOBAL=/home/{user}/.gitconfig\n"

# ssh stand-in for rsync -e, scp -S, GIT_SSH_COMMAND and CVS_RSH: drop ssh options and
# the host, join the command words with spaces (as sshd does) and run the login shell.
RSH = """\
#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --) shift; break;; -l|-p|-o) shift 2;; -*) shift;; *) break;; esac
done
shift
exec setpriv --reuid={uid} --regid={gid} --clear-groups {shell} -c "$*"
"""

CVS_VALID_RESPONSES = (
    "Valid-responses ok error Valid-requests Checked-in New-entry Checksum Copy-file "
    "Updated Created Update-existing Merged Patched Rcs-diff Mode Mod-time Removed "
    "Remove-entry Set-static-directory Clear-static-directory Set-sticky Clear-sticky "
    "Template Notified Module-expansion Wrapper-rcsOption M Mbinary E F MT\n")


@dataclass
class HomeWorld:
    user: User
    jail: str
    home: str      # the user's home inside the jail, as a host path
    inner: str     # the same home as the user sees it inside the jail
    work: str      # host scratch directory for the clients
    rsh: str       # the ssh stand-in


def add_server_tools(jail: str, user: str) -> None:
    """git and cvs in the shell jail, and what git needs besides its files."""
    from pam_jail.admin.build import init_jail

    init_jail(jail, ["git", "cvs"], users=[user],
              profiles_file=f"{REPO}/etc/pam_jail/profiles.ini")
    # git names its temporary files from /dev/urandom; the git profile lacks it
    if not os.path.exists(f"{jail}/dev/urandom"):
        os.mknod(f"{jail}/dev/urandom", 0o20666, os.makedev(1, 9))
        os.chmod(f"{jail}/dev/urandom", 0o666)


def write_rsh(path: str, user: User) -> str:
    with open(path, "w") as fh:
        fh.write(RSH.format(uid=user.uid, gid=user.gid, shell=SHELL_ENTRY))
    os.chmod(path, 0o755)
    return path


def write_lsh(jail: str, text: str) -> None:
    path = f"{jail}/etc/pam_jail/lsh.ini"
    with open(path + ".new", "w") as fh:
        fh.write(text)
    os.chmod(path + ".new", 0o644)
    os.rename(path + ".new", path)


def as_user(user: User, *argv: str, cwd: str = "/", env: dict[str, str] | None = None,
            stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
                           "--clear-groups", *argv], input=stdin, capture_output=True,
                          cwd=cwd, env=env or {"PATH": "/usr/bin:/bin"}, timeout=60,
                          check=False)


def plant(world: HomeWorld, rel: str, text: str) -> str:
    """A file the user owns in the jail home (as if uploaded)."""
    path = f"{world.home}/{rel}"
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    for p in (path, parent):
        os.chown(p, world.user.uid, world.user.gid)
    return path


def client(*argv: str, cwd: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, check=False)


@pytest.fixture(scope="module")
def hw() -> Iterator[HomeWorld]:
    with undoing() as undo:
        pair = make_jailed_pair(LSH, undo)
        user, jail = pair.shell_user, pair.shell_jail
        add_server_tools(jail, user.name)
        work = safe_tmpdir("lshhome")
        undo.append(lambda: shutil.rmtree(work, ignore_errors=True))
        rsh = write_rsh(f"{work}/rsh", user)
        # what the git and cvs rules serve: repositories kept by root (docs/lsh.md)
        os.makedirs(f"{jail}/srv", mode=0o755, exist_ok=True)
        subprocess.run(["cvs", "-Q", "-d", f"{jail}/srv/cvs", "init"], check=True)
        inner = f"/home/{user.name}"
        yield HomeWorld(user, jail, f"{jail}{inner}", inner, work, rsh)


@pytest.fixture
def clean_home(hw: HomeWorld) -> Iterator[HomeWorld]:
    yield hw
    for entry in os.listdir(hw.home):
        path = f"{hw.home}/{entry}"
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


# --- rsync: ~/.popt ---------------------------------------------------------------

POPT = """\
rsync alias --server --server --log-file=popt-server.log
rsync alias --sender --sender --log-file=popt-sender.log
rsync alias --pjcontrol --log-file=popt-control.log
rsync exec --delete /usr/bin/touch popt-exec-ran
rsync exec --recursive /usr/bin/touch popt-exec-ran
"""


def test_rsync_server_does_not_read_popt(clean_home: HomeWorld) -> None:
    w = clean_home
    plant(w, ".popt", POPT)
    plant(w, ".ssh/config", "Host *\n  ProxyCommand /usr/bin/touch ssh-config-ran\n")
    src = f"{w.work}/src"
    os.makedirs(f"{src}/sub", exist_ok=True)
    with open(f"{src}/sub/f", "w") as fh:
        fh.write("data\n")
    up = client("rsync", "-e", w.rsh, "-a", "--delete", f"{src}/", "x:dest/", cwd=w.work)
    assert up.returncode == 0, up.stderr
    down = client("rsync", "-e", w.rsh, "-a", "x:dest/", f"{w.work}/back/", cwd=w.work)
    assert down.returncode == 0, down.stderr
    with open(f"{w.work}/back/sub/f") as fh:
        assert fh.read() == "data\n"
    # the server ran (dest/ written by the user), and read nothing of the above
    assert os.stat(f"{w.home}/dest/sub/f").st_uid == w.user.uid
    left = sorted(os.listdir(w.home))
    assert left == [".popt", ".ssh", "dest"], left
    # control: the same file read by rsync in client mode, as the user, with this HOME
    ctl = as_user(w.user, "/usr/bin/rsync", "--pjcontrol", ".popt", "popt-copy", cwd=w.home,
                  env={"PATH": "/usr/bin:/bin", "HOME": w.home})
    assert ctl.returncode == 0, ctl.stderr
    assert os.path.exists(f"{w.home}/popt-control.log"), os.listdir(w.home)


# --- cvs: ~/.cvsrc ----------------------------------------------------------------

@pytest.mark.parametrize("cvsrc,honoured", [
    ("cvs -v\n", "Copyright"),             # would print the version banner and exit
    ("cvs -t\n", "-> main"),               # would trace to stderr
    ("server -x\ncvs -H\n", "Usage"),      # would print help and exit
])
def test_cvs_server_does_not_read_cvsrc(clean_home: HomeWorld, cvsrc: str,
                                        honoured: str) -> None:
    w = clean_home
    plant(w, ".cvsrc", cvsrc)
    result = as_user(w.user, SHELL_ENTRY, "-c", "cvs server",
                     stdin=(CVS_VALID_RESPONSES + "version\n").encode())
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.returncode == 0, out + err
    assert out.startswith("M Concurrent Versions System") and out.endswith("ok\n"), out + err
    assert honoured not in out + err
    # control: cvs in client mode, as the user with this HOME, does read it
    ctl = as_user(w.user, "/usr/bin/cvs", "-d", "/nonexistent", "version", cwd=w.home,
                  env={"PATH": "/usr/bin:/bin", "HOME": w.home})
    ctl_out = (ctl.stdout + ctl.stderr).decode(errors="replace")
    assert honoured in ctl_out, ctl_out


# --- git: ~/.gitconfig and ~/.config/git/config ------------------------------------

GITCONFIG = '[uploadpack]\n\tpackObjectsHook = "touch {marker};"\n'


def _bare_repo(w: HomeWorld) -> None:
    """A repository kept by root in the jail's /srv/git (the git rule refuses the
    user's own: its hooks would be the user's to write)."""
    repo = f"{w.jail}/srv/git/r.git"
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(os.path.dirname(repo), mode=0o755, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", repo], check=True)
    seed = f"{w.work}/seed"
    shutil.rmtree(seed, ignore_errors=True)
    git = seed_repo(seed, "a", "content\n")
    subprocess.run([*git, "push", "-q", repo, "main"], check=True)


def seed_repo(seed: str, name: str, text: str) -> list[str]:
    """A local repository at `seed` with one commit of file `name` (made once); the git
    command prefix to use on it."""
    git = ["git", "-C", seed, "-c", "user.email=t@t", "-c", "user.name=t"]
    if not os.path.exists(seed):
        subprocess.run(["git", "init", "-q", "-b", "main", seed], check=True)
        with open(f"{seed}/{name}", "w") as fh:
            fh.write(text)
        subprocess.run([*git, "add", name], check=True)
        subprocess.run([*git, "commit", "-qm", "seed"], check=True)
    return git


def _clone(w: HomeWorld, dest: str) -> subprocess.CompletedProcess[str]:
    shutil.rmtree(f"{w.work}/{dest}", ignore_errors=True)
    return client("git", "clone", "-q", "x:/srv/git/r.git", dest, cwd=w.work,
                  env={"GIT_SSH_COMMAND": w.rsh, "GIT_SSH_VARIANT": "simple"})


def test_git_does_not_read_the_users_gitconfig(clean_home: HomeWorld) -> None:
    w = clean_home
    _bare_repo(w)
    plant(w, ".gitconfig", GITCONFIG.format(marker=f"{w.inner}/gitconfig-ran"))
    plant(w, ".config/git/config", GITCONFIG.format(marker=f"{w.inner}/xdg-config-ran"))
    result = _clone(w, "c1")
    assert result.returncode == 0, result.stderr
    with open(f"{w.work}/c1/a") as fh:
        assert fh.read() == "content\n"
    assert not os.path.exists(f"{w.home}/gitconfig-ran")
    assert not os.path.exists(f"{w.home}/xdg-config-ran")


def test_git_reads_the_gitconfig_when_the_admin_opens_it(clean_home: HomeWorld) -> None:
    """Control, through the real shell entry: the planted hook is live when the section's
    env points GIT_CONFIG_GLOBAL back at the user's file (env overrides the rule's)."""
    w = clean_home
    _bare_repo(w)
    plant(w, ".gitconfig", GITCONFIG.format(marker=f"{w.inner}/gitconfig-ran"))
    write_lsh(w.jail, LSH_GIT_OPEN.replace("{user}", w.user.name))
    try:
        _clone(w, "c2")
    finally:
        write_lsh(w.jail, LSH)
    assert os.path.exists(f"{w.home}/gitconfig-ran")


# --- scp: ~/.ssh/config -------------------------------------------------------------

def test_scp_server_never_reads_ssh_config(clean_home: HomeWorld) -> None:
    """scp -O (the scp protocol: the server runs `scp -t` / `scp -f`)."""
    w = clean_home
    plant(w, ".ssh/config", "Host *\n  ProxyCommand /usr/bin/touch ssh-config-ran\n")
    src = f"{w.work}/s.txt"
    with open(src, "w") as fh:
        fh.write("scp data\n")
    up = client("scp", "-O", "-q", "-S", w.rsh, src, "x:s.txt", cwd=w.work)
    assert up.returncode == 0, up.stderr
    down = client("scp", "-O", "-q", "-S", w.rsh, "x:s.txt", f"{w.work}/s2.txt", cwd=w.work)
    assert down.returncode == 0, down.stderr
    with open(f"{w.work}/s2.txt") as fh:
        assert fh.read() == "scp data\n"
    # scp -t host:path, the one form that would make the server side run ssh: refused
    refused = as_user(w.user, SHELL_ENTRY, "-c", "scp -t x:s.txt")
    assert refused.returncode == 126, refused.stderr
    assert sorted(os.listdir(w.home)) == [".ssh", "s.txt"]
