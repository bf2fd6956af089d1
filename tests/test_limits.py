"""Resource limits (issue 11 item 7): the pure plan (pam_jail/login/limits.py), and for real
through sshd: a jailed fork bomb and a memory hog are capped, in both modes, while an
unjailed user's login stays quick."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import PAM_STACK, make_jailed_pair, undoing
from sshd_harness import Sshd, User, make_user, remove_user

from pam_jail.login.config_file import parse_config
from pam_jail.login.errors import ConfigError
from pam_jail.login.limits import (
    Limits,
    cgroup_writes,
    controllers,
    in_cgroup,
    limits_of,
    pam_limits_conf,
    parse_size,
)

HERE = os.path.dirname(os.path.abspath(__file__))
LOAD = "/usr/local/bin/pjload"

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


# --- the pure part ---------------------------------------------------------------

def test_sizes() -> None:
    assert parse_size("") is None and parse_size("1G") == 1 << 30
    assert parse_size("512m") == 512 << 20 and parse_size("4096") == 4096
    assert parse_size("10GB") == 10 << 30
    for bad in ("0", "-1G", "1.5G", "lots", "1X"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_where_each_controller_lives() -> None:
    assert controllers(HYBRID, "") == {"cpu": ("v1", "/sys/fs/cgroup/cpu"),
                                       "memory": ("v1", "/sys/fs/cgroup/memory"),
                                       "pids": ("v1", "/sys/fs/cgroup/pids")}
    both = controllers(HYBRID, "pids")          # a controller enabled in v2 is used there
    assert both["pids"] == ("v2", "/sys/fs/cgroup/unified")
    assert controllers(PURE_V2, "cpuset cpu io memory pids") == {
        "cpu": ("v2", "/sys/fs/cgroup"), "memory": ("v2", "/sys/fs/cgroup"),
        "pids": ("v2", "/sys/fs/cgroup")}


def test_writes_v1_and_v2() -> None:
    lim = Limits(procs=64, memory=64 << 20, cpu=50)
    writes, missing = cgroup_writes(lim, controllers(HYBRID, ""), "web", "alice")
    assert missing == []
    assert ("/sys/fs/cgroup/pids/pam_jail/web/alice", "pids.max", "64") in writes
    assert ("/sys/fs/cgroup/memory/pam_jail/web/alice", "memory.limit_in_bytes",
            str(64 << 20)) in writes
    assert ("/sys/fs/cgroup/cpu/pam_jail/web/alice", "cpu.cfs_quota_us", "50000") in writes
    v2, _ = cgroup_writes(lim, controllers(PURE_V2, "memory pids cpu"), "marker:/srv/j", "bo")
    assert ("/sys/fs/cgroup/pam_jail/marker__srv_j/bo", "cpu.max", "50000 100000") in v2
    # limits not asked for are written back to "none" (a changed jails.ini takes effect)
    plain, _ = cgroup_writes(Limits(procs=10), controllers(HYBRID, ""), "web", "alice")
    assert ("/sys/fs/cgroup/memory/pam_jail/web/alice", "memory.limit_in_bytes", "-1") in plain
    # memory asked for, and no controller anywhere: named, so the login is refused
    _, missing = cgroup_writes(lim, controllers(HYBRID.replace("rw,memory", "rw,foo"), ""),
                               "web", "alice")
    assert missing == ["memory"]


def test_membership() -> None:
    text = "8:pids:/pam_jail/web/alice\n4:memory:/pam_jail/web/alice\n0::/\n"
    assert in_cgroup(text, "web", "alice") == {"pids", "memory"}
    assert in_cgroup("0::/pam_jail/web/alice\n", "web", "alice") == {"v2"}
    assert in_cgroup(text, "web", "bob") == set()


def test_config_keys() -> None:
    base = "[jails]\n  [[web]]\n  root = /srv/jails/web\n"
    cfg = parse_config(base + "  max_procs = 64\n  memory = 256M\n  cpu = 50\n"
                       "  max_file_size = 1G\n")
    lim = limits_of(cfg.jails["web"].options)
    assert (lim.procs, lim.memory, lim.cpu, lim.fsize) == (64, 256 << 20, 50, 1 << 30)
    default = limits_of(parse_config(base).jails["web"].options)
    assert (default.procs, default.memory, default.cpu, default.fsize) == (512, None, 0, None)
    for bad, where in (("max_procs = 0", "max_procs"), ("max_procs = many", "max_procs"),
                       ("memory = 1.5G", "memory"), ("cpu = -5", "cpu"),
                       ("max_file_size = huge", "max_file_size")):
        with pytest.raises(ConfigError) as info:
            parse_config(base + f"  {bad}\n")
        assert any(p.startswith(f"jails/web/{where}:") for p in info.value.problems), bad


def test_pam_limits_conf() -> None:
    text = pam_limits_conf({"alice": "web"}, {"sftponly": "drop"}, {"web": 64, "drop": 512})
    assert "alice                    hard nproc 64\n" in text
    assert "@sftponly                hard nproc 512\n" in text


# --- for real ---------------------------------------------------------------------

LSH = f"""\
[default]
programs = /usr/bin/id, {LOAD}
  [[rules]]
  /usr/bin/id = none
  {LOAD} = any
"""


@dataclass
class World:
    sshd: Sshd
    pam: User
    shell: User
    plain: User


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from testbed import SYSTEM_CONFIG, write_config

    from pam_jail.admin.sshd_config import generate
    from pam_jail.login.config_file import load_config

    with undoing() as undo:
        pair = make_jailed_pair(LSH, undo)
        undo.append(lambda: _remove_cgroups(pair.pam_user.name, pair.shell_user.name))
        for root in (pair.pam_jail, pair.shell_jail):
            os.makedirs(f"{root}/usr/local/bin", mode=0o755, exist_ok=True)
            subprocess.run(["gcc", "-static", "-O1", "-o", f"{root}{LOAD}",
                            f"{HERE}/escape/pjload.c"], check=True)
        with open(SYSTEM_CONFIG) as fh:
            text = fh.read()
        limits = "  max_procs = 40\n  memory = 96M\n"
        write_config(text.replace("  mode = pam\n", "  mode = pam\n" + limits)
                     .replace("  mode = shell\n", "  mode = shell\n" + limits))
        plain = make_user(f"pjq{os.getpid() % 100000}", "/bin/sh")
        undo.append(lambda: remove_user(plain.name))
        sshd = Sshd(PAM_STACK, "AcceptEnv LANG\n" + generate(load_config())).start()
        undo.append(sshd.stop)
        yield World(sshd, pair.pam_user, pair.shell_user, plain)



def _remove_cgroups(*users: str) -> None:
    """The users' cgroups (empty once their sessions ended; runs after sshd.stop)."""
    for top in ("pids", "memory", "cpu", "unified"):
        for jail in ("pamj", "shellj"):
            for user in users:
                path = f"/sys/fs/cgroup/{top}/pam_jail/{jail}/{user}"
                if os.path.isdir(path):
                    os.rmdir(path)


def _processes_of(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("who", ["pam", "shell"])
def test_fork_bomb_is_capped_and_the_host_stays_responsive(world: World, who: str) -> None:
    user = world.pam if who == "pam" else world.shell
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_processes_of(user.uid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    bomb = subprocess.Popen(world.sshd.ssh_argv(user, f"{LOAD} fork 3000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        start = time.monotonic()
        other = world.sshd.ssh(world.plain, "id -un", timeout=60)   # while the bomb runs
        elapsed = time.monotonic() - start
        out, err = bomb.communicate(timeout=120)
    finally:
        done.set()
        watcher.join()
        bomb.kill()
    assert other.returncode == 0 and other.stdout.strip() == world.plain.name
    assert elapsed < 20, elapsed
    assert out.startswith("forked "), (out, err)
    forked = int(out.split()[1])
    assert forked < 40, out                      # max_procs = 40 for the whole login
    assert max(seen) <= 45, max(seen)            # and nothing else of the user's ran
    assert "Resource temporarily unavailable" in out, out


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("who", ["pam", "shell"])
def test_memory_is_capped(world: World, who: str) -> None:
    user = world.pam if who == "pam" else world.shell
    small = world.sshd.ssh(user, f"{LOAD} mem 16")
    assert small.returncode == 0 and "allocated 16 MB" in small.stdout, small
    big = world.sshd.ssh(user, f"{LOAD} mem 400", timeout=120)
    assert "allocated 400 MB" not in big.stdout, big
    assert big.returncode != 0


@pytest.mark.root
def test_limits_conf_command(tmp_path: str) -> None:
    import sys

    from util import safe_tmpdir

    base = safe_tmpdir("limconf")
    config = f"{base}/jails.ini"
    with open(config, "w") as fh:
        fh.write("[jails]\n  [[web]]\n  root = /srv/web\n  max_procs = 77\n"
                 "[users]\nalice = web\n")
    out = f"{base}/pam_jail.conf"
    result = subprocess.run([sys.executable, "-m", "pam_jail.admin.cli", "limits-conf", "--config",
                             config, "-o", out], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    with open(out) as fh:
        assert "alice                    hard nproc 77\n" in fh.read()


@pytest.mark.root
@pytest.mark.e2e
def test_memory_limit_without_the_pam_lines_refuses(world: World) -> None:
    """Only root can make the cgroup: without pam_jail's PAM lines a jail that sets a
    memory limit refuses the login instead of running without it."""
    from sshd_harness import PERMIT_PAM

    bare = Sshd(PERMIT_PAM, world.sshd.extra_config).start()
    try:
        result = bare.ssh(world.shell, f"{LOAD} mem 16")
    finally:
        bare.stop()
    assert result.returncode != 0 and "allocated" not in result.stdout
    assert "sets memory/cpu limits: this session is not in its cgroup" in result.stderr
