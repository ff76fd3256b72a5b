"""The ``nspawnctl`` command: global options, the command groups, and the one error handler.

Errors become one line on stderr (plus a hint) and their exit code; with ``--json`` an error is
one JSON object on stdout instead, so scripts always get valid JSON and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from .usage import NspawnctlGroup, usage_of

if TYPE_CHECKING:
    from ..client import Client
    from ..config import Paths


@dataclass
class State:
    """Global options, gathered once and handed to every command through click's context."""

    pool: str | None = None
    store: str | None = None
    json: bool = False
    command_path: str = "nspawnctl"  # the (sub)command being parsed, named in usage hints

    def paths(self) -> Paths:
        from ..config import Paths

        return Paths.from_env(self.pool, self.store)

    def client(self) -> Client:
        from ..client import Client
        from .output import err

        return Client(self.paths(), notify=lambda text: err(f"nspawnctl: {text}"))


# Plain click help everywhere. typer <= 0.15 escapes "[required]" for rich whenever rich is
# importable, even with rich_markup_mode=None, and prints the backslashes; make it look absent.
if getattr(typer.core, "rich", None) is not None:
    setattr(typer.core, "rich", None)  # noqa: B010  (typer.core.rich is not in its type stubs)

app = typer.Typer(
    name="nspawnctl",
    cls=NspawnctlGroup,
    help="Run containers with systemd-nspawn, btrfs and machined: docker-like commands, "
    "systemd as the daemon.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_callback(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"nspawnctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    pool: str = typer.Option(
        None,
        "--pool",
        envvar="NSPAWNCTL_POOL",
        metavar="DIR",
        help="Container pool (machined's, default /var/lib/machines).",
    ),
    store: str = typer.Option(
        None,
        "--store",
        envvar="NSPAWNCTL_STORE",
        metavar="DIR",
        help="Image store on the same btrfs (default /var/lib/nspawnctl).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    state = ctx.ensure_object(State)
    state.pool, state.store = pool, store


def state_of(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def for_each(names: list[str], action: Callable[[str], object], echo: bool = True) -> None:
    """Apply ``action`` to every name like docker: go on after a failure, report it, exit 1 at the end.
    With a single name its error is raised as it is (one message, its own exit code)."""
    from ..errors import NspawnctlError

    failed = 0
    for n in names:
        try:
            action(n)
        except NspawnctlError as e:
            if len(names) == 1:
                raise
            sys.stderr.write(f"nspawnctl: error: {e.message}\n")
            failed += 1
            continue
        if echo:
            typer.echo(n)
    if failed:
        raise typer.Exit(1)


# Every top-level command, by the cli module that registers it (modules in registration order).
# A command runs with only its own module registered: the others' imports and typer's work for
# their ~40 commands are skipped (a unit test keeps this table equal to what the modules register).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "images": ("pull", "import", "images", "tag", "rmi", "image"),
    "containers": (
        "create", "run", "exec", "start", "stop", "kill", "restart", "rm", "ps", "logs", "inspect",
    ),
    "pool": ("pool",),
    "trust": ("trust",),
    "registry": ("login", "logout"),
    "files": ("cp", "commit", "export"),
    "persist": ("enable", "disable"),
    "declare": ("apply", "diff", "generate", "down"),
    "system": ("version", "info", "system", "container"),
    "lifecycle": ("wait", "rename", "pause", "unpause", "update", "top", "stats", "events", "attach"),
    "volumes": ("volume",),
    "networks": ("network",),
    "ports": ("port",),
    "health": ("auto-update", "healthcheck"),
    "build": ("build",),
    "transfer": ("save", "load"),
}
# The global options (main_options) that take a value; the others are flags.
GLOBAL_VALUE_OPTIONS = ("--pool", "--store")
GLOBAL_FLAGS = ("--version", "-h", "--help")
# typer's shell-completion options: they act before any command runs, so command_of leaves them to
# click (every module registered: the completion script completes every command).
COMPLETION_OPTIONS = ("--install-completion", "--show-completion")


def command_of(args: list[str]) -> str | None:
    """The command named in ``args`` after the global options, or None when click must decide
    (no command, an unknown option, ``--``)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_VALUE_OPTIONS:
            i += 2
        elif arg in GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in GLOBAL_VALUE_OPTIONS)):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def _register(command: str | None = None) -> None:
    """Register the module of ``command`` if it is one of ours, else every module (--help, a typo)."""
    from importlib import import_module

    modules = [m for m, names in COMMAND_MODULES.items() if command in names] or list(COMMAND_MODULES)
    for module in modules:
        import_module(f".{module}", __package__).register(app)


def main(argv: list[str] | None = None) -> None:
    """The entry point: one place turns every failure into a message and an exit code."""
    from ..errors import NspawnctlError

    _register(command_of(sys.argv[1:] if argv is None else argv))
    state = State()
    try:
        # typer returns (not raises) the code of typer.Exit when standalone_mode is off
        code = app(args=argv, obj=state, standalone_mode=False, prog_name="nspawnctl")
    except NspawnctlError as e:
        _report(state, e.code, e.message, e.hint)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:
        _report(state, "os-error", f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), None)
        sys.exit(125)
    except Exception as e:
        # click's exceptions (typer's private copy of click since 0.26): known by their shape
        usage = usage_of(e, state.command_path)
        if usage is not None:
            _report(state, "usage", usage.message, usage.hint)
            sys.exit(2)
        exit_code, fmt = getattr(e, "exit_code", None), getattr(e, "format_message", None)
        if not isinstance(exit_code, int) or not callable(fmt):
            raise
        _report(state, "error", str(fmt()), None)
        sys.exit(125 if exit_code == 1 else exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _report(state: State, code: str, message: str, hint: str | None) -> None:
    """One error, said once: the JSON envelope on stdout under --json, else a line and a hint on stderr."""
    if state.json:
        import json

        sys.stdout.write(json.dumps({"error": {"code": code, "message": message, "hint": hint}}) + "\n")
        sys.stdout.flush()
        return
    from .quickrun import report

    report(message, hint)
