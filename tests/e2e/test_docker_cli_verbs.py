"""Issue 15's "Done when" verbs end to end (audit 17, gaps of issue 15): `docker kill`, `docker logs
-f` and docker-py's `logs(stream=True)` as the lines come, `docker run -d -p PORT:80` and `-P` of an
image that EXPOSEs a port answering from the host, docker-py `stop()`/`reload()`, and
`client.images.pull`; each result also seen by `nspawnctl ps`/`machinectl list`."""

from __future__ import annotations

import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from conftest import CLI, Env
from dockerapi import docker

# busybox httpd -f stays in the foreground (the payload itself serves)
SERVE = "mkdir -p /www && echo {text} > /www/index.html && echo serving && exec httpd -f -p {port} -h /www"
# prints a line, then waits for a file the test makes through `docker exec` before the next
STEPS = (
    "echo one; until [ -e /go1 ]; do sleep 0.1; done; echo two; "
    "until [ -e /go2 ]; do sleep 0.1; done; echo three"
)


def machines() -> str:
    return subprocess.run(["machinectl", "list"], capture_output=True, text=True).stdout


def nsp_ps(*args: str) -> dict[str, str]:
    """`nspawnctl ps` as {name: "state status"}."""
    out = subprocess.run(
        ["nspawnctl", "ps", *args, "--format", "{{.Names}}\t{{.State}}\t{{.Status}}"],
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("\t")[0]: " ".join(line.split("\t")[1:]) for line in out.splitlines() if line}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, want: str, timeout: float = 30) -> str:
    """GET / on the host's port until it holds ``want`` (the server may still be starting)."""
    deadline, got = time.monotonic() + timeout, ""
    while want not in got and time.monotonic() < deadline:
        got = subprocess.run(
            ["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/"], capture_output=True, text=True
        ).stdout
    return got


def pump(items: Iterable[Any]) -> queue.Queue[Any]:
    """The items of a blocking iterator on a queue, then None when it ends: the test waits on
    each with a timeout instead of hanging on a stream that never comes or never ends."""
    q: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            for item in items:
                q.put(item)
        finally:
            q.put(None)

    threading.Thread(target=run, daemon=True).start()
    return q


def until(q: queue.Queue[Any], want: bytes, seen: bytearray, timeout: float = 30) -> bool:
    """Read the queue's chunks into ``seen`` until it holds ``want``; False if the stream ended or
    the time ran out first."""
    deadline = time.monotonic() + timeout
    while want not in seen:
        try:
            item = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if item is None:
            return want in seen
        seen += item if isinstance(item, bytes) else item.encode()
    return True


def ended(q: queue.Queue[Any], seen: bytearray, timeout: float = 30) -> bool:
    """True once the stream ends (its None), the chunks before it added to ``seen``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if item is None:
            return True
        seen += item if isinstance(item, bytes) else item.encode()
    return False


def test_docker_kill_leaves_the_container_exited_137(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    name = nsp.name("kill")
    proc = docker(api, "run", "-d", "--name", name, pulled, "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    assert name in machines()
    proc = docker(api, "kill", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name
    assert docker(api, "wait", name).stdout.strip() == "137"
    ps = docker(api, "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}").stdout
    assert ps.startswith(f"{name} Exited (137)"), ps
    assert name not in docker(api, "ps", "--format", "{{.Names}}").stdout.split()
    got = docker(api, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
    assert got == ["exited", "137"]
    assert nsp_ps("-a")[name].startswith("exited Exited (137)"), nsp_ps("-a")
    assert name not in nsp_ps() and name not in machines()


def test_logs_follow_give_lines_as_they_come_and_end_with_the_container(
    api: dict[str, str], pulled: str, dpy: Any, nsp: CLI
) -> None:
    name = nsp.name("follow")
    proc = docker(api, "run", "-d", "--name", name, pulled, "sh", "-c", STEPS)
    assert proc.returncode == 0, proc.stderr
    cli = subprocess.Popen(["docker", "logs", "-f", name], env=api, stdout=subprocess.PIPE, text=True)
    try:
        lines = pump(iter(cli.stdout.readline, ""))  # type: ignore[union-attr]
        seen = bytearray()
        assert until(lines, b"one\n", seen), seen
        assert b"two" not in seen and cli.poll() is None  # follows: the container still runs
        assert docker(api, "exec", name, "touch", "/go1").returncode == 0
        assert until(lines, b"two\n", seen), seen  # the new line, while the container runs
        assert cli.poll() is None and name in nsp_ps()

        # docker-py: the stream has what came so far, then what comes, then ends with the container
        stream = pump(dpy.containers.get(name).logs(stream=True, follow=True))
        got = bytearray()
        assert until(stream, b"one\ntwo\n", got), got
        assert b"three" not in got
        assert docker(api, "exec", name, "touch", "/go2").returncode == 0
        assert until(stream, b"three\n", got), got
        assert ended(stream, got), "docker-py's log stream did not end when the container exited"
        assert bytes(got) == b"one\ntwo\nthree\n"

        assert until(lines, b"three\n", seen), seen
        assert ended(lines, seen), "docker logs -f did not end when the container exited"
        assert cli.wait(timeout=30) == 0
        assert seen.decode() == "one\ntwo\nthree\n"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert nsp_ps("-a")[name].startswith("exited Exited (0)")


def test_run_publish_serves_on_the_host_port(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    name, port = nsp.name("w"), free_port()
    script = SERVE.format(text="hello-publish", port=80)
    proc = docker(api, "run", "-d", "--name", name, "-p", f"{port}:80", pulled, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert "hello-publish" in fetch(port, "hello-publish")
    assert docker(api, "port", name, "80").stdout.splitlines()[0] == f"0.0.0.0:{port}"
    ps = subprocess.run(
        ["nspawnctl", "ps", "--filter", f"name={name}", "--format", "{{.Ports}}"],
        capture_output=True,
        text=True,
    ).stdout
    assert f":{port}->80/tcp" in ps, ps
    assert name in machines()
    ports = [line for line in nsp("generate", name).stdout.splitlines() if line.startswith("Publish=")]
    assert ports == [f"Publish={port}:80/tcp"], ports


@pytest.mark.serial
def test_run_publish_all_maps_the_exposed_port(api: dict[str, str], oci: Env, nsp: CLI) -> None:
    """The `app` image EXPOSEs 8080/tcp and 53/udp: -P maps both, httpd answers on 8080's."""
    ref = oci.ref("app")
    nsp.images.add(ref)
    proc = docker(api, "pull", ref)
    assert proc.returncode == 0, proc.stderr
    name = nsp.name("pall")
    script = SERVE.format(text="hello-exposed", port=8080)
    proc = docker(api, "run", "-d", "--name", name, "-P", "--entrypoint", "sh", ref, "-c", script)
    assert proc.returncode == 0, proc.stderr
    proc = docker(api, "port", name)
    assert proc.returncode == 0, proc.stderr
    mapped = {line.split(" -> ")[0]: line.split(" -> ")[1] for line in proc.stdout.splitlines()}
    assert {"8080/tcp", "53/udp"} <= set(mapped), proc.stdout
    port = int(mapped["8080/tcp"].rsplit(":", 1)[1])
    assert port > 0
    assert "hello-exposed" in fetch(port, "hello-exposed")
    assert name in nsp_ps() and name in machines()


def test_docker_py_stop_then_reload_is_exited_and_kill_137(
    api: dict[str, str], pulled: str, dpy: Any, nsp: CLI
) -> None:
    name = nsp.name("pystop")
    container = dpy.containers.run(pulled, ["sleep", "300"], detach=True, name=name)
    container.reload()
    assert container.status == "running"
    assert nsp_ps()[name].startswith("running") and name in machines()
    container.stop(timeout=1)
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["Running"] is False
    assert nsp_ps("-a")[name].startswith("exited Exited")
    assert name not in nsp_ps() and name not in machines()
    container.start()  # and docker-py's kill of the started container: SIGKILL's 137
    container.reload()
    assert container.status == "running" and name in machines()
    container.kill()
    assert container.wait(timeout=30)["StatusCode"] == 137
    container.reload()
    assert (container.status, container.attrs["State"]["ExitCode"]) == ("exited", 137)
    assert nsp_ps("-a")[name].startswith("exited Exited (137)"), nsp_ps("-a")


@pytest.mark.serial
def test_docker_py_images_pull_returns_the_tagged_image(
    api: dict[str, str], oci: Env, dpy: Any, nsp: CLI
) -> None:
    ref = oci.ref("app2")
    nsp.images.add(ref)
    repo, tag = ref.rsplit(":", 1)
    image = dpy.images.pull(repo, tag=tag)
    assert ref in image.tags, image.tags
    assert image.id.startswith("sha256:")
    assert dpy.images.get(ref).id == image.id
    refs = [r for i in nsp.json("images") for r in i["refs"]]
    assert ref in refs
    proc = docker(api, "run", "--rm", ref)
    assert (proc.returncode, proc.stdout) == (0, "app2\n"), proc.stderr
