"""``exec`` runs under the container's own confinement (issue 14), as docker's exec does: the
payload's capability bounding set, no-new-privileges, rlimits and cgroup (so the unit's limits bind
it and ``stop`` ends it); ``exec -d`` and the Docker API's exec the same way. One container serves
most asserts; its PID 1 is the payload, so ``/proc/1/status`` inside is what the payload got."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI

CAP_NET_RAW, CAP_SYS_ADMIN = 13, 21
SHOW = (
    "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; grep -E '^(CapBnd|NoNewPrivs):' /proc/1/status"
)


def fields(text: str) -> dict[str, list[str]]:
    """The status lines printed, by field: [exec's own, the payload's] where both were printed."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key, []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def confined(cli: CLI, busybox: str) -> str:
    name = cli.name("conf")
    cli(
        "run", "-d", "--name", name, "--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges",
        "--ulimit", "nofile=512:1024", "--pids-limit", "64", "--memory", "256m", busybox, "sleep", "600",
    )  # fmt: skip
    return name


def host_pids_of(marker: str) -> list[int]:
    """Host PIDs of ``sleep MARKER`` (a number of seconds no other test sleeps; the test host has
    no pgrep, and the callers' command lines hold the marker too)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                    out.append(int(entry))
            except OSError:
                pass
    return out


def wait_for_pid(marker: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (pids := host_pids_of(marker)):
        assert time.monotonic() < deadline, f"no process {marker}"
        time.sleep(0.05)
    return pids[0]


def test_exec_gets_the_payloads_capabilities_no_new_privs_and_limits(cli: CLI, confined: str) -> None:
    out = cli("exec", confined, "sh", "-c", SHOW + "; grep 'open files' /proc/self/limits").stdout
    got = fields(out)
    own, payload = got["CapBnd"]
    assert own == payload and not int(own, 16) >> CAP_NET_RAW & 1, got
    assert got["CapEff"] == [own], got  # root: the bounding set
    assert got["NoNewPrivs"] == ["1", "1"], got
    limits = next(line for line in out.splitlines() if line.startswith("Max open files")).split()
    assert limits[3:5] == ["512", "1024"], limits
    # another user: the same bounding set, no effective capabilities (docker's exec -u)
    user = fields(cli("exec", "-u", "1:1", confined, "sh", "-c", SHOW).stdout)
    assert user["CapBnd"] == [own, own] and int(user["CapEff"][0], 16) == 0, user
    # the settings stay in the definition: generate recreates them
    text = cli("generate", confined).stdout.splitlines()
    assert (
        "DropCapability=CAP_NET_RAW" in text
        and "NoNewPrivileges=yes" in text
        and "LimitNOFILE=512:1024" in text
    )


def test_cap_drop_all_cap_add_chown_and_privileged(cli: CLI, busybox: str) -> None:
    only, priv = cli.name("chown"), cli.name("priv")
    cli("run", "-d", "--name", only, "--cap-drop", "ALL", "--cap-add", "CHOWN", busybox, "sleep", "600")
    cli("run", "-d", "--name", priv, "--privileged", busybox, "sleep", "600")
    got = fields(cli("exec", only, "sh", "-c", SHOW).stdout)
    assert got["CapBnd"] == ["0000000000000001"] * 2 and got["CapEff"] == ["0000000000000001"], got
    full = fields(cli("exec", priv, "sh", "-c", SHOW).stdout)
    own, payload = full["CapBnd"]
    assert own == payload and int(full["CapEff"][0], 16) >> CAP_SYS_ADMIN & 1, full
    assert full["NoNewPrivs"] == ["0", "0"]


def test_exec_runs_in_the_containers_cgroup_and_stop_ends_it(cli: CLI, busybox: str) -> None:
    name = cli.name("cg")
    cli("run", "-d", "--name", name, "--pids-limit", "64", "--memory", "256m", busybox, "sleep", "600")
    # inside: the exec's cgroup is the payload's (the container's cgroup namespace root)
    inside = cli("exec", name, "sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup").stdout
    own, payload = (
        [line for line in part.splitlines() if line.startswith("0::")] for part in inside.split("--\n")
    )  # the unified hierarchy's (v1 ones are listed too on a hybrid kernel, unmounted in a unified host)
    assert own == payload == ["0::/"], inside
    unit = f"nspawnctl-{name}.service"
    # a foreground exec and an exec -d (its own transient unit), seen from the host
    marker_fg = str(random.randrange(100000, 200000))
    marker_d = str(int(marker_fg) + 100000)
    fg = subprocess.Popen(
        ["nspawnctl", "exec", name, "sleep", marker_fg],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        cli("exec", "-d", name, "sleep", marker_d)
        for marker in (marker_fg, marker_d):
            cgroup = Path(f"/proc/{wait_for_pid(marker)}/cgroup").read_text()
            assert f"/{unit}/" in cgroup, (marker, cgroup)
        tasks = subprocess.run(
            ["systemctl", "show", "-P", "TasksCurrent", unit], capture_output=True, text=True
        ).stdout.strip()
        assert not tasks.isdigit() or int(tasks) >= 3, tasks  # payload + both execs (when accounted)
        cli("stop", "-t", "2", name)
        code = fg.wait(timeout=60)
        assert code != 0, code
        assert not host_pids_of(marker_fg) and not host_pids_of(marker_d)
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()


def test_exec_in_a_paused_container_is_refused(cli: CLI, confined: str) -> None:
    """Joining a frozen cgroup would hang the exec: refused, as docker's. Pausing needs cgroup v2
    (tests/host/test_cgroup_unified.py runs this in a unified host; hybrid hosts refuse pause)."""
    if cli("pause", confined, check=False).returncode != 0:
        pytest.skip("pause needs the unified cgroup hierarchy")
    try:
        proc = cli("exec", confined, "true", check=False, timeout=30)
        assert proc.returncode == 125 and "paused" in proc.stderr, proc
    finally:
        cli("unpause", confined)
    assert cli("exec", confined, "true").returncode == 0


@pytest.mark.serial
def test_docker_exec_through_the_api(cli: CLI, confined: str) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI in this test host (Debian 12)")
    subprocess.run(["nspawnctl", "system", "service", "enable"], check=True, capture_output=True)
    try:
        env = {**os.environ, "DOCKER_HOST": "unix:///run/nspawnctl/docker.sock"}
        proc = subprocess.run(
            ["docker", "exec", confined, "sh", "-c", SHOW],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        got = fields(proc.stdout)
        assert got["CapBnd"][0] == got["CapBnd"][1] and got["NoNewPrivs"] == ["1", "1"], got
    finally:
        subprocess.run(["nspawnctl", "system", "service", "disable"], capture_output=True)


def test_the_containers_variables_never_reach_the_hosts_loader(cli: CLI, busybox: str) -> None:
    """The exec helper runs as root on the host until it has entered the container: the
    container's variables (an image's Env, -e) must not reach the host's dynamic loader there.
    ``LD_DEBUG_OUTPUT`` makes the loader of every dynamic program that gets it write a file: on
    the host before the fix (an image's ``LD_PRELOAD`` of a file in its root was host root)."""
    marker = f"/tmp/nspawnctl-e2e-lddbg-{random.randrange(1 << 32):08x}"
    name = cli.name("ldenv")
    env = ["-e", "LD_DEBUG=libs", "-e", f"LD_DEBUG_OUTPUT={marker}"]
    cli("run", "-d", "--name", name, *env, busybox, "sleep", "600")
    try:
        # the command still gets them, in the container
        seen = cli("exec", name, "sh", "-c", "echo $LD_DEBUG $LD_DEBUG_OUTPUT").stdout.split()
        assert seen == ["libs", marker]
        # exec -it: under a pty (script(1) gives the CLI a terminal), the variables as well
        line = f"nspawnctl exec -it {name} sh -c 'echo $LD_DEBUG; test -t 0 && test -t 1 && echo tty'"
        script = ["script", "-qec", line, "/dev/null"]
        tty = subprocess.run(script, capture_output=True, text=True, timeout=60)
        assert tty.returncode == 0 and tty.stdout.split() == ["libs", "tty"], tty
        cli("exec", "-d", name, "sh", "-c", "echo $LD_DEBUG > /tmp/seen-d")
        deadline = time.monotonic() + 30
        while cli("exec", name, "cat", "/tmp/seen-d", check=False).stdout.strip() != "libs":
            assert time.monotonic() < deadline, "exec -d did not run with the container's variables"
            time.sleep(0.1)
        leaked = list(Path("/tmp").glob(Path(marker).name + "*"))
        assert not leaked, f"the host's loader saw LD_DEBUG_OUTPUT: {leaked}"
    finally:
        cli("rm", "-f", name, check=False)
