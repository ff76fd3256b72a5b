"""The entry point of bin/nspawnctl and ``python -m nspawnctl``: ``--version`` before any import.

Python start-up is most of what ``nspawnctl --version`` costs, so this module imports only ``sys``
and the package (whose ``__init__`` imports nothing); every other command goes on to
:func:`nspawnctl.cli.app.main`, which builds the typer app with only the command group named on
the command line.
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
    from .app import main as app_main

    app_main(argv)
