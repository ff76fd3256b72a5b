"""Request handlers, one module per area; ``routes`` registers them all."""

from __future__ import annotations

from ..routing import Router


def routes() -> Router:
    from . import (
        archive,
        build,
        changes,
        containers,
        disk,
        events,
        execs,
        images,
        imagetransfer,
        lifecycle,
        networks,
        system,
        volumes,
    )

    router = Router()
    areas = (system, images, imagetransfer, build, containers, changes, execs, archive, lifecycle, events)
    for module in (*areas, networks, volumes, disk):
        module.register(router)
    return router
