"""The pool: machined's container directory and the image store, on one btrfs filesystem.

Snapshots and atomic renames only work within one filesystem, so both places are checked to
be btrfs and the same filesystem before anything is written. Hosts come in a few layouts
(:class:`Layout`), told apart from the mount table alone:

- btrfs /var/lib (a btrfs root, as on Fedora or openSUSE): the store is made in place, as a
  subvolume next to /var/lib/machines, on first use.
- machined's loopback (/var/lib/machines.raw mounted on /var/lib/machines): the filesystem's top
  level *is* machined's pool, so there is no place for the store outside machinectl's reach.
  ``pool init`` adopts it: the machines move (renames) into a ``machines`` subvolume, the top level
  is mounted on the store and ``machines`` bound on /var/lib/machines (nspawnctl's pool layout).
- no btrfs: ``pool init`` makes a loopback file of its own, /var/lib/nspawnctl.raw, in the same
  layout. Either way the mount units rendered from ``units/`` bring it back at every boot.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Paths
from ..errors import CommandFailed, PoolError, PoolNotBtrfs
from . import btrfs

if TYPE_CHECKING:  # importlib.resources and shlex load where used: not on every command's path
    from importlib.resources.abc import Traversable

RAW_IMAGE = Path("/var/lib/nspawnctl.raw")
"""The loopback file ``pool init`` makes on hosts without btrfs (not machined's own name)."""
MACHINED_RAW = Path("/var/lib/machines.raw")
"""machined's loopback file, mounted on /var/lib/machines by systemd's var-lib-machines.mount."""
UNIT_DIR = Path("/etc/systemd/system")
STORE_UNIT = "var-lib-nspawnctl.mount"
MACHINES_UNIT = "var-lib-machines.mount"
MOUNT_UNITS = (STORE_UNIT, MACHINES_UNIT)
MACHINES_SUBVOLUME = "machines"
PRIVATE_MODE = 0o700
"""The mode of the pool and store roots: image content (setuid-root binaries, device nodes) must
be out of reach of unprivileged host users, whatever systemd-tmpfiles did or did not do yet."""
STORE_MOUNT_OPTIONS = ("nosuid", "nodev")
"""The store's mount holds no container root: nothing on it is ever executed setuid or opened as
a device from the host."""
POOL_MOUNT_OPTIONS = ("nodev",)
"""The pool's mount (``machines`` bound on /var/lib/machines) is where systemd-nspawn bind-mounts
container roots from, and a bind mount inherits ``nosuid``: on a nosuid pool, ``su`` and ``sudo``
inside every container fail ("must be suid to work properly"; seen in the test host). So the pool
keeps setuid (``suid`` is spelled out, since a bind of the nosuid store would inherit nosuid) and
drops device nodes only (nspawn gives containers a /dev of their own); the barrier between host
users and the setuid files in container roots is the pool root's mode 0700."""


def _no_notice(message: str) -> None:
    pass


class Layout(StrEnum):
    """How the pool and the store sit on the host's filesystems."""

    BTRFS_VARLIB = "btrfs /var/lib"
    NSPAWNCTL_POOL = "nspawnctl's pool"
    MACHINED_LOOPBACK = "machined's loopback"
    NO_BTRFS = "no btrfs"
    SPLIT = "different filesystems"


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo: what the pool and store checks need of it."""

    mount_point: str
    fstype: str
    device: str  # major:minor of the superblock: equal for every mount of one filesystem
    source: str
    root: str = "/"  # the directory of the filesystem mounted here ("/" for the top level)
    options: frozenset[str] = frozenset()  # the mount's own options (nosuid, nodev, ro, ...)


@dataclass(frozen=True)
class Found:
    """What :func:`detect_layout` saw: the layout and whether the store is usable as it is."""

    layout: Layout
    ready: bool
    pool_mount: MountInfo


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as three octal digits (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """The entries of a /proc/PID/mountinfo text, in order (later mounts stack on earlier ones)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if not sep or len(fields) < 5 or not rfields:
            continue
        mounts.append(
            MountInfo(
                mount_point=_unescape(fields[4]),
                fstype=rfields[0],
                device=fields[2],
                source=_unescape(rfields[1]) if len(rfields) > 1 else "",
                root=_unescape(fields[3]),
                options=frozenset(fields[5].split(",")) if len(fields) > 5 else frozenset(),
            )
        )
    return mounts


def mount_in(mounts: Sequence[MountInfo], path: str) -> MountInfo:
    """The mount holding the absolute, resolved ``path``: the longest mount point, the last one stacked."""
    best: MountInfo | None = None
    for m in mounts:
        inside = path == m.mount_point or path.startswith(m.mount_point.rstrip("/") + "/")
        if inside and (best is None or len(m.mount_point) >= len(best.mount_point)):
            best = m
    if best is None:
        raise PoolError(f"no mount holds {path}")
    return best


def detect_layout(mounts: Sequence[MountInfo], pool: str, store: str, store_exists: bool) -> Found:
    """Tell the layout from the mount table (paths absolute and resolved); pure."""
    pm = mount_in(mounts, pool)
    if pm.fstype != "btrfs":
        return Found(Layout.NO_BTRFS, False, pm)
    # The top level of a filesystem mounted right on the pool: every entry there is a machine.
    pool_is_top = pm.mount_point == pool and pm.root == "/"
    if store_exists:
        sm = mount_in(mounts, store)
        if sm.fstype == "btrfs" and sm.device == pm.device:
            own = sm.mount_point == store and sm.root == "/" and pm.root == f"/{MACHINES_SUBVOLUME}"
            return Found(Layout.NSPAWNCTL_POOL if own else Layout.BTRFS_VARLIB, True, pm)
        return Found(Layout.MACHINED_LOOPBACK if pool_is_top else Layout.SPLIT, False, pm)
    parent = mount_in(mounts, os.path.dirname(store.rstrip("/")) or "/")
    if parent.fstype == "btrfs" and parent.device == pm.device:
        return Found(Layout.BTRFS_VARLIB, False, pm)
    return Found(Layout.MACHINED_LOOPBACK if pool_is_top else Layout.SPLIT, False, pm)


def read_mounts() -> list[MountInfo]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def mount_of(path: Path) -> MountInfo:
    """The mount holding ``path`` (longest matching mount point in /proc/self/mountinfo)."""
    return mount_in(read_mounts(), os.path.realpath(path))


def loop_backing_file(device: str) -> str | None:
    """The file behind a loop device (``/dev/loop3``), as this process sees it; None otherwise."""
    name = os.path.basename(device)
    if not name.startswith("loop"):
        return None
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Move:
    """One entry of the old top level and where adoption puts it (both relative to the top level).

    A subvolume is renamed (O(1)). Anything else (a ``.raw`` disk image, a ``.nspawn`` file, a plain
    directory) cannot be renamed into another subvolume (EXDEV), so it is copied with reflinks
    (shared extents, no data copied) and the original removed only once the adoption succeeded.
    """

    name: str
    subvolume: bool = True

    @property
    def target(self) -> str:
        return f"{MACHINES_SUBVOLUME}/{self.name}"


def adoption_plan(
    entries: Sequence[str], is_subvolume: Callable[[str], bool] = lambda name: True
) -> list[Move]:
    """The moves that turn a top level full of machines into nspawnctl's layout; pure.

    Every entry moves (hidden ones too: machined lists them with --all), so that afterwards the
    ``machines`` subvolume, bound on /var/lib/machines, holds exactly what machined saw before.
    """
    if MACHINES_SUBVOLUME in entries:
        raise PoolError(
            f"a machine named {MACHINES_SUBVOLUME!r} is in the way of the {MACHINES_SUBVOLUME!r} subvolume "
            "nspawnctl needs",
            hint=f"rename it first (machinectl rename {MACHINES_SUBVOLUME} NEWNAME), then run "
            "'nspawnctl pool init' again",
        )
    busy = sorted(e for e in entries if e.startswith(".#"))
    if busy:
        raise PoolError(
            f"an import, clone or pull is in progress in the pool ({', '.join(busy)})",
            hint="wait for it to finish (machinectl list-transfers), then run 'nspawnctl pool init' again",
        )
    return [Move(name, is_subvolume(name)) for name in sorted(entries)]


def render_units(what: str, options: str, templates: Traversable | None = None) -> dict[str, str]:
    """The two mount units for a pool whose filesystem is ``what`` (a loopback file or a device)."""
    from importlib import resources

    units = templates or resources.files("nspawnctl.units")
    given = [o for o in options.split(",") if o]
    options = ",".join([*given, *(o for o in STORE_MOUNT_OPTIONS if o not in given)])
    return {
        name: units.joinpath(name).read_text().replace("@WHAT@", what).replace("@OPTIONS@", options)
        for name in MOUNT_UNITS
    }


def undo_adoption_text(moves: Sequence[Move], top: Path, what: str) -> list[str]:
    """Shell lines that put machined's loopback layout back; pure."""
    import shlex

    names = " ".join(shlex.quote(m.target) for m in moves)
    lines = [
        "to undo: remove nspawnctl's containers and images first (its entries machines, images, layers, "
        "state and lock stay in the top level, where machined would list them), then:"
    ]
    if moves:
        lines.append(f"  cd {shlex.quote(str(top))} && mv {names} .")
    lines += [
        f"  btrfs subvolume delete {shlex.quote(str(top / MACHINES_SUBVOLUME))}",
        f"  systemctl disable --now {MACHINES_UNIT} {STORE_UNIT}",
        f"  rm {UNIT_DIR / MACHINES_UNIT} {UNIT_DIR / STORE_UNIT} && systemctl daemon-reload",
        f"  systemctl start {MACHINES_UNIT}   # systemd's own unit: {what} on /var/lib/machines again",
    ]
    return lines


@dataclass(frozen=True)
class Pool:
    """The container pool and image store's file systems: checked and laid out before first use."""

    paths: Paths

    def found(self) -> Found:
        pool, store = os.path.realpath(self.paths.pool), os.path.realpath(self.paths.store)
        return detect_layout(read_mounts(), pool, store, os.path.isdir(store))

    def check(self) -> Layout:
        """Raise PoolNotBtrfs with the way out unless pool and store share one btrfs filesystem.

        On btrfs /var/lib the store is created here, in place, on first use. The pool and store
        roots are made mode 0700 here, before any command puts image content below them.
        """
        return self._check()[0]

    def _check(self) -> tuple[Layout, list[str]]:
        """The layout, and what was made private (``pool check`` says so)."""
        pool, store = self.paths.pool, self.paths.store
        # in every layout, supported or not: machined's pool may hold machines already, and a
        # fresh subvolume or filesystem root is 0755 until systemd-tmpfiles runs
        repaired = [r for r in [secure_directory(pool) if pool.is_dir() else None] if r]
        found = self.found()
        if found.layout is Layout.BTRFS_VARLIB:
            if not pool.is_dir():  # machined has not run yet: make it as systemd-tmpfiles would
                make_subvolume_in_place(pool)
            if not found.ready:
                make_subvolume_in_place(store)
        elif not pool.is_dir():
            raise PoolNotBtrfs(f"the container pool {pool} does not exist", hint=_init_hint())
        elif found.layout is Layout.NO_BTRFS:
            raise PoolNotBtrfs(
                f"the container pool {pool} is not on btrfs ({found.pool_mount.fstype})", hint=_init_hint()
            )
        elif found.layout is Layout.MACHINED_LOOPBACK:
            source = found.pool_mount.source
            raise PoolNotBtrfs(
                f"{pool} is the top level of a btrfs filesystem of its own (machined's loopback "
                f"{loop_backing_file(source) or source}); the image store {store} cannot be on it out of "
                "machinectl's reach",
                hint="run 'nspawnctl pool init': it adopts the existing pool, moving every machine in "
                f"{pool} into its '{MACHINES_SUBVOLUME}' subvolume (a rename; machinectl still lists them) "
                f"and mounting the filesystem on {store} too, now and at boot",
            )
        elif found.layout is Layout.SPLIT:
            raise PoolNotBtrfs(
                f"{pool} and {store} are not on one btrfs filesystem",
                hint="snapshots cannot cross filesystems: mount the pool's filesystem (its top level) "
                f"on {store} too, or put both on one with 'nspawnctl pool init'",
            )
        repaired += [r for r in [secure_directory(store)] if r]
        for d in (self.paths.images, self.paths.state):
            d.mkdir(mode=PRIVATE_MODE, exist_ok=True)
        return found.layout, repaired

    def mount_problems(self) -> list[tuple[str, str]]:
        """(problem, fix) for each of nspawnctl's mounts that lacks its options: the store when it
        is a mount of its own (nosuid, nodev), the pool when it is bound from the store (nodev)."""
        pool, store = os.path.realpath(self.paths.pool), os.path.realpath(self.paths.store)
        mounts = read_mounts()
        sm, pm = mount_in(mounts, store), mount_in(mounts, pool)
        problems = []
        if sm.mount_point == store:
            missing = [o for o in STORE_MOUNT_OPTIONS if o not in sm.options]
            if missing:
                problems.append(
                    (
                        f"the image store mount {store} lacks {','.join(missing)}: an unprivileged user "
                        "who reached an image could run its setuid binaries or open its device nodes",
                        f"'nspawnctl pool init' fixes its own mount units; otherwise mount -o "
                        f"remount,{','.join(STORE_MOUNT_OPTIONS)} {store} and add them to the Options= "
                        "of what mounts it at boot",
                    )
                )
        if pm.mount_point == pool and pm.device == sm.device:
            missing = [o for o in POOL_MOUNT_OPTIONS if o not in pm.options]
            if missing:
                problems.append(
                    (
                        f"the container pool mount {pool} lacks {','.join(missing)}: device nodes of "
                        "images would work there",
                        f"'nspawnctl pool init' fixes its own mount units; otherwise mount -o "
                        f"remount,bind,{','.join(POOL_MOUNT_OPTIONS)},suid {pool} and add them to the "
                        "Options= of what mounts it at boot",
                    )
                )
        return problems

    def describe(self) -> str:
        """``pool check``: where both places are and which layout that is, what was made private;
        a PoolError for a mount without its safety options."""
        layout, repaired = self._check()
        repaired += private_definitions(self.paths)
        pool, store = self.paths.pool, self.paths.store
        notes = [f"fixed: {r}" for r in repaired]
        problems = self.mount_problems()
        if problems:
            raise PoolError(
                "; ".join([*repaired, *(p for p, _ in problems)]), hint="; ".join(f for _, f in problems)
            )
        if layout is Layout.NSPAWNCTL_POOL:
            source = mount_of(store).source
            backing = loop_backing_file(source)
            return "\n".join(
                [
                    *notes,
                    f"ok: {pool} and {store} are on one btrfs filesystem (layout: {layout}: "
                    f"{backing or source} on {store}, its '{MACHINES_SUBVOLUME}' subvolume on {pool})",
                ]
            )
        return "\n".join(
            [
                *notes,
                f"ok: {pool} and {store} are on one btrfs filesystem (layout: {layout}, the store in place)",
            ]
        )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise changes to names and references between concurrent nspawnctl commands."""
        make_private_dirs(self.paths.store)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _init_hint() -> str:
    return (
        f"run 'nspawnctl pool init' to create a btrfs pool (a loopback file {RAW_IMAGE}), or point "
        "NSPAWNCTL_POOL and NSPAWNCTL_STORE at directories on one btrfs filesystem"
    )


def secure_directory(path: Path) -> str | None:
    """Make a pool or store root mode 0700 if it is more open (what was done, for ``pool check``).

    One owned by another user is refused rather than taken over: its owner could open it again.
    """
    st = os.stat(path)
    if st.st_uid != 0:
        raise PoolError(
            f"{path} is owned by uid {st.st_uid}, not root: whoever owns it can open the images and "
            "containers below it to every user",
            hint=f"chown root:root {path} && chmod 0700 {path} (and find out who made it)",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        try:
            os.chmod(path, PRIVATE_MODE)
        except PermissionError:
            raise PoolError(
                f"{path} is mode {mode:04o}: image content below it is open to every user",
                hint=f"run nspawnctl as root (it makes it 0700), or chmod 0700 {path}",
            ) from None
        return f"{path} was mode {mode:04o}, now {PRIVATE_MODE:04o}"
    return None


def private_definitions(paths: Paths) -> list[str]:
    """Make nspawnctl's .nspawn files mode 0600 where they are more open (what was done, for
    ``pool check``): their Environment= may hold secrets, and versions before the safety work
    wrote them 0644. Only files with an [X-Nspawnctl] section are touched, never symlinks."""
    from ..errors import InvalidArgument
    from ..nspawnfile import OWN_SECTION, NspawnFile

    fixed = []
    for base in (paths.settings, paths.runtime_settings):
        if not base.is_dir():
            continue
        for path in sorted(base.glob("*.nspawn")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue  # a symlink, or gone meanwhile
            try:
                st = os.fstat(fd)
                mode = stat.S_IMODE(st.st_mode)
                if not stat.S_ISREG(st.st_mode) or not mode & 0o077:
                    continue
                try:
                    if OWN_SECTION not in NspawnFile.load(path).sections():
                        continue
                except (InvalidArgument, OSError):
                    continue
                os.fchmod(fd, mode & 0o700)
                fixed.append(f"{path} was mode {mode:04o}, now {mode & 0o700:04o}")
            finally:
                os.close(fd)
    return fixed


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` whose every new directory is mode 0700 from the start (the umask aside)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_MODE)
        except FileExistsError:
            continue
        os.chmod(d, PRIVATE_MODE)


def make_subvolume_in_place(path: Path) -> None:
    """Create the store (or the pool) as a subvolume, mode 0700, on the filesystem of its parent;
    a concurrent command doing the same is fine."""
    make_private_dirs(path.parent)
    try:
        btrfs.create_subvolume(path)
    except PoolError:
        if not path.is_dir():
            raise
    path.chmod(0o700)


def init_pool(
    size: str = "20G",
    raw: Path = RAW_IMAGE,
    paths: Paths | None = None,
    notify: Callable[[str], None] = _no_notice,
) -> str:
    """Set up the pool for the layout found; returns what was done (``notify`` gets each step)."""
    paths = paths or Paths()
    if paths.pool != Paths().pool or paths.store != Paths().store:
        raise PoolError(
            "pool init only sets up the default locations", hint="unset NSPAWNCTL_POOL/NSPAWNCTL_STORE"
        )
    pool = Pool(paths)
    found = pool.found()
    if found.layout is Layout.NO_BTRFS and MACHINED_RAW.exists():
        # machined's loopback, just not mounted yet (machined mounts it when it first starts); never
        # over machines that are on the other filesystem: that would hide them
        if paths.pool.is_dir() and any(paths.pool.iterdir()):
            raise PoolError(
                f"{MACHINED_RAW} exists but is not mounted, and {paths.pool} holds machines of its own: "
                "mounting it would hide them",
                hint=f"move the machines in {paths.pool} away (or {MACHINED_RAW}, if it is not machined's "
                "pool), then run 'nspawnctl pool init' again",
            )
        _run(["systemctl", "start", MACHINES_UNIT])
        found = pool.found()
    if found.ready and paths.pool.is_dir():
        if found.layout is Layout.NSPAWNCTL_POOL and pool.mount_problems():
            return update_mount_options(paths)
        return (
            f"{paths.pool} and {paths.store} are already on one btrfs filesystem ({found.layout}); "
            "nothing to do"
        )
    if found.layout is Layout.BTRFS_VARLIB:
        pool.check()  # makes the store (and a missing pool) in place
        return (
            f"created the image store {paths.store} as a subvolume of the btrfs filesystem that holds "
            f"{paths.pool} ({found.layout}); no loopback file needed"
        )
    if found.layout is Layout.MACHINED_LOOPBACK:
        with _signals_raise():
            return adopt_machined_pool(paths, found.pool_mount, notify)
    if found.layout is Layout.SPLIT:
        pool.check()  # raises with the explanation
    return create_loopback_pool(paths, size, raw, notify)


def create_loopback_pool(paths: Paths, size: str, raw: Path, notify: Callable[[str], None]) -> str:
    """A new loopback btrfs at ``raw``, its top level on the store and ``machines`` on the pool.

    Everything that could stop it is checked before anything is made; a failure half-way (a
    signal included) takes back what this call made: the units, the mounts, the file and the
    directories. ``raw`` must not exist: a file of that name is never reused or deleted.
    """
    mounts = read_mounts()
    for p in (paths.pool, paths.store):
        real = os.path.realpath(p)
        mounted = mount_in(mounts, real)
        if mounted.mount_point == real:
            # mounting over it would hide what is there (machines of another filesystem, say)
            raise PoolError(
                f"{p} is a mount point already ({mounted.fstype} {mounted.source}); pool init does not "
                "mount over it",
                hint=f"unmount it (and disable what mounts it at boot), or make it the pool: a btrfs "
                f"filesystem whose top level is on {paths.store} and its '{MACHINES_SUBVOLUME}' "
                f"subvolume on {paths.pool}",
            )
        if p.is_dir() and any(p.iterdir()):
            raise PoolError(
                f"{p} is not empty", hint="move its contents away first; pool init never deletes data"
            )
        if p.exists() and not p.is_dir():
            raise PoolError(f"{p} is not a directory", hint="move it away first")
    if os.path.lexists(raw):
        raise PoolError(
            f"{raw} exists already (a loopback file left by an earlier 'pool init'?)",
            hint=f"if it holds nothing you need, remove it (rm {raw}) and run 'nspawnctl pool init' again",
        )
    for name in MOUNT_UNITS:
        if (UNIT_DIR / name).exists():
            raise PoolError(
                f"{UNIT_DIR / name} exists already; pool init does not overwrite a mount unit",
                hint=f"remove it (systemctl disable --now {name}; rm {UNIT_DIR / name}) if it is not in "
                "use, then run 'nspawnctl pool init' again",
            )
    for tool in ("truncate", "mkfs.btrfs", "systemctl"):
        if shutil.which(tool) is None:
            raise CommandFailed(f"{tool} is not installed", hint="install btrfs-progs and systemd")
    created: list[Path] = []
    units_installed = False
    try:
        with _signals_raise():
            created.append(raw)
            _run(["truncate", "-s", size, str(raw)])
            _run(["mkfs.btrfs", "-q", "-L", "nspawnctl", str(raw)])
            for p in (paths.pool, paths.store):
                if not p.exists():
                    make_private_dirs(p)
                    created.append(p)
            units_installed = True
            _install_units(render_units(str(raw), "loop"))
            _run(["systemctl", "start", STORE_UNIT])
            os.chmod(paths.store, PRIVATE_MODE)  # the new filesystem's root is 0755
            top = paths.store / MACHINES_SUBVOLUME
            if not btrfs.is_subvolume(top):
                btrfs.create_subvolume(top)
            os.chmod(top, PRIVATE_MODE)
            _run(["systemctl", "enable", "--now", *MOUNT_UNITS])
            Pool(paths).check()
    except BaseException:
        if units_installed:
            _remove_units()
        for p in (paths.pool, paths.store):  # what the units' stop left mounted
            _unmount_all(p)
        for p in reversed(created):
            with suppress(OSError):
                if p == raw:
                    p.unlink()
                else:
                    p.rmdir()
        raise
    return f"created {raw} ({size}) and mounted it on {paths.store} and {paths.pool}"


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt for a while (Python would die at once and leave
    a half-made pool); the old handlers come back afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only it can set handlers
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _unmount_all(path: Path) -> None:
    """Unmount whatever is stacked on ``path`` (a failed init's mounts); lazily if it is busy."""
    for _ in range(8):
        real = os.path.realpath(path)
        if mount_in(read_mounts(), real).mount_point != real:
            return
        if subprocess.run(["umount", real], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", real], capture_output=True)


def update_mount_options(paths: Paths) -> str:
    """A pool made before its units had nosuid,nodev: rewrite nspawnctl's units and remount."""
    unit = UNIT_DIR / STORE_UNIT
    try:
        text = unit.read_text()
    except FileNotFoundError:
        raise PoolError(
            f"{paths.store} is not mounted by nspawnctl's {unit}, so pool init cannot fix its options",
            hint="; ".join(fix for _, fix in Pool(paths).mount_problems()),
        ) from None
    fields = dict(line.split("=", 1) for line in text.splitlines() if line.startswith(("What=", "Options=")))
    _install_units(render_units(fields.get("What", ""), fields.get("Options", "")))
    _run(["mount", "-o", f"remount,{','.join(STORE_MOUNT_OPTIONS)}", str(paths.store)])
    _run(["mount", "-o", f"remount,bind,{','.join(POOL_MOUNT_OPTIONS)},suid", str(paths.pool)])
    Pool(paths).describe()  # raises if something is still missing
    return (
        f"updated the mount options: {paths.store} {','.join(STORE_MOUNT_OPTIONS)}, {paths.pool} "
        f"{','.join(POOL_MOUNT_OPTIONS)} (in {UNIT_DIR / STORE_UNIT} and {UNIT_DIR / MACHINES_UNIT} too)"
    )


def running_machines() -> list[str]:
    """Names of the machines machined knows (the host itself aside)."""
    from ..systemd.bus import Bus, run_sync
    from ..systemd.machined import Machined

    async def names(bus: Bus) -> list[str]:
        return [m.name for m in await Machined(bus).list() if m.name != ".host"]

    return list(run_sync(names))


def adopt_machined_pool(paths: Paths, mount: MountInfo, notify: Callable[[str], None]) -> str:
    """Turn machined's loopback pool into nspawnctl's layout without hiding a machine.

    Renames are O(1) and stay inside the filesystem; on any failure everything is moved and
    mounted back as it was.
    """
    top, store = paths.pool, paths.store
    running = running_machines()
    if running:
        raise PoolError(
            f"cannot adopt {top} while machines run: {', '.join(sorted(running))}",
            hint="stop them first (machinectl stop NAME, or nspawnctl stop NAME), then run "
            "'nspawnctl pool init' again",
        )
    if store.is_dir() and any(store.iterdir()) and not os.path.ismount(store):
        raise PoolError(
            f"{store} is not empty", hint="move its contents away first; pool init never deletes data"
        )
    what, options = _filesystem_of(mount)
    moves = adoption_plan(os.listdir(top), lambda name: btrfs.is_subvolume(top / name))
    notify(
        f"adopting machined's pool {what} (mounted on {top}): {len(moves)} machine(s) move into its "
        f"'{MACHINES_SUBVOLUME}' subvolume, which is then mounted on {top}"
    )
    os.chmod(top, PRIVATE_MODE)  # the top level becomes the store
    btrfs.create_subvolume(top / MACHINES_SUBVOLUME)
    os.chmod(top / MACHINES_SUBVOLUME, PRIVATE_MODE)  # the pool root from now on
    done: list[Move] = []
    units_installed = made_store = False
    try:
        for move in moves:
            _move_in(top, move)
            done.append(move)
            how = "moved" if move.subvolume else "copied (reflinks)"
            notify(f"{how} {top / move.name} -> {MACHINES_SUBVOLUME}/{move.name} of {what}")
        if not store.exists():
            make_private_dirs(store)
            made_store = True
        running = running_machines()  # again: one may have started while the machines moved
        if running:
            raise PoolError(
                f"machines started while the pool was being adopted: {', '.join(sorted(running))}",
                hint="stop them, then run 'nspawnctl pool init' again",
            )
        units_installed = True
        _install_units(render_units(what, options))
        _run(["systemctl", "stop", MACHINES_UNIT])  # machined's mount of the top level
        _run(["systemctl", "enable", "--now", *MOUNT_UNITS])
        Pool(paths).check()
    except BaseException as e:
        failed = _undo_adoption(paths, done, made_store, units_installed)
        if failed:
            undo = " ".join(line.strip() for line in undo_adoption_text(done, top, what))
            raise PoolError(
                f"pool init failed ({e}), and putting the pool back failed too: {'; '.join(failed)}",
                hint=f"finish by hand: {undo}",
            ) from e
        if isinstance(e, OSError):
            raise PoolError(
                f"pool init failed: {e}", hint=f"nothing changed: {top} is machined's pool as before"
            ) from e
        raise
    # the top level (now on the store) still holds the originals of what was copied
    for move in done:
        if not move.subvolume:
            try:
                _remove_entry(store / move.name)
            except OSError as e:
                notify(f"could not remove the original {store / move.name} (its copy is in place): {e}")
    return "\n".join(
        [
            f"adopted {what}: its top level is on {store}, its '{MACHINES_SUBVOLUME}' subvolume on {top}",
            *undo_adoption_text(done, store, what),
        ]
    )


def _move_in(top: Path, move: Move) -> None:
    if move.subvolume:
        os.rename(top / move.name, top / move.target)
    else:
        _run(["cp", "-a", "--reflink=always", "--", str(top / move.name), str(top / move.target)])


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _undo_adoption(paths: Paths, done: Sequence[Move], made_store: bool, units_installed: bool) -> list[str]:
    """Put machined's layout back after a failed adoption; what could not be undone, as messages."""
    top, store = paths.pool, paths.store
    failed: list[str] = []
    if units_installed:
        _remove_units()
        if not os.path.ismount(top):
            try:
                _run(["systemctl", "start", MACHINES_UNIT])  # systemd's own unit again
            except CommandFailed as e:
                failed.append(e.message)
                return failed  # the top level is not on the pool: nothing below can be found there
    for move in reversed(done):
        try:
            if move.subvolume:
                os.rename(top / move.target, top / move.name)
            else:
                _remove_entry(top / move.target)  # the original was never touched
        except OSError as e:
            failed.append(f"{move.target}: {e.strerror or e}")
    with suppress(PoolError, OSError):
        if not os.listdir(top / MACHINES_SUBVOLUME):
            btrfs.delete(top / MACHINES_SUBVOLUME)
    if made_store and not os.path.ismount(store):
        with suppress(OSError):
            store.rmdir()
    return failed


def _filesystem_of(mount: MountInfo) -> tuple[str, str]:
    """What= and Options= that mount this filesystem at boot: its loopback file, or its device."""
    if not os.path.basename(mount.source).startswith("loop"):
        return mount.source, ""
    backing = loop_backing_file(mount.source)
    if backing and os.path.isfile(backing):
        return backing, "loop"
    if MACHINED_RAW.is_file():
        return str(MACHINED_RAW), "loop"
    raise PoolError(
        f"cannot tell which file backs {mount.source}, the filesystem on {mount.mount_point}",
        hint="mount it from its file (as systemd's var-lib-machines.mount does), then 'nspawnctl pool init'",
    )


def _install_units(units: dict[str, str]) -> None:
    for name, text in units.items():
        (UNIT_DIR / name).write_text(text)
    _run(["systemctl", "daemon-reload"])


def _remove_units() -> None:
    """Take back the mount units (and their mounts); what was not there is no error."""
    with suppress(CommandFailed):
        _run(["systemctl", "disable", "--now", MACHINES_UNIT, STORE_UNIT])
    for name in MOUNT_UNITS:
        (UNIT_DIR / name).unlink(missing_ok=True)
    with suppress(CommandFailed):
        _run(["systemctl", "daemon-reload"])


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise CommandFailed(f"{argv[0]} is not installed", hint="install btrfs-progs and systemd")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
