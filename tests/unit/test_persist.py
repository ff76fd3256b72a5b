"""The drop-in for systemd-nspawn@NAME.service and the enable/disable calls behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import InvalidArgument
from nspawnctl.run import persist
from nspawnctl.spec import ContainerSpec, Limits
from nspawnctl.values import Cpus, MemoryBytes, PidsLimit

SPEC = ContainerSpec(
    name="web",
    id="0123456789abcdef0123456789abcdef",
    image="busybox:latest",
    image_id="sha256:" + "ab" * 32,
    created="2026-11-24T10:00:00+00:00",
    command=["sh", "-c", "echo hi"],
)


def keys(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line and line[0] not in "#["]
    return [(k, v) for k, _, v in (line.partition("=") for line in lines)]


def test_dropin_runs_the_hook_in_systemds_template() -> None:
    text = persist.render_dropin(SPEC, Paths(), enabled=False, python="/usr/bin/python3", unified=False)
    assert text.startswith("# Written by nspawnctl for container web")
    kv = keys(text)
    # each Exec list is reset before ours, so the template's own nspawn command line is gone
    steps = (("ExecStartPre", "pre --unit %n"), ("ExecStart", "exec"), ("ExecStopPost", "post --unit %n"))
    for key, step in steps:
        values = [v for k, v in kv if k == key]
        assert values[0] == "" and len(values) == 2
        assert values[1].lstrip("-") == f"/usr/bin/python3 -m nspawnctl.run.hook {step} web"
    assert ("ExecStopPost", "-/usr/bin/python3 -m nspawnctl.run.hook post --unit %n web") in kv
    for pair in (
        ("Type", "notify"),
        ("KillMode", "mixed"),
        ("Delegate", "yes"),
        ("Slice", "machine.slice"),
        ("Restart", "no"),
        ("TimeoutStopSec", "90s"),
        ("SyslogIdentifier", "web"),
        ("LogExtraFields", f"NSPAWNCTL_CONTAINER_ID={SPEC.id}"),
        ("LogRateLimitIntervalSec", "1s"),
        ("LogRateLimitBurst", "1000000"),
        ("RequiresMountsFor", "/var/lib/machines/web"),
        ("RequiresMountsFor", "/var/lib/nspawnctl"),
    ):
        assert pair in kv, pair
    assert not any(k == "Environment" or k.startswith(("RestartS", "StartLimit")) for k, _ in kv)
    assert "@" not in text.replace("systemd-nspawn@", "")  # every placeholder filled
    assert "\n\n\n" not in text and "# \n" not in text


def test_restarting_dropin_backs_off_on_new_systemd_and_has_a_start_limit_on_old() -> None:
    spec = dataclasses.replace(SPEC, restart="on-failure")
    new = persist.render_dropin(spec, Paths(), enabled=True, python="/py", unified=False, systemd_version=257)
    unit, _, service = new.partition("[Service]")
    assert "StartLimitIntervalSec=0" in unit and "StartLimitBurst" not in new
    assert "RestartSteps=10\nRestartMaxDelaySec=300s" in service and "RestartSec=1s" in service
    old = persist.render_dropin(spec, Paths(), enabled=True, python="/py", unified=False, systemd_version=252)
    unit, _, service = old.partition("[Service]")
    assert "StartLimitIntervalSec=300s\nStartLimitBurst=10" in unit
    assert "RestartSteps" not in old and "RestartSec=1s" in service


def test_dropin_values_are_escaped_and_the_id_checked() -> None:
    paths = Paths(pool=Path("/srv/my pool%1"), store=Path("/srv/st$re"))
    text = persist.render_dropin(SPEC, paths, enabled=False, python="/py", unified=False)
    kv = keys(text)
    assert ("RequiresMountsFor", '"/srv/my pool%%1/web"') in kv
    assert ("RequiresMountsFor", "/srv/st$re") in kv  # $ means nothing there
    assert ("Environment", '"NSPAWNCTL_POOL=/srv/my pool%%1"') in kv
    assert ("Environment", "NSPAWNCTL_STORE=/srv/st$re") in kv
    bad = dataclasses.replace(SPEC, id="abc\nExecStartPre=/bin/evil")
    with pytest.raises(InvalidArgument):
        persist.render_dropin(bad, Paths(), enabled=False, python="/py", unified=False)


def test_a_python_under_home_is_noted_and_waited_for() -> None:
    text = persist.render_dropin(
        SPEC, Paths(), enabled=False, python="/home/me/venv/bin/python", unified=False
    )
    assert "# The hook runs /home/me/venv/bin/python, a Python under a home directory" in text
    assert ("RequiresMountsFor", "/home/me/venv/bin") in keys(text)
    plain = persist.render_dropin(SPEC, Paths(), enabled=False, python="/usr/bin/python3", unified=False)
    assert "home directory" not in plain


def test_enabled_containers_restart_on_failure_at_least() -> None:
    def restart(policy: str, enabled: bool) -> str:
        spec = dataclasses.replace(SPEC, restart=policy)
        text = persist.render_dropin(spec, Paths(), enabled=enabled, python="/py", unified=False)
        return dict(keys(text))["Restart"]

    assert restart("no", True) == "on-failure"
    assert restart("no", False) == "no"
    assert restart("always", True) == "always"
    assert restart("unless-stopped", False) == "always"
    assert restart("on-failure", False) == "on-failure"


def test_dropin_carries_paths_limits_and_cgroup_hint() -> None:
    spec = dataclasses.replace(
        SPEC, limits=Limits(memory=MemoryBytes(64 << 20), cpus=Cpus(500_000), pids=PidsLimit(50))
    )
    paths = Paths(pool=Path("/srv/pool"), store=Path("/srv/store"))
    text = persist.render_dropin(spec, paths, enabled=True, python="/opt/my venv/bin/python", unified=True)
    kv = keys(text)
    assert ("Environment", "NSPAWNCTL_POOL=/srv/pool") in kv
    assert ("Environment", "NSPAWNCTL_STORE=/srv/store") in kv
    assert ("Environment", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1") in kv
    assert ("MemoryMax", str(64 << 20)) in kv and ("CPUQuota", "50%") in kv and ("TasksMax", "50") in kv
    assert [v for k, v in kv if k == "RequiresMountsFor"] == ["/srv/pool/web", "/srv/store", "/srv/pool"]
    assert ("ExecStart", '"/opt/my venv/bin/python" -m nspawnctl.run.hook exec web') in kv


def test_keep_mark_survives_a_rewrite() -> None:
    kept = persist.render_dropin(SPEC, Paths(), enabled=False, keep=True, python="/py", unified=False)
    assert persist.is_kept(kept)
    assert not persist.is_kept(
        persist.render_dropin(SPEC, Paths(), enabled=False, python="/py", unified=False)
    )


class FakeBus:
    async def get_property(self, dest: str, path: str, iface: str, prop: str) -> str:
        assert (path, prop) == ("/org/freedesktop/systemd1", "Version")
        return "257.13-1~deb13u1"


class FakeManager:
    bus = FakeBus()

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.enabled: set[str] = set()

    async def reload(self) -> None:
        self.calls.append(("reload",))

    async def enable_unit_files(self, files: list[str]) -> None:
        self.calls.append(("enable", *files))
        self.enabled.update(files)

    async def disable_unit_files(self, files: list[str]) -> None:
        self.calls.append(("disable", *files))
        self.enabled.difference_update(files)

    async def unit_file_state(self, file: str) -> str:
        return "enabled" if file in self.enabled else "disabled"


def test_enable_disable_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPAWNCTL_UNIT_DIR", str(tmp_path))
    monkeypatch.setattr(persist, "host_is_unified", lambda: False)
    monkeypatch.setattr(sys, "executable", "/py")
    m = FakeManager()
    path = tmp_path / "systemd-nspawn@web.service.d" / "50-nspawnctl.conf"

    asyncio.run(persist.enable(m, SPEC, Paths()))  # type: ignore[arg-type]
    assert m.calls == [("reload",), ("enable", "systemd-nspawn@web.service", "machines.target"), ("reload",)]
    assert persist.has_dropin("web") and "Restart=on-failure" in path.read_text()
    assert asyncio.run(persist.is_enabled(m, "web"))  # type: ignore[arg-type]

    m.calls.clear()
    asyncio.run(persist.enable(m, SPEC, Paths()))  # type: ignore[arg-type]
    assert m.calls[0][0] == "enable"  # unchanged drop-in: no reload before enabling

    m.calls.clear()
    asyncio.run(persist.disable(m, SPEC, Paths()))  # type: ignore[arg-type]
    assert m.calls == [("disable", "systemd-nspawn@web.service"), ("reload",)]
    assert "Restart=no" in path.read_text()  # back to the container's own policy; the drop-in stays

    m.calls.clear()
    asyncio.run(persist.forget(m, "web"))  # type: ignore[arg-type]
    assert m.calls == [("reload",)]
    assert not path.exists() and not path.parent.exists()
    asyncio.run(persist.forget(m, "web"))  # type: ignore[arg-type]
    assert m.calls == [("reload",)]  # nothing left to do


def test_write_is_atomic_and_leaves_other_dropins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPAWNCTL_UNIT_DIR", str(tmp_path))
    assert persist.write_dropin("web", "a\n") and not persist.write_dropin("web", "a\n")
    other = tmp_path / "systemd-nspawn@web.service.d" / "10-mine.conf"
    other.write_text("[Service]\n")
    assert sorted(p.name for p in other.parent.iterdir()) == ["10-mine.conf", "50-nspawnctl.conf"]
    assert persist.remove_dropin("web") and other.exists()


def test_concurrent_writers_use_temp_files_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """enable, apply and start may write at once: each writes a whole file under its own name."""
    monkeypatch.setenv("NSPAWNCTL_UNIT_DIR", str(tmp_path))
    seen: list[Path] = []
    real_replace = persist.os.replace

    def replace(src: Any, dst: Any) -> None:
        seen.append(Path(src))
        if len(seen) == 1:  # a second writer comes in between
            persist.write_dropin("web", "second\n")
        real_replace(src, dst)

    monkeypatch.setattr(persist.os, "replace", replace)
    assert persist.write_dropin("web", "first\n")
    first, second = seen
    assert (
        first != second and first.name.startswith(".50-nspawnctl.conf.") and not first.name.endswith(".conf")
    )
    assert persist.read_dropin("web") == "first\n"  # the last rename wins, whole
    assert [p.name for p in first.parent.iterdir()] == ["50-nspawnctl.conf"]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPAWNCTL_UNIT_DIR", str(tmp_path))

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persist.os, "fsync", full)
    with pytest.raises(OSError):
        persist.write_dropin("web", "a\n")
    assert list((tmp_path / "systemd-nspawn@web.service.d").iterdir()) == []


def test_systemd_version_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persist, "_version", None)
    assert asyncio.run(persist.systemd_version(FakeManager())) == 257  # type: ignore[arg-type]

    class Broken:
        async def get_property(self, *a: str) -> str:
            raise AssertionError("asked twice")

    m = FakeManager()
    m.bus = Broken()  # type: ignore[assignment]
    assert asyncio.run(persist.systemd_version(m)) == 257  # type: ignore[arg-type]


def test_dropin_stop_timeout_follows_stop_timeout() -> None:
    from nspawnctl.runopts import RunSettings

    spec = dataclasses.replace(SPEC, settings=RunSettings(stop_timeout=300))
    text = persist.render_dropin(spec, Paths(), enabled=False, python="/usr/bin/python3", unified=False)
    assert ("TimeoutStopSec", "310s") in keys(text)
    spec = dataclasses.replace(SPEC, settings=RunSettings(stop_timeout=5))
    text = persist.render_dropin(spec, Paths(), enabled=False, python="/usr/bin/python3", unified=False)
    assert ("TimeoutStopSec", "90s") in keys(text)


def test_on_failure_with_a_retry_count_is_a_start_limit_without_interval() -> None:
    """docker's on-failure:N: the first start and N restarts, never forgotten until the next start."""
    spec = dataclasses.replace(SPEC, restart="on-failure:3")
    for version in (257, 252):
        text = persist.render_dropin(
            spec, Paths(), enabled=False, python="/py", unified=False, systemd_version=version
        )
        unit = text.partition("[Service]")[0]
        assert "StartLimitIntervalSec=infinity\nStartLimitBurst=4" in unit
        assert text.count("StartLimit") == 2 and "Restart=on-failure" in text.replace("#", "")
