"""A health check's results and the container's health (docker's State.Health): the state machine
and its file. Out of :mod:`nspawnctl.health`, whose config half every container's definition needs
(so a foreground ``run`` loads it), because only ``inspect``, ``ps`` and the check itself use this
half: a frozen dataclass costs ~0.5-1 ms to define at import (see :mod:`nspawnctl.status`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .health import MAX_LOG_ENTRIES, MAX_OUTPUT, NS_PER_S

if TYPE_CHECKING:
    from pathlib import Path

    from .config import Paths
    from .health import HealthConfig


# -- the state machine --------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """One run of the check, as docker's State.Health.Log holds it."""

    start: str
    end: str
    exit_code: int
    output: str

    def to_docker(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}


@dataclass(frozen=True)
class HealthState:
    """A container's health as docker reports it (State.Health): status, streak and the last checks."""

    status: str = "starting"  # starting | healthy | unhealthy
    failing_streak: int = 0
    log: list[Result] = field(default_factory=list)
    started: float = 0.0  # when the container's unit started (epoch seconds): the start period's origin

    def to_docker(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [r.to_docker() for r in self.log],
        }


def truncate_output(data: bytes) -> str:
    """docker keeps the first 4096 bytes of a check's output."""
    return data[:MAX_OUTPUT].decode(errors="replace")


def advance(state: HealthState, result: Result, config: HealthConfig, now: float) -> HealthState:
    """docker's handleProbeResult: a pass makes it healthy; a failure counts toward ``retries``
    unless it happens in the start period before the first pass; the log keeps the last five."""
    log = [*state.log, result][-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        return replace(state, status="healthy", failing_streak=0, log=log)
    in_start_period = state.status == "starting" and now - state.started < config.start_period / NS_PER_S
    if in_start_period:
        return replace(state, log=log)
    streak = state.failing_streak + 1
    status = "unhealthy" if streak >= config.retries else state.status
    return replace(state, status=status, failing_streak=streak, log=log)


def action(before: HealthState, after: HealthState, config: HealthConfig) -> str | None:
    """What --health-on-failure does now: once, when the container turns unhealthy."""
    if config.on_failure == "none" or after.status != "unhealthy" or before.status == "unhealthy":
        return None
    return config.on_failure


def state_file(paths: Paths, name: str) -> Path:
    return paths.state / "health" / f"{name}.json"


def read_state(paths: Paths, name: str) -> HealthState | None:
    try:
        data = json.loads(state_file(paths, name).read_text())
        return HealthState(
            status=str(data["status"]),
            failing_streak=int(data["failing_streak"]),
            log=[Result(**r) for r in data.get("log", [])],
            started=float(data.get("started", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(paths: Paths, name: str, state: HealthState) -> None:
    """Atomically (a reader never sees half a file)."""
    path = state_file(paths, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, path)


def forget_state(paths: Paths, name: str) -> None:
    try:
        state_file(paths, name).unlink()
    except FileNotFoundError:
        pass
