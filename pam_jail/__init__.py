"""pam_jail: lock login users into jails (PAM module, login-shell entry, limited shell)."""

__version__ = "0.1.0"
