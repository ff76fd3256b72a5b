"""Limits in definitions that older versions wrote: read as the nearest allowed value, never
made unreadable; what is not a number still names FILE:LINE."""

from __future__ import annotations

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import limits_from_file
from nspawnctl.values import MAX_PIDS, MIN_MEMORY, BadValue, stored_number


def limits(lines: str):  # type: ignore[no-untyped-def]
    return limits_from_file(NspawnFile.parse(f"[X-Nspawnctl]\nId=ab\n{lines}\n"))


@pytest.mark.parametrize(
    ("line", "memory", "usec", "pids"),
    [
        ("CPUs=0.005", None, 10_000, None),  # below docker's 0.01: the minimum
        ("CPUs=1e-05", None, 10_000, None),  # Python's %g of a float, as versions before 0.x wrote
        ("CPUs=2.5", None, 2_500_000, None),
        ("CPUs=0", None, None, None),  # docker's "no limit"
        ("MemoryMax=1000", MIN_MEMORY, None, None),
        ("MemoryMax=67108864", 64 << 20, None, None),
        ("MemoryMax=64M", 64 << 20, None, None),  # hand-written, as systemd writes it
        ("TasksMax=0", None, None, None),
        ("TasksMax=99999999999999999999", None, None, MAX_PIDS),
    ],
)
def test_old_values_read_as_the_nearest_allowed(
    line: str, memory: int | None, usec: int | None, pids: int | None
) -> None:
    got = limits(line)
    assert (got.memory.bytes if got.memory else None) == memory
    assert (got.cpus.usec if got.cpus else None) == usec
    assert (got.pids.count if got.pids else None) == pids


@pytest.mark.parametrize(
    "line", ["CPUs=nan", "CPUs=inf", "MemoryMax=infinity", "TasksMax=lots", "CPUs=1e99999"]
)
def test_what_is_no_number_names_file_and_line(line: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        limits(line)
    assert f":3: {line}: " in str(e.value)


def test_stored_number_bounds() -> None:
    assert stored_number(" 7 ", 1, 1, 5) == 5
    assert stored_number("-3", 1, 1, 5) is None
    with pytest.raises(BadValue):
        stored_number("1" * 100, 1, 1, 5)


@pytest.mark.parametrize(
    ("line", "usec", "memory", "pids"),
    [
        ("CPUs=1e+06", 10_000 * 1_000_000, None, None),  # more than MAX_CPUS: the maximum
        ("MemoryMax=99999999999999999999999999", None, (1 << 63) - 1, None),
        (
            "MemoryMax=18446744073709551615",
            None,
            (1 << 63) - 1,
            None,
        ),  # systemd's infinity: the largest limit
    ],
)
def test_old_values_above_the_maximum_read_as_the_maximum(
    line: str, usec: int | None, memory: int | None, pids: int | None
) -> None:
    got = limits(line)
    assert (got.cpus.usec if got.cpus else None) == usec
    assert (got.memory.bytes if got.memory else None) == memory
    assert got.pids is None
