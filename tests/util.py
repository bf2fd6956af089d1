"""Small helpers shared by the tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import os
import tempfile

# Jails and config files must live below root-owned, non-world-writable directories
# (/tmp and /var/tmp are 1777 and would fail the safety rule by design).
SAFE_BASE = "/var/lib/pam_jail-test"


def safe_tmpdir(prefix: str = "t") -> str:
    os.makedirs(SAFE_BASE, mode=0o755, exist_ok=True)
    os.chmod(SAFE_BASE, 0o755)
    path = tempfile.mkdtemp(prefix=prefix, dir=SAFE_BASE)
    os.chmod(path, 0o755)
    return path
