"""The pool: machined's container directory and the image store, on one btrfs filesystem.

Snapshots and atomic renames only work within one filesystem, so both places are checked to
be btrfs and the same filesystem before anything is written. ``pool init`` creates a loopback
btrfs for hosts that have none, mounted by units shipped in ``units/``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config import Paths
from ..errors import CommandFailed, PoolError, PoolNotBtrfs
from . import btrfs

RAW_IMAGE = Path("/var/lib/machines.raw")
UNIT_DIR = Path("/etc/systemd/system")
MOUNT_UNITS = ("var-lib-nspawnctl.mount", "var-lib-machines.mount")


@dataclass(frozen=True)
class MountInfo:
    mount_point: str
    fstype: str
    device: str  # major:minor of the superblock: equal for every mount of one filesystem
    source: str


def mount_of(path: Path) -> MountInfo:
    """The mount holding ``path`` (longest matching mount point in /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best: MountInfo | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            mp = fields[4].encode().decode("unicode_escape")
            inside = target == mp or target.startswith(mp.rstrip("/") + "/") or mp == "/"
            if inside and (best is None or len(mp) >= len(best.mount_point)):
                rfields = right.split()
                best = MountInfo(mp, rfields[0], fields[2], rfields[1] if len(rfields) > 1 else "")
    assert best is not None
    return best


@dataclass(frozen=True)
class Pool:
    paths: Paths

    def check(self) -> None:
        """Raise PoolNotBtrfs with the way out unless pool and store share one btrfs filesystem."""
        hint = (
            "run 'nspawnctl pool init' to create a btrfs pool, or point NSPAWNCTL_POOL and "
            "NSPAWNCTL_STORE at directories on one btrfs filesystem"
        )
        for what, path in (("container pool", self.paths.pool), ("image store", self.paths.store)):
            if not path.is_dir():
                raise PoolNotBtrfs(f"the {what} {path} does not exist", hint=hint)
            if mount_of(path).fstype != "btrfs":
                raise PoolNotBtrfs(f"the {what} {path} is not on btrfs ({mount_of(path).fstype})", hint=hint)
        if mount_of(self.paths.pool).device != mount_of(self.paths.store).device:
            raise PoolNotBtrfs(
                f"{self.paths.pool} and {self.paths.store} are on different btrfs filesystems",
                hint="snapshots cannot cross filesystems; put both on one (see 'nspawnctl pool init')",
            )
        for d in (self.paths.images, self.paths.state):
            d.mkdir(mode=0o700, exist_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise changes to names and references between concurrent nspawnctl commands."""
        self.paths.store.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def init_pool(size: str = "20G", raw: Path = RAW_IMAGE, paths: Paths | None = None) -> str:
    """Create a loopback btrfs at ``raw`` and mount it for good through shipped mount units.

    Layout: the filesystem's top level is mounted at the store (/var/lib/nspawnctl) and its
    ``machines`` subvolume is bind-mounted on /var/lib/machines, so images and containers share
    one filesystem while images stay out of reach of ``machinectl clean``.
    """
    paths = paths or Paths()
    if paths.pool != Paths().pool or paths.store != Paths().store:
        raise PoolError(
            "pool init only sets up the default locations", hint="unset NSPAWNCTL_POOL/NSPAWNCTL_STORE"
        )
    try:
        Pool(paths).check()
        return f"{paths.pool} and {paths.store} are already on one btrfs filesystem; nothing to do"
    except PoolNotBtrfs:
        pass
    for p in (paths.pool, paths.store):
        if p.is_dir() and any(p.iterdir()) and not os.path.ismount(p):
            raise PoolError(
                f"{p} is not empty", hint="move its contents away first; pool init never deletes data"
            )
    if not raw.exists():
        _run(["truncate", "-s", size, str(raw)])
        _run(["mkfs.btrfs", "-q", "-L", "nspawnctl", str(raw)])
    for p in (paths.pool, paths.store):
        p.mkdir(parents=True, exist_ok=True)
    units = resources.files("nspawnctl.units")
    for name in MOUNT_UNITS:
        (UNIT_DIR / name).write_text(units.joinpath(name).read_text())
    _run(["systemctl", "daemon-reload"])
    _run(["systemctl", "start", "var-lib-nspawnctl.mount"])
    top = paths.store / "machines"
    if not btrfs.is_subvolume(top):
        btrfs.create_subvolume(top)
    _run(["systemctl", "enable", "--now", *MOUNT_UNITS])
    Pool(paths).check()
    return f"created {raw} ({size}) and mounted it on {paths.store} and {paths.pool}"


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise CommandFailed(f"{argv[0]} is not installed", hint="install btrfs-progs and systemd")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
