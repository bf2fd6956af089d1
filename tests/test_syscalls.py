"""The seccomp profile (pam_jail/login/syscalls.py), without root.

* Its numbers and its "known" ranges are libseccomp's (Debian's python3-seccomp).
* Differential: the program pam_jail builds and the one libseccomp compiles from the same
  rules answer alike for generated (ABI, number, arguments) and generated seccomp_allow
  sets; both programs run in the classic-BPF interpreter below, which refuses any
  instruction it does not know.
* What libseccomp cannot express (`personality` not in a set, `newer`: numbers it has
  no name for) is checked directly against the documented rule.
* The kernel: a forked child loads the filter with confine.load_syscall_filter (the step
  the login paths call) and makes real system calls; arguments are chosen so that the
  kernel alone would answer with another error (EINVAL, EBADF...), so each check fails
  without the filter.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pam_jail.login import syscalls
from pam_jail.login.syscalls import (
    ALLOWABLE,
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    GROUPS,
    NUMBERS,
    RULES,
    build,
    from_options,
    program,
)

sys.path.append("/usr/lib/python3/dist-packages")   # Debian's python3-seccomp
import seccomp  # noqa: E402  (scripts/setup installs it: missing is a failure)

X86_64_ONLY = pytest.mark.skipif(platform.machine() != "x86_64",
                                 reason="the profile has tables for x86_64 only")
ALLOW = 0x7FFF0000
ERRNO = 0x00050000


def eperm() -> int:
    return ERRNO | errno.EPERM


def enosys() -> int:
    return ERRNO | errno.ENOSYS


# ------------------------------------------------------------- a classic BPF interpreter

def decode(data: bytes) -> list[tuple[int, int, int, int]]:
    assert len(data) % 8 == 0 and 0 < len(data) // 8 <= 4096
    return [(int.from_bytes(data[i:i + 2], "little"), data[i + 2], data[i + 3],
             int.from_bytes(data[i + 4:i + 8], "little")) for i in range(0, len(data), 8)]


def run_bpf(prog: list[tuple[int, int, int, int]], arch: int, nr: int,
            args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)) -> int:
    """What the kernel's seccomp would return for this struct seccomp_data (x86: little
    endian). Only the instructions seccomp programs use; anything else fails the test."""
    data = (nr.to_bytes(4, "little") + arch.to_bytes(4, "little") + bytes(8)
            + b"".join((a & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
                       for a in (*args, 0, 0, 0, 0, 0, 0)[:6]))
    acc = 0
    pc = 0
    for _steps in range(len(prog) + 1):     # classic BPF only jumps forward
        code, jt, jf, k = prog[pc]
        if code == 0x20:                    # ld [k]
            assert k % 4 == 0 and k + 4 <= len(data)
            acc = int.from_bytes(data[k:k + 4], "little")
        elif code == 0x54:                  # and #k
            acc &= k
        elif code == 0x06:                  # ret #k
            return k
        elif code == 0x05:                  # ja +k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")
        pc += 1
    raise AssertionError("program did not return")


def test_interpreter_runs_libseccomp_programs() -> None:
    """The interpreter itself, against libseccomp's own view of a small filter."""
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "keyctl")
    f.add_rule(seccomp.ERRNO(errno.EACCES), "ioctl",
               seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, 0x5412))
    prog = decode(_export(f))
    assert run_bpf(prog, AUDIT_ARCH_X86_64, 250) == eperm()
    assert run_bpf(prog, AUDIT_ARCH_X86_64, 16, (0, 0x5412)) == ERRNO | errno.EACCES
    assert run_bpf(prog, AUDIT_ARCH_X86_64, 16, (0, 0x5413)) == ALLOW
    assert run_bpf(prog, AUDIT_ARCH_X86_64, 0) == ALLOW


# ---------------------------------------------------------------------- the data itself

ARCHES = {AUDIT_ARCH_X86_64: seccomp.Arch.X86_64, AUDIT_ARCH_I386: seccomp.Arch.X86}


def _resolve(arch: int, name: str) -> int | None:
    try:
        nr = seccomp.resolve_syscall(ARCHES[arch], name)
    except Exception:
        return None
    return nr if nr >= 0 else None


def test_numbers_are_libseccomps() -> None:
    for name, pair in NUMBERS.items():
        for index, arch in enumerate((AUDIT_ARCH_X86_64, AUDIT_ARCH_I386)):
            want = _resolve(arch, name)
            if (arch, name) == (AUDIT_ARCH_I386, "socket"):
                # libseccomp names the socketcall multiplexer for "socket" on i386; the
                # direct call (Linux 4.3) is 359
                assert seccomp.resolve_syscall(seccomp.Arch.X86, 359) == b"socket"
                want = 359
            assert pair[index] == want, (name, arch, pair, want)


def test_known_ranges_are_the_numbers_libseccomp_names() -> None:
    for arch, ranges in syscalls.KNOWN.items():
        named = set()
        for nr in range(0, 2048):
            try:
                seccomp.resolve_syscall(ARCHES[arch], nr)
            except Exception:
                continue
            named.add(nr)
        if arch == AUDIT_ARCH_X86_64:
            named = {n for n in named if n < 512}     # 512-547: x32 only
        assert named == {n for lo, hi in ranges for n in range(lo, hi + 1)}


def test_every_rule_names_a_known_call_and_group() -> None:
    assert len({r[0] for r in RULES}) == len(RULES)       # rule names are unique
    for _name, group, call, err, cond in RULES:
        assert call in NUMBERS and group in GROUPS and err in (errno.EPERM, errno.ENOSYS)
        assert cond == () or cond[0] in ("eq", "any", "not_in", "all")
    assert set(GROUPS) | {r[0] for r in RULES} == ALLOWABLE
    assert set(NUMBERS) == {r[2] for r in RULES}


def test_the_issue_list_is_denied_by_default() -> None:
    denied = {r[2] for r in RULES if r[4] == ()}
    for call in ("keyctl", "add_key", "request_key", "ptrace", "process_vm_readv",
                 "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                 "kexec_file_load", "init_module", "finit_module", "delete_module",
                 "unshare", "setns", "clone3", "mount", "umount2", "pivot_root",
                 "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
                 "open_by_handle_at", "name_to_handle_at", "io_uring_setup",
                 "io_uring_enter", "io_uring_register"):
        assert call in denied, call


def test_from_options() -> None:
    assert from_options({}) == ()
    assert from_options({"seccomp": "no", "seccomp_allow": "keyring"}) is None
    assert from_options({"seccomp": "yes", "seccomp_allow": "keyring, TIOCSTI"}) == \
        ("keyring", "TIOCSTI")


def test_builder_refuses_unknown_names_and_machines() -> None:
    with pytest.raises(ValueError, match="unknown seccomp_allow"):
        build("x86_64", {"keyrings"})
    with pytest.raises(ValueError, match="no system call table for machine 'aarch64'"):
        build("aarch64")


# --------------------------------------------------------------- pam_jail vs libseccomp

def _export(f: object) -> bytes:
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)  # type: ignore[attr-defined]
        fh.seek(0)
        return fh.read()


def _lib_args(cond: tuple[object, ...]) -> list[list[object]]:
    """A condition as libseccomp rules (each a list of Args; one list per rule, ORed)."""
    if not cond:
        return [[]]
    if cond[0] == "all":     # one rule whose Args all hold (libseccomp ANDs them)
        parts = [_lib_args(sub) for sub in cond[1:] if isinstance(sub, tuple)]
        assert all(len(p) == 1 for p in parts), cond
        return [[a for p in parts for a in p[0]]]
    kind, arg, value = cond
    if kind == "eq":
        return [[seccomp.Arg(arg, seccomp.MASKED_EQ, 0xFFFFFFFF, value)]]
    if kind == "any":
        assert isinstance(value, int)
        return [[seccomp.Arg(arg, seccomp.MASKED_EQ, 1 << b, 1 << b)]
                for b in range(32) if value >> b & 1]
    raise AssertionError(f"libseccomp cannot express {kind!r}")


def libseccomp_program(arch: int, allow: frozenset[str]) -> list[tuple[int, int, int, int]]:
    """The same rules compiled by libseccomp, for one ABI (bad arch: ENOSYS)."""
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    if arch == AUDIT_ARCH_I386:
        f.add_arch(seccomp.Arch.X86)
        f.remove_arch(seccomp.Arch.NATIVE)
    f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ERRNO(errno.ENOSYS))
    index = 0 if arch == AUDIT_ARCH_X86_64 else 1
    for name, group, call, err, cond in RULES:
        if name in allow or group in allow:
            continue
        if _resolve(arch, call) is None and call != "socket":
            assert NUMBERS[call][index] is None, (call, arch)
            continue
        for args in _lib_args(cond):
            f.add_rule(seccomp.ERRNO(err), call, *args)
    return decode(_export(f))


_ARG = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 64),
                 st.sampled_from([0x5412, 0x541C, 0x1_0000_5412, 0xFFFF_FFFF_0000_541C,
                                  38, 40, 0x1_0000_0026, 0x10000000 | 17, 0x20011,
                                  0x1_0000_0000 | 0x40000000, 1, 0xFFFFFFFF]),
                 st.builds(lambda a, b: a | b, st.integers(0, 0xFF),
                           st.sampled_from([0x00020000, 0x02000000, 0x04000000,
                                            0x08000000, 0x10000000, 0x20000000,
                                            0x40000000, 0x80000000, 0x0100_0000_0000])))


def _numbers(arch: int) -> st.SearchStrategy[int]:
    index = 0 if arch == AUDIT_ARCH_X86_64 else 1
    ours = sorted({p[index] for p in NUMBERS.values() if p[index] is not None})
    return st.one_of(st.sampled_from(ours), st.integers(0, 600),
                     st.integers(0x40000000, 0x40000000 + 600), st.integers(0, 2**32 - 2))


_ALLOW_SETS = st.frozensets(st.sampled_from(sorted(ALLOWABLE)), max_size=4)


@X86_64_ONLY
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.large_base_example, HealthCheck.data_too_large])
@given(allow=_ALLOW_SETS, data=st.data())
def test_same_decisions_as_libseccomp(allow: frozenset[str], data: st.DataObject) -> None:
    """`personality` and `newer` are left out on both sides (libseccomp cannot express
    them; the tests below hold them to their rule)."""
    allow = allow | {"personality", "newer"}
    ours = decode(program("x86_64", allow))
    refs = {arch: libseccomp_program(arch, allow) for arch in ARCHES}
    lone_socketcall = "socketcall" in allow and not (
        "sockets" in allow or {"AF_ALG", "AF_VSOCK", "sock_diag"} <= allow)
    for _ in range(150):
        arch = data.draw(st.sampled_from([AUDIT_ARCH_X86_64, AUDIT_ARCH_I386]))
        nr = data.draw(_numbers(arch))
        args = tuple(data.draw(_ARG) for _ in range(6))
        if arch == AUDIT_ARCH_I386:
            args = tuple(a & 0xFFFFFFFF for a in args)    # a 32-bit task's registers
            if nr == 102 and lone_socketcall:
                continue   # libseccomp ties socketcall to the socket rules; we do not
        want = run_bpf(refs[arch], arch, nr, args)
        got = run_bpf(ours, arch, nr, args)
        assert got == want, (hex(arch), nr, [hex(a) for a in args], hex(got), hex(want))


@X86_64_ONLY
@given(allow=_ALLOW_SETS, arch=st.integers(0, 2**32 - 1), nr=st.integers(0, 2**32 - 1))
def test_other_architectures_get_enosys(allow: frozenset[str], arch: int, nr: int) -> None:
    ours = decode(program("x86_64", allow))
    if arch not in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386):
        assert run_bpf(ours, arch, nr) == enosys()
    ref = libseccomp_program(AUDIT_ARCH_X86_64, frozenset(ALLOWABLE))
    if arch != AUDIT_ARCH_X86_64:
        assert run_bpf(ref, arch, nr) == enosys()     # libseccomp's bad-arch action


@X86_64_ONLY
@given(allow=_ALLOW_SETS, nr=st.integers(0x40000000, 0xFFFFFFFE))
def test_x32_calls_get_enosys_whatever_is_allowed(allow: frozenset[str], nr: int) -> None:
    """x32 numbers carry bit 30 under the x86_64 ABI: never filtered as x86_64 calls
    (libseccomp agrees; 0xffffffff, the "no call" of tracers, the kernel refuses itself)."""
    ours = decode(program("x86_64", allow | {"newer"}))
    assert run_bpf(ours, AUDIT_ARCH_X86_64, nr) == enosys()
    ref = libseccomp_program(AUDIT_ARCH_X86_64, frozenset(ALLOWABLE))
    assert run_bpf(ref, AUDIT_ARCH_X86_64, nr) == enosys()


@X86_64_ONLY
@given(allow=_ALLOW_SETS, value=st.one_of(st.integers(0, 2**64 - 1),
                                          st.sampled_from(syscalls.PERSONALITY_ALLOWED)),
       high=st.integers(0, 2**32 - 1))
def test_personality_rule(allow: frozenset[str], value: int, high: int) -> None:
    ours = decode(program("x86_64", allow))
    for arch, nr in ((AUDIT_ARCH_X86_64, 135), (AUDIT_ARCH_I386, 136)):
        arg = value if arch == AUDIT_ARCH_X86_64 else value & 0xFFFFFFFF
        if arch == AUDIT_ARCH_X86_64:
            arg = (high << 32) | (arg & 0xFFFFFFFF)     # high bits never hide a value
        denied = "personality" not in allow and \
            (arg & 0xFFFFFFFF) not in syscalls.PERSONALITY_ALLOWED
        assert run_bpf(ours, arch, nr, (arg,)) == (eperm() if denied else ALLOW)


_SOCKET_ARG = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 10, 15, 16, 17, 38, 40]),
                       st.integers(0, 2**32 - 1))


@X86_64_ONLY
@given(allow=_ALLOW_SETS, family=_SOCKET_ARG, stype=_SOCKET_ARG, protocol=_SOCKET_ARG,
       high=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))
def test_sock_diag_rule_is_a_conjunction(allow: frozenset[str], family: int, stype: int,
                                         protocol: int, high: tuple[int, int]) -> None:
    """socket(AF_NETLINK, *, NETLINK_SOCK_DIAG) is denied whatever the type and the high
    bits; AF_NETLINK with another protocol (NETLINK_ROUTE: getaddrinfo, getifaddrs) and
    protocol 4 of another family are allowed (AF_ALG and AF_VSOCK keep their rules)."""
    ours = decode(program("x86_64", allow))
    rule_on = "sock_diag" not in allow and "sockets" not in allow
    for arch, nr in ((AUDIT_ARCH_X86_64, 41), (AUDIT_ARCH_I386, 359)):
        args = (family, stype, protocol)
        if arch == AUDIT_ARCH_X86_64:
            args = ((high[0] << 32) | family, stype, (high[1] << 32) | protocol)
        if family in (syscalls.AF_ALG, syscalls.AF_VSOCK):
            continue
        denied = rule_on and family == 16 and protocol == 4
        assert run_bpf(ours, arch, nr, args) == (eperm() if denied else ALLOW), \
            (hex(arch), family, stype, protocol)


def test_conjunction_builder_skips_to_the_next_rule() -> None:
    """Two ANDed conditions, then a further rule on the same call: a first condition
    that fails must skip the second test and the return, landing on the next rule."""
    rules = [("a", "g", "socket", errno.EPERM, ("all", ("eq", 0, 16), ("eq", 2, 4))),
             ("b", "g", "socket", errno.ENOSYS, ("not_in", 1, (1, 2))),
             ("c", "g", "socket", errno.EPERM, ("all", ("any", 0, 0x100),
                                                ("not_in", 2, (7,)), ("eq", 1, 2)))]
    prog = syscalls._arch_block(AUDIT_ARCH_X86_64, 0, rules, newer=False)
    cases = {(16, 1, 4): eperm(), (16, 1, 5): ALLOW, (17, 1, 4): ALLOW,
             (16, 3, 5): enosys(), (17, 3, 4): enosys(), (0x100, 2, 8): eperm(),
             (0x101, 2, 8): eperm(), (0x100, 2, 7): ALLOW, (0x100, 1, 8): ALLOW,
             (0, 2, 8): ALLOW, (0x100, 3, 8): enosys()}
    for args, want in cases.items():
        got = run_bpf(prog, AUDIT_ARCH_X86_64, 41, args)
        assert got == want, (args, hex(got), hex(want))


@X86_64_ONLY
@settings(suppress_health_check=[HealthCheck.large_base_example, HealthCheck.data_too_large])
@given(allow=_ALLOW_SETS, data=st.data())
def test_newer_numbers_get_enosys(allow: frozenset[str], data: st.DataObject) -> None:
    """`newer`: a number libseccomp has no name for gets ENOSYS, any other answers as it
    would with `newer` re-allowed."""
    with_newer = decode(program("x86_64", allow - {"newer"}))
    without = decode(program("x86_64", allow | {"newer"}))
    for _ in range(100):
        arch = data.draw(st.sampled_from([AUDIT_ARCH_X86_64, AUDIT_ARCH_I386]))
        nr = data.draw(st.one_of(st.integers(0, 0x3FFFFFFF), st.integers(300, 600)))
        args = tuple(data.draw(_ARG) & 0xFFFFFFFF for _ in range(6))
        try:
            seccomp.resolve_syscall(ARCHES[arch], nr)
            named = nr < 512
        except Exception:
            named = False
        want = run_bpf(without, arch, nr, args) if named else enosys()
        assert run_bpf(with_newer, arch, nr, args) == want, (hex(arch), nr)


def _steps(prog: list[tuple[int, int, int, int]], arch: int, nr: int) -> int:
    """Instructions the filter runs for call `nr` before it returns or reads an argument
    (what the kernel's emulation at load time, and every call it cannot cache, pays)."""
    acc, pc, steps = 0, 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        steps += 1
        if code == 0x06 or (code == 0x20 and k >= 16):
            return steps
        if code == 0x20:
            acc = arch if k == 4 else nr
        elif code == 0x05:
            pc += k
        else:
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        pc += 1


@X86_64_ONLY
def test_program_fits_and_every_call_meets_few_tests() -> None:
    """A search, not a list: each call number meets about log2(runs) tests (a list of one
    test per rule cost every login's seccomp() ~0.1 ms more, bench/bench_seccomp.py)."""
    prog = build("x86_64")
    assert len(prog) < 1024
    for arch in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386):
        worst = max(_steps(prog, arch, nr) for nr in range(1024))
        assert worst <= 16, (hex(arch), worst)
    empty = build("x86_64", frozenset(ALLOWABLE))
    # everything re-allowed: only the ABI checks are left
    assert [i for i in empty if i[0] == 0x06] == [
        (0x06, 0, 0, enosys()), (0x06, 0, 0, enosys()), (0x06, 0, 0, ALLOW),
        (0x06, 0, 0, ALLOW)]


@X86_64_ONLY
@settings(max_examples=30, deadline=None)
@given(allow=_ALLOW_SETS)
def test_every_number_answers_as_libseccomp(allow: frozenset[str]) -> None:
    """Every call number below 1024 of both ABIs, arguments zero and one set of
    arguments the rules test (TIOCSTI, AF_ALG, CLONE_NEWUSER): the same answer as
    libseccomp's program (`personality` and `newer` left out as above)."""
    allow = allow | {"personality", "newer"}
    ours = decode(program("x86_64", allow))
    lone_socketcall = "socketcall" in allow and not (
        "sockets" in allow or {"AF_ALG", "AF_VSOCK", "sock_diag"} <= allow)
    for arch in ARCHES:
        ref = libseccomp_program(arch, allow)
        for nr in range(1024):
            if arch == AUDIT_ARCH_I386 and nr == 102 and lone_socketcall:
                continue
            for args in ((0, 0, 0, 0, 0, 0), (38, 0x5412, 4, 0, 0, 0),
                         (0x10000000, 0x541C, 0, 0, 0, 0)):
                assert run_bpf(ours, arch, nr, args) == run_bpf(ref, arch, nr, args), \
                    (hex(arch), nr, args)


# ------------------------------------------------------------------------ the kernel

KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_USER_KEYRING = -4
CASES: dict[str, tuple[int, tuple[int, ...]]] = {
    # name: (x86_64 number, arguments the kernel alone refuses otherwise, or accepts)
    "keyctl": (250, (KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 1)),
    "unshare-bad-flag": (272, (0x10000000 | 0x1,)),                 # kernel: EINVAL
    "clone-newuser-thread": (56, (0x10000000 | 0x00010000, 0, 0, 0, 0)),  # EINVAL
    "clone-newuser-high-bits": (56, (0x1_0000_0000 | 0x10000000 | 0x00010000, 0, 0, 0, 0)),
    "clone3": (435, (0, 0)),                                         # kernel: EINVAL
    "ioctl-TIOCSTI": (16, (-1, 0x5412, 0)),                          # kernel: EBADF
    "ioctl-TIOCSTI-high-bits": (16, (-1, 0x1_0000_5412, 0)),
    "ioctl-TIOCLINUX": (16, (-1, 0x541C, 0)),
    "ioctl-TCGETS": (16, (-1, 0x5401, 0)),                           # allowed: EBADF
    "socket-AF_ALG-high-bits": (41, (0x1_0000_0000 | 38, 5, 0)),     # kernel: creates
    # NETLINK_SOCK_DIAG (SOCK_RAW): denied, high bits or not; NETLINK_ROUTE: allowed
    "socket-sock_diag": (41, (16, 3, 4)),                            # kernel: creates
    "socket-sock_diag-high-bits": (41, (0x1_0000_0000 | 16, 3, 0x1_0000_0000 | 4)),
    "socket-netlink-route": (41, (16, 3, 0)),                        # allowed: creates
    "bpf": (321, (0xFFFF, 0, 0)),                                    # kernel: EINVAL
    "io_uring_setup": (425, (0, 0)),                                 # kernel: EINVAL
    "perf_event_open": (298, (0, 0, -1, -1, 0)),                     # kernel: EFAULT
    "userfaultfd": (323, (0xFFFF,)),                                 # kernel: EINVAL
    "personality-ADDR_NO_RANDOMIZE": (135, (0x0040000,)),
    "personality-query": (135, (0xFFFFFFFF,)),
    "setns": (308, (-1, 0)),                                         # kernel: EBADF
    "process_vm_readv": (310, (0, 0, 0, 0, 0, 0)),
    # `newer`: calls of this kernel (6.x) after the profile's table; 467 is part of the
    # mount API the `mount` group denies, reached under a number it does not list
    "open_tree_attr": (467, (-1, 0, 0, 0, 0)),                       # kernel: EBADF
    "mseal": (462, (0, 0, 0)),
    "getppid": (110, ()),
}


def _in_filtered_child(allow: tuple[str, ...] | None,
                       prog: bytes | None = None) -> dict[str, list[int]]:
    """Fork; the child sets no_new_privs, loads the filter with the login paths' own
    step (confine.load_syscall_filter: `prog` when given, else the profile less `allow`;
    none when `allow` is None) and makes each CASES call; (result, errno)."""
    from pam_jail.login import confine

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            confine.set_no_new_privs()
            if allow is not None:
                confine.load_syscall_filter(allow, prog)
            out = {}
            for name, (nr, args) in CASES.items():
                ctypes.set_errno(0)
                rc = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
                out[name] = [rc, ctypes.get_errno() if rc == -1 else 0]
                if name.startswith(("socket", "userfaultfd", "io_uring")) and rc >= 0:
                    os.close(rc)
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        except BaseException as err:  # noqa: BLE001 - report it to the parent
            os.write(w, json.dumps({"error": [repr(err)]}).encode())
            os._exit(1)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    result: dict[str, list[int]] = json.loads(b"".join(chunks))
    assert "error" not in result, result
    return result


@X86_64_ONLY
def test_kernel_applies_the_filter() -> None:
    bare = _in_filtered_child(None)
    filtered = _in_filtered_child(())
    eperm_cases = [n for n in CASES if n not in ("clone3", "ioctl-TCGETS", "getppid",
                                                 "personality-query", "open_tree_attr",
                                                 "mseal", "socket-netlink-route")]
    for name in eperm_cases:
        assert filtered[name] == [-1, errno.EPERM], (name, filtered[name])
        assert bare[name] != [-1, errno.EPERM], (name, "the kernel alone says EPERM: "
                                                 "this case cannot tell the filter")
    assert filtered["clone3"] == [-1, errno.ENOSYS] and bare["clone3"][1] != errno.ENOSYS
    for name in ("open_tree_attr", "mseal"):
        assert filtered[name] == [-1, errno.ENOSYS], (name, filtered[name])
        assert bare[name] != [-1, errno.ENOSYS], (name, "not on this kernel: cannot tell")
    assert filtered["ioctl-TCGETS"] == bare["ioctl-TCGETS"] == [-1, errno.EBADF]
    assert filtered["getppid"][0] > 0 and filtered["personality-query"][0] >= 0
    assert filtered["socket-netlink-route"][0] >= 0 and bare["socket-netlink-route"][0] >= 0


@X86_64_ONLY
def test_kernel_seccomp_allow_re_allows_only_what_it_names() -> None:
    filtered = _in_filtered_child(("keyring", "TIOCSTI", "bpf"))
    assert filtered["keyctl"][0] > 0                        # the user keyring's id
    assert filtered["ioctl-TIOCSTI"] == [-1, errno.EBADF]   # reached the kernel
    assert filtered["ioctl-TIOCLINUX"] == [-1, errno.EPERM]
    assert filtered["bpf"][1] not in (0, errno.EPERM)
    assert filtered["unshare-bad-flag"] == [-1, errno.EPERM]


@X86_64_ONLY
def test_a_precomputed_program_is_the_one_loaded() -> None:
    """load_syscall_filter(allow, prog) loads `prog` itself (jails.ini's index holds the
    program: config_index.config_for), not a program it builds: here a program that
    denies getppid alone, which the profile never denies."""

    def insn(code: int, jt: int, jf: int, k: int) -> bytes:
        return code.to_bytes(2, "little") + bytes((jt, jf)) + k.to_bytes(4, "little")

    getppid = CASES["getppid"][0]
    prog = (insn(0x20, 0, 0, 0)                                  # A = nr
            + insn(0x15, 0, 1, getppid)                          # nr == getppid?
            + insn(0x06, 0, 0, 0x00050000 | errno.EPERM)         # ERRNO(EPERM)
            + insn(0x06, 0, 0, 0x7FFF0000))                      # ALLOW
    got = _in_filtered_child((), prog)["getppid"]
    assert got == [-1, errno.EPERM], got
    assert _in_filtered_child(())["getppid"][0] > 0      # the profile allows it
