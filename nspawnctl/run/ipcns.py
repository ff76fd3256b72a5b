"""--sysctl's IPC keys (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*), as docker sets them in
the container's own IPC namespace.

nspawn makes the IPC namespace itself, with no step before the payload runs where they could be
written, and /proc/sys is read-only inside. So the pre-start hook makes the namespace instead: a
short-lived thread unshares a new IPC namespace, writes the sysctls there (they answer for the
writer's namespace) and pins it with a bind mount at ``/run/nspawnctl/ipcns/NAME``; nspawn runs
inside it (``nsenter --ipc=``) and, told ``SYSTEMD_NSPAWN_SHARE_NS_IPC=1``, keeps it instead of
making another. The post-stop hook unpins it.
"""

from __future__ import annotations

import ctypes
import errno
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


def path(name: str) -> str:
    return str(IPCNS_DIR / name)


def create(name: str, sysctls: tuple[tuple[str, str], ...]) -> None:
    """Make the container's IPC namespace with ``sysctls`` set and pin it at :func:`path`; a
    leftover of a killed run is replaced."""
    from ..net import netns

    delete(name)
    libc = netns._libc()
    target = path(name)
    os.makedirs(IPCNS_DIR, mode=0o755, exist_ok=True)
    os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))

    def inside() -> None:
        netns._check(libc.unshare(CLONE_NEWIPC), "unshare")
        for key, value in sysctls:
            fd = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        netns._mount(libc, "/proc/thread-self/ns/ipc", target, netns.MS_BIND)

    try:
        netns._in_thread(inside)
    except OSError as e:
        delete(name)
        raise InvalidArgument(
            f"cannot set --sysctl in the container's IPC namespace: {e}",
            hint="check the name and value (sysctl -a lists them)",
        ) from None
    except BaseException:
        delete(name)
        raise


def delete(name: str) -> None:
    """Unpin the container's IPC namespace; gone already is fine."""
    from ..net import netns

    target = path(name)
    if not os.path.lexists(target):
        return
    libc = netns._libc()
    if libc.umount2(target.encode(), netns.MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,
        errno.ENOENT,
    ):
        raise OSError(ctypes.get_errno(), f"umount {target}")
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
