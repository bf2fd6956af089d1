"""`pam-jail jailuser`: put an existing host user into a jail (jailkit's jk_jailuser), and
take them out again with `--undo`.

What `jailuser -j JAIL USER` does, in order (each step is undone by `--undo USER`):
  1. checks: USER exists and is not uid 0; JAIL passes pam_jail.login.safety.check_jail; the new
     login shell is an executable file; a --jail-config mapping names a jail of jails.ini
     whose root is JAIL (else the login path would refuse the user: marker and mapping
     disagree);
  2. records the user's current shell and home in a root-owned state file
     /var/lib/pam_jail/jailuser/USER.json (written before anything else changes, so a
     crash part-way can still be undone);
  3. with --move, moves the current home directory to JAIL/home/USER (a rename on the same
     file system, else `cp -a` then removal of the old tree);
  4. a home stub JAIL/.home/USER (root's, holding only the link .ssh ->
     ../../home/USER/.ssh) and `usermod -s SHELL -d JAIL/./.home/USER USER` (never an
     edit of /etc/passwd by hand): the `/./` marker tells both login paths where the jail
     ends; the home inside the jail is /home/USER (JAIL/home/USER on the host), which no
     passwd entry names, so no host service (an MTA's .forward, pam_env's
     ~/.pam_environment) ever reads a file the user can write. A jailkit-style home
     JAIL/./home/USER is converted;
  5. JAIL/etc/passwd and JAIL/etc/group entries and the jail home (pam_jail.admin.build.add_users),
     then the home made private (moved, new, or already in the jail): 0750 when its group
     is the user's own private group, else 0700 (safety.private_home_mode): customers of
     a shared jail never read each other's homes;
  6. with --jail-config NAME, maps USER to NAME in jails.ini [users] (atomic rewrite,
     root:root 0644, the result validated by pam_jail.login.config before it replaces the file).
Re-running with the same jail is idempotent; the recorded old shell and home are kept.
A failure part-way undoes the steps already done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pam_jail.admin import account, build
from pam_jail.login import config, safety
from pam_jail.login import config_file as jails_file
from pam_jail.login.errors import BuildError, ConfigError, PamJailError, UnsafeJail, UsageError
from pam_jail.login.log import escape
from pam_jail.login.resolve import STUB_HOMES, is_stub_home
from pam_jail.login.safety import resolve_in_jail

STATE_DIR = "/var/lib/pam_jail/jailuser"
def _installed_shell(name: str = "pam-jail-shell") -> str:
    """A login shell beside this installed package (pam_jail.install_dirs)."""
    from pam_jail import install_dirs

    return os.path.join(install_dirs()[1], name)


DEFAULT_SHELL = _installed_shell()
# The login shell jailuser sets for each mode: one that refuses to run outside the jail
# (pam_jail.login.resolve.JAILING_SHELLS), so a missing PAM line can never give a host shell.
SHELL_OF_MODE = {"pam": _installed_shell("pam-jail-lsh"), "shell": DEFAULT_SHELL,
                 "sftp": DEFAULT_SHELL}
admin_lock = build.admin_lock
USERMOD = "/usr/sbin/usermod"
CP = "/usr/bin/cp"


@dataclass
class JailUserState:
    """What `jailuser` changed, so `--undo` can put it back (the state file's content)."""

    user: str
    uid: int
    jail: str
    old_shell: str
    old_home: str
    new_shell: str
    new_home: str  # the real passwd home: JAIL/./.home/USER (a root-owned stub)
    jail_home: str  # the home as seen inside the jail
    moved: bool = False  # the old home directory was moved into the jail
    config: str = ""  # jails.ini edited ("" if not)
    config_jail: str = ""  # the jail name mapped there
    config_previous: str | None = None  # the mapping it replaced (None: there was none)
    set_aside: list[list[str]] = field(default_factory=list)  # [kind, spool path, saved]
    created: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> JailUserState:
        try:
            return cls(**data)
        except TypeError as err:
            raise BuildError(f"read {source}: not a jailuser state file ({err})") from None


@dataclass
class JailUserReport:
    """The plan (dry run) or what was done."""

    user: str
    jail: str
    steps: list[str] = field(default_factory=list)     # what changes (or would)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # what is already right, kept
    dry_run: bool = False
    changed: bool = False       # steps were done (with dry_run: would be done)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- state file

def _state_path(user: str, state_dir: str) -> str:
    return f"{state_dir}/{user}.json"


def _check_state_dir(state_dir: str) -> None:
    problems = safety.check_path_chain(state_dir)
    if problems:
        raise UnsafeJail(f"read {state_dir}: unsafe state directory", problems=problems,
                         hint="it and every directory above it must be root-owned and not "
                              "group/other-writable")


def read_state(user: str, state_dir: str = STATE_DIR) -> JailUserState | None:
    """The recorded state of `user`, or None when jailuser has not jailed them."""
    path = _state_path(user, state_dir)
    if not os.path.lexists(path):
        return None
    _check_state_dir(state_dir)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise UnsafeJail(f"read {path}: not a root-owned regular file, or writable by "
                         "group/other; refusing to trust it")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise BuildError(f"read {path}: {err}") from None
    if not isinstance(data, dict):
        raise BuildError(f"read {path}: not a jailuser state file")
    return JailUserState.from_dict(data, path)


def _write_state(state: JailUserState, state_dir: str) -> None:
    for path, mode in ((os.path.dirname(state_dir), 0o755), (state_dir, 0o700)):
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
            os.chown(path, 0, 0)
            os.chmod(path, mode)
    _check_state_dir(state_dir)
    _atomic_write(_state_path(state.user, state_dir),
                  json.dumps(asdict(state), indent=2) + "\n", 0o600)


def _atomic_write(path: str, text: str, mode: int) -> None:
    """Write root:root `mode` text to `path` by rename (jails_file.write_atomically)."""
    jails_file.write_atomically(path, text.encode("utf-8"), mode)


# --------------------------------------------------------------------------- jails.ini

def set_user_mapping(text: str, user: str, jail: str | None) -> str:
    """jails.ini text with `user = jail` in [users] (replacing an existing line for the
    user), or the line removed when `jail` is None. Pure; comments and order are kept."""
    lines = text.splitlines()
    out: list[str] = []
    in_users = False
    users_end: int | None = None  # index in `out` after the last line of [users]
    done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            if in_users:
                users_end = users_end if users_end is not None else len(out)
            in_users = stripped.split("#", 1)[0].strip() == "[users]"
            out.append(line)
            if in_users:
                users_end = len(out)
            continue
        if in_users and "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip().strip("'\"")
            if key == user:
                if jail is not None and not done:
                    out.append(f"{user} = {jail}")
                    done = True
                users_end = len(out)
                continue
            users_end = len(out)
            out.append(line)
            users_end = len(out)
            continue
        out.append(line)
    if jail is not None and not done:
        if users_end is None:
            if out and out[-1].strip():
                out.append("")
            out += ["[users]", f"{user} = {jail}"]
        else:
            out.insert(users_end, f"{user} = {jail}")
    return "\n".join(out) + "\n"


def add_jail_section(text: str, name: str, root: str, mode: str, allow_shell: bool) -> str:
    """jails.ini text with a new `[[name]]` in [jails] (at the end of that section, which
    is made when absent). Pure."""
    block = [f"  [[{name}]]", f"  root = {root}", f"  mode = {mode}"]
    if allow_shell:
        block.append("  allow_shell = yes")
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.split("#", 1)[0].strip() == "[jails]"),
                 None)
    if start is None:
        return "\n".join(["[jails]", *block, *lines]) + "\n"
    end = len(lines)
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            end = i
            break
    return "\n".join(lines[:end] + block + lines[end:]) + "\n"


def _edit_config(path: str, user: str, jail: str | None, root: str | None,
                 dry_run: bool, create: tuple[str, bool] | None = None) -> str | None:
    """Map `user` to `jail` (None: unmap) in the jails.ini at `path`; check the result
    with pam_jail.login.config. Returns the previous mapping of the user (None if none).
    `create` (mode, allow_shell): define the jail `[[jail]]` with root `root` when
    jails.ini does not have it yet."""
    problems = config.check_config_file(path)
    if problems:
        raise ConfigError(f"edit {path}: unsafe config file", problems=problems,
                          hint="chown root:root and chmod go-w the file and its directories")
    with open(path, "rb") as fh:
        text = fh.read().decode("utf-8")
    current = jails_file.parse_config(text, path)
    if jail is not None and jail not in current.jails and create is not None and root:
        text = add_jail_section(text, jail, root, *create)
        current = jails_file.parse_config(text, path)
    if jail is not None:
        definition = current.jails.get(jail)
        if definition is None:
            raise ConfigError(f"edit {path}: no jail [[{jail}]] in [jails]",
                              hint=f"jails defined there: {', '.join(current.jails) or 'none'}")
        if root is not None and definition.root != root:
            raise ConfigError(f"edit {path}: jail {jail} has root {definition.root}, not "
                              f"{root}", hint="the login path refuses a user whose home "
                              "marker and mapping name different roots")
    previous = current.users.get(user)
    new_text = set_user_mapping(text, user, jail)
    with open(path, "rb") as fh:
        original = fh.read().decode("utf-8")
    checked = jails_file.parse_config(new_text, path)
    if checked.users.get(user) != jail:
        raise ConfigError(f"edit {path}: the edited file does not map {user} to {jail}")
    if not dry_run and new_text != original:
        jails_file.install_config(path, new_text)   # rename, and the last-known-good copy
    return previous


# --------------------------------------------------------------------------- moving homes

def _move_tree(src: str, dest: str) -> None:
    """Move the directory `src` to `dest` (which must not exist): rename on the same file
    system, else `cp -a` (owners, modes, links, times kept) and removal of `src`."""
    st = os.lstat(src)
    if not stat.S_ISDIR(st.st_mode):
        raise BuildError(f"move {src}: not a directory (a symlink is never followed)")
    if os.path.lexists(dest):
        raise BuildError(f"move {src}: {dest} already exists")
    try:
        os.rename(src, dest)
        return
    except OSError as err:
        if err.errno != 18:  # EXDEV: another file system
            raise BuildError(f"move {src} to {dest}: {err.strerror}") from err
    done = subprocess.run([CP, "-a", "-T", "--", src, dest], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise BuildError(f"move {src} to {dest}: cp -a failed: {done.stderr.strip()}")
    shutil.rmtree(src)


def _passwd_step(user: str, shell: str, home: str, ldif: str | None,
                 report: JailUserReport) -> str:
    """The step that sets `user`'s login shell and home: usermod for a local user; for a
    directory user the LDIF written to `ldif` (none given: refused, before anything is
    done, so --dry-run tells the truth)."""
    from pam_jail.admin import directory

    if directory.is_local(user):
        return f"usermod -s {shell} -d {home} {user}"
    if ldif is None:
        raise UsageError(f"jailuser {user}: not in /etc/passwd (a directory user: LDAP, "
                         "sssd): usermod cannot set its login shell and home",
                         hint="add --ldif FILE: the directory change is written there for "
                              "ldapmodify, everything local is done")
    report.warnings.append(f"{user} is a directory user: NOT jailed until the directory "
                           f"change in {ldif} is applied (ldapmodify -f {ldif}); the pam.d "
                           "guard lets its logins through to the directory's shell until "
                           "then")
    return (f"write {ldif}: the directory change of {user} (loginShell {shell}, "
            f"homeDirectory {home}) for ldapmodify")


def _usermod(user: str, shell: str, home: str, ldif: str | None = None) -> None:
    from pam_jail.admin import directory

    if not directory.is_local(user):
        if ldif is None:
            raise UsageError(f"jailuser {user}: a directory user needs --ldif FILE")
        text = directory.ldif(user, shell, home, why=f"login shell {shell}, home {home}")
        jails_file.write_atomically(os.path.abspath(ldif), text.encode())
        return
    done = subprocess.run([USERMOD, "-s", shell, "-d", home, "--", user],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"usermod {user}: exit {done.returncode}: {done.stderr.strip()}",
                         hint="is the user logged in? `usermod` refuses to change a user "
                              "with running processes in some cases")


def _is_empty_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and not os.listdir(path)
    except FileNotFoundError:
        return False


def _drop_jail_entry(root: str, user: str) -> bool:
    """Remove `user` from JAIL/etc/passwd; True when an entry was removed."""
    path = f"{root}/etc/passwd"
    lines = build._read_entries(path)
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    if kept == lines:
        return False
    _atomic_write(path, "\n".join(kept) + "\n", 0o644)
    return True


# --------------------------------------------------------------------------- jailuser

def mode_of(jail_config: str | None, config_file: str, mode: str | None) -> str:
    """The jail's mode: from jails.ini when the user is mapped there (--jail-config),
    else --mode, else `shell` (pam-jail-shell, which confines by itself)."""
    if jail_config:
        with open(config_file, "rb") as fh:
            cfg = jails_file.parse_config(fh.read().decode("utf-8"), config_file)
        definition = cfg.jails.get(jail_config)
        if definition is not None:
            if mode and mode != definition.mode:
                raise UsageError(f"jailuser: --mode {mode}, but jail {jail_config} has mode "
                                 f"{definition.mode} in {config_file}")
            return definition.mode
    return mode or "shell"


def jail_user(root: str, user: str, *, shell: str | None = None,
              jail_shell: str | None = None, move: bool = False,
              jail_config: str | None = None, config_file: str = config.DEFAULT_PATH,
              dry_run: bool = False, state_dir: str = STATE_DIR,
              mode: str | None = None, profiles: Sequence[str] = (),
              allow_shell: bool = False, force: bool = False,
              ldif: str | None = None) -> JailUserReport:
    """Put the host user `user` into the jail `root` (see the module docstring). A user
    of a directory (not in /etc/passwd) needs `ldif`: the file the directory change is
    written to (pam_jail/admin/directory.py)."""
    with admin_lock():
        return _jail_user(root, user, shell=shell, jail_shell=jail_shell, move=move,
                          jail_config=jail_config, config_file=config_file,
                          dry_run=dry_run, state_dir=state_dir, mode=mode,
                          profiles=profiles, allow_shell=allow_shell, force=force,
                          ldif=ldif)


def _jail_user(root: str, user: str, *, shell: str | None, jail_shell: str | None,
               move: bool, jail_config: str | None, config_file: str, dry_run: bool,
               state_dir: str, mode: str | None, profiles: Sequence[str] = (),
               allow_shell: bool = False, force: bool = False,
               ldif: str | None = None) -> JailUserReport:
    from pam_jail.login.resolve import JAILING_SHELLS, is_jailing_shell

    root = build._normalize_root(root)
    mode = mode_of(jail_config, config_file, mode)
    built: list[str] = []
    if profiles:                 # build (or update) the jail first: one command per account
        wanted = [*profiles, *(p for p in _added_profiles(mode, allow_shell)
                               if p not in profiles)]
        made = build.init_jail(root, wanted, dry_run=dry_run)
        if made.files + made.dirs + made.symlinks + made.devices + made.linked:
            built.append(f"build {root} with profiles {' '.join(wanted)} "
                         f"({made.files} files, {made.dirs} directories, {made.symlinks} "
                         "links)")
        if dry_run and not os.path.isdir(root):
            report = JailUserReport(user=user, jail=root, dry_run=True, steps=built)
            report.steps.append(f"then jail {user} there (mode {mode})")
            return report
    if shell is None:
        shell = SHELL_OF_MODE[mode]
    elif not is_jailing_shell(mode, shell):
        raise UsageError(f"jailuser {user}: shell {shell} would run outside the jail "
                         f"whenever a PAM line is missing (mode {mode} needs "
                         f"{' or '.join(JAILING_SHELLS[mode])})",
                         hint="leave --shell out: jailuser picks the mode's own shell")
    report = JailUserReport(user=user, jail=root, dry_run=dry_run, steps=built)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"jailuser {user}: no such user on this host") from None
    if pw.pw_uid == 0:
        raise UsageError(f"jailuser {user}: uid 0: root is never put in a jail")
    problems = safety.check_jail(root)
    if problems:
        raise UnsafeJail(f"jailuser {user}: jail {root} is unsafe", problems=problems,
                         hint="build it with `pam-jail init`; `pam-jail check` explains")
    if not os.path.isfile(f"{root}/etc/passwd"):
        raise BuildError(f"jailuser {user}: {root} has no etc/passwd: not a built jail",
                         hint=f"build it first: pam-jail init -j {root} PROFILE...")
    if not shell.startswith("/") or not os.path.isfile(shell) or not os.access(shell, os.X_OK):
        raise UsageError(f"jailuser {user}: shell {shell}: not an executable file",
                         hint="run scripts/install for pam-jail-shell, or name another shell")
    if mode == "pam" and resolve_in_jail(root, shell) is None:
        raise BuildError(f"jailuser {user}: {shell} is not in the jail (mode pam runs the "
                         "login shell inside it)", hint=f"pam-jail init -j {root} lsh")
    jail_shell = jail_shell or shell
    state = read_state(user, state_dir)
    if state is not None and state.jail != root:
        raise UsageError(f"jailuser {user}: already jailed in {state.jail} by jailuser",
                         hint=f"pam-jail jailuser --undo {user} first")
    if state is not None and state.uid != pw.pw_uid:
        raise UsageError(f"jailuser {user}: uid {pw.pw_uid} differs from the recorded "
                         f"uid {state.uid} (user deleted and re-created?)",
                         hint=f"remove {_state_path(user, state_dir)} after checking it")
    marker = _split_marker(pw.pw_dir)
    if state is None and marker is not None and marker[0] != root:
        raise UsageError(f"jailuser {user}: home {pw.pw_dir} already names the jail "
                         f"{marker[0]}", hint="change the home first (usermod -d)")
    inner = marker[1] if marker is not None and marker[0] == root else f"/home/{user}"
    new_home = f"{root}/.{STUB_HOMES}/{user}"        # a home stub: root's, never the user's
    if inner != f"/home/{user}":
        new_home = f"{root}/.{inner}"
        report.warnings.append(
            f"jailuser {user}: home {pw.pw_dir} names {inner} inside the jail: kept, but host "
            "services (MTA .forward, pam_env) read that directory, which the user can write; "
            f"move it to {root}/home/{user} and re-run jailuser to get a root-owned home stub")
    host_home = root + inner
    stub = root + STUB_HOMES + "/" + user
    if state is None:
        state = JailUserState(user=user, uid=pw.pw_uid, jail=root, old_shell=pw.pw_shell,
                              old_home=pw.pw_dir, new_shell=shell, new_home=new_home,
                              jail_home=inner)
        report.steps.append(f"record old shell {pw.pw_shell} and home {pw.pw_dir} in "
                            f"{_state_path(user, state_dir)}")
    else:
        state.new_shell, state.new_home, state.jail_home = shell, new_home, inner
    old_home = state.old_home
    do_move = move and not state.moved and old_home != new_home and \
        os.path.lexists(old_home)
    if move and not do_move and not state.moved:
        report.warnings.append(f"jailuser {user}: --move: old home {old_home} does not "
                               "exist, nothing to move")
    if do_move:
        if os.path.lexists(host_home) and not _is_empty_dir(host_home):
            raise BuildError(f"jailuser {user}: --move: jail home {host_home} exists and is "
                             "not empty", hint="move the files by hand, or drop --move")
        st = os.lstat(old_home)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, pw.pw_uid):
            raise BuildError(f"jailuser {user}: --move: {old_home} is not a directory owned "
                             "by the user or root")
        report.steps.append(f"move {old_home} to {host_home}")
    if is_stub_home(new_home) and not _stub_ready(stub, user):
        report.steps.append(f"home stub {stub} (root's; .ssh -> ../../home/{user}/.ssh)")
    if (pw.pw_shell, pw.pw_dir) != (shell, new_home):
        report.steps.append(_passwd_step(user, shell, new_home, ldif, report))
    if build.identity_changes(root, [user], shell=jail_shell,
                              passwd_homes={user: new_home}):
        report.steps.append(f"jail entries: {root}/etc/passwd ({user}, home {inner}, shell "
                            f"{jail_shell}), etc/group; home {host_home}")
    private_step = _private_home_step(old_home if do_move else host_home, host_home, user,
                                      pw.pw_gid)
    if private_step:
        report.steps.append(private_step)
    if jail_config and not _mapped(config_file, user, jail_config, root):
        report.steps.append(f"map {user} = {jail_config} in {config_file} [users] (the "
                            f"jail defined there with mode {mode} if it is not yet)")
    lsh_step = _allow_list_step(root, user, mode, allow_shell)
    if lsh_step:
        report.steps.append(lsh_step)
    running = account.host_processes(pw.pw_uid) if (pw.pw_shell, pw.pw_dir) != \
        (shell, new_home) else []
    if running:
        shown = ", ".join(f"{pid} {name}" for pid, name in running[:6])
        more = f" and {len(running) - 6} more" if len(running) > 6 else ""
        if not force:
            raise BuildError(f"jailuser {user}: {len(running)} process(es) of {user} run on "
                             f"the host, outside any jail: {shown}{more}",
                             hint="end them, or pass --force to end them (SIGTERM, then "
                                  "SIGKILL after 5 s)")
        report.steps.append(f"end {len(running)} process(es) of {user} running on the "
                            f"host: {shown}{more}")
    aside = []
    for kind, path in account.spooled_jobs(user, pw.pw_uid):
        service = account.SPOOL_SERVICE[kind]
        if account.stack_jails(service):
            report.notes.append(f"keep {kind} {path}: /etc/pam.d/{service} has pam_jail's "
                                "lines, the job runs inside the jail")
        else:
            aside.append((kind, path))
            report.steps.append(f"set {kind} {path} aside (it would run on the host: "
                                f"/etc/pam.d/{service} has no pam_jail lines); --undo "
                                "restores it")
    report.changed = bool(report.steps)
    if dry_run or not report.changed:       # a re-run with nothing to do changes nothing
        if jail_config:
            _edit_config(config_file, user, jail_config, root, dry_run=True,
                         create=(mode, allow_shell))
        return report

    if running:
        left = account.end_processes([pid for pid, _name in running])
        if left:
            raise BuildError(f"jailuser {user}: processes {left[:6]} did not end")
    _write_state(state, state_dir)
    try:
        if aside:
            state.set_aside += account.set_aside(aside, f"{state_dir}/{user}.set-aside")
            _write_state(state, state_dir)
        if do_move:
            build._Writer(root, build.BuildReport(root=root), False).ensure_dir(
                os.path.dirname(inner))
            if _is_empty_dir(host_home):
                os.rmdir(host_home)
            _move_tree(old_home, host_home)
            state.moved = True
            _write_state(state, state_dir)
        if is_stub_home(new_home):
            _make_stub(root, user)
        if (pw.pw_shell, pw.pw_dir) != (shell, new_home):
            _usermod(user, shell, new_home, ldif)
        users_report = build.add_users(root, [user], shell=jail_shell,   # the home set
                                       passwd_homes={user: new_home})  # (a directory's: soon)
        # only mode pam runs the login shell inside the jail: no warning for the others
        report.warnings += [w for w in users_report.warnings
                            if mode == "pam" or "does not exist in the jail" not in w]
        _make_home_private(host_home, user)
        if lsh_step:
            _write_allow_list(root, user, mode, allow_shell)
        if jail_config:
            previous = _edit_config(config_file, user, jail_config, root, dry_run=False,
                                    create=(mode, allow_shell))
            if not state.config:
                state.config, state.config_previous = config_file, previous
            state.config_jail = jail_config
            _write_state(state, state_dir)
            if previous != jail_config:
                _regenerate_match_blocks(config_file, report)
    except BaseException as err:
        with contextlib.suppress(PamJailError, OSError):
            _undo_user(user, dry_run=False, state_dir=state_dir)
        if isinstance(err, PamJailError):
            err.hint = (err.hint + "; " if err.hint else "") + "the steps done were undone"
        raise
    report.changed = True
    return report


def _private_home_step(path: str, host_home: str, user: str, gid: int) -> str:
    """What _make_home_private will do to the home ("" = nothing): `path` is where the
    home is now (the old home with --move), absent = the builder's new 0750 home of the
    user's primary group."""
    try:
        st = os.lstat(path)
        mode, gid = stat.S_IMODE(st.st_mode), st.st_gid
    except FileNotFoundError:
        mode = 0o750
    private = account.own_private_group(user, gid)
    want = safety.private_home_mode(mode, private)
    if want == mode:
        return ""
    why = "its group is the user's own" if private else \
        f"group {gid} is not {user}'s own private group"
    return f"home {host_home}: mode {mode:04o} -> {want:04o} (private to {user}: {why})"


def _make_home_private(host_home: str, user: str) -> None:
    """Homes private by default (issue 19): customers of a shared jail never read each
    other's home. 0750 when the home's group is the user's own private group, else 0700
    (safety.private_home_mode); sharing on purpose goes through a group directory. The
    home is opened without following links and changed through that fd."""
    try:
        fd = os.open(host_home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise BuildError(f"jailuser {user}: home {host_home}: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        want = safety.private_home_mode(st.st_mode, account.own_private_group(user, st.st_gid))
        if want != stat.S_IMODE(st.st_mode):
            os.fchmod(fd, want)
    finally:
        os.close(fd)


LSH_TEMPLATE = "/etc/pam_jail/lsh.ini"     # the host's default allow-list (a template)
# What an --allow-shell user may run besides the shell: the file transfer programs (the
# customer uploads the site with sftp, scp or rsync), from the profiles of the same names.
TRANSFER_PROGRAMS = {"sftp": "/usr/lib/openssh/sftp-server", "scp": "/usr/bin/scp",
                     "rsync": "/usr/bin/rsync"}


def _added_profiles(mode: str, allow_shell: bool) -> list[str]:
    """Profiles jailuser -p adds to the named ones: mode pam runs the limited shell in the
    jail (lsh) on a private devpts (ptys); an interactive account (--allow-shell, any
    mode) needs /dev/tty and ptys (tmux, screen, vi) and the transfer programs its
    [user:USER] section names (sftp, scp, rsync)."""
    added = ["lsh", "ptys"] if mode == "pam" else []
    if allow_shell and mode != "sftp":
        added += ["ptys", *TRANSFER_PROGRAMS]
    return list(dict.fromkeys(added))


def _allow_list_step(root: str, user: str, mode: str, allow_shell: bool) -> str:
    """What _write_allow_list will do ("" = nothing): a jail of mode shell or pam without
    an allow-list gets the host's template; --allow-shell adds the user's own section."""
    if mode not in ("shell", "pam"):
        return ""
    path = f"{root}/etc/pam_jail/lsh.ini"
    steps = []
    if not os.path.exists(path):
        steps.append(f"allow-list {path} from {LSH_TEMPLATE}")
    if allow_shell and not _has_user_section(path, user):
        steps.append(f"[user:{user}] with allow_shell = yes in {path}")
    return "; ".join(steps)


def _has_user_section(path: str, user: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return f"[user:{user}]" in fh.read()
    except FileNotFoundError:
        return False


def _mapped(path: str, user: str, jail: str, root: str) -> bool:
    """jails.ini at `path` already maps `user` to `jail`, a jail with root `root`."""
    try:
        cfg = jails_file.load_config(path)
    except ConfigError:
        return False
    definition = cfg.jails.get(jail)
    return cfg.users.get(user) == jail and definition is not None and definition.root == root


def _write_allow_list(root: str, user: str, mode: str, allow_shell: bool) -> None:
    path = "/etc/pam_jail/lsh.ini"
    writer = build._Writer(root, build.BuildReport(root=root), False)
    try:
        with open(root + path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        with open(LSH_TEMPLATE, encoding="utf-8") as fh:
            text = fh.read()
    if allow_shell and f"[user:{user}]" not in text:
        # only what the jail has: a program missing there would end the login at execve
        # (sftp's bare "Connection closed"); `pam-jail init -j JAIL sftp scp rsync` adds them
        present = [p for p in TRANSFER_PROGRAMS.values() if resolve_in_jail(root, p)]
        programs = f"programs = {', '.join(present)}\n" if present else ""
        text = text.rstrip("\n") + (
            f"\n\n# added by pam-jail jailuser --allow-shell\n[user:{user}]\n"
            f"{programs}allow_shell = yes\nshell = /bin/bash\numask = 0022\n"
            "pass_env = LANG, LC_*, TERM\n")
    writer.write_text(path, text)


def _regenerate_match_blocks(config_file: str, report: JailUserReport) -> None:
    """jails.ini changed: the sshd Match blocks must follow (sshd_config.LAST_OUTPUT)."""
    from pam_jail.admin.sshd_config import regenerate_remembered

    try:
        written = regenerate_remembered(config_file)
    except PamJailError as err:
        report.warnings.append(f"regenerate the sshd Match blocks: {err}")
        return
    if written:
        report.steps.append(f"regenerate the sshd Match blocks in {written} (reload sshd: "
                            "`kill -HUP $(cat /run/sshd.pid)` or `service ssh reload`)")
    else:
        report.warnings.append("jails.ini changed: regenerate the sshd Match blocks "
                               "(`pam-jail sshd-config -o /etc/ssh/sshd_config.d/"
                               "pam_jail.conf`) and reload sshd")


def _stub_ready(stub: str, user: str) -> bool:
    try:
        st = os.lstat(stub)
        return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and \
            os.readlink(f"{stub}/.ssh") == f"../../home/{user}/.ssh"
    except OSError:
        return False


def _make_stub(root: str, user: str) -> None:
    """JAIL/.home (root's, 0711: names not listable) and JAIL/.home/USER (root's, 0755)
    holding only `.ssh -> ../../home/USER/.ssh`, a relative link that names the jail
    home's .ssh on the host (sshd's AuthorizedKeysFile) and inside the jail alike. The
    jail root is root's and checked, so nobody else can race these steps; whatever is in
    the way and is not this exact layout is refused."""
    for path, mode in ((root + STUB_HOMES, 0o711), (f"{root}{STUB_HOMES}/{user}", 0o755)):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            raise BuildError(f"make home stub {path}: exists and is not a directory of root's")
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    link = f"{root}{STUB_HOMES}/{user}/.ssh"
    target = f"../../home/{user}/.ssh"
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        raise BuildError(f"make home stub {link}: something else is there",
                         hint="remove it (the stub holds only the .ssh link)")
    os.symlink(target, link)


def _remove_stub(root: str, user: str) -> None:
    """Remove JAIL/.home/USER if it is still exactly what _make_stub made."""
    stub = f"{root}{STUB_HOMES}/{user}"
    if not _stub_ready(stub, user) or set(os.listdir(stub)) != {".ssh"}:
        return
    os.unlink(f"{stub}/.ssh")
    os.rmdir(stub)


def _split_marker(home: str) -> tuple[str, str] | None:
    from pam_jail.login.resolve import split_marker

    return split_marker(home)


def undo_user(user: str, *, dry_run: bool = False,
              state_dir: str = STATE_DIR, ldif: str | None = None) -> JailUserReport:
    """Undo `jail_user`: the old shell and home (moved back if it was moved), the jail
    passwd entry removed, an empty jail home removed, the jails.ini mapping restored.

    All or nothing: usermod, the step that fails in practice (a running process of the
    user), goes first; if moving the home back fails next, usermod is turned back; the
    remaining steps (jails.ini by install_config, the jail's passwd, the state file)
    only remove what this command added."""
    with admin_lock():
        return _undo_user(user, dry_run=dry_run, state_dir=state_dir, ldif=ldif)


def _undo_user(user: str, *, dry_run: bool, state_dir: str,
               ldif: str | None = None) -> JailUserReport:
    state = read_state(user, state_dir)
    if state is None:       # nothing of ours to undo: the state a tool asked for holds
        report = JailUserReport(user=user, jail="", dry_run=dry_run)
        report.notes.append(f"{user} has no jailuser record in {state_dir}: nothing to "
                            "undo (a user jailed by hand is left as it is)")
        return report
    report = JailUserReport(user=user, jail=state.jail, dry_run=dry_run)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"jailuser --undo {user}: no such user on this host any more",
                         hint=f"remove {_state_path(user, state_dir)}") from None
    if pw.pw_uid != state.uid:
        raise UsageError(f"jailuser --undo {user}: uid {pw.pw_uid} differs from the "
                         f"recorded uid {state.uid}")
    host_home = state.jail + state.jail_home
    if state.config:
        report.steps.append(f"restore the mapping of {user} in {state.config} "
                            f"({state.config_previous or 'none'})")
    move_back = state.moved and os.path.lexists(host_home)
    if move_back:
        if os.path.lexists(state.old_home):
            raise BuildError(f"jailuser --undo {user}: {state.old_home} exists, cannot move "
                             f"{host_home} back", hint="move or remove it, then retry")
        report.steps.append(f"move {host_home} back to {state.old_home}")
    if (pw.pw_shell, pw.pw_dir) != (state.old_shell, state.old_home):
        report.steps.append(_passwd_step(user, state.old_shell, state.old_home, ldif,
                                         report))
    report.steps.append(f"remove {user} from {state.jail}/etc/passwd")
    if not move_back and _is_empty_dir(host_home):
        report.steps.append(f"remove the empty jail home {host_home}")
    elif not move_back and os.path.lexists(host_home):
        report.warnings.append(f"jailuser --undo {user}: jail home {host_home} is not empty, "
                               "left in place")
    if is_stub_home(state.new_home):
        report.steps.append(f"remove the home stub {state.jail}{STUB_HOMES}/{user}")
    for kind, path, _saved in state.set_aside:
        report.steps.append(f"restore {kind} {path}")
    report.steps.append(f"remove {_state_path(user, state_dir)}")
    report.changed = True
    if dry_run:
        return report
    current: str | None = None
    if state.config and os.path.lexists(state.config):
        with open(state.config, encoding="utf-8") as fh:    # a bad file: stop here
            current = jails_file.parse_config(fh.read(), state.config).users.get(user)
    changed_passwd = (pw.pw_shell, pw.pw_dir) != (state.old_shell, state.old_home)
    if changed_passwd:
        _usermod(user, state.old_shell, state.old_home, ldif)  # 1. may fail: nothing yet
    if move_back:
        try:
            _move_tree(host_home, state.old_home)           # 2. on failure: usermod back
        except BaseException:
            if changed_passwd:
                with contextlib.suppress(PamJailError):
                    _usermod(user, pw.pw_shell, pw.pw_dir, ldif)
            raise
        state.moved = False
        _write_state(state, state_dir)
    if state.config and current == state.config_jail:
        _edit_config(state.config, user, state.config_previous, None, dry_run=False)
        if state.config_previous != state.config_jail:
            _regenerate_match_blocks(state.config, report)
    if os.path.isdir(state.jail) and os.path.isfile(f"{state.jail}/etc/passwd"):
        _drop_jail_entry(state.jail, user)
    if not move_back and _is_empty_dir(host_home):
        os.rmdir(host_home)
    if is_stub_home(state.new_home):
        _remove_stub(state.jail, user)
    report.warnings += account.restore(state.set_aside)
    with contextlib.suppress(OSError):
        os.rmdir(f"{state_dir}/{user}.set-aside")
    os.unlink(_state_path(user, state_dir))
    report.changed = True
    return report


# --------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Put the existing host user USER into the jail JAIL (like jailkit's jk_jailuser):
  - the real login shell becomes the mode's own (pam-jail-lsh for mode pam,
    pam-jail-shell for shell and sftp: each refuses to run outside the jail) and the home
    the root-owned stub JAIL/./.home/USER (the /./ marker tells the login paths where the
    jail ends; the home inside the jail is /home/USER, on the host JAIL/home/USER, and no
    passwd entry names it: host services such as an MTA's .forward or pam_env never
    read a file the user can write). The stub holds only .ssh -> ../../home/USER/.ssh,
    so ~/.ssh/authorized_keys uploaded in the jail keeps working. A jailkit home
    JAIL/./home/USER is converted;
  - JAIL/etc/passwd and etc/group get the user's entries, the jail home is created
    (owner the user);
  - with --move, the current home directory and its content move into the jail;
  - the jail home is made private (new, moved or already there): 0750 when its group
    is the user's own private group (no other member, no one else's primary group),
    else 0700. Other customers of the jail never read it; share through a group
    directory (docs/login-paths.md, "Sharing on purpose");
  - with --jail-config NAME, jails.ini maps USER to the jail NAME (whose root must be
    JAIL); without it, the line to add is printed.
The old shell and home are recorded in /var/lib/pam_jail/jailuser/USER.json (root-only);
`pam-jail jailuser --undo USER` puts them back, moves the home back if it was moved, and
removes the jail entries. Re-running is idempotent. Refused: root (uid 0), unknown users,
jails that fail the safety check. The passwd changes are made with usermod."""

EPILOG = """\
examples:
  pam-jail jailuser -j /srv/jails/web --move --jail-config web alice
  pam-jail jailuser -j /srv/jails/web --mode pam --dry-run bob
  pam-jail jailuser --undo alice

a re-run is idempotent: only what is not yet so is listed and done; with nothing to
do it prints `jailuser USER: no change` ("changed": false with --json), and so does
--undo of a user with no jailuser record. --dry-run lists exactly what a run would do.

exit status:
  0 done, or nothing to do (see "changed"); 1 error; 2 usage (unknown user, root);
  3 bad jails.ini; 4 unsafe jail; 7 build/move failed (the steps done were undone)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `jailuser` subcommand."""
    parser = sub.add_parser("jailuser", help="put an existing user into a jail (or --undo)",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jail", metavar="JAIL",
                        help="absolute path of a built jail (required unless --undo)")
    parser.add_argument("--mode", choices=("pam", "shell", "sftp"),
                        help="the jail's mode when --jail-config does not say it (default: "
                             "shell); it picks the login shell")
    parser.add_argument("-p", "--profile", action="append", default=[], metavar="PROFILE",
                        help="build (or update) JAIL with this profile first (repeatable; "
                             "mode pam adds lsh and ptys; --allow-shell adds ptys, sftp, "
                             "scp and rsync)")
    parser.add_argument("--allow-shell", action="store_true",
                        help="interactive logins for USER: allow_shell in jails.ini (new "
                             "jail) and a [user:USER] section in the jail's lsh.ini")
    parser.add_argument("--shell", metavar="PATH",
                        help="the user's new login shell in the real passwd (default: the "
                             f"mode's own: {SHELL_OF_MODE['pam']} for pam, {DEFAULT_SHELL} "
                             "for shell and sftp; another one is refused, since it would run "
                             "outside the jail whenever a PAM line is missing)")
    parser.add_argument("--jail-shell", metavar="PATH",
                        help="the shell written in JAIL/etc/passwd (default: --shell; on the "
                             "PAM path sshd runs the real passwd's shell inside the jail)")
    parser.add_argument("--move", action="store_true",
                        help="move the current home directory into the jail")
    parser.add_argument("--jail-config", metavar="NAME",
                        help="map USER to the jail NAME in the jails config file [users]")
    parser.add_argument("--config", default=config.DEFAULT_PATH, metavar="FILE",
                        help=f"the jails config file (default: {config.DEFAULT_PATH})")
    parser.add_argument("--undo", action="store_true",
                        help="take USER out of the jail again (restores shell and home)")
    parser.add_argument("--ldif", metavar="FILE",
                        help="a user of a directory (LDAP: not in /etc/passwd): write the "
                             "change of its loginShell and homeDirectory to FILE for "
                             "ldapmodify instead of running usermod; everything local is "
                             "done, and USER is not jailed until the change is applied")
    parser.add_argument("--force", action="store_true",
                        help="end USER's processes that run on the host, outside any "
                             "jail (listed; SIGTERM, then SIGKILL after 5 s); without "
                             "--force they refuse the command")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="print the plan; change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("user", metavar="USER", help="an existing host user")
    parser.set_defaults(func=_cmd_jailuser)


def _cmd_jailuser(args: argparse.Namespace) -> int:
    if args.undo:
        if args.jail or args.move or args.jail_config:
            raise UsageError("jailuser --undo: takes only USER (and --dry-run, --json)")
        report = undo_user(args.user, dry_run=args.dry_run, ldif=args.ldif)
    else:
        if not args.jail:
            raise UsageError("jailuser: -j JAIL is required")
        report = jail_user(args.jail, args.user, shell=args.shell,
                           jail_shell=args.jail_shell, move=args.move,
                           jail_config=args.jail_config, config_file=args.config,
                           dry_run=args.dry_run, mode=args.mode, profiles=args.profile,
                           allow_shell=args.allow_shell, force=args.force,
                           ldif=args.ldif)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for warning in report.warnings:         # they name processes and files of the user
        print(f"pam_jail: warning: {escape(warning)}", file=sys.stderr)
    prefix = "would: " if args.dry_run else ""
    for step in report.steps:
        print(f"{prefix}{escape(step)}")
    for note in report.notes:
        print(f"ok: {escape(note)}")
    if not report.changed:
        print(f"jailuser {escape(args.user)}: no change")
    if not args.undo and not args.jail_config and not args.dry_run and report.changed:
        print(f"to map the user in {args.config}, add to [users]:  {args.user} = JAILNAME")
    return 0
