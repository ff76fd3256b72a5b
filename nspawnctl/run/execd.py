"""``exec -d``: the command runs on in the container after nspawnctl returns.

It runs as a transient service of its own (``systemd-run``), not as a child of the CLI: a child
would live in the caller's cgroup (a login session, an ssh connection) and die with it. Inside
the container's PID namespace it ends with the container, as docker's does.

The environment (the container's ``-e`` values: secrets, often) is neither on systemd-run's
command line nor in the unit's Environment= (both readable by every host user): it goes into a
0600 file in a root-only directory, the unit's RuntimeDirectory=, which systemd removes when the
unit ends; the unit reads it with EnvironmentFile=. The argv is escaped for systemd's ``$VAR``
expansion, so that ``exec -d`` runs exactly what ``exec`` runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from ..errors import NspawnctlError
from .escape import exec_arg
from .programs import SEARCH_PATH

RUN = Path("/run")
EXEC_DIR = "nspawnctl/exec"  # under /run, root-only (0700)
_SHELL_ESCAPE = '\\"$`'


def env_file_text(env: dict[str, str]) -> str:
    """``env`` as systemd's EnvironmentFile= reads it back exactly: double-quoted values, in which
    only backslash, quote, ``$`` and backquote are escaped (a line break inside quotes is kept)."""
    lines = []
    for k, v in env.items():
        quoted = "".join("\\" + c if c in _SHELL_ESCAPE else c for c in v)
        lines.append(f'{k}="{quoted}"\n')
    return "".join(lines)


def systemd_run_argv(unit: str, name: str, argv: list[str], env_dir: str) -> list[str]:
    """systemd-run's command line: no environment value in it, every ``$`` of ``argv`` doubled."""
    return [
        shutil.which("systemd-run", path=SEARCH_PATH) or "/usr/bin/systemd-run",
        "--quiet",
        "--collect",
        f"--unit={unit}",
        f"--description=nspawnctl exec -d in {name}",
        f"--property=RuntimeDirectory={env_dir}",
        "--property=RuntimeDirectoryMode=0700",
        f"--property=EnvironmentFile={RUN / env_dir / 'env'}",
        "--",
        *(exec_arg(a) for a in argv),
    ]


def write_env(env_dir: Path, env: dict[str, str]) -> None:
    """The env file, 0600 in a 0700 directory of its own under a 0700 parent."""
    env_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(env_dir.parent, 0o700)
    env_dir.mkdir(mode=0o700)
    fd = os.open(env_dir / "env", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(env_file_text(env))


def exec_detached(name: str, argv: list[str], env: dict[str, str], run: Path = RUN) -> str:
    """Start ``argv`` (the nsenter command line of exec) in the background; returns its unit."""
    unit = f"nspawnctl-exec-{name}-{secrets.token_hex(4)}.service"
    env_dir = f"{EXEC_DIR}/{unit.removesuffix('.service')}"
    write_env(run / env_dir, env)
    cmd = systemd_run_argv(unit, name, argv, env_dir)
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    except BaseException:
        shutil.rmtree(run / env_dir, ignore_errors=True)
        raise
    if done.returncode != 0:
        shutil.rmtree(run / env_dir, ignore_errors=True)
        raise NspawnctlError(f"exec -d: systemd-run failed: {done.stderr.strip() or done.returncode}")
    return unit
