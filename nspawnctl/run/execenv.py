"""Run a command in a running container under the payload's own confinement (``exec``).

``nsenter --all`` enters the namespaces of the container's PID 1 but keeps the caller's
capabilities, limits and cgroup: a container started with ``--cap-drop``, ``--ulimit`` or
``--security-opt no-new-privileges`` got a fully privileged, unlimited ``exec`` that ``stop``
did not reach. docker's exec inherits all of these from the container; so does this one. Like
nsenter it opens the namespaces of the leader (machined's Leader, the container's PID 1), but
copies the leader's state before executing the command:

- the cgroup: the helper first moves itself into the leader's cgroup (each hierarchy the leader's
  differs in; the unified one or ``name=systemd`` must succeed), so the unit's MemoryMax=/
  TasksMax= bind the command and stopping the unit ends it (runc's exec joins the init's cgroup
  the same way). It moves before entering the cgroup namespace: a move must see both cgroups;
- the rlimits (``prlimit`` of the leader: nspawn's ``LimitNOFILE=`` and friends);
- the capability bounding set (``CapBnd``: nspawn's default set, ``Capability=``,
  ``DropCapability=``) and the inheritable set; root then gets the bounding set as its effective
  capabilities when the command is executed, another user none (the kernel clears them on setuid),
  as docker's exec;
- ``NoNewPrivs`` (``NoNewPrivileges=``).

Ambient capabilities are not copied (nspawnctl sets none; nspawn's ``AmbientCapability=``), nor the
payload's seccomp filter (a filter cannot be read back without ptrace). setpriv(1) cannot do the
capability part: it would have to run after the chroot, from the container's own files.

Standard library only, no package imports: callers run this file directly (``python3 -I -S
execenv.py --target PID [--wd DIR] [--user UID:GID] -- COMMAND...``), as ``nsenter`` before it.
Exit codes: the command's (a signal's death is passed on), 127/126 when it cannot be executed or
the working directory is missing (as docker), 125 when the container cannot be entered.
"""

import _signal as signal  # the C module: signal.py loads enum, half of this helper's start
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ctypes

NAMESPACES = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")  # nsenter's order
CAPSET_VERSION_3 = 0x20080522
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SETNS_TIMEOUT = 5.0  # seconds the leader may take to finish its own setup after machined knows it
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV_PREFIX = "NSPAWNCTL_EXEC_ENV_"  # the command's variables, as the helper's environment holds them
LAST_CAP = "cap_last_cap"  # kept with the leader's status fields (no such field there)
STRICT_HIERARCHIES = ("", "name=systemd")  # the ones systemd tracks a unit's processes by


class Failure(Exception):
    """The container cannot be entered as asked: a message and the exit code."""

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.code = code


# -- pure parts (unit-tested) -------------------------------------------------------------------
def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status as a dict of its fields (``CapBnd`` -> ``000001ffffffffff``)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def helper_env(command_env: dict[str, str]) -> dict[str, str]:
    """The helper's own environment, carrying ``command_env`` (the container's variables: the
    image's Env, ``-e``) under a prefix. The helper runs as root on the host until it has entered
    the container: a variable under its own name there would reach the host's dynamic loader
    (``LD_PRELOAD``, ``LD_LIBRARY_PATH`` naming a file in a container's root), libc (``LOCPATH``,
    ``GCONV_PATH``) and Python (``-I`` ignores only ``PYTHON*``) before any namespace is entered."""
    return {ENV_PREFIX + k: v for k, v in command_env.items()}


def command_env(helper: dict[str, str]) -> dict[str, str]:
    """The command's environment from the helper's (``helper_env``); nothing else of it."""
    n = len(ENV_PREFIX)
    return {k[n:]: v for k, v in helper.items() if k.startswith(ENV_PREFIX) and len(k) > n}


def caps_to_drop(bounding: int, last_cap: int) -> list[int]:
    """The capability numbers (0 .. ``last_cap``) outside ``bounding``, to drop from ours."""
    return [c for c in range(last_cap + 1) if not bounding >> c & 1]


def parse_cgroups(text: str) -> dict[str, str]:
    """/proc/PID/cgroup as {hierarchy's controllers: path}; ``""`` is the unified (v2) one."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def cgroup_moves(
    leader: dict[str, str], own: dict[str, str], unified_root: str
) -> list[tuple[str, str, bool]]:
    """(hierarchy's mount point, cgroup.procs file, must succeed) for each hierarchy in which the
    leader's cgroup is not ours. v1 hierarchies are mounted by systemd at
    /sys/fs/cgroup/CONTROLLERS (``name=`` off); one the host has not mounted is not the host's
    (the kernel lists ``name=systemd`` on a unified host booted inside a hybrid one)."""
    moves = []
    for controllers, path in leader.items():
        if own.get(controllers) == path:
            continue
        base = unified_root if controllers == "" else "/sys/fs/cgroup/" + controllers.removeprefix("name=")
        procs = base.rstrip("/") + path.rstrip("/") + "/cgroup.procs"
        moves.append((base, procs, controllers in STRICT_HIERARCHIES))
    return moves


def is_frozen(events: str) -> bool:
    """cgroup v2's cgroup.events says the cgroup is frozen (its unit's, by ``pause``, included)."""
    return "frozen 1" in events.splitlines()


def parse_args(args: list[str]) -> tuple[int, str | None, int | None, int | None, list[str]]:
    """(leader, workdir, uid, gid, command) of ``--target PID [--wd DIR] [--user UID:GID] -- CMD``."""
    target, wd, uid, gid = None, None, None, None
    i = 0
    while i < len(args) and args[i] != "--":
        if i + 1 >= len(args):
            raise Failure(f"usage: option {args[i]} needs a value", 2)
        key, value = args[i], args[i + 1]
        if key == "--target" and value.isdigit():
            target = int(value)
        elif key == "--wd":
            wd = value
        elif key == "--user":
            u, _, g = value.partition(":")
            if not (u.isdigit() and g.isdigit()):
                raise Failure(f"usage: --user {value!r} is not UID:GID", 2)
            uid, gid = int(u), int(g)
        else:
            raise Failure(f"usage: unknown option {key} {value}", 2)
        i += 2
    command = args[i + 1 :]
    if target is None or not command:
        raise Failure("usage: execenv.py --target PID [--wd DIR] [--user UID:GID] -- COMMAND...", 2)
    return target, wd, uid, gid, command


def argv(
    python: str, leader: int, command: list[str], workdir: str | None, uid: int | None, gid: int | None
) -> list[str]:
    """The host command line that runs ``command`` in the container of ``leader``."""
    out = [python, "-I", "-S", __file__, "--target", str(leader)]
    if workdir:
        out += ["--wd", workdir]
    if uid is not None:
        out += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    return [*out, "--", *command]


# -- effects ------------------------------------------------------------------------------------
def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_or_empty(path: str) -> str:
    try:
        return _read(path)
    except OSError:
        return ""


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def setting_up(pid: int) -> bool:
    """Whether nspawn is still setting ``pid`` (a container's leader) up. machined learns the
    leader before nspawn's child drops its capabilities and executes the payload; until then the
    leader still runs nspawn's own binary (its parent's) and has no child. nspawn's stub init
    (``--as-pid2``) runs that binary for good, but only after the setup, with the payload as its
    child. A leader gone or unreadable is not being set up."""
    parent = parse_status(_read_or_empty(f"/proc/{pid}/status")).get("PPid", "0")
    if not _same_file(f"/proc/{pid}/exe", f"/proc/{parent}/exe"):
        return False
    try:
        return not _read(f"/proc/{pid}/task/{pid}/children").strip()
    except OSError:
        return False  # no children file (CONFIG_PROC_CHILDREN): take it as it is


def _settled(pid: int) -> dict[str, str]:
    """The leader's status once nspawn's setup of it is done (``setting_up``), or after
    ``SETNS_TIMEOUT``."""
    import time

    deadline = time.monotonic() + SETNS_TIMEOUT
    while setting_up(pid) and time.monotonic() <= deadline:
        time.sleep(0.005)
    return parse_status(_read(f"/proc/{pid}/status"))


def _libc() -> "ctypes.CDLL":
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise Failure(f"cannot {what}: {os.strerror(err)}")


def _setns(libc: "ctypes.CDLL", fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, 0)
    elif libc.setns(fd, 0) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _set_inheritable_caps(libc: "ctypes.CDLL", caps: int) -> None:
    """capset(2) with the inheritable set ``caps`` (what we may hold of it), the rest unchanged."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(CAPSET_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # [effective, permitted, inheritable] x 2 (low, high 32 bits)
    _check(libc.capget(header, data), "read the capabilities")
    permitted = data[1] | data[4] << 32
    caps &= permitted
    data[2], data[5] = caps & 0xFFFFFFFF, caps >> 32
    _check(libc.capset(header, data), "set the inheritable capabilities")


def _join_cgroups(leader_cgroups: str) -> None:
    """Move this process into the cgroups of the leader (its /proc/PID/cgroup, read before the
    pidfd check that the PID is still the leader's)."""
    unified = (
        "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/unified"
    )
    cgroups = parse_cgroups(leader_cgroups)
    if "" in cgroups and is_frozen(_read_or_empty(f"{unified}{cgroups['']}/cgroup.events")):
        # joining a frozen cgroup would freeze this helper: docker's exec refuses a paused container
        raise Failure("the container is paused: unpause it before exec", 125)
    moves = cgroup_moves(cgroups, parse_cgroups(_read("/proc/self/cgroup")), unified)
    for base, procs, strict in moves:
        if not os.path.isdir(base):
            continue
        try:
            with open(procs, "w") as f:
                f.write("0")
        except OSError as e:
            if strict:
                raise Failure(f"cannot join the container's cgroup ({procs}): {e.strerror}") from None


def _enter(leader: int, wd: str | None) -> tuple[dict[str, str], list[tuple[int, tuple[int, int]]], bool]:
    """Everything up to the fork: cgroup, namespaces, root and working directory. Returns the
    leader's status and rlimits (applied in the child: the helper's own stay usable) and whether
    a user namespace was entered."""
    import resource

    pidfd = os.pidfd_open(leader)
    status = _settled(leader)
    status[LAST_CAP] = _read("/proc/sys/kernel/cap_last_cap").strip()  # the host's, before the chroot
    limits = []
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            res = getattr(resource, name)
            try:
                limits.append((res, resource.prlimit(leader, res)))
            except (OSError, ValueError):
                pass
    fds = []
    has_user = False
    for ns in NAMESPACES:
        try:
            if _same_file(f"/proc/{leader}/ns/{ns}", f"/proc/self/ns/{ns}"):
                continue
            fds.append(os.open(f"/proc/{leader}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
            has_user = has_user or ns == "user"
        except FileNotFoundError:  # a namespace type this kernel does not have
            continue
    root = os.open(f"/proc/{leader}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cwd = None if wd else os.open(f"/proc/{leader}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroups = _read(f"/proc/{leader}/cgroup")
    signal.pidfd_send_signal(pidfd, 0)  # still the same process: what was read and opened is its
    os.close(pidfd)
    _join_cgroups(cgroups)
    libc = _libc()
    # as nsenter: the user namespace last (its owner's rights are needed for the others: the
    # network namespace nspawnctl makes belongs to the host's), then what failed before it again
    left = [*fds[1:], fds[0]] if has_user else fds
    for _ in range(2):
        failed = []
        for fd in left:
            try:
                _setns(libc, fd)
                os.close(fd)
            except OSError:
                failed.append(fd)
        left = failed
    if left:
        raise Failure(f"cannot enter the namespaces of the container's PID 1 ({leader})")
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    if cwd is not None:
        os.fchdir(cwd)
        os.close(cwd)
    else:
        try:
            os.chdir(wd)  # type: ignore[arg-type]
        except OSError as e:
            raise Failure(
                f"cannot change to the working directory {wd} in the container: {e.strerror}", 126
            ) from None
    return status, limits, has_user


def _confine(
    status: dict[str, str],
    limits: list[tuple[int, tuple[int, int]]],
    uid: int | None,
    gid: int | None,
    entered_user: bool,
) -> None:
    """In the child, just before the command: the leader's limits, capabilities and NoNewPrivs."""
    import resource

    libc = _libc()
    for res, value in limits:
        try:
            resource.setrlimit(res, value)
        except (OSError, ValueError):
            pass
    for cap in caps_to_drop(int(status.get("CapBnd", "0"), 16), int(status[LAST_CAP])):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _set_inheritable_caps(libc, int(status.get("CapInh", "0"), 16))
    if uid is not None or entered_user:  # as nsenter: root of the user namespace entered
        os.setgroups([])
        os.setgid(gid if gid is not None else uid or 0)
        os.setuid(uid or 0)
    if status.get("NoNewPrivs", "0") == "1":
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no-new-privileges")


def _wait(child: int) -> int:
    """As nsenter's parent: follow the child's stops, end as it ended."""
    while True:
        _, status = os.waitpid(child, os.WUNTRACED)
        if os.WIFSTOPPED(status):
            os.kill(os.getpid(), signal.SIGSTOP)
            os.kill(child, signal.SIGCONT)
            continue
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return 128 + sig  # a signal whose default is to be ignored
        return os.WEXITSTATUS(status)


def candidates(program: str, path: str) -> list[str]:
    """Where execvp(3) looks for ``program``: itself when it has a slash, else each $PATH entry."""
    if "/" in program:
        return [program]
    return [f"{d or '.'}/{program}" for d in path.split(":")]


def execute(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """execvpe(3) after the chroot, with the command's own environment: os.execvpe would import
    modules, which are not in the container. Returns (exit code, why) when nothing could be
    executed: 127 when not found, 126 when found but not executable (a shell's and docker's
    codes)."""
    denied = None
    for file in candidates(command[0], env.get("PATH", DEFAULT_PATH)):
        try:
            os.execve(file, command, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            denied = denied or e
    if denied is not None:
        return 126, denied.strerror or str(denied)
    return 127, "No such file or directory"


def main(args: list[str]) -> int:

    # Python ignores SIGPIPE and SIGXFSZ and handles SIGINT itself; the command gets the defaults
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    try:
        leader, wd, uid, gid, command = parse_args(args)
        env = command_env(dict(os.environ))
        status, limits, entered_user = _enter(leader, wd)
        child = os.fork()
        if child:
            return _wait(child)
        _confine(status, limits, uid, gid, entered_user)
    except Failure as e:
        sys.stderr.write(f"nspawnctl: error: {e}\n")
        return e.code
    except OSError as e:  # the leader is gone, or a file of it
        sys.stderr.write(f"nspawnctl: error: cannot enter the container: {e}\n")
        return 125
    code, why = execute(command, env)
    sys.stderr.write(f"nspawnctl: error: failed to execute {command[0]}: {why}\n")
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
