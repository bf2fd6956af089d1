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
/usr/bin/sha1sum, /usr/bin/df, /bin/echo, /usr/bin/borg
paths = %h
umask = 0022
pass_env = LANG, LC_*
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
    from pam_jail.config import load_config
    from pam_jail.sshd_config import generate

    undo: list[Callable[[], object]] = []
    try:
        pair = make_jailed_pair(LSH, undo)
        for root in (pair.pam_jail, pair.shell_jail):   # the clients' server sides
            from testbed import PROFILES

            from pam_jail.build import copy_into, init_jail

            init_jail(root, ["borg", "checksums"], profiles_file=PROFILES)
            copy_into(root, ["/usr/bin/df"])
        sftp_jail = build_jail(["uidbasics"], [])
        undo.append(lambda: remove_jail(sftp_jail))
        name = f"pjc{os.getpid() % 100000}"
        sftp = make_user(name, SHELL_ENTRY, f"{sftp_jail}/./home/{name}", create_home=False)
        undo.append(lambda: remove_user(name, remove_home=False))
        from pam_jail.build import add_users

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


@pytest.mark.parametrize("mode", ["pam", "shell"])
def test_borg_init_create_list(world: World, mode: str) -> None:
    user = world.users[mode]
    src = _tree(f"{world.local}/borg-src-{mode}")
    env = {**os.environ, "BORG_RSH": world.ssh_command(mode), "BORG_PASSPHRASE": "",
           "BORG_BASE_DIR": f"{world.local}/borg-{mode}",
           "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    repo = f"ssh://{user.name}@{HOST}:{world.sshd.port}/~/borgrepo"
    _ok(_run(["borg", "init", "--encryption=none", repo], env=env))
    _ok(_run(["borg", "create", f"{repo}::one", src], env=env))
    listing = _run(["borg", "list", f"{repo}::one"], env=env)
    _ok(listing)
    assert NAME in listing.stdout


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
