"""Real registries for the pull tests: CNCF distribution (Debian's docker-registry) in a subprocess.

    with start_registry(workdir / "open") as reg:                       # plain HTTP, no auth
        push(...)  # see ocibuild.py
    with start_registry(workdir / "basic", tls=make_tls(...), auth="htpasswd",
                        users={"alice": "secret"}) as reg: ...
    with TokenServer(workdir / "ts", {"alice": "secret"}) as ts, \\
         start_registry(workdir / "tok", auth="token", token=ts) as reg: ...

Each registry keeps its storage, config and logs under its own directory; ``storage=`` lets a second
registry serve the storage of a first (push once, then serve it with other auth or TLS). The storage
is distribution's filesystem driver layout, so a test can find and damage blobs:
``<storage>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data``. The registry reads size and bytes
from that file on every request (no descriptor cache is configured), so what is written there is
what clients get, with the original digest in Docker-Content-Digest.

The config is written as JSON, which YAML reads as it is.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Auth = Literal["none", "htpasswd", "token"]
START_TIMEOUT = 20.0
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# 127.0.0.1 - - [24/Nov/2026:08:42:32 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7.88.1"
ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')
LISTENING = re.compile(r'msg="listening on ([^",]+)')


def registry_binary() -> str:
    """Debian installs distribution as docker-registry; upstream builds call it registry."""
    for name in ("docker-registry", "registry"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no docker-registry binary: apt-get install docker-registry")


@dataclass(frozen=True)
class Request:
    """One line of the registry's access log."""

    method: str
    path: str
    status: int
    size: int


@dataclass
class Registry:
    """A running registry; a context manager that stops it."""

    dir: Path
    storage: Path
    host: str  # the name clients use (a hostname in /etc/hosts, or the bind address)
    port: int
    scheme: str  # "http" or "https"
    auth: Auth
    ca: Path | None  # CA that signed the TLS certificate (for --ca-cert / skopeo --dest-cert-dir)
    users: dict[str, str]
    proc: subprocess.Popen[bytes]
    access_log: Path
    app_log: Path
    token: Any = None  # the TokenServer when auth == "token"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """HOST:PORT, the registry part of image references (``127.0.0.1:5000/acc/bb:v1``)."""
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/v2/") -> str:
        return f"{self.scheme}://{self.address}{path}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        """``HOST:PORT/REPO:TAG``; a tag starting with ``sha256:`` gives ``HOST:PORT/REPO@sha256:...``."""
        sep = "@" if tag.startswith("sha256:") else ":"
        return f"{self.address}/{repository}{sep}{tag}"

    # --- stored content ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        m = DIGEST.fullmatch(digest)
        if not m:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        hexd = m.group(1)
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def blobs(self) -> list[str]:
        """Digests of every blob in storage (layers, configs and manifests alike)."""
        base = self.storage / "docker/registry/v2/blobs/sha256"
        return sorted(f"sha256:{p.parent.name}" for p in base.glob("*/*/data")) if base.is_dir() else []

    def tag_digest(self, repository: str, tag: str) -> str:
        """The manifest digest a tag points to, read from storage (no HTTP, no auth)."""
        link = self.storage / "docker/registry/v2/repositories" / repository / "_manifests/tags" / tag
        return (link / "current/link").read_text().strip()

    def corrupt_blob(self, digest: str, how: str = "flip") -> bytes:
        """Damage a stored blob in place; returns the original bytes (for restore_blob).

        ``flip``: one bit in the middle (same size, wrong digest); ``truncate``: drop the second half;
        ``extend``: append 1 KiB of garbage; ``zero``: the same size of zero bytes.
        """
        path = self.blob_path(digest)
        original = path.read_bytes()
        if how == "flip":
            data = bytearray(original)
            data[len(data) // 2] ^= 0x01
            damaged = bytes(data)
        elif how == "truncate":
            damaged = original[: len(original) // 2]
        elif how == "extend":
            damaged = original + b"\xa5" * 1024
        elif how == "zero":
            damaged = bytes(len(original))
        else:
            raise ValueError(f"unknown corruption {how!r}: flip, truncate, extend or zero")
        self.replace_blob(digest, damaged)
        return original

    def replace_blob(self, digest: str, data: bytes) -> None:
        """Make the registry serve ``data`` under ``digest``."""
        path = self.blob_path(digest)
        tmp = path.with_name("data.tmp")
        tmp.write_bytes(data)
        tmp.rename(path)

    def restore_blob(self, digest: str, original: bytes) -> None:
        self.replace_blob(digest, original)

    # --- what clients did -------------------------------------------------------------------------

    def mark(self) -> int:
        """How many requests were served so far: pass it to requests()/blob_gets() as ``since``."""
        return len(self.requests())

    def requests(self, since: int = 0) -> list[Request]:
        """Requests served (after the first ``since``), in order; the access log is written as
        requests complete. Includes start_registry's own readiness probes of /v2/."""
        out: list[Request] = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            m = ACCESS_LINE.match(line)
            if m:
                out.append(Request(m[1], m[2], int(m[3]), 0 if m[4] == "-" else int(m[4])))
        return out[since:]

    def blob_gets(self, digest: str | None = None, since: int = 0) -> list[Request]:
        """Successful GETs of blobs (of ``digest`` only, if given): what a pull downloaded."""
        return [
            r
            for r in self.requests(since)
            if r.method == "GET"
            and r.status in (200, 206)
            and "/blobs/" in r.path
            and (digest is None or r.path.endswith("/blobs/" + digest))
        ]

    # --- plain client, for checks and for tests that need one ---------------------------------------

    def get(
        self, path: str, headers: dict[str, str] | None = None, user: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """GET through this registry's auth as ``user`` (its password from ``users``), or anonymously.

        Follows the Bearer flow via the token server when the registry asks for it. Never raises
        for an HTTP status.
        """
        creds = (user, self.users[user]) if user is not None else None
        return http_get(self.url(path), headers or {}, creds, self.ca)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = _tail(self.app_log)
                raise RuntimeError(
                    f"registry exited {self.proc.returncode} during start; {self.app_log}:\n{log}"
                )
            try:
                status, headers, _ = http_get(self.url(), {}, None, self.ca, bearer=False)
                if status in (200, 401) and "docker-distribution-api-version" in headers:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"registry not answering on {self.url()} after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (distribution accepts bcrypt only), via apache2-utils' htpasswd."""
    proc = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def start_registry(
    dir: Path,
    *,
    port: int = 0,
    bind: str = "127.0.0.1",
    host: str | None = None,
    tls: Any = None,
    auth: Auth = "none",
    users: dict[str, str] | None = None,
    token: Any = None,
    storage: Path | None = None,
    config: dict[str, Any] | None = None,
) -> Registry:
    """Start ``registry serve`` and wait until it answers /v2/.

    dir: its config, logs (and storage unless ``storage`` is given) go there.
    port: 0 lets the registry pick one (read back from its log). bind: listen address.
    host: the name clients use (default: the bind address); must be in the certificate's SANs
    for TLS (pki.make_tls always adds IP 127.0.0.1). tls: a pki.TLS, or None for plain HTTP.
    auth: "none", "htpasswd" (Basic; ``users``) or "token" (Bearer; ``token`` is a running
    tokenserver.TokenServer whose ``users`` are the accounts). config: merged over the generated
    config, section by section (e.g. ``{"http": {"headers": {...}}}``).
    """
    dir.mkdir(parents=True, exist_ok=True)
    storage = storage or dir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    users = dict(users or {})
    http: dict[str, Any] = {
        "addr": f"{bind}:{port}",
        "secret": "nspawnctl-tests",
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth == "htpasswd":
        if not users:
            raise ValueError("auth='htpasswd' needs users")
        htpasswd = dir / "htpasswd"
        htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
        cfg["auth"] = {"htpasswd": {"realm": "nspawnctl-tests", "path": str(htpasswd)}}
    elif auth == "token":
        if token is None:
            raise ValueError("auth='token' needs a running TokenServer (token=)")
        cfg["auth"] = token.registry_auth()
        users = token.users
    elif auth != "none":
        raise ValueError(f"unknown auth {auth!r}")
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    config_file = dir / "config.yml"
    config_file.write_text(json.dumps(cfg, indent=2))
    access_log, app_log = dir / "access.log", dir / "registry.log"
    # The access log (Apache combined format) goes to stdout, everything else to stderr.
    with open(access_log, "ab") as out, open(app_log, "ab") as err:
        proc = subprocess.Popen(
            [registry_binary(), "serve", str(config_file)], stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
    reg = Registry(
        dir=dir,
        storage=storage,
        host=host or bind,
        port=port,
        scheme="https" if tls is not None else "http",
        auth=auth,
        ca=tls.ca if tls is not None else None,
        users=users,
        proc=proc,
        access_log=access_log,
        app_log=app_log,
        token=token,
    )
    try:
        if port == 0:
            reg.port = _listening_port(reg)
        reg.wait_ready()
    except BaseException:
        reg.stop()
        raise
    return reg


def _listening_port(reg: Registry, timeout: float = START_TIMEOUT) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = LISTENING.search(reg.app_log.read_text(errors="replace"))
        if m:
            return int(m.group(1).rsplit(":", 1)[1])
        if reg.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"registry did not say where it listens; {reg.app_log}:\n{_tail(reg.app_log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- a small stdlib HTTP client with the registry auth flows (also used by ocibuild.push) --------------


def ssl_context(ca: Path | None) -> ssl.SSLContext:
    """Verify against ``ca`` when given; else no verification (the tests' registries are local)."""
    if ca is not None:
        return ssl.create_default_context(cafile=str(ca))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="a:b:pull,push"`` -> ("bearer", {...}); quotes respected."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _raw(
    method: str, url: str, headers: dict[str, str], ca: Path | None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context(ca)), _NoRedirect())
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Session:
    """Requests to one registry with Basic or Bearer auth as needed; the last token is reused until a 401."""

    def __init__(self, base: str, creds: tuple[str, str] | None = None, ca: Path | None = None) -> None:
        self.base = base.rstrip("/")
        self.creds = creds
        self.ca = ca
        self.authorization: str | None = None

    def request(
        self,
        method: str,
        path_or_url: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        bearer: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        hdrs = dict(headers or {})
        if self.authorization:
            hdrs["Authorization"] = self.authorization
        status, rh, body = _raw(method, url, hdrs, self.ca, data)
        if status != 401 or "www-authenticate" not in rh:
            return status, rh, body
        scheme, params = parse_challenge(rh["www-authenticate"])
        if scheme == "basic" and self.creds is not None and "Authorization" not in hdrs:
            self.authorization = basic_header(*self.creds)
        elif scheme == "bearer" and bearer:
            query = [("service", params.get("service", ""))]
            if params.get("scope"):
                query.append(("scope", params["scope"]))
            token_url = params["realm"] + "?" + urllib.parse.urlencode(query)
            th = {"Authorization": basic_header(*self.creds)} if self.creds else {}
            ts, _, tb = _raw("GET", token_url, th, self.ca)
            if ts != 200:
                return ts, {}, tb
            doc = json.loads(tb)
            self.authorization = "Bearer " + (doc.get("token") or doc["access_token"])
        else:
            return status, rh, body
        hdrs["Authorization"] = self.authorization
        return _raw(method, url, hdrs, self.ca, data)


def http_get(
    url: str,
    headers: dict[str, str],
    creds: tuple[str, str] | None,
    ca: Path | None,
    bearer: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    return Session("", creds, ca).request("GET", url, headers, bearer=bearer)


def free_port(bind: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests that need the number before the server starts)."""
    with socket.socket() as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])
