"""Extract untrusted, possibly compressed tar streams into a directory, faithfully and safely.

Headers are read by tarread.TarReader, which bounds all that a hostile archive can make it hold.
Python's tarfile is not used: bounding it takes its private methods, and its extraction either
loses what a root filesystem needs (setuid, sticky, owners, devices, absolute symlinks, xattrs)
or, unfiltered, follows symlinks out of the destination. Every filesystem call here is made
relative to a directory file descriptor that was reached from the destination one component at
a time with ``O_NOFOLLOW``, so no name in the archive (and no symlink it planted earlier) can
steer a write outside the image.

The "layer" layout applies an OCI layer onto a copy of its parent: whiteouts delete what lower
layers left, and nothing is ever written through a path a lower layer made a symlink.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import dataclasses
import errno
import gzip
import hashlib
import io
import lzma
import math
import os
import queue
import re
import secrets
import stat
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, TypeAlias, cast

from nspawnctl.errors import ArchiveError, InvalidArgument, PoolError, UnsafeArchive

from . import tarread
from .tarread import Member, TarReader

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Limits", "UnpackResult", "open_decompressed", "unpack_tar"]

_CHUNK = 1 << 20

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_GNU_VOLUME_LABEL = b"V"
# what a copy to the host never sets: file capabilities, security labels, trusted.* (overlayfs)
_HOST_DROPPED_XATTRS = (b"security.", b"trusted.")
HOST_DEVICE_HINT = "copy to '-' for a tar stream (nspawnctl cp CTR:PATH - > copy.tar)"
_NODE_KINDS = {tarread.CHRTYPE: stat.S_IFCHR, tarread.BLKTYPE: stat.S_IFBLK, tarread.FIFOTYPE: stat.S_IFIFO}
# Errors that describe the machine, not the archive: let them through unchanged.
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)
_PAX_TIME = re.compile(r"(-?)(\d{1,20})(?:\.(\d*))?")
_UID_MAX = 0xFFFFFFFE  # (uid_t)-1 means "leave unchanged" to chown
_ALGORITHMS = ("sha256", "sha512")
_LAYOUTS = ("rootfs", "aci", "layer")
_ACI_MANIFEST_MAX = 1 << 20
_ACI_ROOTFS = b"rootfs"
_NOT_ACI_HINT = "if this is a plain root filesystem tarball, import or pull it as a tarball, not as an ACI"
_BAD_ACI_HINT = "the image is malformed or malicious; ask its publisher to rebuild it"
# OCI whiteouts (image-spec layer.md): ".wh.NAME" deletes NAME of lower layers, "DIR/.wh..wh..opq"
# empties DIR of them; other ".wh..wh.*" names are AUFS bookkeeping (e.g. the .wh..wh.plnk link dir).
_WH = b".wh."
_WH_META = b".wh..wh."
_WH_OPAQUE = b".wh..wh..opq"
_BAD_LAYER_HINT = "the layer is malformed or malicious; ask the image's publisher to rebuild it"


DEFAULT_MAX_RATIO = 100.0
RATIO_HINT = "--max-ratio takes a number >= 1, or 0 for no ratio limit"
_SPACE_CHECK = 16 << 20  # decompressed bytes between two looks at the free space


@dataclass(frozen=True)
class Limits:
    """Caps against tar bombs; exceeding any of them is an ArchiveError."""

    max_bytes: int = 64 << 30  # uncompressed stream bytes, and also total regular-file size
    max_entries: int = 5_000_000
    # Directories whose metadata waits for the end (~450 bytes each in memory).
    max_dirs: int = 500_000
    max_depth: int = 128  # path components per member name
    max_name: int = 4096  # bytes per member name / link target
    max_header: int = 1 << 20  # pax and GNU long-name headers of one member, held in memory
    max_sparse: int = 1 << 16  # data regions of one sparse file
    # Decompression bombs: refuse an archive that unpacks to more than max_ratio times the
    # compressed bytes read so far (0: no ratio limit), once it is past ratio_floor (small
    # archives of empty files compress well and harm nobody).
    max_ratio: float = DEFAULT_MAX_RATIO
    ratio_floor: int = 64 << 20
    # Space left free on the destination's filesystem: min_free, but at most 5% of it.
    min_free: int = 1 << 30

    def reserve(self, total: int) -> int:
        """The bytes to keep free on a filesystem of ``total`` bytes."""
        return min(self.min_free, total // 20)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_ratio) and self.max_ratio >= 0):
            raise InvalidArgument(f"invalid ratio limit {self.max_ratio!r}", hint=RATIO_HINT)


@dataclass(frozen=True)
class UnpackResult:
    digest: str  # "<algorithm>:<hex>" of the *uncompressed* tar stream, all bytes up to EOF
    size: int  # uncompressed bytes read
    entries: int  # members read (including an ACI's manifest, which is not extracted)
    manifest: bytes | None = None  # layout "aci": the manifest file, verbatim


# ---------------------------------------------------------------------------------------------
# Decompression


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Source(Protocol):
    def read(self, size: int, /) -> bytes | memoryview: ...


class _Prefixed(io.RawIOBase):
    """Replays the magic bytes already read from a possibly non-seekable stream, then the rest.

    Closing it leaves the caller's stream open: the caller owns it.
    """

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)


class _Rest:
    """Like _Prefixed for a reader that takes chunks as they come: the caller's stream's own
    chunks, not copied into a buffer first."""

    def __init__(self, head: bytes, raw: _Source) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int, /) -> bytes | memoryview:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


class _Decoded(io.RawIOBase):
    """Turns a decoder's own exceptions into ArchiveError, so callers catch one thing."""

    def __init__(self, inner: _Readable, label: str, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self._inner = inner
        self._label = label
        self._errors = errors

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except self._errors as e:
            what = "tar" if self._label == "tar" else f"{self._label}-compressed"
            raise ArchiveError(f"cannot read the {what} archive: {e}") from e
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1, /) -> bytes:
        """The decoder's own output, not copied into a buffer first."""
        try:
            return self._inner.read(size if size >= 0 else _CHUNK)
        except self._errors as e:
            what = "tar" if self._label == "tar" else f"{self._label}-compressed"
            raise ArchiveError(f"cannot read the {what} archive: {e}") from e

    def close(self) -> None:
        # Frees the decoder; the decoders never close the caller's stream under them.
        close = getattr(self._inner, "close", None)
        if close is not None and not self.closed:
            close()
        super().close()


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # the low 4 bits are the user's
# zstd blocks (RFC 8878) decode to at most 128 KiB each, whatever their type: a call given input
# in which at most _ZSTD_BLOCKS blocks begin returns at most (_ZSTD_BLOCKS + 1) * 128 KiB (the one
# more is the block begun in the previous call). That bounds what a zstd bomb can claim per call
# (~1.1 MiB) without cutting ordinary input small: 8 blocks of incompressible data are 1 MiB.
_ZSTD_BLOCKS = 8
_ZSTD_READ = 1 << 20  # compressed bytes read at a time
_ZSTD_OUT = (_ZSTD_BLOCKS + 1) << 17  # the most one call returns (while the blocks are followed)
# Input whose block structure was lost (not zstd, or damaged: the decoder will say so) is handed
# over this many bytes at a time; zstd expands at most ~32768:1, so 8 MiB per call at worst.
_ZSTD_IN_CHUNK = 256


class _ZstdBlocks:
    """Follows the frame and block headers of a zstd stream to say where the input may be cut.

    It only decides how much input one decoder call gets, never what the input means: the
    decoder checks everything. A stream it cannot follow is cut into _ZSTD_IN_CHUNK pieces.
    """

    def __init__(self) -> None:
        self._next = 0  # stream offset of the next header to read
        self._state = "frame"  # what is at _next: "frame", "block" or "checksum"
        self._checksum = False  # the current frame ends with a 4-byte checksum
        self._lost = False

    def lose(self) -> None:
        """Stop following the stream (the decoder disagreed about where a frame ends)."""
        self._lost = True

    def cut(self, view: memoryview, offset: int) -> int:
        """How many bytes of ``view`` (which starts at stream offset ``offset``) to decode in one
        call: none of more than _ZSTD_BLOCKS blocks, none across a frame's end. 0: the header at
        the start of ``view`` is incomplete, so more input is needed (or, at the end, all of it)."""
        blocks = 0
        while not self._lost:
            rel = self._next - offset
            if rel >= len(view):
                return len(view)
            if self._state == "checksum":
                self._next += 4
                self._state = "frame"
                continue
            if self._state == "frame":
                if blocks:
                    return rel  # the previous frame ends here
                if rel + 8 > len(view):
                    return rel
                magic = int.from_bytes(view[rel : rel + 4], "little")
                if magic == _ZSTD_MAGIC:
                    fhd = view[rel + 4]
                    single = (fhd >> 5) & 1
                    fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
                    self._next += 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + fcs
                    self._checksum = bool(fhd & 4)
                    self._state = "block"
                elif magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                    self._next += 8 + int.from_bytes(view[rel + 4 : rel + 8], "little")
                else:
                    self._lost = True
                continue
            if rel + 3 > len(view):
                return rel
            if blocks == _ZSTD_BLOCKS:
                return rel
            header = int.from_bytes(view[rel : rel + 3], "little")
            kind, size = (header >> 1) & 3, header >> 3
            if kind == 3:  # reserved: corrupt, the decoder will refuse it
                self._lost = True
                break
            blocks += 1
            self._next += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
            if header & 1:
                self._state = "checksum" if self._checksum else "frame"
        return min(len(view), _ZSTD_IN_CHUNK)


class _ZstdReader:
    """zstd decoder that reads across frames and, unlike zstandard's stream_reader, reports a
    stream that ends in the middle of a frame instead of returning a silent EOF.

    zstandard's decompressobj has no output limit, so the input is handed over in pieces that
    _ZstdBlocks says decode to a bounded size."""

    def __init__(self, src: _Source, zstd: ModuleType) -> None:
        self._src = src
        self._dctx = zstd.ZstdDecompressor()
        self._frame: Any = None  # the decompressobj of the frame being decoded
        self._blocks = _ZstdBlocks()
        self._pending = memoryview(b"")  # compressed bytes read but not yet decoded
        self._offset = 0  # stream offset of _pending
        self._out = b""
        self._at = 0  # bytes of _out already returned (slicing them off would copy the rest)
        self._done = False
        self._eof = False  # _src has ended

    def read(self, size: int, /) -> bytes:
        while self._at >= len(self._out) and not self._done:
            self._step()
        data = self._out[self._at : self._at + size]  # all of it: the same object, not a copy
        self._at += len(data)
        return data

    def _step(self) -> None:
        n = self._blocks.cut(self._pending, self._offset) if self._pending else 0
        while n == 0 and not self._eof:
            more = self._src.read(_ZSTD_READ)
            if not more:
                self._eof = True
            else:
                # rarely joins more than a header's few bytes to the new input
                self._pending = memoryview(bytes(self._pending) + more) if self._pending else memoryview(more)
            n = self._blocks.cut(self._pending, self._offset) if self._pending else 0
        if n == 0:
            n = len(self._pending)  # the end: whatever is left, the decoder judges it
        chunk, self._pending = self._pending[:n], self._pending[n:]
        self._offset += n
        if not chunk:
            if self._frame is not None:
                raise ArchiveError("cannot read the zstd-compressed archive: it is truncated")
            self._done = True
            return
        # output in one piece per call (a smaller write_size makes pieces to join: a copy)
        frame = self._frame if self._frame is not None else self._dctx.decompressobj(write_size=_ZSTD_OUT)
        self._out = frame.decompress(chunk)
        self._at = 0
        if frame.eof:
            if frame.unused_data:  # not where _ZstdBlocks said the frame ends: it is lost
                self._blocks.lose()
                self._offset -= len(frame.unused_data)
                self._pending = memoryview(frame.unused_data + bytes(self._pending))
            self._frame = None
        else:
            self._frame = frame


def _import_zstd() -> ModuleType:
    try:
        import zstandard
    except ImportError as e:
        raise ArchiveError(
            "the archive is zstd-compressed, but the Python package 'zstandard' is not installed",
            hint="install it: apt install python3-zstandard (or: pip install zstandard)",
        ) from e
    return zstandard


def _read_upto(raw: IO[bytes], n: int) -> bytes:
    """Read n bytes unless EOF comes first; pipes may return short reads."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        try:
            data = raw.read(n - got)
        except OSError as e:
            raise ArchiveError(f"cannot read the archive: {e}") from e
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _is_bzip2(head: bytes) -> bool:
    # "BZh" alone is printable and could begin a plain tar member's name; also check the block
    # size digit and the magic of the first block (or of the end-of-stream marker).
    return (
        len(head) >= 10
        and head[:3] == b"BZh"
        and head[3:4] in b"123456789"
        and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
    )


def open_decompressed(raw: IO[bytes]) -> BinaryIO:
    """Detect compression by magic bytes (gzip 1f8b, xz fd377a585a00, zstd 28b52ffd, bzip2 'BZh',
    else plain tar) and return a readable stream of the decompressed bytes. zstd via the
    `zstandard` package, imported only when needed; missing package -> ArchiveError with an
    install hint.

    Works on pipes (no seeking). Reads raise ArchiveError for corrupt or truncated input.
    Closing the result does not close `raw`.
    """
    return io.BufferedReader(_decoder(raw), _CHUNK)


def _decoder(raw: IO[bytes]) -> _Decoded:
    """open_decompressed without the buffer: each read returns what the decoder made."""
    head = _read_upto(raw, 10)
    src = io.BufferedReader(_Prefixed(head, raw), _CHUNK)
    inner: _Readable
    errors: tuple[type[BaseException], ...] = (EOFError, OSError)
    if head.startswith(b"\x1f\x8b"):
        label, inner, errors = "gzip", gzip.GzipFile(fileobj=src, mode="rb"), (*errors, zlib.error)
    elif head.startswith(b"\xfd7zXZ\x00"):
        label, inner, errors = "xz", lzma.LZMAFile(src), (*errors, lzma.LZMAError)
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = _import_zstd()
        label, inner, errors = "zstd", _ZstdReader(_Rest(head, raw), zstd), (*errors, zstd.ZstdError)
    elif _is_bzip2(head):
        label, inner = "bzip2", bz2.BZ2File(src)
    else:
        label, inner = "tar", src
    return _Decoded(inner, label, errors)


# ---------------------------------------------------------------------------------------------
# Hashing and limits on the decompressed stream


class _Counted(io.RawIOBase):
    """Counts the compressed bytes the decompressor has taken from the caller's stream."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _Digesting(io.RawIOBase):
    """Hashes and counts the decompressed stream as the reader takes it, and stops it early at
    the limits a decompression bomb would cross: the byte limit, the ratio to the compressed
    bytes read, and the free space of the destination's filesystem. Remembers where the last
    non-zero byte was, to tell a clean end-of-archive from garbage after it."""

    def __init__(
        self,
        inner: BinaryIO,
        limits: Limits,
        algorithm: str,
        *,
        compressed: _Counted | None = None,
        space: Callable[[], tuple[int, int]] | None = None,
        label: str = "the archive",
        staged: bool = True,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._kept = "; nothing of it was kept" if staged else ""  # a staging subvolume is dropped
        self._limits = limits
        self._max = limits.max_bytes
        self._compressed = compressed
        self._space = space
        self._label = label
        self._next_space_check = 0
        self.hash = hashlib.new(algorithm)
        self.size = 0
        self.nonzero_end = 0
        self.eof = False  # the stream has ended: `size` is its length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size if size >= 0 else _CHUNK)
        if not data and size != 0:
            self.eof = True
        if data:
            self.hash.update(data)
            if data[-1]:  # the common case, without copying the chunk as rstrip does
                self.nonzero_end = self.size + len(data)
            else:
                stripped = data.rstrip(b"\0")
                if stripped:
                    self.nonzero_end = self.size + len(stripped)
            self.size += len(data)
            self._check()
        return data

    def _check(self) -> None:
        if self.size > self._max:
            raise ArchiveError(
                f"{self._label} is larger than the limit of {self._max} uncompressed bytes",
                hint=f"is it what you meant to unpack?{self._kept}",
            )
        ratio = self._limits.max_ratio
        if ratio and self._compressed is not None and self.size > self._limits.ratio_floor:
            packed = max(self._compressed.count, 1)
            if self.size > ratio * packed:
                raise ArchiveError(
                    f"{self._label} unpacks to more than {ratio:g} times its compressed size "
                    f"({_human(self.size)} from {_human(packed)} so far): refused as a decompression bomb",
                    hint=f"if you trust it, raise the limit: --max-ratio {max(ratio * 10, 1000):g} "
                    f"(0: no ratio limit){self._kept}",
                )
        if self._space is not None and self.size >= self._next_space_check:
            self._next_space_check = self.size + _SPACE_CHECK
            _check_space(self._space, self._limits, self._label, self._kept)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _check_space(space: Callable[[], tuple[int, int]], limits: Limits, label: str, kept: str) -> None:
    free, total = space()
    reserve = min(limits.min_free, total // 20)
    if free < reserve:
        raise pool_full(label, free, reserve, kept)


# ---------------------------------------------------------------------------------------------
# The pipeline: download (and the caller's hashing), decompression (and hashing), extraction


_DEPTH = 3  # chunks (of at most ~1 MiB) waiting between two stages
_POLL = 0.05  # seconds between two looks at the stop flag of a stage blocked on its neighbour
_INTERRUPTED_WAIT = 1.0  # seconds an interrupted unpack waits for the fetch stage's read


class _Stopped(Exception):
    """The pipeline is being torn down; a stage ends quietly."""


class _Channel:
    """A bounded hand-over of chunks from one thread to the next. An exception travels in order
    with the data, so the consumer raises it where the stream broke; b"" is the end."""

    def __init__(self, stop: threading.Event) -> None:
        self._queue: queue.Queue[bytes | bytearray | memoryview | BaseException] = queue.Queue(_DEPTH)
        self._stop = stop

    def put(self, item: bytes | bytearray | memoryview | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self) -> bytes | bytearray | memoryview | BaseException:
        while True:
            try:
                return self._queue.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None


class _Inbox:
    """The reading end of a channel as a stream. Reads of at least 64 KiB return memoryviews of the
    chunks (no copy); smaller ones (headers) bytes. Counts the bytes taken, and looks at the
    destination's free space every _SPACE_CHECK of them when given ``space``."""

    def __init__(
        self,
        channel: _Channel,
        *,
        space: Callable[[], tuple[int, int]] | None = None,
        limits: Limits = Limits(),
        label: str = "",
    ) -> None:
        self._channel = channel
        self._view = memoryview(b"")
        self._error: BaseException | None = None
        self._eof = False
        self._space = space
        self._limits = limits
        self._label = label
        self._next_space_check = 0
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes | memoryview:
        if not self._view:
            if self._error is not None:
                raise self._error
            if self._eof or size == 0:
                return b""
            item = self._channel.get()
            if isinstance(item, BaseException):
                self._error = item
                raise item
            if not item:
                self._eof = True
                return b""
            self._view = memoryview(item).cast("B")
        view = self._view
        if 0 <= size < len(view):
            view, self._view = view[:size], view[size:]
        else:
            self._view = memoryview(b"")
        self.count += len(view)
        if self._space is not None and self.count >= self._next_space_check:
            self._next_space_check = self.count + _SPACE_CHECK
            _check_space(self._space, self._limits, self._label, "; nothing of it was kept")
        return view if len(view) >= 1 << 16 else view.tobytes()

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _fetch_stage(raw: IO[bytes], out: _Channel) -> None:
    """Read the caller's stream (a download, hashed as it is read) in large pieces."""
    try:
        readinto = getattr(raw, "readinto", None)
        while True:
            if readinto is not None:
                buf = bytearray(_CHUNK)
                n = readinto(buf)
                data: bytes | memoryview = memoryview(buf)[:n] if n else b""
            else:
                data = raw.read(_CHUNK)
            out.put(data)
            if not data:
                return
    except _Stopped:
        return
    except BaseException as e:  # handed on: the consumer raises it where the stream broke
        with contextlib.suppress(_Stopped):
            out.put(e)


class _DecodeStage:
    """Decompress, hash and check the limits of the decompressed stream (byte limit and ratio to
    the compressed bytes taken, exactly as _Digesting checks them in one thread)."""

    def __init__(self, src: _Inbox, out: _Channel, limits: Limits, algorithm: str, label: str) -> None:
        self._src = src
        self._out = out
        self._limits = limits
        self._algorithm = algorithm
        self._label = label
        self.digesting: _Digesting | None = None  # read it once the stage has ended

    def run(self) -> None:
        decoded: _Decoded | None = None
        try:
            counted = _Counted(cast("IO[bytes]", self._src))
            decoded = _decoder(cast("IO[bytes]", counted))
            self.digesting = digesting = _Digesting(
                cast("BinaryIO", decoded),
                self._limits,
                self._algorithm,
                compressed=counted,
                label=self._label,
            )
            while data := digesting.read(_CHUNK):
                self._out.put(data)
            decoded.close()  # before the end is handed on: its error travels like a read's
            self._out.put(b"")
        except _Stopped:
            return
        except BaseException as e:  # handed on in order, like the data
            with contextlib.suppress(_Stopped):
                self._out.put(e)
        finally:
            if decoded is not None and not decoded.closed:
                # torn down after an error that is on its way already: this one would only mask it
                with contextlib.suppress(Exception):
                    decoded.close()


def pool_full(label: str, free: int, reserve: int, kept: str = "; nothing of it was kept") -> PoolError:
    return PoolError(
        f"cannot unpack {label}: the pool is full ({_human(free)} free, "
        f"{_human(reserve)} is kept in reserve){kept}",
        hint="free space (nspawnctl image prune, nspawnctl system prune) or make the pool larger",
    )


# ---------------------------------------------------------------------------------------------
# Member metadata


@dataclass(frozen=True)
class _Meta:
    member: str
    uid: int
    gid: int
    mode: int
    atime_ns: int
    mtime_ns: int
    xattrs: tuple[tuple[bytes, bytes], ...]


class _NotADirectory(ArchiveError):
    """A path component exists but is neither a directory nor a symlink."""


def _unsafe(member: str, why: str) -> UnsafeArchive:
    return UnsafeArchive(
        f"unsafe archive member {member!r}: {why}",
        hint="the archive is malformed or malicious; nothing outside the image was touched",
    )


def _split(name: str, member: str, limits: Limits, *, subject: str = "") -> tuple[bytes, ...]:
    """Normalise a member (or hardlink target) name into path components below the root.

    Leading '/' and './', repeated slashes and '.' components are dropped, like GNU tar does;
    '..' is refused rather than resolved. An empty tuple is the root itself. `subject` names
    what is checked in messages when it is not the member's own name.
    """
    raw = name.encode("utf-8", "surrogateescape")
    the = subject or "the name"
    if b"\0" in raw:
        raise _unsafe(member, f"{the} contains a NUL byte")
    if len(raw) > limits.max_name:
        raise _unsafe(member, f"{the} is longer than {limits.max_name} bytes")
    comps = tuple(c for c in raw.split(b"/") if c not in (b"", b"."))
    if b".." in comps:
        raise _unsafe(member, f"{subject or 'it'} points outside the image")
    if len(comps) > limits.max_depth:
        raise _unsafe(member, f"{subject or 'it'} is nested deeper than {limits.max_depth} directories")
    return comps


def _b64(value: str) -> bytes:
    # libarchive writes base64 without '=' padding.
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _xattrs(member: str, pax: Mapping[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    """Extended attributes from GNU/star (SCHILY, raw bytes) and libarchive (base64) records."""
    found: dict[bytes, bytes] = {}
    for key, value in pax.items():
        if key.startswith("SCHILY.xattr."):
            # The reader decoded the raw bytes as utf-8 with surrogateescape; undo that exactly.
            name = key[len("SCHILY.xattr.") :].encode("utf-8", "surrogateescape")
            data = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote_to_bytes(key[len("LIBARCHIVE.xattr.") :])
            try:
                data = _b64(value)
            except (binascii.Error, ValueError) as e:
                raise ArchiveError(f"archive member {member!r}: bad xattr value for {key}") from e
        else:
            continue
        if not name or b"\0" in name:
            raise ArchiveError(f"archive member {member!r}: invalid xattr name {key!r}")
        # overlayfs acts on trusted.overlay.* (redirects, metacopy) if this tree is ever used as
        # a layer; an image has no business setting them.
        if name.startswith(b"trusted.overlay."):
            continue
        found[name] = data
    return tuple(found.items())


def _meta(m: Member) -> _Meta:
    if not (0 <= m.uid <= _UID_MAX and 0 <= m.gid <= _UID_MAX):
        raise ArchiveError(f"archive member {m.name!r} has an invalid owner {m.uid}:{m.gid}")
    atime_ns = m.mtime_ns if m.atime_ns is None else m.atime_ns
    return _Meta(m.name, m.uid, m.gid, m.mode & 0o7777, atime_ns, m.mtime_ns, _xattrs(m.name, m.pax_headers))


def _set_xattrs(fd: int, xattrs: tuple[tuple[bytes, bytes], ...]) -> None:
    for name, value in xattrs:
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            # SELinux labels are host-policy specific: skip them where the fs or policy refuses.
            if name == b"security.selinux" and e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                continue
            raise


def _apply_fd(fd: int, meta: _Meta) -> None:
    """Owner, then mode (chown clears setuid/setgid), then xattrs (chown also clears
    security.capability), then times (last, so nothing bumps them again)."""
    os.fchown(fd, meta.uid, meta.gid)
    os.fchmod(fd, meta.mode)
    _set_xattrs(fd, meta.xattrs)
    os.utime(fd, ns=(meta.atime_ns, meta.mtime_ns))


def _drop_other_xattrs(fd: int, keep: tuple[tuple[bytes, bytes], ...]) -> None:
    """A layer's directory entry replaces the lower directory's metadata, extended attributes
    included (SELinux labels are the host's business and stay)."""
    names = {name for name, _ in keep}
    for name in os.listxattr(fd):
        raw = os.fsencode(name)
        if raw not in names and raw != b"security.selinux":
            try:
                os.removexattr(fd, raw)
            except OSError as e:
                if e.errno not in (errno.ENODATA, errno.EOPNOTSUPP, errno.EPERM):
                    raise


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _copy(reader: TarReader, m: Member, fd: int) -> None:
    while chunk := reader.read(_CHUNK):
        _write_all(fd, chunk)


def _copy_sparse(reader: TarReader, m: Member, regions: list[tuple[int, int]], fd: int) -> None:
    """Write only the stored data regions and leave the rest a hole (seek, then truncate to the
    apparent size): a sparse file's apparent size can be terabytes (lastlog). The regions are
    stored back to back."""
    for offset, length in regions:
        pos, left = offset, length
        while left:
            chunk = reader.read(min(left, _CHUNK))
            _pwrite_all(fd, chunk, pos)
            pos, left = pos + len(chunk), left - len(chunk)
    os.ftruncate(fd, m.size)


_RMTREE_MAX_DEPTH = 256  # one fd per level is open while removing


def _dir_entries(fd: int) -> list[tuple[bytes, bool]]:
    with os.scandir(fd) as it:
        return [(os.fsencode(e.name), e.is_dir(follow_symlinks=False)) for e in it]


def _rmtree_at(parent: int, name: bytes) -> None:
    """Remove a directory tree without following any symlink in it. Iterative with a depth cap:
    the tree may be a running container's (``cp`` replacing a directory), and one nested a
    million deep must give an error, not a RecursionError or fd exhaustion."""
    fd = os.open(name, _DIR_READ, dir_fd=parent)
    try:
        entries = _dir_entries(fd)
    except BaseException:
        os.close(fd)
        raise
    stack = [(fd, name, entries)]
    try:
        while stack:
            fd, dname, pending = stack[-1]
            if not pending:
                os.close(fd)
                stack.pop()
                os.rmdir(dname, dir_fd=stack[-1][0] if stack else parent)
                continue
            child, is_dir = pending.pop()
            if not is_dir:
                os.unlink(child, dir_fd=fd)
                continue
            if len(stack) >= _RMTREE_MAX_DEPTH:
                where = name.decode("utf-8", "surrogateescape")
                raise ArchiveError(
                    f"cannot replace {where!r}: it is nested deeper than {_RMTREE_MAX_DEPTH} directories",
                    hint="remove it first (nspawnctl exec CTR rm -rf PATH)",
                )
            cfd = os.open(child, _DIR_READ, dir_fd=fd)
            try:
                stack.append((cfd, child, _dir_entries(cfd)))
            except BaseException:
                os.close(cfd)
                raise
    finally:
        for left, _, _ in stack:
            os.close(left)


def _lstat_at(parent: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# Extraction


_Trie: TypeAlias = dict[bytes, "_Trie"]


class _Extractor:
    """Per-call extraction state: the root fd, a one-entry cache of the last parent directory
    fd, and the directories whose metadata is applied at the end.

    With `host` (``cp`` out of a container to a host path), nothing that grants privilege lands:
    setuid/setgid bits are cleared, security.* and trusted.* xattrs (file capabilities, labels)
    dropped, and a char/block device node is refused.

    With `keep_kinds` (docker's ``noOverwriteDirNonDir``), an existing directory is never replaced
    by a non-directory nor the reverse: the member is refused instead.

    With `layer`, also the paths this layer wrote (and their ancestors): whiteouts only ever
    delete what lower layers left, never what came earlier in the same layer. They are a trie
    (component -> children), so memory grows with the path nodes, not members x depth squared.
    """

    def __init__(
        self,
        root: int,
        limits: Limits,
        *,
        aci: bool = False,
        layer: bool = False,
        host: bool = False,
        keep_kinds: bool = False,
    ) -> None:
        self._root = root
        self._host = host
        self._keep_kinds = keep_kinds
        self._limits = limits
        self._aci = aci
        self._layer = layer
        self._upper: _Trie = {}
        self._merged: set[tuple[bytes, ...]] = set()  # layer directories that were already there
        self.manifest: bytes | None = None
        self._dirs: dict[tuple[bytes, ...], _Meta] = {}
        self._cache_key: tuple[bytes, ...] | None = None
        self._cache_fd = -1
        self._file_bytes = 0
        self.entries = 0

    @property
    def root_fd(self) -> int:
        return self._root

    def close(self) -> None:
        self._drop_cache()

    # -- walking ------------------------------------------------------------------------------

    def _drop_cache(self) -> None:
        if self._cache_key is not None:
            os.close(self._cache_fd)
            self._cache_key = None
            self._cache_fd = -1

    def _walk(self, comps: tuple[bytes, ...], member: str, *, create: bool, subject: str = "its path") -> int:
        """Open directory `comps` below the root without following symlinks; return a new fd.

        Missing directories are created (0755, owned by us) when `create`, as GNU tar does;
        otherwise FileNotFoundError propagates.
        """
        fd = os.dup(self._root)
        try:
            for i, comp in enumerate(comps):
                try:
                    nfd = os.open(comp, _DIR_PATH, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    nfd = os.open(comp, _DIR_READ, dir_fd=fd)
                    os.fchmod(nfd, 0o755)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    st = _lstat_at(fd, comp)
                    where = b"/".join(comps[: i + 1]).decode("utf-8", "surrogateescape")
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        raise _unsafe(member, f"{subject} passes through the symlink {where!r}") from e
                    raise _NotADirectory(
                        f"cannot extract archive member {member!r}: {where!r} is not a directory"
                    ) from e
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, comps: tuple[bytes, ...], member: str) -> int:
        """The (cached) fd of a member's parent directory, created if missing."""
        if self._cache_key != comps:
            fd = self._walk(comps, member, create=True)
            self._drop_cache()
            self._cache_key, self._cache_fd = comps, fd
        return self._cache_fd

    def _walk_existing(self, comps: tuple[bytes, ...], member: str) -> int | None:
        """Like _walk without creating: None when a component is missing or not a directory.
        A symlink on the way is still refused: a whiteout must not reach through one either."""
        try:
            return self._walk(comps, member, create=False)
        except (FileNotFoundError, _NotADirectory):
            return None

    def _remove(self, parent: int, comps: tuple[bytes, ...], st: os.stat_result) -> None:
        """Remove whatever an earlier member left at `comps`, to be replaced."""
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(comps[-1], dir_fd=parent)
            return
        n = len(comps)
        if self._cache_key is not None and self._cache_key[:n] == comps:
            self._drop_cache()
        for key in [k for k in self._dirs if k[:n] == comps]:
            del self._dirs[key]
        _rmtree_at(parent, comps[-1])

    def _clear(self, parent: int, comps: tuple[bytes, ...]) -> None:
        st = _lstat_at(parent, comps[-1])
        if st is not None:
            self._remove(parent, comps, st)

    # -- members ------------------------------------------------------------------------------

    def _meta_of(self, m: Member) -> _Meta:
        meta = _meta(m)
        if not self._host:
            return meta
        return dataclasses.replace(
            meta,
            mode=meta.mode & ~(stat.S_ISUID | stat.S_ISGID),
            xattrs=tuple((k, v) for k, v in meta.xattrs if not k.startswith(_HOST_DROPPED_XATTRS)),
        )

    def member(self, reader: TarReader, m: Member) -> None:
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise ArchiveError(f"the archive has more than {self._limits.max_entries} entries")
        if m.type == _GNU_VOLUME_LABEL:
            return
        comps = _split(m.name, m.name, self._limits)
        if self._aci:
            stripped = self._aci_member(reader, m, comps)
            if stripped is None:
                return
            comps = stripped
        if self._host and m.type in (tarread.CHRTYPE, tarread.BLKTYPE):
            raise UnsafeArchive(
                f"refusing to copy the device node {m.name!r} to the host",
                hint=HOST_DEVICE_HINT,
            )
        if self._layer:
            if self._whiteout(m, comps):
                return
            self._touch(comps)
        if not comps:
            if not m.isdir():
                raise _unsafe(m.name, "it would replace the root directory of the image")
            self._dirs[()] = self._meta_of(m)
            return
        parent = self._parent(comps[:-1], m.name)
        if self._keep_kinds:
            self._check_kind(parent, comps, m)
        if m.isdir():
            self._directory(parent, comps, m)
        elif m.islnk():
            self._hardlink(parent, comps, m)
        elif m.issym():
            self._symlink(parent, comps, m)
        elif m.type in _NODE_KINDS:
            self._node(parent, comps, m)
        else:  # regular, contiguous, sparse, and unknown types (tarfile and GNU tar agree)
            self._file(reader, parent, comps, m)

    def _check_kind(self, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        st = _lstat_at(parent, comps[-1])
        if st is None or stat.S_ISDIR(st.st_mode) == m.isdir():
            return
        where = b"/".join(comps).decode("utf-8", "surrogateescape")
        if m.isdir():
            raise ArchiveError(f"cannot overwrite non-directory {where!r} with directory {m.name!r}")
        raise ArchiveError(f"cannot overwrite directory {where!r} with non-directory {m.name!r}")

    # -- layers -------------------------------------------------------------------------------

    def _touch(self, comps: tuple[bytes, ...]) -> None:
        """Remember that this layer wrote `comps` (and so, implicitly, its parent directories)."""
        node = self._upper
        for comp in comps:
            node = node.setdefault(comp, {})

    def _wrote(self, comps: tuple[bytes, ...]) -> bool:
        """True if this layer wrote `comps` or something below it."""
        node = self._upper
        for comp in comps:
            child = node.get(comp)
            if child is None:
                return False
            node = child
        return bool(comps)

    def _whiteout(self, m: Member, comps: tuple[bytes, ...]) -> bool:
        """Apply a whiteout marker (of any type, as umoci accepts); True if `m` was one, or was
        AUFS bookkeeping to skip. Markers never appear in the result."""
        for comp in comps[:-1]:
            if comp.startswith(_WH_META):
                return True
            if comp.startswith(_WH):
                raise ArchiveError(
                    f"invalid layer: member {m.name!r} is inside the whiteout marker "
                    f"{comp.decode('utf-8', 'surrogateescape')!r}",
                    hint=_BAD_LAYER_HINT,
                )
        if not comps or not comps[-1].startswith(_WH):
            return False
        name = comps[-1]
        if name == _WH_OPAQUE:
            self._opaque(comps[:-1], m.name)
            return True
        if name.startswith(_WH_META):
            return True
        target = name[len(_WH) :]
        if not target:
            raise ArchiveError(f"invalid layer: the whiteout {m.name!r} names no file", hint=_BAD_LAYER_HINT)
        if target in (b".", b".."):
            raise _unsafe(m.name, "its whiteout names a directory above it")
        parent = self._walk_existing(comps[:-1], m.name)
        if parent is None:
            return True  # nothing there to delete
        try:
            self._hide_lower(parent, (*comps[:-1], target))
        finally:
            os.close(parent)
        return True

    def _opaque(self, comps: tuple[bytes, ...], member: str) -> None:
        """Empty directory `comps` of what lower layers put there; this layer's entries stay, so
        where the marker stands among them does not matter."""
        where = self._walk_existing(comps, member)
        if where is None:
            return
        try:
            fd = os.open(".", _DIR_READ, dir_fd=where)
        finally:
            os.close(where)
        try:
            self._hide_children(fd, comps)
        finally:
            os.close(fd)

    def _hide_lower(self, parent: int, comps: tuple[bytes, ...]) -> None:
        """Delete `comps` (in directory fd `parent`) unless this layer wrote it; in a directory this
        layer wrote into, delete only the lower layers' entries, recursively."""
        st = _lstat_at(parent, comps[-1])
        if st is None:
            return
        if not self._wrote(comps):
            self._remove(parent, comps, st)
            return
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(comps[-1], _DIR_READ, dir_fd=parent)
            try:
                self._hide_children(fd, comps)
            finally:
                os.close(fd)

    def _hide_children(self, fd: int, comps: tuple[bytes, ...]) -> None:
        with os.scandir(fd) as it:
            names = [os.fsencode(e.name) for e in it]
        for name in names:
            self._hide_lower(fd, (*comps, name))

    def _aci_member(self, reader: TarReader, m: Member, comps: tuple[bytes, ...]) -> tuple[bytes, ...] | None:
        """Map an ACI member to its place in the image: `rootfs/...` loses the prefix (`rootfs`
        itself becomes the root), the manifest is captured; None means nothing to extract.

        The name was already checked whole by _split, so the stripped one obeys the same rules.
        """
        if not comps:
            # The archive's own "./" is not the image root (rootfs is); anything else there is
            # refused below as a replacement of the root.
            return None if m.isdir() else comps
        if comps[0] == _ACI_ROOTFS:
            return comps[1:]
        if comps == (b"manifest",):
            self._take_manifest(reader, m)
            return None
        raise ArchiveError(
            f"not an ACI: unexpected entry {m.name!r} outside rootfs/ "
            "(an ACI holds only manifest and rootfs/)",
            hint=_NOT_ACI_HINT,
        )

    def _take_manifest(self, reader: TarReader, m: Member) -> None:
        if self.manifest is not None:
            raise ArchiveError("invalid ACI: duplicate manifest", hint=_BAD_ACI_HINT)
        if m.type not in (tarread.REGTYPE, tarread.AREGTYPE, tarread.CONTTYPE) or m.issparse():
            raise ArchiveError("invalid ACI: its manifest is not a regular file", hint=_BAD_ACI_HINT)
        if m.size > _ACI_MANIFEST_MAX:
            raise ArchiveError(
                f"invalid ACI: its manifest is {m.size} bytes, more than the limit of {_ACI_MANIFEST_MAX}",
                hint=_BAD_ACI_HINT,
            )
        parts: list[bytes | memoryview] = []
        while chunk := reader.read(_CHUNK):
            parts.append(chunk)
        self.manifest = b"".join(parts)

    def _aci_link_target(self, target: tuple[bytes, ...], m: Member, what: str) -> tuple[bytes, ...]:
        """Hard link targets name archive members, so in an ACI they must be under rootfs/ too."""
        if not target or target[0] != _ACI_ROOTFS:
            raise _unsafe(m.name, f"{what} is outside rootfs/")
        return target[1:]

    def _directory(self, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        meta = self._meta_of(m)
        st = _lstat_at(parent, comps[-1])
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self._remove(parent, comps, st)
            st = None
        if st is None:
            os.mkdir(comps[-1], 0o700, dir_fd=parent)
        elif self._layer:
            self._merged.add(comps)
        if comps not in self._dirs and len(self._dirs) >= self._limits.max_dirs:
            raise ArchiveError(f"the archive has more than {self._limits.max_dirs} directories")
        self._dirs[comps] = meta  # applied in finish(), once nothing else will be created inside

    def _file(self, reader: TarReader, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        meta = self._meta_of(m)
        regions = m.sparse
        self._file_bytes += m.stored
        if self._file_bytes > self._limits.max_bytes:
            raise ArchiveError(
                f"the files in the archive add up to more than the limit of {self._limits.max_bytes} bytes"
            )
        tmp = b".nspawnctl-unpack-" + secrets.token_hex(8).encode()
        fd = os.open(tmp, _NEW_FILE, 0o600, dir_fd=parent)
        try:
            try:
                if regions is None:
                    _copy(reader, m, fd)
                else:
                    _copy_sparse(reader, m, regions, fd)
                _apply_fd(fd, meta)
            finally:
                os.close(fd)
            st = _lstat_at(parent, comps[-1])
            if st is not None and stat.S_ISDIR(st.st_mode):
                self._remove(parent, comps, st)
            os.rename(tmp, comps[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            # `cp` into a container has no staging subvolume to drop: leave no half file there
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise

    def _symlink(self, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        meta = self._meta_of(m)
        target = m.linkname.encode("utf-8", "surrogateescape")
        if not target or b"\0" in target or len(target) > self._limits.max_name:
            raise ArchiveError(f"archive member {m.name!r} has an invalid symlink target")
        # The target is stored verbatim, absolute or not: it is resolved inside the container
        # later, and never followed here.
        self._clear(parent, comps)
        os.symlink(target, comps[-1], dir_fd=parent)
        os.chown(comps[-1], meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(comps[-1], ns=(meta.atime_ns, meta.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _node(self, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        meta = self._meta_of(m)
        if m.devmajor < 0 or m.devminor < 0:
            raise ArchiveError(f"archive member {m.name!r} has an invalid device number")
        self._clear(parent, comps)
        name = comps[-1]
        os.mknod(name, _NODE_KINDS[m.type] | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
        os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        try:
            os.chmod(name, meta.mode, dir_fd=parent, follow_symlinks=False)
        except NotImplementedError:
            # No fchmodat(AT_SYMLINK_NOFOLLOW) here (needs /proc with glibc). The node was just
            # made by mknod in a directory only this process writes, so it is no symlink.
            os.chmod(name, meta.mode, dir_fd=parent)
        os.utime(name, ns=(meta.atime_ns, meta.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parent: int, comps: tuple[bytes, ...], m: Member) -> None:
        # Like GNU tar, a leading '/' in the target is dropped: it names a member of this archive.
        what = f"its hard link target {m.linkname!r}"
        target = _split(m.linkname, m.name, self._limits, subject=what)
        if self._aci:
            target = self._aci_link_target(target, m, what)
        if not target:
            raise _unsafe(m.name, "it is a hard link to the root directory")
        if target == comps:
            return
        try:
            tparent = self._walk(target[:-1], m.name, create=False, subject=what)
        except FileNotFoundError as e:
            raise _unsafe(m.name, f"{what} is not in the image") from e
        try:
            tst = _lstat_at(tparent, target[-1])
            if tst is None:
                raise _unsafe(m.name, f"{what} is not in the image")
            if stat.S_ISDIR(tst.st_mode):
                raise _unsafe(m.name, f"{what} is a directory")
            st = _lstat_at(parent, comps[-1])
            if st is not None:
                if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
                    return
                self._remove(parent, comps, st)
            # The header's mode and owner are not applied: they would rewrite the shared inode.
            os.link(target[-1], comps[-1], src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tparent)

    def finish(self) -> None:
        """Apply directory metadata last and deepest first, so creating children (and the
        directory's own mode) cannot disturb it."""
        for comps in sorted(self._dirs, key=len, reverse=True):
            meta = self._dirs[comps]
            try:
                if not comps:
                    self._apply_dir(self._root, meta, merged=self._layer)
                    continue
                parent = self._parent(comps[:-1], meta.member)
                fd = os.open(comps[-1], _DIR_READ, dir_fd=parent)
                try:
                    self._apply_dir(fd, meta, merged=comps in self._merged)
                finally:
                    os.close(fd)
            except OSError as e:
                # e.g. an xattr the kernel refuses (a malformed security.capability): the
                # archive's fault, reported like the same error on a file member
                if e.errno in _ENVIRONMENT_ERRNOS:
                    raise
                raise _member_error(meta.member, e) from e

    @staticmethod
    def _apply_dir(fd: int, meta: _Meta, *, merged: bool) -> None:
        if merged:
            _drop_other_xattrs(fd, meta.xattrs)
        _apply_fd(fd, meta)


def _member_error(member: str, e: Exception) -> ArchiveError:
    detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return ArchiveError(f"cannot extract archive member {member!r}: {detail}")


def _extract_all(reader: TarReader, ex: _Extractor) -> None:
    while (m := reader.next()) is not None:
        extract_member(ex, reader, m)


def extract_member(ex: _Extractor, reader: TarReader, m: Member) -> None:
    """Extract one member, turning what the archive caused into ArchiveError (errors of the
    machine itself, like a full disk, pass through unchanged)."""
    try:
        ex.member(reader, m)
    except ArchiveError:
        raise
    except OSError as e:
        if e.errno in _ENVIRONMENT_ERRNOS:
            raise
        raise _member_error(m.name, e) from e
    except (ValueError, OverflowError) as e:
        raise _member_error(m.name, e) from e


def tar_limits(limits: Limits) -> tarread.TarLimits:
    """What the header reader may hold in memory, from the caller's limits."""
    return tarread.TarLimits(
        max_header=limits.max_header, max_global=limits.max_header, max_sparse=limits.max_sparse
    )


def _check_end(digesting: _Digesting, reader: TarReader, *, empty_ok: bool) -> None:
    """After the reader found the end of the archive (the rules are in tarread) and the stream
    was drained: what follows an end-of-archive marker must be zeros (GNU tar pads to its record
    size with them); anything else is a corrupt header or a second archive whose members would
    be lost. An empty stream is an empty archive to Go; only ``empty_ok`` (layers) takes it,
    since GNU tar refuses it."""
    if digesting.size == 0 and not empty_ok:
        raise ArchiveError("the archive is empty")
    end = reader.end if reader.end is not None else digesting.size
    if digesting.nonzero_end > end:
        raise ArchiveError(
            f"the archive has invalid or extra data at offset {end} "
            "(a corrupt header, or concatenated archives)"
        )


def unpack_tar(
    raw: IO[bytes],
    dest: str | os.PathLike[str],
    *,
    limits: Limits = Limits(),
    algorithm: str = "sha256",
    layout: str = "rootfs",
    label: str = "the archive",
) -> UnpackResult:
    """Extract a (possibly compressed) tar stream into the existing, empty directory `dest`,
    faithfully and never outside it. Hash the decompressed stream while extracting (one pass), and
    drain the stream to EOF at the end so the digest covers trailing padding too.

    `algorithm` ("sha256" or "sha512") hashes the uncompressed stream: an appc image ID is its
    sha512. `layout` "rootfs" extracts the whole archive; "aci" expects an App Container Image
    (`manifest` plus `rootfs/`), extracts `rootfs/` onto `dest` and returns the manifest bytes.
    "layer" applies an OCI layer onto `dest`, which holds its parent layers (so it need not be
    empty): `.wh.NAME` deletes NAME and `DIR/.wh..wh..opq` empties DIR of what lower layers left
    (never what this layer wrote, whatever the order), the markers are not extracted, existing
    entries are replaced (a directory over a directory takes only its metadata), hard links may
    name lower layers' files, and a path through a lower layer's symlink is refused like any
    other. The digest is then the layer's diff ID.

    The stream may end where Go's archive/tar (podman, containerd, umoci) lets an archive end, in
    every layout (see tarread): without the end-of-archive marker, or inside the last member's
    padding; the digest stays that of the bytes as served. A member cut short is truncation.

    Decompression bombs are stopped while streaming (see Limits): past the byte limit, past
    ``max_ratio`` times the compressed bytes read, or when `dest`'s filesystem gets down to its
    reserve (PoolError; so is running out of space). `label` names the archive in those errors.

    Raises UnsafeArchive for members that would escape or replace the root, ArchiveError for
    corrupt, truncated or oversized input (or, with "aci", anything that is not an ACI). An
    NspawnctlError raised by `raw` itself (a failed download) propagates unchanged. On error
    `dest` is left partly filled for the caller to delete. On KeyboardInterrupt (any exit by a
    BaseException that is no Exception) a read of `raw` under way is not waited for: the caller,
    unwinding, closes `raw`, which must then end that read (a Download's close does).
    """
    if algorithm not in _ALGORITHMS:
        raise InvalidArgument(
            f"unsupported digest algorithm {algorithm!r} (use one of {', '.join(_ALGORITHMS)})"
        )
    if layout not in _LAYOUTS:
        raise InvalidArgument(f"unknown archive layout {layout!r} (use one of {', '.join(_LAYOUTS)})")
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def space() -> tuple[int, int]:
        st = os.fstatvfs(root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    try:
        if layout != "layer":
            with os.scandir(root) as it:
                if next(it, None) is not None:
                    raise InvalidArgument(f"cannot unpack into {os.fspath(dest)!r}: it is not empty")
        ex = _Extractor(root, limits, aci=layout == "aci", layer=layout == "layer")
        stop = threading.Event()
        fetched, decoded = _Channel(stop), _Channel(stop)
        decode = _DecodeStage(_Inbox(fetched), decoded, limits, algorithm, label)
        threads = [
            threading.Thread(target=_fetch_stage, args=(raw, fetched), name="nspawnctl-fetch", daemon=True),
            threading.Thread(target=decode.run, name="nspawnctl-decode", daemon=True),
        ]
        interrupted = False
        try:
            for thread in threads:
                thread.start()
            inbox = _Inbox(decoded, space=space, limits=limits, label=label)
            reader = TarReader(inbox.read, tar_limits(limits))
            try:
                _extract_all(reader, ex)
                ex.finish()
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    free, total = space()
                    raise pool_full(label, free, min(limits.min_free, total // 20)) from e
                raise
            inbox.drain()  # the decoder has then read its input to the end, hashing all of it
            threads[1].join()
            digesting = decode.digesting
            assert digesting is not None
            _check_end(digesting, reader, empty_ok=layout == "layer")
            if layout == "aci" and ex.manifest is None:
                raise ArchiveError("not an ACI: no manifest", hint=_NOT_ACI_HINT)
        except BaseException as e:
            interrupted = not isinstance(e, Exception)
            raise
        finally:
            stop.set()  # every stage ends at its next hand-over; the caller's stream is then ours again
            # ...but on Ctrl-C the fetch stage may sit in a read of a stalled server: it is then
            # left to end when the caller, unwinding too, closes its stream (a Download's close ends it)
            for thread in threads:
                if thread.is_alive():
                    thread.join(_INTERRUPTED_WAIT if interrupted and thread is threads[0] else None)
            ex.close()
    finally:
        os.close(root)
    return UnpackResult(f"{algorithm}:{digesting.hash.hexdigest()}", digesting.size, ex.entries, ex.manifest)
