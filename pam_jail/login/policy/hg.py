"""The hg rule: `hg -R PATH serve --stdio`, reading no configuration the user can write."""

from __future__ import annotations

from pam_jail.login.policy.options import _check_path, _tilde
from pam_jail.login.policy.records import PYTHON_PINS, _Bad, _Ctx
from pam_jail.login.policy.repos import _facts, _trusted
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


# Mercurial reads hooks and extensions (programs) from its configuration: the system
# files, the user's ~/.hgrc and the repository's .hg/hgrc. The rule keeps the system
# files (root's, in the jail: where an administrator's hooks go) and nothing the user
# can write: HGRCPATH names the system files only, HGRCSKIPREPO drops every .hg/hgrc.
HG_RCPATH = "/etc/mercurial/hgrc:/etc/mercurial/hgrc.d"


def _rule_hg(argv: Sequence[str], ctx: _Ctx) -> None:
    """`hg -R PATH serve --stdio` (also `--repository PATH`, sent as `-R`), as a
    Mercurial client sends it: PATH (`~/` made the home) a repository directory inside
    the allowed paths, given absolute; no `.hg/sharedpath` (its store elsewhere); hg
    reads no configuration the user can write (HG_RCPATH, HGRCSKIPREPO)."""
    args = list(argv[1:])
    if (len(args) != 4 or args[0] not in ("-R", "--repository")
            or args[2:] != ["serve", "--stdio"]):
        raise _Bad("only 'hg -R PATH serve --stdio' (what a Mercurial client sends) is allowed")
    if ":" in args[1]:   # hg reads `bundle:x`, `union:a+b`, `http://...` as repository URLs
        raise _Bad(f"repository {_show(args[1])}: ':' is not allowed (hg would read a URL)")
    repo = _check_path(_tilde(args[1], ctx), ctx, "repository")
    facts = _facts(ctx)
    if facts.stat(repo).kind != "dir" or facts.stat(repo + "/.hg").kind != "dir":
        raise _Bad(f"repository {_show(repo)}: not a Mercurial repository directory")
    if facts.stat(repo + "/.hg/sharedpath").kind != "missing":
        raise _Bad(f"repository {_show(repo)}: a share (.hg/sharedpath) is not served")
    if _trusted(facts, "/etc/mercurial", "Mercurial system config", may_miss=True):
        _trusted(facts, "/etc/mercurial/hgrc", "Mercurial system config", "file",
                 may_miss=True)
        if _trusted(facts, "/etc/mercurial/hgrc.d", "Mercurial system config",
                    may_miss=True):
            for name in facts.entries("/etc/mercurial/hgrc.d"):
                _trusted(facts, f"/etc/mercurial/hgrc.d/{name}", "Mercurial system config",
                         "file")
    ctx.argv = ["-R", repo, "serve", "--stdio"]
    ctx.env += [("HGRCPATH", HG_RCPATH), ("HGRCSKIPREPO", "1"), *PYTHON_PINS]
