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
        help="Also remove the named volumes no container binds (with their data).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove stopped containers, dangling images (-a: all unused images), layers no image uses,
    and what interrupted commands left behind (staging snapshots, temporary files)."""
    state = state_of(ctx)
    state.json = json_out
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
    result = state.client().prune(all_images=all_, volumes=volumes)
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
