"""An A/B of two nspawnctl source trees on the start path, in one booted test host.

Wall times on a shared machine follow its load more than our code, so each measure here is taken
from both trees in the same run, interleaved, and two of them hardly depend on the load:

- ``wall``: each round runs the raw peer (``systemd-run --wait --pipe systemd-nspawn -U
  --network-veth -x``, as bench.py's) and ``nspawnctl run --rm IMAGE /bin/true`` from each tree
  (the same venv's Python, ``PYTHONPATH=TREE``, ``TREE/bin/nspawnctl``), the first rotating; the
  medians of the wall time and of the nspawnctl process's own CPU time (user + system, from
  ``wait4``: systemd's and nspawn's work is not in it), the load average before and after.
  ``--host-net`` adds the ``--network host --userns host`` rows against the raw peer without -U.
- ``instr``: the instructions (valgrind's callgrind, ``Ir``) of importing, in a fresh
  interpreter, every module one real ``run --rm`` of that tree loads (read from ``-X importtime``),
  against ``python3 -c pass``: the CLI's import cost, independent of the load.

    python3 bench/ab.py wall BASE NEW [-n 15] [--host-net] [--image IMG]
    python3 bench/ab.py instr BASE NEW [--valgrind PATH] [--image IMG]

Without ``--image`` it imports the busybox root of tests/host/demo.py as ``ab-img`` first.
Run it in the test host (``testhost.py exec -- /opt/nspawnctl/bin/python3 bench/ab.py ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_image(image: str | None) -> str:
    if image:
        return image
    name = "ab-img"
    if subprocess.run(["nspawnctl", "image", "inspect", name], capture_output=True).returncode != 0:
        sys.path.insert(0, str(HERE.parent / "tests" / "host"))
        from demo import make_busybox_root

        root = make_busybox_root(Path(tempfile.mkdtemp(prefix="ab-", dir="/var/tmp")) / "bb")
        (root / "usr").mkdir(exist_ok=True)
        subprocess.run(["nspawnctl", "import", str(root), name], check=True, capture_output=True)
    return name


def image_root(image: str) -> str:
    """The image's subvolume, which the raw peer snapshots (``-x``), as bench.py's."""
    out = subprocess.run(["nspawnctl", "image", "inspect", image], capture_output=True, text=True, check=True)
    return str(Path(json.loads(out.stdout)[0]["path"]).resolve())


def tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall ms, and the process's own CPU ms (its children's not counted)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0:
        raise SystemExit(f"ab: {argv} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def wall(args: argparse.Namespace) -> None:
    image = ensure_image(args.image)
    root = image_root(image)
    raw = ["systemd-run", "-q", "--wait", "--pipe", "--collect", "-p", "Delegate=yes", "--"]
    raw += ["systemd-nspawn", "-q", "--keep-unit", "--register=yes", "-x", "-M", "ab-raw"]
    rows: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "raw -U veth": ([*raw, "-U", "--network-veth", "-D", root, "/bin/true"], None),
    }
    for label, tree in (("base", args.base), ("new", args.new)):
        rows[label] = (
            [sys.executable, str(tree / "bin" / "nspawnctl"), "run", "--rm", image, "/bin/true"],
            tree_env(tree),
        )
    if args.host_net:
        rows["raw"] = ([*raw, "-D", root, "/bin/true"], None)
        for label, tree in (("base host/host", args.base), ("new host/host", args.new)):
            argv = [sys.executable, str(tree / "bin" / "nspawnctl"), "run", "--rm", "--network", "host"]
            rows[label] = ([*argv, "--userns", "host", image, "/bin/true"], tree_env(tree))
    names = list(rows)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    load0 = os.getloadavg()[0]
    for r in range(args.n + 1):  # round 0 warms up, not counted
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            argv, env = rows[k]
            got = timed(argv, env)
            if r:
                samples[k].append(got)
    load1 = os.getloadavg()[0]
    med = {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in samples.items()
    }
    print(f"medians of {args.n}, load {load0:.1f} -> {load1:.1f}")
    for k in names:
        peer = "raw" if "host/host" in k else "raw -U veth"
        ratio = f" = {med[k][0] / med[peer][0]:.2f}x {peer}" if k != peer and not k.startswith("raw") else ""
        cpu = f", CPU {med[k][1]:.0f} ms" if not k.startswith("raw") else ""
        print(f"  {k:16} {med[k][0]:7.0f} ms{ratio}{cpu}")
    for a, b in (("base", "new"), ("base host/host", "new host/host")):
        if a in med:
            print(
                f"  change {a} -> {b}: wall {100 * (med[b][0] / med[a][0] - 1):+.1f}%,"
                f" CPU {100 * (med[b][1] / med[a][1] - 1):+.1f}%"
            )


def run_modules(tree: Path, image: str) -> list[str]:
    """The modules one ``run --rm IMAGE /bin/true`` of ``tree`` imports, in import order."""
    argv = [
        sys.executable,
        "-X",
        "importtime",
        str(tree / "bin" / "nspawnctl"),
        "run",
        "--rm",
        image,
        "/bin/true",
    ]
    out = subprocess.run(argv, env=tree_env(tree), capture_output=True, text=True, check=True)
    mods = [m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", out.stderr, re.M)]
    return [m for m in mods if not m.startswith("encodings") and m != "site"]


def instructions(valgrind: str, argv: list[str], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", res.stderr)
        if res.returncode != 0 or m is None:
            raise SystemExit(f"ab: callgrind failed: {res.stderr[-2000:]}")
        return int(m.group(1))


def instr(args: argparse.Namespace) -> None:
    image = ensure_image(args.image)
    bare = instructions(args.valgrind, [sys.executable, "-c", "pass"], dict(os.environ))
    print(f"python3 -c pass: {bare / 1e6:.1f} M instructions")
    got = {}
    for label, tree in (("base", args.base), ("new", args.new)):
        mods = run_modules(tree, image)
        ours = [m for m in mods if m.startswith("nspawnctl")]
        # each in turn (a module -X importtime names may have failed there: Debian's apport hook)
        code = f"import importlib\nfor m in {mods!r}:\n    try:\n        importlib.import_module(m)\n"
        code += "    except ImportError:\n        pass\n"
        n = instructions(args.valgrind, [sys.executable, "-c", code], tree_env(tree))
        got[label] = n
        print(
            f"{label}: {len(mods)} modules ({len(ours)} ours): {n / 1e6:.1f} M,"
            f" {(n - bare) / 1e6:.1f} M past the bare interpreter"
        )
    b, n = got["base"] - bare, got["new"] - bare
    print(f"change in the imports' own instructions: {100 * (n / b - 1):+.1f}% ({(n - b) / 1e6:+.1f} M)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("wall", "instr"))
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("-n", type=int, default=15, help="rounds (wall)")
    ap.add_argument("--host-net", action="store_true", help="wall: the --network host --userns host rows too")
    ap.add_argument("--image", help="an image to run (default: ab-img, imported when missing)")
    ap.add_argument("--valgrind", default="valgrind", help="instr: the valgrind to run")
    args = ap.parse_args()
    args.base, args.new = args.base.resolve(), args.new.resolve()
    (wall if args.what == "wall" else instr)(args)


if __name__ == "__main__":
    main()
