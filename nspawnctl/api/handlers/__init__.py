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
    areas = (system, images, containers, execs, archive, lifecycle, events, networks, volumes, disk)
    for module in (*areas, imagetransfer, build, changes):  # the order routes are tried in
        module.register(router)
    return router
