"""The API server's real connection handling (server.handle over h11) on one end of a socket pair,
for the unit tests that speak raw HTTP to it from the other end."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from nspawnctl.api.context import Service
from nspawnctl.api.http import Connection
from nspawnctl.api.routing import Router
from nspawnctl.api.runs import Runs
from nspawnctl.api.server import handle


async def serve_one(
    router: Router, client: Any = None, runs: Runs | None = None, **connection: Any
) -> tuple[asyncio.Future[None], asyncio.StreamReader, asyncio.StreamWriter]:
    """One connection served with ``router`` (``connection``: Connection's limits): the server's
    task, and the client's reader and writer."""
    server_sock, client_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=server_sock)
    service = Service(client=client, bus=None, runs=Runs() if runs is None else runs)
    task = asyncio.ensure_future(handle(service, router, Connection(reader, writer, **connection)))
    creader, cwriter = await asyncio.open_connection(sock=client_sock)
    return task, creader, cwriter
