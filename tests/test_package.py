"""The Debian package: built with packaging/build-deb (dpkg-buildpackage -us -uc -b on a
copy of the tree), its layout checked with dpkg-deb, lintian, and a real `dpkg -i` /
`dpkg --purge` in a copy-on-write view of this machine: a private mount namespace with
an overlay of / (upper layer on a tmpfs) and chroot. The host's dpkg database, its
/usr/local install and /etc/pam_jail stay untouched (checked)."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from jail_fixtures import REPO
from util import safe_tmpdir

from pam_jail import __version__

pytestmark = pytest.mark.root

DEB_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3", "dpkg-deb", "lintian", "man")
MAN_PAGES = ("usr/share/man/man8/pam-jail.8.gz", "usr/share/man/man8/pam-jail-shell.8.gz",
             "usr/share/man/man8/pam_jail.8.gz", "usr/share/man/man5/jails.ini.5.gz",
             "usr/share/man/man5/lsh.ini.5.gz", "usr/share/man/man5/profiles.ini.5.gz",
             "usr/share/man/man5/uchroot.ini.5.gz", "usr/share/man/man5/logrelay.ini.5.gz")
UNIT = "packaging/systemd/pam-jail-logrelay.service"


@pytest.fixture(scope="module")
def deb() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("run as root: scripts/test")
    missing = [t for t in DEB_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install dpkg-dev debhelper dh-python lintian")
    out = safe_tmpdir("deb")
    try:
        proc = subprocess.run([f"{REPO}/packaging/build-deb", out], capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True).stdout.strip()
        # and debhelper's automatic debug symbols of the C extension
        assert sorted(debs) == [f"pam-jail-dbgsym_{__version__}_{arch}.deb",
                                f"pam-jail_{__version__}_{arch}.deb"], debs
        yield f"{out}/pam-jail_{__version__}_{arch}.deb"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def test_layout(deb: str) -> None:
    root = safe_tmpdir("debx")
    try:
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        lib = f"{root}/usr/lib/pam_jail"
        assert os.path.isfile(f"{lib}/pam_jail/admin/cli.py")
        assert os.path.isfile(f"{lib}/pam_jail/admin/doctor.py")
        assert not any("__pycache__" in d for d, _s, _f in os.walk(lib))  # py3compile's job
        for name in ("pam-jail", "pam-jail-shell", "pam-jail-lsh"):
            path = f"{root}/usr/sbin/{name}"
            assert os.stat(path).st_mode & 0o777 == 0o755
        for name in ("pam-jail", "pam-jail-shell.py", "pam-jail-lsh.py"):
            text = _read(f"{root}/usr/sbin/{name}" if name == "pam-jail" else f"{lib}/{name}")
            assert text.startswith("#!/usr/bin/python3 -IS\n")
            assert '"/usr/lib/pam_jail"' in text and "@LIBDIR@" not in text
        for name in ("pam-jail-shell", "pam-jail-lsh"):   # static exec stubs: no loader
            with open(f"{root}/usr/sbin/{name}", "rb") as fh:
                binary = fh.read()
            from pam_jail.login.safety import elf_interpreter
            assert binary.startswith(b"\x7fELF") and elf_interpreter(binary) is None
            assert f"/usr/lib/pam_jail/{name}.py".encode() in binary
        pam_py = _read(f"{lib}/pam_jail_pam.py")
        assert '"/usr/lib/pam_jail"' in pam_py and "@LIBDIR@" not in pam_py
        pam_lines = _read(f"{root}/usr/share/pam_jail/pam.d/pam_jail")
        assert "session required pam_python.so /usr/lib/pam_jail/pam_jail_pam.py" in pam_lines
        assert "pam_succeed_if.so quiet shell notin /usr/sbin/pam-jail-shell:" \
            "/usr/sbin/pam-jail-lsh" in pam_lines
        assert "/usr/local" not in pam_lines
        assert os.path.isfile(f"{root}/usr/share/pam_jail/sshd/pam_jail.conf")
        # the documentation the help texts, conffile headers and doctor's fixes name
        for doc in ("README.md.gz", "config.md.gz", "login-paths.md.gz", "tools.md.gz",
                    "lsh.md.gz", "escapes.md.gz"):
            found = os.path.exists(f"{root}/usr/share/doc/pam-jail/{doc}") or \
                os.path.exists(f"{root}/usr/share/doc/pam-jail/{doc[:-3]}")
            assert found, doc
        import gzip
        with gzip.open(f"{root}/usr/share/man/man8/pam-jail.8.gz", "rt") as fh:
            page = fh.read()
        assert "/usr/local" not in page and "/usr/sbin/pam\\-jail\\-lsh" in page
        # nothing enabled: no file in /etc/pam.d, /etc/ssh, no enabled unit; the apt hook
        # (update --all after dpkg runs) and the init script for hosts without systemd.
        # The config defaults are not conffiles: postinst copies them where absent
        assert sorted(os.listdir(f"{root}/etc")) == ["apt", "init.d"]
        assert sorted(os.listdir(f"{root}/usr/share/pam_jail/etc")) == sorted(
            os.listdir(f"{REPO}/etc/pam_jail"))
        assert os.listdir(f"{root}/etc/apt/apt.conf.d") == ["99pam-jail"]
        assert os.listdir(f"{root}/etc/init.d") == ["pam-jail-logrelay"]
        unit = f"{root}/lib/systemd/system/pam-jail-logrelay.service"
        assert os.path.exists(unit) == os.path.exists(f"{REPO}/{UNIT}")
        for page in MAN_PAGES:
            proc = subprocess.run(["man", "--warnings", "-l", f"{root}/{page}"],
                                  capture_output=True, text=True, check=True,
                                  env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
            assert proc.stderr == "", (page, proc.stderr)
            assert len(proc.stdout.splitlines()) > 20, page
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_control_and_conffiles(deb: str) -> None:
    info = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True,
                          check=True).stdout
    depends = re.search(r"^Depends: (.*)$", info, re.M)
    assert depends is not None
    for dep in ("python3 (>= 3.11)", "python3-configobj", "python3-pyelftools",
                "libpam-python"):
        assert dep in depends.group(1)
    assert re.search(r"^Recommends: openssh-server, rsync$", info, re.M)
    # the C extension pam_jail/_sys makes it architecture-dependent
    assert re.search(r"^Architecture: (amd64|arm64|i386|armhf|ppc64el|s390x)$", info, re.M)
    conffiles = subprocess.run(["sh", "-c", f"dpkg-deb --ctrl-tarfile {deb} | "
                                "tar -xOf - ./conffiles"], capture_output=True, text=True,
                               check=True).stdout.split()
    assert conffiles == ["/etc/apt/apt.conf.d/99pam-jail", "/etc/init.d/pam-jail-logrelay"]


def test_man_page_covers_every_subcommand(deb: str) -> None:
    from pam_jail.admin.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    page = subprocess.run(["sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | tar -xOf - "
                           "./usr/share/man/man8/pam-jail.8.gz | gzip -dc"],
                          capture_output=True, text=True, check=True).stdout
    sections = re.findall(r"^\.SS (.*)$", page, re.M)
    assert [s.replace("\\-", "-") for s in sections] == list(sub.choices)
    assert "doctor" in sub.choices


def test_lintian_clean(deb: str) -> None:
    proc = subprocess.run(["lintian", "--tag-display-limit", "0", deb], capture_output=True,
                          text=True, timeout=300, check=False)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == [], proc.stdout


INSTALL_SCRIPT = r"""
set -eu
deb=$1; base=$2
mount -t tmpfs tmpfs "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
for d in proc sys dev; do mount --rbind "/$d" "$base/root/$d"; done
mount -t tmpfs tmpfs "$base/root/run"
cp "$deb" "$base/root/tmp/pam-jail.deb"
R=$base/root
# a fresh host: no pam_jail installed by scripts/install (only in this overlay view)
rm -rf "$R/etc/pam_jail" "$R/usr/local/lib/pam_jail" "$R/usr/local/sbin/pam-jail" \
       "$R/usr/local/sbin/pam-jail-shell" "$R/usr/local/sbin/pam-jail-lsh"
echo "== install"
chroot "$R" dpkg -i /tmp/pam-jail.deb
chroot "$R" dpkg-query -W -f '${Status}\n' pam-jail
echo "== help"
chroot "$R" /usr/sbin/pam-jail --help
chroot "$R" /usr/sbin/pam-jail doctor --help | head -1
echo "== shell as root"
set +e
chroot "$R" /usr/sbin/pam-jail-shell -c id 2>"$base/shell.err"; echo "shell-exit=$?"
set -e
echo "shell-stderr=$(cat "$base/shell.err")"
echo "== import"
chroot "$R" /usr/bin/python3 -IS -c 'import sys
sys.path[:0] = ["/usr/lib/pam_jail"]
sys.path.append("/usr/lib/python3/dist-packages")
import pam_jail.login.pam_module, pam_jail.login.shell_entry
import pam_jail.admin.cli, pam_jail.admin.doctor
print("module-file=" + pam_jail.admin.cli.__file__)'
chroot "$R" /usr/bin/python3 -IS -c 'exec(open("/usr/lib/pam_jail/pam_jail_pam.py").read())
print("pam-entry=" + pam_sm_open_session.__module__)'
find "$R/usr/lib/pam_jail/pam_jail" -name '*.pyc' | grep -c . | sed 's/^/pyc=/'
find "$R/usr/lib/pam_jail/pam_jail/login" -name '*.pyc' | grep -c . | sed 's/^/login-pyc=/'
find "$R/usr/lib/pam_jail/pam_jail/login/__pycache__" -name '*.bundle' | grep -c . \
  | sed 's/^/bundles=/'
chroot "$R" /usr/bin/python3 -IS -c 'import sys
sys.path[:0] = ["/usr/lib/pam_jail"]
import pam_jail.login
print("preloaded=%s" % pam_jail.login.preload("pam-jail-shell"))
print("from-bundle=%s" % (sys.modules["pam_jail.login.confine"].__loader__.__name__))'
echo "== pam lines, then removal"
chroot "$R" useradd -M -s /bin/sh pjpkgplain
{ echo "auth required pam_permit.so"; echo "account required pam_permit.so";
  grep -v '^#' "$R/usr/share/pam_jail/pam.d/pam_jail"; } > "$R/etc/pam.d/pjpkg"
# another install's lines (scripts/install's /usr/local) are not the package's to touch
grep -v '^#' "$R/usr/share/pam_jail/pam.d/pam_jail" | sed 's|/usr/|/usr/local/|g' \
  > "$R/etc/pam.d/pjpkg-local"
cp "$R/etc/pam.d/pjpkg-local" "$R/tmp/pjpkg-local.before"
chroot "$R" dpkg -r pam-jail
echo "commented=$(grep -c '^#pam-jail-removed# ' "$R/etc/pam.d/pjpkg")"
cmp -s "$R/etc/pam.d/pjpkg-local" "$R/tmp/pjpkg-local.before" && echo "local-untouched=1"
rm -f "$R/etc/pam.d/pjpkg-local"
set +e
chroot "$R" pamtester pjpkg root acct_mgmt open_session close_session >/dev/null 2>&1
echo "root-after-remove=$?"
chroot "$R" pamtester pjpkg pjpkgplain acct_mgmt open_session close_session >/dev/null 2>&1
echo "plain-after-remove=$?"
set -e
chroot "$R" dpkg -i /tmp/pam-jail.deb >/dev/null
echo "restored=$(grep -c 'pam_jail_pam.py' "$R/etc/pam.d/pjpkg") \
commented-after-reinstall=$(grep -c '^#pam-jail-removed# ' "$R/etc/pam.d/pjpkg" || true)"
rm "$R/etc/pam.d/pjpkg"
echo "== purge (an edited jails.ini stays, untouched defaults go)"
echo "# the admin's" >> "$R/etc/pam_jail/jails.ini"
chroot "$R" dpkg --purge pam-jail
echo "kept-jails-ini=$(grep -c "the admin's" "$R/etc/pam_jail/jails.ini")"
echo "kept-others=$(ls "$R/etc/pam_jail" | grep -v '^jails.ini$' | tr '\n' ' ')"
rm -f "$R/etc/pam_jail/jails.ini" "$R/etc/pam_jail/jails.ini.good"; rmdir "$R/etc/pam_jail"
for f in /usr/sbin/pam-jail /usr/sbin/pam-jail-shell /usr/lib/pam_jail /usr/share/pam_jail \
         /usr/share/man/man8/pam-jail.8.gz /etc/pam_jail; do
  if [ -e "$R$f" ]; then echo "left=$f"; fi
done
echo "== done"
"""


def _fingerprint() -> dict[str, str]:
    """What the host install and dpkg database look like (must not change)."""
    out = {}
    for path in ("/var/lib/dpkg/status", "/usr/local/sbin/pam-jail",
                 "/usr/local/sbin/pam-jail-shell", "/usr/local/lib/pam_jail/pam_jail_pam.py",
                 "/etc/pam_jail/lsh.ini", "/etc/pam_jail/profiles.ini"):
        with open(path, "rb") as fh:
            out[path] = hashlib.sha256(fh.read()).hexdigest()
    out["/usr/sbin/pam-jail"] = str(os.path.exists("/usr/sbin/pam-jail"))
    return out


def test_install_run_purge_in_an_overlay(deb: str) -> None:
    before = _fingerprint()
    base = safe_tmpdir("debroot")
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                               "bash", "-c", INSTALL_SCRIPT, "install", deb, base],
                              capture_output=True, text=True, timeout=300, check=False)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "install ok installed" in out
        assert "usage: pam-jail" in out and "doctor" in out
        assert "shell-exit=1" in out
        stderr = re.search(r"^shell-stderr=(.*)$", out, re.M)
        assert stderr is not None
        assert stderr.group(1).startswith("pam_jail: login refused:"), stderr.group(1)
        assert "root" in stderr.group(1)
        assert "module-file=/usr/lib/pam_jail/pam_jail/admin/cli.py" in out
        assert "pam-entry=pam_jail.login.pam_module" in out
        pyc = re.search(r"^pyc=(\d+)$", out, re.M)
        assert pyc is not None and int(pyc.group(1)) > 10  # py3compile ran in postinst
        login_pyc = re.search(r"^login-pyc=(\d+)$", out, re.M)   # the trusted core too
        assert login_pyc is not None and int(login_pyc.group(1)) > 10
        # postinst wrote the login bundles, and a login reads them (prerm removes them:
        # nothing is left of /usr/lib/pam_jail after the purge below)
        assert "bundles=3" in out and "preloaded=True" in out, out
        assert "from-bundle=MemoryFinder" in out, out
        assert "left=" not in out, out
        # removal comments pam_jail's pam.d lines out: root and unjailed users log in
        assert "commented=4" in out and "root-after-remove=0" in out, out
        assert "local-untouched=1" in out, out       # prerm: only its own lines
        assert "plain-after-remove=0" in out, out
        assert "restored=2 commented-after-reinstall=0" in out, out
        # the edited jails.ini stays with its last-known-good copy; nothing else
        assert "kept-jails-ini=1" in out and "kept-others=jails.ini.good \n" in out, out
        assert "== done" in out
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert _fingerprint() == before


# The demo (scripts/demo: two jailed users, a loopback sshd, real ssh/scp/sftp/rsync) against
# the installed package only. Own mount, PID and network namespaces (unshare --kill-child:
# everything started inside dies with it); / is an overlay of this machine with pivot_root
# into it (not chroot: a chrooted process may not create the user namespace pam-jail-shell
# needs); /dev is a private tmpfs with the few device nodes the demo needs, so the demo's
# syslog receiver (--syslog) owns a /dev/log no other test or daemon sees; users, jails,
# /etc/pam_jail, /etc/pam.d and the sshd all live in the overlay and vanish with it.
# The throw-away view (bash, $base set): an overlay of / at $R=$base/root with its own
# /proc, /dev (a few nodes, its own devpts), /run and /var/lib/pam_jail-test, loopback up;
# test_upgrade.py enters the same view.
OVERLAY_VIEW = r"""
mount -t tmpfs tmpfs "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
R=$base/root
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name major minor <<<"$n"
  mknod -m 0666 "$R/dev/$name" c "$major" "$minor"
done
mkdir -m 0755 "$R/dev/pts"; mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$R/dev/${i#*:}"; done
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=0755 tmpfs "$R/var/lib/pam_jail-test"
ip link set lo up
"""

DEMO_SCRIPT = r"""
set -eu
deb=$1; base=$2; repo=$3
""" + OVERLAY_VIEW + r"""cp "$deb" "$R/tmp/pam-jail.deb"
# a fresh host: no pam_jail installed by scripts/install (only in this overlay view)
rm -rf "$R/etc/pam_jail" "$R/usr/local/lib/pam_jail" "$R/usr/local/sbin/pam-jail" \
       "$R/usr/local/sbin/pam-jail-shell" "$R/usr/local/sbin/pam-jail-lsh"
mkdir "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
echo "== install"
dpkg -i /tmp/pam-jail.deb >/dev/null
dpkg -S /usr/sbin/pam-jail-shell /usr/lib/pam_jail/pam_jail_pam.py
for f in /usr/local/lib/pam_jail /usr/local/sbin/pam-jail-shell; do
  if [ -e "$f" ]; then echo "stale=$f"; fi
done
echo "== demo"
set +e
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$repo/scripts/demo" --libdir /usr/lib/pam_jail --sbindir /usr/sbin --syslog
echo "demo-exit=$?"
"""


def test_demo_against_the_installed_package(deb: str) -> None:
    before = _fingerprint()
    base = safe_tmpdir("debdemo")
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--net",
                               "--pid", "--fork", "--kill-child", "--",
                               "bash", "-c", DEMO_SCRIPT, "demo", deb, base, REPO],
                              capture_output=True, text=True, timeout=150, check=False)
        out = proc.stdout
        report = out + proc.stderr[-3000:]
        assert proc.returncode == 0, report
        assert "pam-jail: /usr/sbin/pam-jail-shell" in out, report
        assert "pam-jail: /usr/lib/pam_jail/pam_jail_pam.py" in out, report
        assert "stale=" not in out, report
        # the demo's own imports and the files it wired in: the package's, nothing else
        assert "== pam_jail package /usr/lib/pam_jail/pam_jail\n" in out, report
        assert "   PAM module /usr/lib/pam_jail/pam_jail_pam.py\n" in out, report
        assert "   login shell /usr/sbin/pam-jail-shell\n" in out, report
        rows = {(m.group(1), m.group(2).strip()): m.group(3) for m in re.finditer(
            r"^  (pam|shell) +(.{44}) (allowed|REFUSED|logged|MISSING)", out, re.M)}
        for who in ("pam", "shell"):
            assert rows.get((who, "ssh id")) == "allowed", report
            assert rows.get((who, "rsync upload")) == "allowed", report
            assert rows.get((who, "sftp -b: put, ls")) == "allowed", report
            assert rows.get((who, "read /etc/shadow")) == "REFUSED", report
        assert rows.get(("shell", "/bin/sh -c id")) == "REFUSED", report
        assert rows.get(("pam", "syslog: session allowed")) == "logged", report
        assert rows.get(("shell", "syslog: id; /bin/sh")) == "logged", report
        assert re.search(r"^  shell +/bin/sh -c id +REFUSED +pam_jail: refused: run /bin/sh: ",
                         out, re.M), report
        summary = re.search(r"^(\d+) checks, 0 unexpected\.$", out, re.M)
        assert summary is not None and int(summary.group(1)) == len(rows) >= 26, report
        assert "UNEXPECTED" not in out, report
        assert "demo-exit=0" in out, report
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert _fingerprint() == before
