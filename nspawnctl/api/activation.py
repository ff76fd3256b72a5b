"""Sockets systemd passed us (sd_listen_fds(3) semantics, with the stdlib): fds from 3 on, when
LISTEN_PID names this process."""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3


def listen_fds(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> list[int]:
    """The inherited fds, made close-on-exec; LISTEN_* are removed so children do not take them
    for theirs (sd_listen_fds(unset_environment=1))."""
    env = os.environ if environ is None else environ
    try:
        mine = int(env.get("LISTEN_PID", "")) == (os.getpid() if pid is None else pid)
        count = int(env.get("LISTEN_FDS", "0")) if mine else 0
    except ValueError:
        count = 0
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)))
    for fd in fds:
        os.set_inheritable(fd, False)
    return fds


def inherited_sockets() -> list[socket.socket]:
    return [socket.socket(fileno=fd) for fd in listen_fds()]
