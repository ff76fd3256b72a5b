"""Containers on disk: a writable snapshot of an image in the pool plus its .nspawn file.

Nothing about a container lives anywhere else, except the last exit status (``state/NAME.json``,
written by the unit's ExecStopPost) which systemd forgets once the unit is collected, and for a
``--rm`` container, whose definition lives in /run, the marker ``state/NAME.autoremove``.

Crash safety (a kill at any instruction): a container exists once its root is renamed into place
from the hidden staging entry ``.#nspawnctl-NAME.create`` (its definition is written before);
removal renames the root to ``.#nspawnctl-NAME.rm`` first, so it is gone at once. Readers skip a
name with either staging entry; every change (under the pool lock, where no other change is half
done) first calls :meth:`ContainerStore.repair_locked`, which rolls a dead create back and a dead
removal forward, and removes ``--rm`` containers whose definition vanished with /run (a reboot).
A ``recreate`` swaps roots through ``.#nspawnctl-NAME.new``/``.old``; a dead one is repaired too
(the old root put back if the container has none, else deleted), except an ``.old`` that a live
``apply`` keeps until its new root has started: that one holds an flock on ``state/.NAME.recreate``.
Repair is best-effort per entry: a leftover that cannot be removed is reported (``notify``) and
blocks nothing but its own name.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainerNotFound, ImageNotFound, InvalidArgument, NameInUse, NspawnctlError, PoolError
from ..names import check_machine_name, is_machine_name, machine_name_of
from ..nspawnfile import OWN_SECTION, NspawnFile
from ..runopts import prepare_root
from ..spec import ContainerSpec, file_to_spec, spec_to_file
from . import btrfs, exits
from .exits import ExitRecord
from .images import Image
from .pool import Pool
from .subpath import marked

if TYPE_CHECKING:  # the hook steps load this module: locks.py's async half must cost them nothing
    from .locks import Held

_SAVE_TEMP = re.compile(r"\..+\.nspawn\.[a-z0-9_]{8}")
"""The temporary name ``NspawnFile.save`` writes a definition under (tempfile.mkstemp's)."""


def _no_notice(text: str) -> None:
    pass


ID_HEX = 64
"""A container ID's length in hex digits, docker's (older containers keep their 32-digit IDs)."""
SHORT_ID = 12
"""The prefix ``ps`` shows, as docker does."""
_HEX = re.compile(r"[0-9a-f]+")


def new_container_id() -> str:
    """A fresh container ID: 64 random hex digits, as docker's (os.urandom, as secrets.token_hex)."""
    return os.urandom(ID_HEX // 2).hex()


CGROUP_ROOTS = (Path("/sys/fs/cgroup/machine.slice"), Path("/sys/fs/cgroup/systemd/machine.slice"))
"""Where a container unit's cgroup lives (Slice=machine.slice; unified, then legacy hierarchy)."""


def _orphaned(held: Path, name: str) -> bool:
    """``state/NAME.attached`` that no live ``run`` holds, of a container whose unit has no
    cgroup any more (it ran and ended: nothing of it is left to stop)."""
    from ..run.units import unit_name

    try:
        fd = os.open(held, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its run is alive: it removes the container itself
    finally:
        os.close(fd)
    return not any((root / unit_name(name)).exists() for root in CGROUP_ROOTS)


class ContainerStore:
    def __init__(self, pool: Pool, notify: Callable[[str], None] = _no_notice) -> None:
        self.pool = pool
        self.paths = pool.paths
        self.notify = notify  # what repair could not remove (the library never prints)
        self._recreating: dict[str, int] = {}  # name -> fd holding the flock of a kept-aside root

    def root(self, name: str) -> Path:
        return self.paths.pool / name

    def settings_file(self, name: str, auto_remove: bool = False) -> Path:
        base = self.paths.runtime_settings if auto_remove else self.paths.settings
        return base / f"{name}.nspawn"

    def definition(self, name: str) -> tuple[Path, NspawnFile]:
        """The container's .nspawn file as it is (comments, unknown keys and all)."""
        path = self._find_file(name)
        if path is None:
            raise ContainerNotFound(f"no such container: {name}")
        return path, NspawnFile.load(path)

    def in_use(self, name: str) -> bool:
        """Whether anything (ours or not) holds the name: a .nspawn file or a pool entry."""
        return self._find_file(name) is not None or os.path.lexists(self.root(name))

    def _half_done(self, name: str) -> bool:
        """A create or removal of ``name`` is under way or was cut short: no container to show."""
        return any(os.path.lexists(self._staging(name, what)) for what in ("create", "rm"))

    def _find_file(self, name: str) -> Path | None:
        for base in (self.paths.settings, self.paths.runtime_settings):
            p = base / f"{name}.nspawn"
            if p.is_file():
                return p
        return None

    # -- queries ---------------------------------------------------------------------------
    def names(self) -> set[str]:
        return {name for name, _path, _file in self._definitions()}

    def defined_at_ns(self, name: str) -> int:
        """When the container's definition was last written (ns; 0 if none): what orders
        containers created in the same second (``Created=`` has whole seconds)."""
        path = self._find_file(name)
        try:
            return path.stat().st_mtime_ns if path is not None else 0
        except OSError:
            return 0

    def resolve(self, text: str) -> str:
        """The (machine) name of the container ``text`` means, with docker's precedence: an exact
        name first (the machine name, or the name as given: ``my_app`` of machine ``my-app``),
        then a full ID, then a unique ID prefix. A name costs one lookup (a given name one file
        read more); only text that is no name makes this read the definitions. Raises
        ContainerNotFound (no match) or InvalidArgument naming the candidates (a prefix of
        several IDs)."""
        if not is_machine_name(text):  # never a path: "../x" must not reach the file system
            machine = machine_name_of(text)
            if machine is not None and self.given_name(machine) == text:
                return machine
            raise ContainerNotFound(
                f"no such container: {text[:80]}", hint="see 'nspawnctl ps -a' for the containers there are"
            )
        if self._find_file(text) is not None or os.path.lexists(self.root(text)):
            return text  # what the name holds (a bad or half-made definition) is the caller's to say
        text_id = text
        if _HEX.fullmatch(text_id):
            ids = {name: file.get(OWN_SECTION, "Id") or "" for name, _path, file in self._definitions()}
            for name, cid in ids.items():
                if cid == text_id:
                    return name
            found = sorted(name for name, cid in ids.items() if cid.startswith(text_id))
            if len(found) == 1:
                return found[0]
            if found:
                raise InvalidArgument(
                    f"container ID prefix {text!r} is ambiguous: {', '.join(found)}",
                    hint="give more characters of the ID, or the name",
                )
        raise ContainerNotFound(
            f"no such container: {text}", hint="see 'nspawnctl ps -a' for the containers there are"
        )

    def given_name(self, name: str) -> str | None:
        """The name container ``name`` (a machine name) was given (``Name=``), else None: also
        when there is no such definition or it does not read."""
        path = self._find_file(name)
        if path is None:
            return None
        try:
            return NspawnFile.load(path).get(OWN_SECTION, "Name") or None
        except (InvalidArgument, OSError):
            return None

    def taken_message(self, machine: str, wanted: str) -> str:
        """Why ``wanted`` (a name whose machine name is ``machine``) cannot be had: the container
        holding that machine name is named, so ``a_b`` against ``a-b`` is plain to see."""
        holder = self.given_name(machine) or machine
        if holder == wanted:
            return f"the name {wanted!r} is already in use"
        return (
            f"the name {wanted!r} is already in use: container {holder!r} has its machine name "
            f"{machine!r} ('_' is '-' in a machine name)"
        )

    def has(self, name: str) -> bool:
        """Whether ``name`` is one of nspawnctl's containers (as ``name in names()``, but reading one
        file, not all: commands on one container must not cost more as containers are added)."""
        path = self._find_file(name)
        if path is None or self._half_done(name):
            return False
        try:
            return bool(NspawnFile.load(path).get(OWN_SECTION, "Id"))
        except (InvalidArgument, OSError):
            return False

    def names_in_use(self) -> set[str]:
        """Every name a definition file takes, nspawnctl's or not, without reading them: what a
        generated name must avoid (``create`` refuses all of these)."""
        found: set[str] = set()
        for base in (self.paths.settings, self.paths.runtime_settings):
            if base.is_dir():
                found.update(p.stem for p in base.glob("*.nspawn"))
        return found

    def _definitions(self) -> Iterator[tuple[str, Path, NspawnFile]]:
        """nspawnctl's definitions, each file read once: (name, path, parsed file)."""
        seen: set[str] = set()
        for base in (self.paths.settings, self.paths.runtime_settings):
            if not base.is_dir():
                continue
            for p in sorted(base.glob("*.nspawn")):
                if p.stem in seen or not p.is_file():  # the first directory's wins, as in _find_file
                    continue
                seen.add(p.stem)
                try:
                    file = NspawnFile.load(p)
                except (InvalidArgument, OSError):
                    continue
                if file.get(OWN_SECTION, "Id") and not self._half_done(p.stem):
                    yield p.stem, p, file

    def list(self, errors: builtins.list[InvalidArgument] | None = None) -> builtins.list[ContainerSpec]:
        """Every container whose definition reads; those that do not are left out (and their
        errors, FILE:LINE and what is wrong, added to ``errors``): one bad file hides no other.
        Each definition is read once (not once to find the names and again to load each)."""
        self.pool.check()
        out = []
        for name, path, file in sorted(self._definitions()):
            try:
                spec = file_to_spec(name, file, path)
            except InvalidArgument as e:
                if errors is not None:
                    errors.append(e)
                continue
            if spec.id:
                out.append(spec)
        return out

    def get(self, name: str) -> ContainerSpec:
        self.pool.check()
        path = self._find_file(name)
        if path is None or self._half_done(name):
            raise ContainerNotFound(
                f"no such container: {name}", hint="see 'nspawnctl ps -a' for the containers there are"
            )
        spec = file_to_spec(name, NspawnFile.load(path), path)
        if not spec.id:
            raise ContainerNotFound(f"no such container: {name} ({path} is not nspawnctl's)")
        return spec

    def users_of(self, image_id: str) -> builtins.list[str]:
        """Containers made from the image, also those whose definition holds a bad value."""
        specs = self.list()
        users = [c.name for c in specs if c.image_id == image_id]
        for name in sorted(self.names() - {c.name for c in specs}):
            path = self._find_file(name)
            try:
                if path is not None and NspawnFile.load(path).get(OWN_SECTION, "ImageId") == image_id:
                    users.append(name)
            except (InvalidArgument, OSError):
                continue
        return users

    def exit_record(self, name: str) -> ExitRecord | None:
        return exits.load(self.paths.state, name)

    # -- changes ---------------------------------------------------------------------------
    def create(
        self,
        spec: ContainerSpec,
        image: Image,
        base: NspawnFile | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> ContainerSpec:
        """Snapshot the image and write the definition (onto ``base``, a user's file whose other
        keys and comments are kept); refuses names already taken anywhere. ``prepare`` runs under
        the same hold of the pool lock just before the snapshot: the named volumes are made there,
        so a ``volume prune`` never sees one of them without the container that binds it.

        The snapshot is made under a hidden staging name and renamed into place last, after the
        definition: that rename is the moment the container exists (see the module docstring)."""
        check_machine_name(spec.name)
        self.pool.check()
        with self.pool.lock():
            self.repair_locked()
            root = self.root(spec.name)
            stuck = [p for p in (self._staging(spec.name, w) for w in ("create", "rm")) if os.path.lexists(p)]
            if stuck:
                raise PoolError(
                    f"a leftover of an earlier container {spec.name!r} could not be removed: {stuck[0]}",
                    hint="choose another --name, or delete it by hand ('btrfs subvolume delete -R PATH')",
                )
            if self._find_file(spec.name):  # nspawnctl's or not (a names() scan would grow with each)
                holder = self.given_name(spec.name) or spec.name
                raise NameInUse(
                    self.taken_message(spec.name, spec.display_name),
                    hint=f"remove it ('nspawnctl rm {holder}') or choose another --name",
                )
            if os.path.lexists(root):
                raise NameInUse(
                    f"the name {spec.name!r} is taken by {root}, which nspawnctl did not make",
                    hint=f"choose another --name, or remove that machine image "
                    f"('machinectl remove {spec.name}')",
                )
            if not image.path.is_dir():  # rmi took the lock first (it deletes under it)
                raise ImageNotFound(
                    f"image {spec.image} was removed while the container was being created",
                    hint="nothing was made; pull or import the image again",
                )
            if prepare is not None:
                prepare()
            staging = self._staging(spec.name, "create")
            marker = self._autoremove_marker(spec.name)
            definition = self.settings_file(spec.name, spec.auto_remove)
            try:
                if spec.auto_remove:  # its definition is in /run: after a reboot this says it was ours
                    self.paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
                    marker.write_text(spec.id + "\n")
                btrfs.snapshot(image.path, staging)
                # systemd-nspawn refuses an app-mode root without /usr; minimal images often lack it.
                usr = staging / "usr"
                if not os.path.lexists(usr):
                    usr.mkdir(mode=0o755)
                # the working directory, --add-host, --dns (runopts.py)
                prepare_root(staging, spec.workdir, spec.settings, spec.boot, spec.volumes)
                spec_to_file(marked(self.paths.store / "volumes", spec), base).save(definition)
                os.rename(staging, root)
            except BaseException:
                if not os.path.lexists(root):
                    definition.unlink(missing_ok=True)
                    marker.unlink(missing_ok=True)
                btrfs.delete(staging)
                raise
        from ..eventlog import record

        record("create", spec.id, spec.name, spec.image)  # for a later 'events --since'
        return spec

    def repair_locked(self) -> None:
        """Finish what killed commands left half done (the caller holds the pool lock, so no live
        command is in the middle of a change): a create is rolled back (its staging snapshot, and
        its definition if the root never got into place), a removal is finished, and a ``--rm``
        container whose definition is gone (it lived in /run: a reboot) is removed. Temporary
        definition files of dead writers go too (every writer holds the lock). A dead recreate's
        new root is deleted and its old one put back if the container has no root, else deleted
        (unless a live ``apply`` still holds it, see :meth:`recreate`).

        Each entry on its own: one that cannot be removed (a payload's immutable file, ...) is
        told to ``notify`` and the others are still repaired."""
        pool = self.paths.pool
        if pool.is_dir():
            for entry in sorted(pool.glob(".#nspawnctl-*")):
                name, _, what = entry.name.removeprefix(".#nspawnctl-").rpartition(".")
                self._best_effort(entry, self._repair_entry, entry, name, what)
        state = self.paths.state
        if state.is_dir():
            for marker in state.glob("*.autoremove"):
                name = marker.name.removesuffix(".autoremove")
                if self._find_file(name) is None:
                    self._best_effort(self.root(name), self._remove_locked, name)
            for held in state.glob("*.attached"):
                name = held.name.removesuffix(".attached")
                if _orphaned(held, name):  # its foreground run died and its unit is gone
                    self._network_down(name)  # the veth netns such a run builds itself
                    self._best_effort(self.root(name), self._remove_locked, name)
            for tmp in state.glob(".*.attached.*"):  # a run killed naming its lock (see attached)
                tmp.unlink(missing_ok=True)
        for base in (self.paths.settings, self.paths.runtime_settings):
            if base.is_dir():
                for tmp in base.glob(".*.nspawn.*"):
                    if _SAVE_TEMP.fullmatch(tmp.name):  # NspawnFile.save's, not an editor's swap file
                        tmp.unlink(missing_ok=True)

    def _network_down(self, name: str) -> None:
        """Tear down the network a dead foreground ``run --rm`` built (client._network_here), if
        it recorded one; what cannot be removed is told to ``notify``."""
        from ..net import statefile
        from .files import sweep

        sweep(statefile.RUN_DIR, staging=False)  # a record the run was killed writing
        if not statefile.state_path(name).exists():
            return
        from ..errors import NspawnctlError
        from ..net.setup import down

        try:
            down(self.paths, name)
        except NspawnctlError as e:
            self.notify(f"warning: cannot remove the network of the leftover container {name}: {e.message}")

    def _best_effort(self, what: Path, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except (PoolError, OSError) as e:
            why = e.message if isinstance(e, PoolError) else (e.strerror or str(e))
            self.notify(f"warning: cannot remove the leftover {what}: {why}")

    def _repair_entry(self, entry: Path, name: str, what: str) -> None:
        if what == "create":
            if not os.path.lexists(self.root(name)):
                self._unlink_definitions(name)
                self._autoremove_marker(name).unlink(missing_ok=True)
            btrfs.delete(entry)
        elif what == "rm":
            self._forget(name)
            btrfs.delete(entry)
        elif what == "new":  # only ever there under the lock: its recreate is dead
            btrfs.delete(entry)
        elif what == "old":
            if os.path.lexists(self.root(name)) and self._recreate_in_progress(name):
                return  # a live apply's previous root, until its new one has started
            if not os.path.lexists(self.root(name)) and self._find_file(name) is not None:
                os.rename(entry, self.root(name))  # killed between the two renames
            else:
                btrfs.delete(entry)
            self._recreate_lock(name).unlink(missing_ok=True)  # a dead apply's (only made under the lock)

    def _recreate_lock(self, name: str) -> Path:
        return self.paths.state / f".{name}.recreate"

    def _recreate_in_progress(self, name: str) -> bool:
        """Whether a live ``recreate(keep_old=True)`` (in any process) still holds the old root."""
        if name in self._recreating:
            return True
        try:
            fd = os.open(self._recreate_lock(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _hold_old(self, name: str) -> None:
        self._release_old(name)
        self.paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._recreate_lock(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a dead holder's flock is gone
        except BlockingIOError:
            os.close(fd)
            raise PoolError(
                f"another apply is recreating {name}", hint="wait for it to end, then run this again"
            ) from None
        self._recreating[name] = fd

    def _release_old(self, name: str) -> None:
        fd = self._recreating.pop(name, None)
        if fd is not None:
            self._recreate_lock(name).unlink(missing_ok=True)
            os.close(fd)

    def rewrite(self, spec: ContainerSpec, base: NspawnFile | None = None) -> None:
        """Replace the definition of an existing (stopped) container; its snapshot stays."""
        with self.pool.lock():
            self._rewrite(spec, base)

    def recreate(
        self, spec: ContainerSpec, image: Image, base: NspawnFile | None = None, keep_old: bool = False
    ) -> None:
        """A new snapshot of ``image`` in place of the container's, and its new definition: what
        a changed image means for a declared container (its writable layer is lost, as compose's).

        The new root is made under a staging name first and swapped in by renames, so a failure
        at any step leaves the container as it was (old root, old definition), never without one.
        With ``keep_old`` the old root stays aside (and the exit record with it) until
        :meth:`finish_recreate` deletes it or :meth:`undo_recreate` puts it back; meanwhile this
        process holds an flock that keeps :meth:`repair_locked` (of other commands) off it.
        """
        root = self.root(spec.name)
        new, old = self._staging(spec.name, "new"), self._staging(spec.name, "old")
        with self.pool.lock():
            for leftover in (new, old):  # from an earlier recreate that was interrupted
                btrfs.delete(leftover)
            btrfs.snapshot(image.path, new)
            try:
                usr = new / "usr"
                if not os.path.lexists(usr):
                    usr.mkdir(mode=0o755)
                prepare_root(new, spec.workdir, spec.settings, spec.boot, spec.volumes)
                had_root = os.path.lexists(root)
                if had_root and keep_old:
                    self._hold_old(spec.name)
                if had_root:
                    os.rename(root, old)
                try:
                    os.rename(new, root)
                    try:
                        self._rewrite(spec, base)
                    except BaseException:
                        os.rename(root, new)
                        raise
                except BaseException:
                    if had_root:
                        os.rename(old, root)
                    raise
            except BaseException:
                self._release_old(spec.name)
                btrfs.delete(new)
                raise
            if not keep_old:
                self._drop_old(spec.name)

    def finish_recreate(self, name: str) -> None:
        """The new root of a ``recreate(keep_old=True)`` has proved itself: the old one goes."""
        with self.pool.lock():
            self._drop_old(name)

    def _drop_old(self, name: str) -> None:
        self._release_old(name)
        (self.paths.state / f"{name}.json").unlink(missing_ok=True)
        try:
            btrfs.delete(self._staging(name, "old"))
        except PoolError:
            pass  # the container is complete; the next change's repair removes the leftover

    def undo_recreate(self, name: str, path: Path, previous: NspawnFile) -> None:
        """Put back the root a ``recreate(keep_old=True)`` kept aside and the definition it had
        (``previous``, as it was at ``path``); the new root is deleted. The container is stopped."""
        root, new, old = self.root(name), self._staging(name, "new"), self._staging(name, "old")
        with self.pool.lock():
            if not os.path.isdir(old):
                self._release_old(name)
                raise PoolError(f"the previous root of {name} is gone ({old})")
            btrfs.delete(new)
            if os.path.lexists(root):
                os.rename(root, new)
            try:
                os.rename(old, root)
            except BaseException:
                if os.path.lexists(new):
                    os.rename(new, root)
                raise
            self._restore(name, path, previous)
            self._release_old(name)
            try:
                btrfs.delete(new)
            except PoolError:
                pass  # the container is complete; the next recreate removes the leftover

    def restore_definition(self, name: str, path: Path, previous: NspawnFile) -> None:
        """Write back the definition ``previous`` the container had at ``path`` (an update undone)."""
        with self.pool.lock():
            self._restore(name, path, previous)

    def _restore(self, name: str, path: Path, previous: NspawnFile) -> None:
        previous.save(path)
        for base in (self.paths.settings, self.paths.runtime_settings):
            other = base / f"{name}.nspawn"
            if other != path:
                other.unlink(missing_ok=True)

    def _staging(self, name: str, what: str) -> Path:
        """A hidden pool entry (machined lists no names starting with '.') next to the root."""
        return self.paths.pool / f".#nspawnctl-{name}.{what}"

    def _rewrite(self, spec: ContainerSpec, base: NspawnFile | None) -> None:
        target = self.settings_file(spec.name, spec.auto_remove)
        spec_to_file(marked(self.paths.store / "volumes", spec), base).save(target)
        other = self.settings_file(spec.name, not spec.auto_remove)
        other.unlink(missing_ok=True)

    def remove(self, name: str, volumes: bool = False, held: Held | None = None) -> None:
        """Delete snapshot, definition and state; the caller has made sure it is not running.
        ``volumes`` (docker's ``rm -v``): also its anonymous volumes no other container binds.
        ``held``: the container's lock (:meth:`locked`), which the caller holds; its file goes too."""
        from ..eventlog import record

        try:
            spec: ContainerSpec | None = self.get(name)
        except NspawnctlError:  # a definition that does not read: removable, its ID unknown
            spec = None
        with self.pool.lock():
            self._remove_locked(name, volumes, held)
        if spec is not None:
            record("destroy", spec.id, name, spec.image)  # for a later 'events --since'

    def prune_locked_leftovers(self) -> None:
        """:meth:`repair_locked` under the lock (for ``system prune``)."""
        with self.pool.lock():
            self.repair_locked()

    def _remove_locked(self, name: str, volumes: bool = False, held: Held | None = None) -> None:
        """The root goes first, by one rename to a staging name (the container is gone from that
        moment; :meth:`repair_locked` finishes a removal cut short), then what describes it."""
        root, staging = self.root(name), self._staging(name, "rm")
        anonymous = self._volumes_of(name, any_definition=volumes)
        if os.path.lexists(root):
            btrfs.delete(staging)
            os.rename(root, staging)
        self._forget(name, held)
        btrfs.delete(staging)
        if anonymous:  # docker's --rm: the container's anonymous volumes go with it
            from .volumes import VolumeStore, remove_anonymous

            # a bind inside an anonymous volume (volume-subpath) keeps it too, as for volume rm
            in_use = set(VolumeStore(self.paths, dict).users_by_path(self.list()))
            remove_anonymous(self.paths, anonymous, in_use)
        for what in ("new", "old"):  # a recreate's, cut short
            btrfs.delete(self._staging(name, what))
        self._release_old(name)

    def _volumes_of(self, name: str, any_definition: bool = False) -> builtins.list[str]:
        """The volume paths a ``--rm`` container (its definition in the runtime directory) binds;
        with ``any_definition`` any container's."""
        path = self._find_file(name)
        if path is None or (path.parent != self.paths.runtime_settings and not any_definition):
            return []
        volumes = str(self.paths.store / "volumes") + "/"
        try:
            spec = file_to_spec(name, NspawnFile.load(path), path)
        except (OSError, InvalidArgument):
            return []
        return [v.host for v in spec.volumes if v.host.startswith(volumes)]

    def _forget(self, name: str, held: Held | None = None) -> None:
        self._unlink_definitions(name)
        (self.paths.state / f"{name}.json").unlink(missing_ok=True)
        self._autoremove_marker(name).unlink(missing_ok=True)
        self._stop_lock(name).unlink(missing_ok=True)
        self._attached_lock(name).unlink(missing_ok=True)
        self._drop_definition_lock(name, held)

    def _drop_definition_lock(self, name: str, held: Held | None) -> None:
        """Unlink ``state/.NAME.lock``, only ever by a holder of it (a waiter then locks the path
        anew, see locks.py; unlinked under another's hold, two processes would hold "the" lock):
        the caller's ``held``, else the lock taken here if nobody holds it (never waited for: the
        pool lock may be held). A file someone holds stays, to be reused."""
        path = self._definition_lock(name)
        if held is not None and held.held:
            if held.path == path:
                path.unlink(missing_ok=True)
            return
        if not os.path.lexists(path):
            return
        from .locks import try_acquire

        mine = try_acquire(path)
        if mine is not None:
            try:
                path.unlink(missing_ok=True)
            finally:
                mine.release()

    def _unlink_definitions(self, name: str) -> None:
        for base in (self.paths.settings, self.paths.runtime_settings):
            (base / f"{name}.nspawn").unlink(missing_ok=True)

    def _autoremove_marker(self, name: str) -> Path:
        return self.paths.state / f"{name}.autoremove"

    def _attached_lock(self, name: str) -> Path:
        return self.paths.state / f"{name}.attached"

    # -- the container's own lock --------------------------------------------------------------
    def _definition_lock(self, name: str) -> Path:
        """``state/locks/NAME``: a directory of their own, so no other state file (a diff's
        ``.diff-TOKEN.lock``, a container named ``diff-TOKEN``) shares their names."""
        return self.paths.state / "locks" / name

    def locked(self, name: str) -> contextlib.AbstractContextManager[Held]:
        """The container's own lock (an flock on ``state/locks/NAME``): a start holds it from
        reading the definition until its unit's start job is queued; every rewrite of the
        definition (network connect/disconnect, update, rename) holds it while it checks the
        unit's state and writes. So a start never runs a definition older than the file, and a
        rewrite never lands under a unit that is starting. Taken before the pool lock, never
        inside it; never held across a wait for a unit. A killed holder's lock dies with it."""
        from .locks import hold

        self._definition_lock(name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return hold(self._definition_lock(name))

    def alocked(self, name: str) -> contextlib.AbstractAsyncContextManager[Held]:
        """:meth:`locked` waited for off the event loop (cancel-safe: see store/locks.py)."""
        from .locks import ahold

        self._definition_lock(name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return ahold(self._definition_lock(name))

    def _lock_attached(self, name: str) -> int:
        """The locked ``state/NAME.attached`` fd (the caller holds the pool lock)."""
        from ..tempfiles import mkstemp

        fd, tmp = mkstemp(self.paths.state, f".{name}.attached.")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a file only this process knows yet: never waits
            os.rename(tmp, self._attached_lock(name))
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        return fd

    @contextlib.asynccontextmanager
    async def aattached(self, name: str) -> AsyncIterator[None]:
        """:meth:`attached` for the event loop: the pool lock is polled for (a long holder, an
        import or a prune, must not freeze the API server), cancel-safe (see store/locks.py)."""
        from .locks import ahold

        self.paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        async with ahold(self.paths.lock):
            fd = self._lock_attached(name)
        try:
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def attached(self, name: str) -> Iterator[None]:
        """Held (an flock on ``state/NAME.attached``) by a foreground ``run --rm`` that removes its
        container itself, its unit having no ExecStopPost hook. Should that command die (or fail
        to remove it), :meth:`repair_locked` removes the container once nobody holds the lock
        and its unit is gone; the file goes with the container.

        The file is locked under a temporary name and then renamed into place: a repair never
        sees it unlocked while the run that made it is alive. Both under the pool lock, so a
        temporary name a repair finds is a dead run's."""
        self.paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.pool.lock():
            fd = self._lock_attached(name)
        try:
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def stopping(self, name: str) -> Iterator[None]:
        """Held while ``stop`` is under way (the payload has its SIGTERM but runs on), so that a
        ``start`` meanwhile waits for the stop to end instead of taking the container for running
        and returning at once (as docker's start waits for the container's lock)."""
        self.paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._stop_lock(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def wait_stop(self, name: str) -> bool:
        """Block until a ``stop`` of the container under way has ended; False if none was."""
        try:
            fd = os.open(self._stop_lock(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)
        return True

    def _stop_lock(self, name: str) -> Path:
        return self.paths.state / f".{name}.stopping"

    def record_exit(self, name: str, record: ExitRecord) -> None:
        exits.write(self.paths.state, name, record)

    def clear_exit(self, name: str) -> None:
        exits.clear(self.paths.state, name)
