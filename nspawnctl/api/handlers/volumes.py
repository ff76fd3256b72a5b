"""``/volumes``: the library's named volumes (Client.volumes) in docker's shapes: list, create,
inspect, remove, prune."""

from __future__ import annotations

import asyncio
from typing import Any

from ...errors import InvalidArgument, VolumeInUse, VolumeNotFound
from ...listfilters import VOLUME_KEYS, VOLUME_PRUNE_KEYS, parse_list_filters, volume_subject
from ..context import Exchange
from ..http import ApiError
from ..resources import filter_words, parse_filters, volume_json
from ..routing import Router
from ..translate import empty


async def list_volumes(ex: Exchange) -> None:
    """docker's filters through the library's (listfilters.py, as ``volume ls --filter``)."""
    words = filter_words(parse_filters(ex.request.arg("filters"), VOLUME_KEYS))
    only = parse_list_filters(words, VOLUME_KEYS)
    infos = await asyncio.to_thread(ex.client.volumes.list)
    shown = [volume_json(v) for v in infos if only.matches(volume_subject(v))]
    await ex.json({"Volumes": shown, "Warnings": []})


def _labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(400, "Labels: an object of strings is expected")
    return value


async def create(ex: Exchange) -> None:
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    for key, value in body.items():
        if key not in ("Name", "Driver", "Labels") and not empty(value, key):
            raise ApiError(400, f"{key}: not supported by nspawnctl's volumes (local btrfs subvolumes)")
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "Name: a string is expected")
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise ApiError(400, f"Driver: {driver}: nspawnctl's volumes use the local driver only")
    labels = _labels(body.get("Labels"))
    try:
        info = await asyncio.to_thread(ex.client.volumes.create, name, labels)
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    await ex.json(volume_json(info), status=201)


async def inspect(ex: Exchange, name: str) -> None:
    try:
        info = await asyncio.to_thread(ex.client.volumes.get, name)
    except VolumeNotFound:
        raise ApiError(404, f"get {name}: no such volume") from None
    await ex.json(volume_json(info))


async def remove(ex: Exchange, name: str) -> None:
    """A volume a container binds is refused even with force (409), as docker does."""
    try:
        await asyncio.to_thread(ex.client.volumes.remove, name, ex.request.flag("force"))
    except VolumeNotFound:
        raise ApiError(404, f"get {name}: no such volume") from None
    except VolumeInUse as e:
        raise ApiError(409, f"remove {name}: volume is in use - {e}") from None
    await ex.empty(204)


async def prune(ex: Exchange) -> None:
    """Volumes no container binds; from API 1.42 on only anonymous ones unless ``all=true`` (as
    dockerd). The library's prune, as the CLI's ``volume prune``."""
    words = filter_words(parse_filters(ex.request.arg("filters"), VOLUME_PRUNE_KEYS))
    only = parse_list_filters(words, VOLUME_PRUNE_KEYS)
    every = bool(only.all) or ex.request.version < (1, 42)
    gone, size = await asyncio.to_thread(ex.client.volumes.prune, not every, only)
    await ex.json({"VolumesDeleted": gone or None, "SpaceReclaimed": size})


def register(router: Router) -> None:
    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
