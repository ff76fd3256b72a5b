"""org.freedesktop.machine1: the registered containers, their leaders, signals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .bus import Bus, BusError

MACHINED = "org.freedesktop.machine1"
MANAGER = (MACHINED, "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager")
MACHINE_IFACE = "org.freedesktop.machine1.Machine"


@dataclass(frozen=True)
class Machine:
    """One row of machined's ListMachines."""

    name: str
    klass: str
    service: str
    path: str


class Machined:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def list(self) -> list[Machine]:
        (rows,) = await self.bus.call(*MANAGER, "ListMachines")
        return [Machine(*r) for r in rows]

    async def leader(self, name: str) -> int | None:
        """PID of the container's PID 1 as the host sees it; None when not registered."""
        try:
            (path,) = await self.bus.call(*MANAGER, "GetMachine", "s", [name])
        except BusError as e:
            if e.name.endswith("NoSuchMachine"):
                return None
            raise
        return int(await self.bus.get_property(MACHINED, path, MACHINE_IFACE, "Leader"))

    async def wait_leader(self, name: str, timeout: float) -> int | None:
        """:meth:`leader`, waiting up to ``timeout`` seconds for the machine to be registered
        (MachineNew, listened for before the first look). None when it is not by then."""
        event = asyncio.Event()

        def on_signal(msg: Any) -> None:
            if msg.member == "MachineNew" and msg.interface == MANAGER[2] and msg.body[0] == name:
                event.set()

        self.bus.on_signal(on_signal)
        try:
            await self.bus.add_match(
                f"type='signal',sender='{MACHINED}',path='{MANAGER[1]}',interface='{MANAGER[2]}',"
                "member='MachineNew'"
            )
            leader = await self.leader(name)
            if leader is not None:
                return leader
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass
            return await self.leader(name)
        finally:
            self.bus.remove_signal_handler(on_signal)

    async def kill(self, name: str, who: str, signal: int) -> None:
        await self.bus.call(*MANAGER, "KillMachine", "ssi", [name, who, signal])
