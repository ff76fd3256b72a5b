"""HTTP(S) downloads that hand out the body exactly as served, with clear errors.

Checksums and signatures cover the bytes on the server, so nothing may transform them: we ask
for ``Accept-Encoding: identity`` and read the raw stream with ``decode_content=False`` (requests'
``iter_content`` would silently gunzip a body served with ``Content-Encoding: gzip``). urllib3 1.x
does not check that a body is as long as its ``Content-Length`` announced, so the byte count is
checked here; urllib3 2.x raises on a short body, which maps to the same error.

``requests`` is imported when the first request is made, not when this module is imported.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import os
import queue
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urljoin, urlsplit

from .. import __version__
from ..errors import DownloadNotFound, FetchError, InsecureTransport, InvalidArgument

if TYPE_CHECKING:
    from types import TracebackType

    import requests
    from _typeshed import WriteableBuffer

__all__ = ["Download", "FetchOptions", "Fetcher", "ProgressFn"]

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes read so far, Content-Length or None) after every chunk."""

INSECURE_HINT = "--insecure permits plain HTTP (signatures are still checked)"
_CA_HINT = "pass the CA that signed the server's certificate with --ca-cert FILE (or REQUESTS_CA_BUNDLE=FILE)"
_RETRY_HINT = "the server or the network dropped the download; retry"
_CHUNK = 1 << 20
_PREFETCH_DEPTH = 8  # chunks (of up to _CHUNK) a prefetching download may hold ahead of its reader
_POLL = 0.05  # seconds between two looks at the stop flag of a prefetcher blocked on a full queue
_CLOSE_WAIT = 5.0  # seconds close() waits for a prefetcher whose socket it shut down (it ends at once)
_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True)
class FetchOptions:
    insecure: bool = False  # permit http:// (and nothing else: TLS is still verified)
    ca_cert: str | None = None  # PEM bundle path; None -> requests' default (honours REQUESTS_CA_BUNDLE)
    timeout: float = 30.0  # connect and per-read timeout, seconds
    tls_verify: bool = True  # False: certificates are not checked, and plain http:// is permitted too
    tls_host: str | None = None
    """The one host[:port] ``tls_verify=False`` applies to (a registry); every other host (a token
    server, a CDN a redirect leads to) is verified as usual. None: every host."""

    @property
    def plain_http(self) -> bool:
        """Whether http:// URLs (and redirects to them) are allowed on every host."""
        return self.insecure or (not self.tls_verify and self.tls_host is None)

    def relaxed(self, url: str) -> bool:
        """Whether ``tls_verify=False`` applies to ``url``: certificates unchecked, plain http allowed."""
        return not self.tls_verify and (self.tls_host is None or same_host(url, self.tls_host))

    def plain_http_ok(self, url: str) -> bool:
        """Whether ``url`` may be plain http://."""
        return self.insecure or self.relaxed(url)


class Fetcher:
    """One HTTP session (connection reuse, proxies from the environment) with nspawnctl's rules."""

    def __init__(self, options: FetchOptions = FetchOptions()) -> None:
        self.options = options
        self._session: requests.Session | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def check_url(self, url: str) -> None:
        """Refuse what we will not download: plain HTTP without --insecure, and non-HTTP schemes."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidArgument(
                f"unsupported URL {url}: only https:// (or http:// with --insecure) can be downloaded",
                hint="give an https:// URL",
            )
        if not parts.hostname:
            raise InvalidArgument(
                f"invalid URL {url}: no host name", hint="give a URL like https://host/path"
            )
        if scheme == "http" and not self.options.plain_http_ok(url):
            raise InsecureTransport(f"refusing to download {url} over plain HTTP", hint=INSECURE_HINT)

    def open(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        progress: ProgressFn | None = None,
        prefetch: bool = False,
    ) -> Download:
        """Start a GET and return the body as a stream; conditional when etag/last_modified are given.

        404/410 -> DownloadNotFound, other non-200 answers -> FetchError (a 304 to a conditional
        GET is a Download with ``not_modified`` set and an empty body). ``prefetch``: see Download.
        """
        self.check_url(url)
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        resp = self._get(url, headers)
        try:
            status = resp.status_code
            if status == 304 and headers:
                resp.close()
                return Download(
                    resp.url,
                    None,
                    total=None,
                    etag=resp.headers.get("ETag") or etag,
                    last_modified=resp.headers.get("Last-Modified") or last_modified,
                    not_modified=True,
                    timeout=self.options.timeout,
                )
            if status in (404, 410):
                raise DownloadNotFound(
                    f"server answered {status} (not found) for {url}", hint="check the URL, name and version"
                )
            if status != 200:
                answer = f"{status} {resp.reason}" if resp.reason else str(status)
                raise FetchError(f"server answered {answer} for {url}", hint=_status_hint(status))
            return Download(
                resp.url,
                resp,
                total=_content_length(resp),
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                progress=progress,
                timeout=self.options.timeout,
                prefetch=prefetch,
            )
        except BaseException:
            resp.close()
            raise

    def get_small(self, url: str, *, max_bytes: int = 1 << 20, missing_ok: bool = False) -> bytes | None:
        """A whole small file (checksum list, signature, key, discovery page) held in memory."""
        try:
            download = self.open(url)
        except DownloadNotFound:
            if missing_ok:
                return None
            raise
        with download:
            if download.total is not None and download.total > max_bytes:
                raise FetchError(
                    f"{url} is {download.total} bytes, more than the {max_bytes} expected for it",
                    hint="check the URL",
                )
            data = bytearray()
            while len(data) <= max_bytes:
                chunk = download.read(max_bytes + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) > max_bytes:
                raise FetchError(
                    f"{url} is larger than the {max_bytes} bytes expected for it", hint="check the URL"
                )
            return bytes(data)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        auth: str | tuple[str, str] | None = None,
        stream: bool = True,
    ) -> requests.Response:
        """Send one request with nspawnctl's rules and return the response whatever its status.

        For clients that interpret statuses themselves (the registry API). ``auth`` is a
        (user, password) pair for Basic or a whole ``Authorization`` value: given that way, it is
        dropped when a redirect leads to another host (requests strips it), and a ``~/.netrc`` entry
        cannot replace it. Connection failures raise FetchError; close the response when done.
        """
        self.check_url(url)
        authorizer: Callable[[Any], Any] | None = None
        if auth is not None:
            value = basic_authorization(*auth) if isinstance(auth, tuple) else auth

            def authorizer(prepared: Any) -> Any:
                prepared.headers["Authorization"] = value
                return prepared

        return self._send(method, url, dict(headers or {}), authorizer, stream)

    def body(
        self,
        response: requests.Response,
        progress: ProgressFn | None = None,
        *,
        url: str | None = None,
        prefetch: bool = False,
    ) -> Download:
        """The body of a response from ``request`` as a Download (raw bytes, length checked).

        ``url`` names it in errors instead of the final URL (a CDN's signed URL is long and secret).
        ``prefetch``: see Download.
        """
        return Download(
            url or response.url,
            response,
            total=_content_length(response),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            progress=progress,
            timeout=self.options.timeout,
            prefetch=prefetch,
        )

    # --- internals ------------------------------------------------------------------------------

    def _get(self, url: str, headers: dict[str, str]) -> requests.Response:
        return self._send("GET", url, headers, None, True)

    def _send(
        self, method: str, url: str, headers: dict[str, str], auth: Any, stream: bool
    ) -> requests.Response:
        import requests

        kwargs: dict[str, Any] = {
            "headers": headers,
            "stream": stream,
            "timeout": (self.options.timeout, self.options.timeout),
            "allow_redirects": True,
        }
        if auth is not None:
            kwargs["auth"] = auth
        if not self.options.tls_verify and self.options.tls_host is None:
            kwargs["verify"] = False
        elif self.options.ca_cert:
            if not os.path.exists(self.options.ca_cert):
                raise InvalidArgument(
                    f"CA certificate file {self.options.ca_cert} does not exist",
                    hint="--ca-cert takes a PEM file with the CA certificate(s)",
                )
            # Per request: a session-wide value would lose against REQUESTS_CA_BUNDLE (requests #3829).
            kwargs["verify"] = self.options.ca_cert
        try:
            with warnings.catch_warnings():
                if not self.options.tls_verify:  # asked for; urllib3 would warn on every request
                    import urllib3.exceptions

                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self._requests_session().request(method, url, **kwargs)
        except requests.RequestException as e:
            raise self._request_error(e, url) from e

    def _requests_session(self) -> requests.Session:
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = f"nspawnctl/{__version__}"
            session.headers["Accept-Encoding"] = "identity"
            session.hooks["response"].append(self._check_redirect)
            if not self.options.tls_verify and self.options.tls_host is not None:
                # Decided per request, redirects included: only tls_host goes unverified.
                adapter = _relaxing_adapter(self.options)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
            self._session = session
        return self._session

    def _check_redirect(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook, run before requests follows a redirect: no downgrade to plain HTTP."""
        if not resp.is_redirect:
            return
        target = urljoin(resp.url, resp.headers.get("Location", ""))
        scheme = urlsplit(target).scheme.lower()
        if scheme == "https" or (scheme == "http" and self.options.plain_http_ok(target)):
            return
        resp.close()
        # Only where the redirect leads: a CDN's signed URL carries a secret in its query.
        where, there = _without_query(resp.url), _origin(target)
        if scheme == "http":
            raise InsecureTransport(f"{where} redirects to plain HTTP {there}", hint=INSECURE_HINT)
        raise FetchError(f"{where} redirects to unsupported URL {there}")

    def _request_error(self, e: BaseException, url: str) -> FetchError | InvalidArgument:
        import requests.exceptions as rex

        host = urlsplit(url).netloc
        timeout = f"{self.options.timeout:g}s"
        if isinstance(e, rex.SSLError):
            cert = _find(e, ssl.SSLCertVerificationError)
            if cert is not None or "CERTIFICATE_VERIFY_FAILED" in str(e):
                return FetchError(f"certificate verification failed for {url}: {_reason(e)}", hint=_CA_HINT)
            return FetchError(f"TLS connection to {host} failed for {url}: {_reason(e)}")
        if isinstance(e, rex.ConnectTimeout):
            return FetchError(
                f"connecting to {host} timed out after {timeout} for {url}",
                hint="check the host name, the network and proxy settings; retry",
            )
        if isinstance(e, rex.ReadTimeout):
            return FetchError(f"{host} did not answer within {timeout} for {url}", hint=_RETRY_HINT)
        if isinstance(e, rex.ProxyError):
            return FetchError(
                f"proxy failed for {url}: {_reason(e)}", hint="check HTTPS_PROXY, HTTP_PROXY and NO_PROXY"
            )
        if isinstance(e, rex.ConnectionError):
            if _find(e, http.client.IncompleteRead) is not None or _is_reset(e):
                return FetchError(f"{host} closed the connection for {url}: {_reason(e)}", hint=_RETRY_HINT)
            return FetchError(
                f"cannot connect to {host} for {url}: {_reason(e)}",
                hint="check the host name and the network; retry",
            )
        if isinstance(e, rex.TooManyRedirects):
            return FetchError(f"too many redirects for {url}", hint="check the URL")
        if isinstance(e, rex.InvalidURL | rex.InvalidSchema | rex.MissingSchema):
            return InvalidArgument(
                f"invalid URL {url}: {_reason(e)}", hint="give a URL like https://host/path"
            )
        return FetchError(f"download of {url} failed: {_reason(e)}", hint=_RETRY_HINT)


class Download(io.RawIOBase):
    """A response body as a raw binary stream, exactly as served; closing releases the connection.

    With ``prefetch``, a thread of its own reads the body from the socket in large pieces into a
    bounded queue (_PREFETCH_DEPTH MiB) while the reader hashes and unpacks what came before: a
    server sends only as fast as the socket is drained, and a reader that also hashes and
    decompresses would leave it idle meanwhile. Errors surface in ``read`` as without it.
    """

    def __init__(
        self,
        url: str,
        response: requests.Response | None,
        *,
        total: int | None,
        etag: str | None,
        last_modified: str | None,
        timeout: float,
        not_modified: bool = False,
        progress: ProgressFn | None = None,
        prefetch: bool = False,
    ) -> None:
        super().__init__()
        self.url = url  # the final URL, after redirects
        self.not_modified = not_modified
        self.total = total
        self.etag = etag
        self.last_modified = last_modified
        self.done = 0
        self._response = response
        self._progress = progress
        self._timeout = timeout
        self._errors: tuple[type[BaseException], ...] = ()
        if response is not None:
            import urllib3.exceptions

            self._errors = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
            if progress is not None:
                progress(0, total)
        self._prefetched: queue.Queue[bytes | BaseException] | None = None
        self._prefetcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._left = memoryview(b"")  # the rest of a prefetched chunk
        if prefetch and response is not None:
            self._prefetched = queue.Queue(_PREFETCH_DEPTH)
            self._prefetcher = threading.Thread(
                target=self._prefetch,
                args=(response, self._prefetched),
                name="nspawnctl-download",
                daemon=True,
            )
            self._prefetcher.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._read(size)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self._read(_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Release the connection at once, even while a prefetcher waits in a read of a stalled or
        trickling server: its read holds the stream's lock that closing takes, so the socket is
        shut down first (the read then ends) and the prefetcher is waited for, boundedly."""
        self._stop.set()  # a prefetcher blocked on a full queue ends at its next look
        response, self._response = self._response, None
        if response is not None:
            prefetcher = self._prefetcher
            if prefetcher is not None and prefetcher.is_alive():
                # urllib3 >= 2.3; ValueError/RuntimeError: no socket (any more) to shut down
                with contextlib.suppress(ValueError, RuntimeError, OSError):
                    response.raw.shutdown()
                prefetcher.join(_CLOSE_WAIT)
            response.close()
        super().close()

    def _prefetch(self, response: requests.Response, out: queue.Queue[bytes | BaseException]) -> None:
        """The prefetching thread: the body in _CHUNK pieces, then b"" (or the read's exception)."""
        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = response.raw.read(_CHUNK, decode_content=False)
            except BaseException as e:  # raised by read() in the reader's thread
                item = e
            while not self._stop.is_set():
                try:
                    out.put(item, timeout=_POLL)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def _next_prefetched(self, prefetched: queue.Queue[bytes | BaseException]) -> bytes | BaseException:
        """The next piece, or ValueError once closed: a read in another thread (the unpacker's
        fetch stage) must not outwait a close."""
        while True:
            try:
                return prefetched.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise ValueError("I/O operation on closed download") from None

    def _raw_read(self, size: int) -> bytes:
        assert self._response is not None
        if self._prefetched is None:
            data: bytes = self._response.raw.read(size, decode_content=False)
            return data
        if not self._left:
            item = self._next_prefetched(self._prefetched)
            if isinstance(item, BaseException):
                self._prefetched.put(item)  # raised again by a later read, like a broken socket
                raise item
            if not item:
                self._prefetched.put(item)
                return item
            if len(item) <= size:
                return item
            self._left = memoryview(item)
        data, self._left = self._left[:size].tobytes(), self._left[size:]
        return data

    def _read(self, size: int) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed download")
        if size == 0 or self._response is None:
            return b""
        try:
            data = self._raw_read(size)
        except self._errors as e:
            raise self._read_error(e) from e
        if not data:
            if self.total is not None and self.done < self.total:
                raise self._closed_early()
            return b""
        self.done += len(data)
        if self._progress is not None:
            self._progress(self.done, self.total)
        return data

    def _so_far(self) -> str:
        return f"{self.done} of {self.total} bytes" if self.total is not None else f"{self.done} bytes"

    def _closed_early(self) -> FetchError:
        return FetchError(
            f"download of {self.url} cut short: connection closed after {self._so_far()}", hint=_RETRY_HINT
        )

    def _read_error(self, e: BaseException) -> FetchError:
        import urllib3.exceptions

        if (
            _find(e, http.client.IncompleteRead) is not None
            or _find(e, urllib3.exceptions.IncompleteRead) is not None
        ):
            return self._closed_early()
        if _find(e, urllib3.exceptions.ReadTimeoutError) is not None or _find(e, TimeoutError) is not None:
            return FetchError(
                f"download of {self.url} stalled: no data for {self._timeout:g}s after {self._so_far()}",
                hint=_RETRY_HINT,
            )
        return FetchError(
            f"download of {self.url} failed after {self._so_far()}: {_reason(e)}", hint=_RETRY_HINT
        )


def same_host(url: str, host: str) -> bool:
    """Whether ``url`` is on ``host`` (host[:port]; no port: the default one of the URL's scheme)."""
    return _origin_key(url) == _origin_key(f"{urlsplit(url).scheme}://{host}/")


def _origin_key(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL (no user info, path or query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _relaxing_adapter(options: FetchOptions) -> Any:
    """A requests adapter that skips certificate checks for ``options.tls_host`` only."""
    from requests.adapters import HTTPAdapter

    class RelaxingAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            if options.relaxed(request.url):
                kwargs["verify"] = False
            return super().send(request, *args, **kwargs)

    return RelaxingAdapter()


def basic_authorization(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value; UTF-8, where requests would use Latin-1 and fail on others."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _status_hint(status: int) -> str | None:
    if status in (401, 403):
        return "the server refuses access; nspawnctl sends no credentials, so check the URL"
    if status >= 500 or status == 429:
        return "a problem on the server's side; retry later"
    return None


def _content_length(resp: requests.Response) -> int | None:
    # With Transfer-Encoding the length is framed by the chunks; Content-Length must be ignored.
    if "Transfer-Encoding" in resp.headers:
        return None
    value = resp.headers.get("Content-Length", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None  # not "²"


def _chain(e: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (args, .reason, causes), breadth first: requests nests deeply."""
    seen: set[int] = set()
    queue = [e]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = (*current.args, getattr(current, "reason", None), current.__cause__, current.__context__)
        queue.extend(n for n in nested if isinstance(n, BaseException))


def _find(e: BaseException, kind: type[_E]) -> _E | None:
    for item in _chain(e):
        if isinstance(item, kind):
            return item
    return None


def _is_reset(e: BaseException) -> bool:
    return _find(e, ConnectionResetError) is not None or _find(e, ConnectionAbortedError) is not None


def _reason(e: BaseException) -> str:
    """A short human reason from the innermost useful exception, not urllib3's nested repr."""
    cert = _find(e, ssl.SSLCertVerificationError)
    if cert is not None:
        return str(cert.verify_message or cert.reason or cert)
    if _find(e, socket.gaierror) is not None:
        return "cannot resolve the host name"
    if _find(e, http.client.IncompleteRead) is not None:
        return "connection closed before the end of the body"
    for item in _chain(e):
        if isinstance(item, ssl.SSLError) and item.reason:
            return str(item.reason)
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
