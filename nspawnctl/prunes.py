"""What ``image prune`` and ``system prune`` removed: records out of :mod:`nspawnctl.client`, whose
``run`` never builds one (see :mod:`nspawnctl.status`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PruneResult:
    """What ``image prune`` removed and the bytes it freed."""

    images: list[str]  # image IDs removed
    untagged: list[str]  # the names those images had (only with all_images)
    layers: list[str]  # chain IDs of the layers removed
    reclaimed: int  # bytes removed (uncompressed): the images' own roots and the layers


@dataclass(frozen=True)
class SystemPruneResult:
    """What ``system prune`` removed: containers, images and layers, volumes."""

    containers: list[str]  # names of the containers removed
    images: PruneResult
    volumes: list[str] = field(default_factory=list)  # with --volumes: the volumes removed
    volume_bytes: int = 0  # what those held

    @property
    def reclaimed(self) -> int:
        """Bytes of the images, layers and volumes removed (containers' own changes are not
        counted: btrfs cannot tell them apart from what they share with their image without quotas)."""
        return self.images.reclaimed + self.volume_bytes
