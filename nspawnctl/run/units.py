"""Pure builders: a container spec -> the systemd-nspawn command line and transient unit properties.

The unit has the shape of systemd's own systemd-nspawn@.service (``--keep-unit`` + ``Delegate=yes``
so resource limits cover the container, ``KillMode=mixed``, machine.slice, closed device policy),
with a prefix of our own because names of template instances cannot be used for transient units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..spec import ContainerSpec
from ..systemd.manager import Property

UNIT_PREFIX = "nspawnctl-"
LOG_FIELD = "NSPAWNCTL_CONTAINER_ID"
UINT64_MAX = 2**64 - 1
STOP_TIMEOUT = 10


def unit_name(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


@dataclass(frozen=True)
class Launch:
    """How one start of a container is wired to its caller."""

    nspawn: str = "/usr/bin/systemd-nspawn"
    console: str = "pipe"  # pipe: payload output straight to the journal; interactive: a tty was passed
    attach_fds: tuple[int, int, int] | None = None  # stdin, stdout, stderr handed to the unit
    add_ref: bool = False  # keep the unit (and its exit status) until we read it
    unified_cgroup: bool = False  # host runs cgroup v2: tell nspawn < 257 to give app payloads v2 too
    poststop: tuple[str, ...] = ()  # argv recording the exit status (and removing --rm containers)


def nspawn_argv(spec: ContainerSpec, pool: Path, launch: Launch) -> list[str]:
    """The command line; everything else comes from the container's .nspawn file (override mode)."""
    return [
        "systemd-nspawn",
        "--quiet",
        "--keep-unit",
        "--register=yes",
        f"--machine={spec.name}",
        f"--directory={pool / spec.name}",
        "--settings=override",
        f"--console={launch.console}",
    ]


def escape_exec(arg: str) -> str:
    """systemd expands ``$VAR`` in ExecStart argv; ``$$`` is a literal dollar."""
    return arg.replace("$", "$$")


def unit_properties(spec: ContainerSpec, pool: Path, launch: Launch) -> list[Property]:
    argv = [escape_exec(a) for a in nspawn_argv(spec, pool, launch)]
    props: list[Property] = [
        ("Description", "s", f"nspawnctl container {spec.name}"),
        ("ExecStart", "a(sasb)", [[launch.nspawn, argv, False]]),
        ("Type", "s", "notify"),
        ("KillMode", "s", "mixed"),
        ("Delegate", "b", True),
        ("Slice", "s", "machine.slice"),
        ("DevicePolicy", "s", "closed"),
        ("DeviceAllow", "a(ss)", [["/dev/net/tun", "rwm"], ["char-pts", "rw"]]),
        ("CollectMode", "s", "inactive-or-failed"),
        ("SyslogIdentifier", "s", spec.name),
        ("LogExtraFields", "aay", [f"{LOG_FIELD}={spec.id}".encode()]),
        ("TimeoutStopUSec", "t", STOP_TIMEOUT * 1_000_000),
        ("RequiresMountsFor", "as", [str(pool / spec.name)]),
    ]
    if launch.unified_cgroup:
        props.append(("Environment", "as", ["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"]))
    if spec.limits.memory is not None:
        props.append(("MemoryMax", "t", spec.limits.memory))
    if spec.limits.cpus is not None:
        props.append(("CPUQuotaPerSecUSec", "t", max(1, round(spec.limits.cpus * 1_000_000))))
    if spec.limits.pids is not None:
        props.append(("TasksMax", "t", spec.limits.pids))
    if launch.poststop:
        post = [escape_exec(a) for a in launch.poststop]
        props.append(("ExecStopPost", "a(sasb)", [[post[0], post, True]]))
    if launch.add_ref:
        props.append(("AddRef", "b", True))
    if launch.attach_fds is not None:
        fin, fout, ferr = launch.attach_fds
        props += [
            ("StandardInputFileDescriptor", "h", fin),
            ("StandardOutputFileDescriptor", "h", fout),
            ("StandardErrorFileDescriptor", "h", ferr),
        ]
    return props
