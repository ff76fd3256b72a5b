"""``/_ping``, ``/version``, ``/info``: what clients ask first (the CLI negotiates on _ping's
Api-Version header, docker-py on /version)."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
from typing import Any

from ... import __version__
from ...sysinfo import container_counts, docker_split
from ..context import Exchange
from ..routing import Router
from ..versions import MAX_VERSION, MIN_VERSION, fmt

ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


def go_arch() -> str:
    machine = platform.machine()
    return ARCHES.get(machine, machine)


async def ping(ex: Exchange) -> None:
    await ex.conn.reply(200, b"OK", "text/plain; charset=utf-8", head_only=ex.request.method == "HEAD")


def version_info() -> dict[str, Any]:
    kernel = platform.release()
    details = {
        "ApiVersion": fmt(MAX_VERSION),
        "MinAPIVersion": fmt(MIN_VERSION),
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
    }
    return {
        "Platform": {"Name": "nspawnctl"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "GitCommit": "",
        "GoVersion": "",
        "BuildTime": "",
        **details,
    }


async def version(ex: Exchange) -> None:
    await ex.json(version_info())


async def info(ex: Exchange) -> None:
    specs = await asyncio.to_thread(ex.client.containers.store.list)
    statuses = await ex.client.containers.astatuses(ex.bus, specs) if specs else []
    images = await asyncio.to_thread(ex.client.images.list)
    running, paused, stopped = docker_split(container_counts(s.state for s in statuses))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    await ex.json(
        {
            "ID": "",
            "Containers": len(statuses),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": len(images),
            "Driver": "btrfs",
            "DriverStatus": [],
            "Plugins": {"Volume": [], "Network": ["host", "none", "veth", "zone"], "Log": ["journald"]},
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "PidsLimit": True,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "ServerVersion": __version__,
            "Name": socket.gethostname(),
            "DockerRootDir": str(ex.client.paths.store),
            "LoggingDriver": "journald",
            "CgroupDriver": "systemd",
            "CgroupVersion": "2",
            "Runtimes": {"nspawn": {"path": "systemd-nspawn"}},
            "DefaultRuntime": "nspawn",
            "Swarm": {"NodeID": "", "LocalNodeState": "inactive"},
            "SecurityOptions": [],
            "Labels": [],
            "ExperimentalBuild": False,
            "Warnings": [],
        }
    )


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"


def register(router: Router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
