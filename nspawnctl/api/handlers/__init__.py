"""Request handlers, one module per area; ``routes`` registers them all."""

from __future__ import annotations

from ..routing import Router


def routes() -> Router:
    from . import (
        archive,
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
    for module in (system, images, containers, execs, archive, lifecycle, events, networks, volumes, disk):
        module.register(router)
    imagetransfer.register(router)
    changes.register(router)
    return router
