"""Create fields the API used to refuse, and their run flags (issues 14, 15): CpuShares
(--cpu-shares, CPUWeight=), MemorySwap (--memory-swap, MemorySwapMax=), MemorySwappiness (discarded
with dockerd's warning), CgroupnsMode private, Isolation default, MacAddress (--mac-address: the
container's host0), VolumeDriver local and Mounts[].VolumeOptions (NoCopy, Labels; Subpath: in
test_volume_subpath.py). Checked through docker-py and the CLI, on the unit, in the cgroup (cgroup
v2 hosts), inside the container, in inspect and in ``generate``."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, unit_show
from dockerapi import docker, wait_for

SOCKET = "/run/nspawnctl/docker.sock"
VOLUMES = Path("/var/lib/nspawnctl/volumes")
MAC = "02:42:ac:11:00:0a"
MiB = 1 << 20
ROOT_CONTROLLERS = Path("/sys/fs/cgroup/cgroup.controllers")
# a cgroup v2 host with the cpu controller (the test machine's own hybrid hierarchy binds cpu and
# memory to v1, so its unified test host has neither: the unit's properties are checked there)
CPU_V2 = ROOT_CONTROLLERS.exists() and "cpu" in ROOT_CONTROLLERS.read_text().split()


def cgroup_file(name: str, file: str) -> str | None:
    """The unit's cgroup file on a cgroup v2 host (None where the controller's file is absent)."""
    path = Path(f"/sys/fs/cgroup/machine.slice/nspawnctl-{name}.service/{file}")
    return path.read_text().strip() if path.exists() else None


@pytest.fixture(scope="module")
def client(api: dict[str, str]) -> Iterator[Any]:
    import docker as dockerpy

    c = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def seeded(busybox_dir: Path, tmp_path_factory: pytest.TempPathFactory, cli: CLI) -> Iterator[str]:
    """busybox with a /data holding a seed file (what a new volume there gets, unless NoCopy)."""
    root = tmp_path_factory.mktemp("seeded") / "root"
    shutil.copytree(busybox_dir, root, symlinks=True)
    (root / "data").mkdir()
    (root / "data" / "seed").write_text("seeded\n")
    ref = f"e2e/seeded-{uuid.uuid4().hex[:8]}:latest"
    cli("import", str(root), ref)
    cli.images.add(ref)
    yield ref


@pytest.fixture(scope="module")
def vols(cli: CLI) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    cli.cleanup()  # the containers first: a volume in use stays
    for v in made:
        cli("volume", "rm", "-f", v, check=False)


@pytest.fixture(scope="module")
def api_box(client: Any, seeded: str, cli: CLI) -> Iterator[dict[str, Any]]:
    """docker-py's create_container with every field of this module, started."""
    name = cli.name("cf")
    ctr = client.create_container(
        seeded, ["sh", "-c", "cat /sys/class/net/host0/address; echo up; exec sleep 600"], name=name,
        mac_address=MAC,
        host_config=client.create_host_config(
            cpu_shares=512, mem_limit="700M", memswap_limit="1G", mem_swappiness=40, cgroupns="private",
            isolation="default", volume_driver="local",
        ),
    )  # fmt: skip
    client.start(ctr)
    assert wait_for(lambda: b"up" in client.logs(ctr))
    yield {"name": name, "id": ctr["Id"], "warnings": ctr["Warnings"]}


def test_api_create_fields_reach_the_unit_the_container_and_inspect(
    client: Any, api_box: dict[str, Any], cli: CLI
) -> None:
    name = api_box["name"]
    assert api_box["warnings"] == [
        "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
        "Memory swappiness discarded."
    ]
    host = client.inspect_container(api_box["id"])["HostConfig"]
    assert (host["CpuShares"], host["Memory"], host["MemorySwap"]) == (512, 700 * MiB, 1 << 30)
    assert (host["CgroupnsMode"], host["Isolation"], host["VolumeDriver"]) == ("private", "default", "local")
    assert "MemorySwappiness" in host and host["MemorySwappiness"] is None  # dockerd's on cgroup v2
    assert client.inspect_container(api_box["id"])["NetworkSettings"]["MacAddress"] == MAC
    assert client.logs(api_box["id"]).decode().splitlines()[0] == MAC  # host0 inside
    unit = f"nspawnctl-{name}.service"
    props = unit_show(unit, "CPUWeight", "MemorySwapMax")
    assert props == {"CPUWeight": "59", "MemorySwapMax": str((1 << 30) - 700 * MiB)}
    if CPU_V2:
        assert cgroup_file(name, "cpu.weight") == "59"
        swap = cgroup_file(name, "memory.swap.max")
        assert swap in (None, str((1 << 30) - 700 * MiB))  # None: the kernel accounts no swap
    # the CLI's inspect and the definition say the same
    mine = cli.json("inspect", name)[0]["HostConfig"]
    assert (mine["CpuShares"], mine["MemorySwap"], mine["Isolation"]) == (512, 1 << 30, "default")
    generated = cli("generate", name).stdout
    for line in ("CPUShares=512", f"MemorySwap={1 << 30}", "Isolation=default", f"MacAddress={MAC}"):
        assert line in generated, generated


def test_api_update_cpu_shares(client: Any, api_box: dict[str, Any]) -> None:
    client.update_container(api_box["id"], cpu_shares=3)
    assert client.inspect_container(api_box["id"])["HostConfig"]["CpuShares"] == 3
    assert unit_show(f"nspawnctl-{api_box['name']}.service", "CPUWeight") == {"CPUWeight": "2"}
    if CPU_V2:
        assert cgroup_file(api_box["name"], "cpu.weight") == "2"


def test_docker_cli_mac_address(api: dict[str, str], seeded: str) -> None:
    # the docker CLI (API 1.44+) sends it in NetworkingConfig.EndpointsConfig
    proc = docker(api, "run", "--rm", "--mac-address", MAC, seeded, "cat", "/sys/class/net/host0/address")
    assert proc.returncode == 0 and proc.stdout.strip() == MAC, proc.stderr


@pytest.mark.serial
def test_api_refusals_name_the_field(client: Any, seeded: str, cli: CLI) -> None:
    import docker as dockerpy

    for host_config, field in (
        (client.create_host_config(cgroupns="host"), "HostConfig.CgroupnsMode"),
        (client.create_host_config(isolation="hyperv"), "HostConfig.Isolation"),
        (client.create_host_config(cpu_shares=1), "HostConfig.CpuShares"),
        (client.create_host_config(mem_limit="1G", memswap_limit="700M"), "HostConfig.MemorySwap"),
    ):
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.create_container(seeded, ["true"], host_config=host_config)
        assert e.value.status_code == 400 and field in str(e.value)
    before = set(cli("ps", "-a", "-q").stdout.split())
    # a driver is kept as dockerd keeps it, but it cannot make a volume
    with pytest.raises(dockerpy.errors.APIError) as e:
        client.create_container(seeded, ["true"], volumes=["/v"], host_config=client.create_host_config(
            volume_driver="foo", binds=[f"v{uuid.uuid4().hex[:8]}:/v"]))  # fmt: skip
    assert "'foo' is not available" in str(e.value)
    assert set(cli("ps", "-a", "-q").stdout.split()) == before  # nothing half-made


def test_cli_flags(cli: CLI, seeded: str) -> None:
    name = cli.name("cfc")
    cli(
        "run", "-d", "--name", name, "--cpu-shares", "2048", "--memory", "64M", "--memory-swap", "-1",
        "--mac-address", MAC.upper(), "--isolation", "default", "--cgroupns", "private",
        seeded, "sleep", "600",
    )  # fmt: skip
    host = cli.json("inspect", name)[0]["HostConfig"]
    assert (host["CpuShares"], host["MemorySwap"], host["CgroupnsMode"]) == (2048, -1, "private")
    props = unit_show(f"nspawnctl-{name}.service", "CPUWeight", "MemorySwapMax")
    assert props == {"CPUWeight": "174", "MemorySwapMax": "infinity"}
    assert cli("exec", name, "cat", "/sys/class/net/host0/address").stdout.strip() == MAC
    cli("update", "--cpu-shares", "1024", name)
    assert unit_show(f"nspawnctl-{name}.service", "CPUWeight") == {"CPUWeight": "100"}
    generated = cli("generate", name).stdout
    assert "CPUShares=1024" in generated and "MemorySwap=-1" in generated and f"MacAddress={MAC}" in generated
    if CPU_V2:
        assert cgroup_file(name, "cpu.weight") == "100"
    for args, flag in (
        (["--cpu-shares", "1"], "--cpu-shares"),
        (["--memory-swap", "1G"], "--memory-swap"),  # without --memory
        (["--memory", "1G", "--memory-swap", "512M"], "--memory-swap"),
        (["--cgroupns", "host"], "--cgroupns"),
        (["--mac-address", "01:00:5e:00:00:01"], "--mac-address"),
        (["--network", "host", "--mac-address", MAC], "--mac-address"),
    ):
        proc = cli("run", "--rm", *args, seeded, "true", check=False)
        assert proc.returncode != 0 and flag in proc.stderr and "hint:" in proc.stderr, (args, proc.stderr)


def test_volume_options(client: Any, cli: CLI, seeded: str, vols: list[str]) -> None:
    import docker as dockerpy

    # NoCopy: the new volume stays empty; without it, it gets the image's /data
    copied, empty = f"v{uuid.uuid4().hex[:8]}", f"v{uuid.uuid4().hex[:8]}"
    vols += [copied, empty]
    out = cli("run", "--rm", "--mount", f"type=volume,src={copied},dst=/data", seeded, "ls", "/data").stdout
    assert out == "seed\n" and (VOLUMES / copied / "seed").exists()
    mount_text = f"type=volume,src={empty},dst=/data,volume-nocopy,volume-label=team=cf"
    assert cli("run", "--rm", "--mount", mount_text, seeded, "ls", "/data").stdout == ""
    assert list((VOLUMES / empty).iterdir()) == []
    assert json.loads(cli("volume", "inspect", empty).stdout)[0]["Labels"] == {"team": "cf"}
    # docker-py's NoCopy + Labels at the image's /data
    nocopy = f"v{uuid.uuid4().hex[:8]}"
    vols.append(nocopy)
    mount = dockerpy.types.Mount(
        "/data",
        nocopy,
        no_copy=True,
        labels={"by": "api"},
        driver_config=dockerpy.types.DriverConfig("local"),
    )
    ctr = client.create_container(
        seeded, ["ls", "/data"], host_config=client.create_host_config(mounts=[mount])
    )
    cli.containers.add(ctr["Id"][:12])
    assert list((VOLUMES / nocopy).iterdir()) == []
    info = client.inspect_container(ctr)
    (m,) = [m for m in info["Mounts"] if m["Destination"] == "/data"]
    assert (m["Type"], m["Name"], m["RW"]) == ("volume", nocopy, True)
    assert json.loads(cli("volume", "inspect", nocopy).stdout)[0]["Labels"] == {"by": "api"}
    client.remove_container(ctr)
    # Subpath: tests/e2e/test_volume_subpath.py
