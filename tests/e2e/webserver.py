#!/usr/bin/env python3
"""A static web server for the end-to-end pull tests, with appc discovery and injected faults.

The tests start it as a subprocess:

    webserver.py --root DOCROOT [--http PORT] [--https PORT --cert CERT --key KEY]
                 [--bind ADDR] --log FILE

Port 0 picks a free port. Once every listener is bound it prints one line on stdout,
`ready http=PORT https=PORT` (only the listeners asked for), and then serves until SIGTERM or SIGINT.

* GET/HEAD of files under DOCROOT (no directory listings, no escaping DOCROOT), with
  Content-Length, Last-Modified and a strong ETag; If-None-Match / If-Modified-Since answer 304.
* appc discovery: a query with `ac-discovery=1` for path P serves DOCROOT/_discovery/P.html
  (`/` -> _discovery/index.html), whatever the Host header says.
* Faults, chosen by a path prefix: `/drop/F` sends F's full Content-Length but closes the connection
  after half of the body, if F is larger than 64 KiB (small files such as SHA256SUMS come whole, so
  a client gets as far as the big download); `/gzip-encoded/F` adds `Content-Encoding: gzip` to F's
  unchanged bytes; `/slow/F` sends 64 KiB chunks 50 ms apart; `/redirect/F` answers 302 to `/F`.
  Prefixes combine (`/slow/drop/F`); a redirect keeps the prefixes after it.
* The log file gets one line per request, `METHOD PATH[?QUERY] STATUS BODY_BYTES_SENT`, flushed at
  once, so a test can tell what a client fetched (e.g. that a second pull got only 304s).
  stdout carries only the ready line; unexpected errors go to stderr, one line each.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import selectors
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024
SLOW_DELAY = 0.05
FAULTS = ("drop", "gzip-encoded", "slow", "redirect")
DROP_MIN = 64 << 10
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".asc": "text/plain",
    ".txt": "text/plain",
    ".json": "application/json",
}


class RequestLog:
    """The --log file, shared by the handler threads."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True  # keep-alive connections must not hold up the exit
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], root: Path, log: RequestLog, tls: ssl.SSLContext | None
    ) -> None:
        self.docroot = root.resolve()
        self.request_log = log
        self.tls = tls
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which hangs on a host without network.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, addr = super().get_request()
        if self.tls is not None:
            # The handshake happens in the connection's thread (Handler.setup), so that a client
            # that never completes it cannot block the accept loop.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        print(f"webserver: {client_address}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


@dataclass
class Reply:
    """What was sent, for the log line."""

    status: int = 0
    sent: int = 0


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "nspawnctl-test-webserver"
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.reply = Reply()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the --log file is the record

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def do_GET(self) -> None:
        self.serve(body=True)

    def do_HEAD(self) -> None:
        self.serve(body=False)

    # --- plumbing ----------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        self.reply = Reply()
        self.requestline = self.command = self.path = ""
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, ssl.SSLError) as e:
            self.close_connection = True
            if self.requestline:
                print(
                    f"webserver: {self.requestline!r}: {type(e).__name__}: {e}", file=sys.stderr, flush=True
                )
        if self.requestline and self.reply.status:
            self.server.request_log.write(
                f"{self.command or '-'} {self.path or '-'} {self.reply.status} {self.reply.sent}"
            )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Plain-text errors with a Content-Length, logged like every other reply."""
        self.close_connection = self.close_connection or code >= 500 or code == 400
        body = f"{code} {message or self.responses.get(code, ('',))[0]}\n".encode()
        self.send(code, {"Content-Type": "text/plain", "Content-Length": str(len(body))}, body)

    def send(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response_only(code)
        self.send_header("Date", self.date_time_string())
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.reply.status = code
        if body and self.command != "HEAD":
            self.wfile.write(body)
            self.reply.sent += len(body)

    # --- serving -----------------------------------------------------------------------------

    def serve(self, body: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in urllib.parse.unquote(url.path).split("/") if p]
        faults: list[str] = []
        while parts and parts[0] in FAULTS:
            faults.append(parts.pop(0))
            if faults[-1] == "redirect":
                location = "/" + urllib.parse.quote("/".join(parts)) + (f"?{url.query}" if url.query else "")
                self.send(302, {"Location": location, "Content-Length": "0"})
                return
        if ".." in parts or any("\0" in p for p in parts):
            self.send_error(403, "path escapes the document root")
            return
        if "1" in urllib.parse.parse_qs(url.query).get("ac-discovery", []):
            parts = ["_discovery", *(parts[:-1]), (parts[-1] if parts else "index") + ".html"]
        path = self.server.docroot.joinpath(*parts)
        real = path.resolve()
        if real != self.server.docroot and self.server.docroot not in real.parents:
            self.send_error(403, "path escapes the document root")
            return
        if not real.is_file():
            self.send_error(404)
            return
        self.send_file(real, body, faults)

    def send_file(self, path: Path, body: bool, faults: list[str]) -> None:
        st = path.stat()
        etag = '"' + hashlib.sha256(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:32] + '"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        if self.not_modified(etag, int(st.st_mtime)):
            self.send(304, headers)
            return
        headers["Content-Type"] = TYPES.get(path.suffix, "application/octet-stream")
        headers["Content-Length"] = str(st.st_size)
        if "gzip-encoded" in faults:
            headers["Content-Encoding"] = "gzip"
        drop = "drop" in faults and st.st_size > DROP_MIN
        if drop:
            self.close_connection = True
        self.send(200, headers)
        if not body:
            return
        limit = st.st_size // 2 if drop else st.st_size
        with open(path, "rb") as f:
            self.copy(f, limit, slow="slow" in faults)
        if drop:
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def copy(self, source: BinaryIO, limit: int, slow: bool) -> None:
        while self.reply.sent < limit:
            chunk = source.read(min(CHUNK, limit - self.reply.sent))
            if not chunk:
                break
            self.wfile.write(chunk)
            self.reply.sent += len(chunk)
            if slow:
                self.wfile.flush()
                time.sleep(SLOW_DELAY)

    def not_modified(self, etag: str, mtime: int) -> bool:
        """RFC 9110: If-None-Match wins over If-Modified-Since (weak comparison for GET/HEAD)."""
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims is None:
            return False
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return since.tzinfo is not None and mtime <= since.timestamp()


# --- for the tests: run this file as a subprocess ---------------------------------------------


@dataclass
class Running:
    """A started server: its ports (from the ready line), log file and process; a context manager."""

    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def http(self) -> int:
        return self.ports["http"]

    @property
    def https(self) -> int:
        return self.ports["https"]

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start(
    root: Path,
    log: Path,
    *,
    http: int | None = 0,
    https: int | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    bind: str = "127.0.0.1",
    timeout: float = 20,
) -> Running:
    """Start webserver.py in a subprocess and wait for its ready line; stop() it when done, or use
    `with start(docroot, log, https=0, cert=tls.cert, key=tls.key) as srv:` (srv.http, srv.https)."""
    cmd = [sys.executable, __file__, "--root", str(root), "--log", str(log), "--bind", bind]
    if http is not None:
        cmd += ["--http", str(http)]
    if https is not None:
        cmd += ["--https", str(https), "--cert", str(cert), "--key", str(key)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    running = Running(proc, log)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("ready"):
        running.stop()
        raise RuntimeError(f"webserver did not start (exit {proc.returncode}): {' '.join(cmd)}")
    running.ports = {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}
    return running


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--root", required=True, type=Path, help="document root")
    ap.add_argument(
        "--http", type=int, metavar="PORT", help="serve plain HTTP on this port (0: any free one)"
    )
    ap.add_argument("--https", type=int, metavar="PORT", help="serve HTTPS on this port (0: any free one)")
    ap.add_argument("--cert", help="PEM certificate for --https")
    ap.add_argument("--key", help="PEM private key for --https")
    ap.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    ap.add_argument("--log", required=True, type=Path, help="request log, appended to")
    args = ap.parse_args(argv)
    if args.http is None and args.https is None:
        ap.error("give --http PORT, --https PORT or both")
    if args.https is not None and not (args.cert and args.key):
        ap.error("--https needs --cert and --key")
    if not args.root.is_dir():
        ap.error(f"--root {args.root} is not a directory")

    # Block the stop signals before any thread starts (threads inherit the mask), then wait for
    # them in the main thread with sigwait: no handler races with serve_forever.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    log = RequestLog(args.log)
    servers: list[tuple[str, Server]] = []
    if args.http is not None:
        servers.append(("http", Server((args.bind, args.http), args.root, log, None)))
    if args.https is not None:
        servers.append(
            ("https", Server((args.bind, args.https), args.root, log, tls_context(args.cert, args.key)))
        )
    threads = [
        threading.Thread(target=s.serve_forever, args=(0.1,), name=kind, daemon=True) for kind, s in servers
    ]
    for t in threads:
        t.start()
    print("ready " + " ".join(f"{kind}={s.server_address[1]}" for kind, s in servers), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for _, s in servers:
        s.shutdown()
        s.server_close()
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
