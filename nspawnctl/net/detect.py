"""Is systemd-networkd running, and which network does a new container get by default?"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

NETIF_STATE = Path("/run/systemd/netif/state")
PROC = Path("/proc")
NO_NETWORKD = "systemd-networkd is not running: container shares the host's network (use --network to choose)"


def no_networkd_notice(name: str | None = None) -> str:
    """NO_NETWORKD, naming the container when it is known."""
    return NO_NETWORKD.replace("container", f"container {name}", 1) if name else NO_NETWORKD


def networkd_running() -> bool:
    """networkd's state file exists AND a systemd-networkd process is alive.

    Read from /proc, not asked over D-Bus: this runs on every ``create``/``run`` (keep it cheap)
    and must also answer where no bus connection is at hand. The state file alone is not enough
    (it outlives a stopped networkd in /run); the process alone may be another netns's networkd
    only in exotic setups, which the state file (ours, in our /run) rules out.
    """
    if not NETIF_STATE.exists():
        return False
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            # comm is cut at 15 characters: "systemd-network"; argv[0] tells networkd from others
            if (PROC / entry.name / "comm").read_text().strip() != "systemd-network":
                continue
            argv0 = (PROC / entry.name / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:  # the process ended meanwhile
            continue
        if argv0.endswith(b"systemd-networkd"):
            return True
    return False


def default_network(
    explicit: str | None, ports: Sequence[object], name: str | None = None
) -> tuple[str, str | None]:
    """(network, notice): an explicit choice wins; ``-p`` implies veth; else veth when networkd
    will address and masquerade the link, else the host's network, with a notice saying so
    (naming container ``name`` when given)."""
    if explicit:
        return explicit, None
    if ports or networkd_running():
        return "veth", None
    return "host", no_networkd_notice(name)
