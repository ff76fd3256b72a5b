"""The in-process journal reader (libsystemd's sd-journal) against the host's own journald: binary
fields, priorities, the journalctl options nspawnctl uses, following across a rotation and past
the end of the source; and that an attached run and a start failure spawn no journalctl."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import CLI

from nspawnctl.systemd import journal

TAG = "NSPAWNCTL_E2E_READER"


def send(tag: str, message: bytes, priority: int = 6) -> None:
    """One entry through journald's native protocol (binary-safe: a length-prefixed MESSAGE)."""
    data = (
        b"MESSAGE\n"
        + struct.pack("<Q", len(message))
        + message
        + b"\n"
        + f"PRIORITY={priority}\n{TAG}={tag}\nSYSLOG_IDENTIFIER=e2e-reader\n".encode()
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(data, "/run/systemd/journal/socket")


def test_reader_reads_what_journald_wrote() -> None:
    tag = uuid.uuid4().hex
    matches = [f"{TAG}={tag}"]
    binary = b"\xff\x00bin\x01ary"
    send(tag, b"first")
    send(tag, binary, 3)
    journal.sync()
    between = time.time()
    time.sleep(0.05)
    send(tag, b"last", 4)
    journal.sync()

    got = journal.read(matches)
    assert [(e.message, e.priority) for e in got] == [(b"first", 6), (binary, 3), (b"last", 4)]
    assert [e.stderr for e in got] == [False, True, True]
    assert all(e.cursor and e.realtime_us > 0 for e in got)
    assert [e.message for e in journal.read(matches, lines=2)] == [binary, b"last"]
    assert [e.message for e in journal.read(matches, lines=0)] == []
    assert [e.message for e in journal.read(matches, priority="err")] == [binary]
    assert [e.message for e in journal.read(matches, after_cursor=got[0].cursor)] == [binary, b"last"]
    assert [e.message for e in journal.read(matches, after_cursor=got[-1].cursor)] == []
    assert [e.message for e in journal.read(matches, since=f"@{between:.6f}")] == [b"last"]
    assert [e.message for e in journal.read(matches, since="-1h")] == [b"first", binary, b"last"]
    # what journalctl would print, for the forms it parses itself
    assert [e.message for e in journal.read(matches, since="2000-01-01 00:00")] == [b"first", binary, b"last"]
    assert journal.read([f"{TAG}=nothing-{tag}"]) == []


@pytest.mark.serial
def test_follow_goes_across_a_rotation_and_past_the_end() -> None:
    tag = uuid.uuid4().hex
    got: list[bytes] = []

    async def source() -> None:
        """Writes, rotates the journal mid-way, and ends right after its last line (not waiting
        for it to be read: follow must sync and read it)."""
        loop = asyncio.get_running_loop()

        async def seen(n: int) -> None:
            deadline = loop.time() + 30
            while len(got) < n:
                assert loop.time() < deadline, f"follow saw {got}, not {n} lines"
                await asyncio.sleep(0.02)

        send(tag, b"one")
        await seen(1)
        rotate = await asyncio.create_subprocess_exec("journalctl", "--rotate")
        assert await rotate.wait() == 0
        send(tag, b"two", 3)
        await seen(2)
        for i in range(20):
            send(tag, f"burst{i}".encode())
        send(tag, b"end")

    asyncio.run(
        asyncio.wait_for(journal.follow([f"{TAG}={tag}"], lambda e: got.append(e.message), source()), 60)
    )
    assert got == [b"one", b"two", *[f"burst{i}".encode() for i in range(20)], b"end"]


def test_follow_with_lines_starts_at_the_tail() -> None:
    tag = uuid.uuid4().hex
    for word in (b"a", b"b", b"c"):
        send(tag, word)
    journal.sync()
    got: list[bytes] = []

    async def source() -> None:
        send(tag, b"d")

    asyncio.run(
        asyncio.wait_for(
            journal.follow([f"{TAG}={tag}"], lambda e: got.append(e.message), source(), lines=2), 60
        )
    )
    assert got == [b"b", b"c", b"d"]


def execs(trace: Path) -> list[str]:
    """The programs a traced command ran (successful execve calls)."""
    return [
        line.split('execve("', 1)[1].split('"', 1)[0]
        for line in trace.read_text().splitlines()
        if 'execve("' in line and "= -1" not in line
    ]


def test_attached_run_and_a_start_failure_spawn_no_journalctl(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace)]
    run = subprocess.run(
        [*strace, "nspawnctl", "run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; exit 4"],
        capture_output=True,
        text=True,
    )
    assert (run.returncode, run.stdout, run.stderr) == (4, "out\n", "err\n")
    assert [p for p in execs(trace) if "journalctl" in p] == []

    # a container nspawn cannot start (its /proc is a file): nspawn's own words, read in-process
    name = nsp.name("nojctl")
    nsp("create", "--name", name, busybox, "true")
    proc_dir = Path("/var/lib/machines") / name / "proc"
    subprocess.run(["rm", "-rf", str(proc_dir)], check=True)
    proc_dir.write_text("not a directory\n")
    start = subprocess.run([*strace, "nspawnctl", "start", name], capture_output=True, text=True)
    assert start.returncode == 125
    assert f"nspawnctl: error: container {name} failed to start: " in start.stderr
    assert [p for p in execs(trace) if "journalctl" in p] == []
