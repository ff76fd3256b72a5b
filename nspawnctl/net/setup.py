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
from typing import TYPE_CHECKING, Any

from ..errors import NetworkError
from . import statefile
from .kernel import Kernel
from .names import bridge_name, netns_name, netns_path, veth_name, zone_port_name
from .statefile import NetState

if TYPE_CHECKING:
    from ..config import Paths
    from ..spec import ContainerSpec

# Loaded where used (ports, zones, DNS files, the spec's rules, logging): a teardown (the post
# hook, the end of a foreground run) needs only the state file and netlink.


def _debug(msg: str, *args: object) -> None:
    import logging

    logging.getLogger(__name__).debug(msg, *args)


ADDRESS_TIMEOUT = 10.0  # seconds networkd gets to address the host side (it takes ~60 ms)


def up(
    paths: Paths, spec: ContainerSpec, unit: str | None = None, owner: str | None = None
) -> NetState | None:
    """Build ``spec``'s network; None when the container has no network of its own.

    ``unit``: the container's unit running this (its ExecStartPre); the proxies are PartOf= it.
    The state records it and its ``$INVOCATION_ID``, so that a second start of a running container
    (by the other kind of unit) is refused here instead of tearing the running one's network down,
    and a ``down`` from another run leaves this one alone.

    ``owner``: who builds it when that is not the unit's own ExecStartPre but the command that
    starts the unit next (a foreground ``run --rm``, which also tears it down: see
    client._attached); recorded instead of ``$INVOCATION_ID`` (the caller's, if it runs in a unit).

    Idempotent within one run: a complete network built for the same spec by the same invocation
    is returned as it is. Anything else left behind (a killed hook, a teardown that failed, a spec
    changed meanwhile) is removed and built anew. On failure everything made so far is undone.
    """
    from ..spec import owns_netns

    if not owns_netns(spec.network):
        if spec.ports:
            from . import ports

            ports.check_ports(paths, spec)  # raises: -p needs veth or a zone
        return None
    invocation = owner or os.environ.get("INVOCATION_ID") or None
    existing = statefile.load(spec.name)
    if existing is not None and existing.invocation != invocation:
        _refuse_if_in_use(existing, unit)
    elif existing is not None and _complete(existing) and _matches(existing, spec):
        return existing
    with Kernel() as kernel:
        _down(paths, spec.name, kernel)
        if spec.ports:  # the ports module (nft, socket units) loads only for -p
            from . import ports

            ports.check_ports(paths, spec)
        return _up(paths, spec, unit, invocation, kernel)


def _up(
    paths: Paths, spec: ContainerSpec, unit: str | None, invocation: str | None, kernel: Kernel
) -> NetState:
    from ..spec import network_zone

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
        _build(paths, spec, st, unit, kernel)
    except BaseException:
        _down(paths, spec.name, kernel)
        raise
    return st


def _complete(st: NetState) -> bool:
    if not st.address or not os.path.exists(netns_path(st.name)):
        return False
    with Kernel() as kernel:
        return kernel.link_exists(st.host_link)


def _matches(st: NetState, spec: ContainerSpec) -> bool:
    """Built for this spec: a state from before an edit of network or ports is rebuilt."""
    from ..spec import network_zone

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


def _build(paths: Paths, spec: ContainerSpec, st: NetState, unit: str | None, kernel: Kernel) -> None:
    """All in this process, over netlink: no ``ip`` process runs (ports.publish may run ``nft``)."""
    from . import files

    ns = st.netns
    kernel.netns_add(ns)  # lo up, ip_unprivileged_port_start=0 (netns.SYSCTLS)
    kernel.watch_addresses()  # before the link has carrier: networkd's address is an event then
    if st.zone:
        from . import zone

        zone.join(kernel, st.zone, st.host_link, ns, spec.settings.mac_address)
        side = bridge_name(st.zone)
    else:
        # both ends up: carrier, networkd addresses the host side now
        kernel.add_veth(st.host_link, ns, spec.settings.mac_address)
        side = st.host_link
    gateway = wait_address(kernel, side)
    if st.zone:
        addr = zone.lease(paths, st.zone, spec.name, gateway)
    else:  # a veth's /28 holds only the host side and us: host address + 1
        from .addresses import pick_address

        addr = pick_address(gateway, set())
    st.address, st.gateway, st.prefixlen = str(addr), str(gateway.ip), gateway.network.prefixlen
    statefile.save(st)
    kernel.ns_address(ipaddress.IPv4Interface(f"{addr}/{gateway.network.prefixlen}"))
    kernel.ns_default_route(gateway.ip)
    resolv = files.resolv_conf()
    if resolv is not None and not spec.settings.writes_resolv:  # --dns: written at create
        # a booted image's symlink (-> its own resolver's stub) is its choice; an app container has
        # no resolver running, so a symlink there is replaced (never followed) by the file
        files.write_in_root(paths.pool / spec.name, "etc", "resolv.conf", resolv, keep_symlink=spec.boot)
    if spec.ports:
        from . import ports

        ports.publish(st, spec.ports, unit)
    statefile.save(st)


def wait_address(kernel: Kernel, ifname: str, timeout: float | None = None) -> ipaddress.IPv4Interface:
    """The IPv4 address systemd-networkd gives ``ifname`` once it has carrier (from netlink's
    address events, no polling)."""
    started = time.monotonic()
    addr = kernel.wait_address(ifname, ADDRESS_TIMEOUT if timeout is None else timeout)
    if addr is None:
        raise NetworkError(
            f"{ifname} got no IPv4 address from systemd-networkd",
            hint="check that systemd-networkd runs and manages ve-*/vz-* links "
            "(80-container-ve.network, 80-container-vz.network): networkctl status " + ifname,
        )
    _debug("%s: networkd's address %s after %.0f ms", ifname, addr, (time.monotonic() - started) * 1000)
    return addr


def down(paths: Paths, name: str, invocation: str | None = None) -> None:
    """Remove everything ``up`` made for ``name``; idempotent, and best effort to the end.

    ``invocation``: the ``$INVOCATION_ID`` of the unit run tearing down (its ExecStopPost); when
    the network was built by another run (the container runs under another unit, which a second
    start did not replace), it is left alone."""
    st = statefile.load(name)
    if st is not None and invocation and st.invocation and st.invocation != invocation:
        _debug(
            "network of %s belongs to %s (invocation %s), not to %s: left alone",
            name,
            st.unit,
            st.invocation,
            invocation,
        )
        return
    with Kernel() as kernel:
        _down(paths, name, kernel, st)


def _down(paths: Paths, name: str, kernel: Kernel, st: NetState | None = None) -> None:
    st = st or statefile.load(name)
    if st is not None and (st.ports or st.proxy_units or st.nft_elements):
        from . import ports

        ports.unpublish(st)
    # a zone's member; or, without a record, any zone may hold a lease (none there: no zones' code)
    if (st is not None and st.zone) or (st is None and statefile.zones_dir().is_dir()):
        from . import zone

        for z in [st.zone] if st and st.zone else zone.zones_with(name):
            zone.leave(kernel, paths, z, name, zone_port_name(name))
    # the host side explicitly: a netns dies asynchronously, and its veth with it, so a restart's
    # new ve-NAME could find the old one still there
    for link in [st.host_link] if st else [veth_name(name), zone_port_name(name)]:
        _best_effort(kernel.del_link, link)
    if os.path.lexists(netns_path(name)):
        _best_effort(kernel.netns_del, netns_name(name))
    statefile.remove(name)


def _best_effort(fn: Any, arg: str) -> None:
    """Teardown goes on past what is gone already or fails: it must always finish."""
    try:
        fn(arg)
    except NetworkError as e:
        _debug("%s", e.message)
