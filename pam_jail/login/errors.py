"""One exception hierarchy; each class carries its exit code (click's pattern).

Messages follow `pam_jail: <action> <object>: <reason>`; cli.main() is the one place
that turns these into a line on stderr and an exit status.
"""

from __future__ import annotations


class PamJailError(Exception):
    """Base class. `str(err)` is the one line shown to the user."""

    exit_code = 1
    jail: str | None = None  # the jail concerned, when known (for the log line)

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.problems: list[str] = []     # every problem found (ConfigError, UnsafeJail)

    def reason(self, most: int = 3) -> str:
        """The one-line reason for a log line: the message and its first problems."""
        if not self.problems:
            return str(self)
        return f"{self}: " + "; ".join(self.problems[:most])


class UsageError(PamJailError):
    exit_code = 2


class ConfigError(PamJailError):
    """Config file unreadable, unsafe or invalid. `problems` lists every error found."""

    exit_code = 3

    def __init__(self, message: str, problems: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems or []


class UnsafeJail(PamJailError):
    """The jail failed a safety check; `problems` lists them."""

    exit_code = 4

    def __init__(self, message: str, problems: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems or []


class Denied(PamJailError):
    """A login or command refused by policy."""

    exit_code = 5


class ConfineError(PamJailError):
    """A privileged step failed (syscall error)."""

    exit_code = 6


class BuildError(PamJailError):
    exit_code = 7
