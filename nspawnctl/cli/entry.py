"""The entry point of bin/nspawnctl and ``python -m nspawnctl``: ``--version`` before any import.

Python start-up is most of what ``nspawnctl --version`` costs, so this module imports only ``sys``
and the package (whose ``__init__`` imports nothing). ``run`` in its common forms goes to
:mod:`nspawnctl.cli.quickrun` (no typer, no click), which leaves with ``os._exit`` once its output
is flushed: the interpreter's teardown of the library's modules is a tenth of a ``run --rm``.
Every other command goes on to :func:`nspawnctl.cli.app.main`, which builds the typer app with
only the command group named on the command line.
"""

import sys  # and no `from __future__ import`: that is a module to load too


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        # the same line the eager --version option of the full app prints (kept equal by a test)
        from .. import __version__

        try:
            sys.stdout.write(f"nspawnctl {__version__}\n")
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        sys.exit(0)
    if "run" in args:
        from . import quickrun

        quick = quickrun.parse(args)
        if quick is not None:
            code = quickrun.main(quick)
            _leave(code)
    from .app import main as app_main

    app_main(argv)


def _leave(code: int) -> None:
    """Flush our output and exit now: nothing left to tear down matters (no file half-written,
    the bus is closed by the kernel; what a kill could leave, the next command repairs)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)
