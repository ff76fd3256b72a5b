"""Named network namespaces as ``ip netns add/del`` make them (a bind mount in /run/netns), without
running ``ip``: a short-lived thread unshares a new netns, pins it there, sets its sysctl and opens
the netlink socket the rest of the build uses inside it. The thread's namespace is its own, so the
process itself never leaves the host's.

``unshare``/``setns`` are in :mod:`os` only from Python 3.12, ``mount`` not at all: libc's, via ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import NetworkError
from ..mounts import detach
from ..mounts import libc as _libc
from . import names
from .rtnl import Rtnl

CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 0x100000
# root inside a user namespace is not root for the netns (owned by the host's userns): let it bind
# port 80 anyway, as docker does
SYSCTLS = {"/proc/sys/net/ipv4/ip_unprivileged_port_start": "0\n"}

T = TypeVar("T")


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(libc: ctypes.CDLL, source: str, target: str, flags: int) -> None:
    _check(libc.mount(source.encode(), target.encode(), b"none", flags, None), f"mount {target}")


def _prepare_dir(libc: ctypes.CDLL) -> None:
    """/run/netns as a shared mount (made a mount of itself first if need be), as ``ip`` makes it:
    a namespace pinned later then shows in every mount namespace, a unit's private one too."""
    d = str(names.NETNS_DIR)
    os.makedirs(d, mode=0o755, exist_ok=True)
    if libc.mount(b"", d.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"mount --make-rshared {d}")
    _mount(libc, d, d, MS_BIND | MS_REC)
    _check(libc.mount(b"", d.encode(), b"none", MS_SHARED | MS_REC, None), f"mount --make-rshared {d}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread of its own (its namespace changes die with it); its result or error.

    Waited for even on Ctrl-C (its few syscalls end on their own), so that the caller can undo
    what it made; a result nobody will take is closed. (An Event, not join(): Python 3.11's join
    interrupted by Ctrl-C marks the thread ended while it still runs.)"""
    box: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name="netns").start()
    try:
        done.wait()
    except BaseException:
        done.wait()
        close = getattr(box.get("value"), "close", None)
        if close is not None:
            close()
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def run_in(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that joined the network namespace ``path`` (an nsfs file): setns
    moves only that thread, so the caller's namespace never changes; ``fn``'s result or error."""
    libc = _libc()

    def inside() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(libc.setns(fd, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(inside)


def create(name: str) -> Rtnl:
    """Make the named netns ``name`` (NETNS_DIR/name) and return a netlink socket inside it.

    The file is created exclusively: an existing one is an error (``down`` removes leftovers)."""
    path = str(names.NETNS_DIR / name)
    libc = _libc()
    try:
        _prepare_dir(libc)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except OSError as e:
        raise NetworkError(f"cannot create network namespace {name}: {e.strerror}") from None

    def inside() -> Rtnl:
        _check(libc.unshare(CLONE_NEWNET), "unshare")
        _mount(libc, "/proc/thread-self/ns/net", path, MS_BIND)
        for sysctl, value in SYSCTLS.items():  # /proc/sys/net is the opening thread's netns
            with open(sysctl, "w") as f:
                f.write(value)
        return Rtnl()

    try:
        return _in_thread(inside)
    except OSError as e:
        delete(name)
        raise NetworkError(f"cannot create network namespace {name}: {e.strerror}") from None
    except BaseException:  # Ctrl-C, or a bug: nothing stays pinned
        delete(name)
        raise


def delete(name: str) -> None:
    """Unpin and remove the named netns, as ``ip netns del`` does; gone already is fine. (The
    namespace itself, and links still in it, go once nothing else holds it.)"""
    path = str(names.NETNS_DIR / name)
    if not os.path.lexists(path):
        return
    try:
        detach(path)  # not mounted (a half-made one): just the file
    except OSError as e:
        raise NetworkError(f"cannot delete network namespace {name}: {os.strerror(e.errno or 0)}") from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NetworkError(f"cannot delete network namespace {name}: {e.strerror}") from None
