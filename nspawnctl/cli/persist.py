"""``enable`` / ``disable``: containers that start at boot, through systemd-nspawn@NAME.service."""

from __future__ import annotations

import typer

from .app import for_each, state_of

NAMES = typer.Argument(..., metavar="CONTAINER", help="Container names.")


def register(app: typer.Typer) -> None:
    app.command("enable")(enable)
    app.command("disable")(disable)


def enable(
    ctx: typer.Context,
    names: list[str] = NAMES,
    now: bool = typer.Option(False, "--now", help="Also start them now (under systemd-nspawn@NAME)."),
) -> None:
    """Start containers at boot and restart them on failure (at least; --restart=always keeps its
    policy). They run as systemd's systemd-nspawn@NAME.service with a drop-in nspawnctl writes, so
    'machinectl start|terminate NAME' and 'systemctl status systemd-nspawn@NAME' work on them too.
    A running container moves to that unit at its next start."""
    c = state_of(ctx).client().containers
    for_each(names, lambda n: c.enable(n, now=now))


def disable(
    ctx: typer.Context,
    names: list[str] = NAMES,
    now: bool = typer.Option(False, "--now", help="Also stop them now."),
) -> None:
    """Do not start containers at boot any more (their own restart policy applies again). They keep
    running until stopped, and 'machinectl start NAME' keeps working until 'nspawnctl rm'."""
    c = state_of(ctx).client().containers
    for_each(names, lambda n: c.disable(n, now=now))
