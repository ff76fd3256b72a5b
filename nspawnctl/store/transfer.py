"""Images in and out as whole filesystems: ``commit``, ``export`` (tar or btrfs send) and the
import of btrfs send streams.

A commit is a read-only btrfs snapshot of the container's subvolume: atomic, so a running
container is caught in one consistent state. A btrfs send stream is received into a private
directory on the store's filesystem and only then renamed into the image directory, so a failed
or interrupted receive never leaves an image behind; an image received from a stream is named by
the stream's SHA-256, so receiving the same stream twice stores it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import struct
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError, CommandFailed, ContainerNotFound, ImageNotFound, InvalidArgument, NotFound
from ..ref import ImageRef
from ..spec import ContainerSpec, RunDefaults
from . import btrfs
from .containers import ContainerStore
from .images import Image, ImageStore

SEND_MAGIC = b"btrfs-stream\0"
_HEADER = struct.Struct("<13sI")  # magic, version
_CMD = struct.Struct("<IHI")  # payload length, command, crc32c
_TLV = struct.Struct("<HH")  # attribute type, length
# btrfs send.h: the commands and attributes a stream begins with
_C_SUBVOL, _C_SNAPSHOT = 1, 2
_A_UUID, _A_CTRANSID, _A_PATH, _A_CLONE_UUID, _A_CLONE_CTRANSID = 1, 2, 15, 20, 21
_MAX_FIRST_CMD = 1 << 16
_ZERO_UUID = bytes(16)
_FS_TREE = 5
_CHUNK = 1 << 20


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
    head = _read_exactly(stream, _HEADER.size + _CMD.size)
    if len(head) < _HEADER.size + _CMD.size:
        raise ArchiveError("the btrfs send stream is truncated")
    length = _CMD.unpack_from(head, _HEADER.size)[0]
    if length > _MAX_FIRST_CMD:
        raise ArchiveError("invalid btrfs send stream: its first command is too long")
    head += _read_exactly(stream, length)
    return head, parse_stream_header(head)


def parse_stream_header(data: bytes) -> StreamHeader:
    if len(data) < _HEADER.size + _CMD.size or not is_send_stream(data):
        raise ArchiveError("not a btrfs send stream (no btrfs-stream header)")
    _, version = _HEADER.unpack_from(data)
    length, cmd, _crc = _CMD.unpack_from(data, _HEADER.size)
    start = _HEADER.size + _CMD.size
    payload = data[start : start + length]
    if len(payload) < length:
        raise ArchiveError("the btrfs send stream is truncated")
    if cmd not in (_C_SUBVOL, _C_SNAPSHOT):
        raise ArchiveError(f"invalid btrfs send stream: it starts with command {cmd}, not a subvolume")
    attrs: dict[int, bytes] = {}
    pos = 0
    while pos + _TLV.size <= len(payload):
        kind, size = _TLV.unpack_from(payload, pos)
        pos += _TLV.size
        attrs[kind] = payload[pos : pos + size]
        pos += size
    raw_uuid = attrs.get(_A_UUID, b"")
    if len(raw_uuid) != 16 or _A_PATH not in attrs:
        raise ArchiveError("invalid btrfs send stream: its first command names no subvolume")
    parent = parent_ctransid = None
    if cmd == _C_SNAPSHOT:
        clone = attrs.get(_A_CLONE_UUID, b"")
        if len(clone) != 16:
            raise ArchiveError("invalid btrfs send stream: an incremental stream without a parent UUID")
        parent = str(uuidlib.UUID(bytes=clone))
        if len(attrs.get(_A_CLONE_CTRANSID, b"")) == 8:
            parent_ctransid = struct.unpack("<Q", attrs[_A_CLONE_CTRANSID])[0]
    return StreamHeader(
        version=version,
        uuid=str(uuidlib.UUID(bytes=raw_uuid)),
        path=attrs[_A_PATH].decode("utf-8", "replace"),
        parent_uuid=parent,
        parent_ctransid=parent_ctransid,
    )


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
    length, cmd, _crc = _CMD.unpack_from(head, _HEADER.size)
    payload = head[start : start + length]
    out = b""
    pos = 0
    while pos + _TLV.size <= len(payload):
        kind, size = _TLV.unpack_from(payload, pos)
        data = payload[pos + _TLV.size : pos + _TLV.size + size]
        if kind == _A_PATH:
            data = name.encode()
        out += _TLV.pack(kind, len(data)) + data
        pos += _TLV.size + size
    zeroed = _CMD.pack(len(out), cmd, 0) + out
    return head[: _HEADER.size] + _CMD.pack(len(out), cmd, crc32c(zeroed)) + out


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
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


def find_subvolume(path: Path, wanted: str) -> bool:
    """Whether a subvolume with this UUID, or received from one with it, is on ``path``'s
    filesystem (what ``btrfs receive`` looks for as an incremental stream's parent)."""
    raw = uuidlib.UUID(wanted).bytes
    return any(raw in (info.uuid, info.received_uuid) for info in _subvolumes(path))


def receive(images: ImageStore, stream: IO[bytes], ref: ImageRef | None, source: str) -> Image:
    """Receive a btrfs send stream (full, or incremental with its parent here) as an image."""
    head, header = read_stream_header(stream)
    images.pool.check()
    if header.parent_uuid is not None and not find_subvolume(images.dir, header.parent_uuid):
        raise NotFound(
            f"this incremental btrfs stream needs its parent subvolume {header.parent_uuid}, "
            "which is not on this host",
            hint="import the full stream of the parent image first "
            "('nspawnctl export --format btrfs-send PARENT' where it came from)",
        )
    staging = images.staging_path()
    try:
        digest = _run_receive(staging.parent, head, rename_stream(head, staging.name), stream)
        if not btrfs.is_subvolume(staging):
            raise ArchiveError("the btrfs send stream did not make the subvolume its header names")
        if not _btrfsutil().get_subvolume_read_only(str(staging)):
            raise ArchiveError("the btrfs send stream was not received completely")
        origin: dict[str, Any] = {"format": "btrfs-send", "sent_uuid": header.uuid, "sent_name": header.path}
        if header.parent_uuid:
            origin["sent_parent_uuid"] = header.parent_uuid
        return images.add_subvolume(
            staging, f"sha256:{digest}", ref, source, RunDefaults(), origin, tree_size(staging)
        )
    finally:
        btrfs.delete(staging)


def _run_receive(dest: Path, head: bytes, renamed: bytes, stream: IO[bytes]) -> str:
    """Feed ``renamed`` and the rest of ``stream`` to btrfs receive; the SHA-256 of the stream
    as it was sent (``head`` and the rest)."""
    if shutil.which("btrfs") is None:
        raise CommandFailed("btrfs is not installed", hint="install btrfs-progs")
    h = hashlib.sha256()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            # --chroot: whatever paths an untrusted stream names, it cannot write outside dest
            ["btrfs", "receive", "-q", "-e", "--chroot", str(dest)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        assert proc.stdin is not None
        try:
            h.update(head)
            proc.stdin.write(renamed)
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            raise ArchiveError(f"btrfs receive failed: {text or f'exit status {rc}'}")
    return h.hexdigest()


def tree_size(path: Path) -> int:
    """Apparent size of the regular files below ``path`` (what ``images`` shows as SIZE)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                if not os.path.islink(os.path.join(dirpath, f)):
                    total += st.st_size
    return total


# -- commit --------------------------------------------------------------------------------------


def commit(
    images: ImageStore,
    containers: ContainerStore,
    name: str,
    ref: ImageRef | None,
    message: str | None = None,
) -> Image:
    """Snapshot container ``name`` (running or not) into a new read-only image that runs what
    the container ran: its entrypoint, command, environment, working directory and user."""
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
        image_id = "sha256:" + hashlib.sha256(secrets.token_bytes(32) + spec.id.encode()).hexdigest()
        return images.add_subvolume(
            staging,
            image_id,
            ref,
            f"commit of container {name}",
            commit_defaults(images, spec),
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
        env=list(spec.env),
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
    from ..names import check_machine_name

    spec = None
    with contextlib.suppress(InvalidArgument, ContainerNotFound):
        check_machine_name(what)
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
    _run_to(argv, out, "tar")


def export_send(path: Path, parent: Path | None, out: IO[bytes]) -> None:
    argv = ["btrfs", "send", "-q"]
    if parent is not None:
        argv += ["-p", str(parent)]
    _run_to([*argv, str(path)], out, "btrfs send")


def _run_to(argv: list[str], out: IO[bytes], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise CommandFailed(f"{argv[0]} is not installed", hint="install tar and btrfs-progs")
    out.flush()
    with tempfile.TemporaryFile() as err:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out.fileno(), stderr=err).returncode
        if rc != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            raise CommandFailed(f"{what} failed: {text or f'exit status {rc}'}")


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
