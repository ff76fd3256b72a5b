"""Images: read-only btrfs subvolumes named by the digest of their content, plus human references.

Layout under the store::

    images/<hex>        read-only subvolume, the image's root filesystem (ID "sha256:<hex>");
                        for an OCI image (ID: its config's digest) a symlink to
                        ../layers/<hex of its top layer's chain ID> (see layers.py)
    images/sha512-<hex> the same for an App Container Image, whose ID the appc spec defines as
                        "sha512-<hex>" of its uncompressed tar
    images/<dir>.json   the image record (created, size, source, run defaults, origin)
    images/.tmp-<pid>-* staging subvolumes and download spools of imports under way
    refs.json           {"name:tag": "<image ID>"}

An import fills a staging subvolume, marks it read-only and renames it into place in one step, so
no reader ever sees half an image; staging left by a dead process is swept by the next import.
Pulls pass a ``verify`` hook that runs after extraction and before that step: an image that fails
verification is never visible. An OCI image's record names its layers; removing the image deletes
those of them no other image uses.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import ArchiveError, ImageInUse, ImageNotFound, InvalidArgument, InvalidReference, NotFound
from ..ref import ImageRef, looks_like_id, normalize_short
from ..spec import RunDefaults
from . import btrfs
from .files import sweep, write_json
from .pool import Pool

if TYPE_CHECKING:
    from .layers import Layer
    from .unpack import Limits, UnpackResult


@dataclass(frozen=True)
class Image:
    """An image's record: its ID, names, run defaults and where its root subvolume is."""

    id: str  # "sha256:<hex>", or "sha512-<hex>" for an ACI
    created: str
    size: int
    source: str
    refs: builtins.list[str] = field(default_factory=list)
    defaults: RunDefaults = field(default_factory=RunDefaults)
    path: Path = Path()
    origin: dict[str, Any] = field(default_factory=dict)  # url, etag, download digest, verification
    layers: builtins.list[str] = field(default_factory=list)  # OCI chain IDs, base first; else empty

    @property
    def short_id(self) -> str:
        if self.id.startswith("sha512-"):
            return self.id[:19]
        return self.id.split(":", 1)[1][:12]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


BUILD_RECORDS = "builds"
"""Under the state directory: ``BUILD.json`` per running build (builder/steps.py): its owner
(``PID:START``), its RUN containers, and the images it pins (``pins``: its FROM and ``COPY
--from`` images, which ``rmi`` and ``prune`` must not delete while it runs)."""


def build_pins(state: Path) -> dict[str, str]:
    """Image ID -> the build (its record's name) pinning it, of the builds whose process is alive;
    a killed build's pins die with it (its PID and start time no longer match)."""
    from .files import owner_alive

    out: dict[str, str] = {}
    directory = state / BUILD_RECORDS
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            owner, pins = data["owner"], data.get("pins", [])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        if isinstance(owner, str) and isinstance(pins, list) and owner_alive(owner):
            out.update((p, path.stem) for p in pins if isinstance(p, str))
    return out


class ImageStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.dir = pool.paths.images
        self.refs_file = pool.paths.store / "refs.json"

    # -- references ------------------------------------------------------------------------
    def _refs(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.refs_file.read_text()))
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        write_json(self.refs_file, dict(sorted(refs.items())))

    # -- queries ---------------------------------------------------------------------------
    def list(self) -> builtins.list[Image]:
        refs = self._refs()
        by_image: dict[str, builtins.list[str]] = {}  # each image's refs: one pass, not one per image
        for r, i in refs.items():
            by_image.setdefault(i, []).append(r)
        images = []
        for meta in sorted(self.dir.glob("*.json")):
            img = self._load(meta.stem, refs, by_image)
            if img is not None:
                images.append(img)
        return sorted(images, key=lambda i: i.created, reverse=True)

    def get(self, text: str) -> Image:
        """Resolve a reference (``name[:tag]``), a full ID or a unique ID prefix."""
        return self._resolve(text)[0]

    def _resolve(self, text: str) -> tuple[Image, str | None]:
        """``get``, plus the reference that matched (None when ``text`` matched as an ID): what
        ``rmi`` untags, since "alpine" may have found docker.io/library/alpine:latest."""
        refs = self._refs()
        try:
            ref = str(ImageRef.parse(text))
        except InvalidReference:
            ref = None
        # "alpine" also finds what a registry pull of "alpine" stored (docker.io/library/alpine:latest)
        pulled = normalize_short(text) if ref is not None and not looks_like_id(text) else None
        for candidate in (ref, pulled):
            if candidate is not None and candidate in refs:
                img = self._load(_dirname_of(refs[candidate]), refs)
                if img is not None:
                    return img, candidate
        if looks_like_id(text):
            if text.startswith("sha512-"):
                patterns = [f"{text}*.json"]
            elif text.startswith("sha256:"):
                patterns = [f"{text.removeprefix('sha256:')}*.json"]
            else:
                patterns = [f"{text}*.json", f"sha512-{text}*.json"]
            matches = sorted({m.stem for p in patterns for m in self.dir.glob(p)})
            if len(matches) == 1:
                img = self._load(matches[0], refs)
                if img is not None:
                    return img, None
            elif len(matches) > 1:
                raise InvalidReference(f"image ID prefix {text!r} is ambiguous", hint="give more characters")
        if ref is None and not looks_like_id(text):
            ImageRef.parse(text)  # raises the helpful message
        raise ImageNotFound(
            f"no such image: {text}", hint="see 'nspawnctl images', or bring one in with 'nspawnctl import'"
        )

    def _load(
        self, dirname: str, refs: dict[str, str], by_image: dict[str, builtins.list[str]] | None = None
    ) -> Image | None:
        try:
            data = json.loads((self.dir / f"{dirname}.json").read_text())
        except FileNotFoundError:
            return None
        path = self._root_of(dirname)
        if path is None or not path.is_dir():
            return None
        image_id = _id_of(dirname)
        if by_image is not None:
            own_refs = by_image.get(image_id, [])
        else:
            own_refs = [r for r, i in refs.items() if i == image_id]
        return Image(
            id=image_id,
            created=data["created"],
            size=data["size"],
            source=data.get("source", ""),
            refs=sorted(own_refs),
            defaults=RunDefaults(**data.get("defaults", {})),
            path=path,
            origin=data.get("origin", {}),
            layers=list(data.get("layers", [])),
        )

    def _root_of(self, dirname: str) -> Path | None:
        """The subvolume holding an image's files: its own, or its top layer's (never a symlink
        that leads anywhere else)."""
        path = self.dir / dirname
        if not path.is_symlink():
            return path
        parent, _, top = os.readlink(path).rpartition("/")
        if parent != "../layers" or not _HEX64.fullmatch(top):
            return None
        return self.pool.paths.layers / top

    def find(self, **origin: str) -> Image | None:
        """The newest image whose origin has all these values (a download digest, a URL and ETag)."""
        for img in self.list():
            if all(img.origin.get(k) == v for k, v in origin.items()):
                return img
        return None

    # -- changes ---------------------------------------------------------------------------
    def import_archive(
        self,
        stream: IO[bytes],
        ref: ImageRef | Callable[[], ImageRef] | None,
        source: str,
        defaults: RunDefaults | None = None,
        *,
        layout: str = "rootfs",
        verify: Callable[[UnpackResult], RunDefaults | None] | None = None,
        origin: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> Image:
        """Unpack a (compressed) tar stream into a new image; an existing identical image is reused.

        ``layout="aci"`` takes an App Container Image (``manifest`` + ``rootfs/``), whose ID is the
        sha512 of its tar. ``verify`` sees the result before anything becomes visible: raising there
        discards the whole import; returning RunDefaults replaces ``defaults``. ``ref`` may be a
        function called after ``verify`` (for names found in the content), so the image appears
        with its name in one step. Identical content already here gets the new origin and defaults.
        ``limits`` caps what the archive may unpack to (default: unpack.Limits()).
        """
        from .unpack import Limits, unpack_tar

        self.pool.check()
        self._sweep()
        staging = self.dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
        btrfs.create_subvolume(staging)
        try:
            algorithm = "sha512" if layout == "aci" else "sha256"
            result = unpack_tar(
                stream,
                staging,
                algorithm=algorithm,
                layout=layout,
                limits=limits or Limits(),
                label="the archive on stdin" if source == "-" else source,
            )
            if verify is not None:
                defaults = verify(result) or defaults
            image_id = _image_id(result.digest)
            with self.pool.lock():
                final = self.dir / _dirname_of(image_id)
                if not final.is_dir():
                    btrfs.set_read_only(staging)
                    record = {
                        "created": _now(),
                        "size": result.size,
                        "source": source,
                        "defaults": asdict(defaults or RunDefaults()),
                        "origin": origin or {},
                    }
                    write_json(self.dir / f"{final.name}.json", record)
                    os.rename(staging, final)
                else:
                    self._update(final.name, origin, defaults)
                if callable(ref):
                    ref = ref()
                if ref is not None:
                    refs = self._refs()
                    refs[str(ref)] = image_id
                    self._write_refs(refs)
        finally:
            btrfs.delete(staging)
        return self.get(image_id)

    def import_layers(
        self,
        top: Layer,
        image_id: str,
        ref: ImageRef | Sequence[ImageRef] | None,
        source: str,
        defaults: RunDefaults,
        origin: dict[str, Any],
        layers: builtins.list[str],
        size: int,
    ) -> Image:
        """Make an OCI image of applied layers: ``images/<hex>`` links to the top layer, whose
        subvolume containers then snapshot. ``image_id`` is the config's digest and ``layers``
        the chain IDs, base first. An image with this ID already here gets the new origin and
        defaults (unless that would let an unverified origin replace a verified one) and the ref.
        Several refs (a load's RepoTags) are written at once: all of them or, with a new image
        removed again, none.
        """
        if not _OCI_ID.fullmatch(image_id):
            raise InvalidArgument(f"invalid image ID {image_id!r}", hint="expected sha256:<64 hex digits>")
        if not layers or layers[-1] != top.chain_id:
            raise InvalidArgument(
                f"the layers of image {image_id} do not end with its top layer {top.chain_id}"
            )
        from .layers import LayerStore

        self.pool.check()
        self._sweep()
        dirname = _dirname_of(image_id)
        made = False
        with self.pool.lock():
            if self._load(dirname, {}) is not None:
                self._update(dirname, origin, defaults)
            else:
                made = True
                if LayerStore(self.pool).get(top.chain_id) is None:
                    raise NotFound(
                        f"layer {top.chain_id} was removed while image {image_id} was being pulled",
                        hint="pull again",
                    )
                link = self.dir / dirname
                if link.is_symlink():
                    link.unlink()  # its layer is gone (see above): a leftover
                record = {
                    "created": _now(),
                    "size": size,
                    "source": source,
                    "defaults": asdict(defaults),
                    "origin": origin,
                    "layers": layers,
                }
                # link first, record second: a crash between leaves a link without a record,
                # which is no image and pins nothing (the next import of this ID replaces it)
                staging = self.dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
                os.symlink(f"../layers/{top.path.name}", staging)
                os.rename(staging, link)
                write_json(self.dir / f"{dirname}.json", record)
            names = [] if ref is None else [ref] if isinstance(ref, ImageRef) else list(ref)
            if names:
                refs = self._refs()
                refs.update((str(r), image_id) for r in names)
                try:
                    self._write_refs(refs)
                except BaseException:
                    if made:  # record first, link second: never a record without its link
                        with contextlib.suppress(FileNotFoundError):
                            (self.dir / f"{dirname}.json").unlink()
                        with contextlib.suppress(FileNotFoundError):
                            (self.dir / dirname).unlink()
                    raise
        return self.get(image_id)

    def staging_path(self, suffix: str = "") -> Path:
        """A fresh staging name in the image directory (swept when its process is gone)."""
        self.pool.check()
        self._sweep()
        return self.dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}{suffix}"

    def add_subvolume(
        self,
        staging: Path,
        image_id: str,
        ref: ImageRef | None,
        source: str,
        defaults: RunDefaults,
        origin: dict[str, Any],
        size: int,
    ) -> Image:
        """Make the read-only subvolume ``staging`` (a commit's snapshot, a received btrfs stream)
        the image ``image_id`` in one rename, and tag it ``ref``. Content already stored under
        that ID wins: ``staging`` is then deleted and only the tag is added. The caller deletes
        ``staging`` if this raises."""
        if not _OCI_ID.fullmatch(image_id):
            raise InvalidArgument(f"invalid image ID {image_id!r}", hint="expected sha256:<64 hex digits>")
        with self.pool.lock():
            final = self.dir / _dirname_of(image_id)
            if self._load(final.name, {}) is None:
                if final.is_symlink():  # a root without a record is a leftover, never an image
                    final.unlink()
                elif os.path.lexists(final):
                    btrfs.delete(final)
                record = {
                    "created": _now(),
                    "size": size,
                    "source": source,
                    "defaults": asdict(defaults),
                    "origin": origin,
                }
                write_json(self.dir / f"{final.name}.json", record)
                try:
                    os.rename(staging, final)
                except BaseException:
                    (self.dir / f"{final.name}.json").unlink(missing_ok=True)
                    raise
            else:
                btrfs.delete(staging)
            if ref is not None:
                refs = self._refs()
                refs[str(ref)] = image_id
                self._write_refs(refs)
        return self.get(image_id)

    def used_layers(self) -> set[str]:
        """Chain IDs of every layer some image needs (what a layer prune must keep)."""
        return {chain for layers in self._layer_lists().values() for chain in layers}

    def shared_size(self, image: Image) -> int:
        """Bytes of ``image``'s layers that another image uses too (``images``' SHARED SIZE)."""
        return self.shared_sizes([image])[image.id]

    def shared_sizes(self, images: builtins.list[Image]) -> dict[str, int]:
        """:meth:`shared_size` of each image (by ID), reading the records once for all: a listing
        calling ``shared_size`` per image read every record once per image."""
        from .layers import LayerStore

        lists = self._layer_lists()
        users: dict[str, int] = {}  # chain ID -> how many image records name it
        for layers in lists.values():
            for chain in set(layers):
                users[chain] = users.get(chain, 0) + 1
        store = LayerStore(self.pool)
        sizes: dict[str, int] = {}
        out = {}
        for image in images:
            own = set(lists.get(image.id, []))
            total = 0
            for chain in set(image.layers):
                if users.get(chain, 0) - (chain in own) > 0:  # another image's record names it too
                    if chain not in sizes:
                        layer = store.list_one(chain)
                        sizes[chain] = layer.size if layer is not None else 0
                    total += sizes[chain]
            out[image.id] = total
        return out

    def _layer_lists(self) -> dict[str, builtins.list[str]]:
        """Image ID -> its layers, straight from the records (also of images not loadable now)."""
        lists = {}
        for meta in self.dir.glob("*.json"):
            try:
                layers = json.loads(meta.read_text()).get("layers", [])
            except (FileNotFoundError, ValueError):
                continue
            if layers:
                lists[_id_of(meta.stem)] = list(layers)
        return lists

    def annotate(self, image_id: str, origin: dict[str, Any] | None, defaults: RunDefaults | None) -> None:
        """Record a newer verified origin and run defaults for content that is already here."""
        with self.pool.lock():
            self._update(_dirname_of(image_id), origin, defaults)

    def _update(self, dirname: str, origin: dict[str, Any] | None, defaults: RunDefaults | None) -> None:
        meta = self.dir / f"{dirname}.json"
        record = json.loads(meta.read_text())
        was_verified = record.get("origin", {}).get("verified", UNVERIFIED) != UNVERIFIED
        if origin and origin.get("verified", UNVERIFIED) == UNVERIFIED and was_verified:
            return  # an unverified pull never replaces what a verified one recorded (defaults included)
        if origin:
            record["origin"] = origin
        if defaults is not None:
            record["defaults"] = asdict(defaults)
        write_json(meta, record)

    @contextlib.contextmanager
    def spool(self) -> Iterator[Path]:
        """A scratch file on the pool's filesystem (never tmpfs: it may be as large as the image)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}.download"
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def import_directory(
        self, directory: Path, ref: ImageRef | None, defaults: RunDefaults | None = None
    ) -> Image:
        """Import a directory tree by streaming it through tar, so it gets the same checks and ID."""
        if not directory.is_dir():
            raise ArchiveError(f"{directory} is not a directory")
        import tempfile  # with its import of random: not on every command's path

        argv = directory_tar_argv(directory)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            try:
                image = self.import_archive(proc.stdout, ref, source=str(directory), defaults=defaults)
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc not in (0,):
                err.seek(0)
                raise ArchiveError(
                    f"cannot read directory {directory}: {err.read().decode(errors='replace').strip()}"
                )
        return image

    def tag(self, source: str, ref: ImageRef) -> Image:
        with self.pool.lock():
            img = self.get(source)
            refs = self._refs()
            refs[str(ref)] = img.id
            self._write_refs(refs)
        return self.get(img.id)

    def remove(
        self, text: str, force: bool, users: Callable[[str], builtins.list[str]]
    ) -> tuple[builtins.list[str], bool]:
        """Untag ``text``; delete the image once no reference is left. Returns (untagged, deleted).

        ``users(image_id)`` names the containers made from the image: while there are any, removal is
        refused unless ``force`` (containers are independent snapshots, so they keep working).
        """
        with self.pool.lock():
            img, matched = self._resolve(text)
            refs = self._refs()
            # a reference removes that name only; an ID (or ID prefix) removes every name
            untag = [matched] if matched is not None else list(img.refs)
            remaining = [r for r in img.refs if r not in untag]
            delete = not remaining
            pinned = build_pins(self.pool.paths.state).get(img.id) if delete else None
            if pinned is not None:  # as docker's for an image a running container uses: even -f
                raise ImageInUse(
                    f"conflict: unable to delete {img.short_id} (cannot be forced) - "
                    f"image is being used by running build {pinned}",
                    hint="wait for the build to end (or stop it), then remove the image",
                )
            if delete and not force:
                in_use = users(img.id)
                if in_use:
                    raise ImageInUse(
                        f"image {text} is in use by container(s) {', '.join(sorted(in_use))}",
                        hint="remove those containers first, or use --force "
                        "(they keep running from their snapshots)",
                    )
            for r in untag:
                refs.pop(r, None)
            self._write_refs(refs)
            if delete:
                self._delete_locked(img)
        return untag, delete

    def prune(
        self,
        users: Callable[[str], builtins.list[str]],
        *,
        all_images: bool = False,
        only: Callable[[Image], bool] | None = None,
    ) -> builtins.list[Image]:
        """Delete the dangling images (no name: untagged, or their name went to another image
        by an import, pull or tag) that no container was made from, as docker's ``image prune``
        does; with ``all_images`` every image no container was made from; of those, only the
        ones ``only`` takes (``image prune --filter``). Returns them as they were (with the
        names they had).

        Decided under the pool lock, so an image named meanwhile is never taken for dangling.
        A running build's intermediate images (origin ``build_step`` naming a live process) are
        kept: they are untagged and unused between its steps, but its next step needs them; so
        are the images a running build pins (its FROM and ``COPY --from`` images, :func:`build_pins`).
        """
        from .files import owner_alive

        gone = []
        with self.pool.lock():
            self.sweep_locked()
            refs = self._refs()
            pinned = build_pins(self.pool.paths.state)
            for img in self.list():
                if (img.refs and not all_images) or users(img.id) or img.id in pinned:
                    continue
                if only is not None and not only(img):
                    continue
                mark = img.origin.get("build_step")
                if isinstance(mark, str) and owner_alive(mark):
                    continue
                for r in img.refs:
                    refs.pop(r, None)
                self._write_refs(refs)
                self._delete_locked(img)
                gone.append(img)
        return gone

    def _delete_locked(self, img: Image) -> None:
        """Delete an image's record and root, and its layers no other image uses (the caller
        holds the lock and has removed its names)."""
        dirname = _dirname_of(img.id)
        os.unlink(self.dir / f"{dirname}.json")
        link = self.dir / dirname
        if link.is_symlink():
            link.unlink()
            self._drop_layers([*img.layers, f"sha256:{img.path.name}"])
        else:
            btrfs.delete(img.path)

    def _drop_layers(self, chains: builtins.list[str]) -> None:
        """Delete those of ``chains`` that no image needs any more (the caller holds the lock)."""
        from .layers import LayerStore

        store = LayerStore(self.pool)
        used = self.used_layers()
        for chain in dict.fromkeys(reversed(chains)):
            if chain not in used:
                store.delete_locked(chain)

    def _sweep(self) -> None:
        """:meth:`sweep_locked` under the pool lock."""
        with self.pool.lock():
            self.sweep_locked()

    def sweep_locked(self) -> None:
        """Delete what dead imports, pulls, commits and removals left: staging subvolumes, spools
        and temporary records (of processes that are gone), and (under the lock, where no import
        is half done) records whose root is gone, which no command would list or remove but whose
        layers ``used_layers`` would pin forever, and roots whose record is gone (an ``rmi`` cut
        short), which no command would list either."""
        sweep(self.dir)
        sweep(self.refs_file.parent, staging=False)
        if not self.dir.is_dir():
            return
        for meta in self.dir.glob("*.json"):
            root = self._root_of(meta.stem)
            if root is None or not root.is_dir():
                meta.unlink(missing_ok=True)
                if (self.dir / meta.stem).is_symlink():
                    (self.dir / meta.stem).unlink()
        for entry in self.dir.iterdir():
            if _STORE_DIRNAME.fullmatch(entry.name) and not os.path.lexists(self.dir / f"{entry.name}.json"):
                if entry.is_symlink() or not entry.is_dir():
                    entry.unlink(missing_ok=True)
                else:
                    btrfs.delete(entry)


def directory_tar_argv(directory: Path) -> builtins.list[str]:
    """GNU tar writing ``directory`` as a stream that depends on its content only, since the
    image ID is the stream's digest: names (sorted, not in directory order), kinds, modes, numeric
    owners, mtimes, xattrs, data and link targets.

    With ``--xattrs`` tar writes pax headers, which by default also carry atime and ctime: tar's
    own first read of a fresh file moves its atime (relatime), so the same directory imported
    twice gave two IDs. Those records are left out, and the pax header names fixed (older tars
    put the PID in them).
    """
    return [
        "tar",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sort=name",
        "-C",
        str(directory),
        "-cf",
        "-",
        ".",
    ]


_HEX64 = re.compile(r"[0-9a-f]{64}")
_STORE_DIRNAME = re.compile(r"[0-9a-f]{64}|sha512-[0-9a-f]{128}")
_OCI_ID = re.compile(r"sha256:[0-9a-f]{64}")

UNVERIFIED = "not verified"
"""The ``verified`` of an origin that no checksum or signature vouched for."""


def _image_id(digest: str) -> str:
    """An unpack digest ("algo:hex") as an image ID: appc writes sha512 IDs as "sha512-<hex>"."""
    algo, _, hexdigest = digest.partition(":")
    return f"sha512-{hexdigest}" if algo == "sha512" else digest


def _id_of(dirname: str) -> str:
    return dirname if dirname.startswith("sha512-") else f"sha256:{dirname}"


def _dirname_of(image_id: str) -> str:
    return image_id if image_id.startswith("sha512-") else image_id.split(":", 1)[1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = ["Image", "ImageStore", "RunDefaults"]
