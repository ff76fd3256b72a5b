"""Hostile archives that cost instead of escape (issue 12, defects 3, 4 and 7): a huge pax header
declared in a tiny file, decompression bombs through import, a registry pull and a tarball
pull, and GNU tar's sparse files. Each is refused early with a one-line error and a hint, and
leaves the pool as it was; the override flag lets a moderate case through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI
from test_errors import assert_error, pool_snapshot
from test_oci import layers_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ocibuild as ob
from registry import Registry, free_port, start_registry

WEBSERVER = Path(__file__).resolve().parent / "webserver.py"

ZEROS = 80 << 20  # past the 64 MiB below which no ratio is checked; gzip packs it ~1000:1


def header(name: bytes, typ: bytes, size: int) -> bytes:
    """One ustar header block (the field offsets of POSIX ustar)."""
    b = bytearray(512)
    b[0 : len(name)] = name
    b[100:108] = b"0000644\0"
    b[108:116] = b"0000000\0"
    b[116:124] = b"0000000\0"
    b[124:136] = b"%011o\0" % size
    b[136:148] = b"%011o\0" % 1_600_000_000
    b[156:157] = typ
    b[257:265] = b"ustar\x0000"
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def pax_bomb_zst(path: Path) -> Path:
    """A .tar.zst of a few tens of KB whose first header declares 256 MiB of pax records."""
    import zstandard

    record = b"9 a=bcde\n"
    size = (256 << 20) // len(record) * len(record)
    piece = record * ((1 << 20) // len(record))
    c = zstandard.ZstdCompressor(level=3).compressobj()
    with path.open("wb") as f:
        f.write(c.compress(header(b"./PaxHeaders/x", b"x", size)))
        left = size
        while left:
            part = piece[:left]
            f.write(c.compress(part))
            left -= len(part)
        f.write(c.compress(bytes(-size % 512)))
        f.write(c.flush())
    return path


def zeros_tar_gz(path: Path, size: int = ZEROS) -> Path:
    """A gzip'd rootfs tarball holding one file of `size` zero bytes (~1000:1), made in pieces."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with path.open("wb") as f:
        f.write(z.compress(header(b"etc/", b"5", 0) + header(b"zeros", b"0", size)))
        left = size
        while left:
            part = chunk[: min(left, len(chunk))]
            f.write(z.compress(part))
            left -= len(part)
        f.write(z.compress(bytes(-size % 512 + 1024)))
        f.write(z.flush())
    return path


@pytest.fixture(scope="module")
def bombs(workdir: Path) -> Path:
    d = workdir / "bombs"
    d.mkdir(exist_ok=True)
    pax_bomb_zst(d / "paxbomb.tar.zst")
    zeros_tar_gz(d / "zeros.tar.gz")
    return d


@pytest.fixture(scope="module")
def reg(workdir: Path) -> Iterator[Registry]:
    """A plain-HTTP registry of this module's own (pulled with --tls-verify=false)."""
    with start_registry(workdir / "reg-bombs") as r:
        yield r


@pytest.fixture(scope="module")
def web_root(workdir: Path, bombs: Path) -> Iterator[tuple[Path, str]]:
    """The tests' web server on a free port of 127.0.0.1, plain HTTP (pulled with --insecure)."""
    root = workdir / "web-bombs"
    root.mkdir(exist_ok=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(WEBSERVER), "--root", str(root), "--http", str(port), "--bind", "127.0.0.1",
         "--log", str(workdir / "web-bombs.log")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith("ready"), ready
        yield root, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def leftovers() -> list[str]:
    return sorted(str(p) for p in Path("/var/lib/nspawnctl").glob("*/.tmp-*"))


# --- defect 3 ---------------------------------------------------------------------------------


# Runs a command and reports its peak memory (KiB) on a last line of stderr.
_PEAK = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)"
)


@pytest.mark.serial
def test_huge_pax_header_in_a_tiny_tar_zst_is_refused_fast(bombs: Path) -> None:
    bomb = bombs / "paxbomb.tar.zst"
    assert bomb.stat().st_size < 1 << 20
    before = pool_snapshot()
    started = time.monotonic()
    raw = subprocess.run(
        [sys.executable, "-c", _PEAK, "nspawnctl", "import", str(bomb), "e2e/paxbomb:1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    *lines, peak = raw.stderr.splitlines()
    proc = subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout, "\n".join(lines))
    assert_error(proc, "268435449-byte extended header", "limit 1048576")
    assert proc.returncode == 125 and len(lines) <= 2, proc.stderr
    # main took 89 s and 3.9 GB for this file on Python 3.13.5 (the issue's: 52 s, 6.1 GiB)
    assert elapsed < 20, elapsed
    assert int(peak) < 200 << 10, peak  # KiB
    assert pool_snapshot() == before and leftovers() == []


# --- defect 4 ---------------------------------------------------------------------------------


def test_invalid_max_ratio_values_are_usage_errors(nsp: CLI, bombs: Path) -> None:
    for value in ("nan", "inf", "-1", "0.5", "lots"):
        for cmd in ("import", "pull"):
            proc = nsp(cmd, "--max-ratio", value, str(bombs / "zeros.tar.gz"), check=False)
            assert proc.returncode == 2, proc.stderr
            assert_error(proc, repr(value))
            assert "max-ratio" in proc.stderr


@pytest.mark.serial
def test_import_of_a_decompression_bomb_stops_early_and_the_flag_lifts_it(nsp: CLI, bombs: Path) -> None:
    bomb = bombs / "zeros.tar.gz"
    before = pool_snapshot()
    proc = nsp("import", str(bomb), "e2e/zeros:1", check=False)
    assert_error(proc, str(bomb), "more than 100 times its compressed size", "decompression bomb")
    assert proc.returncode == 125 and "hint: " in proc.stderr and "--max-ratio" in proc.stderr
    assert pool_snapshot() == before and leftovers() == []
    nsp.images.add("e2e/zeros:1")
    image = nsp("import", "--max-ratio", "5000", str(bomb), "e2e/zeros:1").stdout.strip()
    assert image.startswith("sha256:") or len(image) >= 12
    nsp("rmi", "e2e/zeros:1")
    assert pool_snapshot() == before


@pytest.mark.serial
def test_registry_layer_bomb_stops_during_streaming_and_the_flag_lifts_it(
    nsp: CLI, reg: Registry, workdir: Path
) -> None:
    layout = ob.Layout(workdir / "oci-bomb")
    layer = ob.Layer(ob.LayerSpec().dir("etc").file("zeros", bytes(ZEROS)), "gzip")
    img = layout.image("bomb", [layer], {"Cmd": ["true"]})
    assert img.layers[0].size < 1 << 20
    ob.push(layout, img, reg.url(""), "acc/bomb", "v1")
    ref = reg.ref("acc/bomb", "v1")
    before = layers_snapshot()
    proc = nsp("pull", "--tls-verify=false", ref, check=False, timeout=300)
    assert_error(proc, f"layer {img.layers[0].digest}", "decompression bomb")
    assert proc.returncode == 125 and "--max-ratio" in proc.stderr
    assert layers_snapshot() == before and leftovers() == []
    nsp.images.add(ref)
    proc = nsp("pull", "--tls-verify=false", "--max-ratio", "0", ref, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == img.config_digest
    nsp("rmi", ref)
    nsp("image", "prune", "-f", check=False)


@pytest.mark.serial
def test_tarball_pull_of_a_bomb_is_refused_and_the_flag_lifts_it(
    nsp: CLI, web_root: tuple[Path, str], bombs: Path
) -> None:
    root, base = web_root
    (root / "zeros.tar.gz").write_bytes((bombs / "zeros.tar.gz").read_bytes())
    url = f"{base}/zeros.tar.gz"
    before = pool_snapshot()
    proc = nsp("pull", "--insecure", "--verify=no", url, "e2e/webbomb:1", check=False, timeout=300)
    assert_error(proc, url, "decompression bomb")
    assert "--max-ratio" in proc.stderr
    assert pool_snapshot() == before and leftovers() == []
    nsp.images.add("e2e/webbomb:1")
    nsp("pull", "--insecure", "--verify=no", "--max-ratio=2000", url, "e2e/webbomb:1", timeout=300)
    nsp("rmi", "e2e/webbomb:1")


def test_cp_of_a_bomb_into_a_container_is_refused_and_leaves_no_file(
    nsp: CLI, busybox: str, bombs: Path
) -> None:
    name = nsp.name("bomb")
    nsp("create", "--name", name, busybox, "true")
    root = Path("/var/lib/machines") / name
    before = sorted(os.listdir(root))
    proc = nsp("cp", "-", f"{name}:/", input=(bombs / "zeros.tar.gz").read_bytes(), check=False)
    assert_error(proc, "the copy unpacks to more than 100 times its compressed size")
    assert sorted(os.listdir(root)) == before  # not even the half-written temporary file


# --- defect 7 ---------------------------------------------------------------------------------


@pytest.fixture
def holey(tmp_path: Path) -> Path:
    src = tmp_path / "holey"
    (src / "var/log").mkdir(parents=True)
    with (src / "var/log/lastlog").open("wb") as f:
        f.write(b"head")
        f.seek(64 << 20)
        f.write(b"mid" * 5000)
        f.truncate(1 << 30)
    (src / "dense").write_bytes(os.urandom(100_000))
    return src


def image_path(nsp: CLI, ref: str) -> Path:
    return Path(json.loads(nsp("image", "inspect", ref).stdout)[0]["path"])


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_tar_sparse_archive_imports_with_its_holes(
    nsp: CLI, holey: Path, tmp_path: Path, fmt: str
) -> None:
    """GNU tar's default (-S with --format=gnu: old GNU sparse headers) and its pax format."""
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-S", f"--format={fmt}", "-C", str(holey), "-cf", str(archive), "."], check=True)
    assert archive.stat().st_size < 1 << 20
    ref = f"e2e/sparse-{fmt}:1"
    nsp.images.add(ref)
    nsp("import", str(archive), ref)
    root = image_path(nsp, ref)
    for name in ("var/log/lastlog", "dense"):
        subprocess.run(["cmp", str(holey / name), str(root / name)], check=True)
    st = (root / "var/log/lastlog").stat()
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < 1 << 20, st  # btrfs keeps the holes
    du = subprocess.run(
        ["du", "-k", str(root / "var/log/lastlog")], capture_output=True, text=True, check=True
    )
    assert int(du.stdout.split()[0]) < 1024
