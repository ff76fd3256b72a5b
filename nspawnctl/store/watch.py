"""Changes of the container definitions (created, renamed, removed), told by inotify.

A container's definition (``NAME.nspawn`` under /etc/systemd/nspawn or /run/systemd/nspawn) is
written by a rename into place and deleted last-but-one when it is removed: those two moments are
when a container appears and disappears. systemd and machined have no signal for them (a stopped
container is only files), so ``wait --condition removed`` and the create/destroy lines of
``events`` watch the directories. The standard library has no inotify binding; the three libc
calls are made through ctypes (no package of ours to install for them).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_CLOSE_WRITE = 0x8
_MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
SUFFIX = ".nspawn"


@dataclass(frozen=True)
class DefinitionChange:
    name: str  # the container
    added: bool  # True: a definition appeared (or was rewritten); False: it went away


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """(wd, mask, file name) of each inotify_event in ``data`` (pure, for tests)."""
    out = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        name = data[offset : offset + length].split(b"\0", 1)[0].decode(errors="replace")
        offset += length
        out.append((wd, mask, name))
    return out


def changes_of(events: Iterable[tuple[int, int, str]]) -> list[DefinitionChange]:
    """The definition changes among raw events: hidden temporary files are not definitions."""
    out = []
    for _wd, mask, name in events:
        if not name.endswith(SUFFIX) or name.startswith("."):
            continue
        stem = name[: -len(SUFFIX)]
        if mask & (IN_MOVED_TO | IN_CLOSE_WRITE):
            out.append(DefinitionChange(stem, True))
        elif mask & (IN_MOVED_FROM | IN_DELETE):
            out.append(DefinitionChange(stem, False))
    return out


class DefinitionWatch:
    """inotify on the definition directories, read on the running loop; ``close`` when done.
    Set it up before looking at the state it is to follow: nothing in between is missed."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self.fd: int = fd
        self._queue: asyncio.Queue[list[DefinitionChange]] = asyncio.Queue()
        try:
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
                if libc.inotify_add_watch(fd, os.fsencode(d), _MASK) < 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"inotify_add_watch {d}: {os.strerror(e)}")
            asyncio.get_running_loop().add_reader(fd, self._readable)
        except BaseException:
            os.close(fd)
            raise

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return
            raise
        changes = changes_of(parse_events(data))
        if changes:
            self._queue.put_nowait(changes)

    async def next(self) -> list[DefinitionChange]:
        """The next batch of changes (waits for one)."""
        return await self._queue.get()

    def close(self) -> None:
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
