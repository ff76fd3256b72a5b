"""The benchmark's reduced run (``bench/bench.py --quick``), so that it cannot rot: every group runs
(CLI, run against raw nspawn and podman, 10 images, 10 containers, the two pull benchmarks) and
writes its JSON. It asserts what ran and that it cleaned up, never a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"
EXPECTED = {
    "python", "version", "help", "ps-empty",
    "raw-isolated", "podman", "run", "run-vs-podman", "raw-plain", "run-host",
    "machinectl-images-10", "images-10", "import-first",
    "machinectl-10", "ps-10", "start-first", "rm-last",
}  # fmt: skip


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1]
    return ""


@pytest.mark.serial
@pytest.mark.skipif(_codename() != "trixie", reason="make bench runs in the trixie host; so does its check")
def test_quick_benchmark_runs_every_group_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        # -n 1: each measurement once (--quick's default is 2); every group and row still runs, and
        # no assertion here reads a time, so a second repetition checked nothing more
        [sys.executable, str(BENCH), "--quick", "-n", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    rows = {r["key"]: r for r in data["rows"]}
    assert rows.keys() >= EXPECTED, proc.stdout
    assert all(len(r["samples"]) >= 1 and r["ms"] > 0 for r in rows.values())
    assert rows["run"]["peer"] == "raw-isolated" and rows["run"]["ratio"] > 0
    assert data["facts"]["pull_memory"] and data["facts"]["pull_registry"]  # their output, kept as printed
    facts = data["facts"]
    assert (facts["count"], facts["quick"], facts["repetitions"]) == (10, True, 1)
    assert "cgroup" in str(data["facts"]["podman"])  # which cgroup setting podman ran with
    # the Markdown table the README's Performance section is made from
    assert "| `nspawnctl run --rm IMG /bin/true` (default: user namespace, veth) |" in proc.stdout
    # nothing left behind: no bench image, container, podman store or machine
    images = json.loads(subprocess.run(["nspawnctl", "images", "--json"], capture_output=True, text=True,
                                       check=True).stdout)  # fmt: skip
    assert not [r for i in images for r in i["refs"] if r.startswith("bench/")]
    left = subprocess.run(
        ["nspawnctl", "ps", "-aq"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [n for n in left if n.startswith("bench-")]
    assert not Path("/var/lib/machines/.bench-podman").exists()
    machines = subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout
    assert "bench-" not in machines
