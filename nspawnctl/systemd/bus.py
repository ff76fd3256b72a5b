"""The one D-Bus connection, on dbus-fast (or dbus-next, its API-compatible ancestor).

Everything here is async; buses are built inside the running loop (dbus-fast requires it,
and dbus-next would warn on Python >= 3.12). Structs are passed as lists so dbus-next accepts them.
We use the low-level message API with fixed signatures: introspecting systemd1 costs more than
the handful of calls we make.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from ..errors import SystemdError

T = TypeVar("T")

DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
PROPERTIES = "org.freedesktop.DBus.Properties"


def _library() -> tuple[ModuleType, ModuleType]:
    for name in ("dbus_fast", "dbus_next"):
        try:
            return importlib.import_module(name), importlib.import_module(f"{name}.aio")
        except ImportError:
            continue
    raise SystemdError("no D-Bus library found", hint="pip install dbus-fast")


class BusError(SystemdError):
    """A D-Bus method returned an error; ``name`` is the D-Bus error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message or name)
        self.name = name


@dataclass
class Bus:
    """A connected system bus with a small call helper."""

    raw: Any
    lib: ModuleType
    _filters: dict[Callable[[Any], None], Callable[[Any], None]] = field(default_factory=dict)
    _matches: set[str] = field(default_factory=set)
    _shared: dict[type, Any] = field(default_factory=dict)

    @classmethod
    async def connect(cls) -> Bus:
        lib, aio = _library()
        try:
            raw = await aio.MessageBus(bus_type=lib.BusType.SYSTEM, negotiate_unix_fd=True).connect()
        except (OSError, EOFError) as e:
            raise SystemdError(
                f"cannot connect to the system bus: {e}",
                hint="nspawnctl needs a host running systemd (PID 1) and D-Bus; run it as root",
            ) from e
        return cls(raw, lib)

    def variant(self, signature: str, value: Any) -> Any:
        return self.lib.Variant(signature, value)

    async def call(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        unix_fds: list[int] | None = None,
    ) -> list[Any]:
        msg = self.lib.Message(
            destination=dest,
            path=path,
            interface=iface,
            member=member,
            signature=signature,
            body=body or [],
            unix_fds=unix_fds or [],
        )
        reply = await self.raw.call(msg)
        if reply.message_type == self.lib.MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise BusError(reply.error_name or "error", text)
        return list(reply.body)

    async def get_property(self, dest: str, path: str, iface: str, prop: str) -> Any:
        (value,) = await self.call(dest, path, PROPERTIES, "Get", "ss", [iface, prop])
        return value.value

    async def get_all(self, dest: str, path: str, iface: str) -> dict[str, Any]:
        (props,) = await self.call(dest, path, PROPERTIES, "GetAll", "s", [iface])
        return {k: v.value for k, v in props.items()}

    async def add_match(self, rule: str) -> None:
        """AddMatch, once per rule on this connection (its users share it: one bus per command)."""
        if rule in self._matches:
            return
        await self.call(*DBUS, "AddMatch", "s", [rule])
        self._matches.add(rule)

    async def remove_match(self, rule: str) -> None:
        """RemoveMatch of a rule :meth:`add_match` added: a long-lived bus would otherwise gather a
        rule per unit ever waited on, up to the bus daemon's per-connection limit."""
        if rule not in self._matches:
            return
        self._matches.discard(rule)
        await self.call(*DBUS, "RemoveMatch", "s", [rule])

    def shared(self, kind: Callable[[Bus], T]) -> T:
        """The one ``kind(self)`` of this connection (Manager, Machined): their signal handlers
        and subscriptions are per connection, so each is made once however many users it has."""
        if kind not in self._shared:
            self._shared[kind] = kind(self)  # type: ignore[index]
        return self._shared[kind]  # type: ignore[index]

    def on_signal(self, handler: Callable[[Any], None]) -> None:
        """Call ``handler`` with every signal message (the matches say which ones arrive)."""

        def filt(msg: Any) -> None:
            if msg.message_type == self.lib.MessageType.SIGNAL:
                handler(msg)

        self._filters[handler] = filt
        self.raw.add_message_handler(filt)

    def remove_signal_handler(self, handler: Callable[[Any], None]) -> None:
        filt = self._filters.pop(handler, None)
        if filt is not None:
            self.raw.remove_message_handler(filt)

    def disconnect(self) -> None:
        self.raw.disconnect()


def run_sync(fn: Callable[[Bus], Awaitable[T]]) -> T:
    """Run ``fn(bus)`` on a fresh loop with one bus built inside it: the sync facade's entry point.

    A CLI command wraps its whole body in one call, so every library step of the command shares
    the connection. Not for code already inside an event loop: that awaits the library's async
    methods with a bus of its own (see :func:`open_bus`)."""

    async def main() -> T:
        bus = await Bus.connect()
        try:
            return await fn(bus)
        finally:
            bus.disconnect()

    return asyncio.run(main())


async def open_bus() -> Bus:
    """A bus for a caller that runs its own loop (one per session); ``disconnect`` it when done."""
    return await Bus.connect()


class Session:
    """One event loop and one bus, connected on first use, shared by the sync calls made while it
    is open: a command that makes several library calls (``rm -f a b c``, ``restart``) connects
    once. Close it (or use it as a context manager) to disconnect."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._bus: Bus | None = None

    def run(self, fn: Callable[[Bus], Awaitable[T]]) -> T:
        async def main() -> T:
            if self._bus is None:
                self._bus = await Bus.connect()
            return await fn(self._bus)

        return self._runner.run(main())

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:

            async def disconnect() -> None:  # on the loop that owns its transport
                bus.disconnect()

            self._runner.run(disconnect())
        self._runner.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
