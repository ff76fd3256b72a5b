"""Wait until a container's PID 1 is its payload, not nspawn still setting it up.

nspawn tells systemd it is ready (the unit turns active, ``start`` returns) and machined knows the
leader some 150 ms before the leader, nspawn's forked child, has executed the payload (measured in
the test host). An ``exec`` in that window runs before the payload's first command (docker-py's
``run`` then ``exec_run("cat /test")`` of a file the payload writes first). dockerd's start
returns once the payload runs; so an exec waits here, for that moment only (one stat once it
runs): until the leader's executable is no longer the host's nspawn binary (compared by device
and inode, so a payload that is itself a systemd-nspawn of the container's is no match).
"""

from __future__ import annotations

import asyncio
import os
import time

POLL = 0.005
TIMEOUT = 5.0  # then go on regardless: the caller's command reports what it finds


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def still_nspawn(leader: int, nspawn: str) -> bool:
    """Whether ``leader`` still runs the host's ``nspawn`` binary (gone or unreadable: False)."""
    mine = _identity(nspawn)
    return mine is not None and _identity(f"/proc/{leader}/exe") == mine


async def payload_started(leader: int, nspawn: str, timeout: float = TIMEOUT) -> None:
    """Return once ``leader`` has executed the payload (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while still_nspawn(leader, nspawn) and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
