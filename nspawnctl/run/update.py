"""``update``: change a container's limits and restart policy, now and for good.

The running unit gets the new cgroup limits through SetUnitProperties (MemoryMax=,
CPUQuotaPerSecUSec=, TasksMax=, CPUWeight=, as ``systemctl set-property --runtime``); the container's
.nspawn definition keeps them (so the next start and ``generate`` have them), and so does the
drop-in of a persistent container. systemd cannot change Restart= of a running transient unit:
a new restart policy applies from the container's next start (at once under
systemd-nspawn@NAME.service, whose drop-in is reloaded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from ..spec import ContainerSpec, Limits, parse_restart
from ..systemd.bus import BusError
from ..values import Cpus, MemoryBytes, PidsLimit
from . import persist
from .runtime import Runtime
from .units import unit_name

if TYPE_CHECKING:
    from ..store.containers import ContainerStore


@dataclass(frozen=True)
class Update:
    """What to change; None leaves a setting as it is."""

    memory: MemoryBytes | None = None
    cpus: Cpus | None = None
    pids: PidsLimit | None = None
    restart: str | None = None
    cpu_shares: int | None = None  # docker's --cpu-shares, checked by cpumem.parse_cpu_shares

    @property
    def empty(self) -> bool:
        return (
            self.memory is None
            and self.cpus is None
            and self.pids is None
            and self.restart is None
            and self.cpu_shares is None
        )


def unit_changes(update: Update) -> list[tuple[str, str, int]]:
    """The D-Bus properties that change a running unit's limits (pure)."""
    out: list[tuple[str, str, int]] = []
    if update.memory is not None:
        out.append(("MemoryMax", "t", update.memory.bytes))
    if update.cpus is not None:
        out.append(("CPUQuotaPerSecUSec", "t", update.cpus.usec))
    if update.pids is not None:
        out.append(("TasksMax", "t", update.pids.count))
    if update.cpu_shares is not None:
        from ..cpumem import cpu_weight

        out.append(("CPUWeight", "t", cpu_weight(update.cpu_shares)))
    return out


def apply_to_spec(spec: ContainerSpec, update: Update) -> ContainerSpec:
    """The definition with the update applied, checked as create checks it (pure)."""
    limits = Limits(
        memory=update.memory or spec.limits.memory,
        cpus=update.cpus or spec.limits.cpus,
        pids=update.pids or spec.limits.pids,
    )
    settings = spec.settings
    if update.cpu_shares is not None:
        settings = dataclasses.replace(settings, cpu_shares=update.cpu_shares)
    if update.memory is not None and settings.memory_swap not in (None, -1):
        from ..cpumem import check_swap

        check_swap(settings.memory_swap, update.memory.bytes, "--memory")
    restart = spec.restart
    if update.restart is not None:
        restart = parse_restart(update.restart)
        if restart != "no" and spec.auto_remove:
            raise InvalidArgument(
                f"container {spec.name} removes itself when it exits (--rm); it cannot get a restart policy",
                hint="recreate it without --rm",
            )
    return dataclasses.replace(spec, limits=limits, restart=restart, settings=settings)


async def update(
    rt: Runtime, store: ContainerStore, name: str, change: Update, notify: Callable[[str], None]
) -> ContainerSpec:
    """Apply ``change`` to the running unit (if it runs) and to the definition; a value systemd
    refuses changes nothing."""
    if change.empty:
        raise InvalidArgument(
            "nothing to update",
            hint="give at least one of --memory, --cpus, --cpu-shares, --pids-limit, --restart",
        )
    spec = store.get(name)
    new = apply_to_spec(spec, change)
    state = await rt.busy(name)  # running, or a start queued (its unit takes the change too)
    props = unit_changes(change)
    swap = new.settings.memory_swap
    if change.memory is not None and swap not in (None, -1):  # memory+swap stays, swap alone moves
        from ..cpumem import swap_max

        props.append(("MemorySwapMax", "t", swap_max(swap, change.memory.bytes)))
    if state is not None and props:
        body = [[k, rt.bus.variant(sig, v)] for k, sig, v in props]
        try:
            await rt.manager.call("SetUnitProperties", "sba(sv)", [state.name, True, body])
        except BusError as e:
            raise InvalidArgument(f"cannot update {state.name}: {e}") from None
    path, previous = store.definition(name)
    store.rewrite(new, store.definition(name)[1])  # onto the file as it is: others' keys stay
    try:
        if persist.has_dropin(name):
            enabled = await persist.is_enabled(rt.manager, name)
            keep = persist.is_kept(persist.read_dropin(name))
            await persist.sync(rt.manager, new, rt.paths, enabled=enabled, keep=keep)
    except BaseException:
        store.restore_definition(name, path, previous)
        raise
    if (
        change.restart is not None
        and new.restart != spec.restart
        and state is not None
        and state.running
        and state.name == unit_name(name)
    ):
        notify(
            f"container {name} runs on with its old restart policy; "
            f"{new.restart!r} applies from its next start"
        )
    return new
