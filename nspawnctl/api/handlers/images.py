"""``/images/...``: list, inspect, pull (``images/create``, streamed progress; its ``fromSrc`` form,
import, is in imagetransfer.py) and remove."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...errors import NspawnctlError
from ...imagefilters import KEYS, parse_image_filters, select
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..render import familiar, image_inspect, image_summary
from ..resources import filter_words, parse_filters
from ..routing import Router
from ..translate import RegistryAuth, registry_auth
from .system import go_arch

if TYPE_CHECKING:
    from ...pull import PullOptions
    from ...store.images import Image

log = logging.getLogger("nspawnctl.api")

PROGRESS_EVERY = 0.2
"""Seconds between two progress lines of one download."""


IMAGE_FILTERS = KEYS
"""docker's ``GET /images/json`` filters (the library's imagefilters.py: the CLI's too)."""


async def list_images(ex: Exchange) -> None:
    words = filter_words(parse_filters(ex.request.arg("filters"), IMAGE_FILTERS))
    filters = parse_image_filters(words)  # a bad value is a 400 before anything is read

    def listed() -> list[Image]:
        return select(ex.client.images.list(), filters, ex.client.images.get)

    await ex.json([image_summary(image) for image in await asyncio.to_thread(listed)])


async def inspect_image(ex: Exchange, name: str) -> None:
    image = await asyncio.to_thread(ex.client.images.get, name)
    await ex.json(image_inspect(image, go_arch()))


async def remove_image(ex: Exchange, name: str) -> None:
    image = await asyncio.to_thread(ex.client.images.get, name)
    untagged, deleted = await asyncio.to_thread(ex.client.images.remove, name, ex.request.flag("force"))
    out: list[dict[str, str]] = [{"Untagged": familiar(r)} for r in untagged]
    if deleted:
        out.append({"Deleted": image.id})
    await ex.json(out)


def pull_source(from_image: str, tag: str | None) -> str:
    """The reference ``images/create`` names: fromImage plus tag (a digest when it is one)."""
    if not tag:
        return from_image
    return (
        f"{from_image}@{tag}"
        if ":" in tag and tag.split(":", 1)[0].startswith("sha")
        else f"{from_image}:{tag}"
    )


def credentials_for(source: str, auth: RegistryAuth) -> tuple[str, str] | None:
    """X-Registry-Auth's credentials when they are for the registry being pulled from (their
    serveraddress names it, or none is given): never sent to another registry."""
    from ...errors import InvalidArgument
    from ...fetch.auth import registry_key
    from ...ref import RegistryRef

    if auth.credentials is None:
        return None
    if not auth.server:
        return auth.credentials
    try:
        registry = RegistryRef.parse(source).registry
    except InvalidArgument:
        return None  # the pull says what is wrong with the name
    return auth.credentials if registry_key(auth.server) == registry_key(registry) else None


def pull_options(ex: Exchange, source: str, **extra: Any) -> PullOptions:
    """The library's pull options for a request about ``source``: the service's own paths, the
    tests' or site CA (``REQUESTS_CA_BUNDLE``), and the request's X-Registry-Auth credentials
    where they are for that registry."""
    from ...pull import PullOptions

    paths = ex.client.paths
    credentials = credentials_for(source, registry_auth(ex.request.headers.get("x-registry-auth")))
    return PullOptions(
        ca_cert=os.environ.get("REQUESTS_CA_BUNDLE"),
        auth_file=paths.auth,
        credentials=credentials,
        policy_file=paths.policy,
        **extra,
    )


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


async def create_image(ex: Exchange) -> None:
    """docker pull: progress as JSON lines; a failure after the head is an in-band error line
    (status 200), as dockerd's, which the CLI turns into exit 1."""
    req = ex.request
    from_image = req.arg("fromImage")
    if req.arg("fromSrc"):
        from .imagetransfer import import_image

        await import_image(ex)
        return
    async for _ in ex.conn.body():  # a pull has no body, but h11 must see its end
        pass
    if not from_image:
        raise ApiError(400, "fromImage is required")
    if req.arg("platform"):
        raise ApiError(400, "platform: not supported through the API yet; use nspawnctl pull --platform")
    source = pull_source(from_image, req.arg("tag"))
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def put(value: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, _line(value))

    @contextlib.contextmanager
    def progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
        short = label.split(":")[-1][:12]
        last = [0.0]

        def update(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY and done != total:
                return
            last[0] = now
            put(
                {
                    "status": "Downloading",
                    "progressDetail": {"current": done, "total": total or 0},
                    "id": short,
                }
            )

        put({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
        yield update
        put({"status": "Download complete", "progressDetail": {}, "id": short})

    options = pull_options(ex, source, progress=progress, notify=lambda text: put({"status": text}))
    put({"status": f"Pulling from {from_image}", "id": req.arg("tag") or "latest"})

    def pull() -> None:
        try:
            result = ex.client.images.pull(source, None, dataclasses.replace(options))
            put({"status": f"Digest: {result.image.id}"})
            verb = "Downloaded newer image for" if result.downloaded else "Image is up to date for"
            put({"status": f"Status: {verb} {result.ref}"})
        except NspawnctlError as e:
            put({"errorDetail": {"message": str(e)}, "error": str(e)})
        except Exception as e:  # a bug: said in-band, as the head has gone out already
            log.exception("pull failed")
            put({"errorDetail": {"message": f"internal error: {e}"}, "error": f"internal error: {e}"})
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, None)

    # the pull goes on in its thread should the client hang up (even before the head is out): it
    # ends with a whole image or nothing, never in the middle
    worker = asyncio.ensure_future(asyncio.to_thread(pull))
    try:
        stream = await ex.conn.stream()
        while (line := await lines.get()) is not None:
            await stream.write(line)
        await stream.end()
    except ClientGone:
        await worker
        raise


def register(router: Router) -> None:
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create_image, stream_body=True)
    router.add("GET", "/images/{name*}/json", inspect_image)
    router.add("DELETE", "/images/{name*}", remove_image)
