"""The pam-jail tools (cli): building, checking, updating and listing jails, users,
the sshd and PAM configuration, the log relay, launch and uchroot. Root runs them;
no login imports them (tests/test_layout.py)."""
