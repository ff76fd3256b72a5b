"""``/containers/{id}/``: pause, unpause, rename, top, stats, update, resize, and
``/containers/prune``: the library's verbs (Client.apause, arename, atop, astats, aupdate, prune)
in docker's shapes."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from ...errors import ContainerNotRunning, InvalidArgument
from ...spec import owns_netns
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..resources import Reading, parse_filters, read_host_cpu_ns, stats_json
from ..routing import Router
from ..translate import empty
from .containers import resolve

STATS_INTERVAL = 1.0
"""Seconds between two stats readings (dockerd's collector interval): a non-streamed answer
waits one, so its precpu_stats give the CLI a CPU %."""


async def pause(ex: Exchange, id: str) -> None:
    """On a host where systemd cannot freeze (cgroup v1) the library says so: a 500 with that."""
    from ...run.freeze import PauseUnsupported

    name = await resolve(ex, id)
    try:
        await ex.client.containers.apause(ex.bus, name)
    except PauseUnsupported as e:  # the why is in the hint: docker's clients show one message
        raise ApiError(500, f"{e.message}; {e.hint}") from None
    await ex.empty(204)


async def unpause(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    await ex.client.containers.aunpause(ex.bus, name)
    await ex.empty(204)


async def rename(ex: Exchange, id: str) -> None:
    """A running container is refused (409): machined and its unit know it by its name."""
    new = ex.request.arg("name") or ""
    if not new:
        raise ApiError(400, "name: the new name is required")
    name = await resolve(ex, id)
    await ex.client.containers.arename(ex.bus, name, new.lstrip("/"))
    await ex.empty(204)


async def top(ex: Exchange, id: str) -> None:
    """``ps`` on the host, the container's rows kept; ``ps_args`` split on blanks as dockerd does."""
    name = await resolve(ex, id)
    args = (ex.request.arg("ps_args") or "").split()
    try:
        result = await ex.client.containers.atop(ex.bus, name, args or None)
    except ContainerNotRunning:
        raise ApiError(409, f"Container {id} is not running") from None
    await ex.json(result.to_json())


async def _reading(ex: Exchange, spec: Any) -> Reading:
    (sample,) = await ex.client.containers.astats(ex.bus, [spec])
    return Reading(sample, time.time_ns(), await asyncio.to_thread(read_host_cpu_ns))


async def stats(ex: Exchange, id: str) -> None:
    """``stream`` (default true): a message a second until the client hangs up; else one
    message, after a second's wait unless ``one-shot`` (then without precpu_stats)."""
    name = await resolve(ex, id)
    spec = await asyncio.to_thread(ex.client.containers.store.get, name)
    stream_it = ex.request.flag("stream", True)
    one_shot = ex.request.flag("one-shot")
    if one_shot and stream_it:
        raise ApiError(400, "one-shot: only with stream=false")
    online = os.cpu_count() or 1
    nets = owns_netns(spec.network)
    before: Reading | None = None
    now = await _reading(ex, spec)
    if not stream_it:
        if not one_shot and now.sample.running:
            await asyncio.sleep(STATS_INTERVAL)
            before, now = now, await _reading(ex, spec)
        await ex.json(stats_json(now, before, online, nets))
        return
    out = await ex.conn.stream()
    while True:
        await out.write(json.dumps(stats_json(now, before, online, nets)).encode() + b"\n")
        try:
            await asyncio.wait_for(ex.conn.hung_up.wait(), STATS_INTERVAL)
            raise ClientGone()
        except TimeoutError:
            pass
        before, now = now, await _reading(ex, spec)


UPDATE_TAKEN = {"Memory", "NanoCpus", "CpuQuota", "CpuPeriod", "PidsLimit", "RestartPolicy", "CpuShares"}
NO_CHANGE = {"MemorySwappiness": -1}
UPDATE_HELP = "Memory, NanoCpus, CpuQuota, CpuShares, PidsLimit, RestartPolicy"


def update_change(body: Any) -> Any:
    """A ``POST /containers/{id}/update`` body as the library's Update; a field it cannot apply
    (set to anything but docker's zero value) is a 400 naming it."""
    from ...cpumem import parse_cpu_shares
    from ...run.update import Update
    from ...values import Cpus, MemoryBytes, PidsLimit

    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    for key, value in body.items():
        if key not in UPDATE_TAKEN and not empty(value) and NO_CHANGE.get(key) != value:
            raise ApiError(400, f"{key}: not supported by nspawnctl's update ({UPDATE_HELP})")

    def number(key: str) -> int:
        value = body.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"{key}: an integer is expected")
        return value

    memory, nano = number("Memory"), number("NanoCpus")
    quota, period = number("CpuQuota"), number("CpuPeriod") or 100_000
    pids = number("PidsLimit")
    shares = number("CpuShares")
    if nano and quota:
        raise ApiError(400, "NanoCpus and CpuQuota: give one of them")
    policy = body.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise ApiError(400, "RestartPolicy: an object is expected")
    restart = policy.get("Name") or None
    if restart is not None and not isinstance(restart, str):
        raise ApiError(400, "RestartPolicy.Name: a string is expected")
    retries = policy.get("MaximumRetryCount") or 0
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ApiError(400, "RestartPolicy.MaximumRetryCount: a number >= 0 is expected")
    if retries and restart != "on-failure":
        raise ApiError(400, "RestartPolicy.MaximumRetryCount: only with the on-failure policy")
    if retries:
        restart = f"on-failure:{retries}"
    if pids < 0:
        raise ApiError(400, "PidsLimit: lifting a limit is not supported; give a number of processes")
    try:
        usec = nano // 1000 if nano else quota * 1_000_000 // period if quota else 0
        if nano % 1000:
            raise ApiError(400, "NanoCpus: a multiple of 1000 (microseconds of CPU) is expected")
        return Update(
            memory=MemoryBytes(memory) if memory else None,
            cpus=Cpus(usec) if usec else None,
            pids=PidsLimit(pids) if pids else None,
            restart=restart,
            cpu_shares=parse_cpu_shares(str(shares), "CpuShares") if shares else None,
        )
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None


async def update(ex: Exchange, id: str) -> None:
    change = update_change(ex.request.json())
    name = await resolve(ex, id)
    warnings: list[str] = []  # e.g. a new restart policy applies from the next start
    await ex.client.containers.aupdate(ex.bus, name, change, warnings.append)
    await ex.json({"Warnings": warnings})


async def prune(ex: Exchange) -> None:
    """Every stopped container that passes the filters goes (the library's container prune and
    its listfilters.py, as ``container prune --filter``). Each one's own bytes (what it wrote
    over its image) are what its removal reclaimed."""
    from ...listfilters import CONTAINER_PRUNE_KEYS, parse_list_filters
    from ..resources import filter_words

    words = filter_words(parse_filters(ex.request.arg("filters"), CONTAINER_PRUNE_KEYS))
    only = parse_list_filters(words, CONTAINER_PRUNE_KEYS)
    gone = await asyncio.to_thread(ex.client.containers.prune_measured, only)
    ids = [spec.id for spec, _ in gone]
    await ex.json({"ContainersDeleted": ids or None, "SpaceReclaimed": sum(n for _, n in gone)})


def register(router: Router) -> None:
    router.add("POST", "/containers/prune", prune)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("POST", "/containers/{id}/update", update)
