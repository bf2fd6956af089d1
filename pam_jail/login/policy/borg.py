"""The borg rule: `borg serve ...`, restricted to the allowed directories."""

from __future__ import annotations

from pam_jail.login.policy.options import _check_path, _number, _scan, _Spec, _tilde
from pam_jail.login.policy.records import (
    _DIGIT_CHARS,
    _LOWER,
    PYTHON_PINS,
    _Bad,
    _Ctx,
    _is_octal_umask,
    _names,
    _only,
)
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


_BORG_SIZE_CHARS = _DIGIT_CHARS + ".KMGTPEkmgtpe"


def _borg_size(value: str, ctx: _Ctx) -> None:
    if not (value and value[0] in _DIGIT_CHARS and _only(value, _BORG_SIZE_CHARS)):
        raise _Bad(f"--storage-quota {_show(value)}: not a size such as 5G or 1.5T")


def _borg_topic(value: str, ctx: _Ctx) -> None:
    if not (value and _only(value, _LOWER + _DIGIT_CHARS + "._")):
        raise _Bad(f"--debug-topic {_show(value)}: not a topic name")


def _octal(value: str, ctx: _Ctx) -> None:
    if not _is_octal_umask(value):
        raise _Bad(f"--umask {_show(value)}: not an octal umask")


def _borg_repo_path(what: str) -> Callable[[str, _Ctx], None]:
    def check(value: str, ctx: _Ctx) -> None:
        _check_path(_tilde(value, ctx), ctx, what)

    return check


_BORG = _Spec(
    flags="vp",
    long_flags=_names(
        """critical error warning info verbose debug progress iec log-json show-version
        show-rc append-only consider-part-files"""
    ),
    long_valued={
        "debug-topic": _borg_topic,
        "umask": _octal,
        "lock-wait": _number,
        "storage-quota": _borg_size,
        "upload-ratelimit": _number,
        "remote-ratelimit": _number,
        "upload-buffer": _number,
        "remote-buffer": _number,
        "restrict-to-path": _borg_repo_path("--restrict-to-path"),
        "restrict-to-repository": _borg_repo_path("--restrict-to-repository"),
    },
)
# Refused: --rsh, --remote-path, --debug-profile FILE (writes a file), --bypass-lock,
# -h/--help, abbreviations (argparse would accept them: the rule does not), operands.
# What an administrator may force in [[rules]] (`/usr/bin/borg = borg --append-only`):
BORG_EXTRAS = ("--append-only", "--storage-quota=")


def _borg_extras_problem(extras: Sequence[str]) -> str | None:
    for extra in extras:
        if extra == "--append-only":
            continue
        name, eq, value = extra.partition("=")
        if name != "--storage-quota" or not eq:
            return f"{extra!r}: the borg rule takes only --append-only and --storage-quota=SIZE"
        try:
            _borg_size(value, _Ctx("", "/", ()))
        except _Bad as err:
            return str(err)
    return None


def _rule_borg(argv: Sequence[str], ctx: _Ctx) -> None:
    """`borg serve OPTIONS` as a borg client sends it, run with --restrict-to-path for
    each allowed directory (as rsync.net and BorgBase do), then what [[rules]] forces
    (--append-only, --storage-quota=SIZE: after the client's, so they win)."""
    if len(argv) < 2 or argv[1] != "serve":
        raise _Bad("only 'borg serve ...' (what a borg client sends) is allowed")
    args = list(argv[2:])
    scan = _scan(args, _BORG, ctx)
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")
    if not ctx.dirs:
        raise _Bad("no allowed directory to keep repositories in")
    out: list[str] = []
    for arg in args:  # the client's own restrictions narrow further; ~/ made the home
        name, eq, value = arg.partition("=")
        if eq and name in ("--restrict-to-path", "--restrict-to-repository"):
            arg = f"{name}={_tilde(value, ctx)}"
        out.append(arg)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--restrict-to-path", "--restrict-to-repository"):
            out[i + 1] = _tilde(out[i + 1], ctx)
    ctx.argv = ["serve", *out, *(f"--restrict-to-path={d}" for d in ctx.dirs), *ctx.extras]
    ctx.env += list(PYTHON_PINS)
