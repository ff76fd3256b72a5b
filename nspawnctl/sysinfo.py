"""What ``version`` and ``info`` report: nspawnctl's own versions and the host's, read where they live.

systemd is nspawnctl's daemon, so the "server" half of docker's ``version`` is systemd itself
(its Manager's Version, asked over the bus like every other call); the rest comes from the kernel
(uname, /proc, statvfs) and the store, never from a subprocess.
"""

from __future__ import annotations

import itertools
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .systemd.bus import Bus

SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
# The libraries whose versions a bug report needs (distribution names, as pip and dpkg call them).
DEPENDENCIES = (
    "typer",
    "dbus-fast",
    "dbus-next",
    "btrfsutil",
    "zstandard",
    "python-gnupg",
    "requests",
    "rich",
)
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


@dataclass(frozen=True)
class ClientVersion:
    version: str
    python: str
    os_arch: str  # docker's OS/Arch: "linux/amd64"
    dependencies: dict[str, str] = field(default_factory=dict)  # installed ones only


@dataclass(frozen=True)
class SystemdVersion:
    """The daemon half: systemd as PID 1 and what it was built with."""

    version: str
    features: str
    architecture: str
    virtualization: str  # "" on bare metal; "systemd-nspawn" inside a container
    kernel: str

    def display(self) -> str:
        """As the first line of ``systemctl --version``: ``systemd 257 (257.13-1~deb13u1)``."""
        major = "".join(itertools.takewhile(str.isdigit, self.version))
        return f"systemd {major or self.version} ({self.version})"


@dataclass(frozen=True)
class Filesystem:
    path: str
    total: int  # bytes
    free: int  # bytes available to root


@dataclass(frozen=True)
class HostInfo:
    """docker's ``info`` in nspawnctl's terms."""

    systemd: SystemdVersion
    os_name: str
    cgroup_version: int  # 2 when the unified hierarchy is mounted on /sys/fs/cgroup, else 1
    cpus: int
    memory: int  # bytes
    pool: Filesystem
    store: Filesystem
    networkd: bool  # systemd-networkd runs: the default network is veth, else host
    containers: dict[str, int]  # state -> count, plus "total" (container_counts)
    images: int


STATES = ("running", "restarting", "paused", "created", "exited")


def container_counts(states: Iterable[str]) -> dict[str, int]:
    """Containers by state, plus "total"."""
    counts = {"total": 0, **dict.fromkeys(STATES, 0)}
    for state in states:
        counts["total"] += 1
        counts[state] = counts.get(state, 0) + 1
    return counts


def docker_split(counts: dict[str, int]) -> tuple[int, int, int]:
    """docker's Running (a restarting container too, as docker counts it), Paused and Stopped
    (created or exited): one derivation for ``info`` and the API's ``/info``."""
    return counts["running"] + counts["restarting"], counts["paused"], counts["created"] + counts["exited"]


def client_version() -> ClientVersion:
    from importlib import metadata

    from . import __version__

    deps = {}
    for name in DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    machine = platform.machine()
    return ClientVersion(
        __version__, platform.python_version(), f"{sys.platform}/{_GOARCH.get(machine, machine)}", deps
    )


async def systemd_version(bus: Bus) -> SystemdVersion:
    props = await bus.get_all(SYSTEMD[0], SYSTEMD[1], SYSTEMD[2])

    def text(key: str) -> str:
        value = props.get(key)
        value = getattr(value, "value", value)  # a Variant from get_all
        return str(value) if value is not None else ""

    return SystemdVersion(
        text("Version"), text("Features"), text("Architecture"), text("Virtualization"), platform.release()
    )


def os_name(os_release: Path = Path("/etc/os-release")) -> str:
    """PRETTY_NAME of os-release(5), as ``hostnamectl`` shows it."""
    for path in (os_release, Path("/usr/lib/os-release")):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip("\"'")
    return platform.system()


def cgroup_version(root: str = "/sys/fs/cgroup") -> int:
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def filesystem(path: Path) -> Filesystem:
    """Size and free space of ``path``'s filesystem (0 and 0 when it does not exist yet)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return Filesystem(str(path), 0, 0)
    return Filesystem(str(path), st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
