"""What a hostile archive can make the extractor spend: extended headers, sparse maps, the
decompression ratio and the pool's free space are bounded on every Python version (issue 12,
defects 3, 4 and 7); GNU tar's sparse formats unpack as sparse files."""

from __future__ import annotations

import gzip
import io
import math
import os
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nspawnctl.errors import ArchiveError, InvalidArgument, PoolError
from nspawnctl.store.tarread import TarReader
from nspawnctl.store.unpack import Limits, UnpackResult, unpack_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")


def block(name: bytes, typ: bytes, size: int, *, extra: dict[int, bytes] | None = None) -> bytes:
    """One ustar header block, built from the format's field offsets."""
    b = bytearray(512)
    b[0 : len(name)] = name
    b[100:108] = b"0000644\0"
    b[108:116] = b"0000000\0"
    b[116:124] = b"0000000\0"
    b[124:136] = b"%011o\0" % size
    b[136:148] = b"%011o\0" % 1_600_000_000
    b[156:157] = typ
    b[257:265] = b"ustar\x0000"
    for offset, value in (extra or {}).items():
        b[offset : offset + len(value)] = value
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def chunks_of_records(total: int) -> Iterator[bytes]:
    """`total` bytes of valid pax records ("9 a=bcde\\n"), 1 MiB at a time."""
    record = b"9 a=bcde\n"
    piece = record * ((1 << 20) // len(record))
    left = total
    while left:
        out = piece[:left]
        left -= len(out)
        yield out


def gzip_stream(parts: Iterator[bytes] | list[bytes]) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(z.compress(p) for p in parts) + z.flush()


def zstd_stream(parts: Iterator[bytes]) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return b"".join(c.compress(p) for p in parts) + c.flush()


def zeros(n: int) -> Iterator[bytes]:
    piece = bytes(1 << 20)
    while n > 0:
        yield piece[: min(n, len(piece))]
        n -= len(piece)


def unpack(data: bytes, dest: Path, **kw: object) -> UnpackResult:
    return unpack_tar(io.BytesIO(data), dest, **kw)  # type: ignore[arg-type]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


def refused_cheaply(run: Callable[[], object], match: str, peak_max: int = 16 << 20) -> str:
    """Run an extraction that must fail fast and without holding the archive's claim in memory."""
    tracemalloc.start()
    started = time.process_time()  # CPU time: the machine may be busy with other tests
    try:
        with pytest.raises(ArchiveError, match=match) as e:
            run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.process_time() - started
    assert peak < peak_max, f"peak {peak} bytes"
    assert elapsed < 10, f"took {elapsed:.1f} s of CPU"  # the 3.13 regression: 52 s and more
    return str(e.value)


# --- defect 3: extended headers ----------------------------------------------------------------


def test_huge_pax_header_in_a_tiny_zstd_file_is_refused_before_it_is_read(dest: Path) -> None:
    size = (256 << 20) // 9 * 9  # 256 MiB of records, a whole number of them
    bomb = zstd_stream(
        iter([block(b"./PaxHeaders/x", b"x", size), *chunks_of_records(size), bytes(-size % 512)])
    )
    assert len(bomb) < 1 << 20  # the sample: 47 KB
    message = refused_cheaply(lambda: unpack(bomb, dest), "extended header")
    assert f"{size}-byte extended header at offset 0 (limit 1048576" in message
    assert os.listdir(dest) == []


@pytest.mark.parametrize(("typ", "what"), [(b"L", "long name"), (b"K", "long link"), (b"g", "global")])
def test_huge_gnu_long_name_and_global_headers_are_refused(typ: bytes, what: str, dest: Path) -> None:
    size = 64 << 20
    bomb = gzip_stream(iter([block(b"././@LongLink", typ, size), *zeros(size)]))
    refused_cheaply(lambda: unpack(bomb, dest), "extended header")


def test_many_extended_headers_for_one_member_add_up(dest: Path) -> None:
    part = b"".join(chunks_of_records(9 * 70_000))  # 630 KB each: two exceed 1 MiB together
    one = block(b"./PaxHeaders/f", b"x", len(part)) + pad(part)
    data = one + one + block(b"f", b"0", 0) + bytes(1024)
    message = refused_cheaply(lambda: unpack(data, dest), "630000-byte extended header at offset 630784")
    assert "limit 1048576 per member" in message


def test_the_limit_is_configurable_and_headers_below_it_pass(dest: Path) -> None:
    records = b"".join(chunks_of_records(9 * 1000))
    data = block(b"./PaxHeaders/f", b"x", len(records)) + pad(records) + block(b"f", b"0", 0) + bytes(1024)
    assert unpack(data, dest).entries == 1
    other = dest.parent / "other"
    other.mkdir()
    with pytest.raises(ArchiveError, match="9000-byte extended header"):
        unpack(data, other, limits=Limits(max_header=8192))


def test_sparse_map_with_too_many_regions_is_refused(dest: Path) -> None:
    # old GNU sparse: 4 regions in the header, 21 per extension block while isextended is set
    entry = b"%011o\0%011o\0" % (0, 1)
    ext = (entry * 21).ljust(504, b"\0") + b"\x01" + bytes(7)
    head = block(
        b"holes", b"S", 0, extra={257: b"ustar  \0", 386: entry * 4, 482: b"\x01", 483: b"%011o\0" % 1}
    )
    bomb = gzip_stream(iter([head, *(ext for _ in range(20_000))]))
    # the map is held up to the limit (65536 regions), not as far as the archive goes
    refused_cheaply(lambda: unpack(bomb, dest), r"more than 65536 data regions")


def test_pax_sparse_map_with_too_many_regions_is_refused(dest: Path) -> None:
    value = b"0,1," * 70_000 + b"0,1"
    record = b"GNU.sparse.map=" + value + b"\n"
    n = len(record) + 8
    record = b"%d " % (n + len(str(n)) - 7) + record
    assert int(record.split(b" ", 1)[0]) == len(record)
    data = block(b"./PaxHeaders/f", b"x", len(record)) + pad(record) + block(b"f", b"0", 0) + bytes(1024)
    with pytest.raises(ArchiveError, match="data regions"):
        unpack(data, dest, limits=Limits(max_header=4 << 20))


def test_truncated_and_invalid_headers_give_archive_errors(dest: Path) -> None:
    good = block(b"f", b"0", 3) + pad(b"abc") + bytes(1024)
    assert unpack(good, dest).entries == 1
    for bad in (
        block(b"./PaxHeaders/f", b"x", 20) + pad(b"nonsense records!!!\n") + good,
        block(b"./PaxHeaders/f", b"x", 100)[:600],
        block(b"f", b"0", 3)[:-1] + b"\x01",  # bad checksum
        block(b"./PaxHeaders/f", b"x", 0) + bytes(1024),  # an extended header describing no member
    ):
        other = dest.parent / str(hash(bad))
        other.mkdir()
        with pytest.raises(ArchiveError):
            unpack(bad, other)


# --- defect 4: decompression bombs -------------------------------------------------------------


def zero_file_tar(size: int) -> Iterator[bytes]:
    yield block(b"zeros", b"0", size)
    yield from zeros(size)
    yield bytes(-size % 512 + 1024)


def test_ratio_limit_stops_a_bomb_early_and_can_be_lifted(dest: Path) -> None:
    bomb = gzip_stream(zero_file_tar(48 << 20))
    assert len(bomb) < 1 << 20
    limits = Limits(ratio_floor=4 << 20)
    message = refused_cheaply(lambda: unpack(bomb, dest, limits=limits, label="bomb.tar.gz"), "bomb")
    assert message.startswith("bomb.tar.gz unpacks to more than 100 times its compressed size")
    assert (dest / "zeros").exists() is False or (dest / "zeros").stat().st_size < 8 << 20
    other = dest.parent / "lifted"
    other.mkdir()
    result = unpack(bomb, other, limits=Limits(ratio_floor=4 << 20, max_ratio=0))
    assert (other / "zeros").stat().st_size == 48 << 20 and result.entries == 1
    third = dest.parent / "raised"
    third.mkdir()
    unpack(bomb, third, limits=Limits(ratio_floor=4 << 20, max_ratio=5000))


def test_default_ratio_leaves_small_and_ordinary_archives_alone(dest: Path) -> None:
    # below the floor, any ratio passes: a small archive of empty files compresses very well
    small = gzip.compress(b"".join(zero_file_tar(8 << 20)))
    assert unpack(small, dest).entries == 1


@pytest.mark.parametrize("ratio", [math.nan, math.inf, -1.0])
def test_invalid_ratio_limit_is_refused(ratio: float) -> None:
    with pytest.raises(InvalidArgument, match="invalid ratio limit"):
        Limits(max_ratio=ratio)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(where)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (where / "dest").mkdir()
        yield where / "dest"
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.parametrize("min_free", [1 << 30, 0], ids=["reserve", "enospc"])
def test_a_full_filesystem_stops_the_unpack_with_a_pool_error(small_fs: Path, min_free: int) -> None:
    archive = gzip_stream(zero_file_tar(64 << 20))
    with pytest.raises(PoolError, match=r"cannot unpack img\.tar\.gz: the pool is full") as e:
        unpack(archive, small_fs, limits=Limits(max_ratio=0, min_free=min_free), label="img.tar.gz")
    assert "image prune" in (e.value.hint or "")


# --- defect 7: GNU tar's sparse formats ----------------------------------------------------------


@pytest.fixture(scope="module")
def holey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("holey")
    with (src / "middle").open("wb") as f:
        f.write(b"head")
        f.seek(1 << 20)
        f.write(b"mid" * 5000)
        f.seek(3 << 20)
        f.write(b"tail")
    with (src / "tailhole").open("wb") as f:
        f.write(b"x" * 5000)
        f.truncate(8 << 20)
    with (src / "allhole").open("wb") as f:
        f.truncate(5 << 20)
    (src / "dense").write_bytes(os.urandom(70_000))
    return src


@pytest.mark.parametrize(
    "options",
    [
        [],  # GNU tar's default format (gnu): old GNU sparse headers
        ["--format=oldgnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
        ["--format=posix"],
    ],
    ids=["default", "oldgnu", "pax-0.0", "pax-0.1", "pax-1.0", "posix"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_gnu_tar_sparse_archives_unpack_identical_and_sparse(
    options: list[str], compress: bool, holey: Path, tmp_path: Path, dest: Path
) -> None:
    archive = tmp_path / "a.tar"
    subprocess.run(["tar", "-S", *options, "-C", str(holey), "-cf", str(archive), "."], check=True)
    data = archive.read_bytes()
    unpack(gzip.compress(data) if compress else data, dest)
    for name in ("middle", "tailhole", "allhole", "dense"):
        subprocess.run(["cmp", str(holey / name), str(dest / name)], check=True)
        st = (dest / name).stat()
        assert st.st_size == (holey / name).stat().st_size
        if name != "dense":
            assert st.st_blocks * 512 < st.st_size // 4, (name, st.st_blocks)
        assert not any(n.startswith("GNUSparseFile") for n in os.listdir(dest))


def test_sparse_member_reports_its_map(holey: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    subprocess.run(["tar", "-S", "-C", str(holey), "-cf", str(archive), "middle"], check=True)
    reader = TarReader(io.BytesIO(archive.read_bytes()).read)
    m = reader.next()
    assert m is not None and m.name == "middle" and m.size == (3 << 20) + 4
    assert m.sparse is not None and m.sparse[0][0] == 0 and m.stored == sum(n for _, n in m.sparse)


def test_directories_waiting_for_their_metadata_are_bounded(dest: Path) -> None:
    data = b"".join(block(b"d%d/" % i, b"5", 0) for i in range(4)) + bytes(1024)
    with pytest.raises(ArchiveError, match="more than 3 directories"):
        unpack(data, dest, limits=Limits(max_dirs=3))
    other = dest.parent / "other"
    other.mkdir()
    assert unpack(data, other, limits=Limits(max_dirs=4)).entries == 4


def test_copy_into_a_container_has_the_same_caps(dest: Path) -> None:
    """`cp - CTR:DIR` unpacks a tar stream from the user with the same extractor."""
    from nspawnctl.store.copy import extract_into

    bomb = gzip_stream(zero_file_tar(80 << 20))
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(ArchiveError, match="the copy unpacks to more than 100 times"):
            extract_into(fd, io.BytesIO(bomb), lambda uid, gid: (uid, gid))
    finally:
        os.close(fd)


def test_pax_global_records_are_few(dest: Path) -> None:
    """Global records apply to every later member: many of them would cost per member."""
    records = b"".join(b"%d user.k%03d=v\n" % (len(b"user.k000=v\n") + 3, i) for i in range(65))
    assert records.startswith(b"15 user.k000=v\n")
    data = block(b"pax_global_header", b"g", len(records)) + pad(records) + block(b"f", b"0", 0) + bytes(1024)
    with pytest.raises(ArchiveError, match="more than 64 records"):
        unpack(data, dest)


# --- the reader on formats other writers produce ---------------------------------------------------


def pax_records(**records: str) -> bytes:
    """Pax records ("LENGTH KEY=VALUE", newline-ended); LENGTH counts its own digits too."""
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


def test_reader_applies_gnu_long_names_pax_records_and_base256_sizes() -> None:
    long = b"d/" + b"n" * 300
    big = bytearray(block(b"big", b"0", 0))
    big[124:136] = b"\x80" + (5).to_bytes(11, "big")  # GNU base-256 size
    big[148:156] = b" " * 8
    big[148:156] = b"%06o\0 " % sum(big)
    global_ = pax_records(comment="abc", uname="x")
    local = pax_records(path="from/pax", mtime="1600000000.25", comment="")
    data = (
        block(b"././@LongLink", b"L", len(long) + 1) + pad(long + b"\0")
        + block(b"short", b"0", 2) + pad(b"hi")
        + block(b"pax_global_header", b"g", len(global_)) + pad(global_)
        + block(b"./PaxHeaders/x", b"x", len(local)) + pad(local) + block(b"ignored", b"0", 0)
        + bytes(big) + pad(b"12345") + bytes(1024)
    )  # fmt: skip
    reader = TarReader(io.BytesIO(data).read)
    m = reader.next()
    assert m is not None and m.name == long.decode() and reader.read(10) == b"hi"
    m = reader.next()
    assert m is not None and m.name == "from/pax" and m.mtime_ns == 1_600_000_000_250_000_000
    assert "comment" not in m.pax_headers and m.pax_headers["uname"] == "x"  # "comment=" unset it
    m = reader.next()
    assert m is not None and (m.name, m.size, reader.read(100)) == ("big", 5, b"12345")
    assert m.pax_headers == {"comment": "abc", "uname": "x"}
    assert reader.next() is None and reader.end == len(data) - 1024
