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
        if pid.isdigit() and not alive(int(pid)):
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
        if old or (pid.isdigit() and not alive(int(pid))):
            entry.unlink(missing_ok=True)


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot): with the PID it names one process,
    where a PID alone is reused. None: no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 1 :].split()  # the name (field 2) may hold spaces and ')'
    try:
        return int(fields[19])  # fields[0] is field 3
    except (IndexError, ValueError):
        return None


def alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` exists (and, given ``start``, is the one that started then)."""
    if pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and (start is None or now == start)


def owner() -> str:
    """This process as ``PID:START`` (see :func:`start_time`), what its leftovers are marked with."""
    pid = os.getpid()
    return f"{pid}:{start_time(pid) or 0}"


def owner_alive(text: str) -> bool | None:
    """Whether the process a ``PID:START[:...]`` mark names still runs: True, False (gone, or
    its PID now someone else's), or None when ``text`` is no such mark (not ours: leave it)."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[0]) <= 0:
        return None
    return alive(int(parts[0]), int(parts[1]))


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
