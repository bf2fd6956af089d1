"""One syslog line per jail decision, auth facility: `pam_jail[pid]: user=... jail=...`.

Writes RFC 3164 datagrams to /dev/log itself instead of calling openlog(): inside a
PAM service (sshd, su) openlog would change the host program's own ident. The socket is
connected early (before confinement) and is close-on-exec, so lines written after
chroot/pivot_root still reach the host's syslog, and no jailed program inherits it.
Strings a client controls are clipped and made printable.
"""

from __future__ import annotations

# _socket, not socket: the socket module imports enum and selectors (about 3 ms of the
# login path's start-up); a connected datagram socket needs none of that.
import _socket
import os
import time

LOG_AUTH = 4 << 3
LOG_AUTHPRIV = 10 << 3
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7
DEVLOG = "/dev/log"


def clip(value: object, limit: int = 80) -> str:
    text = str(value)
    text = "".join(c if c.isprintable() and c != '"' else "?" for c in text[:limit])
    return text + ("..." if len(str(value)) > limit else "")


class SysLog:
    def __init__(self, ident: str = "pam_jail") -> None:
        self.ident = ident
        self.sock: _socket.socket | None = None
        # the pid the host sees: taken before confinement, since inside a PID namespace
        # the jailed side is pid 1 (lines name the login's pam-jail-shell or sshd process)
        self.pid = os.getpid()

    def connect(self) -> None:
        if self.sock is not None:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            sock.connect(DEVLOG)
        except OSError:
            sock.close()
            return
        self.sock = sock

    def fileno(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()

    def send(self, priority: int, message: str) -> None:
        self.connect()
        if self.sock is None:
            return
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
        line = f"<{LOG_AUTH | priority}>{stamp} {self.ident}[{self.pid}]: {message}"
        try:
            self.sock.send(line.encode("utf-8", "replace")[:2048])
        except OSError:
            pass

    def decision(self, priority: int, action: str, *, user: object, jail: object = "-",
                 reason: object = "", **fields: object) -> None:
        parts = [f"{action}", f"user={clip(user, 32)}", f"jail={clip(jail, 64)}"]
        parts += [f"{k}={clip(v)}" for k, v in fields.items() if v not in (None, "")]
        if reason:
            parts.append(f'reason="{clip(reason, 300)}"')
        self.send(priority, " ".join(parts))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
