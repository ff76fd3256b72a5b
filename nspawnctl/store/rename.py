"""``rename``: a stopped container under a new name (snapshot, definition, state files).

Everything is named after the container (the pool entry machined lists, the .nspawn file, the
exit record and markers in STATE, the units): a rename moves each. The definition under the
new name is written first and the old one removed last, with the snapshot renamed in between
(one rename on the same btrfs), all under the pool lock, and undone step by step if one fails.
The journal keeps the container's output under its ID, so ``logs`` still shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import NameInUse
from ..names import check_machine_name
from ..nspawnfile import NspawnFile
from ..spec import ContainerSpec
from .containers import ContainerStore

STATE_SUFFIXES = (".json", ".autoremove")


def rename(store: ContainerStore, old: str, new: str) -> ContainerSpec:
    """Move container ``old`` to ``new``; the caller has made sure it does not run."""
    check_machine_name(new)
    with store.pool.lock():
        store.repair_locked()
        spec = store.get(old)
        if new == old:
            return spec
        if store.in_use(new):
            raise NameInUse(
                f"the name {new!r} is already in use",
                hint=f"choose another name, or remove that container first ('nspawnctl rm {new}')",
            )
        old_def, _ = store.definition(old)
        new_def = store.settings_file(new, spec.auto_remove)
        NspawnFile.load(old_def).save(new_def)
        done: list[tuple[Path, Path]] = []
        try:
            moves = [(store.root(old), store.root(new))]
            moves += [
                (store.paths.state / f"{old}{s}", store.paths.state / f"{new}{s}") for s in STATE_SUFFIXES
            ]
            for src, dst in moves:
                if os.path.lexists(src):
                    os.rename(src, dst)
                    done.append((src, dst))
            old_def.unlink()
        except BaseException:
            for back_to, moved in reversed(done):
                os.rename(moved, back_to)
            new_def.unlink(missing_ok=True)
            raise
        return store.get(new)
