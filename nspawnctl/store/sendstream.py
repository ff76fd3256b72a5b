"""The operations of a btrfs send stream (btrfs-progs Documentation/dev/dev-send-stream.rst,
send.h), for ``diff``: read with the reader the import of streams checks them with (transfer.py:
header, first command and its checksum, every command's and attribute's length bounded before it
is read, a repeated attribute refused), plus the path checks an operation's paths need here.
Anything malformed is an :class:`~nspawnctl.errors.ArchiveError` (:class:`StreamError` for ours).
The CRCs of later commands are not checked: the stream comes straight from the local kernel.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from ..errors import ArchiveError
from .transfer import crc32c, parse_attrs, read_command, read_stream_header

MAX_PATH = 4096

# commands (send.h)
SUBVOL, SNAPSHOT = 1, 2
MKFILE, MKDIR, MKNOD, MKFIFO, MKSOCK, SYMLINK = 3, 4, 5, 6, 7, 8
RENAME, LINK, UNLINK, RMDIR = 9, 10, 11, 12
SET_XATTR, REMOVE_XATTR = 13, 14
WRITE, CLONE, TRUNCATE, CHMOD, CHOWN, UTIMES = 15, 16, 17, 18, 19, 20
END, UPDATE_EXTENT = 21, 22
FALLOCATE, SETFLAGS, ENCODED_WRITE, ENABLE_VERITY = 23, 24, 25, 26

# attributes (send.h)
A_MTIME = 10
A_XATTR_NAME = 13
A_PATH, A_PATH_TO, A_PATH_LINK = 15, 16, 17
A_DATA = 19

_CMD = struct.Struct("<IHI")
_TLV = struct.Struct("<HH")
_TIMESPEC = struct.Struct("<qI")
MAGIC = b"btrfs-stream\0"


class StreamError(ArchiveError):
    """The stream is not a well-formed btrfs send stream."""


@dataclass(frozen=True)
class Command:
    cmd: int
    attrs: dict[int, bytes] = field(default_factory=dict)

    def path(self, attr: int = A_PATH, root: bool = False) -> bytes:
        """A path attribute, checked: relative, no empty, ``.`` or ``..`` component, no NUL;
        empty (the subvolume's root: chmod, chown, utimes of ``/``) only where ``root``."""
        raw = self.attrs.get(attr)
        if raw is None:
            raise StreamError(f"command {self.cmd} lacks path attribute {attr}")
        if root and raw == b"":
            return raw
        return check_path(raw)

    def mtime_ns(self) -> int | None:
        raw = self.attrs.get(A_MTIME)
        if raw is None or len(raw) != _TIMESPEC.size:
            return None
        sec, nsec = _TIMESPEC.unpack(raw)
        return sec * 1_000_000_000 + nsec


def check_path(raw: bytes) -> bytes:
    if not raw or len(raw) > MAX_PATH or b"\0" in raw or raw.startswith(b"/"):
        raise StreamError(f"bad path in stream: {raw[:80]!r}")
    if any(c in (b"", b".", b"..") for c in raw.split(b"/")):
        raise StreamError(f"bad path in stream: {raw[:80]!r}")
    return raw


def commands(stream: IO[bytes]) -> Iterator[Command]:
    """The commands of one stream, the first (SUBVOL or SNAPSHOT) included, up to and including
    END; ArchiveError on anything malformed, a stream cut short included."""
    head, header = read_stream_header(stream)
    first = head[len(MAGIC) + 4 :]
    yield Command(
        struct.unpack_from("<H", first, 4)[0], _bytes(parse_attrs(first[_CMD.size :], header.version))
    )
    while True:
        command = read_command(stream)
        if command is None:
            raise StreamError("the btrfs send stream is truncated (it has no end command)")
        _raw, cmd, payload = command
        yield Command(cmd, _bytes(parse_attrs(payload, header.version)))
        if cmd == END:
            return


def _bytes(attrs: dict[int, memoryview]) -> dict[int, bytes]:
    return {k: bytes(v) for k, v in attrs.items()}


def encode(version: int, cmds: list[tuple[int, list[tuple[int, bytes]]]]) -> bytes:
    """A stream made of ``cmds`` (for tests and tools: the inverse of :func:`commands`)."""
    out = [MAGIC, struct.pack("<I", version)]
    for cmd, attrs in cmds:
        payload = b"".join(_TLV.pack(kind, len(value)) + value for kind, value in attrs)
        crc = crc32c(_CMD.pack(len(payload), cmd, 0) + payload)
        out.append(_CMD.pack(len(payload), cmd, crc) + payload)
    return b"".join(out)


def timespec(ns: int) -> bytes:
    return _TIMESPEC.pack(ns // 1_000_000_000, ns % 1_000_000_000)
