"""docker's run options beyond the basics (--read-only, --tmpfs, --mount, --cap-add, ...), each
checked once at its type and kept in the container's .nspawn file: a systemd.nspawn(5) key where
one exists (so ``machinectl start`` honours it), else a key of ``[X-Nspawnctl]``.

- --read-only: ``[Files] ReadOnly=``; --tmpfs, --mount type=tmpfs, --shm-size:
  ``[Files] TemporaryFileSystem=`` (mounted after nspawn's own /dev/shm, so it replaces it).
- --cap-add/--cap-drop/--privileged: ``[Exec] Capability=``/``DropCapability=``; nspawn applies
  the drops last, so ``--cap-drop ALL --cap-add X`` is written as every other capability dropped.
  --privileged also opens the unit's device policy (``DeviceAllow=char-* rwm``, ``block-*``) and
  makes /proc/sys and /sys writable with --userns host (``SYSTEMD_NSPAWN_API_VFS_WRITABLE=1``;
  nspawn refuses that in a user namespace); device nodes still
  come by --device (nspawn's /dev is its own) or mknod (with --userns host).
- --security-opt no-new-privileges: ``[Exec] NoNewPrivileges=``; seccomp=unconfined (and
  --privileged): ``Seccomp=unconfined``, systemd's ``SYSTEMD_SECCOMP=0`` in the unit's environment.
- --init: ``[Exec] ProcessTwo=`` (nspawn's stub init is PID 1, the payload PID 2).
- --ulimit: ``[Exec] LimitNOFILE=`` and friends; --cpuset-cpus: ``[Exec] CPUAffinity=``;
  --oom-score-adj: the unit's ``OOMScoreAdjust=`` (nspawn's key fails in a user namespace).
- --device: ``[Files] Bind=`` of the node plus the unit's ``DeviceAllow=`` (``Device=``).
- --add-host, --dns, --dns-search: written into the container's /etc/hosts and /etc/resolv.conf
  when it is made (``ResolvConf=off`` keeps nspawn's hands off it).
- --sysctl: ``Sysctl=``, net.* written in the container's own network namespace before nspawn
  starts, the IPC ones (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) in an IPC namespace
  the hook makes for nspawn to keep (run/ipcns.py).
- --stop-timeout: ``StopTimeout=``, what ``stop`` waits without -t.
- --cpu-shares: ``CPUShares=``, the unit's ``CPUWeight=``; --memory-swap: ``MemorySwap=``, the
  unit's ``MemorySwapMax=`` (cpumem.py); --isolation (only ``default``): ``Isolation=``;
  --volume-driver: ``VolumeDriver=`` (only ``local`` makes volumes);
  --mac-address: ``MacAddress=``, the address of the container's host0 when net/setup.py makes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cpumem import cpu_weight, parse_cpu_shares, parse_memory_swap, swap_max
from .errors import InvalidArgument
from .nspawnfile import OWN_SECTION, NspawnFile, parse_boolean
from .values import MAX_TIMEOUT, UINT64_MAX, BadValue, parse_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from .spec import Volume

# Linux capabilities by number (capability.h), CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40.
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# docker's --ulimit names -> nspawn's [Exec] keys
ULIMITS = {
    "as": "LimitAS",
    "core": "LimitCORE",
    "cpu": "LimitCPU",
    "data": "LimitDATA",
    "fsize": "LimitFSIZE",
    "locks": "LimitLOCKS",
    "memlock": "LimitMEMLOCK",
    "msgqueue": "LimitMSGQUEUE",
    "nice": "LimitNICE",
    "nofile": "LimitNOFILE",
    "nproc": "LimitNPROC",
    "rss": "LimitRSS",
    "rtprio": "LimitRTPRIO",
    "rttime": "LimitRTTIME",
    "sigpending": "LimitSIGPENDING",
    "stack": "LimitSTACK",
}
MAX_RLIMIT = (1 << 63) - 1  # beyond: RLIM_INFINITY's neighbourhood; say "unlimited" (-1) instead
MAX_CPU_INDEX = 8191  # systemd's CPU_SET of 8192 CPUs
MAX_SYSCTL_VALUE = 4096
MAX_NAMES = 256  # hosts, DNS servers, search domains, tmpfs, devices, sysctls: each at most
# The sysctls docker allows: the ones namespaced per container (net.* in the network namespace,
# the IPC ones in the IPC namespace).
SYSCTL_PREFIXES = ("net.", "kernel.shm", "kernel.msg", "fs.mqueue.")
SYSCTL_NAMES = ("kernel.sem",)
# a tmpfs size the kernel's memparse() reads as parse_bytes does (decimal, binary k/m/g suffix)
KERNEL_SIZE = re.compile(r"[1-9][0-9]{0,18}[kKmMgG]?")
TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev")
DEVICE_PERMS = re.compile(r"^(?!.*(.).*\1)[rwm]{1,3}$")  # r, w, m each at most once
DEFAULT_SHM_MODE = "1777"
_PATH_BAD = re.compile(r"[\x00-\x1f\x7f:,\\]")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)


def _bad(what: str, text: str, hint: str) -> InvalidArgument:
    return InvalidArgument(f"invalid {what} {text[:80]!r}", hint=hint)


def check_path(text: str, what: str) -> str:
    """An absolute path inside the container that goes into a .nspawn list value as it is: no ':'
    or ',' (nspawn's separators), backslash or control characters, no '..'."""
    if not text.startswith("/") or _PATH_BAD.search(text) or ".." in text.split("/") or len(text) > 4096:
        raise _bad(what, text, "an absolute path without ':', ',', '\\', '..' or control characters")
    return "/" + "/".join(p for p in text.split("/") if p and p != ".") if text != "/" else "/"


def _count(items: tuple[object, ...], what: str) -> None:
    if len(items) > MAX_NAMES:
        raise InvalidArgument(f"too many {what} (at most {MAX_NAMES})", hint="give fewer")


# -- tmpfs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs at ``path``; ``options`` as nspawn's TemporaryFileSystem= takes them (size in bytes)."""

    path: str
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Tmpfs:
        """docker's ``--tmpfs PATH[:OPTS]``, OPTS a comma list of size=SIZE, mode=OCTAL,
        nr_inodes=N and the mount flags ro, rw, exec, noexec, suid, nosuid, dev, nodev."""
        path, _, opts = text.partition(":")
        return cls.build(path, [o for o in opts.split(",") if o] if opts else [], f"--tmpfs {text}")

    @classmethod
    def build(cls, path: str, options: list[str], where: str) -> Tmpfs:
        out: list[str] = []
        for o in options:
            key, eq, value = o.partition("=")
            if not eq and key in TMPFS_FLAGS:
                out.append(key)
            elif key == "size" and eq:
                n = parse_bytes(value, "tmpfs size")
                # kept as given where the kernel reads it alike (docker shows it so: size=3M)
                out.append(f"size={value if KERNEL_SIZE.fullmatch(value) else n}")
            elif key == "mode" and eq:
                parse_mode(value)
                out.append(f"mode={value}")
            elif key in ("nr_inodes", "uid", "gid") and eq and re.fullmatch(r"[0-9]{1,10}", value):
                out.append(f"{key}={int(value)}")
            else:
                raise InvalidArgument(
                    f"invalid tmpfs option {o[:60]!r} in {where[:100]}",
                    hint="use size=SIZE, mode=OCTAL, nr_inodes=N, uid=N, gid=N, ro, rw, exec, noexec, "
                    "suid, nosuid, dev, nodev",
                )
        return cls(check_path(path, "tmpfs path"), tuple(out))

    @classmethod
    def from_value(cls, value: str) -> Tmpfs:
        """A ``TemporaryFileSystem=PATH[:OPTIONS]`` value."""
        path, _, opts = value.partition(":")
        return cls.build(path, [o for o in opts.split(",") if o], f"TemporaryFileSystem={value}")

    def value(self) -> str:
        return self.path + (":" + ",".join(self.options) if self.options else "")


def parse_mode(text: str) -> str:
    if not re.fullmatch(r"0?[0-7]{1,4}", text):
        raise _bad("mode", text, "an octal mode such as 1777 or 755")
    return f"{int(text, 8):o}"


def shm_tmpfs(size: int) -> Tmpfs:
    return Tmpfs("/dev/shm", (f"mode={DEFAULT_SHM_MODE}", f"size={size}"))


# -- capabilities ---------------------------------------------------------------------------------
def parse_capability(text: str, option: str) -> str:
    """``NET_ADMIN``, ``cap_net_admin`` or ``ALL``, as docker takes them; returns ``CAP_NET_ADMIN``
    or ``ALL``."""
    name = text.strip().upper()
    if name == "ALL":
        return "ALL"
    name = name if name.startswith("CAP_") else f"CAP_{name}"
    if name not in CAPABILITIES:
        raise InvalidArgument(
            f"unknown capability {text[:60]!r} for {option}",
            hint="a Linux capability name such as NET_ADMIN or SYS_TIME, or ALL",
        )
    return name


def capabilities(add: list[str], drop: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Capability=, DropCapability=) for docker's --cap-add/--cap-drop. nspawn drops last, so
    ``--cap-drop ALL --cap-add X`` drops every capability but X by name; ``--cap-add ALL`` is "all"."""
    plus = tuple(dict.fromkeys(parse_capability(c, "--cap-add") for c in add))
    minus = tuple(dict.fromkeys(parse_capability(c, "--cap-drop") for c in drop))
    if "ALL" in plus:
        plus = ("all",)
    if "ALL" in minus:
        minus = ("all",) if not plus else tuple(c for c in CAPABILITIES if c not in plus and plus != ("all",))
    minus = tuple(c for c in minus if c not in plus)
    return plus, minus


def _caps_from_file(value: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for v in value:
        for word in v.split():
            out.append("all" if word.lower() == "all" else parse_capability(word, "Capability="))
    return tuple(dict.fromkeys(out))


# -- ulimits --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ulimit:
    """``--ulimit NAME=SOFT[:HARD]``; None: unlimited (docker's -1)."""

    name: str
    soft: int | None
    hard: int | None

    @classmethod
    def parse(cls, text: str) -> Ulimit:
        name, eq, value = text.partition("=")
        name = name.strip().lower()
        if name not in ULIMITS or not eq:
            raise InvalidArgument(
                f"invalid --ulimit {text[:80]!r}",
                hint=f"NAME=SOFT[:HARD], NAME one of {', '.join(ULIMITS)}; -1 is unlimited",
            )
        soft_text, colon, hard_text = value.partition(":")
        soft = _rlimit(soft_text, text)
        hard = _rlimit(hard_text, text) if colon else soft
        if hard is not None and (soft is None or soft > hard):
            raise InvalidArgument(
                f"--ulimit {text[:80]}: the soft limit is above the hard limit",
                hint="use SOFT:HARD with SOFT <= HARD",
            )
        return cls(name, soft, hard)

    @classmethod
    def from_value(cls, key: str, value: str) -> Ulimit:
        name = next(n for n, k in ULIMITS.items() if k == key)
        return cls.parse(f"{name}={value.replace('infinity', '-1')}")

    def value(self) -> str:
        def show(n: int | None) -> str:
            return "infinity" if n is None else str(n)

        return show(self.soft) if self.soft == self.hard else f"{show(self.soft)}:{show(self.hard)}"

    def __str__(self) -> str:
        def show(n: int | None) -> str:
            return "-1" if n is None else str(n)

        return f"{self.name}={show(self.soft)}:{show(self.hard)}"


def _rlimit(text: str, whole: str) -> int | None:
    t = text.strip()
    if t in ("-1", "unlimited", "infinity"):
        return None
    if not re.fullmatch(r"[0-9]{1,19}", t) or int(t) > MAX_RLIMIT:
        raise BadValue(
            whole,
            "--ulimit",
            f"limits are whole numbers from 0 to {MAX_RLIMIT}, or -1 (unlimited)",
            hint="e.g. nofile=1024:2048",
        )
    return int(t)


# -- devices --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """``--device HOST[:CTR[:PERMS]]``: a host device node bound into the container, and allowed
    by the unit's device policy (DeviceAllow=)."""

    host: str
    container: str
    perms: str = "rwm"

    @classmethod
    def parse(cls, text: str) -> Device:
        parts = text.split(":")
        if len(parts) > 3 or not parts[0]:
            raise _bad("--device", text, "HOST[:CONTAINER[:PERMS]], PERMS of r, w, m")
        host = check_path(parts[0], "device path")
        if len(parts) == 2 and DEVICE_PERMS.match(parts[1]):
            ctr, perms = host, parts[1]
        else:
            ctr = check_path(parts[1], "device path") if len(parts) > 1 and parts[1] else host
            perms = parts[2] if len(parts) == 3 else "rwm"
        if not DEVICE_PERMS.match(perms):
            raise _bad("device permissions", perms, "a combination of r, w and m")
        if not host.startswith("/dev/") or not ctr.startswith("/dev/"):
            raise _bad("--device", text, "device nodes are under /dev on both sides")
        return cls(host, ctr, perms)

    def bind_value(self) -> str:
        return f"{self.host}:{self.container}"

    def __str__(self) -> str:
        return f"{self.host}:{self.container}:{self.perms}"


# -- network files --------------------------------------------------------------------------------
def parse_add_host(text: str) -> tuple[str, str]:
    """``HOST:IP`` (docker also takes ``HOST=IP``; an IPv6 address keeps its colons)."""
    import ipaddress

    sep = "=" if "=" in text else ":"
    host, _, ip = text.partition(sep)
    if not _HOSTNAME.match(host):
        raise _bad("--add-host", text, "HOST:IP, HOST a host name")
    try:
        addr = str(ipaddress.ip_address(ip.strip("[]")))
    except ValueError:
        raise _bad("--add-host", text, "HOST:IP with an IPv4 or IPv6 address") from None
    return host, addr


def parse_network_alias(text: str) -> str:
    """``--network-alias NAME``: a host name the container's zone members reach it by."""
    if not _HOSTNAME.match(text):
        raise _bad("--network-alias", text, "a host name (letters, digits, '-', '.')")
    return text


def parse_driver_opt(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of an endpoint's driver options (one line of a definition: no line feed)."""
    key, eq, value = text.partition("=")
    if not eq or not key or "\n" in text:
        raise _bad("NetworkDriverOpt", text, "KEY=VALUE")
    return key, value


def parse_dns(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _bad("--dns", text, "an IPv4 or IPv6 address") from None


def parse_dns_search(text: str) -> str:
    if text != "." and not _HOSTNAME.match(text):
        raise _bad("--dns-search", text, "a domain name such as example.com")
    return text


# -- sysctls, cpus, OOM ---------------------------------------------------------------------------
def parse_sysctl(text: str) -> tuple[str, str]:
    """``NAME=VALUE``, NAME one of the namespaced sysctls docker allows."""
    name, eq, value = text.partition("=")
    name = name.strip().replace("/", ".")
    if (
        not eq
        or not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_-]+)+", name)
        or not (name.startswith(SYSCTL_PREFIXES) or name in SYSCTL_NAMES)
    ):
        raise _bad(
            "--sysctl",
            text,
            "NAME=VALUE, NAME under net., kernel.shm, kernel.msg, fs.mqueue. or kernel.sem "
            "(the namespaced ones)",
        )
    if not value or len(value) > MAX_SYSCTL_VALUE or not value.isprintable():
        raise _bad("--sysctl value", value, f"1 to {MAX_SYSCTL_VALUE} printable characters")
    return name, value


def parse_cpuset(text: str) -> str:
    """``0-3,5``: CPU numbers and ranges, each below 8192; returned normalised."""
    out: list[str] = []
    for part in text.split(","):
        m = re.fullmatch(r"([0-9]{1,4})(?:-([0-9]{1,4}))?", part.strip())
        if not m:
            raise _bad("--cpuset-cpus", text, "CPU numbers and ranges, e.g. 0-2,4")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi > MAX_CPU_INDEX:
            raise _bad("--cpuset-cpus", text, f"ranges go upwards, CPUs are 0 to {MAX_CPU_INDEX}")
        out.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ",".join(out)


def parse_oom_score_adj(text: str) -> int:
    t = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,4}", t) or not -1000 <= int(t) <= 1000:
        raise BadValue(text, "--oom-score-adj", "a whole number from -1000 to 1000", hint="e.g. 500 or -100")
    return int(t)


def parse_isolation(text: str) -> str:
    """docker's --isolation: Linux has only ``default`` (process, hyperv are Windows')."""
    if text != "default":
        raise BadValue(
            text, "--isolation", "Linux containers have only 'default' isolation", hint="--isolation default"
        )
    return text


def parse_volume_driver(text: str) -> str:
    """docker's --volume-driver: a driver's name, kept; only ``local`` can make a volume (see
    :func:`check_volume_driver`: nspawnctl's volumes are directories of its store)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}", text):
        raise BadValue(
            text, "--volume-driver", "a volume driver's name is expected", hint="--volume-driver local"
        )
    return text


def check_volume_driver(s: RunSettings, makes_volumes: bool) -> None:
    """As dockerd: the driver is used only for the volumes the container makes, so any name is
    kept, but a container that makes a volume needs ``local``."""
    if makes_volumes and s.volume_driver not in (None, "local"):
        raise InvalidArgument(
            f"volume driver {s.volume_driver!r} is not available: nspawnctl's volumes are local",
            hint="--volume-driver local, or none",
        )


def parse_mac_address(text: str) -> str:
    """docker's --mac-address: six hex octets, a unicast address (the first octet even), not zero."""
    t = text.strip().lower().replace("-", ":")
    octets = t.split(":")
    if len(octets) != 6 or not all(re.fullmatch(r"[0-9a-f]{2}", o) for o in octets):
        raise BadValue(text, "--mac-address", "six hex octets are expected", hint="e.g. 92:d0:c6:0a:29:33")
    if int(octets[0], 16) & 1 or t == "00:00:00:00:00:00":
        raise BadValue(
            text,
            "--mac-address",
            "a unicast address is expected (the first octet even, not all zero)",
            hint="e.g. 02:42:ac:11:00:0a (02: locally administered)",
        )
    return t


def check_mac_network(s: RunSettings, network: str) -> None:
    """A MAC address is for the container's own link: nspawnctl makes one for veth and zone networks."""
    if s.mac_address is not None and not (network == "veth" or network.startswith("zone:")):
        raise InvalidArgument(
            f"--mac-address needs a network of the container's own (veth or a zone), not {network!r}",
            hint="drop --mac-address, or run with the default network",
        )


def parse_cgroupns(text: str) -> str:
    """docker's --cgroupns: nspawn always gives the container a cgroup namespace of its own."""
    if text != "private":
        raise BadValue(
            text,
            "--cgroupns",
            "nspawn always gives a container its own cgroup namespace",
            hint="--cgroupns private (the host's cgroup namespace cannot be shared)",
        )
    return text


def parse_stop_timeout(text: str) -> int:
    """Seconds ``stop`` waits before killing; docker's whole seconds (-1: as long as systemd's
    own stop timeout allows, here a year)."""
    t = text.strip()
    if t == "-1":
        return MAX_TIMEOUT
    if not re.fullmatch(r"[0-9]{1,9}", t) or int(t) > MAX_TIMEOUT:
        raise BadValue(
            text,
            "--stop-timeout",
            f"a whole number of seconds from 0 to {MAX_TIMEOUT}",
            hint="e.g. 30, or -1",
        )
    return int(t)


def parse_stop_signal(text: str) -> str:
    """A signal as nspawn's KillSignal= takes it: ``SIGUSR1``, ``SIGRTMIN+3``."""
    import signal

    from .values import parse_signal_number

    n = parse_signal_number(text, "--stop-signal")
    if n >= int(signal.SIGRTMIN):
        return f"SIGRTMIN+{n - int(signal.SIGRTMIN)}"
    return signal.Signals(n).name


def parse_security_opt(text: str) -> str:
    """The --security-opt values nspawnctl can honour: no-new-privileges[=true|false] and
    seccomp=unconfined; returned as ``no-new-privileges``, ``new-privileges`` or ``seccomp=unconfined``."""
    t = text.strip()
    key, eq, value = t.replace(":", "=", 1).partition("=")
    if key == "no-new-privileges":
        try:
            return "no-new-privileges" if not eq or parse_boolean(value) else "new-privileges"
        except InvalidArgument:
            pass
    elif key == "seccomp" and value == "unconfined":
        return "seccomp=unconfined"
    raise InvalidArgument(
        f"unsupported --security-opt {text[:80]!r}",
        hint="nspawnctl supports no-new-privileges and seccomp=unconfined (nspawn has no AppArmor, "
        "SELinux label or custom seccomp profile option)",
    )


# -- the record -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """The container's settings beyond the basics; empty values mean docker's defaults."""

    read_only: bool = False
    tmpfs: tuple[Tmpfs, ...] = ()
    cap_add: tuple[str, ...] = ()  # Capability=: CAP_* names, or ("all",)
    cap_drop: tuple[str, ...] = ()  # DropCapability=
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp_unconfined: bool = False
    init: bool = False
    stop_timeout: int | None = None  # seconds
    add_hosts: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    devices: tuple[Device, ...] = ()
    shm_size: int | None = None  # bytes
    sysctls: tuple[tuple[str, str], ...] = ()
    cpuset: str | None = None
    oom_score_adj: int | None = None
    cpu_shares: int | None = None  # docker's --cpu-shares (2-262144)
    memory_swap: int | None = None  # docker's memory+swap in bytes; -1 unlimited swap
    isolation: str | None = None  # "default", the only one Linux has, as given
    volume_driver: str | None = None  # as given; only "local" makes volumes
    mac_address: str | None = None  # the container's host0 (veth or zone), lower-case
    network_aliases: tuple[str, ...] = ()  # NetworkAlias=: names in the zone members' /etc/hosts
    # NetworkDriverOpt=KEY=VALUE: the API's EndpointsConfig DriverOpts, kept for inspect (the
    # zone's bridge takes no per-endpoint options, as docker's bridge driver ignores unknown ones)
    network_driver_opts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for items, what in (
            (self.tmpfs, "tmpfs mounts"),
            (self.add_hosts, "--add-host"),
            (self.dns, "--dns"),
            (self.dns_search, "--dns-search"),
            (self.devices, "devices"),
            (self.sysctls, "sysctls"),
            (self.network_aliases, "--network-alias"),
        ):
            _count(items, what)

    @property
    def unconfined(self) -> bool:
        """No seccomp filter: --privileged or --security-opt seccomp=unconfined."""
        return self.privileged or self.seccomp_unconfined

    @property
    def writes_resolv(self) -> bool:
        return bool(self.dns or self.dns_search)

    def to_json(self) -> dict[str, object]:
        """docker's HostConfig fields for these."""
        opts = (["no-new-privileges"] if self.no_new_privileges else []) + (
            ["seccomp=unconfined"] if self.seccomp_unconfined else []
        )
        return {
            "ReadonlyRootfs": self.read_only,
            "Tmpfs": {t.path: ",".join(t.options) for t in self.tmpfs},
            "CapAdd": list(self.cap_add) or None,
            "CapDrop": list(self.cap_drop) or None,
            "Privileged": self.privileged,
            "SecurityOpt": opts or None,
            "Init": self.init,
            "StopTimeout": self.stop_timeout,
            "ExtraHosts": [f"{h}:{ip}" for h, ip in self.add_hosts] or None,
            "Dns": list(self.dns),
            "DnsSearch": list(self.dns_search),
            "Ulimits": [
                {"Name": u.name, "Soft": _json_limit(u.soft), "Hard": _json_limit(u.hard)}
                for u in self.ulimits
            ]
            or None,
            "Devices": [
                {"PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.perms}
                for d in self.devices
            ],
            "ShmSize": self.shm_size,
            "Sysctls": dict(self.sysctls) or None,
            "CpusetCpus": self.cpuset or "",
            "OomScoreAdj": self.oom_score_adj or 0,
            "CpuShares": self.cpu_shares or 0,
            "MemorySwap": self.memory_swap or 0,
            "Isolation": self.isolation or "",
            "VolumeDriver": self.volume_driver or "",
            # nspawn gives every container its own cgroup namespace
            "CgroupnsMode": "private",
        }


def _json_limit(n: int | None) -> int:
    return -1 if n is None else n


# -- --mount --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeOptions:
    """docker's volume mount options (``--mount type=volume,volume-nocopy,volume-label=K=V,
    volume-subpath=DIR``; the API's ``Mounts[].VolumeOptions``): ``nocopy`` leaves a new volume
    empty (no copy of the image's directory), ``labels`` go on a volume this create makes,
    ``subpath`` binds that directory of an existing volume."""

    nocopy: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    subpath: str | None = None


def parse_subpath(text: str) -> str:
    """A relative path inside a volume: no ``..`` or ``.``, no leading ``/``, at most 4095 bytes."""
    parts = text.split("/")
    if not text or text.startswith("/") or len(text) > 4095 or any(p in (".", "..") for p in parts):
        raise _bad("volume-subpath", text, "a relative path inside the volume, without '.' or '..'")
    return "/".join(p for p in parts if p)


# -- the .nspawn file -----------------------------------------------------------------------------
# [X-Nspawnctl] keys of this module (declare accepts them in a definition)
OWN_KEYS = (
    "Privileged",
    "Seccomp",
    "StopTimeout",
    "AddHost",
    "DNS",
    "DNSSearch",
    "Device",
    "ShmSize",
    "Sysctl",
    "OOMScoreAdjust",
    "CPUShares",
    "MemorySwap",
    "Isolation",
    "VolumeDriver",
    "MacAddress",
    "NetworkAlias",
    "NetworkDriverOpt",
)


def to_file(s: RunSettings, f: NspawnFile) -> None:
    """Write ``s`` into ``f`` (after the network keys: ResolvConf= is ours when DNS is set)."""
    f.set("Files", "ReadOnly", "yes" if s.read_only else None)
    tmpfs = [*s.tmpfs, *([shm_tmpfs(s.shm_size)] if s.shm_size else [])]
    f.set_all("Files", "TemporaryFileSystem", [t.value() for t in tmpfs])
    f.set("Exec", "Capability", " ".join(s.cap_add) or None)
    f.set("Exec", "DropCapability", " ".join(s.cap_drop) or None)
    f.set("Exec", "NoNewPrivileges", "yes" if s.no_new_privileges else None)
    f.set("Exec", "ProcessTwo", "yes" if s.init else None)
    for name, key in ULIMITS.items():
        f.set("Exec", key, next((u.value() for u in s.ulimits if u.name == name), None))
    f.set("Exec", "CPUAffinity", s.cpuset)
    # nspawn's OOMScoreAdjust= is written from inside the user namespace, where the kernel refuses
    # it: the unit's OOMScoreAdjust= sets nspawn's own, which the payload inherits
    f.set("Exec", "OOMScoreAdjust", None)
    f.set(OWN_SECTION, "OOMScoreAdjust", None if s.oom_score_adj is None else str(s.oom_score_adj))
    if s.writes_resolv:
        f.set("Exec", "ResolvConf", "off")
    own = OWN_SECTION
    f.set(own, "Privileged", "yes" if s.privileged else None)
    f.set(own, "Seccomp", "unconfined" if s.seccomp_unconfined else None)
    f.set(own, "StopTimeout", None if s.stop_timeout is None else str(s.stop_timeout))
    f.set_all(own, "AddHost", [f"{h}:{ip}" for h, ip in s.add_hosts])
    f.set_all(own, "DNS", list(s.dns))
    f.set_all(own, "DNSSearch", list(s.dns_search))
    f.set_all(own, "Device", [str(d) for d in s.devices])
    f.set(own, "ShmSize", None if s.shm_size is None else str(s.shm_size))
    f.set_all(own, "Sysctl", [f"{k}={v}" for k, v in s.sysctls])
    f.set(own, "CPUShares", None if s.cpu_shares is None else str(s.cpu_shares))
    f.set(own, "MemorySwap", None if s.memory_swap is None else str(s.memory_swap))
    f.set(own, "Isolation", s.isolation)
    f.set(own, "VolumeDriver", s.volume_driver)
    f.set(own, "MacAddress", s.mac_address)
    f.set_all(own, "NetworkAlias", list(s.network_aliases))
    f.set_all(own, "NetworkDriverOpt", [f"{k}={v}" for k, v in s.network_driver_opts])


def device_binds(s: RunSettings) -> list[str]:
    """The Bind= values of the devices (the file keeps them with the volumes' ones)."""
    return [d.bind_value() for d in s.devices]


def from_file(f: NspawnFile) -> RunSettings:
    """Read back what :func:`to_file` wrote (and what a hand-written definition says in the same
    keys); a value nspawnctl refuses raises InvalidArgument."""
    own = OWN_SECTION
    shm_text = f.get(own, "ShmSize")
    shm = None
    if shm_text:
        shm = parse_bytes(shm_text, "ShmSize=")
    tmpfs = [Tmpfs.from_value(v) for v in f.get_all("Files", "TemporaryFileSystem")]
    if shm:
        tmpfs = [t for t in tmpfs if t != shm_tmpfs(shm)]
    ulimits = tuple(
        Ulimit.from_value(key, value) for key in ULIMITS.values() if (value := f.get("Exec", key))
    )
    oom = f.get(own, "OOMScoreAdjust") or f.get("Exec", "OOMScoreAdjust")
    stop = f.get(own, "StopTimeout")
    cpus = f.get("Exec", "CPUAffinity")
    return RunSettings(
        read_only=_yes(f.get("Files", "ReadOnly")),
        tmpfs=tuple(tmpfs),
        cap_add=_caps_from_file(f.get_all("Exec", "Capability")),
        cap_drop=_caps_from_file(f.get_all("Exec", "DropCapability")),
        privileged=_yes(f.get(own, "Privileged")),
        no_new_privileges=_yes(f.get("Exec", "NoNewPrivileges")),
        seccomp_unconfined=f.get(own, "Seccomp") == "unconfined",
        init=_yes(f.get("Exec", "ProcessTwo")),
        stop_timeout=None if not stop else parse_stop_timeout(stop),
        add_hosts=tuple(parse_add_host(v) for v in f.get_all(own, "AddHost")),
        dns=tuple(parse_dns(v) for v in f.get_all(own, "DNS")),
        dns_search=tuple(parse_dns_search(v) for v in f.get_all(own, "DNSSearch")),
        ulimits=ulimits,
        devices=tuple(Device.parse(v) for v in f.get_all(own, "Device")),
        shm_size=shm,
        sysctls=tuple(parse_sysctl(v) for v in f.get_all(own, "Sysctl")),
        cpuset=None if not cpus else parse_cpuset(cpus),
        oom_score_adj=None if not oom else parse_oom_score_adj(oom),
        cpu_shares=None if not (v := f.get(own, "CPUShares")) else parse_cpu_shares(v, "CPUShares="),
        memory_swap=None if not (v := f.get(own, "MemorySwap")) else parse_memory_swap(v, "MemorySwap="),
        isolation=None if not (v := f.get(own, "Isolation")) else parse_isolation(v),
        volume_driver=None if not (v := f.get(own, "VolumeDriver")) else parse_volume_driver(v),
        mac_address=None if not (v := f.get(own, "MacAddress")) else parse_mac_address(v),
        network_aliases=tuple(parse_network_alias(v) for v in f.get_all(own, "NetworkAlias")),
        network_driver_opts=tuple(parse_driver_opt(v) for v in f.get_all(own, "NetworkDriverOpt")),
    )


def check_own(key: str, value: str) -> None:
    """One [X-Nspawnctl] key of this module in a definition (declare's check)."""
    if not value:
        return
    parse: dict[str, object] = {
        "Privileged": parse_boolean,
        "Seccomp": lambda v: v == "unconfined" or parse_security_opt(f"seccomp={v}"),
        "StopTimeout": parse_stop_timeout,
        "AddHost": parse_add_host,
        "DNS": parse_dns,
        "DNSSearch": parse_dns_search,
        "Device": Device.parse,
        "ShmSize": lambda v: parse_bytes(v, None),
        "Sysctl": parse_sysctl,
        "OOMScoreAdjust": parse_oom_score_adj,
        "CPUShares": lambda v: parse_cpu_shares(v, "CPUShares="),
        "MemorySwap": lambda v: parse_memory_swap(v, "MemorySwap="),
        "Isolation": parse_isolation,
        "VolumeDriver": parse_volume_driver,
        "MacAddress": parse_mac_address,
        "NetworkAlias": parse_network_alias,
        "NetworkDriverOpt": parse_driver_opt,
    }
    fn = parse.get(key)
    if callable(fn):
        fn(value)


def _yes(value: str | None) -> bool:
    try:
        return parse_boolean(value or "no")
    except InvalidArgument:
        return False


# -- the unit -------------------------------------------------------------------------------------
def unit_settings(
    s: RunSettings, private_users: bool = False, memory: int | None = None
) -> list[tuple[str, str]]:
    """(unit file key, value) for what only the unit can do: the device policy of --device, no
    seccomp filter (systemd's $SYSTEMD_SECCOMP=0, which nspawn honours); --privileged opens the
    device policy to every device (docker's) and, without a user namespace (nspawn refuses
    writable API file systems in one), makes /proc/sys and /sys writable (nspawn's
    $SYSTEMD_NSPAWN_API_VFS_WRITABLE)."""
    out = [("DeviceAllow", f"{d.host} {d.perms}") for d in s.devices]
    if s.privileged:
        out += [("DeviceAllow", "char-* rwm"), ("DeviceAllow", "block-* rwm")]
        if not private_users:
            out.append(("Environment", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1"))
    if s.oom_score_adj is not None:
        out.append(("OOMScoreAdjust", str(s.oom_score_adj)))
    if s.cpu_shares is not None:
        out.append(("CPUWeight", str(cpu_weight(s.cpu_shares))))
    if s.memory_swap is not None and memory is not None:  # ``memory``: the container's --memory
        limit = swap_max(s.memory_swap, memory)
        out.append(("MemorySwapMax", "infinity" if limit == UINT64_MAX else str(limit)))
    if s.unconfined:
        out.append(("Environment", "SYSTEMD_SECCOMP=0"))
    from .run import ipcns

    if ipcns.needed(s.sysctls):  # nspawn keeps our IPC namespace
        out.append(("Environment", ipcns.SHARE_ENV))
    return out


# -- the root -------------------------------------------------------------------------------------
def prepare_root(root: Path, workdir: str | None, s: RunSettings, boot: bool, volumes: list[Volume]) -> None:
    """What is written into a new container's root: the working directory (docker makes it),
    the mount points of tmpfs and directory volumes (nspawn cannot make them in a --read-only root),
    the --add-host lines in /etc/hosts, and /etc/resolv.conf for --dns/--dns-search. Paths are
    walked without following the image's symlinks out of the root."""
    import os

    from .net import files
    from .store import rootpath

    if workdir and not boot:
        make_dirs(root, workdir)
    for t in s.tmpfs:  # nspawn cannot make a mount point in a read-only root
        make_dirs(root, t.path)
    for v in volumes:
        if os.path.isdir(v.host):
            make_dirs(root, v.container)
    if s.add_hosts:
        fd = os.open(root, rootpath.DIR_READ)
        try:
            current = _read_in_root(fd, "/etc/hosts")
        finally:
            os.close(fd)
        base = current if current is not None else files.LOCALHOST
        lines = "".join(f"{ip}\t{host}\n" for host, ip in s.add_hosts)
        files.write_in_root(
            root, "etc", "hosts", (base if base.endswith("\n") or not base else base + "\n") + lines
        )
    if s.writes_resolv:
        text = "".join(f"nameserver {d}\n" for d in s.dns)
        if s.dns_search:
            text += "search " + " ".join(s.dns_search) + "\n"
        if not s.dns:  # search domains only: the host's servers
            text = (files.resolv_conf() or "") + text
        files.write_in_root(root, "etc", "resolv.conf", text)


def _read_in_root(root_fd: int, path: str) -> str | None:
    import os
    import stat

    from .store import rootpath

    try:
        comps = rootpath.resolve(root_fd, path, follow_last=False)
        st = rootpath.lstat(root_fd, comps)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 20:
            return None
        dfd = rootpath.open_dir(root_fd, comps[:-1], rootpath.DIR_READ)
        try:
            fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        finally:
            os.close(dfd)
        with os.fdopen(fd, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def make_dirs(root: Path, path: str) -> None:
    """``mkdir -p`` of ``path`` inside ``root``, symlinks resolved inside the root (as the
    container sees them), never followed out of it. A file in the way is left (nspawn says so)."""
    import os

    from .store import rootpath

    fd = os.open(root, rootpath.DIR_READ)
    try:
        comps = rootpath.split(path)
        for i in range(1, len(comps) + 1):
            try:
                cur = rootpath.resolve(root_fd=fd, path=b"/".join(comps[:i]))
            except (FileNotFoundError, NotADirectoryError, OSError):
                return
            if rootpath.lstat(fd, cur) is not None:
                continue
            parent = rootpath.open_dir(fd, cur[:-1], rootpath.DIR_READ)
            try:
                os.mkdir(cur[-1], 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            finally:
                os.close(parent)
    finally:
        os.close(fd)


# -- sysctls --------------------------------------------------------------------------------------
def check_sysctls(s: RunSettings, network: str) -> None:
    """What can be set: net.* in a network namespace nspawnctl builds (veth, zone) before nspawn
    starts. The IPC ones live in the IPC namespace nspawn makes itself, with no hook before the
    payload runs; on the host's network a net.* sysctl would change the host's (docker refuses too)."""
    from .spec import owns_netns

    for name, _ in s.sysctls:
        if not name.startswith("net."):
            continue  # an IPC one (parse_sysctl let only those through): the container's own IPC ns
        if not owns_netns(network):
            raise InvalidArgument(
                f"--sysctl {name} needs a network namespace of the container's own",
                hint=f"use --network veth or zone:NAME (this container's network is {network})",
            )


def apply_sysctls(netns: str, sysctls: tuple[tuple[str, str], ...]) -> None:
    """Write net.* sysctls inside the network namespace ``netns`` (a bind-mounted nsfs file): a
    thread of our own joins it (net.netns.run_in, libc's setns: os.setns is Python >= 3.12) and
    writes /proc/sys, which answers for the writer's namespace."""
    import os

    from .net import netns as ns

    def work() -> None:
        for name, value in sysctls:
            path = "/proc/sys/" + name.replace(".", "/")
            wfd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(wfd, value.encode())
            finally:
                os.close(wfd)

    try:
        ns.run_in(netns, work)
    except OSError as e:
        raise InvalidArgument(
            f"cannot set --sysctl in the container's network namespace: {e}",
            hint="check the name and value (sysctl -a lists them)",
        ) from None
