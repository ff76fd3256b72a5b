"""docker's time arguments of ``logs --until``: relative (10m, 2h ago), RFC 3339, Unix time."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from .errors import InvalidArgument

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGO = 100 * 365 * 86400  # seconds: more is a typo (and would reach before 1970)


def parse_until(text: str, now: float | None = None) -> int:
    """The moment ``text`` names, in µs since the epoch: ``10m``/``2h``/``30s``/``1d`` ago (docker's
    Go durations, also combined: ``1h30m``), ``2026-01-02T10:00:00Z`` or ``2026-01-02 10:00``
    (no zone: UTC), or a Unix time ``1767348000[.5]``."""
    t = text.strip()
    now = time.time() if now is None else now
    bad = InvalidArgument(
        f"invalid time {text[:60]!r}", hint="use 10m (ago), 2026-01-02T10:00:00Z or a Unix time"
    )
    if re.fullmatch(r"([0-9]{1,9}[smhd])+", t):
        ago = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)([smhd])", t))
        if ago > MAX_AGO:
            raise bad
        return int((now - ago) * 1_000_000)
    if re.fullmatch(r"[0-9]{1,11}(\.[0-9]{1,9})?", t):
        whole, _, frac = t.partition(".")
        return int(whole) * 1_000_000 + int((frac + "000000")[:6])
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise bad from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)
