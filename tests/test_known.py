"""pam_jail/admin/known.py: the one rule of which jails exist, as check, list and the log relay
see them (real users with jailkit `/./` homes)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from util import safe_tmpdir

from pam_jail.admin import check, logrelay
from pam_jail.admin.known import known_jails
from pam_jail.login.config_file import parse_config

pytestmark = pytest.mark.root


def test_check_and_the_relay_know_the_same_jails(user_factory: Callable[..., object]) -> None:
    base = safe_tmpdir("known")
    try:
        roots = [f"{base}/r{n}" for n in range(3)]
        for root in roots:
            os.makedirs(f"{root}/dev", mode=0o755)
        u1 = user_factory(home=f"{roots[0]}/./home/u1", create_home=False)
        u2 = user_factory(home=f"{roots[1]}/./home/u2", create_home=False)
        u3 = user_factory("/usr/sbin/jk_chrootsh", home=f"{roots[2]}/./home/u3",
                          create_home=False)
        del u2, u3
        cfg = parse_config(f"[jails]\n  [[a]]\n  root = {roots[0]}\n[users]\n"
                           f"{u1.name} = a\n")  # type: ignore[attr-defined]
        known = {k.root: k for k in known_jails(cfg)}
        assert known[roots[0]].name == "a" and known[roots[0]].homes == {"/home/u1"}
        assert known[roots[1]].name == f"marker:{roots[1]}" and not known[roots[1]].jailkit_only
        assert known[roots[2]].jailkit_only        # jailkit's own shell: jk_socketd's
        ini = f"{base}/jails.ini"
        with open(ini, "w") as fh:
            fh.write(f"[jails]\n  [[a]]\n  root = {roots[0]}\n")
        os.chmod(ini, 0o644)
        checked = {t.root: t.name for t in check.targets([], ini)}
        assert {r: checked[r] for r in roots} == {r: known[r].name for r in roots}
        relayed = dict((root, name) for name, root in logrelay.marker_jails({roots[0]}))
        assert relayed.get(roots[1]) == f"marker:{roots[1]}"
        assert roots[0] not in relayed and roots[2] not in relayed
    finally:
        shutil.rmtree(base, ignore_errors=True)
