"""The journal copy of a held run's output: its unit's name and properties (run/journalcopy.py)."""

from __future__ import annotations

from nspawnctl.run.journalcopy import copy_properties, copy_unit_name
from nspawnctl.run.stdio import STDERR, STDOUT
from nspawnctl.spec import ContainerSpec


def test_copy_unit_name_cannot_be_a_containers() -> None:
    name = copy_unit_name("web", STDOUT, "0a1b2c3d")
    assert name == "nspawnctl-output@web-stdout-0a1b2c3d.service"
    assert copy_unit_name("web", STDERR, "0a1b2c3d").endswith("-stderr-0a1b2c3d.service")
    assert "@" in name  # container names are host names: no container's unit has one


def test_copy_properties_carry_the_containers_log_field() -> None:
    spec = ContainerSpec(
        name="web",
        id="ab" * 32,
        image="img",
        image_id="sha256:1",
        created="2026-12-07T07:00:00+00:00",
        command=["sh"],
    )
    props = {k: v for k, _, v in copy_properties(spec, STDERR, "/usr/bin/cat", 7)}
    assert props["ExecStart"] == [["/usr/bin/cat", ["cat"], False]]
    assert props["StandardInputFileDescriptor"] == 7
    assert props["SyslogIdentifier"] == "web"
    assert props["SyslogLevel"] == 3
    assert props["LogExtraFields"] == [f"NSPAWNCTL_CONTAINER_ID={'ab' * 32}".encode()]
    assert props["StandardOutput"] == "journal"
    assert {k: v for k, _, v in copy_properties(spec, STDOUT, "/usr/bin/cat", 7)}["SyslogLevel"] == 6
