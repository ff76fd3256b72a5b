"""A payload's stdin, stdout and stderr held by the caller (the Docker API's attach, exec -it):
a pseudo-terminal, or pipes, whose far ends go to the unit (or the exec's process) and whose near
ends the caller reads and writes asynchronously.

With a terminal the payload gets our pty's slave as all three and nspawn runs with
``--console=interactive`` (``read-only`` without stdin): nspawn forwards between it and the
container's own console pty, copying our slave's window size. A resize sets the size on our
master; nspawn is not in that terminal's session (systemd hands fds over, it does not make a
controlling terminal), so the caller then sends nspawn SIGWINCH (see Client.aresize_tty), on
which nspawn copies the size again. Without a terminal, stdin is a pipe (its write end ours:
closing it is the payload's EOF) and stdout, stderr a pipe each.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

DEFAULT_SIZE = (24, 80)
MAX_SIZE = 0xFFFF  # struct winsize holds unsigned shorts
READ_SIZE = 65536
STDOUT, STDERR = 1, 2
EOT = b"\x04"  # ^D: a terminal's end of input (the payload's line discipline reads it as EOF)


def set_size(fd: int, rows: int, cols: int) -> None:
    """The terminal's window size (TIOCSWINSZ)."""
    if not (0 < rows <= MAX_SIZE and 0 < cols <= MAX_SIZE):
        raise ValueError(f"a terminal size is 1-{MAX_SIZE} rows and columns, not {rows}x{cols}")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def console_mode(tty: bool, stdin: bool) -> str:
    """nspawn's --console= for a payload with our terminal or pipes (see the module's doc)."""
    if tty:
        return "interactive" if stdin else "read-only"
    return "pipe"


@dataclass
class Stdio:
    """The near ends (ours) and the far ends (the payload's, until :meth:`handed_over`)."""

    tty: bool
    far: tuple[int, int, int]
    input_fd: int | None  # ours to write the payload's stdin to; None: it has none (/dev/null)
    outputs: list[tuple[int, int]]  # (our read end, STDOUT or STDERR)
    stdin_open: bool = True
    _closed: set[int] = field(default_factory=set)

    # -- setup --------------------------------------------------------------------------------
    def handed_over(self) -> None:
        """The far ends were passed on (unit started, process spawned): close our copies, or the
        reads would never see the payload's end."""
        for fd in set(self.far):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd not in self._closed:
            self._closed.add(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Everything of ours (idempotent)."""
        self.handed_over()
        if self.input_fd is not None:
            self._close(self.input_fd)
        for fd, _ in self.outputs:
            self._close(fd)

    # -- the terminal -------------------------------------------------------------------------
    def resize(self, rows: int, cols: int) -> bool:
        """Set the terminal's size; False when there is no terminal (a pipe cannot be resized)."""
        if not self.tty:
            return False
        set_size(self.outputs[0][0], rows, cols)
        return True

    # -- stdin --------------------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        """Forward bytes to the payload's stdin (waits while its buffer is full)."""
        fd = self.input_fd
        if fd is None or not self.stdin_open or not data:
            return
        await write_all(fd, data)

    async def close_input(self) -> None:
        """The client's stdin ended: EOF for the payload (a pipe's write end closed; a terminal
        gets ^D, as its line discipline makes EOF of it)."""
        if self.input_fd is None or not self.stdin_open:
            return
        if self.tty:
            await self.write(EOT)
        else:
            self._close(self.input_fd)
        self.stdin_open = False

    # -- stdout, stderr -----------------------------------------------------------------------
    async def pump(self, emit: Callable[[int, bytes], Awaitable[None]]) -> None:
        """Read the payload's output until it ends (EOF; EIO once a terminal's last writer is
        gone), handing each piece to ``await emit(STDOUT or STDERR, data)``. Nothing is read
        while ``emit`` waits, so a slow reader makes the payload wait on its full pty or pipe
        instead of piling its output up in memory."""
        await asyncio.gather(*(self._pump_one(fd, kind, emit) for fd, kind in self.outputs))

    async def _pump_one(self, fd: int, kind: int, emit: Callable[[int, bytes], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await _ready(loop.add_reader, loop.remove_reader, fd)
                continue
            except OSError:  # EIO: the terminal's far end is closed everywhere
                data = b""
            if not data:
                return
            await emit(kind, data)


async def write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to a non-blocking ``fd`` (waiting while it is full); False when its
    reader is gone (EPIPE, EIO): the payload's input no longer matters then."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(loop.add_writer, loop.remove_writer, fd)
        except OSError:
            return False
    return True


async def read_some(fd: int) -> bytes:
    """The next bytes of ``fd`` (the caller's stdin) without blocking the loop and without making
    it non-blocking (a terminal's flags are shared with the shell); b"" at its end."""
    loop = asyncio.get_running_loop()
    try:
        await _ready(loop.add_reader, loop.remove_reader, fd)
    except PermissionError:  # a regular file or /dev/null: epoll refuses those; they never block
        pass
    try:
        return os.read(fd, READ_SIZE)
    except OSError:
        return b""


async def _ready(add: Callable[..., object], remove: Callable[[int], object], fd: int) -> None:
    """Wait until ``fd`` is readable or writable (``add``: the loop's add_reader or add_writer)."""
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


def open_stdio(tty: bool, stdin: bool, size: tuple[int, int] | None = None) -> Stdio:
    """A terminal (``tty``) or pipes for a payload; ``stdin`` False gives it /dev/null as input
    (docker's run without ``-i``). Our ends are non-blocking and close-on-exec."""
    made: list[int] = []
    try:
        if tty:
            master, slave = os.openpty()
            made += [master, slave]
            set_size(slave, *(size or DEFAULT_SIZE))
            os.set_blocking(master, False)
            os.set_inheritable(master, False)
            # without stdin the terminal is still the payload's stdin (its controlling terminal,
            # see session_argv): nothing is written to it
            return Stdio(True, (slave, slave, slave), master if stdin else None, [(master, STDOUT)])
        if stdin:
            fin, win = os.pipe()
            made += [fin, win]
            os.set_blocking(win, False)
        else:
            fin, win = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
            made.append(fin)
        rout, fout = os.pipe()
        made += [rout, fout]
        rerr, ferr = os.pipe()
        made += [rerr, ferr]
        for fd in (rout, rerr):
            os.set_blocking(fd, False)
        return Stdio(False, (fin, fout, ferr), win if stdin else None, [(rout, STDOUT), (rerr, STDERR)])
    except BaseException:
        for fd in made:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise


def session_argv(argv: list[str]) -> list[str]:
    """``argv`` in a session of its own whose controlling terminal is its stdin (our pty's
    slave): the shell's job control works and a resize signals its foreground job."""
    import shutil

    from .programs import SEARCH_PATH

    return [shutil.which("setsid", path=SEARCH_PATH) or "/usr/bin/setsid", "--ctty", *argv]


async def spawn(argv: list[str], env: dict[str, str], stdio: Stdio) -> asyncio.subprocess.Process:
    """Start an exec's command (the nsenter argv) on ``stdio``'s far ends, then close ours."""
    proc = await asyncio.create_subprocess_exec(
        *(session_argv(argv) if stdio.tty else argv),
        env=env,
        stdin=stdio.far[0],
        stdout=stdio.far[1],
        stderr=stdio.far[2],
    )
    stdio.handed_over()
    return proc


def relay_output(stdio: Stdio) -> None:
    """Our terminal as nspawn's relay target: no output processing. nspawn copies what the
    container's own console terminal already turned into CR LF; our terminal doing that again
    gave CR CR LF (nspawn makes it raw itself only when it is also its input)."""
    if not stdio.tty:
        return
    attrs = termios.tcgetattr(stdio.far[1])
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(stdio.far[1], termios.TCSANOW, attrs)
