"""The Docker API's lifecycle endpoints as docker-py's own tests use them (issue 15, second pass):
prune's report, update with a restart policy, wait on an AutoRemove container, top's columns,
attach with ``logs=1``; each outcome also checked through nspawnctl."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CLI, unit_show
from dockerapi import SOCKET, docker, wait_for


def nspawnctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nspawnctl", *args], capture_output=True, text=True, timeout=120)


def names() -> list[str]:
    return nspawnctl("ps", "-a", "--format", "{{.Names}}").stdout.split()


@pytest.fixture(scope="module")
def image(api: dict[str, str], pulled: str) -> str:
    return pulled


@pytest.fixture(scope="module")
def low(image: str) -> Iterator[Any]:
    """docker-py's APIClient (what its own integration tests drive); every container it made
    is removed at the end."""
    import docker as dockerpy

    client = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
    made: list[str] = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    gone = set(names())
    nspawnctl("rm", "-f", *[c for c in made if c in gone])  # one command for all
    client.close()  # an open connection keeps the service from its idle exit


def create(low: Any, image: str, command: Any, **kw: Any) -> str:
    name = f"l2-{uuid.uuid4().hex[:6]}"
    cid: str = low.create_container(image, command, name=name, **kw)["Id"]
    low.made.append(name)
    return cid


@pytest.mark.serial
def test_prune_lists_the_containers_removed_and_the_space(low: Any, image: str) -> None:
    done = create(low, image, ["sh", "-c", "head -c 100000 /dev/zero > /data.bin"])
    running = create(low, image, ["sleep", "600"])
    low.start(done)
    low.start(running)
    assert low.wait(done)["StatusCode"] == 0
    result = low.prune_containers()
    assert done in result["ContainersDeleted"]
    assert running not in result["ContainersDeleted"]
    assert result["SpaceReclaimed"] >= 100000  # the file it wrote, at least
    left = names()
    assert low.inspect_container(running)["Name"].lstrip("/") in left
    assert all(not n.startswith(done[:12]) for n in left)


def test_update_with_docker_pys_restart_policy_form(low: Any, image: str, nsp: CLI) -> None:
    cid = create(
        low,
        image,
        ["sleep", "600"],
        host_config=low.create_host_config(restart_policy={"Name": "always", "MaximumRetryCount": 0}),
    )
    low.start(cid)
    answer = low.update_container(cid, restart_policy={"Name": "on-failure", "MaximumRetryCount": 42})
    assert any("next start" in w for w in answer["Warnings"])  # systemd keeps a running unit's Restart=
    policy = low.inspect_container(cid)["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 42}
    name = low.inspect_container(cid)["Name"].lstrip("/")
    assert "Restart=on-failure:42" in nsp("generate", name).stdout
    assert (
        json.loads(nsp("inspect", name).stdout)[0]["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 42
    )


def test_on_failure_restarts_at_most_the_retry_count(api: dict[str, str], image: str, nsp: CLI) -> None:
    """docker run --restart on-failure:1 of a failing command: it runs twice, then stays exited."""
    name = f"l2-{uuid.uuid4().hex[:6]}"
    proc = docker(
        api, "run", "-d", "--name", name, "--restart", "on-failure:1", image, "sh", "-c", "echo ran; exit 3"
    )
    try:
        assert proc.returncode == 0, proc.stderr

        def settled() -> bool:
            state = json.loads(docker(api, "inspect", name).stdout)[0]["State"]
            return state["Status"] == "exited" and docker(api, "logs", name).stdout.count("ran") >= 2

        assert wait_for(settled, timeout=60)
        state = json.loads(docker(api, "inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 3
        assert docker(api, "logs", name).stdout.split() == ["ran", "ran"]  # the first run and one restart
        assert "Restart=on-failure:1" in nsp("generate", name).stdout
    finally:
        nspawnctl("rm", "-f", name)


def test_wait_on_an_auto_remove_container_reports_its_exit(low: Any, image: str, api: dict[str, str]) -> None:
    import docker as dockerpy

    client = dockerpy.DockerClient(base_url=f"unix://{SOCKET}")
    try:
        with pytest.raises(dockerpy.errors.ContainerError) as e:
            client.containers.run(image, 'sh -c ">&2 echo error && sleep 2 && exit 3"', auto_remove=True)
        assert e.value.exit_status == 3
    finally:
        client.close()
    # the docker CLI: run -d --rm, then wait (the container is gone when wait answers)
    proc = docker(api, "run", "-d", "--rm", image, "sh", "-c", "sleep 2; exit 4")
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    proc = docker(api, "wait", cid)
    assert proc.stdout.strip() == "4", proc.stderr
    assert wait_for(lambda: all(not n.startswith(cid[:12]) for n in names()))


def test_a_wait_given_up_lets_go_of_the_unit(low: Any, image: str, api: dict[str, str], nsp: CLI) -> None:
    """The service's wait holds the unit (RefUnit, for the exit code of an AutoRemove container);
    a client hanging up must release it, or the next start finds the old transient unit."""
    cid = create(low, image, ["sleep", "600"])
    low.start(cid)
    name = low.inspect_container(cid)["Name"].lstrip("/")
    unit = json.loads(nsp("inspect", name).stdout)[0]["Unit"]
    waiting = subprocess.Popen(["docker", "wait", cid], env=api, stdout=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: unit_show(unit, "Refs").get("Refs", "") != "")
    finally:
        waiting.kill()
        waiting.wait()
    assert wait_for(lambda: unit_show(unit, "Refs").get("Refs", "") == "")
    low.stop(cid, timeout=1)
    low.start(cid)  # a new transient unit of the same name
    assert low.inspect_container(cid)["State"]["Running"] is True


def test_top_shows_ps_ef_columns_with_the_whole_command(low: Any, image: str) -> None:
    cid = create(low, image, ["sleep", "60"])
    low.start(cid)
    top = low.top(cid)
    assert top["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(top["Processes"]) == 1
    assert "sleep 60" in top["Processes"][0]
    assert top["Processes"][0][-1] == "sleep 60"


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        out.append((kind, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def test_attach_with_logs_replays_then_streams(low: Any, image: str, nsp: CLI) -> None:
    # a stopped container: its output so far, multiplexed, then the end
    cid = create(low, image, ["sh", "-c", "echo hello; echo oops >&2"])
    low.start(cid)
    low.wait(cid)
    assert low.attach(cid, stream=False, logs=True) == b"hello\noops\n"
    assert low.attach(cid, stream=False, logs=True, stderr=False) == b"hello\n"
    # attached with logs=1 before the start (docker-py's attach_socket): the run's output whole
    cid = create(low, image, ["printf", "hi there"])
    sock = low.attach_socket(cid, {"stdout": 1, "stream": 1, "logs": 1})
    low.start(cid)
    got = b""
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(30)
    while chunk := raw.recv(65536):
        got += chunk
    sock.close()
    assert frames(got) == [(1, b"hi there")]
    # a running container (followed from the journal): its output so far, then what comes after,
    # each line once across the seam
    go = "while [ ! -e /tmp/go ]; do sleep 0.1; done"
    cid = create(low, image, ["sh", "-c", f"echo one; {go}; echo two; sleep 600"])
    low.start(cid)
    name = low.inspect_container(cid)["Name"].lstrip("/")
    nsp.wait_logs(name, "one")
    got = _attached_until(low, cid, name, b"two\n")
    assert frames(got) == [(1, b"one\n"), (1, b"two\n")]
    # a TTY container (its terminal held by the service): logs=1 no longer refused, the live part
    cid = create(low, image, ["sh", "-c", f"{go}; echo hello; sleep 600"], tty=True)
    low.start(cid)
    name = low.inspect_container(cid)["Name"].lstrip("/")
    got = _attached_until(low, cid, name, b"hello\r\n")
    assert got == b"hello\r\n"
    assert json.loads(nsp("inspect", name).stdout)[0]["State"]["Running"] is True


def _attached_until(low: Any, cid: str, name: str, last: bytes) -> bytes:
    """Attach with logs=1 and stream=1, let the payload go on (/tmp/go), read up to ``last``."""
    sock = low.attach_socket(cid, {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1})
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(30)
    assert nspawnctl("exec", name, "touch", "/tmp/go").returncode == 0
    got = b""
    while not got.endswith(last):
        chunk = raw.recv(65536)
        assert chunk, got
        got += chunk
    sock.close()
    return got
