"""The Docker Engine API service (issue 15, first slice), driven by the real docker CLI (Debian's
docker-cli) and docker-py against the socket unit `nspawnctl system service enable` installs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, Env
from dockerapi import SERVICE, SOCKET, curl, docker, systemctl, wait_for


def test_socket_starts_the_service_which_exits_when_idle(api: dict[str, str]) -> None:
    assert systemctl("is-active", "nspawnctl-docker.socket") == "active"
    assert Path(SOCKET).is_socket() and oct(Path(SOCKET).stat().st_mode & 0o777) == "0o660"
    wait_for(lambda: systemctl("is-active", SERVICE) != "active", timeout=40)
    assert systemctl("is-active", SERVICE) != "active"
    proc = docker(api, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1.47", "linux"]
    assert systemctl("is-active", SERVICE) == "active"  # started by that first connection
    assert wait_for(lambda: systemctl("is-active", SERVICE) != "active", timeout=40), "did not exit idle"
    assert systemctl("is-active", "nspawnctl-docker.socket") == "active"  # and listens for the next


def test_docker_info_and_images(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    proc = docker(api, "info", "--format", "{{.Driver}} {{.LoggingDriver}} {{.OSType}}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["btrfs", "journald", "linux"]
    proc = docker(api, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert proc.returncode == 0, proc.stderr
    assert pulled in proc.stdout.split()
    refs = [r for i in nsp.json("images") for r in i["refs"]]
    assert pulled in refs  # the same store: nspawnctl sees what docker pulled


def test_pull_of_a_missing_image_fails_in_band(api: dict[str, str], oci: Env) -> None:
    proc = docker(api, "pull", oci.ref("no-such-image"))
    assert proc.returncode != 0
    assert "no-such-image" in proc.stderr or "not found" in proc.stderr.lower()


@pytest.mark.serial
@pytest.mark.surface  # h11 and the docker clients of Debian's packages
def test_docker_run_rm_prints_output_and_passes_the_exit_code(
    api: dict[str, str], pulled: str, nsp: CLI
) -> None:
    before = nsp("ps", "-a").stdout
    proc = docker(api, "run", "--rm", pulled, "echo", "hi")
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    proc = docker(api, "run", "--rm", pulled, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr and "err" not in proc.stdout
    assert len(nsp("ps", "-a").stdout.splitlines()) == len(before.splitlines())  # --rm: nothing left


def test_docker_run_detached_ps_logs_stop_rm(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    name = nsp.name("dk")
    proc = docker(api, "run", "-d", "--name", name, pulled, "sh", "-c", "echo started; exec sleep 300")
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    assert docker(api, "ps", "--format", "{{.Names}} {{.ID}}").stdout.split().count(name) == 1
    assert cid.startswith(docker(api, "ps", "--format", "{{.ID}}", "--filter", f"name={name}").stdout.strip())
    assert name in nsp("ps").stdout
    assert name in subprocess.run(["machinectl", "list"], capture_output=True, text=True).stdout
    assert wait_for(lambda: "started" in docker(api, "logs", name).stdout)
    assert docker(
        api, "inspect", "--format", "{{.State.Status}} {{.HostConfig.LogConfig.Type}}", name
    ).stdout.split() == [
        "running",
        "journald",
    ]
    proc = docker(api, "exec", name, "sh", "-c", "echo in-exec; echo exec-err >&2; exit 5")
    assert (proc.returncode, proc.stdout) == (5, "in-exec\n"), proc.stderr
    assert "exec-err" in proc.stderr
    import docker as dockerpy

    # closed at the end: an open (keep-alive) connection keeps the service from its idle exit
    client = dockerpy.DockerClient(base_url=f"unix://{SOCKET}")
    try:
        container = client.containers.get(name)
        code, (out, err) = container.exec_run(["sh", "-c", "echo o; echo e >&2; exit 6"], demux=True)
    finally:
        client.close()
    assert (code, out, err) == (6, b"o\n", b"e\n")
    proc = docker(api, "stop", "-t", "1", name)
    assert proc.returncode == 0, proc.stderr
    assert docker(api, "inspect", "--format", "{{.State.Running}}", cid[:12]).stdout.strip() == "false"
    assert name in docker(api, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    proc = docker(api, "rm", "-f", name)
    assert proc.returncode == 0, proc.stderr
    assert name not in nsp("ps", "-a").stdout


@pytest.mark.serial
def test_docker_py_run_with_remove_returns_the_output(
    api: dict[str, str], pulled: str, nsp: CLI, request: pytest.FixtureRequest
) -> None:
    import docker as dockerpy

    client = dockerpy.DockerClient(base_url=f"unix://{SOCKET}")
    request.addfinalizer(client.close)  # an open connection keeps the service from its idle exit
    before = nsp("ps", "-a").stdout
    assert client.containers.run(pulled, ["echo", "hi-from-py"], remove=True) == b"hi-from-py\n"
    assert len(nsp("ps", "-a").stdout.splitlines()) == len(before.splitlines())
    with pytest.raises(dockerpy.errors.ContainerError) as e:
        client.containers.run(pulled, ["sh", "-c", "echo bad >&2; exit 4"], remove=True)
    assert e.value.exit_status == 4


@pytest.mark.serial
def test_docker_rmi(api: dict[str, str], oci: Env, nsp: CLI) -> None:
    ref = oci.ref("docker")
    assert docker(api, "pull", ref).returncode == 0
    proc = docker(api, "rmi", ref)
    assert proc.returncode == 0, proc.stderr
    assert f"Untagged: {ref}" in proc.stdout
    assert ref not in docker(api, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()


@pytest.mark.surface  # h11 and the docker clients of Debian's packages
def test_bad_requests_get_docker_errors_and_the_service_goes_on(api: dict[str, str]) -> None:
    assert docker(api, "version").returncode == 0
    pid = systemctl("show", "-P", "MainPID", SERVICE)
    code, body = curl(
        "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"Image": ', "http://d/containers/create"
    )
    assert code == 400 and "malformed JSON" in str(body["message"])
    code, body = curl("http://d/v1.44/no/such/endpoint")
    assert (code, body) == (404, {"message": "page not found"})
    code, body = curl("http://d/containers/no-such-container/json")
    assert code == 404 and "No such container" in str(body["message"])
    code, body = curl(
        "-X", "POST", "-d", '{"Image": "x", "HostConfig": {"CapAdd": ["NOPE"]}}', "http://d/containers/create"
    )
    assert code == 400 and "HostConfig.CapAdd" in str(body["message"])
    proc = docker(api, "rm", "no-such-container")
    assert proc.returncode != 0 and "No such container" in proc.stderr
    assert docker(api, "version").returncode == 0
    assert systemctl("show", "-P", "MainPID", SERVICE) == pid  # the same process served it all


def test_a_blank_label_key_is_refused_and_nothing_is_made(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    """Review 15 #5: a container with a ``""`` label key could never be loaded again."""
    body = json.dumps({"Image": pulled, "Labels": {"": "x"}})
    url = "http://d/containers/create?name=blanklabel"
    code, reply = curl("-X", "POST", "-H", "Content-Type: application/json", "-d", body, url)
    assert code == 400 and "invalid label" in str(reply["message"])
    assert "blanklabel" not in nsp("ps", "-a").stdout


def test_dial_stdio_carries_the_api(api: dict[str, str]) -> None:
    proc = subprocess.run(
        ["nspawnctl", "system", "dial-stdio"],
        input=b"GET /v1.44/_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"HTTP/1.1 200") and proc.stdout.endswith(b"\r\n\r\nOK")
    assert b"api-version: 1.47" in proc.stdout.lower()


def test_hung_up_waits_and_follows_do_not_keep_the_service_and_containers_outlive_it(
    api: dict[str, str], pulled: str, nsp: CLI
) -> None:
    name = nsp.name("dk-hup")
    nsp("run", "-d", "--name", name, pulled, "sh", "-c", "echo up; exec sleep 300")
    for method, path in (
        ("POST", f"/containers/{name}/wait"),
        ("GET", f"/containers/{name}/logs?follow=1&stdout=1"),
    ):
        proc = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "2",
                "--unix-socket",
                SOCKET,
                "-X",
                method,
                f"http://d{path}",
            ],
            capture_output=True,
        )
        assert proc.returncode == 28  # curl's timeout: the reply was still under way when it hung up
    assert docker(api, "version").returncode == 0
    assert wait_for(lambda: systemctl("is-active", SERVICE) != "active", timeout=40), "hang-ups kept it busy"
    assert name in nsp("ps").stdout  # the container is a unit of its own
    assert docker(api, "ps", "--format", "{{.Names}}").stdout.split().count(name) == 1
