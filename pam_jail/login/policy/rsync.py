"""The rsync rule: `rsync --server ...` as an rsync client sends it."""

from __future__ import annotations

from pam_jail.login.policy.options import (
    _any_value,
    _check_path,
    _has,
    _inside,
    _number,
    _scan,
    _Spec,
    _tilde,
    _value_of,
    _with_paths,
)
from pam_jail.login.policy.records import _LETTERS, _Bad, _Ctx, _names, _norm, _only
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pam_jail.login.policy.options import _Check

def _rsync_caps(value: str, ctx: _Ctx) -> None:
    # `-e.LsfxCIvu`: with --server, -e carries rsync's protocol capability letters.
    if not (value.startswith(".") and _only(value[1:], _LETTERS)):
        raise _Bad(f"-e {_show(value)}: only rsync's '.xxx' capability string is allowed")


def _rsync_path_later(value: str, ctx: _Ctx) -> None:
    """A path-valued rsync option: checked and rewritten by `_rsync_paths` once the
    destination is known (every option named in _RSYNC_PATHS)."""


def _rsync_suffix(value: str, ctx: _Ctx) -> None:
    if "/" in value:
        raise _Bad(f"--suffix {_show(value)}: may not contain '/'")


# Short options rsync's client sends to a server (rrsync's list), minus `s`
# (--protect-args/--secluded-args: the real arguments would then arrive over the
# protocol, unchecked). `e`, `B` and `@` carry values.
_RSYNC_SHORT = "ACDEHIJKLNORSUWXbcdgklmnopqrtuvxyz"
_RSYNC_LONG_FLAGS = _names(
    """append copy-unsafe-links delay-updates delete delete-after delete-before
    delete-delay delete-during delete-excluded delete-missing-args existing fake-super
    force from0 fsync fuzzy group hard-links ignore-errors ignore-existing
    ignore-missing-args ignore-times inplace links list-only mkpath msgs2stderr
    munge-links new-compress no-W no-implied-dirs no-msgs2stderr no-r no-relative
    no-specials numeric-ids old-compress one-file-system open-noatime owner partial
    perms preallocate recursive remove-sent-files remove-source-files safe-links sender
    size-only sparse specials stats super times use-qsort"""
)
_RSYNC_LONG_VALUED: dict[str, _Check] = {
    # values that name no file and run nothing
    "block-size": _any_value,
    "bwlimit": _any_value,
    "checksum-choice": _any_value,
    "checksum-seed": _number,
    "compress-choice": _any_value,
    "compress-level": _number,
    "compress-threads": _number,
    "debug": _any_value,
    "groupmap": _any_value,
    "iconv": _any_value,
    "info": _any_value,
    "log-format": _any_value,
    "max-alloc": _any_value,
    "max-delete": _number,
    "max-size": _any_value,
    "min-size": _any_value,
    "modify-window": _number,
    "skip-compress": _any_value,
    "stderr": _any_value,
    "suffix": _rsync_suffix,
    "timeout": _number,
    "usermap": _any_value,
    # paths: checked (and `~` expanded) by _rsync_paths, below
    "backup-dir": _rsync_path_later,
    "compare-dest": _rsync_path_later,
    "copy-dest": _rsync_path_later,
    "link-dest": _rsync_path_later,
    "partial-dir": _rsync_path_later,
    "temp-dir": _rsync_path_later,
    "files-from": _rsync_path_later,
}
# Every path-valued option, and how rsync's receiver reads a relative value:
# "dest": against the destination directory (rsync chdirs into it; snapshot scripts
# write `--link-dest=../s1`), resolved here and sent absolute, '..' allowed when the
# result stays inside `paths`; "home": checked against the home with '..' refused (its
# resolution by rsync, under the destination or per file, then stays inside too).
# A leading `~` or `~/` is the home for all of them, as for the operands.
_RSYNC_PATHS = {
    "--backup-dir": "home",
    "--partial-dir": "home",
    "--temp-dir": "home",
    "--files-from": "home",      # `-`: the list comes over the protocol (needs --from0)
    "--compare-dest": "dest",
    "--copy-dest": "dest",
    "--link-dest": "dest",
}
# Not listed, hence refused: --rsh/-e COMMAND, --rsync-path, --daemon, --config,
# --write-batch, --read-batch, --only-write-batch, --log-file, --log-file-format,
# --exclude-from, --include-from, --filter/-f, -F, --remote-option/-M,
# --protect-args/--secluded-args/-s, --copy-devices, --write-devices, --no-munge-links,
# --chmod, --chown, --server (again), and anything else.
_RSYNC = _Spec(
    flags=_RSYNC_SHORT,
    valued={"e": _rsync_caps, "B": _number, "@": _number},
    long_flags=_RSYNC_LONG_FLAGS,
    long_valued=_RSYNC_LONG_VALUED,
)


def _rsync_path(option: str, value: str, base: str | None, ctx: _Ctx) -> str:
    """The value rsync gets for a path-valued option: `~` made the home; relative
    against `base` (the checked destination directory) when given, sent absolute."""
    if option == "--files-from" and value == "-":
        return value
    value = _tilde(value, ctx)
    if base is None or value.startswith("/"):
        _check_path(value, ctx, option)
        return value
    if not value or value.startswith("-"):
        raise _Bad(f"{option} {_show(value)}: not a path")
    full = _norm(base + "/" + value)
    if not _inside(full, ctx.dirs):
        raise _Bad(f"{option} {_show(value)}: outside the allowed directories (against "
                   f"the destination it is {_show(full)})")
    return full


def _rule_rsync(argv: Sequence[str], ctx: _Ctx) -> None:
    """`rsync --server [--sender] OPTIONS . PATH...` as an rsync client sends it."""
    if len(argv) < 2 or argv[1] != "--server":
        raise _Bad("only 'rsync --server ...' (what an rsync client sends) is allowed")
    args = argv[2:]
    scan = _scan(args, _RSYNC, ctx)
    if not scan.positional or scan.positional[0] != ".":
        raise _Bad("the first operand must be '.'")
    sender = _has(scan, "--sender")
    if not sender and len(scan.positional) > 2:
        raise _Bad("an upload takes at most one destination")
    files_from = _value_of(scan, "--files-from")
    if files_from == "-" and not _has(scan, "--from0"):
        raise _Bad("--files-from=- (the list over the protocol) needs --from0")
    out = _with_paths(args, scan, ctx, first=1)
    # the receiver's directory: its destination operand (none: the home it starts in)
    dest = None if sender else _check_path(
        _tilde(scan.positional[1], ctx) if len(scan.positional) > 1 else ".", ctx)
    for (option, value), (at, prefix) in zip(scan.options, scan.spots, strict=True):
        how = _RSYNC_PATHS.get(option)
        if how is None or value is None:
            continue
        out[at] = prefix + _rsync_path(option, value, dest if how == "dest" else None, ctx)
    ctx.argv = [argv[1], *out]
