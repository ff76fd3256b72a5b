"""Reading container output back from journald: in-process through the host's libsystemd
(systemd/sdjournal.py), ``journalctl -o json`` only where that cannot serve.

Entries are selected by the container ID that the unit stamps on every record (LogExtraFields)
and by ``_TRANSPORT=stdout``, which keeps the payload's own output and drops systemd's and
nspawn's status lines. The payload's stdout and stderr are separate journal streams
(run/streams.py): stdout lines are recorded at priority info, stderr lines at err, so PRIORITY
tells them apart (as with docker's journald log driver). Lines come in the journal's order,
which is the order journald received them: stdout and stderr lines written close together may
be recorded in another order than written (two streams), as with docker's journald driver.

No ``journalctl`` process runs on an attached ``run``'s path or for start errors; journalctl
remains the reader when libsystemd cannot be loaded and for ``--since`` forms other than
``@SECONDS`` and relative ones (``logs --since '2026-01-02 10:00'``: journalctl parses dates).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from ..errors import CommandFailed, SystemdError
from . import sdjournal

TYPE_CHECKING = False  # asyncio and typing cost imports the run hook's read does not need
if TYPE_CHECKING:
    import asyncio

LOG_INFO = 6  # syslog's info: the payload's stdout; anything more urgent is its stderr (or the hook's)


@dataclass(frozen=True)
class Entry:
    """One journal entry of a container's output: a line of its stdout or stderr."""

    cursor: str
    realtime_us: int
    message: bytes
    priority: int = LOG_INFO
    newline: bool = True  # the payload's line ended with a line feed (not so for ``printf x``)

    @property
    def text(self) -> bytes:
        """The payload's bytes as it wrote them: the line and its line feed, if it had one."""
        return self.message + b"\n" if self.newline else self.message

    @property
    def stderr(self) -> bool:
        """The line came from the payload's stderr (or is one of the hook's warnings and errors)."""
        return self.priority < LOG_INFO


def _journalctl() -> str:
    import shutil

    path = shutil.which("journalctl")
    if path is None:
        raise CommandFailed("journalctl is not installed", hint="nspawnctl needs systemd's journal")
    return path


def parse_line(line: bytes) -> Entry | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    msg = data.get("MESSAGE")
    if isinstance(msg, list):  # non-UTF-8 payload output comes as an array of byte values
        raw = bytes(msg) if all(isinstance(b, int) for b in msg) else "\n".join(map(str, msg)).encode()
    elif msg is None:
        raw = b""
    else:
        raw = str(msg).encode()
    prio = str(data.get("PRIORITY", ""))
    return Entry(
        str(data.get("__CURSOR", "")),
        int(data.get("__REALTIME_TIMESTAMP", "0")),
        raw,
        int(prio) if prio.isdigit() else LOG_INFO,
        "_LINE_BREAK" not in data,
    )


def _argv(
    matches: list[str],
    *,
    since: str | None = None,
    lines: int | None = None,
    after_cursor: str | None = None,
    priority: str | None = None,
) -> list[str]:
    argv = [_journalctl(), "-o", "json", "--no-pager", "--all"]
    if priority:
        argv.append(f"--priority={priority}")
    if since:
        argv.append(f"--since={since}")
    if lines is not None:
        argv.append(f"--lines={lines}")
    if after_cursor:
        argv.append(f"--after-cursor={after_cursor}")
    return argv + matches


def read(
    matches: list[str],
    *,
    since: str | None = None,
    lines: int | None = None,
    after_cursor: str | None = None,
    priority: str | None = None,
) -> list[Entry]:
    """The matching entries there are now (journalctl's options: ``since``, ``lines`` from the end,
    ``after_cursor``, ``priority`` and more urgent)."""
    try:
        view = _open(matches, since=since, lines=lines, after_cursor=after_cursor, priority=priority)
    except sdjournal.JournalError:
        view = None
    if view is None:
        return _read_journalctl(
            matches, since=since, lines=lines, after_cursor=after_cursor, priority=priority
        )
    with view.journal:
        try:
            return list(view.records())
        except sdjournal.JournalError:  # nothing is returned yet: journalctl reads it all again
            pass
    return _read_journalctl(matches, since=since, lines=lines, after_cursor=after_cursor, priority=priority)


@dataclass
class _View:
    """An open journal positioned where a read starts, and the ``since`` it still has to apply
    (seeking by time only gets near: files interleave)."""

    journal: sdjournal.Journal
    since_us: int | None

    def entries(self) -> Iterator[Entry]:
        """The entries; a read failing midway is a SystemdError (what came before may have been
        shown already: no fallback then)."""
        try:
            yield from self.records()
        except sdjournal.JournalError as e:
            raise SystemdError(
                f"cannot read the journal: {e.strerror or e}",
                hint="check journald's files: journalctl --verify",
            ) from e

    def records(self) -> Iterator[Entry]:
        """The entries; JournalError when sd-journal fails midway."""
        for rec in self.journal.entries():
            if self.since_us is not None and rec.realtime_us < self.since_us:
                continue
            prio = LOG_INFO if rec.priority is None else rec.priority
            yield Entry(rec.cursor, rec.realtime_us, rec.message, prio, rec.newline)


def _open(
    matches: list[str],
    *,
    since: str | None = None,
    lines: int | None = None,
    after_cursor: str | None = None,
    priority: str | None = None,
) -> _View | None:
    """The in-process reader for these options; None when one of them needs journalctl."""
    start = sdjournal.since_us(since, int(time.time() * 1_000_000)) if since else None
    prio = sdjournal.priority_matches(priority) if priority else []
    if (since and start is None) or prio is None:
        return None
    journal = sdjournal.Journal(matches + prio)
    try:
        if after_cursor:
            journal.seek_after_cursor(after_cursor)
        elif lines is not None:
            journal.seek_last(lines)
        elif start is not None:
            journal.seek_realtime(start)
        else:
            journal.seek_head()
    except BaseException:
        journal.close()
        raise
    return _View(journal, start)


def _read_journalctl(
    matches: list[str],
    *,
    since: str | None = None,
    lines: int | None = None,
    after_cursor: str | None = None,
    priority: str | None = None,
) -> list[Entry]:
    import subprocess

    argv = _argv(matches, since=since, lines=lines, after_cursor=after_cursor, priority=priority)
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0 and not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip()
        raise CommandFailed(
            f"journalctl failed: {err}", hint="check --since (e.g. 10m, 2h, '2026-01-01 12:00')"
        )
    return [e for e in map(parse_line, proc.stdout.splitlines()) if e is not None]


def errors_of(unit: str, invocation: str | None = None, since_us: int | None = None) -> list[str]:
    """systemd-nspawn's own error messages for one start of a unit: what to tell the user when the
    container could not run (they are in the journal, not on anyone's terminal)."""
    matches = [f"_SYSTEMD_UNIT={unit}", "_TRANSPORT=journal"]
    if invocation:
        matches.append(f"_SYSTEMD_INVOCATION_ID={invocation}")
    sync()
    since = f"@{since_us / 1e6:.6f}" if since_us and not invocation else None
    try:
        entries = read(matches, priority="err", since=since)
    except CommandFailed:
        return []
    return [e.message.decode(errors="replace") for e in entries]


def sync() -> None:
    """Ask journald to write out what it has received, so a final read sees the last lines
    (Varlink, in-process; ``journalctl --sync`` where journald has no Varlink socket)."""
    import shutil
    import subprocess

    try:
        sdjournal.synchronize()
    except OSError:
        path = shutil.which("journalctl")
        if path is not None:
            subprocess.run([path, "--sync"], capture_output=True, check=False)


async def follow(
    matches: list[str],
    emit: Callable[[Entry], None],
    until: Awaitable[object],
    *,
    since: str | None = None,
    lines: int | None = None,
    closing: list[asyncio.Future[None]] | None = None,
) -> None:
    """Emit entries as journald stores them until ``until`` completes (the source has ended), then
    the rest.

    The journal's fd (inotify on its files and directories: a rotation is seen too) wakes the
    event loop when journald has written, with no polling. Once ``until`` is done journald is
    synced (it has then handled every line the source wrote before it ended) and whatever
    arrived after the last entry emitted is read. With ``closing`` the journal's close (see
    :func:`_close`) is not awaited but appended there, for the caller to await after its own
    next steps (a foreground run's unref); it starts once journald has synced and a second reader
    has found the last entry emitted, and that reader does the last read (see ``last_read``).
    """
    try:
        view = _open(matches, since=since, lines=lines)
        if view is not None:
            try:
                view.journal.fileno()  # inotify: fails when the instances are used up
            except BaseException:
                view.journal.close()
                raise
    except sdjournal.JournalError:
        view = None
    if view is None:
        await _follow_journalctl(matches, emit, until, since=since, lines=lines)
        return
    followed = view
    handed = False

    async def last_read(cursor: str | None) -> bool:
        """With ``closing``, once journald has synced: a second reader, which watches nothing
        (closed at once), reads what came after ``cursor``, the last entry emitted, while the
        followed reader's close (its inotify fd: an fsnotify grace period, 15-20 ms) goes on in a
        thread. False: no such read here (the followed reader does it)."""
        nonlocal handed
        if closing is None or (cursor is None and (since is not None or lines is not None)):
            return False  # nothing emitted yet: --since/--tail would not find the same start
        import asyncio

        # file I/O (the journal's files opened and mapped): not on the event loop
        opening = asyncio.ensure_future(asyncio.to_thread(_open_after, matches, cursor, followed.since_us))
        try:
            tail = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_unused)  # the thread still opens it
            raise
        except sdjournal.JournalError as e:
            raise SystemdError(f"cannot read the journal: {e.strerror or e}") from e
        if tail is None:
            return False  # the followed reader goes on from the cursor: nothing is shown twice
        handed = True
        closing.append(asyncio.ensure_future(_close(followed.journal)))
        with tail.journal:
            for entry in tail.entries():
                emit(entry)
        return True

    try:
        await _follow_view(view, emit, until, last_read)
    except BaseException:
        if not handed:
            view.journal.close()
        raise
    if handed:
        return
    if closing is None:
        await _close(view.journal)
    else:
        import asyncio

        closing.append(asyncio.ensure_future(_close(view.journal)))


def _open_after(matches: list[str], cursor: str | None, since_us: int | None) -> _View | None:
    """A reader (no inotify) positioned after the entry ``cursor`` names (from the start without
    one), keeping the followed reader's ``since_us``; None when that entry is not in the files
    it finds (its file vacuumed, or flushed from /run to /var): it would start near there, and
    could show again what was shown."""
    journal = sdjournal.Journal(matches)
    try:
        if cursor is None:
            journal.seek_head()
        elif not journal.seek_after_cursor(cursor):
            journal.close()
            return None
    except BaseException:
        journal.close()
        raise
    return _View(journal, since_us)


def _close_unused(opened: asyncio.Future[_View | None]) -> None:
    """Close the reader a cancelled last read had a thread open."""
    if not opened.cancelled() and opened.exception() is None and (view := opened.result()) is not None:
        view.journal.close()


async def _close(journal: sdjournal.Journal) -> None:
    """Close a followed journal in a thread: closing its inotify fd waits for the kernel's
    fsnotify grace period (measured 0-21 ms), which the event loop need not sit through; the
    caller's other work (the exit's read, a removal) goes on meanwhile. The thread finishes the
    close even when the caller is cancelled."""
    import asyncio

    await asyncio.to_thread(journal.close)


async def _sync_async() -> None:
    import asyncio

    try:
        await sdjournal.synchronize_async()
    except OSError:
        await asyncio.to_thread(sync)


async def _follow_view(
    view: _View,
    emit: Callable[[Entry], None],
    until: Awaitable[object],
    last_read: Callable[[str | None], Awaitable[bool]] | None = None,
) -> None:
    """Follow ``view`` until ``until`` completes, then read the rest after journald's sync; through
    ``last_read`` (given the last entry's cursor) when it takes that read over."""
    import asyncio

    loop = asyncio.get_running_loop()
    journal = view.journal
    fd = journal.fileno()  # before the first read: no change is missed
    failed: asyncio.Future[object] = loop.create_future()
    cursor: str | None = None

    def drain() -> None:
        nonlocal cursor
        for entry in view.entries():
            emit(entry)
            cursor = entry.cursor or cursor

    def changed() -> None:
        try:
            journal.process()
            drain()
        except BaseException as e:  # emit's (a closed stdout) or the journal's: end follow with it
            loop.remove_reader(fd)
            if not failed.done():
                failed.set_exception(e)

    ended: asyncio.Future[object] = asyncio.ensure_future(until)
    loop.add_reader(fd, changed)
    try:
        drain()
        while not ended.done():
            await asyncio.wait(
                {ended, failed}, timeout=journal.timeout(), return_when=asyncio.FIRST_COMPLETED
            )
            if failed.done():
                failed.result()
            if not ended.done():  # woken by the timeout sd-journal asked for (not on local files)
                changed()
        ended.result()  # raise what the source's watcher raised
    finally:
        loop.remove_reader(fd)
        ended.cancel()
        if not failed.done():
            failed.cancel()
    await _sync_async()
    if last_read is not None and await last_read(cursor):
        return
    journal.process()  # files journald opened meanwhile (rotation)
    drain()


async def _follow_journalctl(
    matches: list[str],
    emit: Callable[[Entry], None],
    until: Awaitable[object],
    *,
    since: str | None = None,
    lines: int | None = None,
) -> None:
    """:func:`follow` through ``journalctl --follow`` (libsystemd not loadable, or a ``since`` only
    journalctl parses)."""
    import asyncio

    argv = _argv(matches, since=since, lines=lines)
    # --no-tail: on systemd 252/253 -f would otherwise wait after 10 backlog lines.
    argv[1:1] = ["--follow"] if lines is not None else ["--follow", "--no-tail"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    stdout = proc.stdout
    assert stdout is not None
    last = ""

    async def pump() -> None:
        nonlocal last
        while line := await stdout.readline():
            entry = parse_line(line)
            if entry is not None:
                emit(entry)
                last = entry.cursor or last

    reader = asyncio.ensure_future(pump())
    ended = asyncio.ensure_future(until)
    try:
        await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            ended.result()  # raise what the source's watcher raised
        _terminate(proc)
        await reader  # what journalctl printed before it stopped
    finally:
        for task in (reader, ended):
            task.cancel()
        _terminate(proc)
        await proc.wait()
    await asyncio.to_thread(sync)
    if last:
        tail = await asyncio.to_thread(_read_journalctl, matches, after_cursor=last)
    else:
        tail = await asyncio.to_thread(_read_journalctl, matches, since=since, lines=lines)
    for entry in tail:
        emit(entry)


def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM journalctl unless asyncio has reaped it.

    os.kill, not proc.terminate(): Popen.terminate() polls first (waitpid WNOHANG), which can reap a
    journalctl that has just exited under asyncio's own child watcher; Python 3.11's watcher then
    logs "Unknown child process pid N, will report returncode 255" on the user's stderr. Until the
    watcher reaps it the pid cannot be reused, so the kill reaches journalctl or its zombie.
    """
    import contextlib
    import signal

    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it ended a moment ago
            os.kill(proc.pid, signal.SIGTERM)
