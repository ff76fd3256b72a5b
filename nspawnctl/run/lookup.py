"""Find a container's command before it runs, as its exec would: docker's 127 and 126.

systemd-nspawn reports a payload it cannot execute only as ``execv(...) failed`` on the payload's
stderr and exit status 1, which a caller cannot tell from the payload's own failure. So the
command is looked up first, from the host, the way the payload's ``execvpe`` will: a name without
a slash is searched in the container's $PATH (an empty entry is the working directory; a file
found but not executable is remembered and reported if nothing executable follows), a path is
taken relative to the working directory. Paths resolve inside the container's root as a chroot
would (store/rootpath.py: symlinks never lead out of it). A script's ``#!`` interpreter must exist
too. A path below a volume is not in the container's root before it runs: it is not judged.

What happens between this check and the exec (a file removed meanwhile) is still caught at run
time: see :func:`exec_failure`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CommandNotExecutable, CommandNotFound
from ..store import rootpath

__all__ = ["DEFAULT_PATH", "Found", "check_command", "env_path", "exec_failure", "find_command"]

# What systemd-nspawn gives a payload, and nspawnctl gives ``exec``, when the image sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SHEBANG_MAX = 256  # the kernel reads this much of a script for its #! line (BINPRM_BUF_SIZE)
_EXEC_FAILED = re.compile(rb"execv\((.*)\) failed: (.*)")


@dataclass(frozen=True)
class Found:
    """How one candidate path fared: ``ok``, ``missing``, ``denied`` (not executable, not a regular
    file), ``directory``, or ``unknown`` (below a volume: only the running container can tell)."""

    state: str
    path: str  # inside the container, symlinks resolved where they could be
    detail: str = ""


def env_path(env: Sequence[str], default: str = DEFAULT_PATH) -> str:
    """The PATH a payload with environment ``env`` (KEY=VALUE, later ones win) searches."""
    path = default
    for e in env:
        key, sep, value = e.partition("=")
        if sep and key == "PATH":
            path = value
    return path


def _below(path: str, mounts: Sequence[str]) -> bool:
    norm = posixpath.normpath(path)
    return any(norm == m or norm.startswith(m.rstrip("/") + "/") for m in map(posixpath.normpath, mounts))


def _probe(root_fd: int, path: str, mounts: Sequence[str], depth: int = 0) -> Found:
    if _below(path, mounts):
        return Found("unknown", path)
    try:
        comps = rootpath.resolve(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return Found("missing", path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Found("missing", path, "too many levels of symbolic links")
        raise
    shown = rootpath.show(comps)
    if _below(shown, mounts):
        return Found("unknown", shown)
    st = rootpath.lstat(root_fd, comps)
    if st is None:
        return Found("missing", shown)
    if stat.S_ISDIR(st.st_mode):
        return Found("directory", shown)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return Found("denied", shown)
    interpreter = _interpreter(root_fd, comps)
    if interpreter and depth < 4:  # the kernel follows at most 4 levels of #!
        inner = _probe(root_fd, interpreter, mounts, depth + 1)
        if inner.state == "missing":
            return Found("missing", shown, f"its interpreter {interpreter} is missing")
        if inner.state in ("denied", "directory"):
            return Found("denied", shown, f"its interpreter {interpreter} cannot be executed")
    return Found("ok", shown)


def _interpreter(root_fd: int, comps: rootpath.Comps) -> str | None:
    """The program of a script's ``#!`` line (absolute, as the kernel wants it), else None."""
    try:
        dir_fd = rootpath.open_dir(root_fd, comps[:-1])
    except OSError:
        return None
    try:
        fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    try:
        head = os.read(fd, _SHEBANG_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or not words[0].startswith(b"/"):
        return None
    return os.fsdecode(words[0])


def find_command(
    root_fd: int, command: str, path: str, workdir: str = "/", mounts: Sequence[str] = ()
) -> Found:
    """Where ``command`` would be executed from inside the root (``root_fd``), as execvpe finds it:
    the first executable candidate, else the first one that exists but cannot be executed, else
    the last missing one."""
    workdir = workdir or "/"
    if "/" in command:
        return _probe(root_fd, posixpath.join("/", workdir, command), mounts)
    first_denied: Found | None = None
    missing = Found("missing", command)
    for d in path.split(":"):
        found = _probe(root_fd, posixpath.join("/", workdir, d or ".", command), mounts)
        if found.state in ("ok", "unknown"):
            return found
        if found.state in ("denied", "directory"):
            first_denied = first_denied or found
        elif found.detail:
            missing = found
    return first_denied or missing


def check_command(
    root: str | os.PathLike[str] | int,
    command: str,
    *,
    path: str,
    workdir: str | None,
    mounts: Sequence[str] = (),
    container: str,
) -> None:
    """Raise CommandNotFound (127) or CommandNotExecutable (126) when ``command`` could not be
    executed in the container whose root is ``root`` (a directory, or an fd of one)."""
    root_fd = root if isinstance(root, int) else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        found = find_command(root_fd, command, path, workdir or "/", mounts)
    finally:
        if not isinstance(root, int):
            os.close(root_fd)
    what = f'container {container}: exec: "{command}"'
    if found.state == "missing" and "/" not in command and not found.detail:
        raise CommandNotFound(
            f"{what}: executable file not found in $PATH",
            hint=f"no {command} in the container's $PATH ({path}); check the name, or give its full path",
        )
    if found.state == "missing":
        raise CommandNotFound(
            f"{what}: no such file or directory" + (f" ({found.detail})" if found.detail else ""),
            hint=f"there is no {found.path} in the container; check the path"
            if not found.detail
            else "install the interpreter in the image, or run the script through one it has",
        )
    if found.state == "directory":
        raise CommandNotExecutable(
            f"{what}: permission denied ({found.path} is a directory)",
            hint="give the program to run, not a directory",
        )
    if found.state == "denied":
        raise CommandNotExecutable(
            f"{what}: permission denied (" + (found.detail or f"{found.path} is not executable") + ")",
            hint=f"make it executable (chmod +x), or run it through its interpreter, e.g. sh {found.path}",
        )


def exec_failure(lines: Sequence[bytes]) -> int | None:
    """127 or 126 when a payload's whole output is systemd-nspawn's report that it could not
    execute the command (``execv(CMD) failed: ERROR``): the command went missing after
    :func:`check_command` looked, or failed in a way it cannot see (a missing ELF interpreter)."""
    if len(lines) != 1:
        return None
    m = _EXEC_FAILED.fullmatch(lines[0].rstrip(b"\n"))
    if m is None:
        return None
    return 127 if m.group(2) == os.strerror(errno.ENOENT).encode() else 126
