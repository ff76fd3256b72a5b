"""The drop-in for systemd-nspawn@NAME.service and the enable/disable calls behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.config import Paths
from nspawnctl.run import persist
from nspawnctl.spec import ContainerSpec, Limits

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
    for key, step in (("ExecStartPre", "pre --unit %n"), ("ExecStart", "exec"), ("ExecStopPost", "post")):
        values = [v for k, v in kv if k == key]
        assert values[0] == "" and len(values) == 2
        assert values[1].lstrip("-") == f"/usr/bin/python3 -m nspawnctl.run.hook {step} web"
    assert ("ExecStopPost", "-/usr/bin/python3 -m nspawnctl.run.hook post web") in kv
    for pair in (
        ("Type", "notify"),
        ("KillMode", "mixed"),
        ("Delegate", "yes"),
        ("Slice", "machine.slice"),
        ("Restart", "no"),
        ("RestartSec", "1s"),
        ("TimeoutStopSec", "90s"),
        ("SyslogIdentifier", "web"),
        ("LogExtraFields", f"NSPAWNCTL_CONTAINER_ID={SPEC.id}"),
        ("RequiresMountsFor", "/var/lib/machines/web /var/lib/nspawnctl"),
        ("StartLimitIntervalSec", "0"),
    ):
        assert pair in kv, pair
    assert not any(k == "Environment" for k, _ in kv)
    assert "@" not in text.replace("systemd-nspawn@", "")  # every placeholder filled


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
    spec = dataclasses.replace(SPEC, limits=Limits(memory=64 << 20, cpus=0.5, pids=50))
    paths = Paths(pool=Path("/srv/pool"), store=Path("/srv/store"))
    text = persist.render_dropin(spec, paths, enabled=True, python="/opt/my venv/bin/python", unified=True)
    kv = keys(text)
    assert ("Environment", "NSPAWNCTL_POOL=/srv/pool") in kv
    assert ("Environment", "NSPAWNCTL_STORE=/srv/store") in kv
    assert ("Environment", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1") in kv
    assert ("MemoryMax", str(64 << 20)) in kv and ("CPUQuota", "50%") in kv and ("TasksMax", "50") in kv
    assert ("RequiresMountsFor", "/srv/pool/web /srv/store /srv/pool") in kv
    assert ("ExecStart", '"/opt/my venv/bin/python" -m nspawnctl.run.hook exec web') in kv


def test_unit_words_are_escaped() -> None:
    assert persist.unit_word("/usr/bin/python3") == "/usr/bin/python3"
    assert persist.unit_word("/a b/%x$y") == '"/a b/%%x$$y"'


def test_keep_mark_survives_a_rewrite() -> None:
    kept = persist.render_dropin(SPEC, Paths(), enabled=False, keep=True, python="/py", unified=False)
    assert persist.is_kept(kept)
    assert not persist.is_kept(
        persist.render_dropin(SPEC, Paths(), enabled=False, python="/py", unified=False)
    )


class FakeManager:
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
