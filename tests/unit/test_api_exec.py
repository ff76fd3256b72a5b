"""exec start as dockerd's (issue 15): the start body's Tty decides raw or framed output, Detach
answers at once, a missing command is the exec's 127 told in its output, detach keys from the
create body in either spelling. Real commands on this machine; fake client, bus and connection."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

import pytest

from nspawnctl.api.handlers import execs
from nspawnctl.api.http import ApiError
from nspawnctl.api.render import frame
from nspawnctl.api.runs import ExecRecord, Runs
from nspawnctl.errors import CommandNotFound


def test_fields_are_found_as_dockerds_json_decoding_finds_them() -> None:
    assert execs.field({"detachKeys": "ctrl-x"}, "DetachKeys") == "ctrl-x"
    assert execs.field({"DetachKeys": "a", "detachkeys": "b"}, "DetachKeys") == "a"
    assert execs.field({}, "Tty") is None
    assert execs.flag({"tty": True}, "Tty") is True
    with pytest.raises(ApiError, match="Detach: a boolean"):
        execs.flag({"Detach": "yes"}, "Detach")


def test_exec_detach_keys_default_to_ctrl_p_ctrl_q_and_bad_ones_are_400s() -> None:
    assert execs.exec_detach_keys({}) == b"\x10\x11"
    assert execs.exec_detach_keys({"DetachKeys": ""}) == b"\x10\x11"  # "" is the default, as dockerd's
    assert execs.exec_detach_keys({"detachKeys": "ctrl-x,a"}) == b"\x18a"
    with pytest.raises(ApiError) as e:
        execs.exec_detach_keys({"DetachKeys": "ctrl-xx"})
    assert e.value.status == 400 and e.value.message.startswith("DetachKeys:")
    with pytest.raises(ApiError):
        execs.exec_detach_keys({"DetachKeys": 3})


class _Stream:
    def __init__(self) -> None:
        self.data = b""
        self.ended = False

    async def write(self, data: bytes) -> None:
        self.data += data

    async def end(self) -> None:
        self.ended = True


def _exchange(runs: Runs, aexec_command: Any, body: dict[str, Any]) -> tuple[Any, _Stream, list[Any]]:
    stream = _Stream()
    seen: list[Any] = []  # (content type) of the hijack, or the status of an empty reply

    async def hijack(content_type: str) -> _Stream:
        seen.append(content_type)
        return stream

    async def empty(status: int = 204) -> None:
        seen.append(status)

    ex = SimpleNamespace(
        service=SimpleNamespace(runs=runs),
        client=SimpleNamespace(containers=SimpleNamespace(aexec_command=aexec_command)),
        bus=None,
        request=SimpleNamespace(json=lambda: body),
        conn=SimpleNamespace(hijack=hijack, writer=SimpleNamespace(get_extra_info=lambda key: None)),
        empty=empty,
    )
    return ex, stream, seen


def _runner(argv: list[str]) -> Any:
    async def aexec_command(*args: Any, **kw: Any) -> Any:
        return SimpleNamespace(argv=argv, env=dict(os.environ))

    return aexec_command


def _start(record: ExecRecord, aexec_command: Any, body: dict[str, Any]) -> tuple[_Stream, list[Any]]:
    async def go() -> tuple[_Stream, list[Any]]:
        runs = Runs()
        runs.execs[record.id] = record
        ex, stream, seen = _exchange(runs, aexec_command, body)
        await execs.start_exec(ex, record.id)
        if runs.tasks:
            await asyncio.wait(runs.tasks, timeout=30)
        return stream, seen

    return asyncio.run(go())


def _record(tty: bool = False) -> ExecRecord:
    return ExecRecord(
        id="e1", container="c", container_id="i", argv=["x"], env=[], workdir=None, user=None, tty=tty
    )


OUT_ERR = ["sh", "-c", "echo out; echo err >&2; exit 3"]


def test_without_tty_in_the_start_body_the_output_is_framed() -> None:
    record = _record()
    stream, seen = _start(record, _runner(OUT_ERR), {"Tty": False})
    assert seen == [execs.STREAM_MUX] and stream.ended
    assert sorted([frame(1, b"out\n"), frame(2, b"err\n")]) == sorted(
        [stream.data[: len(frame(1, b"out\n"))], stream.data[len(frame(1, b"out\n")) :]]
    )
    assert (record.exit_code, record.running, record.stdio) == (3, False, None)


def test_with_tty_in_the_start_body_the_output_is_raw_stdout_only() -> None:
    record = _record()
    stream, seen = _start(record, _runner(OUT_ERR), {"Tty": True})
    assert seen == [execs.STREAM_RAW] and stream.data == b"out\n"  # dockerd attaches no stderr then
    assert record.exit_code == 3


def test_a_tty_exec_started_without_tty_sends_its_terminal_as_stdout_frames() -> None:
    record = _record(tty=True)
    stream, _ = _start(record, _runner(["printf", "hi"]), {})
    assert stream.data == frame(1, b"hi") and record.exit_code == 0


def test_a_detached_start_answers_at_once_and_the_exit_code_comes_later(tmp_path: Any) -> None:
    record = _record()
    gate = tmp_path / "gate"

    async def go() -> None:
        runs = Runs()
        runs.execs[record.id] = record
        wait = f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 7"
        ex, stream, seen = _exchange(runs, _runner(["sh", "-c", wait]), {"Detach": True})
        await execs.start_exec(ex, record.id)
        assert seen == [200] and record.running and record.exit_code is None and runs.busy
        gate.touch()
        await asyncio.wait(runs.tasks, timeout=30)
        assert (record.exit_code, record.running, stream.data) == (7, False, b"")

    asyncio.run(go())


def test_a_missing_command_is_the_execs_127_told_on_stdout() -> None:
    async def missing(*args: Any, **kw: Any) -> Any:
        raise CommandNotFound('container c: exec: "nope": executable file not found in $PATH')

    record = _record()
    stream, _ = _start(record, missing, {})
    msg = b'container c: exec: "nope": executable file not found in $PATH\r\n'
    assert stream.data == frame(1, msg) and stream.ended
    assert (record.exit_code, record.running) == (127, False)
    record = _record()
    stream, _ = _start(record, missing, {"Tty": True})
    assert stream.data == msg
    record = _record()
    with pytest.raises(ApiError) as e:
        _start(record, missing, {"Detach": True})
    assert e.value.status == 400 and record.exit_code == 127 and not record.running


def test_exec_records_are_bounded_oldest_idle_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from nspawnctl.api import runs as runs_module
    from nspawnctl.api.runs import ExecLimit

    monkeypatch.setattr(runs_module, "MAX_EXECS", 10)
    runs = Runs()

    def record(i: int, running: bool = False) -> ExecRecord:
        return ExecRecord(f"e{i}", "c", "cid", ["true"], [], None, None, running=running)

    runs.add_exec(record(0, running=True))
    for i in range(1, 30):
        runs.add_exec(record(i))
    assert len(runs.execs) <= 10 and "e0" in runs.execs and "e29" in runs.execs  # running kept
    for i in range(30, 39):  # with e0, ten run: the idle ones make room for them
        runs.add_exec(record(i, running=True))
    assert all(e.running for e in runs.execs.values()) and len(runs.execs) == 10
    with pytest.raises(ExecLimit):
        runs.add_exec(record(99))
