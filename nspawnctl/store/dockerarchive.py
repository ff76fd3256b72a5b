"""docker save / docker load archives: ``manifest.json`` naming each image's config and layer tars.

``save`` writes each image as one layer (a tar of its root, as ``export`` makes it) under a
config carrying its run defaults, so any docker-compatible ``load`` takes it. ``load`` reads such
an archive (also the ``manifest.json`` docker 25+ writes beside its OCI layout) from a seekable
file and applies its layers by the pull's own code (``LayerStore.apply``: each layer checked
against the config's diff ID, unpacked by the safe extractor, nothing visible before it is whole),
then records the image under its config's digest, as a pull does.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import lzma
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError, InvalidReference, NspawnctlError
from ..ref import ImageRef, looks_like_id
from .images import Image, ImageStore

MAX_JSON = 8 << 20
"""Bytes a manifest.json or image config in an archive may have."""
CHUNK = 1 << 20


@dataclass(frozen=True)
class Loaded:
    """What a load made: the image and the names it was given (none: say its ID)."""

    image: Image
    tags: builtins.list[str]


def familiar(ref: str) -> str:
    """docker's short form of a Docker Hub name, as docker writes RepoTags."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


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
) -> None:
    """Write the images ``names`` (references or IDs) as one docker-archive tar to ``out``.
    ``write_root`` writes an image root's tar (``transfer.export_tar``). A name that is a
    reference becomes the image's RepoTag there; an ID gives none, as docker's."""
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
                with open(layer, "wb") as f:
                    write_root(image.path, f)
                diff_hex = _file_sha256(layer)
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


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _member_bytes(tar: tarfile.TarFile, name: str, what: str) -> bytes:
    f = _member(tar, name, what)
    data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise ArchiveError(f"{what} {name!r} in the archive is larger than {MAX_JSON} bytes")
    return data


def _member(tar: tarfile.TarFile, name: str, what: str) -> IO[bytes]:
    """A regular file of the archive by name (never a link, never anything outside it: names
    are only looked up, nothing of the outer archive is extracted)."""
    if not isinstance(name, str) or not name:
        raise ArchiveError(f"the archive's manifest names {what} {name!r}, which is not a file name")
    try:
        info = tar.getmember(name)
    except KeyError:
        raise ArchiveError(f"the archive has no {what} {name!r} its manifest names") from None
    if not info.isfile():
        raise ArchiveError(f"{what} {name!r} in the archive is not a regular file")
    f = tar.extractfile(info)
    assert f is not None
    return f


def _entries(tar: tarfile.TarFile) -> builtins.list[dict[str, Any]]:
    try:
        manifest = json.loads(_member_bytes(tar, "manifest.json", "manifest"))
    except ArchiveError as e:
        if "no manifest" in str(e):
            raise ArchiveError(
                "not a docker save archive: it has no manifest.json",
                hint="load takes what 'docker save' writes; a root filesystem tar is for import",
            ) from None
        raise
    except ValueError as e:
        raise ArchiveError(f"the archive's manifest.json is not JSON: {e}") from None
    if not isinstance(manifest, list) or not manifest or not all(isinstance(m, dict) for m in manifest):
        raise ArchiveError("the archive's manifest.json is not a list of images")
    return manifest


def load(
    images: ImageStore, path: Path, notify: Callable[[str], None] = lambda _: None
) -> builtins.list[Loaded]:
    """Load every image of the docker-archive tar (possibly compressed) at ``path``. Each image
    appears whole or not at all; layers made for one that fails are removed again."""
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"not a tar archive: {e}") from None
    try:
        with tar:
            return _load_all(images, tar, notify)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ArchiveError(f"the archive is damaged or cut short: {e}") from None


def _load_all(
    images: ImageStore, tar: tarfile.TarFile, notify: Callable[[str], None]
) -> builtins.list[Loaded]:
    return [_load_one(images, tar, entry, notify) for entry in _entries(tar)]


def _load_one(
    images: ImageStore, tar: tarfile.TarFile, entry: dict[str, Any], notify: Callable[[str], None]
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
    config_bytes = _member_bytes(tar, entry.get("Config", ""), "image config")
    config = oci.parse_config(config_bytes)
    paths = entry.get("Layers")
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
                layer = layers.apply(parent, chain, diff_id, diff_id, _member(tar, name, "layer"), Limits())
                if layers.made_by_this_process(chain):
                    created.append(chain)
            parent = layer
            size += layer.size
        assert parent is not None
        image = images.import_layers(
            parent,
            image_id=image_id,
            ref=refs[0] if refs else None,
            source="docker-archive",
            defaults=oci.run_defaults(config),
            origin={"loaded": datetime.now(UTC).isoformat(timespec="seconds")},
            layers=chains,
            size=size,
        )
        for ref in refs[1:]:
            image = images.tag(image.id, ref)
    except BaseException:
        try:
            layers.prune(images.used_layers, only=set(created))
        except (NspawnctlError, OSError):
            pass  # 'image prune' removes them
        raise
    return Loaded(image, [str(r) for r in refs])
