"""How a container's last run ended: ``STATE/NAME.json``, written by the unit's post step.

Its own small module (standard library only) so that the post step, which runs on every stop,
records an exit without loading the store, the spec and the image code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ExitRecord:
    """How a container's last run ended, kept after its unit is gone (``ps -a``, ``inspect``)."""

    exit_code: int
    result: str
    finished: str


def path(state: Path, name: str) -> Path:
    return state / f"{name}.json"


def load(state: Path, name: str) -> ExitRecord | None:
    try:
        data: dict[str, Any] = json.loads(path(state, name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return ExitRecord(int(data["exit_code"]), str(data.get("result", "")), str(data.get("finished", "")))


def write(state: Path, name: str, record: ExitRecord) -> None:
    """Atomically (a reader sees the old record or the new one, never half of one)."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = state / f".{name}.json.tmp"
    tmp.write_text(json.dumps(record.__dict__) + "\n")
    os.replace(tmp, path(state, name))


def clear(state: Path, name: str) -> None:
    path(state, name).unlink(missing_ok=True)
