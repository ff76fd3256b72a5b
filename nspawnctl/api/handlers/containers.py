"""``/containers/...``: create, list, inspect, start/stop/restart/kill, wait, logs, attach, remove.
Each calls the library's Client; in-memory state is only the attached runs (api/runs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal as signals
import time
from typing import TYPE_CHECKING

from ...errors import (
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRunning,
    InvalidArgument,
    NspawnctlError,
)
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..render import STDERR, STDOUT, container_inspect, container_summary, frame, rfc3339
from ..routing import Router
from ..translate import create_options

if TYPE_CHECKING:
    from ...client import ContainerStatus
    from ...systemd.journal import Entry

WAIT_POLL = 0.5
"""Seconds between two looks at a container ``wait`` follows that the service did not start
attached (issue 14's wait will give an event instead)."""
REMOVED_WAIT = 60.0
EXIT_LAG = 25
"""Looks (0.1 s apart) for the exit record of a container started here that has just stopped."""
STREAM_MUX = "application/vnd.docker.multiplexed-stream"


async def resolve(ex: Exchange, ref: str) -> str:
    """The container's name for a name, an ID or a unique ID prefix (docker's clients use the ID
    create returned): the library's lookup, its errors in docker's shape."""
    try:
        return await asyncio.to_thread(ex.client.containers.store.resolve, ref)
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {ref}") from None
    except InvalidArgument as e:  # an ambiguous prefix
        raise ApiError(400, e.message) from None


async def status_of(ex: Exchange, name: str) -> ContainerStatus | None:
    """The container's status; None once it is gone."""
    try:
        spec = await asyncio.to_thread(ex.client.containers.store.get, name)
    except ContainerNotFound:
        return None
    return (await ex.client.containers.astatuses(ex.bus, [spec]))[0]


async def create(ex: Exchange) -> None:
    req, options = create_options(ex.request.json(), ex.request.arg("name"))
    spec = await asyncio.to_thread(ex.client.containers.create, req.image, req.command, options)
    await ex.json({"Id": spec.id, "Warnings": []}, status=201)


async def list_containers(ex: Exchange) -> None:
    import json

    filters: dict[str, list[str]] = {}
    raw = ex.request.arg("filters")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ApiError(400, "filters: malformed JSON") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "filters: a JSON object is expected")
        for key, value in parsed.items():
            # docker accepts {"key": ["v"]} and the older {"key": {"v": true}}
            filters[key] = list(value) if isinstance(value, list | dict) else [str(value)]
    for key in filters:
        if key not in ("id", "name", "status"):
            raise ApiError(400, f"filters: {key}: not supported yet (issue 14's filters module)")
    specs = await asyncio.to_thread(ex.client.containers.store.list)
    statuses = await ex.client.containers.astatuses(ex.bus, specs) if specs else []
    want_all = ex.request.flag("all") or "status" in filters
    out = []
    for st in statuses:
        if not want_all and not (st.running or st.state == "restarting"):
            continue
        if "id" in filters and not any(st.spec.id.startswith(v) for v in filters["id"]):
            continue
        if "name" in filters and not any(v.lstrip("/") in st.spec.name for v in filters["name"]):
            continue
        if "status" in filters and st.state not in filters["status"]:
            continue
        out.append(st)
    out.sort(key=lambda s: s.spec.created, reverse=True)
    limit_text = ex.request.arg("limit") or "0"
    if not limit_text.lstrip("-").isdigit():
        raise ApiError(400, f"limit: {limit_text!r} is not a number")
    limit = int(limit_text)
    if limit > 0:
        out = out[:limit]
    now = time.time()
    await ex.json([container_summary(s, now) for s in out])


async def inspect(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None:
        raise ApiError(404, f"No such container: {id}")
    await ex.json(container_inspect(status))


async def start(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is not None and status.running:
        await ex.empty(304)
        return
    runs = ex.service.runs
    attached = runs.take_attachments(name)
    if not attached:
        await ex.client.containers.astart(ex.bus, name)
        runs.started(name)
        await ex.empty(204)
        return
    runs.started(name)
    loop = asyncio.get_running_loop()
    began: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[int] = loop.create_future()
    runs.running[name] = ended

    def on_start(spec: object) -> None:
        if not began.done():
            began.set_result(None)

    def send(stream: int, data: bytes) -> None:
        for a in attached:
            a.queue.put_nowait(frame(stream, data))

    async def follow() -> None:
        try:
            result = await ex.client.containers.astart_attached(
                ex.bus,
                name,
                lambda b: send(STDOUT, b),
                lambda b: send(STDERR, b),
                started=on_start,
            )
            runs.exits[name] = result.exit_code
            ended.set_result(result.exit_code)
        except BaseException as e:
            if not began.done():
                began.set_exception(e)
            ended.set_exception(e)
            ended.exception()  # retrieved: wait() reads it, or nobody does
        finally:
            runs.running.pop(name, None)
            for a in attached:
                a.queue.put_nowait(None)

    task = asyncio.ensure_future(follow())
    runs.tasks.add(task)
    task.add_done_callback(runs.tasks.discard)
    await asyncio.wait([began, task], return_when=asyncio.FIRST_COMPLETED)
    await began  # a start that failed is this request's error
    await ex.empty(204)


async def stop(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None or not (status.running or status.state == "restarting"):
        await ex.empty(304)
        return
    await ex.client.containers.astop(ex.bus, name, _timeout(ex))
    await ex.empty(204)


def _timeout(ex: Exchange) -> float:
    return parse_timeout(ex.request.arg("t") or ex.request.arg("timeout"))


def parse_timeout(text: str | None) -> float:
    """docker's ``t``: whole seconds, -1 to wait as long as allowed (a year); default 10."""
    from ...runopts import parse_stop_timeout
    from ...values import BadValue

    try:
        return float(parse_stop_timeout(text)) if text else 10.0
    except BadValue as e:
        raise ApiError(400, f"t: {text!r}: {e.reason}") from None


async def restart(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    await ex.client.containers.astop(ex.bus, name, _timeout(ex))
    await ex.client.containers.astart(ex.bus, name)
    ex.service.runs.started(name)
    await ex.empty(204)


def parse_signal(text: str | None) -> int:
    """docker's signal parameter: KILL, SIGKILL or 9 (default KILL)."""
    from ...values import parse_signal_number

    if not text:
        return signals.SIGKILL
    try:
        return parse_signal_number(text, "signal")
    except InvalidArgument:
        raise ApiError(400, f"signal: invalid signal {text!r}") from None


async def kill(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    sig = parse_signal(ex.request.arg("signal"))
    status = await status_of(ex, name)
    if status is None or not status.running:
        raise ApiError(409, f"Cannot kill container: {id}: container {name} is not running")
    try:
        await ex.client.containers.akill(ex.bus, name, sig)
    except ContainerNotRunning as e:
        raise ApiError(409, str(e)) from None
    await ex.empty(204)


async def wait_exit(ex: Exchange, name: str, condition: str) -> int:
    """The exit code ``wait`` answers: of the run the service follows, else by looking every
    WAIT_POLL seconds (not-running: now if stopped; next-exit and removed: the next exit)."""
    runs = ex.service.runs
    starts = runs.starts.get(name, 0)
    seen_running = False
    exit_lag = 0
    last_code = runs.exits.get(name, 0)
    while True:
        ended = runs.running.get(name)
        if ended is not None:
            last_code = await asyncio.shield(ended)
            break
        status = await status_of(ex, name)
        if status is None:
            last_code = runs.exits.get(name, last_code)
            break
        if (
            status.state == "restarting"
            and condition != "removed"
            and (condition == "not-running" or seen_running)
        ):
            # it exited and its restart policy starts it again: docker's wait answers that exit
            if status.exit is not None:
                last_code = status.exit.exit_code
            break
        if status.running or status.state == "restarting":
            seen_running = True
        else:
            if status.exit is not None:
                last_code = status.exit.exit_code
            elif runs.starts.get(name, 0) and exit_lag < EXIT_LAG:
                # started here and stopped, its exit not recorded yet (the unit's stop hook)
                exit_lag += 1
                await asyncio.sleep(WAIT_POLL / 5)
                continue
            if condition == "not-running" or seen_running or runs.starts.get(name, 0) != starts:
                break
        await asyncio.sleep(WAIT_POLL)
    if condition == "removed":
        deadline = time.monotonic() + REMOVED_WAIT
        while time.monotonic() < deadline and await status_of(ex, name) is not None:
            await asyncio.sleep(WAIT_POLL / 5)
    return last_code


async def wait(ex: Exchange, id: str) -> None:
    """The head goes out at once (chunked), the JSON at the exit: ``docker run`` sends ``start``
    only once ``wait``'s head has come."""
    import json

    name = await resolve(ex, id)
    condition = ex.request.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"condition: {condition!r}: use not-running, next-exit or removed")
    stream = await ex.conn.stream()
    job = asyncio.ensure_future(wait_exit(ex, name, condition))
    gone = asyncio.ensure_future(ex.conn.hung_up.wait())
    try:
        await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not job.done():  # abandoned (run -d): stop looking
        job.cancel()
        raise ClientGone()
    try:
        body: dict[str, object] = {"StatusCode": job.result(), "Error": None}
    except NspawnctlError as e:
        body = {"StatusCode": 125, "Error": {"Message": str(e)}}
    await stream.write(json.dumps(body).encode() + b"\n")
    await stream.end()


def _unix_time(field: str, text: str | None) -> float | None:
    """docker's since/until: UNIX seconds, maybe fractional; "0" or nothing is no limit."""
    if not text or text == "0":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ApiError(400, f"{field}: {text!r} is not a UNIX time")
    return seconds


def _since(text: str | None) -> str | None:
    """docker's since as the library's ``@SECONDS``."""
    seconds = _unix_time("since", text)
    return None if seconds is None else f"@{seconds}"


def _tail(text: str | None) -> int | None:
    """docker's tail: a number of lines (>= 0) or "all" (None)."""
    if not text or text == "all":
        return None
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, f"tail: {text!r} is not a number of lines or 'all'")
    return int(text)


async def logs(ex: Exchange, id: str) -> None:
    req = ex.request
    name = await resolve(ex, id)
    until = _unix_time("until", req.arg("until"))
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    if not (want_out or want_err):
        raise ApiError(400, "you must choose at least one stream")
    tail = _tail(req.arg("tail"))
    since = _since(req.arg("since"))
    stamps = req.flag("timestamps")
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def emit(entry: Entry) -> None:
        if (want_err if entry.stderr else want_out) is False:
            return
        if until is not None and entry.realtime_us > until * 1e6:
            return
        text = entry.message + b"\n"
        if stamps:
            text = rfc3339(entry.realtime_us).encode() + b" " + text
        queue.put_nowait(frame(STDERR if entry.stderr else STDOUT, text))

    containers = ex.client.containers
    if req.flag("follow"):
        source = containers.alogs(ex.bus, name, emit, since=since, tail=tail)
    else:
        source = asyncio.to_thread(containers.logs, name, emit, False, since, tail)

    async def produce() -> None:
        try:
            await source
        finally:
            queue.put_nowait(None)

    stream = await ex.conn.stream(200, STREAM_MUX)
    task = asyncio.ensure_future(produce())
    try:
        while (data := await _next(queue, ex)) is not None:
            await stream.write(data)
        await stream.end()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _next(queue: asyncio.Queue[bytes | None], ex: Exchange) -> bytes | None:
    """The next item, or ClientGone once the client has hung up (a follow may last for ever)."""
    if not queue.empty():
        return queue.get_nowait()
    get = asyncio.ensure_future(queue.get())
    gone = asyncio.ensure_future(ex.conn.hung_up.wait())
    await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if get.done():
        return get.result()
    get.cancel()
    raise ClientGone()


async def attach(ex: Exchange, id: str) -> None:
    """Hijacked: the output of the container's next run as multiplexed frames (no TTY). Clients
    attach before ``start`` (docker run); ``start`` then follows the run for them (runs.py)."""
    req = ex.request
    name = await resolve(ex, id)
    if req.flag("stdin"):
        raise ApiError(400, "stdin: attaching stdin through the API is not supported yet")
    if req.flag("logs"):
        raise ApiError(400, "logs: replaying logs on attach is not supported; use the logs endpoint")
    status = await status_of(ex, name)
    if status is not None and status.running:
        raise ApiError(
            409, f"container {name} is running: attach to a running container waits on issue 14's attach"
        )
    runs = ex.service.runs
    a = runs.attach(name)
    try:
        stream = await ex.conn.hijack(STREAM_MUX)
        want_out, want_err = req.flag("stdout"), req.flag("stderr")
        while (data := await a.queue.get()) is not None:
            if (data[0] == STDOUT and want_out) or (data[0] == STDERR and want_err):
                await stream.write(data)
        await stream.end()
    finally:
        runs.detach(name, a)


async def remove(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    try:
        await ex.client.containers.aremove(ex.bus, name, ex.request.flag("force"))
    except ContainerRunning:  # dockerd's words, which clients look for
        raise ApiError(
            409,
            f'cannot remove container "/{name}": container is running: '
            "stop the container before removing or force remove",
        ) from None
    await ex.empty(204)


def register(router: Router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("DELETE", "/containers/{id}", remove)
