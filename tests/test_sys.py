"""pam_jail.login._sys, the C extension behind confine.py: each call reaches the kernel, and a
failing call raises OSError with the kernel's errno (confine.py turns it into one
ConfineError line). The sequences themselves are tested for real in test_e2e.py."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pam_jail.login import _sys, confine
from pam_jail.login.errors import ConfineError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_child(code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (calls that change the process: unshare, caps)."""
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {REPO!r})\n"
                           + code], capture_output=True, text=True, timeout=60, check=False)


def test_errors_carry_errno() -> None:
    with pytest.raises(FileNotFoundError):
        _sys.mount(None, "/nonexistent/pam_jail", None, confine.MS_REC | confine.MS_PRIVATE,
                   None)
    with pytest.raises(OSError) as info:
        _sys.umount2("/nonexistent/pam_jail", 0)
    assert info.value.errno in (errno.ENOENT, errno.EPERM)
    with pytest.raises(OSError) as info:
        _sys.prctl(-1)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        _sys.unshare("mount")  # type: ignore[arg-type]
    with pytest.raises(ValueError):   # an embedded NUL never reaches the kernel
        _sys.mount(None, "/tmp\0/x", None, 0, None)


def test_confine_turns_errors_into_one_line() -> None:
    with pytest.raises(ConfineError, match=r"^umount /nonexistent/pj: No such file"):
        confine.umount("/nonexistent/pj")


def test_prctl_and_capget_read_this_process() -> None:
    assert _sys.prctl(confine.PR_GET_NO_NEW_PRIVS) in (0, 1)
    eff, perm, inh = _sys.capget()
    with open("/proc/self/status") as fh:
        status = dict(line.split(":\t", 1) for line in fh if ":\t" in line)
    assert eff == int(status["CapEff"], 16)
    assert perm == int(status["CapPrm"], 16)
    assert inh == int(status["CapInh"], 16)


def test_drop_in_a_child_is_proven() -> None:
    """A root child drops its bounding set and capabilities, sets no_new_privs, and the
    kernel's own view (/proc/self/status) agrees."""
    proc = in_child(
        "from pam_jail.login import confine, _sys\n"
        "confine.drop_bounding_set(); confine.clear_capabilities(); confine.set_no_new_privs()\n"
        "st = dict(l.split(':\\t', 1) for l in open('/proc/self/status') if ':\\t' in l)\n"
        "print(_sys.capget(), int(st['CapBnd'], 16), int(st['CapEff'], 16),\n"
        "      st['NoNewPrivs'].strip())\n"
        "try:\n    _sys.unshare(confine.CLONE_NEWNS)\nexcept OSError as e:\n    print(e.errno)\n")
    assert proc.returncode == 0, proc.stderr
    caps, bounding, eff, nnp = proc.stdout.splitlines()[0].rsplit(" ", 3)
    assert caps == "(0, 0, 0)" and bounding == "0" and eff == "0" and nnp == "1"
    assert proc.stdout.splitlines()[1] == str(errno.EPERM)


def test_bounding_set_drop_without_privilege_fails_with_the_capability() -> None:
    """Without CAP_SETPCAP the first drop fails: one line naming capability 0 and the
    kernel's error, never a silent half-dropped set (capbset_drop_all skips only EINVAL,
    a capability the kernel does not have)."""
    proc = in_child(
        "import os\nfrom pam_jail.login import confine\n"
        "confine.drop_bounding_set()\nos.setgroups([]); os.setresgid(65534, 65534, 65534)\n"
        "os.setresuid(65534, 65534, 65534)\n"
        "try:\n    confine.drop_bounding_set()\nexcept confine.ConfineError as e:\n    print(e)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("drop capability 0 from the bounding set: Operation not "
                                   "permitted"), proc.stdout


def test_unshare_and_mount_in_a_child() -> None:
    """unshare + mount + umount2: a tmpfs in a private mount namespace, seen only there."""
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    proc = in_child(
        "import os\nfrom pam_jail.login import confine, _sys\n"
        "_sys.unshare(confine.CLONE_NEWNS)\n"
        "_sys.mount(None, '/', None, confine.MS_REC | confine.MS_PRIVATE, None)\n"
        "_sys.mount('pjtest', '/mnt', 'tmpfs', confine.MS_NOSUID, 'size=1m')\n"
        "print(any(' /mnt tmpfs ' in l and 'pjtest' in l for l in open('/proc/self/mounts')))\n"
        "_sys.umount2('/mnt', 0)\n"
        "print(any('pjtest' in l for l in open('/proc/self/mounts')))\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]
    with open("/proc/self/mounts") as fh:
        assert "pjtest" not in fh.read()


def test_close_range_closes() -> None:
    proc = in_child(
        "import os\nfrom pam_jail.login import confine\n"
        "fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(5)]\n"
        "confine.close_fds(keep=(fds[2],))\n"
        "def is_open(fd):\n    try:\n        os.fstat(fd)\n    except OSError:\n"
        "        return False\n    return True\n"
        "print(fds[2], [fd for fd in fds if is_open(fd)])\n")
    assert proc.returncode == 0, proc.stderr
    kept, still_open = proc.stdout.split(" ", 1)
    assert still_open.strip() == f"[{kept}]"


def test_rlimits_agree_with_the_resource_module() -> None:
    """Differential: _sys.getrlimit/setrlimit (the login path's, without loading the
    `resource` extension) against Python's own resource module, constants included."""
    import resource

    assert (confine.RLIMIT_NPROC, confine.RLIMIT_FSIZE, confine.RLIM_INFINITY) == \
        (resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE, resource.RLIM_INFINITY)
    for which in (resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE):
        assert _sys.getrlimit(which) == resource.getrlimit(which)
    out = in_child(
        "import resource\nfrom pam_jail.login import _sys, confine, limits\n"
        "_sys.setrlimit(resource.RLIMIT_FSIZE, 12345, 23456)\n"
        "print(resource.getrlimit(resource.RLIMIT_FSIZE))\n"
        "confine.set_rlimits(limits.Limits(procs=77, fsize=4096))\n"
        "print(resource.getrlimit(resource.RLIMIT_NPROC), "
        "resource.getrlimit(resource.RLIMIT_FSIZE))\n"
        "try:\n    _sys.setrlimit(resource.RLIMIT_FSIZE, 1, -1)\n"
        "except OSError as e:\n    print('errno', e.errno)\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "(12345, 23456)"
    assert lines[1] == "(77, 77) (4096, 4096)"   # capped at the hard limit: 4096 < 23456
    if os.geteuid() != 0:
        assert lines[2] == f"errno {errno.EPERM}"   # raising the hard limit needs root


def test_dgram_connect_gives_a_syslog_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             ) -> None:
    """log.SysLog's socket: made and connected by _sys, close-on-exec, written with
    write(2); a path nobody listens on, or too long for a unix address, is OSError."""
    import socket

    from pam_jail.login import log

    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        fd = _sys.dgram_connect(path)
        try:
            assert not os.get_inheritable(fd)
            os.write(fd, b"<38>hello")
            assert server.recv(100) == b"<38>hello"
        finally:
            os.close(fd)
        monkeypatch.setattr(log, "DEVLOG", path)
        syslog = log.SysLog("pam-jail-test")
        syslog.decision(log.LOG_NOTICE, "login refused", user="u\n1", jail="j", reason="r")
        line = server.recv(4096).decode()
        assert line.startswith(f"<{log.LOG_AUTH | log.LOG_NOTICE}>")
        assert line.endswith(f'pam-jail-test[{os.getpid()}]: login refused user=u\\x0a1 jail=j '
                             'reason="r"'), line
        syslog.close()
        assert syslog.fileno() == -1
    with pytest.raises(FileNotFoundError):
        _sys.dgram_connect(str(tmp_path / "nobody"))
    with pytest.raises(OSError, match="too long"):
        _sys.dgram_connect("/" + "x" * 200)
