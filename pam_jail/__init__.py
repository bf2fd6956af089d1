"""pam_jail: lock login users into jails (PAM module, login-shell entry, limited shell)."""

__version__ = "0.3.1"


def install_dirs() -> tuple[str, str]:
    """(LIBDIR, SBINDIR) of the running install: the package lives in LIBDIR/pam_jail
    with LIBDIR = PREFIX/lib/pam_jail and the commands in PREFIX/sbin (scripts/install:
    /usr/local, the Debian package: /usr). From a source tree: scripts/install's paths.
    Install paths come from here, never from a config file."""
    import os

    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.basename(lib) == "pam_jail" and os.path.basename(os.path.dirname(lib)) == "lib":
        return lib, os.path.join(os.path.dirname(os.path.dirname(lib)), "sbin")
    return "/usr/local/lib/pam_jail", "/usr/local/sbin"
