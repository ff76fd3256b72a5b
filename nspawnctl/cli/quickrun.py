"""``nspawnctl run`` in its common forms without typer or click, and the foreground run both use.

Importing typer and building the ``run`` command's ~60 options costs a fifth of a ``run --rm IMG
true`` (issue 13's profile). :func:`parse` understands only the forms it can read exactly as the
typer command does (``run`` with ``--rm``, ``--name``, ``--network``/``--net``, ``--userns``,
``-e``/``--env``, then IMAGE and the command, after ``--pool``/``--store``); anything else (another
option, ``--help``, a missing value, ``-i``/``-t``/``-d``) returns None and the typer app parses it,
so its help, usage errors and exit codes stay the only ones. A unit test checks that both build
equal RunOptions. Imports nothing heavier than the library's run path needs.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..client import Client, Containers, RunOptions, RunResult
    from ..config import Paths
    from ..spec import ContainerSpec
    from ..systemd.bus import Bus

    Writer = Callable[[bytes], None]
    Stdio = tuple[int, int, int] | None
    Started = Callable[[ContainerSpec], None]

_FLAGS = {"--rm": "rm"}
_VALUES = {
    "--name": "name",
    "--network": "network",
    "--net": "network",
    "--userns": "userns",
    "-e": "env",
    "--env": "env",
}
_GLOBALS = ("--pool", "--store")


class QuickRun(NamedTuple):
    """A ``run`` command line :func:`parse` could read."""

    pool: str | None
    store: str | None
    rm: bool
    name: str | None
    network: str | None
    userns: str
    env: list[str]
    image: str
    command: list[str]


def parse(args: list[str]) -> QuickRun | None:
    """The command line as the typer ``run`` would read it, or None when it is not one of the
    forms read here (the typer app then parses it)."""
    found: dict[str, str | None] = {"--pool": None, "--store": None}
    i = 0
    while i < len(args) and args[i] != "run":
        key, sep, value = args[i].partition("=")
        if key not in _GLOBALS:
            return None
        if not sep:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            i, value = i + 1, args[i + 1]
        found[key] = value
        i += 1
    if i >= len(args):
        return None
    i += 1
    opts: dict[str, object] = {"rm": False, "name": None, "network": None, "userns": "auto"}
    env: list[str] = []
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg in _FLAGS:
            opts[_FLAGS[arg]] = True
            i += 1
            continue
        key, sep, value = arg.partition("=")
        if key not in _VALUES or (sep and not key.startswith("--")):
            return None  # unknown, --help, -i/-t/-d, "--", -eVALUE: click reads those
        if not sep:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            i, value = i + 1, args[i + 1]
        if _VALUES[key] == "env":
            env.append(value)
        else:
            opts[_VALUES[key]] = value
        i += 1
    if i >= len(args):
        return None  # no IMAGE: click's usage error
    return QuickRun(
        found["--pool"],
        found["--store"],
        bool(opts["rm"]),
        opts["name"],  # type: ignore[arg-type]
        opts["network"],  # type: ignore[arg-type]
        str(opts["userns"]),
        env,
        args[i],
        args[i + 1 :],
    )


def caller_env(env: list[str]) -> list[str]:
    """-e KEY without a value passes our own KEY through, as docker does, or nothing when we have
    none (the image's value, if any, stays)."""
    import os

    return [e if "=" in e else f"{e}={os.environ[e]}" for e in env if "=" in e or e in os.environ]


def notice(text: str) -> None:
    """A library notice: one ``nspawnctl: ...`` line on stderr."""
    sys.stderr.write(f"nspawnctl: {text}\n")
    sys.stderr.flush()


def pull_options(
    paths: Paths,
    verify: str = "signature",
    platform: str | None = None,
    tls_verify: str = "true",
    authfile: str | None = None,
    ca_cert: str | None = None,
) -> Callable[[], object]:
    """PullOptions as 'pull' builds them (progress and notices on stderr), made only when create
    pulls: a run of a local image loads none of the pull machinery."""

    def make() -> object:
        from ..pull import PullOptions
        from .progress import progress_for
        from .registry import parse_bool

        verify_tls = parse_bool("--tls-verify", tls_verify)

        def say(text: str) -> None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

        return PullOptions(
            verify=verify,
            platform=platform,
            ca_cert=ca_cert,
            tls_verify=verify_tls,
            auth_file=Path(authfile) if authfile else paths.auth,
            policy_file=paths.policy,
            notify=say,
            progress=progress_for,
        )

    return make


def options(q: QuickRun, paths: Paths) -> RunOptions:
    """The RunOptions the typer ``run`` builds from the same command line."""
    from ..client import RunOptions
    from ..spec import NETWORK_MODES
    from ..values import check_env

    network = q.network or None
    if network is not None and network not in NETWORK_MODES:
        # a network's name (or bridge, zone:): the declared networks' module only then
        from ..net.networks import parse as parse_network

        network = parse_network(paths, network)
    return RunOptions(
        name=q.name,
        env=check_env(caller_env(q.env), "-e"),
        auto_remove=q.rm,
        network=network,
        userns=q.userns,
        pull_options=pull_options(paths),  # type: ignore[arg-type]
        notify=notice,
    )


def foreground(
    client: Client,
    image: str,
    argv: list[str],
    opts: RunOptions,
    interactive: bool = False,
    tty: bool = False,
) -> int:
    """Run in the foreground (``run`` without ``-d``) and return the exit code to leave with; the
    payload's stdout and stderr go to ours, systemd-nspawn's error lines after them."""

    def attached(bus: Bus, out: Writer, err: Writer, stdio: Stdio, started: Started) -> Awaitable[RunResult]:
        run = client.containers.arun_attached
        return run(bus, image, argv, opts, out, interactive, tty, err, stdio, started)

    return _attached(client, attached, interactive or tty)


def start_attached(client: Client, name: str, interactive: bool) -> int:
    """``start -a``/``-ai`` of a created container, run as :func:`foreground` runs a new one: its
    output (and with ``-i``, when it was created with ``-i``, our stdin; with ``-t`` our terminal)
    until it exits; its exit code to leave with."""
    from ..errors import ContainerRunning, InvalidArgument

    containers = client.containers
    resolved = containers.store.resolve(name)
    spec = containers.store.get(resolved)
    stdin = interactive and spec.open_stdin  # docker: -i attaches stdin only with OpenStdin
    if spec.tty and stdin and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY", hint="drop -i, or run from a terminal")

    async def attached(bus: Bus, out: Writer, error: Writer, stdio: Stdio, started: Started) -> RunResult:
        try:
            run = containers.astart_attached
            return await run(bus, resolved, out, error, started, stdio, stdin, spec.tty)
        except ContainerRunning as e:
            raise ContainerRunning(e.message, hint=f"follow it with: nspawnctl attach {name}") from None

    return _attached(client, attached, stdin or spec.tty)


def _attached(
    client: Client,
    body: Callable[[Bus, Writer, Writer, Stdio, Started], Awaitable[RunResult]],
    wired: bool,
) -> int:
    """Run ``body`` (a library attached run) with our stdout and stderr, our stdin/stdout/stderr
    handed to the unit when ``wired`` (``-i``/``-t``), else the output followed in the journal and
    our SIGINT/SIGTERM forwarded; systemd-nspawn's error lines after the output; the exit code."""
    containers = client.containers

    def writer(stream: object) -> Writer:
        def write(data: bytes) -> None:
            stream.write(data)  # type: ignore[attr-defined]
            stream.flush()  # type: ignore[attr-defined]

        return write

    out, error = writer(sys.stdout.buffer), writer(sys.stderr.buffer)
    # -i/-t: our own stdin/stdout/stderr go to the unit; else the output is followed in the journal
    stdio = (0, 1, 2) if wired else None

    async def run(bus: Bus) -> RunResult:
        def started(spec: ContainerSpec) -> None:
            if stdio is None:
                forward_signals(bus, containers, spec.name, handlers)

        return await _with_handlers_removed(body(bus, out, error, stdio, started), handlers)

    handlers: list[int] = []
    result = client.run(run)
    for message in result.errors:
        sys.stderr.write(f"nspawnctl: systemd-nspawn: {message}\n")
    sys.stderr.flush()
    return result.exit_code


async def _with_handlers_removed(body: Awaitable[RunResult], handlers: list[int]) -> RunResult:
    import asyncio

    try:
        return await body
    finally:
        loop = asyncio.get_running_loop()
        for sig in handlers:
            loop.remove_signal_handler(sig)


def forward_signals(bus: Bus, containers: Containers, name: str, handlers: list[int]) -> None:
    """A foreground run's SIGINT/SIGTERM go to the payload (docker's sig-proxy), the third one as
    SIGKILL; installed once its unit runs, for output followed from the journal (with -i/-t the
    terminal is the unit's: nspawn passes Ctrl-C itself). ``handlers`` gets the signals handled."""
    import asyncio
    import signal

    if handlers:
        return
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    count = 0

    def forward(sig: int) -> None:
        nonlocal count
        count += 1
        task = loop.create_task(containers.ainterrupt(bus, name, signal.SIGKILL if count >= 3 else sig))
        pending.add(task)
        task.add_done_callback(pending.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, forward, sig)
        handlers.append(sig)


def main(q: QuickRun) -> int:
    """Run ``q`` as the typer ``run`` would, errors reported as cli.app reports them; the exit
    code to leave with (the caller flushes and leaves without the interpreter's teardown)."""
    from ..errors import NspawnctlError

    try:
        from ..client import Client
        from ..config import Paths

        paths = Paths.from_env(q.pool, q.store)
        client = Client(paths, notify=notice)
        return foreground(client, q.image, q.command, options(q, paths))
    except NspawnctlError as e:
        report(e.message, e.hint)
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        report(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), None)
        return 125


def report(message: str, hint: str | None) -> None:
    """One error on stderr, as cli.app says it: ``nspawnctl: error: ...`` and a hint line."""
    sys.stderr.write(f"nspawnctl: error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
