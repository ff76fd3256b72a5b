"""run/attach.py's stdin side: docker's --detach-keys and the scanner that finds them in the
input (issue 14: attach stdin), and run/stdinpipe.py's FIFO."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import ContainerNotRunning, InvalidArgument
from nspawnctl.run.attach import (
    DEFAULT_DETACH_KEYS,
    Detached,
    DetachScanner,
    forward_stdin,
    parse_detach_keys,
)
from nspawnctl.run.stdinpipe import open_for_attach, open_for_unit, remove


def test_detach_keys_parse_as_docker_does() -> None:
    assert parse_detach_keys(DEFAULT_DETACH_KEYS) == b"\x10\x11"
    assert parse_detach_keys("ctrl-x,q") == b"\x18q"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-_") == b"\x00\x1b\x1c\x1f"
    assert parse_detach_keys("CTRL-A") == b"\x01"
    assert parse_detach_keys("") == b""


@pytest.mark.parametrize("bad", ["ctrl-1", "ctrl-", "ab", "ctrl-p,,q", "é"])
def test_bad_detach_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="detach keys"):
        parse_detach_keys(bad)


def test_scanner_finds_the_keys_across_reads_and_forwards_broken_prefixes() -> None:
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"abc\x10") == (b"abc", False)  # held: maybe the start of the keys
    assert s.feed(b"x") == (b"\x10x", False)  # not: forwarded as typed
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"\x11after") == (b"", True)  # the keys: nothing after them goes
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"end\x10") == (b"end", False)
    assert s.flush() == b"\x10"
    assert DetachScanner(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_forward_stdin_through_the_fifo(tmp_path: Path) -> None:
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")
    with pytest.raises(ContainerNotRunning, match="stdin"):
        open_for_attach(paths, "c")  # no FIFO: not started with -i
    unit_end = open_for_unit(paths, "c")  # what the unit reads (read-write: never EOF)
    try:
        chunks = [b"one\n", b"two\x10", b"\x11three\n"]

        async def read() -> bytes:
            return chunks.pop(0) if chunks else b""

        with pytest.raises(Detached):
            asyncio.run(forward_stdin(paths, "c", read, b"\x10\x11"))
        assert os.read(unit_end, 100) == b"one\ntwo"
        chunks = [b"four\n"]
        asyncio.run(forward_stdin(paths, "c", read, b"\x10\x11"))  # ends with the input
        assert os.read(unit_end, 100) == b"four\n"
    finally:
        os.close(unit_end)
    with pytest.raises(ContainerNotRunning):
        open_for_attach(paths, "c")  # nobody reads it now
    remove(paths, "c")
    remove(paths, "c")
    assert not (paths.state / "stdin" / "c").exists()
