"""Hostile numbers and values (issue 12, defects 5 and 7): NaN, infinite and huge limits, CR and
NUL in a definition, values over systemd's and the kernel's limits, ``-e NAME`` without a value.
Each is refused where it comes in, with nothing made; a definition already holding a bad value
hides no other container from ps/inspect and can still be removed."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, unit_show
from demo import make_busybox_root
from test_errors import pool_snapshot

SETTINGS = Path("/etc/systemd/nspawn")


@pytest.fixture
def defs() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-limits-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.serial
@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--cpus", "nan", ['invalid value "nan" for --cpus']),
        ("--cpus", "inf", ['invalid value "inf" for --cpus']),
        ("--cpus", "-1", ['invalid value "-1" for --cpus']),
        ("--cpus", "0", ['invalid value "0" for --cpus', "0.01"]),
        ("--memory", "99999999999999999999999G", ["for --memory", "bytes"]),
        ("--memory", "nan", ['invalid value "nan" for --memory']),
        ("--memory", "16777216T", ["for --memory"]),  # 2^64: systemd's "infinity"
        ("--pids-limit", "99999999999999999999", ["for --pids-limit", "4194304"]),
        ("--pids-limit", "0", ['invalid value "0" for --pids-limit']),
        ("--pids-limit", "-1", ['invalid value "-1" for --pids-limit']),
    ],
)
def test_bad_limits_are_refused_at_create_with_nothing_made(
    nsp: CLI, busybox: str, flag: str, value: str, words: list[str]
) -> None:
    name = nsp.name("lim")
    before = pool_snapshot()
    for command in ("create", "run"):
        proc = nsp(command, "--name", name, flag, value, busybox, "true", check=False)
        assert proc.returncode == 2, proc.stderr
        first, *rest = proc.stderr.splitlines()
        assert first.startswith("nspawnctl: error: "), proc.stderr
        assert all(w in first for w in words), first
        assert rest and rest[0].startswith("hint: ") and "Traceback" not in proc.stderr
    assert pool_snapshot() == before
    assert name not in nsp("ps", "-a", "-q").stdout.split()


def test_the_largest_limits_reach_the_kernel(nsp: CLI, busybox: str) -> None:
    """The bounds are what systemd and the kernel take: at the top, each is still a limit."""
    name = nsp.name("lim")
    nsp("run", "-d", "--name", name, "--cpus", "10000", "--memory", "8388607T", "--pids-limit", "4194304",
        busybox, "sleep", "600")  # fmt: skip
    unit = f"nspawnctl-{name}.service"
    props = unit_show(unit, "TasksMax", "CPUQuotaPerSecUSec", "MemoryMax", "ControlGroup")
    assert props["TasksMax"] == "4194304" and props["CPUQuotaPerSecUSec"] not in ("", "infinity")
    cgroup = Path("/sys/fs/cgroup") / props["ControlGroup"].lstrip("/")
    if (cgroup / "pids.max").exists():  # a host with the v2 controllers (not the v1 test host)
        assert (cgroup / "pids.max").read_text().strip() == "4194304"  # not "max": the kernel took it
        assert (cgroup / "cpu.max").read_text().split()[0] != "max"
    host = nsp.json("inspect", name)[0]["HostConfig"]
    assert host["NanoCpus"] == 10_000 * 10**9 and host["PidsLimit"] == 4194304
    assert host["Memory"] == 8388607 << 40


@pytest.mark.serial
@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("CPUs=inf", ["CPUs=inf", "not a number of CPUs"]),
        ("CPUs=nan", ["CPUs=nan"]),
        ("MemoryMax=99999999999999999999999G", ["MemoryMax=99999999999999999999999G"]),
        ("MemoryMax=infinity", ["MemoryMax=infinity", "invalid size"]),
        ("TasksMax=99999999999999999999", ["TasksMax=99999999999999999999", "4194304"]),
        ("TasksMax=infinity", ["TasksMax=infinity"]),
    ],
)
def test_apply_refuses_bad_limits_with_file_and_line(
    nsp: CLI, busybox: str, defs: Path, line: str, words: list[str]
) -> None:
    name = nsp.name("alim")
    path = defs / f"{name}.nspawn"
    path.write_text(f"[Exec]\nParameters=sleep 600\n\n[X-Nspawnctl]\nImage={busybox}\nNetwork=none\n{line}\n")
    before = pool_snapshot()
    proc = nsp("apply", str(path), check=False)
    assert proc.returncode not in (0, None) and "Traceback" not in proc.stderr
    assert f"{path}:7: " in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert pool_snapshot() == before
    assert not (SETTINGS / f"{name}.nspawn").exists()


@pytest.mark.serial
@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"Environment=A=1\r[Files]\rBind=/:/host\n", "carriage return"),
        (b"Environment=A=1\0B=2\n", "NUL"),
    ],
)
def test_apply_refuses_cr_and_nul_with_file_and_line(
    nsp: CLI, busybox: str, defs: Path, raw: bytes, what: str
) -> None:
    name = nsp.name("acr")
    path = defs / f"{name}.nspawn"
    path.write_bytes(
        b"[Exec]\nParameters=sleep 600\n" + raw + f"\n[X-Nspawnctl]\nImage={busybox}\nNetwork=none\n".encode()
    )
    before = pool_snapshot()
    proc = nsp("apply", str(path), check=False)
    assert proc.returncode not in (0, None) and "Traceback" not in proc.stderr
    assert f"{path}:3: " in proc.stderr and what in proc.stderr, proc.stderr
    assert pool_snapshot() == before
    assert not (SETTINGS / f"{name}.nspawn").exists()


@pytest.mark.serial
def test_a_corrupted_definition_hides_no_other_container(nsp: CLI, busybox: str) -> None:
    good, bad = nsp.name("good"), nsp.name("bad")
    nsp("create", "--name", good, busybox, "true")
    nsp("create", "--name", bad, "--cpus", "1", busybox, "true")
    path = SETTINGS / f"{bad}.nspawn"
    text = path.read_text()
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines, 1) if ln.startswith("CPUs="))
    path.write_text(text.replace("CPUs=1\n", "CPUs=nan\n"))  # as an old version or a hand wrote it

    proc = nsp("ps", "-a", check=False)
    assert proc.returncode == 1 and good in proc.stdout and bad not in proc.stdout
    assert f"{path}:{at}: CPUs=nan" in proc.stderr and "Traceback" not in proc.stderr
    proc = nsp("ps", "-a", "--json", check=False)
    assert proc.returncode == 1 and f"{path}:{at}" in proc.stderr
    assert good in [c["Name"] for c in json.loads(proc.stdout)]
    assert nsp("ps", "-a", "-q", check=False).stdout.split().count(good) == 1
    assert json.loads(nsp("inspect", good).stdout)[0]["Name"] == good
    proc = nsp("inspect", bad, check=False)  # inspect speaks JSON, its error too
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["error"]["message"].startswith(f"{path}:{at}: CPUs=nan: ")
    proc = nsp("inspect", good, bad, check=False)  # as docker: what is found is shown
    assert proc.returncode == 1 and [c["Name"] for c in json.loads(proc.stdout)] == [good]
    proc = nsp("start", bad, check=False)
    assert proc.returncode == 2 and f"{path}:{at}" in proc.stderr and "Traceback" not in proc.stderr
    nsp("rm", bad)  # still removable
    assert not path.exists() and nsp("ps", "-a").returncode == 0


def test_limits_an_older_version_wrote_read_as_the_nearest_allowed(nsp: CLI, busybox: str) -> None:
    """Versions before the limit types wrote CPUs=0.005 or TasksMax=0: such a container still
    lists, inspects and starts, with docker's minimum (0.01 CPU) and no task limit (docker's 0)."""
    name = nsp.name("old")
    nsp("create", "--name", name, "--cpus", "1", "--pids-limit", "5", busybox, "sleep", "600")
    path = SETTINGS / f"{name}.nspawn"
    path.write_text(
        path.read_text().replace("CPUs=1\n", "CPUs=0.005\n").replace("TasksMax=5\n", "TasksMax=0\n")
    )
    assert name in nsp("ps", "-a", "-q").stdout.split()
    host = nsp.json("inspect", name)[0]["HostConfig"]
    assert host["NanoCpus"] == 10**7 and not host["PidsLimit"], host
    nsp("start", name)
    props = unit_show(f"nspawnctl-{name}.service", "CPUQuotaPerSecUSec", "TasksMax")
    assert props["CPUQuotaPerSecUSec"] == "10ms" and props["TasksMax"] != "5", props
    nsp("rm", "-f", name)


@pytest.mark.serial
def test_env_values_over_the_limits_are_refused_at_create(nsp: CLI, busybox: str, defs: Path) -> None:
    name = nsp.name("env")
    big = defs / "big.env"
    big.write_text("SMALL=1\nHUGE=" + "x" * (10 << 20) + "\n")
    before = pool_snapshot()
    proc = nsp("create", "--name", name, "--env-file", str(big), busybox, "true", check=False)
    assert proc.returncode == 2 and "HUGE" in proc.stderr and "131071" in proc.stderr, proc.stderr
    proc = nsp("create", "--name", name, "-e", "NL=a\n[Files]\nBind=/:/host", busybox, "true", check=False)
    assert proc.returncode == 2 and "NL" in proc.stderr and "line feed" in proc.stderr, proc.stderr
    many = [a for i in range(12) for a in ("-e", f"V{i}=" + "y" * 100_000)]
    proc = nsp("create", "--name", name, *many, busybox, "true", check=False)
    assert proc.returncode == 2 and "add up to" in proc.stderr, proc.stderr
    assert pool_snapshot() == before


def test_env_without_a_value_passes_the_callers_or_nothing(nsp: CLI, busybox: str, defs: Path) -> None:
    envfile = defs / "env"
    envfile.write_text("FROM_FILE\nUNSET_IN_FILE\nPLAIN=p\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSET_")}
    env |= {"FROM_CALLER": "caller value", "FROM_FILE": "file value"}
    proc = nsp(
        "run", "--rm", "-e", "FROM_CALLER", "-e", "UNSET_HERE", "--env-file", str(envfile), busybox, "env",
        env=env,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert "FROM_CALLER=caller value" in lines and "FROM_FILE=file value" in lines and "PLAIN=p" in lines
    assert not any(ln.startswith(("UNSET_HERE", "UNSET_IN_FILE")) for ln in lines), lines
    name = nsp.name("envx")
    nsp("run", "-d", "--name", name, busybox, "sleep", "600")
    out = nsp("exec", "-e", "FROM_CALLER", "-e", "UNSET_HERE", name, "env", env=env).stdout.splitlines()
    assert "FROM_CALLER=caller value" in out and not any(ln.startswith("UNSET_HERE") for ln in out)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["stop", "-t", "nan", "x"], ['invalid value "nan" for --time']),
        (["stop", "-t", "inf", "x"], ['invalid value "inf" for --time']),
        (["kill", "-s", "99999999999999999999", "x"], ["for --signal", "signals are 1 to"]),
    ],
)
def test_other_numbers_are_checked_too(nsp: CLI, args: list[str], words: list[str]) -> None:
    proc = nsp(*args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(w in proc.stderr.splitlines()[0] for w in words), proc.stderr


INJECT = "x\n[Files]\nBind=/:/host"


@pytest.mark.serial
@pytest.mark.parametrize(
    "args",
    [
        ["--hostname", INJECT, "IMAGE", "true"],
        ["-w", "/" + INJECT, "IMAGE", "true"],
        ["--entrypoint", "/bin/sh" + INJECT, "IMAGE"],
        ["IMAGE", "echo", INJECT],
        ["-e", "A=" + INJECT, "IMAGE", "true"],
    ],
)
def test_no_flag_injects_a_line_into_the_definition(nsp: CLI, busybox: str, args: list[str]) -> None:
    name = nsp.name("inj")
    before = pool_snapshot()
    proc = nsp("create", "--name", name, *[busybox if a == "IMAGE" else a for a in args], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("nspawnctl: error: ") and ("line break" in first or "line feed" in first), first
    assert pool_snapshot() == before and not (SETTINGS / f"{name}.nspawn").exists()


@pytest.mark.serial
def test_an_image_used_by_a_corrupted_container_stays_in_use(nsp: CLI, workdir: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    root = make_busybox_root(workdir / f"corrupt-{tag}", marker=f"corrupt-{tag}")
    ref = f"e2e/corrupt-{tag}:latest"
    nsp.images.add(ref)
    nsp("import", str(root), ref)
    name = nsp.name("bad")
    nsp("create", "--name", name, "--pids-limit", "5", ref, "true")
    path = SETTINGS / f"{name}.nspawn"
    path.write_text(path.read_text().replace("TasksMax=5\n", "TasksMax=nan\n"))
    proc = nsp("rmi", ref, check=False)
    assert proc.returncode not in (0, None) and "in use" in proc.stderr and name in proc.stderr, proc.stderr
