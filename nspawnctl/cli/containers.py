"""Container commands, with docker's flags and semantics."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ..errors import InvalidArgument
from .app import State, for_each, state_of
from .output import ago, err, human_duration, print_json, table

if TYPE_CHECKING:
    from ..status import ContainerStatus

# Everything after IMAGE / CONTAINER is the payload's argv, options included, with no "--" needed.
PAYLOAD = {"allow_interspersed_args": False, "ignore_unknown_options": True}
CMD_HELP = "Command and arguments for the container, passed exactly as given."


def parse_size(text: str) -> int:
    """--memory in the library's syntax (shared with MemoryMax=); imported lazily: --help stays light."""
    from ..spec import parse_size as parse

    return parse(text)


def register(app: typer.Typer) -> None:
    app.command("create", context_settings=PAYLOAD)(create)
    app.command("run", context_settings=PAYLOAD)(run)
    app.command("exec", context_settings=PAYLOAD)(exec_)
    for fn in (start, stop, kill, restart, rm, ps, logs, inspect):
        app.command(fn.__name__)(fn)


# -- option parsing ------------------------------------------------------------------------
def parse_signal(text: str) -> int:
    """A signal name or number, 1 to SIGRTMAX (the library's check; imported lazily)."""
    from ..values import parse_signal_number

    return parse_signal_number(text)


def read_env_file(path: str) -> list[str]:
    """docker's --env-file: KEY=VALUE lines, # comments, a bare KEY takes the value from our
    environment (nothing when it is unset there). Lines end at LF only (CRLF too), as docker's:
    a lone CR stays in its value, which is then refused, never read as a new variable."""
    import os

    from ..values import check_env

    try:
        text = Path(path).read_bytes().decode()
    except OSError as e:
        raise InvalidArgument(f"cannot read env file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:  # the .nspawn file that keeps the variables is UTF-8
        raise InvalidArgument(f"env file {path} is not UTF-8 text (byte {e.start})") from None
    out = []
    for line in text.split("\n"):
        line = line.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            out.append(line)
        elif line.strip() in os.environ:
            out.append(f"{line.strip()}={os.environ[line.strip()]}")
    return check_env(out, f"--env-file {path}")


def _options(
    name: str | None,
    env: list[str],
    env_file: list[str],
    volume: list[str],
    workdir: str | None,
    user: str | None,
    hostname: str | None,
    boot: bool,
    memory: str | None,
    cpus: str | None,
    pids_limit: str | None,
    rm: bool,
    entrypoint: str | None = None,
    network: str | None = None,
    publish: list[str] | None = None,
    restart: str = "no",
    userns: str = "auto",
    # -- ports and pulls (PORTS) --
    publish_all: bool = False,
    pull: str = "missing",
    pull_options: Any = None,
    label: list[str] | None = None,
    label_file: list[str] | None = None,
) -> object:
    from ..client import RunOptions
    from ..net.networks import check_value as check_network
    from ..spec import Limits, PortMapping, Volume, parse_restart
    from ..values import Cpus, MemoryBytes, PidsLimit, check_env

    limits = Limits(
        memory=None if memory is None else MemoryBytes.parse(memory, "--memory"),
        cpus=None if cpus is None else Cpus.parse(cpus, "--cpus"),
        pids=None if pids_limit is None else PidsLimit.parse(pids_limit, "--pids-limit"),
    )
    envs: list[str] = []
    for f in env_file:
        envs += read_env_file(f)
    envs += check_env(_caller_env(env), "-e")
    return RunOptions(
        name=name,
        env=envs,
        volumes=[Volume.parse(v) for v in volume],
        workdir=workdir,
        user=user,
        hostname=hostname,
        boot=boot,
        limits=limits,
        auto_remove=rm,
        entrypoint=entrypoint,
        network=check_network(network) if network else None,  # resolved by the library
        ports=[PortMapping.parse(p) for p in publish or []],
        restart=parse_restart(restart),
        userns=userns,
        publish_all=publish_all,
        pull=pull,
        pull_options=pull_options,
        labels=_labels(label or [], label_file or []),
        notify=lambda text: err(f"nspawnctl: {text}"),
    )


def _labels(label: list[str], label_file: list[str]) -> dict[str, str]:
    """--label-file lines first, then -l (docker's order: the command line wins)."""
    from ..labels import parse_labels, read_label_file

    out: dict[str, str] = {}
    for f in label_file:
        out.update(parse_labels(read_label_file(f), f"--label-file {f}"))
    out.update(parse_labels(label, "--label"))
    return out


def _caller_env(env: list[str]) -> list[str]:
    from .quickrun import caller_env

    return caller_env(env)


# Shared option declarations of create/run.
NAME = typer.Option(
    None,
    "--name",
    metavar="NAME",
    help="Container name (default: a generated one): letters, digits, _ . -; its machine name "
    "(machinectl) has - for _.",
)
ENV = typer.Option(
    [], "-e", "--env", metavar="KEY=VALUE", help="Set KEY=VALUE in the container (repeatable)."
)
ENV_FILE = typer.Option([], "--env-file", metavar="FILE", help="Read KEY=VALUE lines from a file.")
VOLUME = typer.Option(
    [],
    "-v",
    "--volume",
    metavar="HOST:CTR[:OPTS]",
    help="Bind mount HOST:CONTAINER[:OPTS] (repeatable); OPTS: ro, idmap, noidmap, rbind, norbind. "
    "With a user namespace, volumes are ID-mapped where their filesystem allows it.",
)
WORKDIR = typer.Option(None, "-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
USER = typer.Option(
    None, "-u", "--user", metavar="USER[:GROUP]", help="User (name or UID) to run the command as."
)
HOSTNAME = typer.Option(None, "--hostname", metavar="NAME", help="Hostname inside the container.")
BOOT = typer.Option(False, "--boot", help="Boot the image's init (systemd) instead of running a command.")
MEMORY = typer.Option(
    None, "-m", "--memory", metavar="SIZE", help="Memory limit, e.g. 64M (MiB), 1G (MemoryMax=)."
)
CPUS = typer.Option(None, "--cpus", metavar="N", help="CPU limit in CPUs, e.g. 0.5 (CPUQuota=).")
PIDS = typer.Option(None, "--pids-limit", metavar="N", help="Maximum number of processes (TasksMax=).")
RM = typer.Option(False, "--rm", help="Remove the container when it exits.")
ENTRYPOINT = typer.Option(
    None,
    "--entrypoint",
    metavar="PROGRAM",
    help="Run PROGRAM instead of the image's entrypoint; the image's default arguments are dropped "
    "('' clears the entrypoint).",
)
NETWORK = typer.Option(
    None,
    "--network",
    "--net",
    metavar="MODE",
    help="host (the host's network), none (loopback only), private (nspawn's own namespace), veth "
    "(a link to the host, NATed out), zone:NAME (a bridge shared with the zone's other containers; "
    "reach them by name) or bridge:IFNAME (nspawn's veth on an existing host bridge). "
    "Default: veth when systemd-networkd runs, else host.",
)
PUBLISH = typer.Option(
    [],
    "-p",
    "--publish",
    metavar="[[HOSTIP:]HOSTPORT:]CTRPORT[/tcp|udp]",
    help="Publish a container port on the host, also on 127.0.0.1 (repeatable; implies --network veth). "
    "Without HOSTPORT (-p 80, -p 127.0.0.1::80) a free host port is picked at create and kept "
    "(see 'nspawnctl port').",
)
RESTART = typer.Option(
    "no",
    "--restart",
    metavar="POLICY",
    help="Restart policy: no, on-failure[:N] (N restarts at most), always or unless-stopped.",
)
# -- ports and pulls (PORTS) --
PUBLISH_ALL = typer.Option(
    False,
    "-P",
    "--publish-all",
    help="Publish every port the image exposes, each on a free host port (implies --network veth).",
)
PULL = typer.Option(
    "missing",
    "--pull",
    metavar="missing|always|never",
    help="Pull the image before creating: missing (default: when not here), always, never. Only "
    "references naming their registry, URLs and ACI names are pulled, verified as 'pull' does.",
)
PULL_VERIFY = typer.Option(
    "signature",
    "--verify",
    metavar="signature|checksum|no",
    help="How a pulled tarball or ACI is verified (as 'pull --verify').",
)
PULL_PLATFORM = typer.Option(
    None, "--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to pull (as 'pull --platform')."
)
PULL_TLS_VERIFY = typer.Option(
    "true", "--tls-verify", metavar="true|false", help="Registry TLS checks for a pull (as 'pull')."
)
PULL_AUTHFILE = typer.Option(None, "--authfile", metavar="FILE", help="Registry credentials for a pull.")
PULL_CA_CERT = typer.Option(
    None,
    "--ca-cert",
    metavar="FILE",
    envvar="REQUESTS_CA_BUNDLE",
    help="PEM file of CAs to trust for a pull over HTTPS (as 'pull --ca-cert').",
)


def _pull_options(
    ctx: typer.Context,
    verify: str,
    platform: str | None,
    tls_verify: str,
    authfile: str | None,
    ca_cert: str | None,
) -> Callable[[], object]:
    """quickrun.pull_options on the paths of the global options."""
    from .quickrun import pull_options

    return pull_options(state_of(ctx).paths(), verify, platform, tls_verify, authfile, ca_cert)


USERNS = typer.Option(
    "auto",
    "--userns",
    metavar="MODE",
    help="auto: a user namespace of its own, the payload's root is an unprivileged UID on the host "
    "(the default); host: no user namespace, the payload's root is the host's root.",
)

# -- issue 14: health checks and auto-update (one block; see nspawnctl/health.py) ---------------
HEALTH_CMD = typer.Option(
    None, "--health-cmd", metavar="COMMAND", help="Command to run to check health (via /bin/sh -c inside)."
)
HEALTH_INTERVAL = typer.Option(
    None, "--health-interval", metavar="DURATION", help="Time between checks (ms|s|m|h) (default 30s)."
)
HEALTH_TIMEOUT = typer.Option(
    None, "--health-timeout", metavar="DURATION", help="Maximum time a check may run (default 30s)."
)
HEALTH_RETRIES = typer.Option(
    None, "--health-retries", metavar="N", help="Consecutive failures to report unhealthy (default 3)."
)
HEALTH_START_PERIOD = typer.Option(
    None,
    "--health-start-period",
    metavar="DURATION",
    help="Start period before failures count (default 0s).",
)
HEALTH_START_INTERVAL = typer.Option(
    None,
    "--health-start-interval",
    metavar="DURATION",
    help="Time between checks during the start period (default: --health-interval).",
)
NO_HEALTHCHECK = typer.Option(False, "--no-healthcheck", help="Disable any container-specified HEALTHCHECK.")
HEALTH_ON_FAILURE = typer.Option(
    None,
    "--health-on-failure",
    metavar="ACTION",
    help="What to do when the container turns unhealthy: none (default), kill, restart or stop.",
)
AUTO_UPDATE = typer.Option(
    None,
    "--auto-update",
    metavar="POLICY",
    hidden=True,
    help="registry or local: what 'nspawnctl auto-update' checks (podman's io.containers.autoupdate label).",
)


def _with_health(
    opts: object,
    cmd: str | None,
    interval: str | None,
    timeout: str | None,
    retries: str | None,
    start_period: str | None,
    disabled: bool,
    on_failure: str | None,
    auto_update: str | None,
    start_interval: str | None = None,
) -> object:
    """The --health-* flags, each checked once at its type, added to the other options."""
    import dataclasses

    from ..health import (
        MIN_INTERVAL,
        HealthFlags,
        parse_auto_update,
        parse_duration,
        parse_on_failure,
        parse_retries,
    )

    flags = HealthFlags(
        cmd=cmd,
        interval=None if interval is None else parse_duration(interval, "--health-interval", MIN_INTERVAL),
        timeout=None if timeout is None else parse_duration(timeout, "--health-timeout", 1),
        retries=None if retries is None else parse_retries(retries, "--health-retries"),
        start_period=None if start_period is None else parse_duration(start_period, "--health-start-period"),
        start_interval=None
        if start_interval is None
        else parse_duration(start_interval, "--health-start-interval", MIN_INTERVAL),
        disabled=disabled,
        on_failure=None if on_failure is None else parse_on_failure(on_failure),
    )
    policy = parse_auto_update(auto_update, "--auto-update")
    return dataclasses.replace(opts, health=flags, auto_update=policy)  # type: ignore[type-var]


# -- docker's further run options (runopts.py): one block, shared by create and run --------------
READ_ONLY = typer.Option(False, "--read-only", help="Mount the container's root read-only (ReadOnly=).")
TMPFS = typer.Option(
    [],
    "--tmpfs",
    metavar="PATH[:OPTS]",
    help="Mount a tmpfs at PATH; OPTS: size=, mode=, ro, noexec, ... (TemporaryFileSystem=; repeatable).",
)
MOUNT = typer.Option(
    [],
    "--mount",
    metavar="type=bind|tmpfs|volume,...",
    help="Mount in docker's syntax: source/src, target/dst, readonly/ro, tmpfs-size, tmpfs-mode "
    "(repeatable).",
)
CAP_ADD = typer.Option(
    [], "--cap-add", metavar="CAP", help="Add a capability, or ALL (Capability=; repeatable)."
)
CAP_DROP = typer.Option(
    [], "--cap-drop", metavar="CAP", help="Drop a capability, or ALL (DropCapability=; repeatable)."
)
PRIVILEGED = typer.Option(
    False,
    "--privileged",
    help="Every capability, no seccomp filter, every device allowed and the host's device nodes "
    "bound in at start; with --userns host also writable /proc/sys and /sys (and the nodes owned by root).",
)
SECURITY_OPT = typer.Option(
    [], "--security-opt", metavar="OPT", help="no-new-privileges (NoNewPrivileges=) or seccomp=unconfined."
)
INIT = typer.Option(False, "--init", help="Run a minimal init as PID 1, the command as PID 2 (ProcessTwo=).")
STOP_SIGNAL = typer.Option(
    None,
    "--stop-signal",
    metavar="SIGNAL",
    help="Signal that stops the command (KillSignal=; default SIGTERM).",
)
STOP_TIMEOUT = typer.Option(
    None, "--stop-timeout", metavar="SECONDS", help="Seconds 'stop' waits before killing (default 10)."
)
ADD_HOST = typer.Option([], "--add-host", metavar="HOST:IP", help="Add a line to /etc/hosts (repeatable).")
NETWORK_ALIAS = typer.Option(
    [],
    "--network-alias",
    metavar="NAME",
    help="Another name the container's zone members reach it by (their /etc/hosts; repeatable).",
)
DNS = typer.Option([], "--dns", metavar="IP", help="DNS server for /etc/resolv.conf (repeatable).")
DNS_SEARCH = typer.Option(
    [], "--dns-search", metavar="DOMAIN", help="DNS search domain for /etc/resolv.conf (repeatable)."
)
ULIMIT = typer.Option(
    [],
    "--ulimit",
    metavar="NAME=SOFT[:HARD]",
    help="Resource limit, e.g. nofile=1024:2048 (LimitNOFILE=...).",
)
DEVICE = typer.Option(
    [],
    "--device",
    metavar="HOST[:CTR[:PERMS]]",
    help="Add a host device node (Bind= + DeviceAllow=; repeatable).",
)
SHM_SIZE = typer.Option(None, "--shm-size", metavar="SIZE", help="Size of /dev/shm, e.g. 64M.")
SYSCTL = typer.Option(
    [], "--sysctl", metavar="NAME=VALUE", help="Set a net.* sysctl in the container's network (veth, zone)."
)
CPUSET = typer.Option(
    None, "--cpuset-cpus", metavar="CPUS", help="CPUs to run on, e.g. 0-1,3 (CPUAffinity=)."
)
OOM_SCORE_ADJ = typer.Option(
    None, "--oom-score-adj", metavar="N", help="OOM score adjustment, -1000 to 1000 (OOMScoreAdjust=)."
)

CPU_SHARES = typer.Option(
    None, "-c", "--cpu-shares", metavar="N", help="Relative CPU weight, 2-262144, default 1024 (CPUWeight=)."
)
MEMORY_SWAP = typer.Option(
    None,
    "--memory-swap",
    metavar="SIZE",
    help="Memory plus swap limit, -1 unlimited swap; needs --memory (MemorySwapMax=).",
)
CGROUPNS = typer.Option(
    None, "--cgroupns", metavar="MODE", help="Cgroup namespace: only private (nspawn always makes one)."
)
ISOLATION = typer.Option(None, "--isolation", metavar="MODE", help="Isolation: only default (Linux's).")
MAC_ADDRESS = typer.Option(
    None, "--mac-address", metavar="MAC", help="The container's MAC address (veth or zone network)."
)
VOLUME_DRIVER = typer.Option(
    None, "--volume-driver", metavar="NAME", help="Driver of the volumes it makes: only local."
)
VOLUMES_FROM = typer.Option(
    [],
    "--volumes-from",
    metavar="CONTAINER[:ro|:rw]",
    help="Mount the volumes and bind mounts of CONTAINER at the same paths (repeatable; "
    ":ro makes them read-only). Copied at create into its own Bind= lines.",
)


def _with_settings(opts: object, mount: list[str], stop_signal: str | None, **flags: object) -> object:
    """``opts`` (RunOptions) with the options above, each checked at its type; ``flags`` are
    runflags.SettingsInput's fields."""
    import dataclasses

    from ..client import RunOptions
    from ..runflags import Mount, SettingsInput, build
    from ..runopts import parse_stop_signal

    assert isinstance(opts, RunOptions)
    mounts = [Mount.parse(m) for m in mount]
    settings = build(SettingsInput(**flags), [m.tmpfs for m in mounts if m.tmpfs])  # type: ignore[arg-type]
    return dataclasses.replace(
        opts,
        volumes=[*opts.volumes, *(m.volume() for m in mounts if m.type == "bind")],
        named_volumes=[(m.source, m.target, m.read_only) for m in mounts if m.type == "volume"],
        volume_options={m.target: m.options for m in mounts if m.type == "volume"},
        settings=settings,
        stop_signal=None if stop_signal is None else parse_stop_signal(stop_signal),
    )


# -- issue 14, labels
LABEL = typer.Option(
    [],
    "-l",
    "--label",
    metavar="KEY=VALUE",
    help="Set a label on the container (repeatable; [X-Nspawnctl] Label=).",
)
LABEL_FILE = typer.Option(
    [], "--label-file", metavar="FILE", help="Read labels from a file of KEY=VALUE lines (# comments)."
)

# Every option create and run share, in --help's order: (parameter, type, typer option). Written
# once; @_container_options puts them into both commands' signatures, which typer reads.
CONTAINER_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("name", str, NAME),
    ("env", list[str], ENV),
    ("env_file", list[str], ENV_FILE),
    ("volume", list[str], VOLUME),
    ("workdir", str, WORKDIR),
    ("user", str, USER),
    ("hostname", str, HOSTNAME),
    ("boot", bool, BOOT),
    ("memory", str, MEMORY),
    ("cpus", str, CPUS),
    ("pids_limit", str, PIDS),
    ("rm", bool, RM),
    ("entrypoint", str, ENTRYPOINT),
    ("network", str, NETWORK),
    ("publish", list[str], PUBLISH),
    ("restart", str, RESTART),
    ("userns", str, USERNS),
    ("read_only", bool, READ_ONLY),
    ("tmpfs", list[str], TMPFS),
    ("mount", list[str], MOUNT),
    ("cap_add", list[str], CAP_ADD),
    ("cap_drop", list[str], CAP_DROP),
    ("privileged", bool, PRIVILEGED),
    ("security_opt", list[str], SECURITY_OPT),
    ("init", bool, INIT),
    ("stop_signal", str, STOP_SIGNAL),
    ("stop_timeout", str, STOP_TIMEOUT),
    ("add_host", list[str], ADD_HOST),
    ("network_alias", list[str], NETWORK_ALIAS),
    ("dns", list[str], DNS),
    ("dns_search", list[str], DNS_SEARCH),
    ("ulimit", list[str], ULIMIT),
    ("device", list[str], DEVICE),
    ("shm_size", str, SHM_SIZE),
    ("sysctl", list[str], SYSCTL),
    ("cpuset_cpus", str, CPUSET),
    ("oom_score_adj", str, OOM_SCORE_ADJ),
    ("cpu_shares", str, CPU_SHARES),
    ("memory_swap", str, MEMORY_SWAP),
    ("cgroupns", str, CGROUPNS),
    ("isolation", str, ISOLATION),
    ("volume_driver", str, VOLUME_DRIVER),
    ("volumes_from", list[str], VOLUMES_FROM),
    ("mac_address", str, MAC_ADDRESS),
    # -- ports and pulls (PORTS) --
    ("publish_all", bool, PUBLISH_ALL),
    ("pull", str, PULL),
    ("verify", str, PULL_VERIFY),
    ("platform", str, PULL_PLATFORM),
    ("tls_verify", str, PULL_TLS_VERIFY),
    ("authfile", str, PULL_AUTHFILE),
    ("ca_cert", str, PULL_CA_CERT),
    # -- issue 14: health checks, auto-update
    ("health_cmd", str, HEALTH_CMD),
    ("health_interval", str, HEALTH_INTERVAL),
    ("health_timeout", str, HEALTH_TIMEOUT),
    ("health_retries", str, HEALTH_RETRIES),
    ("health_start_period", str, HEALTH_START_PERIOD),
    ("health_start_interval", str, HEALTH_START_INTERVAL),
    ("no_healthcheck", bool, NO_HEALTHCHECK),
    ("health_on_failure", str, HEALTH_ON_FAILURE),
    ("auto_update", str, AUTO_UPDATE),
    ("label", list[str], LABEL),
    ("label_file", list[str], LABEL_FILE),
)  # fmt: skip

F = TypeVar("F", bound=Callable[..., None])


def _container_options(command: F) -> F:
    """``command`` (taking ``**options``) with CONTAINER_OPTIONS after its own parameters in the
    signature typer reads (``__signature__``, which :func:`inspect.signature` honours)."""
    import inspect

    sig = inspect.signature(command)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=type_)
        for name, type_, option in CONTAINER_OPTIONS
    ]
    command.__signature__ = sig.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    return command


def _network(ctx: typer.Context, text: str | None) -> str | None:
    """``--network``, checked now: a mode, zone:NAME or a declared network's name (its zone)."""
    if not text:
        return None
    from ..net.networks import parse

    return parse(state_of(ctx).paths(), text)


def _run_options(ctx: typer.Context, o: dict[str, Any]) -> object:
    """RunOptions from CONTAINER_OPTIONS' values, each checked at its type."""
    opts = _options(
        o["name"],
        o["env"],
        o["env_file"],
        o["volume"],
        o["workdir"],
        o["user"],
        o["hostname"],
        o["boot"],
        o["memory"],
        o["cpus"],
        o["pids_limit"],
        o["rm"],
        o["entrypoint"],
        _network(ctx, o["network"]),
        o["publish"],
        o["restart"],
        o["userns"],
        label=o["label"],
        label_file=o["label_file"],
        publish_all=o["publish_all"],
        pull=o["pull"],
        pull_options=_pull_options(
            ctx, o["verify"], o["platform"], o["tls_verify"], o["authfile"], o["ca_cert"]
        ),
    )
    opts = _with_settings(
        opts,
        list(o["mount"]),
        o["stop_signal"],
        read_only=o["read_only"],
        tmpfs=list(o["tmpfs"]),
        cap_add=list(o["cap_add"]),
        cap_drop=list(o["cap_drop"]),
        privileged=o["privileged"],
        security_opt=list(o["security_opt"]),
        init=o["init"],
        stop_timeout=o["stop_timeout"],
        add_host=list(o["add_host"]),
        network_alias=list(o["network_alias"]),
        dns=list(o["dns"]),
        dns_search=list(o["dns_search"]),
        ulimit=list(o["ulimit"]),
        device=list(o["device"]),
        shm_size=o["shm_size"],
        sysctl=list(o["sysctl"]),
        cpuset_cpus=o["cpuset_cpus"],
        oom_score_adj=o["oom_score_adj"],
        cpu_shares=o["cpu_shares"],
        memory_swap=o["memory_swap"],
        cgroupns=o["cgroupns"],
        isolation=o["isolation"],
        volume_driver=o["volume_driver"],
        mac_address=o["mac_address"],
    )
    opts = _with_health(  # issue 14
        opts,
        o["health_cmd"],
        o["health_interval"],
        o["health_timeout"],
        o["health_retries"],
        o["health_start_period"],
        o["no_healthcheck"],
        o["health_on_failure"],
        o["auto_update"],
        start_interval=o["health_start_interval"],
    )
    if o["volumes_from"]:  # issue 14
        import dataclasses

        from ..volumesfrom import VolumesFrom

        opts = dataclasses.replace(opts, volumes_from=[VolumesFrom.parse(v) for v in o["volumes_from"]])  # type: ignore[type-var]
    return opts


@_container_options
def create(
    ctx: typer.Context,
    image: str = typer.Argument(..., metavar="IMAGE", help="Image (NAME[:TAG], NAME@DIGEST or ID)."),
    command: list[str] = typer.Argument(None, metavar="COMMAND", help=CMD_HELP),
    interactive: bool = typer.Option(
        False, "-i", "--interactive", help="Keep stdin open (for start -ai, or start's stdin FIFO)."
    ),
    tty: bool = typer.Option(
        False,
        "-t",
        "--tty",
        help="Give the container a terminal: yours with start -a/-ai, else one whose output goes to logs.",
    ),
    **options: Any,
) -> None:
    """Create a container (a writable snapshot of IMAGE and its .nspawn file) without starting it.

    With -i and -t (docker's OpenStdin and Tty, kept in its definition) 'nspawnctl start -ai NAME'
    runs it with your terminal, as 'run -it' does; started without -a it gets a terminal of
    systemd-nspawn's, as 'run -dit' does.
    """
    opts = _run_options(ctx, options)
    if interactive or tty:
        import dataclasses

        opts = dataclasses.replace(opts, open_stdin=interactive, tty=tty)  # type: ignore[type-var]
    spec = state_of(ctx).client().containers.create(image, list(command or []), opts)  # type: ignore[arg-type]
    typer.echo(spec.display_name)


@_container_options
def run(
    ctx: typer.Context,
    image: str = typer.Argument(..., metavar="IMAGE", help="Image (NAME[:TAG], NAME@DIGEST or ID)."),
    command: list[str] = typer.Argument(None, metavar="COMMAND", help=CMD_HELP),
    detach: bool = typer.Option(False, "-d", "--detach", help="Run in the background and print the name."),
    interactive: bool = typer.Option(
        False, "-i", "--interactive", help="Keep stdin attached (with -d: for nspawnctl attach to forward)."
    ),
    tty: bool = typer.Option(
        False,
        "-t",
        "--tty",
        help="Give the container a terminal: yours with -i; with -d one whose output goes to the logs "
        "and that takes no input (-dit: a shell waits on it, for nspawnctl exec).",
    ),
    **options: Any,
) -> None:
    """Create a container from IMAGE and run COMMAND in it.

    COMMAND replaces the image's default arguments (an OCI image's Cmd) and keeps its entrypoint;
    --entrypoint replaces the entrypoint and drops the default arguments, as docker does.

    In the foreground (the default) the command's output is shown and its exit code becomes
    nspawnctl's; 125 means nspawnctl itself failed. Ctrl-C is passed on to the command (three
    times kills it). With -d it runs as a transient systemd unit in the background; with -d -t
    its terminal is systemd-nspawn's, output to the logs and no input ('run -dit IMG sh': a shell
    that stays up for 'nspawnctl exec').
    """
    opts = _run_options(ctx, options)
    client = state_of(ctx).client()
    argv = list(command or [])
    if detach:
        if interactive or tty:  # -i: a stdin FIFO attach writes to; -t: nspawn's terminal (the library's)
            import dataclasses

            opts = dataclasses.replace(opts, open_stdin=interactive, tty=tty)  # type: ignore[type-var]
        spec = client.containers.run_detached(image, argv, opts)  # type: ignore[arg-type]
        typer.echo(spec.display_name)
        return
    if tty and interactive and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY", hint="drop -t, or run from a terminal")
    from .quickrun import foreground

    raise typer.Exit(foreground(client, image, argv, opts, interactive, tty))  # type: ignore[arg-type]


NAMES = typer.Argument(..., metavar="CONTAINER", help="Container names.")


def start(
    ctx: typer.Context,
    names: list[str] = NAMES,
    attach: bool = typer.Option(
        False, "-a", "--attach", help="Show its output until it exits, then exit with its code."
    ),
    interactive: bool = typer.Option(
        False, "-i", "--interactive", help="Attach, with stdin forwarded (a container created with -i)."
    ),
) -> None:
    """Start stopped containers in the background, or one in the foreground with -a/-i (docker's
    'start -ai' of a 'create -it' container: your terminal is its terminal).

    A container created with -t started in the background gets a terminal of systemd-nspawn's:
    its output goes to the logs, it takes no input (as 'run -dit'; 'nspawnctl exec' reaches it).
    """
    if (attach or interactive) and len(names) > 1:
        raise InvalidArgument(
            "you cannot start and attach multiple containers at once",
            hint="start one with -a/-i, or start them without -a",
        )
    client = state_of(ctx).client()
    if attach or interactive:
        from .quickrun import start_attached

        raise typer.Exit(start_attached(client, names[0], interactive))
    with client.session():  # one bus for all of them
        for_each(names, client.containers.start)


def stop(
    ctx: typer.Context,
    names: list[str] = NAMES,
    time: str = typer.Option(
        None,
        "-t",
        "--time",
        metavar="SECONDS",
        help="Seconds to wait before killing (default: the container's --stop-timeout, else 10).",
    ),
) -> None:
    """Stop containers: SIGTERM to the command (init: orderly shutdown), SIGKILL after -t seconds."""
    from ..values import parse_timeout

    seconds = None if time is None else parse_timeout(time)
    client = state_of(ctx).client()
    with client.session():
        for_each(names, lambda n: client.containers.stop(n, seconds))


def kill(
    ctx: typer.Context,
    names: list[str] = NAMES,
    signal: str = typer.Option(
        "KILL", "-s", "--signal", metavar="SIGNAL", help="Signal to send (name or number)."
    ),
) -> None:
    """Send a signal to containers' main process (default SIGKILL)."""
    client = state_of(ctx).client()
    sig = parse_signal(signal)
    with client.session():
        for_each(names, lambda n: client.containers.kill(n, sig))


def restart(
    ctx: typer.Context,
    names: list[str] = NAMES,
    time: str = typer.Option(
        None,
        "-t",
        "--time",
        metavar="SECONDS",
        help="Seconds to wait before killing (default: the container's --stop-timeout, else 10).",
    ),
) -> None:
    """Stop, then start containers."""
    from ..values import parse_timeout

    seconds = None if time is None else parse_timeout(time)
    client = state_of(ctx).client()
    with client.session():
        for_each(names, lambda n: client.containers.restart(n, seconds))


def rm(
    ctx: typer.Context,
    names: list[str] = NAMES,
    force: bool = typer.Option(False, "-f", "--force", help="Kill running containers first."),
    volumes: bool = typer.Option(
        False, "-v", "--volumes", help="Remove their anonymous volumes too (named ones stay)."
    ),
) -> None:
    """Remove containers: their snapshot, .nspawn file and state."""
    client = state_of(ctx).client()
    with client.session():
        for_each(names, lambda n: client.containers.remove(n, force, volumes))


def ps(
    ctx: typer.Context,
    all: bool = typer.Option(False, "-a", "--all", help="Show stopped containers too."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only print names."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Show full IDs and commands."),
    filter_: list[str] = typer.Option(
        [],
        "-f",
        "--filter",
        metavar="KEY=VALUE",
        help="Only containers that match (repeatable; one key's values ORed, but every label must "
        "hold; different keys ANDed): "
        "name=NAME (part of it: . any character, [abc] classes, ^/$ anchors), id=PREFIX, "
        "label=KEY or label=KEY=VALUE, "
        "status=created|running|restarting|exited, "
        "ancestor=IMAGE, exited=CODE.",
    ),
    last: int = typer.Option(
        None, "-n", "--last", metavar="N", help="Show the N last created containers (all states)."
    ),
    latest: bool = typer.Option(
        False, "-l", "--latest", help="Show the last created container (all states)."
    ),
    format_: str = typer.Option(
        None,
        "--format",
        metavar="TEMPLATE",
        help="Go template per container, e.g. '{{.ID}} {{.Names}}', '{{json .}}', or "
        "'table {{.ID}}\\t{{.Status}}'. Fields: ID, Names, Image, Command, CreatedAt, "
        'RunningFor, Status, State, Ports, Labels, Mounts, Networks, and {{.Label "KEY"}}.',
    ),
) -> None:
    """List containers (running ones unless -a): newest first with -n/-l, else by name."""
    from ..filters import parse_filters

    state = state_of(ctx)
    state.json = json_out
    filters = parse_filters(filter_)
    fmt = _parse_format(format_) if format_ else None
    if latest:
        last = 1
    if last is None or last < 0:  # docker's -n -1: all of them
        last = -1
    client = state.client()
    broken: list[InvalidArgument] = []
    statuses = client.containers.list(all=all or last >= 0 or filters.wants_stopped, errors=broken)
    if filters.by_key:
        statuses = _filtered(client, statuses, filters)
    if last >= 0:
        statuses = _last_created(client, statuses, last)
    if json_out:
        print_json([s.to_json() for s in statuses])
    elif quiet:
        for s in statuses:
            typer.echo(s.spec.display_name)
    elif fmt is not None:
        _ps_format(fmt, statuses, no_trunc)
    else:
        _ps_table(statuses, no_trunc)
    _report_broken(broken)


def _parse_format(text: str) -> object:
    from ..gotemplate import parse_format

    return parse_format(text)


def _filtered(client: object, statuses: list[ContainerStatus], filters: object) -> list[ContainerStatus]:
    from ..filters import Filters, select

    assert isinstance(filters, Filters)
    return select(statuses, filters, client.images)  # type: ignore[attr-defined]


def _last_created(client: object, statuses: list[ContainerStatus], n: int) -> list[ContainerStatus]:
    """The ``n`` newest, newest first; containers made in the same second by their definition's time."""
    store = client.containers.store  # type: ignore[attr-defined]
    newest = sorted(statuses, key=lambda s: (s.spec.created, store.defined_at_ns(s.spec.name)), reverse=True)
    return newest[:n]


def _report_broken(broken: list[InvalidArgument]) -> None:
    """Definitions that cannot be read: said on stderr after the others were shown; exit 1."""
    for e in broken:
        err(f"nspawnctl: error: {e.message}")
        if e.hint:
            err(f"hint: {e.hint}")
    if broken:
        raise typer.Exit(1)


def _status_text(s: ContainerStatus, now: float) -> str:
    if s.running:
        status = f"Up {human_duration(now - s.started_us / 1e6)}" if s.started_us else "Up"
        if s.state == "paused":  # docker's "Up 5 minutes (Paused)"
            status += " (Paused)"
    elif s.state == "restarting":
        status = f"Restarting ({s.exit.exit_code if s.exit else '?'})"
    elif s.exit:
        status = f"Exited ({s.exit.exit_code}) {ago(s.exit.finished)}"
    else:
        status = "Created"
    if s.running and s.health is not None:  # docker's "Up 3 minutes (healthy)"
        status += f" ({'health: starting' if s.health.status == 'starting' else s.health.status})"
    return status


# docker's ps columns, by field, with their headers (``--format table ...`` shows these)
PS_HEADERS: dict[str, object] = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "State": "STATE",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "Label": lambda *_: "LABEL",
}
PS_DEFAULT = (
    "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
)


def _ps_row(s: ContainerStatus, now: float, no_trunc: bool) -> dict[str, object]:
    """One container as docker's ps formatting context names its fields (all strings)."""
    from ..store.containers import SHORT_ID

    spec = s.spec
    command = " ".join(spec.command) or ("(boot)" if spec.boot else "")
    if len(command) > 30 and not no_trunc:
        command = command[:29] + "…"
    ports = ", ".join(
        f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol}" for p in spec.ports
    )
    labels = dict(spec.labels)
    return {
        "ID": spec.id if no_trunc else spec.id[:SHORT_ID],
        "Image": spec.image,
        "Command": f'"{command}"',
        "CreatedAt": _docker_time(spec.created),
        "RunningFor": ago(spec.created),
        "Status": _status_text(s, now),
        "State": s.state,
        "Ports": ports,
        "Names": spec.display_name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(v.container for v in spec.volumes),
        "Networks": spec.network,
        "Label": lambda key: labels.get(key, ""),
    }


def _docker_time(iso: str) -> str:
    """docker's CreatedAt: ``2026-01-02 10:00:00 +0000 UTC``."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _ps_table(statuses: list[ContainerStatus], no_trunc: bool = False) -> None:
    now = datetime.now(UTC).timestamp()
    rows = [_ps_row(s, now, no_trunc) for s in statuses]
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    keys = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    table(headers, [[str(r[k]) for k in keys] for r in rows])


def _ps_format(fmt: object, statuses: list[ContainerStatus], no_trunc: bool) -> None:
    from ..gotemplate import Format, render

    assert isinstance(fmt, Format)
    now = datetime.now(UTC).timestamp()
    rows = [_ps_row(s, now, no_trunc) for s in statuses]
    sys.stdout.write(render(fmt, rows, PS_HEADERS, PS_DEFAULT))


def _docker_since(text: str | None) -> str | None:
    """docker's relative --since (10m, 2h, 30s) becomes journalctl's "-10m"; other forms pass through."""
    if text and re.fullmatch(r"[0-9]+(s|m|h|d)", text):
        return f"-{text[:-1]}{ {'s': 's', 'm': 'min', 'h': 'h', 'd': 'd'}[text[-1]] }".replace(" ", "")
    return text


def logs(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="Container name."),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Keep printing new output until the container stops."
    ),
    since: str = typer.Option(
        None, "--since", metavar="TIME", help="Only output since then: 10m, 2h, or '2026-01-02 10:00'."
    ),
    tail: str = typer.Option(
        "all", "-n", "--tail", metavar="N", help="Number of lines from the end (or 'all')."
    ),
    timestamps: bool = typer.Option(False, "-t", "--timestamps", help="Prefix each line with its time."),
    until: str = typer.Option(
        None,
        "--until",
        metavar="TIME",
        help="Only output before then: 10m (ago), 2026-01-02T10:00:00Z, or a Unix time.",
    ),
) -> None:
    """Show a container's output, from every run, as journald recorded it: its stdout lines on
    stdout, its stderr lines on stderr."""
    if tail != "all" and not (tail.isascii() and tail.isdigit()):
        raise InvalidArgument(f"invalid --tail {tail!r}", hint="a number of lines, or 'all'")

    from ..logtime import parse_until

    until_us = None if until is None else parse_until(until)

    def write(entry: object) -> None:
        if until_us is not None and entry.realtime_us > until_us:  # type: ignore[attr-defined]
            return
        line: bytes = entry.message  # type: ignore[attr-defined]
        if timestamps:
            ts = datetime.fromtimestamp(entry.realtime_us / 1e6, UTC)  # type: ignore[attr-defined]
            line = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() + line
        out = sys.stderr.buffer if entry.stderr else sys.stdout.buffer  # type: ignore[attr-defined]
        out.write(line + b"\n")
        out.flush()

    state_of(ctx).client().containers.logs(
        name,
        write,
        follow=follow,
        since=_docker_since(since),
        # more lines than journalctl can count are all of them
        tail=None if tail == "all" or len(tail) > 9 else int(tail),
    )


def exec_(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="A running container."),
    command: list[str] = typer.Argument(..., metavar="COMMAND", help=CMD_HELP),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep stdin attached."),
    tty: bool = typer.Option(False, "-t", "--tty", help="Run under a pseudo-terminal."),
    env: list[str] = ENV,
    workdir: str = WORKDIR,
    user: str = USER,
    detach: bool = typer.Option(
        False, "-d", "--detach", help="Run the command in the background (a transient unit of its own)."
    ),
    env_file: list[str] = ENV_FILE,
) -> None:
    """Run a command in a running container (app or booted); its exit code becomes ours."""
    import os

    from ..run.runtime import run_exec
    from ..values import check_env

    if detach and (interactive or tty):
        raise InvalidArgument("-d cannot be combined with -i or -t")
    c = state_of(ctx).client().containers
    envs: list[str] = []
    for f in env_file:
        envs += read_env_file(f)
    envs += check_env(_caller_env(env), "-e", in_file=False)
    term = os.environ.get("TERM") if tty else None
    cmd = c.exec_command(name, list(command), envs, workdir, user, term)
    if detach:
        from ..run.execd import exec_detached

        exec_detached(name, cmd.argv, cmd.env)
        return
    # our stdin (with -i) and terminal (with -t) go to the command: the CLI's to hand over
    raise typer.Exit(run_exec(cmd.argv, cmd.env, tty, interactive))


exec_.__name__ = "exec"


def inspect(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        ..., metavar="NAME", help="Containers (name, ID or ID prefix) or images (NAME[:TAG] or ID prefix)."
    ),
    json_out: bool = typer.Option(True, "--json/--no-json", help="JSON output (the default)."),
    format_: str = typer.Option(
        None,
        "-f",
        "--format",
        metavar="TEMPLATE",
        help="Go template per object instead of JSON, e.g. '{{.State.Status}}', '{{.Config.Labels}}', "
        "'{{index .Config.Labels \"k\"}}', '{{json .NetworkSettings}}'.",
    ),
    type_: str = typer.Option(
        None, "--type", metavar="container|image", help="Only look for this kind of object."
    ),
) -> None:
    """Show containers' (or images') configuration and state as JSON, or as -f formats it."""
    from ..errors import ContainerNotFound, ImageNotFound, InvalidReference, NotFound, NspawnctlError
    from .output import image_view, print_formatted

    if type_ not in (None, "container", "image"):
        raise InvalidArgument(f"invalid --type {type_!r}", hint="use --type container or --type image")
    state: State = state_of(ctx)
    state.json = format_ is None
    if format_ is not None:
        from ..gotemplate import parse

        parse(format_)  # a bad template fails before anything is looked up
    client = state.client()
    out = []
    failed: list[NspawnctlError] = []

    def one(n: str) -> dict[str, object]:
        if type_ != "image":
            try:
                found: dict[str, object] = client.containers.get(n).to_json()
                return found
            except ContainerNotFound:
                if type_ == "container":
                    raise
        try:
            image = client.images.get(n).to_json()
            return image_view(image) if format_ is not None else image
        except (ImageNotFound, InvalidReference):
            if type_ == "image":
                raise
            raise NotFound(
                f"no such container or image: {n}", hint="see 'nspawnctl ps -a' and 'nspawnctl images'"
            ) from None

    with client.session():
        for n in names:  # as docker: what is found is shown, each failure said, exit 1
            try:
                out.append(one(n))
            except NspawnctlError as e:
                if len(names) == 1:
                    raise
                failed.append(e)
    if format_ is not None:
        print_formatted(format_, out)
    else:
        print_json(out)
    for failure in failed:
        err(f"nspawnctl: error: {failure.message}")
    if failed:
        raise typer.Exit(1)
