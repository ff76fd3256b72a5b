"""``top``: the container's processes, as docker shows them (``ps`` output, filtered).

The unit's cgroup (GetUnitProcesses) holds the container's processes and nspawn's own
(supervisor, the hook); those in the container's PID namespace (the leader's) are the container's.
As docker does, ``ps`` runs on the host with the caller's options and its rows are kept for those
PIDs; without ``ps`` installed, the default listing is read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import CommandFailed, ContainerNotRunning, InvalidArgument
from .payloadwait import payload_started
from .runtime import Runtime


@dataclass(frozen=True)
class Top:
    """docker's ContainerTopOKBody: the column titles and a row of strings per process."""

    titles: list[str]
    processes: list[list[str]]

    def to_json(self) -> dict[str, object]:
        return {"Titles": self.titles, "Processes": self.processes}


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


async def container_pids(rt: Runtime, name: str) -> list[int]:
    """PIDs (as the host sees them) of the running container's processes."""
    state = (await rt.states([name])).get(name)
    if state is None or not state.running:
        raise ContainerNotRunning(
            f"container {name} is not running", hint=f"start it first: nspawnctl start {name}"
        )
    leader = await rt.leader(name)
    # the unit is up before nspawn's child has exec'd the payload: docker's top right after
    # run -d shows the payload, not nspawn's command line
    await payload_started(leader)
    ns = _pid_ns(leader)
    (rows,) = await rt.manager.call("GetUnitProcesses", "s", [state.name])
    pids = {int(pid) for _cgroup, pid, _cmd in rows}
    pids.add(leader)
    return sorted(p for p in pids if ns is not None and _pid_ns(p) == ns)


def filter_ps(output: str, pids: list[int]) -> Top:
    """Keep the rows of ``ps`` output whose PID column is one of ``pids`` (pure)."""
    lines = output.splitlines()
    if not lines:
        raise CommandFailed("ps printed nothing")
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("the ps options give no PID column", hint="e.g. nspawnctl top NAME -ef, or aux")
    col = titles.index("PID")
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            rows.append(fields)
    return Top(titles, rows)


def _clock(ticks: int) -> str:
    seconds = ticks // os.sysconf("SC_CLK_TCK")
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def from_proc(pids: list[int]) -> Top:
    """UID PID PPID TIME CMD from /proc, where there is no ps."""
    rows = []
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmd = (
                open(f"/proc/{pid}/cmdline", "rb")
                .read()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue  # ended meanwhile
        rest = stat[stat.rindex(")") + 2 :].split()
        ppid, ticks = int(rest[1]), int(rest[11]) + int(rest[12])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rows.append([user, str(pid), str(ppid), _clock(ticks), cmd or f"[{comm}]"])
    return Top(["UID", "PID", "PPID", "TIME", "CMD"], rows)


async def top(rt: Runtime, name: str, ps_args: list[str] | None = None) -> Top:
    pids = await container_pids(rt, name)
    ps = shutil.which("ps")
    if ps is None:
        if ps_args:
            raise CommandFailed(
                "ps is not installed on this host", hint="install procps, or run top without ps options"
            )
        return from_proc(pids)
    proc = await asyncio.to_thread(
        subprocess.run, [ps, *(ps_args or ["-ef"])], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise InvalidArgument(f"ps {' '.join(ps_args or [])} failed: {proc.stderr.strip()}", hint="see ps(1)")
    return filter_ps(proc.stdout, pids)
