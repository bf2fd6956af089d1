"""Which jail does this user go to? Pure: identity + Config in, Jail or refusal out.

Order: a per-user mapping, then the first of the user's groups (primary group first,
then supplementary groups in name order) that is mapped, then [options] default.
jailkit's home marker `/jail/./home/user` (the last `/./` splits jail root and home)
also puts a user in a jail; if the user is mapped too, both must name the same root.
Identity is never taken from the environment: callers build it from getuid()/PAM_USER
and the real passwd database.
"""

from __future__ import annotations

from pam_jail.login import paths
from pam_jail.login.config import Config, JailDef
from pam_jail.login.errors import Denied

SHELL_ENTRY_NAMES = ("pam-jail-shell",)
# The login shells that refuse to run outside their jail, per mode: with one of these in
# the real passwd, a missing, broken or bypassed PAM line gives "refused", never a host
# shell. pam-jail-lsh refuses unless the PAM module confined the session; pam-jail-shell
# confines itself (mode shell) or refuses every command (mode sftp: sshd's internal-sftp
# never runs the login shell). nologin and false are not enough for mode sftp: the pam.d
# guard (etc/pam.d/pam_jail) lets only pam_jail's own shells reach the PAM module, whose
# check of sshd's settings (ChrootDirectory, ForceCommand) sftp-only users need.
JAILING_SHELLS: dict[str, tuple[str, ...]] = {
    "pam": ("pam-jail-lsh",),
    "shell": ("pam-jail-shell",),
    "sftp": ("pam-jail-shell",),
}
# Set in the PAM environment by the PAM module when jails.ini says `allow_shell = no` for
# a mode-pam jail; pam-jail-lsh then refuses interactive logins.
NO_SHELL_ENV = "PAM_JAIL_NO_SHELL"
# Set in the PAM environment by the PAM module for every mode-pam session it confines:
# the jail's name and the host pid of the process it confined (sshd's session process).
# pam-jail-lsh runs inside the jail's PID namespace and knows neither; it reads them,
# only once it has proved the session confined, for its syslog lines' jail= and [pid]
# and for nothing else (the PAM environment overrides what a client sends: OpenSSH's
# do_setup_env copies it after the AcceptEnv variables).
JAIL_ENV = "PAM_JAIL_JAIL"
HOST_PID_ENV = "PAM_JAIL_HOST_PID"
# A home marker with jailkit's own login shell belongs to jailkit: pam_jail leaves such
# users alone unless jails.ini maps them (so both can share one sshd while migrating).
JAILKIT_SHELL_NAMES = ("jk_chrootsh",)


class Identity:
    """Who logs in, from the real passwd/group databases (a plain slotted class: the
    login path does not import dataclasses)."""

    __slots__ = ("name", "uid", "gid", "home", "shell", "group", "groups")

    def __init__(self, name: str, uid: int, gid: int, home: str, shell: str,
                 group: str = "", groups: tuple[str, ...] = ()) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
        self.shell = shell
        self.group = group                  # primary group name
        self.groups = groups                # supplementary group names

    def __repr__(self) -> str:
        return f"Identity({self.name!r}, uid={self.uid}, gid={self.gid}, home={self.home!r})"


class Jail:
    """The jail a user goes to, as resolved."""

    __slots__ = ("name", "root", "home", "mode", "allow_shell", "source", "options",
                 "program")

    def __init__(self, name: str, root: str, home: str, mode: str, allow_shell: bool,
                 source: str, options: dict[str, str] | None = None,
                 program: bytes | None = None) -> None:
        self.name = name
        self.root = root
        self.home = home                    # the home directory as seen inside the jail
        self.mode = mode
        self.allow_shell = allow_shell
        self.source = source                # "user", "group:NAME", "default" or "marker"
        self.options = options or {}
        self.program = program              # JailDef.program: the precomputed filter

    def __repr__(self) -> str:
        return f"Jail({self.name!r}, root={self.root!r}, mode={self.mode!r})"

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.options.get(key)
        return default if value is None else value == "yes"


# The passwd home `pam-jail jailuser` gives a jailed user: JAIL/./.home/USER, a directory
# root owns in the jail's root-owned STUB_HOMES, holding nothing but a relative `.ssh` link
# to the jail home's .ssh (so sshd's default AuthorizedKeysFile keeps self-service keys).
# Host services that read per-user files from the passwd home (an MTA's .forward and
# .procmailrc, pam_env's ~/.pam_environment, .k5login, .rhosts) find nothing the user can
# write there; the writable home JAIL/home/USER is named by no passwd entry.
# docs/login-paths.md "Homes" says why; jailkit's JAIL/./home/USER still logs in.
STUB_HOMES = "/.home"


def split_marker(home: str) -> tuple[str, str] | None:
    """'/jail/./home/u' -> ('/jail', '/home/u'); None without a marker. A home stub
    '/jail/./.home/u' -> ('/jail', '/home/u'): the home inside the jail is /home/u."""
    idx = home.rfind("/./")
    if idx <= 0:
        return None
    root = paths.normpath(home[:idx])
    inner = paths.normpath("/" + home[idx + 3:])
    if inner.startswith(STUB_HOMES + "/") and inner.count("/") == 2:
        inner = "/home/" + inner[len(STUB_HOMES) + 1:]
    return root, inner


def is_stub_home(home: str) -> bool:
    """Is `home` (a passwd pw_dir) a root-owned home stub JAIL/./.home/USER?"""
    idx = home.rfind("/./")
    if idx <= 0:
        return False
    inner = paths.normpath("/" + home[idx + 3:])
    return inner.startswith(STUB_HOMES + "/") and inner.count("/") == 2


def is_shell_entry(shell: str) -> bool:
    return paths.basename(shell) in SHELL_ENTRY_NAMES


def is_jailing_shell(mode: str, shell: str) -> bool:
    """Does `shell` (a passwd pw_shell) refuse to run outside a jail of `mode`?"""
    return paths.basename(shell) in JAILING_SHELLS.get(mode, ())


# pam_jail's own login shells: whoever has one is meant to be jailed (nologin and false
# are everybody's, so they say nothing about that).
PAM_JAIL_SHELLS = ("pam-jail-shell", "pam-jail-lsh")


def jailing_anywhere(shell: str) -> bool:
    """Is `shell` one of pam_jail's own login shells (its user is meant to be jailed)?"""
    return paths.basename(shell) in PAM_JAIL_SHELLS


def resolve(ident: Identity, cfg: Config) -> Jail | None:
    """The user's jail, or None if the user is in no jail. Raises Denied when the
    mapping itself is unacceptable (root, or marker and mapping disagree)."""
    definition: JailDef | None = None
    source = ""
    if ident.name in cfg.users:
        definition, source = cfg.jails[cfg.users[ident.name]], "user"
    else:
        for group in [ident.group, *sorted(ident.groups)]:
            if group and group in cfg.groups:
                definition, source = cfg.jails[cfg.groups[group]], f"group:{group}"
                break
    marker = split_marker(ident.home)
    if definition is None and cfg.default and ident.uid != 0 and marker is None:
        definition, source = cfg.jails[cfg.default], "default"

    if definition is None and marker is not None \
            and paths.basename(ident.shell) in JAILKIT_SHELL_NAMES:
        return None
    if definition is None and marker is None:
        if jailing_anywhere(ident.shell):
            raise Denied(f"user {ident.name} has shell {ident.shell} but no jail is configured")
        return None
    if ident.uid == 0:
        raise Denied(f"user {ident.name} has uid 0: root is never put in a jail")

    home = ident.home
    if marker is not None:
        marker_root, home = marker
        if definition is not None and definition.root != marker_root:
            raise Denied(f"user {ident.name}: home marker root {marker_root} differs from "
                         f"jail {definition.name} root {definition.root}")
        if definition is None:
            mode = "shell" if is_shell_entry(ident.shell) else "pam"
            definition = JailDef(name=f"marker:{marker_root}", root=marker_root, mode=mode)
            source = "marker"
    if definition is None:  # unreachable: marker is set here; keeps the type checker sure
        return None
    return Jail(name=definition.name, root=definition.root, home=home, mode=definition.mode,
                allow_shell=definition.allow_shell, source=source,
                options=dict(definition.options), program=definition.program)


def identity_from_passwd(name_or_uid: str | int,
                         session_gids: list[int] | None = None) -> Identity:
    """Look the user up in the real passwd/group databases. Raises Denied if unknown.

    The supplementary groups: NSS's (getgrouplist) for the user, or, given
    `session_gids` (pam-jail-shell: its own getgroups()), those the login service gave
    the session when they are what initgroups() sets (sshd, login, su, cron and atd call
    it): the primary group among them and not group root. The kernel's list costs no
    NSS lookup of every module (~0.4 ms per login with Debian's `files systemd`, a
    directory server's round trip with ldap or sss); the user cannot add to it, and a
    list an unprivileged process can make (none: setpriv --clear-groups) is not used."""
    import grp
    import posix
    import pwd

    try:
        pw = pwd.getpwuid(name_or_uid) if isinstance(name_or_uid, int) else \
            pwd.getpwnam(name_or_uid)
    except KeyError:
        raise Denied(f"unknown user {name_or_uid!s:.64}") from None
    def group_name(gid: int) -> str:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return ""

    if session_gids is not None and pw.pw_gid in session_gids and 0 not in session_gids:
        gids = set(session_gids) - {pw.pw_gid}
    else:   # getgrouplist: one NSS lookup, not a scan of every group on each login
        gids = set(posix.getgrouplist(pw.pw_name, pw.pw_gid)) - {pw.pw_gid}
    primary = group_name(pw.pw_gid)
    groups = tuple(sorted(name for name in map(group_name, gids) if name))
    return Identity(name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, home=pw.pw_dir,
                    shell=pw.pw_shell, group=primary, groups=groups)
