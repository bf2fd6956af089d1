"""The seccomp profile of every jailed session: which kernel interfaces a jailed user is
denied, as data, and the pure builder that turns it into a classic BPF program.

Loading the program is one step of pam_jail/login/confine.py (load_syscall_filter); this
module makes no system call. The profile is a deny list: everything not named here is
allowed, so the programs a jail holds run unchanged. Denied calls return an error (EPERM;
ENOSYS where the C library falls back to an older call, or where the kernel itself
would say so), they never kill: a program sees "Operation not permitted" and can say so.

What is denied, in groups (GROUPS; `seccomp_allow` in jails.ini re-allows a group or a
single rule by name, `seccomp = no` turns the filter off for a jail):

  keyring      keyctl, add_key, request_key: the uid's user keyring is shared with every
               host process of that uid (the escape of issue 11)
  ptrace       ptrace, process_vm_readv/writev, process_madvise, kcmp, pidfd_getfd
  bpf, perf, userfaultfd, io_uring    large kernel attack surface, no use in a jail
  kexec, modules                      kernel loading (root-only anyway)
  namespaces   unshare, setns, clone with any CLONE_NEW* flag; clone3 -> ENOSYS (its
               flags sit in memory a filter cannot read; libc falls back to clone)
  tty          ioctl TIOCSTI (type into the session's terminal) and TIOCLINUX
  mount        mount, umount, umount2, pivot_root, chroot and the new mount API
  handles      open_by_handle_at, name_to_handle_at
  sockets      socket(AF_ALG), socket(AF_VSOCK), socket(AF_NETLINK, *, NETLINK_SOCK_DIAG)
               (with `network = yes` it lists the host's sockets, every other session's
               too; NETLINK_ROUTE stays: getaddrinfo and getifaddrs need it); on i386
               socketcall(SYS_SOCKET), whose address family sits in memory a filter
               cannot read
  personality  personality() other than PER_LINUX, PER_LINUX32, UNAME26 and the query
  numa         NUMA memory policy calls
  admin        clock, swap, reboot, hostname, quota, syslog, raw I/O, accounting ...
  legacy       obsolete or removed calls, modify_ldt, vm86 -> ENOSYS
  newer        every number this profile has no name for (calls added to the kernel
               after it was written) -> ENOSYS: a new interface is denied until it has
               been looked at

Not configurable: the x32 ABI (x86_64 numbers with bit 30 set) and any architecture but
x86_64 and its i386 compat mode get ENOSYS for every call; i386 calls (int 0x80) are
filtered by the same rules under their own numbers, so a 32-bit call is no way around.

Arguments are compared on their low 32 bits only: the kernel reads ioctl's command,
clone's flags, socket's family and personality's value as 32-bit ints, so high bits
must not hide a value from the filter (CVE-2019-10063 in flatpak was exactly that).

Lean on purpose (the login path imports it): no `re`, `typing`, `struct`.
"""

from __future__ import annotations

import errno as _errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    # a condition: () always; ("eq", ARG, VALUE) low 32 bits equal; ("any", ARG, MASK)
    # any bit of MASK set; ("not_in", ARG, (V, ...)) low 32 bits none of the values;
    # ("all", COND, COND, ...) every one of the conditions holds
    Cond = tuple[object, ...]
    Rule = tuple[str, str, str, int, Cond]

EPERM = _errno.EPERM
ENOSYS = _errno.ENOSYS

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

# seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64 each)
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

# classic BPF opcodes (linux/filter.h, linux/bpf_common.h)
LD_W_ABS = 0x20
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
JMP_JSET_K = 0x45
RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

CLONE_NEW_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                   | 0x20000000 | 0x40000000)   # NS CGROUP UTS IPC USER PID NET
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_ALG = 38
AF_VSOCK = 40
AF_NETLINK = 16
NETLINK_SOCK_DIAG = 4
SYS_SOCKET = 1   # socketcall's call number for socket()
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # PER_LINUX, PER_LINUX32,
#                                        UNAME26, both, and 0xffffffff: read, change nothing

# name -> (x86_64 number, i386 number); None: no such call on that ABI. Read from the
# kernel's syscall tables; tests/test_syscalls.py checks every one against libseccomp.
NUMBERS: dict[str, tuple[int | None, int | None]] = {
    "keyctl": (250, 288), "add_key": (248, 286), "request_key": (249, 287),
    "ptrace": (101, 26), "process_vm_readv": (310, 347), "process_vm_writev": (311, 348),
    "process_madvise": (440, 440), "kcmp": (312, 349), "pidfd_getfd": (438, 438),
    "bpf": (321, 357), "perf_event_open": (298, 336), "userfaultfd": (323, 374),
    "kexec_load": (246, 283), "kexec_file_load": (320, None),
    "init_module": (175, 128), "finit_module": (313, 350), "delete_module": (176, 129),
    "unshare": (272, 310), "setns": (308, 346), "clone": (56, 120), "clone3": (435, 435),
    "ioctl": (16, 54),
    "mount": (165, 21), "umount": (None, 22), "umount2": (166, 52),
    "pivot_root": (155, 217), "chroot": (161, 61), "move_mount": (429, 429),
    "open_tree": (428, 428), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "open_by_handle_at": (304, 342), "name_to_handle_at": (303, 341),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "socket": (41, 359), "socketcall": (None, 102), "personality": (135, 136),
    "mbind": (237, 274), "set_mempolicy": (238, 276), "get_mempolicy": (239, 275),
    "migrate_pages": (256, 294), "move_pages": (279, 317),
    "set_mempolicy_home_node": (450, 450),
    "acct": (163, 51), "swapon": (167, 87), "swapoff": (168, 115), "reboot": (169, 88),
    "sethostname": (170, 74), "setdomainname": (171, 121), "settimeofday": (164, 79),
    "clock_settime": (227, 264), "clock_settime64": (None, 404), "stime": (None, 25),
    "syslog": (103, 103), "quotactl": (179, 131), "quotactl_fd": (443, 443),
    "iopl": (172, 110), "ioperm": (173, 101), "vhangup": (153, 111),
    "lookup_dcookie": (212, 253), "fanotify_init": (300, 338),
    "uselib": (134, 86), "ustat": (136, 62), "sysfs": (139, 135), "_sysctl": (156, 149),
    "create_module": (174, 127), "get_kernel_syms": (177, 130),
    "query_module": (178, 167), "nfsservctl": (180, 169), "getpmsg": (181, 188),
    "putpmsg": (182, 189), "afs_syscall": (183, 137), "tuxcall": (184, None),
    "security": (185, None), "vserver": (236, 273), "vm86": (None, 166),
    "vm86old": (None, 113), "modify_ldt": (154, 123),
}

# The numbers each ABI has a name for (inclusive ranges): every other number is `newer`.
# x86_64 335-423 are unassigned in this table (and 512-547 belong to x32 only).
KNOWN: dict[int, tuple[tuple[int, int], ...]] = {
    AUDIT_ARCH_X86_64: ((0, 334), (424, 456)),
    AUDIT_ARCH_I386: ((0, 221), (224, 250), (252, 284), (286, 386), (393, 414), (416, 456)),
}

_ALWAYS: tuple[object, ...] = ()


def _calls(group: str, err: int, names: str) -> tuple[Rule, ...]:
    return tuple((name, group, name, err, _ALWAYS) for name in names.split())


# (rule name, group, system call, errno, condition); a rule name or a group name in
# `seccomp_allow` leaves the rule out.
RULES: tuple[Rule, ...] = (
    *_calls("keyring", EPERM, "keyctl add_key request_key"),
    *_calls("ptrace", EPERM, "ptrace process_vm_readv process_vm_writev process_madvise "
                             "kcmp pidfd_getfd"),
    *_calls("bpf", EPERM, "bpf"),
    *_calls("perf", EPERM, "perf_event_open"),
    *_calls("userfaultfd", EPERM, "userfaultfd"),
    *_calls("kexec", EPERM, "kexec_load kexec_file_load"),
    *_calls("modules", EPERM, "init_module finit_module delete_module"),
    *_calls("namespaces", EPERM, "unshare setns"),
    ("clone", "namespaces", "clone", EPERM, ("any", 0, CLONE_NEW_FLAGS)),
    ("clone3", "namespaces", "clone3", ENOSYS, _ALWAYS),
    ("TIOCSTI", "tty", "ioctl", EPERM, ("eq", 1, TIOCSTI)),
    ("TIOCLINUX", "tty", "ioctl", EPERM, ("eq", 1, TIOCLINUX)),
    *_calls("mount", EPERM, "mount umount umount2 pivot_root chroot move_mount open_tree "
                            "fsopen fsconfig fsmount fspick mount_setattr"),
    *_calls("handles", EPERM, "open_by_handle_at name_to_handle_at"),
    *_calls("io_uring", EPERM, "io_uring_setup io_uring_enter io_uring_register"),
    ("AF_ALG", "sockets", "socket", EPERM, ("eq", 0, AF_ALG)),
    ("AF_VSOCK", "sockets", "socket", EPERM, ("eq", 0, AF_VSOCK)),
    ("sock_diag", "sockets", "socket", EPERM,
     ("all", ("eq", 0, AF_NETLINK), ("eq", 2, NETLINK_SOCK_DIAG))),
    ("socketcall", "sockets", "socketcall", EPERM, ("eq", 0, SYS_SOCKET)),
    ("personality", "personality", "personality", EPERM,
     ("not_in", 0, PERSONALITY_ALLOWED)),
    *_calls("numa", EPERM, "mbind set_mempolicy get_mempolicy migrate_pages move_pages "
                           "set_mempolicy_home_node"),
    *_calls("admin", EPERM, "acct swapon swapoff reboot sethostname setdomainname "
                            "settimeofday clock_settime clock_settime64 stime syslog "
                            "quotactl quotactl_fd iopl ioperm vhangup lookup_dcookie "
                            "fanotify_init"),
    *_calls("legacy", ENOSYS, "uselib ustat sysfs _sysctl create_module get_kernel_syms "
                              "query_module nfsservctl getpmsg putpmsg afs_syscall tuxcall "
                              "security vserver vm86 vm86old modify_ldt"),
)
NEWER = "newer"
GROUPS: tuple[str, ...] = (*dict.fromkeys(r[1] for r in RULES), NEWER)
# every name `seccomp_allow` accepts: the groups, and each rule by its own name
ALLOWABLE: frozenset[str] = frozenset(GROUPS) | frozenset(r[0] for r in RULES)

MACHINES = {"x86_64": (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386)}


def unknown_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names `seccomp_allow` does not know (config validation)."""
    return [n for n in names if n not in ALLOWABLE]


def from_options(options: dict[str, str]) -> tuple[str, ...] | None:
    """A jail's filter setting from its jails.ini options (config.seccomp_of)."""
    from pam_jail.login.config import seccomp_of

    return seccomp_of(options)


def active_rules(allow: frozenset[str] | set[str]) -> list[Rule]:
    return [r for r in RULES if r[0] not in allow and r[1] not in allow]


# ----------------------------------------------------------------------- the builder

def _insn(code: int, jt: int, jf: int, k: int) -> tuple[int, int, int, int]:
    if not (0 <= jt <= 255 and 0 <= jf <= 255 and 0 <= k <= 0xFFFFFFFF):
        raise ValueError(f"BPF instruction out of range: {code:#x} {jt} {jf} {k:#x}")
    return code, jt, jf, k


def _ret_errno(err: int) -> tuple[int, int, int, int]:
    return _insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | (err & 0xFFFF))


def _test(cond: tuple[object, ...], skip: int) -> list[tuple[int, int, int, int]]:
    """Instructions that fall through when the condition holds and jump `skip`
    instructions past their own end when it does not (they load the accumulator)."""
    kind = cond[0]
    if kind == "all":
        out: list[tuple[int, int, int, int]] = []
        for sub in reversed(cond[1:]):                  # built from the back: each test
            assert isinstance(sub, tuple)               # skips the ones after it too
            out = _test(sub, skip + len(out)) + out
        return out
    _kind, arg, value = cond
    assert isinstance(arg, int) and 0 <= arg < 6
    out = [_insn(LD_W_ABS, 0, 0, _OFF_ARGS + 8 * arg)]     # the low 32 bits (x86: LE)
    if kind == "eq":
        assert isinstance(value, int)
        out.append(_insn(JMP_JEQ_K, 0, skip, value))
    elif kind == "any":
        assert isinstance(value, int)
        out.append(_insn(JMP_JSET_K, 0, skip, value))
    elif kind == "not_in":
        assert isinstance(value, tuple)
        for i, v in enumerate(value):
            out.append(_insn(JMP_JEQ_K, len(value) - 1 - i + skip, 0, int(v)))
    else:
        raise ValueError(f"unknown condition {kind!r}")
    return out


def _arg_checks(cond: tuple[object, ...], err: int) -> list[tuple[int, int, int, int]]:
    """Instructions that return `err` when the condition holds and fall through when it
    does not (the caller's block ends with ALLOW)."""
    return [*_test(cond, 1), _ret_errno(err)]


def _actions(arch: int, index: int, rules: list[Rule], newer: bool,
             ) -> list[tuple[int, tuple[object, ...]]]:
    """The answer to every call number of one ABI, as runs (first number, action) that
    cover 0..2**32-1 in order: ("allow",), ("errno", ERR) or ("check", NR, RULES) for a
    call whose rules read its arguments. Under `newer` a number outside KNOWN gets ENOSYS
    whatever a rule says; else the first rule naming a number without an argument check
    wins over every other rule of that number."""
    plain: dict[int, int] = {}
    checked: dict[int, list[Rule]] = {}
    for rule in rules:
        nr = NUMBERS[rule[2]][index]
        if nr is None:
            continue
        if not rule[4]:
            plain.setdefault(nr, rule[3])
        else:
            checked.setdefault(nr, []).append(rule)
    known = KNOWN[arch] if newer else ((0, 0xFFFFFFFF),)
    points = {0}
    for first, last in known:
        points.update((first, last + 1))
    for nr in (*plain, *checked):
        points.update((nr, nr + 1))
    ranges = iter(known)
    first, last = next(ranges)
    runs: list[tuple[int, tuple[object, ...]]] = []
    for nr in sorted(p for p in points if p <= 0xFFFFFFFF):
        while nr > last:
            first, last = next(ranges, (0x100000000, 0x100000000))
        action: tuple[object, ...]
        if nr < first:
            action = ("errno", ENOSYS)                   # a number without a name
        elif nr in plain:
            action = ("errno", plain[nr])
        elif nr in checked:
            action = ("check", nr, tuple(checked[nr]))
        else:
            action = ("allow",)
        if not runs or action[0] == "check" or runs[-1][1] != action:
            runs.append((nr, action))
    return runs


def _leaf(action: tuple[object, ...]) -> list[tuple[int, int, int, int]]:
    if action[0] == "allow":
        return [_insn(RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    if action[0] == "errno":
        assert isinstance(action[1], int)
        return [_ret_errno(action[1])]
    rules = action[2]
    assert isinstance(rules, tuple)
    body = [i for r in rules for i in _arg_checks(r[4], r[3])]
    return [*body, _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW)]


def _tree(runs: list[tuple[int, tuple[object, ...]]]) -> list[tuple[int, int, int, int]]:
    """A balanced search over the runs on the call number in the accumulator: each
    number meets about log2(runs) comparisons, not one per rule. (The kernel emulates a
    new filter for every number to find the calls it always allows, and runs it on
    every other call: a linear list of rules made each login's seccomp() cost ~0.2 ms.)
    Classic BPF jumps forward only, at most 255 instructions on a condition: a longer
    right half is reached through an unconditional jump, whose offset is 32 bits."""
    if len(runs) == 1:
        return _leaf(runs[0][1])
    mid = len(runs) // 2
    right, left = _tree(runs[mid:]), _tree(runs[:mid])
    if len(right) <= 255:
        return [_insn(JMP_JGE_K, 0, len(right), runs[mid][0]), *right, *left]
    return [_insn(JMP_JGE_K, 1, 0, runs[mid][0]), _insn(JMP_JA, 0, 0, len(right)),
            *right, *left]


def _arch_block(arch: int, index: int, rules: list[Rule], newer: bool,
                ) -> list[tuple[int, int, int, int]]:
    """The checks for one ABI: the call number loaded, then the search (_tree) that
    ends in each number's answer; an argument check loads the accumulator only in the
    leaf of its call, which always returns."""
    out = [_insn(LD_W_ABS, 0, 0, _OFF_NR)]
    if arch == AUDIT_ARCH_X86_64:                      # x32 calls: not this ABI
        out += [_insn(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT), _ret_errno(ENOSYS)]
    return out + _tree(_actions(arch, index, rules, newer))


def build(machine: str, allow: frozenset[str] | set[str] | tuple[str, ...] = frozenset(),
          ) -> list[tuple[int, int, int, int]]:
    """The filter for `machine` (posix.uname().machine) as (code, jt, jf, k) instructions,
    with the rules and groups named in `allow` left out. ValueError: no table for this
    machine, or a name outside ALLOWABLE."""
    arches = MACHINES.get(machine)
    if arches is None:
        raise ValueError(f"no system call table for machine {machine!r} (known: "
                         f"{', '.join(MACHINES)}); set seccomp = no for this jail")
    allowed = frozenset(allow)
    unknown = unknown_names(sorted(allowed))
    if unknown:
        raise ValueError(f"unknown seccomp_allow name(s): {', '.join(unknown)}")
    rules = active_rules(allowed)
    newer = NEWER not in allowed
    blocks = [_arch_block(arch, i, rules, newer) for i, arch in enumerate(arches)]
    prog = [_insn(LD_W_ABS, 0, 0, _OFF_ARCH)]
    start = 2 * len(arches) + 2             # index of the first block: after the
    #                                         load, a jeq + ja per ABI, and the return
    for arch, block in zip(arches, blocks, strict=True):
        here = len(prog)                    # jeq at here, ja at here + 1
        prog += [_insn(JMP_JEQ_K, 0, 1, arch), _insn(JMP_JA, 0, 0, start - (here + 2))]
        start += len(block)
    prog.append(_ret_errno(ENOSYS))         # any other architecture
    for block in blocks:
        prog += block
    return prog


def program(machine: str, allow: frozenset[str] | set[str] | tuple[str, ...] = frozenset(),
            ) -> bytes:
    """build() as the bytes of a struct sock_filter array (what seccomp(2) loads)."""
    out = bytearray()
    for code, jt, jf, k in build(machine, allow):
        out += code.to_bytes(2, "little") + bytes((jt, jf)) + k.to_bytes(4, "little")
    return bytes(out)
