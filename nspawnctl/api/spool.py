"""A request body spooled whole to the pool's disk before it is read (docker import and load,
build's context): a tar is read more than once, and a body cut off midway must make nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from .context import Exchange
from .http import ApiError

SPOOL_RESERVE = 256 << 20
"""Bytes of the pool an upload must leave free (the unpacked image needs room too)."""


@contextlib.asynccontextmanager
async def spooled_body(ex: Exchange) -> AsyncIterator[Path]:
    """The request body on the pool's disk, whole (a hang-up before its end raises ClientGone
    and deletes it), at most the pool's free space less SPOOL_RESERVE."""
    from ..store.dockerarchive import Room

    store = ex.client.images.store
    with store.spool() as path:
        room = Room(path.parent, SPOOL_RESERVE)  # statfs every 64 MiB: not worth a thread
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            async for chunk in ex.conn.body():
                if not room.take(len(chunk)):
                    raise ApiError(413, "the upload is larger than the image pool's free space")
                await asyncio.to_thread(os.write, fd, chunk)
        finally:
            os.close(fd)
        yield path
