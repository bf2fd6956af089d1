"""`pam-jail doctor`: a correct wiring passes; each broken piece is reported with its fix.

Real parts only: real users (useradd), real jails (the builder), a jails.ini and a PAM
file written here (the PAM file @includes a neighbour and Debian's /etc/pam.d/common-*),
and the sshd config of tests/sshd_harness.Sshd(...).prepare() with the snippet
`pam-jail sshd-config` generates, read by the real `sshd -T`. The machine's
/etc/pam.d/sshd and /etc/ssh/sshd_config are never touched.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from jail_fixtures import (
    LSH_SHELL,
    PAM_MODULE,
    REPO,
    SHELL_ENTRY,
    build_jail,
    pam_lines,
    remove_jail,
    undoing,
    unique,
)
from sshd_harness import Sshd, make_user, remove_user
from util import safe_tmpdir

from pam_jail.admin import doctor, doctor_host
from pam_jail.admin.cli import main
from pam_jail.admin.sshd_config import generate
from pam_jail.login.config_file import load_config

LSH = """[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/rsync
"""

JAIL_LINES = (f"account required pam_python.so {PAM_MODULE}\n"
              f"session required pam_python.so {PAM_MODULE}\n")
# cron, atd, su, ... as `pam-jail pam-setup` leaves them: Debian's includes, then the lines
SERVICE_STACK = ("@include common-account\n" + pam_lines("account")
                 + "@include common-session-noninteractive\n" + pam_lines("session"))


@dataclass
class Wiring:
    base: str
    config: str
    pam_file: str
    sshd_config: str
    sshd_text: str
    pam_user: str
    shell_user: str
    sftp_user: str
    shell_jail: str
    pam_jail: str

    def write(self, name: str, text: str) -> str:
        path = f"{self.base}/{name}"
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o644)
        return path


@pytest.fixture(scope="module")
def wiring() -> Iterator[Wiring]:
    if os.geteuid() != 0:
        pytest.fail("run as root (real users, jails, sshd -T): scripts/test")
    for tool in ("/usr/sbin/sshd", "/usr/bin/unshare", PAM_MODULE, SHELL_ENTRY):
        if not os.path.exists(tool):
            pytest.fail(f"{tool} missing: run scripts/setup")
    with undoing() as undo:
        base = safe_tmpdir("doctor")
        undo.append(lambda: shutil.rmtree(base, ignore_errors=True))
        pam_name, shell_name, sftp_name = unique("pjdp"), unique("pjds"), unique("pjdf")
        make_user(pam_name, LSH_SHELL, f"/home/{pam_name}", create_home=False)
        undo.append(lambda: remove_user(pam_name, remove_home=False))
        make_user(shell_name, SHELL_ENTRY, f"/home/{shell_name}", create_home=False)
        undo.append(lambda: remove_user(shell_name, remove_home=False))
        make_user(sftp_name, SHELL_ENTRY, "/upload", create_home=False)
        undo.append(lambda: remove_user(sftp_name, remove_home=False))
        pam_jail = build_jail(["lsh", "basicshell", "ptys"], [pam_name], shell=LSH_SHELL)
        undo.append(lambda: remove_jail(pam_jail))
        shell_jail = build_jail(["sftp"], [shell_name], lsh=LSH)
        undo.append(lambda: remove_jail(shell_jail))
        sftp_jail = f"{base}/sftpjail"
        os.makedirs(f"{sftp_jail}/upload", mode=0o755)
        w = Wiring(base, f"{base}/jails.ini", "", "", "", pam_name, shell_name, sftp_name,
                   shell_jail, pam_jail)
        w.write("jails.ini",
                f"[jails]\n  [[pamj]]\n  root = {pam_jail}\n  mode = pam\n"
                f"  [[shellj]]\n  root = {shell_jail}\n  mode = shell\n"
                f"  [[sftpj]]\n  root = {sftp_jail}\n  mode = sftp\n"
                f"[users]\n{pam_name} = pamj\n{shell_name} = shellj\n{sftp_name} = sftpj\n")
        w.write("pam.d/pj-jail", JAIL_LINES)
        w.pam_file = w.write("pam.d/sshd-test",
                             "@include common-auth\n@include common-account\n"
                             "@include common-session-noninteractive\n@include pj-jail\n")
        for service in doctor_host.SERVICES:   # what `pam-jail pam-setup` would leave
            w.write(f"pam.d/{service}", SERVICE_STACK)
        sshd = Sshd(extra_config=generate(load_config(w.config)))
        undo.append(sshd.stop)
        sshd.prepare()
        w.sshd_config = sshd.config_path
        w.sshd_text = sshd.config_text()
        yield w


def doctor_json(capsys: pytest.CaptureFixture[str], w: Wiring, user: str | None, *,
                pam_file: str | None = None, sshd_config: str | None = None,
                config: str | None = None, pam_dir: str | None = None,
                extra: tuple[str, ...] = ()) -> tuple[int, dict[str, object]]:
    argv = ["doctor", "--json", "--pam-file", pam_file or w.pam_file,
            "--sshd-config", sshd_config or w.sshd_config, "--config", config or w.config,
            "--pam-dir", pam_dir or f"{w.base}/pam.d"]
    status = main(argv + ([user] if user else []) + list(extra))
    out = capsys.readouterr().out
    return status, json.loads(out)


def by_name(report: dict[str, object], name: str) -> list[dict[str, str]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return [c for c in checks if c["name"] == name]


def failures(report: dict[str, object]) -> dict[str, dict[str, str]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c for c in checks if c["status"] == "fail"}


# --------------------------------------------------------------------------- correct


@pytest.mark.root
@pytest.mark.parametrize("who", ["pam_user", "shell_user", "sftp_user", None])
def test_correct_wiring_passes(wiring: Wiring, capsys: pytest.CaptureFixture[str],
                               who: str | None) -> None:
    user = getattr(wiring, who) if who else None
    status, report = doctor_json(capsys, wiring, user)
    ours = (wiring.pam_user, wiring.shell_user, wiring.sftp_user)
    if who is None:
        # every jailed user of the passwd database: ours, and possibly users that other
        # tests on this host left with jailkit home markers (/jail/./home/u)
        checked = {c["user"] for c in report["checks"]}  # type: ignore[attr-defined]
        assert set(ours) <= checked
        assert {n: c for n, c in failures(report).items() if c["user"] in ours} == {}
        return
    assert failures(report) == {}, report
    assert status == 0 and report["ok"] is True
    names = {c["name"] for c in report["checks"]}  # type: ignore[attr-defined]
    assert {"config", "pam.account", "pam.session", "user.jail", "user.shell", "jail",
            "sshd.match"} <= names
    plan = by_name(report, "user.plan")[0]        # the confinement its login would get
    kind = {"pam_user": "session", "shell_user": "userns", "sftp_user": "isolate"}[who]
    assert plan["status"] == "ok" and plan["message"].startswith(f"confinement: {kind} ")
    assert any(str(d).startswith("steps: ") for d in plan["details"])
    if who == "shell_user":
        assert {"lsh", "userns", "sshd.subsystem"} <= names
    if who == "pam_user":
        assert by_name(report, "sshd.usepam")[0]["status"] == "ok"
        # the include was followed into the neighbour file
        assert "pj-jail:1" in by_name(report, "pam.account")[0]["message"]


@pytest.mark.root
def test_text_output_and_exit_status_of_the_command(wiring: Wiring) -> None:
    """The real command line: one line per check, a summary, exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "pam_jail.admin.cli", "doctor", "--pam-file", wiring.pam_file,
         "--sshd-config", wiring.sshd_config, "--config", wiring.config,
         "--pam-dir", f"{wiring.base}/pam.d", wiring.shell_user],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].endswith("0 failed, 0 warnings")
    assert all(line.split()[0] == "ok" for line in lines[:-1]), proc.stdout
    assert "--pam-file" in subprocess.run(
        [sys.executable, "-m", "pam_jail.admin.cli", "doctor", "--help"], cwd=REPO,
        capture_output=True, text=True, check=True).stdout


# --------------------------------------------------------------------------- broken


@pytest.mark.root
def test_missing_pam_line(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    pam = wiring.write("pam.d/no-session",
                       "@include common-account\n"
                       f"account required pam_python.so {PAM_MODULE}\n"
                       "@include common-session-noninteractive\n")
    status, report = doctor_json(capsys, wiring, wiring.pam_user, pam_file=pam)
    assert status == 1 and report["ok"] is False
    fail = failures(report)
    assert set(fail) == {"pam.session"}, fail
    assert "no `session" in fail["pam.session"]["message"]
    assert f"session  required  pam_python.so {PAM_MODULE}" in fail["pam.session"]["fix"]
    assert "session last" in fail["pam.session"]["fix"]


@pytest.mark.root
def test_optional_instead_of_required(wiring: Wiring,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pam = wiring.write("pam.d/optional",
                       "@include common-account\n"
                       f"account required pam_python.so {PAM_MODULE}\n"
                       f"session optional pam_python.so {PAM_MODULE}\n")
    status, report = doctor_json(capsys, wiring, wiring.pam_user, pam_file=pam)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"pam.session"}, fail
    assert "control is `optional`" in fail["pam.session"]["message"]
    assert "/pam.d/optional:3:" in fail["pam.session"]["message"]  # file:line named
    assert fail["pam.session"]["fix"].startswith("change it to `session  required")


@pytest.mark.root
def test_sufficient_rule_before_ours(wiring: Wiring,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pam = wiring.write("pam.d/sufficient",
                       "account sufficient pam_permit.so\n"
                       f"account required pam_python.so {PAM_MODULE}\n"
                       f"session [success=ok default=bad] pam_python.so {PAM_MODULE}\n")
    status, report = doctor_json(capsys, wiring, wiring.pam_user, pam_file=pam)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"pam.account", "pam.session"}, fail
    assert "sufficient pam_permit.so" in fail["pam.account"]["message"]
    assert "[success=ok default=bad]" in fail["pam.session"]["message"]


@pytest.mark.root
def test_missing_match_block(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    plain = wiring.write("sshd_plain.conf", wiring.sshd_text.split("# ---- extra_config")[0])
    for user in (wiring.pam_user, wiring.sftp_user):
        status, report = doctor_json(capsys, wiring, user, sshd_config=plain)
        assert status == 1
        fail = failures(report)
        assert set(fail) == {"sshd.match"}, fail
        details = fail["sshd.match"]["details"]
        assert "disableforwarding is no, must be yes" in details
        assert "permituserrc is yes, must be no" in details
        if user == wiring.sftp_user:
            assert "forcecommand is none, must be internal-sftp -d /home/%u" in details, details
            assert any(d.startswith("chrootdirectory is none") for d in details)
        assert "pam-jail sshd-config -o /etc/ssh/sshd_config.d/pam_jail.conf" in \
            fail["sshd.match"]["fix"]


@pytest.mark.root
def test_internal_sftp_for_a_shell_user(wiring: Wiring,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    text = wiring.sshd_text.replace("Subsystem sftp /usr/lib/openssh/sftp-server",
                                    "Subsystem sftp internal-sftp")
    assert text != wiring.sshd_text
    conf = wiring.write("sshd_internal.conf", text)
    # the generated block forces pam-jail-shell: internal-sftp goes through the login shell
    status, report = doctor_json(capsys, wiring, wiring.shell_user, sshd_config=conf)
    assert status == 0, failures(report)
    unrouted = wiring.write("sshd_internal2.conf", text.replace(
        "    ForceCommand", "    #ForceCommand"))
    status, report = doctor_json(capsys, wiring, wiring.shell_user, sshd_config=unrouted)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"sshd.subsystem"}, fail
    assert "internal-sftp" in fail["sshd.subsystem"]["message"]
    assert "Subsystem sftp /usr/lib/openssh/sftp-server" in fail["sshd.subsystem"]["fix"]
    environment = wiring.write("sshd_env.conf", text.replace(
        "UsePAM yes\n", "UsePAM yes\nPermitUserEnvironment yes\nAcceptEnv LANG LD_*\n"))
    status, report = doctor_json(capsys, wiring, wiring.shell_user, sshd_config=environment)
    fail = failures(report)
    assert status == 1 and set(fail) == {"sshd.environment"}, fail
    assert fail["sshd.environment"]["details"][0].startswith("permituserenvironment is yes")
    # the same sshd config is fine for the PAM-path user (subsystem not checked there)
    status, report = doctor_json(capsys, wiring, wiring.pam_user, sshd_config=conf)
    assert status == 0, failures(report)


@pytest.mark.root
def test_unsafe_jail(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    etc = f"{wiring.pam_jail}/etc"
    os.chmod(etc, 0o777)
    try:
        status, report = doctor_json(capsys, wiring, wiring.pam_user)
    finally:
        os.chmod(etc, 0o755)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"jail"}, fail
    assert f"{etc}: writable by group or other (mode 0777)" in fail["jail"]["details"]
    assert "pam-jail check pamj" in fail["jail"]["fix"]


@pytest.mark.root
def test_unparsable_lsh_ini(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{wiring.shell_jail}/etc/pam_jail/lsh.ini"
    with open(path, "w") as fh:
        fh.write("[default]\nprograms = /usr/bin/rsync\numask = 99999\n[bogus]\n")
    try:
        status, report = doctor_json(capsys, wiring, wiring.shell_user)
    finally:
        with open(path, "w") as fh:
            fh.write(LSH)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"lsh"}, fail
    assert "pam-jail-shell refuses every login" in fail["lsh"]["message"]
    assert any("unknown section" in d for d in fail["lsh"]["details"]), fail["lsh"]
    assert f"pam-jail explain {wiring.shell_user}" in fail["lsh"]["fix"]


@pytest.mark.root
def test_lsh_ini_writable_by_others(wiring: Wiring,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{wiring.shell_jail}/etc/pam_jail/lsh.ini"
    os.chmod(path, 0o666)
    try:
        status, report = doctor_json(capsys, wiring, wiring.shell_user)
    finally:
        os.chmod(path, 0o644)
    assert status == 1
    assert {"lsh", "jail"} <= set(failures(report))


@pytest.mark.root
def test_wrong_login_shell_for_the_mode(wiring: Wiring,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["usermod", "-s", "/bin/sh", wiring.shell_user], check=True)
    try:
        status, report = doctor_json(capsys, wiring, wiring.shell_user)
    finally:
        subprocess.run(["usermod", "-s", SHELL_ENTRY, wiring.shell_user], check=True)
    assert status == 1
    fail = failures(report)
    assert set(fail) == {"user.shell"}, fail
    assert fail["user.shell"]["fix"].startswith(f"pam-jail jailuser {wiring.shell_user} -j ")
    assert "would run outside jail" in fail["user.shell"]["message"]


@pytest.mark.root
def test_config_not_root_only(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(wiring.config, 0o666)
    try:
        status, report = doctor_json(capsys, wiring, wiring.pam_user)
    finally:
        os.chmod(wiring.config, 0o644)
    assert status == 1
    assert list(failures(report)) == ["config"]
    assert "chmod go-w" in failures(report)["config"]["fix"]


# --------------------------------------------------------------------------- userns


@pytest.mark.root
def test_userns_disabled_is_reported() -> None:
    """In a user namespace whose max_user_namespaces is 0 (the host's value stays as it
    is), the real unshare fails and doctor says so with the sysctl fix."""
    code = ("import json; from pam_jail.admin.doctor import check_userns\n"
            "open('/proc/sys/user/max_user_namespaces', 'w').write('0')\n"
            "c = check_userns(0, 0); print(json.dumps([c.status, c.message, c.fix]))\n")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--", sys.executable,
                           "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    status, message, fix = json.loads(proc.stdout)
    assert status == "fail"
    assert "max_user_namespaces = 0" in message
    assert "sysctl -w user.max_user_namespaces" in fix
    assert doctor.check_userns().status == "ok"  # and on the host it works


# --------------------------------------------------------------------------- pure parts


def test_pam_parser_follows_includes_and_brackets(tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    with open(f"{base}/inner", "w") as fh:
        fh.write("session [success=1 default=ignore] pam_succeed_if.so user = x\n"
                 f"session required pam_python.so {PAM_MODULE} config=/x \\\n  extra\n")
    with open(f"{base}/outer", "w") as fh:
        fh.write("# comment\n-account optional pam_foo.so # trailing\n"
                 "session include inner\naccount substack inner\n@include inner\n")
    entries, problems = doctor.parse_pam_stack(f"{base}/outer")
    assert problems == []
    got = [(e.type, e.control, e.module, e.args) for e in entries]
    assert got == [
        ("account", "optional", "pam_foo.so", []),
        ("session", "[success=1 default=ignore]", "pam_succeed_if.so", ["user", "=", "x"]),
        ("session", "required", "pam_python.so", [PAM_MODULE, "config=/x", "extra"]),
        ("session", "[success=1 default=ignore]", "pam_succeed_if.so", ["user", "=", "x"]),
        ("session", "required", "pam_python.so", [PAM_MODULE, "config=/x", "extra"]),
    ]
    assert doctor.skips_over(entries[1], 1) and not doctor.skips_over(entries[1], 2)
    checks = doctor.judge_pam_stack(entries, f"{base}/outer", True, "/x")
    assert [c.status for c in checks] == ["fail", "fail"]  # no account line; jumped over


def test_pam_parser_include_loop_is_reported(tmp_path: os.PathLike[str]) -> None:
    path = f"{tmp_path}/loop"
    with open(path, "w") as fh:
        fh.write("@include loop\n")
    _entries, problems = doctor.parse_pam_stack(path)
    assert any("nested deeper" in p for p in problems)


def test_pam_stack_order_and_guard(tmp_path: os.PathLike[str]) -> None:
    """etc/pam.d/pam_jail's guard is not a jump over pam_jail; every session module after
    pam_jail's line runs inside the jail, and those known to fail there are a FAIL."""
    from jail_fixtures import pam_lines

    base = str(tmp_path)

    def judge(text: str) -> dict[str, tuple[str, str]]:
        with open(f"{base}/sshd", "w") as fh:
            fh.write(text)
        entries, problems = doctor.parse_pam_stack(f"{base}/sshd")
        assert problems == []
        return {c.name: (c.status, c.message)
                for c in doctor.judge_pam_stack(entries, f"{base}/sshd", True, "/x")}

    good = judge("account required pam_unix.so\n" + pam_lines("account")
                 + "session required pam_limits.so\n" + pam_lines("session"))
    assert good["pam.account"][0] == good["pam.session"][0] == "ok", good
    assert good["pam.order"][0] == "ok", good
    late = judge(pam_lines("account") + pam_lines("session")
                 + "session required pam_limits.so\nsession optional pam_motd.so\n")
    assert late["pam.order"][0] == "fail" and "pam_limits.so" in late["pam.order"][1], late
    harmless = judge(pam_lines("account") + pam_lines("session")
                     + "session optional pam_motd.so\n")
    assert harmless["pam.order"][0] == "warn", harmless
    # a guard that lets other shells skip pam_jail is a jump like any other
    loose = judge(pam_lines("account") + pam_lines("session").replace(
        "/pam-jail-lsh", "/pam-jail-lsh:/bin/bash"))
    assert loose["pam.session"][0] == "fail" and "can end the stack" in loose["pam.session"][1]


@pytest.mark.root
def test_pam_typos_and_an_unloadable_module(wiring: Wiring,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    broken = wiring.write("lib/pam_python.so", "not an ELF file\n")
    cases = {
        f"session requird pam_python.so {PAM_MODULE}\n": "is not a PAM control",
        f"session required pam_pyhton.so {PAM_MODULE}\n": "misspelt pam_python.so",
        "session required pam_python.so /usr/local/lib/pam_jail/pam_jail_pm.py\n":
            "misspelt pam_jail_pam.py",
        f"session required pam_permit.so {PAM_MODULE}\n": "but loads pam_permit.so",
    }
    for line, needle in cases.items():
        pam = wiring.write("pam.d/typo", "@include common-account\n"
                           f"account required pam_python.so {PAM_MODULE}\n" + line)
        status, report = doctor_json(capsys, wiring, wiring.pam_user, pam_file=pam)
        fail = failures(report)
        assert status == 1 and "pam.syntax" in fail, (line, fail)
        assert any(needle in d for d in fail["pam.syntax"]["details"]), (needle, fail)
    pam = wiring.write("pam.d/unloadable", "@include common-account\n"
                       f"account required {broken} {PAM_MODULE}\n"
                       f"session required {broken} {PAM_MODULE}\n")
    status, report = doctor_json(capsys, wiring, wiring.pam_user, pam_file=pam)
    fail = failures(report)
    assert status == 1 and "cannot be loaded" in fail["pam.module"]["message"], fail


@pytest.mark.root
def test_jail_without_dev_pts(wiring: Wiring, capsys: pytest.CaptureFixture[str]) -> None:
    os.rmdir(f"{wiring.pam_jail}/dev/pts")
    try:
        status, report = doctor_json(capsys, wiring, wiring.pam_user)
    finally:
        os.mkdir(f"{wiring.pam_jail}/dev/pts", 0o755)
    assert status == 1 and set(failures(report)) == {"jail.devpts"}, failures(report)


@pytest.mark.root
def test_text_output_keeps_every_detail_and_says_run_as_root(wiring: Wiring) -> None:
    os.chmod(f"{wiring.pam_jail}/etc", 0o777)
    os.chmod(f"{wiring.pam_jail}/bin", 0o777) if not os.path.islink(
        f"{wiring.pam_jail}/bin") else None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pam_jail.admin.cli", "doctor", "--pam-file", wiring.pam_file,
             "--sshd-config", wiring.sshd_config, "--config", wiring.config,
             "--pam-dir", f"{wiring.base}/pam.d", wiring.pam_user],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.chmod(f"{wiring.pam_jail}/etc", 0o755)
        if not os.path.islink(f"{wiring.pam_jail}/bin"):
            os.chmod(f"{wiring.pam_jail}/bin", 0o755)
    details = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("- ")]
    assert any("/etc: writable by group or other" in d for d in details), proc.stdout
    nobody = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-m", "pam_jail.admin.cli", "doctor", "--config", wiring.config],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert "doctor.root" in nobody.stdout and "run it as root" in nobody.stdout, nobody


@pytest.mark.root
def test_log_relay_for_pam_path_jails(wiring: Wiring,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Mode pam: without a running relay the jails' syslog lines are lost (a warning with
    the way to start it on hosts with and without systemd); with one, ok."""
    import time

    _status, report = doctor_json(capsys, wiring, wiring.pam_user)
    relay_check = by_name(report, "logrelay")[0]
    if relay_check["status"] == "warn":
        assert "update-rc.d pam-jail-logrelay" in relay_check["fix"]
    relay = subprocess.Popen([f"{os.path.dirname(SHELL_ENTRY)}/pam-jail", "logrelay",
                              "--foreground", "-c", wiring.config],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        _status, report = doctor_json(capsys, wiring, wiring.pam_user)
        assert by_name(report, "logrelay")[0]["status"] == "ok", report
    finally:
        relay.terminate()
        relay.wait(timeout=10)


# --------------------------------------------------------------------------- host services
# (pam_jail/admin/doctor_host.py: the account beyond the login, issue 18)

H = doctor_host
DIR, FILE, LINK = 0o040000, 0o100000, 0o120000
UID, GID = 2001, 2001


def fact(path: str, uid: int = 0, mode: int = DIR | 0o755, gid: int = 0,
         target: doctor_host.Fact | None = None) -> doctor_host.Fact:
    return H.Fact(path, uid, gid, mode, target)


def home_facts(home: str, real: doctor_host.Fact | None,
               files: tuple[doctor_host.Fact, ...] = (),
               chain: tuple[doctor_host.Fact, ...] | None = None,
               jail_home: doctor_host.Fact | None = None) -> doctor_host.HomeFacts:
    jail_home = jail_home or fact("/j/home/u", UID, DIR | 0o750, UID)
    above = chain if chain is not None else (fact("/"), fact("/j"),
                                             fact("/j/.home", mode=DIR | 0o711))
    return H.HomeFacts("u", UID, frozenset({GID, 100}), home, "/j", "/j/home/u", list(above),
                       real, jail_home, list(files))


def test_home_judge() -> None:
    """user.home: root's stub OK; the jail home, a user-owned or user-writable home or
    directory above it, a missing home the user can create, and per-user files not root's
    (or leading to what is not root's) FAIL with `pam-jail jailuser USER -j JAIL`."""
    stub = fact("/j/.home/u")
    ok = H.judge_home(home_facts("/j/./.home/u", stub,
                                 (fact("/j/.home/u/.forward", mode=FILE | 0o644),)))
    assert ok.status == "ok", ok
    legacy = H.judge_home(home_facts("/j/./home/u", fact("/j/home/u", UID, DIR | 0o750, UID),
                                     chain=(fact("/"), fact("/j"), fact("/j/home"))))
    assert legacy.status == "fail" and legacy.message.startswith("host services read files u")
    assert legacy.fix.startswith("pam-jail jailuser u -j /j ")
    assert any("inside /j/home/u" in d for d in legacy.details)
    assert any("owned by u" in d for d in legacy.details)
    cases = {
        "group-writable": home_facts("/h", fact("/h", mode=DIR | 0o775, gid=100)),
        "parent": home_facts("/p/h", fact("/p/h"), chain=(fact("/"), fact("/p", mode=DIR | 0o777))),
        "parent owned": home_facts("/p/h", fact("/p/h"), chain=(fact("/"), fact("/p", UID))),
        "missing": home_facts("/p/h", None, chain=(fact("/"), fact("/p", UID, DIR | 0o755))),
        "missing in /tmp": home_facts("/tmp/h", None,
                                      chain=(fact("/"), fact("/tmp", mode=DIR | 0o1777))),
        "file": home_facts("/h", fact("/h"), (fact("/h/.pam_environment", UID, FILE | 0o644),)),
        "qmail": home_facts("/h", fact("/h"), (fact("/h/.qmail-x", mode=FILE | 0o666),)),
        "link": home_facts("/h", fact("/h"), (fact("/h/.forward", mode=LINK | 0o777, target=fact(
            "/j/home/u/.forward", UID, FILE | 0o644)),)),
        "dangling": home_facts("/h", fact("/h"), (fact("/h/.procmailrc", mode=LINK | 0o777),)),
    }
    for what, facts in cases.items():
        check = H.judge_home(facts)
        assert check.status == "fail", (what, check)
    # sticky /tmp above an existing root-owned home is no reason
    tmp = H.judge_home(home_facts("/tmp/h", fact("/tmp/h"),
                                  chain=(fact("/"), fact("/tmp", mode=DIR | 0o1777))))
    assert tmp.status == "ok", tmp
    # a root-owned stub jail home is no "user-writable area"
    odd = H.judge_home(home_facts("/j/./.home/u", stub, jail_home=stub))
    assert odd.status == "ok", odd
    # every per-user file host services read is one constant
    assert H.home_file_names([".forward", ".bashrc", ".qmail", ".qmail-list", ".k5login",
                              ".ssh", ".mailfilter", ".rhosts", ".shosts", ".procmailrc",
                              ".pam_environment"]) == sorted(
        [".forward", ".qmail", ".qmail-list", ".k5login", ".mailfilter", ".rhosts",
         ".shosts", ".procmailrc", ".pam_environment"])


def test_shells_judge() -> None:
    ok = H.judge_shells("# /etc/shells\n/bin/sh\n/bin/bash\n")
    assert ok.status == "ok"
    bad = H.judge_shells("/bin/sh\n/usr/local/sbin/pam-jail-shell  # added\n/opt/x/pam-jail-lsh\n")
    assert bad.status == "fail" and "su -s /bin/bash USER" in bad.message and "chsh" in bad.message
    assert bad.fix.startswith("remove-shell /usr/local/sbin/pam-jail-shell; "
                              "remove-shell /opt/x/pam-jail-lsh")
    assert "vsftpd" in bad.fix and "pam_succeed_if" in bad.fix
    assert "RequireValidShell off" in bad.fix


def test_mta_judges() -> None:
    exim = H.mtas_from(["/usr/sbin/exim4"], None, "procmail:\n  driver = accept\n",
                       ["procmail"])
    assert len(exim) == 1 and exim[0].startswith("exim4 (") and "procmail router" in exim[0]
    pf = H.mtas_from(["/usr/sbin/postfix"], 'mailbox_command = procmail -a "$EXTENSION"\n',
                     None, ["procmail"])
    assert "mailbox_command procmail" in pf[0] and ".forward" in pf[0]
    # postfix told to run no commands from .forward, and no mailbox_command: harmless
    assert H.mtas_from(["/usr/sbin/postfix"], "allow_mail_to_commands = alias\n", None,
                       []) == []
    assert H.mtas_from([], None, None, ["procmail"]) == []
    assert H.judge_mta([], {"u": "/j"}).status == "ok"
    assert H.judge_mta(exim, {}).status == "ok"
    bad = H.judge_mta(exim, {"u": "/j"})
    assert bad.status == "fail" and bad.message.startswith("exim4") and "u" in bad.message
    assert bad.fix.startswith("pam-jail jailuser u -j /j")


def test_jobs_judge() -> None:
    missing = {"cron": False, "atd": False}
    bad = H.judge_jobs("u", True, ["/var/spool/cron/atjobs/a0001"], missing)
    assert bad.status == "fail" and "would run outside the jail" in bad.message
    assert "`pam-jail pam-setup`" in bad.fix and "crontab -r -u u" in bad.fix
    assert "atrm a0001" in bad.fix and len(bad.details) == 2
    assert H.judge_jobs("u", True, [], {"cron": True, "atd": False}).status == "ok"
    assert H.judge_jobs("u", True, [], {"cron": None}).status == "ok"    # no cron daemon
    assert H.judge_jobs("u", False, [], missing).status == "ok"


def test_service_stacks_and_pam_env(tmp_path: os.PathLike[str]) -> None:
    """pam.SERVICE follows su-l's `include su`; runuser needs no account line (it has no
    account rules); pam.env FAILs only while a passwd home is the user's."""
    base = str(tmp_path)

    def stack(name: str, text: str) -> str:
        with open(f"{base}/{name}", "w") as fh:
            fh.write(text)
        return f"{base}/{name}"

    su = stack("su", "auth sufficient pam_rootok.so\n" + SERVICE_STACK)
    sul = stack("su-l", "auth include su\naccount include su\nsession include su\n")
    runuser = stack("runuser", "auth sufficient pam_rootok.so\nsession required "
                    "pam_unix.so\n" + pam_lines("session"))
    cron = stack("cron", "session required pam_env.so user_readenv=1\n"
                 "@include common-account\n@include common-session-noninteractive\n")
    for path in (su, sul, runuser):
        entries, _ = doctor.parse_pam_stack(path)
        missing = H.stack_has_lines(entries, path, "/x")
        assert missing == [], (path, missing)
        assert H.judge_service(posixpath_base(path), path, missing).status == "ok"
    entries, _ = doctor.parse_pam_stack(cron)
    missing = H.stack_has_lines(entries, cron, "/x")
    assert len(missing) == 2
    bad = H.judge_service("cron", cron, missing)
    assert bad.status == "fail" and bad.name == "pam.cron"
    assert bad.fix.startswith("`pam-jail pam-setup`")
    env = H.judge_pam_env(entries + entries, {"u": "/j"})
    assert env[0].status == "fail" and env[0].details == [f"{cron}:1"]
    assert "pam-jail jailuser u -j /j" in env[0].fix
    harmless = H.judge_pam_env(entries, {})
    assert harmless[0].status == "ok" and "harmless" in harmless[0].message
    assert H.judge_pam_env([], {"u": "/j"})[0].status == "ok"


def posixpath_base(path: str) -> str:
    return os.path.basename(path)


@pytest.mark.root
def test_host_services_reach_a_jailed_account(wiring: Wiring,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The real command on real files: jailkit's home JAIL/./home/USER (the user's own),
    a crontab (real `crontab -u`) while cron's stack lacks the lines, pam_env
    user_readenv=1 in the stack, /etc/shells listing pam-jail-shell; then each put right."""
    user, jail = wiring.shell_user, wiring.shell_jail
    pw = pwd.getpwnam(user)
    inner = f"{jail}/home/{user}"
    os.makedirs(inner, exist_ok=True)
    os.chown(inner, pw.pw_uid, pw.pw_gid)
    shells = wiring.write("shells", f"/bin/sh\n{SHELL_ENTRY}\n")
    bare = f"{wiring.base}/pam.d-bare"
    os.makedirs(bare, exist_ok=True)
    for service in doctor_host.SERVICES:
        with open(f"{bare}/{service}", "w") as fh:
            fh.write("@include common-account\n@include common-session-noninteractive\n")
    with open(wiring.pam_file) as fh:
        stack_text = fh.read()
    env_stack = wiring.write("pam.d/sshd-env", "session required pam_env.so user_readenv=1\n"
                             + stack_text)
    crontab = wiring.write("crontab", "* * * * * /bin/true\n")
    subprocess.run(["usermod", "-d", f"{jail}/./home/{user}", user], check=True)
    subprocess.run(["crontab", "-u", user, crontab], check=True)
    try:
        status, report = doctor_json(capsys, wiring, user, pam_file=env_stack, pam_dir=bare,
                                     extra=("--shells-file", shells))
    finally:
        subprocess.run(["crontab", "-r", "-u", user], check=False)
        subprocess.run(["usermod", "-d", f"/home/{user}", user], check=True)
    fail = failures(report)
    assert status == 1
    assert {"shells", "user.home", "user.jobs", "pam.env", "pam.cron", "pam.su"} <= set(fail)
    assert fail["shells"]["fix"].startswith(f"remove-shell {SHELL_ENTRY}")
    assert fail["user.home"]["fix"].startswith(f"pam-jail jailuser {user} -j {jail}")
    assert "would run outside the jail" in fail["user.jobs"]["message"]
    assert f"crontab -r -u {user}" in fail["user.jobs"]["fix"]
    if doctor_host.gather_mtas():
        assert "mail" in fail and user in fail["mail"]["message"]
    # put right: root's home, the lines everywhere, /etc/shells without the shell
    status, report = doctor_json(capsys, wiring, user, pam_file=env_stack)
    fail = failures(report)
    assert not {"shells", "user.home", "user.jobs", "pam.env", "mail"} & set(fail), fail
    assert "harmless" in by_name(report, "pam.env")[0]["message"]
    assert by_name(report, "pam.su-l")[0]["status"] == "ok"
