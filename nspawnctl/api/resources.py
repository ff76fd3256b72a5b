"""docker's shapes for the lifecycle and resource endpoints (Engine API 1.47): stats, events,
networks, volumes, and the ``filters`` query parameter. Pure functions: what the handlers send and
what the unit tests pin down; the numbers come from the library (run/stats.py, run/events.py, the
volume store, the container definitions)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .http import ApiError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..net.networks import NetworkDecl, NetworkRecord
    from ..run.events import Event
    from ..run.stats import Sample
    from ..status import ContainerStatus
    from ..store.volumes import VolumeInfo

ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_filters(raw: str | None, keys: tuple[str, ...]) -> dict[str, list[str]]:
    """docker's ``filters`` parameter: JSON ``{"key": ["v", ...]}`` or the older ``{"key": {"v":
    true}}``; a malformed one or a key outside ``keys`` is a 400 (docker: "invalid filter")."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ApiError(400, "filters: malformed JSON") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "filters: a JSON object is expected")
    out: dict[str, list[str]] = {}
    for key, value in parsed.items():
        if key not in keys:
            raise ApiError(400, f"invalid filter '{key}' (this endpoint takes {', '.join(keys)})")
        if isinstance(value, dict):
            values = [str(k) for k, on in value.items() if on]
        elif isinstance(value, list):
            values = [str(v) for v in value]
        else:
            values = [str(value)]
        out.setdefault(key, []).extend(values)
    return out


def filter_words(filters: dict[str, list[str]]) -> list[str]:
    """The ``KEY=VALUE`` words the library's filter parsers take."""
    return [f"{key}={value}" for key, values in filters.items() for value in values]


# -- stats ---------------------------------------------------------------------------------


def host_cpu_ns(proc_stat: str, clk_tck: int) -> int:
    """The host's CPU time over all CPUs (docker's ``system_cpu_usage``), from /proc/stat's first
    line: user nice system idle iowait irq softirq steal, in ticks, as nanoseconds."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(x) for x in line.split()[1:9])
            return ticks * 1_000_000_000 // clk_tck
    return 0


def read_host_cpu_ns() -> int:
    try:
        with open("/proc/stat") as f:
            return host_cpu_ns(f.read(), os.sysconf("SC_CLK_TCK") or 100)
    except OSError:
        return 0


def rfc3339_ns(ns: int) -> str:
    if not ns:
        return ZERO_TIME
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


@dataclass(frozen=True)
class Reading:
    """A sample with the clocks docker's stats reports beside it: wall time and host CPU time."""

    sample: Sample
    wall_ns: int
    system_ns: int


def _cpu(r: Reading | None, online: int) -> dict[str, Any]:
    if r is None or not r.sample.running:
        return {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    return {
        "cpu_usage": {"total_usage": r.sample.cpu_ns or 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": r.system_ns,
        "online_cpus": online,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def stats_json(now: Reading, before: Reading | None, online: int, with_networks: bool) -> dict[str, Any]:
    """One message of ``GET /containers/{id}/stats``: what ``docker stats`` and docker-py read.
    The docker CLI's CPU % is (total_usage delta / system_cpu_usage delta) * online_cpus * 100;
    its memory is usage (less stats.inactive_file, absent here: systemd's MemoryCurrent) over limit.
    A stopped container's message has zeros and empty sections, as dockerd's."""
    s = now.sample
    running = s.running
    out: dict[str, Any] = {
        "name": f"/{s.name}",
        "id": s.id,
        "read": rfc3339_ns(now.wall_ns) if running else ZERO_TIME,
        "preread": rfc3339_ns(before.wall_ns) if before is not None and before.sample.running else ZERO_TIME,
        "pids_stats": {"current": s.pids or 0} if running else {},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 0, "minor": 0, "op": "read", "value": s.io_read or 0},
                {"major": 0, "minor": 0, "op": "write", "value": s.io_write or 0},
            ]
            if running
            else None
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(now, online),
        "precpu_stats": _cpu(before, online),
        "memory_stats": {"usage": s.memory or 0, "stats": {}, "limit": s.memory_limit or 0}
        if running
        else {},
    }
    if running and with_networks:
        out["networks"] = {
            "eth0": {
                "rx_bytes": s.net_rx,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": s.net_tx,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        }
    return out


# -- events --------------------------------------------------------------------------------


def event_json(event: Event, labels: dict[str, str]) -> dict[str, Any]:
    """docker's events message; the container's labels join its attributes, as dockerd's do."""
    out = event.to_json()
    out["Actor"]["Attributes"] = {**labels, **out["Actor"]["Attributes"]}
    return out


def label_matches(wanted: list[str], labels: dict[str, str]) -> bool:
    """docker's ``label`` filter (the library's, labels.labels_match)."""
    from ..labels import labels_match

    return labels_match(wanted, labels)


# -- networks ------------------------------------------------------------------------------


def network_name(mode: str) -> str:
    """The docker network a container's network mode is part of (net.networks.docker_name)."""
    from ..net.networks import docker_name

    return docker_name(mode)


def networks(
    statuses: list[ContainerStatus],
    zone_subnets: dict[str, str | None],
    declared: Sequence[NetworkDecl] = (),
) -> list[NetworkRecord]:
    """The library's network records (net.networks.records) of these containers: running ones
    are members, with the address their inspect shows."""
    from ..net.networks import Endpoint, records

    def endpoint(status: ContainerStatus) -> Endpoint:
        settings = status.to_json()["NetworkSettings"]
        addr, prefix = settings.get("IPAddress"), settings.get("IPPrefixLen")
        return Endpoint(status.spec.name, status.spec.id, f"{addr}/{prefix}" if addr and prefix else "")

    return records(
        declared,
        zone_subnets,
        [(s.spec.name, s.spec.network) for s in statuses],
        [(s.spec.network, endpoint(s)) for s in statuses if s.running],
    )


def find_network(nets: list[NetworkRecord], ref: str) -> NetworkRecord:
    """By name, full ID or unique ID prefix (docker's lookup); 404 otherwise."""
    for n in nets:
        if ref in (n.name, n.id):
            return n
    hits = [n for n in nets if n.id.startswith(ref)] if ref else []
    if len(hits) == 1:
        return hits[0]
    raise ApiError(404, f"network {ref} not found")


# -- volumes -------------------------------------------------------------------------------


def volume_json(info: VolumeInfo) -> dict[str, Any]:
    out = info.to_json()
    out["UsageData"] = {"Size": -1, "RefCount": len(info.users)}
    return out
