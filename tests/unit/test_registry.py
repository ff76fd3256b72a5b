"""Tests for nspawnctl.fetch.registry against a fake registry on loopback (HTTPS with a test CA).

The fake speaks enough of the distribution API: /v2/, manifests, blobs, the JSON error body, and
its own token server (/token) for the Bearer flow; ``auth`` chooses none, basic or bearer. Every
request it sees is recorded with its headers, so tests can check what was (not) sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from nspawnctl.errors import (
    AuthenticationRequired,
    FetchError,
    InsecureTransport,
    InvalidArgument,
    InvalidReference,
    ManifestUnknown,
    RegistryError,
    VerificationFailed,
)
from nspawnctl.fetch.registry import (
    MANIFEST_TYPES,
    Challenge,
    RegistryClient,
    RegistryOptions,
    api_host,
    parse_challenges,
)

# Shared with test_fetch (pytest puts this directory on sys.path): the servers and the throwaway CA.
from test_fetch import Server  # isort: skip

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USERS = {"alice": "s3cret:ü"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Routes(dict[str, Any]):
    """Routes for test_fetch.Server that send every path to one handler."""

    def __init__(self, handler: Callable[[BaseHTTPRequestHandler], None]) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key: str, default: Any = None) -> Callable[[BaseHTTPRequestHandler], None]:
        return self.handler


class FakeRegistry:
    """A registry: ``manifests[(repo, ref)] = (body, content type)``, ``blobs[(repo, digest)] = body``."""

    def __init__(self, tls: tuple[Path, Path] | None, auth: str = "none") -> None:
        self.auth = auth
        self.public: set[str] = set()  # repositories an anonymous token may pull
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.overrides: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}  # path -> handler
        self.tokens: dict[str, tuple[str | None, str]] = {}  # token -> (user, scope)
        self.expires_in: int | None = None
        self.api_header = True
        self.lock = threading.Lock()
        self.server = Server(Routes(self.handle), tls)
        # Clients hang up on purpose here (oversized bodies, TLS probes): no tracebacks on stderr.
        self.server.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.host = f"127.0.0.1:{self.server.port}"
        self.realm = self.server.url("/token")

    def close(self) -> None:
        self.server.close()

    def add_image(self, repo: str, tag: str, blob: bytes = b"layer") -> tuple[bytes, str]:
        self.blobs[(repo, sha(blob))] = blob
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "blob": sha(blob)}).encode()
        self.manifests[(repo, tag)] = (manifest, OCI_MANIFEST)
        self.manifests[(repo, sha(manifest))] = (manifest, OCI_MANIFEST)
        return manifest, sha(blob)

    def seen(self, prefix: str = "") -> list[tuple[str, dict[str, str]]]:
        return [(path, headers) for path, headers in self.server.requests if path.startswith(prefix)]

    # --- the server's side ----------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        if path in self.overrides:
            return self.overrides[path](h)
        if path == "/token":
            return self.token(h, parse_qs(query))
        match = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        repo, kind, ref = match.groups() if match else (None, "", "")
        if not self.authorized(h, repo):
            return self.unauthorized(h, repo)
        if path == "/v2/":
            return send(h, 200, b"{}", **self.api())
        key = (repo or "", ref)
        if kind == "manifests" and key in self.manifests:
            data, media_type = self.manifests[key]
            return send(h, 200, data, Content_Type=media_type, Docker_Content_Digest=sha(data))
        if kind == "blobs" and key in self.blobs:
            return send(h, 200, self.blobs[key], Content_Type="application/octet-stream")
        code = "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN"
        return send_error(h, 404, code, "not known to this registry")

    def authorized(self, h: BaseHTTPRequestHandler, repo: str | None) -> bool:
        given = h.headers.get("Authorization", "")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return any(given == basic(u, p) for u, p in USERS.items())
        with self.lock:
            user_scope = self.tokens.get(given.removeprefix("Bearer "))
        if user_scope is None:
            return False
        _user, scope = user_scope
        return repo is None or scope == f"repository:{repo}:pull"

    def unauthorized(self, h: BaseHTTPRequestHandler, repo: str | None) -> None:
        if self.auth == "basic":
            challenge = 'Basic realm="fake registry"'
        else:
            challenge = f'Bearer realm="{self.realm}",service="fake"'
            if repo is not None:
                challenge += f',scope="repository:{repo}:pull"'
        send_error(
            h, 401, "UNAUTHORIZED", "authentication required", WWW_Authenticate=challenge, **self.api()
        )

    def api(self) -> dict[str, str]:
        return {"Docker_Distribution_API_Version": "registry/2.0"} if self.api_header else {}

    def token(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        given = h.headers.get("Authorization")
        user = None
        if given is not None:
            user = next((u for u, p in USERS.items() if given == basic(u, p)), None)
            if user is None:
                return send(h, 401, b'{"details": "incorrect username or password"}')
        scope = query.get("scope", [""])[0]
        repo = scope.split(":")[1] if scope.count(":") == 2 else ""
        if user is None and repo not in self.public:
            scope = ""  # an anonymous token with no access, as the distribution token server does
        token = f"token-{len(self.tokens)}"
        with self.lock:
            self.tokens[token] = (user, scope)
        answer: dict[str, Any] = {"token": token}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        send(h, 200, json.dumps(answer).encode(), Content_Type="application/json")


def send(h: BaseHTTPRequestHandler, status: int, data: bytes, **headers: str) -> None:
    h.send_response(status)
    h.send_header("Content-Length", str(len(data)))
    for key, value in headers.items():
        h.send_header(key.replace("_", "-"), value)
    h.end_headers()
    h.wfile.write(data)


def send_error(h: BaseHTTPRequestHandler, status: int, code: str, message: str, **headers: str) -> None:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    send(h, status, body, Content_Type="application/json", **headers)


def unsized(data: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """A 200 without Content-Length: the body ends when the connection closes."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True

    return handle


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def registry(pki: tuple[Path, tuple[Path, Path]]) -> Iterator[Callable[..., FakeRegistry]]:
    started: list[FakeRegistry] = []

    def start(auth: str = "none", tls: bool = True) -> FakeRegistry:
        started.append(FakeRegistry(pki[1] if tls else None, auth))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def client(
    fake: FakeRegistry, ca: Path, credentials: tuple[str, str] | None = None, **options: Any
) -> RegistryClient:
    return RegistryClient(
        fake.host, RegistryOptions(ca_cert=str(ca), credentials=credentials, timeout=5, **options)
    )


# --- challenges and names -------------------------------------------------------------------------


def test_parse_challenges_respects_quotes_and_finds_several() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:samalba/my-app:pull,push", Basic realm="say \\"hi\\", then go"'
    )
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:samalba/my-app:pull,push",
            },
        ),
        Challenge("basic", {"realm": 'say "hi", then go'}),
    ]
    assert parse_challenges("NEGOTIATE, basic REALM=x") == [
        Challenge("negotiate"),
        Challenge("basic", {"realm": "x"}),
    ]
    assert parse_challenges("") == []


def test_secrets_stay_out_of_reprs() -> None:
    from nspawnctl.fetch.registry import _Token

    options = RegistryOptions(credentials=("alice", "pa55word"))
    assert "pa55word" not in repr(options) and "alice" not in repr(options)
    assert "tok3n" not in repr(_Token("tok3n", 0.0))


def test_docker_hub_is_reached_at_its_api_host() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("index.docker.io") == "registry-1.docker.io"
    assert api_host("registry.hub.docker.com") == "registry-1.docker.io"
    assert api_host("registry-1.docker.io:443") == "registry-1.docker.io"
    assert api_host("localhost:5000") == "localhost:5000"
    assert RegistryClient("docker.io").host == "registry-1.docker.io"


def test_bad_names_are_refused_before_any_request(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    with client(fake, pki[0]) as c:
        for repo, ref in [
            ("../etc", "latest"),
            ("Upper", "1"),
            ("a", "x/../y"),
            ("a", "?q"),
            ("a", "sha256:abc"),
        ]:
            with pytest.raises(InvalidReference):
                c.get_manifest(repo, ref)
        with pytest.raises(InvalidReference, match="unsupported digest"):
            c.get_manifest("a", "sha512:" + "0" * 128)
        with pytest.raises(VerificationFailed, match="unsupported or invalid digest"):
            c.open_blob("a", "sha256:../../x", 1)
    assert fake.server.requests == []
    with pytest.raises(InvalidArgument, match="invalid registry"):
        RegistryClient("https://host/x")


# --- probe and dispatch ---------------------------------------------------------------------------


def test_anonymous_registry_manifest_and_blob(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    manifest, blob_digest = fake.add_image("library/app", "1.0", b"config bytes")
    with client(fake, pki[0]) as c:
        assert c.is_registry()
        data, media_type, digest = c.get_manifest("library/app", "1.0")
        assert (data, media_type, digest) == (manifest, OCI_MANIFEST, sha(manifest))
        assert c.get_manifest("library/app", sha(manifest))[0] == manifest
        assert c.get_blob("library/app", blob_digest, 12) == b"config bytes"
    paths = [path for path, _ in fake.seen()]
    assert paths[0] == "/v2/"
    assert paths.count("/v2/") == 1  # probed once
    headers = dict(fake.seen("/v2/library/app/manifests/1.0")[0][1])
    assert headers["Accept"] == ", ".join(MANIFEST_TYPES)
    assert headers["Accept-Encoding"] == "identity"
    assert all("Authorization" not in h for _, h in fake.seen())


def test_is_registry_true_false(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    with client(registry(auth="basic"), pki[0]) as c:
        assert c.is_registry()  # 401 with a Basic challenge
    bearer = registry(auth="bearer")
    bearer.api_header = False
    with client(bearer, pki[0]) as c:
        assert c.is_registry()
    servers.append(Server({}, tls=pki[1]))  # a web server: 404 for /v2/
    web = servers[-1]
    with RegistryClient(f"127.0.0.1:{web.port}", RegistryOptions(ca_cert=str(pki[0]), timeout=5)) as c:
        assert not c.is_registry()
        with pytest.raises(RegistryError, match=r"does not answer like a registry: GET .*/v2/ answered 404"):
            c.probe()
    servers.append(Server({"/v2/": lambda h: send(h, 200, b"<html>")}, tls=pki[1]))  # 200, no API header
    with RegistryClient(
        f"127.0.0.1:{servers[-1].port}", RegistryOptions(ca_cert=str(pki[0]), timeout=5)
    ) as c:
        assert not c.is_registry()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RegistryClient(f"127.0.0.1:{port}", RegistryOptions(timeout=5)) as c:
        assert not c.is_registry()  # nothing listening
    with RegistryClient(registry().host, RegistryOptions(timeout=5)) as c:
        assert not c.is_registry()  # certificate not trusted


def test_plain_http_needs_tls_verify_false(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(tls=False)
    fake.add_image("app", "1")
    with RegistryClient(fake.host, RegistryOptions(timeout=5)) as c, pytest.raises(FetchError) as info:
        c.probe()
    assert info.value.hint and "--tls-verify=false" in info.value.hint
    with RegistryClient(fake.host, RegistryOptions(tls_verify=False, timeout=5)) as c:
        assert c.get_manifest("app", "1")[1] == OCI_MANIFEST
    # An untrusted certificate is accepted with tls_verify=False (quietly: it was asked for).
    secure = registry()
    secure.add_image("app", "1")
    with (
        warnings.catch_warnings(record=True) as caught,
        RegistryClient(secure.host, RegistryOptions(tls_verify=False, timeout=5)) as c,
    ):
        warnings.simplefilter("always")
        assert c.get_manifest("app", "1")[1] == OCI_MANIFEST
    assert [str(w.message) for w in caught] == []
    assert [path for path, _ in secure.seen()] == ["/v2/", "/v2/app/manifests/1"]


# --- Basic ----------------------------------------------------------------------------------------


def test_basic_auth_right_wrong_none(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="basic")
    fake.add_image("team/app", "v1")
    with client(fake, pki[0], ("alice", USERS["alice"])) as c:
        assert c.get_manifest("team/app", "v1")[1] == OCI_MANIFEST
        c.check_login()
    assert fake.seen("/v2/team")[0][1]["Authorization"] == basic("alice", USERS["alice"])

    with client(fake, pki[0], ("alice", "wrong")) as c:
        with pytest.raises(AuthenticationRequired) as info:
            c.get_manifest("team/app", "v1")
        assert info.value.message == (
            f"{fake.host}/team/app:v1: access denied for user alice (UNAUTHORIZED: authentication required)"
        )
        with pytest.raises(AuthenticationRequired, match=r"login to .* failed: wrong user name or password"):
            c.check_login()

    before = len(fake.seen())
    with client(fake, pki[0]) as c, pytest.raises(AuthenticationRequired) as info:
        c.get_manifest("team/app", "v1")
    assert info.value.message == f"{fake.host} requires authentication"
    assert info.value.hint == f"nspawnctl login {fake.host}"
    assert [p for p, _ in fake.seen()[before:]] == ["/v2/"]  # nothing sent without credentials


# --- Bearer ---------------------------------------------------------------------------------------


def test_bearer_anonymous_pull_of_a_public_repository(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.public.add("library/alpine")
    manifest, blob = fake.add_image("library/alpine", "latest")
    with client(fake, pki[0]) as c:
        assert c.get_manifest("library/alpine", "latest")[0] == manifest
        assert c.get_manifest("library/alpine", sha(manifest))[0] == manifest
        assert c.get_blob("library/alpine", blob, 5) == b"layer"
    tokens = fake.seen("/token")
    assert len(tokens) == 1  # cached for the scope
    query = parse_qs(tokens[0][0].partition("?")[2])
    assert query == {"service": ["fake"], "scope": ["repository:library/alpine:pull"]}
    assert "Authorization" not in tokens[0][1]
    assert fake.seen("/v2/library")[0][1]["Authorization"] == "Bearer token-0"


def test_bearer_with_credentials_wrong_credentials_and_none(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.add_image("private/app", "1")
    with client(fake, pki[0], ("alice", USERS["alice"])) as c:
        assert c.get_manifest("private/app", "1")[1] == OCI_MANIFEST
        c.check_login()
    assert fake.seen("/token")[0][1]["Authorization"] == basic("alice", USERS["alice"])

    with client(fake, pki[0], ("alice", "wrong")) as c:
        with pytest.raises(AuthenticationRequired) as info:
            c.get_manifest("private/app", "1")
        assert info.value.message == (
            f"{fake.host}: the token server refused the credentials of alice (401 Unauthorized)"
        )
        assert info.value.hint == f"check the user name and password: nspawnctl login {fake.host}"
        with pytest.raises(AuthenticationRequired, match="refused the credentials of alice"):
            c.check_login()

    with client(fake, pki[0]) as c, pytest.raises(AuthenticationRequired) as info:
        c.get_manifest("private/app", "1")  # an anonymous token without access: the registry says 401
    assert info.value.message == (
        f"{fake.host}/private/app:1: access denied (UNAUTHORIZED: authentication required): "
        "the repository does not exist or requires a login"
    )
    assert info.value.hint == f"check the name, or nspawnctl login {fake.host}"


def test_token_cache_per_scope_expiry_and_one_renewal(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.public.update({"a", "b"})
    fake.add_image("a", "1")
    fake.add_image("b", "1")
    with client(fake, pki[0]) as c:
        c.get_manifest("a", "1")
        c.get_manifest("a", "1")
        c.get_manifest("b", "1")
        assert len(fake.seen("/token")) == 2  # one per repository
        for token in c._tokens.values():
            token.expires = 0  # as if the 60 s had passed
        c.get_manifest("a", "1")
        assert len(fake.seen("/token")) == 3
        fake.tokens.clear()  # revoked: the registry answers 401 with a new challenge
        c.get_manifest("a", "1")
        assert len(fake.seen("/token")) == 4  # asked again, once
        fake.public.clear()  # now new tokens have no access: no endless loop
        fake.tokens.clear()
        with pytest.raises(AuthenticationRequired):
            c.get_manifest("a", "1")
        assert len(fake.seen("/token")) == 5


def test_token_server_over_plain_http_needs_tls_verify_false(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    plain = Server({})
    servers.append(plain)
    fake.realm = plain.url("/token")
    with client(fake, pki[0]) as c, pytest.raises(InsecureTransport) as info:
        c.get_manifest("app", "1")
    assert info.value.message == f"the token server of {fake.host} is plain HTTP: {plain.url('/token')}"
    assert info.value.hint == "a token server on another host than the registry must use HTTPS"
    # --tls-verify=false relaxes the registry's own host only: the password never goes out in clear.
    with (
        client(fake, pki[0], ("alice", USERS["alice"]), tls_verify=False) as c,
        pytest.raises(InsecureTransport),
    ):
        c.get_manifest("app", "1")
    assert plain.requests == []
    # On the registry's own host (plain http there too), tls_verify=False permits it.
    own = registry(auth="bearer", tls=False)
    own.realm = own.server.url("/token")
    own.public.add("app")
    own.add_image("app", "1")
    with RegistryClient(own.host, RegistryOptions(tls_verify=False, timeout=5)) as c:
        assert c.get_manifest("app", "1")[1] == OCI_MANIFEST
    with RegistryClient(own.host, RegistryOptions(timeout=5)) as c, pytest.raises(FetchError):
        c.get_manifest("app", "1")


def test_tls_verify_false_still_verifies_a_token_server_on_another_host(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.add_image("app", "1")
    fake.realm = f"https://localhost:{fake.server.port}/token"  # another host name, same server
    options = RegistryOptions(tls_verify=False, credentials=("alice", USERS["alice"]), timeout=5)
    with (
        RegistryClient(fake.host, options) as c,
        pytest.raises(FetchError, match="certificate verification failed"),
    ):
        c.get_manifest("app", "1")  # the registry's untrusted certificate was accepted, not the realm's
    assert fake.seen("/token") == []


def test_tls_verify_false_still_verifies_a_cdn_redirect(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    cdn = Server({"/blob": lambda h: send(h, 200, b"x")}, tls=pki[1])
    servers.append(cdn)
    digest = sha(b"x")
    fake.overrides[f"/v2/app/blobs/{digest}"] = lambda h: send(
        h, 307, b"", Location=f"https://localhost:{cdn.port}/blob"
    )
    with (
        RegistryClient(fake.host, RegistryOptions(tls_verify=False, timeout=5)) as c,
        pytest.raises(FetchError, match="certificate verification failed"),
    ):
        c.get_blob("app", digest, 1)
    assert cdn.requests == []
    with client(fake, pki[0], tls_verify=False) as c:
        assert c.get_blob("app", digest, 1) == b"x"


def test_a_401_from_a_redirect_target_gets_no_credentials(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    evil = Server({"/token": lambda h: send(h, 200, b'{"token": "evil"}')}, tls=pki[1])
    servers.append(evil)
    challenge = f'Bearer realm="https://localhost:{evil.port}/token",service="evil"'
    cdn = Server(
        {"/blob": lambda h: send_error(h, 401, "UNAUTHORIZED", "no", WWW_Authenticate=challenge)}, tls=pki[1]
    )
    servers.append(cdn)
    digest = sha(b"x")
    fake.overrides[f"/v2/app/blobs/{digest}"] = lambda h: (
        send(h, 307, b"", Location=f"https://localhost:{cdn.port}/blob")
        if fake.authorized(h, "app")
        else fake.unauthorized(h, "app")
    )
    with client(fake, pki[0], ("alice", USERS["alice"])) as c, pytest.raises(AuthenticationRequired):
        c.get_blob("app", digest, 1)
    assert evil.requests == []
    assert len(cdn.requests) == 1


def test_hostile_or_broken_token_servers_give_clean_errors_with_hints(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.add_image("app", "1")
    nested = b"[" * 100_000 + b"]" * 100_000
    big = b" " * (1 << 20) + b"{}"
    for handler, message in [
        (lambda h: send(h, 200, nested), "sent no usable token"),
        (lambda h: send(h, 200, b'{"token": ""}'), "sent no usable token"),
        (lambda h: send(h, 200, big), "is 1048578 bytes, more than the 1048576 accepted"),
        (unsized(big), "is larger than the 1048576 bytes accepted"),
    ]:
        fake.overrides["/token"] = handler
        with client(fake, pki[0]) as c, pytest.raises(RegistryError, match=message) as info:
            c.get_manifest("app", "1")
        assert info.value.hint


def test_401_without_a_challenge_has_a_hint(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    fake.overrides["/v2/"] = lambda h: send(h, 401, b"")
    with client(fake, pki[0]) as c, pytest.raises(RegistryError, match="without saying how") as info:
        c.probe()
    assert info.value.hint


def test_deeply_nested_error_body_is_only_left_out(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    fake.overrides["/v2/app/manifests/1"] = lambda h: send(h, 500, b"[" * 30_000 + b"]" * 30_000)
    with client(fake, pki[0]) as c, pytest.raises(RegistryError, match="answered 500"):
        c.get_manifest("app", "1")


# --- manifests ------------------------------------------------------------------------------------


def test_manifest_by_digest_is_verified(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    manifest, _ = fake.add_image("app", "1")
    other = sha(b"something else")
    fake.manifests[("app", other)] = (manifest, OCI_MANIFEST)
    fake.overrides[f"/v2/app/manifests/{other}"] = lambda h: send(h, 200, manifest, Content_Type=OCI_MANIFEST)
    with client(fake, pki[0]) as c, pytest.raises(VerificationFailed) as info:
        c.get_manifest("app", other)
    assert info.value.message == (
        f"the manifest of {fake.host}/app@{other} does not match its digest (got {sha(manifest)})"
    )


def test_docker_content_digest_must_match(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    fake.overrides["/v2/app/manifests/1"] = lambda h: send(
        h, 200, b"{}", Content_Type=f"{OCI_MANIFEST}; charset=utf-8", Docker_Content_Digest=sha(b"x")
    )
    fake.overrides["/v2/app/manifests/2"] = lambda h: send(
        h, 200, b"{}", Content_Type=f"{OCI_MANIFEST}; charset=utf-8", Docker_Content_Digest="sha512:abc"
    )
    with client(fake, pki[0]) as c:
        with pytest.raises(VerificationFailed, match=r"Docker-Content-Digest sha256:.*got " + sha(b"{}")):
            c.get_manifest("app", "1")
        assert c.get_manifest("app", "2") == (b"{}", OCI_MANIFEST, sha(b"{}"))  # only sha256 is checked


def test_manifest_errors(registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]) -> None:
    fake = registry()
    fake.manifests[("old", "1")] = (
        b'{"schemaVersion": 1}',
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    fake.overrides["/v2/busy/manifests/1"] = lambda h: send_error(
        h, 429, "TOOMANYREQUESTS", "slow down", Retry_After="30"
    )
    fake.overrides["/v2/broken/manifests/1"] = lambda h: send(h, 500, b"<html>oops</html>")
    fake.overrides["/v2/big/manifests/1"] = lambda h: send(
        h, 200, b" " * (4 << 20 | 1), Content_Type=OCI_MANIFEST
    )
    fake.overrides["/v2/gone/manifests/1"] = lambda h: send_error(h, 404, "NAME_UNKNOWN", "no such repo")
    with client(fake, pki[0]) as c:
        with pytest.raises(ManifestUnknown) as info:
            c.get_manifest("library/app", "2.0")
        assert (
            info.value.message
            == f"{fake.host}/library/app:2.0: no such image on the registry (MANIFEST_UNKNOWN)"
        )
        assert info.value.hint == "check the name and tag"
        with pytest.raises(ManifestUnknown, match=r"gone:1: no such image on the registry \(NAME_UNKNOWN\)"):
            c.get_manifest("gone", "1")
        with pytest.raises(RegistryError, match="Docker schema 1 manifest, which is not supported"):
            c.get_manifest("old", "1")
        with pytest.raises(RegistryError) as rate:
            c.get_manifest("busy", "1")
        assert rate.value.message == f"{fake.host} refuses more requests for 30 seconds (429 TOOMANYREQUESTS)"
        with pytest.raises(RegistryError) as server:
            c.get_manifest("broken", "1")
        assert (
            server.value.message == f"{fake.host} answered 500 Internal Server Error for {fake.host}/broken:1"
        )
        assert server.value.hint and "retry later" in server.value.hint
        with pytest.raises(RegistryError, match="more than the 4194304 accepted"):
            c.get_manifest("big", "1")


# --- blobs ----------------------------------------------------------------------------------------


def test_blob_streams_with_progress_and_is_verified(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    data = bytes(range(256)) * 8192  # 2 MiB
    fake.blobs[("app", sha(data))] = data
    calls: list[tuple[int, int | None]] = []
    with client(fake, pki[0]) as c:
        blob = c.open_blob("app", sha(data), len(data), lambda done, total: calls.append((done, total)))
        with blob:
            assert blob.read() == data
            assert blob.verified  # type: ignore[attr-defined]
        assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))


def test_blob_digest_mismatch_fails_at_eof_and_keeps_failing(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    data = b"a" * 100_000
    wrong = sha(b"b" * 100_000)
    fake.blobs[("app", wrong)] = data
    with client(fake, pki[0]) as c, c.open_blob("app", wrong, len(data)) as blob:
        assert blob.read(99_999) == data[:99_999]  # nothing to say before the end
        with pytest.raises(VerificationFailed) as info:
            while blob.read(65536):
                pass
        assert (
            info.value.message
            == f"blob {wrong} of {fake.host}/app does not match its digest (got {sha(data)})"
        )
        assert info.value.hint
        with pytest.raises(VerificationFailed):
            blob.read(1)  # no silent success for a reader that swallowed the error


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "unsized"])
def test_blob_longer_or_shorter_than_its_size(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]], sized: bool
) -> None:
    fake = registry()
    data = b"x" * 1000
    digest = sha(data)
    if sized:
        fake.blobs[("app", digest)] = data
    else:
        fake.overrides[f"/v2/app/blobs/{digest}"] = unsized(data)
    with client(fake, pki[0]) as c:
        if sized:  # the announced length already tells
            with pytest.raises(VerificationFailed, match="is 1000 bytes, not the 999 its manifest says"):
                c.open_blob("app", digest, 999)
            with pytest.raises(VerificationFailed, match="is 1000 bytes, not the 1001 its manifest says"):
                c.open_blob("app", digest, 1001)
            return
        with c.open_blob("app", digest, 999) as blob:
            assert blob.read(999) == data[:999]
            with pytest.raises(VerificationFailed, match="larger than the 999 bytes its manifest says"):
                blob.read(1)
        with c.open_blob("app", digest, 1001) as blob, pytest.raises(VerificationFailed) as info:
            blob.read()
        assert (
            info.value.message
            == f"blob {digest} of {fake.host}/app ended after 1000 of the 1001 bytes its manifest says"
        )
        assert c.get_blob("app", digest, 1000) == data
        with pytest.raises(RegistryError, match="more than the 100 accepted"):
            c.get_blob("app", digest, 1000, max_bytes=100)


def test_missing_blob(registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]) -> None:
    fake = registry()
    digest = sha(b"nothing")
    with client(fake, pki[0]) as c, pytest.raises(ManifestUnknown) as info:
        c.open_blob("app", digest, 7)
    assert info.value.message == f"blob {digest} of {fake.host}/app is not on the registry (BLOB_UNKNOWN)"


def test_blob_redirect_to_another_host_carries_no_authorization(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry(auth="bearer")
    fake.public.add("app")
    data = b"layer from the CDN"
    digest = sha(data)
    cdn = Server({"/blob": lambda h: send(h, 200, data)}, tls=pki[1])
    servers.append(cdn)
    cdn_url = f"https://localhost:{cdn.port}/blob?signature=secret"
    fake.overrides[f"/v2/app/blobs/{digest}"] = lambda h: (
        send(h, 307, b"", Location=cdn_url) if fake.authorized(h, "app") else fake.unauthorized(h, "app")
    )
    with client(fake, pki[0]) as c:
        assert c.get_blob("app", digest, len(data)) == data
    assert fake.seen(f"/v2/app/blobs/{digest}")[-1][1]["Authorization"].startswith("Bearer ")
    assert len(cdn.requests) == 1
    assert "Authorization" not in cdn.requests[0][1]


def test_blob_redirect_to_plain_http_is_refused(
    registry: Callable[..., FakeRegistry], servers: list[Server], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    fake = registry()
    plain = Server({"/blob": lambda h: send(h, 200, b"x")})
    servers.append(plain)
    digest = sha(b"x")
    fake.overrides[f"/v2/app/blobs/{digest}"] = lambda h: send(h, 302, b"", Location=plain.url("/blob"))
    with client(fake, pki[0]) as c, pytest.raises(InsecureTransport) as info:
        c.open_blob("app", digest, 1)
    assert info.value.message == (
        f"https://{fake.host}/v2/app/blobs/{digest} redirects to plain HTTP http://127.0.0.1:{plain.port}"
    )
    assert info.value.hint and "--tls-verify=false" in info.value.hint
    # tls_verify=False is for the registry's own host: a redirect to plain HTTP elsewhere stays refused.
    with client(fake, pki[0], tls_verify=False) as c, pytest.raises(InsecureTransport):
        c.open_blob("app", digest, 1)
    assert plain.requests == []
    same = registry(tls=False)
    same.overrides[f"/v2/app/blobs/{digest}"] = lambda h: send(h, 302, b"", Location=same.server.url("/b"))
    same.overrides["/b"] = lambda h: send(h, 200, b"x")
    with RegistryClient(same.host, RegistryOptions(tls_verify=False, timeout=5)) as c:
        assert c.get_blob("app", digest, 1) == b"x"


def test_check_login_on_a_registry_without_auth(
    registry: Callable[..., FakeRegistry], pki: tuple[Path, tuple[Path, Path]]
) -> None:
    with client(registry(), pki[0], ("anyone", "anything")) as c:
        c.check_login()


def test_requests_is_not_imported_with_the_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nspawnctl.fetch.registry, nspawnctl.fetch.auth\n"
        "print(sorted(m for m in ('requests', 'urllib3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
