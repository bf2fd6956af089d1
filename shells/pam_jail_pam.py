"""The file pam_python.so loads: `session required pam_python.so @LIBDIR@/pam_jail_pam.py`.

pam_python looks up pam_sm_* in this module's namespace.
"""
import sys

if "@LIBDIR@" not in sys.path:
    sys.path.insert(0, "@LIBDIR@")
import pam_jail.login  # noqa: E402

pam_jail.login.preload("pam_jail_pam")   # the login bundle: one file, when current
from pam_jail.login.pam_module import (  # noqa: E402,F401
    pam_sm_acct_mgmt,
    pam_sm_authenticate,
    pam_sm_chauthtok,
    pam_sm_close_session,
    pam_sm_open_session,
    pam_sm_setcred,
)
