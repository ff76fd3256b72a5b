"""Exclusive flocks on lock files, for threads and for the event loop.

An flock belongs to the open file description: a holder that dies (killed, crashed) releases it
with its last fd, so no lock outlives its process. A lock file may be unlinked by its holder (a
container removed): a waiter that then gets the lock of the unlinked file notices (its fd is no
longer what the path names) and locks the path anew.

The async form (:func:`ahold`) waits in a worker thread, so a long holder (an ``import`` holding
the pool lock) never freezes the loop; a waiter cancelled meanwhile closes the fd its thread got
late, so a cancellation leaks no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Held:
    """One lock held through ``fd``; :meth:`release` is idempotent (a start lets its container's
    lock go once its unit's job is queued, before the ``with`` ends)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def acquire(path: Path) -> Held:
    """Block until this process holds the exclusive flock on ``path`` (created mode 0600)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                return Held(path, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder unlinked it meanwhile: lock the file the path names now


@contextlib.contextmanager
def hold(path: Path) -> Iterator[Held]:
    held = acquire(path)
    try:
        yield held
    finally:
        held.release()


async def aacquire(path: Path) -> Held:
    """:func:`acquire` off the event loop. Cancel-safe: should the caller be cancelled while the
    thread waits, the lock the thread gets later is released at once."""
    return await in_thread(lambda: acquire(path), Held.release)


async def in_thread(take: Callable[[], T], give_back: Callable[[T], None]) -> T:
    """``take()`` (which blocks for a lock) in a worker thread; if the caller is cancelled
    meanwhile, ``give_back`` gets what ``take`` returns once it does (the thread cannot be
    interrupted), so nothing taken is leaked."""
    task = asyncio.ensure_future(asyncio.to_thread(take))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda t: _give_back_late(t, give_back))
        raise


def _give_back_late(task: asyncio.Future[T], give_back: Callable[[T], None]) -> None:
    if not task.cancelled() and task.exception() is None:
        give_back(task.result())


@contextlib.asynccontextmanager
async def ahold(path: Path) -> AsyncIterator[Held]:
    held = await aacquire(path)
    try:
        yield held
    finally:
        held.release()
