"""Declared networks (docker's ``network create``): a zone that exists without members.

A zone (``--network zone:NAME``, :mod:`.zone`) comes with its first container and goes with the
last. A declared network is a JSON file ``STORE/networks/NAME.json`` (under the store, so the next
boot still has it and ``generate`` of a member, which prints ``Network=zone:NAME``, needs nothing
else to recreate it). It records docker's fields: a 64-hex ID (random, as docker's: a network
created again gets a new one), labels and a ``--subnet`` (``--internal`` is refused:
:func:`check_internal`).

The bridge itself is still made at first use, by the first member's ``join`` (an empty bridge has
no carrier, so networkd would not address it anyway). A network with a ``--subnet`` gets a networkd
file, ``70-nspawnctl-vz-NAME.network`` in /etc/systemd/network (sorted before systemd's
80-container-vz.network, so it wins for this bridge): the bridge's address is the subnet's first
host, members get leases from the rest, and the bridge is masqueraded as systemd's zones are.
Every create/remove/prune holds the networks' flock (:func:`_locked`), then the zone's
(:func:`.zone.locked`, the one a member's start takes): a removal never races a start.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Paths
from ..errors import Conflict, InvalidArgument, NotFound
from ..store.files import write_json

if TYPE_CHECKING:
    from ..client import Client
    from ..listfilters import ListFilters
    from ..run.runtime import Runtime
    from ..spec import ContainerSpec
    from ..store.containers import ContainerStore
    from ..systemd.bus import Bus

BUILTIN = ("bridge", "host", "none")
NETWORKD_DIR = Path("/etc/systemd/network")


class NetworkNotFound(NotFound):
    code = "network-not-found"


class NetworkExists(Conflict):
    code = "network-exists"


class NetworkInUse(Conflict):
    code = "network-in-use"


@dataclass(frozen=True)
class NetworkDecl:
    """One declared network, as its file has it."""

    name: str
    id: str
    created: str  # RFC 3339
    zone: str = (
        ""  # its zone (bridge vz-ZONE): the name itself when it is a zone name, else n + 11 hex of the ID
    )
    subnet: str | None = None  # IPv4 CIDR, None: networkd's pool picks a /24 at first use
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str | None:
        """The bridge's address: the subnet's first host."""
        return first_host(self.subnet) if self.subnet else None

    def __post_init__(self) -> None:
        if not self.zone:
            object.__setattr__(self, "zone", zone_for(self.name, self.id))


def zone_for(name: str, network_id: str) -> str:
    """A network's zone: docker's names are longer than a bridge's (vz- + 12 characters), so a
    name that is no zone name gets ``n`` + the first 11 hex digits of the network's ID."""
    return name if _zone_name(name) else f"n{network_id[:11]}"


def networks_dir(paths: Paths) -> Path:
    return paths.store / "networks"


def networkd_dir() -> Path:
    """Where the subnet's networkd file goes ($NSPAWNCTL_NETWORKD_DIR for tests)."""
    return Path(os.environ.get("NSPAWNCTL_NETWORKD_DIR") or NETWORKD_DIR)


def networkd_file(name: str) -> Path:
    return networkd_dir() / f"70-nspawnctl-vz-{name}.network"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(name: str) -> str:
    """docker's network names (a letter or digit, then letters, digits, '_', '.', '-'; here at
    most 128), not one of docker's built-ins."""
    if name in BUILTIN:
        raise NetworkExists(
            f"network with name {name} already exists",
            hint="bridge, host and none are built in; choose another name",
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid network name {name!r}",
            hint="use letters, digits, '_', '.' and '-' (at most 128), starting with a letter or digit",
        )
    return name


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """An IPv4 network of private addresses with room for the bridge and a member (/8 to /30)."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise InvalidArgument(
            f"invalid subnet {text!r}", hint="an IPv4 network in CIDR form, e.g. 10.89.1.0/24"
        ) from None
    if not net.is_private or not 8 <= net.prefixlen <= 30:
        raise InvalidArgument(
            f"invalid subnet {text!r}: a private IPv4 network of /8 to /30 is expected",
            hint="e.g. 10.89.1.0/24 or 192.168.77.0/24",
        )
    return net


def networkd_text(decl: NetworkDecl) -> str:
    """The networkd file that gives the bridge the declared subnet's first address."""
    assert decl.subnet is not None
    prefix = ipaddress.IPv4Network(decl.subnet).prefixlen
    lines = [
        "# written by nspawnctl network create: the bridge of network " + decl.name,
        "[Match]",
        "Kind=bridge",
        f"Name=vz-{decl.zone}",
        "",
        "[Network]",
        f"Address={decl.gateway}/{prefix}",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
        "ConfigureWithoutCarrier=yes",
    ]
    if not decl.internal:
        lines.append("IPMasquerade=ipv4")
    return "\n".join(lines) + "\n"


def _load(path: Path) -> NetworkDecl | None:
    try:
        data = json.loads(path.read_text())
        return NetworkDecl(
            name=str(data["name"]),
            id=str(data["id"]),
            created=str(data.get("created", "")),
            subnet=data.get("subnet") or None,
            internal=bool(data.get("internal")),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            zone=str(data.get("zone") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list(paths: Paths) -> builtins.list[NetworkDecl]:
    d = networks_dir(paths)
    if not d.is_dir():
        return []
    return [n for p in sorted(d.glob("*.json")) if (n := _load(p)) is not None]


def find(paths: Paths, name: str) -> NetworkDecl | None:
    """The declared network ``name``; None if there is none (or the name could not be one)."""
    if not _NAME.fullmatch(name) or name in BUILTIN:
        return None
    return _load(networks_dir(paths) / f"{name}.json")


def by_zone(paths: Paths, zone_name: str) -> NetworkDecl | None:
    """The declared network whose zone is ``zone_name`` (a container's ``zone:ZONE``)."""
    found = find(paths, zone_name)
    if found is not None and found.zone == zone_name:
        return found
    return next((n for n in list(paths) if n.zone == zone_name), None)


def get(paths: Paths, ref: str) -> NetworkDecl:
    """By name, full ID or unique ID prefix (docker's lookup)."""
    found = find(paths, ref)
    if found is not None:
        return found
    hits = [n for n in list(paths) if n.id.startswith(ref)] if len(ref) >= 1 else []
    if len(hits) == 1:
        return hits[0]
    raise NetworkNotFound(f"network {ref} not found", hint="list networks with: nspawnctl network ls")


class InternalNotSupported(InvalidArgument):
    code = "network-internal-unsupported"


def check_internal(internal: bool) -> None:
    """``--internal`` is refused: docker's internal network drops everything leaving its subnet,
    and nothing here can promise that. networkd only omits masquerading (routed traffic still
    reaches other zones, the host's LAN and VPNs), and a per-link forwarding switch is reset by
    whatever next writes net.ipv4.ip_forward; the host has no firewall tool nspawnctl owns."""
    if internal:
        raise InternalNotSupported(
            "internal networks are not supported: nspawnctl cannot stop a zone's traffic from being "
            "routed beyond its subnet",
            hint="create the network without --internal (it is masqueraded as systemd's zones), or "
            "use --network none for a container that must not reach anything",
        )


@contextlib.contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """The one lock of every declaration change (create, remove, prune): the subnet-overlap check
    and the name check see every other network's final state. Taken before a zone's lock."""
    import fcntl

    d = networks_dir(paths)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_networkd(decl: NetworkDecl) -> None:
    """The subnet's networkd file, by temporary file and rename (networkd never reads half of it)."""
    path = networkd_file(decl.zone)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(networkd_text(decl))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_networkd(paths: Paths) -> builtins.list[str]:
    """Delete ``70-nspawnctl-vz-*.network`` files no declaration owns (a create or remove killed
    between its two files: the declaration is written first and removed first); their zones.
    Call it under :func:`_locked`."""
    owned = {d.zone for d in list(paths) if d.subnet}
    gone = []
    d = networkd_dir()
    for f in sorted(d.glob("70-nspawnctl-vz-*.network")) if d.is_dir() else []:
        zone_name = f.name[len("70-nspawnctl-vz-") : -len(".network")]
        if zone_name not in owned:
            f.unlink(missing_ok=True)
            gone.append(zone_name)
    for f in d.glob(".70-nspawnctl-vz-*.network.*") if d.is_dir() else []:
        pid = f.name.rsplit(".", 1)[1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            f.unlink(missing_ok=True)
    return gone


def create(
    paths: Paths,
    name: str,
    subnet: str | None = None,
    internal: bool = False,
    labels: dict[str, str] | None = None,
) -> NetworkDecl:
    """Declare network ``name``; a name already declared or an overlapping subnet is a conflict
    (docker's 409). The declaration is written before the networkd file, so a kill in between
    leaves a declaration (remove takes it) or an unowned file (the next change sweeps it)."""
    import secrets
    from datetime import UTC, datetime

    from . import zone

    check_name(name)
    check_internal(internal)
    net = parse_subnet(subnet) if subnet else None
    decl = NetworkDecl(
        name=name,
        id=secrets.token_hex(32),
        created=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        subnet=str(net) if net else None,
        labels=dict(labels or {}),
    )
    path = networks_dir(paths) / f"{name}.json"
    with _locked(paths):
        swept = sweep_networkd(paths)
        if path.exists() or by_zone(paths, decl.zone) is not None:
            raise NetworkExists(
                f"network with name {name} already exists",
                hint=f"remove it first: nspawnctl network rm {name}",
            )
        for other in list(paths) if net is not None else []:
            if other.subnet and net is not None and ipaddress.IPv4Network(other.subnet).overlaps(net):
                raise NetworkExists(
                    f"subnet {net} overlaps network {other.name}'s {other.subnet}",
                    hint="choose a subnet no other network uses",
                )
        with zone.locked(decl.zone):
            write_json(path, asdict(decl))
            if decl.subnet:
                try:
                    _write_networkd(decl)
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
    if decl.subnet or swept:
        reload_networkd()
    return decl


def remove(paths: Paths, ref: str) -> NetworkDecl:
    """Remove a declared network; refused while a container is attached (its zone has a live
    member or the bridge has ports), as docker's ``has active endpoints``."""
    with _locked(paths):
        decl = get(paths, ref)
        had_file = _remove_locked(paths, decl)
        swept = sweep_networkd(paths)
    if had_file or swept:
        reload_networkd()
    return decl


def _remove_locked(paths: Paths, decl: NetworkDecl) -> bool:
    """Remove ``decl`` (under :func:`_locked`): the declaration first, then its networkd file;
    whether there was one."""
    from . import zone

    with zone.locked(decl.zone) as zf:
        if attached(zf.leases) or _bridge_ports(decl.zone):
            raise NetworkInUse(
                f"error while removing network: network {decl.name} id {decl.id} has active endpoints",
                hint="stop or disconnect its containers first",
            )
        (networks_dir(paths) / f"{decl.name}.json").unlink(missing_ok=True)
        had_file = networkd_file(decl.zone).exists()
        networkd_file(decl.zone).unlink(missing_ok=True)
    return had_file


def attached(leases: dict[str, str]) -> builtins.list[str]:
    """The members whose network namespace still exists (a lease of a crashed run is stale)."""
    from .names import netns_path

    return [n for n in leases if os.path.exists(netns_path(n))]


def members(name: str) -> dict[str, str]:
    """Live members of zone ``name`` with their addresses."""
    from . import zone

    leases = zone.read(name).leases
    return {n: leases[n] for n in attached(leases)}


def _bridge_ports(name: str) -> bool:
    from ..errors import NspawnctlError
    from .kernel import Kernel
    from .names import bridge_name

    try:
        with Kernel() as kernel:
            return bool(kernel.links_of_master(bridge_name(name)))
    except (OSError, NspawnctlError):
        return False


def reload_networkd() -> None:
    """Have networkd read its files again (best effort: without networkd the file waits for it)."""
    import shutil
    import subprocess

    exe = shutil.which("networkctl")
    if exe is None or not os.path.isdir("/run/systemd/netif"):
        return
    subprocess.run([exe, "reload"], check=False, capture_output=True, timeout=30)


def prune(paths: Paths, filters: ListFilters | None = None) -> builtins.list[str]:
    """Remove every declared network without members (that passes ``filters``:
    listfilters.NETWORK_PRUNE_KEYS, until, label, label!), and networkd files no declaration
    owns; the removed networks' names."""
    from ..listfilters import decl_subject

    out = []
    reload = False
    with _locked(paths):
        for decl in list(paths):
            if filters and not filters.matches(decl_subject(decl)):
                continue
            try:
                reload = _remove_locked(paths, decl) or reload
            except NetworkInUse:
                continue
            out.append(decl.name)
        if not filters:  # a filtered prune removes only what its filters select
            reload = bool(sweep_networkd(paths)) or reload
    if reload:
        reload_networkd()
    return out


def parse(paths: Paths, text: str) -> str:
    """A ``--network`` value: nspawnctl's modes (``zone:NAME`` too, made at first use), docker's
    ``bridge`` (nspawnctl's veth) or a declared network's name (its zone)."""
    from ..spec import parse_network

    if text == "bridge":
        return "veth"
    try:
        return parse_network(text)
    except InvalidArgument:
        decl = find(paths, text)
        if decl is not None:
            return f"zone:{decl.zone}"
        if _NAME.fullmatch(text):
            raise NetworkNotFound(
                f"network {text} not found",
                hint=f"create it first (nspawnctl network create {text}), or use --network zone:{text}",
            ) from None
        raise


def check_value(text: str) -> str:
    """A ``--network`` value's syntax, without the declarations: a mode, or what could name a network."""
    from ..spec import parse_network

    if text == "bridge" or _NAME.fullmatch(text):
        return text
    return parse_network(text)


def _zone_name(text: str) -> bool:
    from ..names import check_zone_name

    try:
        check_zone_name(text)
    except InvalidArgument:
        return False
    return True


@dataclass
class Endpoint:
    """A running container on a network: its name, ID and ``ADDR/PREFIX`` ("" when unknown)."""

    name: str
    id: str
    address: str = ""


@dataclass
class NetworkRecord:
    """One network as docker shows it (``network ls/inspect``, ``GET /networks``): both
    front-ends render these, so the ID and gateway rules exist once."""

    name: str
    driver: str  # bridge | host | null
    kind: str  # builtin | zone | bridge (a host bridge containers join): nspawnctl's word, in Options
    subnet: str | None = None
    decl: NetworkDecl | None = None
    members: builtins.list[Endpoint] = field(default_factory=builtins.list)

    @property
    def id(self) -> str:
        return self.decl.id if self.decl is not None else zone_id(self.name)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.decl.labels) if self.decl is not None else {}

    @property
    def zone(self) -> str:
        return self.decl.zone if self.decl is not None else self.name

    @property
    def gateway(self) -> str | None:
        """The bridge's address: the subnet's first host (networkd's rule for its pool's /24s,
        and the declared networks' networkd file)."""
        return first_host(self.subnet) if self.subnet else None

    def to_json(self) -> dict[str, object]:
        config = {"Subnet": self.subnet, "Gateway": self.gateway} if self.subnet else None
        options = {"nspawnctl.network": self.kind}
        if self.kind == "zone":
            options["com.docker.network.bridge.name"] = f"vz-{self.zone}"
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.decl.created if self.decl is not None else "0001-01-01T00:00:00Z",
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [config] if config else []},
            "Internal": self.decl.internal if self.decl is not None else False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {
                m.id: {
                    "Name": m.name,
                    "EndpointID": "",
                    "MacAddress": "",
                    "IPv4Address": m.address,
                    "IPv6Address": "",
                }
                for m in self.members
            },
            "Options": options,
            "Labels": self.labels,
        }


def records(
    declared: Iterable[NetworkDecl],
    zone_subnets: dict[str, str | None],
    modes: Iterable[tuple[str, str]],
    endpoints: Iterable[tuple[str, Endpoint]],
) -> builtins.list[NetworkRecord]:
    """docker's network list: bridge, host and none, each declared network, each zone with
    leases now (``zone_subnets``: zone -> its subnet), each network a container names (``modes``:
    its name and network mode) and, for each ``endpoints`` pair (network mode, running member),
    the member on its network."""
    out = {b: NetworkRecord(b, {"none": "null"}.get(b, b), "builtin") for b in BUILTIN}
    named = {}  # a declared network's zone -> its name
    for decl in declared:
        named[decl.zone] = decl.name
        out[decl.name] = NetworkRecord(
            decl.name, "bridge", "zone", decl.subnet or zone_subnets.get(decl.zone), decl
        )
    for z, subnet in sorted(zone_subnets.items()):
        if z not in named:
            out.setdefault(z, NetworkRecord(z, "bridge", "zone", subnet))

    def record(mode: str) -> NetworkRecord:
        zone_name = mode[5:] if mode.startswith("zone:") else None
        name = named.get(zone_name, zone_name) if zone_name else docker_name(mode)
        if name not in out:
            out[name] = NetworkRecord(name, "bridge", "zone" if zone_name else "bridge")
        return out[name]

    for _, mode in modes:
        record(mode)
    for mode, endpoint in endpoints:
        record(mode).members.append(endpoint)
    return builtins.list(out.values())


def zone_id(name: str) -> str:
    """The ID of a network nobody declared (a zone made by its first member, a built-in one):
    stable, from its name (docker's are 64 hex digits)."""
    import hashlib

    return hashlib.sha256(f"nspawnctl-network:{name}".encode()).hexdigest()


def first_host(subnet: str) -> str:
    """A subnet's first host: a zone bridge's address."""
    return str(next(ipaddress.IPv4Network(subnet, strict=False).hosts()))


def member_addresses(name: str) -> dict[str, str]:
    """Live members of zone ``name`` -> ``ADDR/PREFIX``."""
    from .zone import read

    zf = read(name)
    prefix = ipaddress.IPv4Network(zf.subnet).prefixlen if zf.subnet else 24
    return {n: f"{a}/{prefix}" for n, a in members(name).items()}


def connected(spec_network: str, zone_name: str) -> bool:
    return spec_network == f"zone:{zone_name}"


def connect_spec(spec: ContainerSpec, network: str, aliases: Iterable[str] = ()) -> ContainerSpec:
    """``spec`` on zone ``network`` (a container is on one network here: joining a zone leaves
    docker's bridge/none; another zone must be left first), with ``aliases`` added."""
    import dataclasses

    from ..runopts import parse_network_alias

    if spec.network.startswith("zone:") and spec.network != f"zone:{network}":
        raise Conflict(
            f"container {spec.name} is on network {spec.network[5:]}: a container is on one network",
            hint=f"disconnect it first: nspawnctl network disconnect {spec.network[5:]} {spec.name}",
        )
    if spec.network == f"zone:{network}":
        raise Conflict(
            f"endpoint with name {spec.name} already exists in network {network}",
            hint="it is connected already",
        )
    names = tuple(dict.fromkeys([*spec.settings.network_aliases, *(parse_network_alias(a) for a in aliases)]))
    settings = dataclasses.replace(spec.settings, network_aliases=names)
    return dataclasses.replace(spec, network=f"zone:{network}", settings=settings)


def disconnect_spec(spec: ContainerSpec, network: str) -> ContainerSpec:
    """``spec`` off zone ``network``: no network (docker's container without networks), aliases gone."""
    import dataclasses

    if spec.network != f"zone:{network}":
        raise Conflict(
            f"container {spec.name} is not connected to network {network}",
            hint=f"its network is {spec.network}",
        )
    settings = dataclasses.replace(spec.settings, network_aliases=())
    return dataclasses.replace(spec, network="none", ports=[], settings=settings)


def listing(client: Client) -> builtins.list[NetworkRecord]:
    """:func:`records` as the CLI sees them without the bus: a zone's members are its leases
    whose network namespace exists (with their addresses)."""
    from .zone import zone_subnets

    specs = client.containers.store.list()
    ids = {s.name: s.id for s in specs}
    subnets = zone_subnets()
    declared = list(client.paths)
    zones = (
        set(subnets)
        | {d.zone for d in declared}
        | {s.network[5:] for s in specs if s.network.startswith("zone:")}
    )
    endpoints = [
        (f"zone:{z}", Endpoint(n, ids.get(n, ""), a))
        for z in sorted(zones)
        for n, a in member_addresses(z).items()
    ]
    return records(declared, subnets, [(s.name, s.network) for s in specs], endpoints)


async def achange_membership(
    client: Client, bus: Bus, ref: str, zone_name: str, connect: bool, aliases: Iterable[str] = ()
) -> ContainerSpec:
    """``network connect``/``disconnect`` of container ``ref`` and zone ``zone_name`` (both
    front-ends call this); its new definition. See :func:`achange_definition`."""
    import asyncio

    from ..run.runtime import Runtime

    containers = client.containers
    name = await asyncio.to_thread(containers.resolve, ref)

    def change(spec: ContainerSpec) -> ContainerSpec:
        return connect_spec(spec, zone_name, aliases) if connect else disconnect_spec(spec, zone_name)

    return await achange_definition(Runtime(bus, client.paths), containers.store, name, change)


async def achange_definition(
    rt: Runtime, store: ContainerStore, name: str, change: Callable[[ContainerSpec], ContainerSpec]
) -> ContainerSpec:
    """Apply ``change`` to a stopped container's definition (connect/disconnect). A running one,
    or one whose start is queued, is refused: its namespace would have to move to another bridge
    under the payload. The unit's state is read under the container's lock, which a start holds
    from reading the definition until its start job is queued (ContainerStore.locked): a start
    racing this one either runs the new definition or makes this one refuse."""
    import asyncio

    from ..errors import ContainerRunning

    async with store.alocked(name):
        if await rt.busy(name) is not None:
            raise ContainerRunning(
                f"container {name} is running: nspawnctl connects and disconnects stopped containers only",
                hint=f"stop it first (nspawnctl stop {name}), then connect it and start it again",
            )

        def rewrite() -> ContainerSpec:
            new = change(store.get(name))
            store.rewrite(new, store.definition(name)[1])  # onto the file as it is: others' keys stay
            return new

        return await asyncio.to_thread(rewrite)


def docker_name(mode: str) -> str:
    """The docker network a container's network mode is part of: veth (nspawnctl's default, a
    NATed link of its own) is docker's ``bridge``, a private namespace without links is ``none``,
    zone:NAME is the network NAME, bridge:IF the host's bridge IF."""
    if mode == "veth":
        return "bridge"
    if mode in ("none", "private"):
        return "none"
    if mode.startswith("zone:"):
        return mode[5:]
    if mode.startswith("bridge:"):
        return mode[7:]
    return "host"


def endpoint_json(paths: Paths | None, spec: ContainerSpec, settings: dict[str, object]) -> dict[str, object]:
    """docker's ``NetworkSettings.Networks`` of a container: its one network, with the network's
    ID, the aliases and driver options it was given, and (running) the address from ``settings``
    (the library's NetworkSettings: IPAddress, IPPrefixLen, Gateway)."""
    zone_name = spec.network[5:] if spec.network.startswith("zone:") else None
    decl = by_zone(paths, zone_name) if paths is not None and zone_name else None
    name = decl.name if decl is not None else docker_name(spec.network)
    return {
        name: {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": builtins.list(spec.settings.network_aliases) or None,
            "MacAddress": "",
            "DriverOpts": dict(spec.settings.network_driver_opts) or None,
            "NetworkID": decl.id if decl is not None else zone_id(name),
            "EndpointID": "",
            "Gateway": settings.get("Gateway") or "",
            "IPAddress": settings.get("IPAddress") or "",
            "IPPrefixLen": settings.get("IPPrefixLen") or 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": [spec.name, *spec.settings.network_aliases] if zone_name else None,
        }
    }
