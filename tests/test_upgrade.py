"""The upgrade path from the previous round's package, for real (issue 21: real versions).

Each earlier package is built from git: the commits of RELEASES (0.1.0, 0.2.0 with the
flat layout, 0.3.0 without login bundles), `git archive`d into a temporary
directory and built with that tree's own packaging/build-deb; the .deb is cached under
/var/lib/pam_jail-test/old-deb/COMMIT so later runs reuse it. Today's package is the
working tree's (test_package.py's `deb` fixture).

In a throw-away view of this machine (test_package.py's demo pattern: own mount, PID and
network namespaces, an overlay of / entered with pivot_root, tmpfs on /run, /srv and
/var/lib/pam_jail-test): the old package is installed (its postinst runs its pam-setup),
two users are jailed the old way with the old `pam-jail jailuser` (mode pam and mode
shell), jails.ini is edited, a service file carries pam_jail's lines the way the old
pam_jail(8) prescribed (before `@include common-session`), and a real sshd on the
namespace's 127.0.0.1 logs both users in. Two ssh sessions (`/usr/bin/cat` through the
old login paths) stay open across `dpkg -i` of today's package, a downgrade to the old
package, and the upgrade again; then purge and reinstall. The host's dpkg database, its
/usr/local install and /etc/pam_jail are compared before and after."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest
from jail_fixtures import REPO
from test_package import OVERLAY_VIEW, _fingerprint, deb  # noqa: F401  (deb: a fixture)
from util import SAFE_BASE, safe_tmpdir

pytestmark = pytest.mark.root

# Every earlier release, each a landing: (commit, version). 0.3.0 is the first with the
# login/ and admin/ layout (and without login bundles); 0.2.0 the last one with the flat
# package layout (pam_jail/*.py, the lsh runtime listed file by file in profiles.ini);
# 0.1.0 the first package.
RELEASES = [("284a18e", "0.1.0"), ("87de37d", "0.2.0"), ("148a700", "0.3.0")]


@pytest.fixture(scope="module", params=RELEASES, ids=[v for _c, v in RELEASES])
def old_release(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(the .deb, its version) of an earlier release, built from git with its own
    packaging/build-deb."""
    commit, version = request.param
    return _old_deb(commit, version), version


def _old_deb(old_commit: str, old_version: str) -> str:
    full = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify",
                           f"{old_commit}^{{commit}}"],
                          capture_output=True, text=True, check=False)
    if full.returncode != 0:
        pytest.fail(f"commit {old_commit} is not in {REPO} (a shallow clone?): {full.stderr}")
    commit = full.stdout.strip()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cache = f"{SAFE_BASE}/old-deb/{commit}"
    path = f"{cache}/pam-jail_{old_version}_{arch}.deb"
    if os.path.isfile(path):
        return path
    os.makedirs(f"{SAFE_BASE}/old-deb", mode=0o755, exist_ok=True)
    src = tempfile.mkdtemp(prefix="pam-jail-old.")
    out = f"{cache}.partial"
    shutil.rmtree(out, ignore_errors=True)
    try:
        subprocess.run(f"git -C {REPO} archive {commit} | tar -C {src} -xf -", shell=True,
                       check=True)
        proc = subprocess.run([f"{src}/packaging/build-deb", out], capture_output=True,
                              text=True, timeout=900, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert os.path.isfile(f"{out}/pam-jail_{old_version}_{arch}.deb"), os.listdir(out)
        os.rename(out, cache)
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return path


# Outside: the throw-away view (as test_package.py's demo), then pivot_root into it.
ENTER = r"""
set -eu
base=$1; old=$2; new=$3
""" + OVERLAY_VIEW + r"""mkdir -p "$R/srv"; mount -t tmpfs -o mode=0755 tmpfs "$R/srv"
mkdir -m 0700 "$R/tmp/pju"
cp "$old" "$R/tmp/pju/old.deb"; cp "$new" "$R/tmp/pju/new.deb"
printf '%s' "$UPGRADE_SCRIPT" > "$R/tmp/pju/upgrade.sh"
# a fresh host: no pam_jail installed by scripts/install (only in this overlay view)
rm -rf "$R/etc/pam_jail" "$R/usr/local/lib/pam_jail" "$R/usr/local/sbin/pam-jail" \
       "$R/usr/local/sbin/pam-jail-shell" "$R/usr/local/sbin/pam-jail-lsh" "$R/var/lib/pam_jail"
mkdir "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 bash /tmp/pju/upgrade.sh
"""

# Inside the view. Every fact the test checks is one `key=value` line.
UPGRADE = r"""
set -eu
P=/tmp/pju
version() { echo "version-$1=$(dpkg-query -W -f '${Version} ${Status}' pam-jail 2>/dev/null)"; }
ini_intact() { cmp -s /etc/pam_jail/jails.ini $P/jails.ini.edited && echo "ini-$1=intact" \
  || echo "ini-$1=CHANGED"; }
# the jail's copy of the limited shell's runtime (lsh profile) against the host's
runtime() {
  stale=0 n=0
  for f in $(find /srv/pjj/pamj/usr/lib/pam_jail -name '*.py'); do
    [ -e "${f#/srv/pjj/pamj}" ] || continue      # an older version's module, kept
    n=$((n + 1))
    cmp -s "$f" "${f#/srv/pjj/pamj}" || stale=$((stale + 1))
  done
  # and the other way: every module of the host's runtime is in the jail
  for f in $(find /usr/lib/pam_jail/pam_jail/login -name '*.py' 2>/dev/null); do
    [ -f "/srv/pjj/pamj$f" ] || stale=$((stale + 1))
  done
  echo "runtime-files-$1=$n"
  echo "stale-runtime-$1=$stale"
}
SSH="ssh -p 2222 -i /root/pjkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=10"
logins() {
  for u in pjupam pjushell; do
    set +e; out=$($SSH $u@127.0.0.1 /usr/bin/id </dev/null 2>$P/err); rc=$?; set -e
    echo "login-$1-$u=$rc $out $(tr '\n' ' ' < $P/err)"
    set +e; pamtester pjup $u acct_mgmt open_session close_session >/dev/null 2>&1
    echo "pamtester-$1-$u=$?"; set -e
  done
}

echo "== install $(dpkg-deb -f $P/old.deb Version)"
dpkg -i $P/old.deb > $P/dpkg-old.log 2>&1
version old
# the old way: the old jailuser builds the jails, maps the users, sets their shells
useradd -m -s /bin/bash pjupam; useradd -m -s /bin/bash pjushell
mkdir -m 0755 /srv/pjj
pam-jail jailuser pjupam -j /srv/pjj/pamj --mode pam -p basicshell --jail-config pamj \
  > $P/jailuser.log 2>&1
pam-jail jailuser pjushell -j /srv/pjj/shellj --mode shell -p basicshell \
  --jail-config shellj >> $P/jailuser.log 2>&1
for u in pjupam:pamj pjushell:shellj; do
  cat > /srv/pjj/${u#*:}/etc/pam_jail/lsh.ini <<EOL
[user:${u%%:*}]
programs = /usr/bin/id, /usr/bin/cat
  [[rules]]
  /usr/bin/id = none
  /usr/bin/cat = none
EOL
done
# a jail update cannot refresh (no record of what pam_jail placed: a jailkit jail, say)
mkdir -m 0755 /srv/pjj/bare
sed -i 's|^\[jails\]$|[jails]\n  [[bare]]\n  root = /srv/pjj/bare\n  mode = shell|' \
  /etc/pam_jail/jails.ini
echo "# the admin's own edit" >> /etc/pam_jail/jails.ini
cp /etc/pam_jail/jails.ini $P/jails.ini.edited
# a service file with pam_jail's lines where the old pam_jail(8) put them: after
# common-account, before common-session (pam_limits and pam_env then run in the jail)
cat > /etc/pam.d/pjold <<EOP
auth required pam_permit.so
@include common-account
$(grep -v '^#' /usr/share/pam_jail/pam.d/pam_jail)
@include common-session
session required pam_limits.so
session required pam_env.so
EOP
# pamtester's stack: the lines as shipped, last
{ echo "auth required pam_permit.so"; echo "account required pam_permit.so"
  grep -v '^#' /usr/share/pam_jail/pam.d/pam_jail; } > /etc/pam.d/pjup
# a real sshd on the namespace's loopback, its PAM stack the host's sshd one (with the
# lines the old postinst's pam-setup added), the old sshd-config's Match blocks
mkdir -m 0755 /etc/pjkeys /run/sshd
ssh-keygen -q -t ed25519 -N '' -f /etc/pjkeys/host
ssh-keygen -q -t ed25519 -N '' -f /root/pjkey
for u in pjupam pjushell; do cp /root/pjkey.pub /etc/pjkeys/$u; done
pam-jail sshd-config > /etc/pjkeys/match.conf
cat > /etc/pjkeys/sshd_config <<EOC
ListenAddress 127.0.0.1:2222
HostKey /etc/pjkeys/host
PidFile /run/pjsshd.pid
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /etc/pjkeys/%u
StrictModes yes
PermitRootLogin no
PrintMotd no
Subsystem sftp internal-sftp
Include /etc/pjkeys/match.conf
EOC
echo "sshd-pam-lines=$(grep -c 'pam_jail_pam.py' /etc/pam.d/sshd)"
/usr/sbin/sshd -E $P/sshd.log -f /etc/pjkeys/sshd_config
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s /run/pjsshd.pid ] && break; sleep 0.2; done
logins old
runtime old

echo "== sessions opened through the old package, kept open"
for u in pjupam pjushell; do
  mkfifo $P/in-$u
  $SSH $u@127.0.0.1 /usr/bin/cat < $P/in-$u > $P/out-$u 2>&1 &
  echo $! > $P/pid-$u
done
exec 7>$P/in-pjupam 8>$P/in-pjushell
echo "line-old" >&7; echo "line-old" >&8
# the sessions are open (through the old PAM module and shells) once they answer
for _ in $(seq 50); do
  grep -q line-old $P/out-pjupam && grep -q line-old $P/out-pjushell && break; sleep 0.2
done

echo "== upgrade"
set +e; dpkg -i $P/new.deb > $P/dpkg-up.log 2>&1; echo "dpkg-up=$?"; set -e
sed 's/^/upgrade| /' $P/dpkg-up.log
version up
ini_intact up
runtime up
logins up
echo "line-up" >&7; echo "line-up" >&8
# idempotent: a second run right after the postinst's changes nothing
/usr/bin/time -f "update-again-seconds=%e" pam-jail update --all 2>&1 | sed 's/^/again| /'

echo "== downgrade"
set +e; dpkg -i $P/old.deb > $P/dpkg-down.log 2>&1; echo "dpkg-down=$?"; set -e
version down
ini_intact down
logins down
echo "line-down" >&7; echo "line-down" >&8

echo "== upgrade again"
set +e; dpkg -i $P/new.deb > $P/dpkg-up2.log 2>&1; echo "dpkg-up2=$?"; set -e
version up2
ini_intact up2
runtime up2
logins up2
echo "line-up2" >&7; echo "line-up2" >&8
sleep 1
exec 7>&- 8>&-
for u in pjupam pjushell; do
  set +e; wait "$(cat $P/pid-$u)"; rc=$?; set -e
  echo "session-$u=$rc $(tr '\n' ' ' < $P/out-$u)"
done

echo "== doctor on the old-form service file"
set +e
pam-jail doctor --pam-file /etc/pam.d/pjold > $P/doctor.log 2>&1
echo "doctor-pjold=$?"
set -e
grep -E '^ *FAIL +pam\.order' $P/doctor.log | sed 's/^ */doctor-line=/' || true

echo "== purge"
kill "$(cat /run/pjsshd.pid)" || true
set +e; dpkg --purge pam-jail > $P/dpkg-purge.log 2>&1; echo "dpkg-purge=$?"; set -e
sed 's/^/purge| /' $P/dpkg-purge.log
version purged
ini_intact purged
echo "etc-left=$(ls -A /etc/pam_jail 2>/dev/null | tr '\n' ' ')"
for f in /usr/sbin/pam-jail /usr/sbin/pam-jail-shell /usr/sbin/pam-jail-lsh /usr/lib/pam_jail \
         /usr/share/pam_jail /usr/share/doc/pam-jail /etc/apt/apt.conf.d/99pam-jail \
         /etc/init.d/pam-jail-logrelay /var/lib/pam_jail/defaults.sha256 \
         /etc/pam_jail/jails.ini.index; do
  if [ -e "$f" ]; then echo "left=$f"; fi
done
echo "var-left=$(ls -A /var/lib/pam_jail 2>/dev/null | tr '\n' ' ')"
live=$(cat /etc/pam.d/* | grep -c '^[^#].*/usr/lib/pam_jail/pam_jail_pam\.py' || true)
echo "pam-live-lines=$live"

echo "== reinstall"
set +e; dpkg -i $P/new.deb > $P/dpkg-re.log 2>&1; echo "dpkg-re=$?"; set -e
sed 's/^/reinstall| /' $P/dpkg-re.log
version re
ini_intact re
# a mode-pam user jailed by today's jailuser in the jail the old one built
useradd -m -s /bin/bash pjunew
pam-jail jailuser pjunew -j /srv/pjj/pamj --mode pam --jail-config pamj > $P/jailuser-new.log 2>&1
sed 's/pjupam/pjunew/' /srv/pjj/pamj/etc/pam_jail/lsh.ini > $P/lsh.ini
cat $P/lsh.ini >> /srv/pjj/pamj/etc/pam_jail/lsh.ini
cp /root/pjkey.pub /etc/pjkeys/pjunew
pam-jail sshd-config > /etc/pjkeys/match.conf
/usr/sbin/sshd -E $P/sshd.log -f /etc/pjkeys/sshd_config
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s /run/pjsshd.pid ] && break; sleep 0.2; done
logins re
set +e; out=$($SSH pjunew@127.0.0.1 /usr/bin/id </dev/null 2>$P/err); rc=$?; set -e
echo "login-re-pjunew=$rc $out $(tr '\n' ' ' < $P/err)"
echo "== done"
"""


def _facts(out: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^([a-z0-9-]+)=(.*)$", out, re.M)}


def test_upgrade_downgrade_purge_reinstall(old_release: tuple[str, str],
                                           deb: str) -> None:  # noqa: F811
    old_deb, old_version = old_release
    # the premise of "purge keeps jails.ini" here: neither package lists /etc/pam_jail
    # files as conffiles (dpkg would purge an obsolete one after an upgrade)
    for package in (old_deb, deb):
        conffiles = subprocess.run(["sh", "-c", f"dpkg-deb --ctrl-tarfile {package} | "
                                    "tar -xOf - ./conffiles"], capture_output=True,
                                   text=True, check=True).stdout.split()
        assert conffiles == ["/etc/apt/apt.conf.d/99pam-jail",
                             "/etc/init.d/pam-jail-logrelay"], (package, conffiles)
    before = _fingerprint()
    base = safe_tmpdir("debupgrade")
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--net",
                               "--pid", "--fork", "--kill-child", "--",
                               "bash", "-c", ENTER, "upgrade", base, old_deb, deb],
                              env={**os.environ, "UPGRADE_SCRIPT": UPGRADE},
                              capture_output=True, text=True, timeout=400, check=False)
        out = proc.stdout
        report = out + proc.stderr[-3000:]
        print(report)                      # the whole run, for -s or a failure's log
        assert proc.returncode == 0, report
        assert "== done" in out, report
        facts = _facts(out)
        from pam_jail import __version__
        assert facts["version-old"] == f"{old_version} install ok installed", report
        assert facts["sshd-pam-lines"] == "2", report      # the old postinst's pam-setup
        # every step: both old users log in through the real sshd and through libpam
        for step in ("old", "up", "down", "up2", "re"):
            for user in ("pjupam", "pjushell"):
                login = facts[f"login-{step}-{user}"]
                assert login.startswith("0 uid="), (step, user, report)
                assert f"({user})" in login, (step, user, report)
                assert facts[f"pamtester-{step}-{user}"] == "0", (step, user, report)
        for step in ("up", "up2", "re"):
            assert facts[f"version-{step}"] == f"{__version__} install ok installed", report
        assert facts["version-down"] == f"{old_version} install ok installed", report
        assert facts["dpkg-up"] == facts["dpkg-up2"] == facts["dpkg-down"] == "0", report
        # the edited jails.ini: untouched by upgrade, downgrade, purge and reinstall
        for step in ("up", "down", "up2", "purged", "re"):
            assert facts[f"ini-{step}"] == "intact", (step, report)
        # postinst brought the jails up to date: the mode-pam jail's copy of the limited
        # shell's runtime is today's (the old package's before)
        assert int(facts["runtime-files-old"]) > 5, report
        assert facts["stale-runtime-old"] == "0", report
        assert facts["stale-runtime-up"] == "0", report
        assert facts["stale-runtime-up2"] == "0", report
        # postinst says what it did and what the admin must migrate
        upgrade = "\n".join(line[len("upgrade| "):] for line in out.splitlines()
                            if line.startswith("upgrade| "))
        assert f"upgraded from {old_version}" in upgrade, upgrade
        assert re.search(r"update /srv/pjj/pamj: ", upgrade), upgrade
        assert re.search(r"/etc/pam\.d/pjold:\d+: .*before", upgrade), upgrade
        assert "pam-jail doctor" in upgrade, upgrade
        assert not re.search(r"/etc/pam\.d/(sshd|pjup):\d", upgrade), upgrade  # lines last
        # and doctor FAILs that file (pam.order)
        assert facts["doctor-pjold"] == "1", report
        assert "pam.order" in facts.get("doctor-line", ""), report
        # the sessions opened through the old package lived through it all
        for user in ("pjupam", "pjushell"):
            assert facts[f"session-{user}"] == "0 line-old line-up line-down line-up2 ", report
        # purge: the edited jails.ini (and its last-known-good copy) stays, nothing else
        assert facts["dpkg-purge"] == "0", report
        assert facts["version-purged"] == "", report
        assert facts["etc-left"] == "jails.ini jails.ini.good ", report
        assert "left" not in facts, report
        # the records of users still jailed (jailuser --undo needs them) stay
        assert facts["var-left"] == "jailuser ", report
        assert facts["pam-live-lines"] == "0", report
        assert facts["dpkg-re"] == "0", report
        assert facts["login-re-pjunew"].startswith("0 uid="), report
        # a jail update cannot refresh is reported (and named) without failing dpkg;
        # a second run of update --all (the reinstall's postinst) changes nothing
        assert re.search(r"FAILED: .*/srv/pjj/bare", upgrade), upgrade
        assert "update --all failed" in upgrade, upgrade
        reinstall = "\n".join(line for line in out.splitlines()
                               if line.startswith("reinstall| "))
        assert "upgraded from" not in reinstall, reinstall
        again = "\n".join(line for line in out.splitlines() if line.startswith("again| "))
        assert "update /srv/pjj/pamj: no change" in again, again
        assert "update /srv/pjj/shellj: no change" in again, again
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert _fingerprint() == before
