"""Run by a container unit's ExecStopPost: remember how the payload ended, remove ``--rm`` containers.

systemd forgets a unit's exit status once it is garbage-collected; ``ps -a`` and ``inspect`` still
need it. systemd passes the outcome in $EXIT_CODE/$EXIT_STATUS/$SERVICE_RESULT. Kept import-light:
it runs on every container stop.
"""

from __future__ import annotations

import argparse
import os
import signal
from datetime import UTC, datetime

from ..config import Paths
from ..store.containers import ContainerStore, ExitRecord
from ..store.pool import Pool


def exit_code_from_env(env: dict[str, str]) -> int:
    """Docker's convention: the payload's status, or 128+N when it died of signal N."""
    how, status = env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")
    if how == "exited":
        return int(status) if status.isdigit() else 1
    if how in ("killed", "dumped"):
        try:
            return 128 + int(signal.Signals[f"SIG{status}"])
        except KeyError:
            return 137
    return 0 if env.get("SERVICE_RESULT", "success") == "success" else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nspawnctl-poststop")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--remove", action="store_true")
    ap.add_argument("name")
    args = ap.parse_args(argv)
    store = ContainerStore(Pool(Paths.from_env(args.pool, args.store)))
    if args.remove:
        store.remove(args.name)
        return 0
    env = dict(os.environ)
    store.record_exit(
        args.name,
        ExitRecord(
            exit_code=exit_code_from_env(env),
            result=env.get("SERVICE_RESULT", ""),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
