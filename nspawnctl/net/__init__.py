"""Container networking: a netns per container, veth or zone links, addresses, DNS, published ports.

The API the run hook, the CLI and inspect use:

- ``up(paths, spec)`` / ``down(paths, name)``: build / remove a container's network (veth or
  ``zone:NAME`` only; other modes are nspawn's own business). Root only; sync (uses ``ip``,
  ``nsenter``, ``nft`` and, for TCP ports, its own D-Bus connection: do not call it from a
  running event loop).
- ``state(name)``: what ``up`` built (address, links, ports), for inspect/ps.
- ``check_ports(paths, spec)``: a cheap early check that the published ports are free.
- ``networkd_running()`` and ``default_network(explicit, ports)``: the default network mode.
- ``netns_name(name)`` / ``netns_path(name)``: what ``nsenter --net=`` enters before nspawn runs.
"""

from __future__ import annotations

from .detect import NO_NETWORKD, default_network, networkd_running
from .names import bridge_name, netns_name, netns_path, veth_name, zone_port_name
from .ports import check_ports
from .setup import down, up
from .statefile import NetState
from .statefile import load as state

__all__ = [
    "NO_NETWORKD",
    "NetState",
    "bridge_name",
    "check_ports",
    "default_network",
    "down",
    "netns_name",
    "netns_path",
    "networkd_running",
    "state",
    "up",
    "veth_name",
    "zone_port_name",
]
