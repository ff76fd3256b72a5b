"""--sysctl's IPC keys (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*), as docker sets them in
the container's own IPC namespace.

nspawn makes the IPC namespace itself, with no step before the payload runs where they could be
written, and /proc/sys is read-only inside. So the pre-start hook makes the namespace instead:
``unshare --ipc=FILE`` makes a new IPC namespace, a writer inside it sets the sysctls (they
answer for the writer's namespace), and it stays pinned by a bind mount at
``/run/nspawnctl/ipcns/NAME``; nspawn runs inside it (``nsenter --ipc=``) and, told
``SYSTEMD_NSPAWN_SHARE_NS_IPC=1``, keeps it instead of making another. The post-stop hook
unpins it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidArgument

IPCNS_DIR = Path("/run/nspawnctl/ipcns")
CLONE_NEWIPC = 0x08000000
IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
IPC_NAMES = ("kernel.sem",)
SHARE_ENV = "SYSTEMD_NSPAWN_SHARE_NS_IPC=1"  # nspawn: no IPC namespace of its own, ours instead


def is_ipc(name: str) -> bool:
    return name.startswith(IPC_PREFIXES) or name in IPC_NAMES


def ipc_sysctls(sysctls: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in sysctls if is_ipc(k))


def needed(sysctls: tuple[tuple[str, str], ...]) -> bool:
    """Whether a container gets an IPC namespace of ours (and nspawn is told to keep it). The one
    condition for the unit's pre step, the launch's ``nsenter --ipc=``, SHARE_ENV and the hook:
    were they to disagree, nspawn could run in the host's IPC namespace."""
    return bool(ipc_sysctls(sysctls))


def path(name: str) -> str:
    return str(IPCNS_DIR / name)


# writes NAME=VALUE pairs (argv) to /proc/sys: run by unshare inside the new IPC namespace
_WRITER = (
    "import os, sys\n"
    "for pair in sys.argv[1:]:\n"
    "    key, _, value = pair.partition('=')\n"
    "    fd = os.open('/proc/sys/' + key.replace('.', '/'), os.O_WRONLY | os.O_NOFOLLOW)\n"
    "    os.write(fd, value.encode())\n"
    "    os.close(fd)\n"
)


def create(name: str, sysctls: tuple[tuple[str, str], ...]) -> None:
    """Make the container's IPC namespace with ``sysctls`` set and pin it at :func:`path` (a
    leftover of a killed run is replaced first). util-linux's ``unshare --ipc=FILE`` makes and
    pins it; the writer inside gets a proc of its own (``--mount-proc``, in a mount namespace of
    its own), as /proc/sys may be mounted read-only where nspawnctl runs (a host in a container)."""
    import shutil
    import subprocess
    import sys

    delete(name)
    target = path(name)
    os.makedirs(IPCNS_DIR, mode=0o755, exist_ok=True)
    os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    argv = [
        shutil.which("unshare") or "/usr/bin/unshare", f"--ipc={target}", "--mount-proc", "--",
        sys.executable, "-I", "-c", _WRITER, *(f"{k}={v}" for k, v in sysctls),
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except BaseException:
        delete(name)
        raise
    if proc.returncode != 0:
        delete(name)
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise InvalidArgument(
            f"cannot set --sysctl in the container's IPC namespace: {why}",
            hint="check the name and value (sysctl -a lists them)",
        )


def delete(name: str) -> None:
    """Unpin the container's IPC namespace; gone already is fine."""
    from .. import mounts

    target = path(name)
    if not os.path.lexists(target):
        return
    mounts.detach(target)  # not mounted (a half-made one): just the file
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
