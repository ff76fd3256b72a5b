"""``port CONTAINER [PORT[/PROTO]]``: the host ports a container's ports are published on."""

from __future__ import annotations

import typer

from ..errors import InvalidArgument
from .app import state_of


def register(app: typer.Typer) -> None:
    app.command("port")(port)


def port(
    ctx: typer.Context,
    container: str = typer.Argument(..., metavar="CONTAINER", help="Container name."),
    private_port: str = typer.Argument(
        None, metavar="PORT[/PROTO]", help="Only this container port (tcp unless /udp is given)."
    ),
) -> None:
    """List a container's published ports (those -p and -P picked included), as docker does:
    '80/tcp -> 0.0.0.0:32768'; with PORT, only the host addresses of that port."""
    from ..errors import NotFound
    from ..net.ports import host_endpoint

    mappings = state_of(ctx).client().containers.port(container)
    if private_port is None:
        for pm in mappings:
            typer.echo(f"{pm.key} -> {host_endpoint(pm)}")
        return
    number, _, proto = private_port.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("tcp", "udp"):
        raise InvalidArgument(
            f"invalid port {private_port!r}", hint="use PORT or PORT/tcp or PORT/udp, e.g. 80"
        )
    key = f"{int(number)}/{proto}"
    found = [pm for pm in mappings if pm.key == key]
    if not found:
        raise NotFound(
            f"no public port '{key}' published for {container}", hint=f"see: nspawnctl port {container}"
        )
    for pm in found:
        typer.echo(host_endpoint(pm))
