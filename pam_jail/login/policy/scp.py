"""The scp rule: scp's server side (`scp -t|-f PATH...`)."""

from __future__ import annotations

from pam_jail.login.policy.options import _has, _scan, _Spec, _with_paths
from pam_jail.login.policy.records import _Bad, _Ctx
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_SCP = _Spec(flags="rpdvqTtf", dashdash=True)


def _rule_scp(argv: Sequence[str], ctx: _Ctx) -> None:
    """scp's server side: `scp [-r] [-p] [-d] [-v] [-q] [-T] -t|-f [--] PATH...`.

    -t (upload) takes one path, -f (download) one or more. A ':' before the first
    '/' is refused (it would read as host:path to an scp client). A leading `~/` is
    made the home (`scp -O host:~/x`).
    """
    args = argv[1:]
    scan = _scan(args, _SCP, ctx)
    sink, source = _has(scan, "-t"), _has(scan, "-f")
    if sink == source:
        raise _Bad("exactly one of -t (upload) or -f (download) is required")
    if sink and len(scan.positional) != 1:
        raise _Bad("-t takes exactly one path")
    if source and not scan.positional:
        raise _Bad("-f needs at least one path")
    for arg in scan.positional:
        if ":" in arg.split("/", 1)[0]:
            raise _Bad(f"path {_show(arg)}: host:path arguments are not allowed")
    ctx.argv = _with_paths(args, scan, ctx)
