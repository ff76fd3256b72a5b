"""The unit hook (pre/exec/post) and the transient unit's shape: restart policy, pre-start hook only
when needed, nspawn inside nsenter for a network namespace of our own."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nspawnctl import net
from nspawnctl.config import Paths
from nspawnctl.run import hook
from nspawnctl.run.units import (
    RESTART_STOP_TIMEOUT,
    STOP_TIMEOUT,
    Launch,
    exec_argv,
    needs_pre,
    persistent_unit_name,
    systemd_restart,
    unit_properties,
)
from nspawnctl.spec import ContainerSpec, PortMapping

SPEC = ContainerSpec(
    name="web",
    id="0123456789abcdef0123456789abcdef",
    image="busybox:latest",
    image_id="sha256:" + "ab" * 32,
    created="2026-11-24T10:00:00+00:00",
    command=["sh", "-c", "echo hi"],
)
VETH = dataclasses.replace(SPEC, network="veth")


def props_of(spec: ContainerSpec, launch: Launch) -> dict[str, tuple[str, Any]]:
    return {name: (sig, value) for name, sig, value in unit_properties(spec, Path("/p"), launch)}


def test_hook_argv() -> None:
    assert hook.hook_argv("pre", "web", "nspawnctl-web.service") == (
        sys.executable,
        "-m",
        "nspawnctl.run.hook",
        "pre",
        "--unit",
        "nspawnctl-web.service",
        "web",
    )
    assert hook.hook_argv("post", "web", remove=True)[-2:] == ("--remove", "web")


def test_paths_environment_names_only_what_differs() -> None:
    assert hook.paths_environment(Paths()) == []
    env = hook.paths_environment(Paths(pool=Path("/tmp/pool"), store=Path("/tmp/store")))
    assert env == ["NSPAWNCTL_POOL=/tmp/pool", "NSPAWNCTL_STORE=/tmp/store"]


def test_restart_policy_maps_to_systemd() -> None:
    assert [systemd_restart(p) for p in ("no", "on-failure", "always", "unless-stopped")] == [
        "no",
        "on-failure",
        "always",
        "always",
    ]
    props = props_of(dataclasses.replace(SPEC, restart="unless-stopped"), Launch())
    assert props["Restart"] == ("s", "always")
    assert props["RestartUSec"] == ("t", 1_000_000)
    assert props["StartLimitIntervalUSec"] == ("t", 0)
    assert props["TimeoutStopUSec"] == ("t", RESTART_STOP_TIMEOUT * 1_000_000)
    plain = props_of(SPEC, Launch())
    assert "Restart" not in plain and plain["TimeoutStopUSec"] == ("t", STOP_TIMEOUT * 1_000_000)


def test_pre_hook_only_when_the_container_has_its_own_network() -> None:
    assert not needs_pre(SPEC)
    assert needs_pre(VETH) and needs_pre(dataclasses.replace(SPEC, network="zone:web"))
    assert needs_pre(dataclasses.replace(VETH, ports=[PortMapping.parse("8080:80")]))
    assert "ExecStartPre" not in props_of(SPEC, Launch())
    pre = ("/py", "-m", "nspawnctl.run.hook", "pre", "web")
    assert props_of(VETH, Launch(pre=pre))["ExecStartPre"] == ("a(sasb)", [["/py", list(pre), False]])


def test_nspawn_runs_inside_the_netns_through_nsenter() -> None:
    launch = Launch(nspawn="/usr/bin/systemd-nspawn", netns="/run/netns/nspawnctl-web")
    argv = exec_argv(VETH, Path("/p"), launch)
    assert argv[:4] == ["/usr/bin/nsenter", "--net=/run/netns/nspawnctl-web", "--", "/usr/bin/systemd-nspawn"]
    assert "--machine=web" in argv
    (start,) = props_of(VETH, launch)["ExecStart"][1]
    assert start[0] == "/usr/bin/nsenter" and start[1][0] == "nsenter" and start[1][1:] == argv[1:]
    # no namespace of our own: nspawn itself, as before
    (plain,) = props_of(SPEC, Launch())["ExecStart"][1]
    assert plain[0] == "/usr/bin/systemd-nspawn" and plain[1][0] == "systemd-nspawn"


def test_environment_carries_paths_and_cgroup_hint() -> None:
    launch = Launch(unified_cgroup=True, environment=("NSPAWNCTL_POOL=/x",))
    assert props_of(SPEC, launch)["Environment"] == (
        "as",
        ["NSPAWNCTL_POOL=/x", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"],
    )


def test_exit_code_from_env() -> None:
    assert hook.exit_code_from_env({"EXIT_CODE": "exited", "EXIT_STATUS": "3"}) == 3
    assert hook.exit_code_from_env({"EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}) == 137
    assert hook.exit_code_from_env({"EXIT_CODE": "killed", "EXIT_STATUS": "TERM"}) == 143
    assert hook.exit_code_from_env({"SERVICE_RESULT": "success"}) == 0
    assert hook.exit_code_from_env({"SERVICE_RESULT": "timeout"}) == 1


class FakeStore:
    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec
        self.calls: list[str] = []

    def get(self, name: str) -> ContainerSpec:
        return self.spec

    def clear_exit(self, name: str) -> None:
        self.calls.append(f"clear {name}")

    def remove(self, name: str) -> None:
        self.calls.append(f"remove {name}")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(net, "check_ports", lambda paths, spec: seen.append(("check", spec.name)))
    monkeypatch.setattr(net, "up", lambda paths, spec, unit=None: seen.append(("up", spec.name, unit)))
    monkeypatch.setattr(net, "down", lambda paths, name: seen.append(("down", name)))
    monkeypatch.setattr(hook, "clear_stale_mounts", lambda name: seen.append(("mounts", name)))
    return seen


def test_pre_builds_the_network_only_when_needed(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    store = FakeStore(SPEC)
    monkeypatch.setattr(hook, "_store", lambda paths: store)
    assert hook.main(["pre", "web"]) == 0
    assert calls == [("mounts", "web")] and store.calls == ["clear web"]
    store.spec = VETH
    calls.clear()
    assert hook.main(["pre", "--unit", "systemd-nspawn@web.service", "web"]) == 0
    assert calls == [("mounts", "web"), ("check", "web"), ("up", "web", "systemd-nspawn@web.service")]


def test_exec_replaces_itself_with_nsenter_and_nspawn(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    monkeypatch.setattr(hook, "_store", lambda paths: FakeStore(VETH))
    monkeypatch.setattr(hook, "nspawn_binary", lambda: "/usr/bin/systemd-nspawn")
    monkeypatch.setattr(hook, "nsenter_binary", lambda: "/usr/bin/nsenter")
    monkeypatch.setattr(net, "netns_path", lambda name: f"/run/netns/nspawnctl-{name}")
    execs: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        execs.append((path, argv))
        raise SystemExit(0)

    monkeypatch.setattr(hook.os, "execv", fake_execv)
    with pytest.raises(SystemExit):
        hook.main(["exec", "web"])
    ((path, argv),) = execs
    assert path == "/usr/bin/nsenter"
    assert argv[:4] == ["nsenter", "--net=/run/netns/nspawnctl-web", "--", "/usr/bin/systemd-nspawn"]
    assert "--console=pipe" in argv and "--settings=override" in argv


def test_post_records_the_exit_and_tears_the_network_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    monkeypatch.setenv("NSPAWNCTL_POOL", str(tmp_path / "pool"))
    monkeypatch.setenv("NSPAWNCTL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "1")
    monkeypatch.setenv("SERVICE_RESULT", "exit-code")
    assert hook.main(["post", "web"]) == 0
    record = json.loads((tmp_path / "store" / "state" / "web.json").read_text())
    assert record["exit_code"] == 1 and record["result"] == "exit-code"
    assert calls == [("down", "web")]


def test_post_removes_rm_containers_even_when_teardown_fails(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    store = FakeStore(SPEC)
    monkeypatch.setattr(hook, "_store", lambda paths: store)

    def broken(paths: Paths, name: str) -> None:
        raise RuntimeError("ip failed")

    monkeypatch.setattr(net, "down", broken)
    logged: list[str] = []
    monkeypatch.setattr(hook, "log_error", logged.append)
    assert hook.main(["post", "--remove", "web"]) == 1
    assert store.calls == ["remove web"] and "ip failed" in logged[0]


def test_poststop_alias_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    from nspawnctl.run import poststop

    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "0")
    assert poststop.main(["--pool", str(tmp_path / "p"), "--store", str(tmp_path / "s"), "web"]) == 0
    assert json.loads((tmp_path / "s" / "state" / "web.json").read_text())["exit_code"] == 0


def test_persistent_unit_name() -> None:
    assert persistent_unit_name("web") == "systemd-nspawn@web.service"
