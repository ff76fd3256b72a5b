"""Names of the kernel objects a container's network is made of: netns and interfaces."""

from __future__ import annotations

import hashlib
from pathlib import Path

NETNS_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts named namespaces
IFNAMSIZ = 16  # the kernel's limit, NUL included: 15 visible characters


def netns_name(name: str) -> str:
    """``nspawnctl-NAME``; a file name in /run/netns, so only names past 255 bytes are shortened."""
    return shorten(f"nspawnctl-{name}", 255)


def netns_path(name: str) -> str:
    return str(NETNS_DIR / netns_name(name))


def veth_name(name: str) -> str:
    """The host side of a plain veth, ``ve-NAME``, as nspawn names it: networkd's 80-container-ve matches."""
    return shorten(f"ve-{name}", IFNAMSIZ - 1)


def zone_port_name(name: str) -> str:
    """The host side of a zone member's veth, ``vb-NAME``, enslaved to ``vz-ZONE``."""
    return shorten(f"vb-{name}", IFNAMSIZ - 1)


def bridge_name(zone: str) -> str:
    """``vz-ZONE``: zone names are at most 12 characters, so this always fits."""
    return f"vz-{zone}"


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits, else its head plus 4 hex digits of its hash: deterministic (``down`` finds
    what ``up`` made from the name alone) and distinct for names that only differ at the end."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:4]
    return text[: limit - 4] + digest
