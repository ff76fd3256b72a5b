"""``network create|ls|inspect|rm|prune|connect|disconnect``: docker's user-defined networks, on
nspawnctl's zones (net/networks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from .app import for_each, state_of
from .output import confirm_or_refuse, print_json, table
from .usage import NspawnctlGroup

if TYPE_CHECKING:
    from ..client import Client

network_app = typer.Typer(
    help="Manage networks (zones: a bridge its containers share, reaching each other by name).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=NspawnctlGroup,
)


def register(app: typer.Typer) -> None:
    app.add_typer(network_app, name="network")


@network_app.command("create")
def network_create(
    ctx: typer.Context,
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help="Network name (letters, digits, _ . -; a longer one than 12 gets a zone of its ID).",
    ),
    driver: str = typer.Option("bridge", "-d", "--driver", help="Only bridge (a zone's bridge vz-NAME)."),
    subnet: str = typer.Option(
        None,
        "--subnet",
        metavar="CIDR",
        help="IPv4 subnet (default: networkd picks a free /24 at first use).",
    ),
    internal: bool = typer.Option(
        False, "--internal", help="Refused: nspawnctl cannot confine a zone's traffic to its subnet."
    ),
    label: list[str] = typer.Option([], "--label", metavar="KEY=VALUE", help="Set metadata (repeatable)."),
) -> None:
    """Create a network and print its ID. Containers join it with --network NAME; its bridge is
    made when the first one starts."""
    from ..errors import InvalidArgument
    from ..net import networks
    from ..store.volumes import parse_labels

    if driver != "bridge":
        raise InvalidArgument(
            f"driver {driver!r} is not supported", hint="nspawnctl networks use --driver bridge"
        )
    decl = networks.create(state_of(ctx).paths(), name, subnet, internal, parse_labels(label))
    typer.echo(decl.id)


@network_app.command("ls")
def network_ls(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show network IDs."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate the IDs."),
    filters: list[str] = typer.Option(
        [],
        "-f",
        "--filter",
        metavar="KEY=VALUE",
        help="Only networks that match (repeatable; one key's values ORed, but every label must "
        "hold; different keys ANDed): name=NAME, id=ID (part of it: . any character, [abc] classes, "
        "^/$ anchors), "
        "driver=bridge|host|null, type=builtin|custom, scope=local, dangling=true|false (without "
        "running containers; never a built-in one), label=KEY or label=KEY=VALUE.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array (as network inspect)."),
) -> None:
    """List networks: bridge, host and none (built in), then the declared networks and the zones
    containers use."""
    from ..listfilters import NETWORK_KEYS, network_subject, parse_list_filters
    from ..net import networks

    state = state_of(ctx)
    state.json = json_out
    only = parse_list_filters(filters, NETWORK_KEYS)
    nets = [n.to_json() for n in networks.listing(state.client()) if only.matches(network_subject(n))]
    if json_out:
        print_json(nets)
        return
    if quiet:
        for n in nets:
            typer.echo(n["Id"] if no_trunc else str(n["Id"])[:12])
        return
    rows = [
        [str(n["Id"]) if no_trunc else str(n["Id"])[:12], str(n["Name"]), str(n["Driver"]), "local"]
        for n in nets
    ]
    table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows)


@network_app.command("inspect")
def network_inspect(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="NETWORK", help="Networks (name, ID or ID prefix)."),
) -> None:
    """Show networks as JSON, in docker's shape (IPAM, Containers with their addresses, Labels)."""
    state = state_of(ctx)
    state.json = True
    nets = _all(state.client())
    print_json([_find(nets, r) for r in refs])


@network_app.command("rm")
def network_rm(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="NETWORK", help="Networks to remove."),
    force: bool = typer.Option(False, "-f", "--force", help="No error for a network that does not exist."),
) -> None:
    """Remove declared networks; refused while a container is attached (running on it)."""
    from ..errors import InvalidArgument
    from ..net import networks

    paths = state_of(ctx).paths()

    def remove(ref: str) -> None:
        if ref in networks.BUILTIN:
            raise InvalidArgument(
                f"{ref} is a pre-defined network and cannot be removed", hint="remove your own networks only"
            )
        try:
            networks.remove(paths, ref)
        except networks.NetworkNotFound:
            if not force:
                raise

    for_each(refs, remove, echo=True)


@network_app.command("prune")
def network_prune(
    ctx: typer.Context,
    filters: list[str] = typer.Option(
        [],
        "--filter",
        metavar="KEY=VALUE",
        help="Only networks that match (repeatable, all must hold): until=TIME (created before: "
        "10m, 2h30m ago, 2026-01-02T10:00:00Z, a Unix time), label=KEY or label=KEY=VALUE, "
        "label!=KEY or label!=KEY=VALUE (without it).",
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
) -> None:
    """Remove every declared network no running container is attached to."""
    from ..listfilters import NETWORK_PRUNE_KEYS, parse_list_filters
    from ..net import networks

    only = parse_list_filters(filters, NETWORK_PRUNE_KEYS)
    if not force:
        confirm_or_refuse(
            "WARNING! This will remove all custom networks not used by at least one container. "
            "Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    removed = networks.prune(state_of(ctx).paths(), only)
    if removed:
        typer.echo("Deleted Networks:")
        for name in removed:
            typer.echo(name)


@network_app.command("connect")
def network_connect(
    ctx: typer.Context,
    network: str = typer.Argument(..., metavar="NETWORK"),
    container: str = typer.Argument(..., metavar="CONTAINER"),
    alias: list[str] = typer.Option([], "--alias", metavar="NAME", help="Another name on this network."),
) -> None:
    """Connect a stopped container to a network (its definition changes; it joins at its next
    start). A running container is refused: its namespace would have to move bridges."""
    from ..net import networks

    client = state_of(ctx).client()
    zone_name = networks.get(client.paths, network).zone
    client.run(lambda bus: networks.achange_membership(client, bus, container, zone_name, True, alias))


@network_app.command("disconnect")
def network_disconnect(
    ctx: typer.Context,
    network: str = typer.Argument(..., metavar="NETWORK"),
    container: str = typer.Argument(..., metavar="CONTAINER"),
) -> None:
    """Disconnect a stopped container from a network (it then has no network: --network none)."""
    from ..net import networks

    client = state_of(ctx).client()
    decl = networks.find(client.paths, network)
    zone_name = decl.zone if decl is not None else network
    client.run(lambda bus: networks.achange_membership(client, bus, container, zone_name, False))


def _all(client: Client) -> list[dict[str, object]]:
    from ..net import networks

    return [n.to_json() for n in networks.listing(client)]


def _find(nets: list[dict[str, object]], ref: str) -> dict[str, object]:
    from ..net import networks

    for n in nets:
        if ref in (n["Name"], n["Id"]):
            return n
    hits = [n for n in nets if str(n["Id"]).startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    raise networks.NetworkNotFound(
        f"network {ref} not found", hint="list networks with: nspawnctl network ls"
    )
