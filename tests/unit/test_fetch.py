"""Tests for nspawnctl.fetch.http and nspawnctl.cli.progress against real local HTTP(S) servers.

Each test starts a threaded HTTP server on 127.0.0.1 with handlers written for the case (gzip
content-encoding, a body cut short, redirects, 304...). For HTTPS, a throwaway CA and server
certificate are made with the openssl CLI once per module.
"""

from __future__ import annotations

import gzip
import io
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nspawnctl.cli import progress as progress_mod
from nspawnctl.cli.progress import progress_for
from nspawnctl.errors import DownloadNotFound, FetchError, InsecureTransport, InvalidArgument
from nspawnctl.fetch.http import Fetcher, FetchOptions

Handler = Callable[[BaseHTTPRequestHandler], None]


# --- servers ----------------------------------------------------------------------------------


class Server:
    """A threaded HTTP(S) server on 127.0.0.1 routing by path; records every request it sees."""

    def __init__(self, routes: dict[str, Handler], tls: tuple[Path, Path] | None = None) -> None:
        self.routes = routes  # may be filled in after the start, once the port is known
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()  # set on shutdown; handlers that stall wait on it
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[0], tls[1])
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(routes: dict[str, Handler], tls: tuple[Path, Path] | None = None) -> Server:
        servers.append(Server(routes, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def body(data: bytes, status: int = 200, **headers: str) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(data)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return body(b"", status, Location=location)


def make_pki(directory: Path) -> tuple[Path, tuple[Path, Path]]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca.pem, (cert, key))."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=nspawnctl test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    return directory / "ca.pem", (directory / "server.pem", directory / "server.key")


def fetcher(timeout: float = 5.0) -> Fetcher:
    """Plain HTTP allowed: most tests use an http:// server."""
    return Fetcher(FetchOptions(insecure=True, timeout=timeout))


# --- bytes as served --------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [False, True], ids=["inline", "prefetch"])
def test_body_is_exactly_as_served_even_with_content_encoding_gzip(
    serve: Callable[..., Server], prefetch: bool
) -> None:
    raw = gzip.compress(b"layer bytes " * 1000)
    server = serve({"/image.tar.gz": body(raw, Content_Encoding="gzip", Content_Type="application/gzip")})
    with fetcher() as f, f.open(server.url("/image.tar.gz"), prefetch=prefetch) as download:
        assert download.read() == raw  # not gunzipped: checksums cover these bytes
        assert download.total == len(raw)
        assert download.done == len(raw)
    assert server.requests[0][1]["Accept-Encoding"] == "identity"
    assert server.requests[0][1]["User-Agent"].startswith("nspawnctl/")


@pytest.mark.parametrize("prefetch", [False, True], ids=["inline", "prefetch"])
def test_readinto_through_a_buffered_reader_and_close(serve: Callable[..., Server], prefetch: bool) -> None:
    data = bytes(range(256)) * 4096 * 3  # 3 MiB: several prefetched pieces, read in odd sizes
    server = serve({"/blob": body(data)})
    with fetcher() as f:
        download = f.open(server.url("/blob"), prefetch=prefetch)
        with io.BufferedReader(download, 64 << 10) as reader:
            parts = []
            while chunk := reader.read(100_000):
                parts.append(chunk)
        assert b"".join(parts) == data
        assert download.closed


@pytest.mark.parametrize("enforced", [True, False], ids=["urllib3-2", "urllib3-1"])
def test_short_body_is_an_error_not_a_short_file(serve: Callable[..., Server], enforced: bool) -> None:
    def half(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b"x" * 500)
        h.close_connection = True

    server = serve({"/image.tar": half})
    with fetcher() as f, f.open(server.url("/image.tar")) as download:
        if not enforced:  # as urllib3 1.x: EOF instead of an error, our own count must catch it
            download._response.raw.enforce_content_length = False  # type: ignore[union-attr]
        with pytest.raises(FetchError, match="connection closed after 500 of 1000 bytes") as info:
            download.read()
        assert info.value.hint and "retry" in info.value.hint
        assert server.url("/image.tar") in info.value.message


def test_prefetched_short_body_is_the_same_error_every_read(serve: Callable[..., Server]) -> None:
    def half(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "3000000")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b"x" * 1_500_000)
        h.close_connection = True

    server = serve({"/image.tar": half})
    with fetcher() as f, f.open(server.url("/image.tar"), prefetch=True) as download:
        with pytest.raises(FetchError, match="cut short") as info:
            while download.read(1 << 20):
                pass
        assert info.value.hint and "retry" in info.value.hint
        with pytest.raises(FetchError, match="cut short"):
            download.read(1 << 20)


def test_closing_a_prefetching_download_stops_its_thread(serve: Callable[..., Server]) -> None:
    data = b"z" * (32 << 20)  # more than the prefetch queue holds
    server = serve({"/big": body(data)})
    with fetcher() as f:
        download = f.open(server.url("/big"), prefetch=True)
        assert download.read(1000) == b"z" * 1000
        download.close()
        deadline = time.monotonic() + 10
        while any(t.name == "nspawnctl-download" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the prefetching thread did not stop"
            time.sleep(0.05)


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_close_of_a_prefetching_download_is_prompt_against_a_slow_server(
    serve: Callable[..., Server], trickle: bool
) -> None:
    """The prefetcher sits in a 1 MiB read that a stalled or trickling server never completes."""

    def slow(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 21))
        h.end_headers()
        h.wfile.flush()
        while not server.stop.wait(0.2):
            if trickle:
                h.wfile.write(b"t")
                h.wfile.flush()

    server = serve({"/slow": slow})
    with fetcher(timeout=30) as f:
        download = f.open(server.url("/slow"), prefetch=True)
        errors: list[BaseException] = []

        def read() -> None:
            try:
                download.read(1)
            except BaseException as e:
                errors.append(e)

        reading = threading.Thread(target=read)
        reading.start()  # a reader in another thread (the unpacker's fetch stage) waits too
        time.sleep(0.5)
        start = time.monotonic()
        download.close()
        reading.join(2)
        assert time.monotonic() - start < 1.5
        assert not reading.is_alive()
        assert [type(e) for e in errors] == [ValueError]
        assert not any(t.name == "nspawnctl-download" for t in threading.enumerate())


def test_prefetched_stalled_body_times_out(serve: Callable[..., Server]) -> None:
    def stall(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b"y" * 10)
        h.wfile.flush()
        server.stop.wait(5)

    server = serve({"/slow": stall})
    with (
        fetcher(timeout=0.3) as f,
        f.open(server.url("/slow"), prefetch=True) as download,
        pytest.raises(FetchError, match=r"stalled: no data for 0.3s"),
    ):
        download.read(100)


def test_stalled_body_times_out(serve: Callable[..., Server]) -> None:
    def stall(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b"y" * 10)
        h.wfile.flush()
        server.stop.wait(5)

    server = serve({"/slow": stall})
    with fetcher(timeout=0.3) as f, f.open(server.url("/slow")) as download:
        assert download.read(10) == b"y" * 10
        with pytest.raises(FetchError, match=r"stalled: no data for 0.3s after 10 of 100 bytes"):
            download.read(90)


def test_404_and_410_are_download_not_found(serve: Callable[..., Server]) -> None:
    server = serve({"/gone": body(b"", 410)})
    with fetcher() as f:
        with pytest.raises(DownloadNotFound, match=r"404 .*" + server.url("/missing")):
            f.open(server.url("/missing"))
        with pytest.raises(DownloadNotFound, match="410"):
            f.get_small(server.url("/gone"))
        assert f.get_small(server.url("/missing"), missing_ok=True) is None


def test_server_error_is_fetch_error_not_not_found(serve: Callable[..., Server]) -> None:
    server = serve({"/boom": body(b"oops", 500)})
    with fetcher() as f, pytest.raises(FetchError) as info:
        f.get_small(server.url("/boom"), missing_ok=True)
    assert not isinstance(info.value, DownloadNotFound)
    assert info.value.message == f"server answered 500 Internal Server Error for {server.url('/boom')}"


def test_plain_http_needs_insecure_and_never_connects(serve: Callable[..., Server]) -> None:
    server = serve({"/x": body(b"x")})
    with Fetcher() as f:
        with pytest.raises(InsecureTransport) as info:
            f.open(server.url("/x"))
        assert info.value.hint == "--insecure permits plain HTTP (signatures are still checked)"
        with pytest.raises(InvalidArgument, match="unsupported URL"):
            f.check_url("ftp://example.com/x")
        with pytest.raises(InvalidArgument, match="no host name"):
            f.check_url("https:///x")
        f.check_url("https://example.com/x")  # no exception: https is always allowed
    assert server.requests == []


def test_get_small_limits(serve: Callable[..., Server]) -> None:
    def unsized(h: BaseHTTPRequestHandler) -> None:  # no Content-Length: the body ends at close
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b"z" * 300)
        h.close_connection = True

    server = serve({"/sums": body(b"a" * 100), "/unsized": unsized})
    with fetcher() as f:
        assert f.get_small(server.url("/sums"), max_bytes=100) == b"a" * 100
        with pytest.raises(FetchError, match="100 bytes, more than the 99 expected"):
            f.get_small(server.url("/sums"), max_bytes=99)
        assert f.get_small(server.url("/unsized"), max_bytes=300) == b"z" * 300
        with pytest.raises(FetchError, match="larger than the 299 bytes"):
            f.get_small(server.url("/unsized"), max_bytes=299)


def test_conditional_get(serve: Callable[..., Server]) -> None:
    def tagged(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            h.send_response(304)
            h.send_header("ETag", '"v1"')
            h.end_headers()
            return
        body(b"content", ETag='"v1"', Last_Modified="Tue, 24 Nov 2026 07:00:00 GMT")(h)

    server = serve({"/image.tar": tagged})
    with fetcher() as f:
        with f.open(server.url("/image.tar")) as first:
            assert (first.not_modified, first.etag, first.read()) == (False, '"v1"', b"content")
            assert first.last_modified == "Tue, 24 Nov 2026 07:00:00 GMT"
        with f.open(server.url("/image.tar"), etag='"v1"', last_modified=first.last_modified) as again:
            assert again.not_modified
            assert again.etag == '"v1"'
            assert again.read() == b""
    assert server.requests[1][1]["If-Modified-Since"] == "Tue, 24 Nov 2026 07:00:00 GMT"


def test_progress_gets_running_totals(serve: Callable[..., Server]) -> None:
    data = b"p" * 300_000
    server = serve({"/big": body(data)})
    calls: list[tuple[int, int | None]] = []
    with (
        fetcher() as f,
        f.open(server.url("/big"), progress=lambda done, total: calls.append((done, total))) as d,
    ):
        while d.read(65536):
            pass
    assert calls[0] == (0, 300_000)
    assert calls[-1] == (300_000, 300_000)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})
    assert len(calls) >= 5


def test_redirect_followed_and_final_url_kept(serve: Callable[..., Server]) -> None:
    server = serve({"/latest.tar": redirect("/releases/v2.tar", 301), "/releases/v2.tar": body(b"v2")})
    with fetcher() as f, f.open(server.url("/latest.tar")) as download:
        assert download.read() == b"v2"
        assert download.url == server.url("/releases/v2.tar")


def test_https_to_http_redirect_refused(
    serve: Callable[..., Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    ca, cert = pki
    plain = serve({"/x": body(b"plain")})
    secure = serve({"/x": redirect(plain.url("/x"))}, tls=cert)
    with (
        Fetcher(FetchOptions(ca_cert=str(ca), timeout=5)) as f,
        pytest.raises(InsecureTransport) as info,
    ):
        f.open(secure.url("/x"))
    assert info.value.message == f"{secure.url('/x')} redirects to plain HTTP {plain.url('')}"
    assert plain.requests == []  # refused before the plain request was made
    with Fetcher(FetchOptions(ca_cert=str(ca), insecure=True, timeout=5)) as f:
        assert f.get_small(secure.url("/x")) == b"plain"


def test_refused_redirect_names_only_the_origin_of_a_signed_url(
    serve: Callable[..., Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    ca, cert = pki
    plain = serve({})
    secure = serve({"/x": redirect(plain.url("/blob?X-Amz-Signature=secret"))}, tls=cert)
    with Fetcher(FetchOptions(ca_cert=str(ca), timeout=5)) as f, pytest.raises(InsecureTransport) as info:
        f.open(secure.url("/x"))
    assert "secret" not in info.value.message and "/blob" not in info.value.message
    assert info.value.message.endswith(f"redirects to plain HTTP http://127.0.0.1:{plain.port}")


def test_tls_host_limits_tls_verify_false_to_one_host(
    serve: Callable[..., Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    _ca, cert = pki
    plain = serve({"/x": body(b"plain")})
    other = serve({"/x": body(b"other")}, tls=cert)
    own = serve(
        {"/x": body(b"own"), "/to-other": redirect(other.url("/x")), "/to-plain": redirect(plain.url("/x"))},
        tls=cert,
    )
    options = FetchOptions(tls_verify=False, tls_host=f"127.0.0.1:{own.port}", timeout=5)
    with Fetcher(options) as f:
        assert f.get_small(own.url("/x")) == b"own"  # untrusted certificate, accepted for this host
        with pytest.raises(FetchError, match="certificate verification failed"):
            f.get_small(other.url("/x"))
        with pytest.raises(FetchError, match="certificate verification failed"):
            f.get_small(own.url("/to-other"))  # a redirect elsewhere is verified
        with pytest.raises(InsecureTransport):
            f.get_small(own.url("/to-plain"))
        with pytest.raises(InsecureTransport):
            f.get_small(plain.url("/x"))
    assert plain.requests == []
    with Fetcher(FetchOptions(tls_verify=False, tls_host=f"127.0.0.1:{plain.port}", timeout=5)) as f:
        assert f.get_small(plain.url("/x")) == b"plain"


def test_https_needs_the_ca(
    serve: Callable[..., Server], pki: tuple[Path, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert = pki
    server = serve({"/SHA256SUMS": body(b"sums\n")}, tls=cert)
    with Fetcher(FetchOptions(timeout=5)) as f, pytest.raises(FetchError) as info:
        f.get_small(server.url("/SHA256SUMS"))
    assert info.value.message.startswith(f"certificate verification failed for {server.url('/SHA256SUMS')}: ")
    assert "\n" not in info.value.message
    assert info.value.hint and "--ca-cert" in info.value.hint and "REQUESTS_CA_BUNDLE" in info.value.hint
    with Fetcher(FetchOptions(ca_cert=str(ca), timeout=5)) as f:
        assert f.get_small(server.url("/SHA256SUMS")) == b"sums\n"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    with Fetcher(FetchOptions(timeout=5)) as f:
        assert f.get_small(server.url("/SHA256SUMS")) == b"sums\n"
    with Fetcher(FetchOptions(ca_cert=str(ca.parent / "nope.pem"))) as f, pytest.raises(InvalidArgument):
        f.get_small(server.url("/SHA256SUMS"))


def test_connection_refused_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    with fetcher() as f, pytest.raises(FetchError) as info:
        f.open(url)
    assert info.value.message == f"cannot connect to 127.0.0.1:{port} for {url}: Connection refused"


def test_requests_and_rich_are_not_imported_until_used() -> None:
    code = (
        "import sys, nspawnctl.fetch.http, nspawnctl.fetch.discovery, nspawnctl.cli.progress\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


# --- progress display -------------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress_for("image.tar") as update:
        assert update is None
    assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize("renderer", ["rich", "plain"])
def test_progress_bar_finishes_and_is_erased_on_error(monkeypatch: pytest.MonkeyPatch, renderer: str) -> None:
    if renderer == "plain":
        monkeypatch.setattr(progress_mod, "_rich", progress_mod._plain)
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress_for("image.tar") as update:
        assert update is not None
        update(0, 2_000_000)
        update(2_000_000, 2_000_000)
    shown = tty.getvalue()
    assert "image.tar" in shown
    if renderer == "rich":
        assert "2.0/2.0 MB" in shown
        assert shown.endswith("\n\x1b[?25h")  # the finished bar stays, the cursor is back
    else:
        assert "2MB/2MB 100%" in shown
        assert shown.endswith("\n")

    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with pytest.raises(KeyboardInterrupt), progress_for("image.tar") as update:
        assert update is not None
        update(1000, 2_000_000)
        raise KeyboardInterrupt
    erased = tty.getvalue()
    assert "image.tar" in erased
    # The bar's line is cleared last, so the error message starts on a clean line.
    if renderer == "rich":
        assert erased.endswith("\r\x1b[1A\x1b[2K")
    else:
        assert erased.endswith("\r") and erased.split("\r")[-2].strip() == ""

    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress_for("never.tar"):
        pass
    assert tty.getvalue() == ""  # a download that never started draws nothing


@pytest.mark.parametrize(
    ("value", "length"), [("12", 12), (" 7 ", 7), ("\u00b2", None), ("9" * 5000, None), ("-1", None)]
)
def test_content_length_of_a_hostile_server(value: str, length: int | None) -> None:
    # a latin-1 header "\xb2" reads as "²", a digit that int() refuses; so do 5000 digits
    import requests

    from nspawnctl.fetch import http

    resp = requests.Response()
    resp.headers["Content-Length"] = value
    assert http._content_length(resp) == length
