"""Running ``ip``, ``nft`` and ``nsenter``: argv lists only, failures become NetworkError.

Tests replace :func:`run` (callers look it up on this module at call time).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any

from ..errors import NetworkError

HINTS = {
    "ip": "install iproute2",
    "nft": "install nftables (UDP ports are published through networkd's nft map)",
    "nsenter": "install util-linux",
}


def run(argv: list[str], input: str | None = None) -> str:
    """Run ``argv``; its stdout, or NetworkError carrying the command and its stderr."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError(f"{argv[0]} not found", hint=HINTS.get(argv[0])) from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{' '.join(argv)} timed out") from None
    if proc.returncode != 0:
        err = proc.stderr.strip() or f"exit status {proc.returncode}"
        raise NetworkError(f"{' '.join(argv)}: {err}")
    return proc.stdout


def try_run(argv: list[str], input: str | None = None) -> bool:
    """Best effort, for teardown: what is already gone is fine."""
    try:
        run(argv, input)
    except NetworkError:
        return False
    return True


def link_exists(ifname: str, netns: str | None = None) -> bool:
    return _links(["dev", ifname], netns) != []


def links_of_master(bridge: str) -> list[str]:
    """Interfaces enslaved to ``bridge`` (none when the bridge is gone)."""
    return [link["ifname"] for link in _links(["master", bridge])]


def _links(select: list[str], netns: str | None = None) -> list[dict[str, Any]]:
    ns = ["-n", netns] if netns else []
    try:
        out = run(["ip", *ns, "-j", "link", "show", *select])
    except NetworkError:
        return []
    return list(json.loads(out or "[]"))


def ipv4_address(ifname: str) -> ipaddress.IPv4Interface | None:
    """The first global IPv4 address of ``ifname`` (networkd's, not the 169.254/16 link-local one)."""
    try:
        out = run(["ip", "-j", "-4", "addr", "show", "dev", ifname])
    except NetworkError:
        return None
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            iface = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            if not iface.ip.is_link_local:
                return iface
    return None
