"""The API of ``cp``, ``commit``, ``export``, ``save``, ``load`` and the import of btrfs send
streams; functions that take a :class:`~nspawnctl.client.Client`::

    from nspawnctl import Client, files
    client = Client()
    files.copy(client, "./app.conf", "web:/etc/app.conf")
    files.commit(client, "web", "web-snapshot:1")
    files.export(client, "web-snapshot:1", "web.tar")
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from .errors import InvalidArgument, NotFound
from .ref import ImageRef

if TYPE_CHECKING:
    from .client import Client
    from .spec import RunDefaults
    from .store.copy import ContainerRoot, PathStat
    from .store.dockerarchive import Loaded
    from .store.images import Image, ImageStore
    from .store.unpack import Limits

FORMATS = ("tar", "btrfs-send")


def split_cp_arg(arg: str) -> tuple[str | None, str]:
    """(container, path) of a ``cp`` argument, as docker splits it: ``NAME:PATH`` names a
    container; an absolute path or one starting with '.' is the host's even with a ':'."""
    if arg.startswith("/"):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or name.startswith("."):
        return None, arg
    return name, path


def copy(
    client: Client,
    src: str,
    dest: str,
    *,
    archive: bool = False,
    follow_link: bool = False,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> None:
    """docker cp: ``NAME:PATH`` is the container side (running or stopped), ``-`` a tar stream
    on ``stdin`` (as SRC) or ``stdout`` (as DEST). Files copied into a container belong to its
    root, files copied out to the caller, unless ``archive`` keeps the source's owners."""
    from .store.copy import copy_in, copy_out

    src_ctr, src_path = split_cp_arg(src)
    dest_ctr, dest_path = split_cp_arg(dest)
    if src_ctr is not None and dest_ctr is not None:
        raise InvalidArgument(
            "copying between containers is not supported", hint="copy to the host first, then on"
        )
    if src_ctr is None and dest_ctr is None:
        raise InvalidArgument(
            "one side of cp must be a container: NAME:PATH", hint="e.g. nspawnctl cp ./file web:/tmp/"
        )
    name = src_ctr or dest_ctr
    assert name is not None
    root = container_root(client, name)
    if src_ctr is not None:
        root, src_path = in_mount(root, src_path or "/")
    else:
        root, dest_path = in_mount(root, dest_path or "/", write=True)
    if src_ctr is not None:
        if dest == "-":
            copy_out(root, src_path or "/", None, stdout or _stdout(), archive=True, follow_link=follow_link)
        else:
            copy_out(root, src_path or "/", dest, None, archive=archive, follow_link=follow_link)
    elif src == "-":
        copy_in(root, None, stdin or _stdin(), dest_path or "/", archive=archive)
    else:
        copy_in(root, src, None, dest_path or "/", archive=archive, follow_link=follow_link)


def container_root(
    client: Client, ref: str, leader: Callable[[str], int | None] | None = None
) -> ContainerRoot:
    """Where a copy of container ``ref`` (a name, an ID or a unique ID prefix) happens: its
    snapshot directory when stopped, its namespaces when running. ``leader`` finds the running
    container's PID 1 (the API passes the one its bus found), machined's answer by default."""
    from .store.copy import ContainerRoot

    store = client.containers.store
    name = store.resolve(ref)
    store.get(name)  # raises ContainerNotFound
    path = store.root(name)
    if not path.is_dir():
        raise NotFound(f"container {name} has no root directory {path}")
    running = (leader or _leader)(name)
    mounts: tuple[tuple[str, str, bool], ...] = ()
    if running is None:
        mounts = tuple((v.container, v.host, v.read_only) for v in store.get(name).volumes)
    return ContainerRoot(str(path), name, running, mounts)


def in_mount(
    root: ContainerRoot, path: str, write: bool = False, at_mount: bool = True
) -> tuple[ContainerRoot, str]:
    """Where ``path`` of a stopped container is: at or below one of its binds or volumes, that
    host directory (as the running container sees it mounted there; docker's cp too), else its
    root. A file bind is its host file, found in the file's directory. A read of the mount point
    itself names its entry by the mount point's base name (``/data``, not the host directory's);
    ``NAME:/data/.`` reads the contents. ``at_mount=False`` leaves the mount point itself to the
    root. A write into a read-only mount is refused."""
    import dataclasses
    import posixpath

    norm = posixpath.normpath("/" + path.lstrip("/"))  # (normpath keeps a leading "//")
    best: tuple[str, str, bool] | None = None
    for ctr, host, ro in root.mounts:
        mount = posixpath.normpath(ctr)
        inside = norm.startswith(mount.rstrip("/") + "/") or (at_mount and norm == mount)
        if inside and (best is None or len(mount) > len(best[0])):
            best = (mount, host, ro)
    if best is None:
        return root, path
    mount, host, ro = best
    if write and ro:
        raise InvalidArgument(f"{mount} is a read-only mount of container {root.name}", hint="copy elsewhere")
    rest = norm[len(mount) :] or "/"
    at_point = rest == "/"
    if path.endswith("/") and not rest.endswith("/"):
        rest += "/"  # docker's "copy into the directory" mark
    contents = path.rstrip("/").endswith("/.")
    top = posixpath.basename(mount) if at_point and not write and not contents else None
    if at_point and contents:
        rest = "/."
    if not os.path.isdir(host):  # a file bind (or what is missing): the host file by its name
        parent, base = os.path.split(host.rstrip("/"))
        inner = "/" + base + ("" if rest in ("/", "/.") else rest) + ("/" if path.endswith("/") else "")
        return dataclasses.replace(root, path=parent or "/", mounts=(), top=top), inner
    return dataclasses.replace(root, path=host, mounts=(), top=top), rest


def stat_path(root: ContainerRoot, path: str) -> PathStat:
    """What is at ``path`` in the container (a final symlink not followed); NotFound if nothing."""
    from .store.copy import stat_path as do_stat

    return do_stat(*in_mount(root, path))


def archive_path(root: ContainerRoot, path: str, out: IO[bytes]) -> None:
    """The tar stream of ``path`` in the container (``cp NAME:PATH -``) to ``out``."""
    from .store.copy import archive_path as do_archive

    do_archive(*in_mount(root, path), out)


def extract_archive(
    root: ContainerRoot,
    path: str,
    stream: IO[bytes],
    *,
    keep_owners: bool = False,
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    """Unpack the tar ``stream`` into the existing directory ``path`` of the container, by
    ``cp``'s safe extractor (nothing outside it, never through a symlink)."""
    from .store.copy import extract_archive as do_extract

    root, path = in_mount(root, path, write=True)
    do_extract(root, path, stream, keep_owners=keep_owners, keep_kinds=no_overwrite_dir_non_dir)


def _leader(name: str) -> int | None:
    """The running container's PID 1 (its namespaces are where a copy happens), None if stopped."""
    from .systemd.bus import run_sync
    from .systemd.machined import Machined

    return run_sync(lambda bus: Machined(bus).leader(name))


def _stdin() -> IO[bytes]:
    import sys

    return sys.stdin.buffer


def _stdout() -> IO[bytes]:
    import sys

    return sys.stdout.buffer


def commit(
    client: Client,
    container: str,
    ref: str | None = None,
    message: str | None = None,
    *,
    configure: Callable[[RunDefaults], RunDefaults] | None = None,
    origin: dict[str, str] | None = None,
) -> Image:
    """A new read-only image of the container's files as they are now (running or not), whose
    run defaults are the container's: ``run IMAGE`` runs what the container ran. ``configure``
    changes those defaults (docker commit's config and ``--change``); ``origin`` adds to the
    image's record (e.g. an author)."""
    from .client import tag_ref
    from .store.transfer import commit as do_commit

    parsed = tag_ref(ref) if ref else None
    client.pool.check()
    return do_commit(
        client.images.store, client.containers.store, container, parsed, message, configure, origin
    )


def export(
    client: Client,
    what: str,
    output: str | os.PathLike[str] | IO[bytes],
    *,
    format: str = "tar",
    parent: str | None = None,
) -> None:
    """Write an image or a container (a container of that name wins) as a tar of its root
    filesystem, or with ``format="btrfs-send"`` as a btrfs send stream, incremental against the
    image ``parent``. A path ``output`` is written by :func:`nspawnctl.hostfile.open_output`'s
    rules: a regular file appears only complete (written aside, then renamed); a device, FIFO or
    what a symlink reaches is written into, never replaced."""
    from .hostfile import open_output
    from .store import transfer

    if format not in FORMATS:
        raise InvalidArgument(f"unknown export format {format!r}", hint=f"use one of: {', '.join(FORMATS)}")
    if parent is not None and format != "btrfs-send":
        raise InvalidArgument("--parent needs --format btrfs-send", hint="a tar export is always complete")
    client.pool.check()
    images, containers = client.images.store, client.containers.store
    with transfer.export_source(images, containers, what) as source:
        parent_path = None
        if parent is not None:
            parent_path = transfer.check_parent(images, source, images.get(parent))

        def write(out: IO[bytes]) -> None:
            if format == "tar":
                transfer.export_tar(source.path, out)
            else:
                transfer.export_send(source.path, parent_path, out)

        if not isinstance(output, (str, os.PathLike)):
            write(output)
            return
        with open_output(output) as f:
            write(f)


def save(client: Client, names: list[str], output: str | os.PathLike[str] | IO[bytes]) -> None:
    """docker save: the images ``names`` (references or IDs) as one docker-archive tar (what
    ``load`` and docker's take back), to a path by :func:`nspawnctl.hostfile.open_output`'s rules or
    to a stream. Every name is looked up before anything is written."""
    from .formats.oci import Platform
    from .hostfile import open_output
    from .store import dockerarchive, transfer

    if not names:
        raise InvalidArgument("save needs at least one image", hint="e.g. nspawnctl save -o app.tar app:1")
    client.pool.check()
    store = client.images.store
    for name in names:
        store.get(name)  # ImageNotFound before the output is opened
    arch = Platform.host().architecture

    def write(out: IO[bytes]) -> None:
        dockerarchive.save(store, names, out, arch, transfer.export_tar)

    if not isinstance(output, (str, os.PathLike)):
        write(output)
        return
    with open_output(output) as f:
        write(f)


def load(
    client: Client, source: str | os.PathLike[str] | IO[bytes], notify: Callable[[str], None] = lambda _: None
) -> list[Loaded]:
    """docker load: every image of a docker-archive tar (possibly compressed) at the path
    ``source`` or read from the stream ``source`` (a pipe is spooled on the pool first, within its
    free space: the archive is read by offset). Each image appears whole, with all its tags, or
    not at all."""
    import stat
    from pathlib import Path

    from .store import dockerarchive

    client.pool.check()
    store = client.images.store
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise InvalidArgument(
                f"cannot read {path}: {e.strerror}", hint="name the tar 'nspawnctl save' (or docker's) wrote"
            ) from e
        if not path.is_file():
            raise InvalidArgument(f"{path} is not a file", hint="load takes the tar 'docker save' writes")
        return dockerarchive.load(store, path, notify)
    if stat.S_ISREG(os.fstat(source.fileno()).st_mode) and source.seekable() and source.tell() == 0:
        return dockerarchive.load(store, Path(f"/proc/self/fd/{source.fileno()}"), notify)
    with dockerarchive.spooled(store, source) as path:
        return dockerarchive.load(store, path, notify)


def import_stream(
    store: ImageStore,
    stream: IO[bytes],
    ref: ImageRef | None,
    source: str,
    limits: Limits | None = None,
    defaults: RunDefaults | None = None,
) -> Image:
    """A tarball (possibly compressed) or a btrfs send stream, told apart by the first bytes.
    ``defaults``: the image's run defaults (docker import's ``--change``)."""
    from .store import transfer
    from .store.unpack import _Prefixed

    if stream.seekable():
        head = stream.read(len(transfer.SEND_MAGIC))
        stream.seek(0)
        replay: IO[bytes] = stream
    else:
        head = transfer.read_exactly(stream, len(transfer.SEND_MAGIC))
        replay = io.BufferedReader(_Prefixed(head, stream))
    if transfer.is_send_stream(head):
        image = transfer.receive(store, replay, ref, source, limits)
        if defaults is None:
            return image
        store.annotate(image.id, None, defaults)
        return store.get(image.id)
    if defaults is None:
        return store.import_archive(replay, ref, source=source, limits=limits)
    return store.import_archive(replay, ref, source=source, defaults=defaults, limits=limits)
