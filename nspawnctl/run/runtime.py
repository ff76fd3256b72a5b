"""Starting, signalling and stopping container units; the few effects behind the pure builders.

A container runs under one of two units: the transient ``nspawnctl-NAME.service`` (``run``,
``create`` + ``start``) or systemd's ``systemd-nspawn@NAME.service`` with nspawnctl's drop-in
(``enable``, ``apply``, ``machinectl start``). :meth:`Runtime.unit_for` says which one.
"""

from __future__ import annotations

import asyncio
import os
import signal as signals
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Paths
from ..errors import CommandFailed, ContainerNotRunning, SystemdError
from ..spec import ContainerSpec
from ..systemd.bus import Bus
from ..systemd.machined import Machined
from ..systemd.manager import SERVICE_IFACE, Manager, UnitState
from . import persist
from .hook import clear_stale_mounts
from .units import Launch, has_backoff, persistent_unit_name, unit_name, unit_properties

__all__ = ["AUTO_RESTART", "Outcome", "Runtime", "payload_exited"]

AUTO_RESTART = "auto-restart"  # sub-state between a payload's exit and its restart (and -queued, >= 254)


@dataclass(frozen=True)
class Outcome:
    """How a unit's payload ended: its exit code and systemd's Result."""

    exit_code: int
    result: str


class Runtime:
    def __init__(self, bus: Bus, paths: Paths) -> None:
        self.bus = bus
        self.paths = paths
        self.manager = bus.shared(Manager)
        self.machined = bus.shared(Machined)

    # -- which unit --------------------------------------------------------------------------
    @staticmethod
    def unit_to_start(name: str, launch: Launch | None = None) -> str:
        """The persistent unit once the container has nspawnctl's drop-in, else the transient one.

        A start that is wired to its caller (``launch`` hands over our stdin/stdout/stderr, or
        keeps the unit referenced to read the exit status) always uses the transient unit: those
        are properties of a transient unit, which systemd-nspawn@NAME.service cannot take. The
        drop-in still governs every detached start (``start``, ``machinectl start``, boot)."""
        if launch is not None and (
            launch.attach_fds is not None or launch.stdin_fd is not None or launch.add_ref
        ):
            return unit_name(name)
        return persistent_unit_name(name) if persist.has_dropin(name) else unit_name(name)

    async def unit_for(self, name: str) -> str:
        """The unit running container ``name`` (transient first), else the one ``start`` would use."""
        state = (await self.states([name])).get(name)
        if state is not None and state.running:
            return state.name
        return self.unit_to_start(name)

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        """Per container the state of the unit running it (or, when none runs, of the unit ``start``
        would use); one D-Bus call for all."""
        units = await self.manager.states([u for n in names for u in (unit_name(n), persistent_unit_name(n))])
        out = {}
        for n in names:
            transient, persistent = units.get(unit_name(n)), units.get(persistent_unit_name(n))
            if transient is not None and transient.running:
                out[n] = transient
            elif persistent is not None and persistent.running:
                out[n] = persistent
            else:
                pick = persistent if persist.has_dropin(n) else transient
                if pick is not None:
                    out[n] = pick
        return out

    async def is_running(self, name: str) -> bool:
        state = (await self.states([name])).get(name)
        return bool(state and state.running)

    async def busy(self, name: str) -> UnitState | None:
        """Either unit of the container that runs or has a job queued (a start on its way, not
        yet activating), else None: what a rewrite of the definition, under the container's
        lock, must not go under."""
        units = await self.manager.states([unit_name(name), persistent_unit_name(name)])
        return next((s for s in units.values() if s.busy), None)

    # -- starting ----------------------------------------------------------------------------
    async def start(
        self, spec: ContainerSpec, launch: Launch, queued: Callable[[], None] | None = None
    ) -> str:
        """Start the container's unit; raise with nspawn's own words if it fails to come up.
        Returns the unit's name (see :meth:`unit_to_start`). ``queued``: called once the start
        job is queued, before the wait for the unit (the caller's lock goes there)."""
        unit = self.unit_to_start(spec.name, launch)
        # the start waits on systemd's signals: subscribed in the reset's round trip
        await asyncio.gather(self.manager.reset_failed(unit), self.manager.subscribe_jobs())
        clear_stale_mounts(spec.name)
        if unit == unit_name(spec.name):
            # only a unit that restarts has restart settings: no version look for the others
            backoff = spec.restart != "no" and has_backoff(await persist.systemd_version(self.manager))
            props = unit_properties(spec, self.paths.pool, launch, backoff=backoff)
            result = await self.manager.start_transient(unit, props, queued=queued)
        else:
            enabled = await persist.is_enabled(self.manager, spec.name)
            keep = persist.is_kept(persist.read_dropin(spec.name))
            await persist.sync(self.manager, spec, self.paths, enabled=enabled, keep=keep)
            result = await self.manager.start(unit, queued=queued)
        if result != "done":
            # systemd >= 254 fails the start job at once but goes on restarting the unit (with
            # Restart=): a start reported failed must not come up later behind the caller's back.
            now = await self.manager.unit_properties(unit)
            if now is not None and str(now.get("SubState", "")).startswith(AUTO_RESTART):
                await self.manager.queue_stop(unit)
            raise SystemdError(
                f"container {spec.name} failed to start ({result})",
                hint=f"see 'journalctl -u {unit}' for systemd-nspawn's messages",
            )
        return unit

    # -- observing ---------------------------------------------------------------------------
    async def started_at(self, name: str, unit: str | None = None) -> int | None:
        """ActiveEnterTimestamp (µs since the epoch) of a running container's unit."""
        props = await self.manager.unit_properties(unit or await self.unit_for(name))
        if not props:
            return None
        return int(props.get("ActiveEnterTimestamp", 0)) or None

    async def invocation_id(self, name: str, unit: str | None = None) -> str | None:
        return invocation_of(await self.manager.unit_properties(unit or await self.unit_for(name)))

    async def outcome(self, name: str, unit: str | None = None) -> Outcome | None:
        """How the payload ended, from the (still referenced) unit."""
        props = await self.manager.unit_properties(unit or await self.unit_for(name), SERVICE_IFACE)
        if not props:
            return None
        code, status, result = (
            props.get("ExecMainCode", 0),
            props.get("ExecMainStatus", 0),
            props.get("Result", ""),
        )
        if code == 1:  # CLD_EXITED
            return Outcome(int(status), result)
        if code in (2, 3):  # killed / dumped by a signal
            return Outcome(128 + int(status), result)
        return Outcome(0 if result == "success" else 1, result)

    async def restarts(self, unit: str) -> bool:
        """True when systemd would restart the unit after its payload ends (Restart= is not no)."""
        props = await self.manager.unit_properties(unit, SERVICE_IFACE)
        return bool(props) and str(props.get("Restart", "no")) != "no"  # type: ignore[union-attr]

    async def wait(self, name: str, timeout: float | None = None, unit: str | None = None) -> bool:
        return await self.manager.wait_inactive(unit or await self.unit_for(name), timeout)

    async def wait_exit(
        self,
        unit: str,
        timeout: float | None = None,
        seen: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> bool:
        """Wait until the payload's first exit: the unit is inactive/failed, or it is waiting to be
        restarted (sub-state auto-restart, which counts as activating: :meth:`wait` would wait
        through every restart). False on timeout. Then :meth:`outcome` tells how it ended, and
        the container keeps its restart policy (as docker's foreground ``run --restart``).
        Driven by systemd's signals about the unit (see Manager.wait_unit, also for ``seen``)."""
        return await self.manager.wait_unit(unit, payload_exited, timeout, seen=seen)

    async def reset(self, name: str) -> None:
        """Forget a failed unit so its name can be used again."""
        for unit in (unit_name(name), persistent_unit_name(name)):
            await self.manager.reset_failed(unit)

    async def release(self, name: str, unit: str | None = None) -> None:
        await self.manager.unref(unit or unit_name(name))

    # -- stopping ----------------------------------------------------------------------------
    async def stop(self, name: str, timeout: float) -> bool:
        """Graceful stop, as ``docker stop -t``: SIGTERM to nspawn, which passes the container's kill
        signal to its PID 1 (an orderly shutdown for a booted init); after ``timeout`` seconds a
        second SIGTERM, on which nspawn kills the container and cleans up after itself. SIGKILL to
        the whole unit only if even that hangs (it leaves nspawn's mounts behind). Returns True when
        the payload had to be killed.

        A unit with a restart policy is stopped through a StopUnit job (systemd then sends the first
        SIGTERM): systemd would restart a payload it merely sees die."""
        state = (await self.states([name])).get(name)
        if state is None or not state.running:
            return False
        unit = state.name
        if await self.restarts(unit) or state.active_state != "active":
            # starting, stopping or waiting to restart: there may be no payload to signal
            await self.manager.queue_stop(unit)
        else:
            try:
                await self.manager.kill(unit, "main", signals.SIGTERM)
            except SystemdError:  # it ended a moment ago ("No main process to kill")
                await self.manager.queue_stop(unit)
        if await self.manager.wait_inactive(unit, timeout):
            return False
        await self._kill_quietly(unit, "main", signals.SIGTERM)
        if not await self.manager.wait_inactive(unit, 10):
            await self._kill_quietly(unit, "all", signals.SIGKILL)
            await self.manager.wait_inactive(unit, 30)
        return True

    async def _kill_quietly(self, unit: str, who: str, signal: int) -> None:
        try:
            await self.manager.kill(unit, who, signal)
        except SystemdError:
            pass  # it ended meanwhile

    async def kill(self, name: str, signal: int) -> None:
        """Send ``signal`` to the container's PID 1, as ``docker kill`` does. A SIGKILL ends a
        container with a restart policy for good (docker does not restart after ``kill`` either)."""
        state = (await self.states([name])).get(name)
        if state is None or not state.running:
            raise ContainerNotRunning(f"container {name} is not running")
        if signal == signals.SIGKILL and (
            await self.restarts(state.name) or state.sub_state.startswith(AUTO_RESTART)
        ):
            await self.manager.queue_stop(state.name)
        leader = await self.machined.leader(name)
        if leader is None:
            if signal == signals.SIGKILL:
                await self._kill_quietly(state.name, "all", signals.SIGKILL)
                return
            raise ContainerNotRunning(f"container {name} is not registered with machined (is it starting?)")
        await self.machined.kill(name, "leader", signal)

    async def leader(self, name: str) -> int:
        if not await self.is_running(name):
            raise ContainerNotRunning(
                f"container {name} is not running", hint=f"start it first: nspawnctl start {name}"
            )
        # registered with machined a moment after the unit turns active
        leader = await self.machined.wait_leader(name, timeout=5)
        if leader is None:
            raise ContainerNotRunning(f"container {name} has no leader process")
        return leader


def invocation_of(props: dict[str, Any] | None) -> str | None:
    """The unit's InvocationID (hex) from its properties; None when it has none (or is gone)."""
    if not props or not props.get("InvocationID"):
        return None
    return bytes(props["InvocationID"]).hex()


def payload_exited(props: dict[str, Any] | None) -> bool:
    """The unit's payload has ended (the first time): the unit is gone, inactive/failed with no
    job pending, or waiting to be restarted."""
    if props is None:
        return True
    if str(props.get("SubState", "")).startswith(AUTO_RESTART):
        return True
    job = props.get("Job", [0, "/"])[0]
    return props.get("ActiveState") in ("inactive", "failed") and not job


def exec_argv(
    leader: int, argv: list[str], workdir: str | None, uid: int | None, gid: int | None
) -> list[str]:
    """Enter every namespace of the container's PID 1 (works without systemd inside) and run
    ``argv`` under the payload's own cgroup, limits, capabilities and no-new-privileges: the
    standard-library helper run/execenv.py, run as a script (no package import)."""
    import sys

    from . import execenv

    return execenv.argv(sys.executable, leader, argv, workdir, uid, gid)


MAX_ACCOUNT_FILE = 4 << 20
"""Bytes of the container's /etc/passwd or /etc/group read at most: the health check reads them
as root on the host every interval, and the container's payload may have grown them."""


def resolve_user(root: Path, user: str | None) -> tuple[int | None, int | None]:
    """``user[:group]`` (names or numbers), looked up in the container's own /etc/passwd and group."""
    if not user:
        return None, None
    name, _, group = user.partition(":")

    def lookup(file: str, key: str, field: int) -> int | None:
        if key.isdigit():
            return int(key)
        try:
            text = read_in_root(root, f"/etc/{file}", MAX_ACCOUNT_FILE).decode(errors="replace")
            for line in text.splitlines():
                parts = line.split(":")
                if parts[0] == key and len(parts) > field:
                    return int(parts[field])
        except OSError:
            pass
        raise CommandFailed(f"unknown {'user' if file == 'passwd' else 'group'} {key!r} in the container")

    uid = lookup("passwd", name, 2)
    gid = lookup("group", group, 2) if group else None
    if gid is None and not name.isdigit():
        gid = lookup("passwd", name, 3)
    return uid, gid


def read_in_root(root: Path, path: str, limit: int) -> bytes:
    """The regular file ``path`` of the container's root, resolved as a chroot would (a symlink
    planted by the payload never leads out to the host's files) and opened with ``O_NOFOLLOW``;
    at most ``limit`` bytes. OSError when it is missing; CommandFailed when it is not a regular
    file or larger than ``limit``."""
    import stat

    from ..store import rootpath

    def refuse(why: str) -> CommandFailed:
        return CommandFailed(
            f"the container's {path} {why}", hint="fix or replace that file in the container"
        )

    root_fd = os.open(root, rootpath.DIR_READ)
    try:
        comps = rootpath.resolve(root_fd, path)
        st = rootpath.lstat(root_fd, comps)
        if st is None:
            raise FileNotFoundError(path)
        if not comps or not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never end
            raise refuse("is not a regular file")
        dir_fd = rootpath.open_dir(root_fd, comps[:-1])
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            fd = os.open(comps[-1], flags, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
            raise refuse("is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise refuse(f"is larger than {limit >> 20} MiB")
    finally:
        os.close(fd)


def run_exec(argv: list[str], env: dict[str, str], tty: bool, interactive: bool = True) -> int:
    """Run the exec helper; with ``tty`` under a fresh pseudo-terminal, forwarding our terminal.
    Without ``interactive`` the command gets no stdin, as with docker exec without -i."""
    if not tty:
        stdin = None if interactive else subprocess.DEVNULL
        return signal_code(subprocess.run(argv, env=env, stdin=stdin, check=False).returncode)
    import pty

    # pty.spawn execs with our own environment: make it the helper's (env(1) would put the
    # container's variables, secrets often, on a command line every host user can read). This
    # is the command's last step: nothing runs after it in this process but the wait.
    os.environ.clear()
    os.environ.update(env)
    status = pty.spawn(argv, lambda fd: os.read(fd, 65536))
    return signal_code(os.waitstatus_to_exitcode(status))


def signal_code(code: int) -> int:
    """A shell's (and docker's) exit code for a command a signal ended: 128 + the signal."""
    return 128 - code if code < 0 else code
