"""The shape the streaming handlers share (logs, events, an attach to a run the service does not
follow): a producer fills a queue while the handler writes what it gives to the client, until the
producer ends or the client goes; the producer never outlives its client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .http import ClientGone, Connection, Stream

T = TypeVar("T")


async def next_or_gone(queue: asyncio.Queue[T | None], conn: Connection) -> T | None:
    """The next item (None: the producer's end), or ClientGone once the client has hung up (a
    follow may last for ever)."""
    if not queue.empty():
        return queue.get_nowait()
    get = asyncio.ensure_future(queue.get())
    gone = asyncio.ensure_future(conn.hung_up.wait())
    await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if get.done():
        return get.result()
    get.cancel()
    raise ClientGone()


async def pump(
    stream: Stream,
    pieces: Callable[[], Awaitable[bytes | None]],
    producer: Coroutine[Any, Any, None],
    *,
    producer_errors: bool = False,
) -> None:
    """Run ``producer`` (it fills what ``pieces`` reads and ends it with None), write each piece to
    ``stream``, then end the stream. However this ends (the client gone, a write failing), the
    producer is cancelled and awaited. With ``producer_errors`` a failed producer is raised instead
    of a clean end: the head is out, so the client sees the body cut short."""
    task = asyncio.ensure_future(producer)
    try:
        while (data := await pieces()) is not None:
            await stream.write(data)
        if producer_errors:
            await asyncio.wait([task])
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        await stream.end()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
