"""docker save / docker load archives: ``manifest.json`` naming each image's config and layer tars.

``save`` writes each image as one layer (a tar of its root, as ``export`` makes it) under a
config carrying its run defaults, so any docker-compatible ``load`` takes it. ``load`` reads such
an archive (also the ``manifest.json`` docker 25+ writes beside its OCI layout) from a file,
through the bounded tar reader (an upload is a stranger's: counts and header sizes capped, at
most oci.MAX_LAYERS layers an image), and applies its layers by the pull's own code
(``LayerStore.apply``: each layer checked against the config's diff ID, unpacked by the safe
extractor, nothing visible before it is whole), then records the image under its config's
digest, as a pull does.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError, InvalidReference, NspawnctlError
from ..ref import ImageRef, familiar, looks_like_id
from .images import Image, ImageStore
from .tarread import Member, TarReader

MAX_JSON = 8 << 20
"""Bytes a manifest.json or image config in an archive may have."""
MAX_MEMBERS = 8192
"""Members of an archive to load: docker's writes a few per layer (at most oci.MAX_LAYERS each
image) and per image."""
MAX_IMAGES = 64
"""Images in one archive to load."""
SPACE_RESERVE = 256 << 20
"""Bytes of the pool's free space a decompressed archive leaves to the containers."""
SPACE_CHECK_EVERY = 64 << 20
CHUNK = 1 << 20


class Room:
    """The pool's free space, asked as a scratch file grows (at most every SPACE_CHECK_EVERY
    bytes): ``take`` says whether ``n`` more bytes still leave ``reserve`` bytes to the containers."""

    def __init__(self, directory: Path, reserve: int = SPACE_RESERVE) -> None:
        self.directory, self.reserve = directory, reserve
        self.written = self.allowed = 0

    def take(self, n: int) -> bool:
        self.written += n
        if self.written > self.allowed:
            free = shutil.disk_usage(self.directory).free
            self.allowed = self.written + min(SPACE_CHECK_EVERY, free - self.reserve)
        return self.written <= self.allowed


@dataclass(frozen=True)
class Loaded:
    """What a load made: the image and the names it was given (none: say its ID)."""

    image: Image
    tags: builtins.list[str]


def image_config(image: Image, diff_id: str, architecture: str) -> dict[str, Any]:
    """The docker image config of ``image`` as one layer ``diff_id``: its run defaults as
    ``config`` (what ``load`` and docker turn back into them)."""
    d = image.defaults
    config: dict[str, Any] = {
        "Cmd": d.command or None,
        "Entrypoint": d.entrypoint or None,
        "Env": d.env or None,
        "WorkingDir": d.workdir or "",
        "User": d.user or "",
        "ExposedPorts": {p.rsplit(":", 1)[-1]: {} for p in d.ports} or None,
        "Volumes": {v: {} for v in d.volumes} or None,
        "Labels": dict(d.labels) or None,
    }
    if d.stop_signal:
        config["StopSignal"] = d.stop_signal
    if d.healthcheck:
        config["Healthcheck"] = d.healthcheck
    return {
        "architecture": architecture,
        "os": "linux",
        "created": image.created,
        "config": {k: v for k, v in config.items() if v is not None},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": image.created, "created_by": f"nspawnctl save ({image.source})"}],
    }


def _add(out: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(datetime.now(UTC).timestamp())
    info.mode = 0o644
    if path is not None:
        info.size = path.stat().st_size
        with open(path, "rb") as f:
            out.addfile(info, f)
    else:
        assert data is not None
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))


def save(
    images: ImageStore,
    names: builtins.list[str],
    out: IO[bytes],
    architecture: str,
    write_root: Callable[[Path, IO[bytes]], None],
    gone: Callable[[], bool] = lambda: False,
) -> None:
    """Write the images ``names`` (references or IDs) as one docker-archive tar to ``out``.
    ``write_root`` writes an image root's tar (``transfer.export_tar``). A name that is a
    reference becomes the image's RepoTag there; an ID gives none, as docker's. Each root is
    spooled on the pool first (a tar member's size comes before its data) within the pool's free
    space less SPACE_RESERVE; ``gone()`` true (the reader hung up) stops the spooling."""
    chosen: dict[str, tuple[Image, builtins.list[str]]] = {}
    for name in names:
        image = images.get(name)  # ImageNotFound before anything is written
        tags = chosen.setdefault(image.id, (image, []))[1]
        if not looks_like_id(name):
            tag = familiar(str(ImageRef.parse(name)))
            if tag not in tags:
                tags.append(tag)
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for image, tags in chosen.values():
            with images.spool() as layer:
                diff_hex = _spool_root(write_root, image.path, layer, gone)
                config = json.dumps(image_config(image, f"sha256:{diff_hex}", architecture)).encode()
                config_hex = hashlib.sha256(config).hexdigest()
                _add(tar, f"{config_hex}.json", config)
                _add(tar, f"{diff_hex}/VERSION", b"1.0")
                _add(tar, f"{diff_hex}/layer.tar", path=layer)
            manifest.append(
                {
                    "Config": f"{config_hex}.json",
                    "RepoTags": tags or None,
                    "Layers": [f"{diff_hex}/layer.tar"],
                }
            )
            for tag in tags:
                repo, _, version = tag.rpartition(":")
                repositories.setdefault(repo, {})[version] = diff_hex
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        if repositories:
            _add(tar, "repositories", json.dumps(repositories).encode())


def _spool_root(
    write_root: Callable[[Path, IO[bytes]], None], root: Path, dest: Path, gone: Callable[[], bool]
) -> str:
    """The tar of ``root`` into the new file ``dest``, through a pipe so every chunk is counted
    against the pool's free space before it lands (the tar's writer is a process writing to a
    file descriptor); its SHA-256 in hex. Stopping early closes the pipe: the writer ends."""
    import threading

    r, w = os.pipe()
    failed: builtins.list[BaseException] = []

    def produce() -> None:
        try:
            with open(w, "wb") as out:
                write_root(root, out)
        except BaseException as e:
            failed.append(e)

    worker = threading.Thread(target=produce, name="save-root", daemon=True)
    worker.start()
    room = Room(dest.parent)
    digest = hashlib.sha256()
    try:
        with open(r, "rb", buffering=0) as src, open(dest, "xb") as f:
            while chunk := src.read(CHUNK):
                if gone():
                    raise ArchiveError("save stopped: the reader went away")
                if not room.take(len(chunk)):
                    raise ArchiveError(
                        f"cannot save {root.name}: its tar would leave less than "
                        f"{SPACE_RESERVE >> 20} MiB free on the image pool",
                        hint="free space on the pool, or save fewer images at once",
                    )
                digest.update(chunk)
                f.write(chunk)
    finally:
        worker.join()  # the read end is closed: a writer still at work gets EPIPE and ends
    if failed:
        raise failed[0]
    return digest.hexdigest()


class _Archive:
    """The outer archive of a load, an uncompressed tar file: its regular files by name, found
    by one pass of the bounded reader (store/tarread.py: tarfile would hold every header, and
    an extended header of any size, in memory), read by offset. Nothing of it is extracted."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.files: dict[str, tuple[int, int]] = {}
        reader = TarReader(f.read)
        count = 0
        while (m := _next(reader, count)) is not None:
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError(
                    f"the archive has more than {MAX_MEMBERS} members (docker's save: a few a layer)"
                )
            if m.type in (b"0", b"\0") and m.sparse is None:
                self.files[m.name.removeprefix("./")] = (m.offset_data, m.stored)
            else:  # a later member of that name wins
                self.files.pop(m.name.removeprefix("./").rstrip("/"), None)

    def member(self, name: str, what: str) -> IO[bytes]:
        """A regular file of the archive by name (a link or anything else is refused)."""
        if not isinstance(name, str) or not name:
            raise ArchiveError(f"the archive's manifest names {what} {name!r}, which is not a file name")
        where = self.files.get(name.removeprefix("./"))
        if where is None:
            raise ArchiveError(f"the archive has no regular file {name!r} as its manifest's {what}")
        return io.BufferedReader(_Slice(self.f, *where), CHUNK)

    def member_bytes(self, name: str, what: str) -> bytes:
        data = self.member(name, what).read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise ArchiveError(f"{what} {name!r} in the archive is larger than {MAX_JSON} bytes")
        return data


def _next(reader: TarReader, count: int) -> Member | None:
    try:
        return reader.next()
    except ArchiveError as e:
        if count:
            raise
        raise ArchiveError(
            f"not a tar archive: {e}", hint="load takes the tar 'docker save' writes (or it compressed)"
        ) from None


class _Slice(io.RawIOBase):
    """``size`` bytes of ``f`` from ``offset``, read with pread (slices of one file stay apart)."""

    def __init__(self, f: IO[bytes], offset: int, size: int) -> None:
        super().__init__()
        self.fd, self.pos, self.left = f.fileno(), offset, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.left)
        data = os.pread(self.fd, n, self.pos) if n else b""
        if n and not data:
            raise ArchiveError("the archive is cut short")
        buf[: len(data)] = data
        self.pos += len(data)
        self.left -= len(data)
        return len(data)


def _entries(archive: _Archive) -> builtins.list[dict[str, Any]]:
    try:
        manifest = json.loads(archive.member_bytes("manifest.json", "manifest"))
    except ArchiveError as e:
        if "no regular file 'manifest.json'" in str(e):
            raise ArchiveError(
                "not a docker save archive: it has no manifest.json",
                hint="load takes what 'docker save' writes; a root filesystem tar is for import",
            ) from None
        raise
    except ValueError as e:
        raise ArchiveError(f"the archive's manifest.json is not JSON: {e}") from None
    if not isinstance(manifest, list) or not manifest or not all(isinstance(m, dict) for m in manifest):
        raise ArchiveError("the archive's manifest.json is not a list of images")
    if len(manifest) > MAX_IMAGES:
        raise ArchiveError(f"the archive's manifest.json lists more than {MAX_IMAGES} images")
    return manifest


def load(
    images: ImageStore, path: Path, notify: Callable[[str], None] = lambda _: None
) -> builtins.list[Loaded]:
    """Load every image of the docker-archive tar (possibly compressed: then decompressed to a
    scratch file on the pool first, within its free space) at ``path``. Each image appears
    whole or not at all; layers made for one that fails are removed again."""
    with _plain(images, path) as plain, open(plain, "rb") as f:
        archive = _Archive(f)
        return [_load_one(images, archive, entry, notify) for entry in _entries(archive)]


@contextlib.contextmanager
def _plain(images: ImageStore, path: Path) -> Iterator[Path]:
    from .unpack import open_decompressed

    with open(path, "rb") as raw:
        compressed = raw.read(6)[:2] in (b"\x1f\x8b", b"\xfd7", b"\x28\xb5", b"BZ")
    if not compressed:
        yield path
        return
    with images.spool() as out:
        with open(path, "rb") as raw, open_decompressed(raw) as stream:
            _copy(stream, out, "the archive, decompressed, is larger than the image pool's free space")
        yield out


def _copy(stream: IO[bytes], out: Path, too_big: str) -> None:
    room = Room(out.parent)
    with open(out, "xb") as w:
        while chunk := stream.read(CHUNK):
            if not room.take(len(chunk)):
                raise ArchiveError(too_big, hint="free space on the image pool")
            w.write(chunk)


@contextlib.contextmanager
def spooled(images: ImageStore, stream: IO[bytes]) -> Iterator[Path]:
    """``stream`` (a pipe: load reads its archive by offset) in a scratch file on the pool,
    within its free space less SPACE_RESERVE; the file is gone afterwards."""
    with images.spool() as out:
        _copy(stream, out, "the archive is larger than the image pool's free space")
        yield out


def _load_one(
    images: ImageStore, archive: _Archive, entry: dict[str, Any], notify: Callable[[str], None]
) -> Loaded:
    from ..client import tag_ref
    from ..formats import oci
    from .layers import LayerStore
    from .unpack import Limits

    layers = LayerStore(images.pool)
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ArchiveError("the archive's manifest has RepoTags that are not a list of names")
    try:
        refs = [tag_ref(t) for t in tags]
    except InvalidReference as e:
        raise ArchiveError(f"the archive's manifest names an image badly: {e}") from None
    config_bytes = archive.member_bytes(entry.get("Config", ""), "image config")
    config = oci.parse_config(config_bytes)
    paths = entry.get("Layers")
    if isinstance(paths, list) and len(paths) > oci.MAX_LAYERS:
        raise ArchiveError(f"the archive's image has {len(paths)} layers, more than {oci.MAX_LAYERS}")
    if not isinstance(paths, list) or len(paths) != len(config.diff_ids) or not paths:
        raise ArchiveError(
            f"the archive's manifest lists {len(paths) if isinstance(paths, list) else 'no'} "
            f"layers but the image config {len(config.diff_ids)} diff IDs"
        )
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    chains = oci.chain_ids(config.diff_ids)
    created: builtins.list[str] = []
    try:
        parent = None
        size = 0
        for i, (name, diff_id, chain) in enumerate(zip(paths, config.diff_ids, chains, strict=True), 1):
            layer = layers.get(chain)
            if layer is None:
                notify(f"Loading layer {i}/{len(paths)} {diff_id.split(':')[1][:12]}")
                layer = layers.apply(parent, chain, diff_id, diff_id, archive.member(name, "layer"), Limits())
                if layers.made_by_this_process(chain):
                    created.append(chain)
            parent = layer
            size += layer.size
        assert parent is not None
        image = images.import_layers(
            parent,
            image_id=image_id,
            ref=refs,  # every tag in one write: all of them or none (with a new image removed)
            source="docker-archive",
            defaults=oci.run_defaults(config),
            origin={"loaded": datetime.now(UTC).isoformat(timespec="seconds")},
            layers=chains,
            size=size,
        )
    except BaseException:
        try:
            layers.prune(images.used_layers, only=set(created))
        except (NspawnctlError, OSError):
            pass  # 'image prune' removes them
        raise
    return Loaded(image, [str(r) for r in refs])
