"""A reader of btrfs send streams (btrfs-progs Documentation/dev/dev-send-stream.rst, send.h).

A stream is the 13-byte magic ``btrfs-stream\\0``, a little-endian u32 version, then commands:
``u32 len, u16 cmd, u32 crc32c`` and ``len`` bytes of attributes, each ``u16 type, u16 len, value``
(from version 2 the DATA attribute has no length: it runs to the end of its command). Every
length is checked against what is left before anything is read, so a hostile or cut stream ends
in :class:`StreamError`, never in a huge allocation. The CRC is not checked: the stream comes
straight from the local kernel through a pipe (and crc32c is not in the standard library).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

MAGIC = b"btrfs-stream\0"
VERSIONS = (1, 2, 3)
MAX_COMMAND = 1 << 20
"""Largest command accepted: v1 commands are at most 64 KiB; a --no-data stream has no big ones."""
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


class StreamError(ValueError):
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


def _exact(read: Callable[[int], bytes], n: int) -> bytes:
    """``n`` bytes from ``read`` (a file's read: may return fewer), or StreamError at the end."""
    parts = []
    left = n
    while left:
        chunk = read(min(left, 1 << 16))
        if not chunk:
            raise StreamError(f"stream cut short ({n - left} of {n} bytes)")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_header(read: Callable[[int], bytes]) -> int:
    head = _exact(read, len(MAGIC) + 4)
    if head[: len(MAGIC)] != MAGIC:
        raise StreamError("not a btrfs send stream (bad magic)")
    (version,) = struct.unpack("<I", head[len(MAGIC) :])
    if version not in VERSIONS:
        raise StreamError(f"unsupported send stream version {version}")
    return version


def parse_attrs(cmd: int, payload: bytes, version: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload):
        if (
            version >= 2
            and len(payload) - pos >= 2
            and int.from_bytes(payload[pos : pos + 2], "little") == A_DATA
        ):
            attrs[A_DATA] = payload[pos + 2 :]  # v2: the data runs to the end of the command
            break
        if len(payload) - pos < _TLV.size:
            raise StreamError(f"command {cmd}: truncated attribute header")
        kind, length = _TLV.unpack_from(payload, pos)
        pos += _TLV.size
        if length > len(payload) - pos:
            raise StreamError(f"command {cmd}: attribute {kind} of {length} bytes overruns its command")
        attrs[kind] = payload[pos : pos + length]
        pos += length
    return attrs


def commands(read: Callable[[int], bytes]) -> Iterator[Command]:
    """The commands of one stream, up to and including END; StreamError on anything malformed."""
    version = read_header(read)
    while True:
        head = read(_CMD.size)
        if not head:
            raise StreamError("stream ended without an END command")
        if len(head) < _CMD.size:
            head += _exact(read, _CMD.size - len(head))
        length, cmd, _crc = _CMD.unpack(head)
        if length > MAX_COMMAND:
            raise StreamError(f"command {cmd} claims {length} bytes (at most {MAX_COMMAND})")
        payload = _exact(read, length)
        command = Command(cmd, parse_attrs(cmd, payload, version))
        yield command
        if cmd == END:
            return


def encode(version: int, cmds: list[tuple[int, list[tuple[int, bytes]]]]) -> bytes:
    """A stream made of ``cmds`` (for tests and tools: the inverse of :func:`commands`)."""
    out = [MAGIC, struct.pack("<I", version)]
    for cmd, attrs in cmds:
        payload = b"".join(_TLV.pack(kind, len(value)) + value for kind, value in attrs)
        out.append(_CMD.pack(len(payload), cmd, 0) + payload)
    return b"".join(out)


def timespec(ns: int) -> bytes:
    return _TIMESPEC.pack(ns // 1_000_000_000, ns % 1_000_000_000)
