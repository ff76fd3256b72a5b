"""Building and removing a container's network: netns, links, addresses, DNS, hosts, ports.

nspawnctl builds the netns itself, before nspawn runs (nspawn then runs inside it via nsenter),
because app containers have nothing inside to bring ``host0`` up, and their network must be
complete before the payload's first instruction. systemd-networkd still does the host side:
the address of ve-NAME / vz-ZONE (from 80-container-ve/vz.network) and masquerading.
"""

from __future__ import annotations

import ipaddress
import os
import time

from ..config import Paths
from ..errors import NetworkError
from ..spec import ContainerSpec, network_zone, owns_netns
from . import files, ipcmd, ports, statefile, zone
from .names import bridge_name, netns_name, netns_path, veth_name, zone_port_name
from .statefile import NetState

ADDRESS_TIMEOUT = 10.0  # seconds networkd gets to address the host side (it takes ~60 ms)


def up(paths: Paths, spec: ContainerSpec, unit: str | None = None) -> NetState | None:
    """Build ``spec``'s network; None when the container has no network of its own.

    ``unit``: the container's unit, if known; only named in the proxies' descriptions.

    Idempotent: a complete network is returned as it is; leftovers of one that was never torn
    down (a killed hook) are removed first. On failure everything made so far is undone.
    """
    if not owns_netns(spec.network):
        if spec.ports:
            ports.check_ports(paths, spec)  # raises: -p needs veth or a zone
        return None
    existing = statefile.load(spec.name)
    if (
        existing
        and existing.address
        and os.path.exists(netns_path(spec.name))
        and ipcmd.link_exists(existing.host_link)
    ):
        return existing
    down(paths, spec.name)
    ports.check_ports(paths, spec)
    zone_name = network_zone(spec.network)
    st = NetState(
        name=spec.name,
        network=spec.network,
        netns=netns_name(spec.name),
        host_link=zone_port_name(spec.name) if zone_name else veth_name(spec.name),
        zone=zone_name,
    )
    statefile.save(st)  # from here on, down() knows what to undo
    try:
        _build(paths, spec, st, unit)
    except BaseException:
        down(paths, spec.name)
        raise
    return st


def _build(paths: Paths, spec: ContainerSpec, st: NetState, unit: str | None) -> None:
    ns = st.netns
    ipcmd.run(["ip", "netns", "add", ns])
    ipcmd.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # root inside a user namespace is not root for the netns (owned by the host's userns): let it
    # bind port 80 anyway, as docker does
    ipcmd.run(
        ["nsenter", f"--net={netns_path(spec.name)}", "tee", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        input="0\n",
    )
    if st.zone:
        zone.join(st.zone, st.host_link, ns)
        side = bridge_name(st.zone)
    else:
        ipcmd.run(["ip", "link", "add", st.host_link, "type", "veth", "peer", "name", "host0", "netns", ns])
        ipcmd.run(["ip", "link", "set", st.host_link, "up"])
        side = st.host_link
    ipcmd.run(["ip", "-n", ns, "link", "set", "host0", "up"])  # carrier: networkd addresses the host side now
    gateway = wait_address(side)
    # a veth's /28 holds only the host side and us: host address + 1
    addr = zone.lease(paths, st.zone, spec.name, gateway) if st.zone else zone.pick_address(gateway, set())
    st.address, st.gateway, st.prefixlen = str(addr), str(gateway.ip), gateway.network.prefixlen
    statefile.save(st)
    ipcmd.run(["ip", "-n", ns, "addr", "add", f"{addr}/{gateway.network.prefixlen}", "dev", "host0"])
    ipcmd.run(["ip", "-n", ns, "route", "replace", "default", "via", str(gateway.ip), "dev", "host0"])
    resolv = files.resolv_conf()
    if resolv is not None:
        files.write_in_root(paths.pool / spec.name, "etc", "resolv.conf", resolv, keep_symlink=True)
    ports.publish(st, spec.ports, unit)
    statefile.save(st)


def wait_address(ifname: str, timeout: float | None = None) -> ipaddress.IPv4Interface:
    """The IPv4 address systemd-networkd gives ``ifname`` once it has carrier."""
    deadline = time.monotonic() + (ADDRESS_TIMEOUT if timeout is None else timeout)
    delay = 0.01
    while True:
        addr = ipcmd.ipv4_address(ifname)
        if addr is not None:
            return addr
        if time.monotonic() >= deadline:
            raise NetworkError(
                f"{ifname} got no IPv4 address from systemd-networkd",
                hint="check that systemd-networkd runs and manages ve-*/vz-* links "
                "(80-container-ve.network, 80-container-vz.network): networkctl status " + ifname,
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def down(paths: Paths, name: str) -> None:
    """Remove everything ``up`` made for ``name``; idempotent, and best effort to the end."""
    st = statefile.load(name)
    if st is not None:
        ports.unpublish(st)
    zones = [st.zone] if st and st.zone else ([] if st else zone.zones_with(name))
    for z in zones:
        zone.leave(paths, z, name, zone_port_name(name))
    for link in [st.host_link] if st else [veth_name(name), zone_port_name(name)]:
        if ipcmd.link_exists(link):
            ipcmd.try_run(["ip", "link", "del", link])
    if os.path.exists(netns_path(name)):
        ipcmd.try_run(["ip", "netns", "del", netns_name(name)])
    statefile.remove(name)
