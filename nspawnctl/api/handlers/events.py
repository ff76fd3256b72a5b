"""``GET /events``: the library's container events (Client.aevents: create, start, die, rename,
destroy, pause, unpause) streamed as docker's JSON messages, one per line, until ``until`` or the
client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from ...errors import NspawnctlError
from ..context import Exchange
from ..http import ClientGone
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
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def emit(event: Event) -> None:
        queue.put_nowait(event)

    async def produce() -> None:
        try:
            await ex.client.containers.aevents(ex.bus, emit, library_filters, since, until)
        finally:
            queue.put_nowait(None)

    def labels_of(event: Event) -> dict[str, str]:
        if event.id not in labels:
            try:
                labels[event.id] = dict(store.get(event.name).labels)
            except (NspawnctlError, OSError):  # gone, or being written: asked again next time
                return {}
        return labels[event.id]

    stream = await ex.conn.stream()
    task = asyncio.ensure_future(produce())
    gone = asyncio.ensure_future(ex.conn.hung_up.wait())
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                raise ClientGone()
            event = get.result()
            if event is None:
                break
            own = labels_of(event)
            if wanted_labels and not label_matches(wanted_labels, own):
                continue
            await stream.write(json.dumps(event_json(event, own)).encode() + b"\n")
        await asyncio.wait([task])
        error = None if task.cancelled() else task.exception()
        if error is not None:  # the head is out: the connection closes without the body's end
            raise error
        await stream.end()
    finally:
        gone.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def register(router: Router) -> None:
    router.add("GET", "/events", events)
