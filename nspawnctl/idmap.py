"""Which volumes of a user-namespaced container get nspawn's ``:idmap`` bind option.

An ID-mapped mount keeps a volume writable for root inside (files stay owned by the host's
owner), but nspawn fails the whole start when the source's filesystem cannot do one (nfs, cifs,
most fuse, zfs before 2.2, tmpfs before Linux 6.3, ...). So ``:idmap`` is given only where the
kernel supports it (``FS_ALLOW_IDMAP``, see mount_setattr(2)); elsewhere the volume is mounted
plainly and a notice says what that means.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from .spec import Volume

# Filesystem type (as /proc/self/mountinfo names it) -> first kernel that ID-maps its mounts.
IDMAP_SINCE: dict[str, tuple[int, int]] = {
    "ext4": (5, 12),
    "vfat": (5, 12),
    "msdos": (5, 12),
    "xfs": (5, 12),
    "btrfs": (5, 15),
    "ntfs3": (5, 15),
    "f2fs": (5, 18),
    "erofs": (5, 19),
    "overlay": (5, 19),
    "squashfs": (6, 2),
    "tmpfs": (6, 3),
    "ceph": (6, 7),
    "hugetlbfs": (6, 9),
}
ZFS_VERSION = Path("/sys/module/zfs/version")  # OpenZFS ID-maps mounts since 2.2
EXPLICIT = ("idmap", "noidmap", "rootidmap", "owneridmap")


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``uname -r`` ("6.18.0-1-amd64" -> (6, 18)); (0, 0) when unreadable."""
    m = re.match(r"(\d+)\.(\d+)", release if release is not None else os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _zfs_version() -> tuple[int, int]:
    try:
        return kernel_version(ZFS_VERSION.read_text().strip())
    except OSError:
        return (0, 0)


def can_idmap(fstype: str, kernel: tuple[int, int] | None = None) -> bool:
    """Whether mounts of ``fstype`` can be ID-mapped on this kernel (or on ``kernel``)."""
    if fstype == "zfs":
        return _zfs_version() >= (2, 2)
    since = IDMAP_SINCE.get(fstype)
    return since is not None and (kernel or kernel_version()) >= since


def fs_type(path: str) -> str | None:
    """The filesystem type of the mount holding ``path`` (symlinks resolved), or None."""
    from .store.pool import mount_of

    try:
        return mount_of(Path(path)).fstype
    except (OSError, AssertionError, IndexError):
        return None


def idmap_volumes(
    volumes: Iterable[Volume],
    notify: Callable[[str], None],
    fstype_of: Callable[[str], str | None] | None = None,
    kernel: tuple[int, int] | None = None,
) -> list[Volume]:
    """The volumes as a user-namespaced container mounts them: ID-mapped where the source's
    filesystem allows it; an explicit idmap/noidmap/rootidmap/owneridmap is left alone."""
    fstype_of = fstype_of or fs_type
    out = []
    for v in volumes:
        if any(o in v.options for o in EXPLICIT):
            out.append(v)
            continue
        fstype = fstype_of(v.host)
        if fstype is not None and can_idmap(fstype, kernel):
            out.append(v.with_idmap())
            continue
        on = f"on {fstype}, which" if fstype else "on a filesystem that"
        notify(
            f"volume {v.host} is {on} cannot be ID-mapped: root in the container may not be able "
            f"to write to it; use --userns host or :noidmap to silence"
        )
        out.append(v)
    return out
