"""What sshd must do for a jailed user, and how the PAM module reads what it will do.

Whatever confines a user (the PAM module, pam-jail-shell, sshd's own ChrootDirectory),
sshd itself must not hand a jailed user a way around it: forwarding, tunnels, ~/.ssh/rc,
user environment files and loader variables act before or beside the jail, and
internal-sftp serves files without the login shell. `pam-jail sshd-config` writes Match
blocks that set all of this; the PAM module does not trust that they are there: at every
jailed sshd login it asks sshd for the effective settings of exactly this connection
(`sshd -T -C user=..,addr=..,laddr=..,lport=..`) and refuses the login on any
difference. A missing, reordered or overridden Match block therefore gives "refused".

Pure part: RESTRICTIONS, expected_settings, parse_sshd_T, compare_effective.
Reading part (no privilege, no change): listener_config, effective_settings.
Lean on purpose: the PAM module imports this on every jailed login.
"""

from __future__ import annotations

import posix

from pam_jail.login import paths

SSHD = "/usr/sbin/sshd"
SYSTEM_SSHD_CONFIG = "/etc/ssh/sshd_config"

# Set for every jailed user, whatever the jail's mode. DisableForwarding covers X11,
# agent, TCP and stream-local forwarding; the others are spelled out so `sshd -T` shows
# each one and a reader need not know what DisableForwarding includes.
RESTRICTIONS: tuple[tuple[str, str], ...] = (
    ("DisableForwarding", "yes"),
    ("AllowTcpForwarding", "no"),
    ("AllowAgentForwarding", "no"),
    ("AllowStreamLocalForwarding", "no"),
    ("PermitTunnel", "no"),
    ("X11Forwarding", "no"),
    ("PermitUserRC", "no"),
    ("PermitListen", "none"),
    ("PermitOpen", "none"),
)
SFTP_SETTINGS: tuple[tuple[str, str], ...] = (
    # -d: start in the jail home; the passwd home is a root-owned stub (users.py)
    ("ForceCommand", "internal-sftp -d /home/%u"),
    ("PermitTTY", "no"),
)
# The client environment a jailed user's sshd session accepts (AcceptEnv is valid in a
# Match block and replaces the global list there): locale names, and git's protocol
# version. The limited shell then passes only what the jail's lsh.ini names.
MATCH_ACCEPTENV = "LANG LC_* GIT_PROTOCOL"
# Global settings sshd does not accept inside a Match block, checked as effective values.
GLOBAL_SETTINGS: tuple[tuple[str, str], ...] = (
    ("PermitUserEnvironment", "no"),
)
# Environment names a client must never set for a jailed user (AcceptEnv): they steer the
# dynamic loader, libc or an interpreter before any pam_jail code runs.
LOADER_NAMES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG_OUTPUT",
                "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF",
                "MALLOC_TRACE", "GLIBC_TUNABLES", "TMPDIR", "TZDIR", "BASH_ENV", "ENV",
                "SHELLOPTS", "PS4", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME",
                "PERL5LIB", "PERL5OPT", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "IFS", "PATH",
                "GIT_CONFIG_PARAMETERS", "GIT_EXEC_PATH")


def shell_entry_path() -> str:
    """pam-jail-shell beside this installed package (pam_jail.install_dirs)."""
    from pam_jail import install_dirs

    return paths.join(install_dirs()[1], "pam-jail-shell")


def lsh_entry_path() -> str:
    """pam-jail-lsh beside this installed package (pam_jail.install_dirs)."""
    from pam_jail import install_dirs

    return paths.join(install_dirs()[1], "pam-jail-lsh")


def routes_through_shell_entry(forcecommand: list[str]) -> bool:
    """Is sshd's ForceCommand pam-jail-shell itself? Then every request of the session,
    subsystems included, goes through it (sshd hands the original in
    SSH_ORIGINAL_COMMAND)."""
    words = " ".join(forcecommand).split()
    return len(words) == 1 and paths.basename(words[0]) == "pam-jail-shell"


def expected_settings(mode: str, root: str) -> dict[str, str]:
    """What `sshd -T` must show (lowercase keywords) for a user of a jail."""
    want = {k.lower(): v for k, v in RESTRICTIONS + GLOBAL_SETTINGS}
    if mode == "sftp":
        want.update({k.lower(): v for k, v in SFTP_SETTINGS})
        want["chrootdirectory"] = root
    return want


def parse_sshd_T(text: str) -> dict[str, list[str]]:
    """`sshd -T` output -> keyword -> values."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value)
    return out


def _match(pattern: str, name: str) -> bool:
    """sshd's match_pattern: `*` any run, `?` one character, nothing else special."""
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(_match(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    if pattern[0] in ("?", name[0]):
        return _match(pattern[1:], name[1:])
    return False


def dangerous_acceptenv(patterns: list[str]) -> list[str]:
    """The LOADER_NAMES that these AcceptEnv patterns let a client set (a pattern list
    is comma- or blank-separated; `!` negation is not supported by AcceptEnv)."""
    words = [w for p in patterns for w in p.replace(",", " ").split()]
    return [name for name in LOADER_NAMES if any(_match(w, name) for w in words)]


def compare_effective(mode: str, root: str, effective: dict[str, list[str]]) -> list[str]:
    """Differences between what a user of a jail must get and what sshd -T reports."""
    problems = []
    for key, value in expected_settings(mode, root).items():
        got = effective.get(key, ["(unset)"])
        if got != [value]:
            problems.append(f"{key} is {' '.join(got)}, must be {value}")
    risky = dangerous_acceptenv(effective.get("acceptenv", []))
    if risky:
        problems.append(f"acceptenv lets the client set {', '.join(risky[:4])}: they steer "
                        "the loader or a shell before the jail's rules apply")
    if mode == "shell":
        forced = effective.get("forcecommand", ["none"])
        routed = routes_through_shell_entry(forced)
        if forced != ["none"] and not routed:
            problems.append(f"forcecommand is {' '.join(forced)}: for mode shell only "
                            "pam-jail-shell (what pam-jail sshd-config writes) may be forced")
        for sub in effective.get("subsystem", []):
            name, _, command = sub.partition(" ")
            if command.split()[:1] == ["internal-sftp"] and not routed:
                problems.append(f"subsystem {name} is internal-sftp: it bypasses the login "
                                "shell (an unjailed sftp); regenerate the Match blocks "
                                "(ForceCommand pam-jail-shell routes it through the login "
                                "shell) or use /usr/lib/openssh/sftp-server")
    return problems


# ------------------------------------------------------------------ reading sshd

def _numeric(addr: str) -> str:
    """An IPv4-mapped IPv6 address as sshd reports it (the IPv4 one)."""
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


def own_connection() -> tuple[str, str, str, str] | None:
    """This process's one connected TCP socket (sshd's per-connection process holds the
    client's): (remote addr, remote port, local addr, local port), SSH_CONNECTION's
    order, from getpeername/getsockname on its own descriptors. None when there is not
    exactly one. Never from the environment: SSH_CONNECTION in the PAM environment can
    come from ~/.pam_environment (pam_env user_readenv=1). The cost is one readlink per
    open descriptor, not a read of the host's connection tables."""
    import _socket

    found: list[tuple[str, str, str, str]] = []
    for name in posix.listdir("/proc/self/fd"):
        try:
            if not posix.readlink(f"/proc/self/fd/{name}").startswith("socket:["):
                continue
            sock = _socket.socket(fileno=int(name))
        except (OSError, ValueError):
            continue
        try:
            if sock.family in (_socket.AF_INET, _socket.AF_INET6) and \
                    sock.type == _socket.SOCK_STREAM:
                peer, local = sock.getpeername(), sock.getsockname()
                conn = (_numeric(peer[0]), str(peer[1]), _numeric(local[0]), str(local[1]))
                if conn not in found:
                    found.append(conn)
        except OSError:       # not connected (a listener): not the client's socket
            pass
        finally:
            sock.detach()     # the descriptor stays sshd's
    return found[0] if len(found) == 1 else None


def listener_config(ppid: int) -> str | None:
    """The -f argument of the sshd listener `ppid`, read from its process title
    ("sshd: /usr/sbin/sshd -D -f /etc/x [listener] 0 of 10-100 startups"), or None
    when the title is not a listener's or names no -f (sshd then read its default)."""
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as fh:
            title = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    head, found, _tail = title.partition(" [listener]")
    if not found:
        return None
    words = head.split()
    for i, word in enumerate(words):
        if word == "-f" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("-f") and len(word) > 2:
            return word[2:]
    return SYSTEM_SSHD_CONFIG


def effective_settings(sshd: str, config: str, spec: str) -> dict[str, list[str]]:
    """Run `sshd -T -f CONFIG -C SPEC` (no shell, clean environment) and parse it.
    Raises OSError naming what failed (the caller refuses the login)."""
    read_fd, write_fd = posix.pipe()
    try:
        null = posix.open("/dev/null", posix.O_RDWR)
        try:
            pid = posix.posix_spawn(sshd, [sshd, "-T", "-f", config, "-C", spec],
                                    {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                    file_actions=[(posix.POSIX_SPAWN_DUP2, null, 0),
                                                  (posix.POSIX_SPAWN_DUP2, write_fd, 1),
                                                  (posix.POSIX_SPAWN_DUP2, null, 2)])
        finally:
            posix.close(null)
    except OSError:
        posix.close(read_fd)
        posix.close(write_fd)
        raise
    posix.close(write_fd)
    chunks = []
    try:
        while chunk := posix.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        posix.close(read_fd)
        _, status = posix.waitpid(pid, 0)
    if not posix.WIFEXITED(status) or posix.WEXITSTATUS(status) != 0:
        raise OSError(f"{sshd} -T -f {config} failed (status {status})")
    return parse_sshd_T(b"".join(chunks).decode("utf-8", "replace"))
