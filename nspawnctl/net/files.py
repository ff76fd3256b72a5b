"""Files nspawnctl writes into a container's root: /etc/resolv.conf and /etc/hosts.

The root belongs to the container, and its /etc may hold symlinks pointing anywhere on the host
(``etc -> /etc``, ``etc/hosts -> /etc/shadow``). Every path is therefore walked with ``O_NOFOLLOW``
from a descriptor of the root, and the file is replaced by a rename inside the directory: a symlink
is replaced or skipped, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import stat
from pathlib import Path

from ..store import rootpath

HOST_RESOLV = Path("/etc/resolv.conf")
# systemd-resolved's list of the uplink servers, for hosts whose /etc/resolv.conf names only its stub
UPLINK_RESOLV = Path("/run/systemd/resolve/resolv.conf")

LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def write_in_root(
    root: Path, directory: str, filename: str, content: str, keep_symlink: bool = False
) -> bool:
    """Write ROOT/DIRECTORY/FILENAME atomically; False when skipped.

    ``keep_symlink``: a symlink there is the image's own choice (a booted container's resolv.conf
    -> its resolver's stub), so leave it; otherwise it is replaced by a regular file (never
    followed). A symlinked DIRECTORY on the way is always skipped; a missing one is made.
    """
    try:
        root_fd = os.open(root, rootpath.DIR_READ)
    except OSError:
        return False
    try:
        dir_fd = _open_dir(root_fd, tuple(rootpath.split(directory)))
        if dir_fd is None:
            return False
        try:
            return _replace(dir_fd, filename, content, keep_symlink)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)


def _open_dir(root_fd: int, comps: rootpath.Comps) -> int | None:
    """``comps`` below the root, made where missing; None where a symlink (or a file) is in the way."""
    try:
        try:
            return rootpath.open_dir(root_fd, comps, rootpath.DIR_READ)
        except FileNotFoundError:
            pass
        for depth in range(len(comps)):
            parent = rootpath.open_dir(root_fd, comps[:depth], rootpath.DIR_READ)
            try:
                os.mkdir(comps[depth], 0o755, dir_fd=parent)
            except FileExistsError:  # there, or a symlink: the next open_dir tells
                pass
            finally:
                os.close(parent)
        return rootpath.open_dir(root_fd, comps, rootpath.DIR_READ)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # not ours to follow
            return None
        raise


def _replace(dir_fd: int, filename: str, content: str, keep_symlink: bool) -> bool:
    try:
        st = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISDIR(st.st_mode) or (keep_symlink and stat.S_ISLNK(st.st_mode))):
        return False
    tmp = f".{filename}.nspawnctl-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
    )
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.rename(tmp, filename, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def resolv_conf(host: Path | None = None, uplink: Path | None = None) -> str | None:
    """The container's resolv.conf: the host's servers, or resolved's uplink servers when the host
    lists only loopback stubs (127.0.0.53 answers on the host's lo, not the container's). None when
    no server would be reachable from the container: its own file is then left alone."""
    for path in (host or HOST_RESOLV, uplink or UPLINK_RESOLV):
        servers, other = _parse_resolv(path)
        if servers:
            lines = [f"# written by nspawnctl from the host's {path}"]
            lines += [f"nameserver {s}" for s in servers] + other
            return "\n".join(lines) + "\n"
    return None


def _parse_resolv(path: Path) -> tuple[list[str], list[str]]:
    try:
        text = path.read_text()
    except OSError:
        return [], []
    servers, other = [], []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            if _reachable_from_container(words[1]):
                servers.append(words[1])
        elif words and words[0] in ("search", "domain", "options"):
            other.append(" ".join(words))
    return servers, other


def _reachable_from_container(server: str) -> bool:
    try:
        addr = ipaddress.ip_address(server)
    except ValueError:  # "fe80::1%eth0": scoped to a host interface
        return False
    return not (addr.is_loopback or addr.is_link_local)


def hosts_file(members: dict[str, str]) -> str:
    """/etc/hosts of a zone member: localhost, then ``ADDR NAME`` for every member (itself included)."""
    lines = [f"{addr}\t{name}" for name, addr in sorted(members.items(), key=lambda kv: kv[0])]
    return (
        "# written by nspawnctl: the members of this container's zone\n"
        + LOCALHOST
        + "".join(line + "\n" for line in lines)
    )
