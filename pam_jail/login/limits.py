"""Resource limits of a jail: what jails.ini asks for, and where each one goes. Pure.

    max_procs = 512        tasks of one user in one jail, all sessions together
    memory = 1G            memory of those tasks (K, M, G, T suffixes; empty: no limit)
    cpu = 100              percent of one CPU for those tasks (0: no limit)
    max_file_size = 10G    the largest file one process may write (RLIMIT_FSIZE)

Where they go (confine.apply_limits does the writes, in this order):
  * a cgroup per user and jail, `pam_jail/JAIL/USER`, made and joined by root: by the PAM
    module inside sshd (every mode; sshd's session process joins before it forks the
    user's session, so everything of that login is counted). Each controller where the
    host has it: cgroup v2 (the unified hierarchy, when the controller is enabled there),
    else the v1 hierarchy mounted for that controller (this Debian host without systemd:
    pids, memory and cpu are v1, /sys/fs/cgroup/unified has none of them).
  * rlimits, which need no privilege, in every mode: RLIMIT_NPROC = max_procs (counted
    per uid over the whole host, a floor when no cgroup is there: pam-jail-shell without
    the PAM lines) and RLIMIT_FSIZE = max_file_size.
memory and cpu, which jails.ini sets only on purpose, need a cgroup controller: where none
can carry them the login is refused. max_procs always has RLIMIT_NPROC under it; a
missing pids controller is logged.
"""

from __future__ import annotations

DEFAULT_MAX_PROCS = 512
CGROUP_ROOT = "/sys/fs/cgroup"
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def cgroup_name(jail: str) -> str:
    """A jail name as one cgroup directory name (jailkit marker jails are named
    `marker:/srv/j`)."""
    return jail.replace("/", "_").replace(":", "_").lstrip(".") or "_"


def parse_size(text: str) -> int | None:
    """'512M' -> bytes; '' -> None (no limit). Raises ValueError on anything else."""
    text = text.strip().upper().removesuffix("B")
    if not text:
        return None
    unit = text[-1] if text[-1] in _SUFFIX else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit() or int(number) == 0:
        raise ValueError(f"{text!r} is not a size (a positive number with K, M, G or T)")
    return int(number) * _SUFFIX[unit]


class Limits:
    """The limits of one jail (from its options, validated by config)."""

    __slots__ = ("procs", "memory", "cpu", "fsize")

    def __init__(self, procs: int = DEFAULT_MAX_PROCS, memory: int | None = None,
                 cpu: int = 0, fsize: int | None = None) -> None:
        self.procs = procs
        self.memory = memory          # set only when jails.ini asks: then it must apply
        self.cpu = cpu                # likewise
        self.fsize = fsize

    def __repr__(self) -> str:
        return (f"Limits(procs={self.procs}, memory={self.memory}, cpu={self.cpu}, "
                f"fsize={self.fsize})")


def limits_of(options: dict[str, str]) -> Limits:
    """A jail's options (strings, as JailDef keeps them) -> Limits. Raises ValueError."""
    return Limits(procs=int(options.get("max_procs", DEFAULT_MAX_PROCS)),
                  memory=parse_size(options.get("memory", "")),
                  cpu=int(options.get("cpu", "0") or 0),
                  fsize=parse_size(options.get("max_file_size", "")))


def controllers(mountinfo: str, unified_controllers: str) -> dict[str, tuple[str, str]]:
    """Where each controller lives: name -> ("v1"|"v2", mount point). `mountinfo` is
    /proc/self/mountinfo; `unified_controllers` the v2 root's cgroup.controllers ("" if
    no v2 mount). A controller enabled in v2 is used there; else its v1 hierarchy."""
    out: dict[str, tuple[str, str]] = {}
    v2 = ""
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or fields[3] != "/":
            continue
        if rfields[0] == "cgroup2" and not v2:
            v2 = fields[4]
        elif rfields[0] == "cgroup":
            for option in rfields[2].split(","):
                if option in ("pids", "memory", "cpu") and option not in out:
                    out[option] = ("v1", fields[4])
    if v2:
        for name in unified_controllers.split():
            if name in ("pids", "memory", "cpu"):
                out[name] = ("v2", v2)
    return out


def v2_mount(mountinfo: str) -> str:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] == ["cgroup2"] and len(fields) > 4 and fields[3] == "/":
            return fields[4]
    return ""


def cgroup_writes(limits: Limits, where: dict[str, tuple[str, str]], jail: str,
                  user: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(directory, file, value) writes that set the limits in the user's cgroup of the
    jail, in order (a limit not asked for is written as "none", so a changed jails.ini
    takes effect), and the jails.ini keys asked for that no controller can carry."""
    writes: list[tuple[str, str, str]] = []
    missing: list[str] = []
    rel = f"pam_jail/{cgroup_name(jail)}/{user}"
    wanted = (("pids", "max_procs", limits.procs), ("memory", "memory", limits.memory),
              ("cpu", "cpu", limits.cpu or None))
    for controller, key, value in wanted:
        if controller not in where:
            if value is not None:
                missing.append(key)
            continue
        version, mount = where[controller]
        directory = f"{mount}/{rel}"
        if controller == "cpu" and version == "v1":
            writes.append((directory, "cpu.cfs_period_us", "100000"))
        if version == "v2":
            name = {"pids": "pids.max", "memory": "memory.max", "cpu": "cpu.max"}[controller]
            text = "max" if value is None else str(value)
            if controller == "cpu":
                text = "max 100000" if value is None else f"{value * 1000} 100000"
        else:
            name = {"pids": "pids.max", "memory": "memory.limit_in_bytes",
                    "cpu": "cpu.cfs_quota_us"}[controller]
            text = "-1" if value is None else str(value * 1000 if controller == "cpu"
                                                   else value)
            if controller == "pids" and value is None:
                text = "max"
        writes.append((directory, name, text))
    return writes, missing


def in_cgroup(proc_self_cgroup: str, jail: str, user: str) -> set[str]:
    """The controllers (v1 names, or "v2") under which /proc/self/cgroup puts this process
    in pam_jail/JAIL/USER."""
    want = f"/pam_jail/{cgroup_name(jail)}/{user}"
    found: set[str] = set()
    for line in proc_self_cgroup.splitlines():
        _hier, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if path == want or path.endswith(want):
            found.update(names.split(",") if names else ["v2"])
    return found


def cgroups_missing(limits: Limits, joined: set[str]) -> list[str]:
    """The limits among memory and cpu that are set but whose controller does not hold
    this process (`joined`: what in_cgroup found). Pure."""
    missing = []
    if limits.memory is not None and not {"memory", "v2"} & joined:
        missing.append("memory")
    if limits.cpu and not {"cpu", "v2"} & joined:
        missing.append("cpu")
    return missing


def pam_limits_conf(cfg_users: dict[str, str], cfg_groups: dict[str, str],
                    procs_of: dict[str, int]) -> str:
    """/etc/security/limits.d/pam_jail.conf: `nproc` for every mapped user and group (for
    hosts where pam_jail's PAM module does not run: pam_limits applies it)."""
    lines = ["# pam_jail: nproc of the jailed users and groups (pam-jail limits-conf).",
             "# Generated from jails.ini; regenerate after changing it."]
    for user, jail in sorted(cfg_users.items()):
        lines.append(f"{user:<24} hard nproc {procs_of[jail]}")
    for group, jail in sorted(cfg_groups.items()):
        lines.append(f"@{group:<23} hard nproc {procs_of[jail]}")
    return "\n".join(lines) + "\n"
