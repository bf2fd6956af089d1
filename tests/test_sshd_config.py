"""pam_jail.admin.sshd_config: the generated Match blocks, as text (pure) and as sshd reads them
(`sshd -t`, `sshd -T -C`, and a real sftp-only login through the test harness sshd)."""

from __future__ import annotations

import argparse
import os
import shutil
import stat

import pytest
from sshd_harness import HARNESS_BASE, Sshd, unique_name

from pam_jail.admin import sshd_config
from pam_jail.login.config import Config, JailDef
from pam_jail.login.errors import ConfigError, UnsafeJail

RESTRICTION_LINES = [f"{k} {v}" for k, v in sshd_config.RESTRICTIONS] + [
    "AcceptEnv LANG LC_* GIT_PROTOCOL"]


def cfg_of(jails: list[JailDef], users: dict[str, str] | None = None,
           groups: dict[str, str] | None = None, default: str | None = None) -> Config:
    return Config(jails={j.name: j for j in jails}, users=users or {}, groups=groups or {},
                  default=default)


def no_problems(path: str) -> list[str]:
    return []


def gen(cfg: Config, **kw: object) -> str:
    kw.setdefault("check_path", no_problems)
    return sshd_config.generate(cfg, **kw)  # type: ignore[arg-type]


def squeeze(text: str) -> list[str]:
    """Lines with runs of blanks collapsed (the generator aligns values)."""
    return [" ".join(line.split()) for line in text.splitlines()]


def block_of(text: str, criteria: str) -> list[str]:
    """The setting lines of the Match block with exactly these criteria."""
    lines = squeeze(text)
    start = lines.index(f"Match {criteria}")
    out = []
    for line in lines[start + 1:]:
        if not line or line.startswith(("Match ", "#")):
            break
        out.append(line)
    return out


WEB = JailDef(name="web", root="/srv/jails/web", mode="pam")
SHELLJ = JailDef(name="sh", root="/srv/jails/sh", mode="shell")
SFTP = JailDef(name="drop", root="/srv/jails/drop", mode="sftp")


# ---- pure: the text


def test_user_block_has_every_restriction() -> None:
    """Mode pam: the restrictions, and ForceCommand pam-jail-lsh (a user mapped here whose
    login shell is another runs pam-jail-lsh on the host, where it refuses)."""
    from pam_jail.login.sshd_rules import lsh_entry_path

    text = gen(cfg_of([WEB], users={"bob": "web", "alice": "web"}))
    settings = block_of(text, "User alice,bob")
    assert settings[0] == f"ForceCommand {lsh_entry_path()}"
    assert settings[1:] == RESTRICTION_LINES
    assert not any(s.startswith("ChrootDirectory") for s in settings)
    assert text.startswith("# pam_jail: sshd Match blocks")


def test_sftp_block_chroots_and_forces_internal_sftp() -> None:
    text = gen(cfg_of([SFTP], users={"carol": "drop"}))
    settings = block_of(text, "User carol")
    assert settings[:3] == ["ChrootDirectory /srv/jails/drop",
                            "ForceCommand internal-sftp -d /home/%u", "PermitTTY no"]
    assert settings[3:] == RESTRICTION_LINES


def test_shell_block_forces_the_login_shell() -> None:
    """Mode shell: ForceCommand pam-jail-shell sends every request, a global
    internal-sftp subsystem included, through the login shell."""
    from pam_jail.login.sshd_rules import shell_entry_path

    text = gen(cfg_of([SHELLJ], users={"dave": "sh"}))
    assert "ForceCommand sends every" in text and "internal-sftp" in text
    settings = block_of(text, "User dave")
    assert settings[0] == f"ForceCommand {shell_entry_path()}"
    assert settings[1:] == RESTRICTION_LINES


def test_groups_and_default_exclude_earlier_claims() -> None:
    cfg = cfg_of([WEB, SFTP, SHELLJ], users={"alice": "web", "bob": "drop"},
                 groups={"zeta": "sh", "alpha": "drop"}, default="web")
    text = gen(cfg)
    matches = [line for line in squeeze(text) if line.startswith("Match ")]
    assert matches == [
        "Match User bob",
        "Match User alice",
        "Match Group alpha User *,!root,!alice,!bob",
        "Match Group zeta,!alpha User *,!root,!alice,!bob",
        "Match User *,!root,!alice,!bob Group *,!alpha,!zeta",
    ]
    assert "Match all" not in text
    # mode pam forces pam-jail-lsh on the users and groups jails.ini names, not on the
    # default (it names no one: an admin's own account keeps its shell)
    assert block_of(text, "User alice")[0].startswith("ForceCommand ")
    assert not block_of(text, "User *,!root,!alice,!bob Group *,!alpha,!zeta")[0].startswith(
        "ForceCommand")


@pytest.mark.parametrize("user,groups,jail", [
    ("alice", ["zeta"], "web"),      # per-user mapping wins over group
    ("eve", ["zeta", "alpha"], "drop"),  # groups by name: alpha before zeta
    ("eve", ["zeta"], "sh"),
    ("frank", ["users"], "web"),     # default
    ("root", ["root"], None),        # root is never matched
])
def test_match_jail_follows_block_order(user: str, groups: list[str], jail: str | None) -> None:
    cfg = cfg_of([WEB, SFTP, SHELLJ], users={"alice": "web"},
                 groups={"zeta": "sh", "alpha": "drop"}, default="web")
    assert sshd_config.match_jail(cfg, user, groups) == jail


def test_no_mapping_no_blocks() -> None:
    text = gen(cfg_of([WEB]))
    assert not [line for line in text.splitlines() if line.startswith("Match")]
    assert "nothing to restrict" in text


@pytest.mark.parametrize("bad", ["a*", "a?b", "!a", "a,b", "a b", "a\tb", "-x", "a\nMatch all",
                                 'a"b', "", "a@host"])
def test_pattern_names_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a plain name"):
        gen(cfg_of([WEB], users={bad: "web"}))
    with pytest.raises(ConfigError, match="not a plain name"):
        gen(cfg_of([WEB], groups={bad: "web"}))


def test_plain_names_accepted() -> None:
    text = gen(cfg_of([WEB], users={"a.b-c_d": "web", "host$": "web"}))
    assert "Match User a.b-c_d,host$" in squeeze(text)


def test_root_user_refused() -> None:
    with pytest.raises(ConfigError, match="root"):
        gen(cfg_of([WEB], users={"root": "web"}))


@pytest.mark.parametrize("root", ["/srv/a b", "/srv/a\nMatch all", '/srv/"q"', "relative", "/"])
def test_unwritable_roots_refused(root: str) -> None:
    jail = JailDef(name="x", root=root, mode="sftp")
    with pytest.raises(ConfigError, match="ChrootDirectory"):
        gen(cfg_of([jail], users={"u": "x"}))


def test_percent_in_root_is_escaped() -> None:
    jail = JailDef(name="p", root="/srv/100%", mode="sftp")
    assert "ChrootDirectory /srv/100%%" in squeeze(gen(cfg_of([jail], users={"u": "p"})))


def test_unsafe_sftp_root_refused_unless_forced() -> None:
    def unsafe(path: str) -> list[str]:
        return [f"{path}: owned by uid 1000, not root"]

    cfg = cfg_of([SFTP, WEB], users={"carol": "drop", "alice": "web"})
    with pytest.raises(UnsafeJail) as info:
        sshd_config.generate(cfg, check_path=unsafe)
    assert info.value.problems == ["jail drop: /srv/jails/drop: owned by uid 1000, not root"]
    text = sshd_config.generate(cfg, check_path=unsafe, force=True)
    assert "# WARNING (--force): jail drop: /srv/jails/drop: owned by uid 1000" in text
    # only sftp jails are held to sshd's ChrootDirectory rule
    sshd_config.generate(cfg_of([WEB], users={"alice": "web"}), check_path=unsafe)


def test_compare_effective() -> None:
    good = {k.lower(): [v] for k, v in sshd_config.RESTRICTIONS}
    good["permituserenvironment"] = ["no"]
    good["acceptenv"] = ["LANG", "LC_*"]
    assert sshd_config.compare_effective(WEB, good) == []
    # settings that are global-only in sshd, checked as effective values too
    user_env = dict(good, permituserenvironment=["yes"])
    assert sshd_config.compare_effective(WEB, user_env) == [
        "permituserenvironment is yes, must be no"]
    for accept in (["LD_*"], ["*"], ["LANG LD_PRELOAD"], ["L?_PRELOAD"], ["BASH_ENV"]):
        problems = sshd_config.compare_effective(WEB, dict(good, acceptenv=accept))
        assert len(problems) == 1 and problems[0].startswith("acceptenv lets the client set")
    assert sshd_config.compare_effective(WEB, dict(good, acceptenv=["LC_*", "XMODIFIERS"])) == []
    bad = dict(good, disableforwarding=["no"])
    assert sshd_config.compare_effective(WEB, bad) == ["disableforwarding is no, must be yes"]
    sftp_missing = sshd_config.compare_effective(SFTP, good)
    assert "chrootdirectory is (unset), must be /srv/jails/drop" in sftp_missing
    internal = dict(good, subsystem=["sftp internal-sftp"])
    assert "internal-sftp" in sshd_config.compare_effective(SHELLJ, internal)[0]
    assert sshd_config.compare_effective(WEB, internal) == []


def test_help_is_complete() -> None:
    parser = argparse.ArgumentParser(prog="pam-jail")
    sub = parser.add_subparsers()
    sshd_config.register(sub)
    help_text = sub.choices["sshd-config"].format_help()
    for needle in ("--check", "--output", "--force", "first value read", "internal-sftp",
                   "exit status", "sshd_config.d/pam_jail.conf"):
        assert needle in help_text


def test_write_atomic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "pam_jail.conf"
    target.write_text("old\n")
    sshd_config.write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["pam_jail.conf"]


# ---- real sshd: -t, -T, and an sftp-only login


def _snippet(sshd: Sshd, cfg: Config, **kw: object) -> str:
    path = os.path.join(sshd.dir, "pam_jail.conf")
    os.makedirs(sshd.dir, mode=0o700, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(sshd_config.generate(cfg, **kw))  # type: ignore[arg-type]
    return path


@pytest.fixture
def jail_root():  # type: ignore[no-untyped-def]
    """A root-owned 0755 directory under /var/lib/pam_jail-test (not /tmp: sshd's rule)."""
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    path = os.path.join(HARNESS_BASE, unique_name("jail-"))
    os.makedirs(path, mode=0o755)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.root
@pytest.mark.e2e
def test_sshd_accepts_snippet_and_applies_it(sshd_factory, user_factory, group_factory,  # type: ignore[no-untyped-def]
                                             jail_root) -> None:
    grp_name = group_factory()
    mapped = user_factory()
    member = user_factory(groups=[grp_name])
    other = user_factory()
    drop = JailDef(name="drop", root=jail_root, mode="sftp")
    cfg = cfg_of([WEB, drop], users={mapped.name: "drop"}, groups={grp_name: "web"})
    sshd = sshd_factory(start=False)
    snippet = _snippet(sshd, cfg)
    sshd.extra_config = f"Include {snippet}\n"
    proc = sshd.test_config("-t")
    assert proc.returncode == 0, proc.stderr

    eff = sshd.effective(mapped.name)
    assert eff["disableforwarding"] == ["yes"]
    assert eff["permituserrc"] == ["no"]
    assert eff["chrootdirectory"] == [jail_root]
    assert eff["forcecommand"] == ["internal-sftp -d /home/%u"]
    assert sshd_config.compare_effective(drop, eff) == []

    eff = sshd.effective(member.name)   # via Match Group: restricted, no chroot
    assert sshd_config.compare_effective(WEB, eff) == []
    assert eff["chrootdirectory"] == ["none"]

    eff = sshd.effective(other.name)    # unmapped: sshd defaults
    assert eff["disableforwarding"] == ["no"]
    assert eff["permituserrc"] == ["yes"]
    assert eff["chrootdirectory"] == ["none"]
    assert eff["allowtcpforwarding"] == ["yes"]


@pytest.mark.root
@pytest.mark.e2e
def test_group_order_and_default_with_real_users(sshd_factory, user_factory,  # type: ignore[no-untyped-def]
                                                 group_factory, jail_root) -> None:
    """sshd applies exactly one block per user: user > groups by name > default; the
    default block never matches root."""
    g_a, g_b = sorted([group_factory(), group_factory()])
    both = user_factory(groups=[g_a, g_b])
    only_b = user_factory(groups=[g_b])
    listed = user_factory(groups=[g_a])
    anyone = user_factory()
    drop = JailDef(name="drop", root=jail_root, mode="sftp")
    cfg = cfg_of([WEB, drop, SHELLJ], users={listed.name: "sh"},
                 groups={g_a: "drop", g_b: "web"}, default="sh")
    sshd = sshd_factory(start=False)
    sshd.extra_config = f"Include {_snippet(sshd, cfg)}\n"
    assert sshd.test_config("-t").returncode == 0
    for user, jail in ((both, drop), (only_b, WEB), (listed, SHELLJ), (anyone, SHELLJ)):
        eff = sshd.effective(user.name)
        assert sshd_config.compare_effective(jail, eff) == [], user
        want_chroot = jail.root if jail.mode == "sftp" else "none"
        assert eff["chrootdirectory"] == [want_chroot], user
        assert sshd_config.match_jail(cfg, user.name, [user.name, *(
            [g_a, g_b] if user is both else [g_b] if user is only_b else
            [g_a] if user is listed else [])]) == jail.name
    eff = sshd.effective("root")
    assert eff["disableforwarding"] == ["no"]
    assert eff["permituserrc"] == ["yes"]


@pytest.mark.root
@pytest.mark.e2e
def test_cli_check_reports_override(user_factory, jail_root, capsys) -> None:  # type: ignore[no-untyped-def]
    """--check builds a full config (snippet first), runs sshd -t and -T: passes for a
    plain system config, fails when an earlier setting defeats the snippet."""
    user = user_factory()
    ini = os.path.join(jail_root, "jails.ini")
    with open(ini, "w") as fh:
        fh.write(f"[jails]\n[[web]]\nroot = {jail_root}\nmode = pam\n[users]\n{user.name} = web\n")
    os.chmod(ini, 0o644)
    out = os.path.join(jail_root, "pam_jail.conf")
    system = os.path.join(jail_root, "sshd_config")
    with open(system, "w") as fh:
        fh.write("UsePAM yes\nX11Forwarding yes\nSubsystem sftp /usr/lib/openssh/sftp-server\n")

    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="pam-jail")
        sshd_config.register(parser.add_subparsers())
        args = parser.parse_args(["sshd-config", "-c", ini, *argv])
        status: int = args.func(args)
        return status

    assert run("-o", out, "--check", "--sshd-config", system) == 0
    with open(out) as fh:
        assert f"Match User {user.name}" in fh.read()
    assert "sshd accepts the snippet" in capsys.readouterr().err

    # an earlier Match block wins over the snippet (first value among matching blocks)
    overriding = os.path.join(jail_root, "override.conf")
    with open(overriding, "w") as fh:
        fh.write(f"DisableForwarding no\nInclude {out}\n")
    problems = sshd_config.check_with_sshd(
        cfg_of([JailDef("web", jail_root)], users={user.name: "web"}), overriding,
        system_config=system)
    assert problems == [], "a global line does not beat a Match block"
    with open(overriding, "w") as fh:
        fh.write(f"Match User {user.name}\n    DisableForwarding no\nMatch all\n"
                 f"Include {out}\n")
    problems = sshd_config.check_with_sshd(
        cfg_of([JailDef("web", jail_root)], users={user.name: "web"}), overriding,
        system_config=system)
    assert f"user {user.name}: disableforwarding is no, must be yes" in problems


@pytest.mark.root
@pytest.mark.e2e
def test_sftp_jail_end_to_end(sshd_factory, user_factory, jail_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A mode=sftp user through a real sshd with the generated block: sftp works inside
    the chroot, nothing of the host is visible, no command, no forwarding."""
    user = user_factory(home="/upload", create_home=False)
    upload = os.path.join(jail_root, "upload")
    os.mkdir(upload, 0o755)
    os.chown(upload, user.uid, user.gid)
    with open(os.path.join(jail_root, "README"), "w") as fh:
        fh.write("jail\n")
    drop = JailDef(name="drop", root=jail_root, mode="sftp")
    cfg = cfg_of([drop], users={user.name: "drop"})
    sshd = sshd_factory(start=False)
    sshd.extra_config = f"Include {_snippet(sshd, cfg)}\n"
    sshd.start()

    (tmp_path / "in.txt").write_text("into the jail\n")
    proc = sshd.sftp_batch(user, f"pwd\nput {tmp_path}/in.txt in.txt\n"
                                 f"get in.txt {tmp_path}/out.txt\nls -1 /\n")
    assert proc.returncode == 0, proc.stderr + sshd.log_text()
    assert "Remote working directory: /upload" in proc.stdout
    assert (tmp_path / "out.txt").read_text() == "into the jail\n"
    with open(os.path.join(upload, "in.txt")) as fh:
        assert fh.read() == "into the jail\n"
    listing = proc.stdout.split("ls -1 /", 1)[1].split()
    assert sorted(listing) == ["/README", "/upload"]
    # the host is not reachable by path
    proc = sshd.sftp_batch(user, "get /etc/passwd /dev/null\n")
    assert proc.returncode != 0
    proc = sshd.sftp_batch(user, "cd /..\nls -1\n")
    assert "/etc" not in proc.stdout and "/usr" not in proc.stdout
    # no command: ForceCommand internal-sftp replaces it
    marker = os.path.join(jail_root, "upload", "ran")
    proc = sshd.ssh(user, "id", ";", "touch", "/upload/ran")
    assert "uid=" not in proc.stdout
    assert proc.stdout == "This service allows sftp connections only.\n"
    assert proc.returncode == 1
    assert sshd.ssh(user, "id", tty=True).returncode == 255   # PermitTTY no
    assert not os.path.exists(marker)
    assert sshd.wait_for_log("Starting session: forced-command (config) 'internal-sftp -d "
                             f"/home/%u' for {user.name}")
    # the jailed root is not writable by the user, upload is
    proc = sshd.sftp_batch(user, f"put {tmp_path}/in.txt /evil.txt\n")
    assert proc.returncode != 0
    assert not os.path.exists(os.path.join(jail_root, "evil.txt"))
    # no forwarding of any kind
    for attempt in (sshd.try_forward_w, sshd.try_forward_l, sshd.try_forward_d):
        result = attempt(user)
        assert not result.data_through, (attempt.__name__, result)
        assert result.target_received == b""
    assert sshd.wait_for_log("refused local port forward")
