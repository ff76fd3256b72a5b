"""Old name of the hook's post step (``python -m nspawnctl.run.hook post``), kept because units of
containers started by an older nspawnctl still run ``python -m nspawnctl.run.poststop``."""

from __future__ import annotations

import argparse

from ..config import Paths
from .hook import exit_code_from_env, own_unit, post

__all__ = ["exit_code_from_env", "main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nspawnctl-poststop")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--remove", action="store_true")
    ap.add_argument("name")
    args = ap.parse_args(argv)
    unit = own_unit()
    if unit is None:
        from .units import unit_name

        unit = unit_name(args.name)
    return post(Paths.from_env(args.pool, args.store), args.name, args.remove, unit)


if __name__ == "__main__":
    raise SystemExit(main())
