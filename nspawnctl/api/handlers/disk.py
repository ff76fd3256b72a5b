"""``/system/df``, ``/images/prune`` and ``/build/prune``: the library's disk usage and image
prune in docker's shapes (``docker system df``, ``docker image prune``, ``docker system prune``)."""

from __future__ import annotations

import asyncio
import time

from ...ref import familiar
from ..context import Exchange
from ..render import container_summary, image_summary
from ..resources import filter_words, parse_filters, volume_json
from ..routing import Router


async def df(ex: Exchange) -> None:
    """A container's own bytes are not known without btrfs quotas (diskusage.py): SizeRw 0."""
    from ...store.files import tree_size

    client = ex.client
    specs = await asyncio.to_thread(client.containers.store.list)
    statuses = await client.containers.astatuses(ex.bus, specs) if specs else []
    images = await asyncio.to_thread(client.images.list)
    volumes = await asyncio.to_thread(client.volumes.list)
    now = time.time()
    image_rows = []
    for image in images:
        row = image_summary(image)
        row["Containers"] = sum(1 for s in specs if s.image_id == image.id)
        image_rows.append(row)
    volume_rows = []
    for info in volumes:
        row = volume_json(info)
        row["UsageData"] = {
            "Size": await asyncio.to_thread(tree_size, info.mountpoint),
            "RefCount": len(info.users),
        }
        volume_rows.append(row)
    await ex.json(
        {
            "LayersSize": sum(i.size for i in images),
            "Images": image_rows,
            "Containers": [{**container_summary(s, now), "SizeRw": 0, "SizeRootFs": 0} for s in statuses],
            "Volumes": volume_rows,
            "BuildCache": [],
        }
    )


async def prune_images(ex: Exchange) -> None:
    """``dangling=false``: every image no container was made from (``image prune -a``);
    ``until``, ``label`` and ``label!`` narrow what goes, as the CLI's ``--filter``."""
    from ...imagefilters import PRUNE_KEYS, parse_image_filters, prune_dangling

    filters = parse_filters(ex.request.arg("filters"), ("dangling", *PRUNE_KEYS))
    all_images = prune_dangling(filters.pop("dangling", []))
    only = parse_image_filters(filter_words(filters), PRUNE_KEYS)
    result = await asyncio.to_thread(ex.client.images.prune, all_images, True, only)
    deleted = [{"Untagged": familiar(r)} for r in result.untagged] + [{"Deleted": i} for i in result.images]
    await ex.json({"ImagesDeleted": deleted or None, "SpaceReclaimed": result.reclaimed})


BUILD_PRUNE_FILTERS = (
    "until", "id", "parent", "type", "description", "inuse", "shared", "private", "label", "label!",
)  # fmt: skip
"""dockerd's build cache filters, and the labels ``docker system prune --filter`` passes on."""


async def prune_build_cache(ex: Exchange) -> None:
    """nspawnctl's builder keeps no build cache (``system df`` shows none; a build's steps are
    images, which ``image prune`` takes): nothing to remove. ``docker system prune`` asks for it
    after the other prunes; an unknown filter is still a 400."""
    parse_filters(ex.request.arg("filters"), BUILD_PRUNE_FILTERS)
    await ex.json({"CachesDeleted": None, "SpaceReclaimed": 0})


def register(router: Router) -> None:
    router.add("GET", "/system/df", df)
    router.add("POST", "/build/prune", prune_build_cache)
    router.add("POST", "/images/prune", prune_images)
