"""The limited shell's decisions (pam_jail.login.policy): pure, no root, no files.

The "real" commands below are what the clients on Debian 12 sent through a fake ssh
(`rsync -e ./fake.sh`, `scp -O -S ./fake.sh`, `GIT_SSH=./fake.sh git clone`): rsync
3.5.0 (protocol 32), OpenSSH 9.2p1 scp, git 2.39.5.
"""

from __future__ import annotations

import posixpath
import re
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pam_jail.login.errors import ConfigError, Denied
from pam_jail.login.policy import (
    MISSING,
    RULES,
    Decision,
    FileFacts,
    LshConfig,
    PathFacts,
    Policy,
    Refused,
    decide,
    parse_lsh,
    select_policy,
    split_command,
)

HOME = "/home/alice"
USER = "alice"

CONFIG = """\
[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/scp, /usr/bin/rsync
pass_env = LANG, LC_*, TERM

[group:dev]
programs = /usr/bin/git-upload-pack, /usr/bin/git-receive-pack, \
/usr/bin/git-upload-archive, /usr/bin/git, /usr/bin/cvs, /usr/bin/svnserve
paths = %h, /srv/git
pass_env = GIT_PROTOCOL

[group:ops]
programs = /usr/bin/scp

[user:alice]
programs = /usr/lib/openssh/sftp-server, /usr/bin/scp, /usr/bin/rsync, \
/usr/bin/git-upload-pack, /usr/bin/git-receive-pack, /usr/bin/git-upload-archive, \
/usr/bin/cvs, /usr/bin/svnserve, /usr/bin/id, /usr/local/bin/anything
paths = %h, /srv/shared/%u, /srv/git
umask = 0027
env = LC_COLLATE=C, "GREETING=hello, world"
pass_env = LANG, LC_*, TERM, GIT_PROTOCOL
  [[rules]]
  /usr/bin/id = none
  /usr/local/bin/anything = any
"""
# configobj joins no lines: the backslashes above are Python's, not the file's.

ENV_FROM_SSHD = {
    "LANG": "C.UTF-8",
    "LC_ALL": "en_US.UTF-8",
    "TERM": "xterm-256color",
    "LD_PRELOAD": "/home/alice/evil.so",
    "LD_LIBRARY_PATH": "/home/alice",
    "BASH_ENV": "/home/alice/x",
    "ENV": "/home/alice/x",
    "PATH": "/home/alice/bin:/usr/bin",
    "IFS": "/",
    "HOME": "/",
    "SHELL": "/bin/sh",
    "SSH_ORIGINAL_COMMAND": "id",
    "GIT_PROTOCOL": "version=2",
    "GIT_EXEC_PATH": "/home/alice",
    "PYTHONPATH": "/home/alice",
    "GLIBC_TUNABLES": "x",
}


@pytest.fixture(scope="module")
def cfg() -> LshConfig:
    return parse_lsh(CONFIG, "test.ini")


@pytest.fixture(scope="module")
def alice(cfg: LshConfig) -> Policy:
    return select_policy(cfg, USER, ["alice", "dev"])


# --------------------------------------------------------------- file facts (fakes)

ROOT_DIR = PathFacts("dir", mode=0o755)        # root's (in mode shell: 65534's)
ROOT_FILE = PathFacts("file", mode=0o644)
STICKY = PathFacts("dir", writable=True, mode=0o1777)
USER_DIR = PathFacts("dir", owned=True, writable=True, mode=0o755)
USER_FILE = PathFacts("file", owned=True, writable=True, mode=0o644)
GROUP_DIR = PathFacts("dir", writable=True, mode=0o2775)   # a group the user is in
GROUP_FILE = PathFacts("file", writable=True, mode=0o664)
LINK = PathFacts("link", mode=0o777)


class FakeFS(FileFacts):
    """A jail's file system as a dict: path -> PathFacts; parents are root's unless
    given (the user's home is the user's)."""

    def __init__(self, paths: dict[str, PathFacts] | None = None) -> None:
        self.paths: dict[str, PathFacts] = {"/": ROOT_DIR}
        self.add(HOME, USER_DIR)
        for path, facts in (paths or {}).items():
            self.add(path, facts)
        self.asked: list[str] = []

    def add(self, path: str, facts: PathFacts) -> FakeFS:
        parent = posixpath.dirname(path)
        while parent not in self.paths:
            self.paths[parent] = ROOT_DIR
            parent = posixpath.dirname(parent)
        self.paths[path] = facts
        return self

    def git(self, path: str, top: PathFacts = ROOT_DIR, config: PathFacts = ROOT_FILE,
            hooks: PathFacts = ROOT_DIR) -> FakeFS:
        self.add(path, top)
        for name, facts in (("objects", GROUP_DIR), ("refs", GROUP_DIR), ("HEAD", ROOT_FILE),
                            ("config", config), ("hooks", hooks)):
            self.add(f"{path}/{name}", facts)
        return self

    def stat(self, path: str) -> PathFacts:
        self.asked.append(path)
        return self.paths.get(path, MISSING)

    def entries(self, path: str) -> tuple[str, ...]:
        prefix = path.rstrip("/") + "/"
        return tuple(sorted(p[len(prefix):] for p in self.paths
                            if p.startswith(prefix) and "/" not in p[len(prefix):]))


def jail_fs() -> FakeFS:
    """alice's jail: shared repositories kept by root, alice's own repository in her home."""
    fs = FakeFS({"/tmp": STICKY, "/srv/shared/alice": USER_DIR})
    fs.git("/srv/git/x.git").git("/srv/git/tmpl.git")
    fs.git("/srv/shared/alice/x.git").git(HOME + "/own.git", USER_DIR, USER_FILE, USER_DIR)
    fs.add("/srv/shared/alice/x.git", ROOT_DIR)
    return fs


class AnyRepo(FileFacts):
    """For the property tests: the first path git asks about (PATH/.git) makes PATH a
    repository kept by root; everything else is root's directory or missing."""

    def __init__(self) -> None:
        self.repo: str | None = None
        self.first = True

    def stat(self, path: str) -> PathFacts:
        if self.first and path.endswith("/.git"):
            self.repo = path[:-5]
        self.first = False
        repo = self.repo
        if repo is None:  # cvs, svnserve: the allowed directories are root's repositories
            files = {"format", "db", "hooks", "conf", "loginfo", "commitinfo", "config",
                     "modules", "verifymsg", "taginfo", "rcsinfo", "notify", "editinfo",
                     "checkoutlist", "cvswrappers", "postadmin", "postproxy", "posttag",
                     "postwatch", "preproxy"}
            inside = posixpath.dirname(path) != "/home/alice"   # a repository named "db"...
            return MISSING if inside and posixpath.basename(path) in files else ROOT_DIR
        if path == repo or repo.startswith(path.rstrip("/") + "/"):
            return ROOT_DIR
        if path in (repo + "/objects", repo + "/refs"):
            return ROOT_DIR
        if path == repo + "/HEAD":
            return ROOT_FILE
        return MISSING

    def entries(self, path: str) -> tuple[str, ...]:
        return ()


def run(policy: Policy, command: str | None, env: dict[str, str] | None = None,
        facts: FileFacts | None = None) -> Decision:
    return decide(policy, command, user=USER, home=HOME, client_env=env or {},
                  facts=facts if facts is not None else jail_fs())


# ----------------------------------------------------------------- allowed, real argv

REAL_ALLOWED = [
    # sftp subsystem
    ("/usr/lib/openssh/sftp-server", "/usr/lib/openssh/sftp-server"),
    ("/usr/lib/openssh/sftp-server -e -l VERBOSE -f AUTHPRIV -u 022 -R",
     "/usr/lib/openssh/sftp-server"),
    ("/usr/lib/openssh/sftp-server -lINFO -d uploads -p open,close,read,stat",
     "/usr/lib/openssh/sftp-server"),
    ("/usr/lib/openssh/sftp-server -el DEBUG3", "/usr/lib/openssh/sftp-server"),
    # scp -O (legacy protocol)
    ("scp -t up.txt", "/usr/bin/scp"),
    ("scp -d -t dir/", "/usr/bin/scp"),
    ("scp -r -p -t dir/", "/usr/bin/scp"),
    ("scp -v -t .", "/usr/bin/scp"),
    ("scp -f src.txt", "/usr/bin/scp"),
    ("scp -r -p -f src dir", "/usr/bin/scp"),
    ("scp -f *.txt", "/usr/bin/scp"),
    ("scp -t $(id)", "/usr/bin/scp"),  # a file literally named "$(id)"
    ("scp -rpt -- dir", "/usr/bin/scp"),
    ("/usr/bin/scp -f /home/alice/a", "/usr/bin/scp"),
    ("scp -t /srv/shared/alice/x", "/usr/bin/scp"),
    # rsync --server (what rsync 3.5.0 sent)
    ("rsync --server -e.LsfxCIvu . dest/", "/usr/bin/rsync"),
    ("rsync --server --sender -e.LsfxCIvu . src/file", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu . dest/", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtprze.iLsfxCIvu --delete . dest/", "/usr/bin/rsync"),
    ("rsync --server -lHogDtpAXre.iLsfxCIvu --log-format=X --partial . dest/",
     "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --temp-dir tmp . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --partial-dir .p . dest/", "/usr/bin/rsync"),
    ("rsync --server -vblogDtpre.iLsfxCIvu --backup-dir bak . dest/", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/a\\ b", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/a src/b", "/usr/bin/rsync"),
    ("rsync --server -vnlogDtprce.iLsfxCIvu --timeout=10 --bwlimit=100 . dest/",
     "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --iconv=utf8 . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --checksum-choice=xxh64 "
     "--compress-choice=zstd . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --min-size=1 --max-size=1048576 "
     "--modify-window=1 . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --delete-excluded --usermap=\\*:a "
     "--groupmap=\\*:b . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlyogDtpre.iLsfxCIvu -B1024 --checksum-seed=5 . dest/",
     "/usr/bin/rsync"),
    ("rsync --server -ltre.iLsfxCIvu --compress-level=3 --compress-choice=zstd . dest/",
     "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu --list-only . dest/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --stats . dest\\ dir/", "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu . dest\\$\\(id\\)/", "/usr/bin/rsync"),
    ("rsync --server --sender -de.LsfxCIvu . .", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . ./-dash", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . a\\\"b c\\'d", "/usr/bin/rsync"),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . x\\#y", "/usr/bin/rsync"),
    ("rsync --server -lHDtprSze.iLsfxCIvu --compress-level=9 --old-compress . dest/",
     "/usr/bin/rsync"),
    ("rsync --server -vlogDtpre.iLsfxCIvu --mkpath . a/b/c/", "/usr/bin/rsync"),
    ("rsync --server -e .LsfxCIvu . dest/", "/usr/bin/rsync"),  # value as next argument
    # rsync --files-from: the list over the protocol (rsync -a --files-from=LOCAL h:src/),
    # or a list file on the server (--files-from=h:/list)
    ("rsync --server --sender -logDtpRe.LsfxCIvu --files-from=- --from0 . src/",
     "/usr/bin/rsync"),
    ("rsync --server --sender -logDtpRe.LsfxCIvu --files-from /home/alice/list . src/",
     "/usr/bin/rsync"),
    ("rsync --server --sender -logDtpRe.LsfxCIvu --files-from=list --from0 . src/",
     "/usr/bin/rsync"),
    # none / any
    ("id", "/usr/bin/id"),
    ("/usr/local/bin/anything -c 'whatever ; you | like' ../..", "/usr/local/bin/anything"),
]


# What the rules rewrite: a leading ~/ (no shell on this side expands it), the
# repository git is given (resolved as git resolves it, absolute).
A = "/home/alice"
REWRITTEN = [
    ("rsync --server -vlogDtpre.iLsfxCIvu . ~/dest/",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", ".", f"{A}/dest/")),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . ~",
     ("/usr/bin/rsync", "--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", A)),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . ~/a ~/b",
     ("/usr/bin/rsync", "--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", f"{A}/a",
      f"{A}/b")),
    ("rsync --server --sender -logDtpRe.LsfxCIvu --files-from=~/l --from0 . ~/s/",
     ("/usr/bin/rsync", "--server", "--sender", "-logDtpRe.LsfxCIvu", f"--files-from={A}/l",
      "--from0", ".", f"{A}/s/")),
    ("rsync --server --sender -logDtpRe.LsfxCIvu --files-from ~/l . s/",
     ("/usr/bin/rsync", "--server", "--sender", "-logDtpRe.LsfxCIvu", "--files-from",
      f"{A}/l", ".", "s/")),
    # path-valued options: `~` expanded like the operands (issue 20.4); a relative
    # --link-dest/--compare-dest/--copy-dest resolved against the destination, sent absolute
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=~/snap/s1 . ~/snap/s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", f"--link-dest={A}/snap/s1", ".",
      f"{A}/snap/s2")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest ~/snap/s1 . snap/s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", "--link-dest", f"{A}/snap/s1",
      ".", "snap/s2")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest ../s1 . snap/s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", "--link-dest", f"{A}/snap/s1",
      ".", "snap/s2")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../s1 . ~/snap/s2/",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", f"--link-dest={A}/snap/s1", ".",
      f"{A}/snap/s2/")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../../snap/s1 --compare-dest=old "
     "--copy-dest=../s0 . /srv/shared/alice/b/s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu",
      "--link-dest=/srv/shared/alice/snap/s1", "--compare-dest=/srv/shared/alice/b/s2/old",
      "--copy-dest=/srv/shared/alice/b/s0", ".", "/srv/shared/alice/b/s2")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../.. . snap/s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu", f"--link-dest={A}", ".",
      "snap/s2")),
    ("rsync --server -vlogDtpre.iLsfxCIvu --link-dest=/srv/shared/alice/s1 . s2",
     ("/usr/bin/rsync", "--server", "-vlogDtpre.iLsfxCIvu",
      "--link-dest=/srv/shared/alice/s1", ".", "s2")),
    ("rsync --server -vblogDtpre.iLsfxCIvu --backup-dir=~/bak --partial-dir ~/.p "
     "--temp-dir=~ . d",
     ("/usr/bin/rsync", "--server", "-vblogDtpre.iLsfxCIvu", f"--backup-dir={A}/bak",
      "--partial-dir", f"{A}/.p", f"--temp-dir={A}", ".", "d")),
    ("rsync --server -vblogDtpre.iLsfxCIvu --suffix=.bak --copy-dest x . dest/",
     ("/usr/bin/rsync", "--server", "-vblogDtpre.iLsfxCIvu", "--suffix=.bak", "--copy-dest",
      f"{A}/dest/x", ".", "dest/")),
    ("scp -f ~/a.txt", ("/usr/bin/scp", "-f", f"{A}/a.txt")),
    ("scp -t ~", ("/usr/bin/scp", "-t", A)),
    ("scp -r -f ~/d ~/e", ("/usr/bin/scp", "-r", "-f", f"{A}/d", f"{A}/e")),
    ("git-upload-pack '/srv/git/x.git'", ("/usr/bin/git-upload-pack", "/srv/git/x.git")),
    ("git-upload-pack '/srv/git/x'", ("/usr/bin/git-upload-pack", "/srv/git/x.git")),
    ("git-upload-pack '/srv/git/x.git/'", ("/usr/bin/git-upload-pack", "/srv/git/x.git")),
    ("git-receive-pack '/srv/git/tmpl.git'", ("/usr/bin/git-receive-pack", "/srv/git/tmpl.git")),
    ("git-upload-archive '/srv/git/x.git'", ("/usr/bin/git-upload-archive", "/srv/git/x.git")),
]


@pytest.mark.parametrize(("command", "argv"), REWRITTEN)
def test_rewritten_forms(alice: Policy, command: str, argv: tuple[str, ...]) -> None:
    d = run(alice, command)
    assert d.allowed, d.reason
    assert d.argv == argv


@pytest.mark.parametrize(("command", "program"), REAL_ALLOWED)
def test_real_client_commands_are_allowed_unchanged(
    alice: Policy, command: str, program: str
) -> None:
    d = run(alice, command)
    assert d.allowed, d.reason
    assert d.argv[0] == program
    assert d.argv[1:] == tuple(split_command(command)[1:])
    assert not d.interactive
    assert d.umask == 0o027
    assert d.rule.startswith(f"program {program}: ")


def test_rule_names_in_decision(alice: Policy) -> None:
    assert run(alice, "rsync --server -e.LsfxCIvu . x").rule == (
        "program /usr/bin/rsync: rsync --server rule"
    )
    assert run(alice, "/bin/sh").rule == "no rule for /bin/sh"
    assert run(alice, "sh -c id").rule == "no rule for sh"


# ------------------------------------------------------------------------ bypasses

BYPASSES = [
    # rsync: a remote shell, a remote rsync path, a daemon, batch/log files, lists
    "rsync -e sh",
    "rsync -e 'sh -c id' . x",
    "rsync --rsh=sh . x",
    "rsync --rsh sh . x",
    "rsync --server -e 'sh -c id' . x",
    "rsync --server -e sh . x",
    "rsync --server -vlogDtpre . x",  # -e with an empty tail takes the next argument
    "rsync --server -vlogDtpre 'sh -c id' . x",
    "rsync --server -vlogDtpre.i;id . x",
    "rsync --server -vS prog . x",
    "rsync --server -6e prog . x",
    "rsync --server --rsh=sh . x",
    "rsync --server --rsh sh . x",
    "rsync --server --rsync-path=/bin/sh . x",
    "rsync --server --daemon .",
    "rsync --server --config=/home/alice/rsyncd.conf --daemon .",
    "rsync --server --write-batch=b . x",
    "rsync --server --read-batch=b . x",
    "rsync --server --only-write-batch=b . x",
    "rsync --server --log-file=/home/alice/log . x",
    "rsync --server --log-file /home/alice/log . x",
    "rsync --server --log-file-format=%i . x",
    "rsync --server --files-from=/etc/shadow . x",
    "rsync --server --files-from /list . x",
    "rsync --server --exclude-from=/etc/shadow . x",
    "rsync --server --include-from=/etc/shadow . x",
    "rsync --server -M--rsh=sh . x",
    "rsync --server --remote-option=--rsh=sh . x",
    "rsync --server -svlogDtpre.iLsfxCIvu",  # protect-args: real args come unchecked
    "rsync --server --protect-args . x",
    "rsync --server --secluded-args . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --temp-dir /tmp . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --temp-dir=/tmp . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --partial-dir=/etc . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --backup-dir=../../etc . x",
    # relative --link-dest/--compare-dest/--copy-dest: against the destination
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../../../etc . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest ../.. . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --compare-dest=../../bob . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --copy-dest=../../../../../etc . snap/s2",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../s1 .",       # dest: the home
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=../../etc . /srv/git/x.git",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=/etc . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=/home/alice/../bob . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=~bob/s1 . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=~/../bob . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest=-x . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --link-dest= . x",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu --link-dest=../s1 . x",  # no destination
    # the other path options: `~` expanded, then checked like an operand
    "rsync --server -vlogDtpre.iLsfxCIvu --backup-dir=~/../../etc . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --temp-dir=~root/t . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --partial-dir ~/../bob . x",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu --files-from=~/../bob/l --from0 . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --temp-dir ~ . /etc",
    "rsync --server -vlogDtpre.iLsfxCIvu --suffix=/../../x . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --write-devices . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --copy-devices . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --chmod=777 . x",
    "rsync --server -vlogDtpre.iLsfxCIvu --timeout --rsh=sh . x",
    "rsync --server -vlogDtpre.iLsfxCIvu . x --rsh=sh",  # popt permutes
    "rsync --server -vlogDtpre.iLsfxCIvu . -- -x",
    "rsync --server -vlogDtpre.iLsfxCIvu -- . x",
    "rsync --server -vlogDtpre.iLsfxCIvu /etc x",  # first operand is a chdir target
    "rsync --server -vlogDtpre.iLsfxCIvu . /etc",
    "rsync --server -vlogDtpre.iLsfxCIvu . ../x",
    "rsync --server -vlogDtpre.iLsfxCIvu . a/../../x",
    "rsync --server -vlogDtpre.iLsfxCIvu . x y",  # an upload has one destination
    "rsync --server --sender -vlogDtpre.iLsfxCIvu . /etc/shadow",
    "rsync --server --server --rsh=sh . x",
    "rsync --sender --server . x",
    "rsync . x",
    "rsync",
    "rsync --server -B1k . x",
    "rsync --server -fmerge_/etc/x . x",
    "rsync --server -F . x",
    "rsync --server --filter=merge\\ /etc/x . x",
    # scp: -S program, -o options, -F config, -i/-J, remote host:path, both directions
    "scp -S /bin/sh -t x",
    "scp -S/bin/sh -t x",
    "scp -tS /bin/sh x",
    "scp -vS prog -t x",
    "scp -oProxyCommand=x -t x",
    "scp -o ProxyCommand=x -t x",
    "scp -o 'ProxyCommand sh -c id' -t x",
    "scp -F /home/alice/cfg -t x",
    "scp -i key -t x",
    "scp -J jump -t x",
    "scp -P 22 -t x",
    "scp -3 -t x",
    "scp -6 -t x",
    "scp x host:y",
    "scp -t x host:y",
    "scp -f x host:y",
    "scp -t host:y",
    "scp -f user@host:/etc/passwd",
    "scp -t",
    "scp -t a b",
    "scp -t -f x",
    "scp -r x",
    "scp -t -- -S",
    "scp -t -- -oProxyCommand=x",
    "scp -- -S /bin/sh -t x",
    "scp -t ../x",
    "scp -t /etc/passwd",
    "scp -f /home/alice/../bob/x",
    "scp -f /home/alicex/y",
    "scp -t /srv/shared/bob/x",
    "scp -t ''",
    "scp -t ~root",
    "scp -f ~root/x",
    "scp -f ~/../bob/x",
    "scp -f ~/x ~bob/y",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu . ~bob/x",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu . ~/../../etc",
    # rsync --files-from: outside the allowed paths, '-' without --from0
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=- . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=/etc/list --from0 . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=../bob/list . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=~bob/list . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=-e . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=--rsh=sh . src/",
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from -e --from0 . src/",
    # sftp-server
    "/usr/lib/openssh/sftp-server -h",
    "/usr/lib/openssh/sftp-server -Q requests",
    "/usr/lib/openssh/sftp-server -d /etc",
    "/usr/lib/openssh/sftp-server -d %d/../x",
    "/usr/lib/openssh/sftp-server -d ~bob",
    "/usr/lib/openssh/sftp-server -l LOUD",
    "/usr/lib/openssh/sftp-server -u 999",
    "/usr/lib/openssh/sftp-server -u -R",
    "/usr/lib/openssh/sftp-server -p 'open;id'",
    "/usr/lib/openssh/sftp-server extra",
    "/usr/lib/openssh/sftp-server -e -- x",
    "sftp-server -l",
    # git
    "git-upload-pack --upload-pack=x '/srv/shared/alice/x.git'",
    "git-upload-pack -c core.sshCommand=sh x.git",
    "git-upload-pack --strict x.git",
    "git-upload-pack",
    "git-upload-pack a.git b.git",
    "git-upload-pack -- x.git",
    "git-upload-pack '/etc'",
    "git-upload-pack '~bob/x.git'",
    "git-upload-pack '~/../bob/x.git'",
    "git-upload-pack '-x'",
    "git-receive-pack '../x.git'",
    "git upload-pack x.git",  # /usr/bin/git is not in alice's programs
    # git: repositories alice can write or swap (hooks/ and config would run as her)
    "git-upload-pack '~/own.git'",
    "git-receive-pack own.git",
    "git-receive-pack own",
    "git-upload-pack '/srv/shared/alice/x.git'",  # root's, in a directory alice can write
    "git-upload-pack '/srv/git/nothere.git'",
    "git-upload-pack '/srv/git'",
    # cvs
    "cvs -e vi server",
    "cvs server -e",
    "cvs -d /etc server",
    "cvs pserver",
    "cvs",
    # svnserve
    "svnserve -t --tunnel-user=root",
    "svnserve -t --tunnel-user root",
    "svnserve -t --config-file=/home/alice/c",
    "svnserve -t --listen-port=80",
    "svnserve -t --listen-host=0.0.0.0",
    "svnserve -d",
    "svnserve -X",
    "svnserve -i",
    "svnserve -t --log-file=/etc/x",
    "svnserve -t --root /",
    "svnserve --root svn",  # not tunnel mode
    "svnserve -t extra",
    # none
    "id -u",
    "id ''",
    # shell syntax is never interpreted: these are just unknown programs or bad args
    "sh",
    "/bin/sh",
    "bash -c id",
    "$(id)",
    "`id`",
    "scp -t x; id",
    "scp -t x | id",
    "scp -t x && id",
    "scp -t x || id",
    "scp -t `id` y",
    "id; id",
    "id|id",
    "id&&id",
    "./scp -t x",
    "bin/scp -t x",
    "/usr/bin/../bin/scp -t x",
    "/usr/bin//scp -t x",
    "/usr/local/bin/scp -t x",
    "SCP -t x",
    "scp\\ -t x",
    "'scp -t' x",
    "ID=1 scp -t x",
    "exec scp -t x",
    # quoting, control characters
    "scp -t 'x",
    'scp -t "x',
    "scp -t x\\",
    "scp -t x\ny",
    "scp -t x\ry",
    "scp -t x\ty",
    "scp -t x\x00y",
    "scp -t x\x7fy",
    "scp -t x\x85y",
    "scp -t x\x1b[2J",
    "",
    "   ",
    "''",
]


@pytest.mark.parametrize("command", BYPASSES)
def test_bypass_attempts_are_refused(alice: Policy, command: str) -> None:
    d = run(alice, command, ENV_FROM_SSHD)
    assert not d.allowed, d
    assert d.argv == ()
    assert d.env == {}
    assert d.reason.startswith("pam_jail: ")
    assert "\n" not in d.reason and "\x00" not in d.reason and "\x1b" not in d.reason


def test_literal_metacharacters_stay_literal(alice: Policy) -> None:
    # allowed at most as literal file names, never as shell syntax
    for command, expect in [
        ("scp -t 'x; id'", ("/usr/bin/scp", "-t", "x; id")),
        ("scp -t x;id", ("/usr/bin/scp", "-t", "x;id")),
        ("scp -t 'a|b'", ("/usr/bin/scp", "-t", "a|b")),
        ("scp -t a\\&\\&b", ("/usr/bin/scp", "-t", "a&&b")),
        ("scp -t '`id`'", ("/usr/bin/scp", "-t", "`id`")),
        ("scp -t '$(id)'", ("/usr/bin/scp", "-t", "$(id)")),
        ('scp -t "$HOME"', ("/usr/bin/scp", "-t", "$HOME")),
        ("scp -t #x", ("/usr/bin/scp", "-t", "#x")),
        ("scp -t '*'", ("/usr/bin/scp", "-t", "*")),
        ("scp -t a~b", ("/usr/bin/scp", "-t", "a~b")),
        ("scp -t x/~", ("/usr/bin/scp", "-t", "x/~")),
    ]:
        d = run(alice, command)
        assert d.allowed, (command, d.reason)
        assert d.argv == expect


# ---------------------------------------------------------------------- split_command


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("a b  c", ["a", "b", "c"]),
        ("a 'b c' \"d e\"", ["a", "b c", "d e"]),
        ("a b\\ c", ["a", "b c"]),
        ("a 'it'\\''s'", ["a", "it's"]),
        ("a ''", ["a", ""]),
        ("a;b|c&d", ["a;b|c&d"]),
        ("a #b", ["a", "#b"]),
        ("a $(b) `c` ${d}", ["a", "$(b)", "`c`", "${d}"]),
        ("a *.txt ~ ~bob {x,y}", ["a", "*.txt", "~", "~bob", "{x,y}"]),
        ("a \"\\\"q\\\"\"", ["a", '"q"']),
    ],
)
def test_split_command(command: str, argv: list[str]) -> None:
    assert split_command(command) == argv


@pytest.mark.parametrize(
    "command",
    ["", " ", "'", '"', "a 'b", 'a "b', "a\\", "a\nb", "a\x00", "\t", "a\x7f", "a\x9b",
     "x" * 200000],
)
def test_split_command_refuses(command: str) -> None:
    with pytest.raises(Refused) as info:
        split_command(command)
    assert isinstance(info.value, Denied)
    assert info.value.rule == "parse"


# ------------------------------------------------------------------------- env


def test_environment_is_clean(alice: Policy) -> None:
    d = run(alice, "scp -t x", ENV_FROM_SSHD)
    assert d.allowed
    assert d.env == {
        "PATH": "/usr/bin:/bin",
        "HOME": HOME,
        "USER": USER,
        "LOGNAME": USER,
        "SHELL": "/usr/sbin/nologin",
        "LC_COLLATE": "C",
        "GREETING": "hello, world",
        "LANG": "C.UTF-8",
        "LC_ALL": "en_US.UTF-8",
        "TERM": "xterm-256color",
        "GIT_PROTOCOL": "version=2",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LANG", "/home/alice/evil-locale"),  # glibc loads a locale from a path
        ("LC_ALL", "../../x"),
        ("TERM", "x" * 300),
        ("TERM", "a b"),
        ("LC_CTYPE", "é"),
        ("LC_X Y", "C"),
        ("LC_", "$(id)"),
    ],
)
def test_unsafe_client_values_are_dropped(alice: Policy, name: str, value: str) -> None:
    d = run(alice, "scp -t x", {name: value})
    assert name not in d.env


def test_locale_names_pass_as_sent(alice: Policy) -> None:
    """Real locale names have an underscore (de_DE.UTF-8): they pass as the client sent
    them, and nothing is added (issue 20.5)."""
    d = run(alice, "scp -t x", {"LANG": "de_DE.UTF-8", "LC_TIME": "en_GB.UTF-8"})
    assert d.env["LANG"] == "de_DE.UTF-8" and d.env["LC_TIME"] == "en_GB.UTF-8"
    assert "LC_CTYPE" not in d.env


def test_client_environment_is_what_the_stub_received() -> None:
    """shells/entry.c hands the client's locale variables over as PAM_JAIL_SENT_NAME;
    the ones under their own names are the interpreter's (PEP 538's LC_CTYPE)."""
    from pam_jail.login.lsh import client_environment

    coerced = {"LC_CTYPE": "C.UTF-8", "TERM": "xterm", "SSH_CONNECTION": "1 2 3 4"}
    assert client_environment(coerced) == {"TERM": "xterm", "SSH_CONNECTION": "1 2 3 4"}
    sent = {**coerced, "PAM_JAIL_SENT_LANG": "de_DE.UTF-8",
            "PAM_JAIL_SENT_LC_CTYPE": "xx_YY.UTF-8", "PAM_JAIL_SENT_PATH": "/tmp",
            "PAM_JAIL_SENT_": "x", "LANGUAGE": "de"}
    assert client_environment(sent) == {"TERM": "xterm", "SSH_CONNECTION": "1 2 3 4",
                                        "LANG": "de_DE.UTF-8", "LC_CTYPE": "xx_YY.UTF-8"}


def test_client_cannot_override_fixed_or_policy_env(alice: Policy) -> None:
    d = run(alice, "scp -t x", {"LC_COLLATE": "de_DE", "USER": "root", "HOME": "/"})
    assert d.env["LC_COLLATE"] == "C" and d.env["USER"] == USER and d.env["HOME"] == HOME


@pytest.mark.parametrize(
    "line",
    ["pass_env = LD_PRELOAD", "pass_env = LD_*", "pass_env = L*", "pass_env = *",
     "pass_env = PATH", "pass_env = BASH_ENV", "pass_env = ENV", "pass_env = IFS",
     "pass_env = GIT_*", "pass_env = GIT_EXEC_PATH", "pass_env = PYTHONPATH",
     "pass_env = TERM*", "pass_env = 1X", "env = PATH=/tmp", "env = HOME=/",
     "env = NOEQUALS", "env = 1X=y"],
)
def test_dangerous_env_config_is_refused(line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_lsh(f"[default]\n{line}\n", "t.ini")
    assert len(info.value.problems) == 1


def test_custom_pass_env_pattern_cannot_leak_denied_names() -> None:
    cfg = parse_lsh("[default]\nprograms = /usr/bin/scp\npass_env = MY_*\n", "t.ini")
    d = decide(select_policy(cfg, "u", []), "scp -t x", user="u", home="/h",
               client_env={"MY_A": "1", "MYB": "2"})
    assert d.env.get("MY_A") == "1" and "MYB" not in d.env


# ------------------------------------------------------------------ interactive, home


def test_interactive_needs_allow_shell(cfg: LshConfig, alice: Policy) -> None:
    d = run(alice, None)
    assert not d.allowed and not d.interactive and d.argv == ()
    shell = parse_lsh("[default]\nallow_shell = yes\nshell = /bin/bash\n", "t.ini")
    d = run(select_policy(shell, USER, []), None, ENV_FROM_SSHD)
    assert d.allowed and d.interactive and d.argv == ("/bin/bash",)
    assert d.env["SHELL"] == "/bin/bash" and "LD_PRELOAD" not in d.env
    # a command still goes through the allow-list, not through the shell
    assert not run(select_policy(shell, USER, []), "id").allowed


@pytest.mark.parametrize("home", ["relative", "/home/../etc", "", "/home/a\nb"])
def test_unusable_home_refuses(alice: Policy, home: str) -> None:
    d = decide(alice, "scp -t x", user=USER, home=home, client_env={})
    assert not d.allowed


@pytest.mark.parametrize("user", ["", "..", ".", "a/b", "a\nb"])
def test_unusable_user_refuses(alice: Policy, user: str) -> None:
    d = decide(alice, "scp -t x", user=user, home=HOME, client_env={})
    assert not d.allowed


def test_home_is_normalised_and_paths_follow_home(alice: Policy) -> None:
    d = decide(alice, "scp -t /home/alice/x", user=USER, home="/home//alice/", client_env={})
    assert d.allowed and d.env["HOME"] == "/home/alice"
    d = decide(alice, "scp -t /srv/shared/bob/x", user="bob", home="/home/bob", client_env={})
    assert d.allowed


# ------------------------------------------------------------------- select_policy


def test_select_policy_order(cfg: LshConfig) -> None:
    assert select_policy(cfg, "alice", []).name == "user:alice"
    assert select_policy(cfg, "alice", ["ops", "dev"]).name == "user:alice"
    # first matching group section in FILE order, whatever the user's group order
    assert select_policy(cfg, "bob", ["ops", "dev"]).name == "group:dev"
    assert select_policy(cfg, "bob", ["ops"]).name == "group:ops"
    assert select_policy(cfg, "bob", ["other"]).name == "default"
    empty = parse_lsh("[group:x]\nprograms = /usr/bin/scp\n", "t.ini")
    nothing = select_policy(empty, "bob", [])
    assert nothing.programs == () and not nothing.allow_shell
    assert not decide(nothing, "scp -t x", user="bob", home="/h", client_env={}).allowed


def test_sections_do_not_inherit(cfg: LshConfig) -> None:
    ops = select_policy(cfg, "bob", ["ops"])
    assert ops.pass_env == () and ops.umask == 0o077 and ops.paths == ("%h",)


def test_git_subcommand_form(cfg: LshConfig) -> None:
    dev = select_policy(cfg, "bob", ["dev"])
    ok = decide(dev, "git upload-pack '/srv/git/x'", user="bob", home="/home/bob",
                client_env={}, facts=jail_fs())
    assert ok.allowed and ok.argv == ("/usr/bin/git", "upload-pack", "/srv/git/x.git")
    for bad in ["git -c x=y upload-pack x.git", "git upload-pack", "git log",
                "git upload-pack --strict x.git", "git --exec-path=/x upload-pack x.git"]:
        assert not decide(dev, bad, user="bob", home="/home/bob", client_env={},
                          facts=jail_fs()).allowed
    no_facts = decide(dev, "git upload-pack '/srv/git/x.git'", user="bob", home="/home/bob",
                      client_env={})
    assert not no_facts.allowed and "no file facts" in no_facts.reason


# ------------------------------------------------------------------------ parse_lsh


def test_example_file_parses() -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "etc/pam_jail/lsh.ini").read_text()
    cfg = parse_lsh(text, "etc/pam_jail/lsh.ini")
    assert cfg.default is not None
    d = decide(cfg.default, "rsync --server -vlogDtpre.iLsfxCIvu . dest/", user="u",
               home="/home/u", client_env={})
    assert d.allowed


def test_all_problems_listed_at_once() -> None:
    text = """\
top = 1
[default]
programs = bin/sh /bin/sh /usr/bin/scp /usr/local/bin/scp /usr/bin//x
foo = 1
umask = 999
allow_shell = maybe
shell = sh
path = /usr/bin::/bin
paths = /srv/../etc, relative, %x
pass_env = LD_*
  [[rules]]
  /bin/sh = shell
  /not/listed = none
  [[other]]
[bogus]
[user:a]
[user:a]
"""
    with pytest.raises(ConfigError) as info:
        parse_lsh(text, "bad.ini")
    problems = info.value.problems
    assert "bad.ini" in str(info.value)
    for needle in ["Duplicate section", "outside any section", "'bin/sh' must be an absolute",
                   "two programs named 'scp'", "/usr/bin//x", "unknown key",
                   "umask", "allow_shell", "shell", "path", "'/srv/../etc'", "'relative'",
                   "'%x'", "LD_*", "unknown rule 'shell'", "/not/listed is not in programs",
                   "[[other]]", "[bogus]", "has no rule"]:
        assert any(needle in p for p in problems), (needle, problems)


@pytest.mark.parametrize("program", ["/", "/usr/bin/", "/usr/./bin/scp", "scp", "/a b"])
def test_bad_program_paths(program: str) -> None:
    with pytest.raises(ConfigError):
        parse_lsh(f"[default]\nprograms = '{program}'\n[[rules]]\n'{program}' = none\n", "t")


def test_program_without_known_rule_needs_one() -> None:
    with pytest.raises(ConfigError, match="1 problem"):
        parse_lsh("[default]\nprograms = /bin/bash\n", "t.ini")
    cfg = parse_lsh("[default]\nprograms = /bin/bash\n[[rules]]\n/bin/bash = none\n", "t")
    assert cfg.default is not None and cfg.default.programs == (("/bin/bash", "none"),)


def test_explicit_rule_overrides_basename() -> None:
    cfg = parse_lsh(
        "[default]\nprograms = /usr/bin/rsync\n[[rules]]\n/usr/bin/rsync = none\n", "t"
    )
    assert cfg.default is not None
    assert not decide(cfg.default, "rsync --server -e.L . x", user="u", home="/h",
                      client_env={}).allowed
    assert decide(cfg.default, "rsync", user="u", home="/h", client_env={}).allowed


def test_whitespace_and_comma_lists() -> None:
    cfg = parse_lsh("[default]\nprograms = /usr/bin/scp /usr/bin/rsync,/usr/bin/cvs\n", "t")
    assert cfg.default is not None
    assert [p for p, _ in cfg.default.programs] == ["/usr/bin/scp", "/usr/bin/rsync",
                                                    "/usr/bin/cvs"]


# ---------------------------------------------------------------- property tests

SAFE_NAME = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF,
                           blacklist_categories=("Cc", "Cs")),
    min_size=1, max_size=20,
)
TEMPLATES = [
    "scp -t {}",
    "scp -r -p -t {}",
    "scp -f {}",
    "scp -d -t {}",
    "rsync --server -vlogDtpre.iLsfxCIvu . {}",
    "rsync --server --sender -vlogDtpre.iLsfxCIvu . {}",
    "/usr/lib/openssh/sftp-server -d {}",
    "git-upload-pack {}",
    "git-receive-pack {}",
    "svnserve -t -r {}",
]


def _good_relative(name: str) -> bool:
    parts = name.split("/")
    return (
        not name.startswith(("-", "/", "~"))
        and ".." not in parts
        and name != ""
        and "%" not in name
        and ":" not in name
    )


@settings(max_examples=400, deadline=None)
@given(template=st.sampled_from(TEMPLATES), name=SAFE_NAME)
def test_property_allowed_argv_is_split_argv(template: str, name: str) -> None:
    """(a) nothing is rewritten but what docs/lsh.md says; argv[0] resolved."""
    cfg = parse_lsh(CONFIG, "test.ini")
    policy = select_policy(cfg, USER, [])
    command = template.format(shlex.quote(name))
    d = run(policy, command, facts=AnyRepo())
    split = split_command(command)
    if d.allowed:
        _only_documented_rewrites(d, split, policy)
        assert d.argv[0] == policy.program_named(split[0]) or d.argv[0] == split[0]
        assert posixpath.isabs(d.argv[0])
    if _good_relative(name):
        assert d.allowed, (command, d.reason)


def _only_documented_rewrites(d: Decision, split: list[str], policy: Policy) -> None:
    """The argv that runs is the argv sent, except what docs/lsh.md says a rule
    rewrites: a leading ~ made the home (scp, rsync paths, --files-from), the
    repository git is given (absolute), cvs's --allow-root, svnserve's --root."""
    rule = (policy.rule_for(d.argv[0]) or "").split()[0]
    sent, ran = split[1:], list(d.argv[1:])
    if rule == "git":
        path = sent[-1]
        path = HOME + path[1:] if path == "~" or path.startswith("~/") else path
        full = posixpath.normpath(path if path.startswith("/") else HOME + "/" + path)
        assert ran[:-1] == sent[:-1] and ran[-1] in (full, full + ".git"), (sent, ran)
        return
    if rule == "cvs":
        assert ran[-1] == "server" and all(a.startswith("--allow-root=/") for a in ran[:-1])
        return
    if rule == "svnserve" and len(ran) == len(sent) + 1:
        assert ran[-1].startswith("--root=/")
        ran = ran[:-1]
    assert len(ran) == len(sent), (sent, ran)
    for was, now in zip(sent, ran, strict=True):
        if was != now:
            assert rule in ("scp", "rsync", "hashsum", "df"), (sent, ran)
            name, eq, value = was.partition("=")
            if eq and name in RSYNC_PATH_OPTIONS:
                assert rule == "rsync" and now.startswith(name + "="), (was, now)
                was, now = value, now[len(name) + 1:]
            if (was == "~" or was.startswith("~/")) and now == HOME + was[1:]:
                continue
            # a relative --link-dest/--compare-dest/--copy-dest: resolved, absolute, inside
            assert rule == "rsync" and not was.startswith("/"), (was, now)
            assert now == posixpath.normpath(now) and now.startswith("/"), (was, now)
            assert now in (HOME, "/srv/shared/alice") or now.startswith(
                (HOME + "/", "/srv/shared/alice/")), (was, now)


RSYNC_PATH_OPTIONS = ("--files-from", "--backup-dir", "--partial-dir", "--temp-dir",
                      "--link-dest", "--compare-dest", "--copy-dest")


DANGEROUS_TOKENS = [
    "-e", "-e.LsfxCIvu", "-esh", "--rsh=sh", "--rsh", "sh", "-S", "-vS", "/bin/sh", "-o",
    "-oProxyCommand=x", "ProxyCommand=x", "-F", "--", "-c", "--upload-pack=x", "-t", "-f",
    "-r", "-p", "-d", "--server", "--sender", ".", "..", "../x", "/etc/passwd", "x",
    "dest/", "--tunnel-user=root", "--tunnel-user", "--root", "-M--rsh=sh", "-s", "server",
    "--daemon", "--log-file=/x", "--files-from=/x", "--temp-dir", "/tmp", "--partial-dir",
    ";", "|", "&&", "$(id)", "`id`", "'", '"', "\\", "\n", "\x00", "~", "~bob", "-l",
    "VERBOSE", "-u", "022", "-B1024", "-@1", "-vlogDtpre.iLsfxCIvu", "--backup-dir=/x",
    "--timeout", "10", "--link-dest=../s1", "--link-dest", "--copy-dest=~/s",
]
PROGRAM_TOKENS = [
    "scp", "rsync", "/usr/bin/rsync", "/usr/lib/openssh/sftp-server", "sftp-server",
    "git-upload-pack", "git-receive-pack", "cvs", "svnserve", "id", "git", "sh", "/bin/sh",
    "/usr/local/bin/anything",
]


def _token_strategy() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(DANGEROUS_TOKENS),
        st.text(max_size=6),
    )


def _oracle(argv: tuple[str, ...], policy: Policy) -> None:
    """Independent, simpler statements that must hold for every allowed command."""
    program = argv[0]
    rule = policy.rule_for(program)
    assert rule is not None
    args = argv[1:]
    homeish = (HOME + "/", "/srv/shared/alice/")
    positional = [a for a in args if not a.startswith("-")]
    if rule in ("scp", "rsync", "git", "sftp-server", "svnserve"):
        for i, a in enumerate(args):
            if rule == "sftp-server" and i and args[i - 1] in ("-p", "-P"):
                continue    # request names (`..` is a name made of two dots), not paths
            assert ".." not in a.split("/"), argv
    if rule == "scp":
        for a in args:
            if a.startswith("-"):
                assert a == "--" or re.fullmatch(r"-[rpdvqTtf]+", a), argv
            else:
                full = posixpath.normpath(a if a.startswith("/") else HOME + "/" + a)
                assert full in (HOME, "/srv/shared/alice") or full.startswith(homeish), argv
                assert ":" not in a.split("/")[0], argv
    elif rule == "rsync":
        assert args[0] == "--server"
        for i, a in enumerate(args):
            if a.startswith("--files-from"):
                value = a.partition("=")[2] or args[i + 1]
                assert (value == "-" and "--from0" in args) or posixpath.normpath(
                    value if value.startswith("/") else HOME + "/" + value
                ).startswith(homeish) or value in (HOME, "/srv/shared/alice"), argv
            assert not a.startswith(("--rsh", "--rsync-path", "--daemon", "--config",
                                     "--log-file", "--write-batch",
                                     "--read-batch", "--only-write-batch", "--remote-",
                                     "--protect", "--secluded", "-M")), argv
            if a.startswith("-") and not a.startswith("--"):
                letters, _e, caps = a[1:].partition("e")
                assert "s" not in letters and "M" not in letters, argv
                if _e:
                    value = caps or args[i + 1]
                    assert re.fullmatch(r"\.[A-Za-z]*", value), argv
        assert "." in positional
    elif rule == "git":
        assert len(args) == 1 and not args[0].startswith("-")
    elif rule == "cvs":
        assert args[-1] == "server" and all(
            a.startswith("--allow-root=/") and ".." not in a for a in args[:-1]), argv
    elif rule == "svnserve":
        assert not any(a.startswith(("--tunnel-user", "--config", "--listen", "-d", "-X",
                                     "-i")) for a in args), argv
    elif rule == "none":
        assert args == ()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=st.sampled_from(PROGRAM_TOKENS),
    tokens=st.lists(_token_strategy(), max_size=7),
    quote=st.booleans(),
)
def test_property_random_commands_never_escape(
    program: str, tokens: list[str], quote: bool
) -> None:
    """(b) built from dangerous pieces: allowed only for an allowed program whose
    rule accepts, with the independent oracle holding."""
    cfg = parse_lsh(CONFIG, "test.ini")
    policy = select_policy(cfg, USER, [])
    pieces = [shlex.quote(t) if quote else t for t in tokens]
    command = " ".join([program, *pieces])
    d = run(policy, command, ENV_FROM_SSHD, AnyRepo())
    if not d.allowed:
        assert d.argv == () and d.env == {}
        return
    assert all(ord(c) >= 32 and c != "\x7f" for c in command)
    split = split_command(command)
    _only_documented_rewrites(d, split, policy)
    assert policy.rule_for(d.argv[0]) is not None
    _oracle(d.argv, policy)
    for bad in ("LD_PRELOAD", "BASH_ENV", "ENV", "IFS", "GIT_EXEC_PATH", "PYTHONPATH"):
        assert bad not in d.env
    assert d.env["PATH"] == "/usr/bin:/bin"


@st.composite
def _mutated_real_command(draw: st.DrawFn) -> str:
    """A real client command with a few tokens inserted, replaced or dropped."""
    command, _program = draw(st.sampled_from(REAL_ALLOWED))
    argv = split_command(command)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "replace", "drop", "glue"]))
        at = draw(st.integers(1, len(argv)))
        token = draw(_token_strategy())
        if op == "insert":
            argv.insert(at, token)
        elif op == "replace" and at < len(argv):
            argv[at] = token
        elif op == "drop" and at < len(argv):
            del argv[at]
        elif op == "glue" and at < len(argv):
            argv[at] = argv[at] + token
    return " ".join(shlex.quote(a) for a in argv)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=_mutated_real_command())
def test_property_mutated_real_commands(command: str) -> None:
    """(a)+(b) near real commands: allowed ones are unchanged and pass the oracle."""
    cfg = parse_lsh(CONFIG, "test.ini")
    policy = select_policy(cfg, USER, [])
    d = run(policy, command, ENV_FROM_SSHD, AnyRepo())
    if not d.allowed:
        assert d.argv == () and d.env == {}
        return
    _only_documented_rewrites(d, split_command(command), policy)
    _oracle(d.argv, policy)


@settings(max_examples=2000, deadline=None)
@given(command=st.text(max_size=80))
def test_fuzz_decide_never_crashes(command: str) -> None:
    """Any text: a Decision (or, for split_command alone, the documented Refused)."""
    cfg = parse_lsh(CONFIG, "test.ini")
    policy = select_policy(cfg, USER, [])
    try:
        split_command(command)
    except Refused:
        pass
    d = run(policy, command, ENV_FROM_SSHD, AnyRepo())
    assert isinstance(d, Decision)
    if not d.allowed:
        assert d.argv == ()
    else:
        _oracle(d.argv, policy)


@settings(max_examples=2000, deadline=None)
@given(
    command=st.lists(
        st.one_of(st.sampled_from(PROGRAM_TOKENS + DANGEROUS_TOKENS), st.text(max_size=4)),
        min_size=1, max_size=8,
    ).map(" ".join)
)
def test_fuzz_decide_token_soup(command: str) -> None:
    cfg = parse_lsh(CONFIG, "test.ini")
    policy = select_policy(cfg, USER, [])
    d = run(policy, command, facts=AnyRepo())
    if d.allowed:
        _only_documented_rewrites(d, split_command(command), policy)
        _oracle(d.argv, policy)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet="[]:=,#'\" \nabcdefgu/%*_\\", max_size=120))
def test_fuzz_parse_lsh_only_raises_config_error(text: str) -> None:
    try:
        cfg = parse_lsh(text, "fuzz.ini")
    except ConfigError as err:
        assert err.problems
        return
    policy = select_policy(cfg, "u", ["g"])
    d = decide(policy, "x", user="u", home="/h", client_env={})
    assert isinstance(d, Decision)


def test_rules_table_is_complete() -> None:
    assert set(RULES) == {"scp", "sftp-server", "rsync", "git", "cvs", "svnserve", "borg",
                          "hg", "rdiff-backup", "unison", "hashsum", "df", "echo", "none",
                          "any"}


# ------------------------------------------- split_command against shlex (no shlex at run time)


def _shlex_words(text: str) -> list[str] | None:
    import shlex

    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.wordchars = ""
    try:
        return list(lexer)
    except ValueError:
        return None


@settings(max_examples=3000, deadline=None)
@given(text=st.text(alphabet=" \t\n\r'\"\\ab#;$`*~-=", max_size=40) | st.text(max_size=30))
def test_splitter_is_shlex(text: str) -> None:
    from pam_jail.login.policy import _posix_words

    try:
        ours: list[str] | None = _posix_words(text)
    except ValueError:
        ours = None
    assert ours == _shlex_words(text), text


def test_git_rule_gets_no_global_config_unless_the_section_says() -> None:
    """~/.gitconfig can name hooks (uploadpack.packObjectsHook): the git rule points
    GIT_CONFIG_GLOBAL at /dev/null; a section's own env may override it."""
    base = "[default]\nprograms = /usr/lib/git-core/git-upload-pack\npaths = /srv/git\n"
    for text, expected in ((base, "/dev/null"),
                           (base + "env = GIT_CONFIG_GLOBAL=/srv/git/config\n",
                            "/srv/git/config")):
        policy = select_policy(parse_lsh(text, "t"), "u", [])
        d = decide(policy, "git-upload-pack '/srv/git/x.git'", user="u", home="/home/u",
                   client_env={"GIT_CONFIG_GLOBAL": "/home/u/evil"}, facts=jail_fs())
        assert d.allowed, d.reason
        assert d.env["GIT_CONFIG_GLOBAL"] == expected


# ------------------------------------------------------ repositories: hooks and config

GIT = "[default]\nprograms = /usr/bin/git-upload-pack, /usr/bin/git-receive-pack, " \
      "/usr/bin/git\npaths = %h, /srv/git\n"


def _git_decide(command: str, fs: FileFacts) -> Decision:
    policy = select_policy(parse_lsh(GIT, "t"), USER, [])
    return decide(policy, command, user=USER, home=HOME, client_env={}, facts=fs)


def test_git_pins_hooks_config_and_safe_directory() -> None:
    d = _git_decide("git-receive-pack '/srv/git/x.git'", jail_fs())
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/git-receive-pack", "/srv/git/x.git")
    pins = {d.env[f"GIT_CONFIG_KEY_{i}"]: d.env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(d.env["GIT_CONFIG_COUNT"]))}
    assert pins == {"core.hooksPath": "/dev/null", "core.fsmonitor": "false",
                    "core.sshCommand": "false", "safe.directory": "/srv/git/x.git"}
    assert d.env["GIT_COMMON_DIR"] == "/srv/git/x.git"
    assert d.env["GIT_CONFIG_GLOBAL"] == "/dev/null"


def test_git_pins_win_over_the_sections_env() -> None:
    text = GIT + "env = GIT_CONFIG_COUNT=0, GIT_COMMON_DIR=/home/alice/evil\n"
    policy = select_policy(parse_lsh(text, "t"), USER, [])
    d = decide(policy, "git-upload-pack /srv/git/x.git", user=USER, home=HOME, client_env={},
               facts=jail_fs())
    assert d.env["GIT_CONFIG_COUNT"] == "4" and d.env["GIT_COMMON_DIR"] == "/srv/git/x.git"


def _shared(fs: FakeFS, path: str) -> FakeFS:
    """A repository as docs/lsh.md shares one: directory group-writable and sticky."""
    return fs.git(path, PathFacts("dir", writable=True, mode=0o3775))


@pytest.mark.parametrize(("fs", "command", "why"), [
    # the user's own repository, uploaded or made: its hooks and config run as the user
    (jail_fs(), "git-receive-pack '~/own.git'", "the user's or writable"),
    (jail_fs(), "git-upload-pack own", "the user's or writable"),
    (FakeFS().git("/srv/git/own.git", USER_DIR), "git-upload-pack /srv/git/own",
     "repository /srv/git/own.git is owned by the user"),
    # root's repository with the user's hooks/ or config, or group-writable ones
    (FakeFS().git("/srv/git/h.git", hooks=USER_DIR), "git-receive-pack /srv/git/h.git",
     "hooks /srv/git/h.git/hooks is owned by the user"),
    (FakeFS().git("/srv/git/h.git", hooks=GROUP_DIR), "git-receive-pack /srv/git/h.git",
     "writable by the user"),
    (FakeFS().git("/srv/git/c.git", config=GROUP_FILE), "git-upload-pack /srv/git/c.git",
     "config /srv/git/c.git/config is writable"),
    (FakeFS().git("/srv/git/c.git", config=LINK), "git-upload-pack /srv/git/c.git",
     "symbolic link"),
    # a writable repository directory that is not sticky: config could be renamed away
    (FakeFS().git("/srv/git/w.git", GROUP_DIR), "git-receive-pack /srv/git/w.git",
     "/srv/git/w.git is writable by the user"),
    # sticky and writable, but without its config the user could create one
    (_shared(FakeFS(), "/srv/git/s.git").add("/srv/git/s.git/config", MISSING),
     "git-receive-pack /srv/git/s.git", "config /srv/git/s.git/config does not exist"),
    # a directory on the way the user can write: the repository could be swapped
    (FakeFS({"/srv/git": GROUP_DIR}).git("/srv/git/x.git"), "git-upload-pack /srv/git/x.git",
     "on the way to it"),
    (FakeFS({"/srv": USER_DIR}).git("/srv/git/x.git"), "git-upload-pack /srv/git/x.git",
     "on the way to it"),
    # symbolic links: to a repository, on the way, a .git file
    (FakeFS({"/srv/git/l.git": LINK}), "git-upload-pack /srv/git/l.git", "symbolic link"),
    (FakeFS({"/srv/git/l": LINK}).git("/srv/git/l.git"), "git-upload-pack /srv/git/l",
     "symbolic link"),
    (FakeFS({"/srv/git/f/.git": ROOT_FILE}).git("/srv/git/f.git"),
     "git-upload-pack /srv/git/f", "no .git file"),
    # git would serve another directory than the one checked
    (FakeFS().git("/srv/git/d.git").git("/srv/git/d.git.git"),
     "git-upload-pack /srv/git/d.git", "ambiguous"),
    (FakeFS().git("/srv/git/d.git").add("/srv/git/d.git/commondir", ROOT_FILE),
     "git-upload-pack /srv/git/d.git", "commondir"),
    # the jail's system config the user could write
    (FakeFS({"/etc/gitconfig": USER_FILE}).git("/srv/git/x.git"),
     "git-upload-pack /srv/git/x.git", "git system config"),
    # not a repository, outside the allowed paths, unexaminable
    (FakeFS({"/srv/git/plain": ROOT_DIR}), "git-upload-pack /srv/git/plain",
     "not a git repository"),
    (FakeFS().git("/srv/other.git"), "git-upload-pack /srv/other.git", "outside"),
    (FakeFS().git("/srv/git/u.git").add("/srv/git/u.git/hooks", PathFacts("unknown")),
     "git-receive-pack /srv/git/u.git", "hooks"),
])
def test_git_refuses_repositories_the_user_controls(fs: FakeFS, command: str,
                                                    why: str) -> None:
    d = _git_decide(command, fs)
    assert not d.allowed, d
    assert why in d.reason, d.reason


@pytest.mark.parametrize(("fs", "command", "repo"), [
    (_shared(FakeFS(), "/srv/git/s.git"), "git-receive-pack /srv/git/s", "/srv/git/s.git"),
    (FakeFS({"/srv/git": STICKY}).git("/srv/git/t.git"), "git-upload-pack /srv/git/t.git",
     "/srv/git/t.git"),
    (FakeFS().git("/srv/git/p"), "git upload-pack '/srv/git/p/'", "/srv/git/p"),
    (FakeFS().git("/srv/git/q/.git"), "git-upload-pack /srv/git/q", "/srv/git/q/.git"),
    (FakeFS({"/srv/git/n": ROOT_DIR}).git("/srv/git/n.git"), "git-upload-pack /srv/git/n",
     "/srv/git/n.git"),  # a plain directory n/ is passed over, as git does
])
def test_git_serves_repositories_kept_by_root(fs: FakeFS, command: str, repo: str) -> None:
    d = _git_decide(command, fs)
    assert d.allowed, d.reason
    assert d.argv[-1] == repo and d.env["GIT_CONFIG_VALUE_3"] == repo


def test_git_asks_only_what_it_needs() -> None:
    fs = jail_fs()
    _git_decide("git-upload-pack /srv/git/x.git", fs)
    from pam_jail.login.policy import GIT_ADMIN_HOOKS

    assert len(fs.asked) < 25 and all(p.startswith(("/srv", "/etc/gitconfig")) or p == "/"
                                      or p == GIT_ADMIN_HOOKS for p in fs.asked), fs.asked


CVS = "[default]\nprograms = /usr/bin/cvs\npaths = %h, /srv/cvs, /srv/cvs2\n"


def _cvs_fs(**over: PathFacts) -> FakeFS:
    fs = FakeFS({"/srv/cvs/CVSROOT": ROOT_DIR, "/srv/cvs/CVSROOT/loginfo": ROOT_FILE,
                 "/srv/cvs/CVSROOT/history": GROUP_FILE, "/srv/cvs/mod": GROUP_DIR})
    for path, facts in over.items():
        fs.add(path.replace("_", "/"), facts)
    return fs


def _cvs_decide(fs: FakeFS, command: str = "cvs server") -> Decision:
    policy = select_policy(parse_lsh(CVS, "t"), USER, [])
    return decide(policy, command, user=USER, home=HOME, client_env={}, facts=fs)


def test_cvs_is_told_the_roots_it_may_open() -> None:
    d = _cvs_decide(_cvs_fs())
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/cvs", "--allow-root=/srv/cvs", "server")
    two = _cvs_fs().add("/srv/cvs2/CVSROOT", ROOT_DIR)
    assert _cvs_decide(two).argv[1:3] == ("--allow-root=/srv/cvs", "--allow-root=/srv/cvs2")


@pytest.mark.parametrize(("path", "facts", "why"), [
    ("/srv/cvs/CVSROOT/loginfo", USER_FILE, "cvs administrative file"),
    ("/srv/cvs/CVSROOT/commitinfo", GROUP_FILE, "writable by the user"),
    ("/srv/cvs/CVSROOT/verifymsg", LINK, "symbolic link"),
    ("/srv/cvs/CVSROOT/modules", USER_FILE, "owned by the user"),
    ("/srv/cvs/CVSROOT", GROUP_DIR, "writable by the user"),
    ("/srv/cvs", USER_DIR, "owned by the user"),
    ("/srv", GROUP_DIR, "on the way"),
])
def test_cvs_refuses_a_root_the_user_controls(path: str, facts: PathFacts, why: str) -> None:
    d = _cvs_decide(_cvs_fs().add(path, facts))
    assert not d.allowed and why in d.reason, d.reason


def test_cvs_users_own_cvsroot_is_dropped_not_served() -> None:
    """~/CVSROOT (paths has %h): not a root cvs may open; /srv/cvs still is."""
    fs = _cvs_fs().add(HOME + "/CVSROOT", USER_DIR).add(HOME + "/CVSROOT/loginfo", USER_FILE)
    d = _cvs_decide(fs)
    assert d.allowed and d.argv == ("/usr/bin/cvs", "--allow-root=/srv/cvs", "server")
    alone = FakeFS().add(HOME + "/CVSROOT", USER_DIR)
    d = _cvs_decide(alone)
    assert not d.allowed and "owned by the user" in d.reason
    assert "no cvs repository" in _cvs_decide(FakeFS()).reason


@pytest.mark.parametrize("command", ["cvs -d /home/alice/cvsroot server",
                                     "cvs --allow-root=/home/alice server", "cvs server x",
                                     "cvs -e sh server", "cvs pserver"])
def test_cvs_injection_refused(command: str) -> None:
    assert not _cvs_decide(_cvs_fs(), command).allowed


SVN = "[default]\nprograms = /usr/bin/svnserve\npaths = /srv/svn, %h\n"


def _svn_fs() -> FakeFS:
    fs = FakeFS()
    for repo in ("/srv/svn/a", "/srv/svn/b"):
        fs.add(repo, ROOT_DIR).add(repo + "/format", ROOT_FILE).add(repo + "/db", GROUP_DIR)
        fs.add(repo + "/hooks", ROOT_DIR).add(repo + "/hooks/pre-commit", ROOT_FILE)
        fs.add(repo + "/conf", ROOT_DIR).add(repo + "/conf/svnserve.conf", ROOT_FILE)
    return fs


def _svn_decide(fs: FakeFS, command: str = "svnserve -t") -> Decision:
    policy = select_policy(parse_lsh(SVN, "t"), USER, [])
    return decide(policy, command, user=USER, home=HOME, client_env={}, facts=fs)


def test_svnserve_root_forced_and_checked() -> None:
    d = _svn_decide(_svn_fs())
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/svnserve", "-t", "--root=/srv/svn")
    d = _svn_decide(_svn_fs(), "svnserve -t -r /srv/svn/a --read-only")
    assert d.allowed and d.argv == ("/usr/bin/svnserve", "-t", "-r", "/srv/svn/a", "--read-only")


@pytest.mark.parametrize(("path", "facts", "command", "why"), [
    ("/srv/svn/a/hooks/pre-commit", USER_FILE, "svnserve -t", "svn hook"),
    ("/srv/svn/a/hooks/post-commit", GROUP_FILE, "svnserve -t", "writable by the user"),
    ("/srv/svn/b/hooks", USER_DIR, "svnserve -t", "svn hooks"),
    ("/srv/svn/b/conf/svnserve.conf", USER_FILE, "svnserve -t", "svn conf"),
    ("/srv/svn/b", USER_DIR, "svnserve -t", "owned by the user"),
    ("/srv/svn", GROUP_DIR, "svnserve -t", "writable by the user"),
    ("/srv/svn/junk", ROOT_DIR, "svnserve -t", "not a repository"),
    ("/srv/svn/a/hooks/pre-commit", LINK, "svnserve -t -r /srv/svn/a", "symbolic link"),
    ("/srv/x", ROOT_DIR, "svnserve -t --root=/home/alice", "owned by the user"),
])
def test_svnserve_refuses_repositories_the_user_controls(path: str, facts: PathFacts,
                                                         command: str, why: str) -> None:
    d = _svn_decide(_svn_fs().add(path, facts), command)
    assert not d.allowed and why in d.reason, d.reason


@pytest.mark.parametrize("command", [
    "svnserve -t --config-file=/home/alice/svnserve.conf", "svnserve -t --tunnel-user=root",
    "svnserve -t -r /etc", "svnserve -d -r /srv/svn", "svnserve -t --hooks-env=/home/alice/e",
    "svnserve -t -r ../x", "svnserve -t --root /srv/svn --listen-port=3690",
])
def test_svnserve_injection_refused(command: str) -> None:
    assert not _svn_decide(_svn_fs(), command).allowed


def test_repository_rules_refuse_without_facts() -> None:
    for text, command in ((GIT, "git-upload-pack /srv/git/x.git"), (CVS, "cvs server"),
                          (SVN, "svnserve -t")):
        policy = select_policy(parse_lsh(text, "t"), USER, [])
        d = decide(policy, command, user=USER, home=HOME, client_env={})
        assert not d.allowed and "no file facts" in d.reason


# ------------------------------------------------------------------------------ borg

BORG = """\
[default]
programs = /usr/bin/borg
paths = /srv/borg/%u, %h/backups

[user:bob]
programs = /usr/bin/borg
paths = /srv/borg/%u
  [[rules]]
  /usr/bin/borg = borg --append-only --storage-quota=10G
"""


def _borg(command: str, user: str = USER) -> Decision:
    policy = select_policy(parse_lsh(BORG, "t"), user, [])
    return decide(policy, command, user=user, home=f"/home/{user}", client_env={})


@pytest.mark.parametrize(("command", "middle"), [
    ("borg serve", ()),
    ("borg serve --info", ("--info",)),
    ("borg serve --umask=077 --info", ("--umask=077", "--info")),
    ("borg serve --debug --debug-topic=borg.debug.repository.compaction",
     ("--debug", "--debug-topic=borg.debug.repository.compaction")),
    ("borg serve --info --storage-quota=5G", ("--info", "--storage-quota=5G")),
    ("borg serve --append-only --lock-wait 10", ("--append-only", "--lock-wait", "10")),
    ("borg serve --restrict-to-repository=/srv/borg/alice/r",
     ("--restrict-to-repository=/srv/borg/alice/r",)),
    ("borg serve --restrict-to-path ~/backups/x", ("--restrict-to-path",
                                                   "/home/alice/backups/x")),
    ("/usr/bin/borg serve -v --show-rc --log-json", ("-v", "--show-rc", "--log-json")),
])
def test_borg_serve_forced_inside_the_allowed_paths(command: str,
                                                    middle: tuple[str, ...]) -> None:
    d = _borg(command)
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/borg", "serve", *middle,
                      "--restrict-to-path=/srv/borg/alice",
                      "--restrict-to-path=/home/alice/backups")


def test_borg_forced_options_come_last() -> None:
    d = _borg("borg serve --info --storage-quota=1P", "bob")
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/borg", "serve", "--info", "--storage-quota=1P",
                      "--restrict-to-path=/srv/borg/bob", "--append-only",
                      "--storage-quota=10G")


@pytest.mark.parametrize("command", [
    "borg with-lock /srv/borg/alice/r sh",     # `any` made this a shell (issue 13.4)
    "borg serve --rsh=sh", "borg serve --rsh sh", "borg serve --remote-path=sh",
    "borg serve --debug-profile=/home/alice/x", "borg serve --bypass-lock",
    "borg serve --restrict-to-path=/", "borg serve --restrict-to-path=/srv/borg/bob",
    "borg serve --restrict-to-repository=/srv/borg/alice/../bob/r",
    "borg serve --restrict-to-p=/", "borg serve --restrict-to-path", "borg serve -h",
    "borg serve --umask=999", "borg serve --storage-quota=$(id)", "borg serve extra",
    "borg --info serve", "borg init /srv/borg/alice/r", "borg", "borg serve -e sh",
    "borg serve -oProxyCommand=sh", "borg serve --config-file=/home/alice/x",
    "borg serve --storage-quota=-1", "borg serve --debug-topic=x;id",
])
def test_borg_refusals(command: str) -> None:
    d = _borg(command)
    assert not d.allowed, d


@pytest.mark.parametrize("value", ["borg --append-only --rsh=sh", "borg --storage-quota=x",
                                   "borg --restrict-to-path=/", "rsync --append-only",
                                   "scp -r"])
def test_rule_extras_are_validated(value: str) -> None:
    text = f"[default]\nprograms = /usr/bin/borg, /usr/bin/rsync, /usr/bin/scp\n" \
           f"  [[rules]]\n  /usr/bin/{value.split()[0]} = {value}\n"
    with pytest.raises(ConfigError):
        parse_lsh(text, "t")


# ------------------------------------------------------ probes: checksums, df, echo

PROBE = """\
[default]
programs = /usr/lib/openssh/sftp-server, /usr/bin/md5sum, /usr/bin/sha1sum, \
/usr/bin/sha256sum, /usr/bin/df, /usr/bin/echo
"""


def _probe(command: str, policy_text: str = PROBE) -> Decision:
    policy = select_policy(parse_lsh(policy_text, "t"), USER, [])
    return decide(policy, command, user=USER, home=HOME, client_env={})


@pytest.mark.parametrize(("command", "argv"), [
    # what rclone's sftp backend runs (unix shell type)
    ("echo ${ShellId}%ComSpec%", ("/usr/bin/echo", "${ShellId}%ComSpec%")),
    ("md5sum", ("/usr/bin/md5sum",)),
    ("sha1sum", ("/usr/bin/sha1sum",)),
    ("md5sum /home/alice/dir/file\\ name.txt", ("/usr/bin/md5sum",
                                                "/home/alice/dir/file name.txt")),
    ("sha1sum /home/alice/\\$x", ("/usr/bin/sha1sum", "/home/alice/$x")),
    ("sha256sum -b --tag -- a b", ("/usr/bin/sha256sum", "-b", "--tag", "--", "a", "b")),
    ("md5sum ~/f", ("/usr/bin/md5sum", "/home/alice/f")),
    ("df -k /home/alice", ("/usr/bin/df", "-k", "/home/alice")),
    ("df -hT ~", ("/usr/bin/df", "-hT", "/home/alice")),
    # no shell: these are file names and words
    ("md5sum | sh", ("/usr/bin/md5sum", "|", "sh")),
    ("echo x; id", ("/usr/bin/echo", "x;", "id")),
])
def test_probes_allowed(command: str, argv: tuple[str, ...]) -> None:
    d = _probe(command)
    assert d.allowed, d.reason
    assert d.argv == argv


@pytest.mark.parametrize("command", [
    "md5sum /etc/shadow", "md5sum -c /home/alice/list", "md5sum --check list",
    "sha1sum ../bob/x", "md5sum ~bob/x", "md5sum --files0-from=/etc/x", "df", "df /",
    "df -k /etc", "df --output=source /home/alice", "df -B1 /home/alice",
    "echo -e x", "echo --help", "md5 -r",
    "rclone md5sum", "sha1 -r",
])
def test_probes_refused(command: str) -> None:
    assert not _probe(command).allowed


def test_refused_probes_are_quiet_other_refusals_are_not() -> None:
    only_sftp = "[default]\nprograms = /usr/lib/openssh/sftp-server\n"
    for command in ("echo ${ShellId}%ComSpec%", "md5sum", "md5 -r", "rclone md5sum",
                    "sha1sum", "sha1 -r", "rclone sha1sum", "df -k /home/alice"):
        d = _probe(command, only_sftp)
        assert not d.allowed and d.quiet, command
    for command in ("sh -c id", "/bin/md5sum", "md5sum\\;id", "scp -t x"):
        d = _probe(command, only_sftp)
        assert not d.allowed and not d.quiet, command
    assert not _probe("md5sum /etc/shadow").quiet      # a program's rule refused it


# ------------------------------------------------------------ hg, rdiff-backup, unison

HG = """\
[default]
programs = /usr/bin/hg, /usr/bin/rdiff-backup, /usr/bin/unison, /usr/bin/borg
paths = %h, /srv/hg
pass_env = LANG
  [[rules]]
  /usr/bin/rdiff-backup = rdiff-backup
"""


def _hg_fs() -> FakeFS:
    fs = FakeFS({"/srv/hg/r": ROOT_DIR, "/srv/hg/r/.hg": GROUP_DIR,
                 f"{HOME}/own": USER_DIR, f"{HOME}/own/.hg": USER_DIR,
                 f"{HOME}/shared": USER_DIR, f"{HOME}/shared/.hg": USER_DIR,
                 f"{HOME}/shared/.hg/sharedpath": USER_FILE,
                 f"{HOME}/link": LINK, f"{HOME}/plain": USER_DIR,
                 "/etc/mercurial/hgrc.d/admin.rc": ROOT_FILE})
    return fs


def _new(command: str, fs: FileFacts | None = None, env: dict[str, str] | None = None,
         text: str = HG) -> Decision:
    policy = select_policy(parse_lsh(text, "t"), USER, [])
    return decide(policy, command, user=USER, home=HOME, client_env=env or {},
                  facts=fs if fs is not None else _hg_fs())


@pytest.mark.parametrize(("command", "repo"), [
    ("hg -R /srv/hg/r serve --stdio", "/srv/hg/r"),
    ("hg -R r serve --stdio", None),                      # relative: the home
    ("hg -R own serve --stdio", f"{HOME}/own"),           # the user's own: no hgrc read
    ("hg -R '~/own' serve --stdio", f"{HOME}/own"),       # what `ssh://h/~/own` sends
    ("hg --repository /srv/hg/r/ serve --stdio", "/srv/hg/r"),
    ("/usr/bin/hg -R /srv/hg//r serve --stdio", "/srv/hg/r"),
])
def test_hg_serve_stdio(command: str, repo: str | None) -> None:
    d = _new(command, env={"HGRCPATH": "/home/alice/evil", "HGPLAIN": "1", "LANG": "C"})
    if repo is None:
        assert not d.allowed and "not a Mercurial repository" in d.reason
        return
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/hg", "-R", repo, "serve", "--stdio")
    # no configuration the user can write: not ~/.hgrc, not the repository's .hg/hgrc
    assert d.env["HGRCPATH"] == "/etc/mercurial/hgrc:/etc/mercurial/hgrc.d"
    assert d.env["HGRCSKIPREPO"] == "1" and d.env["PYTHONNOUSERSITE"] == "1"
    assert "HGPLAIN" not in d.env and d.env["LANG"] == "C"


def test_hg_pins_win_over_the_sections_env() -> None:
    text = HG.replace("pass_env = LANG", "env = HGRCPATH=/home/alice/.hgrc, PYTHONNOUSERSITE=")
    d = _new("hg -R /srv/hg/r serve --stdio", text=text)
    assert d.allowed, d.reason
    assert d.env["HGRCPATH"].startswith("/etc/") and d.env["PYTHONNOUSERSITE"] == "1"


@pytest.mark.parametrize("command", [
    "hg -R /srv/hg/r debugshell",                        # ran Python under `any`
    "hg -R x debugshell",
    "hg --config hooks.pre-serve=id -R /srv/hg/r serve --stdio",
    "hg -R /srv/hg/r --config hooks.x=id serve --stdio",
    "hg -R /srv/hg/r serve --stdio --config extensions.x=/home/alice/x.py",
    "hg -R /srv/hg/r serve --stdio --debugger",
    "hg --debugger -R /srv/hg/r serve --stdio",
    "hg -R --debugger serve --stdio",
    "hg -R --config=ui.debugger=1 serve --stdio",
    "hg -R /srv/hg/r serve",                              # a web server
    "hg -R /srv/hg/r serve --stdio -p 8000",
    "hg -R /srv/hg/r serve --cmdserver pipe",
    "hg serve --stdio",
    "hg -R/srv/hg/r serve --stdio",
    "hg --repo /srv/hg/r serve --stdio",                  # hg's abbreviations: not ours
    "hg --cwd /srv/hg/r serve --stdio",
    "hg -R /etc serve --stdio",
    "hg -R /srv/hg/../../etc serve --stdio",
    "hg -R ~bob/r serve --stdio",
    "hg -R bundle:/srv/hg/r+/home/alice/b.hg serve --stdio",
    "hg -R union:/srv/hg/r+/home/alice/own serve --stdio",
    "hg -R ssh://h//srv/hg/r serve --stdio",
    "hg -R shared serve --stdio",                         # store elsewhere
    "hg -R link serve --stdio",
    "hg -R plain serve --stdio",
    "hg -R /srv/hg/r pull /srv/hg/r",
])
def test_hg_refusals(command: str) -> None:
    d = _new(command)
    assert not d.allowed, d.argv
    assert d.argv == () and d.env == {}


@pytest.mark.parametrize(("path", "facts"), [
    ("/etc/mercurial", USER_DIR), ("/etc/mercurial/hgrc", USER_FILE),
    ("/etc/mercurial/hgrc.d", GROUP_DIR), ("/etc/mercurial/hgrc.d/admin.rc", USER_FILE),
    ("/etc/mercurial/hgrc.d/x.rc", LINK),
])
def test_hg_refuses_a_system_config_the_user_controls(path: str, facts: PathFacts) -> None:
    d = _new("hg -R /srv/hg/r serve --stdio", _hg_fs().add(path, facts))
    assert not d.allowed and "Mercurial system config" in d.reason


@pytest.mark.parametrize(("command", "argv"), [
    ("rdiff-backup server", ("server", "--restrict-path", HOME)),
    ("rdiff-backup --server", ("--server", "--restrict", HOME)),
    ("rdiff-backup --terminal-verbosity 3 server",
     ("--terminal-verbosity", "3", "server", "--restrict-path", HOME)),
    ("rdiff-backup --tempdir=~/tmp -v 5 --api-version 201 server",
     ("--tempdir", f"{HOME}/tmp", "-v", "5", "--api-version", "201", "server",
      "--restrict-path", HOME)),
    ("rdiff-backup server --restrict-path /srv/hg/b --restrict-mode update-only",
     ("server", "--restrict-path", "/srv/hg/b", "--restrict-mode", "update-only")),
    ("rdiff-backup server --restrict-mode=read-only",
     ("server", "--restrict-mode", "read-only", "--restrict-path", HOME)),
    ("rdiff-backup --server --restrict-update-only ~/b",
     ("--server", "--restrict-update-only", f"{HOME}/b")),
])
def test_rdiff_backup_server_restricted(command: str, argv: tuple[str, ...]) -> None:
    d = _new(command)
    assert d.allowed, d.reason
    assert d.argv == ("/usr/bin/rdiff-backup", *argv)
    assert d.env["PYTHONNOUSERSITE"] == "1"


@pytest.mark.parametrize("command", [
    "rdiff-backup --remote-schema 'sh -c id' server",
    "rdiff-backup server --remote-schema=x",
    "rdiff-backup server --debug",                          # rpdb over netcat
    "rdiff-backup backup /home/alice/x h::/y",
    "rdiff-backup restore /etc /home/alice/x",
    "rdiff-backup",
    "rdiff-backup server --restrict-path /",
    "rdiff-backup server --restrict-path /srv/hg/../../etc",
    "rdiff-backup --server --restrict /etc",
    "rdiff-backup server --restrict /home/alice",           # the old name, new form
    "rdiff-backup --server --restrict-path /home/alice",    # the new name, old form
    "rdiff-backup server --restrict-mode all",
    "rdiff-backup server --restrict-mode override",
    "rdiff-backup --tempdir /tmp server",
    "rdiff-backup --terminal-verbosity 10 server",
    "rdiff-backup -v x server",
    "rdiff-backup server server",
    "rdiff-backup server --server",
    "rdiff-backup server -- x",
    "rdiff-backup --new server",
    "rdiff-backup --current-time 1 server",
    "rdiff-backup --server --terminal-verbosity 3",         # globals before the form only
])
def test_rdiff_backup_refusals(command: str) -> None:
    assert not _new(command).allowed


def test_rdiff_backup_needs_its_rule_named() -> None:
    """Not chosen by basename: its server unpickles what the client sends (lsh.md)."""
    with pytest.raises(ConfigError) as info:
        parse_lsh("[default]\nprograms = /usr/bin/rdiff-backup\n", "t.ini")
    assert "/usr/bin/rdiff-backup has no rule" in info.value.problems[0]


@pytest.mark.parametrize(("command", "ok"), [
    ("unison -server", True),
    ("unison -server __new-rpc-mode", True),                 # unison 2.52's client
    ("/usr/bin/unison -server", True),
    ("unison", False),
    ("unison -server -sshcmd sh", False),
    ("unison -sshcmd 'sh -c id' -server", False),
    ("unison -server -servercmd sh", False),
    ("unison -server --rsh=sh", False),
    ("unison -server -e sh", False),
    ("unison -socket 9999", False),
    ("unison /etc ssh://h//tmp", False),
    ("unison -server -ui text", False),
    ("unison -server __new-rpc-mode x", False),
    ("unison -doc running", False),
])
def test_unison_server_only(command: str, ok: bool) -> None:
    d = _new(command, env={"UNISON": "/home/alice/u", "UNISONLOCALHOSTNAME": "x"})
    assert d.allowed == ok, d.reason
    if ok:
        assert d.argv[1:] == tuple(split_command(command)[1:])
        assert "UNISON" not in d.env and "UNISONLOCALHOSTNAME" not in d.env


def test_borg_gets_no_user_site() -> None:
    d = _new("borg serve")
    assert d.allowed and d.env["PYTHONNOUSERSITE"] == "1"


@pytest.mark.parametrize("line", ["pass_env = HGRCPATH", "pass_env = HG*",
                                  "pass_env = UNISON", "pass_env = UNI*"])
def test_hg_and_unison_variables_never_pass(line: str) -> None:
    with pytest.raises(ConfigError):
        parse_lsh(f"[default]\n{line}\n", "t.ini")
