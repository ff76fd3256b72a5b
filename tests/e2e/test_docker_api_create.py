"""containers/create with docker's further run options (issue 15): `docker run -d --cap-drop ...
--read-only --tmpfs ... -p CTRPORT -P --mount type=volume ... --ulimit ... --stop-signal ...` through
the API, checked from inside the container, from the host, by `docker port`/`inspect` and by
`nspawnctl inspect`/`generate` (the same .nspawn keys `nspawnctl run` writes)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import CLI
from dockerapi import curl, docker, wait_for

CAP_NET_RAW, CAP_SYS_TIME = 13, 25
SCRIPT = (
    "mkdir -p /t/www && echo hello-create > /t/www/index.html && httpd -p 80 -h /t/www; "
    "echo up; exec sleep 600"
)


def status(text: str, field: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(f"{field}:"))


@pytest.fixture(scope="module")
def box(api: dict[str, str], pulled: str) -> Iterator[dict[str, str]]:
    """One container with the options, serving HTTP on a free host port."""
    name, vol = f"cre-{uuid.uuid4().hex[:6]}", f"crevol-{uuid.uuid4().hex[:6]}"
    proc = docker(
        api,
        "run", "-d", "--name", name, "--cap-drop", "NET_RAW", "--cap-add", "SYS_TIME", "--read-only",
        "--tmpfs", "/t:size=2m", "-p", "80", "-P", "--mount", f"type=volume,src={vol},dst=/v",
        "--ulimit", "nofile=512:1024", "--stop-signal", "SIGINT", "--stop-timeout", "7",
        "--security-opt", "no-new-privileges", "--add-host", "db:192.0.2.7",
        pulled, "sh", "-c", SCRIPT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: "up" in docker(api, "logs", name).stdout)
    yield {"name": name, "volume": vol}
    subprocess.run(["nspawnctl", "rm", "-f", name], capture_output=True)
    subprocess.run(["nspawnctl", "volume", "rm", vol], capture_output=True)


def test_options_hold_inside_the_container(api: dict[str, str], box: dict[str, str]) -> None:
    name = box["name"]
    # the payload's own settings are read from its /proc/1 (exec's process is not the payload)
    script = (
        "grep -E '^(CapEff|NoNewPrivs):' /proc/1/status; grep 'open files' /proc/1/limits; touch /x 2>&1; "
        "echo rc=$?; grep -E ' /(t|v) ' /proc/mounts; touch /v/w && echo vol-ok; grep db /etc/hosts"
    )
    proc = docker(api, "exec", name, "sh", "-c", script)
    out = proc.stdout + proc.stderr
    caps = int(status(out, "CapEff"), 16)
    assert not caps & (1 << CAP_NET_RAW) and caps & (1 << CAP_SYS_TIME), out
    assert status(out, "NoNewPrivs") == "1"
    assert "Read-only file system" in out and "rc=1" in out, out
    tmpfs = next(line for line in out.splitlines() if " /t " in line)
    assert tmpfs.startswith("tmpfs ") and "size=2048k" in tmpfs, out
    assert next(line for line in out.splitlines() if "open files" in line).split()[3:5] == ["512", "1024"], (
        out
    )
    assert "vol-ok" in out and "192.0.2.7\tdb" in out, out


def test_free_port_answers_from_the_host(api: dict[str, str], box: dict[str, str]) -> None:
    name = box["name"]
    proc = docker(api, "port", name)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("80/tcp -> 0.0.0.0:"), proc.stdout  # -P adds no second
    port = int(lines[0].rsplit(":", 1)[1])
    assert port > 0
    deadline, got = time.monotonic() + 30, ""
    while "hello-create" not in got and time.monotonic() < deadline:  # until httpd listens
        got = subprocess.run(
            ["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/"], capture_output=True, text=True
        ).stdout
    assert "hello-create" in got


def test_inspect_and_generate_keep_the_options(api: dict[str, str], box: dict[str, str], nsp: CLI) -> None:
    name = box["name"]
    fmt = "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.Config.StopSignal}}"
    proc = docker(api, "inspect", "-f", fmt, name)
    assert proc.stdout.split() == ["true", "[CAP_NET_RAW]", "SIGINT"], proc.stdout + proc.stderr
    mine = nsp.json("inspect", name)[0]
    host = mine["HostConfig"]
    assert (
        host["ReadonlyRootfs"] and host["CapDrop"] == ["CAP_NET_RAW"] and host["CapAdd"] == ["CAP_SYS_TIME"]
    )
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}] and host["StopTimeout"] == 7
    assert mine["Config"]["StopSignal"] == "SIGINT"
    lines = nsp("generate", name).stdout.splitlines()
    for key in (
        "ReadOnly=yes", "TemporaryFileSystem=/t:size=2m", "DropCapability=CAP_NET_RAW",
        "Capability=CAP_SYS_TIME", "LimitNOFILE=512:1024", "KillSignal=SIGINT", "StopTimeout=7",
        "NoNewPrivileges=yes", "AddHost=db:192.0.2.7",
    ):  # fmt: skip
        assert key in lines, key
    assert any(line.startswith("Bind=") and f"/volumes/{box['volume']}:/v" in line for line in lines), lines
    assert box["volume"] in nsp("volume", "ls", "-q").stdout.split()


def test_refused_fields_leave_nothing(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    for host, field in (
        ({"CapDrop": ["NOT_A_CAP"]}, "HostConfig.CapDrop"),
        ({"VolumesFrom": ["x:z"]}, "HostConfig.VolumesFrom"),
    ):
        body = json.dumps({"Image": pulled, "HostConfig": host})
        code, doc = curl(
            "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
            "http://d/containers/create?name=cre-bad",
        )  # fmt: skip
        assert code == 400 and field in str(doc["message"]), doc
    assert subprocess.run(["nspawnctl", "inspect", "cre-bad"], capture_output=True).returncode != 0


def test_docker_py_create_with_mounts_and_healthcheck(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    """docker-py's own encoding (Mount objects, a healthcheck, privileged) reaches the definition."""
    import docker as dockerpy

    name, vol = f"crepy-{uuid.uuid4().hex[:6]}", f"crepyvol-{uuid.uuid4().hex[:6]}"
    client = dockerpy.DockerClient(base_url="unix:///run/nspawnctl/docker.sock")
    try:
        client.containers.create(
            pulled, ["sleep", "600"], name=name, privileged=True, init=True, shm_size="16m",
            mounts=[dockerpy.types.Mount("/v", vol, type="volume"),
                    dockerpy.types.Mount("/s", None, type="tmpfs", tmpfs_size=1 << 20)],
            healthcheck={"test": ["CMD-SHELL", "test -d /v"], "interval": 3_000_000_000, "retries": 4},
            ports={"81/tcp": None}, publish_all_ports=True, dns=["192.0.2.53"],
            sysctls={"net.ipv4.ip_forward": "1"},
        )  # fmt: skip
        lines = nsp("generate", name).stdout.splitlines()
        for key in (
            "Privileged=yes", "ProcessTwo=yes", "ShmSize=16777216", "TemporaryFileSystem=/s:size=1048576",
            "HealthInterval=3s", "HealthRetries=4", "DNS=192.0.2.53", "Sysctl=net.ipv4.ip_forward=1",
        ):  # fmt: skip
            assert key in lines, (key, lines)
        assert any(line.startswith("HealthCmd=") and "test -d /v" in line for line in lines), lines
        assert any(line.startswith("Bind=") and f"/volumes/{vol}:/v" in line for line in lines), lines
        ports = [line for line in lines if line.startswith("Publish=")]
        assert len(ports) == 1 and ports[0].rsplit(":", 1)[1] in ("81", "81/tcp"), ports  # -P adds none
    finally:
        client.close()
        subprocess.run(["nspawnctl", "rm", "-f", name], capture_output=True)
        subprocess.run(["nspawnctl", "volume", "rm", vol], capture_output=True)
