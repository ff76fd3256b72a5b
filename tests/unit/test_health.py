"""Health checks: docker's duration syntax, the merge of flags and image, the definition keys and
the state machine (starting -> healthy/unhealthy, the start period, the five-entry log)."""

from __future__ import annotations

import pytest

from nspawnctl import health, healthstate
from nspawnctl.errors import InvalidArgument
from nspawnctl.health import (
    HealthConfig,
    HealthFlags,
    format_duration,
    parse_duration,
    resolve,
)
from nspawnctl.healthstate import HealthState, Result, action, advance
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, file_to_spec, spec_to_file

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [("30s", 30 * S), ("1m30s", 90 * S), ("500ms", S // 2), ("1.5h", 5400 * S), ("0", 0), ("2us", 2000)],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration(text, "--health-interval") == ns
    assert parse_duration(format_duration(ns), "x") == ns


@pytest.mark.parametrize("text", ["", "30", "nan", "inf", "NaNs", "1e3s", "-1s", "1d", "s", "1s2"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(text, "--health-interval")


def test_durations_are_bounded() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_duration("500ms", "--health-interval", health.MIN_INTERVAL)
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_duration("100000h", "--health-timeout")
    assert format_duration(90 * S) == "1m30s" and format_duration(3600 * S) == "1h"


def test_flags_replace_the_image_values_one_by_one() -> None:
    image = {"Test": ["CMD", "/bin/check"], "Interval": 5 * S, "Timeout": 0, "Retries": 7, "StartPeriod": 0}
    c = resolve(image, HealthFlags(timeout=2 * S))
    assert c == HealthConfig(["CMD", "/bin/check"], 5 * S, 2 * S, 7, 0)
    assert c.argv() == ["/bin/check"]
    c = resolve(image, HealthFlags(cmd="test -f /ok"))
    assert c is not None and c.argv() == ["/bin/sh", "-c", "test -f /ok"] and c.retries == 7
    assert resolve(None, HealthFlags()) is None
    assert resolve({"Test": ["NONE"]}, HealthFlags()) is None
    assert resolve(image, HealthFlags(disabled=True)) is None
    d = resolve(None, HealthFlags(cmd="true"))
    assert d == HealthConfig(["CMD-SHELL", "true"], 30 * S, 30 * S, 3, 0, "none")


def test_conflicting_or_pointless_flags_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="conflicts"):
        resolve(None, HealthFlags(disabled=True, cmd="true"))
    with pytest.raises(InvalidArgument, match="need a check"):
        resolve(None, HealthFlags(retries=2))
    with pytest.raises(InvalidArgument, match="empty"):
        resolve(None, HealthFlags(cmd=" "))
    with pytest.raises(InvalidArgument):
        health.parse_on_failure("reboot")
    with pytest.raises(InvalidArgument):
        health.parse_retries("x", "--health-retries")
    with pytest.raises(InvalidArgument, match="--auto-update"):
        health.parse_auto_update("always", "--auto-update")
    assert health.parse_auto_update("image", "x") == "registry"  # podman's older name
    assert health.parse_auto_update("", "x") is None


def test_image_healthcheck_is_checked() -> None:
    ok = health.image_healthcheck({"Test": ["CMD-SHELL", "true"], "Interval": 1000})
    assert ok == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 1000,
        "Timeout": 0,
        "StartPeriod": 0,
        "Retries": 0,
    }
    assert health.image_healthcheck(None) is None
    for bad in ({"Test": []}, {"Test": ["CMD"]}, {"Test": ["RUN", "x"]}, {"Test": ["NONE"], "Interval": -1},
                {"Test": ["NONE"], "Retries": True}, {"Test": ["NONE"], "Interval": 1.5}, []):  # fmt: skip
        with pytest.raises(InvalidArgument):
            health.image_healthcheck(bad)


def test_the_definition_round_trips() -> None:
    spec = ContainerSpec(
        name="c", id="1" * 32, image="img", image_id="sha256:" + "0" * 64, created="now",
        command=["sleep", "9"],
        health=HealthConfig(["CMD-SHELL", "test -f '/a b'"], 2 * S, S // 2, 4, 90 * S, "restart"),
        auto_update="registry",
    )  # fmt: skip
    text = spec_to_file(spec).render()
    assert "HealthCmd=CMD-SHELL" in text and "HealthInterval=2s" in text and "HealthTimeout=500ms" in text
    assert (
        "HealthStartPeriod=1m30s" in text
        and "HealthOnFailure=restart" in text
        and "AutoUpdate=registry" in text
    )
    back = file_to_spec("c", NspawnFile.parse(text))
    assert back.health == spec.health and back.auto_update == "registry"
    assert (
        file_to_spec("c", NspawnFile.parse(spec_to_file(spec.with_changes(health=None)).render())).health
        is None
    )


def test_a_bad_key_names_its_line() -> None:
    text = "[X-Nspawnctl]\nId=1\nHealthCmd=CMD-SHELL true\nHealthInterval=nan\n"
    with pytest.raises(InvalidArgument, match=r"f.nspawn:4"):
        file_to_spec("c", NspawnFile.parse(text, "f.nspawn"))
    with pytest.raises(InvalidArgument, match="AutoUpdate"):
        file_to_spec("c", NspawnFile.parse("[X-Nspawnctl]\nId=1\nAutoUpdate=always\n", "f.nspawn"))


def _r(code: int) -> Result:
    return Result("s", "e", code, "out")


def test_state_machine_counts_failures_up_to_retries() -> None:
    c = HealthConfig(["CMD", "x"], S, S, 2, 0)
    s = HealthState(started=100.0)
    s = advance(s, _r(1), c, 101)
    assert (s.status, s.failing_streak) == ("starting", 1)
    s2 = advance(s, _r(1), c, 102)
    assert (s2.status, s2.failing_streak) == ("unhealthy", 2)
    assert action(s, s2, c) is None  # on_failure none
    s3 = advance(s2, _r(0), c, 103)
    assert (s3.status, s3.failing_streak) == ("healthy", 0) and len(s3.log) == 3


def test_start_period_failures_do_not_count_until_the_first_pass() -> None:
    c = HealthConfig(["CMD", "x"], S, S, 1, 60 * S)
    s = advance(HealthState(started=0.0), _r(1), c, 10)
    assert (s.status, s.failing_streak) == ("starting", 0)
    s = advance(s, _r(1), c, 61)  # after the start period
    assert s.status == "unhealthy"
    h = advance(HealthState(started=0.0), _r(0), c, 5)
    h = advance(h, _r(1), c, 6)  # healthy once: the start period no longer shields
    assert h.status == "unhealthy"


def test_log_keeps_five_and_output_is_truncated() -> None:
    c = HealthConfig(["CMD", "x"], S, S, 3, 0)
    s = HealthState()
    for i in range(8):
        s = advance(s, Result(str(i), "e", 0, ""), c, 0)
    assert [r.start for r in s.log] == ["3", "4", "5", "6", "7"]
    assert len(healthstate.truncate_output(b"x" * 10000)) == 4096


def test_on_failure_acts_once_when_turning_unhealthy() -> None:
    c = HealthConfig(["CMD", "x"], S, S, 1, 0, "restart")
    healthy, unhealthy = HealthState("healthy"), HealthState("unhealthy", 1)
    assert action(healthy, unhealthy, c) == "restart"
    assert action(unhealthy, HealthState("unhealthy", 2), c) is None


def test_timer_units_bind_to_the_container_and_exec_no_shell() -> None:
    c = HealthConfig(["CMD-SHELL", "true; $(rm -rf /)"], 2 * S, S, 3, 0)
    timer, service = health.timer_units("web", c, "nspawnctl-web.service", "/usr/bin/python3", ["A=b"])
    t = {k: v for k, _sig, v in timer}
    assert t["BindsTo"] == ["nspawnctl-web.service"] and t["After"] == ["nspawnctl-web.service"]
    assert t["TimersMonotonic"] == [["OnActiveSec", 2_000_000], ["OnUnitActiveSec", 2_000_000]]
    sv = {k: v for k, _sig, v in service}
    assert sv["ExecStart"] == [
        ["/usr/bin/python3", ["/usr/bin/python3", "-m", "nspawnctl.health", "web"], False]
    ]
    assert sv["Type"] == "oneshot" and sv["Environment"] == ["A=b"]
    assert health.timer_name("web") == "nspawnctl-health-web.timer"


def test_state_file_round_trips(tmp_path: object) -> None:
    from pathlib import Path

    from nspawnctl.config import Paths

    paths = Paths(store=Path(str(tmp_path)))
    assert healthstate.read_state(paths, "c") is None
    st = HealthState("healthy", 0, [_r(0)], 5.0)
    healthstate.write_state(paths, "c", st)
    assert healthstate.read_state(paths, "c") == st
    assert st.to_docker() == {
        "Status": "healthy",
        "FailingStreak": 0,
        "Log": [{"Start": "s", "End": "e", "ExitCode": 0, "Output": "out"}],
    }
    healthstate.forget_state(paths, "c")
    assert healthstate.read_state(paths, "c") is None


def test_check_output_is_read_only_as_far_as_it_is_kept() -> None:
    """50 MB of output: the first MAX_OUTPUT + 1 bytes are kept, the rest is never held."""
    import tracemalloc

    tracemalloc.start()
    try:
        code, out = health.run_bounded(["head", "-c", "50000000", "/dev/zero"], {}, 30, health.MAX_OUTPUT + 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0 and out == b"\0" * (health.MAX_OUTPUT + 1)
    assert peak < 1 << 20
    assert health.run_bounded(["sh", "-c", "echo hi; exit 3"], {}, 30, 100) == (3, b"hi\n")


@pytest.mark.parametrize("script", ["exec sleep 30", "cat /dev/zero", "sleep 30 & exit 0"])
def test_check_timeout_holds_with_endless_output_or_a_child_keeping_the_pipe(script: str) -> None:
    import subprocess
    import time

    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        health.run_bounded(["sh", "-c", script], {}, 0.5, health.MAX_OUTPUT + 1)
    assert time.monotonic() - start < 10


def test_start_interval_gets_a_timer_of_its_own_for_the_start_period() -> None:
    c = HealthConfig(["CMD", "true"], 30 * S, S, 3, 60 * S, start_interval=2 * S)
    assert c.start_phase and c.to_docker()["StartInterval"] == 2 * S
    timer, _ = health.timer_units("web", c, "u.service", "/py", [])
    assert dict((k, v) for k, _s, v in timer)["TimersMonotonic"] == [
        ["OnActiveSec", 60_000_000],  # the main rhythm starts when the start period ends
        ["OnUnitActiveSec", 30_000_000],
    ]
    timer, service = health.timer_units("web", c, "u.service", "/py", [], start_phase=True)
    t = dict((k, v) for k, _s, v in timer)
    assert t["TimersMonotonic"] == [["OnActiveSec", 2_000_000], ["OnUnitActiveSec", 2_000_000]]
    assert t["BindsTo"] == ["u.service"]
    argv = dict((k, v) for k, _s, v in service)["ExecStart"][0][1]
    assert argv == ["/py", "-m", "nspawnctl.health", "--start-phase", "web"]
    assert health.timer_name("web", start_phase=True) == "nspawnctl-healthstart-web.timer"
    # without a start period there is no start phase, and no StartInterval in docker's shape
    plain = HealthConfig(["CMD", "true"], 30 * S, S, 3, 0)
    assert not plain.start_phase and "StartInterval" not in plain.to_docker()


def test_start_interval_round_trips_and_comes_from_the_image() -> None:
    c = health.resolve(
        {"Test": ["CMD", "true"], "StartInterval": 3 * S}, HealthFlags(start_period=10 * S)
    )
    assert c is not None and c.start_interval == 3 * S
    f = NspawnFile.parse("")
    health.to_file(c, f)
    assert "HealthStartInterval=3s" in f.render().splitlines()
    assert health.from_file(NspawnFile.parse(f.render())) == c
    flags = HealthFlags(start_interval=S)
    assert health.resolve({"Test": ["CMD", "true"], "StartInterval": 3 * S}, flags).start_interval == S  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument, match="need a check"):
        health.resolve(None, HealthFlags(start_interval=S))


def test_a_multi_line_check_is_kept_as_one_json_line() -> None:
    c = HealthConfig(["CMD-SHELL", 'echo "a"\ntest -f /ok'])
    f = NspawnFile.parse("")
    health.to_file(c, f)
    assert 'HealthCmd=["CMD-SHELL", "echo \\"a\\"\\ntest -f /ok"]' in f.render().splitlines()
    assert health.from_file(NspawnFile.parse(f.render())) == c
    with pytest.raises(InvalidArgument, match="NUL"):
        health.check_test(["CMD", "a\0b"], "x")
    with pytest.raises(InvalidArgument, match="JSON"):
        health.decode_test('["CMD", ', "HealthCmd=")
