"""Request handlers, one module per area; ``routes`` registers them all."""

from __future__ import annotations

from ..routing import Router


def routes() -> Router:
    from . import archive, containers, execs, images, system

    router = Router()
    for module in (system, images, containers, execs, archive):
        module.register(router)
    return router
