"""Building and removing a container's network: netns, links, addresses, DNS, hosts, ports.

nspawnctl builds the netns itself, before nspawn runs (nspawn then runs inside it via nsenter),
because app containers have nothing inside to bring ``host0`` up, and their network must be
complete before the payload's first instruction. systemd-networkd still does the host side:
the address of ve-NAME / vz-ZONE (from 80-container-ve/vz.network) and masquerading.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Any

from ..config import Paths
from ..errors import NetworkError
from ..run.programs import nsenter_binary
from ..spec import ContainerSpec, network_zone, owns_netns
from . import files, ipcmd, ports, statefile, zone
from .names import bridge_name, netns_name, netns_path, veth_name, zone_port_name
from .statefile import NetState

log = logging.getLogger(__name__)

ADDRESS_TIMEOUT = 10.0  # seconds networkd gets to address the host side (it takes ~60 ms)


def up(paths: Paths, spec: ContainerSpec, unit: str | None = None) -> NetState | None:
    """Build ``spec``'s network; None when the container has no network of its own.

    ``unit``: the container's unit running this (its ExecStartPre); the proxies are PartOf= it.
    The state records it and its ``$INVOCATION_ID``, so that a second start of a running container
    (by the other kind of unit) is refused here instead of tearing the running one's network down,
    and a ``down`` from another run leaves this one alone.

    Idempotent within one run: a complete network built for the same spec by the same invocation
    is returned as it is. Anything else left behind (a killed hook, a teardown that failed, a spec
    changed meanwhile) is removed and built anew. On failure everything made so far is undone.
    """
    if not owns_netns(spec.network):
        if spec.ports:
            ports.check_ports(paths, spec)  # raises: -p needs veth or a zone
        return None
    invocation = os.environ.get("INVOCATION_ID") or None
    existing = statefile.load(spec.name)
    if existing is not None and existing.invocation != invocation:
        _refuse_if_in_use(existing, unit)
    elif existing is not None and _complete(existing) and _matches(existing, spec):
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
        unit=unit,
        invocation=invocation,
    )
    statefile.save(st)  # from here on, down() knows what to undo
    try:
        _build(paths, spec, st, unit)
    except BaseException:
        down(paths, spec.name)
        raise
    return st


def _complete(st: NetState) -> bool:
    return bool(st.address) and os.path.exists(netns_path(st.name)) and ipcmd.link_exists(st.host_link)


def _matches(st: NetState, spec: ContainerSpec) -> bool:
    """Built for this spec: a state from before an edit of network or ports is rebuilt."""
    return (
        st.network == spec.network
        and st.zone == network_zone(spec.network)
        and sorted(st.ports) == sorted(str(pm) for pm in spec.ports)
    )


def _refuse_if_in_use(st: NetState, unit: str | None) -> None:
    """Another unit, still running, built this network: the container runs already."""
    if not st.unit or st.unit == unit:  # one unit never runs twice at once: a previous run's leftover
        return
    from ..systemd.bus import run_sync

    async def running(bus: Any) -> bool:
        from ..systemd.manager import Manager

        states = await Manager(bus).states([st.unit or ""])
        state = states.get(st.unit or "")
        return state is not None and state.running

    if run_sync(running):
        raise NetworkError(
            f"container {st.name}'s network is in use by {st.unit}",
            hint=f"the container runs already; stop it first: systemctl stop {st.unit}",
        )


def _build(paths: Paths, spec: ContainerSpec, st: NetState, unit: str | None) -> None:
    ns = st.netns
    ipcmd.run(["ip", "netns", "add", ns])
    ipcmd.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # root inside a user namespace is not root for the netns (owned by the host's userns): let it
    # bind port 80 anyway, as docker does
    ipcmd.run(
        [
            nsenter_binary(),
            f"--net={netns_path(spec.name)}",
            "tee",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        ],
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
        # a booted image's symlink (-> its own resolver's stub) is its choice; an app container has
        # no resolver running, so a symlink there is replaced (never followed) by the file
        files.write_in_root(paths.pool / spec.name, "etc", "resolv.conf", resolv, keep_symlink=spec.boot)
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


def down(paths: Paths, name: str, invocation: str | None = None) -> None:
    """Remove everything ``up`` made for ``name``; idempotent, and best effort to the end.

    ``invocation``: the ``$INVOCATION_ID`` of the unit run tearing down (its ExecStopPost); when
    the network was built by another run (the container runs under another unit, which a second
    start did not replace), it is left alone."""
    st = statefile.load(name)
    if st is not None and invocation and st.invocation and st.invocation != invocation:
        log.debug(
            "network of %s belongs to %s (invocation %s), not to %s: left alone",
            name,
            st.unit,
            st.invocation,
            invocation,
        )
        return
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
