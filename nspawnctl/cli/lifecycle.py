"""Lifecycle verbs with docker's flags: wait, rename, pause, unpause, update, top, stats, events,
attach. Thin: the logic is the library's (client.Containers, run/*)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import typer

from .app import for_each, state_of
from .output import err, human_size, print_json, table

if TYPE_CHECKING:
    from ..client import Client
    from ..run.events import Event
    from ..run.stats import Sample
    from ..spec import ContainerSpec
    from ..systemd.bus import Bus

NAMES = typer.Argument(..., metavar="CONTAINER", help="Container names.")
PS_ARGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}
JSON_FORMAT = "{{json .}}"


def register(app: typer.Typer) -> None:
    app.command("wait")(wait)
    app.command("rename")(rename)
    app.command("pause")(pause)
    app.command("unpause")(unpause)
    app.command("update")(update)
    app.command("top", context_settings=PS_ARGS)(top)
    app.command("stats")(stats)
    app.command("events")(events)
    app.command("attach")(attach)


def wait(
    ctx: typer.Context,
    names: list[str] = NAMES,
    condition: str = typer.Option(
        "not-running",
        "--condition",
        metavar="CONDITION",
        help="not-running (default: return at once for a stopped container), next-exit (the next "
        "exit, also of a stopped container once started) or removed (the exit, then its removal).",
    ),
) -> None:
    """Block until containers stop, then print their exit codes (one line each)."""
    from ..run.wait import check_condition

    check_condition(condition)
    client = state_of(ctx).client()
    with client.session():
        for_each(names, lambda n: typer.echo(client.containers.wait(n, condition)), echo=False)


def rename(
    ctx: typer.Context,
    old: str = typer.Argument(..., metavar="CONTAINER", help="The container's name."),
    new: str = typer.Argument(..., metavar="NEW_NAME", help="Its new name (a machine name)."),
) -> None:
    """Rename a stopped container: its snapshot, definition, state and unit files. A running
    container is refused (machined and its unit are named after it): stop it first."""
    state_of(ctx).client().containers.rename(old, new)


def pause(ctx: typer.Context, names: list[str] = NAMES) -> None:
    """Freeze every process of containers (the unit's cgroup, systemd's FreezeUnit; needs cgroup v2)."""
    client = state_of(ctx).client()
    with client.session():
        for_each(names, client.containers.pause)


def unpause(ctx: typer.Context, names: list[str] = NAMES) -> None:
    """Thaw paused containers."""
    client = state_of(ctx).client()
    with client.session():
        for_each(names, client.containers.unpause)


def update(
    ctx: typer.Context,
    names: list[str] = NAMES,
    memory: str = typer.Option(
        None, "-m", "--memory", metavar="BYTES", help="Memory limit (MemoryMax=), e.g. 512M, 2G."
    ),
    cpus: str = typer.Option(None, "--cpus", metavar="N", help="CPUs (CPUQuota=), e.g. 0.5."),
    cpu_shares: str = typer.Option(
        None, "-c", "--cpu-shares", metavar="N", help="Relative CPU weight, 2-262144 (CPUWeight=)."
    ),
    pids_limit: str = typer.Option(None, "--pids-limit", metavar="N", help="Process limit (TasksMax=)."),
    restart: str = typer.Option(
        None,
        "--restart",
        metavar="POLICY",
        help="no, on-failure[:N], always or unless-stopped; a running container gets it at its next start.",
    ),
) -> None:
    """Change containers' limits: at once on the running unit (SetUnitProperties) and in their
    .nspawn definition for later starts."""
    from ..cpumem import parse_cpu_shares
    from ..run.update import Update
    from ..spec import parse_restart
    from ..values import Cpus, MemoryBytes, PidsLimit

    change = Update(
        memory=None if memory is None else MemoryBytes.parse(memory, "--memory"),
        cpus=None if cpus is None else Cpus.parse(cpus, "--cpus"),
        pids=None if pids_limit is None else PidsLimit.parse(pids_limit, "--pids-limit"),
        restart=None if restart is None else parse_restart(restart),
        cpu_shares=None if cpu_shares is None else parse_cpu_shares(cpu_shares),
    )
    client = state_of(ctx).client()
    with client.session():
        for_each(names, lambda n: client.containers.update(n, change))


def top(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="A running container."),
    ps_args: list[str] = typer.Argument(None, metavar="[ps OPTIONS]", help="Options for ps (default -ef)."),
) -> None:
    """Show a running container's processes (ps output, the rows of its cgroup's processes)."""
    result = state_of(ctx).client().containers.top(name, list(ps_args or []) or None)
    widths = [len(t) for t in result.titles]
    for row in result.processes:
        for i, cell in enumerate(row[: len(widths) - 1]):
            widths[i] = max(widths[i], len(cell))
    for row in [result.titles, *result.processes]:
        head = "   ".join(c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=False))
        sys.stdout.write(f"{head}   {row[-1]}\n" if len(row) > 1 else f"{row[0]}\n")


# -- stats ---------------------------------------------------------------------------------
def stats_size(n: int | None, binary: bool = False) -> str:
    """docker's sizes in stats (memory in units of 1024, I/O of 1000); "--" when unknown."""
    return "--" if n is None else human_size(n, binary)


STATS_TITLES = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def stats_row(before: Sample | None, now: Sample) -> dict[str, str]:
    """One container's line, with docker's ``{{json .}}`` field names."""
    from ..run.stats import cpu_percent, memory_percent

    running = now.running
    return {
        "BlockIO": f"{stats_size(now.io_read)} / {stats_size(now.io_write)}" if running else "0B / 0B",
        "CPUPerc": f"{cpu_percent(before, now):.2f}%",
        "Container": now.id[:12],
        "ID": now.id,
        "MemPerc": f"{memory_percent(now):.2f}%",
        "MemUsage": (
            f"{stats_size(now.memory, True)} / {stats_size(now.memory_limit, True)}" if running else "0B / 0B"
        ),
        "Name": now.name,
        "NetIO": f"{stats_size(now.net_rx)} / {stats_size(now.net_tx)}",
        "PIDs": str(now.pids or 0),
    }


def _stats_table(rows: list[dict[str, str]]) -> None:
    keys = ["Container", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"]
    table(STATS_TITLES, [[r[k] for k in keys] for r in rows])


def stats(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, metavar="[CONTAINER]...", help="Containers (default: running)."),
    all: bool = typer.Option(False, "-a", "--all", help="Show stopped containers too."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print one reading and exit."),
    format: str = typer.Option(
        None, "--format", metavar="FORMAT", help="'{{json .}}': a JSON object a line."
    ),
    json_out: bool = typer.Option(False, "--json", help="A JSON array per reading (with --no-stream: one)."),
) -> None:
    """Live resource use of containers (their units' cgroup accounting): CPU %, memory, network,
    block I/O, processes; refreshed every second until Ctrl-C, or once with --no-stream."""
    import asyncio
    import json

    from ..errors import InvalidArgument

    if format is not None and format.strip() != JSON_FORMAT:
        raise InvalidArgument(
            f"unsupported --format {format!r}", hint=f"use --format '{JSON_FORMAT}' or --json"
        )
    state = state_of(ctx)
    state.json = json_out
    client = state.client()
    containers = client.containers
    specs = [containers.store.get(containers.store.resolve(n)) for n in names] if names else None

    async def go(bus: Bus) -> None:
        chosen = specs
        if chosen is None:
            chosen = [
                s.spec for s in await containers.astatuses(bus, containers.store.list()) if all or s.running
            ]
        before = {s.id: s for s in await containers.astats(bus, chosen)}
        clear = sys.stdout.isatty() and not no_stream and not json_out and format is None
        while True:
            await asyncio.sleep(0.5 if no_stream else 1.0)
            now = await containers.astats(bus, chosen)
            rows = [stats_row(before.get(s.id), s) for s in now]
            before = {s.id: s for s in now}
            if json_out:
                print_json(rows)
            elif format is not None:
                for r in rows:
                    sys.stdout.write(json.dumps(r) + "\n")
            else:
                if clear:
                    sys.stdout.write("\033[2J\033[H")
                _stats_table(rows)
            sys.stdout.flush()
            if no_stream:
                return

    client.run(go)


# -- events --------------------------------------------------------------------------------
def events(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", metavar="TIME", help="Show events from this time on."),
    until: str = typer.Option(
        None, "--until", metavar="TIME", help="Stop at this time (Unix time, RFC 3339, or a duration: 10m)."
    ),
    filter: list[str] = typer.Option(
        [], "-f", "--filter", metavar="KEY=VALUE", help="container=, event=, image=, type= (repeatable)."
    ),
    format: str = typer.Option(
        None, "--format", metavar="FORMAT", help="'{{json .}}': a JSON object a line."
    ),
    json_out: bool = typer.Option(False, "--json", help="A JSON object a line (as --format '{{json .}}')."),
) -> None:
    """Print container events as they happen (create, start, die, pause, unpause, rename,
    destroy), from systemd's signals and the definitions' changes; until --until or Ctrl-C.
    A past --since first replays from the journal: the start and die events of today's
    containers from systemd's records of their units, and create, rename, destroy, pause and
    unpause (also of removed containers) from the records nspawnctl writes there itself."""
    import json

    from ..errors import InvalidArgument
    from ..run.events import parse_filters, parse_time

    if format is not None and format.strip() != JSON_FORMAT:
        raise InvalidArgument(
            f"unsupported --format {format!r}", hint=f"use --format '{JSON_FORMAT}' or --json"
        )
    as_json = json_out or format is not None
    filters = parse_filters(filter)
    start = None if since is None else parse_time(since)
    end = None if until is None else parse_time(until)

    def emit(event: Event) -> None:
        sys.stdout.write((json.dumps(event.to_json()) if as_json else event.line()) + "\n")
        sys.stdout.flush()

    state_of(ctx).client().containers.events(emit, filters, start, end)


# -- attach --------------------------------------------------------------------------------
def attach(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="A running container."),
    sig_proxy: bool = typer.Option(
        True, "--sig-proxy/--no-sig-proxy", help="Pass Ctrl-C/SIGTERM on to the container (else they detach)."
    ),
    no_stdin: bool = typer.Option(
        False, "--no-stdin", help="Do not forward stdin (only a container started with -i reads it)."
    ),
    detach_keys: str = typer.Option(
        "ctrl-p,ctrl-q",
        "--detach-keys",
        help="Keys that detach, leaving the container running: a character or ctrl-<key>, comma-separated.",
    ),
) -> None:
    """Follow a running container's output until it exits, then exit with its code. For a
    container started with -i, stdin is forwarded to it, up to the detach keys.

    A container with a terminal (-t) shows its output only: its terminal is systemd-nspawn's (or
    the one of the command that started it) and takes no input from here but the detach keys
    (when it was started with -i); Ctrl-C detaches (as docker's, its signals are not proxied).
    For a shell in it: nspawnctl exec -it CONTAINER sh.
    """
    from ..run.attach import parse_detach_keys

    keys = parse_detach_keys(detach_keys)
    client = state_of(ctx).client()
    code = client.run(lambda bus: _attach(client, bus, name, sig_proxy, not no_stdin, keys))
    raise typer.Exit(code)


async def _attach(client: Client, bus: Bus, name: str, sig_proxy: bool, stdin: bool, keys: bytes) -> int:
    import asyncio
    import signal

    from ..errors import NspawnctlError
    from ..run.attach import Detached
    from ..run.stdio import read_some

    containers = client.containers
    loop = asyncio.get_running_loop()
    try:  # docker proxies no signals to a terminal: not even a Ctrl-C before the attach has begun
        if containers.store.get(containers.store.resolve(name)).tty:
            sig_proxy = False
    except NspawnctlError:
        pass  # the attach says what is wrong

    def begun(spec: ContainerSpec, reads: bool) -> None:
        """Once it is found running: a terminal's input is not ours to give (run/attach.py), said
        as it is (the detach keys are read only from a -i container's attach); docker proxies
        no signals to a terminal."""
        nonlocal sig_proxy
        if spec.tty:
            sig_proxy = False
            leave = "Ctrl-C or the detach keys detach" if reads else "Ctrl-C detaches"
            err(
                f"nspawnctl: {name} has a terminal that takes no input from here: showing its output "
                f"({leave}; a shell in it: nspawnctl exec -it {name} sh)"
            )

    async def read() -> bytes:
        return await read_some(sys.stdin.fileno())

    out, error = _writer(sys.stdout), _writer(sys.stderr)
    task = asyncio.ensure_future(
        containers.aattach(bus, name, out, error, read if stdin else None, keys, begun)
    )
    detached = False
    pending: set[asyncio.Task[None]] = set()

    def on_signal(sig: int) -> None:
        nonlocal detached
        if sig_proxy:
            forward = loop.create_task(containers.ainterrupt(bus, name, sig))
            pending.add(forward)
            forward.add_done_callback(pending.discard)
        else:
            detached = True
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await task
    except Detached:
        err(f"nspawnctl: detached from {name}; it runs on")
        return 0
    except asyncio.CancelledError:
        if detached:
            err(f"nspawnctl: detached from {name}; it runs on")
            return 0
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _writer(stream: TextIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.flush()

    return write
