"""The Docker API's lifecycle and resource endpoints (issue 15): top, stats, update, pause, rename,
events, networks, volumes, prune, system df and the containers/json filters, driven by the docker
CLI and docker-py, each result also checked through nspawnctl and machinectl."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, unit_show
from dockerapi import docker, dockerpy_client, wait_for

HOST_PORT = "18097"


def cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def nspawnctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nspawnctl", *args], capture_output=True, text=True, timeout=120)


def machines() -> str:
    return subprocess.run(["machinectl", "list"], capture_output=True, text=True).stdout


@dataclass(frozen=True)
class Dk:
    env: dict[str, str]  # the docker CLI's environment (DOCKER_HOST: the socket unit)
    image: str  # pulled through the API


@pytest.fixture(scope="module")
def dk(api: dict[str, str], pulled: str) -> Dk:
    return Dk(api, pulled)


@pytest.fixture(scope="module")
def box(dk: Dk) -> Iterator[dict[str, str]]:
    """One running container for the module (veth, a published port, a named volume, a label)."""
    name, vol = f"life-{uuid.uuid4().hex[:6]}", f"lifevol-{uuid.uuid4().hex[:6]}"
    proc = docker(
        dk.env,
        "run", "-d", "--name", name, "-l", "team=life", "-p", f"{HOST_PORT}:80", "-v", f"{vol}:/data",
        dk.image, "sh", "-c", "echo up; exec sleep 600",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: "up" in docker(dk.env, "logs", name).stdout)  # its payload runs
    yield {"name": name, "id": proc.stdout.strip(), "volume": vol}
    nspawnctl("rm", "-f", name)
    nspawnctl("volume", "rm", vol)


@pytest.fixture
def py() -> Iterator[Any]:
    with dockerpy_client() as client:
        yield client


def test_top_stats_port_and_inspect(dk: Dk, box: dict[str, str], py: Any) -> None:
    name = box["name"]
    proc = docker(dk.env, "top", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["UID", "PID"]
    assert "sleep 600" in proc.stdout
    top = py.containers.get(name).top()
    assert "PID" in top["Titles"] and any("sleep 600" in " ".join(p) for p in top["Processes"])
    proc = docker(dk.env, "top", name, "-o", "pid,comm")
    assert proc.returncode == 0 and proc.stdout.split()[:2] == ["PID", "COMMAND"], proc.stderr

    proc = docker(
        dk.env, "stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", name
    )
    assert proc.returncode == 0, proc.stderr
    shown, cpu, mem, pids = proc.stdout.strip().split("|")
    assert shown == name and cpu.endswith("%") and int(pids) >= 1
    assert not mem.startswith("0B") and "/" in mem, mem
    stats = py.containers.get(name).stats(stream=False)
    assert stats["memory_stats"]["usage"] > 0 and stats["memory_stats"]["limit"] > 0
    assert stats["cpu_stats"]["system_cpu_usage"] > stats["precpu_stats"]["system_cpu_usage"] > 0
    assert stats["cpu_stats"]["online_cpus"] >= 1 and stats["pids_stats"]["current"] >= 1
    assert "eth0" in stats["networks"]
    one = py.api.stats(name, stream=False, one_shot=True)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and one["memory_stats"]["usage"] > 0
    streamed = py.api.stats(name, stream=True, decode=True)
    first, second = next(streamed), next(streamed)
    streamed.close()  # the client hangs up mid-stream: the service goes on
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]

    proc = docker(dk.env, "port", name)
    assert proc.returncode == 0, proc.stderr
    assert f"80/tcp -> 0.0.0.0:{HOST_PORT}" in proc.stdout
    fmt = '{{.State.Status}} {{.Name}} {{index .Config.Labels "team"}}'
    proc = docker(dk.env, "inspect", "-f", fmt, name)
    assert proc.stdout.split() == ["running", f"/{name}", "life"], proc.stderr
    assert name in machines()


def test_update_memory_reaches_the_unit_and_the_definition(dk: Dk, box: dict[str, str], nsp: CLI) -> None:
    name = box["name"]
    proc = docker(dk.env, "update", "--memory", "96m", "--pids-limit", "77", name)
    assert proc.returncode == 0, proc.stderr
    assert docker(dk.env, "inspect", "-f", "{{.HostConfig.Memory}}", name).stdout.strip() == str(96 << 20)
    host_config = nsp.json("inspect", name)[0]["HostConfig"]
    assert (host_config["Memory"], host_config["PidsLimit"]) == (96 << 20, 77)
    assert unit_show(f"nspawnctl-{name}.service", "MemoryMax")["MemoryMax"] == str(96 << 20)
    generated = nsp("generate", name).stdout
    assert "TasksMax=77" in generated and ("MemoryMax=96M" in generated or "MemoryMax=100663296" in generated)
    proc = docker(dk.env, "update", "--blkio-weight", "300", name)
    assert proc.returncode != 0 and "BlkioWeight" in proc.stderr


@pytest.mark.serial
def test_pause_as_the_host_allows(dk: Dk, box: dict[str, str], nsp: CLI) -> None:
    name = box["name"]
    proc = docker(dk.env, "unpause", name)
    assert proc.returncode != 0 and f"container {name} is not paused" in proc.stderr
    proc = docker(dk.env, "pause", name)
    if not cgroup_v2():
        assert proc.returncode != 0
        assert f"cannot pause container {name}" in proc.stderr and "cgroup v2" in proc.stderr
        assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"
        return
    assert proc.returncode == 0, proc.stderr
    assert docker(dk.env, "inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "true"
    assert "(Paused)" in nsp("ps").stdout
    counts = "{{.ContainersPaused}} {{.ContainersRunning}}"
    paused, running = map(int, docker(dk.env, "info", "-f", counts).stdout.split())
    assert docker(dk.env, "unpause", name).returncode == 0
    assert list(map(int, docker(dk.env, "info", "-f", counts).stdout.split())) == [paused - 1, running + 1]
    assert paused >= 1
    assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"


def test_rename_and_ps_filters(dk: Dk, box: dict[str, str], nsp: CLI) -> None:
    old, new = nsp.name("lifeold"), nsp.name("lifenew")
    proc = docker(
        dk.env, "run", "--name", old, "-l", "team=life", "-l", "exited=three", dk.image, "sh", "-c", "exit 3"
    )
    assert proc.returncode == 3, proc.stderr
    cid = docker(dk.env, "inspect", "-f", "{{.Id}}", old).stdout.strip()

    def ps(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        out = docker(dk.env, "ps", "-a", "--format", "{{.Names}}", *args)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert ps("exited=3") == [old] or old in ps("exited=3")
    assert old not in ps("exited=0")
    assert set(ps("label=team=life")) >= {old, box["name"]} and ps("label=exited=three") == [old]
    assert old in ps("status=exited") and box["name"] not in ps("status=exited")
    assert box["name"] in ps("status=running") and old not in ps("status=running")
    assert old in ps(f"ancestor={dk.image}") and old in ps(f"id={cid[:10]}")
    assert ps(f"name=^/{old}$") == [old]
    assert old in ps(f"ancestor={dk.image}", "exited=3") and old not in ps(f"ancestor={dk.image}", "exited=4")
    bad = docker(dk.env, "ps", "--filter", "colour=red")
    assert bad.returncode != 0 and "colour" in bad.stderr

    proc = docker(dk.env, "rename", old, new)
    assert proc.returncode == 0, proc.stderr
    names = [c["Name"] for c in nsp.json("ps", "-a")]
    assert new in names and old not in names
    assert docker(dk.env, "inspect", "-f", "{{.Id}}", new).stdout.strip() == cid
    proc = docker(dk.env, "rename", box["name"], new + "x")
    assert proc.returncode != 0 and "while it runs" in proc.stderr  # machined knows it by its name
    assert box["name"] in machines()


def test_events_stream_create_start_die_destroy(dk: Dk, py: Any, nsp: CLI) -> None:
    name = nsp.name("lifeev")
    since = str(int(time.time()))
    reader = subprocess.Popen(
        ["docker", "events", "--since", since, "--filter", "label=lifeev", "--format", "{{json .}}"],
        env=dk.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cli_seen: list[dict[str, Any]] = []
    py_seen: list[dict[str, Any]] = []

    def read_cli() -> None:
        assert reader.stdout is not None
        for line in reader.stdout:
            cli_seen.append(json.loads(line))

    def read_py() -> None:  # docker-py, until the container's die
        events = py.events(decode=True, filters={"label": "lifeev"})
        for e in events:
            py_seen.append(e)
            if e.get("Action") == "die" and e["Actor"]["Attributes"].get("name") == name:
                events.close()  # the client hangs up: the service goes on
                return

    threads = [threading.Thread(target=f, daemon=True) for f in (read_cli, read_py)]
    for t in threads:
        t.start()
    warm = []
    try:
        # no past events are kept: a warm-up container tells when both readers are subscribed
        for i in range(8):
            warm.append(f"{name}-w{i}")
            proc = docker(dk.env, "create", "--name", warm[-1], "-l", "lifeev=warm", dk.image, "true")
            assert proc.returncode == 0, proc.stderr
            nsp.containers.add(warm[-1])
            if wait_for(
                lambda: all(any(e["Action"] == "create" for e in seen) for seen in (cli_seen, py_seen)), 3
            ):
                break
        proc = docker(dk.env, "run", "--name", name, "-l", "lifeev=1", dk.image, "sh", "-c", "exit 7")
        assert proc.returncode == 7, proc.stderr
        assert docker(dk.env, "rm", name).returncode == 0
        destroyed = wait_for(
            lambda: any(
                e["Action"] == "destroy" and e["Actor"]["Attributes"]["name"] == name for e in cli_seen
            ),
            30,
        )
        assert destroyed, f"{warm=} {cli_seen=} {py_seen=} {reader.poll()=} {threads[1].is_alive()=}"
    finally:
        reader.terminate()  # the client hangs up: the service goes on
        reader.wait(10)
    lines = [e for e in cli_seen if e["Actor"]["Attributes"]["name"] == name]
    actions = [e["Action"] for e in lines]
    assert actions[:1] == ["create"] and actions.index("start") < actions.index("die") < actions.index(
        "destroy"
    )
    die = next(e for e in lines if e["Action"] == "die")
    assert die["Type"] == "container" and die["Actor"]["Attributes"]["exitCode"] == "7"
    assert die["Actor"]["Attributes"]["lifeev"] == "1" and die["timeNano"] // 1_000_000_000 == die["time"]
    threads[1].join(30)
    mine = [e["Action"] for e in py_seen if e["Actor"]["Attributes"].get("name") == name]
    assert mine == ["create", "start", "die"]
    # a window that has passed ends at once, cleanly
    proc = docker(dk.env, "events", "--since", since, "--until", str(int(time.time()) - 1), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert docker(dk.env, "version").returncode == 0
    assert name not in [c["Name"] for c in nsp.json("ps", "-a")]


def test_networks_list_and_inspect(dk: Dk, box: dict[str, str], py: Any, nsp: CLI) -> None:
    zone = f"lz{uuid.uuid4().hex[:4]}"
    member = nsp.name("lifezone")
    nsp("run", "-d", "--network", f"zone:{zone}", "--name", member, dk.image, "sleep", "600")
    proc = docker(dk.env, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    for row in ("bridge bridge local", "host host local", "none null local", f"{zone} bridge local"):
        assert row in rows
    inspected = json.loads(docker(dk.env, "network", "inspect", zone).stdout)[0]
    mine = nsp.json("inspect", member)[0]["NetworkSettings"]
    ids = {c["Name"]: c for c in inspected["Containers"].values()}
    assert ids[member]["IPv4Address"].split("/")[0] == mine["IPAddress"]
    bridge = json.loads(docker(dk.env, "network", "inspect", "bridge").stdout)[0]
    assert box["name"] in [c["Name"] for c in bridge["Containers"].values()]
    assert {"bridge", "host", "none", zone} <= {n.name for n in py.networks.list()}
    proc = docker(dk.env, "network", "create", "--driver", "overlay", "lifenet")
    assert proc.returncode != 0 and "Driver" in proc.stderr  # created networks: test_networks.py
    assert docker(dk.env, "network", "inspect", "no-such-net").returncode != 0


def test_volumes_create_ls_inspect_rm_prune(dk: Dk, box: dict[str, str], py: Any, nsp: CLI) -> None:
    vol = f"lifev-{uuid.uuid4().hex[:6]}"
    proc = docker(dk.env, "volume", "create", "--label", "lifetest=1", vol)
    assert (proc.returncode, proc.stdout.strip()) == (0, vol), proc.stderr
    assert vol in docker(dk.env, "volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert vol in nsp("volume", "ls").stdout
    proc = docker(dk.env, "volume", "inspect", "-f", "{{.Driver}} {{.Labels}} {{.Mountpoint}}", vol)
    driver, labels, mountpoint = proc.stdout.split()
    assert (driver, labels) == ("local", "map[lifetest:1]") and Path(mountpoint).is_dir()
    assert docker(dk.env, "volume", "ls", "-q", "--filter", "label=lifetest=1").stdout.split() == [vol]
    assert docker(dk.env, "volume", "rm", vol).returncode == 0
    assert vol not in nsp("volume", "ls").stdout
    proc = docker(dk.env, "volume", "rm", box["volume"])  # the box binds it
    assert proc.returncode != 0 and "in use" in proc.stderr
    proc = docker(dk.env, "volume", "rm", "no-such-volume")
    assert proc.returncode != 0 and "no such volume" in proc.stderr

    made = py.volumes.create(name=vol + "py", labels={"lifetest": "1"})
    assert py.volumes.get(vol + "py").attrs["Labels"] == {"lifetest": "1"}
    assert vol + "py" in [v.name for v in py.volumes.list()]
    made.remove()
    assert vol + "py" not in nsp("volume", "ls").stdout

    for n in ("a", "b"):
        assert docker(dk.env, "volume", "create", "--label", "lifeprune=1", f"{vol}{n}").returncode == 0
    # named volumes are kept without -a (API >= 1.42)
    proc = docker(dk.env, "volume", "prune", "-f", "--filter", "label=lifeprune=1")
    assert proc.returncode == 0 and f"{vol}a" in nsp("volume", "ls").stdout, proc.stderr
    proc = docker(dk.env, "volume", "prune", "-f", "-a", "--filter", "label=lifeprune=1")
    assert proc.returncode == 0, proc.stderr
    listed = nsp("volume", "ls").stdout
    assert f"{vol}a" not in listed and f"{vol}b" not in listed and box["volume"] in listed


@pytest.mark.serial
def test_system_df_and_prunes(dk: Dk, box: dict[str, str], nsp: CLI) -> None:
    proc = docker(dk.env, "system", "df", "--format", "{{.Type}} {{.TotalCount}}")
    assert proc.returncode == 0, proc.stderr
    counts = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    assert int(counts["Images"]) >= 1 and int(counts["Containers"]) >= 1 and int(counts["Local Volumes"]) >= 1
    stopped = nsp.name("lifeprune")
    assert docker(dk.env, "create", "--name", stopped, dk.image, "true").returncode == 0
    proc = docker(dk.env, "container", "prune", "-f")
    assert proc.returncode == 0, proc.stderr
    names = [c["Name"] for c in nsp.json("ps", "-a")]
    assert stopped not in names and box["name"] in names
    assert docker(dk.env, "image", "prune", "-f").returncode == 0
    assert dk.image in [r for i in nsp.json("images") for r in i["refs"]]  # in use: kept
