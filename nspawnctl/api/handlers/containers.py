"""``/containers/...``: create, list, inspect, start/stop/restart/kill, wait, logs, attach, remove.
Each calls the library's Client; in-memory state is only the attached runs (api/runs.py)."""

from __future__ import annotations

import asyncio
import collections
import signal as signals
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ...errors import (
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRunning,
    InvalidArgument,
    NspawnctlError,
    UserNotUsable,
)
from ..context import Exchange
from ..http import ApiError, ClientGone
from ..pumps import REPLAY_QUEUE, in_thread, next_or_gone, next_piece, pump, until_closed
from ..render import STDERR, STDOUT, container_inspect, container_summary, frame, rfc3339
from ..routing import Router
from ..runs import Attachment, Session
from ..translate import console_size, create_options, unix_time

if TYPE_CHECKING:
    from ...spec import ContainerSpec
    from ...status import ContainerStatus
    from ...systemd.journal import Entry

REPLAY_MAX = 16 << 20
"""Bytes of earlier output an attach with ``logs=1`` replays before joining a run this service
follows (the newest)."""
WAIT_POLL = 0.5
"""Seconds between two looks at a container ``wait`` follows that the service did not start
attached (issue 14's wait will give an event instead)."""
REMOVED_WAIT = 60.0
EXIT_LAG = 25
"""Looks (0.1 s apart) for the exit record of a container started here that has just stopped."""
STREAM_MUX = "application/vnd.docker.multiplexed-stream"
FILTER_KEYS = ("ancestor", "exited", "id", "label", "name", "status")
STREAM_RAW = "application/vnd.docker.raw-stream"
PUMP_GRACE = 2.0
"""Seconds the output of a run with a terminal or pipes may still come after its unit ended."""


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
    body = ex.request.json()
    req, options = create_options(body, ex.request.arg("name"))
    size = console_size(body)
    try:
        spec = await asyncio.to_thread(ex.client.containers.create, req.image, req.command, options)
    except UserNotUsable as e:  # the request's own field named (else the image's USER was)
        raise ApiError(400, f"Config.User: {e.message}" if options.user else e.message) from None
    if size is not None and spec.tty:
        ex.service.runs.console_sizes[spec.name] = size
    await ex.json({"Id": spec.id, "Warnings": list(req.warnings)}, status=201)


async def list_containers(ex: Exchange) -> None:
    """docker's filters (id, name, label, status, ancestor, exited) through the library's own
    (filters.py, as ``nspawnctl ps --filter``)."""
    from ...filters import parse_filters, select
    from ..resources import filter_words
    from ..resources import parse_filters as parse_query_filters

    try:
        query = parse_query_filters(ex.request.arg("filters"), FILTER_KEYS)
        query["name"] = [_name_pattern(v) for v in query.get("name", [])]
        filters = parse_filters(filter_words(query))
    except InvalidArgument as e:
        raise ApiError(400, e.message) from None
    specs = await asyncio.to_thread(ex.client.containers.store.list)
    statuses = await ex.client.containers.astatuses(ex.bus, specs) if specs else []
    want_all = ex.request.flag("all") or filters.wants_stopped
    shown = [st for st in statuses if want_all or st.running or st.state == "restarting"]
    out = await asyncio.to_thread(select, shown, filters, ex.client.images)
    out.sort(key=lambda s: s.spec.created, reverse=True)
    limit_text = ex.request.arg("limit") or "0"
    if not limit_text.lstrip("-").isdigit():
        raise ApiError(400, f"limit: {limit_text!r} is not a number")
    limit = int(limit_text)
    if limit > 0:
        out = out[:limit]
    now = time.time()
    await ex.json([container_summary(s, now) for s in out])


def _name_pattern(value: str) -> str:
    """docker matches ``name`` against "/NAME"; the library against NAME: "^/x" is "^x"."""
    if value.startswith("^/"):
        return "^" + value[2:]
    return value.removeprefix("/")


async def inspect(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None:
        raise ApiError(404, f"No such container: {id}")
    await ex.json(container_inspect(status, ex.client.volumes.store.name_of, ex.client.paths))


async def start(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    runs = ex.service.runs
    if (status is not None and status.running) or name in runs.running:
        await ex.empty(304)  # a start of it through this service may still be under way
        return
    await start_run(ex, name, status.spec if status is not None else None)
    await ex.empty(204)


async def start_run(ex: Exchange, name: str, spec: ContainerSpec | None) -> None:
    """Start the container as ``start`` and ``restart`` both do: one with Tty/OpenStdin (or
    clients attached before the start) on a terminal or pipes of this service's (follow_run),
    so a later attach types into it; any other one as the library starts it."""
    runs = ex.service.runs
    wired = spec is not None and (spec.tty or spec.open_stdin)
    if not runs.attachments.get(name) and not wired:
        await ex.client.containers.astart(ex.bus, name)
        runs.started(name)
        return
    # from here to follow_run's registration of the run no await: a concurrent start sees it
    attached = runs.take_attachments(name)
    runs.started(name)
    await follow_run(ex, name, attached, spec)


async def follow_run(
    ex: Exchange, name: str, attached: list[Attachment], spec: ContainerSpec | None = None
) -> None:
    """Start the container and follow its run for the clients attached (and those that attach
    while it runs): through a terminal or pipes of ours when it has Tty/OpenStdin (run/stdio.py),
    else from the journal. Returns once the unit has started; a failed start raises here. With
    ``spec`` given the run is registered before the first await (see start)."""
    from ...run.journalcopy import open_copy
    from ...run.stdio import open_stdio, relay_output

    runs = ex.service.runs
    loop = asyncio.get_running_loop()
    began: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[int] = loop.create_future()
    runs.running[name] = ended
    try:
        if spec is None:
            spec = await asyncio.to_thread(ex.client.containers.store.get, name)
        size = runs.console_sizes.pop(name, None)
        stdio = open_stdio(spec.tty, spec.open_stdin, size) if (spec.tty or spec.open_stdin) else None
        if stdio is not None:
            relay_output(stdio)
    except BaseException as e:
        runs.running.pop(name, None)
        ended.set_exception(e)
        ended.exception()
        for a in attached:
            a.end()
        raise
    tty = spec.tty
    session = Session(name, stdio, tty, attached)
    runs.sessions[name] = session
    for a in attached:
        if not a.session.done():
            a.session.set_result(session)

    def on_start(spec: object) -> None:
        if stdio is not None:
            stdio.handed_over()
        if not began.done():
            began.set_result(None)

    def send(kind: int, data: bytes) -> None:  # the journal's lines
        session.emit(data if tty else frame(kind, data))

    # the journal's copy of our terminal's or pipes' output (run/journalcopy.py), made meanwhile
    copying = (
        asyncio.ensure_future(open_copy(ex.bus, spec, [kind for _, kind in stdio.outputs]))
        if stdio is not None
        else None
    )

    async def put(kind: int, data: bytes) -> None:  # our terminal's or pipes' output
        await session.put(data if tty else frame(kind, data))
        if copying is not None:
            await (await copying).write(kind, data)

    interactive = spec.open_stdin

    async def follow() -> None:
        pump = asyncio.ensure_future(stdio.pump(put)) if stdio is not None else None
        try:
            result = await ex.client.containers.astart_attached(
                ex.bus,
                name,
                lambda b: send(STDOUT, b),
                lambda b: send(STDERR, b),
                started=on_start,
                stdio=stdio.far if stdio is not None else None,
                interactive=interactive,
                tty=tty,
            )
            if pump is not None:  # what the payload wrote last (nspawn's end closes the pipes)
                await asyncio.wait([pump], timeout=PUMP_GRACE)
            runs.exits[name] = result.exit_code
            ended.set_result(result.exit_code)
        except BaseException as e:
            if not began.done():
                began.set_exception(e)
            ended.set_exception(e)
            ended.exception()  # retrieved: wait() reads it, or nobody does
        finally:
            if pump is not None:
                pump.cancel()
            if stdio is not None:
                stdio.close()
            if copying is not None:
                if copying.done() and not copying.cancelled() and copying.exception() is None:
                    copying.result().close()
                else:
                    copying.cancel()  # it closes what it opened
            if runs.running.get(name) is ended:
                del runs.running[name]
            if runs.sessions.get(name) is session:
                del runs.sessions[name]
            for a in session.attachments:
                a.end()

    task = asyncio.ensure_future(follow())
    runs.tasks.add(task)
    task.add_done_callback(runs.tasks.discard)
    await asyncio.wait([began, task], return_when=asyncio.FIRST_COMPLETED)
    await began  # a start that failed is this request's error


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
    # docker's restart is its stop then its start: a -dit container's terminal is wired again
    await start_run(ex, name, await asyncio.to_thread(ex.client.containers.store.get, name))
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
        if status.running and (condition != "removed" or status.spec.auto_remove):
            # a run this service does not follow: the library's wait (systemd's signals) holds
            # the unit, so an AutoRemove container's exit code is read before it is gone
            try:
                last_code = await ex.client.containers.await_exit(ex.bus, name, "not-running")
            except ContainerNotFound:  # removed between the two looks
                last_code = runs.exits.get(name, last_code)
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


def _since(text: str | None) -> str | None:
    """docker's since as the library's ``@SECONDS``."""
    seconds = unix_time("since", text, zero_is_unset=True)
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
    until = unix_time("until", req.arg("until"), zero_is_unset=True)
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    if not (want_out or want_err):
        raise ApiError(400, "you must choose at least one stream")
    tail = _tail(req.arg("tail"))
    since = _since(req.arg("since"))
    stamps = req.flag("timestamps")
    # a container with a terminal has one stream, sent raw (docker's CLI reads it so: Config.Tty)
    tty = (await asyncio.to_thread(ex.client.containers.store.get, name)).tty

    def piece(entry: Entry) -> bytes | None:
        if (want_err if entry.stderr else want_out) is False:
            return None
        if until is not None and entry.realtime_us > until * 1e6:
            return None
        text = entry.text
        if stamps:
            text = rfc3339(entry.realtime_us).encode() + b" " + text
        return text if tty else frame(STDERR if entry.stderr else STDOUT, text)

    stream = await ex.conn.stream(200, STREAM_RAW if tty else STREAM_MUX)
    queue, produce = _journal_source(ex, name, piece, req.flag("follow"), since=since, tail=tail)
    await pump(stream, lambda: next_or_gone(queue, ex.conn), produce)


def _journal_source(
    ex: Exchange, name: str, piece: Callable[[Entry], bytes | None], follow: bool, **kw: Any
) -> tuple[asyncio.Queue[bytes | None], Coroutine[Any, Any, None]]:
    """The container's journal output as ``piece`` makes it, in a queue, and the coroutine that
    fills it (then None): followed on the loop, or read whole in a worker thread that waits for
    room in the queue (bounded)."""
    containers = ex.client.containers
    if follow:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def emit(entry: Entry) -> None:
            if (p := piece(entry)) is not None:
                queue.put_nowait(p)

        async def followed() -> None:
            try:
                await containers.alogs(ex.bus, name, emit, **kw)
            finally:
                queue.put_nowait(None)

        return queue, followed()
    bounded: asyncio.Queue[bytes | None] = asyncio.Queue(REPLAY_QUEUE)

    def read(put: Callable[[bytes], None]) -> None:
        def emit(entry: Entry) -> None:
            if (p := piece(entry)) is not None:
                put(p)

        containers.logs(name, emit, False, **kw)

    return bounded, in_thread(read, bounded)


async def attach(ex: Exchange, id: str) -> None:
    """Hijacked: the output of the container's run as multiplexed frames (raw bytes with a TTY),
    and the client's bytes to its stdin when it has OpenStdin. Clients attach before ``start``
    (docker run), which then follows the run for them; to a running one, they join the run the
    service follows (it holds its terminal or pipes), else the library's attach follows it."""
    req = ex.request
    name = await resolve(ex, id)
    status = await status_of(ex, name)
    if status is None:
        raise ApiError(404, f"No such container: {id}")
    spec = status.spec
    runs = ex.service.runs
    stdin = req.flag("stdin") and spec.open_stdin  # docker ignores stdin=1 without OpenStdin
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    replay: list[bytes] = []
    if req.flag("logs"):
        session = runs.sessions.get(name)
        journal_run = status.running and (session is None or session.stdio is None)
        if not req.flag("stream") or journal_run:
            # the output so far, then (stream) the rest: one journal reader, so no seam
            if journal_run and stdin:
                raise ApiError(
                    400, "logs: with stdin only for a container this service runs with a terminal or stdin"
                )
            await _attach_journal(ex, name, spec.tty, want_out, want_err, req.flag("stream"))
            return
        # a run to come, or one whose terminal or pipes this service holds (its output reaches
        # the journal through a copy that lags, run/journalcopy.py: a piece on its way there at
        # this moment is in neither part): the journal's lines so far, then the live stream,
        # which starts after them (nothing is awaited between that read and joining the run)
        replay = await _journal_pieces(ex, name, spec.tty, want_out, want_err)
        status = await status_of(ex, name)
        if status is None:
            raise ApiError(404, f"No such container: {id}")
    if status.running:
        session = runs.sessions.get(name)
        if session is None:  # started elsewhere (the CLI, an earlier service): the library's attach
            await _attach_running(ex, name, stdin, spec.tty)
            return
        a = Attachment(stdin)
        a.session.set_result(session)
        session.attachments.append(a)
    else:
        session = None
        a = runs.attach(name, stdin)
    keys = detach_keys(ex)
    content_type = STREAM_RAW if spec.tty else STREAM_MUX
    feeding: asyncio.Task[None] | None = None
    try:
        stream = await ex.conn.hijack(content_type)
        for piece in replay:
            await stream.write(piece)
        if stdin:
            feeding = asyncio.ensure_future(_feed_stdin(ex, a, spec.stdin_once, keys))
        while (data := await next_piece(a, ex.conn)) is not None:
            if spec.tty or (data[0] == STDOUT and want_out) or (data[0] == STDERR and want_err):
                await stream.write(data)
        await stream.end()
    finally:
        a.close()  # a payload waiting for room in its queue goes on
        if feeding is not None:
            feeding.cancel()
        if session is not None and a in session.attachments:
            session.attachments.remove(a)
        elif a.session.done() and not a.session.cancelled():
            joined = a.session.result()
            if joined is not None and a in joined.attachments:
                joined.attachments.remove(a)
        runs.detach(name, a)


def _piece(entry: Entry, tty: bool, want_out: bool, want_err: bool) -> bytes | None:
    """A journal line as attach sends it (a frame, raw with a TTY); None when not asked for."""
    if not (want_err if entry.stderr else want_out):
        return None
    text = entry.text
    return text if tty else frame(STDERR if entry.stderr else STDOUT, text)


async def _journal_pieces(ex: Exchange, name: str, tty: bool, want_out: bool, want_err: bool) -> list[bytes]:
    """The container's output in the journal now (attach's ``logs=1`` replay before a run this
    service follows): its last REPLAY_MAX bytes at most, so a long journal cannot fill the
    service's memory."""
    out: collections.deque[bytes] = collections.deque()
    size = 0

    def emit(entry: Entry) -> None:
        nonlocal size
        if (piece := _piece(entry, tty, want_out, want_err)) is not None:
            out.append(piece)
            size += len(piece)
            while size > REPLAY_MAX:
                size -= len(out.popleft())

    await asyncio.to_thread(ex.client.containers.logs, name, emit, False)
    return list(out)


async def _attach_journal(
    ex: Exchange, name: str, tty: bool, want_out: bool, want_err: bool, follow: bool
) -> None:
    """attach ``logs=1`` from the journal alone, as ``logs`` serves it: the output so far and, with
    ``follow`` (attach's ``stream=1``), the rest until the run ends, from one reader (no gap or
    repeat between the two)."""
    stream = await ex.conn.hijack(STREAM_RAW if tty else STREAM_MUX)
    queue, produce = _journal_source(ex, name, lambda e: _piece(e, tty, want_out, want_err), follow)
    await pump(stream, lambda: until_closed(queue.get(), ex.conn), produce)


async def _attach_running(ex: Exchange, name: str, stdin: bool, tty: bool) -> None:
    """Attach to a container this service does not follow: its output from the journal as
    frames (raw with a TTY: the CLI's ``run -dit``), the client's bytes to its stdin FIFO when it
    was started with -i (run/attach.py; a TTY's takes none), up to the detach keys
    (``detachKeys``, docker's default ctrl-p,ctrl-q)."""
    from ...run.attach import Detached

    req = ex.request
    keys = detach_keys(ex)
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    a = Attachment()  # from the journal: a client far behind is cut off (Attachment.send)
    stream = await ex.conn.hijack(STREAM_RAW if tty else STREAM_MUX)

    def out(data: bytes) -> None:
        if want_out:
            a.send(data if tty else frame(STDOUT, data))

    def err(data: bytes) -> None:
        if want_err:
            a.send(data if tty else frame(STDERR, data))

    async def follow() -> None:
        read = ex.conn.read_raw if stdin else None
        try:
            await ex.client.containers.aattach(ex.bus, name, out, err, read, keys)
        except Detached:
            pass
        finally:
            a.end()

    try:
        await pump(stream, lambda: next_piece(a, ex.conn), follow())
    finally:
        a.close()


def detach_keys(ex: Exchange) -> bytes:
    """docker's ``detachKeys`` (default ctrl-p,ctrl-q), as bytes."""
    from ...errors import InvalidArgument
    from ...run.attach import DEFAULT_DETACH_KEYS, parse_detach_keys

    try:
        return parse_detach_keys(ex.request.arg("detachKeys") or DEFAULT_DETACH_KEYS)
    except InvalidArgument as e:
        raise ApiError(400, f"detachKeys: {e.message}") from None


async def _feed_stdin(ex: Exchange, a: Attachment, stdin_once: bool, keys: bytes) -> None:
    """The client's bytes to the payload's stdin, up to the detach keys (they end this client's
    attach; the container runs on); at the client's end of input (its half-close) the payload's
    EOF when the container is StdinOnce (docker's ``run -i``)."""
    from ...run.attach import DetachScanner

    session = await a.session
    stdio = session.stdio if session is not None else None
    scanner = DetachScanner(keys)
    while data := await ex.conn.read_raw():
        data, detach = scanner.feed(data)
        if stdio is not None:
            await stdio.write(data)
        if detach:
            a.end()
            return
    if stdio is not None:
        await stdio.write(scanner.flush())
        if stdin_once:
            await stdio.close_input()


async def resize(ex: Exchange, id: str) -> None:
    """The terminal's window size of a container the service runs with a TTY."""
    name = await resolve(ex, id)
    rows, cols = tty_size(ex)
    session = ex.service.runs.sessions.get(name)
    if session is None or session.stdio is None or not session.stdio.tty:
        status = await status_of(ex, name)
        if status is None or not status.running:
            raise ApiError(409, f"container {name} is not running")
        raise ApiError(409, f"container {name} has no terminal held by this service (created without Tty)")
    session.stdio.resize(rows, cols)
    await ex.client.containers.aresize_tty(ex.bus, name)
    await ex.empty(200)


def tty_size(ex: Exchange) -> tuple[int, int]:
    """docker's ``h`` and ``w``: whole numbers 1-65535."""
    from ...run.stdio import MAX_SIZE

    out = []
    for key in ("h", "w"):
        text = ex.request.arg(key) or ""
        if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_SIZE):
            raise ApiError(400, f"{key}: {text!r} is not a terminal size (1-{MAX_SIZE})")
        out.append(int(text))
    return out[0], out[1]


async def remove(ex: Exchange, id: str) -> None:
    name = await resolve(ex, id)
    try:
        await ex.client.containers.aremove(ex.bus, name, ex.request.flag("force"), ex.request.flag("v"))
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
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("DELETE", "/containers/{id}", remove)
