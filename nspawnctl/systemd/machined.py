"""org.freedesktop.machine1: the registered containers, their leaders, signals."""

from __future__ import annotations

from dataclasses import dataclass

from .bus import Bus, BusError

MACHINED = "org.freedesktop.machine1"
MANAGER = (MACHINED, "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager")
MACHINE_IFACE = "org.freedesktop.machine1.Machine"


@dataclass(frozen=True)
class Machine:
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

    async def kill(self, name: str, who: str, signal: int) -> None:
        await self.bus.call(*MANAGER, "KillMachine", "ssi", [name, who, signal])
