"""libc's ``mount``/``umount2`` (and ``unshare``/``setns``) through ctypes: :mod:`os` has no
``mount`` at all, ``unshare``/``setns`` only from Python 3.12. One home for the prototypes, used by
net/netns.py (named network namespaces), run/ipcns.py and run/subpaths.py (volume-subpath stages)."""

from __future__ import annotations

import ctypes
import errno
import os

MS_BIND = 0x1000
MNT_DETACH = 0x2


def libc() -> ctypes.CDLL:
    """libc with the prototypes of what is called: mountflags is an unsigned long, not ctypes'
    default int."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    lib.mount.restype = ctypes.c_int
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.umount2.restype = ctypes.c_int
    lib.unshare.argtypes = [ctypes.c_int]
    lib.unshare.restype = ctypes.c_int
    lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.setns.restype = ctypes.c_int
    return lib


def bind_fd(fd: int, target: str) -> None:
    """Bind-mount what ``fd`` holds onto ``target`` (``/proc/self/fd/N`` is the fd's own inode:
    the kernel does not look its former path up again). OSError on failure."""
    if libc().mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind-mounting on {target}: {os.strerror(code)}")


def detach(path: str) -> bool:
    """Lazily unmount the top mount at ``path`` (``umount -l``); False when nothing is mounted
    there (or the path is gone), OSError on any other failure."""
    if libc().umount2(path.encode(), MNT_DETACH) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(code, f"unmounting {path}: {os.strerror(code)}")
