"""Rendering: docker-style tables and durations on stdout, or JSON; diagnostics go to stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def interactive() -> bool:
    """Ask only when someone can answer: a script must fail, not hang or guess."""
    return sys.stdin.isatty()


def confirm_or_refuse(question: str, refusal: str, hint: str) -> None:
    """Ask on a terminal; a script without the flag that skips the question fails (never hangs).

    Raises InvalidArgument(refusal, hint) without a terminal, and exits 1 when the answer is no.
    """
    from ..errors import InvalidArgument

    if not interactive():
        raise InvalidArgument(refusal, hint=hint)
    # Like typer.confirm(err=True), minus the space click's prompt leaves on stdout.
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        sys.stderr.write("nothing done\n")
        raise SystemExit(1)


def print_json(data: Any) -> None:
    import json  # --json only

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        sys.stdout.write("   ".join(cells).rstrip() + "\n")


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration wording."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def since(iso: str | None, now: datetime | None = None) -> float:
    if not iso:
        return 0.0
    now = now or datetime.now(UTC)
    return max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())


def ago(iso: str | None) -> str:
    return f"{human_duration(since(iso))} ago" if iso else ""


DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB")
BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: int, binary: bool = False) -> str:
    """A size as docker prints it: decimal units with three significant digits (images, disk and
    I/O: 1.23kB), or with ``binary`` units of 1024 with four (memory in stats: 1.5MiB)."""
    base, digits, units = (1024, 4, BINARY_UNITS) if binary else (1000, 3, DECIMAL_UNITS)
    size = float(n)
    for unit in units:
        if size < base or unit == units[-1]:
            return f"{size:.{digits}g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= base
    return f"{n}B"


def err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def print_formatted(template_text: str, objects: Sequence[Any]) -> None:
    """``inspect -f TEMPLATE``: the template once per object, each on its own line (as docker)."""
    from ..gotemplate import expand_escapes, parse

    template = parse(expand_escapes(template_text))
    for obj in objects:
        sys.stdout.write(template.execute(obj) + "\n")


def image_view(record: dict[str, Any]) -> dict[str, Any]:
    """An image's record (``Image.to_json``) plus docker's inspect names for it (Id, RepoTags,
    Created, Size, Config.Labels/Env/Cmd/Entrypoint/WorkingDir/User/ExposedPorts/Volumes/
    StopSignal), so ``inspect -f '{{.Config.Labels}}'`` reads as on docker; the record's own
    keys stay as they are."""
    d = record.get("defaults") or {}
    config: dict[str, Any] = {
        "Labels": dict(d.get("labels") or {}),
        "Env": list(d.get("env") or []),
        "Cmd": list(d.get("command") or []) or None,
        "Entrypoint": list(d.get("entrypoint") or []) or None,
        "WorkingDir": d.get("workdir") or "",
        "User": d.get("user") or "",
        "ExposedPorts": {p.split(":")[-1]: {} for p in d.get("ports") or []},
        "Volumes": {v: {} for v in d.get("volumes") or []},
        "StopSignal": d.get("stop_signal") or "",
    }
    return {
        **record,
        "Id": record.get("id"),
        "RepoTags": list(record.get("refs") or []),
        "Created": record.get("created"),
        "Size": record.get("size"),
        "Config": config,
    }
