"""The sftp-server rule: its options, no operands."""

from __future__ import annotations

from pam_jail.login.policy.options import _check_path, _scan, _Spec
from pam_jail.login.policy.records import (
    _DIGIT_CHARS,
    _LOWER,
    _Bad,
    _Ctx,
    _is_octal_umask,
    _names,
    _only,
)
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_LOG_LEVELS = _names("QUIET FATAL ERROR INFO VERBOSE DEBUG DEBUG1 DEBUG2 DEBUG3")
_FACILITIES = _names(
    "DAEMON USER AUTH AUTHPRIV LOCAL0 LOCAL1 LOCAL2 LOCAL3 LOCAL4 LOCAL5 LOCAL6 LOCAL7"
)
_REQUEST_CHARS = _LOWER + _DIGIT_CHARS + "@._-"


def _sftp_level(value: str, ctx: _Ctx) -> None:
    if value.upper() not in _LOG_LEVELS:
        raise _Bad(f"-l {_show(value)}: not a log level")


def _sftp_facility(value: str, ctx: _Ctx) -> None:
    if value.upper() not in _FACILITIES:
        raise _Bad(f"-f {_show(value)}: not a syslog facility")


def _sftp_umask(value: str, ctx: _Ctx) -> None:
    if not _is_octal_umask(value):
        raise _Bad(f"-u {_show(value)}: not an octal umask")


def _sftp_requests(value: str, ctx: _Ctx) -> None:
    if not all(name and _only(name, _REQUEST_CHARS) for name in value.split(",")):
        raise _Bad(f"-p/-P {_show(value)}: not a comma-separated list of request names")


def _sftp_dir(value: str, ctx: _Ctx) -> None:
    if "%" in value or value.startswith("~"):
        raise _Bad(f"-d {_show(value)}: '%' tokens and '~' are not allowed")
    _check_path(value, ctx, "-d")


_SFTP = _Spec(
    flags="eR",
    valued={
        "l": _sftp_level,
        "f": _sftp_facility,
        "u": _sftp_umask,
        "d": _sftp_dir,
        "p": _sftp_requests,
        "P": _sftp_requests,
    },
)


def _rule_sftp(argv: Sequence[str], ctx: _Ctx) -> None:
    """sftp-server: -e -R -l LEVEL -f FACILITY -u UMASK -d DIR -p/-P NAMES; no operands."""
    scan = _scan(argv[1:], _SFTP, ctx)
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")
