"""Image commands: import, images, tag, rmi, image inspect|ls|rm."""

from __future__ import annotations

import typer

from .app import for_each, state_of
from .output import ago, human_size, print_json, table

image_app = typer.Typer(help="Manage images.", no_args_is_help=True, rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("images")(images)
    app.command("tag")(tag)
    app.command("rmi")(rmi)
    app.add_typer(image_app, name="image")
    image_app.command("inspect")(image_inspect)
    image_app.command("ls")(images)
    image_app.command("rm")(rmi)


def import_(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        metavar="FILE|DIR|-",
        help="A rootfs tarball (.tar, .tar.gz, .tar.xz, .tar.zst), '-' for stdin, or a directory.",
    ),
    name: str = typer.Argument(
        None, metavar="NAME[:TAG]", help="NAME[:TAG] to give the image (tag defaults to 'latest')."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the new image as JSON."),
) -> None:
    """Import a root filesystem as a read-only image.

    The image ID is the SHA-256 of the uncompressed tar stream, so importing the same content again
    creates nothing new (it only adds NAME). Members that would land outside the image (.., links
    pointing out) are refused.
    """
    state = state_of(ctx)
    state.json = json_out
    image = state.client().images.import_file(source, name)
    if json_out:
        print_json(image.to_json())
    else:
        typer.echo(image.id)


def images(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List images."""
    state = state_of(ctx)
    state.json = json_out
    imgs = state.client().images.list()
    if json_out:
        print_json([i.to_json() for i in imgs])
        return
    if quiet:
        for i in imgs:
            typer.echo(i.short_id)
        return
    rows = []
    for i in imgs:
        for ref in i.refs or ["<none>:<none>"]:
            repo, _, tag = ref.rpartition(":")
            rows.append([repo, tag, i.short_id, ago(i.created), human_size(i.size)])
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)


def tag(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="IMAGE", help="Existing image (NAME[:TAG] or ID)."),
    target: str = typer.Argument(..., metavar="NAME[:TAG]", help="New NAME[:TAG] for it."),
) -> None:
    """Give an image another name."""
    state_of(ctx).client().images.tag(source, target)


def rmi(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="IMAGE", help="Images to remove (NAME[:TAG] or ID)."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove even if containers were made from it."),
) -> None:
    """Remove images (a name removes that tag; the image goes with its last tag)."""
    client = state_of(ctx).client()

    def remove(text: str) -> None:
        untagged, deleted = client.images.remove(text, force=force)
        for r in untagged:
            typer.echo(f"Untagged: {r}")
        if deleted:
            typer.echo(f"Deleted: {text}")

    for_each(refs, remove, echo=False)


def image_inspect(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="IMAGE", help="Images to inspect."),
    json_out: bool = typer.Option(True, "--json/--no-json", help="JSON output (the default)."),
) -> None:
    """Show images' records as JSON."""
    state = state_of(ctx)
    state.json = True
    client = state.client()
    print_json([client.images.get(i).to_json() for i in refs])
