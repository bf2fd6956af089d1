"""The confinement plan (pam_jail/login/plan.py): pure, built from jail, identity and the
jail's options; confine executes it for every entry. No root needed: nothing here
confines (the sequences themselves are tested for real by test_e2e, test_tenants,
test_network, test_launch...)."""

from __future__ import annotations

import inspect

import pytest

from pam_jail.login import confine
from pam_jail.login.plan import KINDS, Plan, plan_launch, plan_login
from pam_jail.login.resolve import Identity, Jail

ANN = Identity("ann", 1500, 1600, "/srv/j/./.home/ann", "/usr/local/sbin/pam-jail-lsh",
               "ann", ("web", "devs"))


def jail(mode: str = "pam", **options: str) -> Jail:
    return Jail("web", "/srv/j", "/home/ann", mode, False, "user", dict(options),
                program=b"\x06\x00\x00\x00\x00\x00\xff\x7f")


def test_a_pam_session_gets_every_namespace_our_pid1_and_the_view() -> None:
    plan = plan_login("session", jail(), ANN, tty_gid=7)
    assert (plan.kind, plan.jail, plan.user, plan.root, plan.home) == \
        ("session", "web", "ann", "/srv/j", "/home/ann")
    assert (plan.uid, plan.gid, plan.tty_gid) == (1500, 1600, 7)
    assert plan.namespaces() == ["mount", "IPC", "UTS", "net", "PID"]
    assert (plan.pid, plan.init, plan.proc, plan.devpts, plan.network) == \
        (True, True, False, True, False)
    assert plan.view == ("/home/ann", "ann", 1600, 256 << 20, ("ann", "web", "devs"))
    assert plan.seccomp == () and plan.program == jail().program
    assert plan.limits is not None and plan.limits.procs == 512
    assert plan.steps()[-2:] == ["fork PID 1 (as the user)", "seccomp filter"]


def test_jail_options_reach_the_plan() -> None:
    plan = plan_login("session", jail(network="yes", proc="yes", devpts="no",
                                      hostname="box", private="no", seccomp_allow="ptrace",
                                      max_procs="40", memory="1G", tmp_size="16M"), ANN)
    assert plan.network and plan.proc and not plan.devpts and plan.hostname == "box"
    assert plan.view is None and plan.seccomp == ("ptrace",)
    assert plan.namespaces() == ["mount", "IPC", "UTS", "PID"]
    assert plan.limits is not None and (plan.limits.procs, plan.limits.memory) == \
        (40, 1 << 30)
    off = plan_login("session", jail(seccomp="no"), ANN)
    assert off.seccomp is None and off.program is None     # no filter: no program either
    small = plan_login("session", jail(tmp_size="16M"), ANN)
    assert small.view is not None and small.view[3] == 16 << 20


def test_a_job_is_pid1_itself_without_devpts_or_proc() -> None:
    plan = plan_login("job", jail(proc="yes", pid="yes"), ANN)
    assert plan.pid and not plan.init and not plan.proc and not plan.devpts
    assert "fork PID 1 (as the user)" not in plan.steps()


def test_isolate_keeps_sshd_off_the_network_and_mounts_only_sftps_view() -> None:
    sftp = plan_login("isolate", jail("sftp"), ANN)
    assert sftp.file_size and sftp.view is not None and sftp.seccomp is None
    assert sftp.namespaces() == ["net", "mount"]
    shell = plan_login("isolate", jail("shell", network="yes"), ANN)
    assert not shell.file_size and shell.view is None and shell.namespaces() == []
    assert shell.steps() == ["limits (cgroup, rlimits)", "no_new_privs"]


def test_userns_always_has_its_own_pid_namespace_and_ptys() -> None:
    plan = plan_login("userns", jail("shell", pid="no", devpts="no"), ANN)
    assert plan.namespaces()[0] == "user" and "PID" in plan.namespaces()
    assert plan.pid and plan.devpts
    steps = plan.steps()
    assert steps.index("fork: PID 1 of the namespace") < steps.index("pivot_root") \
        < steps.index("drop proven") < steps.index("seccomp filter")


def test_a_bad_option_gives_no_plan() -> None:
    with pytest.raises(ValueError):
        plan_login("session", jail(max_procs="many"), ANN)
    with pytest.raises(ValueError):
        Plan("chroot", "web", "ann", "/srv/j", "/", 1, 1)
    assert set(KINDS) == {"session", "job", "isolate", "userns", "launch"}


def test_launch_never_forks_nor_mounts_proc() -> None:
    plan = plan_launch("web", "/srv/j", "/srv/www", "www", 33, 33, (33, 44),
                       {"network": "yes", "hostname": "h"}, devpts=False)
    assert (plan.pid, plan.init, plan.proc, plan.devpts, plan.limits, plan.view) == \
        (False, False, False, False, None, None)
    assert plan.groups == (33, 44) and plan.home == "/srv/www" and plan.seccomp == ()
    steps = plan.steps()
    assert steps.index("switch ids") < steps.index("drop proven")
    assert "fork PID 1 (as the user)" not in steps


def test_what_explain_prints() -> None:
    plan = plan_login("session", jail(seccomp_allow="ptrace"), ANN)
    lines = plan.lines()
    assert lines[0] == "confinement: session (mount, IPC, UTS, net, PID namespaces)"
    assert "seccomp: the default filter less [ptrace], precomputed by the index" in lines
    plan.program = None
    assert "seccomp: the default filter less [ptrace], built at login" in plan.lines()
    info = plan.as_dict()
    assert info["pid_init"] == "ours" and info["seccomp"] == {"allow": ["ptrace"],
                                                              "program": "built at login"}
    assert info["private_view"] == {"home": "/home/ann", "tmp_size": 256 << 20,
                                    "groups": ["ann", "web", "devs"]}


@pytest.mark.parametrize("name", ["confine_pam_session", "isolate_session",
                                  "confine_unprivileged", "confine_launch"])
def test_every_sequence_takes_the_plan(name: str) -> None:
    """The entries hand confine one Plan, not a dozen arguments each."""
    params = inspect.signature(getattr(confine, name)).parameters
    assert "plan" in params and len(params) <= 3
