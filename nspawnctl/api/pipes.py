"""Pipes between a worker thread and the event loop, for the handlers that stream a copy (the
archive endpoints, docker save): the thread has one of its own, the loop reads and writes the
pipe's non-blocking end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 16


def own_thread(fn: Callable[[], None]) -> asyncio.Future[None]:
    """Run ``fn`` in a thread of its own, not the loop's shared executor: a copy blocks on its
    pipe for as long as the client takes, and a few slow clients must not take every thread the
    other requests need (nor the one that would drain the pipe)."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="archive")
    try:
        return asyncio.get_running_loop().run_in_executor(executor, fn)
    finally:
        executor.shutdown(wait=False)


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def read_pipe(fd: int) -> bytes:
    """The next bytes of a non-blocking pipe, read on the event loop; b"" at its end."""
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await _ready(fd, write=False)


async def write_pipe(fd: int, data: bytes) -> None:
    """All of ``data`` into a non-blocking pipe, on the event loop (BrokenPipeError once the
    reader is gone)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, write=True)
