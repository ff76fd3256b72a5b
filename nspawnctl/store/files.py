"""Small file helpers the image and layer stores share: atomic JSON records and the sweep of
what dead writers left behind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import btrfs

STALE_TEMP_AGE = 3600.0
"""Seconds after which a temporary record file is left over whoever wrote it (a writer renames it
within moments)."""


def write_json(path: Path, data: Any) -> None:
    """Write ``path`` atomically: a reader sees the old record or the new one, never part of one.
    The temporary name carries the writer's pid so a sweep can tell a dead writer's leftover."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep(directory: Path, *, staging: bool = True) -> None:
    """Delete what dead processes left in ``directory``: staging subvolumes and spools
    (``.tmp-<pid>-*``, unless not ``staging``) and temporary records
    (``.<name>.json.<pid>-<rand>``, or any such file older than an hour, which also covers
    names without a pid)."""
    if not directory.is_dir():
        return
    for entry in directory.glob(".tmp-*") if staging else ():
        pid = entry.name.split("-")[1]
        if pid.isdigit() and not _alive(pid):
            if entry.is_dir() and not entry.is_symlink():
                btrfs.delete(entry)
            else:
                entry.unlink(missing_ok=True)
    now = time.time()
    for entry in directory.glob(".*.json.*"):
        pid = entry.name.rpartition(".")[2].partition("-")[0]
        try:
            old = now - entry.lstat().st_mtime > STALE_TEMP_AGE
        except FileNotFoundError:
            continue
        if old or (pid.isdigit() and not _alive(pid)):
            entry.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    return Path(f"/proc/{pid}").exists()


def tree_size(path: Path) -> int:
    """Apparent size of the regular files below ``path`` (what ``images`` shows as SIZE)."""
    total = 0
    # a stack, not os.walk (recursive on 3.11): a container decides how deep its volume goes
    todo = [str(path)]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:  # removed meanwhile, or not a directory
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    elif not entry.is_symlink():
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:  # removed meanwhile
                    continue
    return total
