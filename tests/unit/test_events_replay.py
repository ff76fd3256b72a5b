"""events --since: past start/die events from PID 1's journal records of the container units."""

from __future__ import annotations

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
