"""Tests for nspawnctl.store.unpack: faithful rootfs extraction, digests, and refused attacks.

Run as root (owners, device nodes, security.* xattrs); the tests skip otherwise.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nspawnctl.errors import ArchiveError, FetchError, InvalidArgument, UnsafeArchive
from nspawnctl.store.tarread import TarReader
from nspawnctl.store.unpack import Limits, UnpackResult, open_decompressed, unpack_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, xattrs)")

MTIME = 1_600_000_000
# VFS_CAP_REVISION_2 with cap_net_raw (bit 13) permitted+effective, as `setcap cap_net_raw+ep` writes.
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


# --- building archives ------------------------------------------------------------------------

Entry = tuple[tarfile.TarInfo, bytes | None]


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = MTIME
    ti.mode = 0o644 if kind == tarfile.REGTYPE else 0o755
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def reg(name: str, data: bytes = b"", **attrs: object) -> Entry:
    return info(name, tarfile.REGTYPE, size=len(data), **attrs), data


def dir_(name: str, **attrs: object) -> Entry:
    return info(name, tarfile.DIRTYPE, **attrs), None


def sym(name: str, target: str, **attrs: object) -> Entry:
    return info(name, tarfile.SYMTYPE, linkname=target, **attrs), None


def hard(name: str, target: str, **attrs: object) -> Entry:
    return info(name, tarfile.LNKTYPE, linkname=target, **attrs), None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, **attrs: object) -> Entry:
    return info(name, kind, devmajor=major, devminor=minor, **attrs), None


def make_tar(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, **kw: object) -> UnpackResult:
    return unpack_tar(io.BytesIO(data), dest, **kw)  # type: ignore[arg-type]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


def snapshot(root: Path) -> list[tuple[str, int, int, int, bytes]]:
    """Everything observable about a tree, to show that an attack left it alone."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out.append((str(p), st.st_mode, st.st_nlink, st.st_mtime_ns, data))
    st = root.lstat()
    out.append((str(root), st.st_mode, st.st_nlink, st.st_mtime_ns, b""))
    return sorted(out)


# --- faithful extraction ------------------------------------------------------------------------


def test_rootfs_metadata_is_faithful(dest: Path) -> None:
    data = make_tar(
        dir_("./", mode=0o755, mtime=MTIME + 1),
        dir_("usr", mtime=MTIME + 2),
        dir_("usr/bin", mtime=MTIME + 3),
        reg("usr/bin/sudo", b"#!sudo\n", mode=0o4755),
        reg("usr/bin/wall", b"#!wall\n", mode=0o2755, gid=5),
        dir_("tmp", mode=0o1777, mtime=MTIME + 4),
        dir_("srv/shared", mode=0o2775, gid=1000),
        dir_("home/u", uid=1000, gid=1000, mode=0o700, mtime=MTIME + 5),
        reg("home/u/notes", b"hello", uid=1000, gid=1000, mode=0o640, mtime=MTIME + 6),
        node("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        node("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660, gid=6),
        node("run/initctl", tarfile.FIFOTYPE, mode=0o600),
        sym("etc/localtime", "/usr/share/zoneinfo/UTC", uid=0),
        sym("lib", "usr/lib"),
    )
    result = unpack(data, dest)
    assert result.entries == 14

    def mode(rel: str) -> int:
        return stat.S_IMODE((dest / rel).lstat().st_mode)

    assert mode("usr/bin/sudo") == 0o4755
    assert mode("usr/bin/wall") == 0o2755 and (dest / "usr/bin/wall").lstat().st_gid == 5
    assert mode("tmp") == 0o1777
    assert mode("srv/shared") == 0o2775
    assert mode("srv") == 0o755  # missing parent created like GNU tar
    st = (dest / "home/u/notes").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert st.st_mtime == MTIME + 6
    assert (dest / "home/u/notes").read_bytes() == b"hello"
    st = (dest / "home/u").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o700)
    # Directory times survive the creation of their children.
    assert (dest / "home/u").lstat().st_mtime == MTIME + 5
    assert (dest / "usr/bin").lstat().st_mtime == MTIME + 3
    assert (dest / "usr").lstat().st_mtime == MTIME + 2
    assert dest.lstat().st_mtime == MTIME + 1  # "./" metadata goes to dest itself

    st = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = (dest / "dev/loop0").lstat()
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 0)
    assert st.st_gid == 6
    assert stat.S_ISFIFO((dest / "run/initctl").lstat().st_mode)

    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (dest / "etc/localtime").lstat().st_mtime == MTIME
    assert os.readlink(dest / "lib") == "usr/lib"


def test_owner_is_numeric_not_looked_up(dest: Path) -> None:
    ti, data = reg("f", b"x", uid=4242, gid=4343)
    ti.uname, ti.gname = "root", "root"  # names must be ignored
    unpack(make_tar((ti, data)), dest)
    st = (dest / "f").lstat()
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_symlink_owner(dest: Path) -> None:
    unpack(make_tar(sym("l", "/nowhere", uid=1000, gid=1000)), dest)
    st = (dest / "l").lstat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_hardlink_shares_inode_and_keeps_first_metadata(dest: Path) -> None:
    data = make_tar(
        reg("usr/bin/a", b"payload", mode=0o755, uid=1000, gid=1000),
        hard("usr/bin/b", "usr/bin/a", mode=0o600, uid=0, gid=0),
        hard("sbin/c", "/usr/bin/a"),  # absolute target: taken relative to the root, like GNU tar
        hard("./usr/bin/d", "./usr/bin/a"),
    )
    unpack(data, dest)
    a, b, c, d = ((dest / p).lstat() for p in ("usr/bin/a", "usr/bin/b", "sbin/c", "usr/bin/d"))
    assert a.st_ino == b.st_ino == c.st_ino == d.st_ino
    assert a.st_nlink == 4
    assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) == (0o755, 1000, 1000)


def test_hardlink_to_symlink_links_the_symlink(dest: Path) -> None:
    unpack(make_tar(sym("s", "/etc/passwd"), hard("t", "s")), dest)
    assert (dest / "s").lstat().st_ino == (dest / "t").lstat().st_ino
    assert os.readlink(dest / "t") == "/etc/passwd"


def test_xattrs_from_pax_headers(dest: Path) -> None:
    cap = CAP_NET_RAW.decode("utf-8", "surrogateescape")
    f, data = reg("usr/bin/ping", b"ping", mode=0o755, uid=0)
    f.pax_headers = {
        "SCHILY.xattr.user.foo": "bar",
        "SCHILY.xattr.security.capability": cap,
        "SCHILY.xattr.user.bin": b"\x00\xff\xfe raw".decode("utf-8", "surrogateescape"),
        "LIBARCHIVE.xattr.user.b64": "aGVsbG8",  # "hello", unpadded like libarchive writes
        "LIBARCHIVE.xattr.user.sp%20ace": "eA==",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",  # dropped on purpose
    }
    d, _ = dir_("var/lib/x", uid=1000)
    d.pax_headers = {"SCHILY.xattr.user.dir": "yes"}
    unpack(make_tar((f, data), (d, None)), dest)
    p = dest / "usr/bin/ping"
    assert os.getxattr(p, "user.foo") == b"bar"
    assert os.getxattr(p, "security.capability") == CAP_NET_RAW
    assert os.getxattr(p, "user.bin") == b"\x00\xff\xfe raw"
    assert os.getxattr(p, "user.b64") == b"hello"
    assert os.getxattr(p, b"user.sp ace") == b"x"
    assert "trusted.overlay.redirect" not in os.listxattr(p)
    assert os.getxattr(dest / "var/lib/x", "user.dir") == b"yes"
    assert (dest / "var/lib/x").lstat().st_uid == 1000


def test_capability_survives_chown_to_non_root(dest: Path) -> None:
    # chown clears security.capability; it must be set after the owner.
    f, data = reg("bin/x", b"x", mode=0o755, uid=1000, gid=1000)
    f.pax_headers = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    unpack(make_tar((f, data)), dest)
    assert os.getxattr(dest / "bin/x", "security.capability") == CAP_NET_RAW


def test_selinux_label_is_applied_or_skipped(dest: Path) -> None:
    f, data = reg("f", b"x")
    f.pax_headers = {"SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0\x00"}
    unpack(make_tar((f, data)), dest)
    assert (dest / "f").read_bytes() == b"x"


@pytest.mark.skipif(shutil.which("setcap") is None, reason="setcap missing (apt install libcap2-bin)")
def test_gnu_tar_xattrs_roundtrip(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/bin").mkdir(parents=True)
    ping = src / "usr/bin/ping"
    ping.write_bytes(b"\x7fELF")
    os.chown(ping, 1000, 1000)
    ping.chmod(0o4755)
    subprocess.run(["setcap", "cap_net_raw+ep", str(ping)], check=True)
    os.setxattr(ping, "user.foo", b"bar")
    expected_cap = os.getxattr(ping, "security.capability")
    archive = tmp_path / "a.tar"
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            str(src),
            "-cf",
            str(archive),
            ".",
        ],
        check=True,
    )
    with archive.open("rb") as raw:
        unpack_tar(raw, dest)
    p = dest / "usr/bin/ping"
    assert os.getxattr(p, "user.foo") == b"bar"
    assert os.getxattr(p, "security.capability") == expected_cap
    st = p.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4755)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_sparse_file_keeps_holes(fmt: str, tmp_path: Path, dest: Path) -> None:
    # A terabyte-sized apparent size (like lastlog with a high uid) must not be written out.
    src = tmp_path / "src"
    src.mkdir()
    with (src / "lastlog").open("wb") as f:
        f.write(b"head")
        f.seek(1 << 40)
        f.write(b"middle" * 1000)
        f.seek(1 << 41)
        f.write(b"tail")
    archive = tmp_path / "s.tar"
    subprocess.run(
        ["tar", "-S", f"--format={fmt}", "-C", str(src), "-cf", str(archive), "lastlog"], check=True
    )
    with archive.open("rb") as raw:
        unpack_tar(raw, dest, limits=Limits(max_bytes=1 << 20))
    p = dest / "lastlog"
    assert p.stat().st_size == (1 << 41) + 4
    with p.open("rb") as f:
        assert f.read(5) == b"head\0"
        f.seek(1 << 40)
        assert f.read(6000) == b"middle" * 1000
        f.seek((1 << 41) - 1)
        assert f.read() == b"\0tail"
    assert p.stat().st_blocks * 512 < 1 << 20  # holes kept


def test_long_names_gnu_and_pax(dest: Path) -> None:
    long = "/".join(["d" * 50] * 5) + "/" + "f" * 120
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        d = dest / str(fmt)
        d.mkdir()
        unpack(make_tar(reg(long, b"x"), sym("l", "t" * 300), fmt=fmt), d)
        assert (d / long).read_bytes() == b"x"
        assert os.readlink(d / "l") == "t" * 300


def test_non_utf8_names_are_kept_as_bytes(dest: Path) -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    unpack(make_tar(reg(name, b"x"), fmt=tarfile.GNU_FORMAT), dest)
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9"]


# --- digests and compression ------------------------------------------------------------------


def sample_tar() -> bytes:
    return make_tar(dir_("etc"), reg("etc/hostname", b"box\n"), reg("big", os.urandom(300_000)))


def compressors() -> Iterator[object]:
    yield pytest.param(lambda b: b, id="plain")
    yield pytest.param(gzip.compress, id="gz")
    yield pytest.param(lzma.compress, id="xz")
    yield pytest.param(bz2.compress, id="bz2")
    yield pytest.param(lambda b: zstd_compress(b), id="zst")


def zstd_compress(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)  # type: ignore[no-any-return]


SAMPLE = sample_tar()


@pytest.mark.parametrize("compress", list(compressors()))
def test_digest_is_of_uncompressed_stream(compress: object, dest: Path) -> None:
    result = unpack(compress(SAMPLE), dest)  # type: ignore[operator]
    assert result.digest == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()
    assert result.size == len(SAMPLE)
    assert result.entries == 3
    assert (dest / "etc/hostname").read_bytes() == b"box\n"


def test_digest_covers_trailing_padding(dest: Path) -> None:
    padded = SAMPLE + bytes(20480)
    result = unpack(gzip.compress(padded), dest)
    assert result.digest == "sha256:" + hashlib.sha256(padded).hexdigest()
    assert result.size == len(padded)


def test_concatenated_compressed_members(dest: Path) -> None:
    half = len(SAMPLE) // 2
    data = gzip.compress(SAMPLE[:half]) + gzip.compress(SAMPLE[half:])
    assert unpack(data, dest).digest == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def test_zstd_multiple_frames(dest: Path) -> None:
    half = len(SAMPLE) // 2
    data = zstd_compress(SAMPLE[:half]) + zstd_compress(SAMPLE[half:])
    assert unpack(data, dest).digest == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def zstd_frames(*parts: bytes, **options: object) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return b"".join(zstandard.ZstdCompressor(**options).compress(p) for p in parts)


@pytest.mark.parametrize(
    "options",
    [{}, {"write_checksum": True}, {"write_content_size": False}, {"level": 19, "write_dict_id": False}],
    ids=["default", "checksum", "no-size", "level19"],
)
def test_zstd_frames_skippable_frames_and_headers_decode_whole(
    options: dict[str, object], dest: Path
) -> None:
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    third = len(SAMPLE) // 3
    data = (
        zstd_frames(SAMPLE[:third], **options)
        + skippable
        + zstd_frames(SAMPLE[third : 2 * third], SAMPLE[2 * third :], **options)
    )
    assert unpack(data, dest).digest == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def test_zstd_bomb_is_decoded_in_bounded_pieces() -> None:
    """Each decoder call gets input holding at most _ZSTD_BLOCKS blocks, so what one call returns
    is bounded however well the input compresses (~32768:1 for zeros)."""
    from nspawnctl.store import unpack as mod

    zstandard = pytest.importorskip("zstandard")
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    assert len(bomb) < 64 << 10
    reader = mod._ZstdReader(mod._Rest(b"", io.BytesIO(bomb)), zstandard)
    biggest = total = 0
    while data := reader.read(1 << 30):
        biggest = max(biggest, len(data))
        total += len(data)
    assert total == 256 << 20
    assert biggest <= (mod._ZSTD_BLOCKS + 1) * (128 << 10)


def test_zstd_incompressible_input_is_decoded_in_large_pieces() -> None:
    from nspawnctl.store import unpack as mod

    zstandard = pytest.importorskip("zstandard")
    data = os.urandom(8 << 20)
    reader = mod._ZstdReader(mod._Rest(b"", io.BytesIO(zstd_frames(data))), zstandard)
    pieces = []
    while piece := reader.read(1 << 30):
        pieces.append(piece)
    assert b"".join(pieces) == data
    assert len(pieces) <= 16  # not 256-byte pieces: ~1 MiB each


def nspawnctl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nspawnctl-")]


class Broken(io.RawIOBase):
    """A download that fails (or is interrupted) after ``good`` bytes."""

    def __init__(self, data: bytes, good: int, error: BaseException | None) -> None:
        self._data = io.BytesIO(data[:good])
        self._error = error
        self.reads_after = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._data.readinto(b)
        if n:
            return n
        self.reads_after += 1
        if self._error is not None:
            raise self._error
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the pipeline runs
        time.sleep(0.5)
        return 0


def big_tar() -> bytes:
    return make_tar(*(reg(f"f{i}", os.urandom(1 << 20)) for i in range(8)))


def test_download_error_midway_propagates_unchanged_and_stops_every_stage(dest: Path) -> None:
    data = gzip.compress(big_tar(), compresslevel=1)
    error = FetchError("download of http://x/y cut short", hint="retry")
    raw = Broken(data, len(data) // 2, error)
    with pytest.raises(FetchError) as e:
        unpack_tar(raw, dest)  # type: ignore[arg-type]
    assert e.value is error
    assert raw.reads_after == 1  # read no further once it failed
    assert nspawnctl_threads() == []


def test_interrupt_midway_stops_every_stage(dest: Path) -> None:
    data = zstd_compress(big_tar())
    raw = Broken(data, len(data) // 2, None)
    with pytest.raises(KeyboardInterrupt):
        unpack_tar(raw, dest)  # type: ignore[arg-type]
    assert nspawnctl_threads() == []


class Stalled(io.RawIOBase):
    """A download whose server stops sending after ``good`` bytes: a read waits until closed."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data = io.BytesIO(data[:good])
        self._closing = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._data.readinto(b)
        if n:
            return n
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the read waits for the server
        self._closing.wait(30)
        raise ValueError("I/O operation on closed download")

    def close(self) -> None:
        self._closing.set()
        super().close()


def test_interrupt_does_not_wait_for_a_stalled_read(dest: Path) -> None:
    data = zstd_compress(big_tar())
    raw = Stalled(data, len(data) // 2)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        unpack_tar(raw, dest)  # type: ignore[arg-type]
    assert time.monotonic() - start < 5
    raw.close()  # as the caller does while unwinding: the read under way then ends
    deadline = time.monotonic() + 5
    while nspawnctl_threads():
        assert time.monotonic() < deadline, nspawnctl_threads()
        time.sleep(0.05)


class FailingClose(io.RawIOBase):
    def __init__(self, inner: io.RawIOBase) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._inner.readinto(b)

    def close(self) -> None:
        super().close()
        raise OSError("close failed")


def test_a_decoder_close_error_is_raised_not_printed_by_the_thread(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nspawnctl.store import unpack

    decoder = unpack._decoder
    monkeypatch.setattr(unpack, "_decoder", lambda src: FailingClose(decoder(src)))
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    with pytest.raises(OSError, match="close failed"):
        unpack_tar(io.BytesIO(gzip.compress(SAMPLE)), dest)
    assert seen == []


def test_archive_error_stops_the_download_early(dest: Path) -> None:
    """An unsafe member refuses the archive while later data is still being downloaded: the
    stages stop, and the stream is left where they stopped (read ahead a few MiB at most)."""
    data = make_tar(reg("../evil", b"x"), *(reg(f"f{i}", os.urandom(1 << 20)) for i in range(24)))
    raw = io.BytesIO(data)
    with pytest.raises(UnsafeArchive):
        unpack_tar(raw, dest)
    assert raw.tell() < 12 << 20
    assert nspawnctl_threads() == []


def test_reads_from_a_pipe(dest: Path) -> None:
    data = gzip.compress(SAMPLE)
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as raw:
        result = unpack_tar(raw, dest)
    t.join()
    assert result.digest == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def test_open_decompressed_alone() -> None:
    with open_decompressed(io.BytesIO(lzma.compress(b"abc" * 1000))) as f:
        assert f.read() == b"abc" * 1000
    with open_decompressed(io.BytesIO(b"plain")) as f:
        assert f.read() == b"plain"


def test_plain_tar_named_like_bzip2_magic(dest: Path) -> None:
    data = make_tar(reg("BZh9-readme", b"x"))
    unpack(data, dest)
    assert (dest / "BZh9-readme").read_bytes() == b"x"


def test_missing_zstandard_gives_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ArchiveError) as e:
        open_decompressed(io.BytesIO(b"\x28\xb5\x2f\xfd" + bytes(20)))
    assert "zstandard" in str(e.value) and e.value.hint and "zstandard" in e.value.hint


# --- replacing entries ------------------------------------------------------------------------


def test_later_member_replaces_earlier(dest: Path) -> None:
    data = make_tar(
        reg("a", b"one"),
        reg("a", b"two", mode=0o600),  # file over file
        dir_("b"),
        reg("b/child", b"c"),
        reg("b", b"now a file"),  # file over directory tree
        reg("c", b"file"),
        dir_("c", mode=0o700),  # directory over file
        reg("c/x", b"x"),
        dir_("d", mode=0o755),
        reg("d/keep", b"k"),
        dir_("d", mode=0o750, uid=1000),  # dir over dir: metadata only, children stay
        reg("e", b"file"),
        sym("e", "target"),  # symlink over file
        reg("e", b"file again"),  # file over symlink
        sym("f", "/"),
        dir_("f"),  # directory over symlink
        reg("f/x", b"inside"),
    )
    unpack(data, dest)
    assert (dest / "a").read_bytes() == b"two" and stat.S_IMODE((dest / "a").stat().st_mode) == 0o600
    assert (dest / "b").read_bytes() == b"now a file"
    assert (dest / "c/x").read_bytes() == b"x" and stat.S_IMODE((dest / "c").stat().st_mode) == 0o700
    assert (dest / "d/keep").read_bytes() == b"k"
    st = (dest / "d").lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o750, 1000)
    assert (dest / "e").read_bytes() == b"file again" and not (dest / "e").is_symlink()
    assert (dest / "f").is_dir() and not (dest / "f").is_symlink()
    assert (dest / "f/x").read_bytes() == b"inside"
    assert sorted(os.listdir(dest)) == ["a", "b", "c", "d", "e", "f"]  # no temporary files left


def test_file_replacing_symlink_does_not_write_through_it(tmp_path: Path, dest: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"original")
    unpack(make_tar(sym("x", str(victim)), reg("x", b"evil")), dest)
    assert victim.read_bytes() == b"original"
    assert (dest / "x").read_bytes() == b"evil"


def test_nonempty_dest_refused(dest: Path) -> None:
    (dest / "old").touch()
    with pytest.raises(InvalidArgument):
        unpack(SAMPLE, dest)


# --- attacks ----------------------------------------------------------------------------------


def attack_cases(sentinel: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (archive, member named in the error)."""
    return {
        "dotdot": (make_tar(reg("../evil", b"x")), "../evil"),
        "dotdot-deep": (make_tar(reg("a/../../evil", b"x")), "a/../../evil"),
        "dotdot-dir": (make_tar(dir_("a/../../evil")), "a/../../evil"),
        "symlink-abs-then-write": (
            make_tar(sym("esc", str(sentinel)), reg("esc/pwned", b"x")),
            "esc/pwned",
        ),
        "symlink-rel-then-write": (make_tar(sym("esc", "../.."), reg("esc/pwned", b"x")), "esc/pwned"),
        "symlink-then-mkdir": (make_tar(sym("esc", str(sentinel)), dir_("esc/sub")), "esc/sub"),
        "symlink-inside-root-refused": (
            make_tar(dir_("usr/lib"), sym("lib", "usr/lib"), reg("lib/x")),
            "lib/x",
        ),
        "symlink-deep-parent": (
            make_tar(dir_("a/b"), sym("a/b/c", str(sentinel)), reg("a/b/c/d/e", b"x")),
            "a/b/c/d/e",
        ),
        "hardlink-dotdot": (make_tar(hard("pw", "../../etc/passwd")), "pw"),
        "hardlink-abs-not-in-image": (make_tar(hard("pw", "/etc/passwd")), "pw"),
        "hardlink-abs-sentinel": (make_tar(hard("pw", str(sentinel / "file"))), "pw"),
        "hardlink-through-symlink": (
            make_tar(sym("esc", str(sentinel)), hard("pw", "esc/file")),
            "pw",
        ),
        "hardlink-to-directory": (make_tar(dir_("d"), hard("pw", "d")), "pw"),
        "hardlink-to-root": (make_tar(hard("pw", "./")), "pw"),
        "hardlink-to-later-member": (make_tar(hard("pw", "later"), reg("later", b"x")), "pw"),
        "root-replaced-by-symlink": (make_tar(sym("./", str(sentinel))), "./"),
        "root-replaced-by-symlink-dot": (make_tar(sym(".", "/")), "."),
        "root-replaced-by-file": (make_tar(reg(".", b"x")), "."),
        "root-replaced-by-hardlink": (make_tar(reg("f", b"x"), hard("./", "f")), "./"),
        "nul-in-name": (make_tar(reg("a", b"x", pax_headers={"path": "a\x00b"})), "a\x00b"),
        "nul-in-hardlink-target": (
            make_tar(reg("a", b"x"), hard("h", "a", pax_headers={"linkpath": "a\x00"})),
            "h",
        ),
    }


ATTACKS = list(attack_cases(Path("/placeholder")))


@pytest.mark.parametrize("case", ATTACKS)
def test_attack_refused(case: str, tmp_path: Path, dest: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_bytes(b"precious")
    before = snapshot(sentinel)
    passwd = os.lstat("/etc/passwd")
    archive, member = attack_cases(sentinel)[case]
    with pytest.raises(UnsafeArchive) as e:
        unpack(archive, dest)
    assert repr(member) in str(e.value), str(e.value)
    assert snapshot(sentinel) == before
    assert sorted(os.listdir(tmp_path)) == ["dest", "sentinel"]
    assert os.lstat("/etc/passwd").st_nlink == passwd.st_nlink
    assert not (tmp_path.parent / "evil").exists() and not Path("/evil").exists()


def test_dotdot_message(dest: Path) -> None:
    with pytest.raises(UnsafeArchive, match=r"unsafe archive member '\.\./x': it points outside the image"):
        unpack(make_tar(reg("../x")), dest)


def test_absolute_name_lands_inside(tmp_path: Path, dest: Path) -> None:
    unpack(make_tar(reg("/abs/evil", b"x"), dir_("/abs2")), dest)
    assert (dest / "abs/evil").read_bytes() == b"x"
    assert (dest / "abs2").is_dir()
    assert not Path("/abs/evil").exists()


def test_dot_slash_root_metadata_goes_to_dest(dest: Path) -> None:
    unpack(make_tar(dir_(".", mode=0o700, uid=1000), reg("./x", b"x")), dest)
    st = dest.lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 1000)
    assert (dest / "x").read_bytes() == b"x"


# --- bad input and limits ---------------------------------------------------------------------


def is_plain_archive_error(e: BaseException) -> bool:
    return isinstance(e, ArchiveError) and not isinstance(e, UnsafeArchive)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(gzip.compress(SAMPLE)[:-100], id="truncated-gzip"),
        pytest.param(gzip.compress(SAMPLE)[:1000], id="truncated-gzip-early"),
        pytest.param(lzma.compress(SAMPLE)[: len(lzma.compress(SAMPLE)) // 2], id="truncated-xz"),
        pytest.param(bz2.compress(SAMPLE)[:-10], id="truncated-bz2"),
        pytest.param(b"\x1f\x8b" + os.urandom(4000), id="corrupt-gzip"),
        pytest.param(b"\xfd7zXZ\x00" + os.urandom(4000), id="corrupt-xz"),
        pytest.param(os.urandom(10_000), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(SAMPLE[:2000], id="truncated-plain-mid-header"),
        pytest.param(SAMPLE[:100_000], id="truncated-plain-mid-data"),
        pytest.param(SAMPLE + b"garbage" + bytes(1000), id="garbage-after-end"),
        pytest.param(SAMPLE[:512] + os.urandom(512) + SAMPLE[1024:], id="corrupt-member-data-header"),
        pytest.param(make_tar(reg("a", b"x")) + make_tar(reg("b", b"y")), id="concatenated-tars"),
    ],
)
def test_bad_input(data: bytes, dest: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        unpack(data, dest)
    assert is_plain_archive_error(e.value), repr(e.value)
    assert str(e.value)


# --- where an archive may end: Go's archive/tar rules (see unpack._check_end) -------------------

# ustar: etc/ header at 0; etc/a header at 512, data 1024..1724, padding to 2048; etc/last header
# at 2048, data 2560..2565, padding to 3072; the end-of-archive marker 3072..4096; zeros to 10240.
END_SAMPLE = make_tar(
    dir_("etc"), reg("etc/a", b"A" * 700), reg("etc/last", b"hello"), fmt=tarfile.USTAR_FORMAT
)
LAST_DATA, LAST_END = 2565, 3072


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(LAST_DATA, id="at-the-end-of-the-last-data"),
        pytest.param(LAST_DATA + 200, id="inside-the-last-padding"),
        pytest.param(LAST_END - 1, id="one-byte-before-the-block-boundary"),
        pytest.param(LAST_END, id="at-the-block-boundary"),
        pytest.param(LAST_END + 512, id="after-one-zero-block"),
        pytest.param(LAST_END + 1024, id="after-the-marker"),
        pytest.param(len(END_SAMPLE), id="whole"),
    ],
)
@pytest.mark.parametrize("layout", ["rootfs", "layer"])
def test_archive_may_end_where_go_ends_it(cut: int, layout: str, dest: Path) -> None:
    data = END_SAMPLE[:cut]
    result = unpack(data, dest, layout=layout)
    assert (dest / "etc/last").read_bytes() == b"hello"
    assert (dest / "etc/a").read_bytes() == b"A" * 700
    # the digest (diff ID) is of the bytes as served: the zeros tarfile was given are not in it
    assert result.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == cut and result.entries == 3


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        pytest.param(LAST_DATA - 2, "member 'etc/last' has only 3 of its 5 bytes", id="inside-the-last-data"),
        pytest.param(2560, "member 'etc/last' has only 0 of its 5 bytes", id="before-the-last-data"),
        pytest.param(1500, "member 'etc/a' has only 476 of its 700 bytes", id="inside-earlier-data"),
        pytest.param(2048 + 200, "ends inside the block at offset 2048", id="inside-a-header"),
        # the header's own tail is zeros: the completed header parses, but its member is refused
        pytest.param(2448, "ends inside the header of member 'etc/last'", id="inside-a-header-zero-tail"),
        pytest.param(LAST_END + 100, "inside the block at offset 3072", id="inside-the-first-zero-block"),
        pytest.param(LAST_END + 600, "inside the block at offset 3584", id="inside-the-second-zero-block"),
    ],
)
@pytest.mark.parametrize("layout", ["rootfs", "layer"])
def test_archive_cut_short_is_refused(cut: int, message: str, layout: str, dest: Path) -> None:
    with pytest.raises(ArchiveError, match="the archive is truncated") as e:
        unpack(END_SAMPLE[:cut], dest, layout=layout)
    assert message in str(e.value)
    assert is_plain_archive_error(e.value) and e.value.hint


def test_relaxed_end_through_compression_and_in_an_aci(dest: Path) -> None:
    data = END_SAMPLE[:LAST_DATA]
    result = unpack(gzip.compress(data), dest, layout="layer")
    assert result.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    aci = make_aci(dir_("rootfs"), reg("rootfs/x", b"xyz"))
    ends = [i.offset_data + i.size for i in tarfile.open(fileobj=io.BytesIO(aci)).getmembers()]
    out = dest / "aci"
    out.mkdir()
    assert unpack_aci(aci[: max(ends)], out).manifest == MANIFEST


def test_empty_stream_is_an_empty_layer_but_no_image(dest: Path) -> None:
    assert unpack(b"", dest, layout="layer").digest == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert unpack(bytes(512), dest, layout="layer").entries == 0  # one zero block, then EOF
    with pytest.raises(ArchiveError, match="empty"):
        unpack(b"", dest)
    with pytest.raises(ArchiveError, match="truncated"):
        unpack(bytes(100), dest, layout="layer")


def test_stream_ending_after_an_extended_header_is_refused(dest: Path) -> None:
    data = make_tar(reg("a", b"x"), reg("b" * 200, b"y"))  # pax header for the long name
    pax_end = 512 + 512 + 512 + 512  # a + its data, the pax header + its records
    with pytest.raises(ArchiveError):
        unpack(data[:pax_end], dest, layout="layer")


def test_sparse_last_member_may_end_in_its_padding_like_any_other(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with (src / "holey").open("wb") as f:
        f.seek(1 << 20)
        f.write(b"data")
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", "-S", "--format=gnu", "-C", str(src), "-cf", str(archive), "holey"], check=True)
    data = archive.read_bytes()
    reader = TarReader(io.BytesIO(data).read)
    member = reader.next()
    assert member is not None and member.sparse == [(1 << 20, 4)] and member.stored == 4
    with pytest.raises(ArchiveError, match="member 'holey' has only 3 of its 4 bytes"):
        unpack(data[: member.offset_data + 3], dest, layout="layer")
    for cut in (4, 100, 512):  # all its data is there: as Go, the archive may end in the padding
        out = dest / str(cut)
        out.mkdir()
        unpack(data[: member.offset_data + cut], out, layout="layer")
        assert (out / "holey").read_bytes() == (src / "holey").read_bytes()


@pytest.mark.parametrize("cut", [0.5, -3])
def test_truncated_zstd(cut: float, dest: Path) -> None:
    z = zstd_compress(SAMPLE)
    end = int(len(z) * cut) if cut > 0 else len(z) + int(cut)
    with pytest.raises(ArchiveError, match="zstd-compressed archive: it is truncated"):
        unpack(z[:end], dest)


def test_corrupt_zstd(dest: Path) -> None:
    pytest.importorskip("zstandard")
    with pytest.raises(ArchiveError, match="zstd"):
        unpack(b"\x28\xb5\x2f\xfd" + os.urandom(1000), dest)


def test_error_chains_the_cause(dest: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        unpack(gzip.compress(SAMPLE)[:-100], dest)
    assert e.value.__cause__ is not None


@pytest.mark.parametrize(
    ("limits", "data", "unsafe"),
    [
        pytest.param(Limits(max_bytes=100_000), SAMPLE, False, id="bytes"),
        pytest.param(Limits(max_entries=2), SAMPLE, False, id="entries"),
        pytest.param(Limits(max_depth=3), make_tar(reg("a/b/c/d", b"x")), True, id="depth"),
        pytest.param(Limits(max_name=10), make_tar(reg("a" * 11, b"x")), True, id="name"),
        pytest.param(
            Limits(max_header=1000),
            make_tar(reg("x" * 2000, b"x")),
            False,
            id="pax-header",
        ),
    ],
)
def test_limits(limits: Limits, data: bytes, unsafe: bool, dest: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        unpack(data, dest, limits=limits)
    assert isinstance(e.value, UnsafeArchive) == unsafe


def test_default_depth_limit(dest: Path) -> None:
    with pytest.raises(UnsafeArchive, match="deeper"):
        unpack(make_tar(reg("/".join(["d"] * 129), b"x")), dest)


def test_compression_bomb_hits_byte_limit(dest: Path) -> None:
    bomb = gzip.compress(make_tar(reg("zeros", bytes(50 << 20))))
    with pytest.raises(ArchiveError, match="limit"):
        unpack(bomb, dest, limits=Limits(max_bytes=10 << 20))


def test_directory_after_its_children_and_mode_000(dest: Path) -> None:
    unpack(
        make_tar(reg("a/b/f", b"x"), dir_("a/b", mode=0o000, mtime=MTIME + 9), dir_("a", mode=0o555)), dest
    )
    assert (dest / "a/b/f").read_bytes() == b"x"
    st = (dest / "a/b").lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o000, MTIME + 9)
    assert stat.S_IMODE((dest / "a").lstat().st_mode) == 0o555


def test_no_file_descriptor_leaks(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    archives = [
        SAMPLE,
        gzip.compress(SAMPLE),
        make_tar(sym("esc", "/"), reg("esc/x")),
        make_tar(dir_("d"), hard("h", "d")),
        gzip.compress(SAMPLE)[:-50],
        make_tar(dir_("a/b/c"), reg("a/b/c/f"), reg("a", b"replaces tree")),
    ]
    before = open_fds()
    for i, data in enumerate(archives):
        d = tmp_path / str(i)
        d.mkdir()
        with contextlib.suppress(ArchiveError):
            unpack(data, d)
    assert open_fds() == before


# --- digest algorithm -------------------------------------------------------------------------


@pytest.mark.parametrize("compress", list(compressors()))
def test_sha512_digest_of_uncompressed_stream(compress: object, dest: Path) -> None:
    result = unpack(compress(SAMPLE), dest, algorithm="sha512")  # type: ignore[operator]
    assert result.digest == "sha512:" + hashlib.sha512(SAMPLE).hexdigest()
    assert result.manifest is None  # only the ACI layout captures one


@pytest.mark.parametrize("kw", [{"algorithm": "md5"}, {"algorithm": "SHA256"}, {"layout": "oci"}])
def test_unknown_algorithm_or_layout_refused(kw: dict[str, str], dest: Path) -> None:
    with pytest.raises(InvalidArgument):
        unpack(SAMPLE, dest, **kw)
    assert os.listdir(dest) == []


# --- errors of the raw stream ------------------------------------------------------------------


class DroppingStream(io.RawIOBase):
    """A download that fails after `limit` bytes, as fetch.http.Download does on a dropped connection."""

    def __init__(self, data: bytes, limit: int, error: Exception) -> None:
        super().__init__()
        self._data = data
        self._limit = limit
        self._pos = 0
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if self._pos >= self._limit:
            raise self.error
        n = min(len(view), self._limit - self._pos, 4096)
        view[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


# Larger than the 1 MiB read buffers, so that a failure half-way strikes while a member's data
# is being copied, not while the first buffer is filled.
BIG_SAMPLE = make_tar(dir_("etc"), reg("etc/hostname", b"box\n"), reg("big", os.urandom(3 << 20)), reg("z"))
_COMPRESSED: dict[object, bytes] = {}


@pytest.mark.parametrize("compress", list(compressors()))
@pytest.mark.parametrize("where", [0.0, 0.003, 0.5, 0.999])
def test_error_of_the_raw_stream_propagates_unchanged(compress: object, where: float, dest: Path) -> None:
    if compress not in _COMPRESSED:
        _COMPRESSED[compress] = compress(BIG_SAMPLE)  # type: ignore[operator]
    data = _COMPRESSED[compress]
    error = FetchError("connection closed after 1 of 2 bytes")
    raw = DroppingStream(data, int(len(data) * where), error)
    with pytest.raises(FetchError) as e:
        unpack_tar(raw, dest)  # type: ignore[arg-type]
    assert e.value is error


def test_error_of_the_raw_stream_propagates_from_an_aci(dest: Path) -> None:
    data = gzip.compress(make_aci(reg("rootfs/big", os.urandom(3 << 20))))
    error = FetchError("download failed")
    with pytest.raises(FetchError) as e:
        unpack_tar(DroppingStream(data, len(data) // 2, error), dest, layout="aci")  # type: ignore[arg-type]
    assert e.value is error


# --- App Container Images -----------------------------------------------------------------------

MANIFEST = b'{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app"}'


def make_aci(*entries: Entry, manifest: bytes | None = MANIFEST, first: bool = False) -> bytes:
    """An ACI as actool writes it (rootfs/ then the manifest, last) or with the manifest first."""
    m = [reg("manifest", manifest)] if manifest is not None else []
    return make_tar(*m, *entries) if first else make_tar(*entries, *m)


def unpack_aci(data: bytes, dest: Path, **kw: object) -> UnpackResult:
    return unpack(data, dest, layout="aci", algorithm="sha512", **kw)


@pytest.mark.parametrize("first", [False, True], ids=["manifest-last", "manifest-first"])
def test_aci_extracts_rootfs_and_captures_manifest(first: bool, dest: Path) -> None:
    data = make_aci(
        dir_("rootfs", mode=0o750, uid=1000, mtime=MTIME + 7),
        dir_("rootfs/usr/bin", mtime=MTIME + 3),
        reg("rootfs/usr/bin/a", b"payload", mode=0o4755),
        hard("rootfs/usr/bin/b", "rootfs/usr/bin/a"),
        hard("rootfs/sbin/c", "/rootfs/usr/bin/a"),
        hard("./rootfs/sbin/d", "./rootfs/usr/bin/a"),
        sym("rootfs/etc/localtime", "/usr/share/zoneinfo/UTC"),
        sym("rootfs/lib", "usr/lib"),
        sym("rootfs/etc/up", "../rootfs/x"),  # symlink targets are left as they are
        node("rootfs/dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        first=first,
    )
    result = unpack_aci(gzip.compress(data), dest)
    assert result.manifest == MANIFEST
    assert result.digest == "sha512:" + hashlib.sha512(data).hexdigest()
    assert result.size == len(data)
    assert sorted(os.listdir(dest)) == ["dev", "etc", "lib", "sbin", "usr"]  # no manifest, no rootfs/
    st = dest.lstat()  # the rootfs entry's metadata goes onto dest itself
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o750, 1000, MTIME + 7)
    a, b, c, d = ((dest / p).lstat() for p in ("usr/bin/a", "usr/bin/b", "sbin/c", "sbin/d"))
    assert a.st_ino == b.st_ino == c.st_ino == d.st_ino and a.st_nlink == 4
    assert stat.S_IMODE(a.st_mode) == 0o4755
    assert (dest / "usr/bin").lstat().st_mtime == MTIME + 3
    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(dest / "lib") == "usr/lib"
    assert os.readlink(dest / "etc/up") == "../rootfs/x"
    assert stat.S_ISCHR((dest / "dev/null").lstat().st_mode)


def test_aci_with_dot_slash_names(dest: Path) -> None:
    # `tar -C dir -cf x.aci .` writes "./", "./manifest", "./rootfs/..."; "./" is the archive's
    # root, not the image's, so its metadata is not applied.
    data = make_tar(
        dir_("./", mode=0o700, uid=4242),
        dir_("./rootfs", mode=0o755, mtime=MTIME + 1),
        reg("./rootfs/x", b"x"),
        reg("./manifest", MANIFEST),
    )
    result = unpack_aci(data, dest)
    assert result.manifest == MANIFEST
    assert os.listdir(dest) == ["x"]
    st = dest.lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o755, 0, MTIME + 1)


def test_aci_without_rootfs_entry_and_empty_rootfs(tmp_path: Path) -> None:
    for i, data in enumerate([make_aci(reg("rootfs/x", b"x")), make_aci()]):
        d = tmp_path / str(i)
        d.mkdir()
        assert unpack_aci(data, d).manifest == MANIFEST
    assert os.listdir(tmp_path / "0") == ["x"]
    assert os.listdir(tmp_path / "1") == []


def test_aci_manifest_of_exactly_one_mib(dest: Path) -> None:
    big = b"{" + b" " * ((1 << 20) - 2) + b"}"
    assert unpack_aci(make_aci(manifest=big), dest).manifest == big


def aci_attack_cases(sentinel: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (archive, member named in the error): the checks of test_attack_refused, below rootfs/."""
    return {
        "dotdot-under-rootfs": (make_aci(reg("rootfs/../../evil", b"x")), "rootfs/../../evil"),
        "dotdot-to-manifest": (make_aci(reg("rootfs/../manifest", b"x")), "rootfs/../manifest"),
        "dotdot-dir": (make_aci(dir_("rootfs/a/../../../evil")), "rootfs/a/../../../evil"),
        "rootfs-symlink-to-root": (make_aci(sym("rootfs", "/"), reg("rootfs/etc/x", b"x")), "rootfs"),
        "rootfs-symlink-to-sentinel": (make_aci(sym("rootfs", str(sentinel))), "rootfs"),
        "rootfs-is-a-file": (make_aci(reg("rootfs", b"x")), "rootfs"),
        "rootfs-is-a-hardlink": (make_aci(reg("rootfs/f", b"x"), hard("rootfs", "rootfs/f")), "rootfs"),
        "dot-is-a-symlink": (make_aci(sym("./", str(sentinel))), "./"),
        "symlink-then-write": (
            make_aci(sym("rootfs/esc", str(sentinel)), reg("rootfs/esc/pwned", b"x")),
            "rootfs/esc/pwned",
        ),
        "symlink-rel-then-write": (
            make_aci(sym("rootfs/esc", "../.."), reg("rootfs/esc/pwned", b"x")),
            "rootfs/esc/pwned",
        ),
        "hardlink-abs-outside-rootfs": (make_aci(hard("rootfs/pw", "/etc/passwd")), "rootfs/pw"),
        "hardlink-rel-outside-rootfs": (make_aci(hard("rootfs/pw", "etc/passwd")), "rootfs/pw"),
        "hardlink-to-manifest": (make_aci(hard("rootfs/pw", "manifest"), first=True), "rootfs/pw"),
        "hardlink-dotdot": (make_aci(hard("rootfs/pw", "rootfs/../../etc/passwd")), "rootfs/pw"),
        "hardlink-sentinel": (make_aci(hard("rootfs/pw", str(sentinel / "file"))), "rootfs/pw"),
        "hardlink-to-rootfs": (make_aci(hard("rootfs/pw", "rootfs")), "rootfs/pw"),
        "hardlink-to-archive-root": (make_aci(hard("rootfs/pw", "./")), "rootfs/pw"),
        "hardlink-through-symlink": (
            make_aci(sym("rootfs/esc", str(sentinel)), hard("rootfs/pw", "rootfs/esc/file")),
            "rootfs/pw",
        ),
        "nul-in-name": (
            make_aci(reg("rootfs/a", b"x", pax_headers={"path": "rootfs/a\x00b"})),
            "rootfs/a\x00b",
        ),
    }


@pytest.mark.parametrize("case", list(aci_attack_cases(Path("/placeholder"))))
def test_aci_attack_refused(case: str, tmp_path: Path, dest: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_bytes(b"precious")
    before = snapshot(sentinel)
    passwd = os.lstat("/etc/passwd")
    archive, member = aci_attack_cases(sentinel)[case]
    with pytest.raises(UnsafeArchive) as e:
        unpack_aci(archive, dest)
    assert repr(member) in str(e.value), str(e.value)
    assert snapshot(sentinel) == before
    assert sorted(os.listdir(tmp_path)) == ["dest", "sentinel"]
    assert os.lstat("/etc/passwd").st_nlink == passwd.st_nlink
    assert not Path("/etc/x").exists() and not (tmp_path.parent / "evil").exists()


def test_aci_hardlink_outside_rootfs_message(dest: Path) -> None:
    with pytest.raises(UnsafeArchive, match=r"hard link target 'etc/passwd' is outside rootfs/"):
        unpack_aci(make_aci(hard("rootfs/pw", "etc/passwd")), dest)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            make_aci(reg("rootfsX/a", b"x")),
            "not an ACI: unexpected entry 'rootfsX/a' outside rootfs/ "
            "(an ACI holds only manifest and rootfs/)",
            id="rootfsX",
        ),
        pytest.param(make_aci(dir_("rootfs2")), "unexpected entry 'rootfs2' outside rootfs/", id="rootfs2"),
        pytest.param(make_aci(reg("etc/passwd", b"x")), "unexpected entry 'etc/passwd'", id="plain-rootfs"),
        pytest.param(make_aci(reg("manifest/x", b"x")), "unexpected entry 'manifest/x'", id="manifest-dir"),
        pytest.param(make_aci(sym("hello", "rootfs")), "unexpected entry 'hello'", id="stray-symlink"),
        pytest.param(
            make_aci(reg("rootfs/x", b"x"), manifest=None), "not an ACI: no manifest", id="no-manifest"
        ),
        pytest.param(make_aci(reg("manifest", b"{}")), "invalid ACI: duplicate manifest", id="duplicate"),
        pytest.param(
            make_aci(manifest=b" " * ((1 << 20) + 1)),
            "its manifest is 1048577 bytes, more than the limit of 1048576",
            id="oversize",
        ),
        pytest.param(
            make_tar(sym("manifest", "rootfs/etc/passwd")),
            "invalid ACI: its manifest is not a regular file",
            id="manifest-symlink",
        ),
        pytest.param(
            make_tar(dir_("manifest")),
            "invalid ACI: its manifest is not a regular file",
            id="manifest-directory",
        ),
    ],
)
def test_not_an_aci(data: bytes, message: str, dest: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        unpack_aci(data, dest)
    assert is_plain_archive_error(e.value), repr(e.value)
    assert message in str(e.value)
    assert e.value.hint


def test_not_an_aci_is_detected_before_extracting_more(dest: Path) -> None:
    # A root filesystem tarball pulled as an ACI stops at its first member.
    with pytest.raises(ArchiveError, match="unexpected entry 'etc'"):
        unpack_aci(make_tar(dir_("etc"), reg("etc/hostname", b"x")), dest)
    assert os.listdir(dest) == []


def test_aci_limits_still_apply(dest: Path) -> None:
    with pytest.raises(UnsafeArchive, match="deeper"):
        unpack_aci(make_aci(reg("rootfs/" + "/".join(["d"] * 128), b"x")), dest)


# --- OCI layers applied onto their parent ---------------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Relative path -> 'dir', 'link:TARGET' or the file's text: the whole visible result."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_text()
    return out


def layered(dest: Path, *layers: bytes) -> UnpackResult:
    """Apply the first archive as a base rootfs and the others as layers; the last result."""
    result = unpack(layers[0], dest)
    for data in layers[1:]:
        result = unpack(data, dest, layout="layer")
    return result


BASE = make_tar(
    dir_("etc"),
    reg("etc/hostname", b"base"),
    reg("etc/keep", b"keep"),
    dir_("etc/sub"),
    reg("etc/sub/lower", b"lower"),
    dir_("var"),
    sym("var/run", "/run"),
    dir_("usr/lib"),
    reg("usr/lib/libc.so", b"libc"),
    sym("lib", "usr/lib"),
)


def test_layer_needs_no_empty_dest_and_its_digest_is_the_diff_id(dest: Path) -> None:
    layer = make_tar(reg("etc/hostname", b"upper"), reg("new", b"n"))
    result = layered(dest, BASE, gzip.compress(layer))
    assert result.digest == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert (dest / "etc/hostname").read_text() == "upper"
    assert (dest / "etc/keep").read_text() == "keep"
    assert (dest / "new").read_text() == "n"


def test_whiteout_of_lower_file_tree_and_symlink(dest: Path) -> None:
    layered(dest, BASE, make_tar(reg("etc/.wh.hostname"), reg(".wh.usr"), reg(".wh.lib"), reg("var/.wh.run")))
    assert tree(dest) == {
        "etc": "dir",
        "etc/keep": "keep",
        "etc/sub": "dir",
        "etc/sub/lower": "lower",
        "var": "dir",
    }
    assert Path("/run").is_dir()  # the symlink went, not what it pointed at


def test_whiteout_of_a_symlink_to_a_directory_keeps_the_directory(dest: Path) -> None:
    layered(dest, BASE, make_tar(reg(".wh.lib")))
    assert not (dest / "lib").exists() and (dest / "usr/lib/libc.so").read_text() == "libc"


def test_whiteouts_never_delete_what_the_same_layer_wrote(dest: Path) -> None:
    layer = make_tar(
        reg("etc/hostname", b"upper"),
        reg("etc/.wh.hostname"),  # after the layer's own file: the file stays
        reg("etc/sub/mine", b"mine"),
        reg("etc/.wh.sub"),  # the lower tree goes, this layer's file in it stays
        reg("usr/.wh.lib"),
        reg("usr/lib/fresh", b"fresh"),  # before: the lower tree went, this is new
    )
    layered(dest, BASE, layer)
    assert tree(dest) == {
        "etc": "dir",
        "etc/hostname": "upper",
        "etc/keep": "keep",
        "etc/sub": "dir",
        "etc/sub/mine": "mine",
        "var": "dir",
        "var/run": "link:/run",
        "usr": "dir",
        "usr/lib": "dir",
        "usr/lib/fresh": "fresh",
        "lib": "link:usr/lib",
    }


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_opaque_directory_keeps_only_this_layers_entries(where: str, dest: Path) -> None:
    entries = [
        dir_("etc", mode=0o750),
        reg("etc/mine", b"mine"),
        reg("etc/sub/deep", b"deep"),
        reg("etc/z", b"z"),
    ]
    marker = reg("etc/.wh..wh..opq")
    at = {"first": 1, "middle": 2, "last": len(entries)}[where]
    layered(dest, BASE, make_tar(*entries[:at], marker, *entries[at:]))
    # etc/sub was lower: only what this layer put in it survives, like every lower entry of etc.
    assert {k: v for k, v in tree(dest).items() if k.startswith("etc")} == {
        "etc": "dir",
        "etc/mine": "mine",
        "etc/sub": "dir",
        "etc/sub/deep": "deep",
        "etc/z": "z",
    }
    assert stat.S_IMODE((dest / "etc").lstat().st_mode) == 0o750
    assert (dest / "usr/lib/libc.so").read_text() == "libc"


def test_opaque_root_and_missing_whiteouts(dest: Path) -> None:
    layered(
        dest, BASE, make_tar(reg("nothing/.wh.here"), reg(".wh.nope"), reg("x", b"x"), reg(".wh..wh..opq"))
    )
    assert tree(dest) == {"x": "x"}


def test_whiteout_markers_of_any_type_never_appear(dest: Path) -> None:
    layered(
        dest,
        BASE,
        make_tar(
            dir_("etc/.wh.keep"),
            sym("etc/.wh.hostname", "/x"),
            reg("etc/sub/.wh..wh..opq", b"junk"),
            reg(".wh..wh.plnk/123", b"aufs"),  # AUFS bookkeeping: skipped
            reg(".wh..wh.aufs"),
        ),
    )
    assert tree(dest) == {k: v for k, v in tree(dest).items() if ".wh." not in k}
    assert sorted(os.listdir(dest / "etc")) == ["sub"]
    assert os.listdir(dest / "etc/sub") == []


def test_whiteout_names_are_plain_files_outside_layers(dest: Path) -> None:
    unpack(make_tar(reg(".wh.x", b"x"), reg("d/.wh..wh..opq")), dest)
    assert tree(dest) == {".wh.x": "x", "d": "dir", "d/.wh..wh..opq": ""}


def test_directory_over_lower_directory_changes_only_metadata(dest: Path) -> None:
    base = make_tar(dir_("d", mode=0o755), reg("d/f", b"f"))
    upper_dir, _ = dir_("d", mode=0o700, uid=1000, mtime=MTIME + 5)
    upper_dir.pax_headers = {"SCHILY.xattr.user.new": "1"}
    unpack(base, dest)
    os.setxattr(dest / "d", "user.old", b"1")
    unpack(make_tar((upper_dir, None)), dest, layout="layer")
    st = (dest / "d").lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o700, 1000, MTIME + 5)
    assert (dest / "d/f").read_text() == "f"
    assert os.listxattr(dest / "d") == ["user.new"]


def test_layer_replaces_lower_entries_without_writing_through(tmp_path: Path, dest: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"original")
    base = make_tar(sym("file", str(victim)), sym("dir", str(tmp_path)), reg("tree/a", b"a"), dir_("empty"))
    layer = make_tar(
        reg("file", b"new"), dir_("dir"), reg("dir/x", b"x"), sym("tree", "/etc"), reg("empty", b"e")
    )
    unpack(base, dest)
    unpack(layer, dest, layout="layer")
    assert victim.read_bytes() == b"original"
    assert sorted(os.listdir(tmp_path)) == ["dest", "victim"]
    assert tree(dest) == {"file": "new", "dir": "dir", "dir/x": "x", "tree": "link:/etc", "empty": "e"}


def test_hardlink_to_a_lower_layers_file(dest: Path) -> None:
    layered(dest, BASE, make_tar(hard("usr/bin/libc", "usr/lib/libc.so"), hard("etc/h2", "/etc/hostname")))
    assert (dest / "usr/bin/libc").lstat().st_ino == (dest / "usr/lib/libc.so").lstat().st_ino
    assert (dest / "etc/h2").read_text() == "base"


def test_hardlink_to_a_whited_out_file_is_refused(dest: Path) -> None:
    with pytest.raises(UnsafeArchive, match="is not in the image"):
        layered(dest, BASE, make_tar(reg("etc/.wh.keep"), hard("k", "etc/keep")))


@pytest.mark.parametrize(
    ("member", "error", "message"),
    [
        pytest.param(".wh.", ArchiveError, "the whiteout '.wh.' names no file", id="bare"),
        pytest.param("etc/.wh.", ArchiveError, "names no file", id="bare-in-dir"),
        pytest.param("../.wh.x", UnsafeArchive, "points outside the image", id="dotdot-parent"),
        pytest.param(".wh...", UnsafeArchive, "names a directory above it", id="dotdot-target"),
        pytest.param("etc/.wh..", UnsafeArchive, "names a directory above it", id="dot-target"),
        pytest.param(
            "etc/.wh.sub/x", ArchiveError, "inside the whiteout marker '.wh.sub'", id="inside-marker"
        ),
        pytest.param(
            "var/run/.wh.x", UnsafeArchive, "passes through the symlink 'var/run'", id="via-symlink"
        ),
        pytest.param("lib/.wh..wh..opq", UnsafeArchive, "passes through the symlink 'lib'", id="opq-symlink"),
    ],
)
def test_bad_whiteouts_refused(member: str, error: type[Exception], message: str, dest: Path) -> None:
    layered(dest, BASE)
    before = snapshot(dest)
    with pytest.raises(error, match=re.escape(message)) as e:
        unpack(make_tar(reg(member)), dest, layout="layer")
    assert error is UnsafeArchive or is_plain_archive_error(e.value)
    assert snapshot(dest) == before


@pytest.mark.parametrize(
    "entry",
    [
        reg("var/run/pwned", b"x"),
        dir_("var/run/sub"),
        sym("var/run/l", "/etc"),
        node("var/run/fifo", tarfile.FIFOTYPE),
        hard("var/run/h", "etc/keep"),
        reg("lib/x", b"x"),
    ],
    ids=["file", "dir", "symlink", "fifo", "hardlink", "relative-symlink"],
)
def test_layer_writing_through_lower_symlink_is_refused(entry: Entry, tmp_path: Path, dest: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"precious")
    base = make_tar(
        dir_("var"), sym("var/run", str(outside)), dir_("usr/lib"), sym("lib", "usr/lib"), reg("etc/keep")
    )
    unpack(base, dest)
    before_outside, before_dest = snapshot(outside), snapshot(dest)
    with pytest.raises(UnsafeArchive, match="passes through the symlink"):
        unpack(make_tar(entry), dest, layout="layer")
    assert snapshot(outside) == before_outside
    assert snapshot(dest) == before_dest
    assert sorted(os.listdir(tmp_path)) == ["dest", "outside"]


def test_hardlink_through_lower_symlink_is_refused(tmp_path: Path, dest: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"precious")
    nlink = (outside / "file").lstat().st_nlink
    unpack(make_tar(sym("esc", str(outside))), dest)
    with pytest.raises(UnsafeArchive):
        unpack(make_tar(hard("pw", "esc/file")), dest, layout="layer")
    assert (outside / "file").lstat().st_nlink == nlink


@pytest.mark.parametrize("case", ATTACKS)
def test_attacks_refused_in_layers_too(case: str, tmp_path: Path, dest: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_bytes(b"precious")
    before = snapshot(sentinel)
    archive, member = attack_cases(sentinel)[case]
    with pytest.raises(UnsafeArchive) as e:
        unpack(archive, dest, layout="layer")
    assert repr(member) in str(e.value), str(e.value)
    assert snapshot(sentinel) == before
    assert sorted(os.listdir(tmp_path)) == ["dest", "sentinel"]


def test_deep_layer_whiteouts_spare_this_layers_paths(dest: Path) -> None:
    """Deep paths (the written set is a trie): an opaque marker far down and a whiteout of a lower
    tree still remove only lower content, at every depth."""
    deep = "/".join(f"d{i}" for i in range(60))
    base = make_tar(reg(f"{deep}/lower", b"lower"), reg(f"{deep}/old/f", b"old"), reg("top/low", b"low"))
    layer = make_tar(
        reg(f"{deep}/mine", b"mine"),
        reg(f"{deep}/.wh..wh..opq"),
        reg("top/x/" + "/".join(["y"] * 50) + "/mine", b"y"),
        reg("top/.wh.x"),  # this layer made top/x: it stays
        reg(".wh.top"),  # top was lower; only this layer's part of it stays
    )
    layered(dest, base, layer)
    assert (dest / deep / "mine").read_text() == "mine"
    assert sorted(os.listdir(dest / deep)) == ["mine"]
    assert (dest / "top/x" / "/".join(["y"] * 50) / "mine").read_text() == "y"
    assert os.listdir(dest / "top") == ["x"]


def test_written_paths_memory_is_linear_in_depth(tmp_path: Path) -> None:
    """What a layer wrote costs memory per path node: doubling the depth of every member about
    doubles it (storing every ancestor prefix made it grow with the square)."""
    import tracemalloc

    from nspawnctl.store.unpack import _Extractor

    def cost(depth: int) -> int:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        ex = _Extractor(fd, Limits(), layer=True)
        tracemalloc.start()
        try:
            for i in range(300):
                ex._touch((f"top{i}".encode(), *[b"sub"] * depth))
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            ex.close()
            os.close(fd)

    small, large = cost(30), cost(120)
    assert large < 6 * small  # linear: ~4x; quadratic: ~16x
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    ex = _Extractor(fd, Limits(), layer=True)
    try:
        ex._touch((b"a", b"b", b"c"))
        assert ex._wrote((b"a",)) and ex._wrote((b"a", b"b", b"c")) and not ex._wrote((b"a", b"c"))
        assert not ex._wrote(()) and not ex._wrote((b"a", b"b", b"c", b"d"))
    finally:
        ex.close()
        os.close(fd)


def test_xattr_the_kernel_refuses_on_a_directory_is_an_archive_error(dest: Path) -> None:
    # Found by the fuzzer (tests/fuzz/corpus/tar/crash-31dcf288fd91fb59): directory metadata is
    # applied at the end, where a bad security.capability (EINVAL) escaped as a bare OSError.
    d, _ = dir_("a")
    d.pax_headers = {"SCHILY.xattr.security.capability": "0"}
    with pytest.raises(ArchiveError, match="cannot extract archive member 'a'"):
        unpack(make_tar((d, None)), dest)


def test_sparse_map_without_newline_is_an_archive_error(dest: Path) -> None:
    # Found by the fuzzer (tests/fuzz/corpus/tar/crash-b6981429b95da372): tarfile's reader of a
    # GNU sparse 1.0 map raised a bare ValueError when the map block holds no newline.
    f, data = reg("s", b"1")
    f.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "10"}
    with pytest.raises(ArchiveError, match="'s' has an invalid sparse map"):
        unpack(make_tar((f, data)), dest)
