"""``system df``: what images, containers and volumes hold on the pool's btrfs, and what a prune would free.

Images are counted as they are stored: an OCI image is its layers (each stored once, however many
images share it), any other image its own read-only root. A container's own changes cannot be told
apart from the extents it shares with its image without btrfs quotas, which nspawnctl does not
turn on (they slow every snapshot deletion): their size is unknown and reported as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .spec import ContainerSpec
from .store.images import Image


@dataclass(frozen=True)
class Usage:
    """One row of docker's ``system df``."""

    kind: str  # "Images" | "Containers" | "Local Volumes"
    total: int
    active: int
    size: int | None  # bytes; None: not known (a container's own changes)
    reclaimable: int | None  # bytes a prune would free; None: not known


def image_usage(
    images: Iterable[Image], layer_sizes: Mapping[str, int], containers: Iterable[ContainerSpec]
) -> Usage:
    """Active images have a container made from them; ``prune -a`` would remove all the others and
    the layers only they use."""
    images = list(images)
    used_ids = {c.image_id for c in containers}
    kept_layers = {chain for img in images if img.id in used_ids for chain in img.layers}
    all_layers = {chain for img in images for chain in img.layers} | set(layer_sizes)

    def own(img: Image) -> int:  # an OCI image's bytes are its layers'
        return 0 if img.layers else img.size

    size = sum(own(i) for i in images) + sum(layer_sizes.get(c, 0) for c in all_layers)
    freed = sum(own(i) for i in images if i.id not in used_ids)
    freed += sum(layer_sizes.get(c, 0) for c in all_layers - kept_layers)
    active = sum(1 for i in images if i.id in used_ids)
    return Usage("Images", len(images), active, size, freed)


def container_usage(states: Iterable[str]) -> Usage:
    states = list(states)
    running = sum(1 for s in states if s in ("running", "restarting"))
    return Usage("Containers", len(states), running, None, None)


def volume_usage(sizes_in_use: Iterable[tuple[int, bool]]) -> Usage:
    """Each volume's bytes (its files' sizes) and whether a container binds it; ``volume prune``
    frees the unbound ones."""
    rows = list(sizes_in_use)
    size = sum(s for s, _ in rows)
    freed = sum(s for s, used in rows if not used)
    return Usage("Local Volumes", len(rows), sum(1 for _, used in rows if used), size, freed)
