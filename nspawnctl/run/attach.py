"""``attach``: follow a running container's output until its payload exits, and forward the
caller's stdin to it when it was started with ``-i``.

A detached container's stdout and stderr go to the journal (a stream each, see run/streams.py),
not to a terminal or pipe anyone could take over: attaching follows the journal from now, as
``logs -f --tail 0`` would, and ends with the payload's exit code when it stops (docker's
attach). Its stdin is /dev/null, unless it was started with ``-i``: then it is a FIFO
(run/stdinpipe.py) that attach writes the caller's input to, up to docker's detach keys
(ctrl-p,ctrl-q by default), which end the attach and leave the container running.

A container with a terminal (``-t``) takes no input from attach: started in the background its
terminal is systemd-nspawn's (``--console=read-only``, no input forwarded: run/hook.py
default_launch), else the one of whoever started it (``start -ai``, the API's service). Its
output, one stream (a terminal has no stderr of its own), is followed all the same, and the
caller's input is read only for the detach keys (docker's attach to a ``-dit`` container
detaches on them too); the rest of it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ContainerNotRunning, InvalidArgument
from ..run.units import LOG_FIELD
from .runtime import Runtime, payload_exited
from .wait import exit_code_of, ref_unit

if TYPE_CHECKING:
    from ..config import Paths
    from ..spec import ContainerSpec
    from ..store.containers import ContainerStore


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = "@" + string.ascii_lowercase + "[\\]^_"  # ctrl-@ is 0, ctrl-a 1, ..., ctrl-_ 31


class Detached(Exception):
    """The caller typed the detach keys: the attach ended, the container runs on."""


def parse_detach_keys(text: str) -> bytes:
    """docker's ``--detach-keys``: comma-separated keys, each one character or ``ctrl-X`` (X one
    of a-z, @, [, \\, ], ^, _); "" turns detaching off."""
    out = bytearray()
    for key in text.split(",") if text else []:
        if key.lower().startswith("ctrl-") and len(key) == 6 and key[5].lower() in _CTRL:
            out.append(_CTRL.index(key[5].lower()))
        elif len(key) == 1 and key.isascii():
            out.append(ord(key))
        else:
            raise InvalidArgument(
                f"invalid detach keys {text!r}: {key!r} is not a character or ctrl-<key>",
                hint=f"e.g. --detach-keys {DEFAULT_DETACH_KEYS} (ctrl- with a-z, @, [, \\, ], ^ or _)",
            )
    return bytes(out)


@dataclass
class DetachScanner:
    """Finds the detach keys in the input stream; holds back a partial match until it is
    decided (completed: detach; broken: forwarded as typed), as docker's escape proxy does."""

    keys: bytes
    held: bytes = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to forward now, and whether the keys were typed (nothing after them goes)."""
        if not self.keys:
            return data, False
        buf, self.held = self.held + data, b""
        at = buf.find(self.keys)
        if at >= 0:
            return buf[:at], True
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if self.keys.startswith(buf[-n:]):
                self.held = buf[-n:]
                return buf[:-n], False
        return buf, False

    def flush(self) -> bytes:
        """What is held back at the input's end."""
        held, self.held = self.held, b""
        return held


async def forward_stdin(paths: Paths, name: str, read: Callable[[], Awaitable[bytes]], keys: bytes) -> None:
    """The caller's input (``read`` returns b"" at its end) to the container's stdin FIFO until it
    ends (the container keeps its stdin open, as docker's ``-i`` does); Detached at the keys."""
    from .stdinpipe import open_for_attach
    from .stdio import write_all

    fd = await asyncio.to_thread(open_for_attach, paths, name)
    scanner = DetachScanner(keys)
    try:
        while data := await read():
            data, detach = scanner.feed(data)
            if data and not await write_all(fd, data):
                return
            if detach:
                raise Detached()
        await write_all(fd, scanner.flush())
    finally:
        os.close(fd)


async def watch_detach(read: Callable[[], Awaitable[bytes]], keys: bytes) -> None:
    """The caller's input to a container that takes none (a terminal's, see the module's doc):
    dropped, up to the detach keys (Detached); its end leaves the attach following the output."""
    scanner = DetachScanner(keys)
    while data := await read():
        if scanner.feed(data)[1]:
            raise Detached()


async def attach(
    rt: Runtime,
    store: ContainerStore,
    name: str,
    write: Callable[[bytes], None],
    write_err: Callable[[bytes], None],
    read: Callable[[], Awaitable[bytes]] | None = None,
    detach_keys: bytes = b"\x10\x11",
    begun: Callable[[ContainerSpec, bool], None] | None = None,
) -> int:
    """Write the container's output lines (stdout to ``write``, stderr to ``write_err``) until
    its payload exits; returns the exit code. ``read``: the caller's input, forwarded to a
    container started with ``-i`` (ignored for others, as docker does; for one with a terminal
    only its detach keys count: see the module's doc); its ``detach_keys`` raise Detached.
    ``begun`` is told, once the container is found running, its definition and whether
    ``read`` is read at all (so a notice of the caller's says only what holds)."""
    from ..systemd import journal
    from ..systemd.journal import Entry

    spec = store.get(name)
    state = (await rt.states([name])).get(name)
    if state is None or not state.running:
        raise ContainerNotRunning(
            f"cannot attach to container {name}: it is not running",
            hint=f"start it first (nspawnctl start {name}), or see its output: nspawnctl logs {name}",
        )
    unit = state.name
    refd = await ref_unit(rt, unit)

    def emit(entry: Entry) -> None:
        (write_err if entry.stderr else write)(entry.text)

    reads = read is not None and spec.open_stdin
    if begun is not None:
        try:
            begun(spec, reads)
        except BaseException:
            if refd:
                await rt.manager.unref(unit)
            raise
    feeding: asyncio.Future[None] | None = None
    if read is not None and reads:
        feeding = asyncio.ensure_future(
            watch_detach(read, detach_keys) if spec.tty else forward_stdin(rt.paths, name, read, detach_keys)
        )
    try:
        matches = [f"{LOG_FIELD}={spec.id}", "_TRANSPORT=stdout"]
        # from now: a timestamp (seek_realtime), not --lines=0, whose tail seek read nothing new
        # when the container had no output yet
        since = f"@{time.time():.6f}"
        following = asyncio.ensure_future(
            journal.follow(matches, emit, rt.manager.wait_unit(unit, payload_exited), since=since)
        )
        try:
            await _until_detached(following, feeding)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    except BaseException:
        if refd:
            await rt.manager.unref(unit)
        raise
    finally:
        if feeding is not None:
            feeding.cancel()
            with contextlib.suppress(BaseException):
                await feeding
    return await exit_code_of(rt, store, name, unit, refd)


async def _until_detached(following: asyncio.Future[None], feeding: asyncio.Future[None] | None) -> None:
    """Wait for the output to end; a failed or detaching input ends it sooner (its error)."""
    while feeding is not None and not following.done():
        await asyncio.wait([following, feeding], return_when=asyncio.FIRST_COMPLETED)
        if feeding.done():
            feeding.result()  # Detached, or why the input could not go on
            feeding = None
    await following
