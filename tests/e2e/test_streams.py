"""The payload's stdout and stderr stay apart (foreground run, logs, logs -f, exec, the journal,
persistent containers)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI

BOTH = "echo out; echo err >&2; echo '<3>not a priority'"
MANY = "i=0; while [ $i -lt 40 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done"


def journal(container_id: str, *matches: str) -> list[dict[str, object]]:
    out = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", f"NSPAWNCTL_CONTAINER_ID={container_id}", *matches],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def container_id(nsp: CLI, name: str) -> str:
    cid: str = nsp.json("inspect", name)[0]["Id"]
    return cid


def wait_for(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- stdout and stderr ----------------------------------------------------------------------------
def test_foreground_run_keeps_stdout_and_stderr_apart(nsp: CLI, busybox: str) -> None:
    out = nsp("run", "--rm", busybox, "sh", "-c", BOTH + "; exit 3", check=False)
    assert out.returncode == 3
    assert out.stdout == "out\n<3>not a priority\n"  # a <N> prefix is output, not a log level
    assert out.stderr == "err\n"
    # order within each stream is kept
    many = nsp("run", "--rm", busybox, "sh", "-c", MANY)
    assert many.stdout.split() == [f"o{i}" for i in range(40)]
    assert many.stderr.split() == [f"e{i}" for i in range(40)]


def test_short_runs_side_by_side_keep_every_line(nsp: CLI, busybox: str) -> None:
    """journald attributes a stream to its unit by the cgroup of the process that opened it, read
    when the first line arrives: a payload gone by then must not lose its lines (the stream's
    header names the unit too)."""
    procs = [
        subprocess.Popen(
            ["nspawnctl", "run", "--rm", busybox, "sh", "-c", f"echo out{i}; echo err{i} >&2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out, err) == (0, f"out{i}\n".encode(), f"err{i}\n".encode())


@pytest.mark.serial
def test_foreground_run_prints_lines_as_they_come(nsp: CLI, busybox: str) -> None:
    """Lines reach the terminal while the payload runs, stderr ones on stderr."""
    script = "echo first; sleep 4; echo second >&2; sleep 4; echo third"
    with (
        open(Path("/var/tmp") / f"{nsp.name()}.out", "w+") as out,
        open(Path("/var/tmp") / f"{nsp.name()}.err", "w+") as err,
    ):
        start = time.monotonic()
        proc = subprocess.Popen(
            ["nspawnctl", "run", "--rm", busybox, "sh", "-c", script], stdout=out, stderr=err
        )
        wait_for("first", lambda: "first" in Path(out.name).read_text(), timeout=4)
        wait_for("second", lambda: "second" in Path(err.name).read_text(), timeout=10)
        assert time.monotonic() - start < 8  # before the payload ends
        assert proc.wait(timeout=30) == 0
        assert Path(out.name).read_text() == "first\nthird\n"
        assert Path(err.name).read_text() == "second\n"


@pytest.mark.surface
def test_logs_keep_the_streams_apart_and_the_journal_tells_them(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "--name", name, busybox, "sh", "-c", BOTH)
    logs = nsp("logs", name)
    assert logs.stdout == "out\n<3>not a priority\n" and logs.stderr == "err\n"
    # the journal has both, stdout at priority info (6), stderr at err (3), tagged with the unit
    entries = journal(container_id(nsp, name), "_TRANSPORT=stdout")
    by_message = {e["MESSAGE"]: e for e in entries}
    assert by_message["out"]["PRIORITY"] == "6" and by_message["err"]["PRIORITY"] == "3"
    assert by_message["<3>not a priority"]["PRIORITY"] == "6"
    for e in by_message.values():
        assert e["_SYSTEMD_UNIT"] == f"nspawnctl-{name}.service" and e["SYSLOG_IDENTIFIER"] == name
    # -t and -n keep them apart too
    stamped = nsp("logs", "-t", "-n", "2", name)
    assert stamped.stdout.endswith(" <3>not a priority\n") and stamped.stderr.endswith(" err\n")


def test_logs_follow_keeps_the_streams_apart(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    script = "echo o1; echo e1 >&2; sleep 3; echo o2; echo e2 >&2; sleep 3; echo o3; echo e3 >&2"
    nsp("run", "-d", "--name", name, busybox, "sh", "-c", script)
    nsp.wait_logs(name, "o1")
    with (
        open(Path("/var/tmp") / f"{name}.out", "w+") as out,
        open(Path("/var/tmp") / f"{name}.err", "w+") as err,
    ):
        follower = subprocess.Popen(["nspawnctl", "logs", "-f", name], stdout=out, stderr=err)
        wait_for("e2", lambda: "e2" in Path(err.name).read_text(), timeout=15)
        assert "o3" not in Path(out.name).read_text()  # followed, not read at the end
        assert follower.wait(timeout=20) == 0  # ends when the container does
        assert Path(out.name).read_text() == "o1\no2\no3\n"
        assert Path(err.name).read_text() == "e1\ne2\ne3\n"


def test_exec_keeps_the_streams_apart(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "-d", "--name", name, busybox, "sleep", "300")
    out = nsp("exec", name, "sh", "-c", BOTH + "; exit 4", check=False)
    assert out.returncode == 4
    assert out.stdout == "out\n<3>not a priority\n" and out.stderr == "err\n"


def test_a_persistent_container_keeps_the_streams_apart(nsp: CLI, busybox: str) -> None:
    """Under systemd-nspawn@NAME.service (enable; the hook execs nspawn) as under the transient unit."""
    name = nsp.name("per")
    nsp(
        "create",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        'trap "exit 0" TERM; ' + BOTH + "; while :; do sleep 1; done",
    )
    nsp("enable", "--now", name)
    assert nsp.json("inspect", name)[0]["Unit"] == f"systemd-nspawn@{name}.service"
    nsp.wait_logs(name, "not a priority")
    wait_for("err", lambda: nsp("logs", name).stderr == "err\n")
    assert nsp("logs", name).stdout == "out\n<3>not a priority\n"
    entries = journal(
        container_id(nsp, name), "_TRANSPORT=stdout", f"_SYSTEMD_UNIT=systemd-nspawn@{name}.service"
    )
    priorities = {e["MESSAGE"]: e["PRIORITY"] for e in entries}
    assert priorities == {"out": "6", "err": "3", "<3>not a priority": "6"}
    # the unit's main process is nspawn (the hook opened the streams and exec'd it): Type=notify held
    assert (
        subprocess.run(
            ["systemctl", "is-active", f"systemd-nspawn@{name}.service"], capture_output=True, text=True
        ).stdout.strip()
        == "active"
    )
    nsp("disable", "--now", name)
