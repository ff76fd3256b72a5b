"""``volume create|ls|inspect|rm|prune``: named volumes (btrfs subvolumes in the store)."""

from __future__ import annotations

import typer

from .app import for_each, state_of
from .output import confirm_or_refuse, human_size, print_json, table
from .usage import NspawnctlGroup

volume_app = typer.Typer(
    help="Manage named volumes (mounted with -v NAME:/path; kept when containers are removed).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=NspawnctlGroup,
)


def register(app: typer.Typer) -> None:
    app.add_typer(volume_app, name="volume")


@volume_app.command("create")
def volume_create(
    ctx: typer.Context,
    name: str = typer.Argument(None, metavar="[NAME]", help="Volume name (default: a random 64-hex one)."),
    label: list[str] = typer.Option([], "--label", metavar="KEY=VALUE", help="Set metadata (repeatable)."),
) -> None:
    """Create a volume (a btrfs subvolume in the store) and print its name. An existing volume
    of that name is kept as it is."""
    from ..store.volumes import parse_labels

    labels = parse_labels(label)
    typer.echo(state_of(ctx).client().volumes.create(name, labels).name)


@volume_app.command("ls")
def volume_ls(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show volume names."),
    filters: list[str] = typer.Option(
        [],
        "-f",
        "--filter",
        metavar="KEY=VALUE",
        help="Only volumes that match (repeatable; one key's values ORed, but every label must hold; "
        "different keys ANDed): dangling=true|false (bound by no container, or by one), "
        "name=NAME (part of it: . any character, [abc] classes, ^/$ anchors), driver=local, "
        "label=KEY or label=KEY=VALUE.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array (as volume inspect)."),
) -> None:
    """List volumes."""
    from ..listfilters import VOLUME_KEYS, parse_list_filters, volume_subject

    state = state_of(ctx)
    state.json = json_out
    only = parse_list_filters(filters, VOLUME_KEYS)  # a bad filter is refused before listing
    volumes = [v for v in state.client().volumes.list() if only.matches(volume_subject(v))]
    if json_out:
        print_json([v.to_json() for v in volumes])
    elif quiet:
        for v in volumes:
            typer.echo(v.name)
    else:
        table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in volumes])


@volume_app.command("inspect")
def volume_inspect(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., metavar="VOLUME", help="Volumes to inspect."),
) -> None:
    """Show volumes as JSON (docker's shape, plus UsedBy: the containers that bind it)."""
    state = state_of(ctx)
    state.json = True
    volumes = state.client().volumes
    print_json([volumes.get(n).to_json() for n in names])


@volume_app.command("rm")
def volume_rm(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., metavar="VOLUME", help="Volumes to remove."),
    force: bool = typer.Option(
        False, "-f", "--force", help="No error for a volume that does not exist (one in use stays)."
    ),
) -> None:
    """Remove volumes and their data. A volume a container binds (running or not) is refused,
    even with -f, as docker does: remove the container first."""
    volumes = state_of(ctx).client().volumes
    for_each(names, lambda n: volumes.remove(n, force), echo=True)


@volume_app.command("prune")
def volume_prune(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "-a", "--all", help="Also named volumes (without it only anonymous ones, as docker's)."
    ),
    filters: list[str] = typer.Option(
        [],
        "--filter",
        metavar="KEY=VALUE",
        help="Only volumes that match (repeatable, all must hold): label=KEY or label=KEY=VALUE, "
        "label!=KEY or label!=KEY=VALUE (without it), all=true (as -a).",
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove the anonymous volumes no container binds (with -a every unused one), with their data."""
    from ..listfilters import VOLUME_PRUNE_KEYS, parse_list_filters

    state = state_of(ctx)
    state.json = json_out
    only = parse_list_filters(filters, VOLUME_PRUNE_KEYS)
    all_ = all_ or bool(only.all)
    if not force:
        what = "all local volumes" if all_ else "all anonymous local volumes"
        confirm_or_refuse(
            f"WARNING! This will remove {what} not used by at least one container. "
            "Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    names, size = state.client().volumes.prune(not all_, only)
    if json_out:
        print_json({"volumes": names, "reclaimed": size})
        return
    echo_volumes(names)
    typer.echo(f"Total reclaimed space: {human_size(size)}")


def echo_volumes(names: list[str]) -> None:
    """docker's "Deleted Volumes:" list, shared with ``system prune --volumes``."""
    if names:
        typer.echo("Deleted Volumes:")
        for name in names:
            typer.echo(name)
        typer.echo("")
