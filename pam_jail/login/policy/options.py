"""What the argument rules share: the path checks (inside `paths`, `~` made the home)
and a getopt/popt-like scanner over one program's option table (_Spec -> _Scan)."""

from __future__ import annotations

from pam_jail.login.policy.records import _DIGIT_CHARS, _Bad, _Ctx, _norm, _only
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

# --------------------------------------------------------------------------- paths


def _inside(path: str, dirs: Sequence[str]) -> bool:
    return any(d == "/" or path == d or path.startswith(d + "/") for d in dirs)


def _check_path(arg: str, ctx: _Ctx, what: str = "path") -> str:
    """A path argument must name something inside the allowed directories.

    Lexical only: `..` components are refused outright, relative paths are taken
    relative to the home directory, `~` is an ordinary character. Symlinks the user
    made are not followed here: the jail is the boundary, `paths` narrows the shape.
    """
    if not arg:
        raise _Bad(f"{what}: empty path")
    if arg.startswith("-"):
        raise _Bad(f"{what} {_show(arg)}: a path may not start with '-'")
    if ".." in arg.split("/"):
        raise _Bad(f"{what} {_show(arg)}: '..' is not allowed in paths")
    full = _norm(arg if arg.startswith("/") else ctx.home + "/" + arg)
    if not _inside(full, ctx.dirs):
        raise _Bad(f"{what} {_show(arg)}: outside the allowed directories")
    return full


def _tilde(arg: str, ctx: _Ctx) -> str:
    """A leading `~` or `~/` made the home, as the shell on an unjailed host would do
    (`scp host:~/x`, `rsync host:~/x` send it unexpanded); `~user` is refused."""
    if arg == "~" or arg.startswith("~/"):
        return ctx.home + arg[1:]
    if arg.startswith("~"):
        raise _Bad(f"path {_show(arg)}: '~user' paths are not allowed")
    return arg


def _path_value(what: str) -> Callable[[str, _Ctx], None]:
    def check(value: str, ctx: _Ctx) -> None:
        _check_path(value, ctx, what)

    return check


# --------------------------------------------------------------------------- options

if TYPE_CHECKING:
    _Check = Callable[[str, _Ctx], None]


def _any_value(value: str, ctx: _Ctx) -> None:
    """An option value that names no file and runs nothing."""


def _number(value: str, ctx: _Ctx) -> None:
    digits = value[1:] if value.startswith("-") else value
    if not (digits and _only(digits, _DIGIT_CHARS)):
        raise _Bad(f"option value {_show(value)}: not a number")


class _Spec:
    """getopt/popt-like option table of one program's server side."""

    __slots__ = ("flags", "valued", "long_flags", "long_valued", "dashdash")

    def __init__(
        self,
        flags: str = "",
        valued: Mapping[str, _Check] | None = None,
        long_flags: frozenset[str] = frozenset(),
        long_valued: Mapping[str, _Check] | None = None,
        dashdash: bool = False,
    ) -> None:
        self.flags = flags  # short options without a value
        self.valued = valued or {}  # short options with a value -> value check
        self.long_flags = long_flags
        self.long_valued = long_valued or {}
        self.dashdash = dashdash  # accept a "--" token (checking goes on after it)


class _Scan:
    __slots__ = ("options", "spots", "positional", "where")

    def __init__(self) -> None:
        self.options: list[tuple[str, str | None]] = []  # ("-t", None), ("-l", "INFO")
        # for each option: (index of the argument that holds its value, the text before
        # the value in that argument: "--link-dest=", "-B" or ""); (-1, "") for a flag
        self.spots: list[tuple[int, str]] = []
        self.positional: list[str] = []
        self.where: list[int] = []  # index of each positional in the scanned arguments


def _next_value(args: Sequence[str], i: int, option: str) -> tuple[str, int]:
    """An option's value given as the next argument; it may not look like an option."""
    if i >= len(args) or args[i].startswith("-"):
        raise _Bad(f"option {option} needs a value")
    return args[i], i + 1


def _scan(args: Sequence[str], spec: _Spec, ctx: _Ctx) -> _Scan:
    """Classify every argument as an allowed option (value checked) or a positional.

    Options are recognised anywhere (GNU getopt and popt permute), combined short
    options are unpacked (`-vS prog`, `-6e prog`, `-lVERBOSE`), long options are read
    with and without `=`. A value in the next argument may not start with '-'.
    `--` is accepted only where the real client sends it and ends nothing: a later
    argument that starts with '-' is still refused (as an option or as a path).
    """
    out = _Scan()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if not spec.dashdash:
                raise _Bad("'--' is not allowed")
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in spec.long_flags:
                if eq:
                    raise _Bad(f"option --{_show(name)} takes no value")
                out.options.append(("--" + name, None))
                out.spots.append((-1, ""))
                continue
            lcheck = spec.long_valued.get(name)
            if lcheck is None:
                raise _Bad(f"option --{_show(name)} is not allowed")
            prefix = f"--{name}="
            if not eq:
                value, i = _next_value(args, i, f"--{_show(name)}")
                prefix = ""
            lcheck(value, ctx)
            out.options.append(("--" + name, value))
            out.spots.append((i - 1, prefix))
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                if letter in spec.flags:
                    out.options.append(("-" + letter, None))
                    out.spots.append((-1, ""))
                    continue
                scheck = spec.valued.get(letter)
                if scheck is None:
                    raise _Bad(f"option -{_show(letter)} is not allowed")
                value, prefix = arg[j:], arg[:j]
                if not value:
                    value, i = _next_value(args, i, f"-{_show(letter)}")
                    prefix = ""
                scheck(value, ctx)
                out.options.append(("-" + letter, value))
                out.spots.append((i - 1, prefix))
                break
            continue
        out.positional.append(arg)
        out.where.append(i - 1)
    return out


def _has(scan: _Scan, *names: str) -> bool:
    return any(opt in names for opt, _value in scan.options)


def _value_of(scan: _Scan, *names: str) -> str | None:
    """The value of the last of these options given, or None."""
    found = None
    for opt, value in scan.options:
        if opt in names:
            found = value
    return found


def _with_paths(args: Sequence[str], scan: _Scan, ctx: _Ctx, first: int = 0) -> list[str]:
    """`args` with each positional from index `first` of the scan `~`-expanded and
    checked against the allowed directories."""
    out = list(args)
    for at, arg in zip(scan.where[first:], scan.positional[first:], strict=True):
        out[at] = _tilde(arg, ctx)
        _check_path(out[at], ctx)
    return out
