"""The kernel objects of container networks, made over netlink in this process: what one ``ip``
process per step did before (a container start ran about ten of them).

One :class:`Kernel` per ``up``/``down``: a netlink socket in the host's netns, and while building,
one in the container's. Tests replace the class (``setup.Kernel``) with a fake of the same methods.
"""

from __future__ import annotations

import ipaddress
import os
import time

from ..errors import NetworkError
from . import names, netns
from .rtnl import RTM_NEWADDR, RTMGRP_IPV4_IFADDR, Rtnl, global_ipv4, new_bridge, new_veth, parse_addr

PEER = "host0"  # the container side, as nspawn names it


class Kernel:
    def __init__(self) -> None:
        self.host = Rtnl()
        self.ns: Rtnl | None = None  # the container netns's, once netns_add made it
        self.monitor: Rtnl | None = None

    def close(self) -> None:
        for sock in (self.host, self.ns, self.monitor):
            if sock is not None:
                sock.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # namespaces
    def netns_add(self, name: str) -> None:
        """Create netns ``name`` (its sysctls set) with its loopback up."""
        self.ns = netns.create(name)
        self.ns.set_up("lo")

    def netns_del(self, name: str) -> None:
        netns.delete(name)

    # host links
    def link_exists(self, name: str) -> bool:
        return self.host.link(name) is not None

    def links_of_master(self, bridge: str) -> list[str]:
        """Interfaces enslaved to ``bridge`` (none when the bridge is gone)."""
        link = self.host.link(bridge)
        if link is None:
            return []
        return [other.name for other in self.host.links() if other.master == link.index]

    def add_bridge(self, name: str) -> None:
        self.host.new_link(new_bridge(name), f"cannot create bridge {name}")

    def add_veth(self, name: str, netns_name: str, peer_mac: str | None = None) -> None:
        """Veth ``name`` here, its peer host0 in ``netns_name`` (with address ``peer_mac``, as
        ``aa:bb:..``, when given); both ends up (so it has carrier: networkd addresses a ve- link
        only then), the container's first."""
        mac = None if peer_mac is None else bytes.fromhex(peer_mac.replace(":", ""))
        fd = os.open(names.NETNS_DIR / netns_name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.host.new_link(new_veth(name, PEER, fd, mac), f"cannot create veth {name}")
        finally:
            os.close(fd)
        self._ns().set_up(PEER)
        self.host.set_up(name)

    def set_up(self, name: str) -> None:
        self.host.set_up(name)

    def set_master(self, name: str, bridge: str) -> None:
        self.host.set_master(name, bridge)

    def del_link(self, name: str) -> None:
        self.host.delete_link(name)

    # the container side
    def _ns(self) -> Rtnl:
        if self.ns is None:
            raise NetworkError("no network namespace made yet")
        return self.ns

    def ns_address(self, iface: ipaddress.IPv4Interface) -> None:
        self._ns().add_address(PEER, iface)

    def ns_default_route(self, gateway: ipaddress.IPv4Address) -> None:
        self._ns().replace_default_route(gateway, PEER)

    # networkd's address on the host side
    def watch_addresses(self) -> None:
        """Subscribe to IPv4 address events now, before the link that gets one comes up, so that
        :meth:`wait_address` misses none."""
        if self.monitor is None:
            self.monitor = Rtnl(RTMGRP_IPV4_IFADDR)

    def ipv4_address(self, name: str) -> ipaddress.IPv4Interface | None:
        """The first global IPv4 address of ``name`` (not networkd's 169.254/16 link-local one)."""
        link = self.host.link(name)
        if link is None:
            return None
        return next((a for a in (global_ipv4(x, link.index) for x in self.host.addresses()) if a), None)

    def wait_address(self, name: str, timeout: float) -> ipaddress.IPv4Interface | None:
        """``name``'s global IPv4 address once it has one: looked up once, then taken from the
        address events that arrive; None after ``timeout`` seconds."""
        self.watch_addresses()
        assert self.monitor is not None
        deadline = time.monotonic() + timeout
        index = self.host.index(name)
        found = self.ipv4_address(name)
        while found is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            events = self.monitor.events(left)
            if events is None:  # the kernel dropped events: look again
                found = self.ipv4_address(name)
                continue
            for msg in events:
                if msg.kind == RTM_NEWADDR:
                    found = found or global_ipv4(parse_addr(msg.body), index)
        return found
