"""Download progress on stderr: a bar with bytes, rate and ETA on a terminal, nothing otherwise.

rich (typer's companion) draws the bar and is imported only when a bar is shown; without rich a
plain carriage-return line does. On an error or Ctrl-C the bar is taken off the screen, so the
error message is not glued to a half-drawn line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from .output import human_size

if TYPE_CHECKING:
    from ..fetch.http import ProgressFn

__all__ = ["progress_for"]

_INTERVAL = 0.1  # seconds between screen updates; the callback runs once per chunk read


@contextlib.contextmanager
def progress_for(label: str) -> Iterator[ProgressFn | None]:
    """A progress callback for one download labelled ``label``; None (quiet) when stderr is no terminal."""
    stream = sys.stderr
    if not _is_tty(stream):
        yield None
        return
    renderer: Callable[[str, IO[str]], contextlib.AbstractContextManager[ProgressFn]]
    renderer = _rich if importlib.util.find_spec("rich") is not None else _plain
    with renderer(label, stream) as update:
        yield update


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Throttle:
    """Remembers the latest figures and says when the screen is due for an update."""

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None
        self.started = False
        self._next = 0.0

    def due(self, done: int, total: int | None) -> bool:
        self.done, self.total, self.started = done, total, True
        now = time.monotonic()
        if now >= self._next or (total is not None and done >= total):
            self._next = now + _INTERVAL
            return True
        return False


@contextlib.contextmanager
def _rich(label: str, stream: IO[str]) -> Iterator[ProgressFn]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        redirect_stdout=False,  # stdout may be a pipe carrying the result; leave it alone
    )
    task = progress.add_task(label, total=None)
    throttle = _Throttle()
    started = False

    def update(done: int, total: int | None) -> None:
        nonlocal started
        if throttle.due(done, total):
            progress.update(task, completed=done, total=total)
        if not started:  # drawn from the first figures on: a download that never starts shows nothing
            progress.start()
            started = True

    finished = False
    try:
        yield update
        finished = True
    finally:
        if started:
            if finished:
                # The final figures; an unknown size becomes what was read, so the bar ends full.
                total = throttle.total if throttle.total is not None else throttle.done
                progress.update(task, completed=throttle.done, total=total)
            else:
                progress.live.transient = True  # erase the bar: the error message comes next
            progress.stop()


@contextlib.contextmanager
def _plain(label: str, stream: IO[str]) -> Iterator[ProgressFn]:
    """One line rewritten in place with ``\\r``: label, bytes, percentage, rate, ETA."""
    start = time.monotonic()
    throttle = _Throttle()
    width = 0

    def draw() -> None:
        nonlocal width
        done, total = throttle.done, throttle.total
        elapsed = max(time.monotonic() - start, 1e-6)
        rate = done / elapsed
        text = f"{label}  {human_size(done)}"
        if total:
            text += f"/{human_size(total)} {min(100, done * 100 // total):3d}%"
        text += f"  {human_size(int(rate))}/s"
        if total and rate > 0 and done < total:
            text += f"  ETA {_clock((total - done) / rate)}"
        stream.write("\r" + text.ljust(width))
        stream.flush()
        width = len(text)

    def update(done: int, total: int | None) -> None:
        if throttle.due(done, total):
            draw()

    finished = False
    try:
        yield update
        finished = True
    finally:
        if finished and throttle.started:
            draw()
            stream.write("\n")
        elif width:
            stream.write("\r" + " " * width + "\r")
        stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
