"""``save`` and ``load`` (also ``image save|load``): images to and from docker-archive tars; the
``--change`` option of ``import`` and ``commit``."""

from __future__ import annotations

from typing import Any

import typer

from ..errors import InvalidArgument
from .app import state_of


def register(app: typer.Typer) -> None:
    app.command("save")(save)
    app.command("load")(load)


def change_option() -> Any:
    """``-c/--change`` of import and commit: docker's Dockerfile instructions for the image."""
    return typer.Option(
        [],
        "-c",
        "--change",
        metavar="INSTRUCTION",
        help="Apply a Dockerfile instruction to the image's run defaults (repeatable): CMD, "
        "ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, e.g. "
        "-c 'CMD [\"/app\"]' -c 'ENV MODE=prod'.",
    )


def save(
    ctx: typer.Context,
    images: list[str] = typer.Argument(..., metavar="IMAGE...", help="Images to save (NAME[:TAG] or ID)."),
    output: str = typer.Option(
        None,
        "-o",
        "--output",
        metavar="FILE",
        help="Write to FILE instead of stdout (a device or FIFO is written into, a regular file "
        "appears only complete).",
    ),
) -> None:
    """Save images to a tar archive (docker save's format), to stdout by default.

    'nspawnctl load' and 'docker load' take it back. Each image is one layer, a tar of its root as
    'export' writes it, under a config with its run defaults (command, entrypoint, environment,
    working directory, user, ports, volumes, labels, stop signal, health check); so a loaded
    image runs as the saved one did, under a new image ID. A NAME[:TAG] given becomes the
    image's tag in the archive; an ID gives none, as docker's. Each root is spooled on the pool
    first and the save stops before the pool's last 256 MiB.
    """
    import sys

    from .. import files

    client = state_of(ctx).client()
    if output is None or output == "-":
        if sys.stdout.isatty():
            raise InvalidArgument(
                "refusing to write an archive to a terminal", hint="use -o FILE or redirect stdout"
            )
        sys.stdout.flush()
        files.save(client, images, sys.stdout.buffer)
        return
    files.save(client, images, output)


def load(
    ctx: typer.Context,
    input_: str = typer.Option(
        None,
        "-i",
        "--input",
        metavar="FILE",
        help="Read from FILE (a tar, possibly compressed) instead of stdin.",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress lines on stderr."),
) -> None:
    """Load images from a tar archive 'docker save' or 'nspawnctl save' wrote (possibly gzip,
    xz, zstd or bzip2 compressed), from stdin by default.

    Prints 'Loaded image: NAME:TAG' for each tag, or 'Loaded image ID: ID' for an untagged
    image. Each layer is checked against the config's diff ID and unpacked by the pull's own
    safe extractor; each image appears whole, with all its tags, or not at all. Counts are
    bounded (images, members, layers per image) and a piped archive is spooled within the
    pool's free space.
    """
    import sys

    from .. import files
    from ..store.dockerarchive import familiar

    client = state_of(ctx).client()

    def notify(text: str) -> None:
        if not quiet:
            typer.echo(text, err=True)

    if input_ is None or input_ == "-":
        if sys.stdin.isatty():
            raise InvalidArgument(
                "refusing to read an archive from a terminal", hint="use -i FILE or redirect stdin"
            )
        loaded = files.load(client, sys.stdin.buffer, notify)
    else:
        loaded = files.load(client, input_, notify)
    for item in loaded:
        for tag in item.tags:
            typer.echo(f"Loaded image: {familiar(tag)}")
        if not item.tags:
            typer.echo(f"Loaded image ID: {item.image.id}")
