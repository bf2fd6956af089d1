"""The confinement plan: everything one confinement will do, decided before anything is
done. Pure: built from the jail (as resolved), the identity and the jail's options;
confine.py executes it, step by step, for every entry:

  kind "session"  the PAM module, mode pam: root, in the service's process (sshd, login,
                  su...): namespaces incl. PID with a PID 1 of ours, chroot, seccomp
  kind "job"      the PAM module for a job service (cron, atd): the same without a PID 1
                  of ours, devpts or /proc (the job is PID 1)
  kind "isolate"  the PAM module, mode shell/sftp: the login shell or sshd's
                  ChrootDirectory confines; the service keeps no network (and, mode
                  sftp, mounts the customer's private view)
  kind "userns"   pam-jail-shell and pam-jail uchroot: as the user, in a user namespace
  kind "launch"   pam-jail chrootlaunch: root, the PAM path's namespaces, then the drop

`pam-jail explain USER` prints the plan a login of USER would get (Plan.lines, as_dict).
"""

from __future__ import annotations

from pam_jail.login.config import seccomp_of
from pam_jail.login.limits import Limits, limits_of
from pam_jail.login.view import private_view_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_jail.login.resolve import Identity, Jail

    View = tuple[str, str, int, int | None, tuple[str, ...]]

KINDS = ("session", "job", "isolate", "userns", "launch")


class Plan:
    """One confinement (see the module's docstring for the kinds). `program`: the
    seccomp filter for `seccomp`, precomputed by jails.ini's index (Jail.program), else
    None and built where it is loaded."""

    __slots__ = ("kind", "jail", "user", "root", "home", "uid", "gid", "groups", "network",
                 "pid", "init", "proc", "devpts", "tty_gid", "hostname", "limits",
                 "file_size", "view", "seccomp", "program")

    def __init__(self, kind: str, jail: str, user: str, root: str, home: str, uid: int,
                 gid: int, *, groups: tuple[int, ...] = (), network: bool = False,
                 pid: bool = True, init: bool = True, proc: bool = False,
                 devpts: bool = True, tty_gid: int = 5, hostname: str = "",
                 limits: Limits | None = None, file_size: bool = True,
                 view: View | None = None, seccomp: tuple[str, ...] | None = (),
                 program: bytes | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"plan kind {kind!r}")
        self.kind = kind
        self.jail = jail              # the jail's name (log lines, cgroup)
        self.user = user
        self.root = root              # the jail directory on the host
        self.home = home              # the working directory inside the jail
        self.uid = uid
        self.gid = gid
        self.groups = groups          # supplementary groups (launch: set by the drop)
        self.network = network        # jails.ini network = yes: the host's network
        self.pid = pid                # an own PID namespace
        self.init = init              # ... whose PID 1 is ours (else the next child's)
        self.proc = proc              # /proc of that namespace in the jail
        self.devpts = devpts          # ptys of the jail's own
        self.tty_gid = tty_gid        # their group (the PAM path's devpts instance)
        self.hostname = hostname      # a UTS namespace's own name, or "" (keep)
        self.limits = limits          # cgroup and rlimits, or None (none to set)
        self.file_size = file_size    # RLIMIT_FSIZE too (not where root writes later)
        self.view = view              # the customer's private view, or None
        self.seccomp = seccomp        # names seccomp_allow re-allows; None: no filter
        self.program = program

    def build_program(self) -> None:
        """The seccomp program, built now when the index did not hold it: before the
        confinement, in the process that loads it later (after a chroot or pivot the
        jail need not hold pam_jail's modules). No table for this machine: it stays
        None, and confine.load_syscall_filter refuses, naming the problem."""
        if self.seccomp is None or self.program is not None:
            return
        import posix

        from pam_jail.login import syscalls

        try:
            self.program = syscalls.program(posix.uname().machine, self.seccomp)
        except ValueError:
            self.program = None

    def as_dict(self) -> dict[str, object]:
        limits = self.limits
        return {
            "kind": self.kind, "jail": self.jail, "user": self.user, "root": self.root,
            "home": self.home, "uid": self.uid, "gid": self.gid, "groups": list(self.groups),
            "namespaces": self.namespaces(), "network": self.network,
            "pid_init": "ours" if self.pid and self.init else
                        "the first child" if self.pid else None,
            "proc": self.proc, "devpts": self.devpts, "hostname": self.hostname or None,
            "limits": None if limits is None else {
                "max_procs": limits.procs, "memory": limits.memory, "cpu": limits.cpu,
                "max_file_size": limits.fsize if self.file_size else None},
            "private_view": None if self.view is None else {
                "home": self.view[0], "tmp_size": self.view[3],
                "groups": list(self.view[4])},
            "seccomp": None if self.seccomp is None else {
                "allow": list(self.seccomp),
                "program": "precomputed" if self.program is not None else "built at login"},
            "steps": self.steps(),
        }

    def namespaces(self) -> list[str]:
        if self.kind == "isolate":
            return ([] if self.network else ["net"]) + (["mount"] if self.view else [])
        names = ["user"] if self.kind == "userns" else []
        names += ["mount", "IPC", "UTS"] + ([] if self.network else ["net"])
        return names + (["PID"] if self.pid else [])

    def steps(self) -> list[str]:
        """What confine does, in its order (the comments of its sequences)."""
        view = ["private view (homes hidden, own /tmp, passwd/group of the user)"] \
            if self.view is not None else []
        seccomp = [] if self.seccomp is None else ["seccomp filter"]
        limits = [] if self.limits is None else ["limits (cgroup, rlimits)"]
        if self.kind == "isolate":
            return limits + (["empty network namespace"] if not self.network else []) \
                + view + ["no_new_privs"]
        common = ["unshare " + ", ".join(self.namespaces()), "mounts private",
                  "jail bound nosuid,nodev", "safe devices"] + view
        if self.kind == "userns":
            return [*(["rlimits"] if limits else []), common[0], "map ids",
                    "no nested user namespaces", *common[1:],
                    *(["devpts"] if self.devpts else []),
                    *(["hostname"] if self.hostname else []), "fork: PID 1 of the namespace",
                    *(["/proc"] if self.proc else []), "pivot_root", "chdir home",
                    "drop capabilities", "no_new_privs", "drop proven",
                    "Landlock scopes", *seccomp]
        steps = [*limits, *common, *(["devpts"] if self.devpts else []),
                 *(["hostname"] if self.hostname else []), "chroot"]
        if self.kind == "launch":
            return [*steps, "drop capabilities", "switch ids", "no_new_privs",
                    "chdir home", "drop proven", "Landlock scopes", *seccomp]
        steps += ["chdir home", "no_new_privs", "Landlock scopes"]
        if self.pid and self.init:
            steps.append("fork PID 1 (as the user" + (", mounts /proc)" if self.proc else ")"))
        return steps + seccomp

    def lines(self) -> list[str]:
        """The plan for a person: one line per fact."""
        d = self.as_dict()
        out = [f"confinement: {self.kind} ({', '.join(self.namespaces()) or 'no'} "
               "namespaces)"]
        limits = d["limits"]
        if isinstance(limits, dict):
            out.append("limits: " + ", ".join(f"{k} {'-' if v in (None, 0) else v}"
                                              for k, v in limits.items()))
        if self.view is not None:
            size = self.view[3]
            out.append(f"private view: home {self.view[0]}, /tmp "
                       f"{'kernel default' if size is None else f'{size} bytes'}")
        else:
            out.append("private view: no (private = no: the jail is one tree for all)")
        if self.seccomp is None:
            out.append("seccomp: none (seccomp = no)")
        else:
            allow = ", ".join(self.seccomp) or "nothing re-allowed"
            out.append(f"seccomp: the default filter less [{allow}], "
                       + ("precomputed by the index" if self.program is not None
                          else "built at login"))
        out.append("steps: " + "; ".join(self.steps()))
        return out


def plan_login(kind: str, jail: Jail, ident: Identity, *, tty_gid: int = 5) -> Plan:
    """The plan of a login of `ident` into `jail`: kind "session", "job" or "isolate"
    (the PAM module) or "userns" (pam-jail-shell). Raises ValueError on a bad option
    (validate refuses those; a hand-edited jails.ini read without the index may not)."""
    options = jail.options
    job = kind == "job"
    sftp = jail.mode == "sftp"
    limits = limits_of(options)
    view = private_view_of(jail, ident)
    if kind == "isolate":
        return Plan(kind, jail.name, ident.name, jail.root, jail.home, ident.uid, ident.gid,
                    network=jail.flag("network"), pid=False, init=False, devpts=False,
                    limits=limits, file_size=sftp, view=view if sftp else None,
                    seccomp=None)
    seccomp = seccomp_of(options)
    return Plan(kind, jail.name, ident.name, jail.root, jail.home, ident.uid, ident.gid,
                network=jail.flag("network"),
                pid=True if kind in ("userns", "job") else jail.flag("pid", True),
                init=not job, proc=jail.flag("proc") and not job,
                devpts=kind == "userns" or (jail.flag("devpts", True) and not job),
                tty_gid=tty_gid, hostname=options.get("hostname", ""), limits=limits,
                view=view, seccomp=seccomp,
                program=None if seccomp is None else jail.program)


def plan_launch(jail: str, root: str, workdir: str, user: str, uid: int, gid: int,
                groups: tuple[int, ...], options: dict[str, str], *, devpts: bool,
                tty_gid: int = 5) -> Plan:
    """pam-jail chrootlaunch's plan: no PID namespace, no fork, no /proc (a daemon that
    forks into the background would lose its namespace's init), no view, no limits."""
    return Plan("launch", jail, user, root, workdir, uid, gid, groups=groups,
                network=options.get("network") == "yes", pid=False, init=False,
                devpts=devpts, tty_gid=tty_gid, hostname=options.get("hostname", ""),
                seccomp=seccomp_of(options))
