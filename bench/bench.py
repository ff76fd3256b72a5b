#!/usr/bin/env python3
"""Benchmarks: nspawnctl against its peers (raw systemd-run + systemd-nspawn, podman with crun,
machinectl, the bare interpreter, curl | tar), measured in the same run, interleaved.

Run inside a systemd host with a btrfs pool (``make bench`` boots the test host and runs this in
it). Each group of commands runs round-robin, the first command of a round rotating, so drift on a
busy machine hits every command alike; a warm-up round is not counted. Prints medians and ratios
(absolute numbers from different runs are not comparable on a noisy machine: read the ratios),
the same table as Markdown rows for the README, and writes everything as JSON.

``--quick`` is the reduced run CI does so that the benchmark cannot rot (2 repetitions, 10
containers and images instead of 100, small pulls); it fails only when a command fails, never on a
time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "host"))
from demo import make_busybox_root

HERE = Path(__file__).resolve().parent

IMAGE = "bench/bb"
PODMAN_IMAGE = "localhost/bench-bb:latest"
# podman keeps its store on the pool's btrfs filesystem (overlay over btrfs), hidden from machined
# like pull_registry.py's peer directory, and removed afterwards.
PODMAN_ROOT = Path("/var/lib/machines/.bench-podman")
PODMAN_RUNROOT = Path("/run/bench-podman")
os.environ["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1"  # podman 5 warns on every command on cgroup v1
PREFIX = "bench-s"  # the scale containers: bench-s1 .. bench-sN
Argv = Sequence[str]


# -- measuring --------------------------------------------------------------------------------------
def timed(argv: Argv, stdin: int | None = subprocess.DEVNULL) -> float:
    """Seconds ``argv`` takes; a failure is a broken benchmark (its stderr is shown)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return secs


class BenchError(RuntimeError):
    """A measured command failed: the benchmark itself is broken."""


def interleaved(cmds: dict[str, Argv], n: int) -> dict[str, list[float]]:
    """Run every command once per round for ``n`` rounds (plus one uncounted warm-up round),
    the first of each round rotating; the samples per command, in seconds."""
    keys = list(cmds)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(-1, n):
        start = i % len(keys) if i >= 0 else 0
        for k in keys[start:] + keys[:start]:
            secs = timed(cmds[k])
            if i >= 0:
                samples[k].append(secs)
    return samples


def sh(argv: Argv, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


# -- results --------------------------------------------------------------------------------------
@dataclass
class Row:
    """One measured command: its median, and its ratio to the peer row ``peer`` (a key)."""

    key: str
    label: str
    samples: list[float]
    peer: str | None = None
    target: float | None = None  # the "Done when": ratio to the peer at most this
    short: str = ""  # what the Markdown's peer column calls this row when it is a peer
    ms: float = 0.0
    ratio: float | None = None

    def __post_init__(self) -> None:
        self.ms = statistics.median(self.samples) * 1000 if self.samples else 0.0


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        key: str,
        label: str,
        samples: list[float],
        peer: str | None = None,
        target: float | None = None,
        short: str = "",
    ) -> Row:
        """A row; its ratio is to the row ``peer`` (when that group ran)."""
        row = Row(key, label, samples, peer, target, short)
        base = self.get(peer) if peer is not None else None
        row.ratio = row.ms / base.ms if base is not None and base.ms else None
        if base is None:
            row.peer = None
        self.rows.append(row)
        print(f"  {label:<84} {row.ms:8.1f} ms  {_ratio_text(row)}", flush=True)
        return row

    def get(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def markdown(self) -> str:
        lines = ["| what | median | ratio | peer | target | met |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            base = self.get(r.peer) if r.peer else None
            peer = (base.short or base.label) if base is not None else ""
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            target = f"≤ {r.target:g}x" if r.target is not None else ""
            met = "" if r.target is None or r.ratio is None else ("yes" if r.ratio <= r.target else "**no**")
            cells = [r.label, f"{r.ms:.0f} ms", ratio, peer, target, met]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return ""
    target = (
        f" (target ≤ {row.target:g}x: {'met' if row.ratio <= row.target else 'MISSED'})" if row.target else ""
    )
    return f"{row.ratio:6.2f}x {row.peer}{target}"


# -- setup ----------------------------------------------------------------------------------------
def image_path(ref: str) -> Path:
    info = json.loads(sh(["nspawnctl", "image", "inspect", ref]).stdout)[0]
    return Path(info["path"]).resolve()


def podman_base() -> list[str]:
    return [
        "podman",
        "--root",
        str(PODMAN_ROOT),
        "--runroot",
        str(PODMAN_RUNROOT),
        "--storage-driver",
        "overlay",
    ]


def setup_podman(root: Path, report: Report) -> list[str] | None:
    """Import the busybox root into podman and find the cgroup manager that works in this host;
    the argv of ``podman run --rm IMG``, or None (with a note) when podman is missing or broken."""
    if not shutil.which("podman"):
        report.notes.append("podman is not installed: no podman rows")
        return None
    base = podman_base()
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE
    )
    subprocess.run([*base, "import", "-", PODMAN_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    tried = []
    # In order of preference; a host booted by systemd-nspawn on cgroup v1 (the test host) has its
    # controllers' hierarchies read-only, so only the last, podman without cgroups, works there.
    for manager in ("--cgroup-manager=systemd", "--cgroup-manager=cgroupfs", "--cgroups=disabled"):
        options = [manager] if manager.startswith("--cgroup-") else ["--cgroup-manager=cgroupfs"]
        run_options = [manager] if manager.startswith("--cgroups") else []
        argv = [*base, *options, "--runtime", "crun", "run", "--rm", *run_options, PODMAN_IMAGE]
        proc = subprocess.run([*argv, "/bin/true"], capture_output=True, text=True)
        if proc.returncode == 0:
            version = sh(["podman", "--version"]).stdout.strip()
            crun = sh(["crun", "--version"]).stdout.splitlines()[0]
            report.facts["podman"] = f"{version}, {crun}, {manager}, network: default (bridge)"
            return argv
        tried.append(f"{manager}: {proc.stderr.strip()[-300:]}")
    raise BenchError("podman run fails in this host:\n" + "\n".join(tried))


def cleanup_podman() -> None:
    if shutil.which("podman") and PODMAN_ROOT.exists():
        subprocess.run([*podman_base(), "system", "reset", "--force"], capture_output=True)
    shutil.rmtree(PODMAN_ROOT, ignore_errors=True)
    shutil.rmtree(PODMAN_RUNROOT, ignore_errors=True)


# -- the groups -----------------------------------------------------------------------------------
def raw_nspawn() -> list[str]:
    """The raw path nspawnctl's run is measured against: systemd-run + systemd-nspawn, the unit
    and machine registration included; -U --network-veth added for the same isolation."""
    return [
        "systemd-run",
        "-q",
        "--wait",
        "--pipe",
        "--collect",  # a failed run leaves no failed unit behind (a degraded host)
        "-p",
        "Delegate=yes",
        "--",
        "systemd-nspawn",
        "-q",
        "--keep-unit",
        "--register=yes",
        "-x",
        "-M",
        "bench-raw",
    ]


def bench_run(report: Report, rootfs: Path, podman: list[str] | None, n: int) -> None:
    print(f"run a container that runs /bin/true and exits (median of {n}, interleaved):", flush=True)
    raw = raw_nspawn()
    cmds: dict[str, Argv] = {
        "run": ["nspawnctl", "run", "--rm", IMAGE, "/bin/true"],
        "raw-isolated": [*raw, "-U", "--network-veth", "-D", str(rootfs), "/bin/true"],
        "run-host": ["nspawnctl", "run", "--rm", "--network", "host", "--userns", "host", IMAGE, "/bin/true"],
        "raw-plain": [*raw, "-D", str(rootfs), "/bin/true"],
    }
    if podman is not None:
        cmds["podman"] = [*podman, "/bin/true"]
    s = interleaved(cmds, n)
    raw_text = "systemd-run --wait --pipe systemd-nspawn --keep-unit --register=yes -x"
    report.add("raw-isolated", f"raw: `{raw_text} -U --network-veth`", s["raw-isolated"], short="raw -U veth")
    if podman is not None:
        report.add("podman", "`podman run --rm` (crun)", s["podman"], "raw-isolated", short="podman")
    report.add("run", "`nspawnctl run --rm IMG /bin/true` (default: user namespace, veth)", s["run"],
               "raw-isolated", 1.5)  # fmt: skip
    if podman is not None:
        report.add("run-vs-podman", "the same, against podman", s["run"], "podman", 0.75)
    report.add("raw-plain", f"raw: `{raw_text}`", s["raw-plain"], short="raw")
    report.add("run-host", "`nspawnctl run --rm --network host --userns host IMG /bin/true`", s["run-host"],
               "raw-plain", 1.3)  # fmt: skip


def bench_cli(report: Report, n: int) -> None:
    print(f"CLI start-up (median of {n}, interleaved):", flush=True)
    s = interleaved(
        {
            "python": [sys.executable, "-c", "pass"],
            "version": ["nspawnctl", "--version"],
            "ps-empty": ["nspawnctl", "ps"],
            "help": ["nspawnctl", "--help"],
        },
        n,
    )
    report.add("python", "`python3 -c pass`", s["python"], short="python3")
    report.add("version", "`nspawnctl --version`", s["version"], "python", 1.5)
    report.add("help", "`nspawnctl --help`", s["help"], "python")
    report.add("ps-empty", "`nspawnctl ps` (no containers)", s["ps-empty"], "python")


def bench_images(report: Report, rootfs: Path, count: int, n: int) -> None:
    """``count`` distinct small images (each its own content, so its own ID and subvolume); ``images``
    listed at 10 and at ``count``, and the time of each import as the count grows."""
    print(f"{count} images (imports of small distinct roots; listings median of {n}):", flush=True)
    marker = rootfs / "etc" / "bench-id"
    imports: list[float] = []
    at: dict[int, dict[str, list[float]]] = {}
    checkpoints = sorted({min(10, count), count})
    try:
        for k in range(1, count + 1):
            marker.write_text(f"{k}\n")
            imports.append(timed(["nspawnctl", "import", str(rootfs), f"bench/img{k}"]))
            if k in checkpoints:
                got = len(json.loads(sh(["nspawnctl", "images", "--json"]).stdout))
                if got < k:
                    raise BenchError(f"nspawnctl images lists {got} images, expected at least {k}")
                at[k] = interleaved(
                    {
                        "images": ["nspawnctl", "images"],
                        "machinectl": ["machinectl", "list-images", "--no-pager"],
                        "python": [sys.executable, "-c", "pass"],
                    },
                    n,
                )
    finally:
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        subprocess.run(
            ["nspawnctl", "rmi", "-f", *(f"bench/img{k}" for k in range(1, count + 1))], capture_output=True
        )
        rmi = time.perf_counter() - t0
    for k in checkpoints:
        peer = [m + p for m, p in zip(at[k]["machinectl"], at[k]["python"], strict=True)]
        report.add(f"machinectl-images-{k}", f"`machinectl list-images` + `python3 -c pass`, {k} images",
                   peer, short="machinectl list-images + python3")  # fmt: skip
        report.add(f"images-{k}", f"`nspawnctl images` with {k} images", at[k]["images"],
                   f"machinectl-images-{k}", short=f"images, {k} there")  # fmt: skip
    if len(checkpoints) > 1:
        lo, hi = checkpoints
        report.add(f"images-{hi}-vs-{lo}", f"`nspawnctl images`, {hi} images against {lo}", at[hi]["images"],
                   f"images-{lo}", short="")  # fmt: skip
    report.add("import-first", "`nspawnctl import DIR` (small root), the first 10", imports[:10],
               short="first 10")  # fmt: skip
    if count >= 20:  # else the first 10 are the last 10 (--quick)
        report.add("import-last", f"`nspawnctl import DIR`, the last 10 ({count - 10}-{count - 1} there)",
                   imports[-10:], "import-first")  # fmt: skip
    report.facts["rmi_all_images_s"] = round(rmi, 2)
    print(f"  nspawnctl rmi -f of all {count} images in one command: {rmi:.1f} s", flush=True)


def bench_scale(report: Report, rootfs: Path, count: int, n: int) -> None:
    """``run -d`` of ``count`` idle containers in a row, ``ps`` at 10 and at ``count`` running (next
    to ``machinectl list`` plus the interpreter's start), the memory each costs, ``rm -f`` of all."""
    print(f"{count} containers (run -d one after another; listings median of {n}):", flush=True)
    names = [f"{PREFIX}{k}" for k in range(1, count + 1)]
    checkpoints = sorted({min(10, count), count})
    starts: list[float] = []
    removals: list[float] = []
    listings: dict[int, dict[str, list[float]]] = {}
    avail_before = mem_available()
    try:
        for k, name in enumerate(names, 1):
            starts.append(timed(["nspawnctl", "run", "-d", "--name", name, IMAGE, "sleep", "1d"]))
            if k in checkpoints:
                running = sh(["nspawnctl", "ps", "-q"]).stdout.split()
                if len([r for r in running if r.startswith(PREFIX)]) != k:
                    raise BenchError(f"nspawnctl ps lists {running}, expected {k} {PREFIX}* containers")
                listings[k] = interleaved(
                    {
                        "ps": ["nspawnctl", "ps"],
                        "machinectl": ["machinectl", "list", "--no-pager"],
                        "python": [sys.executable, "-c", "pass"],
                        # what the host's own cost of one more container is at this count
                        "raw": [*raw_nspawn(), "-U", "--network-veth", "-D", str(rootfs), "/bin/true"],
                    },
                    n,
                )
        time.sleep(2)  # let the last ones settle to idle
        memory = container_memory(names)
        avail_after = mem_available()
    finally:
        for name in reversed(names):
            t0 = time.perf_counter()
            proc = subprocess.run(["nspawnctl", "rm", "-f", name], capture_output=True, text=True)
            removals.append(time.perf_counter() - t0)
            if proc.returncode != 0 and "no such container" not in proc.stderr:
                raise BenchError(f"nspawnctl rm -f {name}: {proc.stderr}")
    for k in checkpoints:
        peer = [m + p for m, p in zip(listings[k]["machinectl"], listings[k]["python"], strict=True)]
        report.add(f"machinectl-{k}", f"`machinectl list` + `python3 -c pass`, {k} running", peer,
                   short="machinectl list + python3")  # fmt: skip
        report.add(f"ps-{k}", f"`nspawnctl ps` with {k} running containers", listings[k]["ps"],
                   f"machinectl-{k}", 1.5 if k >= 100 else None, short=f"ps, {k} running")  # fmt: skip
    if len(checkpoints) > 1:
        lo, hi = checkpoints
        report.add(f"ps-{hi}-vs-{lo}", f"`nspawnctl ps`, {hi} running against {lo}", listings[hi]["ps"],
                   f"ps-{lo}", short="")  # fmt: skip
    for k in checkpoints:
        report.add(f"raw-isolated-{k}", f"raw `systemd-nspawn -U --network-veth` start+exit, {k} running",
                   listings[k]["raw"], short=f"raw at {k}")  # fmt: skip
    if len(checkpoints) > 1:
        lo, hi = checkpoints
        report.add(f"raw-isolated-{hi}-vs-{lo}", f"the same, {hi} running against {lo}", listings[hi]["raw"],
                   f"raw-isolated-{lo}")  # fmt: skip
    report.add("start-first", "`nspawnctl run -d IMG sleep 1d`, the first 10 starts", starts[:10],
               short="first 10")  # fmt: skip
    # removals ran from the last container to the first: the first 10 with count..count-9 there
    report.add("rm-last", "`nspawnctl rm -f` of a running container, the last 10 (9..0 others left)",
               removals[-10:], short="last 10")  # fmt: skip
    if count >= 20:  # else the first 10 are the last 10 (--quick)
        report.add("start-last", f"`nspawnctl run -d`, the last 10 starts ({count - 10}-{count - 1} running)",
                   starts[-10:], "start-first", 1.2)  # fmt: skip
        report.add("rm-first", f"`nspawnctl rm -f`, the first 10 ({count - 1}..{count - 10} others left)",
                   removals[:10], "rm-last")  # fmt: skip
    report.facts["run_d_all_s"] = round(sum(starts), 2)
    report.facts["rm_f_all_s"] = round(sum(removals), 2)
    report.facts["memory_per_idle_container"] = memory
    report.facts["memavailable_drop_per_container_kib"] = round((avail_before - avail_after) / count)
    print(f"  run -d of all {count}: {sum(starts):.1f} s; rm -f of all: {sum(removals):.1f} s", flush=True)
    print(
        f"  memory per idle container: {_memory_text(memory)}; MemAvailable fell by "
        f"{(avail_before - avail_after) / count / 1024:.1f} MiB per container (machine-wide, noisy)",
        flush=True,
    )


def mem_available() -> int:
    """MemAvailable in KiB (the machine's: other work on it moves this too)."""
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def container_memory(names: list[str]) -> dict[str, object]:
    """What each idle container costs: the median over containers of the summed PSS of the
    processes in its unit's cgroup (systemd-nspawn, the payload, anything else left running), their
    commands, and systemd's MemoryCurrent when memory accounting works here (cgroup v2)."""
    pss: list[int] = []
    current: list[int] = []
    procs: dict[str, int] = {}
    for name in names:
        unit = _unit_of(name)
        props = dict(
            line.split("=", 1)
            for line in sh(
                ["systemctl", "show", unit, "-p", "ControlGroup", "-p", "MemoryCurrent"]
            ).stdout.split("\n")
            if "=" in line
        )
        if props.get("MemoryCurrent", "").isdigit():
            current.append(int(props["MemoryCurrent"]))
        total = 0
        for pid in _pids(props.get("ControlGroup", "")):
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            total += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
            procs[comm] = procs.get(comm, 0) + 1
        pss.append(total)
    out: dict[str, object] = {
        "pss_kib_median": statistics.median(pss) if pss else None,
        "processes": {c: round(k / len(names), 2) for c, k in sorted(procs.items())},
    }
    if current:
        out["memory_current_kib_median"] = statistics.median(current) // 1024
    return out


def _unit_of(name: str) -> str:
    out = sh(["machinectl", "show", name, "-p", "Unit", "--value"]).stdout.strip()
    return out or f"nspawnctl-{name}.service"


def _pids(cgroup: str) -> list[int]:
    base = Path("/sys/fs/cgroup") / cgroup.lstrip("/")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup/unified") / cgroup.lstrip("/")
    pids = []
    for procs in base.rglob("cgroup.procs") if base.is_dir() else []:
        pids += [int(p) for p in procs.read_text().split()]
    return pids


def _memory_text(memory: dict[str, object]) -> str:
    pss = memory.get("pss_kib_median")
    text = f"{pss / 1024:.1f} MiB PSS" if isinstance(pss, (int, float)) else "PSS unknown"
    cur = memory.get("memory_current_kib_median")
    if isinstance(cur, (int, float)):
        text += f", MemoryCurrent {cur / 1024:.1f} MiB"
    return f"{text} (processes: {memory.get('processes')})"


def bench_pulls(report: Report, quick: bool) -> None:
    """bench/pull_memory.py (a 1 GiB tarball pull against curl | zstd -d | tar -x, peak RSS) and
    bench/pull_registry.py (against skopeo copy + umoci unpack); their output is kept as it is."""
    runs = {
        "pull_memory": [
            sys.executable,
            str(HERE / "pull_memory.py"),
            *(["--sizes", "16", "-n", "1"] if quick else ["--sizes", "1024", "-n", "3"]),
        ],
        "pull_registry": [
            sys.executable,
            str(HERE / "pull_registry.py"),
            *(["-n", "1", "--base-mib", "16"] if quick else ["-n", "5"]),
        ],
    }
    for key, argv in runs.items():
        print(f"$ {' '.join(argv[1:])}", flush=True)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(proc.stdout)
        report.facts[key] = proc.stdout.splitlines()
        if proc.returncode != 0:
            raise BenchError(f"{argv[1]} exited {proc.returncode}")
    for line in report.facts["pull_memory"]:  # type: ignore[attr-defined]
        m = re.search(
            r"(\d+) MiB image: nspawnctl pull\s+([\d.]+) MiB peak RSS, +([\d.]+) s;\s+peer\s+([\d.]+) "
            r"MiB, +([\d.]+) s",
            line,
        )
        if m:
            mib, rss, ours, peer_rss, peer = m.groups()
            _pull_row(report, mib, float(ours), float(peer), float(rss), float(peer_rss))
    # pull_registry.py's rows: "  cold    skopeo copy + umoci unpack a (peer)    9626 ms ..."
    for line in report.facts["pull_registry"]:  # type: ignore[attr-defined]
        m = re.match(r"\s+(cold|shared)\s+(.+?)\s+(\d+) ms", line)
        if m and "(peer)" in m.group(2):
            report.add(f"registry-peer-{m.group(1)}", f"`skopeo copy` + `umoci unpack`, {m.group(1)}",
                       [int(m.group(3)) / 1000], short="skopeo + umoci")  # fmt: skip
        elif m and m.group(2).startswith("nspawnctl pull"):
            what = "empty store" if m.group(1) == "cold" else "base layer already here"
            report.add(f"registry-{m.group(1)}", f"`nspawnctl pull` from a registry, {what}",
                       [int(m.group(3)) / 1000], f"registry-peer-{m.group(1)}", 1.0)  # fmt: skip
    if not any(r.key.startswith("pull-") for r in report.rows):
        report.notes.append(
            "no row from pull_memory.py's output (its format changed?): see facts.pull_memory"
        )


def _pull_row(report: Report, mib: str, ours: float, peer: float, rss: float, peer_rss: float) -> None:
    report.add(f"pull-peer-{mib}", f"`curl | zstd -d | tar -x`, {mib} MiB (peak RSS {peer_rss:.0f} MiB)",
               [peer], short="curl | zstd -d | tar -x")  # fmt: skip
    report.add(f"pull-{mib}", f"`nspawnctl pull` of a {mib} MiB .tar.zst (peak RSS {rss:.0f} MiB)", [ours],
               f"pull-peer-{mib}", 1.25 if int(mib) >= 1024 else None)  # fmt: skip


# -- main -----------------------------------------------------------------------------------------
def host_facts() -> dict[str, object]:
    systemd = sh(["systemctl", "--version"]).stdout.splitlines()[0]
    try:
        nspawnctl = sh(["nspawnctl", "--version"]).stdout.strip()
    except subprocess.CalledProcessError:
        nspawnctl = "?"
    os_release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{os_release.get('PRETTY_NAME', '?').strip(chr(34))}, {systemd}, Python "
        f"{platform.python_version()}, kernel {platform.release()}, {os.cpu_count()} CPUs",
        "nspawnctl": nspawnctl,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the reduced run CI does (few repetitions, small)")
    ap.add_argument("-n", type=int, help="repetitions per measurement (default 9, --quick 2)")
    ap.add_argument(
        "--count", type=int, help="containers and images for the scale rows (default 100, --quick 10)"
    )
    ap.add_argument("--json", type=Path, default=HERE / "results" / "latest.json", help="where the JSON goes")
    ap.add_argument("--only", default="cli,run,images,scale,pulls", help="groups to run, comma-separated")
    args = ap.parse_args(argv)
    n = args.n or (2 if args.quick else 9)
    count = args.count or (10 if args.quick else 100)
    if count < 10:
        ap.error("--count must be at least 10")
    groups = set(args.only.split(","))
    report = Report(facts=host_facts())
    report.facts.update(quick=args.quick, repetitions=n, count=count)
    print(f"nspawnctl benchmarks, {report.facts['date']}: {report.facts['host']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="nspawnctl-bench-", dir="/var/tmp"))
    t0 = time.perf_counter()
    try:
        bb = make_busybox_root(work / "bb")
        (bb / "usr").mkdir()
        sh(["nspawnctl", "import", str(bb), IMAGE])
        rootfs = image_path(IMAGE)  # the raw peers snapshot the very subvolume nspawnctl's image is
        if "cli" in groups:
            bench_cli(report, n)
        if "run" in groups:
            podman = setup_podman(bb, report)
            bench_run(report, rootfs, podman, n)
        if "images" in groups:
            bench_images(report, bb, count, n)
        if "scale" in groups:
            bench_scale(report, rootfs, count, n)
        if "pulls" in groups:
            bench_pulls(report, args.quick)
    except (BenchError, subprocess.CalledProcessError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
        print(f"bench: error: {e}\n{detail or ''}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["nspawnctl", "rmi", "-f", IMAGE], capture_output=True)
        cleanup_podman()
        shutil.rmtree(work, ignore_errors=True)
    report.facts["seconds"] = round(time.perf_counter() - t0)
    print(f"\nMarkdown ({report.facts['date']}, {report.facts['host']}; median of {n}):\n")
    print(report.markdown())
    for note in report.notes:
        print(f"note: {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"facts": report.facts, "notes": report.notes, "rows": [asdict(r) for r in report.rows]}, indent=1
        )
        + "\n"
    )
    print(f"wrote {args.json} ({report.facts['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
