"""Zones: a bridge ``vz-ZONE`` shared by several containers, with addresses nspawnctl hands out.

networkd gives the bridge a /24 (80-container-vz.network) and runs a DHCP server on it, but an
app container has no DHCP client; so nspawnctl leases addresses itself, in
/run/nspawnctl/net/zones/ZONE.json, under an flock of ZONE.lock, and writes every member's
/etc/hosts from the leases so members reach each other by name. (Zone files are in a subdirectory:
a container named ``zone-x`` must not collide with zone ``x``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Paths
from ..errors import NetworkError
from ..store.files import write_json
from . import files
from .addresses import pick_address
from .names import bridge_name, netns_path
from .statefile import zones_dir

if TYPE_CHECKING:
    from .kernel import Kernel


@dataclass
class ZoneFile:
    """A zone's state: its subnet, whether nspawnctl made its bridge, and the leases."""

    zone: str
    subnet: str | None = None  # the bridge's network when the leases were made
    created_bridge: bool = False  # nspawnctl made vz-ZONE, so it removes it after the last member
    leases: dict[str, str] = field(default_factory=dict)  # container name -> IPv4 address


@contextlib.contextmanager
def locked(zone: str) -> Iterator[ZoneFile]:
    """The zone's file, read and written under its lock: allocation never races another ``up``.

    The lock file goes with the zone's last member; so a lock taken on a file that was unlinked
    meanwhile is retried on the new one, or two holders could run at once."""
    d = zones_dir()
    d.mkdir(parents=True, exist_ok=True)
    lock, data = d / f"{zone}.lock", d / f"{zone}.json"
    fd = _lock(lock)
    try:
        zf = _load(zone)
        yield zf
        if zf.leases or zf.created_bridge:
            write_json(data, asdict(zf))
        else:
            data.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _lock(path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def read(zone: str) -> ZoneFile:
    """The zone's file as it is now, without its lock (for listing; empty when there is none)."""
    return _load(zone)


def _load(zone: str) -> ZoneFile:
    try:
        data = json.loads((zones_dir() / f"{zone}.json").read_text())
    except (FileNotFoundError, ValueError):
        return ZoneFile(zone)
    return ZoneFile(zone, data.get("subnet"), bool(data.get("created_bridge")), dict(data.get("leases", {})))


def zone_subnets(d: Path | None = None) -> dict[str, str | None]:
    """The zones with a state file now (in ``d``, zones_dir() by default), with their subnets
    (None when unknown): docker's networks, as the API lists them."""
    d = zones_dir() if d is None else d
    out: dict[str, str | None] = {}
    if not d.is_dir():
        return out
    for path in sorted(d.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        subnet = data.get("subnet") if isinstance(data, dict) else None
        out[path.stem] = subnet if isinstance(subnet, str) else None
    return out


def zones_with(name: str) -> list[str]:
    """Zones where ``name`` holds a lease (``down`` without a state file)."""
    d = zones_dir()
    return [p.stem for p in sorted(d.glob("*.json")) if name in _load(p.stem).leases] if d.is_dir() else []


def join(kernel: Kernel, zone: str, port: str, netns: str, mac: str | None = None) -> None:
    """Create vz-ZONE if missing and plug a new veth ``port`` (peer host0 in ``netns``) into it.

    Under the zone lock, so that a member leaving at the same time never removes the bridge
    this one is joining (it only removes a bridge without ports).

    The port is plugged in with carrier (both ends up): a port without carrier takes the bridge's
    carrier away for a moment, and systemd-networkd 252 (Debian 12) then drops the bridge's address and
    picks a new /24 once carrier is back, after members may have read the old one."""
    bridge = bridge_name(zone)
    with locked(zone) as zf:
        if not kernel.link_exists(bridge):
            kernel.add_bridge(bridge)  # made up
            zf.created_bridge = True
        else:
            kernel.set_up(bridge)
        kernel.add_veth(port, netns, mac)  # both ends up; ``mac``: host0's (--mac-address)
        kernel.set_master(port, bridge)


def lease(paths: Paths, zone: str, name: str, gateway: ipaddress.IPv4Interface) -> ipaddress.IPv4Address:
    """Allocate ``name``'s address (its previous one if still free) and rewrite the members' hosts files."""
    with locked(zone) as zf:
        addr = allocate(zf, name, gateway, alive=lambda n: os.path.exists(netns_path(n)))
        write_hosts(paths, zf)
    return addr


def leave(kernel: Kernel, paths: Paths, zone: str, name: str, port: str | None) -> None:
    """Drop ``name``'s lease and port, update the others' hosts files, remove a bridge we made once empty."""
    bridge = bridge_name(zone)
    with locked(zone) as zf:
        if port and kernel.link_exists(port):
            _try(kernel.del_link, port)
        if zf.leases.pop(name, None) is not None:
            write_hosts(paths, zf)
        if zf.created_bridge and not kernel.links_of_master(bridge):
            _try(kernel.del_link, bridge)
            zf.created_bridge = False
            zf.leases.clear()


def _try(fn: Callable[[str], None], arg: str) -> None:
    """Best effort, for teardown: what is already gone is fine."""
    try:
        fn(arg)
    except NetworkError:
        pass


def allocate(
    zf: ZoneFile, name: str, gateway: ipaddress.IPv4Interface, alive: Callable[[str], bool]
) -> ipaddress.IPv4Address:
    """The lowest free address after the bridge's (then below it), never one another member holds.

    Leases of members whose netns is gone (a crash skipped their ``down``) are dropped first, and
    so are leases from another subnet (the bridge was recreated and networkd chose a new /24)."""
    net = gateway.network
    leases = {
        n: a for n, a in zf.leases.items() if ipaddress.IPv4Address(a) in net and (n == name or alive(n))
    }
    taken = {ipaddress.IPv4Address(a) for n, a in leases.items() if n != name}
    own = leases.get(name)
    if own is not None and _usable(ipaddress.IPv4Address(own), gateway, taken):
        addr = ipaddress.IPv4Address(own)
    else:
        addr = pick_address(gateway, taken)
    leases[name] = str(addr)
    zf.leases, zf.subnet = leases, str(net)
    return addr


def _usable(
    addr: ipaddress.IPv4Address, gateway: ipaddress.IPv4Interface, taken: set[ipaddress.IPv4Address]
) -> bool:
    net = gateway.network
    ends = (net.network_address, net.broadcast_address)
    return addr in net and addr not in ends and addr != gateway.ip and addr not in taken


def write_hosts(paths: Paths, zf: ZoneFile) -> None:
    """Every member's /etc/hosts names every member, then its own --add-host lines (called with
    the zone locked)."""
    own = {member: _own_hosts(paths, member) for member in zf.leases}
    content = files.hosts_file(zf.leases)
    aliases = "".join(
        f"{zf.leases[m]}\t{' '.join(names)}\n" for m, (names, _) in sorted(own.items()) if names
    )
    for member, (_, added) in own.items():
        extra = "".join(f"{ip}\t{host}\n" for host, ip in added)
        files.write_in_root(paths.pool / member, "etc", "hosts", content + aliases + extra)


def added_hosts(paths: Paths, name: str) -> list[tuple[str, str]]:
    """The container's --add-host entries (``AddHost=`` of its .nspawn definition), which the
    zone's rewrite of /etc/hosts keeps; none when the definition is missing or unreadable."""
    return _own_hosts(paths, name)[1]


def _own_hosts(paths: Paths, name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The container's ``--network-alias`` names (``NetworkAlias=``, which every member's hosts
    file gives its address: docker's DNS aliases) and its ``--add-host`` entries (``AddHost=``,
    its own file only), from its .nspawn definition; none when it is missing or unreadable."""
    from ..errors import NspawnctlError
    from ..nspawnfile import OWN_SECTION, NspawnFile
    from ..runopts import parse_add_host, parse_network_alias

    for base in (paths.settings, paths.runtime_settings):
        path = base / f"{name}.nspawn"
        if path.is_file():
            try:
                f = NspawnFile.load(path)
                return (
                    [parse_network_alias(v) for v in f.get_all(OWN_SECTION, "NetworkAlias")],
                    [parse_add_host(v) for v in f.get_all(OWN_SECTION, "AddHost")],
                )
            except (OSError, NspawnctlError):
                return [], []
    return [], []
