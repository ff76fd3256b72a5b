"""Container names with ``_`` (docker's ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``; compose and docker-py use
them), whose machine name (machined's: a host name) has ``-`` for ``_`` (names.py): every command
and endpoint finds the container by the name as given, by its machine name and by ID; ps, inspect,
events, the API and the docker CLI show the name as given, machinectl the machine name; a second
name of one machine name is a conflict (exit 125, the API's 409); rename, generate and apply."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, IDLE
from dockerapi import docker, dockerpy_client, wait_for


def machines() -> str:
    return subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def ctr(cli: CLI, busybox: str) -> Iterator[dict[str, str]]:
    """One running container named ``my_app_<hex>`` by the CLI (machine ``my-app-<hex>``)."""
    tag = uuid.uuid4().hex[:8]
    name, machine = f"my_app_{tag}", f"my-app-{tag}"
    cli.containers.add(name)
    since = time.time()
    out = cli("run", "-d", "--name", name, busybox, "sh", "-c", f"echo hello-$HOSTNAME; {IDLE}")
    assert out.stdout == f"{name}\n"  # as given
    cli.wait_logs(name, "hello-")
    yield {"name": name, "machine": machine, "tag": tag, "since": f"{since:.3f}"}


def test_the_cli_finds_and_shows_the_name_as_given(cli: CLI, ctr: dict[str, str]) -> None:
    name, machine = ctr["name"], ctr["machine"]
    # machined and the unit know the machine name; the payload's host name is it too
    assert machine in machines() and name not in machines()
    assert f"hello-{machine}" in cli("logs", name).stdout
    assert cli("exec", name, "echo", "in-exec").stdout == "in-exec\n"
    (info,) = cli.json("inspect", name)
    assert info["Name"] == name and info["State"]["Running"]
    cid = info["Id"]
    for ref in (machine, cid, cid[:12]):  # the machine name and the ID find it as well
        assert cli("inspect", "-f", "{{.Name}}", ref).stdout == f"{name}\n"
    rows = cli("ps", "--format", "{{.Names}} {{.State}}").stdout.splitlines()
    assert f"{name} running" in rows
    assert machine not in cli("ps").stdout
    assert cli("ps", "-q", "--filter", f"name=^{name}$").stdout == f"{name}\n"
    assert cli("top", name).returncode == 0
    # generate: the file's name is the container's name, so no Name= line
    text = cli("generate", name).stdout
    assert text.startswith(f"# {name}.nspawn: nspawnctl apply {name}.nspawn") and "\nName=" not in text


def test_a_second_name_of_one_machine_name_is_a_conflict(cli: CLI, ctr: dict[str, str], busybox: str) -> None:
    name, machine = ctr["name"], ctr["machine"]
    for other in (machine, name):
        proc = cli("create", "--name", other, busybox, "true", check=False)
        assert proc.returncode == 125, proc.stderr
        assert proc.stderr.startswith("nspawnctl: error: the name") and "hint: " in proc.stderr
        assert "already in use" in proc.stderr
    proc = cli("create", "--name", machine, busybox, "true", check=False)
    assert f"container '{name}' has its machine name '{machine}'" in proc.stderr
    proc = cli("create", "--name", f"{name}_", busybox, "true", check=False)  # no host name
    assert proc.returncode == 2 and "is no host name" in proc.stderr and "'_' becomes '-'" in proc.stderr
    assert [r for r in cli("ps", "-a", "-q").stdout.split() if ctr["tag"] in r] == [name]  # nothing made


def test_events_name_the_container_as_given(cli: CLI, ctr: dict[str, str]) -> None:
    lines = cli("events", "--since", ctr["since"], "--until", f"{time.time():.3f}", "--json").stdout
    names = {json.loads(x)["Actor"]["Attributes"]["name"] for x in lines.splitlines()}
    assert ctr["name"] in names and ctr["machine"] not in names, lines


def test_rename_to_and_from_underscore_names(cli: CLI, ctr: dict[str, str]) -> None:
    name, machine, tag = ctr["name"], ctr["machine"], ctr["tag"]
    # the same machine name: only the name changes, even while it runs
    cli("rename", name, machine)
    assert cli("inspect", "-f", "{{.Name}}", machine).stdout == f"{machine}\n"
    assert cli("inspect", name, check=False).returncode != 0
    cli("rename", machine, name)
    assert cli("inspect", "-f", "{{.Name}}", machine).stdout == f"{name}\n"
    # another machine name: stopped first (machined and the unit are named after it)
    assert cli("rename", name, f"moved_{tag}", check=False).returncode == 125
    cli("stop", "-t", "1", name)
    cli.containers.add(f"moved_{tag}")
    cli("rename", name, f"moved_{tag}")
    cli("start", f"moved_{tag}")
    assert f"moved-{tag}" in machines() and machine not in machines()
    assert cli("exec", f"moved_{tag}", "hostname").stdout == f"moved-{tag}\n"
    cli("stop", "-t", "1", f"moved_{tag}")
    cli("rename", f"moved_{tag}", name)
    assert cli("inspect", "-f", "{{.Name}}", name).stdout == f"{name}\n"


def test_generate_then_apply_round_trips_the_name(cli: CLI, ctr: dict[str, str], tmp_path: Path) -> None:
    name, machine = ctr["name"], ctr["machine"]
    text = cli("generate", name).stdout
    cli("rm", "-f", name)
    assert cli("ps", "-a", "-q", "--filter", f"name={ctr['tag']}").stdout == ""
    (tmp_path / f"{name}.nspawn").write_text(text)
    out = cli("apply", str(tmp_path / f"{name}.nspawn"))
    assert f"{name} created" in out.stdout, out.stdout
    assert cli("inspect", "-f", "{{.Name}} {{.State.Status}}", name).stdout == f"{name} running\n"
    assert machine in machines()
    assert cli("generate", name).stdout == text  # the same container again
    # a file of another name of that machine is refused, naming the holder
    (tmp_path / f"{machine}.nspawn").write_text(text)
    proc = cli("apply", str(tmp_path / f"{machine}.nspawn"), check=False)
    assert proc.returncode != 0 and f"container '{name}' has its machine name" in proc.stderr
    out = cli("down", str(tmp_path / f"{machine}.nspawn"))
    assert "no such container" in out.stdout + out.stderr
    assert cli("inspect", name, check=False).returncode == 0  # a-b's file does not remove a_b
    cli("down", str(tmp_path / f"{name}.nspawn"))
    assert cli("inspect", name, check=False).returncode != 0


# -- the Docker API: docker-py and the docker CLI ---------------------------------------------
@pytest.fixture(scope="module")
def py(api: dict[str, str]) -> Iterator[Any]:
    with dockerpy_client() as client:
        yield client


def test_docker_py_names_with_underscores(py: Any, api: dict[str, str], cli: CLI, busybox: str) -> None:
    import docker as dockerpy

    tag = uuid.uuid4().hex[:8]
    name, machine = f"dockerpytest_{tag}", f"dockerpytest-{tag}"
    cli.containers.add(name)
    since = int(time.time())
    c = py.containers.run(
        busybox, ["sh", "-c", "echo up; exec sleep 600"], name=name, detach=True, labels={"names": tag}
    )
    assert c.name == name
    assert wait_for(lambda: b"up" in c.logs())
    got = py.containers.get(name)
    assert got.id == c.id and got.attrs["Name"] == f"/{name}"
    assert py.containers.get(machine).id == c.id
    (listed,) = py.containers.list(filters={"name": name})
    assert listed.id == c.id and py.api.containers(filters={"name": name})[0]["Names"] == [f"/{name}"]
    code, out = c.exec_run("echo in-exec")
    assert (code, out) == (0, b"in-exec\n")
    assert machine in machines()
    assert f"{name}\n" in cli("ps", "--format", "{{.Names}}").stdout
    # the conflict: another name of that machine name is a 409, nothing made
    with pytest.raises(dockerpy.errors.APIError) as e:
        py.containers.create(busybox, "true", name=machine)
    assert e.value.status_code == 409 and "has its machine name" in str(e.value)
    with pytest.raises(dockerpy.errors.APIError) as e:
        py.containers.create(busybox, "true", name=f"{name}_")
    assert e.value.status_code == 400 and "no host name" in str(e.value)
    # the docker CLI (skipped where the distribution has none)
    if docker(api, "version").returncode == 0:
        rows = docker(api, "ps", "--format", "{{.Names}}").stdout.split()
        assert name in rows and machine not in rows
        assert docker(api, "inspect", "-f", "{{.Name}}", name).stdout == f"/{name}\n"
    # rename (docker-py's test_rename_container: stopped first) and rm by the new name
    c.stop(timeout=1)
    # events: the name as given, and a label filter finds the container by it (from the journal)
    until = int(time.time()) + 1
    seen = py.api.events(since=since, until=until, filters={"label": f"names={tag}"}, decode=True)
    actions = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in seen]
    assert ("start", name) in actions and ("die", name) in actions, actions
    c.rename(f"hong_meiling_{tag}")
    cli.containers.add(f"hong_meiling_{tag}")
    assert py.containers.get(f"hong_meiling_{tag}").attrs["Name"] == f"/hong_meiling_{tag}"
    py.api.remove_container(f"hong_meiling_{tag}")
    with pytest.raises(dockerpy.errors.NotFound):
        py.containers.get(c.id)
