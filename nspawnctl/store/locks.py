"""Exclusive flocks on lock files, for threads and for the event loop.

An flock belongs to the open file description: a holder that dies (killed, crashed) releases it
with its last fd, so no lock outlives its process. A lock file may be unlinked by its holder (a
container removed): a waiter that then gets the lock of the unlinked file notices (its fd is no
longer what the path names) and locks the path anew.

The async form (:func:`ahold`) polls a non-blocking flock from the event loop with a short
backoff (5 ms doubling to 100 ms): a long holder (an ``import`` holding the pool lock) never
freezes the loop nor parks a thread of its shared executor (a few such waits would starve every
``to_thread`` of the API server), and a cancelled wait (Ctrl-C) simply stops polling: it has no
thread to join and holds nothing. asyncio is imported only there: the unit's hook steps load this
module and must not pay for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

POLL_FIRST = 0.005
POLL_MAX = 0.1
"""The async wait's backoff between tries, in seconds."""


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
        held = _take(path, fcntl.LOCK_EX)
        if held is not None:
            return held


def try_acquire(path: Path) -> Held | None:
    """The exclusive flock on ``path`` if nobody holds it now, else None (never blocks)."""
    while True:
        try:
            held = _take(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if held is not None:
            return held


def _take(path: Path, how: int) -> Held | None:
    """One try: the lock, or None when the file it got was unlinked by its holder meanwhile (the
    caller then locks the file the path names now). ``flock`` errors (BlockingIOError for
    ``LOCK_NB``) propagate, the fd closed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how)
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
    os.close(fd)
    return None


@contextlib.contextmanager
def hold(path: Path) -> Iterator[Held]:
    held = acquire(path)
    try:
        yield held
    finally:
        held.release()


async def aacquire(path: Path) -> Held:
    """:func:`acquire` for the event loop: polls :func:`try_acquire` with a backoff. Cancel-safe
    with nothing to undo: between tries it holds no fd and no thread."""
    import asyncio

    delay = POLL_FIRST
    while True:
        held = try_acquire(path)
        if held is not None:
            return held
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX)


@contextlib.asynccontextmanager
async def ahold(path: Path) -> AsyncIterator[Held]:
    held = await aacquire(path)
    try:
        yield held
    finally:
        held.release()
