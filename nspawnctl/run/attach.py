"""``attach``: follow a running container's output until its payload exits.

A detached container's stdout and stderr go to the journal (a stream each, see run/streams.py),
not to a terminal or pipe anyone could take over: attaching follows the journal from now, as
``logs -f --tail 0`` would, and ends with the payload's exit code when it stops (docker's
attach). Its stdin is /dev/null (systemd gives a detached unit nothing else), so there is no
input to forward: ``-i`` cannot be honoured after the start, unlike docker's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ContainerNotRunning
from ..run.units import LOG_FIELD
from .runtime import Runtime, payload_exited
from .wait import exit_code_of, ref_unit

if TYPE_CHECKING:
    from ..store.containers import ContainerStore


async def attach(
    rt: Runtime,
    store: ContainerStore,
    name: str,
    write: Callable[[bytes], None],
    write_err: Callable[[bytes], None],
) -> int:
    """Write the container's output lines (stdout to ``write``, stderr to ``write_err``) until
    its payload exits; returns the exit code."""
    from ..systemd import journal
    from ..systemd.journal import Entry

    spec = store.get(name)
    state = (await rt.states([name])).get(name)
    if state is None or not state.running:
        raise ContainerNotRunning(
            f"cannot attach to container {name}: it is not running",
            hint=f"start it first (nspawnctl start {name}), or see its output: nspawnctl logs {name}",
        )
    unit = state.name
    refd = await ref_unit(rt, unit)

    def emit(entry: Entry) -> None:
        (write_err if entry.stderr else write)(entry.message + b"\n")

    try:
        matches = [f"{LOG_FIELD}={spec.id}", "_TRANSPORT=stdout"]
        # from now: a timestamp (seek_realtime), not --lines=0, whose tail seek read nothing new
        # when the container had no output yet
        since = f"@{time.time():.6f}"
        await journal.follow(matches, emit, rt.manager.wait_unit(unit, payload_exited), since=since)
    except BaseException:
        if refd:
            await rt.manager.unref(unit)
        raise
    return await exit_code_of(rt, store, name, unit, refd)
