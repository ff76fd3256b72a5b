"""Which handler answers a method and path: patterns such as ``/containers/{id}/json``; ``{name*}``
matches across slashes (image names have them: ``registry:5000/acc/bb:v1``)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from .http import ApiError

Handler = Callable[..., Awaitable[None]]


def _compile(pattern: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\{[a-z_]+\*?\})", pattern):
        if part.startswith("{"):
            name = part.strip("{}*")
            out += f"(?P<{name}>.+)" if part.endswith("*}") else f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(f"^{out}/?$")


@dataclass
class Router:
    _routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    _streamed: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)

    def add(self, method: str, pattern: str, handler: Handler, *, stream_body: bool = False) -> None:
        """Routes are tried in the order added: add ``/images/json`` before ``/images/{name*}``.
        ``stream_body``: the handler reads the request body as it comes (Connection.body)."""
        self._routes.append((method, _compile(pattern), handler))
        if stream_body:
            self._streamed.append((method, _compile(pattern)))

    def streams_body(self, method: str, path: str) -> bool:
        return any(m == method and rx.match(path) for m, rx in self._streamed)

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and the path's parameters (percent-decoded); 404 for an unknown path, 405
        for a known one with another method. HEAD is answered by GET's handler when it has none."""
        known = False
        for want in (method, "GET") if method == "HEAD" else (method,):
            for m, rx, handler in self._routes:
                match = rx.match(path)
                if match is None:
                    continue
                known = True
                if m == want:
                    return handler, {k: unquote(v) for k, v in match.groupdict().items()}
        if known:
            raise ApiError(405, f"method {method} not allowed on {path}")
        raise ApiError(404, "page not found")
