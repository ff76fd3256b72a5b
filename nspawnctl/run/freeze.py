"""``pause``/``unpause``: freeze and thaw the container unit's cgroup (FreezeUnit/ThawUnit).

systemd freezes through cgroup v2's ``cgroup.freeze``; on a host whose controllers are on cgroup
v1 (hybrid or legacy mode) it refuses ("Unit does not support freeze/thaw"). nspawnctl does not
drive the v1 freezer hierarchy behind systemd's back (systemd does not manage it, and a unit's
processes are not in a freezer group of their own there): it says that pausing needs cgroup v2.
"""

from __future__ import annotations

from typing import Any

from ..errors import ContainerNotRunning, NspawnctlError, SystemdError
from ..systemd.bus import BusError
from .runtime import Runtime

FROZEN = ("frozen", "freezing")


class PauseUnsupported(NspawnctlError):
    code = "pause-unsupported"


def is_paused(props: dict[str, Any] | None) -> bool:
    """A unit's FreezerState says it is (being) frozen."""
    return props is not None and str(props.get("FreezerState", "")) in FROZEN


async def _running_unit(rt: Runtime, name: str) -> str:
    state = (await rt.states([name])).get(name)
    if state is None or not state.running:
        raise ContainerNotRunning(
            f"container {name} is not running", hint=f"start it first: nspawnctl start {name}"
        )
    return state.name


async def _freezer_call(rt: Runtime, name: str, member: str) -> None:
    unit = await _running_unit(rt, name)
    try:
        await rt.manager.call(member, "s", [unit])
    except BusError as e:
        text = str(e)
        if e.name.endswith("NotSupported") or "does not support" in text:
            raise PauseUnsupported(
                f"cannot {'pause' if member == 'FreezeUnit' else 'unpause'} container {name}: "
                f"systemd cannot freeze {unit} on this host ({text})",
                hint="freezing needs the unified cgroup v2 hierarchy (boot the host with "
                "systemd.unified_cgroup_hierarchy=1); 'nspawnctl stop' ends the container instead",
            ) from None
        raise SystemdError(f"cannot {member} {unit}: {text}") from None


async def pause(rt: Runtime, name: str) -> None:
    """Freeze every process of the container (docker pause)."""
    unit = await _running_unit(rt, name)
    if is_paused(await rt.manager.unit_properties(unit)):
        raise ContainerNotRunning(f"container {name} is already paused", hint=f"nspawnctl unpause {name}")
    await _freezer_call(rt, name, "FreezeUnit")


async def unpause(rt: Runtime, name: str) -> None:
    """Thaw the container's processes (docker unpause)."""
    unit = await _running_unit(rt, name)
    props = await rt.manager.unit_properties(unit)
    if not is_paused(props):
        raise ContainerNotRunning(f"container {name} is not paused", hint=f"see: nspawnctl ps -f name={name}")
    await _freezer_call(rt, name, "ThawUnit")
