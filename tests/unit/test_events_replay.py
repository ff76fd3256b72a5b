"""events --since: past start/die events from PID 1's journal records of the container units."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from nspawnctl import eventlog
from nspawnctl.run import events as ev


def _rec(mid: str, unit: str, t: int, inv: str = "i1", **extra: str) -> dict[str, str]:
    return {"MESSAGE_ID": mid, "UNIT": unit, "__REALTIME_TIMESTAMP": str(t), "INVOCATION_ID": inv, **extra}


def test_starts_and_dies_with_their_exit_codes() -> None:
    known = {"web": ("a" * 64, "img:1")}
    records = [
        _rec(ev.MSG_STARTED, "nspawnctl-web.service", 1_000_000),
        _rec(ev.MSG_PROCESS_EXIT, "nspawnctl-web.service", 2_000_000, EXIT_CODE="exited", EXIT_STATUS="3"),
        _rec(ev.MSG_FAILURE, "nspawnctl-web.service", 2_000_001),
        _rec(ev.MSG_STARTED, "systemd-nspawn@web.service", 3_000_000, "i2"),
        _rec(ev.MSG_PROCESS_EXIT, "systemd-nspawn@web.service", 4_000_000, "i2",
             EXIT_CODE="killed", EXIT_STATUS="TERM"),
        _rec(ev.MSG_FAILURE, "systemd-nspawn@web.service", 4_000_001, "i2"),
        _rec(ev.MSG_STARTED, "nspawnctl-web.service", 5_000_000, "i3"),
        _rec(ev.MSG_SUCCESS, "nspawnctl-web.service", 6_000_000, "i3"),
        # other units, other containers, broken records: none of them
        _rec(ev.MSG_STARTED, "nspawnctl-gone.service", 7_000_000),
        _rec(ev.MSG_STARTED, "cron.service", 7_000_000),
        {"MESSAGE_ID": ev.MSG_STARTED, "UNIT": "nspawnctl-web.service"},
    ]
    out = ev.replay_records(records, known)
    assert [(e.action, e.extra.get("exitCode"), e.time_ns) for e in out] == [
        ("start", None, 1_000_000_000),
        ("die", "3", 2_000_001_000),
        ("start", None, 3_000_000_000),
        ("die", "143", 4_000_001_000),
        ("start", None, 5_000_000_000),
        ("die", "0", 6_000_000_000),
    ]
    assert {(e.id, e.name, e.image) for e in out} == {("a" * 64, "web", "img:1")}


def test_the_replay_asks_the_journal_for_the_containers_units_only() -> None:
    """Review 15 #7: every unit's records since ``since`` were read into memory."""
    argv = ev.replay_argv(0, 10, ["a", "web"])
    units = [a for a in argv if a.startswith("UNIT=")]
    assert units == [
        "UNIT=nspawnctl-a.service",
        "UNIT=systemd-nspawn@a.service",
        "UNIT=nspawnctl-web.service",
        "UNIT=systemd-nspawn@web.service",
    ]
    assert "_PID=1" in argv and "--since=@0.000000" in argv


def test_records_are_read_line_by_line_up_to_a_cap() -> None:
    def lines() -> Iterator[bytes]:
        yield b"not json"
        yield b"[1]"
        n = 0
        while True:  # an endless journal: the cap must stop the reading
            n += 1
            yield json.dumps({"n": n}).encode()

    records = ev.read_records(lines(), cap=5)
    assert records == [{"n": i} for i in range(1, 6)]


def test_replay_runs_journalctl_and_drops_events_before_the_containers_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older container of the same name is another container: its events are not this one's."""
    born = 1_700_000_000
    records = [
        _rec(ev.MSG_STARTED, "nspawnctl-web.service", (born - 100) * 10**6),  # a removed namesake
        _rec(ev.MSG_STARTED, "nspawnctl-web.service", (born + 5) * 10**6, "i2"),
    ]
    fake = tmp_path / "journalctl"
    data = tmp_path / "records"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    fake.write_text(f"#!/bin/sh\ncat {data}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    class Spec:
        name, id, image = "web", "a" * 64, "img"
        display_name = name
        labels: ClassVar[dict[str, str]] = {"k": "v"}
        created = datetime.fromtimestamp(born, UTC).isoformat(timespec="seconds")

    class Store:
        def list(self) -> list[Spec]:
            return [Spec()]

    out = ev.replay(Store(), 0, born + 100)  # type: ignore[arg-type]
    # no create record of it in the journal (made before they were written): its Created= time
    assert [(e.action, e.time_ns) for e in out] == [("create", born * 10**9), ("start", (born + 5) * 10**9)]
    assert all(e.labels == {"k": "v"} for e in out)  # the label filter of the API needs them
    assert ev.replay(Store(), born + 1, born + 100)[0].action == "start"  # Created= before the window


def _own(action: str, t: int, name: str = "web", cid: str = "c" * 64, **extra: str) -> dict[str, str]:
    """A record as eventlog.entry writes it, as journalctl -o json shows it (sent by root)."""
    text = eventlog.entry(action, cid, name, "img:1", extra.get("old")).decode()
    fields = dict(line.split("=", 1) for line in text.splitlines())
    return {**fields, "__REALTIME_TIMESTAMP": str(t), "_UID": extra.get("uid", "0")}


def test_nspawnctls_own_records_replay_create_rename_pause_and_destroy() -> None:
    """Containers that are gone too: the records name them (issue 14's replay)."""
    records = [
        _own("create", 1_000_000),
        _own("pause", 2_000_000),
        _own("unpause", 3_000_000),
        _own("rename", 4_000_000, "www", old="web"),
        _own("destroy", 5_000_000, "www"),
        {**_own("create", 6_000_000), "NSPAWNCTL_EVENT": "explode"},  # not ours to say
        {"MESSAGE_ID": eventlog.MESSAGE_ID, "__REALTIME_TIMESTAMP": "7", "_UID": "0"},  # not whole
        _own("destroy", 8_000_000, uid="1000"),  # a host user's forgery (logger --journald)
        {k: v for k, v in _own("destroy", 9_000_000).items() if k != "_UID"},  # no trusted sender
    ]
    out = ev.replay_records(records, {})
    assert [(e.action, e.name, e.time_ns, e.extra) for e in out] == [
        ("create", "web", 1_000_000_000, {}),
        ("pause", "web", 2_000_000_000, {}),
        ("unpause", "web", 3_000_000_000, {}),
        ("rename", "www", 4_000_000_000, {"oldName": "web"}),
        ("destroy", "www", 5_000_000_000, {}),
    ]
    assert {(e.id, e.image) for e in out} == {("c" * 64, "img:1")}
    assert out[3].to_json()["Actor"]["Attributes"] == {"image": "img:1", "name": "www", "oldName": "web"}


def test_the_replay_asks_for_nspawnctls_records_of_any_container() -> None:
    argv = ev.replay_argv(0, 10, ["web"])
    # OR: a group of its own, root's records only (any host user can send our MESSAGE_ID)
    assert argv[-3:] == ["+", f"MESSAGE_ID={eventlog.MESSAGE_ID}", "_UID=0"]
    bare = ev.replay_argv(0, 10, [])  # no container now: never every unit's PID 1 records
    assert "_PID=1" not in bare and bare[-2:] == [f"MESSAGE_ID={eventlog.MESSAGE_ID}", "_UID=0"]


def test_a_record_is_sent_to_journald_and_a_missing_journal_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setattr(eventlog, "JOURNAL_SOCKET", str(path))
        eventlog.record("rename", "c" * 64, "www", "img:1", "web")
        got = server.recv(65536).decode()
    assert "NSPAWNCTL_EVENT=rename\n" in got and "NSPAWNCTL_OLD_NAME=web\n" in got
    assert f"MESSAGE_ID={eventlog.MESSAGE_ID}\n" in got
    monkeypatch.setattr(eventlog, "JOURNAL_SOCKET", str(tmp_path / "none"))
    eventlog.record("create", "c" * 64, "www", "img:1")  # lost, quietly
