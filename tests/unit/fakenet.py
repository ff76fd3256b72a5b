"""A fake kernel and ``nft`` for the network layer's unit tests (test_net.py), in a module of
its own: it imports nothing of the zones' code, so a test can check in a fresh interpreter
that a plain veth's up and down never load it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nspawnctl.config import Paths
from nspawnctl.errors import NetworkError


class FakeIp:
    """Just enough of the kernel (kernel.Kernel's methods) and of ``nft``: links, bridges and
    networkd's addresses. Every change is recorded as the ``ip``/``nft`` command doing the same."""

    def __init__(self, netns_dir: Path, addresses: dict[str, str] | None = None) -> None:
        self.netns_dir = netns_dir
        self.addresses = {"ve-": "192.168.5.17/28", "vz-": "10.0.7.1/24"} if addresses is None else addresses
        self.calls: list[list[str]] = []
        self.links: set[str] = set()
        self.up: set[str] = set()
        self.masters: dict[str, set[str]] = {}
        self.elements: set[str] = set()  # keys in networkd's nft map
        self.ns: str | None = None  # the netns being built
        self.fail: Callable[[list[str]], bool] = lambda argv: False
        self.opened = 0  # Kernel() calls, each closed again
        self.closed = 0

    # the Kernel class: setup.Kernel() returns this fake
    def __call__(self) -> FakeIp:
        self.opened += 1
        return self

    def __enter__(self) -> FakeIp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed += 1

    def _do(self, *argv: str) -> None:
        self.calls.append(list(argv))
        if self.fail(list(argv)):
            raise NetworkError(f"{' '.join(argv)}: boom")

    def netns_add(self, name: str) -> None:
        self._do("ip", "netns", "add", name)
        (self.netns_dir / name).touch(exist_ok=False)
        self.ns = name

    def netns_del(self, name: str) -> None:
        self._do("ip", "netns", "del", name)
        (self.netns_dir / name).unlink()

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def links_of_master(self, bridge: str) -> list[str]:
        return sorted(self.masters.get(bridge, ()))

    def add_bridge(self, name: str) -> None:
        self._do("ip", "link", "add", name, "type", "bridge")
        self.links.add(name)
        self.up.add(name)

    def add_veth(self, name: str, netns: str, peer_mac: str | None = None) -> None:
        mac = ["address", peer_mac] if peer_mac else []
        self._do("ip", "link", "add", name, "type", "veth", "peer", "name", "host0", *mac, "netns", netns)
        if name in self.links:
            raise NetworkError(f"cannot create veth {name}: File exists")
        self.links.add(name)
        self.up.add(name)

    def set_up(self, name: str) -> None:
        self._do("ip", "link", "set", name, "up")
        self.up.add(name)

    def set_master(self, name: str, bridge: str) -> None:
        self._do("ip", "link", "set", name, "master", bridge)
        self.masters.setdefault(bridge, set()).add(name)

    def del_link(self, name: str) -> None:
        self._do("ip", "link", "del", name)
        if name not in self.links:
            raise NetworkError(f"delete link {name}: No such device")
        self.links.discard(name)
        self.masters.pop(name, None)
        for ports_ in self.masters.values():
            ports_.discard(name)

    def ns_address(self, iface: ipaddress.IPv4Interface) -> None:
        self._do("ip", "-n", str(self.ns), "addr", "add", str(iface), "dev", "host0")

    def ns_default_route(self, gateway: ipaddress.IPv4Address) -> None:
        self._do("ip", "-n", str(self.ns), "route", "replace", "default", "via", str(gateway), "dev", "host0")

    def watch_addresses(self) -> None:
        pass

    def wait_address(self, name: str, timeout: float) -> ipaddress.IPv4Interface | None:
        addr = self.addresses.get(name[:3]) if name in self.links and name in self.up else None
        return ipaddress.IPv4Interface(addr) if addr else None

    # nft, through ipcmd.run
    def nft(self, argv: list[str], input: str | None = None) -> str:
        self.calls.append(argv)
        if self.fail(argv):
            raise NetworkError(f"{' '.join(argv)}: boom")
        a = argv
        if a[:3] == ["nft", "create", "element"]:
            key = a[-1].split(":")[0].strip("{ ")
            if key in self.elements:
                raise NetworkError(f"{' '.join(argv)}: Error: Could not process rule: File exists")
            self.elements.add(key)
        elif a[:3] == ["nft", "delete", "element"]:
            self.elements.discard(a[-1].strip("{ }"))
        return ""

    def ran(self, *words: str) -> bool:
        return any(c[: len(words)] == list(words) for c in self.calls)



def fake_network(tmp: Path, setattr: Callable[[Any, str, Any], None]) -> tuple[Paths, FakeIp]:
    """The network layer on FakeIp, /run, netns and the pool under ``tmp``: ``setattr`` is
    monkeypatch.setattr (or setattr itself in a process of its own)."""
    from nspawnctl.net import files, ipcmd, names, setup, statefile

    run_dir, netns_dir, pool = tmp / "run", tmp / "netns", tmp / "pool"
    netns_dir.mkdir()
    setattr(statefile, "RUN_DIR", run_dir)
    setattr(names, "NETNS_DIR", netns_dir)
    resolv = tmp / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\nsearch example.org\n")
    setattr(files, "HOST_RESOLV", resolv)
    setattr(files, "UPLINK_RESOLV", tmp / "none")
    fake = FakeIp(netns_dir)
    setattr(ipcmd, "run", fake.nft)
    setattr(setup, "Kernel", fake)
    return Paths(pool=pool), fake
