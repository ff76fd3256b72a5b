"""``exec -d``: the command runs on in the container after nspawnctl returns.

It runs as a transient service of its own (``systemd-run``), not as a child of the CLI: a child
would live in the caller's cgroup (a login session, an ssh connection) and die with it. Inside
the container's PID namespace it ends with the container, as docker's does.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess

from ..errors import NspawnctlError
from .programs import SEARCH_PATH


def exec_detached(name: str, argv: list[str], env: dict[str, str]) -> str:
    """Start ``argv`` (the nsenter command line of exec) in the background; returns its unit."""
    unit = f"nspawnctl-exec-{name}-{secrets.token_hex(4)}.service"
    cmd = [
        shutil.which("systemd-run", path=SEARCH_PATH) or "/usr/bin/systemd-run",
        "--quiet",
        "--collect",
        f"--unit={unit}",
        f"--description=nspawnctl exec -d in {name}",
        *(f"--setenv={k}={v}" for k, v in env.items()),
        "--",
        *argv,
    ]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NspawnctlError(f"exec -d: systemd-run failed: {done.stderr.strip() or done.returncode}")
    return unit
