"""A container's own bytes: what its writes added to the snapshot of its image (docker's SizeRw,
and what removing it frees), found without btrfs quotas by comparing the two trees.

A btrfs snapshot keeps its source's inode numbers, so a file the container left alone has the
same inode number, size and mtime in both trees; any other regular file (new, rewritten,
replaced) counts with its apparent size, as docker counts its upper layer's files.
"""

from __future__ import annotations

import os
from pathlib import Path


def own_bytes(root: Path, base: Path | None) -> int:
    """Apparent size of the regular files below ``root`` that ``base`` (the image's root it was
    snapshotted from; None: gone) does not hold unchanged."""
    total = 0
    todo = [""]  # a stack, not os.walk (recursive on 3.11): a container decides how deep it goes
    while todo:
        rel = todo.pop()
        try:
            entries = os.scandir(os.path.join(root, rel))
        except OSError:  # removed meanwhile, or not a directory
            continue
        with entries:
            for entry in entries:
                sub = os.path.join(rel, entry.name)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(sub)
                    elif entry.is_file(follow_symlinks=False):
                        mine = entry.stat(follow_symlinks=False)
                        if not _unchanged(mine, base, sub):
                            total += mine.st_size
                except OSError:  # removed meanwhile
                    continue
    return total


def _unchanged(mine: os.stat_result, base: Path | None, rel: str) -> bool:
    if base is None:
        return False
    try:
        theirs = os.lstat(os.path.join(base, rel))
    except OSError:
        return False
    key = (mine.st_ino, mine.st_size, mine.st_mtime_ns)
    return key == (theirs.st_ino, theirs.st_size, theirs.st_mtime_ns)
