"""The repository rules: git, cvs and svnserve, and the trust checks they (and hg)
share: the repository, its hooks and configuration, and every directory on the way to
it neither the user's nor writable by the user."""

from __future__ import annotations

from pam_jail.login.paths import basename
from pam_jail.login.policy.options import (
    _check_path,
    _has,
    _path_value,
    _scan,
    _Spec,
    _tilde,
    _value_of,
)
from pam_jail.login.policy.records import FileFacts, PathFacts, _Bad, _Ctx
from pam_jail.login.policy.words import _show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# --------------------------------------------------------------------------- repositories
#
# git, cvs and svnserve run programs named by files in the repository (git hooks/ and
# config, cvs CVSROOT/loginfo and friends, svnserve hooks/): a repository the user can
# write, or could swap for one, runs the user's code past the allow-list. These rules
# ask the caller's FileFacts and refuse unless every directory from / down to the
# repository and the repository's hook and config files are neither the user's nor
# writable by the user (a sticky directory such as /tmp may be writable: then only the
# entry below it must not be the user's). A symbolic link anywhere on that way is
# refused too: the checked path is then the path the program opens.


def _facts(ctx: _Ctx) -> FileFacts:
    if ctx.facts is None:
        raise _Bad("cannot check the repository (no file facts; this is a bug in the caller)")
    return ctx.facts


def _user_controlled(f: PathFacts) -> str | None:
    if f.kind == "unknown":
        return "cannot be examined"
    if f.owned:
        return "is owned by the user"
    if f.writable:
        return "is writable by the user"
    return None


def _trusted(facts: FileFacts, path: str, what: str, kind: str = "dir",
             may_miss: bool = False) -> bool:
    """`path` is of `kind` and neither the user's nor writable by the user. False if it
    is missing and `may_miss`."""
    f = facts.stat(path)
    if f.kind == "missing" and may_miss:
        return False
    if f.kind != kind:
        found = {"missing": "does not exist", "link": "is a symbolic link"}.get(
            f.kind, f"is not a {'directory' if kind == 'dir' else 'regular file'}")
        raise _Bad(f"{what} {_show(path)} {found}")
    problem = _user_controlled(f)
    if problem:
        raise _Bad(f"{what} {_show(path)} {problem}: its hooks and configuration would run "
                   "as the user")
    return True


def _trusted_way(facts: FileFacts, path: str, what: str) -> None:
    """Every directory from / down to the parent of `path`: a directory, not the
    user's, and not writable by the user unless sticky (then `path` must not be the
    user's, which its own check sees)."""
    parts = [p for p in path.split("/") if p]
    at = "/"
    for part in parts:
        f = facts.stat(at)
        if f.kind != "dir":
            raise _Bad(f"{what}: {_show(at)} on the way to it is not a directory")
        if f.kind == "unknown" or f.owned or (f.writable and not f.mode & 0o1000):
            raise _Bad(f"{what}: {_show(at)} on the way to it is the user's or writable "
                       "by the user (the repository could be replaced)")
        at = at.rstrip("/") + "/" + part


_GIT_SERVICES = frozenset({"git-upload-pack", "git-receive-pack", "git-upload-archive"})
# git's enter_repo() tries PATH/.git, PATH, PATH.git/.git, PATH.git, in this order.
_GIT_SUFFIXES = ("/.git", "", ".git/.git", ".git")
# Set for every git service (GIT_CONFIG_COUNT: git's command scope, above every file but
# below `git -c`, which no client can pass): no hooks, no file system monitor, no ssh;
# safe.directory names the one repository checked (git 2.39 matches whole paths only).
GIT_PINS = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.sshCommand", "false"),
)


def _git_path(arg: str, ctx: _Ctx) -> str:
    # git's enter_repo() expands "~/" and "~user/" itself: check what git will open.
    return _check_path(_tilde(arg, ctx), ctx)


def _is_git_dir(facts: FileFacts, path: str) -> bool:
    """git's is_git_directory(), from the facts: objects/ and refs/ directories and a
    HEAD (a file, or a symbolic link in old repositories)."""
    return (facts.stat(path + "/objects").kind == "dir"
            and facts.stat(path + "/refs").kind == "dir"
            and facts.stat(path + "/HEAD").kind in ("file", "link"))


def _git_repository(path: str, ctx: _Ctx) -> str:
    """The repository git would serve for `path` (absolute, normalised), checked."""
    facts = _facts(ctx)
    chosen = None
    for suffix in _GIT_SUFFIXES:
        candidate = path + suffix
        f = facts.stat(candidate)
        if f.kind == "missing":
            continue
        if f.kind != "dir":
            raise _Bad(f"repository {_show(candidate)}: only a repository directory is "
                       "served (no symbolic link, no .git file)")
        if _is_git_dir(facts, candidate):
            chosen = candidate
            break
    if chosen is None:
        raise _Bad(f"path {_show(path)}: not a git repository")
    _check_path(chosen, ctx)
    # git is given `chosen` and tries chosen/.git first, then chosen: nothing else
    for shadow in (chosen + "/.git", chosen + ".git/.git", chosen + ".git"):
        if facts.stat(shadow).kind != "missing":
            raise _Bad(f"repository {_show(chosen)}: {_show(shadow)} exists too; which "
                       "one git serves would be ambiguous")
    what = "repository"
    _trusted_way(facts, chosen, f"{what} {_show(chosen)}")
    # A push to the branch HEAD names creates HEAD.lock in the repository directory, so
    # a shared repository's directory may be group-writable if it is sticky (chmod 3775:
    # nobody removes or renames what is not theirs). It must then hold its config (else
    # the user could create one); commondir is overridden by GIT_COMMON_DIR below.
    top = facts.stat(chosen)
    shared = top.kind == "dir" and top.writable and not top.owned and bool(top.mode & 0o1000)
    if not shared:
        _trusted(facts, chosen, what)
    _trusted(facts, chosen + "/config", what + " config", "file", may_miss=not shared)
    _trusted(facts, chosen + "/config.worktree", what + " config", "file", may_miss=True)
    _trusted(facts, chosen + "/hooks", what + " hooks", may_miss=True)
    if facts.stat(chosen + "/commondir").kind != "missing":
        raise _Bad(f"repository {_show(chosen)}: a linked worktree (commondir) is not served")
    _trusted(facts, "/etc/gitconfig", "git system config", "file", may_miss=True)
    return chosen


# The administrator's git hooks for every repository of the jail (post-receive: deploy,
# notify): run by git as the user, inside the jail. Used only when the directory, every
# directory on the way to it and every file in it are neither the user's nor writable by
# the user (the repository rule): else the push is refused. No directory: no hooks.
GIT_ADMIN_HOOKS = "/etc/pam_jail/hooks/git"


def _git_admin_hooks(ctx: _Ctx) -> str:
    """core.hooksPath for this push: the administrator's hooks, or /dev/null (none). A
    repository's own hooks/ never run: hooksPath replaces it."""
    facts = _facts(ctx)
    if facts.stat(GIT_ADMIN_HOOKS).kind == "missing":
        return "/dev/null"
    what = f"admin git hooks {GIT_ADMIN_HOOKS}"
    _trusted_way(facts, GIT_ADMIN_HOOKS, what)
    _trusted(facts, GIT_ADMIN_HOOKS, "admin git hooks")
    for name in facts.entries(GIT_ADMIN_HOOKS):
        _trusted(facts, f"{GIT_ADMIN_HOOKS}/{name}", "admin git hook", "file")
    return GIT_ADMIN_HOOKS


def _rule_git(argv: Sequence[str], ctx: _Ctx) -> None:
    """`git-upload-pack PATH` (also receive-pack, upload-archive) or `git upload-pack PATH`.

    PATH (`~/` expanded as git does) must resolve, the way git resolves it, to a
    repository directory inside the allowed paths that the user can neither write nor
    swap; git is then given that absolute directory, with hooks and the like pinned off
    (GIT_PINS) and safe.directory naming it.
    """
    args = list(argv[1:])
    service: list[str] = []
    if basename(ctx.program) == "git":
        if not args or "git-" + args[0] not in _GIT_SERVICES:
            raise _Bad("only 'git upload-pack|receive-pack|upload-archive PATH' is allowed")
        service, args = args[:1], args[1:]
    if len(args) != 1:
        raise _Bad("exactly one repository path is required")
    repo = _git_repository(_git_path(args[0], ctx), ctx)
    ctx.argv = [*service, repo]
    ctx.env.append(("GIT_COMMON_DIR", repo))  # never a commondir file's say
    pins = (("core.hooksPath", _git_admin_hooks(ctx)), *GIT_PINS[1:],
            ("safe.directory", repo))
    ctx.env.append(("GIT_CONFIG_COUNT", str(len(pins))))
    for i, (key, value) in enumerate(pins):
        ctx.env += [(f"GIT_CONFIG_KEY_{i}", key), (f"GIT_CONFIG_VALUE_{i}", value)]


# cvs runs what these CVSROOT files name (and `modules` -i/-o/-e/-t programs).
_CVS_ADMIN_FILES = (
    "checkoutlist", "commitinfo", "config", "cvswrappers", "editinfo", "loginfo", "modules",
    "notify", "postadmin", "postproxy", "posttag", "postwatch", "preproxy", "rcsinfo",
    "taginfo", "verifymsg",
)


def _cvs_root_problem(root: str, ctx: _Ctx) -> str | None:
    """None if `root` is a CVS repository the user can neither write nor swap."""
    facts = _facts(ctx)
    try:
        _trusted_way(facts, root, f"cvs repository {_show(root)}")
        _trusted(facts, root, "cvs repository")
        _trusted(facts, root + "/CVSROOT", "cvs repository")
        for name in _CVS_ADMIN_FILES:
            _trusted(facts, f"{root}/CVSROOT/{name}", "cvs administrative file", "file",
                     may_miss=True)
    except _Bad as err:
        return str(err)
    return None


def _rule_cvs(argv: Sequence[str], ctx: _Ctx) -> None:
    """`cvs server`, run as `cvs --allow-root=ROOT... server`: the client names its
    repository in the protocol, so cvs is told which ones it may open: each allowed
    directory that holds a CVSROOT/ the user can neither write nor swap."""
    if list(argv[1:]) != ["server"]:
        raise _Bad("only 'cvs server' is allowed")
    facts = _facts(ctx)
    roots: list[str] = []
    problems: list[str] = []
    for root in ctx.dirs:
        if facts.stat(root.rstrip("/") + "/CVSROOT").kind == "missing":
            continue
        problem = _cvs_root_problem(root, ctx)
        if problem:
            problems.append(problem)
        else:
            roots.append(root)
    if not roots:
        raise _Bad(problems[0] if problems else
                   "no cvs repository (a directory with CVSROOT/) in the allowed paths")
    ctx.argv = [*(f"--allow-root={r}" for r in roots), "server"]


_SVNSERVE = _Spec(
    flags="tR",
    valued={"r": _path_value("--root")},
    long_flags=frozenset({"tunnel", "read-only"}),
    long_valued={"root": _path_value("--root"), "log-file": _path_value("--log-file")},
)
_SVN_CONF_FILES = ("svnserve.conf", "passwd", "authz", "hooks-env")


def _svn_repository(repo: str, ctx: _Ctx) -> None:
    """A repository svnserve may open: it, its hooks and conf are not the user's."""
    facts = _facts(ctx)
    _trusted(facts, repo, "svn repository")
    if _trusted(facts, repo + "/hooks", "svn hooks", may_miss=True):
        for name in facts.entries(repo + "/hooks"):
            _trusted(facts, f"{repo}/hooks/{name}", "svn hook", "file")
    if _trusted(facts, repo + "/conf", "svn conf", may_miss=True):
        for name in _SVN_CONF_FILES:
            _trusted(facts, f"{repo}/conf/{name}", "svn conf", "file", may_miss=True)


def _is_svn_repository(facts: FileFacts, path: str) -> bool:
    return facts.stat(path + "/format").kind == "file" and facts.stat(path + "/db").kind == "dir"


def _rule_svnserve(argv: Sequence[str], ctx: _Ctx) -> None:
    """`svnserve -t [-r|--root DIR] [--log-file FILE] [-R|--read-only]`, run with a
    root: the client's -r inside `paths`, else the first allowed directory. The root
    (a repository, or a directory of repositories) and every repository directly in
    it must not be the user's nor writable by the user, nor their hooks and conf."""
    args = list(argv[1:])
    scan = _scan(args, _SVNSERVE, ctx)
    if not _has(scan, "-t", "--tunnel"):
        raise _Bad("only tunnel mode (-t) is allowed")
    if scan.positional:
        raise _Bad(f"unexpected argument {_show(scan.positional[0])}")
    facts = _facts(ctx)
    given = _value_of(scan, "-r", "--root")
    if given is not None:
        root = _check_path(given, ctx, "--root")
    elif ctx.dirs:
        root = ctx.dirs[0]
        args.append("--root=" + root)
    else:
        raise _Bad("no allowed directory to serve repositories from")
    _trusted_way(facts, root, f"svn root {_show(root)}")
    if _is_svn_repository(facts, root):
        _svn_repository(root, ctx)
    else:
        _trusted(facts, root, "svn root")
        for name in facts.entries(root):
            path = root.rstrip("/") + "/" + name
            kind = facts.stat(path).kind
            if kind == "dir" and _is_svn_repository(facts, path):
                _svn_repository(path, ctx)
            elif kind in ("dir", "link", "unknown"):
                raise _Bad(f"svn root {_show(root)}: {_show(name)} is not a repository; "
                           "only repositories directly under the root are served")
    ctx.argv = args
