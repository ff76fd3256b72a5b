"""What a container is: a frozen spec, stored as the container's .nspawn file.

The .nspawn file is the definition (systemd-nspawn reads it itself with ``--settings=override``,
and so does ``machinectl start``); nspawnctl's own keys go to ``[X-Nspawnctl]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import InvalidArgument
from .health import HealthConfig, auto_update_from_file
from .health import from_file as health_from_file
from .health import to_file as health_to_file
from .nspawnfile import OWN_SECTION, NspawnFile, parse_boolean
from .runopts import RunSettings, device_binds
from .runopts import from_file as settings_from_file
from .runopts import to_file as settings_to_file
from .values import (
    MAX_CPUS,
    MAX_MEMORY,
    MAX_PIDS,
    MIN_CPUS_USEC,
    MIN_MEMORY,
    USEC_PER_CPU,
    BadValue,
    Cpus,
    MemoryBytes,
    PidsLimit,
    parse_bytes,
    stored_number,
)


@dataclass(frozen=True)
class RunDefaults:
    """What an image asks ``run`` to do when the user says nothing (ACI manifest, .nspawn, OCI config)."""

    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # "KEY=VALUE"
    workdir: str | None = None
    user: str | None = None  # "user" or "user:group", names or numbers
    boot: bool = False  # the image is an OS to boot (a .nspawn file with Boot=yes)
    ports: list[str] = field(default_factory=list)  # declared, not published: "8080/tcp", "http:8080/tcp"
    volumes: list[str] = field(default_factory=list)  # declared mount points: "/data", "name:/data:ro"
    # An OCI image's Entrypoint: ``run IMAGE ARGS`` keeps it and replaces ``command`` (its Cmd).
    # ACI and .nspawn images have none: their command is what ARGS replace, as before.
    entrypoint: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # OCI config Labels, shown by inspect
    stop_signal: str | None = None  # OCI StopSignal ("SIGQUIT"); None: SIGTERM
    # -- health (issue 14): the OCI config's Healthcheck in docker's shape (health.image_healthcheck)
    healthcheck: dict[str, Any] | None = None


T = TypeVar("T")

# nspawn's Bind= options (systemd.nspawn(5)); "idmap" keeps a volume writable for root inside a
# user namespace: the mount maps the container's root to the owner on the host.
BIND_OPTIONS = ("rbind", "norbind", "idmap", "noidmap", "rootidmap", "owneridmap")


@dataclass(frozen=True)
class Volume:
    """One bind of a host path or named volume into the container (``-v``, nspawn's ``Bind=``)."""

    host: str
    container: str
    read_only: bool = False
    options: tuple[str, ...] = ()  # nspawn Bind= options, e.g. ("idmap",)
    # ``volume-subpath=SUB``: host is STORE/volumes/V/SUB, but the file binds the stage
    # (:func:`subpath_stages`) and keeps this bind in [X-Nspawnctl] VolumeSubpath=
    subpath: str = ""

    @classmethod
    def parse(cls, text: str) -> Volume:
        """``HOST:CONTAINER[:OPTS]`` as docker's ``-v``, OPTS a comma list of ro|rw and nspawn's
        bind options (idmap, noidmap, rbind, norbind); HOST an absolute path or a volume name."""
        parts = text.split(":")
        ro = False
        opts: list[str] = []
        if len(parts) == 3:
            for o in parts[2].split(","):
                if o in ("ro", "rw"):
                    ro = o == "ro"
                elif o in BIND_OPTIONS:
                    opts.append(o)
                else:
                    raise InvalidArgument(
                        f"invalid volume option {o!r} in {text!r}",
                        hint="options are ro, rw, idmap, noidmap, rbind, norbind",
                    )
            parts = parts[:2]
        if len(parts) == 1 and parts[0].startswith("/"):  # docker's -v /path: an anonymous volume
            return cls("", parts[0])
        named = len(parts) == 2 and re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", parts[0]) is not None
        if len(parts) != 2 or not parts[1].startswith("/") or not (named or parts[0].startswith("/")):
            raise InvalidArgument(
                f"invalid volume {text!r}",
                hint="use -v /host/path:/container/path[:ro] (both absolute) or -v VOLUME:/container/path",
            )
        return cls(parts[0], parts[1], ro, tuple(opts))

    @property
    def named(self) -> bool:
        """``-v NAME:/path``: a named volume, until create puts its path in ``host``; ``-v /path``
        (host "") an anonymous one, which create names."""
        return not self.host.startswith("/")

    @classmethod
    def from_bind(cls, value: str, read_only: bool = False) -> Volume:
        """A ``Bind=``/``BindReadOnly=`` value: ``SOURCE[:DEST[:OPTS]]`` with ``\\:`` escapes; the
        options are kept as written (:func:`check_bind_options` checks them)."""
        parts = unescape_colon(value)
        host = parts[0]
        ctr = parts[1] if len(parts) > 1 and parts[1] else host
        opts = tuple(o for o in parts[2].split(",") if o) if len(parts) > 2 else ()
        return cls(host, ctr, read_only, opts)

    @property
    def idmap(self) -> bool:
        return "idmap" in self.options

    def with_idmap(self) -> Volume:
        """The volume as a user-namespaced container mounts it: ID-mapped unless told otherwise."""
        if any(o in self.options for o in ("idmap", "noidmap", "rootidmap", "owneridmap")):
            return self
        return replace(self, options=(*self.options, "idmap"))

    def bind_value(self) -> str:
        # nspawn's Bind= splits on ':' with backslash escapes; options are the third field.
        value = f"{_escape_colon(self.host)}:{_escape_colon(self.container)}"
        return value + (":" + ",".join(self.options) if self.options else "")

    def __str__(self) -> str:
        opts = (["ro"] if self.read_only else []) + list(self.options)
        return f"{self.host}:{self.container}" + (":" + ",".join(opts) if opts else "")


SUBPATH_STAGES = Path("/run/nspawnctl/subpaths")
"""Where the pre hook mounts each ``volume-subpath`` bind from a file descriptor (run/subpaths.py),
one directory per container, one stage per bind (0, 1, ...)."""


def subpath_stages(spec: ContainerSpec, stage_root: Path = SUBPATH_STAGES) -> dict[str, str]:
    """The stage of each ``volume-subpath`` bind source, by host path. The definition's
    ``Bind=`` names the stage, never the volume's path: a stock ``machinectl start`` (no pre
    hook, so no stage) then fails instead of binding a path whose components another container
    may have swapped for a symlink to the host's ``/``."""
    hosts = sorted({v.host for v in spec.volumes if v.subpath})
    return {host: str(stage_root / spec.name / str(i)) for i, host in enumerate(hosts)}


def check_bind_options(volume: Volume) -> None:
    """nspawn refuses a Bind= option it does not know only when the container starts: say it now."""
    for o in volume.options:
        if o not in BIND_OPTIONS:
            raise InvalidArgument(
                f"unknown bind option {o!r}", hint=f"nspawn's are {', '.join(BIND_OPTIONS)}"
            )


NETWORK_MODES = ("host", "none", "private", "veth")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
_IFNAME_BAD = re.compile(r"[/:\s]")


def parse_network(text: str) -> str:
    """``host|none|private|veth|zone:NAME|bridge:IFNAME``; a zone name as nspawn's (letters, digits,
    -_, <= 12); a bridge is an existing bridge interface of the host, which nspawn itself joins."""
    if text in NETWORK_MODES:
        return text
    if text.startswith("zone:"):
        from .names import check_zone_name

        return f"zone:{check_zone_name(text[5:])}"
    if text.startswith("bridge:"):
        return f"bridge:{check_interface_name(text[7:])}"
    raise InvalidArgument(
        f"invalid network {text!r}", hint="use host, none, private, veth, zone:NAME or bridge:IFNAME"
    )


def check_interface_name(name: str) -> str:
    """A Linux interface name: 1-15 bytes, no '/', ':' or white space, not '.' or '..'."""
    if not name or len(name.encode()) > 15 or _IFNAME_BAD.search(name) or name in (".", ".."):
        raise InvalidArgument(
            f"invalid interface name {name!r}", hint="1 to 15 characters, no '/', ':' or spaces"
        )
    return name


def network_zone(network: str) -> str | None:
    return network[5:] if network.startswith("zone:") else None


def network_bridge(network: str) -> str | None:
    """The host bridge of a ``bridge:IFNAME`` container: nspawn makes the veth and joins it."""
    return network[7:] if network.startswith("bridge:") else None


def owns_netns(network: str) -> bool:
    """nspawnctl builds this container's network namespace itself (veth or zone), before nspawn runs."""
    return network == "veth" or network.startswith("zone:")


def parse_restart(text: str) -> str:
    """docker's restart policy; ``on-failure:N`` restarts at most N times (":0" is no limit)."""
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES or (sep and not (count.isascii() and count.isdigit())):
        raise InvalidArgument(
            f"invalid restart policy {text!r}", hint="use no, on-failure[:N], always or unless-stopped"
        )
    if sep and name != "on-failure":
        raise InvalidArgument(
            f"invalid restart policy {text!r}: a retry count only goes with on-failure",
            hint="use on-failure:N, or the policy alone",
        )
    return f"{name}:{int(count)}" if sep and int(count) else name


def restart_parts(policy: str) -> tuple[str, int]:
    """A parsed policy's name and its maximum retry count (0: no limit), docker's RestartPolicy."""
    name, _, count = policy.partition(":")
    return name, int(count) if count.isdigit() else 0


def docker_restart_policy(policy: str, brief: bool = False) -> dict[str, str | int]:
    """docker's HostConfig.RestartPolicy of a parsed policy (``brief``: the count only when set,
    as ``nspawnctl inspect`` has always shown it)."""
    name, retries = restart_parts(policy)
    if brief and not retries:
        return {"Name": name}
    return {"Name": name, "MaximumRetryCount": retries}


@dataclass(frozen=True)
class PortMapping:
    """``-p [[HOSTIP:]HOSTPORT:]CTRPORT[/tcp|udp]``: a port of the container published on the host;
    host_port 0 (``-p 80``, ``-p IP::80``) until create picks a free one."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str | None = None

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        import ipaddress

        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        bad = InvalidArgument(
            f"invalid port mapping {text!r}",
            hint="use -p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp], e.g. -p 8080:80",
        )
        if proto not in ("tcp", "udp"):
            raise bad
        host_ip: str | None = None
        if spec.startswith("["):  # [::1]:8080:80
            end = spec.find("]")
            if end < 0 or spec[end + 1 : end + 2] != ":":
                raise bad
            host_ip, spec = spec[1:end], spec[end + 2 :]
        else:
            parts = spec.split(":")
            if len(parts) == 3:
                host_ip, spec = parts[0], ":".join(parts[1:])
        parts = spec.split(":")
        if len(parts) == 1 and host_ip is None:  # -p CTRPORT: a free host port is picked
            parts = ["", parts[0]]
        host_re, ctr_re = ("[0-9]{0,9}", "[0-9]{1,9}")  # not "²", not 5000 digits
        if len(parts) != 2 or not (re.fullmatch(host_re, parts[0]) and re.fullmatch(ctr_re, parts[1])):
            raise bad
        hp, cp = int(parts[0] or 0), int(parts[1])
        if not (0 <= hp < 65536 and 0 < cp < 65536) or (parts[0] and hp == 0):
            raise InvalidArgument(f"port out of range in {text!r}", hint="ports are 1-65535")
        if host_ip is not None:
            try:
                host_ip = str(ipaddress.ip_address(host_ip))
            except ValueError:
                raise InvalidArgument(
                    f"invalid host address {host_ip!r} in {text!r}", hint="use an IP address of this host"
                ) from None
        return cls(hp, cp, proto, host_ip)

    @property
    def picked(self) -> bool:
        """No host port given (``-p 80``, ``-p IP::80``, ``-P``): create picks a free one."""
        return self.host_port == 0

    @property
    def key(self) -> str:
        """docker's name of the container port: ``80/tcp``."""
        return f"{self.container_port}/{self.protocol}"

    def __str__(self) -> str:
        ip = ""
        if self.host_ip:
            ip = f"[{self.host_ip}]:" if ":" in self.host_ip else f"{self.host_ip}:"
        if self.picked:
            return f"{ip}:{self.key}" if ip else self.key
        return f"{ip}{self.host_port}:{self.key}"


def check_port_mappings(ports: Iterable[PortMapping]) -> None:
    """What no host can publish, whatever is running: a host port given twice (per protocol: each
    is one socket unit or map element), or a UDP port with a host address (networkd's map has no
    address in its key). Checked at create, long before the ports are bound."""
    seen: set[tuple[str, int]] = set()
    for pm in ports:
        if pm.protocol == "udp" and pm.host_ip:
            raise InvalidArgument(
                f"-p {pm}: a host address for a UDP port is not supported",
                hint=f"publish it on all host addresses: -p {pm.host_port}:{pm.container_port}/udp",
            )
        key = (pm.protocol, pm.host_port)
        if pm.picked:
            continue
        if key in seen:
            raise InvalidArgument(
                f"port {pm.host_port}/{pm.protocol} is published twice", hint="publish each host port once"
            )
        seen.add(key)


def exposed_ports(text: str) -> list[str]:
    """An image's declared port(s) as docker names them (``80/tcp``): OCI ``ExposedPorts`` keys
    ("80/tcp", "53/udp", "80", "8000-8002/tcp"), ACI ports ("http:8080/tcp"); [] for what is
    not a port."""
    span, _, proto = text.rpartition(":")[2].partition("/")
    proto = proto.lower() or "tcp"
    m = re.fullmatch("([0-9]{1,5})(?:-([0-9]{1,5}))?", span)
    if m is None or proto not in ("tcp", "udp"):
        return []
    low, high = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 0 < low <= high < 65536:
        return []
    return [f"{p}/{proto}" for p in range(low, high + 1)]


MAX_EXPOSED = 1024  # ports per image: each becomes an Expose= line, and with -P a socket unit


def image_exposed(texts: Iterable[str], image: str) -> list[str]:
    """The image's ExposedPorts (see :func:`exposed_ports`), each once, refused beyond
    :data:`MAX_EXPOSED` so that a hostile ``EXPOSE 1-65535`` cannot stall ``-P``."""
    out: dict[str, None] = {}
    for text in texts:
        for port in exposed_ports(text):
            out[port] = None
            if len(out) > MAX_EXPOSED:
                raise InvalidArgument(
                    f"image {image} exposes more than {MAX_EXPOSED} ports",
                    hint="use an image that exposes fewer ports (EXPOSE), and publish with -p",
                )
    return list(out)


def publish_all(ports: Iterable[PortMapping], exposed: Iterable[str]) -> list[PortMapping]:
    """docker's ``-P``: every exposed port not published already gets a free host port (picked at
    create)."""
    out = list(ports)
    have = {pm.key for pm in out}
    for key in exposed:
        if key not in have:
            port, _, proto = key.partition("/")
            out.append(PortMapping(0, int(port), proto))
            have.add(key)
    return out


def parse_nspawn_port(value: str) -> PortMapping:
    """nspawn's own ``Port=[tcp|udp:]HOSTPORT[:CONTAINERPORT]``, as a port nspawnctl publishes."""
    proto, rest = "tcp", value
    if value.split(":")[0] in ("tcp", "udp"):
        proto, _, rest = value.partition(":")
    host, _, ctr = rest.partition(":")
    return PortMapping.parse(f"{host}:{ctr or host}/{proto}")


def parse_size(text: str, option: str | None = "--memory") -> int:
    """A size in bytes as docker's ``--memory`` and systemd's ``MemoryMax=`` write it: a number
    with an optional unit b, k, m, g, t (powers of 1024: 64M = 64 MiB; also 64MiB, 64mb)."""
    return parse_bytes(text, option)


def _escape_colon(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def unescape_colon(text: str) -> list[str]:
    """Split a ``Bind=`` value on ':' as nspawn does: a backslash protects the next character."""
    out, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if text[i] == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    out.append("".join(cur))
    return out


@dataclass(frozen=True)
class Limits:
    """The cgroup limits of a container; each value was checked when its type was built."""

    memory: MemoryBytes | None = None  # -> MemoryMax
    cpus: Cpus | None = None  # -> CPUQuotaPerSecUSec
    pids: PidsLimit | None = None  # -> TasksMax

    def __post_init__(self) -> None:
        for value, kind in ((self.memory, MemoryBytes), (self.cpus, Cpus), (self.pids, PidsLimit)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"Limits wants a {kind.__name__}, not {value!r}")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is made and started from, as its definition file records it."""

    name: str
    id: str
    image: str  # the reference as the user gave it
    image_id: str
    created: str
    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    boot: bool = False
    limits: Limits = field(default_factory=Limits)
    auto_remove: bool = False
    # The leading words of ``command`` that are the entrypoint (the image's, or --entrypoint);
    # ``command`` is always the whole argv, as the .nspawn file's Parameters= has it.
    entrypoint: list[str] = field(default_factory=list)
    stop_signal: str | None = None  # what ``stop`` sends the payload; None: SIGTERM
    network: str = "host"  # host | none | private | veth | zone:NAME (see parse_network)
    ports: list[PortMapping] = field(default_factory=list)
    restart: str = "no"  # no | on-failure | always | unless-stopped (systemd's Restart=)
    # A user namespace (PrivateUsers=pick, ID-mapped root): the payload's root is a high host UID.
    private_users: bool = False
    # docker's further run options (--read-only, --cap-add, --tmpfs, ...): see runopts.py
    settings: RunSettings = field(default_factory=RunSettings)
    # Ports the image exposes ("80/tcp"), published or not: inspect's NetworkSettings.Ports.
    exposed: list[str] = field(default_factory=list)
    # -- health and auto-update (issue 14): the check ([X-Nspawnctl] Health*=) and the
    # auto-update policy ([X-Nspawnctl] AutoUpdate=registry|local)
    health: HealthConfig | None = None
    auto_update: str | None = None
    # -- issue 14, identity/labels: the image's labels merged with -l/--label (those win)
    labels: dict[str, str] = field(default_factory=dict)
    # -- issue 15, TTY: docker's Tty/OpenStdin/StdinOnce ([X-Nspawnctl] Tty=, OpenStdin=,
    # StdinOnce=): a start with a client attached gives the payload a terminal / stdin (run/stdio.py)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    # -- the name as given when it is no machine name (``my_app`` of machine ``my-app``): names.py
    given_name: str | None = None
    # -- issue 14, --volumes-from as given ([X-Nspawnctl] VolumesFrom=); their mounts are in volumes
    volumes_from: list[str] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        """The name ``ps``, ``inspect`` and the API show: as given, else the machine name."""
        return self.given_name or self.name

    @property
    def cmd(self) -> list[str]:
        """``command`` without its entrypoint: docker's Cmd."""
        n = len(self.entrypoint)
        return self.command[n:] if self.command[:n] == self.entrypoint else self.command

    def with_changes(self, **kw: object) -> ContainerSpec:
        return replace(self, **kw)  # type: ignore[arg-type]


def spec_to_file(spec: ContainerSpec, base: NspawnFile | None = None) -> NspawnFile:
    """Write ``spec`` into ``base`` (a new file by default), keeping everything else in it."""
    f = base or NspawnFile()
    f.set("Exec", "Boot", "yes" if spec.boot else "no")
    f.set_words("Exec", "Parameters", spec.command or None)
    f.set_all("Exec", "Environment", [_quote_env(e) for e in spec.env if "=" in e])
    f.set("Exec", "WorkingDirectory", spec.workdir)
    f.set("Exec", "User", spec.user)
    f.set("Exec", "Hostname", spec.hostname)
    # An app payload is PID 1 and gets SIGTERM on stop (nspawn's default would be SIGKILL at once),
    # or the image's StopSignal; a booted init gets nspawn's own default, SIGRTMIN+3 (orderly shutdown).
    f.set("Exec", "KillSignal", None if spec.boot else spec.stop_signal or "SIGTERM")
    f.set("Exec", "NotifyReady", "yes" if spec.boot else None)
    f.set("Exec", "PrivateUsers", "pick" if spec.private_users else "no")
    f.set("Files", "PrivateUsersOwnership", "auto" if spec.private_users else None)
    f.set("Files", "PrivateUsersChown", None)
    stages = subpath_stages(spec)
    written = [replace(v, host=stages[v.host]) if v.subpath else v for v in spec.volumes]
    binds = [v.bind_value() for v in written if not v.read_only] + device_binds(spec.settings)
    f.set_all("Files", "Bind", binds)
    f.set_all("Files", "BindReadOnly", [v.bind_value() for v in written if v.read_only])
    _network_to_file(spec, f)
    settings_to_file(spec.settings, f)
    own = {
        "Name": spec.given_name,
        "Id": spec.id,
        "Image": spec.image,
        "ImageId": spec.image_id,
        "Created": spec.created,
        "MemoryMax": None if spec.limits.memory is None else str(spec.limits.memory),
        "CPUs": None if spec.limits.cpus is None else str(spec.limits.cpus),
        "TasksMax": None if spec.limits.pids is None else str(spec.limits.pids),
        "AutoRemove": "yes" if spec.auto_remove else None,
        "Network": None if spec.network == "host" else spec.network,
        "Restart": None if spec.restart == "no" else spec.restart,
    }
    for key, value in own.items():
        f.set(OWN_SECTION, key, value)
    f.set_words(OWN_SECTION, "Entrypoint", spec.entrypoint or None)
    # bare KEYs (the API's Env: ["KEY"], dockerd: unset): nspawn would import them from its own
    f.set_words(OWN_SECTION, "UnsetEnvironment", [e for e in spec.env if "=" not in e] or None)
    f.set_all(OWN_SECTION, "Publish", [str(p) for p in spec.ports])
    f.set_all(OWN_SECTION, "Expose", spec.exposed)
    # -- health and auto-update (issue 14)
    health_to_file(spec.health, f)
    f.set(OWN_SECTION, "AutoUpdate", spec.auto_update)
    from .labels import labels_to_words

    f.set_all(OWN_SECTION, "Label", labels_to_words(spec.labels))
    # -- issue 15, TTY
    f.set(OWN_SECTION, "Tty", "yes" if spec.tty else None)
    f.set(OWN_SECTION, "OpenStdin", "yes" if spec.open_stdin else None)
    f.set(OWN_SECTION, "StdinOnce", "yes" if spec.stdin_once else None)
    f.set_all(OWN_SECTION, "VolumesFrom", spec.volumes_from)  # issue 14: a record (volumesfrom.py)
    subs = sorted((v for v in spec.volumes if v.subpath), key=lambda v: (v.host, v.container))  # stage order
    f.set_all(OWN_SECTION, "VolumeSubpath", [_subpath_value(v) for v in subs])
    return f


def _subpath_value(v: Volume) -> str:
    """``VolumeSubpath=VOLUME_PATH:SUB:DEST`` (``\\:`` escapes as in Bind=): what the stage
    bind of DEST stands for."""
    volume = v.host.removesuffix("/" + v.subpath)
    return ":".join(_escape_colon(x) for x in (volume, v.subpath, v.container))


def _subpaths_from_file(
    f: NspawnFile, volumes: list[Volume], stage_root: Path = SUBPATH_STAGES
) -> list[Volume]:
    """The stage binds of the file as the volume-subpath binds they stand for (VolumeSubpath=)."""
    by_dest: dict[str, tuple[str, str]] = {}
    for value in f.get_all(OWN_SECTION, "VolumeSubpath"):
        parts = unescape_colon(value)
        sub = parts[1] if len(parts) == 3 else ""
        if len(parts) != 3 or not parts[0].startswith("/") or not sub or not parts[2].startswith("/"):
            raise InvalidArgument(
                f"invalid [{OWN_SECTION}] VolumeSubpath={value}", hint="the form is VOLUME_PATH:SUB:DEST"
            )
        by_dest[parts[2]] = (f"{parts[0].rstrip('/')}/{sub}", sub)
    out = []
    for v in volumes:
        if stage_root in Path(v.host).parents and v.container in by_dest:
            host, sub = by_dest.pop(v.container)
            v = replace(v, host=host, subpath=sub)
        out.append(v)
    if by_dest:
        raise InvalidArgument(
            f"[{OWN_SECTION}] VolumeSubpath= of {', '.join(sorted(by_dest))} has no stage Bind= to that path",
            hint=f"bind it as Bind={stage_root}/NAME/N:DEST, as nspawnctl writes it",
        )
    return out


# [Network] keys that make nspawn build the network itself. In --settings=override mode any of
# them replaces the command line's network setup, so a veth/zone container (whose namespace
# nspawnctl builds before nspawn starts) must have none of them.
NSPAWN_NETWORK_KEYS = (
    "Private",
    "VirtualEthernet",
    "VirtualEthernetExtra",
    "Bridge",
    "Zone",
    "Interface",
    "MACVLAN",
    "IPVLAN",
    "Port",
)


def _network_to_file(spec: ContainerSpec, f: NspawnFile) -> None:
    if owns_netns(spec.network):
        for key in NSPAWN_NETWORK_KEYS:
            f.set("Network", key, None)
        # nspawnctl writes /etc/resolv.conf for the container's own network; nspawn's "auto"
        # would copy the host's (a loopback stub is useless in another namespace) over it.
        f.set("Exec", "ResolvConf", "off")
        return
    if f.get("Exec", "ResolvConf") == "off" and spec.network == "host":
        f.set("Exec", "ResolvConf", None)
    bridge = network_bridge(spec.network)
    if bridge is not None:
        # nspawn's own: it makes the veth and puts its host side onto the bridge. Every other key
        # the user wrote ([Network] Interface=, MACVLAN=, VirtualEthernetExtra=, ...) stays as is.
        f.set("Network", "Bridge", bridge)
        for key in ("Zone", "Port"):
            f.set("Network", key, None)
        if f.get("Network", "Private") is not None and not _yes(f.get("Network", "Private")):
            f.set("Network", "Private", None)  # a host leftover; Bridge= means a private network
        if f.get("Network", "VirtualEthernet") is not None and not _yes(f.get("Network", "VirtualEthernet")):
            f.set("Network", "VirtualEthernet", None)
        return
    for key in ("VirtualEthernet", "Zone", "Port", "Bridge"):
        f.set("Network", key, None)
    if spec.network == "host":
        # explicit, so systemd-nspawn@.service's own --network-veth does not apply either
        f.set("Network", "Private", "no")
        f.set("Network", "VirtualEthernet", "no")
        for key in ("Interface", "MACVLAN", "IPVLAN", "VirtualEthernetExtra"):
            f.set("Network", key, None)
    else:  # none, private: a namespace of nspawn's with loopback (plus Interface= etc. for private)
        f.set("Network", "Private", "yes")
        f.set("Network", "VirtualEthernet", "no")
        if spec.network == "none":
            for key in ("Interface", "MACVLAN", "IPVLAN", "VirtualEthernetExtra"):
                f.set("Network", key, None)


def network_from_file(f: NspawnFile) -> str:
    """Our own Network= key, or what nspawn's [Network] keys of a hand-written file say."""
    own = f.get(OWN_SECTION, "Network")
    if own:
        return parse_network(own)
    return nspawn_network(f) or "host"


def nspawn_network(f: NspawnFile) -> str | None:
    """The network nspawn's own [Network] keys describe, or None when there are none. Nothing
    that asks for a network namespace ever reads as "host"."""
    if not any(f.get_all("Network", k) for k in NSPAWN_NETWORK_KEYS):
        return None
    zone = f.get("Network", "Zone")
    if zone:
        return parse_network(f"zone:{zone}")
    bridge = f.get("Network", "Bridge")
    if bridge:
        return parse_network(f"bridge:{bridge}")
    if _yes(f.get("Network", "VirtualEthernet")) or f.get_all("Network", "Port"):
        return "veth"
    if any(f.get_all("Network", k) for k in ("Interface", "MACVLAN", "IPVLAN", "VirtualEthernetExtra")):
        return "private"
    if _yes(f.get("Network", "Private")):
        return "none"
    return "host"


def parse_publish(value: str) -> PortMapping:
    """A ``Publish=`` value: always with its host port (create writes the one it picked)."""
    pm = PortMapping.parse(value)
    if pm.picked:
        raise InvalidArgument(
            f"invalid port mapping {value!r}: Publish= needs its host port",
            hint="write Publish=[HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp], e.g. Publish=8080:80",
        )
    return pm


def ports_from_file(f: NspawnFile) -> list[PortMapping]:
    """Our Publish= keys and nspawn's own Port= keys, both as ports nspawnctl publishes."""
    ports = [parse_publish(v) for v in f.get_all(OWN_SECTION, "Publish")]
    ports += [parse_nspawn_port(v) for v in f.get_all("Network", "Port")]
    return ports


def _yes(value: str | None) -> bool:
    """A boolean key as nspawn reads it; what is not a boolean counts as unset (declare checks)."""
    try:
        return parse_boolean(value or "no")
    except InvalidArgument:
        return False


def _no(value: str) -> bool:
    """An explicit false; PrivateUsers= also takes pick, identity or a UID range, all true."""
    try:
        return not parse_boolean(value)
    except InvalidArgument:
        return False


def _quote_env(assignment: str) -> str:
    from .nspawnfile import quote_words

    return quote_words([assignment])


def file_to_spec(name: str, f: NspawnFile, where: Path | None = None) -> ContainerSpec:
    """Read a container's spec back; raises InvalidArgument when it is not an nspawnctl file or
    holds a value nspawnctl refuses (the message names the file, and the line where it can)."""
    try:
        return _file_to_spec(name, f, where)
    except InvalidArgument as e:
        at = str(where or f.filename or name)
        if e.message.startswith(at):
            raise
        raise InvalidArgument(f"{at}: {e.message}", e.hint) from None


def _file_to_spec(name: str, f: NspawnFile, where: Path | None) -> ContainerSpec:
    own = OWN_SECTION
    cid = f.get(own, "Id")
    if not cid:
        raise InvalidArgument(f"{where or name}: not an nspawnctl container (no [{own}] Id=)")
    volumes = [
        Volume.from_bind(value, ro)
        for key, ro in (("Bind", False), ("BindReadOnly", True))
        for value in f.get_all("Files", key)
    ]
    settings = settings_from_file(f)
    devices = set(device_binds(settings))
    volumes = [v for v in volumes if v.read_only or v.bind_value() not in devices]
    volumes = _subpaths_from_file(f, volumes)
    boot = _yes(f.get("Exec", "Boot"))
    users = f.get("Exec", "PrivateUsers") or ""
    kill = f.get("Exec", "KillSignal")
    return ContainerSpec(
        name=name,
        id=cid,
        image=f.get(own, "Image") or "",
        image_id=f.get(own, "ImageId") or "",
        created=f.get(own, "Created") or "",
        command=f.get_words("Exec", "Parameters"),
        env=[*f.get_words("Exec", "Environment"), *f.get_words(own, "UnsetEnvironment")],
        volumes=volumes,
        workdir=f.get("Exec", "WorkingDirectory"),
        user=f.get("Exec", "User"),
        hostname=f.get("Exec", "Hostname"),
        boot=boot,
        limits=limits_from_file(f),
        auto_remove=_yes(f.get(own, "AutoRemove")),
        entrypoint=f.get_words(own, "Entrypoint"),
        stop_signal=None if boot or kill in (None, "SIGTERM") else kill,
        network=network_from_file(f),
        ports=ports_from_file(f),
        restart=parse_restart(f.get(own, "Restart") or "no"),
        private_users=users != "" and not _no(users),
        settings=settings,
        exposed=[p for v in f.get_all(own, "Expose") for p in exposed_ports(v)],
        # -- health and auto-update (issue 14)
        health=health_from_file(f),
        auto_update=auto_update_from_file(f),
        labels=_labels_from_file(f),
        # -- issue 15, TTY
        tty=_yes(f.get(own, "Tty")),
        open_stdin=_yes(f.get(own, "OpenStdin")),
        stdin_once=_yes(f.get(own, "StdinOnce")),
        given_name=_given_name(f, name),
        volumes_from=f.get_all(own, "VolumesFrom"),
    )


def _given_name(f: NspawnFile, machine: str) -> str | None:
    """``[X-Nspawnctl] Name=``: the name as given, which must stand for the file's machine name."""
    from .names import machine_name_of

    given = f.get(OWN_SECTION, "Name")
    if not given or given == machine:
        return None
    if machine_name_of(given) != machine:
        raise InvalidArgument(
            f"{f.where(OWN_SECTION, 'Name')}: Name={given[:80]}: not a name of machine {machine}",
            hint="a name's machine name is the name with '_' as '-': correct or delete that line",
        )
    return given


def _labels_from_file(f: NspawnFile) -> dict[str, str]:
    from .labels import labels_from_words

    return labels_from_words(f.get_words(OWN_SECTION, "Label"))


def limits_from_file(f: NspawnFile) -> Limits:
    """MemoryMax=, CPUs=, TasksMax= of [X-Nspawnctl], each built by its type. A number that an
    older version wrote (``CPUs=0.005``, ``TasksMax=0``, a 20-digit MemoryMax=) is read as the
    nearest limit allowed now (0 or less: no limit, as docker's); anything else (``nan``, ``inf``,
    words) raises InvalidArgument naming ``FILE:LINE``."""

    def read(
        key: str,
        parse: Callable[[str, str | None], T],
        make: Callable[[int], T],
        scale: int,
        low: int,
        high: int,
    ) -> T | None:
        value = f.get(OWN_SECTION, key)
        if not value:
            return None
        try:
            return parse(value, None)
        except BadValue as e:
            try:
                n = stored_number(value, scale, low, high)
            except BadValue:
                raise InvalidArgument(
                    f"{f.where(OWN_SECTION, key)}: {key}={value}: {e.reason}",
                    hint="correct or delete that line, or remove the container (nspawnctl rm -f NAME)",
                ) from None
        return None if n is None else make(n)

    return Limits(
        memory=read("MemoryMax", MemoryBytes.parse, MemoryBytes, 1, MIN_MEMORY, MAX_MEMORY),
        cpus=read("CPUs", Cpus.parse, Cpus, USEC_PER_CPU, MIN_CPUS_USEC, MAX_CPUS * USEC_PER_CPU),
        pids=read("TasksMax", PidsLimit.parse, PidsLimit, 1, 1, MAX_PIDS),
    )
