"""``/containers/{id}/exec``, ``/exec/{id}/start``, ``/exec/{id}/json``: a command in a running
container (the library's nsenter argv), its output as multiplexed frames, its exit code kept in
memory for the inspect that docker's clients make afterwards.

As dockerd does, the *start* request says how the output travels: raw bytes only when its body
says ``Tty: true``, else frames (docker-py starts an exec made with a TTY with ``Tty: false`` unless
told: its terminal's output then comes as stdout frames). A command that is not in the container
is no failed request: the exec ends with 127 (126: not executable) and the client reads why."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..context import Exchange
from ..http import ApiError, Stream
from ..pumps import next_piece
from ..render import frame
from ..routing import Router
from ..runs import Attachment, ExecLimit, ExecRecord
from ..translate import string, strings
from .containers import PUMP_GRACE, STREAM_MUX, STREAM_RAW, resolve, status_of, tty_size

if TYPE_CHECKING:
    from ...run.stdio import Stdio

EXEC_BACKLOG = 64
"""Output pieces kept for an exec's client; beyond them the command waits on its pipe or pty."""


def field(body: dict[str, Any], name: str) -> Any:
    """A body field as dockerd's JSON decoding finds it: by its name, else by a key differing
    only in case (docker-py sends exec create's ``detachKeys`` so)."""
    if name in body:
        return body[name]
    folded = name.casefold()
    return next((v for k, v in body.items() if k.casefold() == folded), None)


def flag(body: dict[str, Any], name: str) -> bool:
    value = field(body, name)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"{name}: a boolean is expected")
    return bool(value)


def exec_detach_keys(body: dict[str, Any]) -> bytes:
    """exec create's ``DetachKeys``; none (or "") is docker's default ctrl-p,ctrl-q, as dockerd's."""
    from ...errors import InvalidArgument
    from ...run.attach import DEFAULT_DETACH_KEYS, parse_detach_keys

    try:
        return parse_detach_keys(string("DetachKeys", field(body, "DetachKeys")) or DEFAULT_DETACH_KEYS)
    except InvalidArgument as e:
        raise ApiError(400, f"DetachKeys: {e.message}") from None


async def create_exec(ex: Exchange, id: str) -> None:
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None or not status.running:
        raise ApiError(409, f"container {name} is not running")
    if flag(body, "Privileged"):
        raise ApiError(400, "Privileged: not supported by nspawnctl's Docker API")
    tty, stdin = flag(body, "Tty"), flag(body, "AttachStdin")
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
        tty=tty,
        stdin=stdin,
        detach_keys=exec_detach_keys(body),
    )
    try:
        ex.service.runs.add_exec(record)
    except ExecLimit as e:
        raise ApiError(503, str(e)) from None
    await ex.json({"Id": record.id}, status=201)


def _record(ex: Exchange, id: str) -> ExecRecord:
    record = ex.service.runs.execs.get(id)
    if record is None:
        raise ApiError(404, f"No such exec instance: {id}")
    return record


async def start_exec(ex: Exchange, id: str) -> None:
    """Hijacked (unless the body says ``Detach``: then it runs on its own and the answer comes at
    once): the command's output, raw if the body says ``Tty``, else as frames; the client's bytes
    to its stdin with AttachStdin, its half-close the command's EOF, and with a TTY the detach
    keys end the client's stream while the command runs on."""
    record = _record(ex, id)
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    raw, detach = flag(body, "Tty"), flag(body, "Detach")
    if record.running or record.exit_code is not None:
        raise ApiError(409, f"exec {id} has already run")
    record.running = True  # before the first await: a second start of it is refused
    try:
        await _start(ex, record, raw, detach)
    finally:
        if not record.pid:  # no command started (else its task, _until_exit, says when it ended)
            record.running = False


async def _start(ex: Exchange, record: ExecRecord, raw: bool, detach: bool) -> None:
    from ...errors import CommandNotExecutable, CommandNotFound
    from ...run.stdio import STDOUT, open_stdio, spawn

    tty = record.tty
    try:
        cmd = await ex.client.containers.aexec_command(
            ex.bus, record.container, record.argv, record.env, record.workdir, record.user,
            term="xterm" if tty else None,
        )  # fmt: skip
    except (CommandNotFound, CommandNotExecutable) as e:
        record.exit_code = e.exit_code  # dockerd's 127 and 126 (daemon/errors.go)
        if detach:
            raise ApiError(400, str(e)) from None
        await _say(await ex.conn.hijack(STREAM_RAW if raw else STREAM_MUX), raw, f"{e}\r\n")
        return
    stdio = open_stdio(tty, record.stdin and not detach)
    stream: Stream | None = None
    try:
        stream = None if detach else await ex.conn.hijack(STREAM_RAW if raw else STREAM_MUX)
        proc = await spawn(cmd.argv, cmd.env, stdio)
    except OSError as e:
        stdio.close()
        record.exit_code = 126
        if stream is None:
            raise ApiError(500, f"exec: {e}") from None
        await _say(stream, raw, f"exec: {e}\r\n")
        return
    except BaseException:
        stdio.close()
        raise
    record.pid, record.stdio = proc.pid, stdio
    out = Attachment(backlog=EXEC_BACKLOG)  # a slow client makes the command wait, as dockerd's

    async def emit(kind: int, data: bytes) -> None:
        if not raw:
            await out.put(frame(kind, data))
        elif kind == STDOUT:  # dockerd gives a start with Tty no stderr
            await out.put(data)

    if stream is None:
        out.close()  # nobody follows: the output is read and dropped, the command never waits
    runs = ex.service.runs
    task = asyncio.ensure_future(_until_exit(record, proc, stdio, emit, out))
    runs.tasks.add(task)
    task.add_done_callback(runs.tasks.discard)
    if stream is None:
        await ex.empty(200)
        return
    feeding = asyncio.ensure_future(_feed(ex, record, out)) if record.stdin else None
    try:
        while (data := await next_piece(out, ex.conn)) is not None:
            await stream.write(data)
        await stream.end()
    finally:
        out.close()  # detached or gone: the command runs on, its output dropped
        if feeding is not None:
            feeding.cancel()


async def _say(stream: Stream, raw: bool, text: str) -> None:
    """dockerd's answer to an attached start that could not run the command: why, on stdout."""
    from ...run.stdio import STDOUT

    data = text.encode()
    await stream.write(data if raw else frame(STDOUT, data))
    await stream.end()


async def _until_exit(
    record: ExecRecord,
    proc: asyncio.subprocess.Process,
    stdio: Stdio,
    emit: Callable[[int, bytes], Awaitable[None]],
    out: Attachment,
) -> None:
    """The command's output read until it ends, its exit code kept: whether a client follows it
    or not (detached start, detach keys, hang-up)."""
    pump = asyncio.ensure_future(stdio.pump(emit))
    try:
        record.exit_code = await proc.wait()
        await asyncio.wait([pump], timeout=PUMP_GRACE)  # what it wrote last
    finally:
        if proc.returncode is None:
            proc.kill()
            record.exit_code = await proc.wait()
        pump.cancel()
        stdio.close()
        record.running, record.stdio = False, None
        out.end()  # after the exit code: a client reading the end inspects it next


async def _feed(ex: Exchange, record: ExecRecord, out: Attachment) -> None:
    """The client's bytes to the command's stdin; its half-close the command's EOF. With a TTY,
    the detach keys end the client's stream (dockerd scans for them only then)."""
    from ...run.attach import DetachScanner

    stdio = record.stdio
    if stdio is None:
        return
    scanner = DetachScanner(record.detach_keys if record.tty else b"")
    while data := await ex.conn.read_raw():
        data, detach = scanner.feed(data)
        await stdio.write(data)
        if detach:
            out.close()
            return
    await stdio.write(scanner.flush())
    await stdio.close_input()


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
