"""``build``: an image from a Dockerfile and a context directory (nspawnctl.build)."""

from __future__ import annotations

from typing import Any

import typer

from ..errors import InvalidArgument
from .app import state_of


def register(app: typer.Typer) -> None:
    app.command("build")(build)


def _build_args(values: list[str]) -> dict[str, str]:
    """--build-arg KEY=VALUE words; a bare KEY is (as docker's) the value of KEY in the
    environment, skipped when unset. (Labels are labels.parse_labels'.)"""
    import os

    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not key:
            raise InvalidArgument(f"--build-arg {value!r} is not KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            rest = os.environ[key]
        out[key] = rest
    return out


def build(
    ctx: typer.Context,
    context: str = typer.Argument(..., metavar="CONTEXT", help="The directory whose files COPY and ADD see."),
    tags: list[str] = typer.Option(
        [], "-t", "--tag", metavar="NAME[:TAG]", help="Name the image (repeatable)."
    ),
    file: str = typer.Option(
        None, "-f", "--file", metavar="FILE", help="The Dockerfile (default: CONTEXT/Dockerfile; '-': stdin)."
    ),
    build_args: list[str] = typer.Option(
        [], "--build-arg", metavar="KEY=VALUE", help="A value for an ARG (repeatable)."
    ),
    labels: list[str] = typer.Option([], "--label", metavar="KEY=VALUE", help="Add a label (repeatable)."),
    target: str = typer.Option(
        None, "--target", metavar="STAGE", help="Build up to this stage (FROM ... AS STAGE)."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Accepted for docker's sake: nspawnctl build has no layer cache."
    ),
    pull: bool = typer.Option(False, "--pull", help="Pull the FROM image even when it is here."),
    rm: bool = typer.Option(True, "--rm/--no-rm", help="Accepted: intermediate images are always removed."),
) -> None:
    """Build an image from a Dockerfile, as docker build does (the classic builder).

    Supported: FROM (pulled when missing, as run --pull missing; scratch), RUN (shell and exec
    form, in a container of the step before), COPY and ADD of context files (--chown; ADD
    unpacks a local tar archive; no URLs), ENV, ARG, LABEL, WORKDIR, USER, CMD, ENTRYPOINT,
    EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK. Sources are resolved inside CONTEXT: no '..' or
    symlink there reaches other host files; .dockerignore is honoured. Multi-stage builds
    (FROM ... AS NAME, COPY --from=NAME|INDEX|IMAGE); the last stage is the image. Not
    supported: ONBUILD, SHELL, RUN --mount. Each step's result is an intermediate image,
    removed at the end; a failed build leaves no image and no container. No layer cache.
    """
    import os
    import sys
    from pathlib import Path

    from ..builder.parser import MAX_DOCKERFILE
    from ..builder.steps import BuildOptions
    from ..builder.steps import build as run_build
    from ..labels import parse_labels
    from .quickrun import pull_options

    del no_cache, rm
    state = state_of(ctx)
    root = Path(context)
    if not root.is_dir():
        raise InvalidArgument(f"the build context {context} is not a directory")
    if file == "-":
        raw = sys.stdin.buffer.read(MAX_DOCKERFILE + 1)
    else:
        path = Path(file) if file else root / "Dockerfile"
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_DOCKERFILE + 1)
        except OSError as e:
            raise InvalidArgument(
                f"cannot read the Dockerfile {path}: {e.strerror}", hint="give it with -f FILE"
            ) from None
    if len(raw) > MAX_DOCKERFILE:
        raise InvalidArgument(f"the Dockerfile is larger than {MAX_DOCKERFILE} bytes")
    options = BuildOptions(
        tags=list(tags),
        build_args=_build_args(build_args),
        labels=parse_labels(labels, "--label"),
        pull="always" if pull else "missing",
        target=target or None,
        pull_options=pull_options(state.paths()),  # type: ignore[arg-type]
    )

    def emit(text: str) -> None:
        if not quiet:
            sys.stdout.write(text)
            sys.stdout.flush()

    client = state.client()
    text = raw.decode(errors="replace")

    async def go(bus: Any) -> Any:
        return await run_build(client, bus, Path(os.path.abspath(root)), text, options, emit)

    image = client.run(go)
    if quiet:
        typer.echo(image.id)
