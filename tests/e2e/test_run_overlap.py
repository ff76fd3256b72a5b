"""A foreground run makes its container (and, ``--rm`` on a veth, its network) while the CLI
connects to the bus (issue 13): a run whose bus cannot be reached leaves no ``--rm`` container,
network or lock behind, and one without ``--rm`` stays created, as a docker run whose start failed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import CLI

from nspawnctl.net.names import netns_path, veth_name

POOL = Path("/var/lib/machines")
STATE = Path("/var/lib/nspawnctl/state")
NO_BUS = "unix:path=/run/nspawnctl-test-no-such-bus"


def run_without_bus(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=NO_BUS)
    return subprocess.run(["nspawnctl", "run", *args], capture_output=True, text=True, env=env, timeout=120)


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_a_run_whose_bus_cannot_be_reached_leaves_nothing_of_its_early_start(nsp: CLI, busybox: str) -> None:
    name = nsp.name("nobus")
    proc = run_without_bus("--rm", "--name", name, busybox, "true")
    assert proc.returncode == 125, proc
    assert proc.stderr.startswith("nspawnctl: error: cannot connect to the system bus"), proc.stderr
    assert "hint: " in proc.stderr
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))
    assert not Path(netns_path(name)).exists()
    assert f" {veth_name(name)}@" not in links()
    assert name not in nsp("ps", "-aq").stdout.split()

    kept = nsp.name("nobus")
    proc = run_without_bus("--name", kept, busybox, "true")
    assert proc.returncode == 125, proc
    listed = nsp("ps", "-a", "--filter", f"name={kept}", "--format", "{{.Names}} {{.Status}}").stdout
    assert listed.split() == [kept, "Created"], listed
    nsp("start", kept)  # the bus is back: it starts as made
