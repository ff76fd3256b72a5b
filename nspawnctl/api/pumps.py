"""The shape the streaming handlers share (logs, events, an attach to a run the service does not
follow): a producer fills a queue while the handler writes what it gives to the client, until the
producer ends or the client goes; the producer never outlives its client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .http import ClientGone, Connection, Stream
from .runs import Attachment

T = TypeVar("T")

REPLAY_QUEUE = 256
"""Pieces a read in a worker thread (a journal replay) may have waiting for a slow client: the
thread waits for room, so the service holds no more of a long journal than this."""


class Stopped(Exception):
    """The consumer of a worker thread's pieces is gone: the thread's producer stops."""


async def in_thread(produce: Callable[[Callable[[T], None]], None], queue: asyncio.Queue[T | None]) -> None:
    """Run the blocking ``produce(put)`` in a worker thread, then put None (the end). Each
    ``put(piece)`` waits for room in ``queue`` (give it a maxsize: a slow client then holds the
    reader back, not the service's memory). Cancelled (the client gone), the thread's next put
    raises Stopped, which ends ``produce`` there, so no thread is left waiting for room."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def put(piece: T) -> None:
        done = asyncio.run_coroutine_threadsafe(queue.put(piece), loop)
        while True:
            try:
                done.result(timeout=0.25)
                return
            except TimeoutError:
                if stop.is_set():
                    done.cancel()
                    raise Stopped() from None

    def run() -> None:
        with contextlib.suppress(Stopped):
            produce(put)

    try:
        await asyncio.to_thread(run)
    finally:
        stop.set()
    await queue.put(None)


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


async def next_piece(a: Attachment, conn: Connection) -> bytes | None:
    """An attachment's next piece (None: its end), or ClientGone once the client has closed."""
    if (data := a.next_nowait()) is not None:
        return data
    return await until_closed(a.next(), conn)


async def until_closed(get: Awaitable[T], conn: Connection) -> T:
    """``get``'s result, or ClientGone once the client has closed its connection. Not at its
    half-close (EOF, ``hung_up``): docker's CLI half-closes an attach at once when it sends no
    stdin and reads on. Only a full close gives the socket EPOLLHUP, which an epoll set
    watching it for nothing else reports (readable for the loop)."""
    import select

    task = asyncio.ensure_future(get)
    sock = conn.writer.get_extra_info("socket")
    if task.done() or sock is None:
        return await task
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    with select.epoll() as ep:
        try:
            ep.register(sock.fileno(), 0)  # EPOLLHUP and EPOLLERR are always reported
        except (OSError, ValueError):  # closed already
            task.cancel()
            raise ClientGone() from None

        def wake() -> None:
            if not closed.done():
                closed.set_result(None)

        loop.add_reader(ep.fileno(), wake)
        try:
            either: list[asyncio.Future[Any]] = [task, closed]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(ep.fileno())
            if not task.done():
                task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    raise ClientGone()
