"""Bad input to the Docker API service (issue 15's "Bad input" line) and images/create's
credentials and in-band errors: each bad request gets a docker-shaped error or a clean close, the
service keeps serving, and nothing half-made is left (no container, no partial image, no pull
scratch). Requests are sent by hand (http.client over the unix socket, raw bytes) where no client
would send them, by docker-py and the docker CLI where they would."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, Env
from dockerapi import SERVICE, SOCKET, docker, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ocibuild as ob

LAYERS = Path("/var/lib/nspawnctl/layers")
MACHINES = Path("/var/lib/machines")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, timeout: float = 60) -> None:
        super().__init__("docker", timeout=timeout)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(SOCKET)
        self.sock = sock


def call(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = UnixHTTP()
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
    except (BrokenPipeError, ConnectionResetError):
        return 0, None  # the service closed the connection on us (an oversized body): a clean close
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data) if data.strip() else None
    except ValueError:
        return resp.status, data


def hang_up_after_head(request: bytes) -> bytes:
    """Send a raw request, read the reply's head, and hang up."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(SOCKET)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return head


def images(nsp: CLI) -> list[str]:
    return nsp("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()


def alive() -> bool:
    status, body = call("GET", "/_ping")
    return status == 200 and body == b"OK"


def containers() -> list[str]:
    out = subprocess.run(["nspawnctl", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return sorted(out.stdout.split())


def scratch() -> list[str]:
    found = [*LAYERS.glob(".tmp-*"), *MACHINES.glob(".tmp-*"), *Path("/var/lib/nspawnctl").glob("*/.tmp-*")]
    return sorted(str(p) for p in found)


@pytest.fixture(scope="module")
def since() -> str:
    return f"@{int(time.time())}"


def no_tracebacks(since: str) -> None:
    log = subprocess.run(
        ["journalctl", "-u", SERVICE, "--since", since, "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
    ).stdout
    assert "Traceback" not in log and "request failed" not in log, log[-3000:]


@pytest.mark.serial
def test_bad_requests_get_docker_errors_and_nothing_is_made(
    api: dict[str, str],
    pulled: str,
    since: str,
) -> None:
    before = containers()
    create = "/v1.44/containers/create?name=faulty"
    image = pulled.encode()

    def host(**fields: object) -> bytes:
        return json.dumps({"Image": pulled, "HostConfig": fields}).encode()

    cases: list[tuple[str, str, bytes | None, dict[str, str] | None, int, str]] = [
        ("POST", create, b'{"Image": ', None, 400, "malformed JSON"),
        ("POST", create, json.dumps({"Image": pulled, "Cmd": 5}).encode(), None, 400, "Cmd"),
        ("POST", create, host(Memory="1g"), None, 400, "Memory"),
        ("POST", create, b'{"Image": "%s", "HostConfig": {"Memory": NaN}}' % image, None, 400, "Memory"),
        (
            "POST",
            create,
            b'{"Image": "%s", "HostConfig": {"NanoCpus": 1e400}}' % image,
            None,
            400,
            "NanoCpus",
        ),
        ("POST", create, host(PidsLimit=10**30), None, 400, ""),
        ("POST", create, host(RestartPolicy="x"), None, 400, "RestartPolicy"),
        ("POST", create, b"[" * 100000, None, 400, "JSON"),
        ("POST", create, json.dumps({"Image": pulled, "Frobnicate": 1}).encode(), None, 400, "Frobnicate"),
        ("GET", "/v1.44/no/such/endpoint", None, None, 404, "page not found"),
        ("PATCH", "/v1.44/containers/json", None, None, 405, "PATCH"),
        ("GET", "/v1.44/containers/no-such-ctr/json", None, None, 404, "No such container"),
        ("POST", "/v1.44/containers/no-such-ctr/start", None, None, 404, "No such container"),
        ("DELETE", "/v1.44/containers/no-such-ctr", None, None, 404, "No such container"),
        ("GET", "/v1.44/containers/no-such-ctr/archive?path=/", None, None, 404, "No such container"),
        ("POST", "/v1.44/images/create?fromImage=x", None, {"X-Registry-Auth": "!!!"}, 400, "Registry-Auth"),
    ]
    for method, path, body, headers, want, words in cases:
        status, reply = call(method, path, body, headers)
        assert status == want, (method, path, body and body[:80], status, reply)
        assert isinstance(reply, dict) and words in reply["message"], (path, reply)
    # oversized: a 2 MiB body, a 100 KiB header: an error or a clean close, never a hang
    status, reply = call("POST", create, b" " * (2 << 20))
    assert status in (0, 413), reply
    status, reply = call("GET", "/_ping", headers={"X-Big": "b" * (100 << 10)})
    assert status in (0, 400, 431), reply
    assert alive()
    assert containers() == before  # nothing was created by any of them
    no_tracebacks(since)


@pytest.fixture(scope="module")
def victim(api: dict[str, str], pulled: str) -> Iterator[str]:
    nsp = CLI()
    name = nsp.name("hang")
    proc = docker(
        api, "run", "-d", "--name", name, pulled, "sh", "-c", "while true; do echo tick; sleep 1; done"
    )
    assert proc.returncode == 0, proc.stderr
    yield name
    nsp.cleanup()


def test_clients_hanging_up_mid_attach_logs_and_wait(
    api: dict[str, str],
    pulled: str,
    victim: str,
    nsp: CLI,
    since: str,
) -> None:
    # attach to a created container (as `docker run` does before start), hang up, then start it
    pending = nsp.name("pending")
    proc = docker(api, "create", "--name", pending, pulled, "sh", "-c", "echo out; exit 4")
    assert proc.returncode == 0, proc.stderr
    for request in (
        f"POST /v1.44/containers/{pending}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
        f"GET /v1.44/containers/{victim}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n",
        f"POST /v1.44/containers/{victim}/wait HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n",
    ):
        head = hang_up_after_head(request.encode())
        assert head.split(b" ", 2)[1] in (b"101", b"200"), head
        assert alive()  # answered on a new connection at once
    proc = docker(api, "start", pending)
    assert proc.returncode == 0, proc.stderr
    proc = docker(api, "wait", pending)
    assert (proc.returncode, proc.stdout.strip()) == (0, "4"), proc.stderr
    # the container ran on untouched, and answers the verbs the hung-up requests were waiting on
    proc = docker(api, "inspect", "--format", "{{.State.Running}}", victim)
    assert proc.stdout.strip() == "true", proc.stderr
    proc = docker(api, "stop", "-t", "1", victim)
    assert proc.returncode == 0, proc.stderr
    no_tracebacks(since)


@pytest.mark.serial
def test_a_client_hanging_up_mid_pull_leaves_a_whole_image_or_nothing(
    api: dict[str, str],
    oci: Env,
    nsp: CLI,
    since: str,
) -> None:
    ref = oci.ref("app")
    nsp("rmi", "-f", ref, check=False)
    nsp.images.add(ref)
    path = f"/v1.44/images/create?fromImage={ref.rsplit(':', 1)[0]}&tag=v1"
    head = hang_up_after_head(f"POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n".encode())
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert alive()
    # the pull goes on to its end (a whole image) in the service; no scratch is left after it
    assert wait_for(lambda: ref in images(nsp) and not scratch(), timeout=120), scratch()
    assert nsp("run", "--rm", "--entrypoint", "cat", ref, "/etc/os-release").returncode == 0
    no_tracebacks(since)


# -- images/create: X-Registry-Auth, in-band errors ----------------------------------------------------


def auth_header(user: str, password: str, server: str = "") -> str:
    value = {"username": user, "password": password, **({"serveraddress": server} if server else {})}
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def pull_lines(path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    status, _ = 0, None
    conn = UnixHTTP(timeout=180)
    try:
        conn.request("POST", path, headers=headers or {})
        resp = conn.getresponse()
        status = resp.status
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        conn.close()
    assert status == 200
    return lines


@pytest.mark.serial
def test_pull_with_registry_auth_and_in_band_errors(
    api: dict[str, str],
    oci: Env,
    nsp: CLI,
    tmp_path: Path,
    since: str,
) -> None:
    import docker as dockerpy

    with oci.basic_auth_registry("reg-api-basic", {"alice": "s3cret"}) as reg:
        ref = reg.ref("acc/app2", "v1")
        repo = ref.rsplit(":", 1)[0]
        nsp.images.add(ref)
        before = (sorted(p.name for p in LAYERS.iterdir()) if LAYERS.is_dir() else [], images(nsp))
        # anonymous, then a wrong password: in-band errors (status 200, errorDetail), nothing kept
        for headers in ({}, {"X-Registry-Auth": auth_header("alice", "wrong", reg.address)}):
            lines = pull_lines(f"/v1.44/images/create?fromImage={repo}&tag=v1", headers)
            errors = [x for x in lines if "errorDetail" in x]
            assert errors and errors[-1]["error"] == errors[-1]["errorDetail"]["message"], lines
            assert "wrong" not in json.dumps(lines)  # the password is never said
        assert (
            sorted(p.name for p in LAYERS.iterdir()) if LAYERS.is_dir() else [],
            images(nsp),
        ) == before
        # credentials for another registry are not sent to this one
        lines = pull_lines(
            f"/v1.44/images/create?fromImage={repo}&tag=v1",
            {"X-Registry-Auth": auth_header("alice", "s3cret", "other.test")},
        )
        assert "errorDetail" in lines[-1], lines
        # docker-py's auth_config (no serveraddress): docker's progress shape per layer
        client = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
        try:
            lines = list(
                client.pull(
                    repo,
                    tag="v1",
                    stream=True,
                    decode=True,
                    auth_config={"username": "alice", "password": "s3cret"},
                )
            )
        finally:
            client.close()
        assert not [x for x in lines if "errorDetail" in x], lines
        layer_lines = [x for x in lines if "id" in x and "progressDetail" in x]
        assert {"Pulling fs layer", "Download complete"} <= {x["status"] for x in layer_lines}, lines
        assert lines[-1]["status"].startswith("Status: Downloaded newer image for"), lines
        assert ref in images(nsp)
        assert (
            not Path("/var/lib/nspawnctl/auth.json").exists()
            or "s3cret" not in Path("/var/lib/nspawnctl/auth.json").read_text()
        )
        nsp("rmi", "-f", ref)
        # the docker CLI: a config.json with the registry's auth (what `docker login` leaves),
        # sent as X-Registry-Auth; no login through the service
        config = tmp_path / "docker-config"
        config.mkdir()
        auth = base64.b64encode(b"alice:s3cret").decode()
        (config / "config.json").write_text(json.dumps({"auths": {reg.address: {"auth": auth}}}))
        proc = docker({**api, "DOCKER_CONFIG": str(config)}, "pull", ref)
        assert proc.returncode == 0, proc.stderr
        assert ref in images(nsp)
        nsp("rmi", "-f", ref)
        proc = docker(api, "pull", ref)  # the module's config: no credentials
        assert proc.returncode != 0 and "auth" in proc.stderr.lower(), proc.stderr
    # a tampered layer: an in-band error naming the digest, no layer and no scratch kept
    layout = ob.Layout(oci.workdir / "oci-api-corrupt")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    top = ob.Layer(ob.LayerSpec().file("etc/top", f"top {time.time()}\n"), "gzip")
    img = layout.image("api-corrupt", [base, top], {"Cmd": ["true"]})
    ob.push(layout, img, oci.reg.url(""), "acc/api-corrupt", "v1", ca=oci.tls.ca)
    original = oci.reg.corrupt_blob(img.layers[1].digest, "flip")
    layers_before = sorted(p.name for p in LAYERS.iterdir()) if LAYERS.is_dir() else []
    try:
        lines = pull_lines(
            f"/v1.44/images/create?fromImage={oci.reg.ref('acc/api-corrupt', 'v1').rsplit(':', 1)[0]}&tag=v1"
        )
        assert "errorDetail" in lines[-1] and img.layers[1].digest in lines[-1]["error"], lines
        assert (sorted(p.name for p in LAYERS.iterdir()) if LAYERS.is_dir() else []) == layers_before
        assert not scratch()
    finally:
        oci.reg.restore_blob(img.layers[1].digest, original)
    assert alive()
    no_tracebacks(since)
