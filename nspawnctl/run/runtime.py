"""Starting, signalling and stopping container units; the few effects behind the pure builders."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal as signals
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import Paths
from ..errors import CommandFailed, ContainerNotRunning, SystemdError
from ..spec import ContainerSpec
from ..systemd.bus import Bus
from ..systemd.machined import Machined
from ..systemd.manager import SERVICE_IFACE, Manager, UnitState
from .units import Launch, unit_name, unit_properties

CGROUP2_MAGIC = 0x63677270


def host_is_unified() -> bool:
    """True when /sys/fs/cgroup is cgroup v2 (then app payloads should get v2 too)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(
                line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == "/sys/fs/cgroup"
                for line in f
                if " - " in line
            )
    except OSError:
        return False


def nspawn_binary() -> str:
    path = shutil.which("systemd-nspawn", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise CommandFailed("systemd-nspawn is not installed", hint="install systemd-container")
    return path


def poststop_argv(paths: Paths, name: str, remove: bool) -> tuple[str, ...]:
    argv = [
        sys.executable,
        "-m",
        "nspawnctl.run.poststop",
        "--pool",
        str(paths.pool),
        "--store",
        str(paths.store),
    ]
    return (*argv, *(["--remove"] if remove else []), name)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    result: str


class Runtime:
    def __init__(self, bus: Bus, paths: Paths) -> None:
        self.bus = bus
        self.paths = paths
        self.manager = Manager(bus)
        self.machined = Machined(bus)

    async def start(self, spec: ContainerSpec, launch: Launch) -> None:
        """Start the container's transient unit; raise with nspawn's own words if it fails to come up."""
        unit = unit_name(spec.name)
        await self.manager.reset_failed(unit)
        clear_stale_mounts(spec.name)
        props = unit_properties(spec, self.paths.pool, launch)
        result = await self.manager.start_transient(unit, props)
        if result != "done":
            raise SystemdError(
                f"container {spec.name} failed to start ({result})",
                hint=f"see 'journalctl -u {unit}' for systemd-nspawn's messages",
            )

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        units = await self.manager.states([unit_name(n) for n in names])
        return {n: units[unit_name(n)] for n in names if unit_name(n) in units}

    async def is_running(self, name: str) -> bool:
        state = (await self.states([name])).get(name)
        return bool(state and state.running)

    async def started_at(self, name: str) -> int | None:
        """ActiveEnterTimestamp (µs since the epoch) of a running container's unit."""
        props = await self.manager.unit_properties(unit_name(name))
        if not props:
            return None
        return int(props.get("ActiveEnterTimestamp", 0)) or None

    async def invocation_id(self, name: str) -> str | None:
        props = await self.manager.unit_properties(unit_name(name))
        if not props or not props.get("InvocationID"):
            return None
        return bytes(props["InvocationID"]).hex()

    async def outcome(self, name: str) -> Outcome | None:
        """How the payload ended, from the (still referenced) unit."""
        props = await self.manager.unit_properties(unit_name(name), SERVICE_IFACE)
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

    async def wait(self, name: str, timeout: float | None = None) -> bool:
        return await self.manager.wait_inactive(unit_name(name), timeout)

    async def reset(self, name: str) -> None:
        """Forget a failed unit so its name can be used again."""
        await self.manager.reset_failed(unit_name(name))

    async def release(self, name: str) -> None:
        await self.manager.unref(unit_name(name))

    async def stop(self, name: str, timeout: float) -> bool:
        """Graceful stop, as ``docker stop -t``: SIGTERM to nspawn, which passes the container's kill
        signal to its PID 1 (an orderly shutdown for a booted init); after ``timeout`` seconds a
        second SIGTERM, on which nspawn kills the container and cleans up after itself. SIGKILL to
        the whole unit only if even that hangs (it leaves nspawn's mounts behind). Returns True when
        the payload had to be killed."""
        unit = unit_name(name)
        if not await self.is_running(name):
            return False
        await self.manager.kill(unit, "main", signals.SIGTERM)
        if await self.manager.wait_inactive(unit, timeout):
            return False
        await self.manager.kill(unit, "main", signals.SIGTERM)
        if not await self.manager.wait_inactive(unit, 10):
            await self.manager.kill(unit, "all", signals.SIGKILL)
            await self.manager.wait_inactive(unit, 30)
        return True

    async def kill(self, name: str, signal: int) -> None:
        """Send ``signal`` to the container's PID 1, as ``docker kill`` does."""
        if not await self.is_running(name):
            raise ContainerNotRunning(f"container {name} is not running")
        leader = await self.machined.leader(name)
        if leader is None:
            raise ContainerNotRunning(f"container {name} is not registered with machined (is it starting?)")
        await self.machined.kill(name, "leader", signal)

    async def leader(self, name: str) -> int:
        if not await self.is_running(name):
            raise ContainerNotRunning(
                f"container {name} is not running", hint=f"start it first: nspawnctl start {name}"
            )
        for _ in range(50):  # registered with machined a moment after the unit turns active
            leader = await self.machined.leader(name)
            if leader is not None:
                return leader
            await asyncio.sleep(0.1)
        raise ContainerNotRunning(f"container {name} has no leader process")


def clear_stale_mounts(name: str) -> None:
    """Remove what a killed systemd-nspawn (>= 256) leaves behind and would refuse to start over."""
    export = Path("/run/systemd/nspawn/unix-export") / name
    if export.exists():
        subprocess.run(["umount", "--lazy", str(export)], capture_output=True, check=False)
        try:
            export.rmdir()
        except OSError:
            pass


def exec_argv(
    leader: int, argv: list[str], workdir: str | None, uid: int | None, gid: int | None
) -> list[str]:
    """nsenter into every namespace of the container's PID 1 (works without systemd inside)."""
    cmd = ["nsenter", f"--target={leader}", "--all", "--root"]
    cmd.append(f"--wd={workdir}" if workdir else "--wd")
    if uid is not None:
        cmd += [f"--setuid={uid}", f"--setgid={gid if gid is not None else uid}"]
    return [*cmd, "--", *argv]


def resolve_user(root: Path, user: str | None) -> tuple[int | None, int | None]:
    """``user[:group]`` (names or numbers), looked up in the container's own /etc/passwd and group."""
    if not user:
        return None, None
    name, _, group = user.partition(":")

    def lookup(file: str, key: str, field: int) -> int | None:
        if key.isdigit():
            return int(key)
        try:
            for line in (root / "etc" / file).read_text().splitlines():
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


def run_exec(argv: list[str], env: dict[str, str], tty: bool, interactive: bool = True) -> int:
    """Run the nsenter command; with ``tty`` under a fresh pseudo-terminal, forwarding our terminal.
    Without ``interactive`` the command gets no stdin, as with docker exec without -i."""
    if not tty:
        stdin = None if interactive else subprocess.DEVNULL
        return subprocess.run(argv, env=env, stdin=stdin, check=False).returncode
    import pty

    # pty.spawn execs with our own environment: hand the container's over through env(1).
    argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    status = pty.spawn(argv, lambda fd: os.read(fd, 65536))
    return os.waitstatus_to_exitcode(status)
