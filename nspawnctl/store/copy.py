"""``cp`` between the host and a container, with docker cp's rules.

Both directions are a tar stream whose first member is the source itself (named by its base
name): the side that receives it decides from that member where the copy lands, as docker does.
The source tree is written through file descriptors opened relative to their parent with
``O_NOFOLLOW`` (never a path the container could redirect with a symlink); the receiving side
unpacks with the same safe extractor as images (unpack.py), which never writes through a
symlink. Container paths are resolved as a chroot would (rootpath.py).

A stopped container's side is its snapshot directory. A running container's side runs in a
forked child that has joined the container's user and mount namespaces, as ``machinectl
copy-to`` does: it sees the container's own mounts (the tmpfs on /tmp, volumes), and files it
creates are owned by the container's root however its user namespace maps IDs.

Owners: a file copied into a container belongs to root inside it (for a stopped container the
owner of its root directory on disk, 0 unless its files are stored shifted), one copied to the
host to the user running ``cp``; ``archive`` keeps the source's numeric owners instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, cast

from ..errors import ArchiveError, InvalidArgument, NotFound, UnsafeArchive
from . import rootpath, tarread
from .rootpath import DIR_READ
from .tarread import Member

_FILE_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20


# -- where things go -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the copy lands: inside DEST (``into_dest``) or in DEST's parent; under the name
    ``arcname``, or (None) the source directory's contents directly."""

    into_dest: bool
    arcname: str | None


def place(
    *,
    src: str,
    src_is_dir: bool,
    src_base: str,
    dest: str,
    dest_exists: bool,
    dest_is_dir: bool,
    dest_base: str,
) -> Placement:
    """docker cp's destination rules (docs of ``docker cp``), as a pure function.

    A file: into DEST when it is a directory (under the source's name), else it becomes DEST
    (created or overwritten; DEST ending in '/' must then be an existing directory). A
    directory: DEST is created as its copy when missing; an existing directory DEST receives it
    under its name, or only its contents when SRC ends with '/.'; a file DEST is an error.
    """
    contents = src.endswith("/.") or src == "." or not src_base
    if not src_is_dir:
        if dest_exists and dest_is_dir:
            return Placement(True, src_base)
        if not dest_exists and dest.endswith("/"):
            raise InvalidArgument(
                f"destination directory {dest} does not exist", hint="create it first, or drop the '/'"
            )
        if dest_exists and dest.endswith("/"):
            raise InvalidArgument(f"destination {dest} is not a directory")
        return Placement(False, dest_base)
    if dest_exists and not dest_is_dir:
        raise InvalidArgument(f"cannot copy a directory to a file: {dest} is not a directory")
    if dest_exists:
        return Placement(True, None if contents else src_base)
    return Placement(False, dest_base)


# -- the source side: a tar stream of a tree ---------------------------------------------------


@dataclass
class TreeWriter:
    """Writes a tree into a tar stream through directory fds (``O_NOFOLLOW`` everywhere).

    ``shift`` is subtracted from owners that are at least ``shift`` (a container whose files are
    stored shifted); hard links within the tree stay hard links; sockets are skipped as tar does.
    """

    tf: tarfile.TarFile
    shift: int = 0
    _links: dict[tuple[int, int], str] | None = None

    def add(self, parent_fd: int, name: bytes, arcname: str) -> None:
        if self._links is None:
            self._links = {}
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        fd = -1
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, DIR_READ, dir_fd=parent_fd)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, _FILE_READ, dir_fd=parent_fd)
        try:
            if fd >= 0:
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != (
                    st.st_dev,
                    st.st_ino,
                    stat.S_IFMT(st.st_mode),
                ):
                    raise OSError(errno.ESTALE, "it was replaced while it was being copied", arcname)
            ti = self._info(parent_fd, name, arcname, st, fd)
            if ti is None:
                return
            if ti.type == tarfile.DIRTYPE:
                self.tf.addfile(ti)
                self.add_contents(fd, arcname)
            elif ti.type == tarfile.REGTYPE:
                with os.fdopen(os.dup(fd), "rb") as f:
                    self.tf.addfile(ti, f)
            else:
                self.tf.addfile(ti)
        finally:
            if fd >= 0:
                os.close(fd)

    def add_contents(self, dir_fd: int, arcname: str) -> None:
        """Every entry of directory ``dir_fd`` (sorted, for reproducible streams)."""
        with os.scandir(dir_fd) as it:
            names = sorted(os.fsencode(e.name) for e in it)
        prefix = f"{arcname}/" if arcname else ""
        for child in names:
            self.add(dir_fd, child, prefix + os.fsdecode(child))

    def _owner(self, n: int) -> int:
        return n - self.shift if self.shift and n >= self.shift else n

    def _info(
        self, parent_fd: int, name: bytes, arcname: str, st: os.stat_result, fd: int
    ) -> tarfile.TarInfo | None:
        ti = tarfile.TarInfo(arcname)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = self._owner(st.st_uid), self._owner(st.st_gid)
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 10**9
        pax = {"mtime": _ns(st.st_mtime_ns), "atime": _ns(st.st_atime_ns)}
        mode = st.st_mode
        assert self._links is not None
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.fsdecode(os.readlink(name, dir_fd=parent_fd))
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first
            else:
                ti.type = tarfile.REGTYPE
                ti.size = st.st_size
                if st.st_nlink > 1:
                    self._links[key] = arcname
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            return None  # a socket: nothing to copy
        for attr, value in (_xattrs(fd) if fd >= 0 else {}).items():
            pax[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
        ti.pax_headers = pax
        return ti


def _ns(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    secs, frac = divmod(abs(ns), 10**9)
    return f"{sign}{secs}.{frac:09d}"


def _xattrs(fd: int) -> dict[str, bytes]:
    """Extended attributes of an open file or directory. (Symlinks, devices and FIFOs are never
    opened, and there is no path to read theirs by: /proc inside a container is its own.)"""
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    found = {}
    for key in names:
        try:
            found[key] = os.getxattr(fd, key)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return found


def open_tar_writer(out: IO[bytes]) -> tarfile.TarFile:
    return tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    )


# -- the receiving side ---------------------------------------------------------------------------


Owner = Callable[[int, int], tuple[int, int]]
Rename = Callable[[str], "str | None"]


def extract_into(
    dir_fd: int | Callable[[], int],
    stream: IO[bytes],
    owner: Owner,
    first: Callable[[Member], Rename] | None = None,
    *,
    host: bool = False,
    keep_kinds: bool = False,
) -> None:
    """Unpack a (possibly compressed) tar stream into directory ``dir_fd``, which may hold files
    already (they are replaced; directories merge). Owners pass through ``owner``. ``first``
    sees the first member and returns how to rename members (None: skip one), and only then is
    ``dir_fd`` asked for (it may be a function); without it an entry for the directory itself
    ("./") is skipped, so the destination keeps its metadata. ``host`` (a copy to the host)
    clears setuid/setgid, drops security.*/trusted.* xattrs and refuses device nodes;
    ``keep_kinds`` refuses to replace a directory by a non-directory or the reverse."""
    from .tarread import TarReader
    from .unpack import (
        Limits,
        _Counted,
        _Digesting,
        _Extractor,
        extract_member,
        open_decompressed,
        tar_limits,
    )

    limits = Limits()
    counted = _Counted(stream)
    src = open_decompressed(cast("IO[bytes]", counted))
    ex: _Extractor | None = None
    rename: Rename | None = None
    target: list[int] = []  # the destination fd, once asked for: its filesystem's free space counts

    def space() -> tuple[int, int]:
        if not target:
            return 1 << 62, 1 << 62
        st = os.fstatvfs(target[0])
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    # the same caps as an import: bytes, ratio to the compressed input, the pool's reserve
    digesting = _Digesting(
        src, limits, "sha256", compressed=counted, space=space, label="the copy", staged=False
    )
    try:
        reader = TarReader(digesting.read, tar_limits(limits))
        while (m := reader.next()) is not None:
            if ex is None:
                rename = first(m) if first is not None else None
                ex = _Extractor(
                    dir_fd if isinstance(dir_fd, int) else dir_fd(), limits, host=host, keep_kinds=keep_kinds
                )
                target.append(ex.root_fd)
            if rename is not None:
                name = rename(m.name)
                if name is None:
                    continue
                m.name = name
                if m.islnk():
                    m.linkname = rename(m.linkname) or m.linkname
            elif not rootpath.split(m.name) and m.isdir():
                continue
            m.uid, m.gid = owner(m.uid, m.gid)
            extract_member(ex, reader, m)
        if ex is not None:
            ex.finish()
    finally:
        if ex is not None:
            ex.close()
        src.close()


@dataclass(frozen=True)
class Dest:
    """The destination as the receiving side found it."""

    path: str  # as given
    exists: bool
    is_dir: bool
    base: str  # its last component (resolved)


def _renamer(root_name: str, arcname: str | None) -> Rename:
    """Member names under the source's root name -> under ``arcname`` (None: the contents
    directly, and the root entry itself is skipped). A name outside the root (the copy's first
    member) is refused: cutting its first characters off would put it somewhere else."""
    prefix = f"{root_name}/" if root_name else ""

    def rename(name: str) -> str | None:
        norm = "/".join(rootpath_split_str(name))
        if norm == root_name:
            return arcname
        if not norm.startswith(prefix):
            raise UnsafeArchive(f"the copy holds {name!r}, which is not under its first entry {root_name!r}")
        rest = norm[len(prefix) :]
        return f"{arcname}/{rest}" if arcname else rest

    return rename


def _lstat_or_none(dir_fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_at(dir_fd: int, name: bytes) -> None:
    """Remove what a failed copy made at ``name``, never following a symlink."""
    from .unpack import _rmtree_at

    st = _lstat_or_none(dir_fd, name)
    if st is None:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(st.st_mode):
            _rmtree_at(dir_fd, name)
        else:
            os.unlink(name, dir_fd=dir_fd)


def rootpath_split_str(name: str) -> list[str]:
    return [c for c in name.split("/") if c not in ("", ".")]


def receive_copy(
    src: str,
    dest: Dest,
    open_target: Callable[[bool], int],
    stream: IO[bytes],
    owner: Owner,
    *,
    host: bool = False,
) -> None:
    """Unpack a copy (the source's own entry first) where docker cp puts it. With ``host``, a
    copy that fails (a device node refused) is removed again when it made a new entry; one
    merged into an existing directory keeps what came before the failure (the error says so)."""
    fd: list[int] = []
    new: list[bytes] = []  # the entry this copy creates, if it did not exist before

    def first(m: Member) -> Rename:
        root_name = "/".join(rootpath_split_str(m.name))
        if host and m.type in (tarread.CHRTYPE, tarread.BLKTYPE):
            from .unpack import HOST_DEVICE_HINT

            raise UnsafeArchive(
                f"refusing to copy the device node {m.name!r} to the host", hint=HOST_DEVICE_HINT
            )
        p = place(
            src=src,
            src_is_dir=m.isdir(),
            src_base=root_name.rpartition("/")[2],
            dest=dest.path,
            dest_exists=dest.exists,
            dest_is_dir=dest.is_dir,
            dest_base=dest.base,
        )
        fd.append(open_target(p.into_dest))
        if host and p.arcname is not None:
            top = os.fsencode(rootpath_split_str(p.arcname)[0])
            if _lstat_or_none(fd[0], top) is None:
                new.append(top)
        return _renamer(root_name, p.arcname)

    try:
        extract_into(lambda: fd[0], stream, owner, first, host=host)
    except UnsafeArchive as e:
        if not host or not fd:
            raise
        if new:
            _remove_at(fd[0], new[0])
            raise UnsafeArchive(f"{e}; nothing was copied", hint=e.hint) from None
        raise UnsafeArchive(f"{e}; what came before it in the copy is in {dest.path}", hint=e.hint) from None
    finally:
        for f in fd:
            os.close(f)


def _write_source(out: IO[bytes], parent: int, name: bytes | None, arcname: str, shift: int) -> None:
    """The tar of a source: its own entry (``arcname``) first, then what is in it."""
    with open_tar_writer(out) as tf:
        writer = TreeWriter(tf, shift)
        writer.add(parent, name if name is not None else b".", arcname)


# -- running the container's side ---------------------------------------------------------------


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000


@dataclass(frozen=True)
class ContainerRoot:
    """Where a container's files are: its snapshot directory, and the PID 1 of the running
    container (None when stopped), whose namespaces the container's side of a copy joins."""

    path: str
    name: str
    leader: int | None = None
    # a stopped container's binds and volumes: (path in the container, host path, read-only);
    # docker's cp sees them there too (a running container's are in its namespaces already)
    mounts: tuple[tuple[str, str, bool], ...] = ()
    # the name a read gives the entry of the path it reads: a mount point's base name, when this
    # root is the bind's host directory (or a file bind's parent) rather than the container's
    top: str | None = None

    def start(
        self, work: Callable[[int], None], child_closes: list[int], keep: list[int] | None = None
    ) -> _Job:
        """Run ``work(root_fd)`` beside the caller: in a thread on the snapshot directory, or in
        a forked child inside the container's namespaces (fds in ``child_closes`` belong to
        the caller and are closed there). With ``keep``, the child closes every other
        descriptor it inherited: in a server (the API), a copy's child must not hold other
        requests' pipes and sockets open, or their readers never see an end."""
        if self.leader is None:
            return _ThreadJob(self.path, work)
        return _ForkJob(self.leader, self.name, work, child_closes, keep)


def in_container_cgroup(cgroup: str, name: str) -> bool:
    """Whether a ``/proc/PID/cgroup`` text puts the process in container ``name``'s unit
    (the transient one or systemd-nspawn@NAME.service, the payload below it)."""
    from ..run.units import persistent_unit_name, unit_name

    units = {unit_name(name), persistent_unit_name(name)}
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        if any(part in units for part in path.split("/")):
            return True
    return False


def container_namespaces(leader: int, name: str) -> tuple[int, int]:
    """The user and mount namespace fds of container ``name``'s PID 1 ``leader``, checked to
    be that container's: the PID came from machined a moment ago and may since belong to a
    host process (the container stopped, the PID was reused), whose namespaces a root copy
    must never join. A pidfd pins the process the checks are about: if it is still alive
    after the cgroup check and the opens, all of them saw that same process."""
    import signal

    gone = NotFound(f"container {name} stopped while files were being copied", hint="try again")
    try:
        pidfd = os.pidfd_open(leader)
    except (ProcessLookupError, FileNotFoundError):
        raise gone from None
    opened: list[int] = []
    try:
        try:
            with open(f"/proc/{leader}/cgroup") as f:
                cgroup = f.read()
            if not in_container_cgroup(cgroup, name):
                raise gone
            for ns in ("user", "mnt"):
                opened.append(os.open(f"/proc/{leader}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
            signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError once it has exited
        except (ProcessLookupError, FileNotFoundError):
            raise gone from None
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    finally:
        os.close(pidfd)
    return opened[0], opened[1]


SHIFTED_RANGE = 65536  # the IDs of a container stored shifted: shift .. shift+65535
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown


def owner_for(shift: int, keep: bool) -> Callable[[int, int], tuple[int, int]]:
    """The owner a copied-in entry gets on disk: the container's root (``shift``, the owner of
    its root directory), or with ``keep`` (``cp -a``, docker's copyUIDGID) the tar's IDs moved by
    ``shift``. A tar's IDs come from strangers (negative in GNU base-256, any size in PAX): one
    outside the container's range could name host root or a neighbour's range, so it is refused."""
    if not keep:
        return lambda u, g: (shift, shift)
    top = SHIFTED_RANGE - 1 if shift else MAX_ID

    def owner(u: int, g: int) -> tuple[int, int]:
        for kind, value in (("uid", u), ("gid", g)):
            if not 0 <= value <= top:
                raise ArchiveError(
                    f"the archive's {kind} {value} is outside the container's range 0..{top}",
                    hint="copy without keeping owners (no -a / copyUIDGID)",
                )
        return u + shift, g + shift

    return owner


class _Job:
    def wait(self) -> BaseException | None:
        raise NotImplementedError


class _ThreadJob(_Job):
    def __init__(self, path: str, work: Callable[[int], None]) -> None:
        self._error: BaseException | None = None
        try:
            self._fd = os.open(path, DIR_READ)
        except FileNotFoundError:
            raise NotFound(f"the container's root directory {path} is missing") from None
        self._thread = threading.Thread(target=self._run, args=(work,), name="cp", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[int], None]) -> None:
        try:
            work(self._fd)
        except BrokenPipeError:
            pass
        except BaseException as e:  # handed to the caller by wait()
            self._error = e

    def wait(self) -> BaseException | None:
        self._thread.join()
        os.close(self._fd)
        return self._error


class _ForkJob(_Job):
    def __init__(
        self,
        leader: int,
        name: str,
        work: Callable[[int], None],
        child_closes: list[int],
        keep: list[int] | None = None,
    ) -> None:
        import ctypes
        import json

        # everything the child needs is loaded now: after joining the mount namespace the
        # host's files (and Python's modules) are out of its sight
        from . import unpack

        with contextlib.suppress(Exception):
            unpack._import_zstd()  # for a zstd-compressed tar on stdin

        self._name = name
        libc = ctypes.CDLL(None, use_errno=True)
        user, mnt = container_namespaces(leader, name)
        same_user = os.fstat(user).st_ino == os.stat("/proc/self/ns/user").st_ino
        r, w = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:  # pragma: no cover - the child, in the container's namespaces
            code = 1
            try:
                os.close(r)
                for fd in child_closes:
                    os.close(fd)
                if keep is not None:
                    _close_all_but({0, 1, 2, user, mnt, w, *keep})
                if not same_user and libc.setns(user, CLONE_NEWUSER) != 0:
                    raise OSError(ctypes.get_errno(), "cannot join the container's user namespace")
                if libc.setns(mnt, CLONE_NEWNS) != 0:
                    raise OSError(ctypes.get_errno(), "cannot join the container's mount namespace")
                if not same_user:
                    with contextlib.suppress(OSError):
                        os.setgroups([])
                    os.setgid(0)
                    os.setuid(0)
                root = os.open("/", DIR_READ)
                work(root)
                code = 0
            except BrokenPipeError:
                code = 0
            except BaseException as e:
                from ..errors import NspawnctlError

                if isinstance(e, NspawnctlError):
                    msg = {"type": type(e).__name__, "message": e.message, "hint": e.hint}
                elif isinstance(e, OSError):
                    msg = {
                        "type": "OSError",
                        "message": f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
                    }
                else:
                    msg = {"type": "Error", "message": f"{type(e).__name__}: {e}"}
                with contextlib.suppress(OSError):
                    os.write(w, json.dumps(msg).encode())
            finally:
                os._exit(code)
        os.close(w)
        os.close(user)
        os.close(mnt)
        self._errors = r

    def wait(self) -> BaseException | None:
        import json

        from .. import errors

        with open(self._errors, "rb") as f:
            data = f.read()
        _, status = os.waitpid(self._pid, 0)
        if not data:
            if os.waitstatus_to_exitcode(status) != 0:
                return errors.CommandFailed(f"copying in container {self._name} failed ({status})")
            return None
        msg = json.loads(data)
        cls = getattr(errors, msg["type"], None)
        if isinstance(cls, type) and issubclass(cls, errors.NspawnctlError):
            return cls(msg["message"], hint=msg.get("hint"))
        return errors.CommandFailed(f"copying in container {self._name} failed: {msg['message']}")


def _close_all_but(keep: set[int]) -> None:  # pragma: no cover - in the forked child
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _finish(job: _Job, mine: BaseException | None) -> None:
    """Wait for the other side; the first real error wins (the other side's, when ours is only
    the consequence of it having stopped: a broken pipe or a truncated stream)."""
    theirs = job.wait()
    if theirs is not None and (mine is None or isinstance(mine, (BrokenPipeError, ArchiveError))):
        raise theirs
    if mine is not None and not isinstance(mine, BrokenPipeError):
        raise mine


# -- the two directions --------------------------------------------------------------------------


def _fileno(f: IO[bytes]) -> int | None:
    """A duplicate of the stream's file descriptor, None for an in-memory stream."""
    try:
        return os.dup(f.fileno())
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def _stream(
    root: ContainerRoot, work: Callable[[int, IO[bytes]], None], stream: IO[bytes], container_writes: bool
) -> None:
    """Run ``work(root_fd, file)`` on the container's side with ``stream`` as its file: a duplicate
    of the stream's descriptor, or for a stream without one (BytesIO) a pipe pumped from here."""
    mode = "wb" if container_writes else "rb"
    fd = _fileno(stream)
    if fd is not None:
        job = root.start(lambda r: work(r, open(fd, mode)), [], keep=[fd])
        if isinstance(job, _ForkJob):
            os.close(fd)
        _finish(job, None)
        return
    pr, pw = os.pipe()
    theirs, ours = (pw, pr) if container_writes else (pr, pw)
    job = root.start(lambda r: work(r, open(theirs, mode)), [ours], keep=[theirs])
    if isinstance(job, _ForkJob):
        os.close(theirs)
    failed: BaseException | None = None
    try:
        with open(ours, "rb" if container_writes else "wb") as piped:
            if container_writes:
                shutil.copyfileobj(piped, stream, _CHUNK)
            else:
                shutil.copyfileobj(stream, piped, _CHUNK)
    except BaseException as e:  # decided on in _finish, with the container side's error
        failed = e
    _finish(job, failed)


def _dirname(path: str) -> str:
    return os.path.dirname(path.rstrip("/")) or "/"


def _follows(src: str, follow_link: bool) -> bool:
    return follow_link or src.endswith("/") or src.endswith("/.") or src in (".", "")


def _resolve_source(
    root_fd: int, name: str, src: str, follow_link: bool
) -> tuple[rootpath.Comps, os.stat_result]:
    """The components of ``src`` inside the container root, and what is there (lstat)."""
    missing = NotFound(
        f"Could not find the file {src} in container {name}",
        hint=f"see what is there: nspawnctl exec {name} ls -la {_dirname(src)}",
    )
    try:
        comps = rootpath.resolve(root_fd, src, follow_last=_follows(src, follow_link))
    except (FileNotFoundError, NotADirectoryError):
        raise missing from None
    except OSError as e:
        raise InvalidArgument(f"cannot resolve {src} in container {name}: {e.strerror}") from e
    st = rootpath.lstat(root_fd, comps)
    if st is None:
        raise missing
    if src.endswith("/") and not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{src} is not a directory in container {name}")
    return comps, st


def _send_file_from_container(
    root_fd: int, name: str, src: str, dest: str, out: IO[bytes], follow_link: bool
) -> None:
    """The container side of a copy into a host device, FIFO or symlink: the bytes of the
    regular file ``src`` (no tar) to ``out``, closed in any case."""
    with out:
        comps, st = _resolve_source(root_fd, name, src, follow_link)
        if not stat.S_ISREG(st.st_mode) or not comps:
            raise InvalidArgument(
                f"cannot copy {src} of container {name} into {dest}: only a regular file can be written "
                "into a device, a FIFO or through a symlink",
                hint="copy it to a directory, or to '-' for a tar stream",
            )
        parent = rootpath.open_dir(root_fd, comps[:-1], DIR_READ)
        try:
            fd = os.open(comps[-1], _FILE_READ, dir_fd=parent)
        finally:
            os.close(parent)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(errno.ESTALE, "it was replaced while it was being copied", src)
            shutil.copyfileobj(f, out, _CHUNK)


def _send_from_container(
    root_fd: int, name: str, src: str, out: IO[bytes], follow_link: bool, top: str | None = None
) -> None:
    """The container side of ``copy_out``: the tar of ``src`` to ``out`` (closed in any case:
    the other side waits for its end), its own entry named ``top`` if given."""
    with out:
        comps, _ = _resolve_source(root_fd, name, src, follow_link)
        parent = rootpath.open_dir(root_fd, comps[:-1], DIR_READ)
        try:
            arcname = top or (os.fsdecode(comps[-1]) if comps else ".")
            _write_source(out, parent, comps[-1] if comps else None, arcname, os.fstat(root_fd).st_uid)
        finally:
            os.close(parent)


def copy_out(
    root: ContainerRoot,
    src: str,
    dest: str | None,
    out: IO[bytes] | None,
    *,
    archive: bool,
    follow_link: bool = False,
) -> None:
    """Container ``src`` -> host ``dest``; ``dest`` None writes the tar stream to ``out``. A
    ``dest`` that is a device, a FIFO or a symlink to anything but a directory gets the file's
    bytes written into it (:mod:`nspawnctl.hostfile`'s rules), never replaced."""
    if dest is None:
        assert out is not None
        out.flush()
        top = root.top
        _stream(root, lambda r, f: _send_from_container(r, root.name, src, f, follow_link, top), out, True)
        return
    if _writes_into(dest):
        _copy_file_into(root, src, dest, follow_link)
        return
    r, w = os.pipe()
    job = root.start(
        lambda rfd: _send_from_container(rfd, root.name, src, open(w, "wb"), follow_link, root.top), [r]
    )
    if isinstance(job, _ForkJob):
        os.close(w)
    uid, gid = os.getuid(), os.getgid()

    def owner(u: int, g: int) -> tuple[int, int]:
        return (u, g) if archive else (uid, gid)

    mine: BaseException | None = None
    try:
        with open(r, "rb") as stream:
            receive_copy(
                src, _host_dest(dest), lambda into: _open_host_target(dest, into), stream, owner, host=True
            )
    except BaseException as e:  # decided on in _finish, with the container side's error
        mine = e
    _finish(job, mine)


def _writes_into(dest: str) -> bool:
    """Whether the host ``dest`` is written into rather than extracted over: a device, a FIFO, a
    socket (refused later), or a symlink (followed, as docker does) to anything but a directory."""
    try:
        st = os.lstat(dest)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if stat.S_ISLNK(st.st_mode):
        return not os.path.isdir(dest)
    return not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode))


def _copy_file_into(root: ContainerRoot, src: str, dest: str, follow_link: bool) -> None:
    from ..hostfile import open_output

    with open_output(dest) as target:
        r, w = os.pipe()
        job = root.start(
            lambda rfd: _send_file_from_container(rfd, root.name, src, dest, open(w, "wb"), follow_link), [r]
        )
        if isinstance(job, _ForkJob):
            os.close(w)
        mine: BaseException | None = None
        try:
            with open(r, "rb") as stream:
                shutil.copyfileobj(stream, target, _CHUNK)
        except BaseException as e:  # decided on in _finish, with the container side's error
            mine = e
        _finish(job, mine)


def _host_dest(dest: str) -> Dest:
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise InvalidArgument(f"destination {dest}: a part of its path is not a directory") from None
    return Dest(
        dest,
        st is not None,
        st is not None and stat.S_ISDIR(st.st_mode),
        os.path.basename(os.path.normpath(dest)),
    )


def _open_host_target(dest: str, into_dest: bool) -> int:
    target = dest if into_dest else os.path.dirname(os.path.abspath(dest))
    try:
        return os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidArgument(
            f"destination directory {target} does not exist", hint="create it first (mkdir -p)"
        ) from None


def _receive_in_container(
    root_fd: int, name: str, src: str | None, dest: str, stream: IO[bytes], archive: bool
) -> None:
    """The container side of ``copy_in``: unpack ``stream`` at ``dest`` (docker's placement for
    a copy; a plain tar from stdin, ``src`` None, goes into the directory ``dest``)."""
    with stream:
        try:
            comps = rootpath.resolve(root_fd, dest, follow_last=True)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(
                f"the parent directory of {dest} does not exist in container {name}",
                hint=f"create it first: nspawnctl exec {name} mkdir -p {_dirname(dest)}",
            ) from None
        except OSError as e:
            raise InvalidArgument(f"cannot resolve {dest} in container {name}: {e.strerror}") from e
        st = rootpath.lstat(root_fd, comps)
        owner = owner_for(os.fstat(root_fd).st_uid, archive)

        if src is None:
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(
                    f"destination {dest} must be an existing directory in container {name} "
                    "when the source is a tar stream ('-')"
                )
            fd = rootpath.open_dir(root_fd, comps, DIR_READ)
            try:
                extract_into(fd, stream, owner)
            finally:
                os.close(fd)
            return
        info = Dest(
            dest,
            st is not None,
            st is not None and stat.S_ISDIR(st.st_mode),
            os.fsdecode(comps[-1]) if comps else "",
        )

        def open_target(into_dest: bool) -> int:
            try:
                return rootpath.open_dir(root_fd, comps if into_dest else comps[:-1], DIR_READ)
            except (FileNotFoundError, NotADirectoryError):
                raise InvalidArgument(
                    f"the parent directory of {dest} does not exist in container {name}"
                ) from None

        receive_copy(src, info, open_target, stream, owner)


def copy_in(
    root: ContainerRoot,
    src: str | None,
    stream: IO[bytes] | None,
    dest: str,
    *,
    archive: bool,
    follow_link: bool = False,
) -> None:
    """Host ``src`` -> container ``dest``; ``src`` None unpacks the tar stream ``stream`` into
    the directory ``dest``."""
    if src is None:
        assert stream is not None
        _stream(root, lambda r, f: _receive_in_container(r, root.name, None, dest, f, archive), stream, False)
        return
    follow = _follows(src, follow_link)
    real = os.path.realpath(src) if follow else os.path.abspath(src)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        raise NotFound(f"no such file or directory: {src}") from None
    if src.endswith("/") and not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{src} is not a directory")
    base = os.path.basename(real)
    parent = os.open(os.path.dirname(real), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        r, w = os.pipe()
        job = root.start(
            lambda rfd: _receive_in_container(rfd, root.name, src, dest, open(r, "rb"), archive), [w]
        )
        if isinstance(job, _ForkJob):
            os.close(r)
        mine: BaseException | None = None
        try:
            with open(w, "wb") as out:
                _write_source(out, parent, os.fsencode(base) if base else None, base or ".", 0)
        except BaseException as e:  # decided on in _finish, with the container side's error
            mine = e
        _finish(job, mine)
    finally:
        os.close(parent)


# -- the Docker Engine API's archive endpoints ---------------------------------------------------


@dataclass(frozen=True)
class PathStat:
    """What is at a path in a container (not following a final symlink), as docker's
    ``X-Docker-Container-Path-Stat`` tells it: ``link_target`` is the symlink's target resolved
    inside the container (an absolute path there), "" for anything else."""

    name: str
    size: int
    mode: int  # st_mode
    mtime_ns: int
    link_target: str


def _stat_in_container(root_fd: int, name: str, path: str, out: IO[bytes], top: str | None = None) -> None:
    import json

    with out:
        comps, st = _resolve_source(root_fd, name, path, False)
        target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                target = rootpath.show(rootpath.resolve(root_fd, path, follow_last=True))
            except OSError:  # a dangling or looping link: docker names what it points at
                parent = rootpath.open_dir(root_fd, comps[:-1], DIR_READ)
                try:
                    target = os.fsdecode(os.readlink(comps[-1], dir_fd=parent))
                finally:
                    os.close(parent)
        base = rootpath.split(path.rstrip("/"))
        value = {
            "name": top or (os.fsdecode(base[-1]) if base else "/"),
            "size": st.st_size,
            "mode": st.st_mode,
            "mtime_ns": st.st_mtime_ns,
            "link_target": target,
        }
        out.write(json.dumps(value).encode())


def stat_path(root: ContainerRoot, path: str) -> PathStat:
    """docker's ``HEAD /containers/{id}/archive``: what ``path`` is in the container (NotFound
    when nothing is there), read in the container's own mounts when it runs."""
    import io
    import json

    buf = io.BytesIO()
    _stream(root, lambda r, f: _stat_in_container(r, root.name, path, f, root.top), buf, True)
    value = json.loads(buf.getvalue())
    return PathStat(**value)


def _extract_in_container(
    root_fd: int, name: str, path: str, stream: IO[bytes], keep_owners: bool, keep_kinds: bool
) -> None:
    with stream:
        try:
            comps = rootpath.resolve(root_fd, path, follow_last=True)
        except (FileNotFoundError, NotADirectoryError):
            comps = None
        except OSError as e:
            raise InvalidArgument(f"cannot resolve {path} in container {name}: {e.strerror}") from e
        st = rootpath.lstat(root_fd, comps) if comps is not None else None
        if comps is None or st is None:
            raise NotFound(f"Could not find the file {path} in container {name}")
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"extraction point is not a directory: {path} in container {name}")
        owner = owner_for(os.fstat(root_fd).st_uid, keep_owners)

        fd = rootpath.open_dir(root_fd, comps, DIR_READ)
        try:
            extract_into(fd, stream, owner, keep_kinds=keep_kinds)
        finally:
            os.close(fd)


def extract_archive(
    root: ContainerRoot, path: str, stream: IO[bytes], *, keep_owners: bool = False, keep_kinds: bool = False
) -> None:
    """docker's ``PUT /containers/{id}/archive``: unpack the tar ``stream`` into the existing
    directory ``path`` of the container (symlinks on the way resolved inside it), by the same
    safe extractor as ``cp``: nothing lands outside the directory, through a symlink, or as a
    ``..`` name. Files belong to the container's root unless ``keep_owners`` (shifted for a
    container whose files are stored shifted); ``keep_kinds`` is ``noOverwriteDirNonDir``."""
    _stream(
        root,
        lambda r, f: _extract_in_container(r, root.name, path, f, keep_owners, keep_kinds),
        stream,
        False,
    )


def archive_path(root: ContainerRoot, path: str, out: IO[bytes]) -> None:
    """docker's ``GET /containers/{id}/archive``: the tar of ``path`` (its own entry first,
    named by its base name; a final symlink not followed) to ``out``, owners as stored inside."""
    copy_out(root, path, None, out, archive=True)
