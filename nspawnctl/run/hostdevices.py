"""The host's device nodes a ``--privileged`` container gets, as docker gives them.

docker (containerd's ``HostDevices``) hands a privileged container every char and block device
under the host's /dev at each start, skipping /dev/console and the pts, shm, fd and mqueue
directories, and not following symlinks. nspawn builds the container's /dev itself, so the nodes
it makes (null, zero, full, random, urandom, tty, ptmx, console, fuse, net/tun) are skipped too, and so
are the host's virtual consoles (tty0..N, vcs*: a container has no business on the host's
screens; serial ports, ttyS*/ttyUSB*/ttyACM*, stay). The list is read when the container starts
(devices come and go), never stored in its definition, and bounded so a host with a huge /dev
cannot make an endless nspawn command line.

nspawn reads the container's .nspawn file with ``--settings=override``, where the file's custom
mounts (Bind=, TemporaryFileSystem=, ...) replace the command line's ``--bind=`` list whole; so a
start with device nodes switches to ``--settings=trusted`` (the command line wins for what it
sets, the file gives the rest, as before) and repeats the file's mounts on the command line.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..spec import ContainerSpec

MAX_DEVICES = 1024
"""At most this many nodes are bound in (a host's /dev has a few hundred)."""

NSPAWN_MADE = frozenset(
    {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console", "fuse", "net/tun"}
)
"""Nodes nspawn creates in the container's /dev itself."""

SKIPPED_DIRS = frozenset({"pts", "shm", "mqueue", "hugepages", "fd", ".udev", ".lxc", ".lxd-mounts"})
"""Directories of /dev that are file systems or links nspawn sets up, not devices."""

_CONSOLE = re.compile(r"(tty[0-9]+|vcsa?[0-9]*|vcsu[0-9]*)")
"""The host's virtual consoles and their screen buffers."""

_SAFE = re.compile(r"[A-Za-z0-9_.+@-]+")
"""Name parts nspawn's ``--bind=`` takes as they are (``:`` separates its fields)."""


def wanted(rel: str) -> bool:
    """Whether the node at ``/dev/<rel>`` is bound into a privileged container."""
    if rel in NSPAWN_MADE:
        return False
    parts = rel.split("/")
    if parts[0] in SKIPPED_DIRS or not all(_SAFE.fullmatch(p) for p in parts):
        return False
    return not (len(parts) == 1 and _CONSOLE.fullmatch(rel))


def host_devices(root: Path = Path("/dev"), limit: int = MAX_DEVICES) -> list[str]:
    """The container paths (``/dev/...``) of the char and block nodes under ``root`` that
    :func:`wanted` keeps, sorted, at most ``limit``; symlinks are not followed, a directory
    that cannot be read is skipped (a node that vanishes while walking too)."""
    found: list[str] = []
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        base = "" if rel_top == "." else rel_top + "/"
        dirs[:] = sorted(d for d in dirs if (base + d).split("/")[0] not in SKIPPED_DIRS)
        for name in files:
            rel = base + name
            if not wanted(rel):
                continue
            try:
                mode = os.lstat(os.path.join(top, name)).st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.append("/dev/" + rel)
    return sorted(found)[:limit]


MOUNT_OPTIONS = (
    ("Bind", "--bind"),
    ("BindReadOnly", "--bind-ro"),
    ("TemporaryFileSystem", "--tmpfs"),
    ("Overlay", "--overlay"),
    ("OverlayReadOnly", "--overlay-ro"),
    ("Inaccessible", "--inaccessible"),
)
"""The [Files] keys nspawn keeps in one custom-mount list, and their command-line options."""


def mount_args(
    spec: ContainerSpec, devices: tuple[str, ...] | list[str], staged: Mapping[str, str] | None = None
) -> list[str]:
    """The command-line options for the container's own mounts (as its definition has them, a
    bind source in ``staged`` replaced by its stage: run/subpaths.py) and then a ``--bind=`` for
    each of ``devices`` no mount of its own already puts there (a ``--device`` of the same path,
    a volume on it)."""
    from dataclasses import replace

    from ..spec import spec_to_file, unescape_colon

    if staged:
        # a staged bind is a plain bind of its stage (one not staged keeps its subpath: the
        # file's Bind= then names a stage that is missing, and nspawn fails)
        volumes = [
            replace(v, host=staged[v.host], subpath="") if v.host in staged else v for v in spec.volumes
        ]
        spec = replace(spec, volumes=volumes)
    f = spec_to_file(spec)
    out: list[str] = []
    taken: set[str] = set()
    for key, option in MOUNT_OPTIONS:
        for value in f.get_all("Files", key):
            out.append(f"{option}={value}")
            parts = unescape_colon(value)
            if key.startswith("Bind"):
                taken.add(parts[1] if len(parts) > 1 and parts[1] else parts[0])
            elif key != "Inaccessible":
                taken.add(parts[0] if key == "TemporaryFileSystem" else parts[-1])
    under = tuple(p.rstrip("/") + "/" for p in taken)
    return out + [f"--bind={d}" for d in devices if d not in taken and not d.startswith(under)]
