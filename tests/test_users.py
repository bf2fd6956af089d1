"""pam_jail.admin.users (`pam-jail jailuser`): real users (useradd), real jails (the builder),
real usermod; every user, jail, state file and config file is removed afterwards."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import UserFactory
from jail_fixtures import build_jail, remove_jail
from sshd_harness import unique_name
from util import safe_tmpdir

from pam_jail.admin import account, build, cli, users
from pam_jail.login import config_file, resolve
from pam_jail.login.errors import BuildError, ConfigError, UnsafeJail, UsageError

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def jail() -> Iterator[str]:
    root = build_jail(["basicshell"], [])
    yield root
    remove_jail(root)


@pytest.fixture
def state_dir() -> Iterator[str]:
    """A private state directory (the default is /var/lib/pam_jail/jailuser)."""
    base = safe_tmpdir("state")
    yield f"{base}/jailuser"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def jails_ini() -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def write(text: str) -> str:
        base = safe_tmpdir("cfg")
        made.append(base)
        path = f"{base}/jails.ini"
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o644)
        return path

    yield write
    for base in made:
        shutil.rmtree(base, ignore_errors=True)


def passwd_of(root: str) -> dict[str, list[str]]:
    with open(f"{root}/etc/passwd") as fh:
        return {line.split(":")[0]: line.split(":") for line in fh.read().splitlines()}


def in_jail(root: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/sbin/chroot", root, *argv], capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/bin:/bin"}, timeout=60)


def test_jailuser_then_undo(jail: str, state_dir: str, user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    before = pwd.getpwnam(user.name)
    report = users.jail_user(jail, user.name, state_dir=state_dir)
    assert report.changed and not report.dry_run
    pw = pwd.getpwnam(user.name)
    assert (pw.pw_shell, pw.pw_dir) == (users.DEFAULT_SHELL, f"{jail}/./.home/{user.name}")
    # the passwd home is a stub of root's: nothing in it the user can write or replace
    stub = f"{jail}/.home/{user.name}"
    for path in (f"{jail}/.home", stub):
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022
    assert os.listdir(stub) == [".ssh"]
    assert os.readlink(f"{stub}/.ssh") == f"../../home/{user.name}/.ssh"
    entry = passwd_of(jail)[user.name]
    assert entry[2:4] == [str(pw.pw_uid), str(pw.pw_gid)]
    assert entry[5:] == [f"/home/{user.name}", users.DEFAULT_SHELL]
    home = os.lstat(f"{jail}/home/{user.name}")
    assert stat.S_ISDIR(home.st_mode) and home.st_uid == pw.pw_uid
    assert stat.S_IMODE(home.st_mode) == 0o750
    st = os.lstat(f"{state_dir}/{user.name}.json")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert stat.S_IMODE(os.lstat(state_dir).st_mode) == 0o700
    # the login path reads the marker home: jail root and home inside it
    ident = resolve.identity_from_passwd(user.name)
    assert resolve.split_marker(ident.home) == (jail, f"/home/{user.name}")
    # inside the jail the name resolves (the jail's etc/passwd)
    done = in_jail(jail, "/bin/bash", "-c", f"id -un {pw.pw_uid}; ls -ld /home/{user.name}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == user.name
    assert user.name in done.stdout.splitlines()[1]
    # the old home was not moved
    assert os.path.isdir(before.pw_dir)

    # idempotent: a second run changes nothing in passwd and keeps the recorded old values
    again = users.jail_user(jail, user.name, state_dir=state_dir)
    assert not again.changed and again.steps == [], again.steps
    state = users.read_state(user.name, state_dir)
    assert state is not None
    assert (state.old_shell, state.old_home) == ("/bin/sh", before.pw_dir)
    assert list(passwd_of(jail)).count(user.name) == 1

    undone = users.undo_user(user.name, state_dir=state_dir)
    assert undone.changed
    pw = pwd.getpwnam(user.name)
    assert (pw.pw_shell, pw.pw_dir) == (before.pw_shell, before.pw_dir)
    assert user.name not in passwd_of(jail)
    assert "root" in passwd_of(jail)
    assert not os.path.lexists(f"{jail}/home/{user.name}")  # empty: removed
    assert users.read_state(user.name, state_dir) is None
    twice = users.undo_user(user.name, state_dir=state_dir)   # nothing left: a no-op
    assert not twice.changed and not twice.steps and "no jailuser record" in twice.notes[0]


def test_move_home_into_jail_and_back(jail: str, state_dir: str,
                                      user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    old = pwd.getpwnam(user.name).pw_dir
    uid = pwd.getpwnam(user.name).pw_uid
    with open(f"{old}/notes.txt", "w") as fh:
        fh.write("mine\n")
    os.chown(f"{old}/notes.txt", uid, uid)
    os.symlink("/etc/shadow", f"{old}/link")  # moved as a link, never followed
    os.chmod(old, 0o755)                       # older useradd's mode: readable by all
    users.jail_user(jail, user.name, move=True, state_dir=state_dir)
    moved = f"{jail}/home/{user.name}"
    assert stat.S_IMODE(os.lstat(moved).st_mode) == 0o750   # other customers: no access
    assert not os.path.lexists(old)
    with open(f"{moved}/notes.txt") as fh:
        assert fh.read() == "mine\n"
    assert os.lstat(f"{moved}/notes.txt").st_uid == uid
    assert os.readlink(f"{moved}/link") == "/etc/shadow"
    assert os.path.isfile(f"{moved}/.bashrc")  # useradd's skeleton came along
    assert os.lstat(moved).st_uid == uid
    state = users.read_state(user.name, state_dir)
    assert state is not None and state.moved
    done = in_jail(jail, "/bin/cat", f"/home/{user.name}/notes.txt")
    assert done.stdout == "mine\n", done.stderr

    # re-run with --move: already moved, nothing to do but refresh the entries
    again = users.jail_user(jail, user.name, move=True,
                            state_dir=state_dir)
    assert not any(step.startswith("move") for step in again.steps)

    # undo refuses while something sits at the old home, then moves it back
    os.mkdir(old)
    with pytest.raises(BuildError, match="exists"):
        users.undo_user(user.name, state_dir=state_dir)
    os.rmdir(old)
    report = users.undo_user(user.name, state_dir=state_dir)
    assert any(step.startswith("move") for step in report.steps)
    assert not os.path.lexists(moved)
    with open(f"{old}/notes.txt") as fh:
        assert fh.read() == "mine\n"
    assert os.lstat(old).st_uid == uid
    assert pwd.getpwnam(user.name).pw_dir == old


def test_move_refuses_a_non_empty_jail_home(jail: str, state_dir: str,
                                            user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    os.makedirs(f"{jail}/home/{user.name}")
    with open(f"{jail}/home/{user.name}/x", "w") as fh:
        fh.write("x")
    before = pwd.getpwnam(user.name)
    with pytest.raises(BuildError, match="not empty"):
        users.jail_user(jail, user.name, move=True, state_dir=state_dir)
    assert pwd.getpwnam(user.name) == before
    assert users.read_state(user.name, state_dir) is None


def test_jail_config_mapping_and_restore(jail: str, state_dir: str, user_factory: UserFactory,
                                         jails_ini: Callable[[str], str]) -> None:
    user = user_factory(shell="/bin/sh")
    other = safe_tmpdir("other")
    try:
        path = jails_ini(f"# site jails\n[jails]\n  [[web]]\n  root = {jail}\n  mode = shell\n"
                         f"  [[old]]\n  root = {other}\n[users]\n{user.name} = old\n"
                         "[options]\nunmapped = allow\n")
        users.jail_user(jail, user.name, jail_config="web",
                        config_file=path, state_dir=state_dir)
        cfg = config_file.load_config(path)
        assert cfg.users[user.name] == "web"
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
        with open(path) as fh:
            text = fh.read()
        assert text.startswith("# site jails\n") and text.count(user.name) == 1
        assert sorted(os.listdir(os.path.dirname(path))) == ["jails.ini", "jails.ini.good",
                                                             "jails.ini.index"]
        # the login path resolves the user to this jail, by mapping and marker alike
        jail_of = resolve.resolve(resolve.identity_from_passwd(user.name), cfg)
        assert jail_of is not None
        assert (jail_of.name, jail_of.root, jail_of.home) == ("web", jail,
                                                              f"/home/{user.name}")
        users.jail_user(jail, user.name, jail_config="web",
                        config_file=path, state_dir=state_dir)  # idempotent
        assert config_file.load_config(path).users[user.name] == "web"
        users.undo_user(user.name, state_dir=state_dir)
        assert config_file.load_config(path).users[user.name] == "old"
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_jail_config_added_then_removed(jail: str, state_dir: str, user_factory: UserFactory,
                                        jails_ini: Callable[[str], str]) -> None:
    user = user_factory(shell="/bin/sh")
    path = jails_ini(f"[jails]\n  [[web]]\n  root = {jail}\n  mode = shell\n")  # no [users]
    users.jail_user(jail, user.name, jail_config="web", config_file=path,
                    state_dir=state_dir)
    assert config_file.load_config(path).users == {user.name: "web"}
    users.undo_user(user.name, state_dir=state_dir)
    assert config_file.load_config(path).users == {}


def test_jail_config_must_name_this_jail(jail: str, state_dir: str, user_factory: UserFactory,
                                         jails_ini: Callable[[str], str]) -> None:
    user = user_factory(shell="/bin/sh")
    before = pwd.getpwnam(user.name)
    path = jails_ini("[jails]\n  [[web]]\n  root = /srv/elsewhere\n  mode = shell\n")
    with pytest.raises(ConfigError, match="not " + jail):
        users.jail_user(jail, user.name, jail_config="web",
                        config_file=path, state_dir=state_dir)
    assert pwd.getpwnam(user.name) == before
    assert users.read_state(user.name, state_dir) is None
    assert user.name not in passwd_of(jail)


def test_set_user_mapping_text() -> None:
    text = "[jails]\n  [[a]]\n  root = /j\n[users]\nbob = a  # b\n[groups]\ng = a\n"
    added = users.set_user_mapping(text, "al", "a")
    assert added == ("[jails]\n  [[a]]\n  root = /j\n[users]\nbob = a  # b\nal = a\n"
                     "[groups]\ng = a\n")
    assert users.set_user_mapping(added, "al", None) == text
    assert users.set_user_mapping(text, "bob", "c").count("bob") == 1
    assert users.set_user_mapping("[jails]\n", "al", "a") == "[jails]\n\n[users]\nal = a\n"


def test_refusals(jail: str, state_dir: str, user_factory: UserFactory) -> None:
    with pytest.raises(UsageError, match="uid 0"):
        users.jail_user(jail, "root", state_dir=state_dir)
    with pytest.raises(UsageError, match="no such user"):
        users.jail_user(jail, "pjnosuchuser", state_dir=state_dir)
    user = user_factory(shell="/bin/sh")
    with pytest.raises(UsageError, match="not an executable"):
        users.jail_user(jail, user.name, shell="/nonexistent/pam-jail-shell",
                        state_dir=state_dir)
    # a shell that would run on the host whenever the PAM line is missing: refused
    with pytest.raises(UsageError, match="would run outside the jail"):
        users.jail_user(jail, user.name, shell="/bin/bash", state_dir=state_dir)
    with pytest.raises(UsageError, match="would run outside the jail"):
        users.jail_user(jail, user.name, shell=users.DEFAULT_SHELL, mode="pam",
                        state_dir=state_dir)
    # mode pam: the limited shell's runtime must be in the jail
    with pytest.raises(BuildError, match="not in the jail"):
        users.jail_user(jail, user.name, mode="pam", state_dir=state_dir)
    os.chmod(f"{jail}/etc", 0o777)
    try:
        with pytest.raises(UnsafeJail) as err:
            users.jail_user(jail, user.name, state_dir=state_dir)
        assert any("etc" in p for p in err.value.problems)
    finally:
        os.chmod(f"{jail}/etc", 0o755)
    os.chmod(os.path.dirname(jail), 0o775)
    try:
        with pytest.raises(UnsafeJail):
            users.jail_user(jail, user.name, state_dir=state_dir)
    finally:
        os.chmod(os.path.dirname(jail), 0o755)
    assert users.read_state(user.name, state_dir) is None
    assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"
    # already jailed elsewhere by jailuser
    users.jail_user(jail, user.name, state_dir=state_dir)
    second = build_jail(["uidbasics"], [])
    try:
        with pytest.raises(UsageError, match="already jailed"):
            users.jail_user(second, user.name, state_dir=state_dir)
    finally:
        remove_jail(second)
    users.undo_user(user.name, state_dir=state_dir)


def test_untrusted_state_file_refused(jail: str, state_dir: str,
                                      user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    users.jail_user(jail, user.name, state_dir=state_dir)
    path = f"{state_dir}/{user.name}.json"
    os.chown(path, pwd.getpwnam(user.name).pw_uid, 0)
    with pytest.raises(UnsafeJail, match="root-owned"):
        users.undo_user(user.name, state_dir=state_dir)
    os.chown(path, 0, 0)
    users.undo_user(user.name, state_dir=state_dir)


def test_dry_run_changes_nothing(jail: str, state_dir: str, user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    before = pwd.getpwnam(user.name)
    passwd_before = passwd_of(jail)
    report = users.jail_user(jail, user.name, move=True, dry_run=True,
                             state_dir=state_dir)
    assert report.dry_run and report.changed      # it would change: nothing did
    assert any(step.startswith("move ") for step in report.steps)
    assert any(step.startswith("usermod ") for step in report.steps)
    assert pwd.getpwnam(user.name) == before
    assert passwd_of(jail) == passwd_before
    assert not os.path.lexists(state_dir)
    assert not os.path.lexists(f"{jail}/home/{user.name}")
    users.jail_user(jail, user.name, state_dir=state_dir)
    plan = users.undo_user(user.name, dry_run=True, state_dir=state_dir)
    assert plan.steps and pwd.getpwnam(user.name).pw_shell == users.DEFAULT_SHELL
    users.undo_user(user.name, state_dir=state_dir)


def test_failure_part_way_is_undone(jail: str, state_dir: str, user_factory: UserFactory,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    user = user_factory(shell="/bin/sh")
    before = pwd.getpwnam(user.name)

    def disk_full(*args: object, **kwargs: object) -> build.BuildReport:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users.build, "add_users", disk_full)
    with pytest.raises(OSError, match="No space"):
        users.jail_user(jail, user.name, move=True, state_dir=state_dir)
    assert pwd.getpwnam(user.name) == before
    assert os.path.isfile(f"{before.pw_dir}/.bashrc")  # moved in and back out
    assert not os.path.lexists(f"{jail}/home/{user.name}")
    assert users.read_state(user.name, state_dir) is None


def test_cli(jail: str, user_factory: UserFactory, capsys: pytest.CaptureFixture[str]) -> None:
    user = user_factory(shell="/bin/sh")
    assert cli.main(["jailuser", "-j", jail, "--dry-run", "--json", user.name]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and plan["user"] == user.name and plan["steps"]
    assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"
    assert cli.main(["jailuser", "-j", jail, "pjnosuchuser"]) == 2
    assert cli.main(["jailuser", "-j", jail, "root"]) == 2
    assert cli.main(["jailuser", user.name]) == 2  # no -j
    assert "no such user" in capsys.readouterr().err
    # state=absent twice: undoing what was never done is a no-op success
    assert cli.main(["jailuser", "--undo", "--json", user.name + "x"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    with pytest.raises(SystemExit) as done:
        cli.main(["jailuser", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--undo" in out and "--move" in out and "exit status" in out
    # the real command, default state dir, default shell (scripts/install puts it there)
    assert os.access(users.DEFAULT_SHELL, os.X_OK), "run scripts/install"
    try:
        assert cli.main(["jailuser", "-j", jail, user.name]) == 0
        assert pwd.getpwnam(user.name).pw_shell == users.DEFAULT_SHELL
        assert "add to [users]" in capsys.readouterr().out
    finally:
        assert cli.main(["jailuser", "--undo", user.name]) == 0
    assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"
    assert not os.path.lexists(f"{users.STATE_DIR}/{user.name}.json")


def test_move_across_file_systems(state_dir: str, user_factory: UserFactory) -> None:
    """The jail on a tmpfs, the home on the root file system: rename fails with EXDEV, the
    home is copied with owners and links kept, then removed."""
    base = safe_tmpdir("xfs")
    mnt = f"{base}/mnt"
    os.mkdir(mnt, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "tmpfs", mnt],
                   check=True)
    try:
        root = f"{mnt}/jail"
        build.init_jail(root, ["uidbasics"], profiles_file=f"{REPO}/etc/pam_jail/profiles.ini")
        user = user_factory(shell="/bin/sh")
        old = pwd.getpwnam(user.name).pw_dir
        uid = pwd.getpwnam(user.name).pw_uid
        assert os.stat(old).st_dev != os.stat(root).st_dev
        os.symlink("/etc/shadow", f"{old}/link")
        users.jail_user(root, user.name, move=True, state_dir=state_dir)
        assert not os.path.lexists(old)
        assert os.readlink(f"{root}/home/{user.name}/link") == "/etc/shadow"
        assert os.lstat(f"{root}/home/{user.name}/.bashrc").st_uid == uid
        users.undo_user(user.name, state_dir=state_dir)
        assert os.lstat(f"{old}/.bashrc").st_uid == uid
        assert os.readlink(f"{old}/link") == "/etc/shadow"
        assert not os.path.lexists(f"{root}/home/{user.name}")
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_shell_follows_the_mode(state_dir: str, user_factory: UserFactory,
                                jails_ini: Callable[[str], str]) -> None:
    """jailuser sets the login shell that refuses to run outside a jail of that mode."""
    root = build_jail(["lsh", "uidbasics"], [], shell=users.SHELL_OF_MODE["pam"])
    try:
        for mode, shell in (("pam", users.SHELL_OF_MODE["pam"]), ("sftp", users.DEFAULT_SHELL),
                            ("shell", users.DEFAULT_SHELL)):
            user = user_factory(shell="/bin/sh")
            path = jails_ini(f"[jails]\n  [[j]]\n  root = {root}\n  mode = {mode}\n")
            users.jail_user(root, user.name, jail_config="j", config_file=path,
                            state_dir=state_dir)
            assert pwd.getpwnam(user.name).pw_shell == shell
            assert resolve.is_jailing_shell(mode, shell)
            # jails.ini was written by install_config: its last-known-good is current too
            with open(path) as fh, open(config_file.good_path(path)) as good:
                assert fh.read() == good.read()
            users.undo_user(user.name, state_dir=state_dir)
            assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"
    finally:
        remove_jail(root)


def test_undo_is_all_or_nothing_when_usermod_fails(jail: str, state_dir: str,
                                                   user_factory: UserFactory,
                                                   jails_ini: Callable[[str], str]) -> None:
    """usermod refuses to change a user who has a running process: --undo then changes
    nothing at all (home not moved back, mapping kept, state kept), and works later."""
    user = user_factory(shell="/bin/sh")
    path = jails_ini(f"[jails]\n  [[web]]\n  root = {jail}\n  mode = shell\n")
    users.jail_user(jail, user.name, move=True, jail_config="web", config_file=path,
                    state_dir=state_dir)
    jailed = pwd.getpwnam(user.name)
    sleeper = subprocess.Popen(["setpriv", f"--reuid={jailed.pw_uid}",
                                f"--regid={jailed.pw_gid}", "--clear-groups", "sleep", "60"])
    try:
        import time

        time.sleep(0.2)
        with pytest.raises(BuildError, match="usermod"):
            users.undo_user(user.name, state_dir=state_dir)
        assert pwd.getpwnam(user.name) == jailed
        assert os.path.isdir(f"{jail}/home/{user.name}")              # not moved back
        assert config_file.load_config(path).users == {user.name: "web"}   # mapping kept
        assert users.read_state(user.name, state_dir) is not None
    finally:
        account.end_processes([pid for pid, _ in account.host_processes(user.uid)], 1.0)
        sleeper.kill()
        sleeper.wait()
    users.undo_user(user.name, state_dir=state_dir)
    assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"
    assert config_file.load_config(path).users == {}


def test_jail_config_defines_a_new_jail(jail: str, state_dir: str, user_factory: UserFactory,
                                        jails_ini: Callable[[str], str]) -> None:
    """--jail-config NAME with no [[NAME]] yet: jailuser defines it (root, mode)."""
    user = user_factory(shell="/bin/sh")
    path = jails_ini("[jails]\n[users]\n")
    users.jail_user(jail, user.name, jail_config="fresh", mode="sftp", config_file=path,
                    state_dir=state_dir)
    cfg = config_file.load_config(path)
    assert (cfg.jails["fresh"].root, cfg.jails["fresh"].mode) == (jail, "sftp")
    assert cfg.users[user.name] == "fresh"
    users.undo_user(user.name, state_dir=state_dir)
    assert config_file.load_config(path).users == {}


# --- issue 18: an active account (processes, crontab, at jobs) ---------------------------

def test_running_processes_refuse_the_move_unless_forced(jail: str, state_dir: str,
                                                         user_factory: UserFactory) -> None:
    user = user_factory(shell="/bin/sh")
    sleeper = subprocess.Popen(["/usr/sbin/runuser", "-u", user.name, "--", "/bin/sleep",
                                "120"])
    try:
        deadline = time.monotonic() + 10
        while not any(name == "sleep" for _pid, name in account.host_processes(user.uid)):
            assert time.monotonic() < deadline, "the sleeper never showed up"
            time.sleep(0.05)
        with pytest.raises(BuildError) as err:
            users.jail_user(jail, user.name, state_dir=state_dir, move=True)
        assert "run on the host" in str(err.value) and "sleep" in str(err.value)
        assert pwd.getpwnam(user.name).pw_dir == user.home         # nothing changed
        report = users.jail_user(jail, user.name, state_dir=state_dir, move=True, force=True)
        assert any(step.startswith("end 1 process") for step in report.steps), report.steps
        assert sleeper.wait(timeout=10) != 0
        assert account.host_processes(user.uid) == []
    finally:
        account.end_processes([pid for pid, _ in account.host_processes(user.uid)], 1.0)
        sleeper.kill()
        sleeper.wait()
    users.undo_user(user.name, state_dir=state_dir)


def test_crontab_and_at_jobs_are_set_aside_and_undo_restores_them(
        jail: str, state_dir: str, user_factory: UserFactory, tmp_path: str) -> None:
    """Without pam_jail's lines in /etc/pam.d/cron and atd, the jobs would run with /bin/sh
    on the host: jailuser takes them out of the spools, --undo puts them back."""
    assert not account.stack_jails("cron") and not account.stack_jails("atd")
    user = user_factory(shell="/bin/sh")
    tab = os.path.join(str(tmp_path), "tab")
    with open(tab, "w") as fh:
        fh.write("* * * * * touch /tmp/pjt-cron-ran\n")
    subprocess.run(["crontab", "-u", user.name, tab], check=True)
    queued = subprocess.run(["/usr/sbin/runuser", "-u", user.name, "--", "at", "now + 2 hours"],
                            input="touch /tmp/pjt-at-ran\n", text=True, capture_output=True)
    assert queued.returncode == 0, queued.stderr
    jobs = account.spooled_jobs(user.name, user.uid)
    assert sorted(kind for kind, _ in jobs) == ["at", "crontab"], jobs
    plan = users.jail_user(jail, user.name, state_dir=state_dir, dry_run=True)
    assert sum("aside" in step for step in plan.steps) == 2, plan.steps
    assert account.spooled_jobs(user.name, user.uid) == jobs       # a dry run moves nothing
    users.jail_user(jail, user.name, state_dir=state_dir)
    assert account.spooled_jobs(user.name, user.uid) == []
    listed = subprocess.run(["crontab", "-l", "-u", user.name], capture_output=True, text=True)
    assert "pjt-cron-ran" not in listed.stdout
    users.undo_user(user.name, state_dir=state_dir)
    assert account.spooled_jobs(user.name, user.uid) == jobs
    listed = subprocess.run(["crontab", "-l", "-u", user.name], capture_output=True, text=True)
    assert "pjt-cron-ran" in listed.stdout
    for _kind, path in jobs:
        os.unlink(path)


def test_home_stub_keeps_mail_and_pam_env_files_out_of_the_users_hands(
        jail: str, state_dir: str, user_factory: UserFactory) -> None:
    """The passwd home is root's: the user (as itself, as sftp would write) can create
    neither .forward nor .pam_environment there, nor replace the .ssh link."""
    user = user_factory(shell="/bin/sh")
    users.jail_user(jail, user.name, state_dir=state_dir)
    home = pwd.getpwnam(user.name).pw_dir
    for name in (".forward", ".pam_environment", ".procmailrc", ".ssh/x"):
        done = subprocess.run(["/usr/sbin/runuser", "-u", user.name, "--", "/bin/sh", "-c",
                               f"echo x > '{home}/{name}'"], capture_output=True, text=True)
        assert done.returncode != 0 and not os.path.lexists(f"{home}/{name}"), name
    # writable where it belongs: the jail home (here /home/USER), and .ssh is reached there
    done = subprocess.run(["/usr/sbin/runuser", "-u", user.name, "--", "/bin/sh", "-c",
                           f"mkdir '{jail}/home/{user.name}/.ssh' && echo k > "
                           f"'{home}/.ssh/authorized_keys'"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.path.isfile(f"{jail}/home/{user.name}/.ssh/authorized_keys")
    # a jailkit-style home is converted by a re-run
    subprocess.run(["usermod", "-d", f"{jail}/./home/{user.name}", user.name], check=True)
    users.jail_user(jail, user.name, state_dir=state_dir)
    assert pwd.getpwnam(user.name).pw_dir == f"{jail}/./.home/{user.name}"
    users.undo_user(user.name, state_dir=state_dir)
    assert not os.path.lexists(f"{jail}/.home/{user.name}")


def test_explain_names_what_still_acts_on_the_host(jail: str, user_factory: UserFactory,
                                                   jails_ini: Callable[[str], str],
                                                   tmp_path: str) -> None:
    """A jailkit-style home with a crontab: explain says both run on the host."""
    from pam_jail.admin.explain import explain

    name = unique_name()
    user = user_factory(shell=users.DEFAULT_SHELL, home=f"{jail}/./home/{name}", name=name,
                        create_home=False)
    build.add_users(jail, [user.name])
    os.makedirs(f"{jail}/etc/pam_jail", exist_ok=True)
    with open(f"{jail}/etc/pam_jail/lsh.ini", "w") as fh:
        fh.write("[default]\nprograms = /usr/bin/id\n")
    tab = os.path.join(str(tmp_path), "tab")
    with open(tab, "w") as fh:
        fh.write("* * * * * true\n")
    subprocess.run(["crontab", "-u", user.name, tab], check=True)
    try:
        info = explain(user.name, None, jails_ini("[jails]\n[users]\n[groups]\n[options]\n"))
        outside = info["outside"]
        assert isinstance(outside, list)
        assert any(t.startswith(f"crontab /var/spool/cron/crontabs/{user.name} runs on the "
                                "host") for t in outside), outside
        assert any("passwd home" in t and "is the user's" in t for t in outside), outside
    finally:
        subprocess.run(["crontab", "-r", "-u", user.name], check=False)


# ---------------------------------------------------- homes private by default

def test_homes_private_by_default(jail: str, state_dir: str, user_factory: UserFactory,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """jailuser leaves every home it touches 0750 when the home's group is the user's own
    private group, else 0700: a --move of useradd's 0755 home whose group has another
    member, a new home of such a user, and a home already in the jail (no move) that is
    0755: tightened, reported, and shown by --dry-run first."""
    from testbed import unique

    # 1. --move, the user's group has another member: 0700
    names = [unique("pjl") for _ in range(4)]
    mover, friend, fresh, inside = (user_factory(name=n) if n != names[3] else
                                    user_factory(name=n, home=f"{jail}/./home/{n}",
                                                 create_home=False) for n in names)
    subprocess.run(["usermod", "-aG", mover.name, friend.name], check=True)
    old = pwd.getpwnam(mover.name).pw_dir
    os.chmod(old, 0o755)
    plan = users.jail_user(jail, mover.name, move=True, dry_run=True, state_dir=state_dir)
    step = f"home {jail}/home/{mover.name}: mode 0755 -> 0700"
    assert any(s.startswith(step) for s in plan.steps), plan.steps
    assert stat.S_IMODE(os.lstat(old).st_mode) == 0o755          # dry run: unchanged
    report = users.jail_user(jail, mover.name, move=True, state_dir=state_dir)
    assert any(s.startswith(step) for s in report.steps), report.steps
    assert stat.S_IMODE(os.lstat(f"{jail}/home/{mover.name}").st_mode) == 0o700

    # 2. a new home: the builder's 0750 stays only with a private group
    subprocess.run(["usermod", "-aG", fresh.name, friend.name], check=True)
    users.jail_user(jail, fresh.name, state_dir=state_dir)
    assert stat.S_IMODE(os.lstat(f"{jail}/home/{fresh.name}").st_mode) == 0o700
    users.jail_user(jail, friend.name, state_dir=state_dir)      # its own group: private
    assert stat.S_IMODE(os.lstat(f"{jail}/home/{friend.name}").st_mode) == 0o750

    # 3. a home already in the jail (jailkit's marker home, no move), 0755: tightened,
    # through the command line too (--dry-run first)
    home = f"{jail}/home/{inside.name}"
    os.makedirs(home)
    os.chown(home, inside.uid, inside.gid)
    os.chmod(home, 0o2755)
    assert cli.main(["jailuser", "-j", jail, "--dry-run", inside.name]) == 0
    out = capsys.readouterr().out
    assert f"would: home {home}: mode 2755 -> 0750 (private to {inside.name}: its group " \
        "is the user's own)" in out, out
    assert stat.S_IMODE(os.lstat(home).st_mode) == 0o2755
    report = users.jail_user(jail, inside.name, state_dir=state_dir)
    assert f"home {home}: mode 2755 -> 0750 (private to {inside.name}: its group is the " \
        "user's own)" in report.steps
    assert stat.S_IMODE(os.lstat(home).st_mode) == 0o750
    for user in (mover, fresh, friend, inside):
        users.undo_user(user.name, state_dir=state_dir)


def test_a_rerun_changes_nothing_and_says_so(jail: str, user_factory: UserFactory,
                                              jails_ini: Callable[[str], str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """What a configuration-management tool needs: changed true, then false (text and
    --json), a dry run that lists only what is left to do, --undo twice."""
    user = user_factory(shell="/bin/sh")
    path = jails_ini(f"[jails]\n  [[web]]\n  root = {jail}\n  mode = shell\n[users]\n")
    argv = ["jailuser", "-j", jail, "--jail-config", "web", "--config", path, user.name]
    try:
        assert cli.main([*argv[:-1], "--json", user.name]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["changed"] is True and first["steps"]
        ini = os.stat(path)
        passwd = os.stat(f"{jail}/etc/passwd")
        for extra in (["--dry-run", "--json"], ["--json"]):
            assert cli.main([*argv[:-1], *extra, user.name]) == 0
            again = json.loads(capsys.readouterr().out)
            assert again["changed"] is False and again["steps"] == [], again
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert f"jailuser {user.name}: no change" in out and "would" not in out, out
        # nothing was rewritten by the no-op runs
        assert os.stat(path).st_mtime_ns == ini.st_mtime_ns
        assert os.stat(f"{jail}/etc/passwd").st_mtime_ns == passwd.st_mtime_ns
    finally:
        assert cli.main(["jailuser", "--undo", "--json", user.name]) == 0
        assert json.loads(capsys.readouterr().out)["changed"] is True
    assert cli.main(["jailuser", "--undo", "--json", user.name]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert pwd.getpwnam(user.name).pw_shell == "/bin/sh"


# --- issue 20: an --allow-shell account can upload its files ---------------------------

def test_allow_shell_section_names_only_what_the_jail_has(jail: str, state_dir: str,
                                                          user_factory: UserFactory) -> None:
    """The [user:USER] section --allow-shell writes names the transfer programs the jail
    has (a missing one ended sftp with a bare "Connection closed"); with -p, jailuser adds
    their profiles and ptys (tests/test_accounts.py logs such an account in)."""
    user = user_factory(shell="/bin/sh")
    build.copy_into(jail, ["/usr/bin/rsync"])
    users.jail_user(jail, user.name, mode="shell", allow_shell=True, state_dir=state_dir)
    with open(f"{jail}/etc/pam_jail/lsh.ini") as fh:
        section = fh.read().split(f"[user:{user.name}]\n", 1)[1]
    assert section.startswith("programs = /usr/bin/rsync\nallow_shell = yes\n"), section
    assert users._added_profiles("shell", True) == ["ptys", "sftp", "scp", "rsync"]
    assert users._added_profiles("pam", True) == ["lsh", "ptys", "sftp", "scp", "rsync"]
    assert users._added_profiles("shell", False) == []
    users.undo_user(user.name, state_dir=state_dir)
