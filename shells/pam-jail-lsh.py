#!/usr/bin/python3 -IS
"""pam-jail-lsh: the limited shell alone, as the login shell INSIDE a PAM-path jail (the
PAM module has confined the session). Checks every command against /etc/pam_jail/lsh.ini."""
import gc
import sys

gc.disable()   # a start-up that lives ~10 ms and then execs: no collector passes over it
sys.path[:0] = ["@LIBDIR@"]
sys.path += ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]
try:
    import pam_jail.login
    pam_jail.login.preload("pam-jail-lsh")   # the login bundle: one file, when current
    from pam_jail.login.shell_entry import lsh_main
except BaseException as err:  # never a traceback on the user's terminal; fail closed
    print(f"pam_jail: login refused: installation broken ({type(err).__name__})",
          file=sys.stderr)
    sys.exit(1)
sys.exit(lsh_main())
