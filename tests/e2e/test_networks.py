"""User-defined networks (``nspawnctl network ...``, the API's /networks): a declared zone exists
without members; its members reach each other by name and by --network-alias over TCP; inspect
shows them with their addresses; rm is refused while one runs; connect/disconnect change a stopped
container's definition; a --subnet network's bridge gets that subnet; docker-py's models flow."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import CLI, IDLE
from dockerapi import docker, dockerpy_client

HTTPD = (
    "trap 'exit 0' TERM; mkdir -p /www && echo hello from $0 > /www/index.html; httpd -f -p 80 -h /www & wait"
)


def fetch(nsp: CLI, network: str, image: str, url: str, timeout: float = 20) -> str:
    """A one-shot member of ``network`` fetching ``url`` (retried until the server listens)."""
    got = ""
    deadline = time.monotonic() + timeout
    while "hello from" not in got and time.monotonic() < deadline:
        proc = nsp(
            "run", "--rm", "--network", network, image, "wget", "-q", "-T", "3", "-O-", url, check=False
        )
        got = proc.stdout
    return got


def host0_address(nsp: CLI, name: str) -> str:
    return nsp("exec", name, "ip", "-o", "-4", "addr", "show", "dev", "host0").stdout.split()[3]


def test_network_lifecycle_by_name_and_alias(nsp: CLI, busybox: str) -> None:
    net = f"n{uuid.uuid4().hex[:8]}"
    proc = nsp("network", "create", "--label", "team=a", net)
    net_id = proc.stdout.strip()
    assert len(net_id) == 64 and int(net_id, 16) >= 0
    try:
        rows = [line.split() for line in nsp("network", "ls").stdout.splitlines()]
        assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert [net_id[:12], net, "bridge", "local"] in rows
        again = nsp("network", "create", net, check=False)
        assert again.returncode == 125 and f"network with name {net} already exists" in again.stderr
        assert "hint:" in again.stderr
        # no bridge yet: it comes with the first member
        assert subprocess.run(["ip", "link", "show", f"vz-{net}"], capture_output=True).returncode != 0

        server = nsp.name("srv")
        nsp("run", "-d", "--name", server, "--network", net, "--network-alias", "web-alias", busybox,
            "sh", "-c", HTTPD, server)  # fmt: skip
        assert f"hello from {server}" in fetch(nsp, net, busybox, f"http://{server}/index.html")
        assert f"hello from {server}" in fetch(nsp, net, busybox, "http://web-alias/index.html")
        addr = host0_address(nsp, server)
        inspected = nsp("network", "inspect", net, check=True)
        (info,) = json.loads(inspected.stdout)
        assert info["Id"] == net_id and info["Driver"] == "bridge" and info["Labels"] == {"team": "a"}
        server_id = nsp.json("inspect", server)[0]["Id"]
        assert info["Containers"][server_id]["Name"] == server
        assert info["Containers"][server_id]["IPv4Address"] == addr
        assert info["IPAM"]["Config"][0]["Subnet"].split(".")[:3] == addr.split(".")[:3]
        generated = nsp("generate", server).stdout.splitlines()
        assert f"Network=zone:{net}" in generated and "NetworkAlias=web-alias" in generated

        refused = nsp("network", "rm", net, check=False)
        assert refused.returncode == 125 and "has active endpoints" in refused.stderr
        assert net in nsp("network", "ls").stdout
        nsp("rm", "-f", server)
        assert nsp("network", "rm", net).stdout.strip() == net
        assert net not in nsp("network", "ls").stdout
        gone = nsp("run", "--rm", "--network", net, busybox, "true", check=False)
        assert gone.returncode == 125 and f"network {net} not found" in gone.stderr
        assert nsp("network", "inspect", net, check=False).returncode == 125
    finally:
        nsp("network", "rm", "-f", net, check=False)


@pytest.mark.serial
def test_connect_disconnect_subnet_and_prune(nsp: CLI, busybox: str) -> None:
    net, lan = f"c{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"
    nsp("network", "create", net)
    nsp("network", "create", "--subnet", "10.231.7.0/24", lan)
    try:
        name = nsp.name("conn")
        nsp("create", "--name", name, busybox, "sh", "-c", IDLE)  # stopped below: at once
        nsp("network", "connect", "--alias", "db", net, name)
        generated = nsp("generate", name).stdout.splitlines()
        assert f"Network=zone:{net}" in generated and "NetworkAlias=db" in generated
        nsp("start", name)
        running = nsp("network", "disconnect", net, name, check=False)
        assert running.returncode == 125 and "is running" in running.stderr
        assert name in [
            c["Name"] for c in json.loads(nsp("network", "inspect", net).stdout)[0]["Containers"].values()
        ]
        nsp("stop", name)
        nsp("network", "disconnect", net, name)
        assert "Network=none" in nsp("generate", name).stdout.splitlines()

        # the subnet's networkd file gives the bridge 10.231.7.1; members lease from the rest
        member = nsp.name("sub")
        nsp("run", "-d", "--name", member, "--network", lan, busybox, "sleep", "600")
        assert host0_address(nsp, member).startswith("10.231.7.")
        route = nsp("exec", member, "ip", "route").stdout
        assert "default via 10.231.7.1" in route
        nsp("rm", "-f", member)

        # --internal is refused (nothing here could confine the zone's traffic), leaving nothing
        iso = nsp("network", "create", "--internal", "--subnet", "10.231.8.0/24", f"i{net}", check=False)
        assert iso.returncode == 2 and "internal networks are not supported" in iso.stderr
        assert f"i{net}" not in nsp("network", "ls").stdout
        assert not Path("/etc/systemd/network/70-nspawnctl-vz-i" + net + ".network").exists()

        orphan = Path(f"/etc/systemd/network/70-nspawnctl-vz-o{net[1:]}.network")  # a killed create's
        orphan.write_text(f"[Match]\nName=vz-o{net[1:]}\n")
        proc = subprocess.run(
            ["nspawnctl", "network", "prune", "-f"], capture_output=True, text=True, check=True, timeout=60
        )
        assert proc.stdout.startswith("Deleted Networks:") and {net, lan} <= set(proc.stdout.split())
        assert net not in nsp("network", "ls").stdout
        assert (
            not orphan.exists() and not Path(f"/etc/systemd/network/70-nspawnctl-vz-{lan}.network").exists()
        )
    finally:
        nsp("network", "rm", "-f", net, lan, check=False)


@pytest.fixture(scope="module")
def dpy_image(api: dict[str, str], pulled: str) -> str:
    return pulled


def test_docker_py_models_flow(dpy_image: str, nsp: CLI) -> None:
    import docker as dockerpy

    net_name = f"p{uuid.uuid4().hex[:8]}"
    with dockerpy_client() as client:
        net = client.networks.create(net_name, labels={"from": "docker-py"})
        try:
            assert len(net.id) == 64 and net_name in [n.name for n in client.networks.list()]
            config = {
                net_name: client.api.create_endpoint_config(aliases=["hello"], driver_opt={"key1": "a"})
            }
            server = client.containers.run(
                dpy_image, ["sh", "-c", HTTPD, "srv"], network=net_name, networking_config=config, detach=True
            )
            nsp.containers.add(server.name)
            attrs = server.attrs["NetworkSettings"]["Networks"]
            assert list(attrs) == [net_name]
            assert attrs[net_name]["Aliases"] == ["hello"] and attrs[net_name]["DriverOpts"] == {"key1": "a"}
            assert attrs[net_name]["NetworkID"] == net.id
            out = b""
            deadline = time.monotonic() + 20
            while b"hello from srv" not in out and time.monotonic() < deadline:
                try:
                    out = client.containers.run(
                        dpy_image, ["wget", "-q", "-T", "3", "-O-", "http://hello/index.html"],
                        network=net_name, remove=True,
                    )  # fmt: skip
                except dockerpy.errors.ContainerError:
                    out = b""
            assert b"hello from srv" in out
            server.reload()
            address = server.attrs["NetworkSettings"]["Networks"][net_name]["IPAddress"]
            net.reload()
            assert net.attrs["Containers"][server.id]["IPv4Address"].split("/")[0] == address
            assert [c.id for c in net.containers] == [server.id]
            with pytest.raises(dockerpy.errors.APIError) as refused:
                net.remove()
            assert refused.value.status_code == 403 and "active endpoints" in str(refused.value)
            with pytest.raises(dockerpy.errors.APIError) as dup:
                client.networks.create(net_name)
            assert dup.value.status_code == 409
            two = {**config, "bar": client.api.create_endpoint_config(aliases=["x"])}
            with pytest.raises(dockerpy.errors.APIError) as many:
                client.containers.create(dpy_image, "true", network=net_name, networking_config=two)
            assert many.value.status_code == 400
            with pytest.raises(dockerpy.errors.NotFound):
                client.containers.create(dpy_image, "true", network="no-such-net")
            server.remove(force=True)
            net.remove()
            assert client.networks.list(names=[net_name]) == []
            assert net_name not in nsp("network", "ls").stdout
        finally:
            nsp("network", "rm", "-f", net_name, check=False)


def test_docker_cli_network_verbs(api: dict[str, str], nsp: CLI) -> None:
    name = f"d{uuid.uuid4().hex[:8]}"
    proc = docker(api, "network", "create", "--subnet", "10.231.9.0/24", "--label", "k=v", name)
    assert proc.returncode == 0, proc.stderr
    try:
        assert len(proc.stdout.strip()) == 64
        fmt = "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Labels}}"
        shown = docker(api, "network", "inspect", "-f", fmt, name)
        assert shown.stdout.split() == [name, "bridge", "10.231.9.0/24", "10.231.9.1", "map[k:v]"], (
            shown.stderr
        )
        assert (
            f"{name} bridge local"
            in docker(api, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout
        )
        assert name in nsp("network", "ls").stdout
        again = docker(api, "network", "create", name)
        assert again.returncode != 0 and "already exists" in again.stderr
        internal = docker(api, "network", "create", "--internal", f"i{name}")
        assert internal.returncode != 0 and "Internal: internal networks are not supported" in internal.stderr
        assert docker(api, "network", "rm", name).returncode == 0
        assert name not in nsp("network", "ls").stdout
    finally:
        nsp("network", "rm", "-f", name, check=False)
