"""``wait``: block until a container stops (or is removed) and say how it ended.

Driven by systemd's signals about the container's units (Manager.wait_unit: PropertiesChanged,
JobRemoved, UnitRemoved) and, for ``removed``, by inotify on the definitions; no polling. The
exit code is the one nspawnctl keeps (``state/NAME.json``, written by the unit's post step); a
container that removes itself (``--rm``) takes that record along, so the unit is referenced
(RefUnit) while it is waited on and its ExecMainStatus read instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ..systemd.bus import BusError
from ..systemd.manager import SERVICE_IFACE
from .runtime import Runtime, payload_exited
from .units import persistent_unit_name, unit_name

if TYPE_CHECKING:
    from ..store.containers import ContainerStore

CONDITIONS = ("not-running", "next-exit", "removed")


def check_condition(text: str) -> str:
    if text not in CONDITIONS:
        raise InvalidArgument(f"invalid --condition {text!r}", hint="use not-running, next-exit or removed")
    return text


def _running(props: dict[str, Any] | None) -> bool:
    """The unit runs a payload (or is starting one)."""
    return props is not None and props.get("ActiveState") in ("active", "activating", "reloading")


async def ref_unit(rt: Runtime, unit: str) -> bool:
    try:
        await rt.manager.call("RefUnit", "s", [unit])
    except BusError:
        return False
    return True


async def _wait_started(rt: Runtime, name: str) -> str:
    """Wait until either of the container's units runs; its name."""
    units = [unit_name(name), persistent_unit_name(name)]
    tasks = {asyncio.ensure_future(rt.manager.wait_unit(u, _running)): u for u in units}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return tasks[next(iter(done))]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def exit_code_of(rt: Runtime, store: ContainerStore, name: str, unit: str, refd: bool) -> int:
    """The exit code of the run that just ended: the kept record, else the referenced unit's."""
    try:
        record = store.exit_record(name)
        if record is not None:
            return record.exit_code
        if refd:
            props = await rt.manager.unit_properties(unit, SERVICE_IFACE)
            if props:
                code, status = props.get("ExecMainCode", 0), int(props.get("ExecMainStatus", 0))
                return status if code == 1 else 128 + status if code in (2, 3) else 0
        return 0
    finally:
        if refd:
            await rt.manager.unref(unit)


async def wait_exit(rt: Runtime, store: ContainerStore, name: str, condition: str = "not-running") -> int:
    """docker's ``wait`` with its conditions: ``not-running`` returns at once for a stopped
    container (its last exit code, 0 if it never ran), else at its payload's exit; ``next-exit``
    waits for the next exit, starting from a stopped container; ``removed`` waits for the exit
    and then for the container to be removed."""
    check_condition(condition)
    store.get(name)
    watch = None
    if condition == "removed":
        from ..store.watch import DefinitionWatch

        watch = DefinitionWatch([store.paths.settings, store.paths.runtime_settings])
    try:
        state = (await rt.states([name])).get(name)
        unit = state.name if state is not None and state.running else None
        if unit is None and condition == "next-exit":
            unit = await _wait_started(rt, name)
        if unit is not None:
            refd = await ref_unit(rt, unit)
            try:
                await rt.manager.wait_unit(unit, payload_exited)
            except BaseException:
                # given up (the API's client hung up): a long-lived bus must not keep the unit
                # loaded, or the container's next start finds its transient unit still there
                if refd:
                    with contextlib.suppress(Exception):
                        await rt.manager.unref(unit)
                raise
            code = await exit_code_of(rt, store, name, unit, refd)
        else:
            record = store.exit_record(name)
            code = record.exit_code if record else 0
        if watch is not None:
            while store.has(name):
                await watch.next()
        return code
    finally:
        if watch is not None:
            watch.close()
