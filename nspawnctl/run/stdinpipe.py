"""The stdin of a container started detached with ``-i`` (docker's ``run -d -i``): a FIFO of its
own, ``state/stdin/NAME`` (root-only), that ``attach`` writes to.

The unit gets the FIFO opened read-write as its stdin (StandardInputFileDescriptor=): opening a
FIFO read-write never blocks, and with a writer always present the payload never reads EOF when
an attached client goes away, as docker keeps a ``-i`` container's stdin open between attaches.
An ``attach`` opens it write-only and non-blocking: that fails with ENXIO when nobody reads it
(the container does not run with it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ..config import Paths
from ..errors import ContainerNotRunning


def fifo_path(paths: Paths, name: str) -> Path:
    return paths.state / "stdin" / name


def open_for_unit(paths: Paths, name: str) -> int:
    """The FIFO (made when missing), opened read-write for the unit's stdin; the caller closes
    its copy once the unit has started."""
    path = fifo_path(paths, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise ContainerNotRunning(f"container {name}: {path} is not a FIFO")
    return fd


def open_for_attach(paths: Paths, name: str) -> int:
    """The FIFO opened write-only and non-blocking, for ``attach`` to forward its stdin to."""
    try:
        return os.open(fifo_path(paths, name), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise ContainerNotRunning(
                f"container {name} does not run with a stdin to attach to",
                hint=f"start it with -i (nspawnctl run -d -i ...), or attach without it: "
                f"nspawnctl attach --no-stdin {name}",
            ) from None
        raise


def remove(paths: Paths, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fifo_path(paths, name).unlink()
