"""``GET /events``: the library's container events (Client.aevents: create, start, die, rename,
destroy, pause, unpause) streamed as docker's JSON messages, one per line, until ``until`` or the
client hangs up."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from ...errors import NspawnctlError
from ..context import Exchange
from ..pumps import next_or_gone, pump
from ..resources import event_json, label_matches, parse_filters
from ..routing import Router
from ..translate import unix_time

if TYPE_CHECKING:
    from ...run.events import Event

FILTER_KEYS = ("container", "event", "image", "label", "type")


async def events(ex: Exchange) -> None:
    filters = parse_filters(ex.request.arg("filters"), FILTER_KEYS)
    since = unix_time("since", ex.request.arg("since"))
    until = unix_time("until", ex.request.arg("until"))
    wanted_labels = filters.pop("label", [])
    library_filters = {k: set(v) for k, v in filters.items()}
    store = ex.client.containers.store
    labels: dict[str, dict[str, str]] = {}  # by container ID, kept after a destroy
    for spec in await asyncio.to_thread(store.list):
        labels[spec.id] = dict(spec.labels)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def emit(event: Event) -> None:
        own = labels_of(event)
        if not wanted_labels or label_matches(wanted_labels, own):
            queue.put_nowait(json.dumps(event_json(event, own)).encode() + b"\n")

    async def produce() -> None:
        try:
            await ex.client.containers.aevents(ex.bus, emit, library_filters, since, until)
        finally:
            queue.put_nowait(None)

    def labels_of(event: Event) -> dict[str, str]:
        """The labels the event came with (a create's container cannot be looked up yet: its
        definition is written before its root is in place); else the ones known or read now."""
        if event.labels is not None:
            labels[event.id] = event.labels
            return event.labels
        if event.id not in labels:
            try:
                labels[event.id] = dict(store.get(store.resolve(event.name)).labels)  # my_app: my-app
            except (NspawnctlError, OSError):  # gone, or being written: asked again next time
                return {}
        return labels[event.id]

    stream = await ex.conn.stream()
    await pump(stream, lambda: next_or_gone(queue, ex.conn), produce(), producer_errors=True)


def register(router: Router) -> None:
    router.add("GET", "/events", events)
