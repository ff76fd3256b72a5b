"""``stats``: a container's resource use, from its unit's cgroup accounting.

systemd reads the cgroup for us: MemoryCurrent, CPUUsageNSec, IOReadBytes/IOWriteBytes and
TasksCurrent of the unit (the accounting is turned on when the unit starts, see
run/units.py accounting_properties). A value systemd cannot tell (UINT64_MAX: no accounting,
or a cgroup v1 host without io) is None, and then summed from the container's processes in
/proc instead (see processes_usage). Network I/O is the container's own namespace's
(/proc/LEADER/net/dev); a container on the host's network has none of its own (0, as docker).
CPU % is the usage between two samples over the wall time between them (docker's formula:
one CPU busy is 100 %).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

from ..spec import ContainerSpec, owns_netns
from ..systemd.manager import SERVICE_IFACE
from .runtime import Runtime

UNSET = 2**64 - 1


@dataclass(frozen=True)
class Sample:
    """One reading of a container's counters; None: not known."""

    id: str
    name: str
    at_ns: int  # monotonic clock
    running: bool = False
    memory: int | None = None
    memory_limit: int | None = None  # MemoryMax, else the host's memory
    cpu_ns: int | None = None
    io_read: int | None = None
    io_write: int | None = None
    pids: int | None = None
    net_rx: int = 0
    net_tx: int = 0


def _value(props: dict[str, Any], key: str) -> int | None:
    v = props.get(key)
    if v is None or int(v) == UNSET:
        return None
    return int(v)


def host_memory() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def parse_net_dev(text: str) -> tuple[int, int]:
    """(received, sent) bytes over every interface but lo, from /proc/net/dev (pure)."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        iface, _, data = line.partition(":")
        fields = data.split()
        if iface.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def from_properties(
    spec: ContainerSpec, props: dict[str, Any] | None, net: tuple[int, int], at_ns: int
) -> Sample:
    """A sample from the unit's properties (pure)."""
    if not props:
        return Sample(spec.id, spec.name, at_ns)
    limit = _value(props, "MemoryMax")
    return Sample(
        spec.id,
        spec.name,
        at_ns,
        running=True,
        memory=_value(props, "MemoryCurrent"),
        memory_limit=limit if limit is not None else host_memory(),
        cpu_ns=_value(props, "CPUUsageNSec"),
        io_read=_value(props, "IOReadBytes"),
        io_write=_value(props, "IOWriteBytes"),
        pids=_value(props, "TasksCurrent"),
        net_rx=net[0],
        net_tx=net[1],
    )


async def sample(rt: Runtime, spec: ContainerSpec) -> Sample:
    """Read a container's counters now (a stopped one has none)."""
    at = time.monotonic_ns()
    state = (await rt.states([spec.name])).get(spec.name)
    if state is None or not state.running:
        return Sample(spec.id, spec.name, at)
    props = await rt.manager.unit_properties(state.name, SERVICE_IFACE)
    net = (0, 0)
    leader = await rt.machined.leader(spec.name)
    if owns_netns(spec.network) and leader is not None:
        try:
            with open(f"/proc/{leader}/net/dev") as f:
                net = parse_net_dev(f.read())
        except OSError:
            pass
    out = from_properties(spec, props, net, at)
    if leader is not None and None in (out.memory, out.cpu_ns, out.pids, out.io_read):
        from .top import container_pids

        counted = processes_usage(await container_pids(rt, spec.name))
        out = dataclasses.replace(
            out,
            memory=out.memory if out.memory is not None else counted.memory,
            cpu_ns=out.cpu_ns if out.cpu_ns is not None else counted.cpu_ns,
            pids=out.pids if out.pids is not None else counted.pids,
            io_read=out.io_read if out.io_read is not None else counted.io_read,
            io_write=out.io_write if out.io_write is not None else counted.io_write,
        )
    return out


@dataclass(frozen=True)
class Usage:
    memory: int
    cpu_ns: int
    pids: int
    io_read: int
    io_write: int


def processes_usage(pids: list[int]) -> Usage:
    """What the container's processes use, summed from /proc: where the unit's cgroup has no
    accounting (the controllers are on cgroup v1 and systemd manages none of them there).
    Resident memory, CPU time (with that of waited-for children), storage I/O."""
    tick_ns = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
    page = os.sysconf("SC_PAGE_SIZE")
    memory = cpu = rd = wr = count = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            statm = open(f"/proc/{pid}/statm").read().split()
        except OSError:
            continue  # ended meanwhile
        rest = stat[stat.rindex(")") + 2 :].split()
        cpu += sum(int(x) for x in rest[11:15]) * tick_ns  # utime stime cutime cstime
        memory += int(statm[1]) * page
        count += 1
        try:
            for line in open(f"/proc/{pid}/io"):
                key, _, value = line.partition(":")
                if key == "read_bytes":
                    rd += int(value)
                elif key == "write_bytes":
                    wr += int(value)
        except OSError:
            pass
    return Usage(memory, cpu, count, rd, wr)


def cpu_percent(before: Sample | None, now: Sample) -> float:
    """CPU use between two samples, 100 per busy CPU (pure)."""
    if before is None or before.cpu_ns is None or now.cpu_ns is None or now.at_ns <= before.at_ns:
        return 0.0
    return max(0.0, (now.cpu_ns - before.cpu_ns) / (now.at_ns - before.at_ns) * 100.0)


def memory_percent(s: Sample) -> float:
    if not s.memory or not s.memory_limit:
        return 0.0
    return s.memory / s.memory_limit * 100.0


def cpu_count() -> int:
    return os.cpu_count() or 1
