"""Paths inside a container's root, resolved as a chroot would, from the host.

``cp`` reads and writes a container's snapshot directory while its payload may be running and
changing it. A path is resolved one component at a time relative to directory file descriptors
opened with ``O_NOFOLLOW``: a symlink is read and its target resolved again from the container's
root (absolute targets) or from the directory holding it, and ``..`` never climbs above the
root. Every later open walks the resulting components again with ``O_NOFOLLOW``, so a symlink
swapped in between is refused instead of followed to the host.

Public API (cp in store/copy.py and the network setup in net/files.py use it; keep it stable):
:data:`Comps`, :data:`DIR_READ`, :data:`MAX_LINKS`, :func:`split`, :func:`show`,
:func:`open_dir`, :func:`resolve`, :func:`lstat`. Every function takes a directory fd of the
root (``os.open(root, DIR_READ)``) and never returns a path the caller could follow by name.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 40  # what the kernel allows (ELOOP) for one path lookup

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags of a directory fd that can be listed and used as ``dir_fd`` (``open_dir`` defaults to
an ``O_PATH`` fd, enough to walk on but not to read)."""

Comps = tuple[bytes, ...]
"""A resolved path inside the root: its components, none of them ``""``, ``.`` or ``..``."""

__all__ = ["DIR_READ", "MAX_LINKS", "Comps", "lstat", "open_dir", "open_regular", "resolve", "show", "split"]


def split(path: str | bytes) -> list[bytes]:
    """Components of ``path``, without empty and ``.`` ones (``..`` stays: resolve() clamps it)."""
    raw = os.fsencode(path)
    return [c for c in raw.split(b"/") if c not in (b"", b".")]


def show(comps: Comps) -> str:
    """``comps`` as an absolute path inside the root, for messages."""
    return "/" + b"/".join(comps).decode("utf-8", "surrogateescape")


def open_dir(root_fd: int, comps: Comps, flags: int = _DIR_PATH) -> int:
    """A new fd of directory ``comps`` below ``root_fd``, never through a symlink (ELOOP/ENOTDIR
    if one appeared there since resolve())."""
    fd = os.open(".", flags | os.O_DIRECTORY, dir_fd=root_fd)
    try:
        for comp in comps:
            nfd = os.open(comp, flags | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def resolve(root_fd: int, path: str | bytes, *, follow_last: bool = True) -> Comps:
    """The canonical components of ``path`` inside the root: no symlinks, ``.`` or ``..`` left
    (a final symlink stays unless ``follow_last``). The last component need not exist; every one
    before it is a directory. Raises FileNotFoundError / NotADirectoryError for a missing or
    non-directory component on the way, OSError(ELOOP) after MAX_LINKS symlinks."""
    todo = list(reversed(split(path)))
    out: list[bytes] = []
    links = 0
    fd = open_dir(root_fd, ())
    try:
        while todo:
            comp = todo.pop()
            if comp == b"..":
                if out:
                    out.pop()
                    os.close(fd)
                    fd = -1
                    fd = open_dir(root_fd, tuple(out))
                continue
            last = not todo
            try:
                st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    out.append(comp)
                    break
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), show((*out, comp))) from None
            if stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(path))
                target = os.readlink(comp, dir_fd=fd)
                if target.startswith(b"/"):
                    out = []
                    os.close(fd)
                    fd = -1
                    fd = open_dir(root_fd, ())
                todo.extend(reversed(split(target)))
                continue
            out.append(comp)
            if last:
                break
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), show(tuple(out)))
            nfd = os.open(comp, _DIR_PATH, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        if fd >= 0:
            os.close(fd)
    return tuple(out)


def lstat(root_fd: int, comps: Comps) -> os.stat_result | None:
    """lstat of resolved ``comps`` (None when missing); the root itself for ``()``."""
    if not comps:
        return os.stat(root_fd)
    try:
        fd = open_dir(root_fd, comps[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.stat(comps[-1], dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)


def open_regular(root_fd: int, path: str | bytes) -> int:
    """A regular file inside the root opened for reading: resolved there, never through a
    symlink, and never a FIFO or device (opened non-blocking, then checked: a stranger's tree
    may put one where a file is expected). OSError otherwise."""
    comps = resolve(root_fd, path)
    if not comps:
        raise IsADirectoryError(errno.EISDIR, "the root itself", show(comps))
    parent = open_dir(root_fd, comps[:-1])
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(comps[-1], flags, dir_fd=parent)
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", show(comps))
    return fd
