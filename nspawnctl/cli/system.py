"""nspawnctl as a whole: ``system prune|df|info``, ``version``, ``info`` and ``container prune``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer

from .app import state_of
from .images import echo_pruned
from .output import confirm_or_refuse, human_size, print_json, table
from .usage import NspawnctlGroup

if TYPE_CHECKING:
    from ..diskusage import Usage
    from ..sysinfo import ClientVersion, Filesystem

system_app = typer.Typer(
    help="Manage nspawnctl as a whole.", no_args_is_help=True, rich_markup_mode=None, cls=NspawnctlGroup
)


container_app = typer.Typer(
    help="Manage containers (docker's container group; the verbs are also top-level commands).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=NspawnctlGroup,
)


def register(app: typer.Typer) -> None:
    app.add_typer(system_app, name="system")
    app.add_typer(container_app, name="container")
    app.command("version")(version)
    app.command("info")(info)


@system_app.command("prune")
def system_prune(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "-a", "--all", help="Remove every image no container was made from, not only dangling ones."
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
    volumes: bool = typer.Option(
        False,
        "--volumes",
        help="Also remove the named volumes no container binds (with their data).",
    ),
    filters: list[str] = typer.Option(
        [],
        "--filter",
        metavar="KEY=VALUE",
        help="Only containers, images and volumes that match (repeatable, all must hold): "
        "until=TIME (created before: 10m, 2h30m ago, 2026-01-02T10:00:00Z, a Unix time; not with "
        "--volumes), label=KEY or label=KEY=VALUE, label!=KEY or label!=KEY=VALUE (without it).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove stopped containers, dangling images (-a: all unused images), layers no image uses,
    and what interrupted commands left behind (staging snapshots, temporary files)."""
    from ..listfilters import SYSTEM_PRUNE_KEYS, parse_list_filters, refuse_until_with_volumes

    state = state_of(ctx)
    state.json = json_out
    only = parse_list_filters(filters, SYSTEM_PRUNE_KEYS)
    refuse_until_with_volumes(only, volumes)  # the library's check (prune's own), before the question
    if not force:
        what = "all images without at least one container" if all_ else "all dangling images"
        if volumes:
            what += ", all volumes not used by at least one container"
        confirm_or_refuse(
            f"WARNING! This will remove all stopped containers, {what}, all layers no image uses "
            "and what interrupted commands left behind. Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    result = state.client().prune(all_images=all_, volumes=volumes, filters=only)
    if json_out:
        print_json(
            {"containers": result.containers, **dataclasses.asdict(result.images), "volumes": result.volumes}
        )
        return
    if result.containers:
        typer.echo("Deleted Containers:")
        for name in result.containers:
            typer.echo(name)
        typer.echo("")
    echo_pruned(result.images)
    if result.volumes:
        from .volumes import echo_volumes

        echo_volumes(result.volumes)
    typer.echo(f"Total reclaimed space: {human_size(result.reclaimed)}")


@system_app.command("df")
def system_df(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Show the disk space images, containers and volumes use on the pool's filesystem, and how
    much 'image prune -a' and 'volume prune' would free. A container's own changes share extents
    with its image on btrfs and are not measured (shown as n/a)."""
    state = state_of(ctx)
    state.json = json_out
    usage = state.client().disk_usage()
    if json_out:
        print_json(
            [
                {
                    "Type": u.kind,
                    "TotalCount": u.total,
                    "Active": u.active,
                    "Size": u.size,
                    "Reclaimable": u.reclaimable,
                }
                for u in usage
            ]
        )
        return

    def size(n: int | None) -> str:
        return "n/a" if n is None else human_size(n)

    def reclaimable(u: Usage) -> str:
        if u.reclaimable is None:
            return "n/a"
        share = f" ({100 * u.reclaimable // u.size}%)" if u.size else ""
        return human_size(u.reclaimable) + share

    table(
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [[u.kind, str(u.total), str(u.active), size(u.size), reclaimable(u)] for u in usage],
    )


INFO_FORMAT_HELP = (
    "Go template over the --json document instead of the text, e.g. '{{.systemd.version}}', "
    "'{{.containers.running}}', '{{.images}}', '{{.pool.path}}', '{{json .}}'."
)


@system_app.command("info")
def system_info(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the information as JSON."),
    format_: str = typer.Option(None, "-f", "--format", metavar="TEMPLATE", help=INFO_FORMAT_HELP),
) -> None:
    """Show how nspawnctl and its host are set up (the same as 'info')."""
    info(ctx, json_out, format_)


def version(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the versions as JSON."),
) -> None:
    """Show nspawnctl's version and that of systemd, its daemon."""
    from ..errors import NspawnctlError
    from ..sysinfo import client_version, systemd_version

    state = state_of(ctx)
    state.json = json_out
    client = client_version()
    try:
        server = state.client().run(systemd_version)
    except NspawnctlError:
        if not json_out:  # docker prints what it knows, then the error
            _echo_client(client)
        raise
    if json_out:
        print_json({"Client": dataclasses.asdict(client), "Server": dataclasses.asdict(server)})
        return
    _echo_client(client)
    typer.echo("")
    typer.echo("Server: systemd")
    _fields(
        [
            ("Version", server.version),
            ("Kernel Version", server.kernel),
            ("Architecture", server.architecture),
            ("Virtualization", server.virtualization or "none"),
            ("Features", server.features),
        ]
    )


def info(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the information as JSON."),
    format_: str = typer.Option(None, "-f", "--format", metavar="TEMPLATE", help=INFO_FORMAT_HELP),
) -> None:
    """Show how nspawnctl and its host are set up: containers (running, paused, stopped) and
    images, systemd's version (as 'systemctl --version' gives it), the kernel, the pool and the store."""
    from ..sysinfo import client_version, docker_split

    state = state_of(ctx)
    state.json = json_out
    if format_ is not None:
        from ..gotemplate import expand_escapes, parse

        parse(expand_escapes(format_))  # a bad template fails before the host is asked
    host = state.client().info()
    if json_out or format_ is not None:
        doc = {"client": dataclasses.asdict(client_version()), **dataclasses.asdict(host)}
        if format_ is not None:
            from .output import print_formatted

            print_formatted(format_, [doc])
        else:
            print_json(doc)
        return
    c = host.containers
    running, paused, stopped = docker_split(c)
    typer.echo("Client:")
    _fields([("Version", client_version().version)])
    typer.echo("")
    typer.echo("Server:")
    _fields(
        [
            ("Containers", str(c["total"])),
            (" Running", str(running)),
            (" Paused", str(paused)),
            (" Stopped", str(stopped)),
            ("Images", str(host.images)),
            ("Server Version", host.systemd.display()),
            ("Storage Driver", "btrfs (snapshots)"),
            ("Logging Driver", "journald"),
            ("Cgroup Driver", "systemd"),
            ("Cgroup Version", str(host.cgroup_version)),
            ("Default Network", "veth (systemd-networkd)" if host.networkd else "host (no systemd-networkd)"),
            ("Kernel Version", host.systemd.kernel),
            ("Operating System", host.os_name),
            ("Architecture", host.systemd.architecture),
            ("CPUs", str(host.cpus)),
            ("Total Memory", human_size(host.memory)),
            ("Pool", _place(host.pool)),
            ("Store", _place(host.store)),
        ]
    )


@container_app.command("prune")
def container_prune(
    ctx: typer.Context,
    filters: list[str] = typer.Option(
        [],
        "--filter",
        metavar="KEY=VALUE",
        help="Only containers that match (repeatable, all must hold): until=TIME (created before: "
        "10m, 2h30m ago, 2026-01-02T10:00:00Z, a Unix time), label=KEY or label=KEY=VALUE, "
        "label!=KEY or label!=KEY=VALUE (without it).",
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
    json_out: bool = typer.Option(False, "--json", help="Print the names removed as JSON."),
) -> None:
    """Remove every stopped container (created or exited), and what interrupted commands left."""
    from ..listfilters import CONTAINER_PRUNE_KEYS, parse_list_filters

    state = state_of(ctx)
    state.json = json_out
    only = parse_list_filters(filters, CONTAINER_PRUNE_KEYS)  # refused before the question
    if not force:
        confirm_or_refuse(
            "WARNING! This will remove all stopped containers. Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    removed = state.client().containers.prune(only)
    if json_out:
        print_json({"containers": removed})
        return
    if removed:
        typer.echo("Deleted Containers:")
        for name in removed:
            typer.echo(name)
        typer.echo("")
    typer.echo(f"Total containers removed: {len(removed)}")


@container_app.command("diff")
def container_diff(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container name or ID (or a unique ID prefix)."),
    json_out: bool = typer.Option(
        False, "--json", help='Print [{"Path": ..., "Kind": 0|1|2}] as the API answers.'
    ),
) -> None:
    """Show the files the container changed against its image, running or not, as docker's
    'container diff': 'A PATH' added, 'C PATH' changed (also each directory above a change),
    'D PATH' deleted. (The top-level 'diff' is apply's: it takes a file or directory.)"""
    import os
    import sys

    from ..store.changes import container_changes

    state = state_of(ctx)
    state.json = json_out
    client = state.client()
    client.pool.check()
    result = container_changes(client.containers.store, client.images.store, container)
    if json_out:
        print_json([c.to_json() for c in result])
        return
    out = sys.stdout.buffer
    for c in result:
        out.write(f"{c.letter} ".encode() + escape_path(os.fsencode(c.path)) + b"\n")
    out.flush()


def escape_path(raw: bytes) -> bytes:
    """A payload's file name as one line of text: control bytes (but tab) and the backslash as ``\\xNN``,
    so a name with a line feed cannot forge another line, nor an escape sequence reach the
    terminal (docker prints them raw; ``--json`` has the name exact)."""
    unsafe = {*range(0x20), 0x5C, 0x7F} - {0x09}
    return b"".join(b"\\x%02x" % b if b in unsafe else bytes([b]) for b in raw)


def _echo_client(client: ClientVersion) -> None:
    typer.echo("Client: nspawnctl")
    deps = ", ".join(f"{k} {v}" for k, v in client.dependencies.items())
    _fields(
        [
            ("Version", client.version),
            ("Python", client.python),
            ("OS/Arch", client.os_arch),
            ("Libraries", deps),
        ]
    )


def _fields(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        typer.echo(f" {(key + ':').ljust(width)}{value}")


def _place(fs: Filesystem) -> str:
    if not fs.total:
        return f"{fs.path} (missing)"
    return f"{fs.path} ({human_size(fs.free)} free of {human_size(fs.total)})"


# -- the Docker Engine API (issue 15) ------------------------------------------------------------
SERVICE_UNITS = ("nspawnctl-docker.socket", "nspawnctl-docker.service")
SERVICE_IDLE = 10.0
"""Idle seconds after which the socket-activated service exits (the next connection restarts it)."""


@system_app.command("service")
def system_service(
    ctx: typer.Context,
    target: str = typer.Argument(
        None,
        metavar="[enable|disable|unix:///PATH]",
        help="enable: install and start the socket unit (the service starts on the first connection); "
        "disable: stop and remove them; else serve in the foreground on unix:///PATH (default "
        "/run/nspawnctl/docker.sock, or the socket systemd passed).",
    ),
    idle: float = typer.Option(
        5.0, "-t", "--time", metavar="SECONDS", help="Exit after this many idle seconds (0: never)."
    ),
) -> None:
    """Serve the Docker Engine API (a subset) for docker, docker-py and their kin.

    Whoever can connect to the socket can do anything nspawnctl can, as root: the socket is
    root-equivalent, as docker's own."""
    state = state_of(ctx)
    if target in ("enable", "disable"):
        from ..errors import CommandFailed

        if target == "enable":
            _install_service_units()
            argv = ["systemctl", "enable", "--now", SERVICE_UNITS[0]]
        else:
            argv = ["systemctl", "disable", "--now", *SERVICE_UNITS]
        import subprocess

        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CommandFailed(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        if target == "disable":
            _remove_service_units()
        return
    if idle < 0:
        from ..errors import InvalidArgument

        raise InvalidArgument(f"invalid --time {idle}", hint="give the idle seconds, or 0 for never")
    from ..api.server import run_service

    run_service(state.client(), target, idle or None)


def _install_service_units() -> None:
    """The packaged units, with this Python and the idle time filled in, in /etc/systemd/system."""
    import subprocess
    import sys
    from importlib import resources
    from pathlib import Path

    units = resources.files("nspawnctl.units")
    for name in SERVICE_UNITS:
        text = units.joinpath(name).read_text()
        text = text.replace("@PYTHON@", sys.executable).replace("@IDLE@", f"{SERVICE_IDLE:g}")
        Path("/etc/systemd/system", name).write_text(text)
    subprocess.run(["systemctl", "daemon-reload"], check=False)


def _remove_service_units() -> None:
    import subprocess
    from pathlib import Path

    for name in SERVICE_UNITS:
        Path("/etc/systemd/system", name).unlink(missing_ok=True)
    subprocess.run(["systemctl", "daemon-reload"], check=False)


@system_app.command("dial-stdio")
def system_dial_stdio(
    address: str = typer.Option(
        None,
        "-H",
        "--host",
        metavar="unix:///PATH",
        envvar="DOCKER_HOST",
        help="The API socket (default /run/nspawnctl/docker.sock).",
    ),
) -> None:
    """Connect stdin and stdout to the API socket, as docker's dial-stdio: with it,
    `ssh HOST nspawnctl system dial-stdio` carries the API to a remote client."""
    import os
    import socket
    import threading

    from ..api.server import socket_path

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = socket_path(address)
    try:
        sock.connect(str(path))
    except OSError as e:
        from ..errors import CommandFailed

        raise CommandFailed(
            f"cannot connect to {path}: {e.strerror}", hint="enable it: nspawnctl system service enable"
        ) from None

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        _write_all(1, data)


def _write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
