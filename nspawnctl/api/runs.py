"""What the service remembers between requests, in memory only: clients attached to a container
that has not started yet (``docker run`` attaches, then waits, then starts), the foreground runs it
follows for them, and how they ended. Containers themselves are units and outlive the service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..run.stdio import Stdio

ATTACH_BACKLOG = 1024
"""Output pieces kept for an attached client that reads slower than a payload on our terminal or
pipes writes; beyond them the payload waits (:meth:`Attachment.put`, as under dockerd)."""
ATTACH_JOURNAL_LIMIT = 16 << 20
"""Bytes kept for an attached client behind a run followed from the journal, which cannot be made
to wait (and hands over a burst of lines at once): beyond them the client is cut off
(:meth:`Attachment.send`): its stream ends early, it never has a hole."""

log = logging.getLogger(__name__)


@dataclass
class Attachment:
    """One attached client: what to send it (frames, or raw bytes with a TTY), and whether its
    stream has ended (:meth:`end`: the rest of the queue, then the end). ``session`` is resolved
    by the start (None: the payload has no stdin of ours)."""

    stdin: bool = False
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)  # bounded by put and send
    session: asyncio.Future[Session | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False  # ended early: it fell too far behind a run followed from the journal
    pending: int = 0  # bytes queued
    backlog: int = ATTACH_BACKLOG  # pieces :meth:`put` lets wait for the reader
    _taken: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, data: bytes) -> None:
        """A piece from the journal path (a callback that cannot wait): a client more than
        ATTACH_JOURNAL_LIMIT bytes behind is cut off rather than given a stream with a gap."""
        if self.ended.is_set():
            return
        if self.pending + len(data) > ATTACH_JOURNAL_LIMIT:
            log.warning("an attached client fell %d bytes behind: its stream is ended", self.pending)
            self.cut = True
            self.close()
            return
        self._add(data)

    async def put(self, data: bytes) -> None:
        """A piece from our terminal or pipes: waits while the client is ATTACH_BACKLOG pieces
        behind (the payload then waits on its full pty or pipe); returns at once once ended."""
        while not self.ended.is_set() and self.queue.qsize() >= self.backlog:
            self._taken.clear()
            await self._taken.wait()
        if not self.ended.is_set():
            self._add(data)

    def _add(self, data: bytes) -> None:
        self.pending += len(data)
        self.queue.put_nowait(data)

    def end(self) -> None:
        """No more pieces: the reader gets what is queued, then the end."""
        self.ended.set()

    def close(self) -> None:
        """The reader is gone (or cut off): drop what is queued, release a writer in :meth:`put`."""
        self.end()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.pending = 0
        self._taken.set()

    def next_nowait(self) -> bytes | None:
        """The next piece if one is queued, else None."""
        if self.queue.empty():
            return None
        data = self.queue.get_nowait()
        self.pending -= len(data)
        self._taken.set()
        return data

    async def next(self) -> bytes | None:
        """The next piece for the reader; None at the end."""
        if (data := self.next_nowait()) is not None or self.ended.is_set():
            return data
        get = asyncio.ensure_future(self.queue.get())
        end = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait([get, end], return_when=asyncio.FIRST_COMPLETED)
        finally:
            end.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            data = get.result()
            self.pending -= len(data)
            self._taken.set()
            return data
        return self.next_nowait()


@dataclass
class Session:
    """A run the service follows for its clients: its terminal or pipes (None when its output
    comes from the journal), the clients attached now."""

    name: str
    stdio: Stdio | None
    tty: bool
    attachments: list[Attachment] = field(default_factory=list)

    def emit(self, data: bytes) -> None:
        """From the journal (see Attachment.send)."""
        for a in list(self.attachments):
            a.send(data)

    async def put(self, data: bytes) -> None:
        """From our terminal or pipes: waits for the slowest attached client (as dockerd)."""
        for a in list(self.attachments):
            await a.put(data)


@dataclass
class ExecRecord:
    """An exec made by ``POST /containers/{id}/exec``, until the service exits or it is among the
    oldest of MAX_EXECS (see Runs.add_exec)."""

    id: str
    container: str  # its name
    container_id: str
    argv: list[str]
    env: list[str]
    workdir: str | None
    user: str | None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    tty: bool = False
    stdin: bool = False
    detach_keys: bytes = b"\x10\x11"  # ctrl-p,ctrl-q: end a client's attach to it (with a TTY)
    stdio: Stdio | None = None  # while it runs with a terminal or stdin of ours


MAX_EXECS = 4096
"""Exec records the service keeps (dicts keep the order they were made in: oldest first)."""


class ExecLimit(Exception):
    """MAX_EXECS execs run at once: no record for another."""


@dataclass
class Runs:
    attachments: dict[str, list[Attachment]] = field(default_factory=dict)
    running: dict[str, asyncio.Future[int]] = field(default_factory=dict)  # name -> its exit code
    exits: dict[str, int] = field(default_factory=dict)  # the last exit code of a run followed here
    starts: dict[str, int] = field(default_factory=dict)  # starts through the API, per container
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    execs: dict[str, ExecRecord] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)  # name -> the run followed here
    console_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # create's, for the start

    def add_exec(self, record: ExecRecord) -> None:
        """Keep ``record`` for its start and inspect. At most MAX_EXECS are kept (a client making
        execs in a loop keeps the service up): the oldest that do not run go first, as dockerd's
        collector drops ended ones; ExecLimit when that many run now."""
        if len(self.execs) >= MAX_EXECS:
            idle = [k for k, e in self.execs.items() if not e.running]
            for k in idle[: len(self.execs) - MAX_EXECS + 1 + MAX_EXECS // 10]:
                del self.execs[k]
        if len(self.execs) >= MAX_EXECS:
            raise ExecLimit(f"{MAX_EXECS} execs are running; wait for some to end")
        self.execs[record.id] = record

    def attach(self, name: str, stdin: bool = False) -> Attachment:
        a = Attachment(stdin)
        self.attachments.setdefault(name, []).append(a)
        return a

    def detach(self, name: str, a: Attachment) -> None:
        waiting = self.attachments.get(name, [])
        if a in waiting:
            waiting.remove(a)
        if not waiting:
            self.attachments.pop(name, None)

    def take_attachments(self, name: str) -> list[Attachment]:
        return self.attachments.pop(name, [])

    def started(self, name: str) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1

    @property
    def busy(self) -> bool:
        """A run is followed or a client waits for a start: the service must not exit idle."""
        return bool(
            self.running or self.attachments or self.tasks or any(e.running for e in self.execs.values())
        )
