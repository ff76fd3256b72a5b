"""Health checks and auto-update, as podman spells them: ``healthcheck run``, ``auto-update``."""

from __future__ import annotations

import typer

from .app import State, state_of
from .output import err, print_json, table
from .registry import authfile_option, parse_bool, tls_verify_option


def register(app: typer.Typer) -> None:
    healthcheck = typer.Typer(
        name="healthcheck",
        help="Run containers' health checks by hand (systemd timers run them on their own).",
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
    )
    healthcheck.command("run")(run)
    app.add_typer(healthcheck)
    app.command("auto-update")(auto_update)


def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="CONTAINER", help="A running container with a health check."),
) -> None:
    """Run the container's health check once now and record it, as its timer does. Prints healthy
    or unhealthy; exit 0 when this check passed, 1 when it failed."""
    from ..errors import ContainerNotRunning, InvalidArgument
    from ..health import run_check

    state = state_of(ctx)
    client = state.client()
    spec = client.containers.store.get(client.containers.store.resolve(name))
    if spec.health is None:
        raise InvalidArgument(
            f"container {spec.name} has no health check",
            hint="create it with --health-cmd, or from an image with a HEALTHCHECK",
        )
    result = run_check(state.paths(), spec.name)
    if result is None:
        raise ContainerNotRunning(
            f"container {spec.name} is not running", hint=f"start it first: nspawnctl start {spec.name}"
        )
    passed = bool(result.log) and result.log[-1].exit_code == 0
    typer.echo("healthy" if passed else "unhealthy")
    raise typer.Exit(0 if passed else 1)


def auto_update(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only check for newer images (UPDATED says pending); change nothing."
    ),
    rollback: bool = typer.Option(
        True,
        "--rollback/--no-rollback",
        help="Go back to the old image when the updated container fails to start or turn healthy.",
    ),
    timeout: float = typer.Option(
        120.0,
        "--timeout",
        metavar="SECONDS",
        help="How long an updated container has to turn healthy (or, without a check, keep running).",
    ),
    verify: str = typer.Option(
        "signature",
        "--verify",
        metavar="MODE",
        help="Release-URL images: signature (the default), checksum or no, as for pull.",
    ),
    ca_cert: str = typer.Option(None, "--ca-cert", metavar="FILE", help="CA bundle for HTTPS (PEM)."),
    tls_verify: str = tls_verify_option(),
    authfile: str = authfile_option(),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
    install_timer: bool = typer.Option(
        False,
        "--install-timer",
        help="Instead of updating now: write nspawnctl-auto-update.service and .timer to "
        "/etc/systemd/system (running this nspawnctl, by its absolute path, with the other options "
        "given here), reload systemd, enable and start the daily timer.",
    ),
    uninstall_timer: bool = typer.Option(
        False, "--uninstall-timer", help="Stop and disable the timer and remove both units."
    ),
) -> None:
    """Update running containers marked for it (AutoUpdate=registry|local in their definition, set
    by --auto-update) to newer verified images: pull, recreate on the new image, start, and roll
    back to the old image when the container does not come up healthy. Run daily by
    nspawnctl-auto-update.timer once installed with --install-timer."""
    import math
    from pathlib import Path

    from ..autoupdate import auto_update as update
    from ..errors import InvalidArgument
    from ..pull import PullOptions

    state = state_of(ctx)
    state.json = json_out
    if not math.isfinite(timeout) or not 0 < timeout <= 24 * 3600:
        raise InvalidArgument(f"invalid --timeout {timeout}", hint="seconds, more than 0, at most a day")
    if install_timer or uninstall_timer:
        if (install_timer and uninstall_timer) or dry_run:
            raise InvalidArgument(
                "--install-timer, --uninstall-timer and --dry-run exclude each other",
                hint="give one of them",
            )
        args = [
            *(["--no-rollback"] if not rollback else []),
            *(["--timeout", f"{timeout:g}"] if timeout != 120.0 else []),
            *(["--verify", verify] if verify != "signature" else []),
            *(["--ca-cert", str(Path(ca_cert).absolute())] if ca_cert else []),
            *(["--tls-verify", tls_verify] if tls_verify != "true" else []),
            *(["--authfile", str(Path(authfile).absolute())] if authfile else []),
        ]
        _timer(state, install_timer, args)
        return
    client = state.client()
    paths = state.paths()
    options = PullOptions(
        verify=verify,
        ca_cert=ca_cert,
        tls_verify=parse_bool("--tls-verify", tls_verify),
        auth_file=Path(authfile) if authfile else paths.auth,
        policy_file=paths.policy,
        notify=lambda text: err(f"nspawnctl: {text}"),
    )
    rows = update(client, options, dry_run=dry_run, rollback=rollback, timeout=timeout)
    if json_out:
        print_json([r.to_json() for r in rows])
    else:
        table(
            ["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"],
            [[r.unit, r.container, r.image, r.policy, r.updated] for r in rows],
        )
        for r in rows:
            if r.error:
                err(f"nspawnctl: {r.container}: {r.error}")
    if any(r.updated == "failed" for r in rows):
        raise typer.Exit(125)


def _timer(state: State, install: bool, args: list[str]) -> None:
    """--install-timer / --uninstall-timer; the global --pool/--store go into the service too."""
    from ..autoupdate_timer import install as install_units
    from ..autoupdate_timer import uninstall
    from ..run.persist import unit_dir

    client = state.client()
    if not install:
        removed = uninstall(client, unit_dir())
        typer.echo(
            f"Removed {', '.join(str(p) for p in removed)}" if removed else "The timer was not installed"
        )
        return
    from pathlib import Path

    places = [
        *(["--pool", str(Path(state.pool).absolute())] if state.pool else []),
        *(["--store", str(Path(state.store).absolute())] if state.store else []),
    ]
    units = install_units(client, [*places, "auto-update", *args], unit_dir())
    typer.echo(f"Wrote {units.service} and {units.timer}; nspawnctl-auto-update.timer enabled and started")
