"""The service: accept connections on the listening sockets (systemd's, or a unix socket of its
own), answer their requests one after another, and exit once idle (no connection open, no run
followed, for ``idle`` seconds), as ``podman system service --time``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, NspawnctlError
from .context import Exchange, Service
from .http import ApiError, ClientGone, Connection
from .render import error_message, error_status
from .routing import Router
from .runs import Runs

if TYPE_CHECKING:
    from ..client import Client

DEFAULT_SOCKET = Path("/run/nspawnctl/docker.sock")
DEFAULT_IDLE = 5.0
DRAIN_STEP = 0.1
log = logging.getLogger("nspawnctl.api")


@dataclass
class Activity:
    """Open connections and when the service last had any: what the idle exit looks at."""

    connections: int = 0
    last: float = field(default_factory=time.monotonic)

    def enter(self) -> None:
        self.connections += 1

    def leave(self) -> None:
        self.connections -= 1
        self.last = time.monotonic()


async def handle(service: Service, router: Router, conn: Connection) -> None:
    """Serve one connection's requests until it closes, breaks or is hijacked."""
    conn.start()
    try:
        while True:
            try:
                request = await conn.next_request()
            except ApiError as e:
                await conn.reply_error(e.status, e.message)
                return
            if request is None:
                return
            ex = Exchange(service, request, conn)
            try:
                if request.refused:
                    raise ApiError(400, request.refused)
                handler, params = router.route(request.method, request.path)
                await handler(ex, **params)
            except ApiError as e:
                await conn.reply_error(e.status, e.message)
            except NspawnctlError as e:
                await conn.reply_error(error_status(e), error_message(e))
            if not conn.can_go_on():
                return
    except ClientGone:
        return
    except Exception as e:  # a bug must cost one connection, not the service
        log.exception("request failed")
        with contextlib.suppress(Exception):
            await conn.reply_error(500, f"internal error: {e}")
    finally:
        await conn.close()


async def serve(
    client: Client, listeners: list[socket.socket], idle: float | None, router: Router | None = None
) -> None:
    """Serve until idle for ``idle`` seconds (None or 0: for ever)."""
    from ..systemd.bus import open_bus
    from .handlers import routes

    router = router or routes()
    bus = await open_bus()
    service = Service(client, bus, Runs())
    activity = Activity()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        activity.enter()
        try:
            await handle(service, router, Connection(reader, writer, streams_body=router.streams_body))
        finally:
            activity.leave()

    # Python >= 3.13 removes a unix server's socket file on close: never systemd's (the socket unit
    # still listens for the next connection)
    keep: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
    servers = [await asyncio.start_unix_server(on_connect, sock=s, **keep) for s in listeners]
    try:
        while True:
            await asyncio.sleep(min(idle, 1.0) if idle else 3600)
            if service.runs.busy or activity.connections:
                activity.last = time.monotonic()
            elif idle and time.monotonic() - activity.last >= idle:
                break
        # idle: accept no more (systemd keeps the socket: a new connection starts a new service),
        # and answer the connections accepted before that
        for server in servers:
            server.close()
        await asyncio.sleep(DRAIN_STEP)
        while activity.connections or service.runs.busy:
            await asyncio.sleep(DRAIN_STEP)
    finally:
        for server in servers:
            server.close()
        bus.disconnect()


def unix_listener(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` (0660, its directory made), replacing a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def socket_path(address: str | None) -> Path:
    """``unix:///PATH`` (or a plain path) as a path; the default socket when None."""
    if not address:
        return DEFAULT_SOCKET
    if address.startswith("unix://"):
        address = address[len("unix://") :]
    elif "://" in address:
        raise UnsupportedAddress(address)
    return Path(address)


class UnsupportedAddress(InvalidArgument):
    """Only unix:// addresses are served (the socket is root-equivalent: no TCP)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot serve {address!r}: only unix:///PATH addresses",
            hint="e.g. nspawnctl system service unix:///run/nspawnctl/docker.sock",
        )


def run_service(client: Client, address: str | None, idle: float | None) -> None:
    """The blocking entry point: systemd's sockets when it passed some, else ``address``'s."""
    from .activation import inherited_sockets

    listeners = inherited_sockets()
    if not listeners:
        listeners = [unix_listener(socket_path(address))]
    asyncio.run(serve(client, listeners, idle))
