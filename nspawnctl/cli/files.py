"""``cp``, ``commit`` and ``export``: files and whole filesystems in and out of containers and images."""

from __future__ import annotations

import typer

from ..errors import InvalidArgument
from .app import state_of
from .output import print_json
from .transfer import change_option


def register(app: typer.Typer) -> None:
    app.command("cp")(cp)
    app.command("commit")(commit)
    app.command("export")(export)


def cp(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., metavar="SRC", help="NAME:PATH in a container, a host path, or '-' (a tar on stdin)."
    ),
    dest: str = typer.Argument(
        ..., metavar="DEST", help="NAME:PATH in a container, a host path, or '-' (a tar to stdout)."
    ),
    archive: bool = typer.Option(
        False,
        "-a",
        "--archive",
        help="Keep the source's numeric owners (default: root in a container, you on the host).",
    ),
    follow_link: bool = typer.Option(False, "-L", "--follow-link", help="Copy what a symlink SRC points to."),
) -> None:
    """Copy files between a container (running or stopped) and the host, as docker cp does.

    A directory is copied recursively; an existing directory DEST receives SRC under its name,
    or only its contents when SRC ends with '/.'; a missing DEST becomes the copy. Modes, times,
    symlinks and extended attributes are kept. Paths in the container are resolved inside its
    root, as a chroot would: no symlink or '..' there leads out of it.

    cp to the host drops setuid/setgid bits, file capabilities (security.* and trusted.*
    xattrs) and refuses device nodes, with or without --archive; copy to '-' for a faithful tar.
    """
    from .. import files

    files.copy(state_of(ctx).client(), src, dest, archive=archive, follow_link=follow_link)


def commit(
    ctx: typer.Context,
    container: str = typer.Argument(..., metavar="CONTAINER", help="The container (running or stopped)."),
    ref: str = typer.Argument(
        None, metavar="IMAGE[:TAG]", help="Name for the new image (tag defaults to 'latest')."
    ),
    message: str = typer.Option(None, "-m", "--message", help="A comment recorded in the image's origin."),
    json_out: bool = typer.Option(False, "--json", help="Print the new image as JSON."),
    change: list[str] = change_option(),
) -> None:
    """Make a new read-only image of a container's files (an atomic btrfs snapshot, so a running
    container needs no pause). 'run IMAGE' then runs what the container ran: its entrypoint,
    command, environment, working directory and user, with --change instructions applied over
    them (ENV and LABEL add to what is there, EXPOSE and VOLUME add up). Prints the new image ID."""
    from .. import files

    state = state_of(ctx)
    state.json = json_out
    configure = None
    if change:
        from ..imagechanges import parse

        configure = parse(change).apply  # a bad one refuses before anything is made
    image = files.commit(state.client(), container, ref, message, configure=configure)
    if json_out:
        print_json(image.to_json())
    else:
        typer.echo(image.id)


def export(
    ctx: typer.Context,
    what: str = typer.Argument(
        ..., metavar="IMAGE|CONTAINER", help="An image, or a container (which wins on a name clash)."
    ),
    output: str = typer.Option(None, "-o", "--output", metavar="FILE", help="Write to FILE ('-': stdout)."),
    fmt: str = typer.Option(
        "tar",
        "--format",
        metavar="tar|btrfs-send",
        help="tar (default): the root filesystem; btrfs-send: a btrfs send stream.",
    ),
    parent: str = typer.Option(
        None,
        "--parent",
        metavar="IMAGE",
        help="With --format btrfs-send: only the difference to IMAGE, which must be an ancestor "
        "(the receiving side needs it).",
    ),
) -> None:
    """Write an image's or a container's root filesystem to a file or stdout.

    A tar keeps numeric owners, modes, extended attributes, hard links, device nodes and sparse
    files; 'nspawnctl import' turns it back into an image with the same files. A btrfs send
    stream is received by 'nspawnctl import' on a btrfs host (incremental ones need their parent
    image imported there first). A container is exported from an atomic snapshot.
    """
    import sys

    from .. import files

    client = state_of(ctx).client()
    if output is None or output == "-":
        if output is None and sys.stdout.isatty():
            raise InvalidArgument(
                "refusing to write an archive to a terminal", hint="use -o FILE or redirect stdout"
            )
        sys.stdout.flush()
        files.export(client, what, sys.stdout.buffer, format=fmt, parent=parent)
        return
    files.export(client, what, output, format=fmt, parent=parent)
