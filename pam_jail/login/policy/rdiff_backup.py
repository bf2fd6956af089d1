"""The rdiff-backup rule: its server side, restricted to an allowed directory."""

from __future__ import annotations

from pam_jail.login.policy.options import _check_path, _next_value, _tilde
from pam_jail.login.policy.records import _DIGIT_CHARS, PYTHON_PINS, _Bad, _Ctx, _names, _only
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


_RDIFF_MODES = _names("read-write read-only update-only")
# server form -> the restriction options it takes (value: a path, or a mode)
_RDIFF_SERVER = {
    "server": {"--restrict-path": "path", "--restrict-mode": "mode"},
    "--server": {"--restrict": "path", "--restrict-read-only": "path",
                 "--restrict-update-only": "path"},
}
_RDIFF_GLOBAL = {"--terminal-verbosity": "digit", "--verbosity": "digit", "-v": "digit",
                 "--api-version": "number", "--tempdir": "path"}


def _rdiff_value(option: str, kind: str, value: str, ctx: _Ctx) -> str:
    if kind == "path":
        return _check_path(_tilde(value, ctx), ctx, option)
    ok = {"digit": len(value) == 1 and _only(value, _DIGIT_CHARS),
          "number": bool(value) and _only(value, _DIGIT_CHARS),
          "mode": value in _RDIFF_MODES}[kind]
    if not ok:
        raise _Bad(f"{option} {_show(value)}: not an allowed value")
    return value


def _rule_rdiff_backup(argv: Sequence[str], ctx: _Ctx) -> None:
    """`rdiff-backup [GLOBAL...] server [--restrict-path P] [--restrict-mode M]`, or the
    old `... --server [--restrict P|--restrict-read-only P|--restrict-update-only P]`, as
    an rdiff-backup client sends it (GLOBAL: --tempdir DIR, --terminal-verbosity N,
    -v/--verbosity N, --api-version N). Without a restriction of the client's, one to the
    first allowed directory is added (`--restrict-path DIR` / `--restrict DIR`); every
    path inside the allowed paths, given absolute. Not chosen by basename: the server
    unpickles what the client sends (docs/lsh.md)."""
    args = list(argv[1:])
    out: list[str] = []
    form: str | None = None
    restricted = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if form is None and arg in _RDIFF_SERVER:
            form = arg
            out.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        kind = (_RDIFF_GLOBAL if form is None else _RDIFF_SERVER[form]).get(name)
        if kind is None:
            raise _Bad(f"argument {_show(arg)} is not allowed")
        if not eq:
            value, i = _next_value(args, i, name)
        restricted = restricted or kind == "path" and name != "--tempdir"
        out += [name, _rdiff_value(name, kind, value, ctx)]
    if form is None:
        raise _Bad("only 'rdiff-backup server' / 'rdiff-backup --server' is allowed")
    if not restricted:
        if not ctx.dirs:
            raise _Bad("no allowed directory to restrict rdiff-backup to")
        out += ["--restrict-path" if form == "server" else "--restrict", ctx.dirs[0]]
    ctx.argv = out
    ctx.env += list(PYTHON_PINS)
