"""Declared containers: ``apply``, ``diff``, ``generate``, ``down`` (see nspawnctl.declare)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import state_of
from .output import err

PATH = typer.Argument(
    ..., metavar="FILE.nspawn|DIR", help="A definition, or a directory of them (every *.nspawn in it)."
)


def register(app: typer.Typer) -> None:
    for fn in (apply, diff, generate, down):
        app.command(fn.__name__)(fn)


def apply(ctx: typer.Context, path: str = PATH) -> None:
    """Create and start the containers the files define; restart only those whose definition changed.

    A container's name is its file's name (web.nspawn: web). The file is a systemd.nspawn(5) file
    with [X-Nspawnctl] Image=REF (pulled when missing here) and optionally Network=, Publish=
    (repeatable), Restart= and Enable=no; Parameters= in [Exec] is the whole command line (without
    it the image's entrypoint and command run). Every file is checked and every image found before
    anything changes: an error names FILE:LINE and leaves everything as it was. The containers
    are persistent (machinectl start NAME works too) and start at boot unless Enable=no.
    """
    from ..declare import Outcome
    from ..declare import apply as do_apply

    def report(o: Outcome) -> None:
        if o.error is not None:
            err(f"nspawnctl: error: {o.text}")
            if o.error.hint:
                err(f"hint: {o.error.hint}")
        else:
            typer.echo(o.text)

    outcomes = do_apply(state_of(ctx).client(), path, report, notify=lambda t: err(f"nspawnctl: {t}"))
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


def diff(
    ctx: typer.Context,
    path: str = PATH,
    exit_code: bool = typer.Option(
        False, "--exit-code", help="Exit 1 when something would change (as git diff --exit-code)."
    ),
) -> None:
    """Show which containers 'apply' would create or change, and how (nothing is pulled or changed).

    '+ NAME' would be created, '~ NAME' changed (its changed keys below it, old -> new); unchanged
    containers are not shown.
    """
    from ..declare import load, plan

    items = plan(state_of(ctx).client(), load(path), pull=False)
    changed = False
    for item in items:
        if item.action == "unchanged":
            continue
        changed = True
        if item.action == "create":
            more = "" if item.image else ", to be pulled"
            typer.echo(f"+ {item.definition.shown} (new, image {item.definition.image}{more})")
            continue
        if item.action == "recreate":
            old = item.installed.image_id if item.installed else "?"
            new = item.image.id if item.image else "to be pulled"
            typer.echo(f"~ {item.definition.shown} (new image {item.definition.image}: {old} -> {new})")
        else:
            typer.echo(f"~ {item.definition.shown}")
        for change in item.changes:
            typer.echo(f"    {change}")
    if changed and exit_code:
        raise typer.Exit(1)


def generate(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="An existing container."),
    output: Path = typer.Option(
        None, "-o", "--output", metavar="FILE", help="Write to FILE (default: standard output)."
    ),
) -> None:
    """Print a self-contained NAME.nspawn for an existing container, for 'apply' to make it again."""
    from ..declare import generate as do_generate

    text = do_generate(state_of(ctx).client(), name)
    if output is None:
        typer.echo(text, nl=False)
    else:
        from ..hostfile import open_output

        with open_output(output) as f:  # into a device or FIFO; a file only complete
            f.write(text.encode())


def down(ctx: typer.Context, path: str = PATH) -> None:
    """Stop and remove the containers the files name (snapshot, .nspawn file, boot-time unit).

    Names without a container are reported and skipped.
    """
    from ..declare import Outcome
    from ..declare import down as do_down

    def report(o: Outcome) -> None:
        if o.error is not None:
            err(f"nspawnctl: error: {o.text}")
        elif o.action == "missing":
            err(f"nspawnctl: {o.text}")
        else:
            typer.echo(o.text)

    outcomes = do_down(state_of(ctx).client(), path, report)
    if any(o.error for o in outcomes):
        raise typer.Exit(1)
