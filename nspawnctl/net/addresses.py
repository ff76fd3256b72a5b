"""Which address a container gets on its link: the first free host after the gateway. Its own
module because a plain veth's container (the default) needs only this of the zones' code
(:mod:`nspawnctl.net.zone`, which leases addresses on a bridge with it), and a foreground ``run``
should not load the rest.
"""

from __future__ import annotations

import ipaddress

from ..errors import NetworkError


def pick_address(
    gateway: ipaddress.IPv4Interface, taken: set[ipaddress.IPv4Address]
) -> ipaddress.IPv4Address:
    """The first free host after the gateway, wrapping around (for a veth: the host side's
    address + 1). Arithmetic on the integers, never a list of the hosts: a /8 has 16.7M of them
    and this runs in a member's start hook under the zone lock; at most len(taken) + 1 steps."""
    net = gateway.network
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    if net.prefixlen >= 31:  # no network/broadcast address in a /31 or /32
        first, last = int(net.network_address), int(net.broadcast_address)
    size = last - first + 1
    start = int(gateway.ip) + 1 - first
    used = {int(a) for a in taken} | {int(gateway.ip)}
    for step in range(min(size, len(used) + 1)):
        h = first + (start + step) % size
        if h not in used:
            return ipaddress.IPv4Address(h)
    raise NetworkError(
        f"no free address left in {gateway.network}",
        hint="remove stopped containers from this zone, or use another zone",
    )
