"""OCI layers: each one a read-only btrfs snapshot of its parent with the layer's diff applied.

Layout under the store::

    layers/<hex>         read-only subvolume: the whole filesystem up to this layer, whose chain
                         ID (image-spec config.md) is "sha256:<hex>"
    layers/<hex>.json    the layer record (diff ID, parent chain ID, blob digest, size, created)
    layers/.tmp-<pid>-*  staging subvolumes of layers being applied

Keying by chain ID makes a layer reusable by every image with the same layers below it, and since
each layer is a complete filesystem an image needs only its top layer (images/<hex> links to it);
the layers under it are kept for the next pull that can reuse them. A layer is staged, verified
against its diff ID, made read-only and renamed into place in one step, like images.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import (
    ArchiveError,
    FetchError,
    InvalidArgument,
    NotFound,
    PoolError,
    UnsafeArchive,
    VerificationFailed,
)
from . import btrfs
from .files import sweep, write_json
from .pool import Pool

if TYPE_CHECKING:
    from .unpack import Limits

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
# image-spec descriptor.md digest grammar: algorithm ":" encoded
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@dataclass(frozen=True)
class Layer:
    chain_id: str  # "sha256:<hex>"
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    parent: str | None  # parent chain ID
    blob: str  # digest of the compressed blob it came from
    size: int  # uncompressed tar bytes of this layer's diff
    created: str
    path: Path  # <store>/layers/<hex of chain id>, read-only subvolume


def chain_of(parent: str | None, diff_id: str) -> str:
    """The chain ID of a layer with this diff ID on top of chain ``parent`` (image-spec config.md)."""
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


class LayerStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.dir = pool.paths.layers

    # -- queries ---------------------------------------------------------------------------
    def get(self, chain_id: str) -> Layer | None:
        """The layer with this chain ID, or None if it is not (completely) here.

        A damaged record raises PoolError naming the file: it is neither a layer to use nor
        one a pull may silently replace."""
        hexdigest = _hex(chain_id, "chain ID")
        try:
            return self._load(hexdigest)
        except _Damaged as e:
            raise PoolError(
                f"the record of layer {chain_id} ({self.dir / f'{hexdigest}.json'}) is damaged: {e}",
                hint=f"delete {self.dir / hexdigest}.json and the subvolume {self.dir / hexdigest}, "
                "then pull again",
            ) from None

    def list_one(self, chain_id: str) -> Layer | None:
        """``get`` for a listing: a damaged record is no layer rather than an error."""
        try:
            return self._load(_hex(chain_id, "chain ID"))
        except _Damaged:
            return None

    def list(self) -> builtins.list[Layer]:
        """The layers here; damaged records are skipped (they are not layers)."""
        layers = []
        for meta in self.dir.glob("*.json"):
            if _SHA256.fullmatch(f"sha256:{meta.stem}"):
                try:
                    layer = self._load(meta.stem)
                except _Damaged:
                    continue
                if layer is not None:
                    layers.append(layer)
        return sorted(layers, key=lambda layer: (layer.created, layer.chain_id))

    def _load(self, hexdigest: str) -> Layer | None:
        path = self.dir / hexdigest
        try:
            data = json.loads((self.dir / f"{hexdigest}.json").read_text())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as e:
            raise _Damaged(f"not JSON ({e})") from None
        if not path.is_dir() or path.is_symlink():
            return None
        try:
            layer = Layer(
                chain_id=f"sha256:{hexdigest}",
                diff_id=data["diff_id"],
                parent=data.get("parent"),
                blob=data.get("blob", ""),
                size=data.get("size", 0),
                created=data.get("created", ""),
                path=path,
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise _Damaged(f"missing or invalid field {e}") from None
        if not (
            isinstance(layer.diff_id, str)
            and isinstance(layer.parent, str | None)
            and isinstance(layer.blob, str)
            and isinstance(layer.size, int)
            and isinstance(layer.created, str)
        ):
            raise _Damaged("a field has the wrong type")
        return layer

    # -- changes ---------------------------------------------------------------------------
    def apply(
        self,
        parent: Layer | None,
        chain_id: str,
        diff_id: str,
        blob: str,
        stream: IO[bytes],
        limits: Limits | None = None,
    ) -> Layer:
        """Apply the (compressed) layer tar ``stream`` onto a snapshot of ``parent`` and keep it
        as layer ``chain_id``, once its uncompressed digest has proven to be ``diff_id``.

        Nothing is visible before that check passes: a mismatch raises VerificationFailed and
        deletes the staging snapshot. A layer already here (or one a racing pull finishes first)
        is returned as it is; then ``stream`` may be left unread. ``limits`` caps what the layer
        may unpack to (default: unpack.Limits()).
        """
        from .unpack import Limits, unpack_tar

        _hex(diff_id, "diff ID")
        if not _DIGEST.fullmatch(blob):
            raise InvalidArgument(f"invalid blob digest {blob!r}")
        expected = chain_of(parent.chain_id if parent else None, diff_id)
        if chain_id != expected:
            raise InvalidArgument(
                f"chain ID {chain_id} does not follow from diff ID {diff_id} "
                f"on {parent.chain_id if parent else 'no parent'} (expected {expected})"
            )
        self.pool.check()
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self._sweep()
        existing = self.get(chain_id)
        if existing is not None:
            return existing
        if parent is not None and self.get(parent.chain_id) is None:
            raise NotFound(
                f"layer {parent.chain_id} was removed while this one was being pulled", hint="pull again"
            )
        staging = self.dir / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        if parent is None:
            btrfs.create_subvolume(staging)
        else:
            btrfs.snapshot(parent.path, staging)
        try:
            try:
                result = unpack_tar(
                    stream, staging, layout="layer", limits=limits or Limits(), label=f"layer {blob}"
                )
            except UnsafeArchive:
                raise
            except ArchiveError as e:
                raise _blame(e, blob, stream) from e
            _drain(stream)
            if result.digest != diff_id:
                raise VerificationFailed(
                    f"layer blob {blob} does not match its diff ID: the config says {diff_id}, "
                    f"its content is {result.digest}",
                    hint="the image is corrupt or was tampered with; nothing of the layer was kept",
                )
            btrfs.set_read_only(staging)
            hexdigest = _hex(chain_id, "chain ID")
            with self.pool.lock():
                existing = self.get(chain_id)
                if existing is not None:
                    return existing
                final = self.dir / hexdigest
                btrfs.delete(final)  # a subvolume whose record is gone (a removal cut short)
                record = {
                    "chain_id": chain_id,
                    "diff_id": diff_id,
                    "parent": parent.chain_id if parent else None,
                    "blob": blob,
                    "size": result.size,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "pid": os.getpid(),  # prune spares the layer while this pull may still need it
                }
                write_json(self.dir / f"{hexdigest}.json", record)
                os.rename(staging, final)
        finally:
            btrfs.delete(staging)
        layer = self.get(chain_id)
        assert layer is not None
        return layer

    def remove(self, chain_id: str) -> None:
        """Delete a layer (a missing one is fine). Images made from it are the caller's concern;
        layers above it are complete snapshots and do not need it."""
        with self.pool.lock():
            self.delete_locked(chain_id)

    def prune(self, keep: Callable[[], set[str]], only: set[str] | None = None) -> builtins.list[Layer]:
        """Delete every layer (of those in ``only``, when given) whose chain ID is not in
        ``keep()``, except those of pulls still running; returns what was deleted.

        ``keep`` is called under the pool lock, so an image recorded just before cannot lose its
        layers; it must not take that lock itself (flock is not re-entrant):
        ``ImageStore.used_layers`` does not.
        """
        with self.pool.lock():
            self.sweep_locked()
            kept = keep()
            gone = [
                layer
                for layer in self.list()
                if (only is None or layer.chain_id in only)
                and layer.chain_id not in kept
                and not self._pull_running(layer.chain_id)
            ]
            for layer in gone:
                self.delete_locked(layer.chain_id)
        return gone

    def made_by_this_process(self, chain_id: str) -> bool:
        """True if this process applied the layer (its record carries our pid): a failed pull
        rolls back only those, not a layer a racing pull made that ``apply`` returned to it."""
        return self._record_pid(chain_id) == os.getpid()

    def _record_pid(self, chain_id: str) -> int | None:
        try:
            record = json.loads((self.dir / f"{_hex(chain_id, 'chain ID')}.json").read_text())
        except (OSError, ValueError):
            return None
        pid = record.get("pid") if isinstance(record, dict) else None
        return pid if isinstance(pid, int) else None

    def _pull_running(self, chain_id: str) -> bool:
        """True while the pull that made the layer may still be going (its image is not recorded
        yet): pruning it then would break that pull."""
        pid = self._record_pid(chain_id)
        return pid is not None and pid != os.getpid() and Path(f"/proc/{pid}").exists()

    def delete_locked(self, chain_id: str) -> None:
        """``remove`` for a caller that holds the pool lock already (flock is not re-entrant).

        The subvolume goes first: a kill before the record goes leaves a record without its
        subvolume, which is no layer (``get`` and ``list`` skip it) and which
        :meth:`sweep_locked` deletes; the other order left a subvolume nothing listed."""
        hexdigest = _hex(chain_id, "chain ID")
        btrfs.delete(self.dir / hexdigest)
        (self.dir / f"{hexdigest}.json").unlink(missing_ok=True)

    def sweep_locked(self) -> None:
        """What killed pulls and removals left: besides :meth:`_sweep`'s staging, records whose
        subvolume is gone and subvolumes whose record is gone. Only under the pool lock, where
        ``apply`` is never between writing a record and renaming its subvolume into place."""
        self._sweep()
        if not self.dir.is_dir():
            return
        images = self.pool.paths.images
        linked = (
            {os.readlink(p).rpartition("/")[2] for p in images.iterdir() if p.is_symlink()}
            if images.is_dir()
            else set()
        )
        for entry in self.dir.iterdir():
            stem = entry.name.removesuffix(".json")
            if not _SHA256.fullmatch(f"sha256:{stem}"):
                continue
            record, root = self.dir / f"{stem}.json", self.dir / stem
            if entry == record and not (root.is_dir() and not root.is_symlink()):
                record.unlink(missing_ok=True)
            elif entry == root and not os.path.lexists(record) and stem not in linked:
                if root.is_dir() and not root.is_symlink():
                    btrfs.delete(root)
                else:
                    root.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Delete staging subvolumes and temporary records whose process is gone (crash, kill -9)."""
        sweep(self.dir)


def _hex(digest: str, what: str) -> str:
    """The hex part of a sha256 digest, checked before it can become part of a path."""
    if not _SHA256.fullmatch(digest):
        raise InvalidArgument(f"invalid layer {what} {digest!r}", hint="expected sha256:<64 hex digits>")
    return digest.removeprefix("sha256:")


class _Damaged(Exception):
    """A layer record that cannot be read (internal: get reports it, list skips it)."""


__all__ = ["Layer", "LayerStore", "chain_of"]


_TRAILING_MAX = 1 << 20
_CORRUPT_DRAIN_MAX = 16 << 30
"""How much of a blob that failed to decompress is still read so a verifying stream can check its
digest (a registry stream stops at the descriptor's size anyway)."""


def _blame(error: ArchiveError, blob: str, stream: IO[bytes]) -> ArchiveError:
    """A blob that fails to decompress is most often corrupt: read it to its end so a stream that
    checks its digest at EOF raises VerificationFailed (the real cause); if it verifies, or
    cannot be read that far, the archive error names the blob."""
    left = _CORRUPT_DRAIN_MAX
    try:
        while left > 0 and (chunk := stream.read(min(1 << 20, left))):
            left -= len(chunk)
    except (ArchiveError, FetchError, OSError):
        pass
    if blob in str(error):  # the extractor named it already (a decompression bomb)
        return ArchiveError(str(error), hint=error.hint)
    return ArchiveError(f"layer blob {blob}: {error}", hint=error.hint)


def _drain(stream: IO[bytes]) -> None:
    """Read the blob to its end (a decompressor may stop before padding), so that a stream which
    checks its digest at EOF does so before anything is kept; a long tail is refused."""
    left = _TRAILING_MAX
    while chunk := stream.read(min(1 << 16, left + 1)):
        left -= len(chunk)
        if left < 0:
            raise ArchiveError(
                f"the layer blob goes on after the end of its compressed data "
                f"(more than {_TRAILING_MAX} bytes)",
                hint="the image is damaged or not what it claims to be",
            )
