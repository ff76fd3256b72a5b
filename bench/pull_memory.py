#!/usr/bin/env python3
"""Peak memory of ``nspawnctl pull`` as the image grows, next to ``curl | zstd -d | tar -x``.

Images of incompressible data (one big file plus a few small ones) are published as .tar.zst
with SHA256SUMS on a local web server (tests/e2e/webserver.py, plain HTTP), then pulled with
``--insecure --verify=checksum``. Peak RSS comes from getrusage of each child; the peer is the
shell pipeline doing the same download, decompression and extraction (its largest process),
extracting onto the filesystem of nspawnctl's store (so both write to the same disk) unless
--peer-dir says otherwise. CPU seconds (user + system, all threads and processes) are printed
too: on a busy machine they vary less than the wall-clock times. Memory must stay flat: a pull
streams, it never holds the image. ``--quick`` is the reduced run for CI (one 16 MiB pull).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEBSERVER = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "webserver.py"
STORE = Path("/var/lib/nspawnctl")
PEAK = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_maxrss, r.ru_utime + r.ru_stime); "
    "sys.exit(rc)"
)


def peak_kib(argv: list[str]) -> tuple[int, float, float]:
    """Run argv in a fresh wrapper so RUSAGE_CHILDREN covers exactly it; (peak RSS KiB, seconds,
    CPU seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *argv], check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    rss, cpu = out.stdout.split()[-2:]
    return int(rss), time.perf_counter() - t0, float(cpu)


def make_release(docroot: Path, name: str, mib: int) -> Path:
    root = docroot.parent / f"root-{name}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=bench\n")
    with open(root / "blob", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    tarball = docroot / f"{name}.tar.zst"
    subprocess.run(
        f"tar --numeric-owner -C {root} -cf - . | zstd -q -1 -T0 -o {tarball}", shell=True, check=True
    )
    shutil.rmtree(root)
    digest = hashlib.sha256()
    with open(tarball, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    with open(docroot / "SHA256SUMS", "a") as f:
        f.write(f"{digest.hexdigest()} *{tarball.name}\n")
    return tarball


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64,256,1024", help="image sizes in MiB, comma-separated")
    ap.add_argument("-n", type=int, default=3, help="repetitions per size")
    ap.add_argument("--quick", action="store_true", help="the reduced run for CI: --sizes 16 -n 1")
    ap.add_argument(
        "--peer-dir",
        type=Path,
        default=STORE if STORE.is_dir() else None,
        help=f"where the peer extracts (default: {STORE}, the store's filesystem, if it exists)",
    )
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.n = "16", 1
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="nspawnctl-pullmem-", dir="/var/tmp"))
    peer_parent = args.peer_dir or work
    docroot = work / "docroot"
    docroot.mkdir()
    server = None
    try:
        for mib in sizes:
            make_release(docroot, f"img{mib}", mib)
        server = subprocess.Popen(
            [sys.executable, str(WEBSERVER), "--root", str(docroot), "--http", "8089", "--bind", "127.0.0.1",
             "--log", str(work / "log")],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        server.stdout.readline()
        print(
            f"Peak memory of a pull (median of {args.n}), against curl | zstd -d | tar -x of the same file "
            f"(extracting into {peer_parent}):"
        )
        rows = []
        for mib in sizes:
            url = f"http://127.0.0.1:8089/img{mib}.tar.zst"
            ours, peer, ours_s, peer_s, ours_cpu, peer_cpu = [], [], [], [], [], []
            for _ in range(args.n):
                kib, secs, cpu = peak_kib(
                    ["nspawnctl", "pull", "-q", "--insecure", "--verify=checksum", url, f"bench/pull{mib}"]
                )
                ours.append(kib)
                ours_s.append(secs)
                ours_cpu.append(cpu)
                subprocess.run(
                    ["nspawnctl", "rmi", "-f", f"bench/pull{mib}"], capture_output=True, check=True
                )
                dest = Path(tempfile.mkdtemp(prefix=".bench-peer-", dir=peer_parent))
                try:
                    kib, secs, cpu = peak_kib(
                        ["sh", "-c", f"curl -sf {url} | zstd -dq | tar --numeric-owner -C {dest} -xf -"]
                    )
                finally:
                    shutil.rmtree(dest)
                peer.append(kib)
                peer_s.append(secs)
                peer_cpu.append(cpu)
            m, p = statistics.median(ours), statistics.median(peer)
            t_ours, t_peer = statistics.median(ours_s), statistics.median(peer_s)
            c_ours, c_peer = statistics.median(ours_cpu), statistics.median(peer_cpu)
            print(
                f"  {mib:5d} MiB image: nspawnctl pull {m / 1024:6.1f} MiB peak RSS, "
                f"{t_ours:5.1f} s;  peer {p / 1024:5.1f} MiB, "
                f"{t_peer:5.1f} s;  time ratio {t_ours / t_peer:4.2f}x;  "
                f"CPU {c_ours:.1f} s against {c_peer:.1f} s"
            )
            rows.append(
                f"| {mib} MiB | {m / 1024:.1f} MiB | {p / 1024:.1f} MiB | "
                f"{t_ours / t_peer:.2f}x ({t_ours:.1f} s against {t_peer:.1f} s) | "
                f"{c_ours:.1f} s against {c_peer:.1f} s |"
            )
        print()
        print("| image | `nspawnctl pull` peak RSS | peer peak RSS | time ratio to peer | CPU against peer |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
