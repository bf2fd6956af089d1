"""Users from a directory (LDAP through nslcd or sssd): what `jailuser` cannot change
with usermod, and the change it writes instead.

A user the NSS databases know but /etc/passwd does not hold lives in a directory:
usermod fails on it ("user does not exist in /etc/passwd"), and its login shell and home
must change there. jailuser does everything that is local (the jail, its etc/passwd,
the home, the stub, jails.ini, the Match blocks) and writes the directory change as an
LDIF (`--ldif FILE`) for `ldapmodify -f FILE`. Until that change is applied, the
user's login shell is the directory's, not pam_jail's: not jailed (the pam.d guard
lets the login through to that shell), and jailuser says so.

The entry's DN is asked of the directory nslcd uses (`uri` and `base` of
/etc/nslcd.conf, an anonymous `ldapsearch` for uid=USER); when that is not possible the
LDIF names `uid=USER,BASE` and says to check it.
"""

from __future__ import annotations

import shutil
import subprocess

NSLCD_CONF = "/etc/nslcd.conf"
LOCAL_USERS = "/etc/passwd"


def is_local(user: str, passwd: str = LOCAL_USERS) -> bool:
    """`user` has a line in the local passwd file (usermod can change it)."""
    prefix = f"{user}:"
    try:
        with open(passwd, encoding="utf-8", errors="replace") as fh:
            return any(line.startswith(prefix) for line in fh)
    except OSError:
        return False


def nslcd_settings(path: str = NSLCD_CONF) -> dict[str, str]:
    """uri and base of nslcd.conf (`base passwd DN` wins over a plain `base DN`)."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "uri" and "uri" not in out:
            out["uri"] = words[1]
        elif len(words) == 2 and words[0] == "base" and "base" not in out:
            out["base"] = words[1]
        elif len(words) == 3 and words[:2] == ["base", "passwd"]:
            out["base"] = words[2]
    return out


def find_dn(user: str, settings: dict[str, str]) -> str | None:
    """The DN of `user`'s entry, asked anonymously of nslcd's directory; None if unknown."""
    if not shutil.which("ldapsearch") or "uri" not in settings or "base" not in settings:
        return None
    try:
        done = subprocess.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no",
                               "-H", settings["uri"], "-b", settings["base"],
                               f"(&(objectClass=posixAccount)(uid={_filter_escape(user)}))",
                               "dn"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    dns = [line[4:] for line in done.stdout.splitlines() if line.startswith("dn: ")]
    return dns[0] if done.returncode == 0 and len(dns) == 1 else None


def _filter_escape(value: str) -> str:
    out = value
    for char, code in (("\\", "\\5c"), ("*", "\\2a"), ("(", "\\28"), (")", "\\29"),
                       ("\0", "\\00")):
        out = out.replace(char, code)
    return out


def ldif(user: str, shell: str, home: str, *, why: str) -> str:
    """The LDIF that sets `user`'s loginShell and homeDirectory in the directory."""
    settings = nslcd_settings()
    dn = find_dn(user, settings)
    note = ""
    if dn is None:
        dn = f"uid={user},{settings.get('base', 'ou=people,dc=example,dc=org')}"
        note = ("# the DN below is a guess (nslcd's base; the directory was not asked):\n"
                "# check it with `ldapsearch -x uid=" + user + " dn` before applying\n")
    return (f"# pam-jail jailuser: {why}\n"
            f"# apply with: ldapmodify -x -D ADMIN_DN -W -H URI -f THIS_FILE\n{note}"
            f"dn: {dn}\nchangetype: modify\nreplace: loginShell\nloginShell: {shell}\n-\n"
            f"replace: homeDirectory\nhomeDirectory: {home}\n-\n")
