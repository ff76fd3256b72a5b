"""Declared containers: apply/diff/down of a directory of .nspawn files, machinectl start of one,
errors with FILE:LINE that change nothing, generate -> rm -> apply."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, unit_show

SETTINGS = Path("/etc/systemd/nspawn")
POOL = Path("/var/lib/machines")
DROPINS = Path("/etc/systemd/system")


def payload(line: str) -> str:
    """The declared containers' command: says ``line``, then waits; it ends on SIGTERM, so a stop or
    restart does not wait out the stop timeout (10 s) as a PID 1 that ignores SIGTERM would."""
    return f"sh -c \"trap 'exit 0' TERM; echo {line}; sleep 600 & wait\""


def shown(line: str) -> str:
    """payload() as `diff` shows it (shell-quoted)."""
    return shlex.join(["sh", "-c", f"trap 'exit 0' TERM; echo {line}; sleep 600 & wait"])


def definition(image: str, line: str, network: str = "none", extra: str = "") -> str:
    return f"""# a declared container
[Exec]
Parameters={payload(line)}
Environment=GREETING=hello

[X-Nspawnctl]
Image={image}
Network={network}
{extra}"""


@pytest.fixture
def defs() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-declare-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def unit(name: str) -> str:
    return f"systemd-nspawn@{name}.service"


def invocation(name: str) -> str:
    return unit_show(unit(name), "InvocationID")["InvocationID"]


def wait_state(nsp: CLI, name: str, running: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (name in nsp("ps", "-q").stdout.split()) == running:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not become {'running' if running else 'stopped'}")


def traces(name: str) -> list[Path]:
    """Everything a container leaves on the host."""
    paths = [SETTINGS / f"{name}.nspawn", POOL / name, DROPINS / f"{unit(name)}.d"]
    return [p for p in paths if p.exists()]


def test_apply_dir_restarts_only_what_changed_machinectl_start_and_down(
    nsp: CLI, busybox: str, defs: Path
) -> None:
    a, b = nsp.name("da"), nsp.name("db")
    (defs / f"{a}.nspawn").write_text(definition(busybox, "a-up"))
    (defs / f"{b}.nspawn").write_text(definition(busybox, "b-up", network="host"))
    out = nsp("apply", str(defs)).stdout.splitlines()
    assert sorted(out) == sorted([f"{a} created", f"{b} created"])
    nsp.wait_logs(a, "a-up")
    nsp.wait_logs(b, "b-up")
    assert {a, b} <= set(nsp("ps", "-q").stdout.split())
    for name in (a, b):
        assert unit_show(unit(name), "ActiveState")["ActiveState"] == "active"
        state = subprocess.run(["systemctl", "is-enabled", unit(name)], capture_output=True, text=True)
        assert state.stdout.strip() == "enabled"
    # the installed file keeps the user's comment, gains the generated keys
    installed = (SETTINGS / f"{a}.nspawn").read_text()
    assert installed.startswith("# a declared container") and "ImageId=sha256:" in installed
    assert nsp("diff", str(defs)).stdout == ""
    assert nsp("diff", "--exit-code", str(defs)).returncode == 0
    inv_a, inv_b = invocation(a), invocation(b)

    (defs / f"{a}.nspawn").write_text(definition(busybox, "a-v2"))
    d = nsp("diff", str(defs))
    change = f"    [Exec] Parameters: {shown('a-up')} -> {shown('a-v2')}"
    assert d.stdout.splitlines() == [f"~ {a}", change]
    assert nsp("diff", "--exit-code", str(defs), check=False).returncode == 1
    out = nsp("apply", str(defs)).stdout.splitlines()
    assert sorted(out) == sorted([f"{a} updated (restarted)", f"{b} unchanged"])
    nsp.wait_logs(a, "a-v2")
    assert invocation(a) != inv_a
    assert invocation(b) == inv_b and nsp("logs", b).stdout.count("b-up") == 1

    # persistent: machinectl starts it without nspawnctl, the same unit
    nsp("stop", b)
    wait_state(nsp, b, running=False)
    subprocess.run(["machinectl", "start", b], check=True, timeout=60)
    wait_state(nsp, b, running=True)
    assert nsp.wait_logs(b, "b-up", count=2).count("b-up") == 2

    out = nsp("down", str(defs)).stdout.splitlines()
    assert sorted(out) == sorted([f"{a} removed", f"{b} removed"])
    names = set(nsp("ps", "-a", "-q").stdout.split())
    assert a not in names and b not in names
    assert traces(a) == [] and traces(b) == []
    gone = nsp("down", str(defs))  # nothing left: reported, not a failure
    assert gone.returncode == 0 and f"{a}: no such container" in gone.stderr


def test_bad_files_are_reported_with_file_and_line_and_change_nothing(
    nsp: CLI, busybox: str, defs: Path
) -> None:
    good, bad = nsp.name("dg"), nsp.name("dx")
    good_file = defs / f"{good}.nspawn"
    good_file.write_text(definition(busybox, "good-up"))
    nsp("apply", str(defs))
    nsp.wait_logs(good, "good-up")
    inv = invocation(good)
    before = good_file.read_text()
    installed = (SETTINGS / f"{good}.nspawn").read_text()

    # a changed good file next to a broken one: neither is applied
    good_file.write_text(definition(busybox, "good-v2"))
    bad_file = defs / f"{bad}.nspawn"
    bad_file.write_text("[Exec]\nParameters=sleep 1\nthis line is wrong\n[X-Nspawnctl]\nImage=x\n")
    r = nsp("apply", str(defs), check=False)
    assert r.returncode != 0 and f"{bad_file}:3:" in r.stderr, r.stderr
    # an image that is neither here nor anywhere to pull it from
    bad_file.write_text(definition("127.0.0.1:9/nowhere/img:v1", "never", extra="Restart=no\n"))
    r = nsp("apply", str(defs), check=False)
    assert r.returncode != 0 and f"{bad_file}:7: image 127.0.0.1:9/nowhere/img:v1" in r.stderr, r.stderr
    assert traces(bad) == [] and bad not in nsp("ps", "-a", "-q").stdout.split()
    assert (SETTINGS / f"{good}.nspawn").read_text() == installed
    assert invocation(good) == inv and nsp("logs", good).stdout.count("good-up") == 1
    good_file.write_text(before)
    bad_file.unlink()
    assert nsp("apply", str(defs)).stdout == f"{good} unchanged\n"


def test_values_python_cannot_read_as_numbers_are_reported_with_file_and_line(
    nsp: CLI, busybox: str, defs: Path
) -> None:
    # found by the fuzzer (tests/fuzz/corpus/nspawn): "²" passed str.isdigit() and crashed apply
    bad = nsp.name("dd")
    f = defs / f"{bad}.nspawn"
    f.write_text(f"[X-Nspawnctl]\nImage={busybox}\nTasksMax=\u00b2\n[Network]\nPort=\u00b2:80\n")
    r = nsp("apply", str(defs), check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{f}:3: TasksMax=\u00b2: not a whole number of processes" in r.stderr, r.stderr
    assert f"{f}:5: Port=\u00b2:80: invalid port mapping" in r.stderr, r.stderr
    assert bad not in nsp("ps", "-a", "-q").stdout.split() and traces(bad) == []


@pytest.mark.surface
def test_generate_rm_apply_round_trip(nsp: CLI, busybox: str, defs: Path) -> None:
    name = nsp.name("gen")
    data = defs / "data"
    data.mkdir()
    nsp(
        "run", "-d", "--name", name, "--network", "none", "--restart", "on-failure",
        "-e", "A=two words", "-v", f"{data}:/data", "-w", "/data",
        busybox, "sh", "-c", "echo gen-up \"$A\"; exec sleep 600",
    )  # fmt: skip
    nsp.wait_logs(name, "gen-up two words")
    before = nsp.json("inspect", name)[0]
    text = nsp("generate", name).stdout
    assert "Id=" not in text.replace("ImageId", "") and "ImageId=" not in text and "Created=" not in text
    assert f"Image={busybox}" in text and "Environment='A=two words'" in text
    (defs / f"{name}.nspawn").write_text(text)
    nsp("rm", "-f", name)
    assert traces(name) == []
    assert nsp("diff", str(defs)).stdout == f"+ {name} (new, image {busybox})\n"
    assert nsp("apply", str(defs)).stdout == f"{name} created\n"
    # a new container of the same name: its logs are its own run's
    assert "gen-up two words" in nsp.wait_logs(name, "gen-up two words")
    after = nsp.json("inspect", name)[0]
    for key in ("Image", "ImageId", "Command", "Config"):
        assert after[key] == before[key], key
    assert nsp("diff", str(defs)).stdout == ""
    regenerated = nsp("generate", name).stdout
    assert regenerated == text


def test_run_options_are_recorded_and_refused_together(nsp: CLI, busybox: str) -> None:
    name = nsp.name("opt")
    nsp(
        "create",
        "--name",
        name,
        "--network",
        "none",
        "--restart",
        "always",
        "--userns",
        "host",
        busybox,
        "true",
    )
    f = (SETTINGS / f"{name}.nspawn").read_text()
    assert "Restart=always" in f and "Network=none" in f and "PrivateUsers=no" in f
    r = nsp("run", "--rm", "--restart", "always", busybox, "true", check=False)
    assert r.returncode == 2 and "--restart cannot be combined with --rm" in r.stderr
    r = nsp("run", "--rm", "--network", "host", "-p", "8080:80", busybox, "true", check=False)
    assert r.returncode == 2 and "-p needs a network of the container's own" in r.stderr
    r = nsp("run", "--rm", "--network", "bad/net", busybox, "true", check=False)  # bridge: docker's veth
    assert r.returncode == 2 and "invalid network" in r.stderr
    assert json.loads(nsp("inspect", name).stdout)[0]["Name"] == name


@pytest.fixture
def bridge() -> Iterator[str]:
    """A bridge of the test host's own, as a user would have made for their LAN."""
    name = f"nspbr{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_a_hand_written_bridge_is_joined_never_the_hosts_network(
    nsp: CLI, busybox: str, defs: Path, bridge: str
) -> None:
    name = nsp.name("dbr")
    (defs / f"{name}.nspawn").write_text(
        "[Exec]\nParameters=sh -c 'cat /proc/net/dev; echo br-up; exec sleep 600'\n\n"
        f"[Network]\nBridge={bridge}\n\n[X-Nspawnctl]\nImage={busybox}\n"
    )
    assert nsp("apply", str(defs)).stdout == f"{name} created\n"
    logs = nsp.wait_logs(name, "br-up")
    assert "host0" in logs, logs  # a network namespace of its own, with nspawn's veth
    links = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True, check=True
    ).stdout
    assert "vb-" in links, links  # the host side is on the user's bridge
    installed = (SETTINGS / f"{name}.nspawn").read_text()
    assert f"Bridge={bridge}" in installed and "Private=no" not in installed
    assert nsp.json("inspect", name)[0]["HostConfig"]["NetworkMode"] == f"bridge:{bridge}"
    assert nsp("diff", str(defs)).stdout == ""


def test_a_bridge_that_is_not_there_and_ports_published_twice_change_nothing(
    nsp: CLI, busybox: str, defs: Path
) -> None:
    a, b = nsp.name("dpa"), nsp.name("dpb")
    (defs / f"{a}.nspawn").write_text(definition(busybox, "a", network="veth", extra="Publish=18080:80\n"))
    (defs / f"{b}.nspawn").write_text(definition(busybox, "b", network="veth", extra="Publish=18080:81\n"))
    r = nsp("apply", str(defs), check=False)
    assert r.returncode != 0 and f"{defs}/{b}.nspawn:9: port 18080/tcp is published by {a} too" in r.stderr
    (defs / f"{b}.nspawn").write_text(definition(busybox, "b", network="bridge:nsp-no-such"))
    r = nsp("apply", str(defs), check=False)
    assert r.returncode != 0 and f"{b}.nspawn:8: Network=bridge:nsp-no-such: there is no bridge" in r.stderr
    assert traces(a) == [] and traces(b) == []


def test_a_created_container_that_cannot_start_is_removed_again(nsp: CLI, busybox: str, defs: Path) -> None:
    name = nsp.name("dfail")
    # nspawn itself moves the interface in at start, and there is none of that name
    (defs / f"{name}.nspawn").write_text(
        definition(busybox, "never", network="private", extra="").replace(
            "[X-Nspawnctl]", "[Network]\nPrivate=yes\nInterface=nsp-none0\n\n[X-Nspawnctl]"
        )
    )
    r = nsp("apply", str(defs), check=False)
    assert r.returncode == 1 and f"{name} failed: " in r.stderr and "removed again" in r.stderr, r.stderr
    assert traces(name) == [] and name not in nsp("ps", "-a", "-q").stdout.split()
    state = subprocess.run(["systemctl", "is-enabled", unit(name)], capture_output=True, text=True)
    assert state.stdout.strip() != "enabled"


def test_a_change_that_cannot_start_puts_the_previous_version_back(
    nsp: CLI, busybox: str, defs: Path
) -> None:
    name = nsp.name("dback")
    source = defs / f"{name}.nspawn"
    source.write_text(definition(busybox, "v1-up", network="private"))
    nsp("apply", str(defs))
    nsp.wait_logs(name, "v1-up")
    ident = nsp.json("inspect", name)[0]["Id"]
    nsp("exec", name, "sh", "-c", "echo kept > /mine")
    installed = (SETTINGS / f"{name}.nspawn").read_text()

    # nspawn moves the interface in at start, and there is none of that name
    source.write_text(
        definition(busybox, "v2-up", network="private").replace(
            "[X-Nspawnctl]", "[Network]\nPrivate=yes\nInterface=nsp-none0\n\n[X-Nspawnctl]"
        )
    )
    r = nsp("apply", str(defs), check=False)
    assert r.returncode == 1, r.stderr
    assert f"{name}: update failed (" in r.stderr and "the previous definition is running again" in r.stderr
    wait_state(nsp, name, running=True)
    nsp.wait_logs(name, "v1-up", count=2)
    assert nsp.json("inspect", name)[0]["Id"] == ident
    assert nsp("exec", name, "cat", "/mine").stdout == "kept\n"
    assert (SETTINGS / f"{name}.nspawn").read_text() == installed
    assert unit_show(unit(name), "ActiveState")["ActiveState"] == "active"
    assert not list(POOL.glob(f".#nspawnctl-{name}.*"))  # nothing staged is left
    nsp("down", str(defs))
    assert traces(name) == []
