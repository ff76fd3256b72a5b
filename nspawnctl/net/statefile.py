"""What ``up`` built for a container, in /run/nspawnctl/net/NAME.json (gone after a reboot, as the
network itself is): ``down`` undoes exactly that, and inspect/ps/check_ports read it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..store.files import write_json

RUN_DIR = Path("/run/nspawnctl/net")  # tests point it elsewhere


@dataclass
class NetState:
    """What a container's network is made of, saved so a later command can tear it down."""

    name: str
    network: str  # veth | zone:NAME
    netns: str  # the netns name, in /run/netns
    host_link: str  # ve-NAME or vb-NAME
    address: str | None = None  # the container's IPv4 address on host0
    gateway: str | None = None  # the host side's address: ve-NAME's, or the bridge's
    prefixlen: int | None = None
    zone: str | None = None
    ports: list[str] = field(default_factory=list)  # PortMapping strings, as published
    proxy_units: list[str] = field(default_factory=list)  # socket and service units, TCP ports
    nft_elements: list[str] = field(default_factory=list)  # "udp . HOSTPORT" keys in networkd's map
    unit: str | None = None  # the container's unit that ran up()
    invocation: str | None = None  # its $INVOCATION_ID then: a later run of any unit has another


def zones_dir() -> Path:
    """Where the zones' own state files are (net/zone.py): here so that a teardown without a
    record can see whether any zone exists before it loads the zones' code."""
    return RUN_DIR / "zones"


def state_path(name: str) -> Path:
    return RUN_DIR / f"{name}.json"


def load(name: str) -> NetState | None:
    try:
        data = json.loads(state_path(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    known = NetState.__dataclass_fields__
    return NetState(**{k: v for k, v in data.items() if k in known})


def save(state: NetState) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    write_json(state_path(state.name), asdict(state))


def remove(name: str) -> None:
    state_path(name).unlink(missing_ok=True)


def all_states() -> list[NetState]:
    """Every container's state (zone files live in a subdirectory, so they are not matched)."""
    out = []
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []:
        st = load(path.stem)
        if st is not None:
            out.append(st)
    return out
