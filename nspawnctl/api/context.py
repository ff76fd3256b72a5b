"""What a handler works with: the request, its connection, and the service's shared state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .http import Connection, Request
from .runs import Runs

if TYPE_CHECKING:
    from ..client import Client
    from ..systemd.bus import Bus


@dataclass
class Service:
    """One per server: the library's client, the bus its async calls share, the runs followed."""

    client: Client
    bus: Bus
    runs: Runs


@dataclass
class Exchange:
    service: Service
    request: Request
    conn: Connection

    @property
    def client(self) -> Client:
        return self.service.client

    @property
    def bus(self) -> Bus:
        return self.service.bus

    async def json(self, value: Any, status: int = 200) -> None:
        await self.conn.reply_json(status, value)

    async def empty(self, status: int = 204) -> None:
        await self.conn.reply(status)
