"""What the service remembers between requests, in memory only: clients attached to a container
that has not started yet (``docker run`` attaches, then waits, then starts), the foreground runs it
follows for them, and how they ended. Containers themselves are units and outlive the service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Attachment:
    """One attached client: frames to send it; None ends its stream."""

    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)


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


@dataclass
class Runs:
    attachments: dict[str, list[Attachment]] = field(default_factory=dict)
    running: dict[str, asyncio.Future[int]] = field(default_factory=dict)  # name -> its exit code
    exits: dict[str, int] = field(default_factory=dict)  # the last exit code of a run followed here
    starts: dict[str, int] = field(default_factory=dict)  # starts through the API, per container
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    execs: dict[str, ExecRecord] = field(default_factory=dict)

    def attach(self, name: str) -> Attachment:
        a = Attachment()
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
