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
        "20G", "--size", metavar="SIZE", help="Size of a new loopback file /var/lib/nspawnctl.raw."
    ),
) -> None:
    """Set up the pool for this host, now and at every boot. btrfs /var/lib: the store is made in
    place. machined's /var/lib/machines.raw: adopted (its machines move into a 'machines'
    subvolume, announced, with the way back). No btrfs: a loopback file /var/lib/nspawnctl.raw.
    Does nothing when the pool is ready."""
    from ..store.pool import init_pool

    typer.echo(init_pool(size, notify=typer.echo))


@pool_app.command("check")
def check(ctx: typer.Context) -> None:
    """Check that the container pool and the image store are on one btrfs filesystem; say the layout."""
    client = state_of(ctx).client()
    typer.echo(client.pool.describe())
