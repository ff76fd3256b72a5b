"""What the service remembers between requests, in memory only: clients attached to a container
that has not started yet (``docker run`` attaches, then waits, then starts), the foreground runs it
follows for them, and how they ended. Containers themselves are units and outlive the service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..run.stdio import Stdio

ATTACH_BACKLOG = 1024
"""Output pieces kept for an attached client that reads slower than the payload writes; more are
dropped (the payload must not block on a slow client)."""


@dataclass
class Attachment:
    """One attached client: what to send it (frames, or raw bytes with a TTY); None ends its
    stream. ``session`` is resolved by the start (None: the payload has no stdin of ours)."""

    stdin: bool = False
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(ATTACH_BACKLOG))
    session: asyncio.Future[Session | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def send(self, data: bytes | None) -> None:
        if self.queue.full():
            if data is not None:
                return
            self.queue.get_nowait()  # room for the end
        self.queue.put_nowait(data)


@dataclass
class Session:
    """A run the service follows for its clients: its terminal or pipes (None when its output
    comes from the journal), the clients attached now."""

    name: str
    stdio: Stdio | None
    tty: bool
    attachments: list[Attachment] = field(default_factory=list)

    def emit(self, data: bytes) -> None:
        for a in list(self.attachments):
            a.send(data)


@dataclass
class ExecRecord:
    """An exec made by ``POST /containers/{id}/exec``, until the service exits."""

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
    stdio: Stdio | None = None  # while it runs with a terminal or stdin of ours


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
