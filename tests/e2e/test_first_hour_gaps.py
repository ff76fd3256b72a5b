"""Issue 14's items the audit found without an end-to-end test (audit17, "Gaps — issue 14"):
``--pull always`` pulling again and ``create`` pulling a missing image, ``system prune -a``,
``--stop-timeout`` waiting before the kill, ``--health-timeout``/``--health-start-period``/
``--health-on-failure kill|none`` (the auto-update timer: test_autoupdate_timer.py), and
``run``/``create --help``
listing every run flag the README's table says they take (done, partly or mapped)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import CLI, Env, health_of, healthcheck_image, root_with, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


# -- --pull always / create pulls a missing image ----------------------------------------------------
def test_create_pulls_a_missing_image_and_pull_always_pulls_again(nsp: CLI, oci: Env) -> None:
    tag = f"pa{uuid.uuid4().hex[:6]}"
    v1 = healthcheck_image(oci, tag, "1", ok=True)
    ref = oci.ref(tag)
    nsp.images.add(ref)
    assert nsp("image", "inspect", ref, check=False).returncode != 0  # not here yet
    first = nsp.name("pl")
    proc = nsp("create", "--ca-cert", oci.ca, "--no-healthcheck", "--name", first, ref)
    assert f"Pulling {ref} (--pull missing)" in proc.stderr, proc.stderr
    assert nsp.json("inspect", first)[0]["ImageId"] == v1.config_digest
    assert json.loads(nsp("image", "inspect", ref).stdout)[0]["id"] == v1.config_digest

    # present: `missing` asks the registry nothing; `always` asks it although the image is here
    mark = oci.reg.mark()
    nsp("create", "--ca-cert", oci.ca, "--no-healthcheck", "--name", nsp.name("pl"), ref)
    assert not [r for r in oci.reg.requests(mark) if f"acc/{tag}/" in r.path]
    out = nsp(
        "run", "--rm", "--pull", "always", "--ca-cert", oci.ca, "--no-healthcheck", ref, "cat", "/version"
    )
    assert out.stdout == "1\n"
    assert [r for r in oci.reg.requests(mark) if f"acc/{tag}/manifests/" in r.path], oci.reg.requests(mark)

    # re-pushed under the same tag: `always` gets the new image, `missing` keeps the old one
    v2 = healthcheck_image(oci, tag, "2", ok=True)
    assert v2.config_digest != v1.config_digest
    out = nsp("run", "--rm", "--ca-cert", oci.ca, "--no-healthcheck", ref, "cat", "/version")
    assert out.stdout == "1\n"
    proc = nsp(
        "run", "--rm", "--pull", "always", "--ca-cert", oci.ca, "--no-healthcheck", ref, "cat", "/version"
    )
    assert proc.stdout == "2\n" and f"Pulling {ref} (--pull always)" in proc.stderr, proc.stderr
    assert json.loads(nsp("image", "inspect", ref).stdout)[0]["id"] == v2.config_digest
    assert nsp.json("inspect", first)[0]["ImageId"] == v1.config_digest  # made from the old one


# -- system prune -a ---------------------------------------------------------------------------------
@pytest.mark.serial
def test_system_prune_all_removes_unused_images_and_keeps_used_ones(
    private: tuple[Callable[..., subprocess.CompletedProcess[str]], Path],
    busybox_dir: Path,
    tmp_path: Path,
) -> None:
    run, _store = private
    unused = run("import", str(root_with(busybox_dir, tmp_path / "u", "u\n")), "e2e/unused").stdout.strip()
    used = run("import", str(root_with(busybox_dir, tmp_path / "k", "k\n")), "e2e/used").stdout.strip()
    stopped_img = run(
        "import", str(root_with(busybox_dir, tmp_path / "s", "s\n")), "e2e/stopped"
    ).stdout.strip()
    runner = f"prunea-{os.urandom(4).hex()}"
    stopped = f"prunes-{os.urandom(4).hex()}"
    run("run", "-d", "--network", "none", "--name", runner, used, "sleep", "600")
    run("create", "--name", stopped, stopped_img, "true")

    out = run("system", "prune", "-f", "-a").stdout
    ids = {i["id"] for i in json.loads(run("images", "--json").stdout)}
    assert ids == {used}, out  # the running container's image kept; the unused and the stopped one's gone
    assert unused in out and stopped_img in out, out
    names = run("ps", "-a", "-q").stdout.split()
    assert runner in names and stopped not in names
    assert run("exec", runner, "cat", "/etc/marker").stdout == "k\n"  # still runs on its image
    run("rm", "-f", runner)


# -- --stop-timeout ----------------------------------------------------------------------------------
@pytest.mark.serial
def test_stop_timeout_waits_that_long_then_kills(nsp: CLI, busybox: str) -> None:
    name = nsp.name("st")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "--stop-timeout", "3", busybox, "sh", "-c",
        "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.2; done",
    )  # fmt: skip
    nsp.wait_logs(name, "ready")
    started = time.monotonic()
    nsp("stop", name)
    took = time.monotonic() - started
    # SIGTERM ignored: the kill comes after the 3 s, not before, and well before docker's 10 s default
    assert 3 <= took < 8, took
    state = nsp.json("inspect", name)[0]["State"]
    assert not state["Running"] and state["ExitCode"] == 137, state
    assert "got-term" in nsp.wait_logs(name, "got-term")
    assert "StopTimeout=3" in nsp("generate", name).stdout.splitlines()


# -- --health-timeout, --health-start-period, --health-on-failure kill|none --------------------------
def test_a_hanging_check_fails_by_its_timeout(nsp: CLI, busybox: str) -> None:
    name = nsp.name("ht")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "--health-cmd", "sleep 600",
        "--health-timeout", "1s", "--health-interval", "1s", "--health-retries", "1",
        busybox, "sleep", "600",
    )  # fmt: skip
    health = wait_for("unhealthy", lambda: (h := health_of(nsp, name)).get("Status") == "unhealthy" and h, 90)
    last = health["Log"][-1]
    assert health["FailingStreak"] >= 1 and last["ExitCode"] == -1, health
    assert last["Output"] == "Health check exceeded timeout (1s)", last
    # the check was killed after its own 1 s, not after the 30 s default
    took = datetime.fromisoformat(last["End"]) - datetime.fromisoformat(last["Start"])
    assert timedelta(seconds=1) <= took < timedelta(seconds=6), last
    assert "HealthTimeout=1s" in nsp("generate", name).stdout.splitlines()


def test_failures_in_the_start_period_are_not_counted(nsp: CLI, busybox: str) -> None:
    name = nsp.name("hsp")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "--health-cmd", "cat /tmp/ok",
        "--health-interval", "1s", "--health-retries", "1", "--health-start-period", "1h",
        busybox, "sleep", "600",
    )  # fmt: skip
    health = wait_for(
        "two failed checks", lambda: len((h := health_of(nsp, name)).get("Log") or []) >= 2 and h, 90
    )
    assert all(entry["ExitCode"] != 0 for entry in health["Log"]), health
    assert health["Status"] == "starting" and health["FailingStreak"] == 0, health
    nsp("exec", name, "sh", "-c", "echo up > /tmp/ok")
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert "HealthStartPeriod=1h" in nsp("generate", name).stdout.splitlines()


def test_health_on_failure_kill_kills_and_none_leaves_it_running(nsp: CLI, busybox: str) -> None:
    names = {policy: nsp.name(f"hof{policy}") for policy in ("kill", "none")}
    for policy, name in names.items():
        nsp(
            "run", "-d", "--name", name, "--network", "none", "--health-cmd", "test -f /tmp/ok",
            "--health-interval", "1s", "--health-retries", "1", "--health-on-failure", policy,
            busybox, "sh", "-c", "touch /tmp/ok; exec sleep 600",
        )  # fmt: skip
    for name in names.values():
        wait_for("healthy", lambda name=name: health_of(nsp, name).get("Status") == "healthy")
        nsp("exec", name, "rm", "/tmp/ok")
    killed = wait_for(
        "the kill",
        lambda: (s := nsp.json("inspect", names["kill"])[0]["State"])["Running"] is False and s,
        90,
    )
    assert killed["ExitCode"] == 137, killed
    assert "HealthOnFailure=kill" in nsp("generate", names["kill"]).stdout.splitlines()
    wait_for("unhealthy", lambda: health_of(nsp, names["none"]).get("Status") == "unhealthy")
    assert nsp.json("inspect", names["none"])[0]["State"]["Running"] is True
    assert "HealthOnFailure" not in nsp("generate", names["none"]).stdout


# -- --help lists the done run flags ---------------------------------------------------------------
# A row whose status starts so is not a flag nspawnctl's run/create take: "not yet", "not supported",
# "not applicable", "not as a flag"; "on `attach`" (a flag of another command).
NOT_TAKEN = ("not ", "on `")


def done_run_flags() -> list[str]:
    """The flags of the README's "docker run flags" rows that run/create take: done, partly, or
    mapped (``--security-opt``'s two options, ``--cgroupns private``, ``--isolation default``, ...)."""
    table = README.read_text().split("### docker run flags", 1)[1].split("\n\n#", 1)[0]
    flags = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if not line.startswith("| `-") or len(cells) < 2 or cells[1].startswith(NOT_TAKEN):
            continue
        for token in re.findall(r"`([^`]+)`", cells[0]):
            flags += [part.split()[0] for part in token.split(", ") if part.startswith("-")]
    return flags


@pytest.mark.surface
def test_run_and_create_help_list_every_done_run_flag(nsp: CLI) -> None:
    flags = done_run_flags()
    assert len(flags) > 50 and "--stop-timeout" in flags and "--pull" in flags, flags
    assert {"--security-opt", "--cgroupns", "--isolation", "--volume-driver"} <= set(flags), flags
    not_create = {"-d", "--detach"}  # docker create has no -d
    for cmd in ("run", "create"):
        text = nsp(cmd, "--help", env={**os.environ, "COLUMNS": "200"}).stdout
        missing = [
            f for f in flags
            if not (cmd == "create" and f in not_create)
            and not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", text)
        ]  # fmt: skip
        assert not missing, (cmd, missing)
