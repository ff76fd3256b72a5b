"""Named volumes (docker's ``volume create|ls|inspect|rm|prune`` and ``-v NAME:/path``).

A volume is a btrfs subvolume ``STORE/volumes/NAME`` (on the pool's filesystem, so copying an
image's files into it reflinks them), with its record ``STORE/volumes/.meta/NAME.json`` (creation
time, labels). A container mounts it with an ordinary ``Bind=STORE/volumes/NAME:/path``, so its
``.nspawn`` file, ``generate`` and ``apply`` need nothing new; a volume is "in use" while any
container's definition binds it, running or not (docker's rule: such a volume cannot be removed,
not even with ``-f``).

Ownership under user namespaces: the files of a volume are stored with the container's own IDs
(root is 0, as in the image), and a user-namespaced container binds the volume with nspawn's
``idmap`` option (btrfs ID-maps mounts since Linux 5.15), so the container's root owns it and a
user of the container that owns a file in it can write it, whatever UID range nspawn picked. As
docker does, a volume that is empty when a container is created gets the files, owners and mode
of the image's directory at the mount point (copy-up): a directory the image gives to a non-root
user stays writable for that user.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Paths
from ..errors import InvalidArgument, VolumeCopyFailed, VolumeInUse, VolumeNotFound
from . import btrfs
from .files import tree_size

if TYPE_CHECKING:
    from ..listfilters import ListFilters
    from ..spec import ContainerSpec

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # docker's volume names
# docker's mark of an anonymous volume (``-v /path``, ``--mount type=volume`` without a source):
# ``run --rm`` removes such a volume with its container, never a named one
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def check_volume_name(name: str) -> str:
    if not NAME.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(
            f"invalid volume name {name!r}",
            hint="a name starts with a letter or digit, then letters, digits, '_', '.' or '-'",
        )
    return name


def parse_labels(labels: Iterable[str]) -> dict[str, str]:
    """``--label KEY[=VALUE]`` as docker reads it (no value: the empty string)."""
    out = {}
    for text in labels:
        key, _, value = text.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {text!r}", hint="use --label KEY=VALUE")
        out[key] = value
    return out


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    mountpoint: Path
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)  # containers whose definition binds it

    def to_json(self) -> dict[str, Any]:
        """docker's ``volume inspect`` shape (plus UsedBy: the containers that bind it)."""
        return {
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": self.labels,
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": {},
            "Scope": "local",
            "UsedBy": self.users,
        }


class VolumeStore:
    """The volumes under ``STORE/volumes``. ``users_of`` maps a volume's path to the containers
    that bind it (the container store knows; this module does not read definitions itself)."""

    def __init__(self, paths: Paths, users: Callable[[], dict[str, builtins.list[str]]]) -> None:
        self.root = paths.store / "volumes"
        self._users = users

    def path(self, name: str) -> Path:
        return self.root / check_volume_name(name)

    def name_of(self, host: str) -> str | None:
        """The volume a bind source is, or None for any other path."""
        p = Path(host)
        return p.name if p.parent == self.root and NAME.fullmatch(p.name) else None

    def owner_of(self, host: str) -> str | None:
        """The volume a bind source is or lies in (a ``volume-subpath`` bind), else None."""
        p = Path(host)
        if p.parent == self.root:
            return self.name_of(host)
        if self.root not in p.parents:
            return None
        name = p.relative_to(self.root).parts[0]
        return name if NAME.fullmatch(name) else None

    def users_by_path(self, specs: Iterable[ContainerSpec]) -> dict[str, builtins.list[str]]:
        """Bind source -> the containers (names) that bind it, a bind inside a volume (a
        ``volume-subpath``) counted as one of the volume's path: what "in use" means for
        ``volume rm`` and for the anonymous volumes a ``--rm`` container leaves."""
        out: dict[str, builtins.list[str]] = {}
        for spec in specs:
            for v in spec.volumes:
                owner = self.owner_of(v.host)
                out.setdefault(v.host if owner is None else str(self.path(owner)), []).append(spec.name)
        return out

    def subpath(self, name: str, sub: str) -> Path:
        """The bind source of ``volume-subpath``: ``sub`` (runopts.parse_subpath's) inside volume
        ``name``, a directory or regular file reached without a symbolic link (walked as each
        start walks it, run/subpaths.py: a start binds what it opened then, never this path)."""
        from .subpath import open_subpath

        if not self.exists(name):
            raise VolumeNotFound(
                f"volume {name} does not exist: it has no subpath {sub}",
                hint=f"nspawnctl volume create {name}",
            )
        os.close(open_subpath(self.root, check_volume_name(name), sub))
        return self.path(name) / sub

    def exists(self, name: str) -> bool:
        return btrfs.is_subvolume(self.path(name))

    def create(self, name: str | None = None, labels: dict[str, str] | None = None) -> VolumeInfo:
        """Make the volume; one that exists is returned as it is (docker's ``volume create``
        too). Call it under the pool lock: creates running at once then make one volume."""
        name = check_volume_name(name) if name else os.urandom(32).hex()
        path = self.path(name)
        if not self.exists(name):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            meta = self._meta(name)
            meta.parent.mkdir(mode=0o700, exist_ok=True)
            owner = name.removesuffix(".json")
            if owner != name and (old := self._legacy_meta(owner)) is not None:
                os.replace(old, self._meta(owner))  # an older version's record holds the path
            tmp = meta.with_name(f".{name}.json.tmp")
            tmp.write_text(json.dumps({"CreatedAt": _now(), "Labels": labels or {}}, sort_keys=True) + "\n")
            try:
                btrfs.create_subvolume(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, meta)
        return self.get(name)

    def _meta(self, name: str) -> Path:
        """The volume's record, apart from the volumes: in ``volumes/`` itself, volume ``foo``'s
        ``foo.json`` would be the path of a volume named ``foo.json``."""
        return self.root / ".meta" / f"{name}.json"

    def _legacy_meta(self, name: str) -> Path | None:
        """Where older versions kept the record (``volumes/NAME.json``), when it is one (a file)."""
        old = self.root / f"{name}.json"
        try:
            return old if stat.S_ISREG(old.lstat().st_mode) else None
        except OSError:
            return None

    def get(self, name: str) -> VolumeInfo:
        if not self.exists(name):
            raise VolumeNotFound(f"no such volume: {name}", hint="see: nspawnctl volume ls")
        return self._info(name, self._users())

    def _info(self, name: str, users: dict[str, builtins.list[str]]) -> VolumeInfo:
        path = self.path(name)
        try:
            record = self._meta(name)
            meta = json.loads((record if record.exists() else self._legacy_meta(name) or record).read_text())
        except (OSError, ValueError):  # a create killed between the subvolume and its record
            meta = {}
        created = meta.get("CreatedAt") or _iso(path.stat().st_mtime)
        labels = meta.get("Labels") if isinstance(meta.get("Labels"), dict) else {}
        return VolumeInfo(name, path, str(created), dict(labels), sorted(users.get(str(path), [])))

    def list(self) -> builtins.list[VolumeInfo]:
        if not self.root.is_dir():
            return []
        users = self._users()
        names = sorted(e.name for e in os.scandir(self.root) if NAME.fullmatch(e.name) and e.is_dir())
        return [self._info(n, users) for n in names if btrfs.is_subvolume(self.root / n)]

    def remove(self, name: str, force: bool = False) -> bool:
        """Delete a volume no container binds (docker refuses one in use even with ``-f``);
        ``force`` only makes a missing volume no error. Returns whether one was deleted."""
        if not self.exists(name):
            if force:
                return False
            raise VolumeNotFound(f"no such volume: {name}", hint="see: nspawnctl volume ls")
        info = self._info(name, self._users())
        if info.users:
            raise VolumeInUse(
                f"volume {name} is in use by container {', '.join(info.users)}",
                hint="remove those containers first (nspawnctl rm NAME); -f does not override this",
            )
        self._delete(name)
        return True

    def _delete(self, name: str) -> None:
        path = self.path(name)
        btrfs.delete(path)
        self._meta(name).unlink(missing_ok=True)
        if (old := self._legacy_meta(name)) is not None:
            old.unlink(missing_ok=True)

    def prune(
        self, anonymous_only: bool = False, filters: ListFilters | None = None
    ) -> tuple[builtins.list[str], int]:
        """Delete the volumes no container binds; (names, bytes they held). ``anonymous_only``:
        only those made without a name (marked with ANONYMOUS_LABEL at creation, as docker's:
        a name that looks random is still a name); ``filters``: docker's ``label``/``label!``
        (listfilters.VOLUME_PRUNE_KEYS), only the volumes that pass them."""
        from ..listfilters import volume_subject

        gone, size = [], 0
        for info in self.list():
            if info.users or (anonymous_only and ANONYMOUS_LABEL not in info.labels):
                continue
            if filters and not filters.matches(volume_subject(info)):
                continue
            size += tree_size(info.mountpoint)
            self._delete(info.name)
            gone.append(info.name)
        return gone, size

    def copy_up(self, name: str, image_root: Path, target: str) -> None:
        """docker's copy-up: an empty volume gets the image's directory at ``target`` (files,
        owners, mode), reflinked. Nothing when the image has no such directory, or reaches it
        through a symbolic link (that could point anywhere on the host)."""
        dest = self.path(name)
        source = _inside(image_root, target)
        if source is None or any(os.scandir(dest)):
            return
        st = source.lstat()
        try:
            if any(os.scandir(source)):
                subprocess.run(
                    ["cp", "-a", "--reflink=auto", "--", f"{source}/.", f"{dest}/"],
                    check=True,
                    capture_output=True,
                )
            os.chown(dest, st.st_uid, st.st_gid)
            os.chmod(dest, stat.S_IMODE(st.st_mode))
        except subprocess.CalledProcessError as e:
            raise _copy_failed(dest, name, target, e.stderr.decode(errors="replace").strip()) from e
        except OSError as e:
            raise _copy_failed(dest, name, target, str(e)) from e


def _copy_failed(dest: Path, name: str, target: str, why: str) -> VolumeCopyFailed:
    """The error of a failed copy-up, the volume emptied again: a half copy would stop the next
    container's copy-up for good."""
    _empty(dest)
    return VolumeCopyFailed(
        f"cannot copy the image's {target} into volume {name}: {why}",
        hint="check the pool's free space (nspawnctl system df), or bind a host directory there",
    )


def _empty(path: Path) -> None:
    """Delete what is inside ``path`` (not following symlinks), keeping ``path`` itself."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _inside(root: Path, target: str) -> Path | None:
    """``root/target`` when every component is a real directory (no symlink, no ..)."""
    path = root
    for part in Path(target).parts[1:]:
        if part in (".", ".."):
            return None
        path = path / part
        try:
            if not stat.S_ISDIR(path.lstat().st_mode):
                return None
        except OSError:
            return None
    return path if path != root else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def remove_anonymous(paths: Paths, hosts: Iterable[str], in_use: set[str]) -> builtins.list[str]:
    """Delete the anonymous volumes among ``hosts`` (bind sources of a ``--rm`` container that
    is gone) that no other container binds (``in_use``: :meth:`VolumeStore.users_by_path`'s keys);
    named ones are kept. The
    caller holds the pool lock. Returns the names deleted."""
    store = VolumeStore(paths, dict)
    gone = []
    for host in hosts:
        name = store.name_of(host)
        if name is None or host in in_use or not store.exists(name):
            continue
        try:
            labels = json.loads(store._meta(name).read_text()).get("Labels") or {}
        except (OSError, ValueError, AttributeError):
            continue  # no record: not known to be anonymous, kept
        if isinstance(labels, dict) and ANONYMOUS_LABEL in labels:
            store._delete(name)
            gone.append(name)
    return gone
