"""org.freedesktop.systemd1: transient units, their state, signals and stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bus import Bus, BusError

SYSTEMD = "org.freedesktop.systemd1"
MANAGER = (SYSTEMD, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
AUTO_RESTART = "auto-restart"  # and auto-restart-queued (>= 254)

UNIT_PATH = "/org/freedesktop/systemd1/unit/"
REMEMBERED_JOBS = 256
"""Ended jobs remembered for a wait_job that comes after their JobRemoved (any job of the host's
ends up here once subscribed; the ones we wait for are asked for a moment after they end)."""

Property = tuple[str, str, Any]
"""(name, D-Bus signature, value) of a unit property; see run/units.py."""


@dataclass(frozen=True)
class UnitState:
    """A unit's load, active and sub state, as systemd reports them."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    job_id: int = 0  # a job queued for the unit (0: none)

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "activating", "deactivating", "reloading", "refreshing")

    @property
    def busy(self) -> bool:
        """Running, or a job queued for it: a start whose unit has not begun to activate yet."""
        return self.running or self.job_id != 0


def unit_object_path(unit: str) -> str:
    """The unit's D-Bus object path, as systemd escapes it (bus_label_escape: every byte but
    ASCII letters and digits as ``_xx``): known before the unit is loaded, so a watch on it can be
    set up before anything happens to it."""
    out = [chr(b) if chr(b).isascii() and chr(b).isalnum() else f"_{b:02x}" for b in unit.encode()]
    return UNIT_PATH + ("".join(out) or "_")


def _changes_rule(path: str) -> str:
    return (
        f"type='signal',sender='{SYSTEMD}',path='{path}',"
        "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"
    )


def _idle(props: dict[str, Any] | None) -> bool:
    """Inactive or failed with no job pending, or gone (collected)."""
    if props is None:
        return True
    job_id = props.get("Job", [0, "/"])[0]
    return props.get("ActiveState") in ("inactive", "failed") and not job_id


class Manager:
    """Thin async wrapper around the systemd1 Manager calls nspawnctl needs."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._removed: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._subscribed = False
        self._watched: set[str] = set()  # unit object paths with a PropertiesChanged match
        self._events: dict[str, set[asyncio.Event]] = {}  # per unit object path: waiters to wake
        self._restarting: dict[str, asyncio.Future[None]] = {}  # per unit object path, see wait_start
        # units this connection started with AddRef=yes and has not unref'd: loaded until then, so
        # their object path needs no GetUnit and their match stays from the start to the unref
        self._held: set[str] = set()

    async def call(
        self,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        unix_fds: list[int] | None = None,
    ) -> list[Any]:
        return await self.bus.call(*MANAGER, member, signature, body, unix_fds)

    async def subscribe_jobs(self) -> None:
        """Listen for JobRemoved *before* starting anything: a job can finish before its reply arrives."""
        if self._subscribed:
            return
        self.bus.on_signal(self._on_signal)

        async def subscribe() -> None:
            try:
                await self.call("Subscribe")
            except BusError as e:  # another Manager on this connection did (one bus per command)
                if not e.name.endswith("AlreadySubscribed"):
                    raise

        # sent together, answered in order (the bus daemon handles one connection's messages in
        # turn): one round trip instead of three, all done before the caller starts anything
        await asyncio.gather(
            *(
                self.bus.add_match(
                    f"type='signal',sender='{SYSTEMD}',path='{MANAGER[1]}',interface='{MANAGER[2]}',member='{m}'"
                )
                for m in ("JobRemoved", "UnitRemoved")
            ),
            subscribe(),
        )
        self._subscribed = True

    def _on_signal(self, msg: Any) -> None:
        if msg.member == "PropertiesChanged":
            restarting = self._restarting.get(msg.path)
            if restarting is not None and not restarting.done():
                sub = msg.body[1].get("SubState") if len(msg.body) > 1 else None
                if str(getattr(sub, "value", "")).startswith(AUTO_RESTART):
                    restarting.set_result(None)
            self._wake(msg.path)
            return
        if msg.interface != MANAGER[2]:
            return
        if msg.member == "UnitRemoved":
            self._wake(unit_object_path(msg.body[0]))
        elif msg.member == "JobRemoved":
            _id, job, unit, result = msg.body
            self._removed[job] = result
            if len(self._removed) > REMEMBERED_JOBS:  # every job of the host's: keep the latest
                del self._removed[next(iter(self._removed))]
            waiter = self._waiters.pop(job, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
            self._wake(unit_object_path(unit))

    def _wake(self, path: str) -> None:
        for event in self._events.get(path, ()):
            event.set()

    async def watch_unit(self, unit: str) -> None:
        """Be told of every change of ``unit`` (PropertiesChanged on its object, its jobs ending,
        its removal) from now on; call before acting on it, after registering the wait (in
        ``_events`` or ``_restarting``) that :meth:`_unwatch` keeps the match for."""
        await self.subscribe_jobs()
        path = unit_object_path(unit)
        if path in self._watched:
            return
        self._watched.add(path)
        await self.bus.add_match(_changes_rule(path))

    async def _unwatch(self, path: str) -> None:
        """Drop the unit's match once nobody waits on it any more (and we hold no reference)."""
        if path in self._events or path in self._restarting or path not in self._watched:
            return
        if path in self._held:
            return
        self._watched.discard(path)
        try:
            await self.bus.remove_match(_changes_rule(path))
        except Exception:  # clean-up (a closed bus, ...) must not hide how the wait ended
            pass

    async def wait_unit(
        self,
        unit: str,
        done: Callable[[dict[str, Any] | None], bool],
        timeout: float | None = None,
        iface: str = UNIT_IFACE,
        seen: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> bool:
        """Wait until ``done(properties)`` holds for ``unit`` (None: the unit is gone), looking again
        each time systemd signals a change of it; no polling. False on timeout. ``seen`` is given
        each look's properties too (a caller that needs them saves a call of its own)."""
        path = unit_object_path(unit)
        event = asyncio.Event()
        self._events.setdefault(path, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            await self.watch_unit(unit)
            while True:
                event.clear()  # a change from here on wakes us, even one during the look below
                props = await self.unit_properties(unit, iface)
                if seen is not None:
                    seen(props)
                if done(props):
                    return True
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    return done(await self.unit_properties(unit, iface))
        finally:
            waiting = self._events.get(path)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[path]
            await self._unwatch(path)

    async def wait_job(self, job: str) -> str:
        if job in self._removed:
            return self._removed.pop(job)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[job] = fut
        return await fut

    def _watch_restart(self, unit: str) -> asyncio.Future[None]:
        """A future that is done once ``unit``'s sub-state turns auto-restart, from the values its
        PropertiesChanged signals carry (no call per change); set up before the start is asked."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._restarting[unit_object_path(unit)] = fut
        return fut

    async def wait_start(self, job: str, unit: str, restarting: asyncio.Future[None]) -> str:
        """wait_job for ``unit``'s start job, which systemd < 254 keeps pending through the
        auto-restarts of a unit that fails before it is up (ExecStartPre, nspawn failing early),
        until a start limit ends it, if any. Once the unit waits to restart (``restarting``, see
        :meth:`_watch_restart`), the attempt failed: queue a stop (which cancels the job and the
        restarts) and return ``failed``."""
        try:
            if job in self._removed:  # done already (its JobRemoved came before the reply)
                return self._removed.pop(job)
            task = asyncio.ensure_future(self.wait_job(job))
            either: set[asyncio.Future[Any]] = {task, restarting}
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            await self.queue_stop(unit)
            await task
            return "failed"
        finally:
            await self._forget_restart(unit, restarting)

    async def _forget_restart(self, unit: str, restarting: asyncio.Future[None]) -> None:
        """The end of a start's :meth:`_watch_restart`: its future, then the unit's match."""
        path = unit_object_path(unit)
        if self._restarting.get(path) is restarting:
            del self._restarting[path]
        restarting.cancel()
        await self._unwatch(path)

    async def start_transient(
        self,
        unit: str,
        props: list[Property],
        aux: list[tuple[str, list[Property]]] | None = None,
        queued: Callable[[], None] | None = None,
    ) -> str:
        """Start a transient unit and wait for its start job; returns the job result (``done`` = ok).

        ``aux``: auxiliary units created in the same call, as ``systemd-run --socket-property``
        does for a socket and the service it activates. ``queued`` is called once the job is
        queued, before the wait (a start lets its container's lock go there)."""
        restarting = self._watch_restart(unit)
        fds: list[int] = []

        def body(ps: list[Property]) -> list[Any]:
            out = []
            for name, sig, value in ps:
                if sig == "h":  # file descriptors travel beside the body; the value is their index
                    fds.append(value)
                    value = len(fds) - 1
                out.append([name, self.bus.variant(sig, value)])
            return out

        args = [unit, "fail", body(props), [[name, body(ps)] for name, ps in aux or []]]
        try:
            await self.watch_unit(unit)
            (job,) = await self.call("StartTransientUnit", "ssa(sv)a(sa(sv))", args, fds)
        except BaseException:
            await self._forget_restart(unit, restarting)
            raise
        if queued is not None:
            queued()
        path = unit_object_path(unit)
        held = ("AddRef", "b", True) in props  # the caller unrefs it once it has read its end
        if held:
            self._held.add(path)
        result = ""
        try:
            result = await self.wait_start(job, unit, restarting)
            return result
        finally:
            if held and result != "done":  # a failed start is not followed: no match kept for it
                self._held.discard(path)
                await self._unwatch(path)

    async def stop_if_loaded(self, unit: str) -> None:
        """Stop ``unit`` and forget a failed state; a unit that does not exist is fine."""
        try:
            await self.stop(unit)
        except BusError as e:
            if not e.name.endswith("NoSuchUnit"):
                raise
        await self.reset_failed(unit)

    async def stop(self, unit: str) -> str:
        await self.subscribe_jobs()
        (job,) = await self.call("StopUnit", "ss", [unit, "replace"])
        return await self.wait_job(job)

    async def kill(self, unit: str, who: str, signal: int) -> None:
        await self.call("KillUnit", "ssi", [unit, who, signal])

    async def start(self, unit: str, mode: str = "replace", queued: Callable[[], None] | None = None) -> str:
        """StartUnit and wait for its job; returns the job result (``done`` = ok). ``queued``: as
        for :meth:`start_transient`."""
        restarting = self._watch_restart(unit)
        try:
            await self.watch_unit(unit)
            (job,) = await self.call("StartUnit", "ss", [unit, mode])
        except BaseException:
            await self._forget_restart(unit, restarting)
            raise
        if queued is not None:
            queued()
        return await self.wait_start(job, unit, restarting)

    async def queue_stop(self, unit: str) -> str:
        """StopUnit without waiting: once the stop job is queued, systemd does not restart the unit
        whatever its Restart= says. Returns the job path."""
        (job,) = await self.call("StopUnit", "ss", [unit, "replace"])
        return str(job)

    async def reload(self) -> None:
        """daemon-reload: systemd answers once the unit files are read again."""
        await self.call("Reload")

    async def enable_unit_files(self, files: list[str], runtime: bool = False, force: bool = False) -> None:
        """EnableUnitFiles(as files, b runtime, b force) -> (b carries_install_info, a(sss) changes)."""
        await self.call("EnableUnitFiles", "asbb", [files, runtime, force])

    async def disable_unit_files(self, files: list[str], runtime: bool = False) -> None:
        """DisableUnitFiles(as files, b runtime) -> a(sss) changes."""
        await self.call("DisableUnitFiles", "asb", [files, runtime])

    async def unit_file_state(self, file: str) -> str:
        """GetUnitFileState(s) -> s: enabled, disabled, static, ...; "" when there is no such file."""
        try:
            (state,) = await self.call("GetUnitFileState", "s", [file])
        except BusError as e:
            if e.name.endswith(("NoSuchUnit", "FileNotFound")) or "No such file" in str(e):
                return ""
            raise
        return str(state)

    async def reset_failed(self, unit: str) -> None:
        try:
            await self.call("ResetFailedUnit", "s", [unit])
        except BusError as e:
            if not e.name.endswith(("NoSuchUnit", "UnitInactive")):
                raise

    async def unref(self, unit: str) -> None:
        path = unit_object_path(unit)
        held = path in self._held
        self._held.discard(path)

        async def unref() -> None:
            try:
                await self.call("UnrefUnit", "s", [unit])
            except BusError:
                pass

        # the match kept while we held the unit goes in the same round trip
        await asyncio.gather(unref(), *([self._unwatch(path)] if held else []))

    async def states(self, units: list[str]) -> dict[str, UnitState]:
        """Load/active/sub state of many units in one call (missing ones come back ``inactive``)."""
        if not units:
            return {}
        (rows,) = await self.call("ListUnitsByNames", "as", [units])
        return {r[0]: UnitState(r[0], r[2], r[3], r[4], int(r[7])) for r in rows}

    async def unit_path(self, unit: str) -> str | None:
        if unit_object_path(unit) in self._held:  # loaded while we hold it: no GetUnit needed
            return unit_object_path(unit)
        try:
            (path,) = await self.call("GetUnit", "s", [unit])
        except BusError as e:
            if e.name.endswith("NoSuchUnit"):
                return None
            raise
        return str(path)

    async def unit_properties(self, unit: str, iface: str = UNIT_IFACE) -> dict[str, Any] | None:
        path = await self.unit_path(unit)
        if path is None:
            return None
        try:
            return await self.bus.get_all(SYSTEMD, path, iface)
        except BusError as e:
            if e.name.endswith(("UnknownObject", "NoSuchUnit", "UnknownInterface")):
                return None
            raise

    async def idle(self, unit: str) -> bool:
        """Inactive or failed with no job pending, or gone: nothing of it runs or is about to."""
        return _idle(await self.unit_properties(unit))

    async def wait_inactive(self, unit: str, timeout: float | None = None) -> bool:
        """Wait until the unit is inactive/failed with no job pending (or gone). False on timeout."""
        return await self.wait_unit(unit, _idle, timeout)
