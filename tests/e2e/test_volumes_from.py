"""docker's ``--volumes-from CONTAINER[:ro|:rw]`` and the API's ``HostConfig.VolumesFrom`` (issue 14):
the source's volumes and bind mounts at the same paths, copied at create into the new container's
own Bind= lines; a shared anonymous volume stays while either container binds it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

VOLUMES = Path("/var/lib/nspawnctl/volumes")
SOCKET = "/run/nspawnctl/docker.sock"


def volumes(nsp: CLI) -> set[str]:
    return set(nsp("volume", "ls", "-q").stdout.split())


@pytest.fixture(scope="module")
def source(cli: CLI, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stopped container with a named volume, an anonymous one and a read-only bind mount,
    each holding a file it wrote (the bind's written from the host)."""
    named = f"vf{uuid.uuid4().hex[:8]}"
    host_dir = tmp_path_factory.mktemp("vf-bind")
    (host_dir / "b").write_text("bind\n")
    before = volumes(cli)
    name = cli.name("vfsrc")
    cli(
        "run", "--name", name, "-v", f"{named}:/n", "-v", "/anon", "-v", f"{host_dir}:/h:ro", busybox,
        "sh", "-c", "echo named > /n/f && echo anon > /anon/g",
    )  # fmt: skip
    (anon,) = volumes(cli) - before - {named}
    yield {"name": name, "named": named, "anon": anon, "host_dir": host_dir}
    cli.cleanup()
    for v in (named, anon):
        cli("volume", "rm", "-f", v, check=False)


@pytest.mark.serial
def test_volumes_from_sees_the_files_and_ro_refuses_writes(
    cli: CLI, busybox: str, source: dict[str, Any]
) -> None:
    src = source["name"]
    out = cli(
        "run", "--rm", "--volumes-from", src, busybox, "sh", "-c", "cat /n/f /anon/g /h/b; echo x > /n/new"
    )
    assert out.stdout == "named\nanon\nbind\n"
    assert (VOLUMES / source["named"] / "new").read_text() == "x\n"
    # the --rm container's removal leaves the anonymous volume its source still binds
    assert source["anon"] in volumes(cli)
    proc = cli(
        "run", "--rm", "--volumes-from", f"{src}:ro", busybox, "sh", "-c", "echo y > /anon/z", check=False
    )
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    # the source's read-only bind stays read-only under :rw (docker's rule)
    proc = cli("run", "--rm", "--volumes-from", f"{src}:rw", busybox, "touch", "/h/c", check=False)
    assert proc.returncode != 0 and not (source["host_dir"] / "c").exists()


@pytest.mark.serial
def test_mounts_are_the_containers_own_an_explicit_v_wins_and_sharing_holds(
    cli: CLI, busybox: str, source: dict[str, Any], tmp_path: Path
) -> None:
    src = source["name"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("explicit\n")
    name = cli.name("vfdst")
    cli(
        "create",
        "--name",
        name,
        "--volumes-from",
        src,
        "-v",
        f"{other}:/n",
        busybox,
        "cat",
        "/n/f",
        "/anon/g",
    )
    info = cli.json("inspect", name)[0]
    assert info["HostConfig"]["VolumesFrom"] == [src]
    mounts = sorted(info["Config"]["Volumes"])
    anon_path = str(VOLUMES / source["anon"])
    assert any(m.startswith(f"{other}:/n") for m in mounts), mounts
    assert any(m.startswith(f"{anon_path}:/anon") for m in mounts), mounts
    (bind,) = [m for m in mounts if m.startswith(f"{source['host_dir']}:/h")]
    assert "ro" in bind.split(":")[2].split(","), bind
    generated = cli("generate", name).stdout
    assert f"BindReadOnly={source['host_dir']}:/h" in generated
    assert f"Bind={anon_path}:/anon" in generated and f"VolumesFrom={src}" in generated
    # the source's removal (with -v) does not matter: the mounts are this container's own
    cli("rm", "-v", src)
    assert source["anon"] in volumes(cli)
    refused = cli("volume", "rm", source["anon"], check=False)
    assert refused.returncode != 0 and name in refused.stderr
    cli("start", name)
    assert cli("wait", name).stdout.strip() == "0"
    assert cli("logs", name).stdout == "explicit\nanon\n"
    cli("rm", "-v", name)
    assert source["anon"] not in volumes(cli)


@pytest.mark.serial
def test_errors(cli: CLI, busybox: str) -> None:
    before = set(cli("ps", "-a", "-q").stdout.split())
    proc = cli("run", "--rm", "--volumes-from", "no-such-ctr", busybox, "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith("nspawnctl: error: --volumes-from: no such container: no-such-ctr")
    assert "hint: " in proc.stderr
    proc = cli("create", "--volumes-from", "x:z", busybox, "true", check=False)
    assert proc.returncode in (2, 125) and "nspawnctl: error: invalid --volumes-from mode 'z'" in proc.stderr
    assert "hint: " in proc.stderr
    assert set(cli("ps", "-a", "-q").stdout.split()) == before


def test_docker_py_volumes_from(api: dict[str, str], pulled: str, cli: CLI) -> None:
    """docker-py's own test_create_container_with_volumes_from, plus a file seen through a volume
    (Config.Volumes: an anonymous one) and the 404 of an unknown source."""
    import docker as dockerpy

    client = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
    try:
        names = [cli.name("vfpy0"), cli.name("vfpy1")]
        for n in names:
            res = client.create_container(
                pulled, ["sh", "-c", f"echo {n} > /d-{n}/f"], name=n, volumes=[f"/d-{n}"]
            )
            client.start(res["Id"])
            assert client.wait(res["Id"])["StatusCode"] == 0
        res = client.create_container(
            pulled,
            ["cat", *(f"/d-{n}/f" for n in names)],
            host_config=client.create_host_config(volumes_from=names, network_mode="none"),
        )
        cli.containers.add(res["Id"][:12])
        client.start(res["Id"])
        assert client.wait(res["Id"])["StatusCode"] == 0
        assert client.logs(res["Id"]) == "".join(f"{n}\n" for n in names).encode()
        info = client.inspect_container(res["Id"])
        assert len(info["HostConfig"]["VolumesFrom"]) == len(names)
        assert sorted(m["Destination"] for m in info["Mounts"]) == sorted(f"/d-{n}" for n in names)
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.create_container(
                pulled, ["true"], host_config=client.create_host_config(volumes_from=["nope"])
            )
        assert e.value.status_code == 404 and "no such container" in str(e.value)
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.create_container(
                pulled, ["true"], host_config=client.create_host_config(volumes_from=["a:z"])
            )
        assert e.value.status_code == 400 and "HostConfig.VolumesFrom" in str(e.value)
        for cid in (res["Id"], *names):
            client.remove_container(cid, v=True)
    finally:
        client.close()
