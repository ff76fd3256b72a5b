"""Writing to a path the user named on the host (``export -o``, ``cp CTR:PATH HOSTPATH``,
``generate -o``): into what is there, never replacing what is not a regular file.

nspawnctl runs as root, so a careless rename over ``/dev/null`` (every container start fails
afterwards) or over a FIFO a reader waits on is as easy as it is harmful. The rules, one for
every command:

- missing, or a regular file: written aside (a temporary file in the same directory) and renamed
  over it once complete, so a reader never sees half of it and a failure leaves the old file as
  it was. An existing file keeps its mode and owner (what docker's truncate-and-write keeps); a
  new one gets 0666 less the umask, as ``docker export -o`` makes it.
- a symlink: followed as docker follows it, by ``open(2)`` (so the kernel's protected_symlinks
  rule for sticky world-writable directories applies); what it reaches is then treated by these
  same rules (``/dev/stdout`` reaches the pipe or terminal it stands for).
- a character or block device, a FIFO: opened and written into; never replaced, never truncated.
- a directory or a socket: refused.

The directory is opened once and everything after is done relative to it, and the name must
still be the file it was when the new one is renamed over it (else the write is refused): a
user who owns a directory on the way cannot swap it mid-write to make root's replacement land
elsewhere, nor get an owner copied onto a file it was not taken from.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

from .errors import InvalidArgument

_WRITE = os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _refuse(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{path} is a directory", hint="name a file to write to")
    if stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"{path} is a socket: cannot write to it", hint="name a file, device or FIFO")


@contextmanager
def open_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file to write the output to; on leaving without an error it is in place at
    ``path`` (see the module's rules). An error inside leaves a regular destination as it was.

    The destination's directory is opened once (its path resolved as ``open(2)`` resolves it);
    everything after that is relative to that directory, so swapping a directory along the path
    for a symlink meanwhile cannot redirect the write, and the name must still be what it was
    when the file is renamed over it."""
    name = os.fspath(path)
    directory, base = os.path.split(name)
    if base in ("", ".", ".."):  # "dir/", "." and ".." name directories
        directory, base = name, "."
    try:
        dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise InvalidArgument(f"{name}: a part of its path is not a directory") from None
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    try:
        with _open_in(dir_fd, base, name) as f:
            yield f
    finally:
        os.close(dir_fd)


@contextmanager
def _open_in(dir_fd: int, base: str, name: str) -> Iterator[IO[bytes]]:
    try:
        lst: os.stat_result | None = os.lstat(base, dir_fd=dir_fd)
    except FileNotFoundError:
        lst = None
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        with _through_link(dir_fd, base, name) as f:
            yield f
        return
    if lst is None or stat.S_ISREG(lst.st_mode):
        owner = None
        if lst is not None:  # the owner and mode of the file itself, not of an earlier look
            owner = _identity(dir_fd, base, name, lst)
        with _replace(dir_fd, base, name, owner) as f:
            yield f
        return
    _refuse(name, lst)
    try:  # a device or FIFO: into it (a FIFO's open waits for its reader)
        fd = os.open(base, _WRITE | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    with open(fd, "wb") as f:
        yield f


def _changed(name: str) -> InvalidArgument:
    return InvalidArgument(
        f"{name} changed while being written: refusing to replace it",
        hint="make sure nothing else changes the destination and try again",
    )


def _identity(dir_fd: int, base: str, name: str, seen: os.stat_result) -> os.stat_result:
    """fstat of the regular file ``base`` in ``dir_fd`` (opened with O_PATH, never followed),
    which must be the one ``seen`` was taken of."""
    try:
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _changed(name) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
        raise _changed(name)
    return st


@contextmanager
def _through_link(dir_fd: int, base: str, name: str) -> Iterator[IO[bytes]]:
    existed = True
    try:
        try:
            fd = os.open(base, _WRITE, dir_fd=dir_fd)
        except FileNotFoundError:  # a dangling link: open(2) makes its target, as docker's would
            existed = False
            fd = os.open(base, _WRITE | os.O_CREAT, 0o666, dir_fd=dir_fd)
    except IsADirectoryError:
        raise InvalidArgument(f"{name} is a link to a directory", hint="name a file to write to") from None
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            with open(fd, "wb", closefd=False) as f:
                yield f
            return
        # a regular file: the atomic replacement, in the directory holding the very file opened
        # (its name there must still be that file: a directory swapped meanwhile is refused)
        real = os.readlink(f"/proc/self/fd/{fd}")
        parent, real_base = os.path.split(real)
        try:
            real_dir = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise _changed(name) from None
        try:
            if not _same(real_dir, real_base, st):
                raise _changed(name)
            try:
                with _replace(real_dir, real_base, name, st if existed else None, expect=st) as f:
                    yield f
            except BaseException:
                if not existed:  # the empty file open() made at the link's target
                    with suppress(OSError):
                        if _same(real_dir, real_base, st):
                            os.unlink(real_base, dir_fd=real_dir)
                raise
        finally:
            os.close(real_dir)
    finally:
        os.close(fd)


def _same(dir_fd: int, base: str, st: os.stat_result | None) -> bool:
    """Whether ``base`` in ``dir_fd`` is (still) the file ``st`` describes, or missing if None."""
    try:
        now = os.lstat(base, dir_fd=dir_fd)
    except FileNotFoundError:
        return st is None
    return st is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


@contextmanager
def _replace(
    dir_fd: int,
    base: str,
    name: str,
    owner: os.stat_result | None,
    *,
    expect: os.stat_result | None = None,
) -> Iterator[IO[bytes]]:
    """Write a temporary file in ``dir_fd`` and rename it over ``base`` there, if ``base`` is
    still the file it was (``expect``, by default ``owner``; None: missing). ``owner`` must be
    fstat of a file descriptor on the file replaced: its owner and mode are copied."""
    expect = owner if expect is None else expect
    tmp = f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, _WRITE | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            if owner is not None:
                os.fchown(f.fileno(), owner.st_uid, owner.st_gid)
                os.fchmod(f.fileno(), stat.S_IMODE(owner.st_mode))
            else:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
        if not _same(dir_fd, base, expect):  # replaced, removed or made meanwhile: leave it
            raise _changed(name)
        os.replace(tmp, base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
