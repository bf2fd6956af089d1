"""One syslog line per jail decision, auth facility: `pam_jail[pid]: user=... jail=...`.

Writes RFC 3164 datagrams to /dev/log itself instead of calling openlog(): inside a
PAM service (sshd, su) openlog would change the host program's own ident. The socket is
connected early (before confinement) and is close-on-exec, so lines written after
chroot/pivot_root still reach the host's syslog, and no jailed program inherits it.
Strings a client controls are clipped and made printable.

`escape` is the project's one rule for showing a string that a jailed user or process
can influence (argv, file names, log text, user names) in a line meant for a human:
every tool's text output and every syslog line goes through it. It lives here because
the login path needs it and must stay lean (no `re`, nothing imported for it).
"""

from __future__ import annotations

import posix
import time

# Not socket, nor _socket: socket imports enum and selectors (about 3 ms of the login
# path's start-up) and _socket is one more extension to load (~0.1 ms); the socket is
# made and connected by _sys, which every login loads anyway, and written with write(2).
from pam_jail.login import _sys

LOG_AUTH = 4 << 3
LOG_AUTHPRIV = 10 << 3
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7
DEVLOG = "/dev/log"


def _escape_char(c: str) -> str:
    code = ord(c)
    if c == "\\":
        return "\\\\"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(value: object, limit: int | None = None, also: str = "") -> str:
    """`value` as one visible line: a character that str.isprintable() refuses (C0 and
    C1 controls, DEL, line and paragraph separators, the zero-width and bidi format
    characters, unassigned and private ones) becomes `\\xNN`, `\\uNNNN` or
    `\\UNNNNNNNN` (its code point, as Python writes it), and so does every character
    of `also` (a quote that delimits the value); a backslash becomes `\\\\`. So a
    newline cannot start a forged line, an ESC cannot drive the terminal, U+202E cannot
    reverse what follows, and no escape can be mistaken for the same text typed
    literally. `limit`: at most that many characters of the value are kept, `...`
    marks a cut (counted before escaping)."""
    text = str(value)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    if not (text.isprintable() and "\\" not in text and not any(c in text for c in also)):
        text = "".join(_escape_char(c) if c == "\\" or c in also or not c.isprintable()
                       else c for c in text)
    return text + "..." if cut else text


def clip(value: object, limit: int = 80) -> str:
    """A value for a syslog field: escaped, at most `limit` characters of it, and no
    `"` (it would end a quoted field)."""
    return escape(value, limit, also='"')


class SysLog:
    def __init__(self, ident: str = "pam_jail") -> None:
        self.ident = ident
        self.fd = -1
        # the pid the host sees: taken before confinement, since inside a PID namespace
        # the jailed side is pid 1 (lines name the login's pam-jail-shell or sshd process)
        self.pid = posix.getpid()

    def connect(self) -> None:
        if self.fd >= 0:
            return
        try:
            self.fd = _sys.dgram_connect(DEVLOG)
        except OSError:
            return

    def fileno(self) -> int:
        return self.fd

    def send(self, priority: int, message: str) -> None:
        self.connect()
        if self.fd < 0:
            return
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
        line = f"<{LOG_AUTH | priority}>{stamp} {self.ident}[{self.pid}]: {message}"
        try:
            posix.write(self.fd, line.encode("utf-8", "replace")[:2048])
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
        if self.fd >= 0:
            try:
                posix.close(self.fd)
            except OSError:
                pass
            self.fd = -1
