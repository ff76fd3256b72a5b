"""``POST /build``: docker build (the classic builder) over nspawnctl.builder. The body (the
context as a tar, possibly compressed) is spooled whole to the pool's disk first, then unpacked
by the library's own bounded extractor into a staging subvolume (swept should we die); progress
goes out as docker's JSON lines (``stream``, ``aux``), a failure in-band after the 200 as
``errorDetail``, as dockerd does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import NspawnctlError
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..routing import Router
from ..spool import spooled_body

log = logging.getLogger("nspawnctl.api")

# query parameters the classic builder takes that nspawnctl cannot honour: refused (400) unless
# they carry docker's default
UNSUPPORTED = (
    "remote",
    "platform",
    "extrahosts",
    "networkmode",
    "cachefrom",
    "squash",
    "shmsize",
    "memory",
    "memswap",
    "cpushares",
    "cpusetcpus",
    "cpusetmems",
    "cpuperiod",
    "cpuquota",
    "isolation",
    "outputs",
    "ulimits",
    "securityopt",
)
_DEFAULTS = ("", "0", "[]", "{}", "null", "default", "false", "False")


def _object(ex: Exchange, name: str) -> dict[str, str]:
    text = ex.request.arg(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, f"{name}: not a JSON object") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ApiError(400, f"{name}: not a JSON object of strings")
    # buildargs: a null value means "from the environment" in the CLI; the daemon has none
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


async def build(ex: Exchange) -> None:
    from ...builder.steps import BuildOptions
    from ...client import tag_ref
    from ...errors import InvalidArgument
    from .images import pull_options

    req = ex.request
    if req.arg("version") == "2":
        raise ApiError(400, "version: BuildKit is not supported; use the classic builder (DOCKER_BUILDKIT=0)")
    for name in UNSUPPORTED:
        value = req.arg(name)
        if value is not None and value not in _DEFAULTS:
            raise ApiError(400, f"{name}: not supported by nspawnctl build")
    tags = [t for t in req.query.get("t", []) if t]
    try:
        for t in tags:
            tag_ref(t)
    except InvalidArgument as e:
        raise ApiError(400, f"t: {e}") from None
    quiet = req.flag("q")
    options = BuildOptions(
        tags=tags,
        build_args=_object(ex, "buildargs"),
        labels=_object(ex, "labels"),
        pull="always" if req.flag("pull") else "missing",
        target=req.arg("target") or None,
        pull_options=lambda: pull_options(ex, ""),
    )
    dockerfile = req.arg("dockerfile") or "Dockerfile"
    store = ex.client.images.store
    async with spooled_body(ex) as spooled:
        context = await asyncio.to_thread(_unpack, store, Path(spooled))
        try:
            await _stream(ex, context, dockerfile, options, quiet)
        finally:
            await asyncio.shield(asyncio.to_thread(_delete, context))


async def _stream(ex: Exchange, context: Path, dockerfile: str, options: Any, quiet: bool) -> None:
    """Run the build, its progress out as JSON lines as it comes; a hang-up cancels it."""
    from ...builder.parser import MAX_DOCKERFILE
    from ...builder.steps import build as run_build

    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def emit(text: str) -> None:
        if not quiet:
            lines.put_nowait(_line({"stream": text}))

    def built(image: Any) -> None:
        lines.put_nowait(_line({"aux": {"ID": image.id}}))
        if quiet:
            lines.put_nowait(_line({"stream": image.id + "\n"}))

    async def work() -> None:
        try:
            text = await asyncio.to_thread(_read_dockerfile, context, dockerfile, MAX_DOCKERFILE)
            await run_build(ex.client, ex.bus, context, text, options, emit, built)
        except NspawnctlError as e:
            message = e.message
            lines.put_nowait(_line({"errorDetail": {"message": message}, "error": message}))
        except Exception as e:  # a bug: said in-band, as the head has gone out already
            log.exception("build failed")
            message = f"internal error: {e}"
            lines.put_nowait(_line({"errorDetail": {"message": message}, "error": message}))
        finally:
            lines.put_nowait(None)

    task = asyncio.ensure_future(work())
    try:
        stream = await ex.conn.stream()
        while (line := await lines.get()) is not None:
            await stream.write(line)
        await stream.end()
    except ClientGone:  # docker's build is cancelled with its client: nothing of it is left
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    await task


def _unpack(store: Any, spooled: Path) -> Path:
    """The context tar unpacked into a staging subvolume: the library's extractor (no member
    leaves the directory, sizes bounded as an import's), owners root."""
    from ...store import btrfs
    from ...store.copy import extract_into
    from ...store.rootpath import DIR_READ

    path = store.staging_path(".context")
    btrfs.create_subvolume(path)
    try:
        fd = os.open(path, DIR_READ)
        try:
            with open(spooled, "rb") as f:
                if os.fstat(f.fileno()).st_size:
                    extract_into(fd, f, lambda _u, _g: (0, 0))
        finally:
            os.close(fd)
    except NspawnctlError as e:
        _delete(path)
        raise ApiError(400, f"the build context: {e.message}") from None
    except BaseException:
        _delete(path)
        raise
    return path


def _delete(path: Path) -> None:
    from ...store import btrfs

    if os.path.lexists(path):
        btrfs.delete(path)


def _read_dockerfile(context: Path, name: str, limit: int) -> str:
    """The Dockerfile at ``name`` inside the context (resolved inside it), at most ``limit`` bytes."""
    from ...errors import InvalidArgument
    from ...store import rootpath

    root = os.open(context, rootpath.DIR_READ)
    try:
        fd = rootpath.open_regular(root, name)
    except OSError:
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}") from None
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise InvalidArgument(f"the Dockerfile is larger than {limit} bytes")
    return raw.decode(errors="replace")


def register(router: Router) -> None:
    router.add("POST", "/build", build, stream_body=True)
