"""The in-process journal reader's pure parts (journalctl's option forms, the raw field data, the
Varlink reply), the Varlink call against a stand-in journald socket, and journal.follow's loop
over a stand-in journal (woken through its fd, drained after the source ends and journald is
synced). The real journal is read in tests/e2e/test_streams.py."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nspawnctl.errors import NspawnctlError
from nspawnctl.systemd import journal, sdjournal


def test_priority_matches_are_journalctls() -> None:
    assert sdjournal.priority_matches("err") == [f"PRIORITY={n}" for n in range(4)]
    assert sdjournal.priority_matches("3") == [f"PRIORITY={n}" for n in range(4)]
    assert sdjournal.priority_matches("warning..err") == ["PRIORITY=3", "PRIORITY=4"]
    assert sdjournal.priority_matches("emerg") == ["PRIORITY=0"]
    assert sdjournal.priority_matches("loud") is None
    assert sdjournal.priority_matches("9") is None
    assert sdjournal.priority_matches("err..x") is None


def test_since_forms_nspawnctl_passes() -> None:
    now = 1_000_000_000_000
    assert sdjournal.since_us("@1700000000.25", now) == 1_700_000_000_250_000
    assert sdjournal.since_us("-10min", now) == now - 600_000_000
    assert sdjournal.since_us("-2h", now) == now - 7_200_000_000
    assert sdjournal.since_us("-30s", now) == now - 30_000_000
    assert sdjournal.since_us("-1d", now) == now - 86_400_000_000
    assert sdjournal.since_us("5 min ago", now) == now - 300_000_000
    # dates and words: journalctl parses them
    assert sdjournal.since_us("2026-01-02 10:00", now) is None
    assert sdjournal.since_us("yesterday", now) is None
    assert sdjournal.since_us("@x", now) is None
    for huge in ("@inf", "@-inf", "@nan", "@1e400"):
        assert sdjournal.since_us(huge, now) is None  # journalctl says what it thinks of it
    assert sdjournal.since_us("-tenmin", now) is None


def test_records_keep_binary_data_and_tell_absent_priority() -> None:
    rec = sdjournal.record_from_fields("c", 7, b"MESSAGE=\xff\x00a=b", b"PRIORITY=3")
    assert (rec.message, rec.priority, rec.realtime_us) == (b"\xff\x00a=b", 3, 7)
    old = sdjournal.record_from_fields("c", 7, b"MESSAGE=x", None)
    assert old.priority is None
    assert sdjournal.record_from_fields("c", 7, None, b"PRIORITY=").message == b""


def test_a_line_without_its_line_feed_is_given_back_without_one() -> None:
    """``printf x``: journald stores x with _LINE_BREAK=eof; docker's clients count the bytes."""
    from nspawnctl.systemd import journal

    rec = sdjournal.record_from_fields("c", 7, b"MESSAGE=x", None, b"_LINE_BREAK=eof")
    assert rec.newline is False
    assert sdjournal.record_from_fields("c", 7, b"MESSAGE=x", None).newline is True
    assert journal.Entry("c", 7, b"x", newline=False).text == b"x"
    assert journal.Entry("c", 7, b"x").text == b"x\n"
    parsed = journal.parse_line(b'{"__CURSOR":"c","MESSAGE":"x","_LINE_BREAK":"eof"}')
    assert parsed is not None and parsed.text == b"x"


def test_varlink_replies() -> None:
    sdjournal.check_varlink_reply(b'{"parameters":{}}')
    with pytest.raises(OSError, match="NotSupportedByNamespaces"):
        sdjournal.check_varlink_reply(b'{"error":"io.systemd.Journal.NotSupportedByNamespaces"}')
    with pytest.raises(OSError, match="not JSON"):
        sdjournal.check_varlink_reply(b"{")


@pytest.fixture
def varlink(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A stand-in journald Varlink socket: records each request, answers ``{"parameters":{}}``."""
    path = str(tmp_path / "io.systemd.journal")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\0"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                got.append(data)
                conn.sendall(b'{"parameters":{}}\0')

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, got
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()


def test_synchronize_speaks_varlink(varlink: tuple[str, list[bytes]]) -> None:
    path, got = varlink
    sdjournal.synchronize(path)
    asyncio.run(sdjournal.synchronize_async(path))
    want = b'{"method":"io.systemd.Journal.Synchronize","parameters":{}}\0'
    assert got == [want, want]


def test_synchronize_without_journald_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        sdjournal.synchronize(str(tmp_path / "none"))
    with pytest.raises(OSError):
        asyncio.run(sdjournal.synchronize_async(str(tmp_path / "none")))


class FakeJournal:
    """What journal.follow uses of sdjournal.Journal: entries appear when ``add`` writes them and
    pokes the fd (as journald's writes wake inotify); ``process`` takes the wake-up in."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        self.queue: list[sdjournal.Record] = []
        self.synced_only: list[sdjournal.Record] = []  # seen only after a sync (no wake-up)
        self.closed = False
        self.known: set[str] = set()  # the cursors seek_after_cursor finds (a second reader's)
        self.sought: list[str] = []

    def seek_after_cursor(self, cursor: str) -> bool:
        self.sought.append(cursor)
        return cursor in self.known

    def seek_head(self) -> None:
        pass

    def add(self, message: bytes, priority: int | None = 6) -> None:
        self.queue.append(sdjournal.Record(f"c{len(self.queue)}", 10, message, priority))
        os.write(self.wfd, b"x")

    def entries(self) -> Iterator[sdjournal.Record]:
        while self.queue:
            yield self.queue.pop(0)

    def fileno(self) -> int:
        return self.rfd

    def process(self) -> int:
        try:
            os.set_blocking(self.rfd, False)
            os.read(self.rfd, 4096)
        except BlockingIOError:
            pass
        self.queue += self.synced_only
        self.synced_only = []
        return 1

    def timeout(self) -> float | None:
        return None

    def close(self) -> None:
        self.closed = True
        os.close(self.rfd)
        os.close(self.wfd)

    def __enter__(self) -> FakeJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_follow_is_woken_by_the_journal_and_drains_after_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJournal()
    synced: list[bool] = []

    async def sync() -> None:
        synced.append(True)

    monkeypatch.setattr(journal, "_sync_async", sync)
    view = journal._View(fake, None)  # type: ignore[arg-type]
    got: list[tuple[bool, bytes]] = []
    fake.add(b"backlog")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def later() -> None:
            fake.add(b"o1")
            fake.add(b"e1", 3)

        def end() -> None:
            assert got == [(False, b"backlog"), (False, b"o1"), (True, b"e1")]  # no polling needed
            fake.synced_only.append(sdjournal.Record("late", 11, b"last", None))
            ended.set_result(None)

        loop.call_later(0.05, later)
        loop.call_later(0.2, end)
        await journal._follow_view(view, lambda e: got.append((e.stderr, e.message)), ended)

    asyncio.run(asyncio.wait_for(main(), 10))
    assert synced == [True]
    assert got[-1] == (False, b"last")  # arrived after the source ended: read after the sync


def _follow_with_a_second_reader(
    monkeypatch: pytest.MonkeyPatch, second: FakeJournal, since_us: int | None = None
) -> tuple[FakeJournal, list[bytes], list[str]]:
    """journal.follow with ``closing`` (a foreground run's) over a followed FakeJournal and
    ``second`` as the reader journal opens after the sync; the followed one's close is slow (the
    fsnotify grace period). What was emitted, and the events in order."""
    followed = FakeJournal()
    events: list[str] = []
    loop_thread = threading.get_ident()
    monkeypatch.setattr(journal, "_open", lambda matches, **kw: journal._View(followed, since_us))  # type: ignore[arg-type]

    def second_reader(matches: list[str]) -> FakeJournal:
        events.append("second opened" + (" on the loop" if threading.get_ident() == loop_thread else ""))
        return second

    close_followed = followed.close
    started, released = threading.Event(), threading.Event()

    def slow_close() -> None:
        events.append("close starts" + (" on the loop" if threading.get_ident() == loop_thread else ""))
        started.set()
        released.wait(5)  # the grace period: until the caller's next step is done
        close_followed()
        events.append("closed")

    async def sync() -> None:
        events.append("sync")
        second.queue.append(sdjournal.Record("c9", 11, b"late", None))
        followed.synced_only.append(sdjournal.Record("c9", 11, b"late", None))

    monkeypatch.setattr(journal.sdjournal, "Journal", second_reader)
    monkeypatch.setattr(journal, "_sync_async", sync)
    monkeypatch.setattr(followed, "close", slow_close)
    got: list[bytes] = []
    closing: list[asyncio.Future[None]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        loop.call_later(0.05, followed.add, b"o1")
        loop.call_later(0.2, ended.set_result, None)
        await journal.follow(["M=1"], lambda e: got.append(e.message), ended, closing=closing)
        events.append("follow returned")
        # the caller's next step (a foreground run's unref), while the close goes on
        assert await asyncio.to_thread(started.wait, 5)
        events.append("next step done")
        released.set()
        assert len(closing) == 1
        await closing[0]

    asyncio.run(asyncio.wait_for(main(), 10))
    assert followed.closed and second.closed
    return followed, got, events


def test_follow_with_closing_reads_the_rest_with_a_second_reader_while_the_first_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A foreground run's follow: once the source has ended and journald has synced, a second
    reader (no inotify: closed at once), opened in a thread, reads what came after the last
    entry emitted, while the followed reader's close (its inotify fd waits out an fsnotify grace
    period) runs in a thread beside the caller's next step, which follow does not wait for."""
    second = FakeJournal()
    second.known = {"c0"}
    _, got, events = _follow_with_a_second_reader(monkeypatch, second)
    assert got == [b"o1", b"late"]  # once each
    assert second.sought == ["c0"]
    assert events == [
        "sync",
        "second opened",  # not " on the loop"
        "follow returned",
        "close starts",  # in a thread, beside the next step
        "next step done",
        "closed",
    ], events


def test_follow_falls_back_to_the_followed_reader_when_the_cursor_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last entry emitted is not in the files a second reader finds (its file vacuumed,
    flushed from /run to /var): it would start near there and show lines again, so the followed reader, still
    open, reads the rest; its close is then handed to the caller."""
    second = FakeJournal()  # knows no cursor: it would start at the nearest entry, o1 again
    second.queue.append(sdjournal.Record("c0-copy", 10, b"o1", None))
    _, got, events = _follow_with_a_second_reader(monkeypatch, second)
    assert got == [b"o1", b"late"]  # the followed reader's "late", nothing twice
    assert second.sought == ["c0"] and events.count("sync") == 1
    assert events.index("follow returned") < events.index("close starts") < events.index("closed")


def test_the_second_reader_applies_since_as_the_followed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``logs -f --since``: an entry after the cursor but older than since (files interleave) is
    skipped by the second reader too."""
    second = FakeJournal()
    second.known = {"c0"}
    second.queue.append(sdjournal.Record("c8", 4, b"older than since", None))
    _, got, _ = _follow_with_a_second_reader(monkeypatch, second, since_us=10)
    assert got == [b"o1", b"late"]


def test_follow_ends_with_the_error_of_emit(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJournal()
    monkeypatch.setattr(journal, "_sync_async", lambda: asyncio.sleep(0))
    view = journal._View(fake, None)  # type: ignore[arg-type]

    def emit(entry: journal.Entry) -> None:
        raise BrokenPipeError("stdout closed")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, fake.add, b"o1")
        await journal._follow_view(view, emit, loop.create_future())

    with pytest.raises(BrokenPipeError):
        asyncio.run(asyncio.wait_for(main(), 10))


def test_view_applies_since_to_what_a_seek_gets_near() -> None:
    fake = FakeJournal()
    fake.queue = [sdjournal.Record("a", 5, b"old", 6), sdjournal.Record("b", 20, b"new", None)]
    got = list(journal._View(fake, 10).entries())  # type: ignore[arg-type]
    assert [(e.message, e.priority, e.stderr) for e in got] == [(b"new", journal.LOG_INFO, False)]
    fake.close()


class BrokenJournal(FakeJournal):
    """sd_journal_next fails after the first entry (a damaged file)."""

    def entries(self) -> Iterator[sdjournal.Record]:
        yield sdjournal.Record("a", 10, b"first", 6)
        raise sdjournal.JournalError(5, "sd_journal_next: Input/output error")


def test_a_read_failing_midway_in_a_follow_is_an_nspawnctl_error() -> None:
    fake = BrokenJournal()
    entries = journal._View(fake, None).entries()  # type: ignore[arg-type]
    assert next(entries).message == b"first"
    with pytest.raises(NspawnctlError, match="cannot read the journal: sd_journal_next: Input/output error"):
        next(entries)
    fake.close()


def test_a_read_failing_midway_falls_back_to_journalctl(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = BrokenJournal()
    monkeypatch.setattr(journal, "_open", lambda matches, **options: journal._View(fake, None))  # type: ignore[arg-type]
    again = [journal.Entry("a", 10, b"first"), journal.Entry("b", 11, b"second")]
    monkeypatch.setattr(journal, "_read_journalctl", lambda matches, **options: again)
    assert journal.read(["_SYSTEMD_UNIT=x.service"]) == again
    assert fake.closed


def test_the_binding_calls_libsystemd_on_this_machine() -> None:
    """Every sd-journal call the reader makes, on whatever journal this machine has (none, on a
    machine without journald): a wrong signature would fail here, not in a container run."""
    try:
        j = sdjournal.Journal([f"NSPAWNCTL_UNIT_TEST={os.getpid()}-nothing"])
    except sdjournal.JournalError as e:
        pytest.skip(f"no libsystemd: {e}")
    with j:
        for seek in (j.seek_head, lambda: j.seek_realtime(1), lambda: j.seek_last(3), j.seek_tail_for_new):
            seek()
            assert list(j.entries()) == []
        with pytest.raises(sdjournal.JournalError):
            j.seek_after_cursor("not a cursor")
        unknown = f"s={'0' * 32};i=1;b={'0' * 32};m=1;t=1;x=1"
        assert j.seek_after_cursor(unknown) is False and list(j.entries()) == []
        assert isinstance(j.fileno(), int) and j.fileno() >= 0
        assert j.process() in (sdjournal.NOP, sdjournal.APPEND, sdjournal.INVALIDATE)
        assert j.timeout() is None or j.timeout() >= 0
    assert journal.read([f"NSPAWNCTL_UNIT_TEST={os.getpid()}-nothing"], lines=5, priority="err") == []


def test_a_reader_opened_for_a_cancelled_last_read_is_closed() -> None:
    """The thread opening the second reader cannot be stopped: what it opens is closed when done."""
    fake = FakeJournal()

    async def main() -> None:
        opened: asyncio.Future[journal._View | None] = asyncio.get_running_loop().create_future()
        opened.add_done_callback(journal._close_unused)
        opened.set_result(journal._View(fake, None))  # type: ignore[arg-type]
        await asyncio.sleep(0)

    asyncio.run(main())
    assert fake.closed
