"""Health checks and auto-update in the booted host: the check's transient timer, the state
changing in inspect and ps, --health-on-failure restart, the image's HEALTHCHECK from a registry,
generate round-trips, and auto-update pulling a newer image or rolling back a broken one."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, IDLE, Env, S, health_of, healthcheck_image, unit_show, wait_for


def status_line(nsp: CLI, name: str) -> str:
    return next(line for line in nsp("ps").stdout.splitlines() if line.rstrip().endswith("  " + name))


def timer_state(name: str) -> str:
    return unit_show(f"nspawnctl-health-{name}.timer", "ActiveState").get("ActiveState", "")


def test_health_cmd_turns_unhealthy_and_back_and_the_timer_lives_with_the_container(
    nsp: CLI, busybox: str
) -> None:
    name = nsp.name("hc")
    nsp(
        "run", "-d", "--name", name, "--network", "none",
        "--health-cmd", "cat /tmp/ok", "--health-interval", "1s", "--health-retries", "2",
        busybox, "sh", "-c", "echo fine > /tmp/ok; trap 'exit 0' TERM; sleep 600 & wait",  # a quick stop
    )  # fmt: skip
    info = nsp.json("inspect", name)[0]
    check = {"Test": ["CMD-SHELL", "cat /tmp/ok"], "Interval": S, "Timeout": 30 * S, "Retries": 2}
    assert info["Config"]["Healthcheck"] == {**check, "StartPeriod": 0}
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert "(healthy)" in status_line(nsp, name)
    log = health_of(nsp, name)["Log"]
    assert log[-1]["ExitCode"] == 0 and log[-1]["Output"] == "fine\n"
    # the timer: bound to the container's unit, visible to systemctl
    timer = f"nspawnctl-health-{name}.timer"
    props = unit_show(timer, "ActiveState", "BindsTo", "After")
    assert props["ActiveState"] == "active" and f"nspawnctl-{name}.service" in props["BindsTo"], props

    nsp("exec", name, "rm", "/tmp/ok")
    h = wait_for(
        "unhealthy", lambda: (lambda h: h if h.get("Status") == "unhealthy" else None)(health_of(nsp, name))
    )
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1, h
    assert "No such file" in h["Log"][-1]["Output"] and len(h["Log"]) <= 5
    assert "(unhealthy)" in status_line(nsp, name)
    assert nsp("healthcheck", "run", name, check=False).returncode == 1

    nsp("exec", name, "touch", "/tmp/ok")
    wait_for("healthy again", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert health_of(nsp, name)["FailingStreak"] == 0
    r = nsp("healthcheck", "run", name)
    assert r.stdout.strip() == "healthy"

    # generate round-trips the check
    text = nsp("generate", name).stdout
    for line in (
        "HealthCmd=CMD-SHELL 'cat /tmp/ok'",
        "HealthInterval=1s",
        "HealthTimeout=30s",
        "HealthRetries=2",
    ):
        assert line in text, text

    nsp("stop", name)
    wait_for("the timer to stop with the container", lambda: timer_state(name) in ("inactive", ""))
    assert "Health" in nsp.json("inspect", name)[0]["State"]
    nsp("start", name)  # re-armed by the start
    wait_for("the timer again", lambda: timer_state(name) == "active")
    wait_for("healthy after start", lambda: health_of(nsp, name).get("Status") == "healthy")
    nsp("rm", "-f", name)
    wait_for("the timer gone", lambda: timer_state(name) in ("inactive", ""))
    assert unit_show(timer, "LoadState").get("LoadState") in ("not-found", None), unit_show(
        timer, "LoadState"
    )


def test_health_on_failure_restart_restarts_the_container(nsp: CLI, busybox: str) -> None:
    name = nsp.name("hr")
    nsp(
        "run", "-d", "--name", name, "--network", "none",
        "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1",
        "--health-on-failure", "restart",
        busybox, "sh", "-c", f"touch /tmp/ok; echo started; {IDLE}",  # the restart's stop: at once
    )  # fmt: skip
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    started = nsp.json("inspect", name)[0]["State"]["StartedAt"]
    nsp("exec", name, "rm", "/tmp/ok")
    nsp.wait_logs(name, "started", count=2, timeout=90)  # the payload ran a second time
    state = wait_for(
        "a new start",
        lambda: (lambda s: s if s["Running"] and s["StartedAt"] != started else None)(
            nsp.json("inspect", name)[0]["State"]
        ),
    )
    assert state["StartedAt"] > started
    wait_for("healthy after the restart", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert timer_state(name) == "active"


def test_bad_health_flags_are_refused_before_anything_is_made(nsp: CLI, busybox: str) -> None:
    for args, text in (
        (["--health-interval", "nan"], "invalid --health-interval"),
        (["--health-cmd", "true", "--health-interval", "10ms"], "--health-interval '10ms' is out of range"),
        (
            ["--health-cmd", "true", "--health-timeout", "100000h"],
            "--health-timeout '100000h' is out of range",
        ),
        (["--health-cmd", "true", "--no-healthcheck"], "--no-healthcheck conflicts"),
        (["--health-retries", "3"], "--health-interval, --health-timeout"),
        (["--health-cmd", "true", "--health-on-failure", "reboot"], "invalid --health-on-failure"),
    ):
        name = nsp.name("bad")
        r = nsp("create", "--name", name, *args, busybox, "true", check=False)
        assert r.returncode in (2, 125) and f"nspawnctl: error: {text}" in r.stderr, (args, r.stderr)
        assert "hint:" in r.stderr or "conflicts" in r.stderr, r.stderr
        assert name not in nsp("ps", "-a", "-q").stdout.split()


def test_health_start_interval_checks_often_during_the_start_period_only(nsp: CLI, busybox: str) -> None:
    """--health-interval 1h alone would check first after an hour: the start interval's timer
    checks every second in the start period, and goes once the container is healthy."""
    name = nsp.name("hsi")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "--health-cmd", "cat /tmp/ok",
        "--health-interval", "1h", "--health-start-period", "1h", "--health-start-interval", "1s",
        busybox, "sh", "-c", f"sleep 2; echo up > /tmp/ok; {IDLE}",
    )  # fmt: skip
    start_timer = f"nspawnctl-healthstart-{name}.timer"
    assert unit_show(start_timer, "ActiveState")["ActiveState"] == "active"
    health = wait_for("healthy", lambda: (h := health_of(nsp, name)).get("Status") == "healthy" and h, 30)
    assert health["Log"][-1]["Output"] == "up\n"
    wait_for("the start timer gone", lambda: unit_show(start_timer, "ActiveState")["ActiveState"] != "active")
    assert timer_state(name) == "active"  # the main rhythm (1h) stays
    info = nsp.json("inspect", name)[0]
    assert info["Config"]["Healthcheck"]["StartInterval"] == S
    text = nsp("generate", name).stdout
    assert "HealthStartInterval=1s" in text.splitlines(), text
    nsp("stop", name)
    assert unit_show(start_timer, "LoadState").get("LoadState") == "not-found"


def test_generate_apply_round_trip_and_machinectl_start_arm_the_check(
    nsp: CLI, busybox: str, tmp_path: Path
) -> None:
    name = nsp.name("hg")
    nsp(
        "create", "--name", name, "--network", "none",
        "--health-cmd", "test -d /proc/1", "--health-interval", "1m30s", "--health-timeout", "500ms",
        "--health-retries", "5", "--health-start-period", "2s", "--health-on-failure", "kill",
        "--auto-update", "local", busybox, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done",
    )  # fmt: skip
    before = nsp.json("inspect", name)[0]
    text = nsp("generate", name).stdout
    keys = (
        "HealthInterval=1m30s HealthTimeout=500ms HealthRetries=5 HealthStartPeriod=2s HealthOnFailure=kill"
    )
    for line in ["HealthCmd=CMD-SHELL 'test -d /proc/1'", "AutoUpdate=local", *keys.split()]:
        assert line in text, text
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / f"{name}.nspawn").write_text(text)
    nsp("rm", "-f", name)
    nsp("apply", str(defs))
    after = nsp.json("inspect", name)[0]
    assert after["Config"]["Healthcheck"] == before["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -d /proc/1"], "Interval": 90 * S, "Timeout": S // 2, "Retries": 5,
        "StartPeriod": 2 * S,
    }  # fmt: skip
    assert after["Config"]["AutoUpdate"] == "local"
    assert nsp("generate", name).stdout == text
    # under systemd's own unit (enable): machinectl start arms the timer, bound to that unit
    nsp("stop", name)
    nsp("enable", name)
    subprocess.run(["machinectl", "start", name], check=True, capture_output=True)
    wait_for("the timer", lambda: timer_state(name) == "active")
    props = unit_show(f"nspawnctl-health-{name}.timer", "BindsTo")
    assert f"systemd-nspawn@{name}.service" in props["BindsTo"], props
    r = nsp("healthcheck", "run", name)
    assert r.stdout == "healthy\n" and health_of(nsp, name)["Status"] == "healthy"
    # (machinectl stop asks PID 1 to power off, which sh ignores: stop the unit)
    subprocess.run(["systemctl", "stop", f"systemd-nspawn@{name}.service"], check=True, capture_output=True)
    wait_for("the timer gone", lambda: timer_state(name) in ("inactive", ""))
    nsp("disable", name)


# -- registry images: HEALTHCHECK and auto-update -------------------------------------------------
def test_image_healthcheck_from_a_registry_is_honoured(nsp: CLI, oci: Env) -> None:
    tag = f"hc{uuid.uuid4().hex[:6]}"
    img = healthcheck_image(oci, tag, "1", ok=True, labels={"io.containers.autoupdate": "registry"})
    ref = oci.ref(tag)
    nsp("pull", "--ca-cert", oci.ca, ref)
    nsp.images.add(ref)
    name = nsp.name("ih")
    nsp("run", "-d", "--name", name, "--network", "none", ref)
    info = nsp.json("inspect", name)[0]
    assert info["ImageId"] == img.config_digest
    assert info["Config"]["AutoUpdate"] == "registry"  # podman's label, inherited from the image
    assert info["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /ok"]
    assert info["Config"]["Healthcheck"]["Interval"] == S and info["Config"]["Healthcheck"]["Retries"] == 1
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    off = nsp.name("ih")
    nsp("run", "-d", "--name", off, "--network", "none", "--no-healthcheck", ref)
    info = nsp.json("inspect", off)[0]
    assert "Healthcheck" not in info["Config"] and "Health" not in info["State"]
    assert unit_show(f"nspawnctl-health-{off}.timer", "LoadState").get("LoadState") == "not-found"


def test_image_healthcheck_with_a_line_break_runs_and_round_trips(nsp: CLI, oci: Env, tmp_path: Path) -> None:
    """A multi-line HEALTHCHECK (Healthcheck.Test with a newline) is kept as one JSON line in the
    .nspawn definition: it runs as the image says, and generate -> rm -> apply keeps it."""
    tag = f"hn{uuid.uuid4().hex[:6]}"
    check = 'echo "one"\ntest -f /ok && echo \'two\\n\''
    healthcheck_image(oci, tag, "1", ok=True, check=check)
    ref = oci.ref(tag)
    nsp("pull", "--ca-cert", oci.ca, ref)
    nsp.images.add(ref)
    name = nsp.name("hn")
    nsp("run", "-d", "--name", name, "--network", "none", ref)
    assert nsp.json("inspect", name)[0]["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", check]
    health = wait_for("healthy", lambda: (h := health_of(nsp, name)).get("Status") == "healthy" and h)
    assert health["Log"][-1]["Output"] == "one\ntwo\\n\n", health["Log"][-1]
    text = nsp("generate", name).stdout
    assert 'HealthCmd=["CMD-SHELL", ' in text, text
    (tmp_path / f"{name}.nspawn").write_text(text)
    nsp("rm", "-f", name)
    nsp("apply", str(tmp_path))
    assert nsp.json("inspect", name)[0]["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", check]
    assert nsp("generate", name).stdout == text


def _auto_update(nsp: CLI, oci: Env, *args: str) -> list[dict[str, Any]]:
    r = nsp("auto-update", "--ca-cert", oci.ca, "--json", *args, timeout=300)
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


@pytest.mark.serial
def test_auto_update_recreates_on_a_newer_image_and_rolls_back_a_broken_one(nsp: CLI, oci: Env) -> None:
    tag = f"au{uuid.uuid4().hex[:6]}"
    v1 = healthcheck_image(oci, tag, "1", ok=True)
    ref = oci.ref(tag)
    nsp("pull", "--ca-cert", oci.ca, ref)
    nsp.images.add(ref)
    name = nsp.name("au")
    other = nsp.name("au")  # not marked: never touched
    nsp("run", "-d", "--name", name, "--network", "none", "--auto-update", "registry", ref)
    nsp("run", "-d", "--name", other, "--network", "none", ref)
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert "AutoUpdate=registry" in nsp("generate", name).stdout

    rows = _auto_update(nsp, oci)
    mine = [r for r in rows if r["ContainerName"] == name]
    assert mine == [
        {"Unit": f"nspawnctl-{name}.service", "ContainerName": name, "Image": ref, "Policy": "registry",
         "Updated": "false", "Error": None}
    ]  # fmt: skip
    assert not [r for r in rows if r["ContainerName"] == other]

    v2 = healthcheck_image(oci, tag, "2", ok=True)
    assert [r["Updated"] for r in _auto_update(nsp, oci, "--dry-run") if r["ContainerName"] == name] == [
        "pending"
    ]
    assert nsp("exec", name, "cat", "/version").stdout == "1\n"  # a dry run changes nothing
    table = nsp("auto-update", "--ca-cert", oci.ca, timeout=300).stdout
    line = next(x for x in table.splitlines() if name in x)
    assert line.split()[-1] == "true" and "registry" in line, table
    info = nsp.json("inspect", name)[0]
    assert info["ImageId"] == v2.config_digest and info["State"]["Running"]
    assert nsp("exec", name, "cat", "/version").stdout == "2\n"
    assert health_of(nsp, name)["Status"] == "healthy"
    assert nsp("exec", other, "cat", "/version").stdout == "1\n"

    nsp("exec", name, "sh", "-c", "echo kept > /kept")  # the writable layer the rollback puts back
    healthcheck_image(oci, tag, "3", ok=False)  # its HEALTHCHECK fails: rolled back
    rows = [r for r in _auto_update(nsp, oci, "--timeout", "60") if r["ContainerName"] == name]
    assert rows[0]["Updated"] == "rolled back" and "unhealthy" in rows[0]["Error"], rows
    info = nsp.json("inspect", name)[0]
    assert info["ImageId"] == v2.config_digest and info["State"]["Running"], info
    assert nsp("exec", name, "cat", "/version").stdout == "2\n"
    assert nsp("exec", name, "cat", "/kept").stdout == "kept\n"  # its own root, not a fresh one
    assert json.loads(nsp("image", "inspect", ref).stdout)[0]["id"] == v2.config_digest
    wait_for("healthy after the rollback", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert v1.config_digest != v2.config_digest
