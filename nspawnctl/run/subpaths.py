"""``--mount type=volume,volume-subpath=SUB``: the bind is made from a file descriptor at each start.

A container's spec binds ``STORE/volumes/V/SUB`` (so ``inspect`` and the volume's users read it
as any bind), but nspawn never gets that path: another container that writes volume V could swap
a component of it for a symlink to the host's ``/`` between any check and nspawn's mount (runc's
CVE-2021-30465). Its definition's ``Bind=`` names the stage (spec.subpath_stages; the bind itself
is kept in ``[X-Nspawnctl] VolumeSubpath=``), so systemd's stock unit, which runs no pre hook,
fails to start it. The pre hook opens V and walks SUB one component at a time with
``O_PATH|O_NOFOLLOW`` relative to the previous fd (store/subpath.py: a symlink, ``..``, a
missing part or a device is refused), bind-mounts the opened fd (``/proc/self/fd/N``: the kernel
mounts the inode the fd holds, whatever the path says by then) onto a stage under
:data:`STAGE_ROOT` (root only, 0700), and nspawn binds the stage (run/units.py passes it on the
command line in place of the definition's source). A swap after that changes nothing mounted.

A regular file as SUB is allowed, as docker allows it: the fd is the file's inode, as safe as a
directory's. The stage goes when the container stops (the post hook), at the next start, and
with the container (``rm``; ``container prune``/``system prune`` also clear stages of containers gone).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..spec import SUBPATH_STAGES
from ..store.subpath import open_subpath, volume_part

TYPE_CHECKING = False  # typing's costs an import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..spec import ContainerSpec

STAGE_ROOT = SUBPATH_STAGES
"""One directory per running container (by name), one stage in it per subpath bind (0, 1, ...)."""


@dataclass(frozen=True)
class SubpathBind:
    """One bind source of a container that lies inside a volume, and where this start stages it."""

    host: str  # the definition's bind source, STORE/volumes/VOLUME/SUB
    volume: str
    sub: str  # relative, "/"-separated
    stage: str


def binds(volumes_root: Path, spec: ContainerSpec, stage_root: Path = STAGE_ROOT) -> list[SubpathBind]:
    """The container's subpath binds, each with its stage (the same for the pre hook that makes it
    and the start that passes it to nspawn: both call this)."""
    # the definition's Bind= names the stages of its VolumeSubpath= binds (spec.subpath_stages):
    # those first, in its order; then any other bind of a path inside a volume (a -v of such a
    # path, an older definition), staged too
    marked = sorted({v.host for v in spec.volumes if v.subpath})
    other = {v.host for v in spec.volumes if not v.subpath and volume_part(volumes_root, v.host)}
    hosts = [h for h in marked if volume_part(volumes_root, h)] + sorted(other - set(marked))
    out = []
    for i, host in enumerate(hosts):
        volume, sub = volume_part(volumes_root, host) or ("", "")
        out.append(SubpathBind(host, volume, sub, str(stage_root / spec.name / str(i))))
    return out


def stage(volumes_root: Path, spec: ContainerSpec, stage_root: Path = STAGE_ROOT) -> list[SubpathBind]:
    """Mount every subpath bind of the container on its stage (what a killed start left goes
    first). Nothing stays staged when one fails."""
    todo = binds(volumes_root, spec, stage_root)
    unstage(spec.name, stage_root)
    if not todo:
        return []
    stage_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(stage_root, 0o700)
    (stage_root / spec.name).mkdir(mode=0o700)
    from .. import mounts

    try:
        for b in todo:
            fd = open_subpath(volumes_root, b.volume, b.sub)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(b.stage, 0o700)
                else:
                    os.close(os.open(b.stage, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                mounts.bind_fd(fd, b.stage)
            finally:
                os.close(fd)
    except BaseException:
        unstage(spec.name, stage_root)
        raise
    return todo


def unstage(name: str, stage_root: Path = STAGE_ROOT) -> None:
    """Unmount and remove the container's stages (none: nothing to do). Never recursive: a
    stage that stays mounted is left (rmdir refuses it), so no file of a volume is ever removed."""
    top = stage_root / name
    try:
        entries = os.listdir(top)
    except (FileNotFoundError, NotADirectoryError):
        return
    from .. import mounts

    for entry in entries:
        path = top / entry
        for _ in range(16):  # stacked mounts (should never be more than one)
            if not mounts.detach(str(path)):
                break  # not (or no longer) a mount point
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
    top.rmdir()


MACHINES = Path("/run/systemd/machines")
"""machined's record of each registered machine: a name there runs (maybe from another pool)."""


def sweep(
    keep: Iterable[str], gone: Sequence[str] = (), stage_root: Path = STAGE_ROOT, machines: Path = MACHINES
) -> None:
    """Remove the stages of the containers in ``gone`` and of any name neither in ``keep`` (the
    containers that exist) nor a registered machine (a container of another store), as a prune
    does; each on its own, failures left for the next one."""
    try:
        names = set(os.listdir(stage_root))
    except OSError:
        return
    kept = set(keep)
    stray = {n for n in names - kept if not os.path.lexists(machines / n)}
    for name in sorted(n for n in names if n in gone or n in stray):
        try:
            unstage(name, stage_root)
        except OSError:
            pass


def staged_sources(volumes_root: Path, spec: ContainerSpec) -> tuple[tuple[str, str], ...]:
    """(definition's source, stage) of every subpath bind: Launch.staged, for nspawn's argv."""
    return tuple((b.host, b.stage) for b in binds(volumes_root, spec))
