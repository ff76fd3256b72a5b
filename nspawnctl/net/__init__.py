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

from importlib import import_module

TYPE_CHECKING = False  # typing's costs an import; mypy knows this name
if TYPE_CHECKING:
    from .detect import NO_NETWORKD, default_network, networkd_running, no_networkd_notice
    from .names import bridge_name, netns_name, netns_path, veth_name, zone_port_name
    from .ports import check_ports
    from .setup import down, up
    from .statefile import NetState
    from .statefile import load as state

# Loaded on first use: the hooks and the CLI each need a few of these, and the whole of the
# network code (netlink, nft, zones) costs more to import than a hook may take.
_WHERE = {
    "NO_NETWORKD": ("detect", "NO_NETWORKD"),
    "default_network": ("detect", "default_network"),
    "networkd_running": ("detect", "networkd_running"),
    "no_networkd_notice": ("detect", "no_networkd_notice"),
    "bridge_name": ("names", "bridge_name"),
    "netns_name": ("names", "netns_name"),
    "netns_path": ("names", "netns_path"),
    "veth_name": ("names", "veth_name"),
    "zone_port_name": ("names", "zone_port_name"),
    "check_ports": ("ports", "check_ports"),
    "down": ("setup", "down"),
    "up": ("setup", "up"),
    "NetState": ("statefile", "NetState"),
    "state": ("statefile", "load"),
}


def __getattr__(name: str) -> object:
    try:
        module, attr = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(import_module(f".{module}", __name__), attr)


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
