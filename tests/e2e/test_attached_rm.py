"""A foreground ``run --rm`` with no network to tear down, or with a veth network the CLI builds
and tears down itself: the CLI reads the exit and removes the container, so the unit runs no Python
hook when it starts or stops; a kill of the CLI meanwhile leaves what the next command repairs."""

from __future__ import annotations

import http.server
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CLI, unit_show

POOL = Path("/var/lib/machines")
STATE = Path("/var/lib/nspawnctl/state")


def wait_for(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def active(name: str) -> str:
    return unit_show(f"nspawnctl-{name}.service", "ActiveState").get("ActiveState", "")


def gone(name: str) -> bool:
    return unit_show(f"nspawnctl-{name}.service", "LoadState").get("LoadState") == "not-found"


@pytest.mark.parametrize("network", ["host", "none"])
def test_attached_rm_without_network_has_no_stop_hook_and_leaves_nothing(
    nsp: CLI, busybox: str, network: str
) -> None:
    name = nsp.name("fast")
    run = subprocess.Popen(
        ["nspawnctl", "run", "--rm", "--network", network, "--name", name, busybox,
         "sh", "-c", "sleep 2; echo done; exit 3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the unit to run", lambda: active(name) == "active")
        props = unit_show(f"nspawnctl-{name}.service", "ExecStopPost", "ExecStartPre")
        assert props.get("ExecStopPost", "") == "", props
        assert props.get("ExecStartPre", "") == "", props
        assert (STATE / f"{name}.attached").exists()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert (run.returncode, out) == (3, "done\n"), err
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))
    assert name not in nsp("ps", "-aq").stdout.split()
    wait_for("the unit to be collected", lambda: gone(name))


def kill_attached_run(name: str, image: str, network: str, seconds: str) -> None:
    """``run --rm`` in the foreground, its CLI SIGKILLed once the unit runs: the payload goes on."""
    run = subprocess.Popen(
        ["nspawnctl", "run", "--rm", "--network", network, "--name", name, image, "sleep", seconds],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for("the unit to run", lambda: active(name) == "active")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()


@pytest.mark.serial
def test_a_killed_attached_rm_run_is_removed_by_the_next_command(nsp: CLI, busybox: str) -> None:
    name = nsp.name("killed")
    kill_attached_run(name, busybox, "host", "3")
    assert (POOL / name).exists()  # the payload runs on without its CLI
    again = ("run", "--rm", "--network", "host", "--name", name, busybox)
    assert nsp(*again, "true", check=False).returncode == 125  # the name is taken while it runs
    wait_for("the payload to end and its unit to go", lambda: gone(name))
    # the next change repairs: the name is free again and the old container is gone
    assert nsp(*again, "echo", "again").stdout == "again\n"
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))
    assert name not in nsp("ps", "-aq").stdout.split()


@pytest.mark.serial
def test_a_killed_attached_rm_run_is_removed_by_system_prune(nsp: CLI, busybox: str) -> None:
    name = nsp.name("pruned")
    kill_attached_run(name, busybox, "none", "2")
    wait_for("the payload to end and its unit to go", lambda: gone(name))
    nsp("system", "prune", "-f")
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))


def test_ctrl_c_of_an_attached_rm_run_stops_the_unit_before_removing(nsp: CLI, busybox: str) -> None:
    """``run --rm -i`` (no -t: nspawn does not take the terminal's Ctrl-C) interrupted while its
    payload runs: the unit is stopped first, then the container removed, by the time it exits."""
    name = nsp.name("intr")
    run = subprocess.Popen(
        ["nspawnctl", "run", "--rm", "-i", "--network", "host", "--name", name, busybox, "sleep", "60"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the unit to run", lambda: active(name) == "active")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert active(name) != "active", err
    assert not (POOL / name).exists(), err
    assert not list(POOL.glob(f".#nspawnctl-{name}.*")), err  # no removal cut short under nspawn
    assert not list(STATE.glob(f"{name}.*"))
    assert name not in nsp("ps", "-aq").stdout.split()
    wait_for("the unit to be collected", lambda: gone(name))
    logs = subprocess.run(
        ["journalctl", "-q", "-o", "cat", "-u", f"nspawnctl-{name}.service"], capture_output=True, text=True
    ).stdout
    lines = logs.splitlines()
    ended = next(i for i, line in enumerate(lines) if "Main process exited" in line)
    # nspawn was told to stop before it ended: it did not lose its root from under it
    assert any("on client request" in line or "Stopping" in line for line in lines[:ended]), logs


def test_attached_rm_on_veth_builds_its_network_itself_and_leaves_nothing(nsp: CLI, busybox: str) -> None:
    """The default network of a foreground ``run --rm``: the CLI builds the netns before the unit
    starts and tears it down after the exit; the unit runs no hook. The payload reaches the host
    through its gateway at once."""
    from test_network import leftovers

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = nsp.name("veth")
    script = (
        f"set -- $(ip route show default); wget -q -T 5 -O- http://$3:{server.server_address[1]}/; "
        "sleep 2; exit 4"
    )
    run = subprocess.Popen(
        ["nspawnctl", "run", "--rm", "--name", name, busybox, "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the unit to run", lambda: active(name) == "active")
        props = unit_show(f"nspawnctl-{name}.service", "ExecStopPost", "ExecStartPre", "ExecStart")
        assert props.get("ExecStopPost", "") == "", props
        assert props.get("ExecStartPre", "") == "", props
        assert "nsenter" in props.get("ExecStart", ""), props  # inside the netns the CLI built
        assert "hook" not in props.get("ExecStart", ""), props
        assert any(x.startswith("netns ") for x in leftovers(name)), leftovers(name)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
        server.shutdown()
        server.server_close()
    assert (run.returncode, out) == (4, "gateway-ok\n"), err
    assert leftovers(name) == []
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))


@pytest.mark.serial
def test_a_killed_attached_rm_run_on_veth_is_repaired_with_its_network(nsp: CLI, busybox: str) -> None:
    """The CLI that built the network is killed: the payload runs on in it; once it ended, the
    next command removes the container and its netns, veth and network state."""
    from test_network import leftovers

    name = nsp.name("killedveth")
    kill_attached_run(name, busybox, "veth", "2")
    assert leftovers(name), "the network stays while the payload runs"
    wait_for("the payload to end and its unit to go", lambda: gone(name))
    assert [x for x in leftovers(name) if not x.startswith("unit ")], "nothing removed it yet"
    assert nsp("run", "--rm", "--network", "host", busybox, "echo", "next").stdout == "next\n"
    assert leftovers(name) == []
    assert not (POOL / name).exists()
    assert not list(STATE.glob(f"{name}.*"))
    assert name not in nsp("ps", "-aq").stdout.split()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"gateway-ok\n")

    def log_message(self, *args: object) -> None:
        pass
