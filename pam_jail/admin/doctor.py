"""`pam-jail doctor [USER]`: is the whole wiring on this host right, and what to fix.

Every check prints one line `ok`, `warn` or `FAIL` with what was seen and, when it is not
ok, the fix. The checks, in order:

  doctor     run as root (else the rest is incomplete, and says so)
  config     /etc/pam_jail/jails.ini root-owned (file and every directory above it) and
             valid (config.check_config_file, config.load_config)
  pam        the PAM stack of --service (/etc/pam.d/SERVICE, or --pam-file), @include and
             include/substack followed: `account` and `session` lines for pam_python.so
             with pam_jail_pam.py, control `required`; nothing `sufficient` or jumping
             over them (the pam_succeed_if guard of etc/pam.d/pam_jail aside); the
             session modules after pam_jail's line (pam.order); typos: unknown control
             words, misspelt module names, missing required modules (pam.syntax);
             pam_python.so found and loadable; the module and its code root-owned
  sshd       `sshd -T -C user=USER,host=localhost,addr=127.0.0.1` (-f --sshd-config):
             UsePAM yes for PAM-path users; the Match settings of `pam-jail sshd-config`
             (DisableForwarding yes, PermitUserRC no, ...; for mode sftp ChrootDirectory
             and ForceCommand internal-sftp; for mode shell ForceCommand pam-jail-shell or
             no internal-sftp; mode pam's ForceCommand pam-jail-lsh is written, not
             required); PermitUserEnvironment no, no loader variables in
             AcceptEnv (sshd.environment): the PAM module's own rule, pam_jail.login.sshd_rules
  logrelay   mode pam: a `pam-jail logrelay` process (warn: jails' syslog lines lost)
  userns     for mode shell: user.max_user_namespaces > 0 and a real unshare of user,
             mount, PID, IPC, UTS and net namespaces by a child running as the user
  user       the user's jail as pam_jail resolves it; the login shell is the mode's
             jailing shell (a FAIL otherwise; the fix is jailuser, never another shell)
  jail       safety.check_jail on the jail root (the login path's own check); mode pam:
             JAIL/dev/pts for the private devpts; `network = yes` (modes pam and shell):
             the kernel's Landlock ABI scopes abstract unix sockets and signals (>= 6),
             else every login of the jail is refused (jail.network FAIL); warn when
             `seccomp = no` or seccomp_allow lets NETLINK_SOCK_DIAG through
  lsh        for mode shell: JAIL/etc/pam_jail/lsh.ini readable under pam-jail-shell's
             rule and valid (policy.parse_lsh); the user's section allows something
  host       the account beyond the login (pam_jail.admin.doctor_host): /etc/shells, the
             passwd home host services read (user.home), the local MTA (mail), cron and
             at jobs (user.jobs), the stacks of cron, atd, su, su-l, runuser, runuser-l
             and login (pam.SERVICE), pam_env user_readenv=1 (pam.env)

Without USER every user of the passwd database that resolves to a jail is checked.
Nothing is changed on the host. Pure parts (PAM file parsing, judging entries) take
plain data; the rest reads files or runs sshd -T / unshare in a child.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TextIO

from pam_jail.login.config import DEFAULT_PATH, Config, check_config_file
from pam_jail.login.config_file import load_config
from pam_jail.login.errors import ConfigError, Denied, PamJailError
from pam_jail.login.log import escape
from pam_jail.login.resolve import Identity, Jail, identity_from_passwd, resolve
from pam_jail.login.safety import check_jail, check_path_chain

OK, WARN, FAIL = "ok", "warn", "fail"
SSHD = "/usr/sbin/sshd"
PAM_DIR = "/etc/pam.d"
PAM_MODULE_FILE = "pam_jail_pam.py"
PAM_PYTHON = "pam_python.so"
PAM_PYTHON_DIRS = ("/lib/security", "/lib/x86_64-linux-gnu/security",
                   "/usr/lib/security", "/usr/lib/x86_64-linux-gnu/security")
LSH_INSIDE = "/etc/pam_jail/lsh.ini"
SNIPPET = "/etc/ssh/sshd_config.d/pam_jail.conf"
MAX_INCLUDE_DEPTH = 16
# The directory that holds this package: /usr/lib/pam_jail (the .deb),
# /usr/local/lib/pam_jail (scripts/install) or a source tree.
LIBDIR = posixpath.dirname(posixpath.dirname(posixpath.dirname(posixpath.abspath(__file__))))


@dataclass
class Check:
    """One line of the report."""

    name: str                     # e.g. "pam.session", "sshd.match"
    status: str                   # ok / warn / fail
    message: str
    fix: str = ""
    details: list[str] = field(default_factory=list)
    user: str = ""                # the user it concerns, when there is one


# --------------------------------------------------------------------------- PAM files


@dataclass
class PamEntry:
    """One rule of a PAM stack, after includes were followed."""

    file: str
    line: int
    type: str                     # auth account password session (without a leading -)
    control: str                  # required, requisite, optional, sufficient, [...]
    module: str
    args: list[str]


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines without comments, backslash continuations joined; (first line number, text)."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = raw.split("#", 1)[0].rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _tokens(line: str) -> list[str]:
    """Blank-separated words; a `[...]` control is one word even with blanks inside."""
    words: list[str] = []
    rest = line.strip()
    while rest:
        if rest.startswith("["):
            end = rest.find("]")
            end = len(rest) - 1 if end < 0 else end
            words.append(" ".join(rest[: end + 1].split()))
            rest = rest[end + 1:].strip()
            continue
        word, _, rest = rest.partition(" ")
        word, _, tail = word.partition("\t")
        rest = (tail + " " + rest).strip()
        if word:
            words.append(word)
    return words


def _include_path(name: str, current: str) -> str:
    """Linux-PAM reads @include names from the config directory: the including file's
    directory first (so a --pam-file elsewhere can include its neighbours), then
    /etc/pam.d."""
    if name.startswith("/"):
        return name
    local = posixpath.join(posixpath.dirname(current), name)
    return local if os.path.exists(local) else posixpath.join(PAM_DIR, name)


def parse_pam_stack(path: str, only_type: str | None = None, depth: int = 0,
                    problems: list[str] | None = None) -> tuple[list[PamEntry], list[str]]:
    """Every rule of the stack in `path`, in order, following `@include FILE` and the
    `include` / `substack` controls. Returns (entries, problems reading the files)."""
    problems = [] if problems is None else problems
    entries: list[PamEntry] = []
    if depth > MAX_INCLUDE_DEPTH:
        problems.append(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
        return entries, problems
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as err:
        problems.append(f"read {path}: {err.strerror}")
        return entries, problems
    for number, line in _logical_lines(text):
        words = _tokens(line)
        if not words:
            continue
        if words[0] == "@include":
            if len(words) >= 2:
                sub, _ = parse_pam_stack(_include_path(words[1], path), only_type, depth + 1,
                                         problems)
                entries += sub
            continue
        if len(words) < 3:
            problems.append(f"{path}:{number}: incomplete rule: {line.strip()}")
            continue
        kind = words[0].lstrip("-").lower()
        if only_type is not None and kind != only_type:
            continue
        control = words[1]
        if control in ("include", "substack"):
            sub, _ = parse_pam_stack(_include_path(words[2], path), kind, depth + 1,
                                     problems)
            entries += sub
            continue
        entries.append(PamEntry(path, number, kind, control, words[2], words[3:]))
    return entries, problems


def is_jail_entry(entry: PamEntry) -> bool:
    return posixpath.basename(entry.module) == PAM_PYTHON and bool(entry.args) and \
        posixpath.basename(entry.args[0]) == PAM_MODULE_FILE


def is_guard(entry: PamEntry) -> bool:
    """etc/pam.d/pam_jail's guard: `[success=1 default=ignore] pam_succeed_if.so quiet
    shell notin A:B` where A:B are pam_jail's login shells. It skips pam_python only for
    users whose login shell is not pam_jail's: those shells refuse outside a jail, so
    the skip can never leave a jailed user unjailed."""
    if posixpath.basename(entry.module) != "pam_succeed_if.so":
        return False
    words = [a for a in entry.args if a not in ("quiet", "quiet_success", "quiet_fail",
                                                  "use_uid")]
    if len(words) != 3 or words[:2] != ["shell", "notin"]:
        return False
    shells = {posixpath.basename(p) for p in words[2].split(":")}
    return shells <= {"pam-jail-shell", "pam-jail-lsh"} and bool(shells)


# Session modules that fail, or act on the wrong files, when they run after pam_jail
# (inside the jail: its root, its /etc, its PID namespace).
FAILS_IN_JAIL = {
    "pam_limits.so": "reads /etc/security/limits.conf of the jail (a required line fails)",
    "pam_env.so": "reads /etc/environment and /etc/default/locale of the jail",
    "pam_mkhomedir.so": "forks a helper and creates the home inside the jail",
    "pam_systemd.so": "talks to logind through the jail's /run",
    "pam_lastlog.so": "writes the jail's /var/log/lastlog",
    "pam_exec.so": "runs its program inside the jail",
}


def judge_after_session(entries: Sequence[PamEntry], ours: PamEntry) -> list[Check]:
    """The session modules that follow pam_jail's line run inside the jail."""
    stack = [e for e in entries if e.type == "session"]
    after = stack[stack.index(ours) + 1:]
    where = f"{ours.file}:{ours.line}"
    failing = [(e, FAILS_IN_JAIL[posixpath.basename(e.module)]) for e in after
               if posixpath.basename(e.module) in FAILS_IN_JAIL]
    if failing:
        entry, why = failing[0]
        return [Check("pam.order", FAIL,
                      f"{entry.file}:{entry.line}: {entry.module} comes after pam_jail's "
                      f"session line ({where}) and so runs inside the jail: it {why}",
                      "put pam_jail's two session lines last in the file "
                      "(etc/pam.d/pam_jail)",
                      [f"{e.file}:{e.line}: {e.module}" for e, _ in failing])]
    if after:
        names = ", ".join(sorted({posixpath.basename(e.module) for e in after}))
        return [Check("pam.order", WARN,
                      f"{len(after)} session rule(s) after pam_jail's ({where}) run inside "
                      f"the jail: {names}", "put pam_jail's session lines last")]
    return [Check("pam.order", OK, f"{where}: pam_jail's session line is the last one")]


def skips_over(entry: PamEntry, distance: int) -> bool:
    """Can this rule, on success, end its stack or jump over the rule `distance` rules
    (of the same type) further down? `sufficient` ends it; `[success=done]` too;
    `[success=N]` jumps over the next N rules."""
    if entry.control == "sufficient":
        return True
    if entry.control.startswith("["):
        for item in entry.control.strip("[]").split():
            value, _, action = item.partition("=")
            if value != "success":
                continue
            if action == "done" or (action.isdigit() and int(action) >= distance):
                return True
    return False


def module_path() -> str:
    """The pam_jail_pam.py of this installation (for the fix lines)."""
    for libdir in (LIBDIR, "/usr/lib/pam_jail", "/usr/local/lib/pam_jail"):
        if os.path.isfile(f"{libdir}/{PAM_MODULE_FILE}"):
            return f"{libdir}/{PAM_MODULE_FILE}"
    return f"/usr/lib/pam_jail/{PAM_MODULE_FILE}"


def shell_entry_path() -> str:
    """The pam-jail-shell of this installation (for the fix lines)."""
    sbin = {"/usr/lib/pam_jail": "/usr/sbin", "/usr/local/lib/pam_jail": "/usr/local/sbin"}
    for candidate in (sbin.get(LIBDIR, ""), "/usr/sbin", "/usr/local/sbin"):
        if candidate and os.access(f"{candidate}/pam-jail-shell", os.X_OK):
            return f"{candidate}/pam-jail-shell"
    return "/usr/sbin/pam-jail-shell"


def judge_pam_stack(entries: Sequence[PamEntry], pam_file: str, needed: bool,
                    config_path: str) -> list[Check]:
    """The account and session rules of pam_jail in a parsed stack. `needed`: some
    user on this host goes through the PAM path (a missing line is then a failure)."""
    checks: list[Check] = []
    for kind in ("account", "session"):
        name = f"pam.{kind}"
        line = f"{kind}  required  pam_python.so {module_path()}"
        ours = [e for e in entries if e.type == kind and is_jail_entry(e)]
        if not ours:
            checks.append(Check(
                name, FAIL if needed else WARN,
                f"no `{kind} ... pam_python.so .../{PAM_MODULE_FILE}` line in {pam_file}"
                + ("" if needed else " (no jail with mode = pam needs it; mode shell "
                        "users then rest on their login shell alone: see user.shell)"),
                f"add the guard and `{line}` to {pam_file}: account after `@include "
                "common-account`, session last (etc/pam.d/pam_jail has the lines)"))
            continue
        entry = ours[0]
        where = f"{entry.file}:{entry.line}"
        if entry.control not in ("required", "requisite"):
            checks.append(Check(
                name, FAIL,
                f"{where}: control is `{entry.control}`: a failing jail would not refuse "
                "the login", f"change it to `{line}`"))
            continue
        stack = [e for e in entries if e.type == kind]
        here = stack.index(entry)
        skipping = [e for i, e in enumerate(stack[:here])
                    if skips_over(e, here - i) and not (is_guard(e) and i == here - 1)]
        if skipping:
            first = skipping[0]
            checks.append(Check(
                name, FAIL,
                f"{where}: `{first.control} {first.module}` at {first.file}:{first.line} "
                "comes first and can end the stack before pam_jail runs",
                f"move `{line}` above {first.file}:{first.line}"))
            continue
        problems: list[str] = []
        target = entry.args[0]
        if not target.startswith("/"):
            problems.append(f"{target}: not an absolute path")
        elif not os.path.isfile(target):
            problems.append(f"{target}: no such file")
        config = [a.partition("=")[2] for a in entry.args[1:] if a.startswith("config=")]
        if config and config[0] != config_path:
            checks.append(Check(
                f"{name}.config", WARN,
                f"{where}: the module reads config={config[0]}, this report read "
                f"{config_path}", f"run `pam-jail doctor --config {config[0]}`"))
        if problems:
            checks.append(Check(name, FAIL, f"{where}: {entry.control} {entry.module} "
                                f"{' '.join(entry.args)}: {'; '.join(problems)}",
                                f"point it at {module_path()}", problems))
            continue
        checks.append(Check(name, OK, f"{where}: {entry.control} {entry.module} "
                            f"{' '.join(entry.args)}"))
        if kind == "session":
            checks += judge_after_session(entries, entry)
    return checks


def find_pam_python(entries: Sequence[PamEntry]) -> str | None:
    for entry in entries:
        if is_jail_entry(entry) and entry.module.startswith("/"):
            return entry.module if os.path.exists(entry.module) else None
    for directory in PAM_PYTHON_DIRS:
        if os.path.exists(f"{directory}/{PAM_PYTHON}"):
            return f"{directory}/{PAM_PYTHON}"
    return None


def judge_root_tree(top: str) -> list[str]:
    """`top` and everything below it: root-owned, not group/other-writable (code that
    runs as root inside sshd must not be replaceable by anyone else)."""
    problems = check_path_chain(posixpath.dirname(top))
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [dirpath, *(posixpath.join(dirpath, f) for f in filenames)]:
            try:
                st = os.lstat(name)
            except OSError as err:
                problems.append(f"{name}: {err.strerror}")
                continue
            if st.st_uid != 0:
                problems.append(f"{name}: owned by uid {st.st_uid}, not root")
            elif st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
                problems.append(f"{name}: writable by group or other "
                                f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return problems


CONTROLS = ("required", "requisite", "sufficient", "optional", "include", "substack")


def _module_found(module: str) -> bool:
    if module.startswith("/"):
        return os.path.exists(module)
    return any(os.path.exists(f"{d}/{module}") for d in PAM_PYTHON_DIRS)


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (for misspelt module names)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def judge_pam_syntax(entries: Sequence[PamEntry]) -> list[Check]:
    """Typos that turn a pam.d line into something else: an unknown control word, a
    misspelt pam_python.so or pam_jail_pam.py, a required module that does not exist."""
    problems: list[str] = []
    for e in entries:
        where = f"{e.file}:{e.line}"
        base = posixpath.basename(e.module)
        if not e.control.startswith("[") and e.control not in CONTROLS:
            problems.append(f"{where}: `{e.control}` is not a PAM control ({', '.join(CONTROLS)}"
                            " or [value=action ...])")
        if base != PAM_PYTHON and ("pyth" in base or _distance(base, PAM_PYTHON) <= 2):
            problems.append(f"{where}: module {e.module}: a misspelt {PAM_PYTHON}?")
        names_ours = [a for a in e.args if "pam_jail" in a and a.endswith(".py")]
        if names_ours and base != PAM_PYTHON:
            problems.append(f"{where}: names {names_ours[0]} but loads {e.module}, not "
                            f"{PAM_PYTHON}")
        if base == PAM_PYTHON and e.args and posixpath.basename(e.args[0]) != \
                PAM_MODULE_FILE and ("jail" in e.args[0] or
                                     _distance(posixpath.basename(e.args[0]),
                                               PAM_MODULE_FILE) <= 2):
            problems.append(f"{where}: {e.args[0]}: a misspelt {PAM_MODULE_FILE}?")
        if e.control in ("required", "requisite") and not _module_found(e.module):
            problems.append(f"{where}: {e.control} module {e.module} not found: libpam "
                            "fails this stack for every user")
    if problems:
        return [Check("pam.syntax", FAIL, problems[0] + (f" (+{len(problems) - 1} more)"
                                                         if len(problems) > 1 else ""),
                      "correct the line (etc/pam.d/pam_jail has pam_jail's)", problems)]
    return [Check("pam.syntax", OK, "controls and module names look right")]


def pam_python_loads(path: str) -> str | None:
    """Why libpam could not load pam_python.so (None: it can): dlopen it in a child."""
    import subprocess

    proc = subprocess.run(["/usr/bin/python3", "-I", "-c", "import ctypes, sys; "
                           "ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)", path],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def check_index(path: str, cfg: Config) -> Check:
    """jails.ini's lookup index (config_index): current, or logins parse the whole file."""
    from pam_jail.login.config_index import config_for, index_path

    size = len(cfg.users) + len(cfg.groups)
    if config_for(path, "root", ()) is not None:
        return Check("config.index", OK, f"{index_path(path)} is current: a login reads a "
                     f"few lines of it, not {size} mapping(s)")
    return Check("config.index", WARN if size > 100 else OK,
                 f"{index_path(path)} is missing or older than {path} (edited without "
                 f"`pam-jail validate`): every login parses all {size} mapping(s)",
                 f"pam-jail validate --config {path}")


def check_bundles() -> Check:
    """The login bundles of the install logins run (pam_jail.install_dirs: this one, or
    scripts/install's from a source tree) (pam_jail.login.preload): current, or every
    login of that entry imports its modules one by one."""
    from pam_jail import install_dirs
    from pam_jail.admin.bundle import BUNDLES
    from pam_jail.login import read_bundle

    login = f"{install_dirs()[0]}/pam_jail/login"
    unused, left_out = [], []
    for name in BUNDLES:
        entries, why = read_bundle(name, login)
        if entries is None:
            unused.append(f"{name}: {why}")
        elif why:
            left_out.append(f"{name}: {why}")
    fix = ("dpkg-reconfigure pam-jail (the Debian package writes them), or scripts/install "
           "again (a source install)")
    if unused:
        return Check("login.bundle", WARN, f"{unused[0]}: its logins import their modules "
                     "one by one (about 1 ms slower each)", fix, unused)
    if left_out:
        return Check("login.bundle", OK, f"login bundles current; changed since (a python3 "
                     f"update), imported from their files: {'; '.join(left_out)}", fix)
    return Check("login.bundle", OK, f"login bundles current ({', '.join(BUNDLES)}): a "
                 "login reads its modules from one file")


def check_logrelay() -> Check:
    """Mode pam: inside the jail /dev/log is the jail's; only the relay carries it to the
    host's syslog (sshd's own session lines, pam-jail-lsh's refusals)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"logrelay" in argv and any(a.endswith(b"pam-jail") for a in argv):
            return Check("logrelay", OK, f"the log relay runs (pid {name})")
    return Check("logrelay", WARN, "no `pam-jail logrelay` runs: what PAM-path jails send to "
                 "/dev/log (sshd's session lines, pam-jail-lsh's refusals) is lost",
                 "systemctl enable --now pam-jail-logrelay; without systemd: update-rc.d "
                 "pam-jail-logrelay defaults && service pam-jail-logrelay start (or run "
                 "`pam-jail logrelay`, which detaches)")


def check_pam(pam_file: str, needed: bool, config_path: str) -> list[Check]:
    entries, problems = parse_pam_stack(pam_file)
    checks: list[Check] = judge_pam_syntax(entries) if entries else []
    if problems:
        checks.append(Check("pam.file", FAIL if needed else WARN, "; ".join(problems[:3]),
                            f"create {pam_file} or name the right one with --pam-file "
                            "or --service", problems))
    checks += judge_pam_stack(entries, pam_file, needed, config_path)
    if not any(is_jail_entry(e) for e in entries):
        return checks
    found = find_pam_python(entries)
    if found is None:
        checks.append(Check("pam.module", FAIL, f"{PAM_PYTHON} not found",
                            "apt-get install libpam-python"))
    else:
        why = pam_python_loads(found)
        if why:
            checks.append(Check("pam.module", FAIL, f"{found} cannot be loaded: {why}",
                                "apt-get install --reinstall libpam-python python3.11"))
        else:
            checks.append(Check("pam.module", OK, f"{found} loads"))
    code = [judge_root_tree(e.args[0]) for e in entries
            if is_jail_entry(e) and os.path.isfile(e.args[0])][:1]
    module_dir = [posixpath.dirname(e.args[0]) for e in entries
                  if is_jail_entry(e) and os.path.isfile(e.args[0])][:1]
    if module_dir and os.path.isdir(f"{module_dir[0]}/pam_jail"):
        code.append(judge_root_tree(f"{module_dir[0]}/pam_jail"))
    bad = [p for problems_ in code for p in problems_]
    if bad:
        checks.append(Check("files.module", FAIL,
                            "code that pam_python.so runs as root is not root-only: "
                            + bad[0], "chown -R root:root and chmod -R go-w it", bad))
    elif code:
        checks.append(Check("files.module", OK,
                            f"{module_dir[0]}: module and package root-owned, not writable "
                            "by others"))
    return checks


# --------------------------------------------------------------------------- sshd


def sshd_effective(user: str, sshd: str, sshd_config: str | None) -> dict[str, list[str]]:
    """`sshd -T -C user=USER,host=localhost,addr=127.0.0.1` as keyword -> values.
    Raises PamJailError when sshd refuses."""
    from pam_jail.login.sshd_rules import parse_sshd_T

    argv = [sshd, "-T"] + (["-f", sshd_config] if sshd_config else []) + \
        ["-C", f"user={user},host=localhost,addr=127.0.0.1"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        raise PamJailError(f"run {sshd}: {err.strerror}") from None
    if proc.returncode != 0:
        raise PamJailError(f"{' '.join(argv)}: {proc.stderr.strip() or 'failed'}")
    return parse_sshd_T(proc.stdout)


def judge_sshd(user: str, jail: Jail, effective: dict[str, list[str]],
               sshd_config: str) -> list[Check]:
    """The effective settings for one jailed user against what its jail needs. Pure."""

    checks: list[Check] = []
    from pam_jail.admin.sshd_config import reload_command

    regen = (f"run `pam-jail sshd-config -o {SNIPPET} --check` and `{reload_command()}`; "
             f"{sshd_config} must include it before any other Match block")
    if jail.mode == "pam":
        got = effective.get("usepam", ["(unset)"])
        if got != ["yes"]:
            checks.append(Check("sshd.usepam", FAIL, f"UsePAM is {' '.join(got)}: the PAM "
                                "session module never runs for sshd logins",
                                f"set `UsePAM yes` in {sshd_config}", user=user))
        else:
            checks.append(Check("sshd.usepam", OK, "UsePAM yes", user=user))
    from pam_jail.login.sshd_rules import compare_effective

    problems = compare_effective(jail.mode, jail.root, effective)   # the PAM module's rule
    subsystem = [p for p in problems if p.startswith("subsystem ")]
    environment = [p for p in problems if p.startswith(("acceptenv ", "permituserenvironment"))]
    wrong = [p for p in problems if p not in subsystem and p not in environment]
    if wrong:
        checks.append(Check("sshd.match", FAIL,
                            f"sshd -T for {user}: {wrong[0]}"
                            + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""),
                            regen, wrong, user=user))
    else:
        what = "chroot + internal-sftp + " if jail.mode == "sftp" else ""
        checks.append(Check("sshd.match", OK, f"sshd -T for {user}: {what}forwarding, "
                            "tunnels and ~/.ssh/rc off", user=user))
    if environment:
        checks.append(Check(
            "sshd.environment", FAIL, f"sshd -T for {user}: {environment[0]}",
            f"set `PermitUserEnvironment no` and keep LD_*, GCONV_PATH and the like out of "
            f"AcceptEnv in {sshd_config} (the PAM module refuses such logins)",
            environment, user=user))
    else:
        checks.append(Check("sshd.environment", OK, "no user environment file, no loader "
                            "variables accepted", user=user))
    if jail.mode == "shell":
        if subsystem:
            checks.append(Check(
                "sshd.subsystem", FAIL,
                f"sshd -T for {user}: {subsystem[0]}",
                f"{regen} (its ForceCommand pam-jail-shell routes subsystems through the "
                "login shell), or set `Subsystem sftp /usr/lib/openssh/sftp-server`",
                user=user))
        else:
            checks.append(Check("sshd.subsystem", OK, "no internal-sftp outside the login "
                                "shell", user=user))
    return checks


# --------------------------------------------------------------------------- userns


def check_userns(uid: int = 65534, gid: int = 65534) -> Check:
    """Can a process running as uid/gid create the namespaces pam-jail-shell needs?
    Reads user.max_user_namespaces, then really unshares in a child (util-linux
    unshare, as that user)."""
    fix = ("sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone"
           "=1 where it exists; persist it in /etc/sysctl.d/), or use mode = pam")
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            limit = int(fh.read())
    except (OSError, ValueError):
        return Check("userns", FAIL, "user namespaces are not available on this kernel", fix)
    if limit <= 0:
        return Check("userns", FAIL, f"user.max_user_namespaces = {limit}: pam-jail-shell "
                     "cannot confine", fix)
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    argv = [unshare, "--user", "--mount", "--pid", "--fork", "--ipc", "--uts", "--net",
            "--", "/bin/true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              user=uid, group=gid, extra_groups=[], cwd="/",
                              env={"PATH": "/usr/bin:/bin"})
    except OSError as err:
        return Check("userns", FAIL, f"run {unshare} as uid {uid}: {err.strerror}",
                     "apt-get install util-linux")
    if proc.returncode != 0:
        return Check("userns", FAIL, f"unshare as uid {uid} failed: "
                     f"{proc.stderr.strip() or f'exit {proc.returncode}'}", fix)
    return Check("userns", OK, f"user.max_user_namespaces = {limit}; uid {uid} can "
                 "unshare user, mount, PID, IPC, UTS and net namespaces")


# --------------------------------------------------------------------------- per user


def check_shell(ident: Identity, jail: Jail) -> Check:
    """The login shell must be the mode's jailing shell (it refuses to run outside the
    jail: a missing PAM line then refuses instead of giving a host shell); never is
    another shell advised."""
    from pam_jail.login.resolve import JAILING_SHELLS, is_jailing_shell

    shell = ident.shell
    fix = jailuser_fix(ident.name, jail.root) + " (it sets the mode's shell)"
    if not is_jailing_shell(jail.mode, shell):
        wanted = " or ".join(JAILING_SHELLS.get(jail.mode, ()))
        return Check("user.shell", FAIL, f"login shell {shell} of {ident.name} would run "
                     f"outside jail {jail.name} (mode {jail.mode} needs {wanted}): "
                     f"{ident.name} is NOT jailed where the pam.d guard lets the login "
                     "through to it; refused where the PAM module sees it", fix,
                     user=ident.name)
    if not os.access(shell, os.X_OK):
        return Check("user.shell", FAIL, f"login shell {shell} is not an executable file",
                     "apt-get install --reinstall pam-jail (or scripts/install)",
                     user=ident.name)
    if jail.mode == "pam":
        inside = jail.root.rstrip("/") + shell
        if not os.path.lexists(inside):
            return Check("user.shell", FAIL, f"login shell {shell} is not in jail "
                         f"{jail.name}: the service execs it inside the jail",
                         f"pam-jail init -j {jail.root} lsh", user=ident.name)
    return Check("user.shell", OK, f"login shell {shell} (mode {jail.mode}: it refuses to "
                 "run outside the jail)", user=ident.name)


def jailuser_fix(user: str, root: str) -> str:
    """The command that jails `user` in `root`: with --ldif for a directory user (LDAP:
    usermod cannot change it; pam_jail/admin/directory.py)."""
    from pam_jail.admin.directory import is_local

    if is_local(user):
        return f"pam-jail jailuser {user} -j {root}"
    return (f"pam-jail jailuser {user} -j {root} --ldif {user}.ldif, then apply "
            f"{user}.ldif to the directory (ldapmodify): {user} is a directory user")


def check_jail_home(ident: Identity, jail: Jail) -> Check:
    """The home the login enters inside the jail exists (else every login is refused
    at `chdir`)."""
    inside = jail.root.rstrip("/") + jail.home
    if not os.path.isdir(inside):
        return Check("user.jailhome", FAIL, f"{ident.name}'s home {jail.home} is not a "
                     f"directory in jail {jail.name} ({inside}): every login is refused "
                     "(chdir)", jailuser_fix(ident.name, jail.root), user=ident.name)
    return Check("user.jailhome", OK, f"{ident.name}'s home {jail.home} exists in jail "
                 f"{jail.name}", user=ident.name)


def check_devpts(jail: Jail) -> Check | None:
    """Mode pam with devpts = yes: the PAM module mounts a devpts on JAIL/dev/pts; without
    the directory every login of the jail fails."""
    if jail.mode != "pam" or not jail.flag("devpts", True):
        return None
    if os.path.isdir(f"{jail.root}/dev/pts"):
        return Check("jail.devpts", OK, f"jail {jail.name}: dev/pts for the private devpts")
    return Check("jail.devpts", FAIL, f"jail {jail.name}: no {jail.root}/dev/pts: every "
                 "mode-pam login fails (the PAM module mounts a devpts there)",
                 f"pam-jail init -j {jail.root} ptys, or devpts = no for the jail")


def judge_network(jail: Jail, abi: int) -> Check | None:
    """Pure: a jail with `network = yes` (modes pam and shell: mode sftp runs only
    internal-sftp, which opens no socket, with forwarding off) on a kernel of Landlock
    ABI `abi`: the login path's own rule (confine.scope_decision)."""
    from pam_jail.login.confine import scope_decision
    from pam_jail.login.syscalls import from_options

    if not jail.flag("network") or jail.mode == "sftp":
        return None
    _scoped, refusal = scope_decision(abi, True)
    if refusal:
        return Check("jail.network", FAIL, f"jail {jail.name}: {refusal}: every login of the "
                     "jail is refused", f"network = no for jail {jail.name}, or boot a kernel "
                     ">= 6.12 with landlock in its lsm= list")
    allowed = from_options(jail.options)
    if allowed is None or {"sockets", "sock_diag"} & set(allowed):
        return Check("jail.network", WARN, f"jail {jail.name}: network = yes with "
                     f"{'seccomp = no' if allowed is None else 'seccomp_allow of sock_diag'}:"
                     " NETLINK_SOCK_DIAG lists the host's sockets and every other session's",
                     f"seccomp = yes and no sockets/sock_diag in seccomp_allow for jail "
                     f"{jail.name}")
    return Check("jail.network", OK, f"jail {jail.name}: network = yes, Landlock ABI {abi} "
                 "scopes abstract unix sockets and signals to each session")


def check_lsh(ident: Identity, jail: Jail) -> list[Check]:
    """The allow-list as pam-jail-shell will read it inside the jail."""
    from pam_jail.admin.explain import read_lsh
    from pam_jail.login.policy import parse_lsh, select_policy

    path = jail.root.rstrip("/") + LSH_INSIDE
    try:
        text = read_lsh(jail.root, ident.uid)
    except Denied as err:
        return [Check("lsh", FAIL, f"{err}: pam-jail-shell refuses every login",
                      f"install a root-owned 0644 {path} (example: "
                      "/etc/pam_jail/lsh.ini; reference: lsh.ini(5))", user=ident.name)]
    try:
        lsh = parse_lsh(text, path)
    except ConfigError as err:
        return [Check("lsh", FAIL, f"{err}: pam-jail-shell refuses every login",
                      f"fix {path} (lsh.ini(5)); check with `pam-jail explain "
                      f"{ident.name}`", err.problems, user=ident.name)]
    policy = select_policy(lsh, ident.name, [g for g in (ident.group, *ident.groups) if g])
    if not policy.programs and not policy.allow_shell:
        return [Check("lsh", WARN, f"{path}: section [{policy.name}] allows {ident.name} "
                      "nothing", f"add a [user:{ident.name}] or [default] section with "
                      "programs (lsh.ini(5))", user=ident.name)]
    return [Check("lsh", OK, f"{path}: section [{policy.name}] allows "
                  f"{len(policy.programs)} program(s)", user=ident.name)]


def check_plan(ident: Identity, jail: Jail, config_path: str) -> Check:
    """user.plan: the confinement a login of the user would get (explain prints the
    same), or FAIL when the jail's options give none (the login would be refused)."""
    from pam_jail.admin.explain import login_plan

    plan = login_plan(jail, ident, config_path)
    if not isinstance(plan, dict):
        return Check("user.plan", FAIL, f"{ident.name}: {plan}", "fix the jail's options "
                     "in jails.ini (`pam-jail validate`)", user=ident.name)
    lines = [str(line) for line in plan["lines"]]  # type: ignore[attr-defined]
    return Check("user.plan", OK, lines[0], details=lines[1:], user=ident.name)


def check_user(ident: Identity, cfg: Config, args: argparse.Namespace,
               seen_jails: set[str], seen_userns: list[str]) -> list[Check]:
    """The user's jail, login shell, jail safety, allow-list, user namespaces (once per
    run) and sshd's effective settings for the user."""
    try:
        jail = resolve(ident, cfg)
    except Denied as err:
        return [Check("user.jail", FAIL, str(err), "map the user in jails.ini or change "
                      "the login shell (docs/config.md)", user=ident.name)]
    if jail is None:
        status = OK if cfg.unmapped == "allow" else WARN
        return [Check("user.jail", status, f"{ident.name} is in no jail (unmapped = "
                      f"{cfg.unmapped}: {'not jailed' if status == OK else 'refused'})",
                      user=ident.name)]
    checks = [Check("user.jail", OK, f"{ident.name} -> jail {jail.name} root={jail.root} "
                    f"mode={jail.mode} (from {jail.source})", user=ident.name),
              check_shell(ident, jail)]
    if jail.mode != "sftp":                 # (sshd's ChrootDirectory: its own rules)
        checks.append(check_jail_home(ident, jail))
    checks.append(check_plan(ident, jail, args.config))
    if jail.root not in seen_jails:
        seen_jails.add(jail.root)
        problems = check_jail(jail.root)
        if problems:
            checks.append(Check("jail", FAIL, f"jail {jail.name} ({jail.root}) is unsafe: "
                                f"{problems[0]}"
                                + (f" (+{len(problems) - 1} more)" if len(problems) > 1
                                   else ""),
                                f"fix ownership/modes, then `pam-jail check {jail.name}`",
                                problems, user=ident.name))
        else:
            checks.append(Check("jail", OK, f"jail {jail.name} ({jail.root}): path and "
                                "system entries root-owned, not writable by others",
                                user=ident.name))
        devpts = check_devpts(jail)
        if devpts is not None:
            checks.append(devpts)
        from pam_jail.login.confine import landlock_abi

        network = judge_network(jail, landlock_abi())
        if network is not None:
            checks.append(network)
    if jail.mode == "shell":
        checks += check_lsh(ident, jail)
        if not seen_userns:
            seen_userns.append(ident.name)
            checks.append(check_userns(ident.uid, ident.gid))
    if args.sshd_available:
        try:
            effective = sshd_effective(ident.name, args.sshd, args.sshd_config)
        except PamJailError as err:
            checks.append(Check("sshd", FAIL, str(err), "fix the sshd config (sshd -t)",
                                user=ident.name))
        else:
            checks += judge_sshd(ident.name, jail, effective,
                                 args.sshd_config or "/etc/ssh/sshd_config")
    return checks


def _passwd_idents() -> list[Identity]:
    import pwd

    out = []
    for pw in pwd.getpwall():
        try:
            out.append(identity_from_passwd(pw.pw_name))
        except Denied:
            continue
    return out


# --------------------------------------------------------------------------- driver


def diagnose(args: argparse.Namespace) -> list[Check]:
    """Every check, in the order of the module docstring."""
    checks: list[Check] = []
    if os.geteuid() != 0:
        checks.append(Check("doctor.root", FAIL, "not run as root: sshd -T, the PAM files and "
                            "the jails cannot all be read; what follows is incomplete",
                            "run it as root: sudo pam-jail doctor"))
    problems = check_config_file(args.config)
    if problems:
        checks.append(Check("config", FAIL, f"{args.config} is not root-only: {problems[0]}",
                            f"chown root:root {args.config} and chmod go-w it and its "
                            "directories (pam_jail refuses every mapped login meanwhile)",
                            problems))
        return checks
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        checks.append(Check("config", FAIL, str(err), err.hint or "fix the file "
                            "(docs/config.md)", err.problems))
        return checks
    checks.append(Check("config", OK, f"{args.config}: root-owned, {len(cfg.jails)} jail(s)"))
    checks.append(check_index(args.config, cfg))
    checks.append(check_bundles())

    if args.user:
        try:
            idents = [identity_from_passwd(args.user)]
        except Denied as err:
            checks.append(Check("user", FAIL, str(err), "check the name (getent passwd)"))
            return checks
    else:
        idents = []
        for ident in _passwd_idents():
            try:
                if resolve(ident, cfg) is not None:
                    idents.append(ident)
            except Denied:
                idents.append(ident)
    modes = set()
    for ident in idents:
        try:
            jail = resolve(ident, cfg)
        except Denied:
            continue
        if jail is not None:
            modes.add(jail.mode)
    if not args.user:
        modes |= {j.mode for j in cfg.jails.values()}

    pam_file = args.pam_file or f"{args.pam_dir}/{args.service}"
    checks += check_pam(pam_file, "pam" in modes, args.config)
    if "pam" in modes:
        checks.append(check_logrelay())

    args.sshd_available = os.access(args.sshd, os.X_OK)
    if not args.sshd_available:
        status = FAIL if args.sshd_config else WARN
        checks.append(Check("sshd", status, f"{args.sshd} not found: sshd checks skipped",
                            "apt-get install openssh-server"))
    elif args.sshd_config and not os.path.isfile(args.sshd_config):
        checks.append(Check("sshd", FAIL, f"{args.sshd_config}: no such file",
                            "name the sshd config with --sshd-config"))
        args.sshd_available = False
    if not idents:
        checks.append(Check("user", OK, "no user on this host resolves to a jail"))
    seen: set[str] = set()
    seen_userns: list[str] = []
    for ident in idents:
        checks += check_user(ident, cfg, args, seen, seen_userns)
    checks += _host_checks(idents, cfg, args, pam_file)
    return checks


def _host_checks(idents: Sequence[Identity], cfg: Config, args: argparse.Namespace,
                 pam_file: str) -> list[Check]:
    """pam_jail.admin.doctor_host: /etc/shells, the passwd homes host services read, the MTA,
    cron/at jobs, the other PAM services, pam_env user_readenv."""
    from pam_jail.admin.account import user_gids
    from pam_jail.admin.doctor_host import JailedAccount, host_checks

    accounts = []
    for ident in idents:
        try:
            jail = resolve(ident, cfg)
        except Denied:
            continue
        if jail is None:
            continue
        accounts.append(JailedAccount(ident.name, ident.uid, user_gids(ident.name, ident.gid),
                                      ident.home, jail.root, jail.root.rstrip("/") + jail.home))
    return host_checks(accounts, args.pam_dir, pam_file, args.config, args.shells_file)


STATUS_WORD = {OK: "ok", WARN: "warn", FAIL: "FAIL"}


def print_text(checks: Sequence[Check], stream: TextIO) -> None:
    """One line a check (details and fix indented below), each through log.escape:
    messages name files and processes that jailed users made."""
    for check in checks:
        who = f"[{escape(check.user)}] " if check.user else ""
        print(f"{STATUS_WORD[check.status]:<5} {check.name:<15} {who}{escape(check.message)}",
              file=stream)
        for detail in check.details if check.status != OK else []:
            print(f"{'':<22}- {escape(detail)}", file=stream)
        if check.fix and check.status != OK:
            print(f"{'':<22}fix: {escape(check.fix)}", file=stream)
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    print(f"{len(checks)} checks: {fails} failed, {warns} warnings", file=stream)


DESCRIPTION = """\
Check the whole pam_jail wiring on this host and print what is wrong, with the fix for
each: jails.ini, the PAM stack of the service, sshd's effective config for the user,
user namespaces (mode shell), the user's login shell, the jail's safety and the
allow-list inside the jail. Nothing is changed."""

EPILOG = f"""\
checks (one line each: ok, warn or FAIL, then `fix:` for what is not ok):
  config          jails.ini and its directories root-owned, not group/other-writable;
                  the file valid
  pam.account     {PAM_DIR}/SERVICE (or --pam-file), @include / include / substack
  pam.session     followed: a `required` pam_python.so {PAM_MODULE_FILE} line, not
                  skipped by an earlier `sufficient`, [success=done] or [success=N] rule
  pam.module      pam_python.so installed (libpam-python)
  files.module    the module file and the pam_jail package it imports: root-owned,
                  not writable by others (pam_python.so runs them as root)
  user.jail       the user's jail as pam_jail resolves it
  user.plan       the confinement a login of the user gets (namespaces, limits, private
                  view, seccomp: precomputed or built), as `pam-jail explain` prints it;
                  FAIL when the jail's options give none
  user.shell      mode shell: the login shell is pam-jail-shell; mode pam: the login
                  shell exists inside the jail; mode sftp: it exists on the host
  jail            the login path's own safety check of the jail (pam-jail check for more)
  lsh             mode shell: JAIL{LSH_INSIDE} root-owned, not writable,
                  valid, and the user's section allows something
  userns          mode shell: user.max_user_namespaces > 0 and a real unshare of user,
                  mount, PID, IPC, UTS and net namespaces by a child running as the user
  sshd.usepam     mode pam: `UsePAM yes`
  sshd.match      sshd -T -C user=USER,host=localhost,addr=127.0.0.1 shows the Match
                  settings of `pam-jail sshd-config` (DisableForwarding yes, PermitUserRC
                  no, ...; mode sftp: ChrootDirectory and ForceCommand internal-sftp)
  sshd.subsystem  mode shell: no `Subsystem ... internal-sftp` (it would bypass the
                  login shell)
  shells          /etc/shells lists no pam_jail shell (else `su -s /bin/bash USER` and
                  chsh work: remove-shell; vsftpd/proftpd need no entry there)
  user.home       the passwd home is root's, not the user's, not inside the jail home,
                  and holds no .forward .procmailrc .mailfilter .qmail* .pam_environment
                  .k5login .rhosts .shosts but root's (host services read them)
  mail            a local MTA running .forward pipes, procmail or maildrop while some
                  user.home fails
  pam.SERVICE     cron, atd, su, su-l, runuser, runuser-l, login (--pam-dir): an existing
                  stack carries pam_jail's lines (`pam-jail pam-setup`)
  user.jobs       no crontab or at job of the user while cron's/atd's stack lacks them
  pam.env         pam_env.so user_readenv=1 in those stacks: FAIL while a user.home fails

Without USER, every user of the passwd database that resolves to a jail is checked, and
a missing PAM line fails if any jail has mode = pam. Warnings do not change the exit
status unless --strict is given.

examples:
  pam-jail doctor alice
  pam-jail doctor --service login alice
  pam-jail doctor --json --sshd-config /etc/ssh/sshd_config

exit status:
  0 every check ok (warnings allowed); 1 a check failed (or warned, with --strict);
  2 usage"""


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args)
    failed = any(c.status == FAIL or (args.strict and c.status == WARN) for c in checks)
    if args.json:
        json.dump({"ok": not failed, "user": args.user,
                   "pam_file": args.pam_file or f"{args.pam_dir}/{args.service}",
                   "sshd_config": args.sshd_config, "config": args.config,
                   "checks": [asdict(c) for c in checks]}, sys.stdout, indent=2)
        print()
    else:
        print_text(checks, sys.stdout)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor", help="check the whole wiring on this host and say how to fix it",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user", metavar="USER", nargs="?",
                        help="check this user (default: every jailed user)")
    parser.add_argument("--service", default="sshd", metavar="NAME",
                        help=f"PAM service whose stack is checked ({PAM_DIR}/NAME; "
                             "default sshd)")
    parser.add_argument("--pam-file", metavar="FILE",
                        help="check this PAM file instead of the service's")
    parser.add_argument("--sshd-config", metavar="FILE",
                        help="sshd config for `sshd -T` (passed as -f; default sshd's own, "
                             "/etc/ssh/sshd_config)")
    parser.add_argument("--pam-dir", metavar="DIR", default=PAM_DIR,
                        help=f"read the PAM stacks of --service and of cron, atd, su, su-l, "
                             f"runuser, runuser-l, login from DIR (default {PAM_DIR})")
    parser.add_argument("--sshd", metavar="PATH", default=SSHD, help=argparse.SUPPRESS)
    parser.add_argument("--shells-file", metavar="FILE", default="/etc/shells",
                        help=argparse.SUPPRESS)
    parser.add_argument("-c", "--config", metavar="FILE", default=DEFAULT_PATH,
                        help=f"jails file (default {DEFAULT_PATH})")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object: {"ok", "checks": [{"name", "status", '
                             '"message", "fix", "details", "user"}], ...}')
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.set_defaults(func=run)
