"""docker's lifecycle verbs on systemd's mechanisms: wait, rename, pause/unpause, update, top,
stats, events, attach."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, unit_show

POOL = Path("/var/lib/machines")


def cgroup_v2() -> bool:
    """The host's controllers are on the unified hierarchy (systemd can freeze units)."""
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def machines() -> str:
    return subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout


def wait_for(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# -- wait ----------------------------------------------------------------------------------
def test_wait_prints_the_exit_codes_of_running_and_stopped_containers(nsp: CLI, busybox: str) -> None:
    a, b = nsp.name("wait"), nsp.name("wait")
    nsp("run", "-d", "--name", a, busybox, "sh", "-c", "sleep 1; exit 7")
    nsp("run", "-d", "--name", b, busybox, "sh", "-c", "exit 3")
    proc = nsp("wait", a, b)
    assert proc.stdout.splitlines() == ["7", "3"]
    assert nsp("wait", a).stdout == "7\n"  # not-running: a stopped container at once


def test_wait_for_an_rm_container_gets_its_code_after_it_removed_itself(nsp: CLI, busybox: str) -> None:
    name = nsp.name("waitrm")
    nsp("run", "-d", "--rm", "--name", name, busybox, "sh", "-c", "sleep 1; exit 5")
    assert nsp("wait", name).stdout == "5\n"


def test_wait_next_exit_waits_for_a_start_and_removed_for_the_removal(nsp: CLI, busybox: str) -> None:
    name = nsp.name("waitnext")
    nsp("create", "--name", name, busybox, "sh", "-c", "sleep 1; exit 4")
    nxt = subprocess.Popen(
        ["nspawnctl", "wait", "--condition", "next-exit", name], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    assert nxt.poll() is None, "next-exit returned for a container that never started"
    nsp("start", name)
    assert nxt.communicate(timeout=30)[0] == "4\n"
    gone = subprocess.Popen(
        ["nspawnctl", "wait", "--condition", "removed", name], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    assert gone.poll() is None, "removed returned before the removal"
    nsp("rm", name)
    assert gone.communicate(timeout=30)[0] == "4\n"


def test_wait_bad_condition_is_a_usage_error(nsp: CLI, busybox: str) -> None:
    proc = nsp("wait", "--condition", "stopped", "x", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nspawnctl: error: invalid --condition 'stopped'")
    assert "hint: use not-running, next-exit or removed" in proc.stderr


# -- rename --------------------------------------------------------------------------------
def test_rename_moves_a_stopped_container_and_it_runs_under_its_new_name(nsp: CLI, busybox: str) -> None:
    old, new = nsp.name("ren"), nsp.name("ren")
    # the first run marks the root and exits 2; a later one finds the mark (the same snapshot) and stays
    script = "test -e /ran && exec sleep 100; touch /ran; echo first; exit 2"
    nsp("run", "-d", "--name", old, "--memory", "64m", busybox, "sh", "-c", script)
    assert nsp("wait", old).stdout == "2\n"
    nsp("rename", old, new)
    assert not (POOL / old).exists() and (POOL / new).is_dir()
    assert not Path(f"/etc/systemd/nspawn/{old}.nspawn").exists()
    assert Path(f"/etc/systemd/nspawn/{new}.nspawn").is_file()
    names = nsp("ps", "-a", "-q").stdout.split()
    assert new in names and old not in names
    status = nsp.json("inspect", new)[0]
    assert status["State"]["ExitCode"] == 2  # the exit record moved along
    assert "first" in nsp("logs", new).stdout  # the journal knows it by its ID
    nsp("start", new)
    wait_for(lambda: new in machines())
    assert old not in machines()
    assert nsp.json("inspect", new)[0]["State"]["Status"] == "running"
    assert "MemoryMax=67108864" in nsp("generate", new).stdout


def test_rename_of_a_running_container_is_refused_with_a_hint(nsp: CLI, busybox: str) -> None:
    name = nsp.name("renrun")
    nsp("run", "-d", "--name", name, busybox, "sleep", "100")
    proc = nsp("rename", name, "other-name", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith(f"nspawnctl: error: cannot rename container {name} while it runs")
    assert "hint: stop it first" in proc.stderr
    assert name in machines()


def test_rename_to_a_taken_name_is_refused_and_changes_nothing(nsp: CLI, busybox: str) -> None:
    a, b = nsp.name("rena"), nsp.name("renb")
    nsp("create", "--name", a, busybox, "true")
    nsp("create", "--name", b, busybox, "true")
    proc = nsp("rename", a, b, check=False)
    assert proc.returncode != 0 and "already in use" in proc.stderr
    assert (POOL / a).is_dir() and (POOL / b).is_dir()


def test_rename_of_an_enabled_container_moves_its_unit(nsp: CLI, busybox: str) -> None:
    old, new = nsp.name("renen"), nsp.name("renen")
    nsp("create", "--name", old, busybox, "sleep", "100")
    nsp("enable", old)
    nsp("rename", old, new)
    state = subprocess.run(
        ["systemctl", "is-enabled", f"systemd-nspawn@{new}.service"], capture_output=True, text=True
    )
    assert state.stdout.strip() == "enabled"
    assert not Path(f"/etc/systemd/system/systemd-nspawn@{old}.service.d").exists()
    nsp("start", new)
    wait_for(lambda: new in machines())
    assert unit_show(f"systemd-nspawn@{new}.service", "ActiveState")["ActiveState"] == "active"


# -- pause / unpause -----------------------------------------------------------------------
def test_pause_freezes_the_container_or_says_clearly_it_cannot(nsp: CLI, busybox: str) -> None:
    name = nsp.name("pause")
    nsp("run", "-d", "--name", name, busybox, "sh", "-c", "while true; do date +%s%N; sleep 0.1; done")
    if not cgroup_v2():
        # systemd freezes through cgroup v2 only: on a hybrid/legacy host a clean refusal
        proc = nsp("pause", name, check=False)
        assert proc.returncode == 125, proc.stderr
        assert proc.stderr.startswith(f"nspawnctl: error: cannot pause container {name}")
        assert "hint: freezing needs the unified cgroup v2 hierarchy" in proc.stderr
        assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"
        return
    nsp("pause", name)
    status = nsp.json("inspect", name)[0]["State"]
    assert status["Status"] == "paused" and status["Paused"] and status["Running"]
    # the kernel's word: the unit's cgroup is frozen (cgroup v2's freezer), not just a state we keep
    unit = unit_show(f"nspawnctl-{name}.service", "ControlGroup")["ControlGroup"]
    events = Path(f"/sys/fs/cgroup{unit}/cgroup.events").read_text()
    assert "frozen 1" in events.splitlines(), events
    assert "(Paused)" in nsp("ps").stdout
    time.sleep(0.5)  # lines already written reach the journal
    frozen = nsp("logs", name).stdout.count("\n")
    time.sleep(2)
    assert nsp("logs", name).stdout.count("\n") == frozen, "the payload went on while paused"
    proc = nsp("pause", name, check=False)
    assert proc.returncode != 0 and "already paused" in proc.stderr
    nsp("unpause", name)
    nsp.wait_logs(name, "\n", count=frozen + 5)
    assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"


def test_unpause_of_a_container_that_is_not_paused_is_an_error(nsp: CLI, busybox: str) -> None:
    name = nsp.name("unpause")
    nsp("run", "-d", "--name", name, busybox, "sleep", "100")
    proc = nsp("unpause", name, check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith(f"nspawnctl: error: container {name} is not paused")


# -- update --------------------------------------------------------------------------------
def test_update_changes_the_running_unit_and_the_definition(nsp: CLI, busybox: str) -> None:
    name = nsp.name("update")
    hold = "trap 'exit 0' TERM; sleep 100 & wait"  # ends on SIGTERM: the stop below is quick
    nsp("run", "-d", "--name", name, "--memory", "64m", busybox, "sh", "-c", hold)
    unit = f"nspawnctl-{name}.service"
    assert unit_show(unit, "MemoryMax")["MemoryMax"] == str(64 << 20)
    assert (
        nsp(
            "update", "--memory", "128m", "--cpus", "0.5", "--pids-limit", "50", "--restart", "always", name
        ).stdout
        == f"{name}\n"
    )
    shown = unit_show(unit, "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax")
    assert shown == {"MemoryMax": str(128 << 20), "CPUQuotaPerSecUSec": "500ms", "TasksMax": "50"}
    host = nsp.json("inspect", name)[0]["HostConfig"]
    assert host["Memory"] == 128 << 20 and host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 50
    assert host["RestartPolicy"]["Name"] == "always"
    generated = nsp("generate", name).stdout
    for line in ("MemoryMax=134217728", "CPUs=0.5", "TasksMax=50", "Restart=always"):
        assert line in generated, generated
    nsp("stop", name)
    nsp("start", name)  # the next start has them from the definition
    shown = unit_show(unit, "MemoryMax", "TasksMax", "Restart")
    assert shown == {"MemoryMax": str(128 << 20), "TasksMax": "50", "Restart": "always"}


def test_update_bad_values_are_refused_before_anything_changes(nsp: CLI, busybox: str) -> None:
    name = nsp.name("updbad")
    nsp("run", "-d", "--name", name, "--memory", "64m", busybox, "sleep", "100")
    proc = nsp("update", "--memory", "1k", name, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("nspawnctl: error: ")
    assert "hint:" in proc.stderr
    assert unit_show(f"nspawnctl-{name}.service", "MemoryMax")["MemoryMax"] == str(64 << 20)
    proc = nsp("update", name, check=False)
    assert proc.returncode == 2 and "nothing to update" in proc.stderr


# -- top -----------------------------------------------------------------------------------
def test_top_shows_the_payloads_processes_only(nsp: CLI, busybox: str) -> None:
    name = nsp.name("top")
    nsp("run", "-d", "--name", name, busybox, "sh", "-c", "sleep 4242 & sleep 4343")
    wait_for(lambda: "4242" in nsp("top", name).stdout)
    out = nsp("top", name).stdout.splitlines()
    assert out[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = [line.split(None, 7)[-1] for line in out[1:]]
    assert "sleep 4242" in cmds and "sleep 4343" in cmds
    assert not any("systemd-nspawn" in c for c in cmds), out  # nspawn itself is not the container's
    aux = nsp("top", name, "aux").stdout.splitlines()
    assert aux[0].split()[:2] == ["USER", "PID"] and any("sleep 4242" in line for line in aux)


def test_top_of_a_stopped_container_is_an_error(nsp: CLI, busybox: str) -> None:
    name = nsp.name("topstop")
    nsp("create", "--name", name, busybox, "true")
    proc = nsp("top", name, check=False)
    assert proc.returncode == 125 and f"container {name} is not running" in proc.stderr


# -- stats ---------------------------------------------------------------------------------
def test_stats_no_stream_prints_docker_columns_with_numbers(nsp: CLI, busybox: str) -> None:
    name = nsp.name("stats")
    # busy: CPU time grows; a process and its memory
    nsp("run", "-d", "--name", name, "--memory", "64m", busybox, "sh", "-c", "while :; do :; done")
    accounting = ("CPUAccounting", "MemoryAccounting", "IOAccounting", "TasksAccounting")
    assert set(unit_show(f"nspawnctl-{name}.service", *accounting).values()) == {"yes"}  # turned on at start
    out = nsp("stats", "--no-stream", name).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0])[:3] == ["CONTAINER ID", "NAME", "CPU %"], out
    for title in ("MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"):
        assert title in out[0]
    assert len(out) == 2 and name in out[1]
    row = json.loads(nsp("stats", "--no-stream", "--format", "{{json .}}", name).stdout)
    assert row["Name"] == name and row["ID"].startswith(row["Container"])
    assert row["MemUsage"].endswith(" / 64MiB"), row
    assert row["MemUsage"].split()[0] not in ("0B", "--"), row
    assert float(row["CPUPerc"].rstrip("%")) > 10, row  # a busy loop: near one CPU
    assert int(row["PIDs"]) >= 1, row
    # without names: the running containers; a stopped one with -a shows zeros
    stopped = nsp.name("stats")
    nsp("create", "--name", stopped, busybox, "true")
    listed = [
        json.loads(line)["Name"]
        for line in nsp("stats", "--no-stream", "--format", "{{json .}}").stdout.splitlines()
    ]
    assert name in listed and stopped not in listed
    assert stopped in nsp("stats", "--no-stream", "-a").stdout


def test_stats_streams_until_interrupted(nsp: CLI, busybox: str) -> None:
    name = nsp.name("statstream")
    nsp("run", "-d", "--name", name, busybox, "sleep", "100")
    proc = subprocess.Popen(
        ["nspawnctl", "stats", "--format", "{{json .}}", name], stdout=subprocess.PIPE, text=True
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)
    assert all(json.loads(line)["Name"] == name for line in lines)


# -- events --------------------------------------------------------------------------------
def test_events_prints_create_start_die_rename_destroy(nsp: CLI, busybox: str) -> None:
    name, new = nsp.name("ev"), nsp.name("ev")
    until = f"{time.time() + 40:.3f}"
    text = subprocess.Popen(
        [
            "nspawnctl",
            "events",
            "--until",
            until,
            "--filter",
            f"container={name}",
            "--filter",
            f"container={new}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    js = subprocess.Popen(
        ["nspawnctl", "events", "--until", until, "--format", "{{json .}}", "--filter", "event=die"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # both listen
        nsp("run", "-d", "--name", name, busybox, "sh", "-c", "sleep 1; exit 3")
        assert nsp("wait", name).stdout == "3\n"
        nsp("rename", name, new)
        nsp("rm", new)
        time.sleep(1)
    finally:
        text.terminate()
        js.terminate()
    lines = text.communicate(timeout=10)[0].splitlines()
    actions = [line.split()[2] for line in lines]
    assert actions == ["create", "start", "die", "rename", "destroy"], lines
    assert all(line.split()[1] == "container" for line in lines)
    assert lines[0].endswith(f"(image={busybox}, name={name})"), lines[0]
    assert f"(exitCode=3, image={busybox}, name={name})" in lines[2]
    assert f"oldName={name}" in lines[3] and f"name={new}" in lines[3]
    assert lines[0][:4].isdigit() and lines[0].split()[0].endswith("Z")
    dies = [json.loads(line) for line in js.communicate(timeout=10)[0].splitlines()]
    mine = [d for d in dies if d["Actor"]["Attributes"]["name"] == name]
    assert len(mine) == 1, dies
    assert mine[0]["Type"] == "container" and mine[0]["Action"] == "die" and mine[0]["status"] == "die"
    assert mine[0]["Actor"]["Attributes"]["exitCode"] == "3"
    assert mine[0]["id"] == lines[0].split()[3]


@pytest.mark.serial
def test_events_since_replays_past_starts_and_dies_from_the_journal(nsp: CLI, busybox: str) -> None:
    name = nsp.name("evpast")
    before = f"{time.time() - 1:.3f}"
    nsp("run", "--name", name, busybox, "sh", "-c", "exit 4", check=False)
    nsp("start", name)
    assert nsp("wait", name).stdout == "4\n"
    after = time.time() + 1
    for since in (before, "1m"):  # unix seconds and docker's duration (RFC 3339: parse_time's unit tests)
        proc = nsp("events", "--since", since, "--until", f"{after:.3f}", "--filter", f"container={name}",
                   "--format", "{{json .}}", timeout=60)  # fmt: skip
        got = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in got] == [
            ("create", None), ("start", None), ("die", "4"), ("start", None), ("die", "4"),
        ], got  # fmt: skip
        assert {e["id"] for e in got} == {nsp.json("inspect", name)[0]["Id"]}
        assert got[0]["timeNano"] >= float(before) * 1e9
    # a --since after them replays nothing
    assert nsp("events", "--since", f"{after:.3f}", "--until", f"{after + 0.5:.3f}", timeout=60).stdout == ""


def test_events_until_in_the_past_returns_at_once(nsp: CLI) -> None:
    proc = nsp("events", "--until", "1s", timeout=20)  # as docker's: a duration counts back from now
    assert proc.stdout == ""
    bad = nsp("events", "--filter", "colour=red", check=False)
    assert bad.returncode == 2 and "invalid --filter" in bad.stderr


# -- attach --------------------------------------------------------------------------------
def test_attach_follows_the_output_and_exits_with_the_containers_code(nsp: CLI, busybox: str) -> None:
    name = nsp.name("attach")
    nsp(
        "run",
        "-d",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "echo before; sleep 2; echo out; echo err >&2; exit 6",
    )
    proc = nsp("attach", name, timeout=60, check=False)
    assert proc.returncode == 6, proc.stderr
    assert proc.stdout == "out\n" and proc.stderr == "err\n"  # from now on, each on its own stream


def test_attach_ctrl_c_is_passed_on_or_detaches(nsp: CLI, busybox: str) -> None:
    import signal

    name = nsp.name("attachsig")
    nsp(
        "run",
        "-d",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "trap 'echo got INT; exit 9' INT; while :; do sleep 0.2; done",
    )
    detach = subprocess.Popen(
        ["nspawnctl", "attach", "--no-sig-proxy", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    detach.send_signal(signal.SIGINT)
    out, err = detach.communicate(timeout=20)
    assert detach.returncode == 0 and "detached" in err
    assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"
    proxy = subprocess.Popen(
        ["nspawnctl", "attach", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(2)
    proxy.send_signal(signal.SIGINT)
    out, err = proxy.communicate(timeout=30)
    assert proxy.returncode == 9, err
    assert "got INT" in out


def test_attach_to_a_stopped_container_is_an_error(nsp: CLI, busybox: str) -> None:
    name = nsp.name("attachstop")
    nsp("create", "--name", name, busybox, "true")
    proc = nsp("attach", name, check=False)
    assert proc.returncode == 125 and "it is not running" in proc.stderr and "hint:" in proc.stderr


@pytest.mark.surface
def test_lifecycle_help_documents_the_flags(nsp: CLI) -> None:
    for cmd, flags in {
        "wait": ["--condition"],
        "update": ["--memory", "--cpus", "--pids-limit", "--restart"],
        "stats": ["--no-stream", "--format", "--all"],
        "events": ["--since", "--until", "--filter", "--format"],
        "attach": ["--sig-proxy", "--no-stdin"],
    }.items():
        text = nsp(cmd, "--help").stdout
        for flag in flags:
            assert flag in text, (cmd, flag)


# -- attach with stdin (issue 14: run -d -i, --no-stdin, --detach-keys) ----------------------
READ_LOOP = 'echo ready; while read l; do echo "got:$l"; [ "$l" = quit ] && exit 4; done; echo eof'


def test_attach_forwards_stdin_to_a_container_run_with_i(nsp: CLI, busybox: str) -> None:
    name = nsp.name("attachin")
    nsp("run", "-d", "-i", "--name", name, busybox, "sh", "-c", READ_LOOP)
    nsp.wait_logs(name, "ready")
    assert "OpenStdin=yes" in nsp("generate", name).stdout  # the container's own setting
    r, w = os.pipe()
    os.write(w, b"not-forwarded\n")
    os.close(w)  # its end must not end the payload's input either
    quiet = subprocess.Popen(
        ["nspawnctl", "attach", "--no-stdin", name], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(r)
    time.sleep(2)  # it follows from now: let it begin
    proc = nsp("attach", name, input=b"hello\nquit\n", timeout=60, check=False)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == "got:hello\ngot:quit\n"
    out, _ = quiet.communicate(timeout=30)
    assert quiet.returncode == 4 and b"got:hello" in out  # the other client saw the same output
    assert "not-forwarded" not in nsp("logs", name).stdout


def test_attach_detach_keys_leave_the_container_running(nsp: CLI, busybox: str) -> None:
    name = nsp.name("attachkeys")
    nsp("run", "-d", "-i", "--name", name, busybox, "sh", "-c", READ_LOOP)
    nsp.wait_logs(name, "ready")
    proc = nsp("attach", name, input=b"one\n\x10\x11two\n", timeout=60, check=False)
    assert proc.returncode == 0 and "detached" in proc.stderr, proc.stderr
    nsp.wait_logs(name, "got:one")
    assert nsp.json("inspect", name)[0]["State"]["Status"] == "running"
    # its own keys; a stdin that ends without them leaves the payload's stdin open
    proc = nsp("attach", "--detach-keys", "ctrl-x,q", name, input=b"three\n\x18q", timeout=60, check=False)
    assert proc.returncode == 0 and "detached" in proc.stderr, proc.stderr
    logs = nsp.wait_logs(name, "got:three")
    assert "got:two" not in logs and "eof" not in logs
    assert "--detach-keys" in nsp("attach", "--help").stdout
    bad = nsp("attach", "--detach-keys", "ctrl-1", name, check=False)
    assert bad.returncode == 2 and "detach keys" in bad.stderr and "hint:" in bad.stderr


def test_run_d_i_definition_round_trips_through_generate_rm_apply(
    nsp: CLI, busybox: str, tmp_path: Path
) -> None:
    name = nsp.name("attachgen")
    nsp("run", "-d", "-i", "--name", name, busybox, "sh", "-c", READ_LOOP)
    text = nsp("generate", name).stdout
    assert "OpenStdin=yes" in text
    defs = Path("/var/tmp") / f"nspawnctl-attachgen-{name}"
    defs.mkdir()
    try:
        (defs / f"{name}.nspawn").write_text(text)
        nsp("rm", "-f", name)
        assert nsp("apply", str(defs)).stdout == f"{name} created\n"
        assert nsp("generate", name).stdout == text
    finally:
        for f in defs.iterdir():
            f.unlink()
        defs.rmdir()
