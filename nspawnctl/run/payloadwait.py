"""Wait until a container's PID 1 is its payload, not nspawn still setting it up.

nspawn tells systemd it is ready (the unit turns active, ``start`` returns) and machined knows the
leader some 150 ms before the leader, nspawn's forked child, has executed the payload (measured in
the test host). An ``exec`` in that window runs before the payload's first command (docker-py's
``run`` then ``exec_run("cat /test")`` of a file the payload writes first), and looks its command
up in a root nspawn has not finished. dockerd's start returns once the payload runs; so an exec
waits here, for that moment only. The test is the exec helper's own (``execenv.setting_up``),
which waits the same way before it copies the leader's confinement.
"""

from __future__ import annotations

import asyncio
import time

from .execenv import setting_up

POLL = 0.005
TIMEOUT = 5.0  # then go on regardless: the caller's command reports what it finds


async def payload_started(leader: int, timeout: float = TIMEOUT) -> None:
    """Return once ``leader`` has executed the payload (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while setting_up(leader) and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
