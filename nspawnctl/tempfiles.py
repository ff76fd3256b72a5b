"""Temporary files made beside their final path, as :func:`tempfile.mkstemp` makes them.

The start path writes a definition and an attached lock through a temporary name; loading
:mod:`tempfile` (and its :mod:`random`) for that costs a create ~1 ms (issue 13). The names are
mkstemp's (PREFIX + 8 of ``[a-z0-9_]``): the sweeps of dead writers' leftovers match them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def mkstemp(directory: str | os.PathLike[str], prefix: str) -> tuple[int, str]:
    """A new file ``DIRECTORY/PREFIX`` + 8 random characters, mode 0600, open read-write (not
    inherited, not through a symlink); its descriptor and path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = prefix + "".join(_CHARS[b % len(_CHARS)] for b in os.urandom(8))
        path = os.path.join(directory, name)
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}XXXXXXXX in {directory}")


def write_atomic(path: Path, text: str, mode: int, *, sync: bool = True) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it (``.NAME.`` + 8 characters),
    synced (unless ``sync`` is false: a container's definition on the start path is not, as
    before), given ``mode`` and renamed over it; removed should anything fail. Readers (nspawn,
    systemd) never see half a file, and concurrent writers each rename a whole one."""
    fd, tmp = mkstemp(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
