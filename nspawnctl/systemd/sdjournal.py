"""The host's own journal reader, libsystemd's sd-journal, through ctypes; journald's Varlink sync.

Why libsystemd and not a binding package: ``libsystemd.so.0`` is on every systemd host and is
the reader journald's own files are made for (compact mode, zstd, keyed hashes: a bundled or
older libsystemd, as binding wheels carry, may not read a newer host's files), and ctypes needs
no compiler. Only sd-journal's public, stable C API is used (``man sd-journal``). Reading
in-process saves the ``journalctl`` processes (~20-40 ms each) an attached ``run`` would spawn.

One :class:`Journal` is used by one thread at a time (sd-journal objects are not thread-safe),
and never across a fork.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

TYPE_CHECKING = False  # typing costs an import the run hook does not need
if TYPE_CHECKING:
    from typing import Any

LOCAL_ONLY = 1  # SD_JOURNAL_LOCAL_ONLY; not SD_JOURNAL_SYSTEM: with journald's SplitMode=uid a
# container's output may be in a user-UID.journal file, which that flag leaves out (as journalctl
# run by root, every local file is read)
NOP, APPEND, INVALIDATE = 0, 1, 2  # sd_journal_process()
NO_TIMEOUT = 2**64 - 1
VARLINK_SOCKET = "/run/systemd/journal/io.systemd.journal"
_SYNCHRONIZE = b'{"method":"io.systemd.Journal.Synchronize","parameters":{}}\0'

_PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class JournalError(OSError):
    """A call into sd-journal failed (``errno`` is set), or libsystemd is not there."""


@dataclass(frozen=True)
class Record:
    """One entry as read: the fields nspawnctl uses (raw bytes, as journald stored them)."""

    cursor: str
    realtime_us: int
    message: bytes
    priority: int | None
    newline: bool = True  # the line ended with one (journald's _LINE_BREAK= says when it did not)


def priority_matches(priority: str) -> list[str] | None:
    """``PRIORITY=`` matches for journalctl's ``--priority=`` (a name or number: it and everything
    more urgent; ``A..B``: that range); None for a form this does not know."""

    def level(text: str) -> int | None:
        if text.isdigit() and int(text) < 8:
            return int(text)
        return _PRIORITIES.index(text) if text in _PRIORITIES else None

    low_text, sep, high_text = priority.partition("..")
    low, high = level(low_text), level(high_text) if sep else None
    if low is None or (sep and high is None):
        return None
    first, last = (0, low) if not sep else (min(low, high or 0), max(low, high or 0))
    return [f"PRIORITY={n}" for n in range(first, last + 1)]


def since_us(since: str, now_us: int) -> int | None:
    """The time of journalctl's ``--since=`` in µs for the forms nspawnctl passes itself: ``@SECONDS``
    and relative ``-N``/``N ago`` with s, min, h, d (docker's 10m becomes ``-10min``); None for
    any other form (absolute dates: journalctl parses those)."""
    text = since.strip()
    if text.startswith("@"):
        try:
            return int(float(text[1:]) * 1_000_000)
        except (ValueError, OverflowError):  # not a number, or nan/inf
            return None
    if text.startswith("-"):
        body = text[1:]
    elif text.endswith(" ago"):
        body = text[:-4].strip()
    else:
        return None
    units = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
    for suffix in sorted(units, key=len, reverse=True):
        if body.endswith(suffix) and body[: -len(suffix)].strip().isdigit():
            return now_us - int(body[: -len(suffix)].strip()) * units[suffix] * 1_000_000
    return None


def record_from_fields(
    cursor: str,
    realtime_us: int,
    message: bytes | None,
    priority: bytes | None,
    line_break: bytes | None = None,
) -> Record:
    """A :class:`Record` from the raw ``FIELD=value`` data sd-journal returns (None: absent).
    ``_LINE_BREAK=`` is there only when the line did not end with a line feed (``printf x``)."""
    msg = message.partition(b"=")[2] if message is not None else b""
    prio_text = priority.partition(b"=")[2] if priority is not None else b""
    prio = int(prio_text) if prio_text.isdigit() else None
    return Record(cursor, realtime_us, msg, prio, line_break is None)


class _Lib:
    """The few sd-journal functions used, with their C signatures."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libsystemd.so.0", use_errno=True)
            libc = ctypes.CDLL(None)
        except OSError as e:
            raise JournalError(f"libsystemd is not usable: {e}") from e
        vp, ip, sz, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint64
        pp = ctypes.POINTER
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "sd_journal_open": (ip, [pp(vp), ip]),
            "sd_journal_close": (None, [vp]),
            "sd_journal_add_match": (ip, [vp, ctypes.c_char_p, sz]),
            "sd_journal_add_disjunction": (ip, [vp]),
            "sd_journal_add_conjunction": (ip, [vp]),
            "sd_journal_set_data_threshold": (ip, [vp, sz]),
            "sd_journal_seek_head": (ip, [vp]),
            "sd_journal_seek_realtime_usec": (ip, [vp, u64]),
            "sd_journal_seek_cursor": (ip, [vp, ctypes.c_char_p]),
            "sd_journal_test_cursor": (ip, [vp, ctypes.c_char_p]),
            "sd_journal_seek_tail": (ip, [vp]),
            "sd_journal_next": (ip, [vp]),
            "sd_journal_previous": (ip, [vp]),
            "sd_journal_get_data": (ip, [vp, ctypes.c_char_p, pp(vp), pp(sz)]),
            "sd_journal_get_realtime_usec": (ip, [vp, pp(u64)]),
            "sd_journal_get_cursor": (ip, [vp, pp(vp)]),
            "sd_journal_get_fd": (ip, [vp]),
            "sd_journal_process": (ip, [vp]),
            "sd_journal_get_timeout": (ip, [vp, pp(u64)]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
            setattr(self, name, fn)
        libc.free.restype, libc.free.argtypes = None, [vp]
        self.free = libc.free

    def __getattr__(self, name: str) -> Any:  # for mypy: the functions set above
        raise AttributeError(name)


@functools.cache
def _library() -> _Lib:
    """Loaded once per process (dlopen of a library already mapped is cheap anyway)."""
    return _Lib()


def _check(r: int, what: str) -> int:
    if r < 0:
        raise JournalError(-r, f"{what}: {os.strerror(-r)}")
    return r


class Journal:
    """An open view of the local system journal, filtered by journalctl-style matches
    (``FIELD=value``: the same field ORed, different fields ANDed)."""

    def __init__(self, matches: list[str]) -> None:
        self._lib = _library()
        handle = ctypes.c_void_p()
        _check(self._lib.sd_journal_open(ctypes.byref(handle), LOCAL_ONLY), "sd_journal_open")
        self._j = handle
        self._fd: int | None = None
        try:
            _check(self._lib.sd_journal_set_data_threshold(self._j, 0), "set_data_threshold")  # whole fields
            for m in matches:
                raw = m.encode()
                _check(self._lib.sd_journal_add_match(self._j, raw, len(raw)), f"match {m!r}")
        except BaseException:
            self.close()
            raise
        self._data = ctypes.c_void_p()
        self._size = ctypes.c_size_t()
        self._usec = ctypes.c_uint64()
        self._pending = False  # positioned on an entry not read yet (after a backwards seek)

    def close(self) -> None:
        if self._j:
            self._lib.sd_journal_close(self._j)
            self._j = ctypes.c_void_p()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- positioning ---------------------------------------------------------------------
    def seek_head(self) -> None:
        _check(self._lib.sd_journal_seek_head(self._j), "seek_head")
        self._pending = False

    def seek_realtime(self, usec: int) -> None:
        _check(self._lib.sd_journal_seek_realtime_usec(self._j, usec), "seek_realtime")
        self._pending = False

    def seek_after_cursor(self, cursor: str) -> bool:
        """Next reads start after the entry ``cursor`` names (journalctl's --after-cursor).
        False when that entry is not in the files this view has (its file vacuumed, flushed
        from /run to /var, never seen): the reads then start at the entry nearest to where it was, which may
        be one read before."""
        raw = cursor.encode()
        _check(self._lib.sd_journal_seek_cursor(self._j, raw), "seek_cursor")
        self._pending = False
        if _check(self._lib.sd_journal_next(self._j), "next") == 0:
            return False
        found = self._lib.sd_journal_test_cursor(self._j, raw) > 0
        self._pending = not found
        return found

    def seek_last(self, n: int) -> None:
        """Next reads start at the n-th last matching entry (journalctl's --lines=n)."""
        _check(self._lib.sd_journal_seek_tail(self._j), "seek_tail")
        self._pending = False
        back = 0
        while back < n and _check(self._lib.sd_journal_previous(self._j), "previous") > 0:
            back += 1
        if back:
            self._pending = True  # on the earliest of them: it is read first
        else:
            self.seek_tail_for_new()

    def seek_tail_for_new(self) -> None:
        """Next reads see only entries added from now on."""
        _check(self._lib.sd_journal_seek_tail(self._j), "seek_tail")
        # after seek_tail, sd_journal_next() returns the last entry on some versions (252):
        # step onto it so that it is not read again
        if _check(self._lib.sd_journal_previous(self._j), "previous") > 0:
            self._pending = False

    # -- reading --------------------------------------------------------------------------
    def entries(self) -> Iterator[Record]:
        """The matching entries from the current position to the end of what is there now."""
        while True:
            if self._pending:
                self._pending = False
            elif _check(self._lib.sd_journal_next(self._j), "next") == 0:
                return
            yield self._record()

    def _field(self, name: bytes) -> bytes | None:
        r = self._lib.sd_journal_get_data(self._j, name, ctypes.byref(self._data), ctypes.byref(self._size))
        if r < 0:
            return None  # -ENOENT: no such field; a corrupt one is skipped as journalctl does
        return ctypes.string_at(self._data.value or 0, self._size.value)

    def _record(self) -> Record:
        lib = self._lib
        realtime = 0
        if lib.sd_journal_get_realtime_usec(self._j, ctypes.byref(self._usec)) >= 0:
            realtime = int(self._usec.value)
        cursor = ""
        ptr = ctypes.c_void_p()
        if lib.sd_journal_get_cursor(self._j, ctypes.byref(ptr)) >= 0 and ptr.value:
            cursor = (ctypes.string_at(ptr.value) or b"").decode(errors="replace")
            lib.free(ptr)
        return record_from_fields(
            cursor, realtime, self._field(b"MESSAGE"), self._field(b"PRIORITY"), self._field(b"_LINE_BREAK")
        )

    # -- following -------------------------------------------------------------------------
    def fileno(self) -> int:
        """An fd that becomes readable when the journal changes (inotify); then :meth:`process`."""
        if self._fd is None:
            self._fd = _check(self._lib.sd_journal_get_fd(self._j), "get_fd")
        return self._fd

    def process(self) -> int:
        """Take in the changes the fd signalled (new files after a rotation among them)."""
        return _check(self._lib.sd_journal_process(self._j), "process")

    def timeout(self) -> float | None:
        """Seconds after which to :meth:`process` even without a wake-up (None: never needed,
        which is the case for local journals)."""
        t = ctypes.c_uint64()
        if self._lib.sd_journal_get_timeout(self._j, ctypes.byref(t)) < 0 or t.value == NO_TIMEOUT:
            return None
        now = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        return max(0.0, (int(t.value) - now) / 1e6)


def synchronize(path: str | None = None, timeout: float = 10.0) -> None:
    """Ask journald to write out all it has received (Varlink ``io.systemd.Journal.Synchronize``,
    what ``journalctl --sync`` does): it answers only after handling every log message queued
    before the call, so a read afterwards sees the last lines of a unit that has ended.

    Raises OSError when the socket is not there (systemd older than 248, or not root)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path or VARLINK_SOCKET)
        s.sendall(_SYNCHRONIZE)
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionResetError("journald closed the Varlink connection")
            reply += chunk
    check_varlink_reply(reply[:-1])


async def synchronize_async(path: str | None = None, timeout: float = 10.0) -> None:
    """:func:`synchronize` for an event loop (no thread, no process)."""
    import asyncio

    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path or VARLINK_SOCKET), timeout)
    try:
        writer.write(_SYNCHRONIZE)
        reply = await asyncio.wait_for(reader.readuntil(b"\0"), timeout)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise ConnectionResetError(f"journald's Varlink reply was cut short: {e}") from e
    finally:
        writer.close()
    check_varlink_reply(reply[:-1])


def check_varlink_reply(reply: bytes) -> None:
    """Raise OSError for a Varlink error reply (``{"error": NAME, ...}``)."""
    try:
        data = json.loads(reply)
    except ValueError as e:
        raise OSError(f"journald's Varlink reply is not JSON: {reply[:80]!r}") from e
    if not isinstance(data, dict):
        raise OSError(f"journald's Varlink reply is not an object: {reply[:80]!r}")
    if "error" in data:
        raise OSError(f"journald: {data['error']}")
