"""Pure parts of the lifecycle verbs: events' shapes and filters, stats' numbers, top's ps
filter, update's changes, the inotify event parser."""

from __future__ import annotations

import struct

import pytest

from nspawnctl.cli.lifecycle import stats_row, stats_size
from nspawnctl.errors import InvalidArgument
from nspawnctl.run.events import (
    Event,
    container_of_unit,
    matches,
    parse_filters,
    parse_time,
    unit_of_path,
)
from nspawnctl.run.freeze import is_paused
from nspawnctl.run.stats import UNSET, Sample, cpu_percent, from_properties, memory_percent, parse_net_dev
from nspawnctl.run.top import filter_ps
from nspawnctl.run.update import Update, apply_to_spec, unit_changes
from nspawnctl.run.wait import check_condition
from nspawnctl.spec import ContainerSpec, Limits
from nspawnctl.store.watch import IN_DELETE, IN_MOVED_TO, DefinitionChange, changes_of, parse_events
from nspawnctl.systemd.manager import unit_object_path
from nspawnctl.values import Cpus, MemoryBytes, PidsLimit

SPEC = ContainerSpec(name="web", id="ab" * 16, image="img:1", image_id="1", created="now", command=["sh"])


def test_event_line_and_json_have_dockers_shape() -> None:
    e = Event("die", "ab" * 32, "web", "img:1", 1_765_083_600_123_456_789, {"exitCode": "3"})
    assert e.line() == (
        "2025-12-07T05:00:00.123456789Z container die " + "ab" * 32 + " (exitCode=3, image=img:1, name=web)"
    )
    j = e.to_json()
    assert j["status"] == j["Action"] == "die" and j["Type"] == "container" and j["from"] == "img:1"
    assert j["Actor"] == {"ID": "ab" * 32, "Attributes": {"exitCode": "3", "image": "img:1", "name": "web"}}
    assert j["time"] == 1_765_083_600 and j["timeNano"] == 1_765_083_600_123_456_789 and j["scope"] == "local"


def test_event_filters() -> None:
    e = Event("start", "abcdef", "web", "img:1", 0)
    assert matches(e, parse_filters(["container=web"]))
    assert matches(e, parse_filters(["container=abc", "event=start", "event=die", "type=container"]))
    assert not matches(e, parse_filters(["event=die"]))
    assert not matches(e, parse_filters(["container=db"]))
    assert not matches(e, parse_filters(["image=other"]))
    assert not matches(e, parse_filters(["type=image"]))
    for bad in ("colour=red", "event", "container="):
        with pytest.raises(InvalidArgument):
            parse_filters([bad])


def test_event_times_as_docker_reads_them() -> None:
    now = 1_000_000.0
    assert parse_time("1700000000.5", now) == 1_700_000_000.5
    assert parse_time("10m", now) == now - 600
    assert parse_time("1h30m", now) == now - 5400
    assert parse_time("2026-12-07T05:00:00Z", now) == parse_time("2026-12-07T05:00:00+00:00", now)
    with pytest.raises(InvalidArgument):
        parse_time("yesterday", now)


def test_units_and_their_paths_name_the_container() -> None:
    assert container_of_unit("nspawnctl-web.service") == "web"
    assert container_of_unit("systemd-nspawn@web-1.service") == "web-1"
    assert container_of_unit("ssh.service") is None
    for unit in ("nspawnctl-web.service", "systemd-nspawn@a.b-c.service"):
        assert unit_of_path(unit_object_path(unit)) == unit


def test_inotify_events_become_definition_changes() -> None:
    def raw(wd: int, mask: int, name: str) -> bytes:
        data = name.encode() + b"\0" * (16 - len(name) % 16)
        return struct.pack("iIII", wd, mask, 0, len(data)) + data

    data = (
        raw(1, IN_MOVED_TO, "web.nspawn")
        + raw(1, IN_MOVED_TO, ".web.nspawn.x1y2")
        + raw(2, IN_DELETE, "db.nspawn")
    )
    events = parse_events(data)
    assert [(m, n) for _, m, n in events] == [
        (IN_MOVED_TO, "web.nspawn"),
        (IN_MOVED_TO, ".web.nspawn.x1y2"),
        (IN_DELETE, "db.nspawn"),
    ]
    assert changes_of(events) == [DefinitionChange("web", True), DefinitionChange("db", False)]


def test_net_dev_sums_all_but_loopback() -> None:
    text = (
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1 0 0 0 0 0 0\n"
        " host0:    1500      10    0    0    0     0          0         0      700       5 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(text) == (1500, 700)


def test_stats_numbers_from_unit_properties() -> None:
    props = {
        "MemoryCurrent": 3 << 20,
        "MemoryMax": 64 << 20,
        "CPUUsageNSec": 2_000_000_000,
        "IOReadBytes": UNSET,
        "IOWriteBytes": 1000,
        "TasksCurrent": 2,
    }
    s = from_properties(SPEC, props, (10, 20), at_ns=3_000_000_000)
    assert (s.memory, s.memory_limit, s.io_read, s.io_write, s.pids) == (3 << 20, 64 << 20, None, 1000, 2)
    before = Sample(SPEC.id, "web", 2_000_000_000, True, cpu_ns=1_500_000_000)
    assert cpu_percent(before, s) == pytest.approx(50.0)
    assert cpu_percent(None, s) == 0.0
    assert memory_percent(s) == pytest.approx(3 / 64 * 100)
    row = stats_row(before, s)
    assert row["MemUsage"] == "3MiB / 64MiB" and row["CPUPerc"] == "50.00%" and row["PIDs"] == "2"
    assert row["BlockIO"] == "-- / 1kB" and row["NetIO"] == "10B / 20B" and row["Container"] == SPEC.id[:12]
    stopped = stats_row(None, Sample(SPEC.id, "web", 0))
    assert stopped["MemUsage"] == "0B / 0B" and stopped["PIDs"] == "0"


def test_sizes_as_docker_prints_them() -> None:
    assert stats_size(1536 * 1024, True) == "1.5MiB" and stats_size(512, True) == "512B"
    assert stats_size(int(7.66 * 2**30), True) == "7.66GiB" and stats_size(None, True) == "--"
    assert stats_size(1234) == "1.23kB" and stats_size(0) == "0B" and stats_size(None) == "--"


def test_top_keeps_the_rows_of_the_containers_pids() -> None:
    out = (
        "UID          PID    PPID  C STIME TTY          TIME CMD\n"
        "root           1       0  0 04:00 ?        00:00:01 /sbin/init splash\n"
        "2241331+     166     161  3 04:33 ?        00:00:00 sleep 100\n"
        "2241331+     170     166  0 04:33 ?        00:00:00 sh -c echo a b\n"
    )
    top = filter_ps(out, [166, 170])
    assert top.titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [r[-1] for r in top.processes] == ["sleep 100", "sh -c echo a b"]
    assert top.to_json()["Processes"] == top.processes
    with pytest.raises(InvalidArgument):
        filter_ps("USER COMMAND\nroot init\n", [1])


def test_update_changes_only_what_is_given() -> None:
    spec = SPEC.with_changes(limits=Limits(memory=MemoryBytes.parse("64m"), pids=PidsLimit.parse("10")))
    change = Update(memory=MemoryBytes.parse("128m"), cpus=Cpus.parse("0.5"), restart="always")
    new = apply_to_spec(spec, change)
    assert new.limits.memory == MemoryBytes.parse("128m") and new.limits.pids == PidsLimit.parse("10")
    assert new.limits.cpus == Cpus.parse("0.5") and new.restart == "always"
    assert unit_changes(change) == [("MemoryMax", "t", 128 << 20), ("CPUQuotaPerSecUSec", "t", 500_000)]
    assert Update().empty and not change.empty
    with pytest.raises(InvalidArgument):
        apply_to_spec(spec.with_changes(auto_remove=True), Update(restart="always"))
    with pytest.raises(InvalidArgument):
        apply_to_spec(spec, Update(restart="sometimes"))


def test_paused_and_wait_conditions() -> None:
    assert is_paused({"FreezerState": "frozen"}) and is_paused({"FreezerState": "freezing"})
    assert not is_paused({"FreezerState": "running"}) and not is_paused(None)
    assert check_condition("removed") == "removed"
    with pytest.raises(InvalidArgument):
        check_condition("stopped")
