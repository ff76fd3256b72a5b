"""A token server for registry tests: the distribution "token authentication" flow, stdlib + openssl CLI.

A registry configured with ``auth: token`` answers 401 with
``WWW-Authenticate: Bearer realm="<this server>/token",service="...",scope="repository:R:pull"``; the
client asks ``GET /token?service=S&scope=repository:R:pull`` here (Basic credentials optional) and
retries with ``Authorization: Bearer <jwt>``. The registry trusts the token because its header carries
the signing certificate (``x5c``) and that certificate is the registry's ``rootcertbundle``
(distribution 2.8 registry/auth/token/token.go: x5c first, then jwk, then kid; iss must equal the
configured issuer, aud the configured service, exp/nbf with 60 s leeway).

Policy: a known user with the right password gets what it asked for out of pull/push (and ``*`` for
``registry:catalog``); an anonymous client gets pull on the repositories in ``public`` and nothing
else: a token with no access, so the registry then answers 401 insufficient_scope, as Docker Hub does
for private repositories. Wrong credentials get 401 from the token endpoint itself.

The server runs in threads of the calling process (the tests run nspawnctl as a subprocess), so a
test can read ``requests`` and change ``users``/``public``/``token_fields`` while it runs::

    with TokenServer(workdir / "tokens", {"alice": "secret"}) as ts:
        with start_registry(workdir / "reg", auth="token", token=ts) as reg: ...
"""

from __future__ import annotations

import base64
import binascii
import json
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# (user or None for anonymous, resource type, resource name) -> the actions allowed.
AccessPolicy = Callable[[str | None, str, str], set[str]]


@dataclass
class TokenRequest:
    """One request to the token endpoint, as the server saw and answered it."""

    user: str | None  # the Basic user name sent (even when its password was wrong)
    service: str | None
    scopes: list[str]  # as sent (every scope= parameter, split on spaces)
    granted: list[dict[str, Any]] = field(default_factory=list)  # the token's `access` claim
    status: int = 0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=input, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:NAME:pull,push`` -> (type, name, actions); the name may hold ':' (a class)."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    """The token endpoint ``/token`` on HOST:PORT (port 0: any free one), plain HTTP or HTTPS."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: Any = None,  # pki.TLS: serve HTTPS with its cert (the realm is then https://)
        service: str = "nspawnctl-test-registry",
        issuer: str = "nspawnctl-test-token-issuer",
        public: Iterable[str] = (),
        expires_in: int = 300,
        token_fields: tuple[str, ...] = ("token", "access_token"),
        policy: AccessPolicy | None = None,
    ) -> None:
        self.workdir = workdir
        self.users = dict(users or {})
        self.host = host
        self.port = port
        self.tls = tls
        self.service = service
        self.issuer = issuer
        self.public = set(public)
        self.expires_in = expires_in
        self.token_fields = token_fields  # which JSON keys carry the token (Docker Hub sends both)
        self.policy = policy or self.default_policy
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.key = workdir / "token-signing.key"
        self.cert = workdir / "token-signing.pem"  # the registry's `rootcertbundle`
        self._x5c: str = ""

    # --- what the registry and the tests need ---------------------------------------------------

    @property
    def realm(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        """The ``auth:`` section of a registry config that trusts this server."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert),
            }
        }

    def default_policy(self, user: str | None, kind: str, name: str) -> set[str]:
        if kind == "repository":
            if user is not None:
                return {"pull", "push"}
            return {"pull"} if name in self.public else set()
        if kind == "registry" and name == "catalog" and user is not None:
            return {"*"}
        return set()

    def issue(self, subject: str, access: list[dict[str, Any]], lifetime: int | None = None) -> str:
        """A signed JWT for ``subject`` with this ``access`` claim (also usable directly in tests)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,  # a string: distribution 2.8 does not accept a list here
            "exp": now + (self.expires_in if lifetime is None else lifetime),
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = _openssl("dgst", "-sha256", "-sign", str(self.key), input=signing_input.encode())
        return signing_input + "." + b64url(signature)

    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self.requests)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> TokenServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            _openssl(
                "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.key)
            )
            self.key.chmod(0o600)
            _openssl(
                "req", "-x509", "-new", "-key", str(self.key), "-subj", "/CN=nspawnctl test token signer",
                "-days", "3650", "-sha256", "-out", str(self.cert),
            )  # fmt: skip
        der = _openssl("x509", "-in", str(self.cert), "-outform", "DER")
        self._x5c = base64.b64encode(der).decode()  # x5c is standard base64, not base64url
        context = None
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        self._server = _Server((self.host, self.port), self, context)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the endpoint ----------------------------------------------------------------------------

    def answer(self, query: str, authorization: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for one GET /token."""
        params = urllib.parse.parse_qs(query)
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        service = params.get("service", [None])[0]
        record = TokenRequest(user=None, service=service, scopes=scopes)
        user, password = _basic(authorization)
        record.user = user
        try:
            if authorization is not None and user is None:
                return self._deny(record, "malformed Authorization header")
            if user is not None and self.users.get(user) != password:
                return self._deny(record, "incorrect username or password")
            if service != self.service:
                record.status = 400
                return 400, _error("UNSUPPORTED", f"unknown service {service!r}"), {}
            access: list[dict[str, Any]] = []
            for scope in scopes:
                parsed = parse_scope(scope)
                if parsed is None:
                    continue
                kind, name, wanted = parsed
                allowed = self.policy(user, kind, name)
                granted = [a for a in wanted if a in allowed or "*" in allowed]
                if granted:
                    access.append({"type": kind, "name": name, "actions": granted})
            record.granted = access
            token = self.issue(user or "", access)
            body: dict[str, Any] = {key: token for key in self.token_fields}
            body.update(
                expires_in=self.expires_in,
                issued_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            record.status = 200
            return 200, body, {}
        finally:
            with self._lock:
                self.requests.append(record)

    def _deny(self, record: TokenRequest, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        record.status = 401
        return 401, _error("UNAUTHORIZED", message), {"WWW-Authenticate": 'Basic realm="token"'}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "detail": None}], "details": message}


def _basic(authorization: str | None) -> tuple[str | None, str | None]:
    if authorization is None:
        return None, None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (user, password) if sep else (None, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: TokenServer, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the FQDN, which hangs on a host without network.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self.tls is not None:
            # Handshake in the connection's thread (_Handler.setup): a stalled client must not
            # block the accept loop.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "nspawnctl-test-tokenserver"

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: object) -> None:
        pass  # TokenServer.requests is the record

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._send(404, _error("NOT_FOUND", "the token endpoint is /token"), {})
            return
        status, body, headers = self.server.owner.answer(url.query, self.headers.get("Authorization"))
        self._send(status, body, headers)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
