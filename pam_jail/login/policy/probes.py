"""The probe rules: read-only commands clients run besides their transfer (md5sum and
the like, df, echo)."""

from __future__ import annotations

from pam_jail.login.policy.options import _scan, _Spec, _with_paths
from pam_jail.login.policy.records import _Bad, _Ctx, _names
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# --------------------------------------------------------------------------- probes
# Read-only commands clients run over ssh besides their transfer: rclone's sftp backend
# asks `echo ${ShellId}%ComSpec%` (shell type), `md5sum` / `sha1sum` with no operand
# (does it work?) and then `md5sum PATH` per file, and `df -k PATH` where sftp's statvfs
# extension is missing.

_HASHSUM = _Spec(flags="btz", long_flags=frozenset({"binary", "text", "tag", "zero"}),
                 dashdash=True)


def _rule_hashsum(argv: Sequence[str], ctx: _Ctx) -> None:
    """`md5sum [-b|-t|-z|--tag] [--] [PATH...]` (sha1sum, sha256sum... alike): files
    inside the allowed paths, or standard input; no -c (it reads names from a file)."""
    args = argv[1:]
    scan = _scan(args, _HASHSUM, ctx)
    ctx.argv = _with_paths(args, scan, ctx)


_DF = _Spec(flags="ahHiklPT", long_flags=_names(
    "all human-readable si inodes local portability print-type"))


def _rule_df(argv: Sequence[str], ctx: _Ctx) -> None:
    """`df [-k|-h|-P|-i|-T...] PATH...`: at least one path, inside the allowed paths."""
    args = argv[1:]
    scan = _scan(args, _DF, ctx)
    if not scan.positional:
        raise _Bad("df needs a path (the mount table of the jail is not shown)")
    ctx.argv = _with_paths(args, scan, ctx)


def _rule_echo(argv: Sequence[str], ctx: _Ctx) -> None:
    """`echo WORD...`: words printed as they are (no shell expands them); no options."""
    for arg in argv[1:]:
        if arg.startswith("-"):
            raise _Bad(f"echo {_show(arg)}: options are not allowed")
