"""The async core: waits driven by systemd's signals (no polling), one bus per command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from nspawnctl.systemd import bus as busmod
from nspawnctl.systemd.bus import Bus, Session, run_sync
from nspawnctl.systemd.machined import Machined
from nspawnctl.systemd.manager import MANAGER, UNIT_IFACE, Manager, unit_object_path

UNIT = "nspawnctl-web.service"


@dataclass
class Value:
    """A D-Bus variant as the library hands it over."""

    value: Any


@dataclass
class Signal:
    member: str
    interface: str
    path: str
    body: list[Any]


@dataclass
class FakeSystemd:
    """A system bus with one unit whose state the test changes; each change is signalled as
    systemd does (PropertiesChanged on the unit's object, JobRemoved on the manager)."""

    state: tuple[str, str] = ("active", "running")
    job: int = 0
    calls: list[str] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # every AddMatch, removed ones too
    handlers: list[Callable[[Any], None]] = field(default_factory=list)
    machines: dict[str, int] = field(default_factory=dict)
    _shared: dict[Any, Any] = field(default_factory=dict)

    # -- the Bus interface the core uses ----------------------------------------------------
    async def call(self, dest: str, path: str, iface: str, member: str, sig: str = "", body: Any = None,
                   fds: Any = None) -> list[Any]:  # fmt: skip
        self.calls.append(member)
        if member == "GetUnit":
            return [unit_object_path(body[0])]
        if member == "GetMachine":
            if body[0] not in self.machines:
                raise busmod.BusError("org.freedesktop.machine1.NoSuchMachine", "no")
            return [f"/machine/{body[0]}"]
        if member == "StartTransientUnit":
            return ["/job/1"]
        if member == "StopUnit":
            return ["/job/2"]
        return []

    async def get_all(self, dest: str, path: str, iface: str) -> dict[str, Any]:
        self.calls.append("GetAll")
        return {"ActiveState": self.state[0], "SubState": self.state[1], "Job": [self.job, "/"]}

    async def get_property(self, dest: str, path: str, iface: str, prop: str) -> Any:
        return self.machines[path.rsplit("/", 1)[1]]

    async def add_match(self, rule: str) -> None:
        self.matches.append(rule)
        self.added.append(rule)

    async def remove_match(self, rule: str) -> None:
        self.matches.remove(rule)

    def shared(self, kind: Callable[[Any], Any]) -> Any:
        return Bus.shared(self, kind)  # type: ignore[arg-type]

    def on_signal(self, handler: Callable[[Any], None]) -> None:
        self.handlers.append(handler)

    def remove_signal_handler(self, handler: Callable[[Any], None]) -> None:
        self.handlers.remove(handler)

    def variant(self, sig: str, value: Any) -> Any:
        return value

    # -- what systemd does --------------------------------------------------------------------
    def emit(self, msg: Signal) -> None:
        for h in list(self.handlers):
            h(msg)

    def change(self, active: str, sub: str) -> None:
        """systemd's PropertiesChanged carries the new values (the properties emit changes)."""
        self.state = (active, sub)
        props = "org.freedesktop.DBus.Properties"
        changed = {"ActiveState": Value(active), "SubState": Value(sub)}
        self.emit(Signal("PropertiesChanged", props, unit_object_path(UNIT), [UNIT_IFACE, changed, []]))

    def job_removed(self, job: str, result: str) -> None:
        self.emit(Signal("JobRemoved", MANAGER[2], MANAGER[1], [1, job, UNIT, result]))


def later(delay: float, fn: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_later(delay, fn)


def test_unit_object_path_escapes_as_systemd_does() -> None:
    path = "/org/freedesktop/systemd1/unit/nspawnctl_2dweb_2eservice"
    assert unit_object_path("nspawnctl-web.service") == path
    assert unit_object_path("systemd-nspawn@a_b.service").endswith("systemd_2dnspawn_40a_5fb_2eservice")


def test_wait_inactive_wakes_on_the_units_signal_without_polling() -> None:
    sd = FakeSystemd()

    async def go() -> bool:
        m = Manager(sd)  # type: ignore[arg-type]
        later(0.3, lambda: sd.change("deactivating", "stop-sigterm"))
        later(0.6, lambda: sd.change("inactive", "dead"))
        return await m.wait_inactive(UNIT)

    assert asyncio.run(go())
    # one look before waiting and one per signal: a 30 ms poll would have looked ~20 times
    assert sd.calls.count("GetAll") == 3
    assert any("PropertiesChanged" in r and unit_object_path(UNIT) in r for r in sd.added)
    assert "Subscribe" in sd.calls


def test_wait_inactive_times_out() -> None:
    sd = FakeSystemd()
    assert not asyncio.run(Manager(sd).wait_inactive(UNIT, timeout=0.05))  # type: ignore[arg-type]


def test_wait_start_ends_when_the_unit_waits_to_restart() -> None:
    """systemd < 254 keeps the start job pending through auto-restarts: the PropertiesChanged of
    the sub-state ends the wait, a stop is queued (which ends the job) and the start failed."""
    sd = FakeSystemd(state=("activating", "start-pre"))

    async def go() -> str:
        m = Manager(sd)  # type: ignore[arg-type]
        later(0.05, lambda: sd.change("activating", "auto-restart"))
        orig = sd.call

        async def call(*a: Any) -> list[Any]:
            out = await orig(*a)
            if a[3] == "StopUnit":
                later(0.01, lambda: sd.job_removed("/job/1", "canceled"))
            return out

        sd.call = call  # type: ignore[method-assign]
        return await m.start_transient(UNIT, [])

    assert asyncio.run(go()) == "failed"
    assert "StopUnit" in sd.calls
    assert "GetAll" not in sd.calls  # the signal's own values told: no look per change


def test_wait_start_returns_the_job_result() -> None:
    sd = FakeSystemd(state=("activating", "start"))

    async def go() -> str:
        later(0.05, lambda: sd.job_removed("/job/1", "done"))
        return await Manager(sd).start_transient(UNIT, [])  # type: ignore[arg-type]

    assert asyncio.run(go()) == "done"
    assert "StopUnit" not in sd.calls


def test_payload_exit_wait_ends_at_auto_restart() -> None:
    from nspawnctl.run.runtime import Runtime

    sd = FakeSystemd()

    async def go() -> bool:
        rt = Runtime.__new__(Runtime)
        rt.manager = Manager(sd)  # type: ignore[arg-type]
        later(0.05, lambda: sd.change("activating", "auto-restart"))
        return await rt.wait_exit(UNIT)

    assert asyncio.run(go())


def test_leader_waits_for_machine_new() -> None:
    sd = FakeSystemd()

    def register() -> None:
        sd.machines["web"] = 4242
        sd.emit(Signal("MachineNew", "org.freedesktop.machine1.Manager", "/", ["web", "/machine/web"]))

    async def go() -> int | None:
        later(0.05, register)
        return await Machined(sd).wait_leader("web", timeout=5)  # type: ignore[arg-type]

    assert asyncio.run(go()) == 4242
    assert sd.handlers == []  # its handler is gone again
    assert asyncio.run(Machined(sd).wait_leader("db", timeout=0.01)) is None  # type: ignore[arg-type]


class CountingBus:
    connects = 0
    disconnects = 0

    @classmethod
    async def connect(cls) -> CountingBus:
        cls.connects += 1
        return cls()

    def disconnect(self) -> None:
        CountingBus.disconnects += 1

    def shared(self, kind: Callable[[Any], Any]) -> Any:
        return kind(self)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[CountingBus]:
    CountingBus.connects = CountingBus.disconnects = 0
    monkeypatch.setattr(busmod.Bus, "connect", CountingBus.connect)
    return CountingBus


def test_a_session_connects_once_for_all_its_calls(counting: type[CountingBus]) -> None:
    async def ident(bus: Bus) -> int:
        return id(bus)

    with Session() as s:
        assert s.run(ident) == s.run(ident) == s.run(ident)
    assert (counting.connects, counting.disconnects) == (1, 1)
    with Session():
        pass  # nothing asked: no connection at all
    assert counting.connects == 1


def test_run_sync_is_typed_and_connects_once(counting: type[CountingBus]) -> None:
    async def answer(bus: Bus) -> int:
        return 42

    value: int = run_sync(answer)
    assert value == 42 and counting.connects == 1 and counting.disconnects == 1


def test_client_session_shares_one_bus_per_command(counting: type[CountingBus], tmp_path: Any) -> None:
    """What a CLI command does: many sync library calls inside client.session(), one connection."""
    from nspawnctl.client import Client
    from nspawnctl.config import Paths

    client = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store"))
    seen = []

    async def note(bus: Bus) -> None:
        seen.append(id(bus))

    with client.session():
        for _ in range(3):
            client.run(note)
        with client.session():  # nested: the same one
            client.run(note)
    assert counting.connects == 1 and len(set(seen)) == 1
    client.run(note)  # outside a session: a bus of its own
    assert counting.connects == 2


def test_the_async_core_runs_inside_a_running_loop(counting: type[CountingBus], tmp_path: Any) -> None:
    """An event-loop caller (the Docker-API server) awaits the a... methods with its own bus."""
    from nspawnctl.client import Client
    from nspawnctl.config import Paths

    client = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store"))

    async def serve() -> list[Any]:
        bus = await busmod.open_bus()
        return await client.containers.astatuses(bus, [])  # type: ignore[arg-type]

    assert asyncio.run(serve()) == []


def test_managers_sharing_a_bus_subscribe_once() -> None:
    """systemd refuses a second Subscribe on one connection; a command's steps share the bus."""
    sd = FakeSystemd()
    orig = sd.call

    async def call(*a: Any) -> list[Any]:
        if a[3] == "Subscribe" and "Subscribe" in sd.calls:
            sd.calls.append("Subscribe")
            raise busmod.BusError(
                "org.freedesktop.systemd1.AlreadySubscribed", "Client is already subscribed."
            )
        return await orig(*a)

    sd.call = call  # type: ignore[method-assign]

    async def go() -> None:
        for _ in range(2):
            await Manager(sd).wait_inactive(UNIT, timeout=0.01)  # type: ignore[arg-type]

    asyncio.run(go())
    assert sd.calls.count("Subscribe") == 2


def _rm_client(tmp_path: Any, sd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    """A client whose ``--rm`` container "web" is created at once and whose foreground run hangs
    (the unit runs); what happens to it is logged in the returned list, beside ``sd.calls``."""
    from types import SimpleNamespace

    from nspawnctl.client import Client
    from nspawnctl.config import Paths

    client = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store"))
    c = client.containers
    log: list[str] = []
    spec = SimpleNamespace(name="web", auto_remove=True)

    def create(*a: Any) -> Any:
        log.append("created")
        return spec

    async def attached(*a: Any) -> Any:
        await asyncio.sleep(3600)

    monkeypatch.setattr(c, "create", create)
    monkeypatch.setattr(c, "_attached", attached)
    manager = Manager(sd)  # type: ignore[arg-type]

    async def stop(name: str, timeout: float) -> bool:  # Runtime.stop: SIGTERM, then nspawn kills
        log.append(f"stop {name}")
        await sd.call("", "", "", "StopUnit")
        await manager.wait_inactive(UNIT, 0.3)
        return False

    monkeypatch.setattr(c, "_runtime", lambda bus: SimpleNamespace(manager=manager, stop=stop))
    monkeypatch.setattr(c, "_cleanup_failed", lambda s: log.append(f"removed while {sd.state[0]}"))
    return c, log


async def _cancel_once_running(c: Any, log: list[str]) -> None:
    """Cancel the run once its container is made and its (fake) foreground run has begun: not
    after a fixed time, which a loaded machine's create thread may take (a cancel during the
    create is another test's)."""
    task = asyncio.ensure_future(c.arun_attached(None, "img", [], None, print))
    while "created" not in log:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)  # the create's thread has handed its result over: the run waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancelled_rm_run_stops_its_unit_before_removing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C of a foreground ``run --rm`` whose unit runs: the root is not pulled from under nspawn."""
    sd = FakeSystemd()
    c, log = _rm_client(tmp_path, sd, monkeypatch)
    orig = sd.call

    async def call(*a: Any) -> list[Any]:
        if a[3] == "StopUnit":  # systemd stops it a moment later
            later(0.05, lambda: sd.change("inactive", "dead"))
        return await orig(*a)

    sd.call = call  # type: ignore[method-assign]

    asyncio.run(_cancel_once_running(c, log))
    assert log == ["created", "stop web", "removed while inactive"]


def test_a_cancelled_rm_run_whose_unit_will_not_stop_is_left_to_repair(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd = FakeSystemd()
    c, log = _rm_client(tmp_path, sd, monkeypatch)

    asyncio.run(_cancel_once_running(c, log))
    assert log == ["created", "stop web"]


def test_a_cancel_during_create_removes_the_rm_container(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create thread goes on after Ctrl-C: what it makes is removed, then the cancel goes on."""
    import time

    sd = FakeSystemd(state=("inactive", "dead"))
    c, log = _rm_client(tmp_path, sd, monkeypatch)
    create = c.create

    def slow_create(*a: Any) -> Any:
        time.sleep(0.2)
        return create(*a)

    monkeypatch.setattr(c, "create", slow_create)

    async def go() -> None:
        task = asyncio.ensure_future(c.arun_attached(None, "img", [], None, print))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert log == ["created", "removed while inactive"]


def test_the_sync_run_attached_hands_over_its_stdio_with_i_or_t(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nspawnctl.client import Client
    from nspawnctl.config import Paths

    c = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store")).containers
    seen: list[Any] = []

    async def arun(bus: Any, *a: Any) -> None:
        seen.append(a[-1])

    monkeypatch.setattr(c, "arun_attached", arun)
    monkeypatch.setattr(c._client, "run", lambda fn: asyncio.run(fn(None)))
    c.run_attached("img", [], None, print, interactive=True)  # type: ignore[arg-type]
    c.run_attached("img", [], None, print, tty=True)  # type: ignore[arg-type]
    c.run_attached("img", [], None, print)  # type: ignore[arg-type]
    assert seen == [(0, 1, 2), (0, 1, 2), None]


def test_runtimes_on_one_bus_share_one_manager_and_drop_their_matches(tmp_path: Any) -> None:
    """A command acting on 100 containers (rm -f, prune), or a long-lived bus: one signal handler
    and one Subscribe however many runtimes, and no unit's match left once its wait ended."""
    from nspawnctl.config import Paths
    from nspawnctl.run.runtime import Runtime

    sd = FakeSystemd(state=("inactive", "dead"))
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")

    async def go() -> None:
        for _ in range(100):
            rt = Runtime(sd, paths)  # type: ignore[arg-type]
            assert await rt.manager.wait_inactive(UNIT, timeout=1)
        sd.state = ("active", "running")
        assert not await Runtime(sd, paths).manager.wait_inactive(UNIT, timeout=0.01)  # type: ignore[arg-type]

    asyncio.run(go())
    assert len(sd.handlers) == 1 and sd.calls.count("Subscribe") == 1
    assert not any(unit_object_path(UNIT) in r for r in sd.matches)  # only the manager's own rules
    assert len(sd.matches) == 2


def test_a_start_drops_the_units_match_once_its_job_ended() -> None:
    sd = FakeSystemd(state=("inactive", "dead"))

    async def go() -> str:
        m = Manager(sd)  # type: ignore[arg-type]
        later(0.05, lambda: sd.job_removed("/job/1", "done"))
        result = await m.start_transient(UNIT, [])
        return result

    assert asyncio.run(go()) == "done"
    assert not any(unit_object_path(UNIT) in r for r in sd.matches)
