"""``/containers/{id}/exec``, ``/exec/{id}/start``, ``/exec/{id}/json``: a command in a running
container (the library's nsenter argv), its output as multiplexed frames, its exit code kept in
memory for the inspect that docker's clients make afterwards."""

from __future__ import annotations

import asyncio
import secrets

from ..context import Exchange
from ..http import ApiError, ClientGone
from ..render import STDERR, STDOUT, frame
from ..routing import Router
from ..runs import ExecRecord
from ..translate import string, strings
from .containers import STREAM_MUX, resolve, status_of


async def create_exec(ex: Exchange, id: str) -> None:
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None or not status.running:
        raise ApiError(409, f"container {name} is not running")
    for key, why in (("Tty", "a TTY"), ("AttachStdin", "stdin"), ("Privileged", "Privileged")):
        if body.get(key):
            raise ApiError(400, f"{key}: {why} through the API is not supported yet")
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
    )
    ex.service.runs.execs[record.id] = record
    await ex.json({"Id": record.id}, status=201)


def _record(ex: Exchange, id: str) -> ExecRecord:
    record = ex.service.runs.execs.get(id)
    if record is None:
        raise ApiError(404, f"No such exec instance: {id}")
    return record


async def start_exec(ex: Exchange, id: str) -> None:
    record = _record(ex, id)
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if body.get("Tty"):
        raise ApiError(400, "Tty: a TTY through the API is not supported yet")
    if record.running or record.exit_code is not None:
        raise ApiError(409, f"exec {id} has already run")
    cmd = await ex.client.containers.aexec_command(
        ex.bus, record.container, record.argv, record.env, record.workdir, record.user
    )
    proc = await asyncio.create_subprocess_exec(
        *cmd.argv,
        env=cmd.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    record.running, record.pid = True, proc.pid
    detach = bool(body.get("Detach"))
    stream = None if detach else await ex.conn.hijack(STREAM_MUX)
    lock = asyncio.Lock()

    async def pump(source: asyncio.StreamReader | None, kind: int) -> None:
        gone = False
        while source is not None and (data := await source.read(65536)):
            if stream is None or gone:
                continue
            try:
                async with lock:
                    await stream.write(frame(kind, data))
            except ClientGone:
                gone = True  # keep reading: the command must not block on a full pipe

    try:
        if detach:
            await ex.empty(204)
        await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        record.exit_code = await proc.wait()
    finally:
        record.running = False
        if record.exit_code is None and proc.returncode is None:
            proc.kill()
            record.exit_code = await proc.wait()
    if stream is not None:
        await stream.end()


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
                "tty": False,
                "privileged": False,
                "user": r.user or "",
            },
            "OpenStdin": False,
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
