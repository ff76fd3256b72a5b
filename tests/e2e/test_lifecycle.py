"""Lifecycle edges: a start while a stop is under way, run losing the race with rmi, --rm
containers whose definition vanished with /run (a reboot), names held by what nspawnctl did not
make, and system prune."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, Env, tar_of
from demo import make_busybox_root
from test_errors import assert_error

from nspawnctl.cli.output import human_size

POOL = Path("/var/lib/machines")


@pytest.mark.serial
def test_start_while_stop_is_under_way_waits_for_it_then_starts(nsp: CLI, busybox: str) -> None:
    name = nsp.name("stopping")
    nsp("run", "-d", "--name", name, busybox, "sleep", "600")  # PID 1 ignores SIGTERM: stop waits -t
    stop = subprocess.Popen(["nspawnctl", "stop", "-t", "4", name], stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        assert stop.poll() is None, "stop ended before start could race it"
        began = time.monotonic()
        nsp("start", name)
        assert time.monotonic() - began > 1.5, "start did not wait for the stop"
        assert stop.wait(30) == 0
    finally:
        if stop.poll() is None:
            stop.kill()
    time.sleep(2)
    status = nsp.json("inspect", name)[0]["State"]
    assert status["Status"] == "running", status  # was: Exited (137), killed by the stop


@pytest.mark.serial
def test_run_that_loses_the_race_with_rmi_says_the_image_was_removed(nsp: CLI, workdir: Path) -> None:
    root = make_busybox_root(workdir / "race-root", marker="race")
    ref = "e2e/race:1"
    nsp.images.add(ref)
    nsp("import", str(tar_of(root, workdir / "race.tar")), ref)
    name = nsp.name("race")
    before = sorted(p.name for p in POOL.iterdir())
    # the run resolves the image, then waits 3 s on entering its first flock (the pool lock)
    run = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=flock", "-e",
         "inject=flock:delay_enter=3000000:when=1", "nspawnctl", "run", "--rm", "--name", name, ref, "true"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    nsp("rmi", ref)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 125, err
    first = err.splitlines()[0]
    assert first.startswith("nspawnctl: error: ") and "was removed" in first, err
    assert "btrfs" not in err and "subvolume" not in err, err
    assert sorted(p.name for p in POOL.iterdir()) == before
    assert name not in nsp("ps", "-a").stdout


def test_rm_container_whose_definition_vanished_with_run_is_removed_by_the_next_command(
    nsp: CLI, busybox: str
) -> None:
    """A reboot before a created --rm container ever ran takes its definition (in /run) along."""
    name = nsp.name("reboot")
    nsp("create", "--rm", "--name", name, busybox, "true")
    Path(f"/run/systemd/nspawn/{name}.nspawn").unlink()  # what a reboot does
    assert name not in nsp("ps", "-a").stdout
    nsp("create", "--name", name, busybox, "true")  # the name is free again: the orphan is gone
    assert name in nsp("ps", "-a").stdout
    nsp("rm", name)
    assert not (POOL / name).exists()
    machines = subprocess.run(["machinectl", "list-images", "--no-legend"], capture_output=True, text=True)
    assert name not in machines.stdout


def test_a_container_holding_nested_subvolumes_is_removed_and_blocks_nothing(nsp: CLI, busybox: str) -> None:
    """What a payload (or its booted systemd's tmpfiles) may make: subvolumes inside its root.
    rm takes them along; before, the half-removed root then failed every later create."""
    name = nsp.name("nested")
    nsp("create", "--name", name, busybox, "true")
    inner = POOL / name / "srv" / "sub"
    inner.parent.mkdir(exist_ok=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(inner)], check=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(inner / "deeper")], check=True)
    nsp("rm", name)
    assert not (POOL / name).exists() and not list(POOL.glob(f".#nspawnctl-{name}*"))
    other = nsp.name("after")
    assert nsp("run", "--rm", "--name", other, busybox, "echo", "ok").stdout == "ok\n"


def test_a_name_taken_by_a_machine_image_of_someone_else_says_so(nsp: CLI, busybox: str) -> None:
    name = nsp.name("foreign")
    (POOL / name).mkdir()
    try:
        proc = nsp("create", "--name", name, busybox, "true", check=False)
        assert_error(proc, "not make")
        assert "machinectl remove" in proc.stderr
        assert_error(nsp("rm", name, check=False), "no such container")
    finally:
        (POOL / name).rmdir()


@pytest.mark.serial
def test_system_prune_removes_stopped_containers_and_reports_reclaimed_space(
    nsp: CLI, busybox: str, workdir: Path
) -> None:
    stopped, running = nsp.name("pruned"), nsp.name("kept")
    nsp("create", "--name", stopped, busybox, "true")
    nsp("run", "-d", "--name", running, busybox, "sleep", "600")
    root = make_busybox_root(workdir / "prune-root", marker="prune-me")
    image = nsp("import", str(tar_of(root, workdir / "prune.tar"))).stdout.split()[-1]  # dangling
    assert_error(nsp("system", "prune", check=False), "without confirmation")
    out = nsp("system", "prune", "-f").stdout
    assert out.startswith("Deleted Containers:\n"), out
    assert stopped in out.splitlines() and running not in out
    assert f"deleted: {image}" in out.splitlines(), out
    reclaimed = out.splitlines()[-1]
    assert reclaimed.startswith("Total reclaimed space: ") and not reclaimed.endswith(" 0B"), out
    assert not (POOL / stopped).exists() and (POOL / running).is_dir()


@pytest.mark.serial
def test_image_prune_reports_the_size_images_showed(
    nsp: CLI, busybox: str, request: pytest.FixtureRequest
) -> None:
    """A registry image (its size is its layers') made dangling and pruned: the reclaimed space is
    the SIZE that 'images' showed for it, not 0B."""
    env: Env = request.getfixturevalue("oci")
    ref = env.ref("docker")
    nsp.images.update({ref, env.std.docker.config_digest})
    nsp("rmi", "-f", env.std.docker.config_digest, check=False)  # no other name may keep it
    nsp("pull", "-q", "--ca-cert", env.ca, ref)
    image = nsp.json("image", "inspect", ref)[0]
    assert image["size"] > 0
    nsp("tag", busybox, ref)  # the name moves: the pulled image is dangling
    out = nsp("image", "prune", "-f").stdout
    assert f"deleted: {image['id']}" in out.splitlines(), out
    assert out.splitlines()[-1] == f"Total reclaimed space: {human_size(image['size'])}", out
