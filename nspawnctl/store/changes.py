"""What a container changed against its image (docker's ``diff``, ``GET /containers/{id}/changes``).

Every container is a btrfs snapshot of its image, so the kernel can tell the difference without
walking either tree: a read-only snapshot of the container is sent against the image
(``BTRFS_IOC_SEND`` with ``NO_FILE_DATA``, the ioctl ``btrfs send --no-data -p`` makes) and the
stream's operations (sendstream.py) are mapped to docker's kinds:

- a new inode (made under an orphan name ``o<ino>-<gen>-0`` and renamed into place), a new hard
  link: added; unlink/rmdir of an image's entry: deleted (its children are not listed, as docker's);
- an image's entry renamed: deleted at the old path, added at the new one with everything below it
  (docker's comparison sees a missing and a new path); deleted and added at one path: modified;
- content (write, clone, truncate, update_extent, fallocate), mode, owner, xattrs, flags: modified;
  ``utimes`` alone only when a non-directory's mtime differs from the image's (a directory's mtime
  and any atime/ctime are not a change for docker either);
- every directory above a change (not ``/``) is listed as modified, as docker lists it;
- the mount points nspawn and nspawnctl make in every container (:data:`SETUP_PATHS`, podman's
  ``initInodes`` list adapted) are left out, as docker's init layer and podman leave out theirs.

The temporary snapshot is named ``.#nspawnctl-diff-<token>`` in the pool (hidden from machined)
while ``state/.diff-<token>.lock`` is flock'ed; it is deleted on every exit, and a leftover of a
killed command (its lock free) is deleted by the next ``diff``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import ArchiveError, Conflict, InvalidArgument, NotFound, NspawnctlError, PoolError
from . import btrfs, rootpath
from . import sendstream as ss

if TYPE_CHECKING:
    from .containers import ContainerStore
    from .images import ImageStore

MODIFIED, ADDED, DELETED = 0, 1, 2
KIND_LETTER = {MODIFIED: "C", ADDED: "A", DELETED: "D"}
LIMIT = 200_000
"""Most paths one answer holds (touched entries tracked while reading the stream, too)."""
SETUP_PATHS = frozenset(
    {
        "/dev", "/proc", "/sys", "/run", "/tmp", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
        "/etc/mtab", "/etc/localtime", "/var/log/journal", "/usr",
    }
)  # fmt: skip
"""What nspawn (and nspawnctl's create: ``/usr`` where an image lacks it) makes in a container's
root: mount points, the journal's directory, the time zone link. Left out when added or changed
(not when deleted), unless the payload wrote something below them."""
PREFIX = ".#nspawnctl-diff-"
_TEMP = re.compile(re.escape(PREFIX) + "[0-9a-f]{16}")

_IOC_SEND = 0x40489426  # _IOW(0x94, 38, struct btrfs_ioctl_send_args) (72 bytes)
_SEND_ARGS = struct.Struct("<qQQQQI28x")
_NO_FILE_DATA = 0x1


class TooManyChanges(NspawnctlError):
    """More changed paths than one answer holds."""


def too_many(limit: int) -> TooManyChanges:
    return TooManyChanges(
        f"the container changed more than {limit} paths",
        hint="list them with 'btrfs send --no-data -p IMAGE SNAPSHOT | btrfs receive --dump'",
    )


class ParentGone(Conflict):
    """The subvolume a container was snapshotted from is not in the store any more."""


@dataclass(frozen=True)
class Change:
    path: str  # absolute, as docker's ("/etc/foo"); undecodable bytes kept as surrogates
    kind: int  # MODIFIED, ADDED, DELETED

    @property
    def letter(self) -> str:
        return KIND_LETTER[self.kind]

    def to_json(self) -> dict[str, object]:
        """Docker's shape; bytes that are not UTF-8 become U+FFFD, as Go's JSON encoder makes them."""
        return {"Path": os.fsencode(self.path).decode("utf-8", "replace"), "Kind": self.kind}


@dataclass
class _Entry:
    origin: bytes | None  # the path it had in the image; None: new in the container
    modified: bool = False


@dataclass
class _Node:
    entry: _Entry | None = None  # None: a directory only passed through
    children: dict[bytes, _Node] = field(default_factory=dict)


class Tracker:
    """Replays a send stream's operations on the paths they touch (not the whole tree) and
    remembers, for each touched entry, where it was in the image. ``parent_lstat`` answers for the
    image's paths (utimes needs the image's mtime); ``walk_added`` lists what is below a final path
    that was renamed into place (relative, slash-joined)."""

    def __init__(
        self,
        parent_lstat: Callable[[bytes], os.stat_result | None],
        walk_added: Callable[[bytes], Iterable[bytes]],
        limit: int = LIMIT,
    ) -> None:
        self.root = _Node(_Entry(b""))
        self.deleted: set[bytes] = set()
        self.parent_lstat = parent_lstat
        self.walk_added = walk_added
        self.limit = limit
        self.nodes = 0

    # -- the tree of touched paths --------------------------------------------------------
    def _count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes + len(self.deleted) > self.limit:
            raise too_many(self.limit)

    def _node(self, path: bytes) -> _Node:
        node = self.root
        for comp in path.split(b"/"):
            nxt = node.children.get(comp)
            if nxt is None:
                nxt = node.children[comp] = _Node()
                self._count()
            node = nxt
        return node

    def _find(self, path: bytes) -> tuple[_Node, bytes, _Node] | None:
        parent = self.root
        comps = path.split(b"/")
        for comp in comps[:-1]:
            nxt = parent.children.get(comp)
            if nxt is None:
                return None
            parent = nxt
        node = parent.children.get(comps[-1])
        return None if node is None else (parent, comps[-1], node)

    def resolve(self, path: bytes) -> bytes | None:
        """Where the entry now at ``path`` was in the image (None: it is new)."""
        node = self.root
        best: tuple[int, _Entry] | None = None
        comps = path.split(b"/")
        for depth, comp in enumerate(comps):
            nxt = node.children.get(comp)
            if nxt is None:
                break
            node = nxt
            if node.entry is not None:
                best = (depth + 1, node.entry)
        if best is None:
            return path
        depth, entry = best
        if entry.origin is None:
            return None
        return b"/".join([entry.origin, *comps[depth:]]) if depth < len(comps) else entry.origin

    def _entry(self, path: bytes) -> _Entry:
        """The entry now at ``path``, tracked from now on."""
        origin = self.resolve(path)
        node = self._node(path)
        if node.entry is None:
            node.entry = _Entry(origin)
        return node.entry

    def _existed(self, path: bytes, origin: bytes | None) -> bool:
        return origin is not None and self.parent_lstat(origin) is not None

    # -- operations ------------------------------------------------------------------------
    def create(self, path: bytes) -> None:
        found = self._find(path)
        if found is not None:
            origin = found[2].entry.origin if found[2].entry else self.resolve(path)
            if self._existed(path, origin):
                self._delete_origin(origin)
        node = self._node(path)
        node.entry = _Entry(None)

    def modify(self, path: bytes) -> None:
        entry = self._entry(path)
        if entry.origin is not None:
            entry.modified = True

    def utimes(self, path: bytes, mtime_ns: int | None) -> None:
        origin = self.resolve(path)
        if origin is None:
            return
        st = self.parent_lstat(origin)
        if st is None or (not stat.S_ISDIR(st.st_mode) and (mtime_ns is None or st.st_mtime_ns != mtime_ns)):
            self.modify(path)

    def _delete_origin(self, origin: bytes | None) -> None:
        if origin is not None:
            self.deleted.add(origin)
            self._count(0)

    def delete(self, path: bytes) -> None:
        found = self._find(path)
        if found is None:
            self._delete_origin(self.resolve(path))
            return
        parent, name, node = found
        self._delete_origin(node.entry.origin if node.entry else self.resolve(path))
        del parent.children[name]

    def rename(self, src: bytes, dst: bytes) -> None:
        if src == dst:
            return
        self._entry(src)  # tracked, so it carries its origin along
        found = self._find(src)
        assert found is not None
        parent, name, node = found
        del parent.children[name]
        target = self._find(dst)
        if target is not None:  # renamed over an entry (send orphanizes first; be safe anyway)
            tparent, tname, tnode = target
            origin = tnode.entry.origin if tnode.entry else self.resolve(dst)
            if self._existed(dst, origin):
                self._delete_origin(origin)
            del tparent.children[tname]
        dparent = self._node(dst.rpartition(b"/")[0]) if b"/" in dst else self.root
        dparent.children[dst.rpartition(b"/")[2]] = node

    def apply(self, command: ss.Command) -> None:
        c = command.cmd
        if c in (ss.MKFILE, ss.MKDIR, ss.MKNOD, ss.MKFIFO, ss.MKSOCK, ss.SYMLINK, ss.LINK):
            self.create(command.path())
        elif c == ss.RENAME:
            self.rename(command.path(), command.path(ss.A_PATH_TO))
        elif c in (ss.UNLINK, ss.RMDIR):
            self.delete(command.path())
        elif c == ss.UTIMES:
            path = command.path(root=True)
            if path:  # "/" itself: never listed, as docker's
                self.utimes(path, command.mtime_ns())
        elif c in (
            ss.SET_XATTR, ss.REMOVE_XATTR, ss.WRITE, ss.CLONE, ss.TRUNCATE, ss.CHMOD, ss.CHOWN,
            ss.UPDATE_EXTENT, ss.FALLOCATE, ss.SETFLAGS, ss.ENCODED_WRITE, ss.ENABLE_VERITY,
        ):  # fmt: skip
            path = command.path(root=True)
            if path:
                self.modify(path)
        # SUBVOL/SNAPSHOT (the stream's start) and END say nothing about paths

    # -- the answer ------------------------------------------------------------------------
    def _touched(self) -> Iterator[tuple[bytes, _Entry]]:
        todo: list[tuple[bytes, _Node]] = [(b"", self.root)]
        while todo:
            prefix, node = todo.pop()
            for name, child in node.children.items():
                path = prefix + b"/" + name if prefix else name
                if child.entry is not None:
                    yield path, child.entry
                todo.append((path, child))

    def result(self, ignore: frozenset[str] = frozenset()) -> list[Change]:
        kinds: dict[bytes, int] = {}
        deleted = set(self.deleted)
        for path, entry in self._touched():
            if entry.origin is None:
                kinds[path] = ADDED
            elif entry.origin != path:
                deleted.add(entry.origin)
                kinds[path] = ADDED
                for below in self.walk_added(path):
                    kinds[below] = ADDED
                    if len(kinds) > self.limit:
                        raise too_many(self.limit)
            elif entry.modified:
                kinds.setdefault(path, MODIFIED)
        for path in deleted:
            kinds[path] = MODIFIED if path in kinds else DELETED
        gone = {p for p, k in kinds.items() if k == DELETED}
        kept: dict[bytes, int] = {}
        children: dict[bytes, list[bytes]] = {}
        for path, kind in kinds.items():
            comps = path.split(b"/")
            if kind == DELETED and any(b"/".join(comps[:i]) in gone for i in range(1, len(comps))):
                continue  # below a deleted directory: docker lists the directory only
            kept[path] = kind
            children.setdefault(path.rpartition(b"/")[0], []).append(path)
        # nspawn's own mount points (and the directories it made only to hold them) are no change
        # of the payload's; one the payload wrote below stays
        dropped: set[bytes] = set()
        for path in sorted(kept, key=lambda p: p.count(b"/"), reverse=True):
            kids = children.get(path, [])
            if kept[path] == DELETED or not all(k in dropped for k in kids):
                continue
            if "/" + os.fsdecode(path) in ignore or (kids and kept[path] == ADDED):
                dropped.add(path)
        out: dict[str, int] = {}
        for path, kind in kept.items():
            if path in dropped:
                continue
            comps = path.split(b"/")
            out["/" + os.fsdecode(path)] = kind
            for i in range(1, len(comps)):
                out.setdefault("/" + os.fsdecode(b"/".join(comps[:i])), MODIFIED)
        return [Change(p, k) for p, k in sorted(out.items(), key=lambda pk: pk[0].split("/"))]


def changes_from_stream(
    stream: IO[bytes],
    parent_lstat: Callable[[bytes], os.stat_result | None],
    walk_added: Callable[[bytes], Iterable[bytes]],
    limit: int = LIMIT,
    ignore: frozenset[str] = SETUP_PATHS,
) -> list[Change]:
    """The changes a send stream describes; raises ArchiveError on a malformed one."""
    tracker = Tracker(parent_lstat, walk_added, limit)
    for command in ss.commands(stream):
        tracker.apply(command)
    return tracker.result(ignore)


# -- on the pool -------------------------------------------------------------------------------
def _comps(rel: bytes) -> rootpath.Comps | None:
    comps = rootpath.split(rel)
    return None if b".." in comps else tuple(comps)


def _lstat_in(root: Path) -> Callable[[bytes], os.stat_result | None]:
    """lstat below ``root`` through directory fds opened with O_NOFOLLOW: the trees are a
    stranger's, and a symbolic link on the way (an image's ``/var/run -> /run``) must not lead to
    the host's files."""

    def lstat(rel: bytes) -> os.stat_result | None:
        if (comps := _comps(rel)) is None:
            return None
        try:
            root_fd = os.open(root, rootpath.DIR_READ)
        except OSError:
            return None
        try:
            return rootpath.lstat(root_fd, comps)
        except OSError:  # a symbolic link or a non-directory on the way: not there as a path
            return None
        finally:
            os.close(root_fd)

    return lstat


def _walker(root: Path, limit: int) -> Callable[[bytes], Iterator[bytes]]:
    """What is below ``rel`` (a directory added or renamed), walked through directory fds opened
    with O_NOFOLLOW: a payload that renames a symbolic link to a host directory (``mv /var/run
    /var/run2`` on Debian, whose /var/run is ``-> /run``) must not make the walk list the host's."""

    def walk(rel: bytes) -> Iterator[bytes]:
        if (comps := _comps(rel)) is None:
            return
        try:
            root_fd = os.open(root, rootpath.DIR_READ)
        except OSError:
            return
        try:
            try:
                start = rootpath.open_dir(root_fd, comps, rootpath.DIR_READ)
            except OSError:  # not a directory (a file, a symbolic link): nothing below it
                return
            todo = [(rel, start)]
            seen = 0
            try:
                while todo:
                    cur, fd = todo.pop()
                    try:
                        with os.scandir(fd) as entries:
                            names = [(os.fsencode(e.name), e.is_dir(follow_symlinks=False)) for e in entries]
                        for name, is_dir in names:
                            sub = cur + b"/" + name
                            seen += 1
                            if seen > limit:
                                raise too_many(limit)
                            yield sub
                            if is_dir:
                                with contextlib.suppress(OSError):  # gone, or no longer a directory
                                    todo.append((sub, os.open(name, rootpath.DIR_READ, dir_fd=fd)))
                    finally:
                        os.close(fd)
            finally:
                for _, fd in todo:
                    os.close(fd)
        finally:
            os.close(root_fd)

    return walk


def _send(snapshot: Path, parent_id: int, consume: Callable[[IO[bytes]], list[Change]]) -> list[Change]:
    """Run the send ioctl on ``snapshot`` in a thread writing into a pipe that ``consume`` reads."""
    fd = os.open(snapshot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    r, w = os.pipe2(os.O_CLOEXEC)
    failure: list[OSError] = []

    def run() -> None:
        try:
            fcntl.ioctl(fd, _IOC_SEND, _SEND_ARGS.pack(w, 0, 0, parent_id, _NO_FILE_DATA, 0))
        except OSError as e:
            failure.append(e)
        finally:
            os.close(w)

    thread = threading.Thread(target=run, name="btrfs-send", daemon=True)
    thread.start()
    reader = os.fdopen(r, "rb", buffering=1 << 16)
    try:
        try:
            result = consume(reader)
        except ArchiveError:
            if failure:  # the stream broke because send failed: say why
                raise PoolError(f"btrfs send failed: {failure[0].strerror or failure[0]}") from None
            raise
    finally:
        reader.close()  # a send still writing gets EPIPE and ends
        thread.join()
        os.close(fd)
    if failure:
        raise PoolError(f"btrfs send failed: {failure[0].strerror or failure[0]}")
    return result


def sweep(pool: Path, state: Path) -> None:
    """Delete the temporary snapshots of killed diffs (their lock is free)."""
    try:
        names = [n for n in os.listdir(pool) if _TEMP.fullmatch(n)]  # not a container "diff-…"'s staging
    except OSError:
        return
    for name in names:
        lock = state / f".diff-{name[len(PREFIX) :]}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live diff's
            with contextlib.suppress(PoolError):
                btrfs.delete(pool / name)
            lock.unlink(missing_ok=True)
        finally:
            if fd >= 0:
                os.close(fd)


@contextlib.contextmanager
def read_only_snapshot(root: Path, pool: Path, state: Path) -> Iterator[Path]:
    """A read-only snapshot of ``root`` in the pool's hidden area, deleted on every exit."""
    token = os.urandom(8).hex()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = state / f".diff-{token}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    snap = pool / f"{PREFIX}{token}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        btrfs.snapshot(root, snap, read_only=True)
        yield snap
    finally:
        try:
            btrfs.delete(snap)
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)


def find_parent(root: Path, candidates: Iterable[Path]) -> Path | None:
    """The subvolume ``root`` was snapshotted from, among ``candidates`` (by btrfs parent UUID)."""
    want = btrfs.uuids(root)[1]
    if not any(want):
        return None
    for path in candidates:
        with contextlib.suppress(PoolError):
            if btrfs.is_subvolume(path) and btrfs.uuids(path)[0] == want:
                return path
    return None


def subvolume_changes(root: Path, parent: Path, pool: Path, state: Path, limit: int = LIMIT) -> list[Change]:
    """Docker's changes of ``root`` (a container, running or not) against ``parent`` (the image
    it is a snapshot of)."""
    sweep(pool, state)
    parent_id = btrfs.subvolume_id(parent)
    with read_only_snapshot(root, pool, state) as snap:

        def consume(stream: IO[bytes]) -> list[Change]:
            return changes_from_stream(stream, _lstat_in(parent), _walker(snap, limit), limit)

        try:
            return _send(snap, parent_id, consume)
        except ArchiveError as e:
            raise PoolError(f"cannot read the btrfs send stream: {e}") from e


def container_changes(
    containers: ContainerStore, images: ImageStore, ref: str, limit: int = LIMIT
) -> list[Change]:
    """Docker's ``diff`` of the container ``ref`` (a name, an ID or a unique ID prefix): what it
    changed against the image it was made from, running or not.

    If that image was removed (``rmi --force``) but the subvolume the container was snapshotted
    from is still there (an OCI image's top layer another image shares), that one is used; else
    there is nothing to compare with (docker keeps its layers; a btrfs snapshot keeps no copy of
    its source) and :class:`ParentGone` says so."""
    name = containers.resolve(ref)
    spec = containers.get(name)
    root = containers.root(name)
    if not btrfs.is_subvolume(root):
        raise PoolError(
            f"the root of container {name} ({root}) is not a btrfs subvolume",
            hint="only containers nspawnctl made in a btrfs pool can be compared with their image",
        )
    paths = containers.paths
    candidates: list[Path] = []
    with contextlib.suppress(NotFound, InvalidArgument):
        candidates.append(images.get(spec.image_id).path.resolve())
    parent = find_parent(root, candidates)
    if parent is None:
        scan = [paths.images / n for n in _listdir(paths.images) if not n.endswith(".json")]
        parent = find_parent(root, [paths.layers / n for n in _listdir(paths.layers)] + scan)
    if parent is None:
        raise ParentGone(
            f"container {name} cannot be compared with its image: the image it was made from "
            f"({spec.image or spec.image_id}) is gone from the store, "
            "or the container is not a snapshot of it",
            hint="a btrfs snapshot keeps no copy of its source; 'nspawnctl export' gives its whole tree",
        )
    return subvolume_changes(root, parent, paths.pool, paths.state, limit)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
