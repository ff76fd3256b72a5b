"""Container networking: a netns per container, veth or zone links, addresses, DNS, published ports.

The API the run hook, the CLI and inspect use:

- ``up(paths, spec, unit)`` / ``down(paths, name, invocation=None)``: build / remove a
  container's network (veth or ``zone:NAME`` only; other modes are nspawn's own business), from
  the container unit's ExecStartPre / ExecStopPost (``down`` gets that run's $INVOCATION_ID).
  Root only; sync (netlink in-process, ``nft`` for UDP ports and, for TCP ports, its own D-Bus
  connection: do not call it from a running event loop).
- ``state(name)``: what ``up`` built (address, links, ports), for inspect/ps.
- ``check_ports(paths, spec)``: a cheap early check that the published ports are free.
- ``networkd_running()`` and ``default_network(explicit, ports, name=None)``: the default network
  mode, and the notice to print when it is the host's (``no_networkd_notice(name)``).
- ``netns_name(name)`` / ``netns_path(name)``: what ``nsenter --net=`` enters before nspawn runs.
"""

from __future__ import annotations

from .detect import NO_NETWORKD, default_network, networkd_running, no_networkd_notice
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
    "no_networkd_notice",
    "state",
    "up",
    "veth_name",
    "zone_port_name",
]
