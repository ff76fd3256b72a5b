"""Slow and vanished clients of the API's attach and exec (review 15: 1, 2, 4, 6, 11): output is
never piled up without bound nor silently dropped, a run or exec is started once, a client gone
before the start is noticed. Fake boundaries (client, bus, connection) around the real handlers."""

from __future__ import annotations

import asyncio
import os
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from apiserve import serve_one

from nspawnctl.api.http import ApiError
from nspawnctl.api.runs import ATTACH_BACKLOG, Attachment, ExecRecord, Runs, Session


async def _drain(a: Attachment) -> list[bytes]:
    got = []
    while (data := await a.next()) is not None:
        got.append(data)
    return got


def test_a_client_behind_a_journal_run_is_cut_off_never_given_a_gap() -> None:
    from nspawnctl.api.runs import ATTACH_JOURNAL_LIMIT

    async def go() -> tuple[list[bytes], bool]:
        a = Attachment()
        piece = ATTACH_JOURNAL_LIMIT // 8
        sent = [b"%d" % i + b"." * piece for i in range(20)]
        for data in sent[:10]:
            a.send(data)
        early = [await a.next() for _ in range(2)]
        for data in sent[10:]:
            a.send(data)
        a.end()
        got = [x for x in early if x is not None] + await _drain(a)
        assert got == sent[: len(got)]  # a prefix: a cut stream, never one with a hole
        return got, a.cut

    got, cut = asyncio.run(go())
    assert cut and len(got) < 20


def test_a_burst_of_journal_lines_reaches_a_reader_whole() -> None:
    """The journal hands over many lines at once (one drain of sd-journal): not a slow client."""

    async def go() -> tuple[list[bytes], bool]:
        a = Attachment()
        sent = [b"%d\n" % i for i in range(50 * ATTACH_BACKLOG)]
        for data in sent:
            a.send(data)
        a.end()
        got = await _drain(a)
        assert got == sent
        return got, a.cut

    assert not asyncio.run(go())[1]


def test_a_client_behind_a_run_on_our_pipes_makes_the_payload_wait() -> None:
    async def go() -> None:
        a = Attachment()
        session = Session("c", None, False, [a])
        pieces = [b"%d" % i for i in range(ATTACH_BACKLOG + 5)]

        async def write() -> None:
            for piece in pieces:
                await session.put(piece)

        writer = asyncio.ensure_future(write())
        await asyncio.sleep(0.05)
        assert not writer.done() and a.queue.qsize() == ATTACH_BACKLOG  # waits, keeps all
        reader = asyncio.ensure_future(_drain(a))
        await asyncio.wait_for(writer, 5)
        a.end()
        assert await asyncio.wait_for(reader, 5) == pieces

        gone = Attachment()  # a client that left: close() releases a payload waiting for it
        session.attachments = [gone]
        writer = asyncio.ensure_future(write())
        await asyncio.sleep(0.05)
        assert not writer.done()
        gone.close()
        await asyncio.wait_for(writer, 5)

    asyncio.run(go())


def test_the_pump_waits_for_a_slow_reader() -> None:
    """`yes` into a pump whose reader never takes anything: the queue stays at its bound and the
    pump waits (the command then blocks on its full pipe)."""
    from nspawnctl.run.stdio import STDOUT, Stdio

    async def go() -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        yes = subprocess.Popen(["yes"], stdout=w)
        os.close(w)
        queue: asyncio.Queue[bytes] = asyncio.Queue(8)

        async def emit(kind: int, data: bytes) -> None:
            await queue.put(data)

        stdio = Stdio(False, (-1, -1, -1), None, [(r, STDOUT)], _closed={-1})
        pump = asyncio.ensure_future(stdio.pump(emit))
        try:
            await asyncio.sleep(0.2)
            assert queue.qsize() == 8 and not pump.done()
        finally:
            pump.cancel()
            yes.kill()
            yes.wait()
            os.close(r)

    asyncio.run(go())


class _NeverWrites:
    async def write(self, data: bytes) -> None:
        await asyncio.Event().wait()

    async def end(self) -> None:
        pass


def _exchange(runs: Runs, containers: Any, body: Any = None, **conn: Any) -> Any:
    replies: list[int] = []

    async def empty(status: int = 204) -> None:
        replies.append(status)

    return SimpleNamespace(
        service=SimpleNamespace(runs=runs),
        client=SimpleNamespace(containers=containers),
        bus=None,
        request=SimpleNamespace(json=lambda: body or {}, arg=lambda k: None, flag=lambda k: False),
        conn=SimpleNamespace(writer=SimpleNamespace(get_extra_info=lambda key: None), **conn),
        empty=empty,
        replies=replies,
    )


def _record(argv: list[str]) -> ExecRecord:
    return ExecRecord(id="e1", container="c", container_id="i", argv=argv, env=[], workdir=None, user=None)


def test_an_exec_with_a_client_that_never_reads_holds_a_bounded_backlog(monkeypatch: Any) -> None:
    from nspawnctl.api.handlers import execs

    framed = []

    def counting_frame(kind: int, data: bytes) -> bytes:
        framed.append(len(data))
        return data

    monkeypatch.setattr(execs, "frame", counting_frame)

    async def aexec_command(*args: Any, **kw: Any) -> Any:
        return SimpleNamespace(argv=["yes"], env=dict(os.environ))

    async def hijack(content_type: str) -> _NeverWrites:
        return _NeverWrites()

    async def go() -> None:
        runs = Runs()
        runs.execs["e1"] = record = _record(["yes"])
        ex = _exchange(runs, SimpleNamespace(aexec_command=aexec_command), hijack=hijack)
        task = asyncio.ensure_future(execs.start_exec(ex, "e1"))
        await asyncio.sleep(0.3)
        assert not task.done()
        assert len(framed) <= execs.EXEC_BACKLOG + 3  # queued, one being written, one waiting
        os.kill(record.pid, 9)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait(runs.tasks, timeout=10)  # the command's own task: it outlives its client
        assert not record.running and record.exit_code == -9

    asyncio.run(go())


def test_an_exec_started_twice_at_once_runs_once() -> None:
    from nspawnctl.api.handlers import execs

    made = []

    async def aexec_command(*args: Any, **kw: Any) -> Any:
        made.append(1)
        await asyncio.sleep(0.05)
        return SimpleNamespace(argv=["true"], env=dict(os.environ))

    async def go() -> list[Any]:
        runs = Runs()
        runs.execs["e1"] = _record(["true"])
        ex = _exchange(runs, SimpleNamespace(aexec_command=aexec_command), {"Detach": True})
        return await asyncio.gather(
            execs.start_exec(ex, "e1"), execs.start_exec(ex, "e1"), return_exceptions=True
        )

    results = asyncio.run(go())
    assert len(made) == 1
    assert any(isinstance(r, ApiError) and r.status == 409 for r in results)


class _FakeContainers:
    """A Tty container that is not running; astart_attached 'runs' it until ``done`` is set."""

    def __init__(self) -> None:
        self.spec = SimpleNamespace(name="c", id="i", tty=True, open_stdin=True, stdin_once=False)
        self.store = SimpleNamespace(resolve=lambda ref: "c", get=lambda name: self.spec)
        self.starts = 0
        self.done: asyncio.Event = asyncio.Event()

    async def astatuses(self, bus: Any, specs: list[Any]) -> list[Any]:
        await asyncio.sleep(0.01)
        return [SimpleNamespace(spec=self.spec, running=False, state="created")]

    async def astart_attached(self, bus: Any, name: str, *a: Any, started: Any, **kw: Any) -> Any:
        self.starts += 1
        await asyncio.sleep(0.05)
        started(self.spec)
        await self.done.wait()
        return SimpleNamespace(exit_code=0)


def test_two_starts_at_once_of_a_tty_container_start_it_once() -> None:
    from nspawnctl.api.handlers import containers

    async def go() -> tuple[int, list[int], Runs]:
        runs = Runs()
        fake = _FakeContainers()
        ex = _exchange(runs, fake)
        await asyncio.gather(containers.start(ex, "c"), containers.start(ex, "c"))
        session = runs.sessions["c"]
        assert "c" in runs.running
        fake.done.set()
        await asyncio.wait_for(asyncio.gather(*runs.tasks), 5)
        assert "c" not in runs.sessions and session.stdio is not None
        return fake.starts, ex.replies, runs

    starts, replies, runs = asyncio.run(go())
    assert starts == 1 and sorted(replies) == [204, 304]
    assert runs.exits == {"c": 0}


def test_a_client_that_attaches_and_hangs_up_before_the_start_is_let_go() -> None:
    """A half-close (docker's CLI sends it at once without stdin) keeps the attach; a full close
    ends it: the service no longer counts it and can go idle."""
    from nspawnctl.api.handlers.containers import register
    from nspawnctl.api.routing import Router

    router = Router()
    register(router)

    async def main() -> None:
        fake = _FakeContainers()
        fake.spec.open_stdin = False
        runs = Runs()
        task, creader, cwriter = await serve_one(router, SimpleNamespace(containers=fake), runs)
        cwriter.write(
            b"POST /containers/c/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        await cwriter.drain()
        await creader.readuntil(b"\r\n\r\n")
        cwriter.write_eof()
        await asyncio.sleep(0.2)
        assert runs.attachments.get("c") and runs.busy  # a half-close is no hang-up
        cwriter.close()
        await asyncio.wait_for(task, 5)
        assert not runs.attachments and not runs.busy

    asyncio.run(main())


@pytest.mark.parametrize("running", [True, False])
def test_the_library_start_attached_leaves_a_run_it_did_not_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, running: bool
) -> None:
    """A running unit is refused before its exit record or mounts are touched; a concurrent start
    that wins (UnitExists) is not undone (an --rm container is not removed under it)."""
    from nspawnctl.client import Client
    from nspawnctl.config import Paths
    from nspawnctl.errors import ContainerRunning
    from nspawnctl.systemd.bus import BusError

    c = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store")).containers
    log: list[str] = []
    spec = SimpleNamespace(name="web", auto_remove=True)

    async def busy(name: str) -> object:  # the unit runs (or its start is queued)
        return object() if running else None

    async def attached(*a: Any) -> Any:
        log.append("start")
        raise BusError("org.freedesktop.systemd1.UnitExists", "Unit nspawnctl-web.service was already loaded")

    async def undo(bus: Any, spec: Any) -> None:
        log.append("undo")

    monkeypatch.setattr(c.store, "get", lambda name: spec)
    monkeypatch.setattr(c.store, "clear_exit", lambda name: log.append("clear_exit"))
    monkeypatch.setattr(c, "_runtime", lambda bus: SimpleNamespace(busy=busy))
    monkeypatch.setattr(c, "_attached", attached)
    monkeypatch.setattr(c, "_undo_attached", undo)
    with pytest.raises(ContainerRunning):
        asyncio.run(c.astart_attached(None, "web", print, print))  # type: ignore[arg-type]
    assert log == ([] if running else ["clear_exit", "start"])
