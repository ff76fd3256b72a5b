"""The unit hook (pre/exec/post) and the transient unit's shape: restart policy, pre-start hook only
when needed, nspawn inside nsenter for a network namespace of our own."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nspawnctl import net
from nspawnctl.config import Paths
from nspawnctl.run import hook, programs
from nspawnctl.run.units import (
    RESTART_STOP_TIMEOUT,
    STOP_TIMEOUT,
    Launch,
    exec_argv,
    has_backoff,
    needs_pre,
    persistent_unit_name,
    restart_settings,
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


def props_of(spec: ContainerSpec, launch: Launch, backoff: bool = False) -> dict[str, tuple[str, Any]]:
    props = unit_properties(spec, Path("/p"), launch, backoff=backoff)
    return {name: (sig, value) for name, sig, value in props}


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
    props = props_of(dataclasses.replace(SPEC, restart="unless-stopped"), Launch(), backoff=True)
    assert props["Restart"] == ("s", "always")
    assert props["RestartUSec"] == ("t", 1_000_000)
    assert props["TimeoutStopUSec"] == ("t", RESTART_STOP_TIMEOUT * 1_000_000)
    plain = props_of(SPEC, Launch())
    assert "Restart" not in plain and plain["TimeoutStopUSec"] == ("t", STOP_TIMEOUT * 1_000_000)
    assert not any(k.startswith(("Restart", "StartLimit")) for k in plain)


def test_restarts_back_off_or_hit_a_start_limit() -> None:
    """A container that can never start must not be restarted every second forever: systemd
    >= 254 grows the delay up to 5 min; older ones stop after a burst of starts."""
    assert has_backoff(254) and has_backoff(257) and not has_backoff(252) and not has_backoff(0)
    failing = dataclasses.replace(SPEC, restart="on-failure")
    new = props_of(failing, Launch(), backoff=True)
    assert new["RestartSteps"] == ("u", 10) and new["RestartMaxDelayUSec"] == ("t", 300_000_000)
    assert new["StartLimitIntervalUSec"] == ("t", 0)  # the growing delay is the limit
    old = props_of(failing, Launch(), backoff=False)
    assert "RestartSteps" not in old and "RestartMaxDelayUSec" not in old
    assert old["StartLimitIntervalUSec"] == ("t", 300_000_000) and old["StartLimitBurst"] == ("u", 10)
    # the drop-in's settings say the same
    assert restart_settings("on-failure", True) == [
        ("Restart", "on-failure"),
        ("RestartSec", "1s"),
        ("RestartSteps", "10"),
        ("RestartMaxDelaySec", "300s"),
        ("StartLimitIntervalSec", "0"),
    ]
    assert restart_settings("always", False)[2:] == [
        ("StartLimitIntervalSec", "300s"),
        ("StartLimitBurst", "10"),
    ]
    assert restart_settings("no", True) == []


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


def test_nspawn_enters_the_prepared_ipc_namespace_too() -> None:
    launch = Launch(nspawn="/n", netns="/run/netns/x", ipcns="/run/nspawnctl/ipcns/web")
    argv = exec_argv(VETH, Path("/p"), launch)
    ipc = "--ipc=/run/nspawnctl/ipcns/web"
    assert argv[:5] == ["/usr/bin/nsenter", "--net=/run/netns/x", ipc, "--", "/n"]
    only = exec_argv(SPEC, Path("/p"), Launch(nspawn="/n", ipcns="/i"))
    assert only[:4] == ["/usr/bin/nsenter", "--ipc=/i", "--", "/n"]
    settings = dataclasses.replace(SPEC.settings, sysctls=(("kernel.shmmax", "1"),))
    assert needs_pre(dataclasses.replace(SPEC, settings=settings)) and not needs_pre(SPEC)


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

        self.holding = False  # the container's lock (store.locked)
        self.reads: list[bool] = []  # for each get: whether the lock was held

    def get(self, name: str) -> ContainerSpec:
        self.reads.append(self.holding)
        return self.spec

    def clear_exit(self, name: str) -> None:
        self.calls.append(f"clear {name}")

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[str]:
        self.holding = True
        try:
            yield f"held {name}"
        finally:
            self.holding = False

    def remove(self, name: str, held: str | None = None) -> None:
        assert held == f"held {name}" and self.holding  # review 18 #3: only under its lock
        self.calls.append(f"remove {name}")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(net, "check_ports", lambda paths, spec: seen.append(("check", spec.name)))
    monkeypatch.setattr(net, "up", lambda paths, spec, unit=None: seen.append(("up", spec.name, unit)))
    monkeypatch.setattr(
        net, "down", lambda paths, name, invocation=None: seen.append(("down", name, invocation))
    )
    monkeypatch.setattr(hook, "clear_stale_mounts", lambda name: seen.append(("mounts", name)))
    monkeypatch.setattr(hook, "running_elsewhere", lambda name, unit: None)
    monkeypatch.setattr(hook, "own_unit", lambda: None)
    for var in ("EXIT_CODE", "EXIT_STATUS", "SERVICE_RESULT", "INVOCATION_ID", "JOURNAL_STREAM"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_pre_builds_the_network_only_when_needed(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    store = FakeStore(SPEC)
    monkeypatch.setattr(hook, "_store", lambda paths: store)
    assert hook.main(["pre", "web"]) == 0
    assert calls == [("mounts", "web")] and store.calls == ["clear web"]
    assert store.reads == [True]  # the definition is read under the container's lock (review #9)
    store.spec = VETH
    calls.clear()
    assert hook.main(["pre", "--unit", "systemd-nspawn@web.service", "web"]) == 0
    # up() checks the published ports itself: no second check here
    assert calls == [("mounts", "web"), ("up", "web", "systemd-nspawn@web.service")]


def test_pre_refuses_a_container_running_under_the_other_unit(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    """run -d, then machinectl start: the second start must not touch the running container."""
    store = FakeStore(VETH)
    monkeypatch.setattr(hook, "_store", lambda paths: store)
    asked: list[tuple[str, str]] = []

    def elsewhere(name: str, unit: str) -> str:
        asked.append((name, unit))
        return "nspawnctl-web.service"

    monkeypatch.setattr(hook, "running_elsewhere", elsewhere)
    monkeypatch.setattr(hook, "_journal_send", lambda data: None)
    stopped: list[str] = []
    monkeypatch.setattr(hook, "_give_up", stopped.append)
    assert hook.main(["pre", "--unit", "systemd-nspawn@web.service", "web"]) == 1
    assert asked == [("web", "systemd-nspawn@web.service")]
    assert stopped == ["systemd-nspawn@web.service"]  # not retried by its Restart= policy
    assert calls == [] and store.calls == []  # no mounts cleared, exit record kept, network untouched
    err = capsys.readouterr().err
    assert "already running under nspawnctl-web.service" in err and err.count("\n") == 1


def test_other_unit() -> None:
    assert hook.other_unit("web", "nspawnctl-web.service") == "systemd-nspawn@web.service"
    assert hook.other_unit("web", "systemd-nspawn@web.service") == "nspawnctl-web.service"


def test_own_unit_from_the_cgroup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_open = builtins.open
    text = {"v": "0::/machine.slice/systemd-nspawn@web.service/.control\n"}

    def fake_open(path: Any, *a: Any, **kw: Any) -> Any:
        if path == "/proc/self/cgroup":
            f = tmp_path / "cgroup"
            f.write_text(text["v"])
            return real_open(f, *a, **kw)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert hook.own_unit() == "systemd-nspawn@web.service"
    text["v"] = "0::/user.slice/user-0.slice/session-1.scope\n"
    assert hook.own_unit() is None


def test_exec_replaces_itself_with_nsenter_and_nspawn(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    """The persistent unit (the hook's exec step) gets the same separate stdout/stderr journal
    streams as the transient one, opened in-process, for its own unit, before it execs."""
    monkeypatch.setattr(hook, "_store", lambda paths: FakeStore(VETH))
    monkeypatch.setattr(programs, "nspawn_binary", lambda: "/usr/bin/systemd-nspawn")
    monkeypatch.setattr(programs, "nsenter_binary", lambda: "/usr/bin/nsenter")
    monkeypatch.setattr(net, "netns_path", lambda name: f"/run/netns/nspawnctl-{name}")
    from nspawnctl.run import streams

    attached: list[tuple[str, str]] = []
    monkeypatch.setattr(streams, "attach", lambda ident, unit: attached.append((ident, unit)) or True)
    execs: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        execs.append((path, argv))
        raise SystemExit(0)

    monkeypatch.setattr(hook.os, "execv", fake_execv)
    with pytest.raises(SystemExit):
        hook.main(["exec", "--unit", "systemd-nspawn@web.service", "web"])
    ((path, argv),) = execs
    assert attached == [("web", "systemd-nspawn@web.service")]
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
    monkeypatch.setenv("INVOCATION_ID", "0f" * 16)
    asked: list[str | None] = []
    monkeypatch.setattr(hook, "exec_failure_of", lambda inv: asked.append(inv))
    assert hook.main(["post", "web"]) == 0
    record = json.loads((tmp_path / "store" / "state" / "web.json").read_text())
    assert record["exit_code"] == 1 and record["result"] == "exit-code"
    assert calls == [("down", "web", "0f" * 16)]  # only the network this run built
    assert asked == ["0f" * 16]  # exit 1: was it nspawn failing to execute the command?
    monkeypatch.setattr(hook, "exec_failure_of", lambda inv: 127)
    assert hook.main(["post", "web"]) == 0
    assert json.loads((tmp_path / "store" / "state" / "web.json").read_text())["exit_code"] == 127


def test_exec_failure_of_reads_this_runs_output(monkeypatch: pytest.MonkeyPatch) -> None:
    from nspawnctl.systemd import journal

    seen: list[list[str]] = []

    def read(matches: list[str], **kw: Any) -> list[journal.Entry]:
        seen.append(matches)
        return [journal.Entry("c", 0, b"execv(/x) failed: Permission denied", 3)]

    monkeypatch.setattr(journal, "sync", lambda: None)
    monkeypatch.setattr(journal, "read", read)
    assert hook.exec_failure_of("ab") == 126
    assert seen == [["_SYSTEMD_INVOCATION_ID=ab", "_TRANSPORT=stdout"]]
    assert hook.exec_failure_of(None) is None


def test_post_of_a_run_that_never_started_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    """systemd sets $EXIT_CODE only when the main process ran: without it (pre failed or refused)
    there is no exit to record; with the container running under another unit, nothing to do."""
    monkeypatch.setenv("NSPAWNCTL_POOL", str(tmp_path / "pool"))
    monkeypatch.setenv("NSPAWNCTL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("SERVICE_RESULT", "exit-code")
    monkeypatch.setenv("INVOCATION_ID", "0f" * 16)
    state = tmp_path / "store" / "state" / "web.json"
    assert hook.main(["post", "--unit", "systemd-nspawn@web.service", "web"]) == 0
    assert not state.exists() and calls == [("down", "web", "0f" * 16)]

    calls.clear()
    monkeypatch.setattr(hook, "running_elsewhere", lambda name, unit: "nspawnctl-web.service")
    monkeypatch.setattr(hook, "log_error", lambda message, priority=3: None)
    assert hook.main(["post", "--remove", "--unit", "systemd-nspawn@web.service", "web"]) == 0
    assert calls == [] and not state.exists()  # not even a --rm removal


def test_post_removes_rm_containers_even_when_teardown_fails(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]
) -> None:
    store = FakeStore(SPEC)
    monkeypatch.setattr(hook, "_store", lambda paths: store)

    def broken(paths: Paths, name: str, invocation: str | None = None) -> None:
        raise RuntimeError("ip failed")

    monkeypatch.setattr(net, "down", broken)
    monkeypatch.setenv("EXIT_CODE", "exited")
    logged: list[str] = []
    monkeypatch.setattr(hook, "log_error", lambda message, priority=3: logged.append(message))
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


def test_unexpected_errors_are_one_line_and_fail(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook, "_store", lambda paths: FakeStore(SPEC))
    monkeypatch.setattr(programs, "nspawn_binary", lambda: "/usr/bin/systemd-nspawn")
    sent: list[bytes] = []
    monkeypatch.setattr(hook, "_journal_send", sent.append)

    from nspawnctl.run import streams

    # no journald to attach to (the test must not hand pytest's own fds to a real one)
    monkeypatch.setattr(streams, "attach", lambda ident, unit: False)

    def no_exec(path: str, argv: list[str]) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(hook.os, "execv", no_exec)
    assert hook.main(["exec", "web"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nspawnctl: container web: exec failed: PermissionError")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert b"PRIORITY=3" in sent[0] and b"SYSLOG_IDENTIFIER=nspawnctl" in sent[0]


def test_log_error_goes_to_stderr_with_a_priority_prefix_in_a_unit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A unit's stderr is a journal stream (the line carries the unit): <3> makes it an error."""
    sent: list[bytes] = []
    monkeypatch.setattr(hook, "_journal_send", sent.append)
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    hook.log_error("port 8080/tcp is\nin use")
    assert capsys.readouterr().err == "<3>port 8080/tcp is in use\n"
    assert sent == [b"MESSAGE=port 8080/tcp is in use\nPRIORITY=3\nSYSLOG_IDENTIFIER=nspawnctl\n"]


def test_persistent_unit_name() -> None:
    assert persistent_unit_name("web") == "systemd-nspawn@web.service"


def test_attached_starts_use_the_transient_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Handing over our terminal or keeping the unit referenced are transient-unit properties:
    such a start does not go to systemd-nspawn@NAME.service even when the drop-in exists."""
    from nspawnctl.run import persist
    from nspawnctl.run.runtime import Runtime

    monkeypatch.setenv("NSPAWNCTL_UNIT_DIR", str(tmp_path))
    assert Runtime.unit_to_start("web") == "nspawnctl-web.service"
    persist.write_dropin("web", "[Service]\n")
    assert Runtime.unit_to_start("web") == "systemd-nspawn@web.service"
    assert Runtime.unit_to_start("web", Launch()) == "systemd-nspawn@web.service"
    assert Runtime.unit_to_start("web", Launch(attach_fds=(0, 1, 2))) == "nspawnctl-web.service"
    assert Runtime.unit_to_start("web", Launch(add_ref=True)) == "nspawnctl-web.service"


def test_payload_exited_at_the_first_exit_of_a_restarting_payload() -> None:
    """run --restart=on-failure without -d: auto-restart counts as activating, so waiting for
    inactive would never end; the first exit ends the foreground run (as docker's)."""
    from nspawnctl.run.runtime import payload_exited

    def props(active: str, sub: str, job: int = 0) -> dict[str, Any]:
        return {"ActiveState": active, "SubState": sub, "Job": [job, "/"]}

    assert payload_exited(props("activating", "auto-restart"))
    assert payload_exited(props("activating", "auto-restart-queued"))
    assert payload_exited(props("failed", "failed"))
    assert payload_exited(props("inactive", "dead"))
    assert payload_exited(None)  # collected
    assert not payload_exited(props("active", "running"))
    assert not payload_exited(props("activating", "start-pre"))
    assert not payload_exited(props("inactive", "dead", job=7))  # a start job is pending


def test_the_hooks_own_parser_reads_what_units_run() -> None:
    """hook_argv's command lines (and argparse's --opt=V form) parse without argparse."""
    argv = list(hook.hook_argv("post", "web", unit="nspawnctl-web.service", remove=True)[3:])
    assert hook.parse_args(argv) == hook.Args("post", "web", unit="nspawnctl-web.service", remove=True)
    assert hook.parse_args(["pre", "--pool=/p", "--store", "/s", "db"]) == hook.Args("pre", "db", "/p", "/s")
    for bad in (
        ["post"],
        ["stop", "web"],
        ["post", "--bogus", "web"],
        ["post", "web", "--unit"],
        ["a", "b", "c"],
    ):
        with pytest.raises(ValueError):
            hook.parse_args(bad)
    assert hook.main(["post"]) == 2


def test_finished_time_is_what_datetime_wrote() -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC).replace(microsecond=0)
    now = datetime.fromisoformat(hook.utc_now())
    assert now.tzinfo is not None and now.utcoffset() == UTC.utcoffset(None)
    assert before <= now <= datetime.now(UTC)
    assert hook.utc_now().endswith("+00:00") and len(hook.utc_now()) == len(
        before.isoformat(timespec="seconds")
    )


def test_surely_alone_only_for_the_transient_unit_with_no_other_cgroup_or_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The D-Bus-free answer of the pre step: only the transient unit (its starter checked the
    other kind) and only when no cgroup of the other unit and no machined record exist."""
    cg, machines = tmp_path / "machine.slice", tmp_path / "machines"
    cg.mkdir()
    machines.mkdir()
    monkeypatch.setattr(hook, "CGROUP_ROOTS", (str(cg),))
    monkeypatch.setattr(hook, "MACHINES_DIR", str(machines))
    assert hook.surely_alone("web", "nspawnctl-web.service")
    assert not hook.surely_alone("web", "systemd-nspawn@web.service")  # machinectl start: ask systemd
    (cg / "systemd-nspawn@web.service").mkdir()
    assert not hook.surely_alone("web", "nspawnctl-web.service")
    (cg / "systemd-nspawn@web.service").rmdir()
    (machines / "web").write_text("")
    assert not hook.surely_alone("web", "nspawnctl-web.service")
    assert hook.surely_alone("other", "nspawnctl-other.service")


def test_a_foreground_rm_run_on_a_plain_veth_builds_its_network_itself(tmp_path: Path) -> None:
    """client._network_here: only a plain veth without published ports (zones and ports keep the
    pre hook); such a launch has no pre step but still runs nspawn inside the netns."""
    from nspawnctl.client import Client, _network_here

    assert _network_here(VETH) and not _network_here(SPEC)
    assert not _network_here(dataclasses.replace(SPEC, network="zone:web"))
    assert not _network_here(dataclasses.replace(VETH, ports=[PortMapping.parse("8080:80")]))
    client = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store"))
    launch = client.containers._launch(VETH, add_ref=True, post=False, pre=False)
    assert launch.pre == () and launch.post == ()
    assert launch.netns == net.netns_path("web")
    assert client.containers._launch(VETH).pre[-2:] == ("nspawnctl-web.service", "web")


@pytest.mark.parametrize(
    "sysctls",
    [(), (("net.ipv4.ip_forward", "1"),), (("kernel.shmmax", "1"),), (("kernel.domainname", "x"),)],
)
def test_nspawn_keeps_an_ipc_namespace_only_when_it_runs_in_ours(
    sysctls: tuple[tuple[str, str], ...],
) -> None:
    """Review 15 #9: SHARE_ENV (nspawn keeps the IPC namespace it starts in) ⇔ ``nsenter --ipc=``
    ⇔ the pre step that makes it, whatever namespaced key is allowed next (kernel.domainname is
    no IPC key: no namespace of ours, nspawn makes its own)."""
    from nspawnctl.errors import InvalidArgument
    from nspawnctl.run.ipcns import SHARE_ENV, needed

    spec = dataclasses.replace(SPEC, settings=dataclasses.replace(SPEC.settings, sysctls=sysctls))
    launch = hook.default_launch(spec, nspawn="/n", nsenter="/e")
    props = props_of(spec, launch)
    shared = SHARE_ENV in props.get("Environment", ("as", []))[1]
    (start,) = props["ExecStart"][1]
    entered = any(a.startswith("--ipc=") for a in start[1])
    assert shared == entered == needed(sysctls) == (sysctls == (("kernel.shmmax", "1"),))
    if needed(sysctls):
        assert needs_pre(spec)
        with pytest.raises(InvalidArgument):
            exec_argv(spec, Path("/p"), dataclasses.replace(launch, ipcns=None))


def test_a_tty_container_nobody_is_attached_to_gets_nspawns_terminal(tmp_path: Path) -> None:
    """-t without the caller's terminal (run -dt, start, restart, apply, the hook's ExecStart of
    systemd-nspawn@NAME): --console=read-only, as a booted init's; the caller's fds keep the
    console they were given (start -ai: interactive)."""
    from nspawnctl.client import Client

    tty = dataclasses.replace(SPEC, tty=True, open_stdin=True)
    assert hook.default_launch(SPEC, nspawn="/n", nsenter="/e").console == "pipe"
    assert hook.default_launch(tty, nspawn="/n", nsenter="/e").console == "read-only"
    assert "--console=read-only" in exec_argv(tty, Path("/p"), hook.default_launch(tty, nspawn="/n"))
    containers = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store")).containers
    assert containers._launch(tty).console == "read-only"
    assert containers._launch(SPEC, console="interactive").console == "pipe"  # no fds: nobody's
    assert containers._launch(tty, fds=(0, 1, 2), console="interactive").console == "interactive"
