"""api/pumps.py, the streaming handlers' shared loop (logs, events, attach to a run the service
does not follow), over the real connection handling: what the client gets, and that the producer
never outlives its client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

h11 = pytest.importorskip("h11")

from apiserve import serve_one  # noqa: E402

from nspawnctl.api.pumps import next_or_gone, pump  # noqa: E402
from nspawnctl.api.routing import Router  # noqa: E402

REQUEST = b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n"


def streaming(produce: Any, producer_errors: bool = False) -> tuple[Router, dict[str, bool]]:
    """A route whose producer (``produce(queue)``) feeds the pump; ``seen`` says how it ended."""
    seen = {"cancelled": False}

    async def handler(ex: Any) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def producer() -> None:
            try:
                await produce(queue)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        stream = await ex.conn.stream()
        await pump(stream, lambda: next_or_gone(queue, ex.conn), producer(), producer_errors=producer_errors)

    router = Router()
    router.add("GET", "/events", handler)
    return router, seen


async def reply(router: Router, hang_up_after: bytes | None = None) -> tuple[bytes, asyncio.Future[None]]:
    """The raw reply to one request (up to ``hang_up_after``, then the client closes)."""
    task, creader, cwriter = await serve_one(router)
    cwriter.write(REQUEST)
    await cwriter.drain()
    got = b""
    while data := await asyncio.wait_for(creader.read(65536), 5):
        got += data
        if hang_up_after is not None and hang_up_after in got:
            break
        if got.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
            break
    cwriter.close()
    await asyncio.wait([task], timeout=5)  # not wait_for: its cancel would end a hung handler
    assert task.done(), "the handler did not end with its client"
    return got, task


def test_pieces_then_the_end_of_the_body() -> None:
    async def two(queue: asyncio.Queue[bytes | None]) -> None:
        queue.put_nowait(b"one\n")
        await asyncio.sleep(0)
        queue.put_nowait(b"two\n")
        queue.put_nowait(None)

    router, seen = streaming(two)
    got, _ = asyncio.run(reply(router))
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n" and not seen["cancelled"]


def test_a_client_hanging_up_cancels_a_producer_that_would_go_on_for_ever() -> None:
    async def forever(queue: asyncio.Queue[bytes | None]) -> None:
        queue.put_nowait(b"first\n")
        await asyncio.Event().wait()

    router, seen = streaming(forever)

    async def main() -> tuple[bytes, bool]:
        got, task = await reply(router, hang_up_after=b"first\n")
        assert task.exception() is None
        return got, seen["cancelled"]  # before asyncio.run's own clean-up could cancel it

    got, cancelled = asyncio.run(main())
    assert b"first\n" in got and cancelled


@pytest.mark.parametrize("producer_errors", [False, True])
def test_a_failed_producer_cuts_the_body_short_only_where_asked(producer_errors: bool) -> None:
    async def failing(queue: asyncio.Queue[bytes | None]) -> None:
        queue.put_nowait(b"partial\n")
        try:
            raise OSError("the journal went away")
        finally:
            queue.put_nowait(None)

    router, _ = streaming(failing, producer_errors)
    got, _ = asyncio.run(reply(router))
    assert b"partial\n" in got
    assert got.endswith(b"\r\n0\r\n\r\n") is not producer_errors  # events: cut short; logs: ended


def test_in_thread_hands_pieces_over_bounded_and_stops_when_cancelled() -> None:
    import threading

    from nspawnctl.api.pumps import in_thread

    ended = threading.Event()
    most = 0

    def produce(put: Any) -> None:
        try:
            for i in range(10_000):
                put(i)
        finally:
            ended.set()

    async def go() -> list[int]:
        nonlocal most
        queue: asyncio.Queue[int | None] = asyncio.Queue(4)
        task = asyncio.ensure_future(in_thread(produce, queue))
        got = []
        while (item := await queue.get()) is not None:
            most = max(most, queue.qsize())
            got.append(item)
        await task
        return got

    assert asyncio.run(go()) == list(range(10_000)) and most <= 4
    # a consumer gone: the thread waiting for room ends instead of waiting for ever
    ended.clear()

    async def cancelled() -> None:
        queue: asyncio.Queue[int | None] = asyncio.Queue(2)
        task = asyncio.ensure_future(in_thread(produce, queue))
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert ended.wait(5)
