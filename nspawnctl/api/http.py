"""One client connection, HTTP/1.1 through h11: requests in (bounded), replies out, and the three
reply kinds docker needs besides a plain body: a stream sent as it comes (pull, wait, logs), and a
hijacked connection (attach), raw after ``101 UPGRADED``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from .. import __version__
from .versions import MAX_VERSION, UnsupportedVersion, fmt, split_path

MAX_BODY = 1 << 20
"""Bytes a request body may have: docker's create and exec bodies are a few KiB."""
MAX_HEAD = 64 << 10
"""Bytes a request line and its headers may have."""
READ_SIZE = 64 << 10
MAX_JSON_DEPTH = 32
_TOO_DEEP = object()
HIJACK_GRACE = 0.05
"""Seconds between a hijacked reply's head and its first frame: docker-py reads the raw socket after
the head and loses bytes that came in the same segment (docker/docker-py#3332)."""

FALSE_WORDS = ("", "0", "no", "false", "none")


class ApiError(Exception):
    """A docker-shaped error reply: ``{"message": ...}`` with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection (or it broke) while we still had something to say."""


def docker_bool(value: str | None) -> bool:
    """dockerd's BoolValue: docker-py sends True/False, the CLI 1/0; "", no, false, none are false."""
    return value is not None and value.strip().lower() not in FALSE_WORDS


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    path: str  # without the /vX.Y prefix and the query
    version: tuple[int, int]
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; a repeated header's last value
    body: bytes = b""
    refused: str | None = None  # why the path's API version is not served (a 400)
    streamed: bool = False  # the body is left on the connection: Connection.body() reads it

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        return default if value is None else docker_bool(value)

    def json(self) -> Any:
        """The body as JSON (an empty body is ``{}``); malformed JSON is a 400."""
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"malformed JSON body: {e}") from None
        except RecursionError:
            value = _TOO_DEEP
        if value is _TOO_DEEP or too_deep(value):
            raise ApiError(400, f"malformed JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
        return value


def too_deep(value: Any, limit: int = 0) -> bool:
    """Whether a JSON value nests deeper than MAX_JSON_DEPTH (docker's bodies: 4 levels): the
    translation walks bodies recursively, and must never hit Python's recursion limit."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > (limit or MAX_JSON_DEPTH):
            return True
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return False


def parse_target(method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
    """A Request from h11's fields; one for a version outside the supported range says why."""
    try:
        parts = urlsplit(target)
    except ValueError as e:  # e.g. "//[x": an invalid IPv6 authority
        raise ApiError(400, f"bad request target: {e}") from None
    try:
        version, path = split_path(parts.path)
        refused = None
    except UnsupportedVersion as e:
        version, path, refused = MAX_VERSION, parts.path, str(e)
    query = parse_qs(parts.query, keep_blank_values=True)
    return Request(method, target, path, version, query, headers, body, refused)


def common_headers() -> list[tuple[str, str]]:
    """What every reply carries (docker's clients read Api-Version to negotiate down)."""
    return [
        ("Api-Version", fmt(MAX_VERSION)),
        ("Ostype", "linux"),
        ("Server", f"nspawnctl/{__version__} (linux)"),
        ("Docker-Experimental", "false"),
    ]


@dataclass
class Connection:
    """A connection's h11 state, its reader (one pump task feeds ``_chunks``) and its writer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    max_body: int = MAX_BODY
    max_head: int = MAX_HEAD
    streams_body: Callable[[str, str], bool] = lambda method, path: False
    """Whether a request's body is read by its handler as it comes (``PUT .../archive``: a tar
    of any size) rather than whole (and bounded) before the handler runs."""
    proto: h11.Connection = field(init=False)
    method: str = field(init=False, default="")  # of the request being answered: a HEAD's reply has no body
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    _chunks: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=4))
    _pump: asyncio.Task[None] | None = None
    _raw_started: bool = False

    def __post_init__(self) -> None:
        self.proto = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)

    def start(self) -> None:
        self._pump = asyncio.ensure_future(self._read_all())

    async def _read_all(self) -> None:
        """Read until EOF: a hang-up is noticed while a handler waits (wait, logs -f), not only when
        the next request is read."""
        while True:
            try:
                data = await self.reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self.hung_up.set()
                await self._chunks.put(b"")
                return
            await self._chunks.put(data)

    async def _more(self) -> bytes:
        if self.hung_up.is_set() and self._chunks.empty():
            return b""
        return await self._chunks.get()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    # -- requests -------------------------------------------------------------------------
    async def next_request(self) -> Request | None:
        """The next whole request; None once the client has closed. Oversized or malformed ones
        raise ApiError (413 or 400): the caller replies and closes."""
        request: Request | None = None
        body = bytearray()
        while True:
            try:
                event = self.proto.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                raise ApiError(status, f"bad request: {e}") from None
            if event is h11.NEED_DATA:
                data = await self._more()
                try:
                    self.proto.receive_data(data)
                except h11.RemoteProtocolError as e:
                    raise ApiError(400, f"bad request: {e}") from None
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > self.max_head:
                    raise ApiError(431, f"request head too large (more than {self.max_head} bytes)")
                method, target = event.method.decode("ascii"), event.target.decode("latin-1")
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
                self.method = method
                request = parse_target(method, target, headers, b"")
                if self.streams_body(request.method, request.path):
                    return dataclasses.replace(request, streamed=True)
                length = headers.get("content-length")
                if length is not None and int(length) > self.max_body:
                    raise ApiError(413, f"request body too large (more than {self.max_body} bytes)")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise ApiError(413, f"request body too large (more than {self.max_body} bytes)")
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return dataclasses.replace(request, body=bytes(body))

    async def body(self) -> AsyncIterator[bytes]:
        """A streamed request's body, chunk by chunk; ClientGone when the client hangs up (or
        breaks the framing) before its end."""
        while True:
            try:
                event = self.proto.next_event()
            except h11.RemoteProtocolError:
                raise ClientGone() from None
            if event is h11.NEED_DATA:
                data = await self._more()
                try:
                    self.proto.receive_data(data)
                except h11.RemoteProtocolError:
                    raise ClientGone() from None
                continue
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise ClientGone()

    def can_go_on(self) -> bool:
        """Whether the connection can take another request (and make it ready for one)."""
        if self.proto.our_state is h11.DONE and self.proto.their_state is h11.DONE:
            self.proto.start_next_cycle()
            return True
        return False

    # -- replies --------------------------------------------------------------------------
    async def _send(self, *events: Any) -> None:
        if self.writer.is_closing():
            raise ClientGone()
        for event in events:
            data = self.proto.send(event)
            if data:
                self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ClientGone() from e

    def _head(self, status: int, headers: Iterable[tuple[str, str]], reason: str = "") -> h11.Response:
        return h11.Response(
            status_code=status, headers=[*common_headers(), *headers], reason=reason.encode() or b""
        )

    async def reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        head_only: bool = False,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A whole reply with its Content-Length (no body for 204/304 or a HEAD)."""
        headers = [("Content-Type", content_type), *extra]
        if status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        events: list[Any] = [self._head(status, headers)]
        if body and status not in (204, 304) and not head_only and self.method != "HEAD":
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self._send(*events)

    async def reply_json(self, status: int, value: Any) -> None:
        await self.reply(status, json.dumps(value).encode() + b"\n")

    async def reply_error(self, status: int, message: str) -> None:
        """A docker-shaped error, when the reply has not begun yet (else the connection just closes)."""
        if self.proto.our_state is h11.SEND_RESPONSE:
            await self.reply_json(status, {"message": message})

    async def stream(
        self, status: int = 200, content_type: str = "application/json", extra: Iterable[tuple[str, str]] = ()
    ) -> Stream:
        """Send the head now (chunked), the body as it comes: ``wait``'s head must not wait for the
        exit, or ``docker run`` never sends ``start``."""
        await self._send(self._head(status, [("Content-Type", content_type), *extra]))
        return Stream(self)

    async def hijack(self, content_type: str) -> Stream:
        """docker's hijacked connection: ``101 UPGRADED`` when the client asked for an upgrade, then
        raw bytes both ways; else a plain chunked 200 carrying the same bytes."""
        if not self.wants_upgrade_now():
            return await self.stream(200, content_type)
        headers = [*common_headers(), ("Content-Type", content_type), ("Connection", "Upgrade")]
        headers.append(("Upgrade", "tcp"))
        await self._send(h11.InformationalResponse(status_code=101, headers=headers, reason=b"UPGRADED"))
        await asyncio.sleep(HIJACK_GRACE)
        return Stream(self, raw=True)

    async def read_raw(self) -> bytes:
        """The next bytes the client sent after the request, on a hijacked connection (attach's
        stdin); b"" once it closed its side (a half-close: it may still read)."""
        if not self._raw_started:
            # what came with the request, still in h11's buffer; the connection serves no
            # further request once hijacked, so h11 never reads it
            self._raw_started = True
            data, _ = self.proto.trailing_data
            if data:
                return bytes(data)
        return await self._more()

    def wants_upgrade_now(self) -> bool:
        return self.proto.their_state is h11.MIGHT_SWITCH_PROTOCOL

    async def write_raw(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ClientGone()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ClientGone() from e


@dataclass
class Stream:
    """A reply body under way: chunked through h11, or raw on a hijacked connection."""

    conn: Connection
    raw: bool = False

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self.raw:
            await self.conn.write_raw(data)
        else:
            await self.conn._send(h11.Data(data=data))

    async def end(self) -> None:
        if not self.raw:
            await self.conn._send(h11.EndOfMessage())
