"""Restart policies (systemd's Restart=) and persistent containers (enable/disable through
systemd-nspawn@NAME.service and nspawnctl's drop-in), driven by nspawnctl and by machinectl."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from conftest import CLI, systemd_version, unit_show

# A payload that ends cleanly on SIGTERM even as PID 1 (which has no default signal actions).
SERVE = 'trap "exit 0" TERM; echo {word}; while :; do sleep 1; done'


def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def state(nsp: CLI, name: str) -> dict[str, object]:
    status: dict[str, object] = nsp.json("inspect", name)[0]["State"]
    return status


def running(nsp: CLI, name: str) -> bool:
    return name in nsp("ps", "-q").stdout.split()


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True).stdout.strip()


def dropin(name: str) -> Path:
    return Path(f"/etc/systemd/system/systemd-nspawn@{name}.service.d/50-nspawnctl.conf")


# -- restart policies (transient unit) ------------------------------------------------------------
def test_on_failure_restarts_a_failing_payload(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rst")
    nsp(
        "run",
        "-d",
        "--restart=on-failure",
        "--network=host",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "echo ran; exit 1",
    )
    # restarted again and again, with a growing delay (1 s, 1.8 s, 3.1 s, 5.5 s, ... up to 5 min:
    # RestartSteps=, systemd >= 254) instead of every second forever; older systemd has no such
    # backoff: there a start limit (10 starts in 5 min) ends the loop
    assert nsp.wait_logs(name, "ran", count=5, timeout=60).count("ran") >= 5
    unit = f"nspawnctl-{name}.service"
    assert unit_show(unit, "Restart")["Restart"] == "on-failure"
    assert int(unit_show(unit, "NRestarts")["NRestarts"]) >= 4
    if systemd_version() >= 254:
        backoff = unit_show(unit, "RestartSteps", "RestartMaxDelayUSec")
        assert backoff["RestartSteps"] == "10" and backoff["RestartMaxDelayUSec"] == "5min"
    else:
        limit = unit_show(unit, "StartLimitBurst", "StartLimitIntervalUSec")
        assert limit == {"StartLimitBurst": "10", "StartLimitIntervalUSec": "5min"}, limit
    assert nsp.json("inspect", name)[0]["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    nsp("stop", "-t", "2", name)
    until("the container to stay stopped", lambda: state(nsp, name)["Status"] == "exited")
    assert not running(nsp, name)


def test_foreground_run_with_a_restart_policy_returns_the_first_exit(nsp: CLI, busybox: str) -> None:
    """docker's run --restart=on-failure without -d: the first exit's code, while the container
    goes on restarting."""
    name = nsp.name("rst")
    proc = nsp(
        "run",
        "--restart=on-failure",
        "--network=host",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "echo ran; exit 3",
        check=False,
        timeout=30,
    )
    assert proc.returncode == 3 and proc.stdout == "ran\n", proc.stderr
    assert nsp.wait_logs(name, "ran", count=2).count("ran") >= 2  # it keeps its policy
    assert state(nsp, name)["Status"] in ("running", "restarting", "exited")
    nsp("rm", "-f", name)


def test_no_restart_runs_a_failing_payload_once(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rst")
    nsp(
        "run", "-d", "--restart=no", "--network=host", "--name", name, busybox, "sh", "-c", "echo ran; exit 1"
    )
    until("the payload to exit", lambda: state(nsp, name)["Status"] == "exited")
    st = state(nsp, name)
    assert st["ExitCode"] == 1 and st["Running"] is False
    # a restart would come after RestartSec=1s: give it twice that, then count the runs
    time.sleep(2)
    assert state(nsp, name)["Status"] == "exited"
    assert nsp("logs", name).stdout == "ran\n"


def test_always_restarts_a_clean_exit_and_stop_is_final(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rst")
    nsp(
        "run",
        "-d",
        "--restart=always",
        "--network=host",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "echo tick; exit 0",
    )
    nsp.wait_logs(name, "tick", count=2)
    nsp("stop", "-t", "2", name)
    until("the container to stop", lambda: state(nsp, name)["Status"] == "exited")
    seen = nsp("logs", name).stdout.count("tick")
    time.sleep(2)  # RestartSec=1s: a restart would have happened by now
    assert state(nsp, name)["Status"] == "exited"
    assert nsp("logs", name).stdout.count("tick") == seen


def test_stop_of_a_long_running_always_container(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rst")
    serve = SERVE.format(word="serving")
    nsp("run", "-d", "--restart=always", "--network=host", "--name", name, busybox, "sh", "-c", serve)
    nsp.wait_logs(name, "serving")
    nsp("stop", name)
    st = state(nsp, name)
    assert st["Status"] == "exited" and st["ExitCode"] == 0
    time.sleep(2)
    assert not running(nsp, name) and nsp("logs", name).stdout.count("serving") == 1
    # started again by hand, it keeps its policy
    nsp("start", name)
    nsp.wait_logs(name, "serving", count=2)
    assert running(nsp, name)
    nsp("rm", "-f", name)
    assert name not in nsp("ps", "-a", "-q").stdout.split()
    assert systemctl("is-active", f"nspawnctl-{name}.service") != "active"


# -- persistent containers (systemd-nspawn@NAME.service) ------------------------------------------
def test_enable_runs_the_container_under_systemd_nspawn_at(nsp: CLI, busybox: str) -> None:
    name = nsp.name("per")
    unit = f"systemd-nspawn@{name}.service"
    nsp("create", "--name", name, busybox, "sh", "-c", SERVE.format(word="started"))
    assert nsp.json("inspect", name)[0]["Enabled"] is False

    nsp("enable", name)
    assert systemctl("is-enabled", unit) == "enabled"
    assert "nspawnctl" in dropin(name).read_text()
    assert "Restart=on-failure" in dropin(name).read_text()  # enabled: restarts on failure at least
    assert not running(nsp, name)

    nsp("start", name)
    assert systemctl("is-active", unit) == "active"
    assert systemctl("is-active", f"nspawnctl-{name}.service") != "active"
    info = nsp.json("inspect", name)[0]
    assert info["Unit"] == unit and info["Enabled"] is True and info["State"]["Running"] is True
    assert running(nsp, name)
    nsp.wait_logs(name, "started")
    assert nsp("exec", name, "echo", "inside").stdout == "inside\n"
    machines = subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout
    assert name in machines

    # machinectl drives the same unit, with nspawnctl's hook (exit record, logs). ("machinectl
    # stop" is poweroff: SIGRTMIN+4 to PID 1, which only a booted init acts on; terminate stops the unit.)
    subprocess.run(["machinectl", "terminate", name], check=True)
    until("machinectl terminate", lambda: state(nsp, name)["Status"] == "exited")
    assert state(nsp, name)["ExitCode"] == 0
    subprocess.run(["machinectl", "start", name], check=True)
    until("machinectl start", lambda: running(nsp, name))
    nsp.wait_logs(name, "started", count=2)
    assert systemctl("is-active", unit) == "active"

    nsp("restart", "-t", "5", name)
    nsp.wait_logs(name, "started", count=3)
    assert systemctl("is-active", unit) == "active"

    nsp("disable", name)
    assert systemctl("is-enabled", unit) != "enabled"
    assert "Restart=no" in dropin(name).read_text()
    assert running(nsp, name)  # disable alone does not stop it
    nsp("stop", name)
    assert systemctl("is-active", unit) != "active"

    nsp("rm", name)
    assert not dropin(name).exists()
    assert systemctl("is-enabled", unit) != "enabled"


def test_a_second_start_under_the_other_unit_leaves_the_running_container_alone(
    nsp: CLI, busybox: str
) -> None:
    """run -d (transient unit), enable, then machinectl start (systemd-nspawn@NAME): refused by the
    hook before it touches anything; the running container keeps its network and exit record."""
    name = nsp.name("two")
    unit, transient = f"systemd-nspawn@{name}.service", f"nspawnctl-{name}.service"
    serve = SERVE.format(word="serving")
    nsp("run", "-d", "--network", "veth", "--name", name, busybox, "sh", "-c", serve)
    nsp.wait_logs(name, "serving")
    addr = nsp("exec", name, "ip", "-o", "-4", "addr", "show", "dev", "host0").stdout
    assert "inet " in addr
    nsp("enable", name)
    assert systemctl("is-active", transient) == "active"

    second = subprocess.run(["machinectl", "start", name], capture_output=True, text=True)
    until("the second start to fail", lambda: systemctl("is-active", unit) in ("failed", "inactive"))
    assert second.returncode != 0 or systemctl("is-active", unit) != "active"
    log = subprocess.run(["journalctl", "-u", unit, "-o", "cat"], capture_output=True, text=True).stdout
    assert f"already running under {transient}" in log
    # the running container: still up under its transient unit, same network, no exit recorded
    assert systemctl("is-active", transient) == "active"
    info = nsp.json("inspect", name)[0]
    assert info["Unit"] == transient and info["State"]["Running"] is True
    assert info["State"]["ExitCode"] is None and info["NetworkSettings"]["IPAddress"]
    assert nsp("exec", name, "ip", "-o", "-4", "addr", "show", "dev", "host0").stdout == addr
    assert nsp("exec", name, "echo", "still here").stdout == "still here\n"

    # nspawnctl start of a running container is a no-op, whichever unit runs it
    nsp("start", name)
    assert systemctl("is-active", transient) == "active" and systemctl("is-active", unit) != "active"
    nsp("stop", name)
    assert state(nsp, name)["ExitCode"] == 0
    # stopped, it starts under the persistent unit (the drop-in exists)
    nsp("start", name)
    assert systemctl("is-active", unit) == "active"
    nsp.wait_logs(name, "serving", count=2)
    nsp("start", name)
    assert systemctl("is-active", unit) == "active" and systemctl("is-active", transient) != "active"
    nsp("rm", "-f", name)
    assert not dropin(name).exists()


def test_rm_tears_down_what_the_post_step_left(nsp: CLI, busybox: str) -> None:
    """rm removes a container's network even when the unit's post step never ran (a crash)."""
    name = nsp.name("rmn")
    nsp("create", "--network", "veth", "--name", name, busybox, "true")
    netns = f"nspawnctl-{name}"
    subprocess.run(["ip", "netns", "add", netns], check=True)  # as a killed hook leaves it
    try:
        nsp("rm", name)
        assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_enabled_container_restarts_on_failure(nsp: CLI, busybox: str) -> None:
    name = nsp.name("per")
    nsp("create", "--name", name, busybox, "sh", "-c", "echo crash; exit 1")
    nsp("enable", "--now", name)
    nsp.wait_logs(name, "crash", count=2)
    unit = f"systemd-nspawn@{name}.service"
    assert int(unit_show(unit, "NRestarts")["NRestarts"]) >= 1
    nsp("disable", "--now", name)
    until("disable --now", lambda: systemctl("is-active", unit) in ("inactive", "failed"))
    assert not running(nsp, name)


def test_enabled_container_with_its_own_network(nsp: CLI, busybox: str) -> None:
    """A veth container under systemd-nspawn@: the hook builds the netns and nspawn runs inside it."""
    name = nsp.name("per")
    nsp("create", "--name", name, "--network", "veth", busybox, "sh", "-c", SERVE.format(word="net"))
    nsp("enable", "--now", name)
    nsp.wait_logs(name, "net")
    links = nsp("exec", name, "ip", "-o", "addr", "show", "dev", "host0").stdout
    assert "inet " in links
    nsp("stop", name)
    assert state(nsp, name)["ExitCode"] == 0
    nsp("rm", name)
    assert not dropin(name).exists()


def test_enable_refuses_an_rm_container_and_unknown_names(nsp: CLI, busybox: str) -> None:
    name = nsp.name("per")
    nsp("create", "--rm", "--name", name, busybox, "true")
    bad = nsp("enable", name, check=False)
    assert bad.returncode != 0 and "--rm" in bad.stderr
    assert not dropin(name).exists()
    missing = nsp("enable", "no-such-container-x", check=False)
    assert missing.returncode != 0 and "no such container" in missing.stderr


def test_restart_policy_is_recorded(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rst")
    nsp("create", "--restart", "unless-stopped", "--name", name, busybox, "true")
    info = nsp.json("inspect", name)[0]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped" and info["Enabled"] is False
    bad = nsp("run", "--rm", "--restart", "always", busybox, "true", check=False)
    assert bad.returncode != 0


def test_a_start_that_fails_before_ready_returns_and_stops_retrying(nsp: CLI, busybox: str) -> None:
    """The hook fails (a port taken after the client's own check): start says so and returns,
    and the unit does not come up later behind the caller's back."""
    import socket
    import sys

    name = nsp.name("rstpre")
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    nsp("create", "--name", name, "--restart", "always", "-p", f"{port}:80", busybox, "sleep", "300")
    taken = socket.socket()
    taken.bind(("0.0.0.0", port))
    taken.listen()
    try:
        skip_check = (
            "import sys, nspawnctl.client as c; c._check_ports = lambda *a: None; "
            "from nspawnctl.cli.app import main; sys.argv = ['nspawnctl', 'start', sys.argv[1]]; main()"
        )
        proc = subprocess.run(
            [sys.executable, "-c", skip_check, name], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0
        assert "already in use" in proc.stderr
    finally:
        taken.close()
    time.sleep(3)  # RestartSec=1: a unit left to restart would be up again by now
    assert not running(nsp, name)
    unit = f"nspawnctl-{name}.service"
    assert systemctl("show", "-p", "ActiveState", "--value", unit) in ("inactive", "failed")
