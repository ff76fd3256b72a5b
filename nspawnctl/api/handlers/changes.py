"""``GET /containers/{id}/changes`` (``docker diff``): the library's comparison of a container's
snapshot with its image (store/changes.py) in docker's shape."""

from __future__ import annotations

import asyncio

from ..context import Exchange
from ..routing import Router
from .containers import resolve


async def changes(ex: Exchange, id: str) -> None:
    from ...store.changes import container_changes

    name = await resolve(ex, id)
    client = ex.client
    result = await asyncio.to_thread(container_changes, client.containers.store, client.images.store, name)
    await ex.json([c.to_json() for c in result])


def register(router: Router) -> None:
    router.add("GET", "/containers/{id}/changes", changes)
