"""Pure builders: a container spec -> the systemd-nspawn command line and transient unit properties.

The unit has the shape of systemd's own systemd-nspawn@.service (``--keep-unit`` + ``Delegate=yes``
so resource limits cover the container, ``KillMode=mixed``, machine.slice, closed device policy),
with a prefix of our own because names of template instances cannot be used for transient units.
Kept import-light: the hook (run/hook.py) builds the same command line on every persistent start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..spec import ContainerSpec
from .escape import exec_arg
from .programs import NSENTER, NSPAWN

if TYPE_CHECKING:
    from ..systemd.manager import Property

UNIT_PREFIX = "nspawnctl-"
LOG_FIELD = "NSPAWNCTL_CONTAINER_ID"
UINT64_MAX = 2**64 - 1
STOP_TIMEOUT = 10
# Units that restart: stop goes through StopUnit (so systemd does not restart what it sees die) and
# nspawnctl escalates after -t itself; systemd's own default, as for systemd-nspawn@.service, is the cap.
RESTART_STOP_TIMEOUT = 90
# --stop-timeout N: systemd's own stop (machinectl/systemctl stop, shutdown) waits as long as
# nspawnctl's stop does: N seconds, then the 10 s nspawn gets to clean up after its second SIGTERM
STOP_GRACE = 10


def stop_timeout_sec(spec: ContainerSpec, default: int) -> int:
    """TimeoutStopSec= of the container's unit: ``default``, or longer for a longer --stop-timeout."""
    own = spec.settings.stop_timeout
    return default if own is None else max(default, own + STOP_GRACE)


# A payload that fails is restarted after 1 s, then ever later up to every 5 min (systemd >= 254
# grows the delay in RestartSteps= steps), so one that can never start (port taken, networkd
# missing) does not loop every second forever, at every boot too. Older systemd has no backoff:
# there a start limit ends the loop instead.
RESTART_SEC = 1
RESTART_STEPS = 10
RESTART_MAX_DELAY = 300
BACKOFF_SINCE = 254  # systemd version with RestartSteps= / RestartMaxDelaySec=
START_LIMIT_INTERVAL = 300  # without backoff: at most START_LIMIT_BURST starts in 5 min
START_LIMIT_BURST = 10


def unit_name(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


def persistent_unit_name(name: str) -> str:
    """systemd's own template instance: what ``machinectl start/enable NAME`` drive too."""
    return f"systemd-nspawn@{name}.service"


def systemd_restart(policy: str) -> str:
    """docker's restart policy as systemd's Restart=; systemd has no "unless-stopped": a stop through
    systemd never restarts anyway, so "always" is the same thing."""
    return {"no": "no", "on-failure": "on-failure", "always": "always", "unless-stopped": "always"}.get(
        policy.partition(":")[0], "no"
    )


def retry_limit(policy: str) -> list[tuple[str, str]]:
    """docker's ``on-failure:N`` as systemd's start limit: N + 1 starts (the first and N restarts)
    with no interval to forget them in; the start resets the count (reset-failed). Replaces the
    default limits of restart_settings."""
    from ..spec import restart_parts

    _, retries = restart_parts(policy)
    if not retries:
        return []
    return [("StartLimitIntervalSec", "infinity"), ("StartLimitBurst", str(retries + 1))]


def needs_pre(spec: ContainerSpec) -> bool:
    """Only containers with a network of their own (or published ports) need the pre-start hook:
    ``run --rm`` on the host's network starts as fast as before."""
    from ..spec import owns_netns

    # issue 14: the pre step also arms a container's health check timer
    from . import ipcns

    ipc = ipcns.needed(spec.settings.sysctls)  # --sysctl kernel.shm*: ipcns.py
    if owns_netns(spec.network) or bool(spec.ports) or spec.health is not None or ipc:
        return True
    if not spec.volumes:
        return False
    from ..store.subpath import may_be_subpath

    return any(may_be_subpath(v.host) for v in spec.volumes)  # a volume-subpath: staged at each start


@dataclass(frozen=True)
class Launch:
    """How one start of a container is wired to its caller."""

    nspawn: str = NSPAWN
    console: str = "pipe"  # pipe: payload output straight to the journal; interactive: a tty was passed
    attach_fds: tuple[int, int, int] | None = None  # stdin, stdout, stderr handed to the unit
    stdin_fd: int | None = None  # only stdin handed over (run -d -i: run/stdinpipe.py); output to the journal
    add_ref: bool = False  # keep the unit (and its exit status) until we read it
    unified_cgroup: bool = False  # host runs cgroup v2: tell nspawn < 257 to give app payloads v2 too
    pre: tuple[str, ...] = ()  # argv of the hook's pre step (network, port checks)
    post: tuple[str, ...] = ()  # argv recording the exit status, tearing down the network, removing --rm
    netns: str | None = None  # run nspawn inside this prepared network namespace (veth, zone)
    ipcns: str | None = None  # ... and this prepared IPC namespace (--sysctl's IPC keys, run/ipcns.py)
    nsenter: str = NSENTER
    environment: tuple[str, ...] = ()  # NAME=VALUE for the unit (non-default nspawnctl paths)
    streams_python: str | None = None  # run run/streams.py with it first: a stream each for stdout, stderr
    devices: tuple[str, ...] = ()  # host device nodes bound in at this start (--privileged: hostdevices.py)
    # (definition's bind source, stage) of the volume-subpath binds: nspawn binds the stage the
    # pre hook mounted from a file descriptor, never the path (run/subpaths.py)
    staged: tuple[tuple[str, str], ...] = ()


def nspawn_argv(spec: ContainerSpec, pool: Path, launch: Launch) -> list[str]:
    """The command line; everything else comes from the container's .nspawn file (override mode).
    The host's device nodes of a --privileged container are read at each start, so they are not
    in the file (it would freeze them); they come with the file's mounts (run/hostdevices.py)."""
    mode, mounts = "override", []
    if launch.devices or launch.staged:  # the file's mounts would replace these: run/hostdevices.py
        from .hostdevices import mount_args

        mode, mounts = "trusted", mount_args(spec, launch.devices, dict(launch.staged))
    return [
        "systemd-nspawn",
        "--quiet",
        "--keep-unit",
        "--register=yes",
        f"--machine={spec.name}",
        f"--directory={pool / spec.name}",
        f"--settings={mode}",
        f"--console={launch.console}",
        *mounts,
    ]


def journal_streams(name: str, launch: Launch) -> list[str]:
    """The argv prefix that gives the payload's stdout and stderr a journal stream each (see
    run/streams.py), when its output goes to the journal: nobody is attached. It execs nspawn,
    so the unit's main process stays nspawn's PID."""
    if launch.streams_python is None or launch.attach_fds is not None:
        return []
    from .streams import command

    return command(launch.streams_python, name, unit_name(name))


def exec_argv(spec: ContainerSpec, pool: Path, launch: Launch) -> list[str]:
    """The whole ExecStart argv, program first. With a network namespace of our own, nspawn runs
    inside it through nsenter, which execs (same PID: Type=notify still works); nspawn's own
    --network-namespace-path= cannot be joined from a user namespace. The stream opener, first
    when output goes to the journal, execs too (see journal_streams)."""
    from ..errors import InvalidArgument
    from . import ipcns

    if ipcns.needed(spec.settings.sysctls) and not launch.ipcns:
        # nspawn is told to keep the IPC namespace it is started in: never the host's
        raise InvalidArgument(f"container {spec.name}: IPC sysctls need the launch's IPC namespace")
    argv = nspawn_argv(spec, pool, launch)
    opener = journal_streams(spec.name, launch)
    enter = [f"--net={launch.netns}"] if launch.netns else []
    if launch.ipcns:
        enter.append(f"--ipc={launch.ipcns}")
    if enter:
        return [*opener, launch.nsenter, *enter, "--", launch.nspawn, *argv[1:]]
    return [*opener, launch.nspawn, *argv[1:]]


def log_extra_field(spec: ContainerSpec) -> str:
    """``NSPAWNCTL_CONTAINER_ID=ID`` for LogExtraFields=; the ID (from a store record, or a
    hand-written .nspawn file) must be plain hex to go into a unit and a journal match."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", spec.id):
        from ..errors import InvalidArgument

        raise InvalidArgument(
            f"container {spec.name} has an invalid ID {spec.id!r}", hint="an ID is 1-64 lowercase hex digits"
        )
    return f"{LOG_FIELD}={spec.id}"


def has_backoff(systemd_version: int) -> bool:
    return systemd_version >= BACKOFF_SINCE


def restart_settings(restart: str, backoff: bool) -> list[tuple[str, str]]:
    """(unit file key, value) of the restart policy; the [Unit] ones are the StartLimit* keys."""
    if restart == "no":
        return []
    out = [("Restart", restart), ("RestartSec", f"{RESTART_SEC}s")]
    if backoff:
        return [
            *out,
            ("RestartSteps", str(RESTART_STEPS)),
            ("RestartMaxDelaySec", f"{RESTART_MAX_DELAY}s"),
            ("StartLimitIntervalSec", "0"),  # the growing delay is the limit
        ]
    return [
        *out,
        ("StartLimitIntervalSec", f"{START_LIMIT_INTERVAL}s"),
        ("StartLimitBurst", str(START_LIMIT_BURST)),
    ]


def _restart_properties(restart: str, backoff: bool) -> list[Property]:
    """restart_settings as D-Bus properties of a transient unit."""
    if restart == "no":
        return []
    us = 1_000_000
    props: list[Property] = [("Restart", "s", restart), ("RestartUSec", "t", RESTART_SEC * us)]
    if backoff:
        return [
            *props,
            ("RestartSteps", "u", RESTART_STEPS),
            ("RestartMaxDelayUSec", "t", RESTART_MAX_DELAY * us),
            ("StartLimitIntervalUSec", "t", 0),
        ]
    return [
        *props,
        ("StartLimitIntervalUSec", "t", START_LIMIT_INTERVAL * us),
        ("StartLimitBurst", "u", START_LIMIT_BURST),
    ]


ACCOUNTING = ("CPUAccounting", "MemoryAccounting", "IOAccounting", "TasksAccounting")


def accounting_properties() -> list[Property]:
    """Turn on the cgroup accounting ``stats`` reads (MemoryCurrent, CPUUsageNSec, IO*Bytes,
    TasksCurrent); systemd leaves CPU and IO accounting off by default."""
    return [(key, "b", True) for key in ACCOUNTING]


LOG_RATE_INTERVAL_USEC = 1_000_000
LOG_RATE_BURST = 1_000_000
"""Lines per second a container may log before journald drops some (see unit_properties)."""


def unit_properties(
    spec: ContainerSpec, pool: Path, launch: Launch, *, backoff: bool = False
) -> list[Property]:
    """The transient unit; ``backoff``: the manager understands RestartSteps= (see has_backoff)."""
    full = exec_argv(spec, pool, launch)
    argv = [exec_arg(a) for a in [_argv0(full[0]), *full[1:]]]
    restart = systemd_restart(spec.restart)
    stop_timeout = stop_timeout_sec(spec, STOP_TIMEOUT if restart == "no" else RESTART_STOP_TIMEOUT)
    props: list[Property] = [
        ("Description", "s", f"nspawnctl container {spec.name}"),
        ("ExecStart", "a(sasb)", [[full[0], argv, False]]),
        ("Type", "s", "notify"),
        ("KillMode", "s", "mixed"),
        ("Delegate", "b", True),
        ("Slice", "s", "machine.slice"),
        ("DevicePolicy", "s", "closed"),
        ("DeviceAllow", "a(ss)", [["/dev/net/tun", "rwm"], ["char-pts", "rw"]]),
        ("CollectMode", "s", "inactive-or-failed"),
        ("SyslogIdentifier", "s", spec.name),
        ("LogExtraFields", "aay", [log_extra_field(spec).encode()]),
        # journald drops a unit's lines past 10000 per 30 s (scaled by free disk: 37500 here), and
        # LogRateLimitIntervalSec=0 means journald's default, not none: a payload's output is the
        # container's log and run's output, kept whole up to a bound no real payload reaches
        ("LogRateLimitIntervalUSec", "t", LOG_RATE_INTERVAL_USEC),
        ("LogRateLimitBurst", "u", LOG_RATE_BURST),
        ("TimeoutStopUSec", "t", stop_timeout * 1_000_000),
        ("RequiresMountsFor", "as", [str(pool / spec.name)]),
    ]
    props += _restart_properties(restart, backoff)
    if retry_limit(spec.restart):  # on-failure:N
        from ..spec import restart_parts

        props = [p for p in props if not p[0].startswith("StartLimit")]
        props += [
            ("StartLimitIntervalUSec", "t", 2**64 - 1),
            ("StartLimitBurst", "u", restart_parts(spec.restart)[1] + 1),
        ]
    props += accounting_properties()
    env = [*launch.environment, *(["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"] if launch.unified_cgroup else [])]
    extra = settings_properties(spec)
    env += [v for k, _, v in extra if k == "Environment"]
    props += [p for p in extra if p[0] != "Environment"]
    if env:
        props.append(("Environment", "as", env))
    if launch.pre:
        pre = [exec_arg(a) for a in launch.pre]
        props.append(("ExecStartPre", "a(sasb)", [[launch.pre[0], pre, False]]))
    if spec.limits.memory is not None:
        props.append(("MemoryMax", "t", spec.limits.memory.bytes))
    if spec.limits.cpus is not None:
        props.append(("CPUQuotaPerSecUSec", "t", spec.limits.cpus.usec))
    if spec.limits.pids is not None:
        props.append(("TasksMax", "t", spec.limits.pids.count))
    if launch.post:
        post = [exec_arg(a) for a in launch.post]
        props.append(("ExecStopPost", "a(sasb)", [[launch.post[0], post, True]]))
    if launch.add_ref:
        props.append(("AddRef", "b", True))
    if launch.stdin_fd is not None and launch.attach_fds is None:
        props.append(("StandardInputFileDescriptor", "h", launch.stdin_fd))
    if launch.attach_fds is not None:
        fin, fout, ferr = launch.attach_fds
        props += [
            ("StandardInputFileDescriptor", "h", fin),
            ("StandardOutputFileDescriptor", "h", fout),
            ("StandardErrorFileDescriptor", "h", ferr),
        ]
    return props


def settings_properties(spec: ContainerSpec) -> list[Property]:
    """What docker's run options need of the unit (runopts.unit_settings): DeviceAllow= entries
    for --device, SYSTEMD_SECCOMP=0 in Environment= for an unconfined container."""
    from ..runopts import unit_settings

    props: list[Property] = []
    memory = None if spec.limits.memory is None else spec.limits.memory.bytes
    for key, value in unit_settings(spec.settings, spec.private_users, memory):
        if key == "DeviceAllow":
            node, _, perms = value.rpartition(" ")
            props.append(("DeviceAllow", "a(ss)", [[node, perms]]))
        elif key == "OOMScoreAdjust":
            props.append(("OOMScoreAdjust", "i", int(value)))
        elif key in ("CPUWeight", "MemorySwapMax"):
            props.append((key, "t", 2**64 - 1 if value == "infinity" else int(value)))
        else:
            props.append((key, "as", value))
    return props


def _argv0(program: str) -> str:
    return program.rsplit("/", 1)[-1]
