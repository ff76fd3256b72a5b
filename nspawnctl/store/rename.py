"""``rename``: a stopped container under a new name (snapshot, definition, state files).

Everything is named after the container (the pool entry machined lists, the .nspawn file, the
exit record and markers in STATE, the units): a rename moves each. The definition under the
new name is written first and the old one removed last, with the snapshot renamed in between
(one rename on the same btrfs), all under the pool lock, and undone step by step if one fails.
The journal keeps the container's output under its ID, so ``logs`` still shows it.

A new name with the same machine name (``my-app`` -> ``my_app``, names.py) moves nothing: only
the definition's ``Name=`` changes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import NameInUse
from ..names import ContainerName
from ..nspawnfile import OWN_SECTION, NspawnFile
from ..spec import ContainerSpec, spec_to_file
from .containers import ContainerStore

STATE_SUFFIXES = (".json", ".autoremove")


def rename(store: ContainerStore, old: str, new_text: str) -> ContainerSpec:
    """Move container ``old`` (its machine name) to the name ``new_text``; the caller has made
    sure it does not run unless the machine name stays (:func:`same_machine`)."""
    name = ContainerName.parse(new_text)
    new = name.machine
    with store.pool.lock():
        store.repair_locked()
        spec = store.get(old)
        if new == old:
            if spec.given_name != name.kept:
                path, file = store.definition(old)
                file.set(OWN_SECTION, "Name", name.kept)
                file.save(path)
                return store.get(old)
            return spec
        if store.in_use(new):
            holder = store.given_name(new) or new
            raise NameInUse(
                store.taken_message(new, name.given),
                hint=f"choose another name, or remove that container first ('nspawnctl rm {holder}')",
            )
        old_def, _ = store.definition(old)
        new_def = store.settings_file(new, spec.auto_remove)
        file = NspawnFile.load(old_def)
        if any(v.subpath for v in spec.volumes):  # Bind= names the stages, which are by name
            file = spec_to_file(dataclasses.replace(spec, name=new), file)
        file.set(OWN_SECTION, "Name", name.kept)
        file.save(new_def)
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


def same_machine(old: str, new_text: str) -> bool:
    """Whether renaming machine ``old`` to ``new_text`` keeps its machine name (``my-app`` ->
    ``my_app``): then machined and the unit need not know, and a running container may be renamed."""
    from ..names import machine_name_of

    return machine_name_of(new_text) == old
