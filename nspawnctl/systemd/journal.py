"""Reading container output back from journald, through ``journalctl -o json``.

journalctl is the one reader that handles every journal file format from systemd 252 to today;
Python bindings need a compiler or bundle their own libsystemd. Entries are selected by the
container ID that the unit stamps on every record (LogExtraFields) and by ``_TRANSPORT=stdout``,
which keeps the payload's own output and drops systemd's and nspawn's status lines. The payload's
stdout and stderr are separate journal streams (run/streams.py): stdout lines are
recorded at priority info, stderr lines at err, so PRIORITY tells them apart (as with docker's
journald log driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import CommandFailed

LOG_INFO = 6  # syslog's info: the payload's stdout; anything more urgent is its stderr (or the hook's)


@dataclass(frozen=True)
class Entry:
    cursor: str
    realtime_us: int
    message: bytes
    priority: int = LOG_INFO

    @property
    def stderr(self) -> bool:
        """The line came from the payload's stderr (or is one of the hook's warnings and errors)."""
        return self.priority < LOG_INFO


def _journalctl() -> str:
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
    """Ask journald to write out what it has received, so a final read sees the last lines."""
    subprocess.run([_journalctl(), "--sync"], capture_output=True, check=False)


async def follow(
    matches: list[str],
    emit: Callable[[Entry], None],
    until: Awaitable[object],
    *,
    since: str | None = None,
    lines: int | None = None,
) -> None:
    """Emit entries as journald stores them until ``until`` completes (the source has ended), then
    the rest.

    ``journalctl --follow`` waits for the journal files to change (inotify), so a line is emitted
    as soon as journald has it, with no polling. It never ends on its own: once ``until`` is done
    we stop it, sync journald and read whatever arrived after the last entry emitted.
    """
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
        tail = await asyncio.to_thread(read, matches, after_cursor=last)
    else:
        tail = await asyncio.to_thread(read, matches, since=since, lines=lines)
    for entry in tail:
        emit(entry)


def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM journalctl unless asyncio has reaped it.

    os.kill, not proc.terminate(): Popen.terminate() polls first (waitpid WNOHANG), which can reap a
    journalctl that has just exited under asyncio's own child watcher; Python 3.11's watcher then
    logs "Unknown child process pid N, will report returncode 255" on the user's stderr. Until the
    watcher reaps it the pid cannot be reused, so the kill reaches journalctl or its zombie.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it ended a moment ago
            os.kill(proc.pid, signal.SIGTERM)
