"""``/containers/{id}/archive``: what ``docker cp`` and docker-py's get_archive/put_archive use.
GET is the tar of a path (``nspawnctl cp NAME:PATH -``), HEAD only what is there (the
``X-Docker-Container-Path-Stat`` header), PUT unpacks a tar into a directory; all three by the
library's cp code (files.py, store/copy.py), on running and stopped containers alike."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import time
from typing import TYPE_CHECKING

from ... import files
from ...errors import ArchiveError
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..pipes import own_thread, read_pipe, write_pipe
from ..routing import Router
from .containers import resolve

if TYPE_CHECKING:
    from ...store.copy import ContainerRoot, PathStat

STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits (docker's stat header carries a Go FileMode)
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(st_mode: int) -> int:
    """A stat mode as Go's os.FileMode (what docker's clients test for a directory or a link)."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
    }.get(fmt, 0)
    for bit, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if st_mode & bit:
            mode |= go
    return mode


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    secs, frac = divmod(ns, 10**9)
    digits = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + (f".{digits}" if digits else "") + "Z"


def stat_header(st: PathStat) -> str:
    value = {
        "name": st.name,
        "size": st.size,
        "mode": go_mode(st.mode),
        "mtime": rfc3339_nano(st.mtime_ns),
        "linkTarget": st.link_target,
    }
    return base64.b64encode(json.dumps(value).encode()).decode("ascii")


def _path(ex: Exchange) -> str:
    path = ex.request.arg("path")
    if not path:
        raise ApiError(400, "path: a path in the container is required")
    if "\0" in path:
        raise ApiError(400, "path: must not contain a NUL byte")
    return path


async def _root(ex: Exchange, ref: str) -> ContainerRoot:
    from ...systemd.machined import Machined

    name = await resolve(ex, ref)
    leader = await Machined(ex.bus).leader(name)
    return await asyncio.to_thread(files.container_root, ex.client, name, lambda _: leader)


async def get_archive(ex: Exchange, id: str) -> None:
    """GET: the tar of ``path`` after the stat header; HEAD: the header alone (404 when missing)."""
    path = _path(ex)
    root = await _root(ex, id)
    st = await asyncio.to_thread(files.stat_path, root, path)
    header = (STAT_HEADER, stat_header(st))
    if ex.request.method == "HEAD":
        await ex.conn.reply(200, b"", head_only=True, extra=[header])
        return
    r, w = os.pipe()
    os.set_blocking(r, False)

    def produce() -> None:
        with open(w, "wb") as out:
            files.archive_path(root, path, out)

    worker = own_thread(produce)
    try:
        stream = await ex.conn.stream(200, "application/x-tar", [header])
        while chunk := await read_pipe(r):
            await stream.write(chunk)
        await worker  # an error now (after the head) cuts the body short: the client sees it fail
        await stream.end()
    finally:
        os.close(r)  # a client gone: the writer's next write fails, and it stops
        with contextlib.suppress(Exception):
            await worker


async def put_archive(ex: Exchange, id: str) -> None:
    """Unpack the request body (a tar, possibly compressed) into the directory ``path``. It is
    read as it comes and piped to the extractor: no size cap but the extractor's own (bytes,
    entries, the pool's free space)."""
    path = _path(ex)
    root = await _root(ex, id)
    keep_owners = ex.request.flag("copyUIDGID")
    keep_kinds = ex.request.flag("noOverwriteDirNonDir")
    r, w = os.pipe()
    os.set_blocking(w, False)

    def consume() -> None:
        with open(r, "rb") as stream:
            files.extract_archive(
                root, path, stream, keep_owners=keep_owners, no_overwrite_dir_non_dir=keep_kinds
            )

    worker = own_thread(consume)
    gone = False
    try:
        async for chunk in ex.conn.body():
            if worker.done():
                break  # it failed early (no such directory): its error is the answer
            try:
                await write_pipe(w, chunk)
            except BrokenPipeError:
                break
    except ClientGone:
        gone = True
    finally:
        os.close(w)
    try:
        await worker
    except ArchiveError as e:
        if gone:
            raise ClientGone() from None
        raise ApiError(400, str(e)) from None
    if gone:
        raise ClientGone()
    await ex.conn.reply(200, b"", content_type="text/plain")


def register(router: Router) -> None:
    router.add("GET", "/containers/{id}/archive", get_archive)
    router.add("PUT", "/containers/{id}/archive", put_archive, stream_body=True)
