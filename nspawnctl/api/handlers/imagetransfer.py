"""Images made and moved: ``commit``, ``images/{name}/tag``, import (``images/create?fromSrc=-``),
save (``images/{name}/get``, ``images/get``), ``images/load`` and ``distribution/{name}/json``;
each over the library's own code (files.commit, Images.tag, files.import_stream,
store.dockerarchive, pull.describe). Uploaded archives are spooled to the pool's disk whole
before anything is made of them: a body cut short leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ArchiveError, InvalidArgument, VerificationFailed
from ...spec import RunDefaults
from ..context import Exchange
from ..http import ApiError
from ..pipes import own_thread, read_pipe
from ..routing import Router
from ..spool import spooled_body
from ..translate import empty, string, strings
from .containers import resolve
from .system import go_arch

COMMIT_CONFIG = {
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
}


def _changes(ex: Exchange) -> Any:
    from ...imagechanges import parse

    try:
        return parse(ex.request.query.get("changes", []))
    except InvalidArgument as e:
        raise ApiError(400, f"changes: {e}") from None


def _ref(repo: str | None, tag: str | None) -> str | None:
    if not repo:
        if tag:
            raise ApiError(400, "tag: given without repo")
        return None
    return f"{repo}:{tag}" if tag else repo


def _merge_config(body: Any) -> Callable[[RunDefaults], RunDefaults]:
    """A commit body (a container Config) over the container's settings, as dockerd merges it:
    what the body sets wins, Env and Labels merge by key, ports and volumes add up."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object (a container Config)")
    for key, value in body.items():
        if key not in COMMIT_CONFIG and not empty(value):
            raise ApiError(400, f"{key}: not supported by commit")
    cmd = strings("Cmd", body.get("Cmd"))
    entrypoint = strings("Entrypoint", body.get("Entrypoint"))
    env = strings("Env", body.get("Env"))
    workdir = string("WorkingDir", body.get("WorkingDir") or "")
    user = string("User", body.get("User") or "")
    signal = string("StopSignal", body.get("StopSignal") or "")
    labels = body.get("Labels") or {}
    ports = body.get("ExposedPorts") or {}
    volumes = body.get("Volumes") or {}
    for name, value in (("Labels", labels), ("ExposedPorts", ports), ("Volumes", volumes)):
        if not isinstance(value, dict) or (
            name == "Labels" and not all(isinstance(v, str) for v in value.values())
        ):
            raise ApiError(400, f"{name}: an object is expected")
    if workdir and not workdir.startswith("/"):
        raise ApiError(400, f"WorkingDir: {workdir!r} is not an absolute path")
    if signal:
        from ...runopts import parse_stop_signal

        try:
            signal = parse_stop_signal(signal)
        except InvalidArgument as e:
            raise ApiError(400, f"StopSignal: {e}") from None

    def apply(d: RunDefaults) -> RunDefaults:
        merged_env = dict(e.partition("=")[::2] for e in d.env)
        merged_env.update(e.partition("=")[::2] for e in env)
        return dataclasses.replace(
            d,
            command=cmd or d.command,
            entrypoint=entrypoint or d.entrypoint,
            env=[f"{k}={v}" for k, v in merged_env.items()],
            workdir=workdir or d.workdir,
            user=user.partition(":")[0] or d.user,
            stop_signal=signal or d.stop_signal,
            labels={**d.labels, **labels},
            ports=[*d.ports, *(p for p in ports if p not in d.ports)],
            volumes=[*d.volumes, *(v for v in volumes if v not in d.volumes)],
        )

    return apply


async def commit(ex: Exchange) -> None:
    """docker commit: a btrfs snapshot (atomic, so ``pause`` is not needed and is ignored)."""
    from ... import files

    req = ex.request
    container = req.arg("container")
    if not container:
        raise ApiError(400, "container: which container to commit is required")
    name = await resolve(ex, container)
    configure = _merge_config(req.json())
    changes = _changes(ex)
    ref = _ref(req.arg("repo"), req.arg("tag"))
    author = req.arg("author")

    def run() -> Any:
        return files.commit(
            ex.client,
            name,
            ref,
            req.arg("comment") or None,
            configure=lambda d: changes.apply(configure(d)),
            origin={"author": author} if author else None,
        )

    try:
        image = await asyncio.to_thread(run)
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    await ex.json({"Id": image.id}, status=201)


async def tag(ex: Exchange, name: str) -> None:
    repo = ex.request.arg("repo")
    if not repo:
        raise ApiError(400, "repo: the name to give the image is required")
    ref = _ref(repo, ex.request.arg("tag"))
    assert ref is not None
    try:
        await asyncio.to_thread(ex.client.images.tag, name, ref)
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    await ex.empty(201)


async def import_image(ex: Exchange) -> None:
    """docker import (``images/create?fromSrc=-``): the body is a root filesystem tar, possibly
    compressed (or a btrfs send stream), imported as ``nspawnctl import -`` does."""
    from ... import files
    from ...client import tag_ref
    from ...store.unpack import Limits

    req = ex.request
    if req.arg("fromSrc") != "-":
        raise ApiError(
            400, "fromSrc: only '-' (the archive in the request body) is supported; nspawnctl pull takes URLs"
        )
    for field in ("message", "platform"):
        if req.arg(field):
            raise ApiError(400, f"{field}: not supported by nspawnctl's import")
    changes = _changes(ex)
    text = _ref(req.arg("repo"), req.arg("tag"))
    try:
        ref = tag_ref(text) if text else None
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    defaults = changes.apply(RunDefaults()) if changes.steps else None
    store = ex.client.images.store
    async with spooled_body(ex) as path:

        def run() -> list[dict[str, Any]]:
            with open(path, "rb") as f:
                image = files.import_stream(store, f, ref, "api import", Limits(), defaults)
            return [{"status": image.id}]

        await _answer_in_band(ex, run)


async def _answer_in_band(ex: Exchange, work: Callable[[], list[dict[str, Any]]]) -> None:
    """Run ``work`` (on an upload received whole) and answer its JSON lines, or, as dockerd
    does for import and load, its failure in-band after a 200 (docker-py raises ImageLoadError on
    it, the docker CLI exits 1 with the message)."""
    try:
        lines = await asyncio.to_thread(work)
    except (ArchiveError, InvalidArgument, VerificationFailed) as e:
        lines = [{"errorDetail": {"message": str(e)}, "error": str(e)}]
    await ex.conn.reply(200, b"".join(json.dumps(line).encode() + b"\n" for line in lines))


async def _save(ex: Exchange, names: list[str]) -> None:
    from ...store import dockerarchive, transfer

    store = ex.client.images.store
    await asyncio.gather(*(asyncio.to_thread(ex.client.images.get, n) for n in names))  # 404 first
    r, w = os.pipe()
    os.set_blocking(r, False)
    gone = threading.Event()  # the client hung up: the worker stops spooling an image's root

    def produce() -> None:
        with open(w, "wb") as out:
            dockerarchive.save(store, names, out, go_arch(), transfer.export_tar, gone.is_set)

    worker = own_thread(produce)
    try:
        stream = await ex.conn.stream(200, "application/x-tar")
        while chunk := await read_pipe(r):
            await stream.write(chunk)
        await worker  # an error now (after the head) cuts the body short: the client sees it fail
        await stream.end()
    finally:
        gone.set()
        os.close(r)
        with contextlib.suppress(Exception):
            await worker


async def get_image(ex: Exchange, name: str) -> None:
    await _save(ex, [name])


async def get_images(ex: Exchange) -> None:
    names = [n for n in ex.request.query.get("names", []) if n]
    if not names:
        raise ApiError(400, "names: at least one image is required")
    await _save(ex, names)


async def load(ex: Exchange) -> None:
    """docker load: the body is a ``docker save`` archive; each image appears whole or not at all."""
    from ...store import dockerarchive

    store = ex.client.images.store
    async with spooled_body(ex) as path:

        def run() -> list[dict[str, Any]]:
            lines = []
            for item in dockerarchive.load(store, Path(path)):
                said = [f"Loaded image: {dockerarchive.familiar(t)}\n" for t in item.tags]
                lines += said or [f"Loaded image ID: {item.image.id}\n"]
            return [{"stream": line} for line in lines]

        await _answer_in_band(ex, run)


async def distribution(ex: Exchange, name: str) -> None:
    from ...pull.describe import describe
    from .images import pull_options

    options = pull_options(ex, name)
    try:
        found = await asyncio.to_thread(describe, name, options)
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    await ex.json(
        {
            "Descriptor": {"mediaType": found.media_type, "digest": found.digest, "size": found.size},
            "Platforms": found.platforms,
        }
    )


def register(router: Router) -> None:
    router.add("POST", "/commit", commit)
    router.add("POST", "/images/load", load, stream_body=True)
    router.add("GET", "/images/get", get_images)
    router.add("GET", "/images/{name*}/get", get_image)
    router.add("POST", "/images/{name*}/tag", tag)
    router.add("GET", "/distribution/{name*}/json", distribution)
