"""The per-customer view of a shared jail (jails.ini `private = yes`, the default): what
one customer's session sees of a jail that other customers share. Pure: which directory
holds the homes, and the etc/passwd and etc/group the session reads. The mounts that
make the view are confine.private_view's (a step of both confinement sequences).

In the session's own mount namespace (the jail on disk stays one tree):
  - the directory that holds the user's home (its parent: /home for /home/alice) and
    the stub homes' /.home are covered by an empty read-only tmpfs; the user's own home
    and the shared-GROUP directories there of the user's groups are bound back in.
    Other customers' homes cannot be named, listed or read, whatever their modes
    (share on purpose through JAIL/home/shared-GROUP, root:GROUP 2770: docs/check.md).
  - /tmp, /var/tmp and /dev/shm are directories of one tmpfs of the session (`tmp_size`,
    default 256M, charged to the user's memory limit): nothing one customer plants
    there reaches another. Each session has its own; it is gone when the session's
    last process ends (nothing to wipe, nothing kept).
  - etc/passwd and etc/group are read-only copies that name only root, the system
    accounts (ids below 1000, and nobody) and the user; a group's member list names
    no one but the user.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_jail.login.resolve import Identity, Jail

SYSTEM_ID_MAX = 999        # Debian policy: 0-999 are system ids (login.defs SYS_UID_MAX)
NOBODY = 65534
DEFAULT_TMP_SIZE = "256M"


def homes_dir(home: str) -> str | None:
    """The directory whose entries are customers' homes: the parent of `home` (a path
    inside the jail), or None when there is none to cover (a home at / or /NAME)."""
    parts = [p for p in home.split("/") if p and p != "."]
    if len(parts) < 2 or ".." in parts:
        return None
    return "/" + "/".join(parts[:-1])


def _system(id_text: str) -> bool:
    return id_text.isdigit() and (int(id_text) <= SYSTEM_ID_MAX or int(id_text) == NOBODY)


def passwd_view(text: str, user: str) -> str:
    """The lines of an etc/passwd text that name root, a system account or `user`."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and (fields[0] == user or _system(fields[2])):
            out.append(line + "\n")
    return "".join(out)


def group_view(text: str, user: str, gid: int) -> str:
    """The lines of an etc/group text for system groups, the user's primary group and
    the groups that list the user; member lists keep the user alone."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 4:
            continue
        members = [m for m in fields[3].split(",") if m]
        if not (_system(fields[2]) or fields[2] == str(gid) or user in members):
            continue
        fields[3] = user if user in members else ""
        out.append(":".join(fields) + "\n")
    return "".join(out)


def private_view_of(jail: Jail, ident: Identity,
                    ) -> tuple[str, str, int, int | None, tuple[str, ...]] | None:
    """What confine.private_view needs for this login ((home, user, gid, tmp_size in
    bytes or None for the kernel's default, the user's group names), or None when the
    jail says `private = no`."""
    from pam_jail.login.limits import parse_size

    if not jail.flag("private", True):
        return None
    size = parse_size(jail.options.get("tmp_size", DEFAULT_TMP_SIZE))
    groups = tuple(g for g in (ident.group, *ident.groups) if g)
    return jail.home, ident.name, ident.gid, size, groups
