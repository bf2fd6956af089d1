"""A real syslog receiver on /dev/log for the duration of a test: the code under test
writes to /dev/log exactly as it does in production; the test reads what arrived.
If a syslog daemon already owns /dev/log, its socket is moved aside and restored."""

from __future__ import annotations

import os
import socket
import threading
import time

DEVLOG = "/dev/log"


class SyslogCapture:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._saved: str | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> SyslogCapture:
        if os.path.lexists(DEVLOG):
            self._saved = f"{DEVLOG}.pam_jail-test-{os.getpid()}"
            os.rename(DEVLOG, self._saved)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(DEVLOG)
        os.chmod(DEVLOG, 0o666)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.append(data.decode("utf-8", "replace"))

    def stop(self) -> None:
        self._stop = True
        if self._thread:
            self._thread.join(2)
        if self._sock:
            self._sock.close()
        try:
            os.unlink(DEVLOG)
        except FileNotFoundError:
            pass
        if self._saved:
            os.rename(self._saved, DEVLOG)

    def clear(self) -> None:
        self.lines.clear()

    def wait_for(self, *needles: str, timeout: float = 5.0) -> list[str]:
        """Lines containing every needle (waits until at least one arrives)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines if all(n in line for n in needles)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
