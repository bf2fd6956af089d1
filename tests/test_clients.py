"""The real-client matrix (issue 13 item 8): each client users of rsync.net-style hosts run,
in each mode, each operation they need, through a real sshd on 127.0.0.1; and the
refusals that are policy. Clients come from Debian (openssh-client, rsync, rclone, restic,
borgbackup, lftp, sshfs, git) and PyPI (paramiko, asyncssh), installed by scripts/setup.

One module world: a mode-pam user (pam-jail-lsh), a mode-shell user (pam-jail-shell) and
a mode-sftp user (sshd's ChrootDirectory + internal-sftp), one sshd with the generated
Match blocks. Each case uploads into and reads back from the user's jail home.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import (
    PAM_STACK,
    SHELL_ENTRY,
    SYSTEM_CONFIG,
    build_jail,
    make_jailed_pair,
    remove_jail,
    write_config,
)
from sshd_harness import HOST, Sshd, User, make_user, remove_user
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH = """\
[default]
programs = /usr/bin/scp, /usr/bin/rsync, /usr/lib/openssh/sftp-server, /usr/bin/md5sum, \
/usr/bin/sha1sum, /usr/bin/df, /bin/echo, /usr/bin/borg, /usr/bin/env, /usr/bin/hg, \
/usr/bin/rdiff-backup, /usr/bin/unison
paths = %h
umask = 0022
pass_env = LANG, LC_*
  [[rules]]
  /usr/bin/env = none
  /usr/bin/rdiff-backup = rdiff-backup
"""
MODES = ["pam", "shell", "sftp"]
NAME = "spaced name ü.txt"          # spaces and unicode, under the default escaping


@dataclass
class World:
    sshd: Sshd
    users: dict[str, User]
    jails: dict[str, str]
    local: str                       # a root-only scratch directory on the client side

    def home(self, mode: str) -> str:
        return f"{self.jails[mode]}/home/{self.users[mode].name}"

    def ssh_command(self, mode: str) -> str:
        return shlex.join(["ssh", *self.sshd.client_options(self.users[mode]), "-p",
                           str(self.sshd.port)])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    undo: list[Callable[[], object]] = []
    try:
        pair = make_jailed_pair(LSH, undo)
        for root in (pair.pam_jail, pair.shell_jail):   # the clients' server sides
            from testbed import PROFILES

            from pam_jail.admin.build import copy_into, init_jail

            # locale: Python's start-up inside a PAM-path jail finds C.UTF-8 (PEP 538)
            init_jail(root, ["borg", "checksums", "locale", "hg", "rdiff-backup", "unison"],
                      profiles_file=PROFILES)
            copy_into(root, ["/usr/bin/df"])
        sftp_jail = build_jail(["uidbasics"], [])
        undo.append(lambda: remove_jail(sftp_jail))
        name = f"pjc{os.getpid() % 100000}"
        sftp = make_user(name, SHELL_ENTRY, f"{sftp_jail}/./home/{name}", create_home=False)
        undo.append(lambda: remove_user(name, remove_home=False))
        from pam_jail.admin.build import add_users

        add_users(sftp_jail, [name])
        with open(SYSTEM_CONFIG) as fh:
            text = fh.read()
        write_config(text.replace("[users]\n", f"  [[drop]]\n  root = {sftp_jail}\n"
                                  f"  mode = sftp\n[users]\n{name} = drop\n"))
        sshd = Sshd(PAM_STACK, "AcceptEnv LANG\n" + generate(load_config())).start()
        undo.append(sshd.stop)
        local = safe_tmpdir("clients")
        os.chmod(local, 0o700)
        undo.append(lambda: shutil.rmtree(local, ignore_errors=True))
        yield World(sshd, {"pam": pair.pam_user, "shell": pair.shell_user, "sftp": sftp},
                    {"pam": pair.pam_jail, "shell": pair.shell_jail, "sftp": sftp_jail},
                    local)
    finally:
        for step in reversed(undo):     # every step, even when one fails
            try:
                step()
            except Exception as err:  # noqa: BLE001
                print(f"test_clients: cleanup step failed: {err!r}")


def _tree(base: str) -> str:
    """A small tree: a file with spaces and unicode in its name, a hard link, a subdir."""
    os.makedirs(f"{base}/sub", exist_ok=True)
    with open(f"{base}/{NAME}", "w") as fh:
        fh.write("payload\n" * 100)
    with open(f"{base}/sub/b.txt", "w") as fh:
        fh.write("bee\n")
    if not os.path.exists(f"{base}/hard"):
        os.link(f"{base}/sub/b.txt", f"{base}/hard")
    return base


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (result.args, result.stdout[-2000:], result.stderr[-2000:])


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          **kw)  # type: ignore[call-overload]


def _as_user(world: World, mode: str, path: str) -> None:
    """Give the jail user `path` (made on the host side, in the jail home)."""
    user = world.users[mode]
    for top, dirs, files in os.walk(path):
        for name in [top, *(f"{top}/{n}" for n in dirs + files)]:
            os.lchown(name, user.uid, user.gid)


# --- OpenSSH: sftp, scp both protocols -----------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_sftp_operations(world: World, mode: str) -> None:
    user, local = world.users[mode], world.local
    src = _tree(f"{local}/sftp-{mode}")
    batch = (f'put "{src}/{NAME}" "up {mode}.txt"\nmkdir d{mode}\nrename "up {mode}.txt" '
             f'd{mode}/moved.txt\nls d{mode}\nget d{mode}/moved.txt "{local}/back-{mode}"\n'
             f"rm d{mode}/moved.txt\nrmdir d{mode}\npwd\n")
    result = world.sshd.sftp_batch(user, batch)
    _ok(result)
    assert f"Remote working directory: /home/{user.name}" in result.stdout
    with open(f"{local}/back-{mode}") as fh:
        assert fh.read() == "payload\n" * 100


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-O"])
def test_scp_up_down_tilde_and_names(world: World, mode: str, legacy: bool) -> None:
    user, local = world.users[mode], world.local
    src = _tree(f"{local}/scp-{mode}-{legacy}")
    # the remote name without blanks: `scp -O` sends it unquoted in the command line, so
    # a blank splits it on any host (a local name with blanks and unicode is fine)
    remote = f"scp é{int(legacy)}.txt" if not legacy else f"scp_é{int(legacy)}.txt"
    up = world.sshd.scp(user, f"{src}/{NAME}", f":~/{remote}", legacy=legacy)
    if mode == "sftp" and legacy:       # policy: sftp-only accounts run no scp server
        assert up.returncode != 0
        return
    _ok(up)
    with open(f"{world.home(mode)}/{remote}") as fh:
        assert fh.read() == "payload\n" * 100
    down = world.sshd.scp(user, f":~/{remote}", f"{local}/d-{mode}-{legacy}", legacy=legacy)
    _ok(down)


# --- rsync ------------------------------------------------------------------------

RSYNC_OPS = {
    "-avz": ["-avz"],
    "--delete": ["-a", "--delete"],
    "--partial --inplace": ["-a", "--partial", "--inplace"],
    "--append-verify": ["-a", "--append-verify"],
    "--checksum": ["-a", "--checksum"],
    "-H": ["-aH"],
    "--backup-dir": ["-a", "--backup", "--backup-dir=bak"],
}


@pytest.mark.parametrize("mode", ["pam", "shell"])
@pytest.mark.parametrize("op", sorted(RSYNC_OPS))
def test_rsync_operations(world: World, mode: str, op: str) -> None:
    user, local = world.users[mode], world.local
    src = _tree(f"{local}/rs-{mode}-{op.replace(' ', '')}")
    dest = f"r{op.strip('-').replace(' ', '').replace('-', '')}"
    _ok(world.sshd.rsync(user, *RSYNC_OPS[op], f"{src}/", f":{dest}/"))
    with open(f"{src}/{NAME}", "a") as fh:       # a second run with a change
        fh.write("more\n")
    _ok(world.sshd.rsync(user, *RSYNC_OPS[op], f"{src}/", f":{dest}/"))
    with open(f"{world.home(mode)}/{dest}/{NAME}") as fh:
        assert fh.read().endswith("more\n")
    if op == "-H":
        st = os.stat(f"{world.home(mode)}/{dest}/hard")
        assert st.st_nlink == 2


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_rsync_files_from_and_tilde(world: World, mode: str) -> None:
    user, local = world.users[mode], world.local
    src = _tree(f"{local}/ff-{mode}")
    _ok(_run(["rsync", "-e", world.ssh_command(mode), "-a", "--files-from=-", "--from0",
              f"{src}/", f"{user.name}@{HOST}:~/ff/"], input=f"{NAME}\0sub/b.txt\0"))
    assert os.path.isfile(f"{world.home(mode)}/ff/sub/b.txt")
    down = _run(["rsync", "-e", world.ssh_command(mode), "-a", f"{user.name}@{HOST}:~/ff/",
                 f"{local}/ff-back-{mode}/"])
    _ok(down)
    assert os.path.isfile(f"{local}/ff-back-{mode}/{NAME}")


@pytest.mark.parametrize("mode", ["pam", "shell"])
@pytest.mark.parametrize("link", ["../s1", "~/SNAP/s1"], ids=["relative", "tilde"])
def test_rsync_link_dest_snapshots(world: World, mode: str, link: str) -> None:
    """Two snapshots, the second with --link-dest (as snapshot scripts write it: relative
    to the destination, or ~/): its unchanged files are hard links of the first's, in the
    jail on disk; a changed file is not (issue 20.4: `~` was not expanded, a full copy)."""
    user, local = world.users[mode], world.local
    tag = "rel" if link.startswith("..") else "tilde"
    snap = f"snap-{tag}"
    src = _tree(f"{local}/snap-{mode}-{tag}")
    _ok(world.sshd.rsync(user, "-a", "--mkpath", f"{src}/", f":~/{snap}/s1/"))
    with open(f"{src}/sub/b.txt", "a") as fh:     # one change between the snapshots
        fh.write("changed\n")
    _ok(world.sshd.rsync(user, "-a", f"--link-dest={link.replace('SNAP', snap)}",
                         f"{src}/", f":~/{snap}/s2/"))
    s1, s2 = f"{world.home(mode)}/{snap}/s1", f"{world.home(mode)}/{snap}/s2"
    first, second = os.stat(f"{s1}/{NAME}"), os.stat(f"{s2}/{NAME}")
    assert (second.st_ino, second.st_nlink) == (first.st_ino, 2), "a copy, not a link"
    with open(f"{s2}/sub/b.txt") as fh:
        assert fh.read().endswith("changed\n")
    assert os.stat(f"{s2}/sub/b.txt").st_ino != os.stat(f"{s1}/sub/b.txt").st_ino
    assert os.stat(f"{s1}/sub/b.txt").st_nlink == 1


@pytest.mark.parametrize("mode", MODES)
def test_rsync_refusals_are_policy(world: World, mode: str) -> None:
    """rsync -s (arguments through the protocol, not the command line the rules check)
    is refused; an sftp-only account refuses rsync altogether."""
    src = _tree(f"{world.local}/rsr-{mode}")
    result = world.sshd.rsync(world.users[mode], "-a", "-s", f"{src}/", ":rs-s/")
    assert result.returncode != 0
    if mode == "sftp":
        plain = world.sshd.rsync(world.users[mode], "-a", f"{src}/", ":rs/")
        assert plain.returncode != 0


@pytest.mark.parametrize("mode", ["shell", "sftp"])
def test_shell_and_exec_refused_where_policy_says(world: World, mode: str) -> None:
    user = world.users[mode]
    assert world.sshd.ssh(user, "/bin/sh -c id").returncode != 0
    assert "uid=" not in world.sshd.ssh(user, tty=True, input="id; exit\n").stdout


# --- the environment a jailed program gets ------------------------------------------

def _no_locale() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("LC_") and k not in ("LANG", "LANGUAGE")}


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_environment_is_what_the_client_sent(world: World, mode: str) -> None:
    """A jailed `env` shows the client's locale variables as sent (pass_env LANG, LC_*)
    and none the interpreter made up (issue 20.5: Python's start-up, PEP 538, set
    LC_CTYPE=C.UTF-8 and pass_env LC_* copied it)."""
    user = world.users[mode]

    def jailed_env(env: dict[str, str], *options: str) -> dict[str, str]:
        argv = world.sshd.ssh_argv(user, "env", options=["-o", "SendEnv=-*", *options])
        result = _run(argv, env=env)
        _ok(result)
        return dict(line.partition("=")[::2] for line in result.stdout.splitlines())

    nothing = jailed_env(_no_locale())
    assert nothing["HOME"] == f"/home/{user.name}"           # it is the jailed env
    assert not [k for k in nothing if k.startswith(("LC_", "LANG", "PAM_JAIL"))], nothing
    sent = jailed_env({**_no_locale(), "LANG": "de_DE.UTF-8", "LC_TIME": "xx_YY.UTF-8"},
                      "-o", "SendEnv=LANG LC_TIME")
    assert sent.get("LANG") == "de_DE.UTF-8" and sent.get("LC_TIME") == "xx_YY.UTF-8", sent
    assert not [k for k in sent if k.startswith("PAM_JAIL") or k in ("LC_CTYPE", "LC_ALL")]


# --- rclone, restic, borg, lftp -----------------------------------------------------

def _rclone(world: World, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    user = world.users[mode]
    remote = (f":sftp,host={HOST},port={world.sshd.port},user={user.name},"
              f"key_file={user.key}:")
    return _run(["rclone", "--config", "/dev/null", *[a.replace("REMOTE:", remote)
                                                      for a in args]])


@pytest.mark.parametrize("mode", MODES)
def test_rclone_copy_check_lsf(world: World, mode: str) -> None:
    src = _tree(f"{world.local}/rc-{mode}")
    _ok(_rclone(world, mode, "copy", src, "REMOTE:rc"))
    listing = _rclone(world, mode, "lsf", "-R", "REMOTE:rc")
    _ok(listing)
    assert NAME in listing.stdout.splitlines() and "sub/b.txt" in listing.stdout.splitlines()
    check = _rclone(world, mode, "check", src, "REMOTE:rc")
    _ok(check)
    if mode != "sftp":       # hashes over ssh (md5sum/sha1sum rules): really compared
        assert "0 differences found" in check.stderr and "hashes could not be" \
            not in check.stderr, check.stderr


@pytest.mark.parametrize("mode", MODES)
def test_restic_over_sftp(world: World, mode: str) -> None:
    user = world.users[mode]
    src = _tree(f"{world.local}/restic-src-{mode}")
    env = {**os.environ, "RESTIC_PASSWORD": "pw", "HOME": world.local,
           "RESTIC_CACHE_DIR": f"{world.local}/restic-cache"}
    repo = f"sftp:{user.name}@{HOST}:/home/{user.name}/restic"
    sftp = (f"ssh {' '.join(shlex.quote(o) for o in world.sshd.client_options(user))} "
            f"-p {world.sshd.port} {user.name}@{HOST} -s sftp")
    base = ["restic", "-r", repo, "-o", f"sftp.command={sftp}"]
    _ok(_run([*base, "init"], env=env))
    _ok(_run([*base, "backup", src], env=env))
    _ok(_run([*base, "restore", "latest", "--target", f"{world.local}/restic-out-{mode}"],
             env=env))
    assert os.path.isfile(f"{world.local}/restic-out-{mode}{src}/{NAME}")


@pytest.mark.parametrize("mode", MODES)
def test_duplicity_over_sftp(world: World, mode: str) -> None:
    """duplicity with its sftp backend (pexpect+sftp: the OpenSSH sftp client; `scp://`
    would need shell commands, docs/clients.md): a full backup, then a restore."""
    user = world.users[mode]
    src = _tree(f"{world.local}/dup-src-{mode}")
    options = " ".join(world.sshd.client_options(user))
    url = f"pexpect+sftp://{user.name}@{HOST}:{world.sshd.port}//home/{user.name}/dup"
    env = {**os.environ, "HOME": world.local}
    base = ["duplicity", "--no-encryption", f"--ssh-options={options}",
            "--archive-dir", f"{world.local}/dup-cache-{mode}"]
    _ok(_run([*base, "full", src, url], env=env))
    out = f"{world.local}/dup-out-{mode}"
    _ok(_run([*base, "restore", url, out], env=env))
    with open(f"{out}/{NAME}") as fh:
        assert fh.read() == "payload\n" * 100


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_borg_init_create_list(world: World, mode: str) -> None:
    user = world.users[mode]
    src = _tree(f"{world.local}/borg-src-{mode}")
    env = {**os.environ, "BORG_RSH": world.ssh_command(mode), "BORG_PASSPHRASE": "",
           "BORG_BASE_DIR": f"{world.local}/borg-{mode}",
           "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    repo = f"ssh://{user.name}@{HOST}:{world.sshd.port}/~/borgrepo"
    site = f"{world.home(mode)}/.local/lib/python3.11/site-packages"   # the user's upload
    os.makedirs(site, exist_ok=True)
    with open(f"{site}/borg-evil.pth", "w") as fh:
        fh.write(f"import os; open('/home/{user.name}/BORG-PTH-RAN', 'w').close()\n")
    _as_user(world, mode, f"{world.home(mode)}/.local")
    _ok(_run(["borg", "init", "--encryption=none", repo], env=env))
    _ok(_run(["borg", "create", f"{repo}::one", src], env=env))
    listing = _run(["borg", "list", f"{repo}::one"], env=env)
    _ok(listing)
    assert NAME in listing.stdout
    assert not os.path.exists(f"{world.home(mode)}/BORG-PTH-RAN"), "python ran the user's .pth"


# --- hg, rdiff-backup, unison (issue 20.6) ------------------------------------------

@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_hg_push_and_clone(world: World, mode: str) -> None:
    """push to and clone from the user's own repository; its .hg/hgrc (the user's:
    Mercurial would trust it) names a hook and an extension: neither runs."""
    user, local = world.users[mode], world.local
    home = world.home(mode)
    remote_dir = f"{home}/hgrepo"
    _ok(_run(["hg", "init", remote_dir]))
    inside = f"/home/{user.name}"           # the home as the jailed programs see it
    with open(f"{remote_dir}/.hg/hgrc", "w") as fh:
        fh.write(f"[hooks]\nchangegroup = echo hook > {inside}/HOOK-RAN\n"
                 f"prechangegroup = echo hook > {inside}/HOOK-RAN\n"
                 f"[extensions]\nevil = {inside}/evil.py\n")
    with open(f"{home}/evil.py", "w") as fh:
        fh.write(f"open({inside + '/EXT-RAN'!r}, 'w').close()\n")
    site = f"{home}/.local/lib/python3.11/site-packages"   # Python's user site
    os.makedirs(site, exist_ok=True)
    with open(f"{site}/evil.pth", "w") as fh:
        fh.write(f"import os; open({inside + '/PTH-RAN'!r}, 'w').close()\n")
    for path in (remote_dir, f"{home}/evil.py", f"{home}/.local"):
        _as_user(world, mode, path)
    work = f"{local}/hg-{mode}"
    env = {**os.environ, "HOME": local, "HGRCPATH": "", "HGUSER": "t <t@example.org>"}
    _ok(_run(["hg", "init", work], env=env))
    with open(f"{work}/f.txt", "w") as fh:
        fh.write("hg\n")
    _ok(_run(["hg", "-R", work, "commit", "-A", "-m", "one"], env=env))
    ssh = ["--config", f"ui.ssh={world.ssh_command(mode)}"]
    url = f"ssh://{user.name}@{HOST}/hgrepo"
    _ok(_run(["hg", "-R", work, *ssh, "push", url], env=env))
    _ok(_run(["hg", *ssh, "clone", url, f"{local}/hg-back-{mode}"], env=env))
    with open(f"{local}/hg-back-{mode}/f.txt") as fh:
        assert fh.read() == "hg\n"
    for ran in ("HOOK-RAN", "EXT-RAN", "PTH-RAN"):     # the user's code never ran
        assert not os.path.exists(f"{home}/{ran}"), ran
    # a shell through hg, as `any` allowed it: refused
    shell = world.sshd.ssh(user, "hg -R hgrepo debugshell", input="print('PWNED')\n")
    assert shell.returncode != 0 and "PWNED" not in shell.stdout


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_rdiff_backup_backup_and_restore(world: World, mode: str) -> None:
    user, local = world.users[mode], world.local
    src = _tree(f"{local}/rdiff-src-{mode}")
    schema = f"{world.ssh_command(mode)} {{h}} rdiff-backup server"
    base = ["rdiff-backup", "--remote-schema", schema]
    env = {**os.environ, "HOME": local}
    # absolute (the jail's path): rdiff-backup's --restrict-path refuses relative ones
    repo = f"{user.name}@{HOST}::/home/{user.name}/rdiff"
    _ok(_run([*base, "backup", src, repo], env=env))
    assert os.path.isfile(f"{world.home(mode)}/rdiff/{NAME}")
    assert os.path.isdir(f"{world.home(mode)}/rdiff/rdiff-backup-data")
    _ok(_run([*base, "restore", repo, f"{local}/rdiff-out-{mode}"], env=env))
    with open(f"{local}/rdiff-out-{mode}/sub/b.txt") as fh:
        assert fh.read() == "bee\n"
    # the server is restricted to the home: a path outside it is refused by rdiff-backup
    outside = _run([*base, "backup", src, f"{user.name}@{HOST}::/tmp/rdiff-{mode}"], env=env)
    assert outside.returncode != 0


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_unison_sync(world: World, mode: str) -> None:
    user, local = world.users[mode], world.local
    mine = _tree(f"{local}/unison-{mode}")
    env = {**os.environ, "HOME": f"{local}/unison-home-{mode}"}
    os.makedirs(env["HOME"], exist_ok=True)
    sshargs = " ".join(shlex.quote(o) for o in [*world.sshd.client_options(user), "-p",
                                                   str(world.sshd.port)])
    root = f"ssh://{user.name}@{HOST}/unison"
    argv = ["unison", "-batch", "-auto", "-sshargs", sshargs, mine, root]
    _ok(_run(argv, env=env))
    assert os.path.isfile(f"{world.home(mode)}/unison/{NAME}")
    with open(f"{world.home(mode)}/unison/from-server.txt", "w") as fh:
        fh.write("theirs\n")
    _as_user(world, mode, f"{world.home(mode)}/unison/from-server.txt")
    _ok(_run(argv, env=env))
    with open(f"{mine}/from-server.txt") as fh:
        assert fh.read() == "theirs\n"


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_svn_over_ssh(world: World, mode: str) -> None:
    """svn+ssh:// with a shared repository kept by root under /srv/svn (`paths =
    /srv/svn`): URLs are relative to that root (docs/clients.md); the absolute form is not
    served (it would need `--root=/`)."""
    from pam_jail.admin.build import copy_into

    user, local, jail = world.users[mode], world.local, world.jails[mode]
    copy_into(jail, ["/usr/bin/svnserve"])
    os.makedirs(f"{jail}/srv/svn", mode=0o755, exist_ok=True)
    repo = f"{jail}/srv/svn/project"
    if not os.path.isdir(repo):
        _ok(_run(["svnadmin", "create", repo]))
    for sub in ("db", "locks"):                 # commits write there; hooks/, conf/ root's
        _as_user(world, mode, f"{repo}/{sub}")
    lsh = f"{jail}/etc/pam_jail/lsh.ini"
    with open(lsh) as fh:
        saved = fh.read()
    src = _tree(f"{local}/svn-src-{mode}")
    env = {**os.environ, "HOME": f"{local}/svn-home-{mode}", "SVN_SSH": world.ssh_command(mode)}
    os.makedirs(env["HOME"], exist_ok=True)
    svn = ["svn", "--non-interactive"]
    try:
        with open(lsh, "w") as fh:
            fh.write(f"{saved}\n[user:{user.name}]\nprograms = /usr/bin/svnserve\n"
                     "paths = /srv/svn\npass_env = LANG, LC_*\n")
        url = f"svn+ssh://{user.name}@{HOST}/project"
        _ok(_run([*svn, "import", "-m", "one", src, f"{url}/trunk"], env=env))
        co = _run([*svn, "checkout", f"{url}/trunk", f"{local}/svn-co-{mode}"], env=env)
        _ok(co)
        assert "warning" not in co.stderr.lower(), co.stderr
        with open(f"{local}/svn-co-{mode}/sub/b.txt") as fh:
            assert fh.read() == "bee\n"
        absolute = _run([*svn, "ls", f"svn+ssh://{user.name}@{HOST}/srv/svn/project"],
                        env=env)
        assert absolute.returncode != 0 and "No repository found" in absolute.stderr
    finally:
        with open(lsh, "w") as fh:
            fh.write(saved)


@pytest.mark.parametrize("mode", MODES)
def test_lftp_sftp(world: World, mode: str) -> None:
    user = world.users[mode]
    src = _tree(f"{world.local}/lftp-{mode}")
    connect = ("ssh -a -x " + " ".join(shlex.quote(o) for o in world.sshd.client_options(user)))
    script = (f"set sftp:connect-program {shlex.quote(connect)}; "
              f"open -u {user.name}, -p {world.sshd.port} sftp://{HOST}; "
              f"put {shlex.quote(src + '/sub/b.txt')} -o lftp.txt; ls; "
              f"get lftp.txt -o {shlex.quote(world.local + '/lftp-back-' + mode)}")
    _ok(_run(["lftp", "-c", script]))
    with open(f"{world.local}/lftp-back-{mode}") as fh:
        assert fh.read() == "bee\n"


# --- Python clients -------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_paramiko_sftp_and_exec(world: World, mode: str) -> None:
    import paramiko

    user = world.users[mode]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - test host
    client.connect(HOST, port=world.sshd.port, username=user.name, key_filename=user.key,
                   allow_agent=False, look_for_keys=False, timeout=20)
    try:
        sftp = client.open_sftp()
        src = _tree(f"{world.local}/pm-{mode}")
        sftp.put(f"{src}/sub/b.txt", "pm.txt")
        assert "pm.txt" in sftp.listdir(".")
        sftp.close()
        _stdin, stdout, _stderr = client.exec_command("/bin/sh -c id", timeout=20)
        assert "uid=" not in stdout.read().decode()      # never a shell
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES)
def test_asyncssh_sftp_and_exec(world: World, mode: str) -> None:
    import asyncio

    import asyncssh

    user = world.users[mode]
    src = _tree(f"{world.local}/as-{mode}")

    async def session() -> tuple[list[str], str]:
        async with asyncssh.connect(HOST, port=world.sshd.port, username=user.name,
                                    client_keys=[user.key], known_hosts=None,
                                    agent_path=None) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(f"{src}/sub/b.txt", "as.txt")
                names = await sftp.listdir(".")
            ran = await conn.run("/bin/sh -c id", check=False)
            return names, str(ran.stdout)

    names, out = asyncio.run(session())
    assert "as.txt" in names and "uid=" not in out


# --- sshfs (FUSE) ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_sshfs_mount_read_write(world: World, mode: str) -> None:
    user = world.users[mode]
    mnt = f"{world.local}/sshfs-{mode}"
    os.makedirs(mnt, exist_ok=True)
    opts = ",".join(["ssh_command=" + world.ssh_command(mode).replace(",", "\\,"),
                     "reconnect", "StrictHostKeyChecking=no"])
    mounted = _run(["sshfs", "-o", opts, f"{user.name}@{HOST}:", mnt])
    if mounted.returncode != 0 and "fuse" in mounted.stderr.lower():
        pytest.fail(f"FUSE does not work on this machine: {mounted.stderr}")
    _ok(mounted)
    try:
        with open(f"{mnt}/sshfs.txt", "w") as fh:
            fh.write("through fuse\n")
        assert "sshfs.txt" in os.listdir(mnt)
    finally:
        if _run(["fusermount3", "-u", mnt]).returncode != 0:
            _run(["umount", "-l", mnt])        # never leave a mount in the scratch dir
    with open(f"{world.home(mode)}/sshfs.txt") as fh:
        assert fh.read() == "through fuse\n"
