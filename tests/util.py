"""Small helpers shared by the tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

# Jails and config files must live below root-owned, non-world-writable directories
# (/tmp and /var/tmp are 1777 and would fail the safety rule by design).
SAFE_BASE = "/var/lib/pam_jail-test"


def safe_tmpdir(prefix: str = "t") -> str:
    os.makedirs(SAFE_BASE, mode=0o755, exist_ok=True)
    os.chmod(SAFE_BASE, 0o755)
    path = tempfile.mkdtemp(prefix=prefix, dir=SAFE_BASE)
    os.chmod(path, 0o755)
    return path


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
