"""borg over ssh into a shell-mode jail (issue 13.4): the real borg client (Debian's
borgbackup) backs up and lists through the real sshd; the server side runs as
`borg serve ... --restrict-to-path=<each allowed directory>` (plus --append-only where
[[rules]] forces it), so a repository outside the allowed paths is refused by borg
itself, and everything but `borg serve` (`borg with-lock ... sh`, a --remote-path of the
client's choice) is refused by the rule.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import PAM_STACK, REPO, make_jailed_pair, undoing
from sshd_harness import Sshd, User
from syslog_capture import SyslogCapture
from util import safe_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.e2e]

LSH = """\
[default]
programs = /usr/bin/borg, /usr/lib/openssh/sftp-server
paths = %h/backups, /srv/borg/%u
  [[rules]]
  /usr/bin/borg = borg --append-only
"""


@dataclass
class BorgWorld:
    sshd: Sshd
    user: User
    jail: str
    work: str
    syslog: SyslogCapture

    def borg(self, *args: str, remote_path: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        rsh = shlex.join(["ssh", *self.sshd.client_options(self.user)])
        env = {"PATH": "/usr/bin:/bin", "HOME": self.work, "BORG_RSH": rsh,
               "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
               "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
        extra = ["--remote-path", remote_path] if remote_path else []
        return subprocess.run(["borg", *extra, *args], capture_output=True, text=True,
                              env=env, cwd=self.work, timeout=180, check=False)

    def url(self, path: str) -> str:
        return f"ssh://{self.user.name}@127.0.0.1:{self.sshd.port}{path}"


@pytest.fixture(scope="module")
def bw() -> Iterator[BorgWorld]:
    from pam_jail.admin.build import init_jail
    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        syslog = SyslogCapture().start()
        undo.append(syslog.stop)
        pair = make_jailed_pair(LSH, undo)
        user, jail = pair.shell_user, pair.shell_jail
        init_jail(jail, ["borg"], users=[user.name],
                  profiles_file=f"{REPO}/etc/pam_jail/profiles.ini")
        home = f"{jail}/home/{user.name}"
        os.makedirs(f"{home}/backups", exist_ok=True)
        os.chown(f"{home}/backups", user.uid, user.gid)
        os.makedirs(f"{jail}/srv/borg/{user.name}", mode=0o755)
        os.chown(f"{jail}/srv/borg/{user.name}", user.uid, user.gid)
        work = safe_tmpdir("borge2e")
        undo.append(lambda: shutil.rmtree(work, ignore_errors=True))
        os.makedirs(f"{work}/data/sub")
        with open(f"{work}/data/sub/f.txt", "w") as fh:
            fh.write("borg data\n")
        sshd = Sshd(PAM_STACK, generate(load_config())).start()
        undo.append(sshd.stop)
        yield BorgWorld(sshd, user, jail, work, syslog)


def test_borg_init_create_list_extract(bw: BorgWorld) -> None:
    repo = bw.url(f"/home/{bw.user.name}/backups/r")
    init = bw.borg("init", "-e", "none", repo)
    assert init.returncode == 0, init.stderr
    create = bw.borg("create", f"{repo}::one", "data")
    assert create.returncode == 0, create.stderr
    listing = bw.borg("list", "--short", repo)
    assert listing.returncode == 0 and listing.stdout.split() == ["one"], listing
    os.makedirs(f"{bw.work}/out", exist_ok=True)
    extract = subprocess.run(["borg", "extract", f"{repo}::one"], capture_output=True,
                             text=True, cwd=f"{bw.work}/out", timeout=180, check=False,
                             env={"PATH": "/usr/bin:/bin", "HOME": bw.work,
                                  "BORG_RSH": shlex.join(["ssh", *bw.sshd.client_options(
                                      bw.user)])})
    assert extract.returncode == 0, extract.stderr
    with open(f"{bw.work}/out/data/sub/f.txt") as fh:
        assert fh.read() == "borg data\n"
    # the server ran `borg serve` with the forced options
    allowed = bw.syslog.wait_for("command allowed", f"user={bw.user.name}", "borg serve")
    assert allowed, bw.syslog.lines


def test_borg_repository_outside_the_allowed_paths(bw: BorgWorld) -> None:
    """--restrict-to-path is forced: borg serve itself refuses other repositories."""
    for path in ("/tmp/r", f"/home/{bw.user.name}/r"):
        init = bw.borg("init", "-e", "none", bw.url(path))
        assert init.returncode != 0, init.stdout
        assert "not allowed" in init.stderr.lower() or "PathNotAllowed" in init.stderr, \
            init.stderr
        assert not os.path.exists(f"{bw.jail}{path}")


@pytest.mark.parametrize("command", [
    "borg with-lock /home/{u}/backups/r /bin/sh -c id",
    "borg serve --rsh=sh",
    "borg serve --restrict-to-path=/",
    "borg serve --debug-profile=/home/{u}/x",
    "borg --info serve",
    "sh -c id",
])
def test_borg_anything_but_serve_refused(bw: BorgWorld, command: str) -> None:
    result = bw.sshd.ssh(bw.user, command.format(u=bw.user.name))
    assert result.returncode == 126, result
    assert result.stderr.startswith("pam_jail: refused: "), result.stderr


def test_borg_remote_path_of_the_clients_choice_refused(bw: BorgWorld) -> None:
    result = bw.borg("list", bw.url(f"/home/{bw.user.name}/backups/r"),
                     remote_path="sh -c id; borg")
    assert result.returncode != 0
    assert "pam_jail: refused" in result.stderr, result.stderr
