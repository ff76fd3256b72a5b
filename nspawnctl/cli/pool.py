"""``pool``: set up and check the btrfs pool."""

from __future__ import annotations

import typer

from .app import state_of
from .usage import NspawnctlGroup

pool_app = typer.Typer(
    help="Set up and check the btrfs pool.", no_args_is_help=True, rich_markup_mode=None, cls=NspawnctlGroup
)


def register(app: typer.Typer) -> None:
    app.add_typer(pool_app, name="pool")


@pool_app.command("init")
def init(
    size: str = typer.Option(
        "20G", "--size", metavar="SIZE", help="Size of the loopback file /var/lib/machines.raw."
    ),
) -> None:
    """Create a loopback btrfs pool and mount it now and at every boot (units: var-lib-nspawnctl.mount,
    var-lib-machines.mount). Does nothing when the pool already is btrfs."""
    from ..store.pool import init_pool

    typer.echo(init_pool(size))


@pool_app.command("check")
def check(ctx: typer.Context) -> None:
    """Check that the container pool and the image store are on one btrfs filesystem."""
    client = state_of(ctx).client()
    client.pool.check()
    typer.echo(f"ok: {client.paths.pool} and {client.paths.store} are on one btrfs filesystem")
