"""The three steps every container unit runs: ``python3 -m nspawnctl.run.hook pre|exec|post NAME``.

Both kinds of unit use them: the transient ``nspawnctl-NAME.service`` (ExecStartPre/ExecStopPost; it
builds the nspawn command line in-process) and systemd's own ``systemd-nspawn@NAME.service`` with
nspawnctl's drop-in (all three), so a container started by ``machinectl start`` or at boot gets the
same network, port checks and exit record as one started by nspawnctl.

- pre: clear what a killed nspawn left behind, forget the last exit, check the published ports
  and build the container's network namespace (veth, zone).
- exec: replace this process with ``[nsenter --net=NETNS] systemd-nspawn ...`` (same PID, so the
  unit's Type=notify still reaches nspawn).
- post: record how the payload ended (systemd forgets it once the unit is collected), tear the
  network down, remove ``--rm`` containers.

Kept import-light: it runs on every start and stop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Paths

if TYPE_CHECKING:
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


def nspawn_binary() -> str:
    path = shutil.which("systemd-nspawn", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        from ..errors import CommandFailed

        raise CommandFailed("systemd-nspawn is not installed", hint="install systemd-container")
    return path


def nsenter_binary() -> str:
    return shutil.which("nsenter", path="/usr/bin:/bin:/usr/sbin:/sbin") or "/usr/bin/nsenter"


def clear_stale_mounts(name: str) -> None:
    """Remove what a killed systemd-nspawn (>= 256) leaves behind and would refuse to start over."""
    export = Path("/run/systemd/nspawn/unix-export") / name
    if export.exists():
        subprocess.run(["umount", "--lazy", str(export)], capture_output=True, check=False)
        try:
            export.rmdir()
        except OSError:
            pass


def default_launch(spec: ContainerSpec, **kw: object) -> Launch:
    """How a container is started when nobody is attached: output to the journal, a booted init's
    console read-only; inside our own network namespace when the container has one."""
    from ..spec import owns_netns
    from .units import Launch

    netns = None
    if owns_netns(spec.network):
        from .. import net

        netns = str(net.netns_path(spec.name))
    fields: dict[str, object] = {
        "nspawn": nspawn_binary(),
        "console": "read-only" if spec.boot else "pipe",
        "unified_cgroup": host_is_unified(),
        "netns": netns,
        "nsenter": nsenter_binary(),
    }
    fields.update(kw)
    return Launch(**fields)  # type: ignore[arg-type]


# -- the steps ---------------------------------------------------------------------------------
def exit_code_from_env(env: dict[str, str]) -> int:
    """Docker's convention: the payload's status, or 128+N when it died of signal N."""
    how, status = env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")
    if how == "exited":
        return int(status) if status.isdigit() else 1
    if how in ("killed", "dumped"):
        try:
            return 128 + int(signal.Signals[f"SIG{status}"])
        except KeyError:
            return 137
    return 0 if env.get("SERVICE_RESULT", "success") == "success" else 1


def _store(paths: Paths):  # type: ignore[no-untyped-def]
    from ..store.containers import ContainerStore
    from ..store.pool import Pool

    return ContainerStore(Pool(paths))


def pre(paths: Paths, name: str, unit: str | None) -> None:
    from .units import needs_pre, unit_name

    clear_stale_mounts(name)
    store = _store(paths)
    store.clear_exit(name)
    spec = store.get(name)
    if needs_pre(spec):
        from .. import net

        net.check_ports(paths, spec)
        net.up(paths, spec, unit or unit_name(name))


def exec_(paths: Paths, name: str) -> None:
    from .units import exec_argv

    spec = _store(paths).get(name)
    launch = default_launch(spec)
    argv = exec_argv(spec, paths.pool, launch)
    if launch.unified_cgroup:
        os.environ.setdefault("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
    sys.stdout.flush()
    os.execv(argv[0], [argv[0].rsplit("/", 1)[-1], *argv[1:]])


def post(paths: Paths, name: str, remove: bool) -> int:
    from ..store.containers import ExitRecord

    store = _store(paths)
    status = 0
    if not remove:
        env = dict(os.environ)
        store.record_exit(
            name,
            ExitRecord(
                exit_code=exit_code_from_env(env),
                result=env.get("SERVICE_RESULT", ""),
                finished=datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
    try:
        from .. import net

        net.down(paths, name)
    except Exception as e:  # the exit record and --rm removal must happen all the same
        log_error(f"container {name}: tearing down its network failed: {e}")
        status = 1
    if remove:
        store.remove(name)
    return status


def log_error(message: str) -> None:
    """An error for ``journalctl -u`` and nspawnctl's start errors (native journal protocol, priority
    err); not on stdout/stderr, which the unit sends to the container's own log."""
    data = f"MESSAGE={message}\nPRIORITY=3\nSYSLOG_IDENTIFIER=nspawnctl\n".encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(data, "/run/systemd/journal/socket")
    except OSError:
        sys.stderr.write(f"nspawnctl: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nspawnctl-hook")
    ap.add_argument("step", choices=("pre", "exec", "post"))
    ap.add_argument("name")
    ap.add_argument("--pool")
    ap.add_argument("--store")
    ap.add_argument("--unit", help="the unit running this step (pre)")
    ap.add_argument("--remove", action="store_true", help="remove the container (post, --rm)")
    args = ap.parse_args(argv)
    paths = Paths.from_env(args.pool, args.store)
    from ..errors import NspawnctlError

    try:
        if args.step == "pre":
            pre(paths, args.name, args.unit)
            return 0
        if args.step == "exec":
            exec_(paths, args.name)
        return post(paths, args.name, args.remove)
    except NspawnctlError as e:
        log_error(e.message)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
