"""Every privileged step of pam_jail, in one module. Nothing else calls unshare, mount,
chroot, pivot_root, setuid or capset.

The sequences read top to bottom:

  confine_pam_session()   -- root, inside the PAM service (sshd, login, su ...):
      the user's cgroup of the jail joined, rlimits -> new mount/IPC/UTS/net/PID
      namespaces -> mounts private -> bind jail on itself nosuid,nodev -> the customer's
      private view (private_view: own /tmp, /var/tmp, /dev/shm; other homes covered;
      etc/passwd, etc/group naming the user alone) -> devpts inside the jail -> chroot
      through the checked fd -> chdir home -> no_new_privs -> Landlock scopes (abstract
      unix sockets, signals; refused for network = yes below ABI 6) -> fork the PID
      namespace's own PID 1 (it mounts the jail's /proc if asked, drops to the
      user, reaps orphans, dies with the service's process) -> seccomp filter.  The
      service itself then drops to the user's ids.  For a service that runs a job
      rather than the login shell (cron, atd, any service not known to exec it), every
      mode, no PID 1 of ours: init=False, the job the service forks next is PID 1, and
      when it ends the kernel ends whatever it left (cron waits for every child it has:
      a PID 1 of ours would keep it, and itself, alive for ever).

  isolate_session()       -- root, inside sshd, for users whom the login shell (mode
      shell) or sshd's ChrootDirectory (mode sftp) confines: the user's cgroup of the
      jail joined, rlimits -> an empty network namespace for the whole sshd session
      (forwarding reaches nothing) -> mode sftp: a mount namespace with the customer's
      private view, which sshd's ChrootDirectory then enters -> no_new_privs.

  confine_unprivileged()  -- as the user, from the login shell (pam-jail-shell):
      rlimits (NPROC, FSIZE) -> new user namespace (uid/gid mapped to themselves) +
      mount/PID/IPC/UTS/net -> no nested user namespaces -> mounts private -> bind jail
      nosuid,nodev -> private view -> devpts -> fork (the child is PID 1 of the new PID
      namespace; the mounts so far are the parent's, in the namespace both share) ->
      /proc of the PID namespace -> pivot_root, old root detached -> chdir home -> with
      sshd's pty on fds 0-2, a pty of the jail's devpts as the controlling terminal (the
      parent relays: take_terminal, relay_terminal) -> drop bounding set and
      capabilities -> no_new_privs -> prove the drop -> Landlock scopes -> seccomp
      filter.

  confine_launch()        -- root (pam-jail chrootlaunch), in the process that execs the
      program: the PAM path's namespaces, mounts and chroot -> bounding set -> groups,
      gid, uid -> capabilities -> no_new_privs -> chdir -> prove the drop -> Landlock
      scopes -> seccomp.

The seccomp filter (load_syscall_filter, profile pam_jail/login/syscalls.py) denies kernel
interfaces a jailed user does not need (keyrings, ptrace, bpf, namespaces, TIOCSTI ...),
per jail `seccomp`/`seccomp_allow`. isolate_session loads none: pam-jail-shell, which
runs next, must still build its namespaces, and loads the filter itself once it has.

Each step is a small function that raises ConfineError naming the action, the object
and errno's text ("mount devpts on /srv/j/dev/pts: Operation not permitted").
"""

from __future__ import annotations

import gc
import posix
import sys

from pam_jail.login import _sys, paths
from pam_jail.login.errors import ConfineError
from pam_jail.login.paths import S_IFDIR, S_IFMT, S_IFREG, S_ISDIR, S_ISLNK

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import signal
    from collections.abc import Callable
    from types import FrameType

    from pam_jail.login.limits import Limits
    from pam_jail.login.plan import Plan

    # the customer whose private view of a shared jail to mount: home, user, gid,
    # tmp_size, the names of the user's groups (their shared-GROUP directories stay)
    View = tuple[str, str, int, int | None, tuple[str, ...]]
else:  # the C module: `signal` imports enum, which the login path cannot afford
    import _signal as signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

RLIMIT_FSIZE = _sys.RLIMIT_FSIZE    # this architecture's numbers (<sys/resource.h>)
RLIMIT_NPROC = _sys.RLIMIT_NPROC
RLIM_INFINITY = _sys.RLIM_INFINITY  # -1, as Python's resource module gives it

PR_CAPBSET_DROP = 24
PR_GET_SECCOMP = 21
SECCOMP_MODE_FILTER = 2
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _fail(action: str, err: int | None) -> ConfineError:
    return ConfineError(f"{action}: {posix.strerror(err or 5)}")   # 5: EIO


def _call(action: str, func: Callable[..., object], *args: object) -> None:
    """One system call of pam_jail.login._sys; its OSError becomes ConfineError(action)."""
    try:
        func(*args)
    except OSError as err:
        raise _fail(action, err.errno) from None


# --- single steps -----------------------------------------------------------------

def close_fds(keep: tuple[int, ...] = ()) -> None:
    """Close every fd above 2 except `keep`: close_range(2), else /proc/self/fd."""
    low = 3
    ranges: list[tuple[int, int]] = []
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            ranges.append((low, fd - 1))
        low = fd + 1
    ranges.append((low, 0xFFFFFFFF))
    for first, last in ranges:
        try:
            _sys.close_range(first, last)
            continue
        except OSError:
            pass
        for name in posix.listdir("/proc/self/fd"):
            fd = int(name)
            if first <= fd <= last:
                try:
                    posix.close(fd)
                except OSError:
                    pass


def unshare(flags: int, what: str) -> None:
    _call(f"unshare {what}", _sys.unshare, flags)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None, *, what: str = "") -> None:
    _call(f"mount {what or fstype or source} on {target}", _sys.mount, source, target,
          fstype, flags, data)


def umount(target: str, flags: int = 0) -> None:
    _call(f"umount {target}", _sys.umount2, target, flags)


def prctl(option: int, arg2: int = 0, what: str = "prctl") -> int:
    try:
        return _sys.prctl(option, arg2)
    except OSError as err:
        raise _fail(what, err.errno) from None


def make_mounts_private() -> None:
    """Nothing we mount from here on propagates back to the host."""
    mount(None, "/", None, MS_REC | MS_PRIVATE, what="private propagation")


def _kept_flags(path: str) -> int:
    """Flags a bind remount must keep (locked in a user namespace)."""
    f = posix.statvfs(path).f_flag
    pairs = ((posix.ST_RDONLY, MS_RDONLY), (posix.ST_NOEXEC, MS_NOEXEC),
             (posix.ST_NOATIME, MS_NOATIME), (posix.ST_NODIRATIME, MS_NODIRATIME),
             (posix.ST_RELATIME, MS_RELATIME))
    return sum(ms for st, ms in pairs if f & st)


def bind_jail_nosuid(jail_fd: int, root: str) -> None:
    """Bind the checked jail directory on its own path, then remount nosuid,nodev:
    setuid files and device nodes in the jail lose their power. The source is the path:
    the checked fd belongs to the old mount namespace (mount(2) refuses it with EINVAL);
    reopen_bound() then proves the path still names the checked directory."""
    mount(root, root, None, MS_BIND | MS_REC, what=f"bind {root}")
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | _kept_flags(root)
    mount(None, root, None, flags, what="nosuid,nodev remount")


def reopen_bound(jail_fd: int, root: str) -> int:
    """After the bind: open the jail path again (it now resolves to the new mount),
    check it is the same directory we checked and that nosuid,nodev took effect."""
    try:  # the path's components were checked root-owned: only root could swap them
        fd = posix.open(root, posix.O_PATH | posix.O_NOFOLLOW | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError as err:
        raise ConfineError(f"reopen {root}: {err}") from None
    old, new = posix.fstat(jail_fd), posix.fstat(fd)
    flags = posix.fstatvfs(fd).f_flag
    if (old.st_dev, old.st_ino) != (new.st_dev, new.st_ino):
        posix.close(fd)
        raise ConfineError(f"reopen {root}: not the directory that was checked")
    if not (flags & posix.ST_NOSUID and flags & posix.ST_NODEV):
        posix.close(fd)
        raise ConfineError(f"remount {root}: nosuid,nodev did not take effect")
    posix.close(jail_fd)
    return fd


# Device nodes a jail may use: the host's own nodes are bound over the jail's entries
# (the jail itself is nodev, so a node created or planted in it stays powerless).
SAFE_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def bind_safe_devices(root: str) -> None:
    """For each SAFE_DEVICES name present in JAIL/dev (a root-owned dir: checked), bind
    the host's node over it. Absent names are skipped; a symlink there is refused."""
    for name in SAFE_DEVICES:
        target = f"{root}/dev/{name}"
        try:
            mode = posix.lstat(target).st_mode
        except FileNotFoundError:
            continue
        if S_ISLNK(mode) or S_ISDIR(mode):
            raise ConfineError(f"bind /dev/{name} on {target}: target is a link or directory")
        mount(f"/dev/{name}", target, None, MS_BIND, what=f"bind /dev/{name}")
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC,
              what=f"nosuid,noexec remount of /dev/{name}")


def mount_devpts(root: str, tty_gid: int) -> None:
    """A private devpts instance for ptys inside the jail (needs JAIL/dev/pts)."""
    target = f"{root}/dev/pts"
    if not paths.isdir(target):
        raise ConfineError(f"mount devpts on {target}: no such directory",
                           hint="build the jail with the 'ptys' profile")
    mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
          f"newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}")


def mount_devpts_userns(root: str) -> None:
    """Mode shell: a devpts instance of the user namespace on JAIL/dev/pts (when the jail
    has the directory, the `ptys` profile), so programs in the jail can open /dev/ptmx
    and new ptys; /dev/tty comes from bind_safe_devices. No gid= option: the tty group is
    not mapped in the user's namespace (the ptys belong to the user's own gid)."""
    target = f"{root}/dev/pts"
    if paths.isdir(target) and not paths.islink(target):
        mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620")


def mount_proc(root: str) -> None:
    target = f"{root}/proc"
    if paths.isdir(target):
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


# Directories a home's parent may be that the view never covers (a home there is an
# admin's odd choice; covering it would hide the system).
_NEVER_COVER = frozenset(("/bin", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/opt",
                          "/proc", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var",
                          "/var/tmp", "/dev/shm"))


def _node_below(root: str, rel: str, kind: int) -> int | None:
    """O_PATH fd of ROOT/REL opened one component at a time with O_NOFOLLOW (no link,
    no '..' anywhere), when its last component is of file type `kind`; else None."""
    parts = [p for p in rel.split("/") if p and p != "."]
    if ".." in parts:
        return None
    flags = posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC
    try:
        fd = posix.open(root, flags | posix.O_DIRECTORY)
    except OSError:
        return None
    for part in parts:
        try:
            nfd = posix.open(part, flags, dir_fd=fd)
        except OSError:
            posix.close(fd)
            return None
        posix.close(fd)
        fd = nfd
        mode = posix.fstat(fd).st_mode
        if S_ISLNK(mode) or (part is not parts[-1] and not S_ISDIR(mode)):
            posix.close(fd)
            return None
    if S_IFMT(posix.fstat(fd).st_mode) != kind:
        posix.close(fd)
        return None
    return fd


def _bind_fd(fd: int, target: str, *, read_only: bool, what: str) -> None:
    """Bind what `fd` names onto `target` (nosuid,nodev; read-only if asked)."""
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND, what=f"bind {what}")
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    mount(None, target, None, flags | _kept_flags(target), what=f"remount {what}")


def _cover(root: str, rel: str, keep: tuple[str, ...] = ()) -> None:
    """An empty read-only tmpfs over ROOT/REL (a real directory, else nothing to do),
    with each ROOT/REL/NAME of `keep` that is a real directory bound back in."""
    dir_fd = _node_below(root, rel, S_IFDIR)
    if dir_fd is None:
        return
    posix.close(dir_fd)
    kept: list[tuple[str, int]] = []
    try:
        for name in keep:
            if name and "/" not in name and name not in (".", ".."):
                fd = _node_below(root, f"{rel}/{name}", S_IFDIR)
                if fd is not None:
                    kept.append((name, fd))
        target = f"{root}{rel}"
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              f"mode=0755,size=16k,nr_inodes={8 + len(kept)}", what=f"tmpfs over {rel}")
        for name, fd in kept:
            _call(f"mkdir {rel}/{name}", posix.mkdir, f"{target}/{name}", 0o755)
            _bind_fd(fd, f"{target}/{name}", read_only=False, what=f"{rel}/{name}")
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
              | MS_NOEXEC, what=f"read-only remount of {rel}")
    finally:
        for _name, fd in kept:
            posix.close(fd)


def _read_all(path: str) -> bytes:
    """A whole file's bytes through posix (no io text layer: ~0.1 ms less per login)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return paths.read_fd(fd)
    finally:
        posix.close(fd)


def _write_new(path: str, text: str) -> None:
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
                        | posix.O_CLOEXEC, 0o644)
        try:
            posix.write(fd, text.encode())
            posix.fchmod(fd, 0o644)
        finally:
            posix.close(fd)
    except OSError as err:
        raise _fail(f"write {path}", err.errno) from None


def private_view(root: str, home: str, user: str, gid: int, tmp_size: int | None,
                 groups: tuple[str, ...] = ()) -> None:
    """After the jail's bind, before chroot/pivot_root: one customer's view of a shared
    jail (pam_jail/login/view.py says what and why). The session's tmpfs is staged on
    JAIL/tmp: its subdirectories become /tmp, /var/tmp and /dev/shm, its files etc/passwd
    and etc/group; the bind of .tmp over JAIL/tmp itself then hides the stage."""
    from pam_jail.login import view

    stage = f"{root}/tmp"
    fd = _node_below(root, "/tmp", S_IFDIR)
    if fd is None:
        raise ConfineError(f"private view: {stage} is not a directory",
                           hint="pam-jail update (the builder makes /tmp), or private = no")
    posix.close(fd)
    size = "" if tmp_size is None else f",size={tmp_size}"
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755{size}",
          what="the session's tmpfs")                       # a. the session's tmpfs
    for name in (".tmp", ".var-tmp", ".shm"):
        _call(f"mkdir {name}", posix.mkdir, f"{stage}/{name}", 0o700)
        _call(f"chmod {name}", posix.chmod, f"{stage}/{name}", 0o1777)
    for name in ("passwd", "group"):                        # b. etc/passwd, etc/group
        fd = _node_below(root, f"/etc/{name}", S_IFREG)
        if fd is None:
            continue
        try:
            text = _read_all(f"/proc/self/fd/{fd}").decode("utf-8", "replace")
        except OSError as err:
            raise _fail(f"read {root}/etc/{name}", err.errno) from None
        finally:
            posix.close(fd)
        _write_new(f"{stage}/{name}", view.passwd_view(text, user) if name == "passwd"
                   else view.group_view(text, user, gid))
        target = f"{root}/etc/{name}"
        mount(f"{stage}/{name}", target, None, MS_BIND, what=f"bind /etc/{name}")
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
              | MS_NOEXEC, what=f"read-only remount of /etc/{name}")
    for name, rel in ((".var-tmp", "/var/tmp"), (".shm", "/dev/shm")):  # c. var/tmp, shm
        fd = _node_below(root, rel, S_IFDIR)
        if fd is not None:
            posix.close(fd)
            mount(f"{stage}/{name}", f"{root}{rel}", None, MS_BIND, what=f"bind {rel}")
    mount(f"{stage}/.tmp", stage, None, MS_BIND, what="bind /tmp")   # d. stage hidden
    homes = view.homes_dir(home)                            # e. other customers' homes
    if homes is not None and homes not in _NEVER_COVER:
        _cover(root, homes, (home.rstrip("/").rsplit("/", 1)[1],
                             *(f"shared-{group}" for group in groups)))
    _cover(root, "/.home", (user,))                         #    the stub homes but
    #   the user's own (root's: `.ssh` only), which sshd chdirs to in mode pam


def chroot_fd(jail_fd: int, root: str) -> None:
    """chroot into the directory we checked (by fd), then chdir("/") inside it."""
    try:
        posix.fchdir(jail_fd)
        posix.chroot(".")
        posix.chdir("/")
    except OSError as err:
        raise _fail(f"chroot {root}", err.errno) from None


def pivot_into(jail_fd: int, root: str) -> None:
    """pivot_root into the (bind-mounted) jail and detach the old root entirely."""
    try:
        posix.fchdir(jail_fd)
    except OSError as err:
        raise _fail(f"chdir {root}", err.errno) from None
    posix.close(jail_fd)
    _call(f"pivot_root {root}", _sys.pivot_root, ".", ".")
    umount(".", MNT_DETACH)
    posix.chdir("/")


def chdir_home(home: str) -> None:
    try:
        posix.chdir(home)
    except OSError as err:
        raise _fail(f"chdir {home}", err.errno) from None


def write_file(path: str, text: str) -> None:
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, text.encode())
        finally:
            posix.close(fd)
    except OSError as err:
        raise _fail(f"write {path}", err.errno) from None


def map_ids(uid: int, gid: int) -> None:
    """In the new user namespace the user stays itself; nobody else is mapped."""
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1\n")


def forbid_nested_userns() -> None:
    """max_user_namespaces is per user namespace: 0 here means the jailed user cannot
    create a nested one (the host's value is unchanged)."""
    write_file("/proc/sys/user/max_user_namespaces", "0")


PR_SET_PDEATHSIG = 1


def die_with_parent(alive_fd: int) -> None:
    """SIGKILL this process when the relay outside the PID namespace dies (killed with
    SIGKILL it cannot forward anything). `alive_fd` is the read end of a pipe whose
    write end only the relay holds: EOF means it died before PDEATHSIG was armed
    (getppid() cannot tell: it is 0 across the PID namespace boundary)."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), what="prctl PR_SET_PDEATHSIG")
    posix.set_blocking(alive_fd, False)
    try:
        gone = posix.read(alive_fd, 1) == b""
    except BlockingIOError:
        gone = False
    posix.close(alive_fd)
    if gone:
        posix._exit(1)


def userns_unavailable() -> str | None:
    """Why unprivileged user namespaces cannot be used here, or None (a read, no step)."""
    try:
        if int(_read_all("/proc/sys/user/max_user_namespaces")) == 0:
            return "user namespaces are disabled (user.max_user_namespaces = 0)"
    except (OSError, ValueError):
        return "user namespaces are not available on this kernel"
    return None


def confinement_missing() -> str | None:
    """Why this process is NOT inside a jail that pam_jail confined (None: it is). A read,
    no step: pam-jail-lsh asks it first, so a session that reached it without the PAM
    module (a missing, optional or skipped pam.d line, a removed pam_python.so) is
    refused instead of running on the host. Every confinement sets no_new_privs and
    binds the jail nosuid,nodev; sshd, su and login never do either on the host, and a
    jail never holds the host's jails.ini."""
    if prctl(PR_GET_NO_NEW_PRIVS, what="prctl PR_GET_NO_NEW_PRIVS") != 1:
        return "no_new_privs is not set"
    flags = posix.statvfs("/").f_flag
    if not (flags & posix.ST_NOSUID and flags & posix.ST_NODEV):
        return "/ is not a nosuid,nodev jail mount"
    if paths.lexists("/etc/pam_jail/jails.ini"):
        return "/ holds the host's /etc/pam_jail/jails.ini"
    return None


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl PR_SET_NO_NEW_PRIVS")


def drop_bounding_set() -> None:
    """Every capability out of the bounding set (one call into _sys: ~41 prctl calls)."""
    try:
        _sys.capbset_drop_all()
    except OSError as err:
        raise _fail(f"drop capability {err.filename} from the bounding set",
                    err.errno) from None


def _capget() -> tuple[int, int, int]:
    try:
        return _sys.capget()
    except OSError as err:
        raise _fail("capget", err.errno) from None


def clear_capabilities() -> None:
    try:
        _sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass   # no ambient set on this kernel: nothing to clear
    _call("capset (clear all)", _sys.capset, 0, 0, 0)


def switch_ids(uid: int, gid: int, groups: list[int]) -> None:
    """setgroups -> setresgid -> setresuid (OpenSSH's permanently_set_uid order)."""
    if uid == 0:
        raise ConfineError("switch to uid 0: refused (never root inside a jail)")
    try:
        posix.setgroups(groups)
        posix.setresgid(gid, gid, gid)
        posix.setresuid(uid, uid, uid)
    except OSError as err:
        raise _fail(f"switch to uid {uid} gid {gid}", err.errno) from None


def prove_dropped(uid: int, gid: int) -> None:
    """Try to regain what was dropped; any success aborts the login."""
    if posix.getresuid() != (uid, uid, uid) or posix.getresgid() != (gid, gid, gid):
        raise ConfineError(f"verify ids: still {posix.getresuid()}/{posix.getresgid()}")
    attempts: tuple[tuple[Callable[..., None], tuple[int, ...]], ...] = (
        (posix.setuid, (0,)), (posix.setresuid, (-1, 0, -1)), (posix.setgid, (0,)))
    for call, args in attempts:
        try:
            call(*args)
        except OSError:
            continue
        raise ConfineError("verify privilege drop: regaining uid/gid 0 succeeded")
    eff, perm, inh = _capget()
    if eff or perm or inh:
        raise ConfineError(f"verify privilege drop: capabilities left "
                           f"(eff={eff:#x} perm={perm:#x} inh={inh:#x})")
    if prctl(PR_GET_NO_NEW_PRIVS, what="prctl PR_GET_NO_NEW_PRIVS") != 1:
        raise ConfineError("verify privilege drop: no_new_privs is not set")


# --- IPC scoping (Landlock): abstract unix sockets and signals stay in the session ----

LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1
LANDLOCK_SCOPE_SIGNAL = 2
LANDLOCK_SCOPES = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL
LANDLOCK_SCOPE_ABI = 6      # the first Landlock ABI with scopes (Linux 6.12)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has no Landlock or it is not enabled
    at boot (a read, no step: doctor asks it too)."""
    try:
        return _sys.landlock_abi()
    except OSError:
        return 0


def scope_decision(abi: int, network: bool) -> tuple[int, str | None]:
    """Pure: the Landlock scopes a session gets on a kernel of Landlock ABI `abi`, and
    the reason to refuse it (None: go on). A jail with `network = yes` shares the host's
    network namespace, hence its abstract unix sockets (a host process handing out fds
    there is a way out) and every other session's: without scoping it is refused. With
    `network = no` the namespace is the session's own; the scopes are a second wall,
    applied where the kernel has them and silently skipped where it has not."""
    if abi >= LANDLOCK_SCOPE_ABI:
        return LANDLOCK_SCOPES, None
    if network:
        have = f"Landlock ABI {abi}" if abi else "no Landlock"
        return 0, (f"scope abstract unix sockets of a network = yes jail: this kernel has "
                   f"{have}, scoping needs ABI {LANDLOCK_SCOPE_ABI} (Linux 6.12)")
    return 0, None


def scope_ipc(network: bool, jail: str = "") -> None:
    """After no_new_privs, before seccomp: a new Landlock domain that only scopes (no
    file or port rule), so this process and everything it starts can neither connect
    nor send to an abstract unix socket made outside the domain (the host's, another
    session's) nor signal a process outside it. Each session is its own domain, so
    two customers of one jail are apart as well. Refused per scope_decision()."""
    scoped, refusal = scope_decision(landlock_abi(), network)
    if refusal:
        where = f"jail {jail}" if jail else "the jail"
        raise ConfineError(refusal, hint=f"set network = no for {where}, or boot a kernel "
                           ">= 6.12 with landlock in its lsm= list")
    if not scoped:
        return
    try:
        fd = _sys.landlock_create_ruleset(0, 0, scoped)
    except OSError as err:
        raise _fail("landlock_create_ruleset (scoped abstract unix sockets, signals)",
                    err.errno) from None
    try:
        _call("landlock_restrict_self", _sys.landlock_restrict_self, fd)
    finally:
        posix.close(fd)


def load_syscall_filter(allow: tuple[str, ...], prog: bytes | None = None) -> None:
    """Load the seccomp profile (pam_jail/login/syscalls.py) minus the groups and rules named
    in `allow`; it holds for this process and everything it forks and executes. Needs
    no_new_privs (set before) or root. Read back: the process must be in filter mode.
    `prog`: that very program, precomputed (config_index.seccomp_program: jails.ini's
    index holds it, built by this profile for these options); else it is built here."""
    if prog is None:             # (Plan.build_program builds it before any chroot)
        try:
            from pam_jail.login import syscalls

            prog = syscalls.program(posix.uname().machine, allow)
        except ImportError:
            raise ConfineError("build seccomp filter: the profile cannot be loaded here "
                               "(not built before the confinement)") from None
        except ValueError as err:
            raise ConfineError(f"build seccomp filter: {err}") from None
    _call("load seccomp filter", _sys.seccomp_filter, prog)
    if prctl(PR_GET_SECCOMP, what="prctl PR_GET_SECCOMP") != SECCOMP_MODE_FILTER:
        raise ConfineError("load seccomp filter: the process is not in filter mode")


def set_hostname(name: str) -> None:
    try:
        import _socket
        _socket.sethostname(name[:64])
    except OSError as err:
        raise _fail(f"sethostname {name[:64]}", err.errno) from None


# --- resource limits (pam_jail.login.limits decides, these write) --------------------------

def read_text(path: str) -> str:
    """A small kernel file's text ("" when unreadable): mountinfo, cgroup files."""
    try:
        return _read_all(path).decode("utf-8", "replace")
    except OSError:
        return ""


def join_limits_cgroup(limits: Limits, jail: str, user: str) -> list[str]:
    """Root: make pam_jail/JAIL/USER in every hierarchy that carries pids, memory or cpu,
    write the limits there and move this process in (its children follow). Returns the
    jails.ini keys no controller carries; memory or cpu among them is a refusal (they
    are set only on purpose), max_procs is left to RLIMIT_NPROC by the caller."""
    from pam_jail.login.limits import cgroup_writes, controllers, v2_mount

    mountinfo = read_text("/proc/self/mountinfo")
    v2 = v2_mount(mountinfo)
    where = controllers(mountinfo, read_text(f"{v2}/cgroup.controllers") if v2 else "")
    writes, missing = cgroup_writes(limits, where, jail, user)
    hard = [key for key in missing if key in ("memory", "cpu")]
    if hard:
        raise ConfineError(f"limit {', '.join(hard)} of jail {jail}: no cgroup controller for "
                           "it on this host", hint="remove the key from jails.ini, or mount "
                           "the controller (cgroup v1 or v2)")
    directories = list(dict.fromkeys(d for d, _f, _v in writes))
    for directory in directories:
        mount = next(m for _version, m in where.values() if directory.startswith(m + "/"))
        parts = directory[len(mount) + 1:].split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join([mount, *parts[:depth]])
            if mount == v2:   # v2: a controller must be enabled in every parent
                enable = " ".join(f"+{name}" for name, (version, _m) in where.items()
                                  if version == "v2")
                write_file("/".join([mount, *parts[:depth - 1]]) + "/cgroup.subtree_control",
                           enable)
            try:
                posix.mkdir(path, 0o755)
            except FileExistsError:
                pass
            except OSError as err:
                raise _fail(f"mkdir cgroup {path}", err.errno) from None
    for directory, name, value in writes:
        write_file(f"{directory}/{name}", value)
    for directory in directories:
        write_file(f"{directory}/cgroup.procs", str(posix.getpid()))
    return missing


def set_rlimits(limits: Limits, *, file_size: bool = True) -> None:
    """RLIMIT_NPROC (per uid, host-wide: a floor under the cgroup) and RLIMIT_FSIZE. Root
    itself is exempt from NPROC; it binds the user's processes after the switch."""
    pairs = [(RLIMIT_NPROC, limits.procs)]
    if file_size and limits.fsize is not None:
        pairs.append((RLIMIT_FSIZE, limits.fsize))
    for which, value in pairs:
        try:
            hard = _sys.getrlimit(which)[1]
            value = value if hard == RLIM_INFINITY else min(value, hard)
            _sys.setrlimit(which, value, value)
        except (OSError, OverflowError) as err:
            raise ConfineError(f"setrlimit {which} {value}: {err}") from None


def apply_limits(limits: Limits | None, jail: str, user: str, *,
                 file_size: bool = True) -> list[str]:
    """Root: the user's cgroup of the jail joined, then the rlimits (none when `limits`
    is None). Returns the limits no cgroup controller carries (for the log)."""
    if limits is None:
        return []
    uncarried = join_limits_cgroup(limits, jail, user)
    set_rlimits(limits, file_size=file_size)
    return uncarried


# --- the two sequences -------------------------------------------------------------

def chroot_in_namespaces(jail_fd: int, root: str, flags: int, *, devpts: bool, tty_gid: int,
                         hostname: str, view: View | None = None) -> None:
    """Steps 1-7 of both root sequences (the PAM session, the launcher); `flags` are the
    namespaces to unshare; `view`: (home, user, gid, tmp_size) of the customer whose
    private view of the jail to mount (jails.ini `private`), or None."""
    unshare(flags, "mount/IPC/UTS/net namespaces")          # 1. own namespaces
    make_mounts_private()                                   # 2. no propagation to host
    bind_jail_nosuid(jail_fd, root)                         # 3. jail nosuid,nodev
    jail_fd = reopen_bound(jail_fd, root)                   #    enter the new mount
    bind_safe_devices(root)                                 #    null, zero, urandom...
    if view is not None:
        private_view(root, *view)                           #    own /tmp, homes hidden
    if devpts:
        mount_devpts(root, tty_gid)                         # 4. ptys inside the jail
    if hostname:
        set_hostname(hostname)                              # 5. jail's own hostname
    chroot_fd(jail_fd, root)                                # 6. enter the checked dir
    posix.close(jail_fd)                                    # 7. no fd to the host left


# The user whose session confine_pam_session() confined this process for (a stack that
# reaches pam_jail's session line twice, su-l including su, confines once).
_CONFINED_FOR: list[str] = []


def confined_for() -> str | None:
    """The user this process was confined for by confine_pam_session(), or None."""
    return _CONFINED_FOR[0] if _CONFINED_FOR else None


def confine_pam_session(jail_fd: int, plan: Plan) -> list[str]:
    """Root, in the PAM service's process, before the service drops to the user: `plan`
    (kind "session" or "job", plan.plan_login) executed.
    plan.pid (the default) also unshares the PID namespace, so jailed processes can
    neither see, signal nor trace host processes of the same uid; the namespace's PID 1
    is our own small process (spawn_namespace_init), so a later session module that
    forks a short-lived helper, or a second session channel, does not end it.
    plan.seccomp: the names jails.ini's `seccomp_allow` re-allows, or None (`seccomp =
    no`); plan.program: its filter, precomputed (jails.ini's index), or None.
    The filter comes last: sshd's remaining work, the later session modules and every
    process of the session run under it (PID 1, forked before, runs no user code).
    plan.init False (a job service: cron, atd): no PID 1 of ours and no /proc; the
    service's next child (the job) is the namespace's PID 1, its end ends the namespace.
    Returns the limits no cgroup controller carries (for the log)."""
    uid, gid, user, jail = plan.uid, plan.gid, plan.user, plan.jail
    spawn = plan.pid and plan.init
    flags = (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (0 if plan.network else CLONE_NEWNET)
             | (CLONE_NEWPID if plan.pid else 0))
    uncarried = apply_limits(plan.limits, jail, user)       # 0. cgroup, rlimits
    # the host's /proc, for PID 1 to name itself in ps (closed by spawn_namespace_init
    # in both processes right after the fork, or here on failure: no fd of the host
    # outlives step 10)
    proc_fd = (posix.open("/proc", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
               if spawn else -1)
    try:
        chroot_in_namespaces(jail_fd, plan.root, flags, devpts=plan.devpts,
                             tty_gid=plan.tty_gid, hostname=plan.hostname,
                             view=plan.view)                # 1-7. namespaces..chroot
        chdir_home(plan.home)                               # 8. home inside the jail
        set_no_new_privs()                                  # 9. no setuid gains later
        _CONFINED_FOR.append(user or str(uid))              #    (once per process)
        scope_ipc(plan.network, jail)                       # 9a. Landlock scopes (PID 1
        #   inside the domain too: the kernel refuses a scoped parent's PDEATHSIG to a
        #   task outside its domain, and PID 1 would outlive the service)
    except BaseException:
        if proc_fd >= 0:
            posix.close(proc_fd)
        raise
    if spawn:
        spawn_namespace_init(uid, gid, proc=plan.proc,      # 10. our PID 1, as the user
                             title=f"pam_jail: init of {user or uid}'s session in {jail}",
                             proc_fd=proc_fd)
    if plan.seccomp is not None:
        load_syscall_filter(plan.seccomp, plan.program)     # 11. seccomp filter
    return uncarried


def isolate_session(plan: Plan) -> list[str]:
    """Root, in sshd's per-connection process, for a user whom the login shell or sshd's
    ChrootDirectory confines (`plan` of kind "isolate"): whatever sshd itself does for
    the session afterwards (forwarding, internal-sftp) has no network but a down
    loopback, and runs in the user's cgroup of the jail. RLIMIT_FSIZE only with
    plan.file_size (mode sftp: this process writes no host file later; mode shell:
    pam-jail-shell sets it). plan.view (mode sftp): the customer's private view of the
    jail directory, mounted in a mount namespace of this process, which sshd's
    ChrootDirectory then enters (pam-jail-shell mounts its own in mode shell)."""
    uncarried = apply_limits(plan.limits, plan.jail, plan.user,
                             file_size=plan.file_size)      # 1. cgroup, rlimits
    if not plan.network:
        unshare(CLONE_NEWNET, "net namespace")              # 2. empty network
    if plan.view is not None:
        unshare(CLONE_NEWNS, "mount namespace")             # 3. own /tmp, homes hidden
        make_mounts_private()
        private_view(plan.root, *plan.view)
    set_no_new_privs()                                      # 4. no setuid gains later
    return uncarried


# The write end of the pipe whose EOF tells the namespace's PID 1 that the service's
# process is gone (kept open, close-on-exec, for the life of that process).
_INIT_ALIVE: list[int] = []
_INIT_PIDS: list[int] = []        # the PID 1 this process forked (end_namespace_init)
# True when this process had no child at all when it forked its PID 1: every child it
# has later was forked after the unshare, inside the namespace (end_namespace_init)
_ONLY_NAMESPACE_CHILDREN: list[bool] = []


def spawn_namespace_init(uid: int, gid: int, *, proc: bool, title: str = "",
                         proc_fd: int = -1) -> None:
    """After unshare(CLONE_NEWPID) the first child forked becomes PID 1 of the new
    namespace, and when PID 1 exits no process can be forked into it any more. Fork that
    child now, here: it mounts the namespace's /proc in the jail (proc=True), drops every
    privilege to the user's ids, closes every fd, then only reaps orphans. It dies with
    the service's process (PR_SET_PDEATHSIG, and a pipe for the race before it is armed);
    the kernel then kills every process left in the namespace."""
    alive_r, alive_w = posix.pipe()
    only_namespace = not _has_children()
    try:
        child = posix.fork()
    except OSError as err:
        if proc_fd >= 0:
            posix.close(proc_fd)
        raise _fail("fork the PID namespace's init", err.errno) from None
    if child:
        if proc_fd >= 0:
            posix.close(proc_fd)
        posix.close(alive_r)
        _INIT_ALIVE.append(alive_w)
        _INIT_PIDS.append(child)
        _ONLY_NAMESPACE_CHILDREN.append(only_namespace)
        return
    try:                                     # PID 1 of the namespace, inside the jail
        if proc_fd >= 0:
            set_title(title, proc_fd)
            posix.close(proc_fd)
        posix.close(alive_w)
        if proc:
            mount_proc("")
        close_fds(keep=(alive_r,))
        _quiet_stdio()
        drop_bounding_set()
        switch_ids(uid, gid, [gid])
        clear_capabilities()
        prove_dropped(uid, gid)              # like every other drop: else no namespace
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), what="prctl PR_SET_PDEATHSIG")
        posix.set_blocking(alive_r, False)
        try:
            if posix.read(alive_r, 1) == b"":
                posix._exit(0)               # the service died before PDEATHSIG was armed
        except BlockingIOError:
            pass
        _reap_forever()
    except BaseException:  # noqa: B036 - PID 1 must never return into the PAM stack
        posix._exit(1)


# How long close_session waits for the PID 1 it ended: in the sessions seen, it is gone
# within a few ms of the kill; the bound keeps a logout from ever waiting longer.
INIT_REAP_WAIT = 0.2


def end_namespace_init(wait: float = INIT_REAP_WAIT) -> None:
    """At pam_sm_close_session, in the service's process that forked the PID namespace's
    PID 1: end it (the kernel then kills whatever the session left in the namespace) and
    reap it here, by its parent, waiting at most `wait` seconds: never a blocking wait.

    An exiting PID 1 is reaped only once every process of its namespace is, and one of
    them is the service's own child when the service forked after the session opened:
    sshd's privsep child (`sshd: USER@notty`, PID 2 there), whose end sshd's monitor
    waits for only after pam_close_session returns (mm_answer_term: close_session, then
    waitpid), or never (cleanup_exit: close_session, then _exit; the normal logout,
    where the client's disconnect ends the privsep child first). So when this process
    had no child when it forked PID 1 (sshd's monitor, su, login: then every child it
    has is in the namespace, killed with PID 1 and about to be, or already, a zombie),
    those children are reaped here too, then PID 1. sshd's own waitpid then finds no
    child and its monitor exits 1 instead of the child's status, which nothing reads.
    A process that had other children reaps only PID 1, and what is not reaped within
    `wait` (a process some other parent has not reaped yet) is the host init's once the
    service exits, as before."""
    import time

    while _INIT_PIDS:
        pid = _INIT_PIDS.pop()
        everything = _ONLY_NAMESPACE_CHILDREN.pop() if _ONLY_NAMESPACE_CHILDREN else False
        try:
            posix.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + wait
        while not _reap(pid, everything) and time.monotonic() < deadline:
            time.sleep(0.002)


def _has_children() -> bool:
    """Whether this process has any child, running or not (waitid reaps nothing)."""
    try:
        posix.waitid(posix.P_ALL, 0, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _reap(pid: int, everything: bool) -> bool:
    """Reap PID 1 (`pid`) if it is a zombie; with `everything`, every zombie child
    first (all of them are the namespace's). True once `pid` is reaped or gone."""
    try:
        if not everything:
            return posix.waitpid(pid, posix.WNOHANG)[0] == pid
        while True:
            done, _status = posix.waitpid(-1, posix.WNOHANG)
            if done == pid:
                return True
            if done == 0:
                return False
    except ChildProcessError:
        return True


def set_title(text: str, proc_fd: int) -> None:
    """Name this process for ps and top through `proc_fd` (the host's /proc): its comm,
    and the command-line area the kernel shows as /proc/PID/cmdline, overwritten in place
    (a forked child of sshd would otherwise show `sshd: USER [priv]`). That area is the
    argv strings, and the environment strings after them when the current title already
    runs on into them (the setproctitle convention the kernel follows: the last argv
    byte is not NUL; sshd's title does, the environment having been moved away first):
    the system sshd's argv, `/usr/sbin/sshd -D -R`, alone holds 20 characters. Best
    effort: a title is no safety step."""
    def at(name: str, flags: int) -> int:
        return posix.open(f"self/{name}", flags | posix.O_CLOEXEC, dir_fd=proc_fd)

    try:
        fd = at("comm", posix.O_WRONLY)
        try:
            posix.write(fd, text.encode()[:15])
        finally:
            posix.close(fd)
        fd = at("stat", posix.O_RDONLY)
        try:
            fields = posix.read(fd, 4096).rsplit(b")", 1)[1].split()
        finally:
            posix.close(fd)
        # arg_start, arg_end, env_start, env_end: fields 48-51 of /proc/PID/stat
        start, end, env_start, env_end = (int(f) for f in fields[45:49])
        fd = at("mem", posix.O_RDWR)
        try:
            if env_start == end < env_end and posix.pread(fd, 1, end - 1) != b"\0":
                end = env_end                 # the title's area runs on over the environ
            data = text.encode()[: max(0, end - start - 1)]
            posix.pwrite(fd, data + b"\0" * (end - start - len(data)), start)
        finally:
            posix.close(fd)
    except (OSError, ValueError, IndexError):
        pass


def _quiet_stdio() -> None:
    """fds 0-2 of PID 1 on /dev/null (or closed): it must hold none of the session's
    pipes or sockets, or sshd would wait for an EOF that never comes."""
    try:
        null = posix.open("/dev/null", posix.O_RDWR)
    except OSError:
        for fd in (0, 1, 2):
            try:
                posix.close(fd)
            except OSError:
                pass
        return
    for fd in (0, 1, 2):
        if fd != null:
            posix.dup2(null, fd)
    if null > 2:
        posix.close(null)


def _reap_forever() -> None:
    """PID 1's only work: collect every child that dies in the namespace."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        while True:
            try:
                pid, _status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        signal.sigwait({signal.SIGCHLD})


def confine_unprivileged(jail_fd: int, plan: Plan, on_parent: Callable[[int], int]) -> None:
    """As the user (no privileges on the host): `plan` (kind "userns") executed. Returns
    in the child only, confined; the parent runs `on_parent(child_pid)` and exits with
    its result. plan.program: the filter for plan.seccomp, precomputed (else built in
    the child). The jail's mounts are made before the fork, in the mount namespace both
    processes share: what a child touches after a fork costs it a page copy, and only
    the child, PID 1 of the new PID namespace, can mount that namespace's /proc (while
    the host's is still visible: the kernel refuses a new proc in a user namespace that
    shows none) and pivot after it."""
    uid, gid, root = plan.uid, plan.gid, plan.root
    if uid == 0 or posix.geteuid() == 0:
        raise ConfineError("confine as root: refused (the login shell runs as the user)")
    if plan.limits is not None:
        set_rlimits(plan.limits)                             # 0. NPROC, FSIZE
    flags = (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
             | (0 if plan.network else CLONE_NEWNET))
    unshare(flags, "user/mount/PID/IPC/UTS/net namespaces")  # 1. own namespaces
    map_ids(uid, gid)                                        # 2. user stays itself
    forbid_nested_userns()                                   # 3. no nested userns
    make_mounts_private()                                    # 4. no propagation
    bind_jail_nosuid(jail_fd, root)                          # 5. jail nosuid,nodev
    jail_fd = reopen_bound(jail_fd, root)                    #    the new mount
    bind_safe_devices(root)                                  #    null, zero, urandom...
    mount_devpts_userns(root)                                #    ptys of its own
    if plan.view is not None:
        private_view(root, *plan.view)                       #    own /tmp, homes hidden
    if plan.hostname:
        set_hostname(plan.hostname)                          # 6. jail's hostname
    alive_r, alive_w = posix.pipe()                          #    EOF = relay gone
    terminal = _terminal_channel()                           #    sshd's pty on 0-2?
    pid = posix.fork()                                       # 7. child = PID 1
    if pid:
        gc.enable()      # the relay lives as long as the session (the entry disabled it)
        posix.close(alive_r)
        posix.close(jail_fd)
        drop_bounding_set()
        clear_capabilities()
        set_no_new_privs()
        master = _receive_terminal(terminal)
        posix._exit(on_parent(pid) if master is None else relay_terminal(pid, master, on_parent))
    posix.close(alive_w)
    die_with_parent(alive_r)                                 #    no orphaned jail
    if plan.proc:
        mount_proc(root)                                     # 8. /proc of this PID ns
    pivot_into(jail_fd, root)                                # 9. old root detached
    chdir_home(plan.home)                                    # 10. home in the jail
    take_terminal(terminal)                                  # 10a. a pty of the jail's
    drop_bounding_set()                                      # 11. no capabilities
    clear_capabilities()
    set_no_new_privs()                                       # 12. no setuid gains
    prove_dropped(uid, gid)                                  # 13. try to regain: fail
    scope_ipc(plan.network)                                  # 13a. Landlock scopes
    if plan.seccomp is not None:
        load_syscall_filter(plan.seccomp, plan.program)      # 14. seccomp filter


# --- mode shell's terminal: sshd allocated the session's pty on the host's devpts before
# the login shell ran; the jail's devpts instance (the user namespace's own) does not hold
# it, so `tty` would answer "not a tty". With a pty on fds 0-2, PID 1 takes a new pty of
# the jail's devpts as its controlling terminal and the parent relays between the two
# (like `script`); commands without a pty (scp, sftp, rsync) are not relayed.

def _terminal_channel() -> tuple[_socket.socket, _socket.socket] | None:
    """A socket pair (parent's end, child's end) for the master fd when fds 0-2 are one
    terminal, else None. What the relay uses is imported here, before the pivot: the
    jail may lack the modules. The C module _socket, not `socket`: that one costs about
    5 ms of start-up (enum, selectors)."""
    try:
        ttys = {posix.fstat(fd).st_rdev for fd in (0, 1, 2) if posix.isatty(fd)}
    except OSError:
        return None
    if len(ttys) != 1 or not all(posix.isatty(fd) for fd in (0, 1, 2)):
        return None
    import _socket
    import fcntl  # noqa: F401 - loaded now, used after the pivot
    import select  # noqa: F401
    import termios  # noqa: F401
    import tty  # noqa: F401
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)


def take_terminal(channel: tuple[_socket.socket, _socket.socket] | None) -> None:
    """10a. (PID 1, inside the jail) a new pty of the jail's devpts (/dev/ptmx ->
    pts/ptmx), with the host pty's modes and size, becomes the session's controlling
    terminal on fds 0-2; its master goes to the parent. Without ptys in the jail (no
    `ptys` profile) nothing changes: the host's pty stays."""
    if channel is None:
        return
    import _socket
    import fcntl
    import termios

    channel[0].close()
    try:
        try:
            master, slave = posix.openpty()
        except OSError:
            return
        try:
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))
            fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))
            channel[1].sendmsg([b"t"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                         master.to_bytes(4, sys.byteorder, signed=True))])
        finally:
            posix.close(master)
        posix.login_tty(slave)               # setsid, controlling terminal, fds 0-2
    finally:
        channel[1].close()


def _receive_terminal(channel: tuple[_socket.socket, _socket.socket] | None) -> int | None:
    """The parent: the master fd PID 1 sent, or None (no terminal, or PID 1 failed)."""
    if channel is None:
        return None
    import _socket

    channel[1].close()
    fds = []
    try:
        _, ancillary, _, _ = channel[0].recvmsg(1, _socket.CMSG_LEN(4))
    except OSError:
        ancillary = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(data) - len(data) % 4, 4)]
    channel[0].close()
    for extra in fds[1:]:                      # one was sent; never keep a stray fd
        posix.close(extra)
    return fds[0] if fds else None


def relay_terminal(pid: int, master: int, on_parent: Callable[[int], int]) -> int:
    """The parent: copy between the host's pty (fds 0, 1; raw while relaying) and the
    jail's (master), pass window size changes on, until every process of the session
    has closed the jail's pty (PID 1's end ends them all); then on_parent(pid)."""
    import fcntl
    import select
    import termios
    import tty

    def winch(_signum: int = 0, _frame: FrameType | None = None) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ,
                        fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))
        except OSError:
            pass

    saved = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)
    signal.signal(signal.SIGWINCH, winch)
    posix.set_blocking(master, False)
    pending = b""                                  # typed, not yet taken by the jail's pty
    try:
        while True:
            readers = [master, *([0] if len(pending) < 1 << 16 else [])]
            ready, writable, _ = select.select(readers, [master] if pending else [], [])
            if master in ready:
                try:
                    data = posix.read(master, 1 << 16)
                except BlockingIOError:
                    data = None
                except OSError:                    # EIO: the session's pty is closed
                    break
                if data == b"":
                    break
                view = memoryview(data or b"")
                while view:
                    view = view[posix.write(1, view):]
            if 0 in ready:
                typed = posix.read(0, 1 << 16)
                if not typed:                      # hangup of the host's pty
                    _end(pid)
                    break
                pending += typed
            if master in writable:
                try:
                    pending = pending[posix.write(master, pending):]
                except BlockingIOError:
                    pass
    except OSError:
        _end(pid)                                  # the host's pty is gone
    finally:
        posix.close(master)
        try:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        except termios.error:
            pass
    return on_parent(pid)


def _end(pid: int) -> None:
    try:
        posix.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def relay_child(pid: int) -> int:
    """The parent outside the PID namespace: forward termination signals to the child,
    wait for it, return its exit status the way a shell would."""
    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            posix.kill(pid, signal.SIGKILL if signum in (signal.SIGHUP, signal.SIGTERM)
                       else signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if posix.WIFEXITED(status):
            return posix.WEXITSTATUS(status)
        if posix.WIFSIGNALED(status):
            return 128 + posix.WTERMSIG(status)


def confine_launch(jail_fd: int, plan: Plan) -> None:
    """Root (pam-jail chrootlaunch), in the process that then execs the daemon: `plan`
    (kind "launch"): the PAM path's namespaces and mounts, then the drop to the target
    user done here, in full.
    No PID namespace and no fork: a daemon that forks into the background would lose
    its namespace's init (the PAM path has the same rule), and the launched program
    keeps the launcher's pid for systemd. Hence no /proc in the jail either (a shared
    /proc leads out through /proc/PID/root of same-uid host processes)."""
    uid, gid, groups = plan.uid, plan.gid, list(plan.groups)
    if posix.geteuid() != 0:
        raise ConfineError("confine for launch: must run as root")
    if uid == 0 or gid == 0 or 0 in groups:
        raise ConfineError("launch as uid 0 or group 0: refused (never root inside a jail)")
    flags = (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
             | (0 if plan.network else CLONE_NEWNET))
    chroot_in_namespaces(jail_fd, plan.root, flags, devpts=plan.devpts,
                         tty_gid=plan.tty_gid, hostname=plan.hostname)  # 1-7. ..chroot
    drop_bounding_set()                                     # 8. needs CAP_SETPCAP: first
    switch_ids(uid, gid, groups)                            # 9. setgroups/gid/uid
    clear_capabilities()                                    # 10. nothing left, ambient too
    set_no_new_privs()                                      # 11. no setuid gains later
    chdir_home(plan.home)                                   # 12. as the user
    prove_dropped(uid, gid)                                 # 13. try to regain: fail
    scope_ipc(plan.network)                                 # 13a. Landlock scopes
    if plan.seccomp is not None:
        load_syscall_filter(plan.seccomp, plan.program)     # 14. seccomp filter
