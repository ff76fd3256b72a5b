"""containers/create and inspect as dockerd does them for docker-py's own tests (issue 15):
``Config.Volumes`` makes anonymous volumes (docker-py ``volumes=``, ``docker run -v /path``) that
``DELETE ?v=1`` and AutoRemove remove, ``Config.StopTimeout`` in inspect, ``HostConfig.Tmpfs`` shown
as given, ``Env`` entries without ``=`` (dockerd: shown, and the variable unset). Checked through
docker-py, the docker CLI, inside the container, and by ``nspawnctl volume ls``/``generate``."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI
from dockerapi import docker, wait_for

SOCKET = "/run/nspawnctl/docker.sock"
SCRIPT = "env; grep ' /tmp1 ' /proc/mounts; echo up; exec sleep 600"


def volumes(nsp: CLI) -> set[str]:
    return set(nsp("volume", "ls", "-q").stdout.split())


@pytest.fixture(scope="module")
def client(api: dict[str, str]) -> Iterator[Any]:
    import docker as dockerpy

    c = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
    yield c
    c.close()  # an open (keep-alive) connection keeps the service from its idle exit


@pytest.fixture(scope="module")
def box(client: Any, pulled: str, cli: CLI) -> Iterator[dict[str, Any]]:
    """docker-py's create_container with volumes=, environment= with a None, stop_timeout and tmpfs."""
    before = volumes(cli)
    name = cli.name("cr2")
    ctr = client.create_container(
        pulled, ["sh", "-c", SCRIPT], name=name, volumes=["/vol1"], stop_timeout=5,
        environment={"Foo": None, "Other": "one", "Blank": ""},
        host_config=client.create_host_config(tmpfs={"/tmp1": "size=3M"}),
    )  # fmt: skip
    client.start(ctr)
    assert wait_for(lambda: b"up" in client.logs(ctr))
    yield {"name": name, "id": ctr["Id"], "new": volumes(cli) - before}


@pytest.mark.serial
def test_inspect_shows_what_was_asked(client: Any, box: dict[str, Any]) -> None:
    info = client.inspect_container(box["id"])
    config = info["Config"]
    assert config["Volumes"] == {"/vol1": {}}
    assert config["StopTimeout"] == 5
    assert {"Foo", "Other=one", "Blank="} <= set(config["Env"])
    assert info["HostConfig"]["Tmpfs"] == {"/tmp1": "size=3M"}
    (mount,) = [m for m in info["Mounts"] if m["Destination"] == "/vol1"]
    assert mount["Type"] == "volume" and mount["RW"] and {mount["Name"]} == box["new"], info["Mounts"]
    assert not any(b.endswith(":/vol1") for b in info["HostConfig"]["Binds"] or [])


@pytest.mark.serial
def test_the_payload_sees_the_volume_tmpfs_and_environment(
    client: Any, box: dict[str, Any], nsp: CLI
) -> None:
    out = client.logs(box["id"]).decode()
    lines = out.splitlines()
    assert "Other=one" in lines and "Blank=" in lines, out
    assert not any(line.split("=", 1)[0] == "Foo" for line in lines), out  # dockerd: unset
    assert "size=3072k" in next(line for line in lines if " /tmp1 " in line), out
    # docker-py's archive tests put files under /vol1 (they 404'd when the volume was dropped)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("f.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    assert client.put_archive(box["id"], "/vol1", data.getvalue())
    proc = nsp("exec", box["name"], "cat", "/vol1/f.txt")
    assert proc.stdout == "hello", proc.stderr
    text = nsp("generate", box["name"]).stdout
    (vol,) = box["new"]
    for key in ("UnsetEnvironment=Foo", "Environment=Other=one", "TemporaryFileSystem=/tmp1:size=3M",
                "StopTimeout=5", f"/{vol}:/vol1"):  # fmt: skip
        assert key in text, text
    assert "\nEnvironment=Foo" not in text, text


@pytest.mark.serial
def test_remove_with_v_removes_the_anonymous_volume(client: Any, box: dict[str, Any], nsp: CLI) -> None:
    client.remove_container(box["id"], v=True, force=True)
    assert box["name"] not in nsp("ps", "-a").stdout
    assert not box["new"] & volumes(nsp)


@pytest.mark.serial
def test_docker_cli_volumes(api: dict[str, str], pulled: str, nsp: CLI) -> None:
    """`docker run --rm -v /path` removes its anonymous volume; `docker rm` without -v keeps it, and
    a -v path a bind covers makes none."""
    before = volumes(nsp)
    proc = docker(api, "run", "--rm", "-v", "/vol1", pulled, "sh", "-c", "echo hi > /vol1/x && cat /vol1/x")
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    assert volumes(nsp) == before
    name = nsp.name("cr2cli")
    proc = docker(
        api, "create", "--name", name, "-v", "/vol2", "-v", "/srv:/vol3", "-v", "/vol3", pulled, "true"
    )
    assert proc.returncode == 0, proc.stderr
    made = volumes(nsp) - before
    assert len(made) == 1, made
    fmt = "{{json .Config.Volumes}} {{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}"
    out = docker(api, "inspect", "-f", fmt, name).stdout.split()
    assert out[0] == '{"/vol2":{}}' and sorted(out[1:]) == ["bind:/vol3", "volume:/vol2"], out
    assert docker(api, "rm", name).returncode == 0
    assert made <= volumes(nsp)  # kept, as docker's rm without -v
    for v in made:
        nsp("volume", "rm", v)


def test_archive_of_a_stopped_container_reaches_its_volume(client: Any, pulled: str, nsp: CLI) -> None:
    """docker-py's ArchiveTest: put_archive into /vol1 before the start, get_archive after the exit."""
    name = nsp.name("cr2arc")
    ctr = client.create_container(pulled, ["sh", "-c", "cat /vol1/in.txt; echo out > /vol1/o.txt"], name=name,
                                  volumes=["/vol1"])  # fmt: skip
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("in.txt")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"song-in"))
    assert client.put_archive(ctr, "/vol1", data.getvalue())
    assert nsp("exec", name, "true", check=False).returncode != 0  # stopped: the copy went to disk
    client.start(ctr)
    assert client.wait(ctr)["StatusCode"] == 0
    assert client.logs(ctr) == b"song-in"  # as written: no line break added
    stream, stat = client.get_archive(ctr, "/vol1/o.txt")
    assert stat["name"] == "o.txt" and stat["size"] == 4
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile("o.txt")
        assert member is not None and member.read() == b"out\n"
    # the mount point itself reads the volume under the mount point's name (review16 #6)
    stream, stat = client.get_archive(ctr, "/vol1")
    assert stat["name"] == "vol1"
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert {"vol1", "vol1/in.txt", "vol1/o.txt"} <= set(tar.getnames())
    client.remove_container(ctr, v=True)


def test_cp_from_a_stopped_containers_mount_points(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    """A directory bind's mount point and a file bind read as the running container sees them."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "in-bind.txt").write_text("bound\n")
    (tmp_path / "host.conf").write_text("from-the-host\n")
    name = nsp.name("cpmnt")
    nsp("create", "--name", name, "-v", f"{tmp_path / 'dir'}:/data",
        "-v", f"{tmp_path / 'host.conf'}:/etc/app.conf", busybox, "true")  # fmt: skip
    nsp("cp", f"{name}:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "in-bind.txt").read_text() == "bound\n"
    tar = nsp("cp", f"{name}:/etc/app.conf", "-").stdout.encode()
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        member = tf.extractfile("app.conf")
        assert member is not None and member.read() == b"from-the-host\n"
    (tmp_path / "new.conf").write_text("replaced\n")
    nsp("cp", str(tmp_path / "new.conf"), f"{name}:/etc/app.conf")
    assert (tmp_path / "host.conf").read_text() == "replaced\n"  # the bind's file, as when running
