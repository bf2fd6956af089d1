#!/usr/bin/python3 -IS
"""pam-jail-shell: login shell / ForceCommand entry; confines, then runs the limited shell.
-I -S: no environment, no user site, no site.py (fast and not steerable by the user)."""
import gc
import sys

gc.disable()   # a start-up that lives ~10 ms and then execs: no collector passes over it
sys.path[:0] = ["@LIBDIR@"]
sys.path += ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]
try:
    import pam_jail.login
    pam_jail.login.preload("pam-jail-shell")   # the login bundle: one file, when current
    from pam_jail.login.shell_entry import main
except BaseException as err:  # never a traceback on the user's terminal; fail closed
    print(f"pam_jail: login refused: installation broken ({type(err).__name__})",
          file=sys.stderr)
    sys.exit(1)
sys.exit(main())
