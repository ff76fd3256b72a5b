"""The three steps every container unit runs: ``python3 -m nspawnctl.run.hook pre|exec|post NAME``.

Both kinds of unit use them: the transient ``nspawnctl-NAME.service`` (ExecStartPre/ExecStopPost; it
builds the nspawn command line in-process) and systemd's own ``systemd-nspawn@NAME.service`` with
nspawnctl's drop-in (all three), so a container started by ``machinectl start`` or at boot gets the
same network, port checks and exit record as one started by nspawnctl.

- pre: refuse when the container runs already (under the other kind of unit: touching anything
  then would break the running one), clear what a killed nspawn left behind, forget the last
  exit, build the container's network namespace (veth, zone; ``net.up`` checks the ports).
- exec: give the payload's stdout and stderr a journal stream each (run/streams.py), then replace
  this process with ``[nsenter --net=NETNS] systemd-nspawn ...`` (same PID, so the unit's
  Type=notify still reaches nspawn).
- post: record how the payload ended (systemd forgets it once the unit is collected), tear this
  run's network down, remove ``--rm`` containers. A run whose payload never started (pre failed
  or refused: systemd then sets no $EXIT_CODE) records no exit.

Kept import-light: it runs on every start and stop. The post step loads no store, spec or image
code unless it removes the container, reads the journal only for an exit of 1, and spawns no
process of its own (the network teardown is net.down's).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..config import Paths
from ..errors import ContainerRunning

TYPE_CHECKING = False  # typing's costs an import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..spec import ContainerSpec
    from .units import Launch

MODULE = "nspawnctl.run.hook"
_PATH_VARS = (
    ("NSPAWNCTL_POOL", "pool"),
    ("NSPAWNCTL_STORE", "store"),
    ("NSPAWNCTL_SETTINGS_DIR", "settings"),
    ("NSPAWNCTL_RUNTIME_SETTINGS_DIR", "runtime_settings"),
)


def hook_argv(step: str, name: str, unit: str | None = None, remove: bool = False) -> tuple[str, ...]:
    """The command line of one step, as a unit's Exec*= runs it (paths travel in its Environment=)."""
    argv = [sys.executable, "-m", MODULE, step]
    if unit:
        argv += ["--unit", unit]
    if remove:
        argv.append("--remove")
    return (*argv, name)


def paths_environment(paths: Paths) -> list[str]:
    """NAME=VALUE for every nspawnctl path that is not the default, so the hook finds the container."""
    defaults = Paths()
    return [
        f"{var}={getattr(paths, attr)}"
        for var, attr in _PATH_VARS
        if getattr(paths, attr) != getattr(defaults, attr)
    ]


# -- host facts --------------------------------------------------------------------------------
def host_is_unified() -> bool:
    """True when /sys/fs/cgroup is cgroup v2 (then app payloads should get v2 too)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(
                line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == "/sys/fs/cgroup"
                for line in f
                if " - " in line
            )
    except OSError:
        return False


def clear_stale_mounts(name: str) -> None:
    """Remove what a killed systemd-nspawn (>= 256) leaves behind and would refuse to start over."""
    import subprocess
    from pathlib import Path

    export = Path("/run/systemd/nspawn/unix-export") / name
    if export.exists():
        subprocess.run(["umount", "--lazy", str(export)], capture_output=True, check=False)
        try:
            export.rmdir()
        except OSError:
            pass


def staged_sources(paths: Paths, spec: ContainerSpec) -> tuple[tuple[str, str], ...]:
    """Launch.staged: the stages of the container's volume-subpath binds (run/subpaths.py), which
    every start passes to nspawn in place of their paths; () without such a bind (cheap)."""
    from ..store.subpath import may_be_subpath

    if not any(may_be_subpath(v.host) for v in spec.volumes):
        return ()
    from .subpaths import staged_sources as sources

    return sources(paths.store / "volumes", spec)


def default_launch(spec: ContainerSpec, **kw: object) -> Launch:
    """How a container is started when nobody is attached: output to the journal; inside our own
    network namespace when the container has one. A booted init, and a payload created with
    ``-t``, get a terminal of nspawn's (``--console=read-only``): a pty as /dev/console and as
    stdin, stdout and stderr, whose output nspawn copies to its stdout (the journal) and which
    gets no input, as docker's ``run -dt``/``-dit``: a shell on it waits, ``exec`` reaches it.
    Every start without a caller's terminal comes here (``start``, ``restart``, ``apply``, the
    hook's ExecStart of systemd-nspawn@NAME), so all of them give the same console."""
    from ..spec import owns_netns
    from .programs import nsenter_binary, nspawn_binary
    from .units import Launch

    netns = None
    if owns_netns(spec.network):
        from .. import net

        netns = str(net.netns_path(spec.name))
    ipcns = None
    from . import ipcns as ipc

    if ipc.needed(spec.settings.sysctls):
        ipcns = ipc.path(spec.name)
    fields: dict[str, object] = {
        "ipcns": ipcns,
        "nspawn": nspawn_binary(),
        "console": "read-only" if spec.boot or spec.tty else "pipe",
        "unified_cgroup": host_is_unified(),
        "netns": netns,
        "nsenter": nsenter_binary(),
    }
    if spec.settings.privileged:  # docker's: the host's device nodes as they are at this start
        from .hostdevices import host_devices

        fields["devices"] = tuple(host_devices())
    fields.update(kw)
    return Launch(**fields)  # type: ignore[arg-type]


# -- the steps ---------------------------------------------------------------------------------
def exit_code_from_env(env: Mapping[str, str]) -> int:
    """Docker's convention: the payload's status, or 128+N when it died of signal N."""
    how, status = env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")
    if how == "exited":
        return int(status) if status.isdigit() else 1
    if how in ("killed", "dumped"):
        import signal

        try:
            return 128 + int(signal.Signals[f"SIG{status}"])
        except KeyError:
            return 137
    return 0 if env.get("SERVICE_RESULT", "success") == "success" else 1


def _store(paths: Paths):  # type: ignore[no-untyped-def]
    from ..store.containers import ContainerStore
    from ..store.pool import Pool

    return ContainerStore(Pool(paths))


def other_unit(name: str, unit: str) -> str:
    """The unit of the other kind: the transient one for systemd-nspawn@NAME.service and back."""
    from .units import persistent_unit_name, unit_name

    return unit_name(name) if unit == persistent_unit_name(name) else persistent_unit_name(name)


CGROUP_ROOTS = ("/sys/fs/cgroup/machine.slice", "/sys/fs/cgroup/systemd/machine.slice")
"""Where a container unit's cgroup is (Slice=machine.slice; unified, then the legacy hierarchy)."""
MACHINES_DIR = "/run/systemd/machines"
"""machined's record of each registered machine (only whether it exists is looked at)."""


def surely_alone(name: str, unit: str) -> bool:
    """The cheap answer of :func:`running_elsewhere` for the transient unit, without D-Bus: the
    command that started it (client ``astart``) asked systemd a moment ago whether the other kind
    of unit is up (also waiting to restart); here the other unit has no cgroup (no process of it
    lives: not starting, running or stopping) and machined has no such machine. Anything else
    goes to the full check."""
    from .units import unit_name

    if unit != unit_name(name):
        return False  # machinectl start, boot: nobody asked before
    other = other_unit(name, unit)
    return not any(os.path.exists(f"{root}/{other}") for root in CGROUP_ROOTS) and not os.path.exists(
        f"{MACHINES_DIR}/{name}"
    )


def running_elsewhere(name: str, unit: str) -> str | None:
    """The unit that runs container ``name`` already, if it is not ``unit``: the other kind of
    unit while it is up (also starting, stopping or waiting to restart), or whatever unit
    machined has the machine registered under. One D-Bus connection, unless
    :func:`surely_alone` says so from the file system; None when neither."""
    if surely_alone(name, unit):
        return None
    from ..systemd.bus import Bus, BusError, run_sync
    from ..systemd.machined import MACHINE_IFACE, MACHINED
    from ..systemd.machined import MANAGER as MACHINED_MANAGER
    from ..systemd.manager import Manager

    other = other_unit(name, unit)

    async def go(bus: Bus) -> str | None:
        state = (await Manager(bus).states([other])).get(other)
        if state is not None and state.running:
            return other
        try:
            (path,) = await bus.call(*MACHINED_MANAGER, "GetMachine", "s", [name])
            owner = str(await bus.get_property(MACHINED, path, MACHINE_IFACE, "Unit"))
            machine_state = str(await bus.get_property(MACHINED, path, MACHINE_IFACE, "State"))
        except BusError:
            return None  # not registered (or machined is not running: nspawn will say so)
        if not owner or owner == unit or machine_state == "closing":
            return None
        # machined drops a SIGKILLed machine asynchronously, after systemd reports its unit
        # inactive: only a unit that is really up still owns the container.
        owner_state = (await Manager(bus).states([owner])).get(owner)
        if owner_state is None or owner_state.active_state not in ("active", "activating", "reloading"):
            return None
        return owner

    result: str | None = run_sync(go)
    return result


def own_unit() -> str | None:
    """The service this process runs in, from its cgroup (``.../NAME.service[/.control]``): for
    units whose command line does not say (``--unit``), as older drop-ins and poststop."""
    try:
        with open("/proc/self/cgroup") as f:
            path = f.read().strip().splitlines()[-1].partition("::")[2]
    except (OSError, IndexError):
        return None
    units = [part for part in path.split("/") if part.endswith(".service")]
    return units[-1] if units else None


class Refused(ContainerRunning):
    """pre: the container runs under another unit already."""


def _give_up(unit: str) -> None:
    """Queue a stop of our own unit: a failed ExecStartPre would otherwise be retried by its
    Restart= policy (with backoff, forever), and would start the container under this unit as
    soon as the other one stops. systemd does not restart a unit with a stop job queued; the
    SIGTERM that job sends us is ignored, we are about to exit anyway."""
    import signal

    from ..systemd.bus import Bus, run_sync
    from ..systemd.manager import Manager

    async def go(bus: Bus) -> None:
        await Manager(bus).queue_stop(unit)

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        run_sync(go)
    except Exception:  # best effort: the refusal itself is said already
        pass


def pre(paths: Paths, name: str, unit: str) -> None:
    from .units import needs_pre

    elsewhere = running_elsewhere(name, unit)
    if elsewhere is not None:
        raise Refused(
            f"container {name} is already running under {elsewhere}; not starting it again under {unit}",
            hint=f"stop it first: systemctl stop {elsewhere}",
        )
    clear_stale_mounts(name)
    store = _store(paths)
    store.clear_exit(name)
    with store.locked(name):  # a rewrite by a connect that saw no job yet (machinectl start) ends first
        spec = store.get(name)
    if needs_pre(spec):
        from ..store.subpath import may_be_subpath

        if any(may_be_subpath(v.host) for v in spec.volumes):  # bound from an fd (run/subpaths.py)
            from . import subpaths

            subpaths.stage(paths.store / "volumes", spec)
        from .. import net

        net.up(paths, spec, unit)  # checks the published ports first
        netsysctls = tuple((k, v) for k, v in spec.settings.sysctls if k.startswith("net."))
        if netsysctls:  # --sysctl net.*: in the namespace just built (runopts.py)
            from ..runopts import apply_sysctls

            apply_sysctls(str(net.netns_path(spec.name)), netsysctls)
        from . import ipcns

        if ipcns.needed(spec.settings.sysctls):  # the IPC ones: a namespace nspawn keeps
            ipcns.create(spec.name, ipcns.ipc_sysctls(spec.settings.sysctls))
    arm_health(paths, spec, unit)


def arm_health(paths: Paths, spec: ContainerSpec, unit: str) -> None:
    """issue 14: start the container's health check timer (bound to ``unit``: it stops with it).
    A failure to arm it is logged, and the container starts all the same."""
    if spec.health is None:
        return
    from .. import health

    try:
        health.arm(paths, spec.name, spec.health, unit, paths_environment(paths))
    except Exception as e:
        log_error(f"container {spec.name}: cannot arm its health check: {e.__class__.__name__}: {e}")


def exec_(paths: Paths, name: str, unit: str) -> None:
    """Replace this process with nspawn, the payload's stdout and stderr on a journal stream
    each (run/streams.py; the transient unit runs that file in front of nspawn instead)."""
    from . import streams
    from .units import exec_argv

    spec = _store(paths).get(name)
    launch = default_launch(spec, staged=staged_sources(paths, spec))
    argv = exec_argv(spec, paths.pool, launch)
    if launch.unified_cgroup:
        os.environ.setdefault("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
    sys.stdout.flush()
    sys.stderr.flush()
    plain = streams.attach(spec.name, unit)
    try:
        os.execv(argv[0], [argv[0].rsplit("/", 1)[-1], *argv[1:]])
    except OSError as e:
        if not plain:
            raise
        # stderr is now a stream of its own at priority err, without level prefixes: no <3>
        log_error(f"container {name}: exec failed: {e.__class__.__name__}: {e}", level_prefix=False)
        raise SystemExit(1) from None


def post(paths: Paths, name: str, remove: bool, unit: str) -> int:
    """``$EXIT_CODE`` is set only when the payload (the unit's main process) ran: without it this
    run never started nspawn (pre failed or refused), so there is no exit to record, and when
    another unit runs the container meanwhile, nothing here is this run's to touch."""
    env = os.environ
    started = bool(env.get("EXIT_CODE"))
    if not started:
        elsewhere = running_elsewhere(name, unit)
        if elsewhere is not None:
            log_error(f"container {name} runs under {elsewhere}: leaving it alone", priority=6)
            return 0
    status = 0
    if started and not remove:
        from ..store import exits

        code = exit_code_from_env(env)
        if code == 1:  # nspawn's code when it could not execute the command: docker's 127/126?
            code = exec_failure_of(env.get("INVOCATION_ID")) or code
        exits.write(
            paths.state,
            name,
            exits.ExitRecord(exit_code=code, result=env.get("SERVICE_RESULT", ""), finished=utc_now()),
        )
    try:
        from .. import net

        # only what this run built: a network made by another run of the container stays
        net.down(paths, name, invocation=env.get("INVOCATION_ID") or None)
    except Exception as e:  # the exit record and --rm removal must happen all the same
        log_error(f"container {name}: tearing down its network failed: {e}")
        status = 1
    from . import ipcns

    if os.path.lexists(ipcns.path(name)):  # --sysctl's IPC namespace (see pre)
        try:
            ipcns.delete(name)
        except OSError as e:
            log_error(f"container {name}: unpinning its IPC namespace failed: {e}")
            status = 1
    from . import subpaths

    if os.path.lexists(subpaths.STAGE_ROOT / name):  # the volume-subpath stages (see pre)
        try:
            subpaths.unstage(name)
        except OSError as e:
            log_error(f"container {name}: unmounting its volume subpaths failed: {e}")
            status = 1
    if remove:
        store = _store(paths)
        with store.locked(name) as held:  # no start reads the definition while it goes (see Client.rm)
            store.remove(name, held=held)
    return status


def utc_now() -> str:
    """The time as ``datetime.now(UTC).isoformat(timespec="seconds")`` writes it, without datetime."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def exec_failure_of(invocation: str | None) -> int | None:
    """127/126 when this run's whole output is systemd-nspawn's ``execv(...) failed`` line (the
    command went missing after ``run``/``start`` looked, or lacks its ELF loader): what a detached
    run records, as a foreground one returns it (run/lookup.py exec_failure). None when the
    journal does not say so (yet): the exit stays nspawn's 1."""
    if not invocation:
        return None
    from ..errors import NspawnctlError
    from ..systemd import journal
    from .lookup import exec_failure

    try:
        journal.sync()
        entries = journal.read([f"_SYSTEMD_INVOCATION_ID={invocation}", "_TRANSPORT=stdout"], lines=3)
    except (NspawnctlError, OSError):
        return None
    return exec_failure([e.message for e in entries])


def log_error(message: str, priority: int = 3, level_prefix: bool = True) -> None:
    """A message for ``journalctl -u`` and nspawnctl's start errors, in two ways: on stderr with a
    ``<N>`` priority prefix (the unit's stderr is a journal stream, so the line carries the unit
    reliably: client._hook_errors reads these), and through the native journal protocol as
    SYSLOG_IDENTIFIER=nspawnctl (``journalctl -t nspawnctl``; journald may miss the unit of a
    process that has exited by the time it looks). One line, never a traceback."""
    message = " ".join(message.split("\n"))
    if not level_prefix:  # a stream of run/streams.py: its priority is the stream's own
        prefix = ""
    else:
        prefix = f"<{priority}>" if os.environ.get("JOURNAL_STREAM") else "nspawnctl: "
    try:
        sys.stderr.write(f"{prefix}{message}\n")
        sys.stderr.flush()
    except OSError:
        pass
    _journal_send(f"MESSAGE={message}\nPRIORITY={priority}\nSYSLOG_IDENTIFIER=nspawnctl\n".encode())


def _journal_send(data: bytes) -> None:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(data, "/run/systemd/journal/socket")
    except OSError:
        pass  # no journal: stderr has it


@dataclass(frozen=True)
class Args:
    """The hook's command line (see USAGE)."""

    step: str
    name: str
    pool: str | None = None
    store: str | None = None
    unit: str | None = None
    remove: bool = False


USAGE = "usage: nspawnctl-hook {pre,exec,post} [--pool DIR] [--store DIR] [--unit UNIT] [--remove] NAME"


def parse_args(argv: list[str]) -> Args:
    """The command line :func:`hook_argv` writes (argparse's forms: ``--opt V`` and ``--opt=V``);
    hand-parsed, as argparse costs more to import than this step may take. ValueError: bad."""
    opts: dict[str, str] = {}
    remove = False
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--remove":
            remove = True
        elif arg == "--":
            positional += args
            break
        elif arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if key not in ("pool", "store", "unit"):
                raise ValueError(f"unrecognized argument: {arg}")
            if not eq:
                if not args:
                    raise ValueError(f"argument --{key}: expected one argument")
                value = args.pop(0)
            opts[key] = value
        else:
            positional.append(arg)
    if len(positional) != 2 or positional[0] not in ("pre", "exec", "post"):
        raise ValueError("expected a step (pre, exec, post) and a container name")
    return Args(positional[0], positional[1], remove=remove, **opts)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        sys.stderr.write(f"{USAGE}\nnspawnctl-hook: error: {e}\n")
        return 2
    paths = Paths.from_env(args.pool, args.store)
    from ..errors import NspawnctlError

    unit = args.unit or own_unit() or ""
    try:
        if not unit:
            from .units import unit_name

            unit = unit_name(args.name)
        if args.step == "pre":
            pre(paths, args.name, unit)
            return 0
        if args.step == "exec":
            exec_(paths, args.name, unit)
        return post(paths, args.name, args.remove, unit)
    except NspawnctlError as e:
        log_error(e.message + (f"; {e.hint}" if e.hint else ""))
        if isinstance(e, Refused):
            _give_up(unit)
        return 1
    except Exception as e:  # an OSError of execv, a broken store record, ...: one line, no traceback
        log_error(f"container {args.name}: {args.step} failed: {e.__class__.__name__}: {e}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
