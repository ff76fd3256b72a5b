"""The library's records in docker's shapes (Engine API 1.47): container summaries and inspect,
images, errors. Pure functions: what the handlers send, and what the unit tests pin down."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, ImageNotFound, InvalidArgument, NotFound, NspawnctlError
from ..ref import familiar

if TYPE_CHECKING:
    from ..config import Paths
    from ..status import ContainerStatus
    from ..store.images import Image

STDOUT, STDERR = 1, 2
ZERO_TIME = "0001-01-01T00:00:00Z"


def frame(stream: int, data: bytes) -> bytes:
    """One frame of docker's multiplexed stream: [stream, 0, 0, 0, length (u32 big-endian)] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def error_status(e: NspawnctlError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, Conflict):
        return 409
    if isinstance(e, InvalidArgument):
        return 400
    return 500


def error_message(e: NspawnctlError) -> str:
    if isinstance(e, ImageNotFound):  # the docker CLI pulls on a 404; say it as dockerd does
        return f"No such image: {e}"
    return str(e)


def epoch(iso: str | None) -> int:
    if not iso:
        return 0
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def rfc3339(us: int) -> str:
    """docker's timestamps (logs -t): RFC 3339 with nanoseconds, UTC."""
    t = datetime.fromtimestamp(us // 1_000_000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{(us % 1_000_000) * 1000:09d}Z"


def _ago(seconds: float) -> str:
    s = int(max(seconds, 0))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "Less than a second" if s < 1 else f"{s} seconds"


def status_text(status: ContainerStatus, now: float) -> str:
    """docker ps's STATUS column: "Up 5 seconds", "Exited (3) 2 minutes ago", "Created"."""
    if status.state in ("running", "restarting") and status.started_us:
        return ("Restarting" if status.state == "restarting" else "Up ") + _ago(now - status.started_us / 1e6)
    if status.state == "exited" and status.exit is not None:
        when = epoch(status.exit.finished)
        return f"Exited ({status.exit.exit_code}) {_ago(now - when)} ago" if when else "Exited"
    return "Created" if status.state == "created" else status.state.capitalize()


def _ports_summary(status: ContainerStatus) -> list[dict[str, Any]]:
    return [
        {
            "IP": p.host_ip or "0.0.0.0",
            "PrivatePort": p.container_port,
            "PublicPort": p.host_port,
            "Type": p.protocol,
        }
        for p in status.spec.ports
    ]


def container_summary(status: ContainerStatus, now: float) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    from ..net.networks import docker_name

    s = status.spec
    network = s.network
    return {
        "Id": s.id,
        "Names": [f"/{s.display_name}"],
        "Image": s.image,
        "ImageID": s.image_id,
        "Command": " ".join(s.command),
        "Created": epoch(s.created),
        "Ports": _ports_summary(status),
        "Labels": dict(s.labels),
        "State": status.state,
        "Status": status_text(status, now),
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Networks": {docker_name(network): {}}},
        "Mounts": [_mount(v) for v in s.volumes],
    }


VolumeName = Callable[[str], "str | None"]
"""The volume a bind source is (``VolumeStore.name_of``), None for any other path."""


def _no_volume(host: str) -> str | None:
    return None


def anonymous(name: str | None) -> bool:
    """An anonymous volume's name (create gives it a random 64-hex one, as docker's)."""
    return name is not None and re.fullmatch(r"[0-9a-f]{64}", name) is not None


def _mount(v: Any, volume_name: VolumeName = _no_volume) -> dict[str, Any]:
    name = volume_name(v.host)
    if name is not None:  # a volume of the store: docker's volume mount
        return {
            "Type": "volume",
            "Name": name,
            "Source": v.host,
            "Destination": v.container,
            "Driver": "local",
            "Mode": "ro" if v.read_only else "z",
            "RW": not v.read_only,
            "Propagation": "",
        }
    return {
        "Type": "bind",
        "Source": v.host,
        "Destination": v.container,
        "Mode": "ro" if v.read_only else "",
        "RW": not v.read_only,
        "Propagation": "rprivate",  # nspawn's binds do not propagate; docker's default
    }


def container_inspect(
    status: ContainerStatus, volume_name: VolumeName = _no_volume, paths: Paths | None = None
) -> dict[str, Any]:
    """``GET /containers/{id}/json``, built on the library's own inspect (ContainerStatus.to_json).
    ``volume_name`` tells the store's volumes from other bind sources: anonymous volumes (docker's
    ``Config.Volumes``, ``-v /path``) are shown there and in ``Mounts``, not in ``Binds``."""
    from ..net.networks import endpoint_json
    from ..spec import docker_restart_policy

    mine = status.to_json()
    s = status.spec
    state = mine["State"]
    code = state["ExitCode"]
    anonymous_targets = [v.container for v in s.volumes if anonymous(volume_name(v.host))]
    config_extra: dict[str, Any] = {}
    if s.settings.stop_timeout is not None:  # moby: StopTimeout *int `json:",omitempty"`
        config_extra["StopTimeout"] = s.settings.stop_timeout
    host_config = {
        **{k: v for k, v in mine["HostConfig"].items() if v is not None},
        "Binds": [str(v) for v in s.volumes if not anonymous(volume_name(v.host))],
        "AutoRemove": s.auto_remove,
        "LogConfig": {"Type": "journald", "Config": {}},
        "RestartPolicy": docker_restart_policy(s.restart),
        "MemorySwappiness": None,  # dockerd's on cgroup v2: discarded (create warns)
    }
    network = {**mine["NetworkSettings"]}
    network["Networks"] = endpoint_json(paths, s, network)  # the network's name, ID, aliases
    network = {k: ("" if v is None and k in ("IPAddress", "Gateway") else v) for k, v in network.items()}
    return {
        "Id": s.id,
        "Created": s.created,
        "Path": mine["Path"] or "",
        "Args": mine["Args"],
        "State": {
            "Status": status.state,
            "Running": status.running,
            "Paused": status.state == "paused",
            "Restarting": status.state == "restarting",
            "OOMKilled": False,
            "Dead": False,
            "Pid": 0,
            "ExitCode": code if code is not None else 0,
            "Error": "",
            "StartedAt": state["StartedAt"] or ZERO_TIME,
            "FinishedAt": state["FinishedAt"] or ZERO_TIME,
        },
        "Image": s.image_id,
        "Name": f"/{s.display_name}",
        "RestartCount": 0,
        "Driver": "btrfs",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": host_config,
        "Mounts": [_mount(v, volume_name) for v in s.volumes],
        "Config": {
            "Hostname": s.hostname or s.name,
            "Domainname": "",
            "User": s.user or "",
            "AttachStdin": s.open_stdin,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": s.tty,
            "OpenStdin": s.open_stdin,
            "StdinOnce": s.stdin_once,
            "Env": s.env,
            "Cmd": s.cmd or None,
            "Entrypoint": s.entrypoint or None,
            "Image": s.image,
            "WorkingDir": s.workdir or "",
            "Labels": dict(s.labels),
            "ExposedPorts": {k: {} for k in mine["HostConfig"]["PortBindings"]},
            "StopSignal": mine["Config"]["StopSignal"],
            "Volumes": {t: {} for t in anonymous_targets} or None,
            **config_extra,
        },
        "NetworkSettings": network,
    }


def image_summary(image: Image) -> dict[str, Any]:
    """One entry of ``GET /images/json``."""
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": [familiar(r) for r in image.refs],
        "RepoDigests": [],
        "Created": epoch(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "Labels": dict(image.defaults.labels),
        "Containers": -1,
    }


def _origin_text(image: Image, key: str) -> str:
    value = image.origin.get(key)
    return value if isinstance(value, str) else ""


def image_inspect(image: Image, arch: str) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    d = image.defaults
    return {
        "Id": image.id,
        "RepoTags": [familiar(r) for r in image.refs],
        "RepoDigests": [],
        "Parent": _origin_text(image, "parent"),  # a commit's base image
        "Comment": _origin_text(image, "comment"),
        "Created": image.created,
        "Author": _origin_text(image, "author"),
        "Architecture": arch,
        "Os": "linux",
        "Size": image.size,
        "Config": {
            "Cmd": d.command or None,
            "Entrypoint": d.entrypoint or None,
            "Env": d.env,
            "WorkingDir": d.workdir or "",
            "User": d.user or "",
            "ExposedPorts": {p.rsplit(":", 1)[-1]: {} for p in d.ports} or None,
            "Volumes": {v: {} for v in d.volumes} or None,
            "Labels": dict(d.labels) or None,
            "StopSignal": d.stop_signal or "",
        },
        "RootFS": {"Type": "layers", "Layers": list(image.layers)},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }
