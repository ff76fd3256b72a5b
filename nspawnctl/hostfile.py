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
    ``path`` (see the module's rules). An error inside leaves a regular destination as it was."""
    name = os.fspath(path)
    try:
        lst: os.stat_result | None = os.lstat(name)
    except FileNotFoundError:
        lst = None
    except NotADirectoryError:
        raise InvalidArgument(f"{name}: a part of its path is not a directory") from None
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        with _through_link(name) as f:
            yield f
        return
    if lst is None or stat.S_ISREG(lst.st_mode):
        with _replace(name, lst) as f:
            yield f
        return
    _refuse(name, lst)
    try:  # a device or FIFO: into it (a FIFO's open waits for its reader)
        fd = os.open(name, _WRITE | os.O_NOFOLLOW)
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    with open(fd, "wb") as f:
        yield f


@contextmanager
def _through_link(name: str) -> Iterator[IO[bytes]]:
    existed = os.path.exists(name)
    try:
        fd = os.open(name, _WRITE | os.O_CREAT, 0o666)
    except IsADirectoryError:
        raise InvalidArgument(f"{name} is a link to a directory", hint="name a file to write to") from None
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        with open(fd, "wb") as f:
            yield f
        return
    # a regular file: the atomic replacement, at the path the link reached
    real = os.readlink(f"/proc/self/fd/{fd}")
    os.close(fd)
    try:
        with _replace(real, st if existed else None) as f:
            yield f
    except BaseException:
        if not existed:  # the empty file open() made at the link's target
            with suppress(FileNotFoundError):
                os.unlink(real)
        raise


@contextmanager
def _replace(name: str, old: os.stat_result | None) -> Iterator[IO[bytes]]:
    directory, base = os.path.split(os.path.abspath(name))
    tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, _WRITE | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise InvalidArgument(f"cannot write to {name}: {e.strerror}") from e
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            if old is not None:
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
                os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
            else:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
        try:
            now = os.lstat(name)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(now.st_mode):  # replaced by something else meanwhile: leave it
                raise InvalidArgument(f"{name} changed into something other than a file while being written")
        os.replace(tmp, name)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
