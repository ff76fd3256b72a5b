"""``system prune``: remove what is stopped, unused or left half done."""

from __future__ import annotations

import dataclasses

import typer

from .app import state_of
from .images import echo_pruned
from .output import confirm_or_refuse, human_size, print_json
from .usage import NspawnctlGroup

system_app = typer.Typer(
    help="Manage nspawnctl as a whole.", no_args_is_help=True, rich_markup_mode=None, cls=NspawnctlGroup
)


def register(app: typer.Typer) -> None:
    app.add_typer(system_app, name="system")


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
        help="Accepted for docker's sake: nspawnctl has no volumes of its own (-v binds host paths).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove stopped containers, dangling images (-a: all unused images), layers no image uses,
    and what interrupted commands left behind (staging snapshots, temporary files)."""
    state = state_of(ctx)
    state.json = json_out
    if not force:
        what = "all images without at least one container" if all_ else "all dangling images"
        confirm_or_refuse(
            f"WARNING! This will remove all stopped containers, {what}, all layers no image uses "
            "and what interrupted commands left behind. Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    result = state.client().prune(all_images=all_)
    if json_out:
        print_json({"containers": result.containers, **dataclasses.asdict(result.images)})
        return
    if result.containers:
        typer.echo("Deleted Containers:")
        for name in result.containers:
            typer.echo(name)
        typer.echo("")
    echo_pruned(result.images)
    typer.echo(f"Total reclaimed space: {human_size(result.reclaimed)}")


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
