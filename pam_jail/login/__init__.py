"""What a login runs: the trusted core.

The two entries (pam_module: the PAM module's body; shell_entry: pam-jail-shell and
pam-jail-lsh), admission (which jail, if any), the config reader and its index, the
limited shell's policy, the safety checks, the confinement (confine: the only module
that calls unshare, mount, chroot, pivot_root, setres*id, capset, prctl or seccomp),
its system-call tables, limits, the per-customer view, logging and errors.

Nothing here imports pam_jail.admin; the admin tools import from here. Every file of
this directory is also the limited shell's runtime inside a PAM-path jail (the `lsh`
profile copies the directory whole), so the file list is written nowhere else.
tests/test_layout.py reads the code and keeps these rules.
"""
