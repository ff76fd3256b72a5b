"""docker's further run options (issue 14, "Run options"): each one's observable outcome inside the
container, the .nspawn keys that keep it, ``generate`` -> rm -> ``apply`` giving the same container,
and bad values refused with nothing made."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI
from test_errors import pool_snapshot

SETTINGS = Path("/etc/systemd/nspawn")
# The last CPU this host gives us: pinned to it, a payload shows what the default (all CPUs) would not
# (with one CPU it is the default, so the cpuset assertion skips).
LAST_CPU = max(os.sched_getaffinity(0))


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-runopts-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def status(text: str, field: str) -> str:
    """A field of /proc/self/status as the payload printed it."""
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in {text!r}")


def test_read_only_root_tmpfs_and_shm_size(nsp: CLI, busybox: str) -> None:
    name = nsp.name("ro")
    script = (
        "touch /x 2>&1; echo rc=$?; touch /scratch/y && echo scratch-ok; "
        "grep -E ' /(scratch|dev/shm) ' /proc/mounts"
    )
    out = nsp(
        "run", "--name", name, "--read-only", "--tmpfs", "/scratch:size=1m,mode=770", "--shm-size", "8m",
        busybox, "sh", "-c", script,
    ).stdout  # fmt: skip
    assert "Read-only file system" in out and "rc=1" in out, out
    assert "scratch-ok" in out
    mounts = [line for line in out.splitlines() if line.startswith("tmpfs ")]
    scratch = next(m for m in mounts if " /scratch " in m)
    shm = [m for m in mounts if " /dev/shm " in m][-1]  # ours, over nspawn's own
    assert "size=1024k" in scratch and "mode=770" in scratch, scratch
    assert "size=8192k" in shm, shm
    text = (SETTINGS / f"{name}.nspawn").read_text()
    assert "ReadOnly=yes" in text and "TemporaryFileSystem=/scratch:size=1m,mode=770" in text
    assert "ShmSize=8388608" in text


def test_mount_bind_tmpfs_and_volume(nsp: CLI, busybox: str, tmp: Path) -> None:
    name = nsp.name("mnt")
    (tmp / "f").write_text("from-host\n")
    out = nsp(
        "run", "--name", name,
        "--mount", f"type=bind,source={tmp},target=/m,readonly",
        "--mount", "type=tmpfs,dst=/t,tmpfs-size=2m",
        "--mount", f"type=volume,src=vol-{name},dst=/v",
        busybox, "sh", "-c",
        "cat /m/f; touch /m/g 2>&1; touch /v/w && echo vol-ok; grep ' /t ' /proc/mounts",
    ).stdout  # fmt: skip
    assert "from-host" in out and "Read-only file system" in out, out
    assert "vol-ok" in out and "size=2048k" in out
    assert not (tmp / "g").exists()
    # type=volume is a named volume, as -v NAME:/path: listed, kept after the container, removable
    assert f"vol-{name}" in nsp("volume", "ls", "-q").stdout.split()
    nsp("rm", name)
    assert f"vol-{name}" in nsp("volume", "ls", "-q").stdout.split()
    nsp("volume", "rm", f"vol-{name}")


def test_capabilities_and_security_options(nsp: CLI, busybox: str) -> None:
    show = "grep -E '^(CapEff|NoNewPrivs|Seccomp_filters):' /proc/self/status"
    # the test host may itself run under a seccomp filter (an nspawn container): what the
    # container adds is counted
    host = status(Path("/proc/1/status").read_text(), "Seccomp_filters")  # what units inherit
    plain = nsp("run", "--rm", busybox, "sh", "-c", show).stdout
    out = nsp(
        "run", "--rm", "--cap-add", "SYS_TIME", "--cap-drop", "net_raw",
        "--security-opt", "no-new-privileges", busybox, "sh", "-c", show,
    ).stdout  # fmt: skip
    caps = int(status(out, "CapEff"), 16)
    assert caps & (1 << 25) and not caps & (1 << 13), out  # CAP_SYS_TIME, CAP_NET_RAW
    assert int(status(plain, "CapEff"), 16) & (1 << 13) and not int(status(plain, "CapEff"), 16) & (1 << 25)
    assert status(out, "NoNewPrivs") == "1" and status(plain, "NoNewPrivs") == "0"
    assert int(status(plain, "Seccomp_filters")) > int(host)  # nspawn's filter
    only = nsp("run", "--rm", "--cap-drop", "ALL", "--cap-add", "CHOWN", busybox, "sh", "-c", show).stdout
    assert int(status(only, "CapEff"), 16) == 1, only
    unconfined = nsp("run", "--rm", "--security-opt", "seccomp=unconfined", busybox, "sh", "-c", show).stdout
    assert status(unconfined, "Seccomp_filters") == host
    priv = nsp("run", "--rm", "--privileged", busybox, "sh", "-c", show).stdout
    assert status(priv, "Seccomp_filters") == host and int(status(priv, "CapEff"), 16) & (1 << 25)
    # --privileged: every device allowed; with --userns host /proc/sys and /sys writable (nspawn
    # refuses that in a user namespace), read-only otherwise
    # kernel.domainname: of the container's own UTS namespace, harmless to write
    write = "echo nsptest > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname"
    ro = nsp("run", "--rm", "--userns", "host", busybox, "sh", "-c", write, check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr + ro.stdout, ro
    name = nsp.name("priv")
    nsp("run", "-d", "--name", name, "--privileged", "--userns", "host", busybox, "sleep", "600")
    assert nsp("exec", name, "sh", "-c", write).stdout == "nsptest\n"
    sysfs = nsp("exec", name, "sh", "-c", "grep ' /sys ' /proc/self/mountinfo").stdout
    assert " rw," in sysfs, sysfs
    show_allow = ["systemctl", "show", "-p", "DeviceAllow", f"nspawnctl-{name}.service"]
    allow = subprocess.run(show_allow, capture_output=True, text=True).stdout.splitlines()
    assert "DeviceAllow=char-* rwm" in allow and "DeviceAllow=block-* rwm" in allow, allow
    assert "Privileged=yes" in nsp("generate", name).stdout.splitlines()


def test_init_stop_signal_and_stop_timeout(nsp: CLI, busybox: str) -> None:
    out = nsp("run", "--rm", "--init", busybox, "sh", "-c", "echo pid=$$").stdout
    assert out.strip() == "pid=2"
    name = nsp.name("sig")
    nsp(
        "run", "-d", "--name", name, "--stop-signal", "USR1", "--stop-timeout", "7", busybox, "sh", "-c",
        "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.2; done",
    )  # fmt: skip
    nsp.wait_logs(name, "ready")
    host = nsp.json("inspect", name)[0]
    assert host["Config"]["StopSignal"] == "SIGUSR1" and host["HostConfig"]["StopTimeout"] == 7
    text = (SETTINGS / f"{name}.nspawn").read_text()
    assert "KillSignal=SIGUSR1" in text and "StopTimeout=7" in text
    # systemd's own stop (machinectl stop, shutdown) waits as long: 7 s + nspawn's 10 s to clean up
    import subprocess

    shown = subprocess.run(
        ["systemctl", "show", "-p", "TimeoutStopUSec", f"nspawnctl-{name}.service"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert shown.strip() == "TimeoutStopUSec=17s", shown
    nsp("stop", name)
    assert "got-usr1" in nsp("logs", name).stdout
    assert nsp.json("inspect", name)[0]["State"]["ExitCode"] == 0


def test_hosts_dns_ulimit_cpuset_oom_workdir(nsp: CLI, busybox: str) -> None:
    name = nsp.name("etc")
    out = nsp(
        "run", "--name", name, "--add-host", "db.local:10.1.2.3", "--dns", "192.0.2.53",
        "--dns-search", "example.com", "--ulimit", "nofile=1024:2048", "--cpuset-cpus", str(LAST_CPU),
        "--oom-score-adj", "123", "-w", "/made/here", busybox, "sh", "-c",
        "cat /etc/hosts /etc/resolv.conf; grep 'open files' /proc/self/limits; "
        "grep Cpus_allowed_list /proc/self/status; echo oom=$(cat /proc/self/oom_score_adj); pwd",
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert "10.1.2.3\tdb.local" in lines, out
    assert "nameserver 192.0.2.53" in lines and "search example.com" in lines
    limits = next(line for line in lines if "open files" in line).split()
    assert limits[3:5] == ["1024", "2048"], limits
    assert "oom=123" in lines and lines[-1] == "/made/here"
    if LAST_CPU == 0:
        pytest.skip("one CPU: pinning it is the default, --cpuset-cpus cannot be told apart")
    assert status(out, "Cpus_allowed_list") == str(LAST_CPU), out


def test_add_host_on_a_zone_network(nsp: CLI, busybox: str) -> None:
    """The zone rewrites a member's /etc/hosts on every join: the --add-host lines stay in it."""
    name, zone = nsp.name("zhost"), f"zh{uuid.uuid4().hex[:6]}"
    out = nsp(
        "run", "--name", name, "--network", f"zone:{zone}", "--add-host", "db.local:10.1.2.3",
        busybox, "cat", "/etc/hosts",
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert "10.1.2.3\tdb.local" in lines, out
    assert any(line.endswith(f"\t{name}") for line in lines), out  # the zone's own member line
    assert "AddHost=db.local:10.1.2.3" in nsp("generate", name).stdout.splitlines()


def test_device(nsp: CLI, busybox: str) -> None:
    name = nsp.name("dev")
    nsp("run", "-d", "--name", name, "--device", "/dev/zero:/dev/myzero:r", busybox, "sleep", "600")
    out = nsp("exec", name, "sh", "-c", "test -c /dev/myzero && echo is-char; head -c 3 /dev/myzero | wc -c")
    assert out.stdout.split() == ["is-char", "3"], out.stdout
    assert "Device=/dev/zero:/dev/myzero:r" in (SETTINGS / f"{name}.nspawn").read_text()
    # the device's bind is not listed as a volume
    assert nsp.json("inspect", name)[0]["Config"]["Volumes"] == []


def test_sysctl_in_the_containers_network(nsp: CLI, busybox: str) -> None:
    name = nsp.name("sysctl")
    out = nsp(
        "run", "--name", name, "--network", "veth", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
        busybox, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start",
    ).stdout  # fmt: skip
    assert out.strip() == "80"
    assert "Sysctl=net.ipv4.ip_unprivileged_port_start=80" in (SETTINGS / f"{name}.nspawn").read_text()


def test_exec_detach_and_env_file(nsp: CLI, busybox: str, tmp: Path) -> None:
    name = nsp.name("exd")
    nsp("run", "-d", "--name", name, busybox, "sleep", "600")
    env = tmp / "env"
    env.write_text("# a comment\nFOO=from file\n")
    assert nsp("exec", "--env-file", str(env), name, "sh", "-c", 'echo "$FOO"').stdout == "from file\n"
    nsp("exec", "-d", name, "sh", "-c", "echo detached > /tmp/m; exec sleep 300")
    deadline = time.monotonic() + 30
    while nsp("exec", name, "cat", "/tmp/m", check=False).stdout != "detached\n":
        assert time.monotonic() < deadline, "exec -d never ran"
        time.sleep(0.1)
    ps = nsp("exec", name, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
    assert "sleep 300" in ps, ps


def test_exec_detach_keeps_env_private_and_dollars(nsp: CLI, busybox: str) -> None:
    """exec -d: the -e values reach the command exactly but not the unit's properties (readable by
    every host user); ``$`` words are not expanded by systemd; the env file goes with the unit."""
    import glob
    import subprocess

    name = nsp.name("exds")
    secret = 's3cr3t "q" $HOME `x` \\ end'
    nsp("run", "-d", "--name", name, "-e", f"SECRET={secret}", busybox, "sleep", "600")
    nsp(
        "exec", "-d", "-e", "NL=line1\nline2", name, "sh", "-c",
        'printf "%s|" "$SECRET" "$NL" "$1" "$2" "$3" > /tmp/out; echo $$ > /tmp/pid; exec sleep 10',
        "sh", "$HOME", "${PATH}", "$$",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while nsp("exec", name, "cat", "/tmp/pid", check=False).returncode != 0:
        assert time.monotonic() < deadline, "exec -d never ran"
        time.sleep(0.1)
    units = subprocess.run(
        ["systemctl", "list-units", "--plain", "--no-legend", f"nspawnctl-exec-{name}-*"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    unit = next(u for u in units if u.endswith(".service"))
    shown = subprocess.run(["systemctl", "show", unit], capture_output=True, text=True, check=True).stdout
    assert "s3cr3t" not in shown
    assert nsp("exec", name, "cat", "/tmp/out").stdout == f"{secret}|line1\nline2|$HOME|${{PATH}}|$$|"
    assert nsp("exec", name, "cat", "/tmp/pid").stdout.strip().isdigit()
    stem = unit.removesuffix(".service")
    while glob.glob(f"/run/nspawnctl/exec/{stem}"):
        assert time.monotonic() < deadline + 30, "the env file stayed after the unit ended"
        time.sleep(0.2)


def test_logs_until(nsp: CLI, busybox: str) -> None:
    name = nsp.name("until")
    nsp("run", "--name", name, busybox, "sh", "-c", "echo one; sleep 1.5; echo two")
    stamped = nsp("logs", "-t", name).stdout.splitlines()
    first = next(line for line in stamped if line.endswith(" one")).split()[0]
    assert nsp("logs", "--until", first, name).stdout == "one\n"
    assert nsp("logs", name).stdout == "one\ntwo\n"
    assert nsp("logs", "--until", "1h", name).stdout == ""


def test_sysctl_ipc_keys_in_the_containers_ipc_namespace(nsp: CLI, busybox: str) -> None:
    """docker sets kernel.shm*/msg*/sem and fs.mqueue.* in the container's IPC namespace: the
    hook makes that namespace for nspawn to keep; the host's values stay."""
    name = nsp.name("ipcsys")
    host = Path("/proc/sys/kernel/shmmni").read_text()
    out = nsp(
        "run", "--name", name, "--sysctl", "kernel.shmmni=1234", "--sysctl", "fs.mqueue.msg_max=20",
        busybox, "cat", "/proc/sys/kernel/shmmni", "/proc/sys/fs/mqueue/msg_max",
    ).stdout  # fmt: skip
    assert out.split() == ["1234", "20"], out
    assert Path("/proc/sys/kernel/shmmni").read_text() == host
    deadline = time.monotonic() + 30
    while Path(f"/run/nspawnctl/ipcns/{name}").exists():  # unpinned by the stop hook
        assert time.monotonic() < deadline, "the IPC namespace stayed pinned"
        time.sleep(0.1)
    assert "Sysctl=kernel.shmmni=1234" in nsp("generate", name).stdout.splitlines()
    # an IPC key needs no network namespace of the container's own
    out = nsp(
        "run", "--rm", "--network", "host", "--sysctl", "kernel.msgmax=9000", busybox,
        "cat", "/proc/sys/kernel/msgmax",
    ).stdout  # fmt: skip
    assert out.strip() == "9000"


def test_generate_round_trips_the_options(nsp: CLI, busybox: str, tmp: Path) -> None:
    name = nsp.name("genopt")
    nsp(
        "create", "--name", name, "--read-only", "--tmpfs", "/scratch:size=1m", "--shm-size", "16m",
        "--cap-add", "SYS_TIME", "--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges",
        "--init", "--stop-signal", "SIGHUP", "--stop-timeout", "5", "--add-host", "db:10.0.0.9",
        "--dns", "192.0.2.1", "--dns-search", "example.org", "--ulimit", "nofile=512:1024",
        "--device", "/dev/zero:/dev/z0", "--cpuset-cpus", str(LAST_CPU), "--oom-score-adj", "-5",
        busybox, "sleep", "600",
    )  # fmt: skip
    before = nsp.json("inspect", name)[0]
    text = nsp("generate", name).stdout
    for key in (
        "ReadOnly=yes", "TemporaryFileSystem=/scratch:size=1m", "Capability=CAP_SYS_TIME",
        "DropCapability=CAP_NET_RAW", "NoNewPrivileges=yes", "ProcessTwo=yes", "KillSignal=SIGHUP",
        "LimitNOFILE=512:1024", f"CPUAffinity={LAST_CPU}", "OOMScoreAdjust=-5", "AddHost=db:10.0.0.9",
        "DNS=192.0.2.1", "DNSSearch=example.org", "ShmSize=16777216", "StopTimeout=5",
        "Device=/dev/zero:/dev/z0:rwm", "Bind=/dev/zero:/dev/z0",
    ):  # fmt: skip
        assert key in text.splitlines(), key
    (tmp / f"{name}.nspawn").write_text(text)
    nsp("rm", "-f", name)
    assert nsp("apply", str(tmp)).stdout == f"{name} created\n"
    after = nsp.json("inspect", name)[0]
    for key in ("Image", "Command", "Config", "HostConfig"):
        assert after[key] == before[key], key
    assert nsp("generate", name).stdout == text
    assert nsp("exec", name, "cat", "/etc/hosts").stdout.splitlines()[-1] == "10.0.0.9\tdb"


@pytest.mark.serial
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cap-add", "BOGUS"], "unknown capability"),
        (["--sysctl", "kernel.hostname=x"], "invalid --sysctl"),
        (["--security-opt", "apparmor=unconfined"], "unsupported --security-opt"),
        (["--ulimit", "nofile=2:1"], "soft limit is above"),
        (["--ulimit", "nofile=99999999999999999999"], "--ulimit"),
        (["--oom-score-adj", "1001"], "--oom-score-adj"),
        (["--cpuset-cpus", "3-1"], "--cpuset-cpus"),
        (["--tmpfs", "/t:exec=1"], "tmpfs option"),
        (["--mount", "type=bind,dst=/x"], "absolute source"),
        (["--device", "/etc/passwd"], "--device"),
        (["--add-host", "db:notanip"], "--add-host"),
        (["--stop-signal", "NOPE"], "--stop-signal"),
        (["--shm-size", "nan"], "--shm-size"),
    ],
)
def test_bad_options_are_refused_with_nothing_made(
    nsp: CLI, busybox: str, args: list[str], words: str
) -> None:
    name = nsp.name("badopt")
    before = pool_snapshot()
    proc = nsp("create", "--name", name, *args, busybox, "true", check=False)
    assert proc.returncode == 2, proc.stderr
    first, *rest = proc.stderr.splitlines()
    assert first.startswith("nspawnctl: error: ") and words in first, proc.stderr
    assert rest and rest[0].startswith("hint: ") and "Traceback" not in proc.stderr
    assert pool_snapshot() == before
