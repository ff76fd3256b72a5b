"""The Docker API service's pure parts, and its HTTP handling over a socketpair with h11 as the client."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

h11 = pytest.importorskip("h11")

from apiserve import serve_one  # noqa: E402

from nspawnctl.api import activation, render, versions  # noqa: E402
from nspawnctl.api.handlers import routes  # noqa: E402
from nspawnctl.api.handlers.containers import _since, _tail, parse_signal, parse_timeout  # noqa: E402
from nspawnctl.api.handlers.images import pull_source  # noqa: E402
from nspawnctl.api.http import ApiError, docker_bool  # noqa: E402
from nspawnctl.api.translate import create_options, empty  # noqa: E402
from nspawnctl.values import MAX_TIMEOUT  # noqa: E402


def test_versioned_and_unversioned_paths() -> None:
    assert versions.split_path("/v1.41/containers/json") == ((1, 41), "/containers/json")
    assert versions.split_path("/_ping") == (versions.MAX_VERSION, "/_ping")
    with pytest.raises(versions.UnsupportedVersion, match="too new"):
        versions.split_path("/v1.99/info")
    with pytest.raises(versions.UnsupportedVersion, match="too old"):
        versions.split_path("/v1.12/info")


def test_routing_params_methods_and_unknown_paths() -> None:
    router = routes()
    handler, params = router.route("GET", "/images/registry.example.test:5000/acc/bb:v1/json")
    assert handler.__name__ == "inspect_image" and params == {"name": "registry.example.test:5000/acc/bb:v1"}
    assert router.route("GET", "/images/json")[0].__name__ == "list_images"
    assert router.route("DELETE", "/images/a%2Fb")[1] == {"name": "a/b"}
    assert router.route("POST", "/containers/abc/wait")[1] == {"id": "abc"}
    assert router.route("HEAD", "/_ping")[0].__name__ == "ping"
    with pytest.raises(ApiError) as e:
        router.route("GET", "/nope")
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        router.route("PUT", "/containers/abc/start")
    assert e.value.status == 405


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1", True),
        ("True", True),
        ("0", False),
        ("false", False),
        ("", False),
        ("none", False),
        ("no", False),
        ("yes", True),
    ],
)
def test_docker_booleans(text: str, want: bool) -> None:
    assert docker_bool(text) is want


def test_frames_are_docker_multiplexed() -> None:
    assert render.frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert render.frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


def test_signals_and_pull_sources() -> None:
    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal("15") == 15
    assert parse_signal(None) == 9
    for bad in ("NOPE", "99999999999", "0"):  # review L2: a huge number reached D-Bus' int32
        with pytest.raises(ApiError):
            parse_signal(bad)


@pytest.mark.parametrize("bad", ["nan", "inf", "1e308", "-5", "1.5", "x"])
def test_api_stop_timeout_is_docker_whole_seconds(bad: str) -> None:
    assert parse_timeout(None) == 10 and parse_timeout("0") == 0 and parse_timeout("30") == 30
    assert parse_timeout("-1") == MAX_TIMEOUT  # docker's "wait"
    with pytest.raises(ApiError, match="t: "):
        parse_timeout(bad)


def test_api_logs_since_and_tail_are_checked() -> None:
    assert _since("1700000000.5") == "@1700000000.5" and _since(None) is None and _since("0") is None
    for bad in ("nan", "inf", "-5", "x"):
        with pytest.raises(ApiError, match="since"):
            _since(bad)
    assert _tail("all") is None and _tail(None) is None and _tail("0") == 0 and _tail("20") == 20
    for bad in ("-5", "x", "1e3"):
        with pytest.raises(ApiError, match="tail"):
            _tail(bad)
    assert pull_source("reg:5000/acc/bb", "v1") == "reg:5000/acc/bb:v1"
    assert pull_source("reg/x", "sha256:" + "a" * 64) == "reg/x@sha256:" + "a" * 64
    assert pull_source("reg/x:1", None) == "reg/x:1"


def test_create_body_becomes_run_options() -> None:
    body: dict[str, Any] = {
        "Image": "bb", "Cmd": ["echo", "hi"], "Env": ["A=1"], "WorkingDir": "/w", "Tty": False,
        "Labels": {}, "Volumes": {}, "Entrypoint": None,
        "HostConfig": {"AutoRemove": True, "Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 0,
                       "NetworkMode": "default", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                       "LogConfig": {"Type": "", "Config": {}}, "ConsoleSize": [0, 0], "Isolation": "",
                       "MemorySwappiness": -1,
                       "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
        "NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": None, "IPAddress": ""}}},
    }  # fmt: skip
    req, opts = create_options(body, "w")
    assert (req.image, req.command) == ("bb", ["echo", "hi"])
    assert opts.name == "w" and opts.auto_remove and opts.env == ["A=1"] and opts.workdir == "/w"
    assert opts.limits.memory.bytes == 64 << 20 and opts.limits.cpus.nano == 500_000_000
    assert opts.network is None and opts.ports[0].host_port == 8080
    req, opts = create_options({"Image": "bb", "Entrypoint": ["sh", "-c"], "Cmd": ["exit 3"]}, None)
    assert opts.entrypoint == "sh" and req.command == ["-c", "exit 3"]
    assert create_options({"Image": "bb", "Entrypoint": [""]}, None)[1].entrypoint == ""


def test_labels_and_ports_without_a_host_port() -> None:
    """What testcontainers sends: its session labels, and exposed ports on free host ports."""
    body = {
        "Image": "bb", "Labels": {"org.testcontainers.session-id": "s1"},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": ""}],
                                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
    }  # fmt: skip
    opts = create_options(body, None)[1]
    assert opts.labels == {"org.testcontainers.session-id": "s1"}
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in opts.ports] == [
        (None, 0, 80, "tcp"),
        ("127.0.0.1", 0, 53, "udp"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Image": "bb", "HostConfig": {"CapAdd": ["NOT_A_CAP"]}}, "HostConfig.CapAdd"),
        ({"Image": "bb", "Tty": "yes"}, "Tty"),
        ({"Image": "bb", "Labels": {"a": 1}}, "Labels"),
        ({"Image": "bb", "Labels": ["a=b"]}, "Labels"),
        ({"Image": "bb", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}}, "port"),
        ({"Image": "bb", "Cmd": "x", "Env": [1]}, "Env"),
        ({"Image": "bb", "HostConfig": {"Memory": "lots"}}, "HostConfig.Memory"),
        ({"Image": "bb", "Frobnicate": 1}, "Frobnicate"),
        ({"Cmd": ["x"]}, "Image"),
        ([], "object"),
    ],
)
def test_create_refuses_what_it_cannot_honour_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(ApiError) as e:
        create_options(body, None)
    assert e.value.status == 400 and field in e.value.message


def test_empty_values_ask_for_nothing() -> None:
    assert empty({"Type": "", "Config": {}}) and empty([0, 0]) and empty(None)
    assert not empty({"a": [1]}) and not empty(True)


def test_listen_fds_only_for_this_pid() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2"}
    assert activation.listen_fds(env, pid=2) == [] and "LISTEN_FDS" not in env
    a, b = socket.socketpair()
    try:
        import os

        os.dup2(a.fileno(), 3)  # fd 3 as systemd passes it
        env = {"LISTEN_PID": "7", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
        assert activation.listen_fds(env, pid=7) == [3] and env == {}
        assert not os.get_inheritable(3)
    finally:
        a.close()
        b.close()


def test_status_text() -> None:
    assert render._ago(0.2) == "Less than a second"
    assert render._ago(125) == "2 minutes"
    assert render.rfc3339(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456000Z"


# -- over a socketpair: the real h11 server side, h11 as the client ---------------------------------
def exchange(requests: list[bytes], max_body: int | None = None) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw requests on one connection, return each reply (status, headers, body)."""

    async def main() -> list[tuple[int, dict[str, str], bytes]]:
        task, creader, cwriter = await serve_one(routes(), **({"max_body": max_body} if max_body else {}))
        client = h11.Connection(h11.CLIENT)
        out = []
        for raw in requests:
            # the client's h11 learns of the request (HEAD or not) without writing it: the raw bytes
            # are the test's, malformed ones too
            method = raw.split(b" ", 1)[0]
            client.send(h11.Request(method=method, target="/", headers=[("Host", "d")]))
            client.send(h11.EndOfMessage())
            cwriter.write(raw)
            await cwriter.drain()
            status, headers, body = 0, {}, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await creader.read(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            out.append((status, headers, body))
            if client.our_state is h11.MUST_CLOSE or client.their_state is not h11.DONE:
                break
            client.start_next_cycle()
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return out

    return asyncio.run(main())


def test_ping_version_and_headers_over_http() -> None:
    replies = exchange(
        [
            b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
            b"GET /v1.44/_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
            b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n",
        ]
    )
    (s1, h1, b1), (s2, _, b2), (s3, _, b3) = replies
    assert (s1, b1, s2, b2) == (200, b"", 200, b"OK")
    assert h1["api-version"] == "1.47" and h1["ostype"] == "linux" and h1["server"].startswith("nspawnctl/")
    assert s3 == 200 and json.loads(b3)["ApiVersion"] == "1.47" and json.loads(b3)["MinAPIVersion"] == "1.24"


def test_errors_are_docker_shaped_and_the_connection_goes_on() -> None:
    bad = b'{"Image": '
    replies = exchange(
        [
            b"GET /nope HTTP/1.1\r\nHost: d\r\n\r\n",
            b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n%s" % (len(bad), bad),
            b"GET /v1.99/info HTTP/1.1\r\nHost: d\r\n\r\n",
            b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n",
        ]
    )
    assert [r[0] for r in replies] == [404, 400, 400, 200]
    assert json.loads(replies[0][2]) == {"message": "page not found"}
    assert "malformed JSON" in json.loads(replies[1][2])["message"]


def test_oversized_bodies_and_heads_are_refused() -> None:
    body = b"x" * 100
    replies = exchange(
        [b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\n" + body], max_body=50
    )
    assert replies[0][0] == 413 and "too large" in json.loads(replies[0][2])["message"]
    chunked = (
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + body
    )
    assert exchange([chunked + b"\r\n0\r\n\r\n"], max_body=50)[0][0] == 413
    huge = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * (100 << 10) + b"\r\n\r\n"
    assert exchange([huge])[0][0] in (400, 431)


def test_hijack_sends_101_upgraded_then_raw_frames_then_closes() -> None:
    """attach's shape: the head alone, then raw multiplexed frames, then EOF (clients read to it)."""
    from nspawnctl.api.routing import Router

    async def hijacking(ex: Any, id: str) -> None:
        stream = await ex.conn.hijack("application/vnd.docker.multiplexed-stream")
        await stream.write(render.frame(1, b"hi\n"))
        await stream.write(render.frame(2, b"oops\n"))
        await stream.end()

    router = Router()
    router.add("POST", "/containers/{id}/attach", hijacking)

    async def main() -> tuple[bytes, bytes]:
        task, creader, cwriter = await serve_one(router)
        cwriter.write(
            b"POST /v1.44/containers/x/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        await cwriter.drain()
        head = await creader.readuntil(b"\r\n\r\n")
        rest = await asyncio.wait_for(creader.read(), 5)  # to EOF
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return head, rest

    head, rest = asyncio.run(main())
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "http/1.1 101 upgraded"
    assert "upgrade: tcp" in lines and "connection: upgrade" in lines
    assert "content-type: application/vnd.docker.multiplexed-stream" in lines
    assert rest == render.frame(1, b"hi\n") + render.frame(2, b"oops\n")


def test_a_stream_head_goes_out_before_its_body() -> None:
    """wait's shape: the client gets the head while the handler still waits (docker run sends
    start only then), the body when it is ready."""
    from nspawnctl.api.routing import Router

    release = asyncio.Event()

    async def waiting(ex: Any, id: str) -> None:
        stream = await ex.conn.stream()
        await release.wait()
        await stream.write(b'{"StatusCode": 3}\n')
        await stream.end()

    router = Router()
    router.add("POST", "/containers/{id}/wait", waiting)

    async def main() -> tuple[int, bytes]:
        task, creader, cwriter = await serve_one(router)
        client = h11.Connection(h11.CLIENT)
        cwriter.write(
            client.send(
                h11.Request(
                    method="POST",
                    target="/containers/x/wait",
                    headers=[("Host", "d"), ("Content-Length", "0")],
                )
            )
        )
        cwriter.write(client.send(h11.EndOfMessage()))
        status, body = 0, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await asyncio.wait_for(creader.read(65536), 5))
            elif isinstance(event, h11.Response):
                status = event.status_code
                release.set()  # only now: the head came first
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return status, body

    assert asyncio.run(main()) == (200, b'{"StatusCode": 3}\n')


def test_repo_tags_use_docker_hub_short_names() -> None:
    from nspawnctl.ref import familiar

    assert familiar("docker.io/library/alpine:3.10") == "alpine:3.10"
    assert familiar("docker.io/acme/app:1") == "acme/app:1"
    assert familiar("127.0.0.1:5000/acc/bb:v1") == "127.0.0.1:5000/acc/bb:v1"
