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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_POOL, Paths
from .hook import host_is_unified, paths_environment
from .units import (
    LOG_FIELD,
    RESTART_SEC,
    RESTART_STOP_TIMEOUT,
    persistent_unit_name,
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


def unit_word(text: str) -> str:
    """One word of a unit file's Exec line or value: ``%`` and ``$`` escaped, quoted when it has blanks."""
    text = text.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\]", text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


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
    template: str | None = None,
) -> str:
    """The drop-in for one container (pure: everything it depends on is an argument)."""
    if template is None:
        template = _template()
    if unified is None:
        unified = host_is_unified()
    env = paths_environment(paths)
    if unified:
        env.append("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
    extra = [f"Environment={unit_word(e)}" for e in env]
    limits = spec.limits
    if limits.memory is not None:
        extra.append(f"MemoryMax={limits.memory}")
    if limits.cpus is not None:
        extra.append(f"CPUQuota={round(limits.cpus * 100, 2):g}%")
    if limits.pids is not None:
        extra.append(f"TasksMax={limits.pids}")
    mounts = [str(paths.pool / spec.name), str(paths.store)]
    if paths.pool != DEFAULT_POOL:  # the template only requires /var/lib/machines/NAME
        mounts.append(str(paths.pool))
    values = {
        "NAME": spec.name,
        "KEEP": KEEP_MARK if keep else "",
        "MOUNTS": " ".join(m.replace("%", "%%") for m in mounts),
        "PYTHON": unit_word(python or sys.executable),
        "TIMEOUT_STOP": f"{RESTART_STOP_TIMEOUT}s",
        "RESTART": restart_of(spec, enabled),
        "RESTART_SEC": f"{RESTART_SEC}s",
        "LOG_FIELD": LOG_FIELD,
        "ID": spec.id,
        "EXTRA": "\n".join(extra),
    }
    text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)
    return re.sub(r"\n{3,}", "\n\n", text.replace("# \n", "")).rstrip("\n") + "\n"


def _template() -> str:
    """The shipped template (package nspawnctl.units once installed; units/ in a source checkout)."""
    try:
        return resources.files("nspawnctl.units").joinpath(TEMPLATE).read_text()
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "units" / TEMPLATE).read_text()


def is_kept(text: str | None) -> bool:
    return bool(text) and KEEP_MARK in (text or "")


def write_dropin(name: str, text: str) -> bool:
    """Write atomically (a half-written drop-in would break the unit); False when unchanged."""
    path = dropin_path(name)
    if read_dropin(name) == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{DROPIN}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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


async def sync(manager: Manager, spec: ContainerSpec, paths: Paths, enabled: bool, keep: bool) -> None:
    """Make the drop-in say what the container's definition says, and tell systemd."""
    if write_dropin(spec.name, render_dropin(spec, paths, enabled=enabled, keep=keep)):
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
        write_dropin(spec.name, render_dropin(spec, paths, enabled=False, keep=is_kept(text)))
    await manager.reload()


async def forget(manager: Manager, name: str) -> None:
    """Disable and remove the drop-in (the container is being removed)."""
    disabled = await is_enabled(manager, name)
    if disabled:
        await manager.disable_unit_files([persistent_unit_name(name)])
    if remove_dropin(name) or disabled:
        await manager.reload()
