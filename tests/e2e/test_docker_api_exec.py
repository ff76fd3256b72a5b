"""exec through the Docker Engine API as dockerd's (issue 15), driven by docker-py and the docker
CLI: the *start* body's ``Tty`` decides raw or framed output, ``Detach`` answers at once and the
command runs on, a missing command is the exec's 127 with why in its output, and the detach keys
end a client's attach to a TTY exec while the command goes on."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI
from dockerapi import docker

OUT_ERR = ["sh", "-c", "echo hello out; echo hello err >&2"]


@pytest.fixture(scope="module")
def box(api: dict[str, str], pulled: str) -> Iterator[tuple[Any, Any]]:
    """docker-py's client and a running container (as docker-py's own exec tests make them)."""
    import docker as dockerpy

    client = dockerpy.DockerClient(base_url=api["DOCKER_HOST"])
    c = client.containers.run(pulled, "cat", stdin_open=True, detach=True, name=f"x-{uuid.uuid4().hex[:8]}")
    yield client, c
    c.remove(force=True)
    client.close()


def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _read_until(sock: socket.socket, needle: bytes, timeout: float = 60) -> bytes:
    got = b""
    sock.settimeout(timeout)
    while needle not in got:
        data = sock.recv(65536)
        assert data, f"{needle!r} did not come before the end; got {got!r}"
        got += data
    return got


def test_the_start_body_tty_decides_raw_or_framed_output(box: tuple[Any, Any]) -> None:
    from docker.utils.socket import next_frame_header, read_exactly

    client, c = box
    api = client.api
    # made with a TTY, started without (docker-py's default): the terminal's output as stdout frames
    res = api.exec_create(c.id, OUT_ERR, tty=True)
    assert api.exec_start(res, demux=True) == (b"hello out\r\nhello err\r\n", None)
    res = api.exec_create(c.id, ["printf", "yay, interactive exec!"], tty=True)
    sock = api.exec_start(res, socket=True)
    try:
        assert next_frame_header(sock) == (1, len("yay, interactive exec!"))
        assert read_exactly(sock, 22) == b"yay, interactive exec!"
    finally:
        sock.close()
    # started with Tty: raw bytes
    res = api.exec_create(c.id, OUT_ERR, tty=True)
    assert api.exec_start(res, tty=True) == b"hello out\r\nhello err\r\n"
    # no TTY, framed: stdout and stderr apart; started with Tty: raw, and (as dockerd) no stderr
    res = api.exec_create(c.id, OUT_ERR)
    assert api.exec_start(res, demux=True) == (b"hello out\n", b"hello err\n")
    res = api.exec_create(c.id, OUT_ERR)
    assert api.exec_start(res, tty=True) == b"hello out\n"
    assert api.exec_inspect(res)["ExitCode"] == 0


def test_a_detached_start_answers_at_once_and_the_command_runs_on(box: tuple[Any, Any], nsp: CLI) -> None:
    client, c = box
    api = client.api
    assert c.exec_run(["mkfifo", "/tmp/gate"]).exit_code == 0
    res = api.exec_create(c.id, ["sh", "-c", 'read x < /tmp/gate; echo "$x" > /tmp/done; exit 5'])
    assert api.exec_start(res, detach=True) == ""  # answered while the command waits at the gate
    info = api.exec_inspect(res)
    assert info["Running"] and info["ExitCode"] is None and info["Pid"] > 0
    assert c.name in nsp("ps", "--format", "{{.Names}}").stdout.split()
    assert c.exec_run(["sh", "-c", "echo opened > /tmp/gate"]).exit_code == 0
    _until(lambda: not api.exec_inspect(res)["Running"], "the detached exec did not end")
    assert api.exec_inspect(res)["ExitCode"] == 5
    assert c.exec_run(["cat", "/tmp/done"]).output == b"opened\n"


def test_a_missing_command_is_the_execs_127_and_says_why(api: dict[str, str], box: tuple[Any, Any]) -> None:
    import docker as dockerpy

    client, c = box
    code, out = c.exec_run("nonexistent")
    assert code == 127 and b'"nonexistent": executable file not found in $PATH' in out, out
    code, out = c.exec_run("/tmp")  # a directory: cannot be executed
    assert code == 126 and b"permission denied" in out, out
    res = client.api.exec_create(c.id, ["nonexistent"])
    with pytest.raises(dockerpy.errors.APIError) as e:
        client.api.exec_start(res, detach=True)
    assert e.value.status_code == 400 and "not found" in str(e.value)
    assert client.api.exec_inspect(res)["ExitCode"] == 127
    proc = docker(api, "exec", c.name, "nonexistent")
    assert proc.returncode == 127 and "executable file not found" in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize("keys", [None, "ctrl-x"])
def test_the_detach_keys_end_the_attach_and_the_command_goes_on(
    box: tuple[Any, Any], keys: str | None
) -> None:
    client, c = box
    api = client.api
    res = api.exec_create(c.id, "cat", stdin=True, tty=True, detach_keys=keys)
    sock = api.exec_start(res, tty=True, socket=True)
    raw = sock._sock  # docker-py's documented way to write to the socket
    try:
        raw.sendall(b"first\n")
        _read_until(raw, b"first")
        if keys:  # other keys: ctrl-p,ctrl-q are just bytes for cat then
            raw.sendall(b"\x10\x11second\n")
            _read_until(raw, b"second")
        if keys:
            raw.sendall(b"\x18")
        else:  # in two pieces, as a user types them
            raw.sendall(b"\x10")
            raw.sendall(b"\x11")
        raw.settimeout(60)
        while raw.recv(65536):  # to the end of the stream: the service closes it
            pass
    finally:
        sock.close()
    info = api.exec_inspect(res)
    assert info["Running"] and info["ExitCode"] is None  # cat reads on, from nobody
    assert Path(f"/proc/{info['Pid']}").exists()


def test_an_exec_right_after_the_start_sees_what_the_payload_did_first(
    box: tuple[Any, Any], pulled: str, nsp: CLI
) -> None:
    """docker-py's test_exec_run_success: the start answers before nspawn's child has executed the
    payload; the exec waits for it (run/payloadwait.py), as dockerd's start returns after it."""
    client, _ = box
    for _ in range(2):
        c = client.containers.run(pulled, "sh -c 'echo hello > /test; sleep 60'", detach=True)
        try:
            assert tuple(c.exec_run("cat /test")) == (0, b"hello\n")
        finally:
            c.remove(force=True)
    name = nsp.name("x-cli")  # the CLI's exec too
    nsp("run", "-d", "--name", name, pulled, "sh", "-c", "echo hi > /test; sleep 60")
    try:
        assert nsp("exec", name, "cat", "/test").stdout == "hi\n"
    finally:
        nsp("rm", "-f", name)
