"""A client for the OCI Distribution API (docker registry v2): probe, auth, manifests, blobs.

Only what a pull needs, over fetch/http.py's rules (bytes exactly as served, no downgrade to plain
HTTP, clear connection errors). Nothing a registry serves is trusted before it is checked:
manifests fetched by digest and every blob are verified against their sha256 digest, and a blob
stream fails at EOF (or as soon as it runs past its size) instead of ending quietly.

Auth follows the distribution token spec: ``GET /v2/`` tells whether a registry wants Basic
credentials or a Bearer token from a token server ("realm"); tokens are asked per repository
scope, with the user's credentials when there are some, anonymously otherwise, and cached until
they expire. The Authorization header never follows a redirect to another host (blobs are often
served by a CDN).

``requests`` is imported on the first request, not with this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TYPE_CHECKING, Any, Self, cast
from urllib.parse import urlencode, urlsplit

from ..errors import (
    AuthenticationRequired,
    FetchError,
    InsecureTransport,
    InvalidArgument,
    InvalidReference,
    ManifestUnknown,
    NspawnctlError,
    RegistryError,
    VerificationFailed,
)
from ..ref import DOCKER_HUB, canonical_registry
from .http import Fetcher, FetchOptions, ProgressFn, same_host

if TYPE_CHECKING:
    from types import TracebackType

    import requests

    from ..fetch.http import Download

__all__ = [
    "MANIFEST_TYPES",
    "Challenge",
    "RegistryClient",
    "RegistryOptions",
    "api_host",
    "parse_challenges",
]

DOCKER_HUB_API = "registry-1.docker.io"
"""Docker Hub's references say docker.io (or one of its aliases); its API answers here."""

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
"""What we Accept for manifests; without it old registries answer with schema 1."""
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_MAX = 4 << 20
TOKEN_MAX = 1 << 20
ERROR_BODY_MAX = 64 << 10
TOKEN_LIFETIME = 60
"""Seconds a token lives when the token server does not say (the spec's default)."""

_TOO_BIG = "the registry serves something else than a registry would; check its host name and the reference"
TLS_HINT = "--tls-verify=false permits plain HTTP and unchecked certificates for this registry"

_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}\Z")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf"({_TOKEN_CHARS})\s*=\s*(.*)\Z", re.S)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def api_host(registry: str) -> str:
    """Where the registry of a reference answers the API: Docker Hub's names map to its API host."""
    return DOCKER_HUB_API if canonical_registry(registry) == DOCKER_HUB else registry


@dataclass(frozen=True)
class RegistryOptions:
    tls_verify: bool = True
    """False: try https without certificate checks, then plain http (digests are still checked)."""
    ca_cert: str | None = None
    """PEM bundle of CAs for HTTPS (default: the system's, or $REQUESTS_CA_BUNDLE)."""
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # never in a repr or log
    """(user, password) for this registry (Basic, or sent to its token server); None: anonymous."""
    timeout: float = 30.0


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header; scheme and parameter names in lower case."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a WWW-Authenticate value (several may share one header, comma-separated).

    Quote-aware: ``scope="repository:a/b:pull,push"`` has a comma inside the quotes.
    """
    from urllib.request import parse_http_list

    challenges: list[Challenge] = []
    for item in parse_http_list(header):
        item = item.strip()
        if not item:
            continue
        param = _PARAM.match(item)
        if param is not None:
            if challenges:  # a parameter of the challenge before it
                challenges[-1].params[param[1].lower()] = _unquote(param[2])
            continue
        scheme, _, rest = item.partition(" ")
        if not re.fullmatch(_TOKEN_CHARS, scheme):
            continue
        challenge = Challenge(scheme.lower())
        param = _PARAM.match(rest.strip())
        if param is not None:
            challenge.params[param[1].lower()] = _unquote(param[2])
        challenges.append(challenge)
    return challenges


@dataclass
class _Token:
    value: str = field(repr=False)
    expires: float  # time.monotonic()


class RegistryClient:
    """One registry, one HTTP session; use as a context manager. ``probe()`` runs on first need."""

    def __init__(self, registry: str, options: RegistryOptions = RegistryOptions()) -> None:
        if not _HOST.match(registry):
            raise InvalidArgument(
                f"invalid registry {registry!r}",
                hint="a registry is host[:port], like docker.io or localhost:5000",
            )
        self.registry = registry
        self.host = api_host(registry)
        self.options = options
        self._fetcher = Fetcher(
            FetchOptions(
                ca_cert=options.ca_cert,
                timeout=options.timeout,
                tls_verify=options.tls_verify,
                tls_host=self.host,  # a token server or a CDN elsewhere is always verified
            )
        )
        self._base: str | None = None  # "https://host[:port]" once probed
        self._api_header = False  # /v2/ answered with Docker-Distribution-API-Version
        self._challenge: Challenge | None = None  # how /v2/ asked us to authenticate
        self._tokens: dict[tuple[str, str, str], _Token] = {}  # (realm, service, scope) -> token
        self._scopes: dict[str, str] = {}  # repository -> scope a challenge asked for instead of ours

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._fetcher.close()

    # --- public API -------------------------------------------------------------------------------

    def probe(self) -> None:
        """GET /v2/: learn the scheme (https; plain http too without tls_verify) and the auth challenge."""
        if self._base is not None:
            return
        schemes = ["https"] if self.options.tls_verify else ["https", "http"]
        first: FetchError | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                resp = self._send(base + "/v2/", {}, None)
            except FetchError as e:
                first = first or e
                continue
            with contextlib.closing(resp):
                self._learn(resp, base)
            self._base = base
            return
        assert first is not None
        raise _with_tls_hint(first)

    def is_registry(self) -> bool:
        """Whether https://HOST/v2/ answers like a registry; False (never an error) when it does not."""
        try:
            self.probe()
        except NspawnctlError:
            return False
        return self._api_header or self._challenge is not None

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type without parameters, "sha256:<hex>" of the body) of a tag or digest."""
        _check_repository(repository)
        by_digest = _check_reference(reference)
        name = f"{self.registry}/{repository}{'@' if by_digest else ':'}{reference}"
        resp = self._get(
            f"/v2/{repository}/manifests/{reference}", repository, {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        with contextlib.closing(resp):
            if resp.status_code != 200:
                raise self._error(resp, name, blob=None)
            media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if media_type in SCHEMA1_TYPES:
                raise RegistryError(
                    f"{name} has a Docker schema 1 manifest, which is not supported",
                    hint="the image predates 2017: push it again with a current docker, podman or skopeo "
                    "(schema 2 or OCI)",
                )
            data = self._read_small(resp, MANIFEST_MAX, f"the manifest of {name}")
            announced = resp.headers.get("Docker-Content-Digest", "").strip()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if by_digest and digest != reference:
            raise VerificationFailed(
                f"the manifest of {name} does not match its digest (got {digest})",
                hint="the registry (or something between) served other bytes; nothing was kept",
            )
        if announced.startswith("sha256:") and announced != digest:
            raise VerificationFailed(
                f"the manifest of {name} does not match the digest the registry announced "
                f"(Docker-Content-Digest {announced}, got {digest})",
                hint="the registry (or something between) served other bytes; retry",
            )
        return data, media_type, digest

    def get_blob(self, repository: str, digest: str, size: int, max_bytes: int = 4 << 20) -> bytes:
        """A small blob (an image config) in memory, its size and digest checked."""
        if size > max_bytes:
            raise RegistryError(
                f"blob {digest} of {self.registry}/{repository} is {size} bytes, "
                f"more than the {max_bytes} accepted for it",
                hint="the image is malformed",
            )
        with contextlib.closing(self.open_blob(repository, digest, size)) as blob:
            return blob.read()

    def open_blob(
        self, repository: str, digest: str, size: int, progress: ProgressFn | None = None
    ) -> IO[bytes]:
        """A blob's bytes as served (compressed layers stay compressed), verified as they stream.

        Reading past ``size`` fails at once; at EOF the length and sha256 are checked, and a
        mismatch raises VerificationFailed from that read. ``progress`` gets (done, size).
        """
        _check_repository(repository)
        _check_blob_digest(digest, f"{self.registry}/{repository}")
        if size < 0:
            raise VerificationFailed(f"blob {digest} of {self.registry}/{repository} has a negative size")
        name = f"{self.registry}/{repository}"
        path = f"/v2/{repository}/blobs/{digest}"
        resp = self._get(path, repository, {})
        try:
            if resp.status_code != 200:
                raise self._error(resp, name, blob=digest)
            length = resp.headers.get("Content-Length", "").strip()
            digits = length.isascii() and length.isdigit()  # not "²" (a latin-1 header), which int() refuses
            if "Transfer-Encoding" not in resp.headers and digits and int(length[:20]) != size:
                raise VerificationFailed(
                    f"blob {digest} of {name} is {length} bytes, not the {size} its manifest says",
                    hint="the registry (or something between) serves other bytes; nothing was kept",
                )
            report: ProgressFn | None = None
            if progress is not None:
                report = partial(_report, progress, size)
            assert self._base is not None
            download = self._fetcher.body(resp, report, url=self._base + path, prefetch=True)
        except BaseException:
            resp.close()
            raise
        return cast(IO[bytes], _VerifiedBlob(download, digest, size, name))

    def check_login(self) -> None:
        """Check the credentials with the registry (Basic: /v2/ answers 200; Bearer: a token is given).

        A registry that asks for no authentication accepts any credentials.
        """
        credentials = self.options.credentials
        if credentials is None:
            raise InvalidArgument("no credentials to check", hint="give a user name and password")
        self.probe()
        challenge = self._challenge
        if challenge is None:
            return
        assert self._base is not None
        if challenge.scheme == "basic":
            resp = self._send(self._base + "/v2/", {}, credentials)
            with contextlib.closing(resp):
                if resp.status_code == 200:
                    return
                if resp.status_code in (401, 403):
                    raise AuthenticationRequired(
                        f"login to {self.registry} failed: wrong user name or password for {credentials[0]}",
                        hint="check the user name and password",
                    )
                raise self._error(resp, self.registry, blob=None)
        self._new_token(challenge, "")

    # --- requests and auth ------------------------------------------------------------------------

    def _send(
        self, url: str, headers: dict[str, str], auth: str | tuple[str, str] | None
    ) -> requests.Response:
        try:
            return self._fetcher.request("GET", url, headers, auth=auth)
        except InsecureTransport as e:
            raise InsecureTransport(e.message, hint=TLS_HINT) from e

    def _learn(self, resp: requests.Response, base: str) -> None:
        """What GET /v2/ says: a registry (200, 401 with a challenge we know), or not one."""
        status = resp.status_code
        self._api_header = "Docker-Distribution-API-Version" in resp.headers
        if status == 200:
            self._challenge = None
            return
        if status == 401:
            if not self._own_origin(resp.url, base):
                raise RegistryError(
                    f"{self.registry} redirected GET /v2/ to {_host_of(resp.url)}, which asks for "
                    "authentication",
                    hint="credentials are only sent where the registry itself asks; check the registry's "
                    "host name and port",
                )
            header = resp.headers.get("WWW-Authenticate", "")
            challenge = _pick(parse_challenges(header))
            if challenge is not None:
                self._challenge = challenge
                return
            if header:
                raise RegistryError(
                    f"{self.registry} asks for authentication nspawnctl does not support: {_clean(header)}",
                    hint="nspawnctl supports Basic and Bearer (token) authentication",
                )
            raise RegistryError(
                f"{self.registry} answered 401 to GET /v2/ without saying how to authenticate",
                hint="check the registry's host name and port (a proxy in front of it may answer instead)",
            )
        raise RegistryError(
            f"{self.registry} does not answer like a registry: GET {resp.request.url} "
            f"answered {_status(resp)}",
            hint="check the registry's host name and port",
        )

    def _own_origin(self, url: str, base: str | None = None) -> bool:
        """Whether ``url`` is on the registry's own scheme, host and port (not a redirect elsewhere)."""
        base = base or self._base
        return (
            base is not None
            and urlsplit(url).scheme.lower() == urlsplit(base).scheme
            and same_host(url, self.host)
        )

    def _get(self, path: str, repository: str, headers: dict[str, str]) -> requests.Response:
        """GET with the authorization the registry asked for; one new try after a fresh challenge."""
        self.probe()
        assert self._base is not None
        retried = False
        while True:
            auth, fresh = self._authorization(repository)
            resp = self._send(self._base + path, headers, auth)
            if resp.status_code != 401 or retried:
                return resp
            if not self._own_origin(resp.url):
                return resp  # a redirect's target (a CDN) cannot tell us where to send credentials
            challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
            if not self._relearn(challenges, repository, fresh):
                return resp
            resp.close()
            retried = True

    def _authorization(self, repository: str) -> tuple[str | tuple[str, str] | None, bool]:
        """(what to send, whether a token was just issued for it)."""
        challenge = self._challenge
        if challenge is None:
            return None, False
        if challenge.scheme == "basic":
            if self.options.credentials is None:
                raise AuthenticationRequired(
                    f"{self.registry} requires authentication", hint=f"nspawnctl login {self.registry}"
                )
            return self.options.credentials, False
        scope = self._scopes.get(repository, f"repository:{repository}:pull")
        cached = self._tokens.get(self._token_key(challenge, scope))
        if cached is not None and cached.expires > time.monotonic():
            return f"Bearer {cached.value}", False
        return f"Bearer {self._new_token(challenge, scope)}", True

    def _relearn(self, challenges: list[Challenge], repository: str, fresh: bool) -> bool:
        """After a 401: whether a new try can succeed (new scope, expired token, Basic asked for)."""
        challenge = _pick(challenges)
        current = self._challenge
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if current is not None and current.scheme == "basic":
                return False  # our credentials were refused: no point in sending them again
            self._challenge = challenge
            return True
        scope = challenge.params.get("scope") or self._scopes.get(repository, f"repository:{repository}:pull")
        same = (
            current is not None
            and current.scheme == "bearer"
            and current.params.get("realm") == challenge.params.get("realm")
            and current.params.get("service") == challenge.params.get("service")
            and scope == self._scopes.get(repository, f"repository:{repository}:pull")
        )
        if same and fresh:
            return False  # a token issued just now was refused: a new one would be too
        self._challenge = challenge
        self._scopes[repository] = scope
        self._tokens.pop(self._token_key(challenge, scope), None)
        return True

    @staticmethod
    def _token_key(challenge: Challenge, scope: str) -> tuple[str, str, str]:
        return challenge.params.get("realm", ""), challenge.params.get("service", ""), scope

    def _new_token(self, challenge: Challenge, scope: str) -> str:
        """A Bearer token for ``scope`` ("" for none) from the challenge's realm, cached until it expires.

        Sent with the user's credentials when there are some (the realm may be another host: that
        is what the registry asked for), anonymously otherwise.
        """
        key = self._token_key(challenge, scope)
        now = time.monotonic()
        realm = self._realm(challenge)
        query = [(k, v) for k, v in (("service", key[1]), ("scope", scope)) if v]
        url = realm + ("&" if urlsplit(realm).query else "?") + urlencode(query) if query else realm
        resp = self._send(url, {"Accept": "application/json"}, self.options.credentials)
        with contextlib.closing(resp):
            if resp.status_code in (401, 403):
                raise self._token_refused(resp)
            if resp.status_code != 200:
                raise RegistryError(
                    f"the token server of {self.registry} answered {_status(resp)} ({_origin(realm)})",
                    hint="a problem on the registry's side; retry later" if resp.status_code >= 500 else None,
                )
            body = self._read_small(resp, TOKEN_MAX, f"the token from {_origin(realm)}")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply (a hostile server)
            data = None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or _CONTROL.search(token):
            raise RegistryError(
                f"the token server of {self.registry} ({_origin(realm)}) sent no usable token",
                hint="a problem on the registry's side; retry later, or report it to the registry's operator",
            )
        assert isinstance(data, dict)
        lifetime = data.get("expires_in")
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = TOKEN_LIFETIME
        self._tokens[key] = _Token(token, now + max(1, lifetime - 5))
        return token

    def _realm(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        scheme = parts.scheme.lower()
        if scheme == "http" and (self.options.tls_verify or not same_host(realm, self.host)):
            # Credentials go there: plain HTTP only on the registry's own host, when asked for.
            raise InsecureTransport(
                f"the token server of {self.registry} is plain HTTP: {_origin(realm)}",
                hint=TLS_HINT
                if same_host(realm, self.host)
                else "a token server on another host than the registry must use HTTPS",
            )
        if scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"{self.registry} names an invalid token server: {_clean(realm)!r}")
        return realm

    def _token_refused(self, resp: requests.Response) -> AuthenticationRequired:
        credentials = self.options.credentials
        if credentials is None:
            return AuthenticationRequired(
                f"{self.registry} requires authentication (its token server refused an anonymous request)",
                hint=f"nspawnctl login {self.registry}",
            )
        return AuthenticationRequired(
            f"{self.registry}: the token server refused the credentials of {credentials[0]} "
            f"({_status(resp)})",
            hint=f"check the user name and password: nspawnctl login {self.registry}",
        )

    # --- answers ----------------------------------------------------------------------------------

    def _read_small(self, resp: requests.Response, max_bytes: int, what: str) -> bytes:
        with self._fetcher.body(resp, url=resp.request.url) as download:
            if download.total is not None and download.total > max_bytes:
                raise RegistryError(
                    f"{what} is {download.total} bytes, more than the {max_bytes} accepted", hint=_TOO_BIG
                )
            data = bytearray()
            while len(data) <= max_bytes and (chunk := download.read(max_bytes + 1 - len(data))):
                data += chunk
        if len(data) > max_bytes:
            raise RegistryError(f"{what} is larger than the {max_bytes} bytes accepted", hint=_TOO_BIG)
        return bytes(data)

    def _error(self, resp: requests.Response, name: str, blob: str | None) -> RegistryError:
        """The registry's error answer as an exception; ``name`` is REGISTRY/REPO:TAG (or the blob's repo)."""
        status = resp.status_code
        errors = self._error_body(resp)
        codes = {code for code, _ in errors}
        said = f" ({_describe(errors)})" if errors else f" ({_status(resp)})"
        if status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}:
            code = " ".join(sorted(codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})) or "404"
            if blob is not None:
                return ManifestUnknown(
                    f"blob {blob} of {name} is not on the registry ({code})",
                    hint="the manifest names a blob the registry lacks; ask the publisher to push again",
                )
            return ManifestUnknown(
                f"{name}: no such image on the registry ({code})", hint="check the name and tag"
            )
        if status in (401, 403) or codes & {"UNAUTHORIZED", "DENIED"}:
            credentials = self.options.credentials
            if credentials is None:
                return AuthenticationRequired(
                    f"{name}: access denied{said}: the repository does not exist or requires a login",
                    hint=f"check the name, or nspawnctl login {self.registry}",
                )
            return AuthenticationRequired(
                f"{name}: access denied for user {credentials[0]}{said}",
                hint=f"check the name, and the login of {credentials[0]} (nspawnctl login {self.registry})",
            )
        if status == 429 or "TOOMANYREQUESTS" in codes:
            after = resp.headers.get("Retry-After", "").strip()
            wait = f" for {after} seconds" if after.isdigit() else f" until {_clean(after)}" if after else ""
            return RegistryError(
                f"{self.registry} refuses more requests{wait} (429 TOOMANYREQUESTS)",
                hint="wait and retry"
                + (f" after {after}s" if after.isdigit() else "")
                + "; logged-in users often get a higher limit",
            )
        what = f"blob {blob} of {name}" if blob else name
        return RegistryError(
            f"{self.registry} answered {_status(resp)} for {what}"
            + (f": {_describe(errors)}" if errors else ""),
            hint="a problem on the registry's side; retry later" if status >= 500 else None,
        )

    @staticmethod
    def _error_body(resp: requests.Response) -> list[tuple[str, str]]:
        """The registry's ``{"errors": [{"code", "message"}]}``, if the body is that."""
        try:
            raw = resp.raw.read(ERROR_BODY_MAX, decode_content=True)
            data = json.loads(raw)
        except Exception:  # unreadable or not JSON: the body is only a detail of the error
            return []
        errors = data.get("errors") if isinstance(data, dict) else None
        if not isinstance(errors, list):
            return []
        found = []
        for entry in errors[:5]:
            if isinstance(entry, dict) and isinstance(entry.get("code"), str):
                message = entry.get("message")
                found.append(
                    (_clean(entry["code"])[:60], _clean(message)[:200] if isinstance(message, str) else "")
                )
        return found


class _VerifiedBlob(io.RawIOBase):
    """A blob download that checks its length and sha256: past ``size`` at once, the rest at EOF.

    Errors repeat on every later read, so a consumer that swallows one cannot mistake the stream
    for a good one. ``verified`` is True only after EOF was reached and everything matched.
    """

    def __init__(self, download: Download, digest: str, size: int, name: str) -> None:
        super().__init__()
        self._download = download
        self._digest = digest
        self._size = size
        self._name = name
        self._hash = hashlib.sha256()
        self._failed: VerificationFailed | None = None
        self.done = 0
        self.verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._failed is not None:
            raise self._failed
        view = memoryview(buffer).cast("B")
        if self.verified or len(view) == 0:
            return 0
        # Never more than one byte past the size, so an oversized blob stops right there.
        data = self._download.read(min(len(view), self._size - self.done + 1))
        if not data:
            self._finish()
            return 0
        self.done += len(data)
        if self.done > self._size:
            raise self._fail(
                f"blob {self._digest} of {self._name} is larger than the {self._size} bytes its manifest says"
            )
        self._hash.update(data)
        view[: len(data)] = data
        return len(data)

    def finish(self) -> None:
        """Read what is left and check it (for consumers that stop before EOF)."""
        buffer = bytearray(1 << 20)
        while self.readinto(buffer):
            pass

    def close(self) -> None:
        self._download.close()
        super().close()

    def _finish(self) -> None:
        if self.done < self._size:
            raise self._fail(
                f"blob {self._digest} of {self._name} ended after {self.done} of the {self._size} bytes "
                "its manifest says"
            )
        got = "sha256:" + self._hash.hexdigest()
        if got != self._digest:
            raise self._fail(f"blob {self._digest} of {self._name} does not match its digest (got {got})")
        self.verified = True

    def _fail(self, message: str) -> VerificationFailed:
        self._failed = VerificationFailed(
            message, hint="the registry (or something between) served other bytes; nothing was kept from it"
        )
        return self._failed


# --- helpers --------------------------------------------------------------------------------------


def _report(progress: ProgressFn, size: int, done: int, total: int | None) -> None:
    progress(done, size)  # the manifest's size: a chunked answer has no Content-Length


def _pick(challenges: list[Challenge]) -> Challenge | None:
    """Bearer (with a realm) before Basic; None when neither is offered."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme and (scheme == "basic" or challenge.params.get("realm")):
                return challenge
    return None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    return value


def _check_repository(repository: str) -> None:
    if len(repository) > 255 or not _NAME.match(repository):
        raise InvalidReference(
            f"invalid repository name {repository!r}",
            hint="lower-case letters, digits and separators (. _ __ -), components joined by /",
        )


def _check_reference(reference: str) -> bool:
    """True for a digest, False for a tag; anything else is refused before it reaches a URL."""
    if _TAG.match(reference):
        return False
    if _DIGEST.match(reference):
        if not _SHA256.match(reference):
            raise InvalidReference(
                f"unsupported digest {reference!r}",
                hint="nspawnctl verifies sha256 digests (sha256:<64 hex>)",
            )
        return True
    raise InvalidReference(f"invalid tag or digest {reference!r}", hint="a tag like 1.0, or sha256:<64 hex>")


def _check_blob_digest(digest: str, name: str) -> None:
    if not _SHA256.match(digest):
        raise VerificationFailed(
            f"{name} names a blob by an unsupported or invalid digest {_clean(digest)[:100]!r}",
            hint="nspawnctl verifies sha256 digests only",
        )


def _status(resp: requests.Response) -> str:
    return f"{resp.status_code} {resp.reason}" if resp.reason else str(resp.status_code)


def _origin(url: str) -> str:
    """scheme://host/path of a URL, without its query (which may hold secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _describe(errors: list[tuple[str, str]]) -> str:
    return "; ".join(f"{code}: {message}" if message else code for code, message in errors)


def _host_of(url: str) -> str:
    """scheme://host[:port] of a URL, for messages (its path and query may hold secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _with_tls_hint(e: FetchError) -> FetchError:
    """A TLS failure on the probe: point at --tls-verify=false (plain HTTP or a private CA)."""
    if e.message.startswith(("certificate verification failed", "TLS connection")):
        hint = f"{e.hint}; or {TLS_HINT}" if e.hint else TLS_HINT
        return FetchError(e.message, hint=hint)
    return e
