"""The walk of a ``volume-subpath`` inside a volume: an ``O_PATH`` fd of ``STORE/volumes/V/SUB``
reached one component at a time with ``O_NOFOLLOW`` from the volume's fd (a symlink, ``..``, a
missing part or a device is refused). Store's business (the volumes' layout); create checks a
subpath with it, and each start's pre hook (run/subpaths.py) binds the fd it returns."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..errors import InvalidArgument, VolumeNotFound

TYPE_CHECKING = False  # typing's costs an import; mypy knows this name
if TYPE_CHECKING:
    from ..spec import ContainerSpec

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def may_be_subpath(host: str) -> bool:
    """Whether a bind source may be a ``volume-subpath`` one (a path two or more levels under a
    ``volumes`` directory): cheap, without the store's path; such a container's start runs the
    pre hook, where run/subpaths.py decides with the real one and stages the bind."""
    parts = Path(host).parts
    return any(p == "volumes" and len(parts) > i + 2 for i, p in enumerate(parts))


def volume_part(volumes_root: Path, host: str) -> tuple[str, str] | None:
    """(volume, subpath) when ``host`` lies strictly inside a volume of ``volumes_root``."""
    p = Path(host)
    if volumes_root not in p.parents or p.parent == volumes_root:
        return None
    parts = p.relative_to(volumes_root).parts
    if not _VOLUME_NAME.fullmatch(parts[0]):  # store/volumes.py's NAME (not .meta)
        return None
    return parts[0], "/".join(parts[1:])


def marked(volumes_root: Path, spec: ContainerSpec) -> ContainerSpec:
    """The spec with every bind that lies inside a volume marked a ``volume-subpath`` one (a
    ``-v`` of such a path, an older definition's ``Bind=``): its definition then binds the
    stage, never the path (spec.subpath_stages), as for ``--mount ...,volume-subpath=``."""
    from dataclasses import replace

    volumes = []
    for v in spec.volumes:
        part = None if v.subpath else volume_part(volumes_root, v.host)
        volumes.append(replace(v, subpath=part[1]) if part else v)
    return replace(spec, volumes=volumes)


def open_subpath(volumes_root: Path, volume: str, sub: str) -> int:
    """An ``O_PATH`` fd of directory or regular file ``sub`` inside the volume, walked one
    component at a time without following a symlink. InvalidArgument (VolumeNotFound) else."""
    from .rootpath import open_dir

    parts = sub.split("/")
    if not sub or sub.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidArgument(f"volume-subpath {sub!r}: a relative path without '.' or '..' is expected")
    try:
        root_fd = os.open(volumes_root, _PATH | os.O_DIRECTORY)
    except OSError as e:
        raise VolumeNotFound(f"volume {volume} does not exist: {e.strerror}") from None
    try:
        try:
            vol_fd = os.open(volume, _PATH | os.O_DIRECTORY, dir_fd=root_fd)
        except OSError:
            raise VolumeNotFound(
                f"volume {volume} does not exist: it has no subpath {sub}",
                hint=f"nspawnctl volume create {volume}",
            ) from None
    finally:
        os.close(root_fd)
    try:
        try:
            parent = open_dir(vol_fd, tuple(os.fsencode(p) for p in parts[:-1]))
            try:
                fd = os.open(parts[-1], _PATH, dir_fd=parent)
            finally:
                os.close(parent)
        except OSError as e:
            raise _refusal(vol_fd, volume, sub, e) from None
        kind = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(kind) or stat.S_ISREG(kind)):
            os.close(fd)
            what = "a symbolic link" if stat.S_ISLNK(kind) else "not a directory or regular file"
            raise _refused(volume, sub, parts[-1], what)
        return fd
    finally:
        os.close(vol_fd)


def _refused(volume: str, sub: str, part: str, what: str) -> InvalidArgument:
    return InvalidArgument(
        f"volume-subpath {sub!r} of volume {volume}: {part!r} is {what}",
        hint="a subpath is a directory or file reached through directories only, no symbolic links",
    )


def _refusal(vol_fd: int, volume: str, sub: str, error: OSError) -> InvalidArgument:
    """Why the walk failed, by looking again (for the message only: the walk has refused)."""
    fd = os.dup(vol_fd)
    try:
        for part in sub.split("/"):
            try:
                mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                return InvalidArgument(
                    f"volume {volume} has no {sub} ({part!r} is missing)",
                    hint="create it in the volume first",
                )
            except OSError:
                break
            if stat.S_ISLNK(mode):
                return _refused(volume, sub, part, "a symbolic link")
            if not stat.S_ISDIR(mode):
                return _refused(volume, sub, part, "not a directory")
            try:
                nfd = os.open(part, _PATH | os.O_DIRECTORY, dir_fd=fd)
            except OSError:
                break
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    return InvalidArgument(
        f"volume-subpath {sub!r} of volume {volume}: {error.strerror or error}",
        hint="a subpath is a directory or file reached through directories only, no symbolic links",
    )
