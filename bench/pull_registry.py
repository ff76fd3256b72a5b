#!/usr/bin/env python3
"""Registry pulls: ``nspawnctl pull`` next to ``skopeo copy`` + ``umoci unpack``, measured in the same run.

A local CNCF distribution registry (tests/e2e/registry.py, plain HTTP) serves two images built with
tests/e2e/ocibuild.py and pushed byte for byte: each is one large base layer (busybox plus a few
thousand files of mixed sizes, text and incompressible data) that the two share, and two small layers
of its own, the second with a whiteout of a base file. All layers are gzip: umoci 0.4 reads no zstd.
Measured:

  cold    pull image A into an empty store: ``nspawnctl pull --tls-verify=false``, against the peer
          ``skopeo copy --src-tls-verify=false docker://A oci:DIR:a && umoci unpack --image DIR:a``;
  shared  then pull image B: nspawnctl reuses the base layer (a btrfs snapshot) and unpacks only the
          two small ones; skopeo copies into the same OCI layout and skips the blobs it has, but
          ``umoci unpack`` must still extract all three layers into a new bundle.

Run inside a systemd host with a btrfs pool (``make bench`` boots the test host and runs this in it).
The peer writes to a hidden directory on the same btrfs filesystem as the store; ``sync`` runs,
untimed, after every measured command so one's writeback never lands in the other's time. Each round
starts from an empty store (``nspawnctl rmi`` + ``nspawnctl image prune -f``) and an empty peer
directory; a warm-up round (not counted) checks that both produce the image's exact file tree. Prints
medians and ratios to the peer, and the bytes each side downloaded (from the registry's access log).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import ocibuild as ob
from demo import make_busybox_root
from registry import Registry, start_registry

PEER_DIR = Path("/var/lib/machines/.bench-pull-registry")  # hidden: machined lists no dot directories
NAMES = {"a": "bench/pull-a", "b": "bench/pull-b"}
WORDS = 4000


def base_spec(busybox: Path, mib: int, rng: random.Random) -> ob.LayerSpec:
    """busybox plus ``mib`` MiB of files: ~45% small text files (0.5-64 KiB, compressible), ~40%
    binaries (64 KiB-4 MiB, incompressible), two large incompressible blobs, and some symlinks."""
    spec = ob.LayerSpec().tree(busybox)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 11))) for _ in range(WORDS)]
    text_pool = " ".join(rng.choices(vocab, k=(8 << 20) // 7)).encode()
    for d in ("usr", "usr/lib", "usr/lib/bench", "usr/share", "usr/share/bench"):
        spec.dir(d)
    subdirs = 48
    for i in range(subdirs):
        spec.dir(f"usr/share/bench/d{i:02d}").dir(f"usr/lib/bench/d{i:02d}")
    budget = mib << 20
    text_budget, bin_budget = budget * 45 // 100, budget * 40 // 100
    big = (budget - text_budget - bin_budget) // 2
    n = 0
    while text_budget > 0:
        size = min(text_budget, int(2 ** rng.uniform(9, 16)))
        start = rng.randrange(len(text_pool) - size)
        path = f"usr/share/bench/d{n % subdirs:02d}/doc{n}.txt"
        spec.file(path, text_pool[start : start + size])
        if n % 97 == 0:
            spec.symlink(f"usr/share/bench/d{n % subdirs:02d}/latest{n}", f"doc{n}.txt")
        text_budget -= size
        n += 1
    m = 0
    while bin_budget > 0:
        size = min(bin_budget, int(2 ** rng.uniform(16, 22)))
        spec.file(f"usr/lib/bench/d{m % subdirs:02d}/lib{m}.so", rng.randbytes(size), 0o755)
        bin_budget -= size
        m += 1
    for k in range(2):
        spec.file(f"usr/lib/bench/blob{k}.bin", rng.randbytes(big))
    return spec


def small_specs(tag: str, rng: random.Random) -> tuple[ob.LayerSpec, ob.LayerSpec]:
    """An image's own two small layers: an "application" (~300 KiB), then config and a whiteout."""
    app = ob.LayerSpec().dir("opt").dir(f"opt/{tag}").dir(f"opt/{tag}/bin")
    app.file(f"opt/{tag}/bin/{tag}", rng.randbytes(256 << 10), 0o755)
    for i in range(20):
        app.file(f"opt/{tag}/data{i}.txt", f"{tag} {i}\n" * rng.randint(10, 200))
    conf = ob.LayerSpec().dir(f"etc/{tag}").file(f"etc/{tag}/{tag}.conf", f"name={tag}\n")
    conf.file("etc/marker", f"{tag}\n").whiteout("usr/share/bench/d00/doc0.txt")
    return app, conf


@dataclass
class Images:
    a: ob.BuiltImage
    b: ob.BuiltImage
    base_size: int  # compressed bytes of the shared layer
    base_files: int


def build_images(work: Path, reg: Registry, mib: int) -> Images:
    rng = random.Random(20261124)  # the same bytes, so the same digests, in every run
    busybox = make_busybox_root(work / "busybox")
    layout = ob.Layout(work / "oci-src")
    spec = base_spec(busybox, mib, rng)
    base = ob.Layer(spec, "gzip")
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    built = {}
    for tag in ("a", "b"):
        app, conf = small_specs(tag, rng)
        built[tag] = layout.image(
            tag, [base, ob.Layer(app, "gzip"), ob.Layer(conf, "gzip")], {"Cmd": ["/bin/sh"], "Env": env}
        )
        ob.push(layout, built[tag], reg.url(""), f"bench/{tag}", "v1")
    layout.save()
    files = sum(op.kind == "file" for op in spec.ops)
    return Images(built["a"], built["b"], built["a"].layers[0].size, files)


# --------------------------------------------------------------------------- measuring


def sh(argv: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def timed(argv: list[str]) -> float:
    """Seconds a command takes; then an untimed sync, so its writeback is not charged to the next."""
    t0 = time.perf_counter()
    sh(argv)
    elapsed = time.perf_counter() - t0
    os.sync()
    return elapsed


@dataclass
class Side:
    """One tool's times (and downloaded bytes) for one case, over the counted rounds."""

    secs: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)  # peer: skopeo / umoci
    downloaded: list[int] = field(default_factory=list)

    def add(self, secs: float, downloaded: int, **parts: float) -> None:
        self.secs.append(secs)
        self.downloaded.append(downloaded)
        for k, v in parts.items():
            self.parts.setdefault(k, []).append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.secs)


class Bench:
    def __init__(self, reg: Registry, images: Images, umoci: str, peer_dir: Path) -> None:
        self.reg, self.images, self.umoci, self.peer_dir = reg, images, umoci, peer_dir
        self.layout = peer_dir / "oci"
        self.results = {case: {"nspawnctl": Side(), "peer": Side()} for case in ("cold", "shared")}

    def ref(self, tag: str) -> str:
        return self.reg.ref(f"bench/{tag}", "v1")

    def downloaded_since(self, mark: int) -> int:
        return sum(r.size for r in self.reg.blob_gets(since=mark))

    def clean(self) -> None:
        subprocess.run(["nspawnctl", "rmi", "-f", *NAMES.values()], capture_output=True)
        sh(["nspawnctl", "image", "prune", "-f"])
        shutil.rmtree(self.peer_dir, ignore_errors=True)
        self.peer_dir.mkdir(parents=True)
        os.sync()

    def ours(self, tag: str) -> tuple[float, int]:
        mark = self.reg.mark()
        secs = timed(["nspawnctl", "pull", "-q", "--tls-verify=false", self.ref(tag), NAMES[tag]])
        return secs, self.downloaded_since(mark)

    def peer(self, tag: str) -> tuple[float, float, int]:
        mark = self.reg.mark()
        copy = timed(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{self.ref(tag)}",
             f"oci:{self.layout}:{tag}"]
        )  # fmt: skip
        downloaded = self.downloaded_since(mark)
        unpack = timed([self.umoci, "unpack", "--image", f"{self.layout}:{tag}", str(self.bundle(tag))])
        return copy, unpack, downloaded

    def bundle(self, tag: str) -> Path:
        return self.peer_dir / f"bundle-{tag}"

    def round(self, i: int) -> None:
        """One round: cold A, then shared B, for both sides; i < 0 is the warm-up (checked, not kept).

        The side that goes first alternates, so drift (caches, the machine's load) hits both alike.
        """
        self.clean()
        order = ("nspawnctl", "peer") if i % 2 == 0 else ("peer", "nspawnctl")
        for case, tag in (("cold", "a"), ("shared", "b")):
            for side in order:
                if side == "nspawnctl":
                    secs, got = self.ours(tag)
                    if i >= 0:
                        self.results[case][side].add(secs, got)
                else:
                    copy, unpack, got = self.peer(tag)
                    if i >= 0:
                        self.results[case][side].add(copy + unpack, got, skopeo=copy, umoci=unpack)
        if i < 0:
            self.check()

    def check(self) -> None:
        """Both sides made exactly the images' trees (else the times compare different work)."""
        for tag, img in (("a", self.images.a), ("b", self.images.b)):
            info = json.loads(sh(["nspawnctl", "image", "inspect", NAMES[tag]]).stdout)[0]
            if info["id"] != img.config_digest:
                raise RuntimeError(f"{NAMES[tag]} is {info['id']}, expected {img.config_digest}")
            for who, root in (
                ("nspawnctl", Path(info["path"]).resolve()),
                ("umoci", self.bundle(tag) / "rootfs"),
            ):
                diff = ob.diff_trees(img.tree, ob.tree_of(root))
                if diff:
                    raise RuntimeError(
                        f"{who}'s image {tag} differs from its layers:\n" + "\n".join(diff[:20])
                    )

    def report(self, n: int) -> None:
        imgs = self.images
        print(
            f"Registry pulls (median of {n}), against skopeo copy + umoci unpack in the same run; shared "
            f"base layer {imgs.base_size / 2**20:.0f} MiB gzip ({imgs.base_files} files), "
            f"{sum(x.size for x in imgs.a.layers[1:]) / 1024:.0f} KiB in the two small layers:"
        )
        print(f"  {'case':<7} {'command':<46} {'median':>9} {'downloaded':>11} {'ratio':>7}")
        for case, tag in (("cold", "a"), ("shared", "b")):
            ours, peer = self.results[case]["nspawnctl"], self.results[case]["peer"]
            pull = f"nspawnctl pull {tag} ({'empty store' if case == 'cold' else 'base layer present'})"

            def line(case: str, label: str, secs: float, got: str = "", ratio: str = "") -> None:
                print(f"  {case:<7} {label:<46} {secs * 1000:7.0f} ms {got:>11} {ratio:>7}".rstrip())

            line(case, f"skopeo copy + umoci unpack {tag} (peer)", peer.median,
                 f"{statistics.median(peer.downloaded) / 2**20:.1f} MiB", "peer")  # fmt: skip
            for part, label in (("skopeo", "skopeo copy"), ("umoci", "umoci unpack")):
                line("", f"  {label} alone", statistics.median(peer.parts[part]))
            line(case, pull, ours.median, f"{statistics.median(ours.downloaded) / 2**20:.1f} MiB",
                 f"{ours.median / peer.median:.2f}x")  # fmt: skip
        cold, shared = self.results["cold"], self.results["shared"]
        print(
            f"  shared over cold: nspawnctl {shared['nspawnctl'].median / cold['nspawnctl'].median:.2f}x, "
            f"peer {shared['peer'].median / cold['peer'].median:.2f}x"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5, help="counted rounds (after one warm-up round)")
    ap.add_argument("--base-mib", type=int, default=150, help="uncompressed size of the shared base layer")
    ap.add_argument("--umoci", default=shutil.which("umoci"), help="the umoci binary (default: from PATH)")
    ap.add_argument(
        "--peer-dir", type=Path, default=PEER_DIR, help="where the peer's OCI layout and bundles go"
    )
    args = ap.parse_args()
    if not args.umoci or not shutil.which("skopeo"):
        print("pull_registry.py needs skopeo and umoci (or --umoci PATH)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="nspawnctl-pullreg-", dir="/var/tmp"))
    try:
        with start_registry(work / "registry") as reg:
            images = build_images(work, reg, args.base_mib)
            bench = Bench(reg, images, args.umoci, args.peer_dir)
            try:
                for i in range(-1, args.n):
                    bench.round(i)
            finally:
                subprocess.run(["nspawnctl", "rmi", "-f", *NAMES.values()], capture_output=True)
                subprocess.run(["nspawnctl", "image", "prune", "-f"], capture_output=True)
                shutil.rmtree(args.peer_dir, ignore_errors=True)
            bench.report(args.n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
