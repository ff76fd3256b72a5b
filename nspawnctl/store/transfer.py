"""Images in and out as whole filesystems: ``commit``, ``export`` (tar or btrfs send) and the
import of btrfs send streams.

A commit is a read-only btrfs snapshot of the container's subvolume: atomic, so a running
container is caught in one consistent state. A btrfs send stream is received into a staging
subvolume next to the images and only then renamed into place, so a failed or interrupted receive
never leaves an image behind; an image received from a stream is named by the stream's SHA-256,
so receiving the same stream twice stores it once.

A stream is untrusted input, and ``btrfs receive --chroot`` confines its paths only: it looks the
subvolumes a stream builds on up by UUID on the whole filesystem, other containers included, and
makes as many subvolumes as the stream asks for, and it follows symlinks along its paths. So
every command is checked before ``btrfs receive`` sees it (:class:`StreamCheck`): one subvolume
per stream, no ``..``, NUL or symlink along a path, no write to a symlink, clones only from the
stream's own subvolume or its parent, and that parent an image or a layer of this store, the
only subvolume answering to its UUID (:func:`check_clone_sources`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import (
    ArchiveError,
    CommandFailed,
    ContainerNotFound,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    NspawnctlError,
    UnsafeArchive,
)
from ..ref import ImageRef
from ..spec import ContainerSpec, RunDefaults
from . import btrfs
from .containers import ContainerStore
from .files import tree_size
from .images import Image, ImageStore
from .unpack import _SPACE_CHECK, Limits, pool_full

SEND_MAGIC = b"btrfs-stream\0"
_HEADER = struct.Struct("<13sI")  # magic, version
_CMD = struct.Struct("<IHI")  # payload length, command, crc32c
_TLV = struct.Struct("<HH")  # attribute type, length
_TYPE = struct.Struct("<H")  # a version 2 DATA attribute: type only, the data runs to the end
# kernel fs/btrfs/send.h (btrfs-progs common/send-stream.h): commands and attributes
_C_SUBVOL, _C_SNAPSHOT, _C_MKFILE, _C_SYMLINK, _C_RENAME, _C_LINK = 1, 2, 3, 8, 9, 10
_C_UNLINK, _C_RMDIR, _C_WRITE, _C_CLONE, _C_TRUNCATE, _C_CHMOD, _C_END = 11, 12, 15, 16, 17, 18, 21
_C_UPDATE_EXTENT, _C_FALLOCATE, _C_FILEATTR, _C_ENCODED_WRITE, _C_ENABLE_VERITY = 22, 23, 24, 25, 26
_A_UUID, _A_CTRANSID, _A_XATTR_NAME, _A_PATH, _A_PATH_TO, _A_PATH_LINK, _A_DATA = 1, 2, 13, 15, 16, 17, 19
_A_CLONE_UUID, _A_CLONE_CTRANSID, _A_CLONE_PATH = 20, 21, 22
_A_SIZE, _A_FILE_OFFSET, _A_FALLOCATE_MODE, _A_UNENCODED_FILE_LEN = 4, 18, 25, 27
_FALLOC_FL_PUNCH_HOLE = 0x02  # frees space: not counted
_PATHS = (_A_PATH, _A_PATH_TO, _A_PATH_LINK, _A_CLONE_PATH)
_STRINGS = (*_PATHS, _A_XATTR_NAME)  # read by receive as C strings
_VERSIONS = (1, 2, 3)
_MAX_ATTR = {1: 24, 2: 31, 3: 35}  # BTRFS_SEND_A_MAX per version
_MAX_COMMAND = {1: 22, 2: 25, 3: 26}  # BTRFS_SEND_C_MAX per version
# commands that open, truncate or chmod their PATH following a final symlink (chown, utimes and
# the xattr commands use lchown, utimensat(AT_SYMLINK_NOFOLLOW), lsetxattr and lremovexattr, and
# the kernel sends them for symlinks)
_FOLLOWS_PATH = frozenset(
    {
        _C_MKFILE,
        _C_WRITE,
        _C_CLONE,
        _C_TRUNCATE,
        _C_CHMOD,
        _C_UPDATE_EXTENT,
        _C_FALLOCATE,
        _C_FILEATTR,
        _C_ENCODED_WRITE,
        _C_ENABLE_VERITY,
    }
)
_MAX_CMD = 1 << 22  # the kernel sends at most 64 KiB (v1) or about 144 KiB (v2) per command
_ZERO_UUID = bytes(16)
_FS_TREE = 5
_CHUNK = 1 << 20
# what nspawnctl itself puts in images/ as subvolumes: images and staging
_STORE_NAME = re.compile(r"[0-9a-f]{64}|sha512-[0-9a-f]{128}|\.tmp-[0-9]+-[0-9a-f]+.*")


# -- btrfs send streams --------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamHeader:
    """What the first command of a send stream says: the subvolume it makes and, for an
    incremental stream, the parent it must be applied to."""

    version: int
    uuid: str
    path: str
    parent_uuid: str | None = None  # incremental streams only
    parent_ctransid: int | None = None

    @property
    def incremental(self) -> bool:
        return self.parent_uuid is not None


def is_send_stream(head: bytes) -> bool:
    return head.startswith(SEND_MAGIC)


def read_stream_header(stream: IO[bytes]) -> tuple[bytes, StreamHeader]:
    """Read exactly the stream header and first command (what must be replayed to
    ``btrfs receive``) and parse them."""
    head = read_exactly(stream, _HEADER.size)
    if len(head) < _HEADER.size:
        raise ArchiveError("the btrfs send stream is truncated")
    first = read_command(stream)
    if first is None:
        raise ArchiveError("the btrfs send stream is truncated")
    head += first[0]
    return head, parse_stream_header(head)


def parse_stream_header(data: bytes) -> StreamHeader:
    """The stream header and first command in ``data``, which must make a subvolume (commands
    before it would write next to the images) and carry a correct checksum (``rename_stream``
    computes a new one)."""
    if len(data) < _HEADER.size + _CMD.size or not is_send_stream(data):
        raise ArchiveError("not a btrfs send stream (no btrfs-stream header)")
    _, version = _HEADER.unpack_from(data)
    if version not in _VERSIONS:
        raise ArchiveError(f"unsupported btrfs send stream version {version}")
    length, cmd, crc = _CMD.unpack_from(data, _HEADER.size)
    start = _HEADER.size + _CMD.size
    payload = data[start : start + length]
    if len(payload) < length:
        raise ArchiveError("the btrfs send stream is truncated")
    if cmd not in (_C_SUBVOL, _C_SNAPSHOT):
        raise ArchiveError(f"invalid btrfs send stream: it starts with command {cmd}, not a subvolume")
    if crc32c(_CMD.pack(length, cmd, 0) + payload) != crc:
        raise ArchiveError("invalid btrfs send stream: the checksum of its first command is wrong")
    attrs = parse_attrs(payload, version)
    raw_uuid = bytes(attrs.get(_A_UUID, b""))
    if len(raw_uuid) != 16 or raw_uuid == _ZERO_UUID or _A_PATH not in attrs:
        raise ArchiveError("invalid btrfs send stream: its first command names no subvolume")
    parent = parent_ctransid = None
    if cmd == _C_SNAPSHOT:
        clone = bytes(attrs.get(_A_CLONE_UUID, b""))
        if len(clone) != 16 or clone == _ZERO_UUID:
            raise ArchiveError("invalid btrfs send stream: an incremental stream without a parent UUID")
        parent = str(uuidlib.UUID(bytes=clone))
        if len(attrs.get(_A_CLONE_CTRANSID, b"")) == 8:
            parent_ctransid = struct.unpack("<Q", attrs[_A_CLONE_CTRANSID])[0]
    return StreamHeader(
        version=version,
        uuid=str(uuidlib.UUID(bytes=raw_uuid)),
        path=bytes(attrs[_A_PATH]).decode("utf-8", "replace"),
        parent_uuid=parent,
        parent_ctransid=parent_ctransid,
    )


def parse_attrs(payload: bytes | memoryview, version: int) -> dict[int, memoryview]:
    """A command's attributes, read as ``btrfs receive`` reads them: type, length, data; from
    version 2 on a DATA attribute has no length and runs to the end of the command. Malformed or
    repeated attributes are refused (receive would keep the last: no ambiguity allowed)."""
    view = memoryview(payload)
    attrs: dict[int, memoryview] = {}
    pos = 0
    while pos < len(view):
        if len(view) - pos < _TYPE.size:
            raise ArchiveError("invalid btrfs send stream: a truncated attribute")
        (kind,) = _TYPE.unpack_from(view, pos)
        if version >= 2 and kind == _A_DATA:
            start, end = pos + _TYPE.size, len(view)
        else:
            if len(view) - pos < _TLV.size:
                raise ArchiveError("invalid btrfs send stream: a truncated attribute")
            size = _TLV.unpack_from(view, pos)[1]
            start = pos + _TLV.size
            end = start + size
            if end > len(view):
                raise ArchiveError("invalid btrfs send stream: an attribute longer than its command")
        if kind in attrs:
            raise UnsafeArchive(f"invalid btrfs send stream: a command repeats attribute {kind}")
        attrs[kind] = view[start:end]
        pos = end
    return attrs


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """btrfs's CRC-32C of a send command: Castagnoli, seed 0, no final inversion."""
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def rename_stream(head: bytes, name: str) -> bytes:
    """``head`` (header and first command) with the subvolume it makes renamed to ``name``.

    ``btrfs receive`` names the subvolume as the sender's was, and a read-only subvolume cannot
    be moved to another directory later (its ".." would change), so the stream is made to
    create it right where it is to stay, under a staging name."""
    start = _HEADER.size + _CMD.size
    version = _HEADER.unpack_from(head)[1]
    length, cmd, _crc = _CMD.unpack_from(head, _HEADER.size)
    out = b""
    for kind, value in parse_attrs(head[start : start + length], version).items():
        data = name.encode() if kind == _A_PATH else bytes(value)
        out += _TLV.pack(kind, len(data)) + data
    zeroed = _CMD.pack(len(out), cmd, 0) + out
    return head[: _HEADER.size] + _CMD.pack(len(out), cmd, crc32c(zeroed)) + out


Components = tuple[bytes, ...]


def _components(path: bytes) -> Components:
    """A stream path as the kernel resolves it below the subvolume: empty and '.' parts dropped."""
    return tuple(part for part in path.split(b"/") if part not in (b"", b"."))


def parent_symlinks(root: Path) -> set[Components]:
    """Every symlink in the tree ``root`` (a parent image), as path components; no symlink is
    followed and nothing outside the tree is looked at."""
    found: set[Components] = set()
    pending: list[tuple[int, Components]] = [
        (os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW), ())
    ]
    while pending:
        fd, prefix = pending.pop()
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = (*prefix, os.fsencode(entry.name))
                    if entry.is_symlink():
                        found.add(name)
                    elif entry.is_dir(follow_symlinks=False):
                        with contextlib.suppress(OSError):
                            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                            pending.append((os.open(entry.name, flags, dir_fd=fd), name))
        finally:
            os.close(fd)
    return found


@dataclass
class StreamCheck:
    """Checks the commands after a stream's first one, before ``btrfs receive`` sees them.

    ``--chroot`` keeps receive's paths below the image directory, not below the subvolume the
    stream makes; receive follows symlinks along every path (and at the end of many: it opens,
    truncates and chmods by path); receive reads paths as C strings; and it finds clone sources
    by UUID anywhere on the filesystem. Refused therefore: a second subvolume, a ``..`` or a NUL
    in a path, a path through a symlink (one the stream made, or one in the parent image:
    ``symlinks``), writing to a symlink, a clone from any subvolume but the stream's own or its
    parent, unknown commands or attributes, and anything after the end."""

    header: StreamHeader
    symlinks: set[Components] = field(default_factory=set)
    ended: bool = False
    budget: StreamBudget | None = None  # the byte caps; None: none
    _sources: set[bytes] = field(default_factory=set)
    _under: dict[Components, int] = field(default_factory=dict)  # symlinks below each directory

    def __post_init__(self) -> None:
        self._sources = {uuidlib.UUID(self.header.uuid).bytes}
        if self.header.parent_uuid is not None:
            self._sources.add(uuidlib.UUID(self.header.parent_uuid).bytes)
        links, self.symlinks = self.symlinks, set()
        for link in links:
            self._add(link)

    def _add(self, path: Components) -> None:
        if path and path not in self.symlinks:
            self.symlinks.add(path)
            for i in range(1, len(path)):
                self._under[path[:i]] = self._under.get(path[:i], 0) + 1

    def _discard(self, path: Components) -> None:
        if path in self.symlinks:
            self.symlinks.remove(path)
            for i in range(1, len(path)):
                if self._under[path[:i]] == 1:
                    del self._under[path[:i]]
                else:
                    self._under[path[:i]] -= 1

    def _below(self, path: Components) -> list[Components]:
        """The symlinks ``path`` is or holds."""
        if path in self._under:
            return [link for link in self.symlinks if link[: len(path)] == path]
        return [path] if path in self.symlinks else []

    def _through_symlink(self, path: Components) -> bool:
        return any(path[:i] in self.symlinks for i in range(1, len(path)))

    def check(self, cmd: int, payload: bytes | memoryview) -> None:
        if self.ended:
            raise UnsafeArchive("the btrfs send stream goes on after its end command (a second stream?)")
        if cmd in (_C_SUBVOL, _C_SNAPSHOT):
            raise UnsafeArchive("the btrfs send stream makes more than one subvolume")
        if cmd == _C_END:
            self.ended = True
            return
        version = self.header.version
        if not 0 < cmd <= _MAX_COMMAND[version]:
            raise UnsafeArchive(f"the btrfs send stream has command {cmd}, unknown in version {version}")
        attrs = parse_attrs(payload, version)
        for kind, value in attrs.items():
            if not 0 < kind <= _MAX_ATTR[version]:
                raise UnsafeArchive(
                    f"the btrfs send stream has attribute {kind}, unknown in version {version}"
                )
            if kind in _STRINGS and 0 in value:
                shown = bytes(value).decode("utf-8", "replace")
                raise UnsafeArchive(f"the btrfs send stream names a path with a NUL byte: {shown!r}")
        paths: dict[int, Components] = {}
        for kind in _PATHS:
            if kind not in attrs or (cmd == _C_SYMLINK and kind == _A_PATH_LINK):
                continue  # a symlink's target: data, not a path receive follows
            raw = bytes(attrs[kind])
            shown = raw.decode("utf-8", "replace")
            if b".." in raw.split(b"/"):
                raise UnsafeArchive(f"the btrfs send stream names a path with '..': {shown!r}")
            path = paths[kind] = _components(raw)
            if self._through_symlink(path):
                raise UnsafeArchive(f"the btrfs send stream names a path through a symlink: {shown!r}")
        final = paths.get(_A_PATH, ())
        if cmd in _FOLLOWS_PATH and final in self.symlinks:
            raise UnsafeArchive(f"the btrfs send stream writes to a symlink: {bytes(attrs[_A_PATH])!r}")
        if cmd == _C_CLONE and paths.get(_A_CLONE_PATH, ()) in self.symlinks:
            raise UnsafeArchive("the btrfs send stream clones data from a symlink")
        if cmd == _C_LINK and paths.get(_A_PATH_LINK, ()) in self.symlinks:
            raise UnsafeArchive("the btrfs send stream makes a hard link to a symlink")
        if cmd == _C_CLONE:
            source = bytes(attrs.get(_A_CLONE_UUID, b""))
            if source not in self._sources:
                shown = str(uuidlib.UUID(bytes=source)) if len(source) == 16 else "(none)"
                raise UnsafeArchive(
                    f"the btrfs send stream clones data from subvolume {shown}, which is neither "
                    "the one it makes nor its parent"
                )
        if self.budget is not None:
            self.budget.count(cmd, attrs, final)
        if cmd == _C_SYMLINK:
            self._add(final)
        elif cmd in (_C_UNLINK, _C_RMDIR):
            for link in self._below(final):
                self._discard(link)
        elif cmd == _C_RENAME:
            to = paths.get(_A_PATH_TO, ())
            moved = self._below(final)
            for link in self._below(to) + moved:
                self._discard(link)  # what the rename replaces, and what it moves
            for link in moved:
                self._add(to + link[len(final) :])


def _u64(attrs: dict[int, memoryview], kind: int, width: int = 8) -> int:
    """A little-endian number attribute (0 if absent), of the width receive reads it with."""
    value = attrs.get(kind)
    if value is None:
        return 0
    if len(value) != width:
        raise UnsafeArchive(f"invalid btrfs send stream: attribute {kind} is not a {8 * width}-bit number")
    return int.from_bytes(value, "little")


@dataclass
class StreamBudget:
    """The caps a tar import has (:class:`~.unpack.Limits`), for a send stream: the bytes its
    commands make receive store (written, encoded-written, fallocated, and a truncate's growth
    past what the stream wrote to that file) against ``limits.max_bytes``, and, before those
    bytes reach receive, against the free space above the pool's reserve (``space`` gives free
    and total bytes). A few hundred bytes of stream can ask for a fallocate of petabytes."""

    limits: Limits
    space: Callable[[], tuple[int, int]] | None = None
    total: int = 0
    _file: Components | None = None  # the file the last write went to, and where it ended
    _end: int = 0
    _room: int = -1  # bytes that may still be counted before the next look at the free space

    def count(self, cmd: int, attrs: dict[int, memoryview], path: Components) -> None:
        size = 0
        if cmd == _C_WRITE:
            size = len(attrs.get(_A_DATA, b""))
        elif cmd == _C_ENCODED_WRITE:  # receive may decompress it: the larger of the two
            size = max(len(attrs.get(_A_DATA, b"")), _u64(attrs, _A_UNENCODED_FILE_LEN))
        elif cmd == _C_FALLOCATE:
            if not _u64(attrs, _A_FALLOCATE_MODE, 4) & _FALLOC_FL_PUNCH_HOLE:  # a u32
                size = _u64(attrs, _A_SIZE)
        elif cmd == _C_TRUNCATE:
            end = _u64(attrs, _A_SIZE)
            size = max(end - (self._end if path == self._file else 0), 0)
        if cmd in (_C_WRITE, _C_ENCODED_WRITE):
            if path != self._file:
                self._file, self._end = path, 0
            self._end = max(self._end, _u64(attrs, _A_FILE_OFFSET) + size)
        if size:
            self.add(size)

    def add(self, size: int) -> None:
        self.total += size
        if self.total > self.limits.max_bytes:
            raise ArchiveError(
                f"the files in the btrfs send stream add up to more than the limit of "
                f"{self.limits.max_bytes} bytes",
                hint="is it what you meant to import?; nothing of it was kept",
            )
        if self.space is None:
            return
        self._room -= size
        if self._room < 0:  # first, every _SPACE_CHECK bytes, and before a large request
            free, whole = self.space()
            reserve = self.limits.reserve(whole)
            # what was counted since is still on its way to receive: not yet in `free`
            self._room = free - reserve - size
            if self._room < 0:
                raise pool_full("the btrfs send stream", free, reserve)
            self._room = min(self._room, _SPACE_CHECK)


def checked_commands(
    stream: IO[bytes], head: bytes, first: bytes, check: StreamCheck, digest: Any
) -> Iterator[bytes]:
    """``first`` (the renamed header and first command), then the rest of ``stream`` in batches
    of whole commands that passed ``check``, up to the end command; ``digest`` is updated with
    the stream as sent (``head`` and the rest). Memory: one batch and one command."""
    digest.update(head)
    batch = bytearray(first)
    while not check.ended:
        command = read_command(stream)
        if command is None:
            raise ArchiveError("the btrfs send stream is truncated (it has no end command)")
        raw, cmd, payload = command
        check.check(cmd, payload)
        digest.update(raw)
        batch += raw
        if len(batch) >= _CHUNK:
            yield bytes(batch)
            batch.clear()
    if stream.read(1):
        raise UnsafeArchive("the btrfs send stream goes on after its end command (a second stream?)")
    yield bytes(batch)


def read_command(stream: IO[bytes]) -> tuple[bytes, int, memoryview] | None:
    """The next command: its bytes as sent, its number and its payload; None at the end."""
    head = read_exactly(stream, _CMD.size)
    if not head:
        return None
    if len(head) < _CMD.size:
        raise ArchiveError("the btrfs send stream is truncated")
    length, cmd, _crc = _CMD.unpack(head)
    if length > _MAX_CMD:
        raise ArchiveError(f"invalid btrfs send stream: a command of {length} bytes")
    raw = head + read_exactly(stream, length)
    if len(raw) < _CMD.size + length:
        raise ArchiveError("the btrfs send stream is truncated")
    return raw, cmd, memoryview(raw)[_CMD.size :]


def read_exactly(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes of ``stream``, fewer only at its end (a pipe's read may return less)."""
    out = b""
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _btrfsutil() -> Any:
    from .btrfs import _btrfsutil

    return _btrfsutil()


def _subvolumes(path: Path) -> list[Any]:
    """SubvolumeInfo of every subvolume on the filesystem holding ``path``."""
    util = _btrfsutil()
    try:
        return [info for _, info in util.SubvolumeIterator(str(path), top=_FS_TREE, info=True)]
    except OSError as e:
        raise CommandFailed(f"cannot list the subvolumes of {path}: {e.strerror or e}") from e


def _store_subvolumes(images: ImageStore) -> dict[int, tuple[Path, Any]]:
    """Path and SubvolumeInfo, by subvolume ID, of the images' and layers' own subvolumes (no
    staging)."""
    util = _btrfsutil()
    found: dict[int, tuple[Path, Any]] = {}
    for directory in (images.dir, images.pool.paths.layers):
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError):
                    if util.is_subvolume(entry.path):
                        info = util.subvolume_info(entry.path)
                        found[info.id] = (Path(entry.path), info)
    return found


@dataclass(frozen=True)
class StreamBase:
    """What ``btrfs receive`` will find for a stream: its parent image's root (incremental
    streams), and the images already received from this very stream UUID (the same stream
    imported again is allowed: it must turn out to be one of them)."""

    parent: Path | None = None
    same: frozenset[str] = frozenset()


def check_clone_sources(images: ImageStore, header: StreamHeader) -> StreamBase:
    """Make sure the subvolumes ``btrfs receive`` will look up for this stream are the store's.

    Receive finds an incremental stream's parent (and its clone sources) by UUID on the whole
    filesystem, by received UUID first, and older versions look the stream's own UUID up as well.
    The parent must be an image or a layer here and the only subvolume answering to its UUID; no
    subvolume may have the stream's own UUID, and only images received from it (the same stream
    again) may have it as received UUID: else a later incremental stream could be applied to
    the wrong parent."""
    store = _store_subvolumes(images)
    everything = _subvolumes(images.dir)
    own = uuidlib.UUID(header.uuid).bytes
    same = set()
    for info in everything:
        if info.uuid == own:
            raise UnsafeArchive(
                f"the btrfs send stream makes subvolume {header.uuid}, and subvolume {info.id} here "
                "already has that UUID: refusing to receive it",
                hint="a stream cannot be imported on the filesystem it was sent from while its "
                "source subvolume is there",
            )
        if info.received_uuid == own:
            where = store.get(info.id)
            if where is None or where[0].parent != images.dir:
                raise UnsafeArchive(
                    f"subvolume {info.id}, which is no image, claims to have been received from "
                    f"{header.uuid}, the UUID this stream makes: refusing to receive it",
                    hint="find it with 'btrfs subvolume list -R' on the pool",
                )
            same.add(where[0].name)
    if header.parent_uuid is None:
        return StreamBase(None, frozenset(same))
    parent = uuidlib.UUID(header.parent_uuid).bytes
    answering = [info for info in everything if parent in (info.uuid, info.received_uuid)]
    if not any(info.id in store for info in answering):
        raise NotFound(
            f"this incremental btrfs stream needs its parent subvolume {header.parent_uuid}, "
            "which is no image here",
            hint="import the full stream of the parent image first "
            "('nspawnctl export --format btrfs-send PARENT' where it came from)",
        )
    if len(answering) > 1:
        ids = ", ".join(str(info.id) for info in answering)
        raise UnsafeArchive(
            f"subvolumes {ids} all answer to {header.parent_uuid}, the parent this stream builds "
            "on: refusing to receive it (btrfs receive could pick any of them)",
            hint="find them with 'btrfs subvolume list -R -u' on the pool",
        )
    return StreamBase(store[answering[0].id][0], frozenset(same))


def receive(
    images: ImageStore, stream: IO[bytes], ref: ImageRef | None, source: str, limits: Limits | None = None
) -> Image:
    """Receive a btrfs send stream (full, or incremental with its parent here) as an image,
    within ``limits`` (the byte cap and the pool's reserve; default: ``Limits()``)."""
    head, header = read_stream_header(stream)
    images.pool.check()
    base = check_clone_sources(images, header)
    dir_fd = os.open(images.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def space() -> tuple[int, int]:
        st = os.fstatvfs(dir_fd)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    try:
        return _receive(
            images, stream, ref, source, head, header, base, StreamBudget(limits or Limits(), space)
        )
    finally:
        os.close(dir_fd)


def _receive(
    images: ImageStore,
    stream: IO[bytes],
    ref: ImageRef | None,
    source: str,
    head: bytes,
    header: StreamHeader,
    base: StreamBase,
    budget: StreamBudget,
) -> Image:
    symlinks = parent_symlinks(base.parent) if base.parent is not None else set()
    check = StreamCheck(header, symlinks, budget=budget)
    staging = images.staging_path()
    before = set(os.listdir(images.dir))
    received = False
    try:
        digest = hashlib.sha256()
        commands = checked_commands(stream, head, rename_stream(head, staging.name), check, digest)
        argv = ["btrfs", "receive", "-q", "-e", "--chroot", str(staging.parent)]
        _run(argv, "btrfs receive", feed=commands, error=ArchiveError)
        if _remove_strays(images.dir, before, staging.name):
            raise UnsafeArchive("the btrfs send stream made more than one subvolume")
        if not btrfs.is_subvolume(staging):
            raise ArchiveError("the btrfs send stream did not make the subvolume its header names")
        if not _btrfsutil().get_subvolume_read_only(str(staging)):
            raise ArchiveError("the btrfs send stream was not received completely")
        if base.same and digest.hexdigest() not in base.same:
            raise UnsafeArchive(
                f"image {sorted(base.same)[0][:12]} was received from subvolume {header.uuid} "
                "already, and this stream with the same UUID is a different one: refusing it"
            )
        origin: dict[str, Any] = {"format": "btrfs-send", "sent_uuid": header.uuid, "sent_name": header.path}
        if header.parent_uuid:
            origin["sent_parent_uuid"] = header.parent_uuid
        image = images.add_subvolume(
            staging, f"sha256:{digest.hexdigest()}", ref, source, RunDefaults(), origin, tree_size(staging)
        )
        received = True
        return image
    finally:
        if not received:
            with contextlib.suppress(NspawnctlError, OSError):
                _remove_strays(images.dir, before, staging.name)
        btrfs.delete(staging)


def _remove_strays(directory: Path, before: set[str], keep: str) -> list[str]:
    """Delete the subvolumes that appeared in ``directory`` during a receive besides ``keep``
    and that no other nspawnctl process can have made: named like this process's staging,
    unlike anything nspawnctl puts there, or like an image without its record (which an import
    writes before the image appears). A checked stream makes none (StreamCheck); this is the
    second line of defence."""
    removed = []
    for name in sorted(set(os.listdir(directory)) - before - {keep}):
        path = directory / name
        if path.is_symlink() or not btrfs.is_subvolume(path):
            continue
        if (
            name.startswith(f".tmp-{os.getpid()}-")
            or not _STORE_NAME.fullmatch(name)
            or (not name.startswith(".") and not (directory / f"{name}.json").exists())
        ):
            btrfs.delete(path)
            removed.append(name)
    return removed


def _run(
    argv: list[str],
    what: str,
    *,
    feed: Iterable[bytes] | None = None,
    out: IO[bytes] | None = None,
    error: type[NspawnctlError] = CommandFailed,
) -> None:
    """Run ``argv`` with ``feed`` written to its stdin and its stdout on ``out``; its stderr
    goes into the ``error`` raised on failure. An exception from ``feed`` kills it."""
    if shutil.which(argv[0]) is None:
        raise CommandFailed(f"{argv[0]} is not installed", hint="install tar and btrfs-progs")
    if out is not None:
        out.flush()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if feed is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL if out is None else out.fileno(),
            stderr=err,
        )
        fed = feed is None
        try:
            if proc.stdin is not None and feed is not None:
                with contextlib.suppress(BrokenPipeError):  # it stopped reading: its status says why
                    for chunk in feed:
                        proc.stdin.write(chunk)
                    fed = True
        except BaseException:
            proc.kill()  # before stdin is closed: an end of input could look like a complete stream
            proc.wait()
            raise
        finally:
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        rc = proc.wait()
        if rc != 0 or not fed:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            status = f"exit status {rc}" if rc else "it stopped reading its input"
            raise error(f"{what} failed: {text or status}")


# -- commit --------------------------------------------------------------------------------------


def commit(
    images: ImageStore,
    containers: ContainerStore,
    name: str,
    ref: ImageRef | None,
    message: str | None = None,
    configure: Callable[[RunDefaults], RunDefaults] | None = None,
    extra_origin: dict[str, str] | None = None,
) -> Image:
    """Snapshot container ``name`` (running or not) into a new read-only image that runs what
    the container ran: its entrypoint, command, environment, working directory and user
    (``configure`` changes those before the image appears)."""
    name = containers.resolve(name)
    spec = containers.get(name)
    root = containers.root(name)
    if not btrfs.is_subvolume(root):
        raise NotFound(f"container {name} has no root subvolume {root}")
    staging = images.staging_path()
    with images.pool.lock():
        btrfs.snapshot(root, staging, read_only=True)
    try:
        origin: dict[str, Any] = {"container": name, "container_id": spec.id, "parent": spec.image_id}
        if message:
            origin["comment"] = message
        origin.update(extra_origin or {})
        defaults = commit_defaults(images, spec)
        image_id = "sha256:" + hashlib.sha256(secrets.token_bytes(32) + spec.id.encode()).hexdigest()
        return images.add_subvolume(
            staging,
            image_id,
            ref,
            f"commit of container {name}",
            configure(defaults) if configure is not None else defaults,
            origin,
            tree_size(staging),
        )
    except BaseException:
        btrfs.delete(staging)
        raise


def commit_defaults(images: ImageStore, spec: ContainerSpec) -> RunDefaults:
    """The container's own run settings, plus what its image declared and a container has not
    (ports, volumes, labels)."""
    try:
        base = images.get(spec.image_id).defaults
    except ImageNotFound:
        base = RunDefaults()
    return RunDefaults(
        command=list(spec.cmd),
        env=[e for e in spec.env if "=" in e],  # a bare KEY unset the variable: nothing to keep
        workdir=spec.workdir,
        user=spec.user,
        boot=spec.boot,
        ports=list(base.ports),
        volumes=list(base.volumes),
        entrypoint=list(spec.entrypoint),
        labels=dict(base.labels),
        stop_signal=spec.stop_signal,
    )


# -- export --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What ``export`` reads: a read-only subvolume, and the image it is (None for a container)."""

    path: Path
    label: str
    image: Image | None
    made_from: str | None = None  # the image ID a container or a commit was made from


@contextlib.contextmanager
def export_source(images: ImageStore, containers: ContainerStore, what: str) -> Iterator[Source]:
    """An image's subvolume (an OCI image's top layer), or a temporary read-only snapshot of a
    container (a container of that name wins over an image), deleted afterwards."""
    spec = None
    with contextlib.suppress(InvalidArgument, ContainerNotFound):
        what = containers.resolve(what)  # text that is no container name is left for the images
        spec = containers.get(what)
    if spec is None:
        try:
            img = images.get(what)
        except ImageNotFound:
            raise ImageNotFound(
                f"no such image or container: {what}", hint="see 'nspawnctl images' and 'nspawnctl ps -a'"
            ) from None
        parent = img.origin.get("parent")
        yield Source(img.path, what, img, parent if isinstance(parent, str) else None)
        return
    staging = images.staging_path()
    with images.pool.lock():
        btrfs.snapshot(containers.root(what), staging, read_only=True)
    try:
        yield Source(staging, f"container {what}", None, spec.image_id)
    finally:
        btrfs.delete(staging)


def export_tar(root: Path, out: IO[bytes]) -> None:
    """A faithful tar of ``root``: numeric owners, modes, xattrs (ACLs included), hard links,
    device nodes, sparse files; what ``import`` reads back into the same tree."""
    argv = [
        "tar",
        "--create",
        "--file=-",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sparse",
        "--sort=name",
        "--directory",
        str(root),
        ".",
    ]
    _run(argv, "tar", out=out)


def export_send(path: Path, parent: Path | None, out: IO[bytes]) -> None:
    argv = ["btrfs", "send", "-q"]
    if parent is not None:
        argv += ["-p", str(parent)]
    _run([*argv, str(path)], "btrfs send", out=out)


def check_parent(images: ImageStore, child: Source, parent: Image) -> Path:
    """The subvolume to give ``btrfs send -p``: the parent image's, if it is read-only, on the
    same filesystem, and an ancestor of ``child`` (its snapshot chain or its commit records)."""
    util = _btrfsutil()
    path = parent.path
    if not btrfs.is_subvolume(path) or not util.get_subvolume_read_only(str(path)):
        raise InvalidArgument(f"parent image {parent.short_id} is not a read-only btrfs subvolume")
    from .pool import mount_of

    if mount_of(path).device != mount_of(child.path).device:
        raise InvalidArgument(f"parent image {parent.short_id} is on another filesystem than {child.label}")
    parent_uuid = util.subvolume_info(str(path)).uuid
    if parent_uuid == util.subvolume_info(str(child.path)).uuid:
        raise InvalidArgument(
            f"{child.label} cannot be its own parent", hint="name the image it was made from"
        )
    if parent_uuid in _snapshot_chain(child.path) or parent.id in _recorded_ancestors(images, child):
        return path
    raise InvalidArgument(
        f"image {parent.short_id} is not an ancestor of {child.label}: an incremental stream is "
        "the difference to an image it was made from",
        hint="give --parent the image the container or commit was made from, or export in full",
    )


def _snapshot_chain(path: Path) -> set[bytes]:
    """UUIDs of the subvolumes ``path`` was snapshotted from, transitively (while they exist)."""
    util = _btrfsutil()
    by_uuid = {info.uuid: info for info in _subvolumes(path)}
    chain: set[bytes] = set()
    current = util.subvolume_info(str(path)).parent_uuid
    while current != _ZERO_UUID and current not in chain:
        chain.add(current)
        info = by_uuid.get(current)
        if info is None:
            break
        current = info.parent_uuid
    return chain


def _recorded_ancestors(images: ImageStore, child: Source) -> set[str]:
    """Image IDs a commit chain records (origin "parent"), from ``child`` upwards."""
    found: set[str] = set()
    parent_id = child.made_from
    while parent_id is not None and parent_id not in found:
        found.add(parent_id)
        try:
            parent = images.get(parent_id).origin.get("parent")
        except (ImageNotFound, InvalidArgument):
            break
        parent_id = parent if isinstance(parent, str) else None
    return found
