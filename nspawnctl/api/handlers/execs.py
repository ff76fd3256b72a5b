"""``/containers/{id}/exec``, ``/exec/{id}/start``, ``/exec/{id}/json``: a command in a running
container (the library's nsenter argv), its output as multiplexed frames, its exit code kept in
memory for the inspect that docker's clients make afterwards."""

from __future__ import annotations

import asyncio
import secrets

from ..context import Exchange
from ..http import ApiError, ClientGone
from ..render import frame
from ..routing import Router
from ..runs import ExecRecord
from ..translate import string, strings
from .containers import PUMP_GRACE, STREAM_MUX, STREAM_RAW, resolve, status_of, tty_size


async def create_exec(ex: Exchange, id: str) -> None:
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None or not status.running:
        raise ApiError(409, f"container {name} is not running")
    if body.get("Privileged"):
        raise ApiError(400, "Privileged: not supported by nspawnctl's Docker API")
    for key in ("Tty", "AttachStdin"):
        if not isinstance(body.get(key, False), bool):
            raise ApiError(400, f"{key}: a boolean is expected")
    argv = strings("Cmd", body.get("Cmd"))
    if not argv:
        raise ApiError(400, "Cmd: a command is required")
    record = ExecRecord(
        id=secrets.token_hex(32),
        container=name,
        container_id=status.spec.id,
        argv=argv,
        env=strings("Env", body.get("Env")),
        workdir=string("WorkingDir", body.get("WorkingDir")) or None,
        user=string("User", body.get("User")) or None,
        tty=bool(body.get("Tty")),
        stdin=bool(body.get("AttachStdin")),
    )
    ex.service.runs.execs[record.id] = record
    await ex.json({"Id": record.id}, status=201)


def _record(ex: Exchange, id: str) -> ExecRecord:
    record = ex.service.runs.execs.get(id)
    if record is None:
        raise ApiError(404, f"No such exec instance: {id}")
    return record


async def start_exec(ex: Exchange, id: str) -> None:
    """Hijacked (unless Detach): the command's output as multiplexed frames, raw with a TTY; the
    client's bytes to its stdin with AttachStdin, its half-close the command's EOF."""
    record = _record(ex, id)
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if record.running or record.exit_code is not None:
        raise ApiError(409, f"exec {id} has already run")
    record.running = True  # before the first await: a second start of it is refused
    try:
        await _run(ex, record, bool(body.get("Detach")))
    finally:
        record.running, record.stdio = False, None


EXEC_BACKLOG = 64
"""Output pieces kept for an exec's client; beyond them the command waits on its pipe or pty."""


async def _run(ex: Exchange, record: ExecRecord, detach: bool) -> None:
    from ...run.stdio import open_stdio, spawn

    tty = record.tty
    cmd = await ex.client.containers.aexec_command(
        ex.bus, record.container, record.argv, record.env, record.workdir, record.user,
        term="xterm" if tty else None,
    )  # fmt: skip
    stdio = open_stdio(tty, record.stdin and not detach)
    try:
        proc = await spawn(cmd.argv, cmd.env, stdio)
    except BaseException:
        stdio.close()
        raise
    record.pid, record.stdio = proc.pid, stdio
    try:
        stream = None if detach else await ex.conn.hijack(STREAM_RAW if tty else STREAM_MUX)
    except BaseException:
        proc.kill()
        await proc.wait()
        stdio.close()
        raise
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(EXEC_BACKLOG)

    async def emit(kind: int, data: bytes) -> None:
        if stream is not None:
            await queue.put(data if tty else frame(kind, data))

    async def send_out() -> None:
        gone = False
        while (data := await queue.get()) is not None:
            if stream is None or gone:
                continue  # keep reading: the command must not block on a full pipe
            try:
                await stream.write(data)
            except ClientGone:
                gone = True

    async def feed() -> None:
        while data := await ex.conn.read_raw():
            await stdio.write(data)
        await stdio.close_input()

    pump = asyncio.ensure_future(stdio.pump(emit))
    sender = asyncio.ensure_future(send_out())
    feeding = asyncio.ensure_future(feed()) if record.stdin and stream is not None else None
    try:
        if detach:
            await ex.empty(204)
        record.exit_code = await proc.wait()
        await asyncio.wait([pump], timeout=PUMP_GRACE)  # what it wrote last
    except BaseException:
        sender.cancel()
        raise
    finally:
        if record.exit_code is None and proc.returncode is None:
            proc.kill()
            record.exit_code = await proc.wait()
        pump.cancel()
        if feeding is not None:
            feeding.cancel()
        stdio.close()
    await queue.put(None)
    await sender
    if stream is not None:
        await stream.end()


async def resize_exec(ex: Exchange, id: str) -> None:
    """The window size of a running exec's terminal (the kernel tells its foreground job)."""
    record = _record(ex, id)
    rows, cols = tty_size(ex)
    if record.stdio is None or not record.stdio.tty:
        raise ApiError(409, f"exec {id} is not running with a terminal")
    record.stdio.resize(rows, cols)
    await ex.empty(200)


async def inspect_exec(ex: Exchange, id: str) -> None:
    r = _record(ex, id)
    await ex.json(
        {
            "ID": r.id,
            "Running": r.running,
            "ExitCode": r.exit_code,
            "ProcessConfig": {
                "entrypoint": r.argv[0],
                "arguments": r.argv[1:],
                "tty": r.tty,
                "privileged": False,
                "user": r.user or "",
            },
            "OpenStdin": r.stdin,
            "OpenStdout": True,
            "OpenStderr": True,
            "CanRemove": False,
            "ContainerID": r.container_id,
            "DetachKeys": "",
            "Pid": r.pid,
        }
    )


def register(router: Router) -> None:
    router.add("POST", "/containers/{id}/exec", create_exec)
    router.add("POST", "/exec/{id}/start", start_exec)
    router.add("GET", "/exec/{id}/json", inspect_exec)
    router.add("POST", "/exec/{id}/resize", resize_exec)
