"""run/stdio.py: the terminal or pipes the Docker API holds for a payload (no container needed:
a local process stands in for it)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from nspawnctl.run.stdio import STDERR, STDOUT, console_mode, get_size, open_stdio, set_size, spawn


def run(
    argv: list[str], tty: bool, stdin: bool, data: bytes, size: tuple[int, int] | None = None
) -> tuple[int, dict[int, bytes]]:
    async def go() -> tuple[int, dict[int, bytes]]:
        stdio = open_stdio(tty, stdin, size)
        got: dict[int, bytes] = {STDOUT: b"", STDERR: b""}

        async def emit(kind: int, b: bytes) -> None:
            got[kind] += b

        proc = await spawn(argv, {"PATH": "/usr/bin:/bin"}, stdio)
        pump = asyncio.ensure_future(stdio.pump(emit))
        await stdio.write(data)
        await stdio.close_input()
        code = await asyncio.wait_for(proc.wait(), 30)
        await asyncio.wait([pump], timeout=5)
        pump.cancel()
        stdio.close()
        return code, got

    return asyncio.run(go())


def test_pipes_carry_stdin_its_end_and_both_outputs_apart() -> None:
    data = b"x" * 300_000  # more than a pipe holds: the writer waits for the reader
    code, got = run(["sh", "-c", "cat; echo err >&2; exit 3"], False, True, data)
    assert code == 3
    assert got[STDOUT] == data
    assert got[STDERR] == b"err\n"


def test_without_stdin_the_payload_reads_nothing() -> None:
    code, got = run(["sh", "-c", "cat; echo end"], False, False, b"ignored")
    assert (code, got[STDOUT]) == (0, b"end\n")


def test_a_terminal_has_its_size_and_eot_ends_input() -> None:
    code, got = run(
        [sys.executable, "-c", "import os, sys; print(os.get_terminal_size(0), repr(sys.stdin.read()))"],
        True,
        True,
        b"typed\n",
        (30, 100),
    )
    assert code == 0
    out = got[STDOUT].replace(b"\r\n", b"\n")
    assert b"columns=100, lines=30" in out
    assert b"'typed\\n'" in out  # ^D after the line: EOF for the reader, through the line discipline
    assert got[STDERR] == b""  # one stream with a terminal


def test_resize_changes_the_terminal_and_a_pipe_cannot() -> None:
    stdio = open_stdio(True, True)
    try:
        assert get_size(stdio.far[1]) == (24, 80)
        assert stdio.resize(50, 132)
        assert get_size(stdio.far[1]) == (50, 132)
        with pytest.raises(ValueError):
            set_size(stdio.far[1], 0, 80)
    finally:
        stdio.close()
    pipes = open_stdio(False, True)
    try:
        assert not pipes.resize(10, 10)
    finally:
        pipes.close()
        pipes.close()  # idempotent


def test_console_mode() -> None:
    assert console_mode(True, True) == "interactive"
    assert console_mode(True, False) == "read-only"
    assert console_mode(False, True) == "pipe"
