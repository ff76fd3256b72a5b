"""Running containers: output, exit codes, detached units, logs, exec, isolation, limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, drive_pty, subvolumes, unit_show


@pytest.mark.surface
def test_run_prints_output_and_returns_exit_code(nsp: CLI, busybox: str) -> None:
    ok = nsp("run", "--rm", busybox, "echo", "hello", "world")
    assert ok.returncode == 0 and ok.stdout == "hello world\n"
    bad = nsp("run", "--rm", busybox, "sh", "-c", "echo to-out; echo to-err >&2; exit 3", check=False)
    assert bad.returncode == 3
    assert bad.stdout == "to-out\n" and bad.stderr == "to-err\n"


@pytest.mark.surface
def test_payload_argv_is_exact(nsp: CLI, busybox: str) -> None:
    args = ["--rm", "-d", "$HOME", "it's", 'a "b"', "back\\slash", "%n", "two  spaces"]
    out = nsp("run", "--rm", busybox, "sh", "-c", 'for a in "$@"; do echo "[$a]"; done', "sh", *args)
    assert out.stdout.splitlines() == [f"[{a}]" for a in args]


@pytest.mark.surface
def test_run_detached_is_a_transient_unit_seen_by_ps_machinectl_systemctl(nsp: CLI, busybox: str) -> None:
    name = nsp.name("web")
    assert nsp("run", "-d", "--name", name, busybox, "sleep", "300").stdout.strip() == name
    assert name in nsp("ps", "-q").stdout.split()
    row = [line for line in nsp("ps").stdout.splitlines() if line.split()[-1:] == [name]][0]
    assert "Up" in row and busybox in row
    machines = subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout
    assert name in machines
    status = subprocess.run(
        ["systemctl", "status", f"nspawnctl-{name}.service", "--no-pager"], capture_output=True, text=True
    ).stdout
    assert "Transient: yes" in status and "active (running)" in status
    ps = nsp.json("ps")
    entry = [c for c in ps if c["Name"] == name][0]
    assert entry["State"]["Running"] is True and entry["Command"] == ["sleep", "300"]


@pytest.mark.surface
def test_logs_and_follow(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp(
        "run",
        "-d",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        "echo first; sleep 3; echo second; sleep 3; echo third",
    )
    assert nsp.wait_logs(name, "first") == "first\n"
    with open(Path("/var/tmp") / f"{name}.follow", "w+") as out:  # a file, not a tty: lines must be flushed
        follower = subprocess.Popen(["nspawnctl", "logs", "-f", name], stdout=out)
        deadline = time.time() + 10
        while time.time() < deadline and "second" not in Path(out.name).read_text():
            time.sleep(0.2)
        assert Path(out.name).read_text() == "first\nsecond\n"
        assert follower.wait(timeout=15) == 0  # ends when the container does
        assert Path(out.name).read_text() == "first\nsecond\nthird\n"
    stamped = nsp("logs", "-t", "-n", "1", name).stdout
    assert stamped.endswith(" third\n") and stamped[:4].isdigit()
    # every run of the container is kept
    nsp("start", name)
    assert nsp.wait_logs(name, "first\n", count=2).count("first\n") == 2


def test_logs_since(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "--name", name, busybox, "echo", "old line")
    assert nsp("logs", "--since", "10m", name).stdout == "old line\n"
    time.sleep(1.5)
    assert nsp("logs", "--since", "1s", name).stdout == ""
    assert nsp("logs", "--since", "2000-01-01 00:00:00", name).stdout == "old line\n"
    bad = nsp("logs", "--since", "not a time", name, check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("nspawnctl: error:")


def test_commands_take_several_names(nsp: CLI, busybox: str) -> None:
    names = [nsp.name(), nsp.name()]
    for n in names:
        nsp("create", "--name", n, busybox, "sleep", "300")
    assert nsp("start", *names).stdout.split() == names
    assert set(names) <= set(nsp("ps", "-q").stdout.split())
    assert nsp("kill", "-s", "TERM", *names).returncode == 0
    nsp("start", *names)
    assert nsp("stop", "-t", "1", *names).stdout.split() == names
    assert not set(names) & set(nsp("ps", "-q").stdout.split())
    partly = nsp("rm", names[0], "no-such-one", names[1], check=False)
    assert partly.returncode == 1 and "no such container: no-such-one" in partly.stderr
    assert partly.stdout.split() == names
    assert not set(names) & set(nsp("ps", "-aq").stdout.split())


@pytest.mark.surface
def test_exec_runs_in_the_container_and_returns_its_code(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "-d", "--name", name, "-e", "FROM_RUN=yes", busybox, "sleep", "300")
    out = nsp(
        "exec",
        "-e",
        "EXTRA=1",
        name,
        "sh",
        "-c",
        "echo $FROM_RUN $EXTRA; cat /etc/marker; exit 7",
        check=False,
    )
    assert out.returncode == 7
    assert out.stdout == "yes 1\nbusybox\n"
    # it sees the container's processes, not the host's
    ps = nsp("exec", name, "ps", "-o", "pid,comm").stdout
    assert "sleep" in ps and "systemd" not in ps


def test_exec_stdin_only_with_i(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "-d", "--name", name, busybox, "sleep", "300")
    without = nsp("exec", name, "sh", "-c", "cat; echo end", input=b"typed\n")
    assert without.stdout == "end\n"
    with_i = nsp("exec", "-i", name, "sh", "-c", "cat; echo end", input=b"typed\n")
    assert with_i.stdout == "typed\nend\n"


def test_exec_into_booted_container(nsp: CLI, boot_image: str) -> None:
    name = nsp.name("boot")
    nsp("run", "-d", "--boot", "--name", name, boot_image)
    state = nsp("exec", name, "systemctl", "is-system-running", "--wait", check=False, timeout=120)
    assert state.stdout.strip() in ("running", "degraded"), state.stdout + state.stderr
    assert nsp("exec", name, "sh", "-c", "exit 9", check=False).returncode == 9


def test_boot_reaches_running(nsp: CLI, boot_image: str) -> None:
    name = nsp.name("boot")
    nsp("run", "-d", "--boot", "--name", name, boot_image)
    out = subprocess.run(
        ["systemctl", "-M", name, "is-system-running", "--wait"], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() in ("running", "degraded")
    t0 = time.monotonic()
    nsp("stop", name)
    assert time.monotonic() - t0 < 10  # an orderly shutdown, not the kill after the timeout
    assert [c for c in nsp.json("ps", "-a") if c["Name"] == name][0]["State"]["ExitCode"] == 0


@pytest.mark.serial
def test_stop_within_timeout_and_kill(nsp: CLI, busybox: str) -> None:
    graceful = nsp.name()
    nsp(
        "run",
        "-d",
        "--name",
        graceful,
        busybox,
        "sh",
        "-c",
        'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done',
    )
    nsp.wait_logs(graceful, "ready")
    t0 = time.monotonic()
    nsp("stop", graceful)
    assert time.monotonic() - t0 < 5
    assert nsp("logs", graceful).stdout == "ready\ngot TERM\n"
    stubborn = nsp.name()  # sh as PID 1 ignores SIGTERM: killed after -t
    nsp("run", "-d", "--name", stubborn, busybox, "sleep", "300")
    t0 = time.monotonic()
    nsp("stop", "-t", "2", stubborn)
    took = time.monotonic() - t0
    assert 1.5 < took < 10
    killed = nsp.name()
    nsp("run", "-d", "--name", killed, busybox, "sleep", "300")
    nsp("kill", killed)
    states = {c["Name"]: c["State"] for c in nsp.json("ps", "-a")}
    assert states[graceful]["ExitCode"] == 0
    assert states[stubborn]["ExitCode"] == 137 and not states[stubborn]["Running"]
    assert states[killed]["ExitCode"] == 137
    assert "Exited (137)" in nsp("ps", "-a").stdout
    # stopping a stopped container is fine, as in docker
    assert nsp("stop", graceful).returncode == 0


def test_kill_with_signal(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp(
        "run",
        "-d",
        "--name",
        name,
        busybox,
        "sh",
        "-c",
        'trap "echo got HUP" HUP; echo ready; while true; do sleep 0.1; done',
    )
    nsp.wait_logs(name, "ready")
    nsp("kill", "-s", "HUP", name)
    assert "got HUP" in nsp.wait_logs(name, "got HUP")
    assert name in nsp("ps", "-q").stdout.split()


def test_rm_removes_the_snapshot(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("create", "--name", name, busybox, "true")
    assert f"path {name}\n" in subvolumes() or subvolumes().rstrip().endswith(f" {name}")
    assert Path(f"/etc/systemd/nspawn/{name}.nspawn").is_file()
    running = nsp.name()
    nsp("run", "-d", "--name", running, busybox, "sleep", "300")
    refused = nsp("rm", running, check=False)
    assert refused.returncode != 0 and "is running" in refused.stderr
    nsp("rm", name)
    nsp("rm", "-f", running)
    for n in (name, running):
        assert n not in subvolumes()
        assert not Path(f"/var/lib/machines/{n}").exists()
        assert not Path(f"/etc/systemd/nspawn/{n}.nspawn").exists()
    assert not {name, running} & set(nsp("ps", "-aq").stdout.split())


def test_run_rm_leaves_nothing_behind(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "--rm", "--name", name, busybox, "sh", "-c", "exit 2", check=False)
    detached = nsp.name()
    nsp("run", "-d", "--rm", "--name", detached, busybox, "true")
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/var/lib/machines/{detached}").exists():
        time.sleep(0.2)
    for n in (name, detached):
        assert n not in subvolumes()
        assert not Path(f"/var/lib/machines/{n}").exists()
        assert not Path(f"/run/systemd/nspawn/{n}.nspawn").exists()
        assert not Path(f"/etc/systemd/nspawn/{n}.nspawn").exists()
        assert n not in nsp("ps", "-aq").stdout.split()
        load = unit_show(f"nspawnctl-{n}.service", "LoadState")["LoadState"]
        assert load == "not-found"


def test_containers_of_one_image_are_isolated(nsp: CLI, busybox: str) -> None:
    a, b = nsp.name(), nsp.name()
    nsp("run", "--name", a, busybox, "sh", "-c", "echo mine > /root/secret")
    out = nsp("run", "--name", b, busybox, "sh", "-c", "cat /root/secret 2>/dev/null || echo absent")
    assert out.stdout == "absent\n"
    assert Path(f"/var/lib/machines/{a}/root/secret").read_text() == "mine\n"
    assert nsp("run", "--rm", busybox, "ls", "/root").stdout == ""


@pytest.mark.surface
def test_resource_limits_are_on_the_unit(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp(
        "run",
        "-d",
        "--name",
        name,
        "--memory",
        "64M",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        busybox,
        "sleep",
        "300",
    )
    props = unit_show(
        f"nspawnctl-{name}.service", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "Delegate", "Slice"
    )
    assert props["MemoryMax"] == str(64 * 1024 * 1024)
    assert props["CPUQuotaPerSecUSec"] == "500ms"
    assert props["TasksMax"] == "50"
    assert props["Delegate"] == "yes" and props["Slice"] == "machine.slice"
    inspect = nsp.json("inspect", name)[0]
    host = inspect["HostConfig"]
    assert {k: host[k] for k in ("Memory", "NanoCpus", "PidsLimit", "RestartPolicy")} == {
        "Memory": 64 << 20,
        "NanoCpus": 500_000_000,
        "PidsLimit": 50,
        "RestartPolicy": {"Name": "no"},
    }


def test_env_volume_workdir_user_hostname(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    vol = Path("/var/tmp") / f"vol-{os.getpid()}"
    vol.mkdir(exist_ok=True)
    (vol / "in").write_text("from host\n")
    env_file = vol / "env"
    env_file.write_text("# comment\nFROM_FILE=f\n")
    out = nsp(
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B=two words",
        "--env-file",
        str(env_file),
        "-v",
        f"{vol}:/data",
        "-w",
        "/data",
        "--hostname",
        "box",
        "-u",
        "nobody",
        busybox,
        "sh",
        "-c",
        'echo "$A|$B|$FROM_FILE|$(pwd)|$(hostname)|$(id -u)"; cat in',
    )
    assert out.stdout == "1|two words|f|/data|box|65534\nfrom host\n"
    nsp("run", "--rm", "-v", f"{vol}:/data", busybox, "sh", "-c", "echo from container > /data/out")
    assert (vol / "out").read_text() == "from container\n"
    ro = nsp("run", "--rm", "-v", f"{vol}:/data:ro", busybox, "sh", "-c", "echo x > /data/nope", check=False)
    assert ro.returncode != 0 and not (vol / "nope").exists()


def test_create_then_start_and_restart(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("create", "--name", name, busybox, "sh", "-c", "echo started; sleep 300")
    assert "Created" in [ln for ln in nsp("ps", "-a").stdout.splitlines() if ln.split()[-1:] == [name]][0]
    nsp("start", name)
    assert name in nsp("ps", "-q").stdout.split()
    nsp("restart", "-t", "1", name)
    assert name in nsp("ps", "-q").stdout.split()
    assert nsp.wait_logs(name, "started", count=2) == "started\nstarted\n"


@pytest.mark.surface
def test_interactive_tty(nsp: CLI, busybox: str) -> None:
    out, code = drive_pty(
        ["nspawnctl", "run", "--rm", "-it", busybox, "sh"], b"tty; echo marker-$((6*7)); exit 4\n"
    )
    assert b"marker-42" in out and b"/dev/pts/" in out
    assert code == 4


def test_stdin_is_passed_with_i(nsp: CLI, busybox: str) -> None:
    out = nsp(
        "run",
        "--rm",
        "-i",
        busybox,
        "sh",
        "-c",
        'read a; read b; echo "$b $a"; exit 6',
        input=b"one\ntwo\n",
        check=False,
    )
    assert out.returncode == 6 and out.stdout == "two one\n"


def test_ctrl_c_reaches_the_payload(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    proc = subprocess.Popen(
        [
            "nspawnctl",
            "run",
            "--name",
            name,
            busybox,
            "sh",
            "-c",
            'trap "echo got INT; exit 130" INT; echo ready; while true; do sleep 0.1; done',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=20) == 130
    assert "got INT" in rest


@pytest.mark.surface
def test_ps_and_inspect_json(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "--name", name, busybox, "sh", "-c", "exit 5", check=False)
    info = nsp.json("inspect", name)[0]
    assert info["Name"] == name and info["State"]["ExitCode"] == 5 and info["State"]["Status"] == "exited"
    assert info["Unit"] == f"nspawnctl-{name}.service"
    assert json.loads(nsp("ps", "-a", "--json").stdout)
    image = nsp.json("inspect", busybox)[0]
    assert busybox in image["refs"]
    missing = nsp("inspect", "nothing-here", check=False)  # JSON by default: so is the error, said once
    assert missing.returncode == 125 and missing.stderr == ""
    assert json.loads(missing.stdout)["error"]["message"] == "no such container or image: nothing-here"


def test_a_flood_of_output_reaches_run_and_logs_whole(nsp: CLI, busybox: str) -> None:
    """journald's rate limit (10000 lines per 30 s, scaled by free disk) once cut this at 37500."""
    out = nsp("run", "--rm", busybox, "seq", "1", "100000")
    lines = out.stdout.splitlines()
    assert len(lines) == 100000 and lines[-1] == "100000"
