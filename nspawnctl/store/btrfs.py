"""The only place that touches btrfs subvolumes; btrfsutil is imported lazily (it is a C extension)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from ..errors import PoolError


def _btrfsutil() -> ModuleType:
    try:
        import btrfsutil
    except ImportError as e:
        raise PoolError(
            f"the btrfsutil Python module is not usable: {e}",
            hint="install libbtrfsutil-dev and 'pip install \"btrfsutil<6.14\"' "
            "(or Debian's python3-btrfsutil)",
        ) from e
    return btrfsutil


def _wrap(what: str, path: Path | str, e: OSError) -> PoolError:
    return PoolError(
        f"{what} {path}: {e.strerror or e}", hint="is the pool a btrfs filesystem? see 'nspawnctl pool init'"
    )


def create_subvolume(path: Path) -> None:
    try:
        _btrfsutil().create_subvolume(str(path))
    except OSError as e:
        raise _wrap("cannot create subvolume", path, e) from e


def snapshot(source: Path, dest: Path, read_only: bool = False) -> None:
    try:
        _btrfsutil().create_snapshot(str(source), str(dest), read_only=read_only)
    except OSError as e:
        raise _wrap("cannot snapshot into", dest, e) from e


def set_read_only(path: Path, read_only: bool = True) -> None:
    try:
        _btrfsutil().set_subvolume_read_only(str(path), read_only)
    except OSError as e:
        raise _wrap("cannot change read-only flag of", path, e) from e


def is_subvolume(path: Path) -> bool:
    try:
        return bool(_btrfsutil().is_subvolume(str(path)))
    except OSError:
        return False


def delete(path: Path) -> None:
    """Delete a subvolume (even a read-only one) with the subvolumes nested in it (a container's
    payload can make some; as root that is allowed), or a plain directory tree left by a fallback."""
    if not os.path.lexists(path):
        return
    if is_subvolume(path):
        try:
            _btrfsutil().delete_subvolume(str(path), recursive=True)
        except OSError as e:
            raise _wrap("cannot delete subvolume", path, e) from e
        return
    import shutil

    shutil.rmtree(path)


def subvolume_id(path: Path) -> int:
    try:
        return int(_btrfsutil().subvolume_id(str(path)))
    except OSError as e:
        raise _wrap("cannot read subvolume", path, e) from e


def uuids(path: Path) -> tuple[bytes, bytes]:
    """The subvolume's (UUID, parent UUID): a snapshot's parent UUID is its source's UUID (all
    zero bytes when it was not made as a snapshot)."""
    try:
        info = _btrfsutil().subvolume_info(str(path))
    except OSError as e:
        raise _wrap("cannot read subvolume", path, e) from e
    return bytes(info.uuid), bytes(info.parent_uuid)
