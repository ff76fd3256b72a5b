"""The journal's copy of a run whose terminal or pipes the Docker API service holds (a container
made with ``Tty``/``OpenStdin``): its output reaches the service, not the unit's journal streams.

The service cannot write those lines itself: journald attributes every write on a stream to the
cgroup of the process that wrote it (its credentials ride along with each write since systemd
256), so they would be the service's own lines, without the container's ``LogExtraFields=`` by
which ``logs`` finds a container's output. Nor can a copier live in the container's unit:
``KillMode=mixed`` kills it the moment nspawn exits, before it has written the last lines. So
each stream gets a transient unit of its own: ``cat`` reading a pipe the service writes to, its
stdout a journal stream with the container's identifier, ``LogExtraFields=`` and priority (info
for stdout, err for stderr, as run/streams.py gives a run's own streams). ``cat`` ends when the
pipe does, that is when the run's output ends or the service goes; the unit is then collected.
``journalctl -u`` of the container's unit does not show these lines (they are the copy unit's);
``nspawnctl logs``, ``docker logs`` and ``journalctl NSPAWNCTL_CONTAINER_ID=ID`` do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .stdio import STDERR, STDOUT, write_all
from .units import LOG_RATE_BURST, LOG_RATE_INTERVAL_USEC, log_extra_field

if TYPE_CHECKING:
    from ..spec import ContainerSpec
    from ..systemd.bus import Bus
    from ..systemd.manager import Manager

log = logging.getLogger(__name__)

PRIORITIES = {STDOUT: 6, STDERR: 3}  # info, err: as the run's own streams (run/streams.py)
PIPE_SIZE = 1 << 20
"""The copy's pipe: a burst of output waits there, not in the payload, while cat starts."""


def copy_unit_name(name: str, kind: int, token: str) -> str:
    """``nspawnctl-output@NAME-stdout-TOKEN.service``: a container's name never has ``@``, so no
    container's unit can be one; the token keeps a restarted run's copy apart from the last one's
    (still draining)."""
    return f"nspawnctl-output@{name}-{'stdout' if kind == STDOUT else 'stderr'}-{token}.service"


def copy_properties(spec: ContainerSpec, kind: int, cat: str, read_fd: int) -> list[tuple[str, str, object]]:
    """The copy unit: cat with the pipe as stdin and its stdout to the journal as the container's."""
    stream = "stdout" if kind == STDOUT else "stderr"
    return [
        ("Description", "s", f"journal copy of container {spec.name}'s {stream} (nspawnctl Docker API)"),
        ("ExecStart", "a(sasb)", [[cat, ["cat"], False]]),
        ("StandardInputFileDescriptor", "h", read_fd),
        ("StandardOutput", "s", "journal"),
        ("StandardError", "s", "journal"),
        ("SyslogIdentifier", "s", spec.name),
        ("SyslogLevel", "i", PRIORITIES[kind]),
        ("LogExtraFields", "aay", [log_extra_field(spec).encode()]),
        ("LogRateLimitIntervalUSec", "t", LOG_RATE_INTERVAL_USEC),
        ("LogRateLimitBurst", "u", LOG_RATE_BURST),
        ("NoNewPrivileges", "b", True),
        ("CollectMode", "s", "inactive-or-failed"),
    ]


@dataclass
class JournalCopy:
    """The write ends of the copy units' pipes, by stream (STDOUT, STDERR)."""

    fds: dict[int, int] = field(default_factory=dict)

    async def write(self, kind: int, data: bytes) -> None:
        """Copy a piece of output (waiting while the pipe is full, as the payload waits for a slow
        client); a copy whose reader is gone is given up, never the run."""
        fd = self.fds.get(kind)
        if fd is None:
            return
        if not await write_all(fd, data):
            log.warning("the journal copy of a run's output ended early")
            self._close(kind)

    def close(self) -> None:
        """The output has ended: cat reads the end of its pipe, writes the rest and exits."""
        for kind in list(self.fds):
            self._close(kind)

    def _close(self, kind: int) -> None:
        fd = self.fds.pop(kind, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


async def open_copy(bus: Bus, spec: ContainerSpec, kinds: list[int]) -> JournalCopy:
    """Start a copy unit for each stream of ``kinds``; a stream whose unit cannot start has no
    copy (logged), the run goes on without it."""
    from ..systemd.manager import Manager

    manager = Manager(bus)
    cat = shutil.which("cat") or "/bin/cat"
    token = os.urandom(4).hex()
    copy = JournalCopy()
    try:
        for kind in kinds:
            if (fd := await _start_one(manager, spec, kind, cat, token)) is not None:
                copy.fds[kind] = fd
    except BaseException:  # cancelled: no cat may wait on a pipe nobody closes
        copy.close()
        raise
    return copy


async def _start_one(manager: Manager, spec: ContainerSpec, kind: int, cat: str, token: str) -> int | None:
    """The write end of a started copy unit's pipe; None (logged) when it cannot start."""
    import fcntl

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(write_fd, False)
        unit = copy_unit_name(spec.name, kind, token)
        result = await manager.start_transient(unit, copy_properties(spec, kind, cat, read_fd))
        if result != "done":
            raise OSError(f"{unit}: start job {result}")
    except Exception as e:  # the run matters more than its copy
        log.warning("no journal copy of container %s's output: %s", spec.name, e)
        os.close(write_fd)
        return None
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return write_fd
