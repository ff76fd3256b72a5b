"""Issue 14's "generate of a container using them recreates it identically": two containers made
with docker's run options, then ``generate NAME > NAME.nspawn``, ``rm -f``, ``apply NAME.nspawn``;
the recreated container's ``inspect`` equals the first one's but for what a new container must
change, and what its payload sees from inside (mounts, sysctls, capabilities, seccomp, limits, the
bind's content) is the same as before and what the flags ask for.

What differs, and why:
- ``Id`` and ``Created``: a new container (docker gives a recreated container a new ID too; the
  generated file carries none, so it can also make a copy elsewhere).
- ``State.StartedAt``/``FinishedAt``: its own start.
- the veth's addresses (``NetworkSettings`` IPAddress/Gateway): systemd-networkd picks a subnet for
  each new link.
- ``Unit``: ``apply`` makes a declared container, run by systemd's own systemd-nspawn@NAME.service
  (so ``machinectl start`` works); ``run -d`` runs it in a transient nspawnctl-NAME.service.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

# What the payload reports about itself before it sleeps: one "key=value" line each.
PROBE = r"""s() { grep "^$1:" /proc/self/status | cut -f2; }
echo "caps=$(s CapEff)"
echo "nnp=$(s NoNewPrivs)"
echo "seccomp=$(s Seccomp_filters)"
echo "cpus=$(s Cpus_allowed_list)"
echo "pid=$$"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "nofile=$(ulimit -n):$(ulimit -Hn)"
for p in /tt /mt /dev/shm /scratch; do
  [ -d $p ] && echo "mnt $p=$(stat -c %a $p) $(grep " $p " /proc/self/mountinfo | tail -n 1 | sed 's/.*- //')"
done
for k in net/ipv4/ip_forward kernel/msgmax kernel/shmmax; do echo "sysctl $k=$(cat /proc/sys/$k)"; done
echo "bind=$(cat /ro/f)"
[ -d /vol ] && echo "volume=$(cat /vol/f)"
touch /ro/new 2>/dev/null && echo "ro=writable" || echo "ro=read-only"
[ -d /rw ] && { touch /rw/new && echo "rw=writable" || echo "rw=read-only"; }
touch /new 2>/dev/null && echo "root=writable" || echo "root=read-only"
[ -c /dev/mynull ] && echo "x" > /dev/mynull && echo "device=char, writable"
echo "hosts=$(grep -c '^10.1.2.3	foo$' /etc/hosts)"
echo "resolv=$(grep -E '^(nameserver|search)' /etc/resolv.conf | tr '\n' ' ')"
echo "hostname=$(hostname)"
echo "pwd=$(pwd)"
echo "env=${X:-}"
echo probe-done
exec sleep 600
"""

# The last CPU this host gives us: pinned to it, the payload shows what the default (all CPUs) would not.
LAST_CPU = max(os.sched_getaffinity(0))
SYSCTLS_A = (("net.ipv4.ip_forward", "1"), ("kernel.msgmax", "65536"))
CAP_CHOWN, CAP_NET_RAW, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_ADMIN, CAP_SYS_TIME = 0, 13, 16, 17, 21, 25


@dataclass
class RoundTrip:
    name: str
    text: str  # the generated definition
    before: dict[str, Any]  # inspect of the container `run` made
    after: dict[str, Any]  # ... and of the one `apply` made from `text`
    seen_before: dict[str, str]  # what its payload saw (PROBE)
    seen_after: dict[str, str]
    regenerated: str  # `generate` of the recreated container
    diff: str  # `diff FILE` after the apply


def probe(cli: CLI, name: str) -> dict[str, str]:
    """The payload's report, from the logs of this container (a recreated one has its own)."""
    out = cli.wait_logs(name, "probe-done")
    assert "probe-done" in out, out
    seen = {}
    for line in out.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            # a user namespace's owner (uid=/gid= of a tmpfs) is picked anew for each container
            seen[key] = re.sub(r",?[ug]id=[0-9]+", "", value).strip()
    return seen


def round_trip(cli: CLI, defs: Path, name: str, *run_args: str) -> RoundTrip:
    cli("run", "-d", "--name", name, *run_args)
    seen_before = probe(cli, name)
    before = cli.json("inspect", name)[0]
    text = cli("generate", name).stdout
    f = defs / f"{name}.nspawn"
    f.write_text(text)
    cli("rm", "-f", name)
    assert cli("apply", str(f)).stdout == f"{name} created\n"
    seen_after = probe(cli, name)
    after = cli.json("inspect", name)[0]
    regenerated, diff = cli("generate", name).stdout, cli("diff", str(f)).stdout
    return RoundTrip(name, text, before, after, seen_before, seen_after, regenerated, diff)


@pytest.fixture(scope="module")
def trips(cli: CLI, busybox: str) -> Iterator[dict[str, RoundTrip]]:
    base = Path("/var/tmp") / f"nspawnctl-roundtrip-{uuid.uuid4().hex[:8]}"
    probe_dir, rw, defs = base / "probe", base / "rw", base / "defs"
    for d in (probe_dir, rw, defs):
        d.mkdir(parents=True)
    (probe_dir / "probe.sh").write_text(PROBE)
    (probe_dir / "f").write_text("from the host\n")
    volume = f"rtvol-{uuid.uuid4().hex[:8]}"  # made first, with a file in it
    cli("volume", "create", volume)
    mountpoint = Path(json.loads(cli("volume", "inspect", volume).stdout)[0]["Mountpoint"])
    (mountpoint / "f").write_text("in the volume\n")
    a, b = cli.name("rta"), cli.name("rtb")
    a_args = [
        "--privileged", "--init",
        "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.msgmax=65536",
        "--mount", f"type=bind,source={probe_dir},target=/ro,readonly",
        "--mount", f"type=bind,src={rw},dst=/rw",
        "--mount", "type=tmpfs,target=/mt,tmpfs-size=4M,tmpfs-mode=1770",
        "--tmpfs", "/tt:mode=1770,size=3M",
        "--shm-size", "32M", "-p", "8080", "-l", "a=b", "-e", "X=1", "-w", "/work/dir",
        "--health-cmd", "exit 0", "--health-interval", "1h", "--health-retries", "2",
        "--stop-signal", "SIGUSR1", "--stop-timeout", "7",
        "--add-host", "foo:10.1.2.3", "--dns", "10.0.0.53",
        "--cpuset-cpus", str(LAST_CPU), "--oom-score-adj", "100", "--ulimit", "nofile=1000:2000",
        busybox, "sh", "/ro/probe.sh",
    ]  # fmt: skip
    b_args = [
        "--network", "none", "--read-only",
        "--cap-add", "SYS_TIME", "--cap-drop", "NET_RAW", "--cap-drop", "CHOWN",
        "--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges",
        "--device", "/dev/null:/dev/mynull:rw", "--tmpfs", "/scratch",
        "--mount", f"type=volume,src={volume},dst=/vol", "-v", f"{probe_dir}:/ro:ro",
        "--sysctl", "kernel.shmmax=123456789", "--dns-search", "example.com",
        "--hostname", "rthost", "-m", "64M", "--cpus", "0.5", "--pids-limit", "50",
        "--cpu-shares", "512", "--restart", "on-failure:3", "--entrypoint", "/bin/sh",
        "--ulimit", "nproc=-1", "--stop-timeout", "2",
        busybox, "/ro/probe.sh",
    ]  # fmt: skip
    try:
        yield {"a": round_trip(cli, defs, a, *a_args), "b": round_trip(cli, defs, b, *b_args)}
    finally:
        cli("rm", "-f", a, b, check=False)
        cli("volume", "rm", "-f", volume, check=False)
        shutil.rmtree(base, ignore_errors=True)


def comparable(inspect: dict[str, Any]) -> dict[str, Any]:
    """inspect without what a new container must change (the module's docstring says why)."""
    out = copy.deepcopy(inspect)
    for key in ("Id", "Created", "Unit"):
        out.pop(key)
    out["State"].pop("StartedAt")
    out["State"].pop("FinishedAt")
    net = out["NetworkSettings"]
    for key in ("IPAddress", "Gateway"):
        net.pop(key)
    for link in net.get("Networks", {}).values():
        link.pop("IPAddress")
        link.pop("Gateway")
    return out


@pytest.mark.parametrize("which", ["a", "b"])
def test_inspect_is_the_same_after_generate_rm_apply(trips: dict[str, RoundTrip], which: str) -> None:
    t = trips[which]
    assert comparable(t.after) == comparable(t.before)
    assert re.fullmatch(r"[0-9a-f]{64}", t.after["Id"]) and t.after["Id"] != t.before["Id"]
    assert t.before["Unit"] == f"nspawnctl-{t.name}.service"
    assert t.after["Unit"] == f"systemd-nspawn@{t.name}.service"
    assert t.after["State"]["Status"] == "running"
    # the generated file describes the recreated container as well: nothing for apply to change
    assert t.regenerated == t.text
    assert t.diff == ""


@pytest.mark.parametrize("which", ["a", "b"])
def test_the_payload_sees_the_same_after_the_round_trip(trips: dict[str, RoundTrip], which: str) -> None:
    t = trips[which]
    assert t.seen_after == t.seen_before


def test_mounts_sysctls_privileges_and_limits_act_after_the_round_trip(trips: dict[str, RoundTrip]) -> None:
    seen, hc = trips["a"].seen_after, trips["a"].after["HostConfig"]
    assert seen["mnt /tt"] == "1770 tmpfs tmpfs rw,size=3072k,mode=1770", seen
    assert seen["mnt /mt"] == "1770 tmpfs tmpfs rw,size=4096k,mode=1770", seen
    assert seen["mnt /dev/shm"] == "1777 tmpfs tmpfs rw,size=32768k", seen
    assert seen["sysctl net/ipv4/ip_forward"] == "1" and seen["sysctl kernel/msgmax"] == "65536"
    assert seen["bind"] == "from the host" and seen["ro"] == "read-only" and seen["rw"] == "writable"
    # --privileged: the capabilities nspawn drops by default are there, no seccomp filter of nspawn's
    caps = int(seen["caps"], 16)
    assert all(caps & (1 << c) for c in (CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_ADMIN)), seen
    assert seen["seccomp"] == host_seccomp_filters()
    assert seen["pid"] == "2"  # --init: nspawn's stub init is PID 1
    assert seen["oom"] == "100" and seen["nofile"] == "1000:2000"
    assert seen["hosts"] == "1" and seen["resolv"] == "nameserver 10.0.0.53"
    assert seen["pwd"] == "/work/dir" and seen["env"] == "1"
    assert hc["Privileged"] is True and hc["Sysctls"] == dict(SYSCTLS_A)
    port = trips["a"].before["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"]
    assert hc["PortBindings"]["8080/tcp"] == [{"HostIp": "", "HostPort": port}]  # the port it was given


def test_cpuset_cpus_acts_after_the_round_trip(trips: dict[str, RoundTrip]) -> None:
    if LAST_CPU == 0:
        pytest.skip("one CPU: pinning it is the default, --cpuset-cpus cannot be told apart")
    t = trips["a"]
    assert t.seen_before["cpus"] == t.seen_after["cpus"] == str(LAST_CPU), t.seen_after
    assert trips["b"].seen_after["cpus"] != str(LAST_CPU)  # unpinned: more than the last CPU


def test_caps_seccomp_read_only_and_devices_act_after_the_round_trip(trips: dict[str, RoundTrip]) -> None:
    t = trips["b"]
    seen = t.seen_after
    caps = int(seen["caps"], 16)
    assert caps & (1 << CAP_SYS_TIME) and not caps & (1 << CAP_NET_RAW) and not caps & (1 << CAP_CHOWN), seen
    assert not caps & (1 << CAP_SYS_MODULE)  # not privileged
    assert seen["nnp"] == "1" and seen["seccomp"] == host_seccomp_filters()
    assert seen["root"] == "read-only" and seen["mnt /scratch"].split()[1:3] == ["tmpfs", "tmpfs"]
    assert seen["device"] == "char, writable"
    assert seen["bind"] == "from the host" and seen["ro"] == "read-only"
    assert seen["sysctl kernel/shmmax"] == "123456789" and seen["hostname"] == "rthost"
    assert seen["resolv"].endswith(" search example.com") and seen["pid"] == "1"
    assert seen["volume"] == "in the volume"  # the same named volume, bound again
    assert t.after["Config"]["Volumes"] == t.before["Config"]["Volumes"]


def host_seccomp_filters() -> str:
    """What every unit inherits: the test host may itself run under a seccomp filter (an nspawn
    container); without nspawn's own filter the payload has just those."""
    return next(
        line.split(":")[1].strip()
        for line in Path("/proc/1/status").read_text().splitlines()
        if line.startswith("Seccomp_filters:")
    )
