"""Who owns a build's leftovers (review 17 #1, #14): a ``PID:START`` mark names one process (a
reused PID is not it), an unparsable mark is nobody's, and the repair goes by the builder's own
records, never by labels."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from nspawnctl.builder.steps import _dead_records, _Record
from nspawnctl.store.files import alive, owner, owner_alive, start_time


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_start_time_and_alive() -> None:
    me = os.getpid()
    start = start_time(me)
    assert start is not None and start > 0
    assert alive(me) and alive(me, start)
    assert not alive(me, start + 1)  # same PID, another process: a reused PID is not ours
    assert not alive(0) and not alive(-1)
    assert start_time(_dead_pid()) is None


def test_owner_marks() -> None:
    mark = owner()
    assert mark == f"{os.getpid()}:{start_time(os.getpid())}"
    assert owner_alive(mark) is True
    assert owner_alive(f"{mark}:build1") is True
    pid, start = mark.split(":")
    assert owner_alive(f"{pid}:{int(start) + 1}:b") is False
    assert owner_alive(f"{_dead_pid()}:1:b") is False
    for junk in ("", "x", "x:y", "12", "0:5", "-1:5", "12:x", "x:12"):
        assert owner_alive(junk) is None, junk  # not ours: left alone, never taken for dead


def test_dead_records(tmp_path: Path) -> None:
    pid, start = owner().split(":")
    live = _Record(tmp_path / "live.json", owner())
    live.add("build-live-2")
    dead = _Record(tmp_path / "dead.json", f"{pid}:{int(start) + 1}")
    dead.add("build-dead-3")
    dead.add("build-dead-5")
    (tmp_path / "odd.json").write_text(json.dumps({"owner": "x:y", "containers": ["build-odd-1"]}))
    (tmp_path / "notours.json").write_text(json.dumps({"owner": f"{_dead_pid()}:1", "containers": ["web"]}))
    (tmp_path / "broken.json").write_text("{")
    found = dict(_dead_records(tmp_path))
    assert found == {tmp_path / "dead.json": ["build-dead-3", "build-dead-5"], tmp_path / "notours.json": []}
    live.drop()
    assert not (tmp_path / "live.json").exists()
    assert _dead_records(tmp_path / "none") == []
