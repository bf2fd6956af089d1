"""The unison rule: `unison -server` and nothing else."""

from __future__ import annotations

from pam_jail.login.policy.records import _Bad, _Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _rule_unison(argv: Sequence[str], ctx: _Ctx) -> None:
    """`unison -server` (unison 2.52 adds `__new-rpc-mode`), as a unison client sends
    it; nothing else (no -sshcmd, -servercmd, preferences or roots on this side)."""
    if list(argv[1:]) not in (["-server"], ["-server", "__new-rpc-mode"]):
        raise _Bad("only 'unison -server' (what a unison client sends) is allowed")
