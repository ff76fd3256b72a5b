#!/usr/bin/env python3
"""Benchmarks: nspawnctl against raw systemd-nspawn and systemd-run, measured in the same run.

Run inside a systemd host with a btrfs pool (``make bench`` boots the test host and runs this in
it). Prints medians and ratios; absolute numbers from different runs are not comparable on a
noisy machine, the ratios are what to read.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "host"))
from demo import make_busybox_root

BOOT_IMAGE = Path("/srv/bootimg")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def median_of(fn: Callable[[int], float], n: int) -> float:
    fn(-1)  # warm-up
    return statistics.median(fn(i) for i in range(n))


def row(label: str, value: float, peer: float | None = None) -> None:
    ratio = f"{value / peer:6.2f}x" if peer else "   peer"
    print(f"  {label:<58} {value * 1000:8.1f} ms  {ratio}")


def bench_run(image_dir: Path, n: int) -> None:
    print(f"run a container that prints 'hi' and exits (median of {n}):")
    nspawn = median_of(
        lambda i: timed(["systemd-nspawn", "-q", "-x", "-D", str(image_dir), "/bin/echo", "hi"]), n
    )
    unit = median_of(
        lambda i: timed(
            [
                "systemd-run",
                "-q",
                "--wait",
                "--pipe",
                "-p",
                "Delegate=yes",
                "--",
                "systemd-nspawn",
                "-q",
                "--keep-unit",
                "--register=yes",
                "-x",
                "-D",
                str(image_dir),
                "/bin/echo",
                "hi",
            ]
        ),
        n,
    )
    isolated = median_of(
        lambda i: timed(
            ["systemd-nspawn", "-q", "-x", "-U", "--network-veth", "-D", str(image_dir), "/bin/echo", "hi"]
        ),
        n,
    )
    shared = ["--network", "host", "--userns", "host", "bench/bb"]
    plain = median_of(lambda i: timed(["nspawnctl", "run", "--rm", *shared, "/bin/echo", "hi"]), n)
    ours = median_of(lambda i: timed(["nspawnctl", "run", "--rm", "bench/bb", "/bin/echo", "hi"]), n)
    row("systemd-nspawn -x (ephemeral snapshot, no unit)", nspawn)
    row("systemd-run --wait --pipe systemd-nspawn --keep-unit -x", unit, nspawn)
    row("nspawnctl run --rm --network host --userns host (snapshot, .nspawn, unit, journal)", plain, nspawn)
    row("systemd-nspawn -x -U --network-veth (user namespace, veth left unconfigured)", isolated)
    row("nspawnctl run --rm (default: user namespace, veth addressed before the payload)", ours, isolated)


def bench_create(n: int) -> None:
    print(f"create a container from a small and from a large image (median of {n}):")
    results = {}
    for ref in ("bench/bb", "bench/boot"):

        def once(i: int, ref: str = ref) -> float:
            name = f"bench-c{i + 1}"
            t = timed(["nspawnctl", "create", "--name", name, ref, "true"])
            subprocess.run(["nspawnctl", "rm", name], check=True, stdout=subprocess.DEVNULL)
            return t

        results[ref] = median_of(once, n)
    size = {r: _size(r) for r in results}
    row(f"nspawnctl create, {size['bench/bb']} image", results["bench/bb"])
    row(f"nspawnctl create, {size['bench/boot']} image", results["bench/boot"], results["bench/bb"])


def _size(ref: str) -> str:
    import json

    out = subprocess.run(["nspawnctl", "images", "--json"], capture_output=True, text=True).stdout
    for image in json.loads(out or "[]"):
        if any(r.split(":")[0] == ref.split(":")[0] for r in image.get("refs", [])):
            return f"{image['size'] / 1e6:.1f} MB"
    return "?"


def bench_start_cli(n: int) -> None:
    print(f"CLI start-up (median of {n}):")
    python = median_of(lambda i: timed([sys.executable, "-c", "pass"]), n)
    row("python3 -c pass", python)
    row("nspawnctl --help", median_of(lambda i: timed(["nspawnctl", "--help"]), n), python)
    row("nspawnctl ps", median_of(lambda i: timed(["nspawnctl", "ps"]), n), python)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=15, help="repetitions per measurement")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nspawnctl-bench-", dir="/var/tmp"))
    try:
        bb = make_busybox_root(work / "bb")
        (bb / "usr").mkdir()
        subprocess.run(["nspawnctl", "import", str(bb), "bench/bb"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["nspawnctl", "import", str(BOOT_IMAGE), "bench/boot"], check=True, stdout=subprocess.DEVNULL
        )
        bench_run(bb, args.n)
        bench_create(args.n)
        bench_start_cli(args.n)
    finally:
        subprocess.run(["nspawnctl", "rmi", "-f", "bench/bb", "bench/boot"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
