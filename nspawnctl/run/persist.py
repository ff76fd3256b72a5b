"""Persistent containers: systemd's own ``systemd-nspawn@NAME.service`` plus nspawnctl's drop-in.

The drop-in (``/etc/systemd/system/systemd-nspawn@NAME.service.d/50-nspawnctl.conf``, rendered from
``units/nspawnctl-instance.conf.in``) swaps the template's nspawn command line for nspawnctl's hook,
so ``machinectl start NAME``, a boot with the container enabled and ``nspawnctl start NAME`` all
run the container the same way. ``enable`` = drop-in + daemon reload + EnableUnitFiles.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_POOL, Paths
from ..errors import SystemdError
from .escape import unit_value, unit_word
from .hook import host_is_unified, paths_environment
from .units import (
    ACCOUNTING,
    RESTART_STOP_TIMEOUT,
    has_backoff,
    log_extra_field,
    persistent_unit_name,
    restart_settings,
    retry_limit,
    stop_timeout_sec,
    systemd_restart,
)

if TYPE_CHECKING:
    from ..spec import ContainerSpec
    from ..systemd.manager import Manager

UNIT_DIR = Path("/etc/systemd/system")
DROPIN = "50-nspawnctl.conf"
TEMPLATE = "nspawnctl-instance.conf.in"
MACHINES_TARGET = "machines.target"
# in the header of a drop-in that stays when the container is disabled (apply made it)
KEEP_MARK = "Kept when disabled: the container was declared ('nspawnctl apply')."


def unit_dir() -> Path:
    return Path(os.environ.get("NSPAWNCTL_UNIT_DIR") or UNIT_DIR)


def dropin_path(name: str, base: Path | None = None) -> Path:
    return (base or unit_dir()) / f"{persistent_unit_name(name)}.d" / DROPIN


def has_dropin(name: str) -> bool:
    return dropin_path(name).is_file()


def read_dropin(name: str) -> str | None:
    try:
        return dropin_path(name).read_text()
    except FileNotFoundError:
        return None


def restart_of(spec: ContainerSpec, enabled: bool) -> str:
    """The container's own policy; an enabled container restarts on failure at least."""
    restart = systemd_restart(spec.restart)
    return "on-failure" if enabled and restart == "no" else restart


def render_dropin(
    spec: ContainerSpec,
    paths: Paths,
    *,
    enabled: bool,
    keep: bool = False,
    python: str | None = None,
    unified: bool | None = None,
    systemd_version: int = 0,
    template: str | None = None,
) -> str:
    """The drop-in for one container (pure: everything it depends on is an argument).
    ``systemd_version``: the manager's, for the restart backoff (see units.restart_settings)."""
    if template is None:
        template = _template()
    if unified is None:
        unified = host_is_unified()
    python = python or sys.executable
    env = paths_environment(paths)
    if unified:
        env.append("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
    restart = restart_of(spec, enabled)
    unit_keys: list[str] = []
    service_keys: list[str] = []
    settings = restart_settings(restart, has_backoff(systemd_version))
    if limit := retry_limit(spec.restart):
        settings = [kv for kv in settings if not kv[0].startswith("StartLimit")] + limit
    for key, value in settings:
        if key == "Restart":
            continue  # in the template
        (unit_keys if key.startswith("StartLimit") else service_keys).append(f"{key}={value}")
    extra = [*service_keys, *(f"Environment={unit_value(e)}" for e in env)]
    extra += [f"{key}=yes" for key in ACCOUNTING]  # what stats reads
    limits = spec.limits
    if limits.memory is not None:
        extra.append(f"MemoryMax={limits.memory}")
    if limits.cpus is not None:
        extra.append(f"CPUQuota={limits.cpus.quota_percent()}")  # no specifiers in CPUQuota=
    if limits.pids is not None:
        extra.append(f"TasksMax={limits.pids}")
    from ..runopts import unit_settings

    memory = None if limits.memory is None else limits.memory.bytes
    for key, value in unit_settings(spec.settings, spec.private_users, memory):  # --device, --cpu-shares, ...
        if key == "DeviceAllow":
            node, _, perms = value.rpartition(" ")
            extra.append(f"DeviceAllow={unit_value(node)} {perms}")
        else:
            extra.append(f"{key}={unit_value(value)}")
    mounts = [str(paths.pool / spec.name), str(paths.store)]
    if paths.pool != DEFAULT_POOL:  # the template only requires /var/lib/machines/NAME
        mounts.append(str(paths.pool))
    note = ""
    if _under_home(python):
        mounts.append(str(Path(python).parent))  # at boot, /home may be a file system of its own
        note = (
            f"The hook runs {python}, a Python under a home directory (a venv?): the container "
            "starts only while it is there."
        )
    values = {
        "NAME": spec.name,  # a machine name: letters, digits, '-', '.' (nothing to escape)
        "KEEP": KEEP_MARK if keep else "",
        "PYTHON_NOTE": note.replace("\n", "\\n"),  # a comment: no specifiers
        "MOUNTS": "\n".join(f"RequiresMountsFor={unit_value(m, c_escapes=False)}" for m in mounts),
        "UNIT_EXTRA": "\n".join(unit_keys),
        "PYTHON": unit_word(python),
        "TIMEOUT_STOP": f"{stop_timeout_sec(spec, RESTART_STOP_TIMEOUT)}s",
        "RESTART": restart,
        "LOG_FIELD": log_extra_field(spec),
        "EXTRA": "\n".join(extra),
    }
    text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)
    return re.sub(r"\n{3,}", "\n\n", text.replace("# \n", "")).rstrip("\n") + "\n"


def _under_home(path: str) -> bool:
    return Path(path).is_absolute() and Path(path).parts[1:2] in (("home",), ("root",))


def _template() -> str:
    """The shipped template (package nspawnctl.units once installed; units/ in a source checkout)."""
    from importlib import resources  # ~3 ms to import: not on every run's path (runtime loads us)

    try:
        return resources.files("nspawnctl.units").joinpath(TEMPLATE).read_text()
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "units" / TEMPLATE).read_text()


def is_kept(text: str | None) -> bool:
    return bool(text) and KEEP_MARK in (text or "")


def write_dropin(name: str, text: str) -> bool:
    """Write atomically (a half-written drop-in would break the unit); False when unchanged.
    The temporary file has a name of its own per writer (enable, apply and start may write at
    once: the last rename wins, each with a whole file), and does not end in .conf (systemd
    ignores it); it is removed if anything fails."""
    path = dropin_path(name)
    if read_dropin(name) == text:
        return False
    from ..tempfiles import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, 0o644)
    return True


def remove_dropin(name: str) -> bool:
    path = dropin_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    try:
        path.parent.rmdir()
    except OSError:
        pass  # someone else's drop-ins live there too
    return True


_version: int | None = None


async def systemd_version(manager: Manager) -> int:
    """The service manager's major version (Manager.Version, e.g. "257.13-1"), read once per
    process; 0 when it cannot be told."""
    global _version
    if _version is None:
        from ..systemd.manager import MANAGER

        try:
            text = await manager.bus.get_property(MANAGER[0], MANAGER[1], MANAGER[2], "Version")
        except SystemdError:
            text = ""
        m = re.match(r"v?(\d+)", str(text))
        _version = int(m.group(1)) if m else 0
    return _version


async def _render(manager: Manager, spec: ContainerSpec, paths: Paths, enabled: bool, keep: bool) -> str:
    version = await systemd_version(manager)
    return render_dropin(spec, paths, enabled=enabled, keep=keep, systemd_version=version)


async def sync(manager: Manager, spec: ContainerSpec, paths: Paths, enabled: bool, keep: bool) -> None:
    """Make the drop-in say what the container's definition says, and tell systemd."""
    if write_dropin(spec.name, await _render(manager, spec, paths, enabled, keep)):
        await manager.reload()


async def is_enabled(manager: Manager, name: str) -> bool:
    return (await manager.unit_file_state(persistent_unit_name(name))).startswith("enabled")


async def enable(manager: Manager, spec: ContainerSpec, paths: Paths) -> None:
    await sync(manager, spec, paths, enabled=True, keep=is_kept(read_dropin(spec.name)))
    await manager.enable_unit_files([persistent_unit_name(spec.name), MACHINES_TARGET])
    await manager.reload()  # as systemctl enable does: the new .wants/ link becomes a dependency


async def disable(manager: Manager, spec: ContainerSpec, paths: Paths) -> None:
    """Not at boot any more; the drop-in stays (``machinectl start`` keeps working), back to the
    container's own restart policy."""
    await manager.disable_unit_files([persistent_unit_name(spec.name)])
    text = read_dropin(spec.name)
    if text is not None:
        write_dropin(spec.name, await _render(manager, spec, paths, False, is_kept(text)))
    await manager.reload()


async def forget(manager: Manager, name: str) -> None:
    """Disable and remove the drop-in (the container is being removed)."""
    disabled = await is_enabled(manager, name)
    if disabled:
        await manager.disable_unit_files([persistent_unit_name(name)])
    if remove_dropin(name) or disabled:
        await manager.reload()
