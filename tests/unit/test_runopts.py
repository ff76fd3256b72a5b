"""The parsers of docker's further run options (runopts.py) and their .nspawn round trip."""

from __future__ import annotations

import os
import time

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.logtime import parse_until
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.runflags import Mount, SettingsInput, build
from nspawnctl.runopts import (
    CAPABILITIES,
    Device,
    RunSettings,
    Tmpfs,
    Ulimit,
    capabilities,
    check_sysctls,
    from_file,
    parse_add_host,
    parse_cpuset,
    parse_oom_score_adj,
    parse_security_opt,
    parse_stop_signal,
    parse_stop_timeout,
    parse_sysctl,
    to_file,
    unit_settings,
)


def test_tmpfs() -> None:
    # kept as given where the kernel reads it alike (docker's inspect shows it so)
    t = Tmpfs.parse("/run/x:size=1m,mode=01777,noexec")
    assert t == Tmpfs("/run/x", ("size=1m", "mode=01777", "noexec"))
    assert t.value() == "/run/x:size=1m,mode=01777,noexec"
    assert Tmpfs.from_value(t.value()) == t
    # a size the kernel would read otherwise (a fraction, a "b" unit, a leading 0: octal) in bytes
    assert Tmpfs.parse("/a:size=1.5k").options == ("size=1536",)
    assert Tmpfs.parse("/a:size=010m").options == ("size=10485760",)
    assert Tmpfs.parse("/a:size=3M,nr_inodes=010").options == ("size=3M", "nr_inodes=10")
    for bad in ("relative", "/a:size=nan", "/a:mode=999", "/a:uid=x", "/a/../b", "/a,b", "/a:size=1e9"):
        with pytest.raises(InvalidArgument):
            Tmpfs.parse(bad)


def test_capabilities() -> None:
    assert capabilities(["net_admin", "CAP_SYS_TIME"], ["NET_RAW"]) == (
        ("CAP_NET_ADMIN", "CAP_SYS_TIME"),
        ("CAP_NET_RAW",),
    )
    plus, minus = capabilities(["CHOWN"], ["ALL"])
    assert plus == ("CAP_CHOWN",) and "CAP_CHOWN" not in minus and len(minus) == len(CAPABILITIES) - 1
    assert capabilities([], ["all"]) == ((), ("all",))
    assert capabilities(["ALL"], []) == (("all",), ())
    with pytest.raises(InvalidArgument, match="unknown capability"):
        capabilities(["CAP_BOGUS"], [])


def test_ulimit() -> None:
    assert Ulimit.parse("nofile=1024:2048") == Ulimit("nofile", 1024, 2048)
    assert Ulimit.parse("core=-1").value() == "infinity"
    assert Ulimit.parse("nproc=10").value() == "10"
    assert Ulimit.from_value("LimitNOFILE", "1024:2048") == Ulimit("nofile", 1024, 2048)
    bad_values = ("nofile", "bogus=1", "nofile=2:1", "nofile=nan", "nofile=" + "9" * 20, "nofile=1:x")
    for bad in bad_values:
        with pytest.raises(InvalidArgument):
            Ulimit.parse(bad)


def test_device() -> None:
    assert Device.parse("/dev/fuse") == Device("/dev/fuse", "/dev/fuse", "rwm")
    assert Device.parse("/dev/zero:r") == Device("/dev/zero", "/dev/zero", "r")
    assert Device.parse("/dev/zero:/dev/z:rw") == Device("/dev/zero", "/dev/z", "rw")
    for bad in ("/etc/passwd", "/dev/a:/dev/b:rx", "/dev/a:/dev/b:rr", "dev", "/dev/a:/b"):
        with pytest.raises(InvalidArgument):
            Device.parse(bad)


def test_small_values() -> None:
    assert parse_add_host("db.local:10.0.0.1") == ("db.local", "10.0.0.1")
    assert parse_add_host("v6:::1") == ("v6", "::1")
    assert parse_cpuset("0-1, 3") == "0-1,3"
    assert parse_oom_score_adj("-1000") == -1000
    assert parse_stop_timeout("5") == 5
    assert parse_stop_signal("usr1") == "SIGUSR1" and parse_stop_signal("RTMIN+3") == "SIGRTMIN+3"
    assert parse_security_opt("no-new-privileges:true") == "no-new-privileges"
    assert parse_security_opt("seccomp=unconfined") == "seccomp=unconfined"
    assert parse_sysctl("net.ipv4.ip_forward=1") == ("net.ipv4.ip_forward", "1")
    assert parse_sysctl("kernel.sem=1 2 3 4") == ("kernel.sem", "1 2 3 4")
    for fn, bad in (
        (parse_add_host, "db:nope"),
        (parse_add_host, "bad host:10.0.0.1"),
        (parse_cpuset, "2-1"),
        (parse_cpuset, "9000"),
        (parse_oom_score_adj, "1001"),
        (parse_oom_score_adj, "nan"),
        (parse_stop_timeout, "1e9"),
        (parse_stop_signal, "NOPE"),
        (parse_security_opt, "apparmor=unconfined"),
        (parse_security_opt, "seccomp=/profile.json"),
        (parse_sysctl, "kernel.hostname=x"),
        (parse_sysctl, "net.ipv4/../../x=1"),
        (parse_sysctl, "net.ipv4.ip_forward=1\n2"),
    ):
        with pytest.raises(InvalidArgument):
            fn(bad)  # type: ignore[operator]


def test_mount() -> None:
    assert Mount.parse("type=bind,src=/srv,dst=/data,readonly").volume().read_only
    t = Mount.parse("type=tmpfs,destination=/t,tmpfs-size=2m,tmpfs-mode=700")
    assert t.tmpfs == Tmpfs("/t", ("size=2m", "mode=700"))
    v = Mount.parse("type=volume,source=cache,target=/c")
    assert (v.type, v.source, v.target, v.read_only) == ("volume", "cache", "/c", False)
    assert Mount.parse("target=/anon").source is None  # docker's default type: an anonymous volume
    for bad in (
        "type=bind,dst=/x",
        "type=bind,src=rel,dst=/x",
        "type=tmpfs,src=/a,dst=/t",
        "type=volume,src=../up,dst=/x",
        "type=volume,src=a,dst=/x,tmpfs-size=1m",
        "type=nfs,dst=/x",
        "src=/a",
        "type=bind,src=/a,dst=/x,bogus=1",
    ):
        with pytest.raises(InvalidArgument):
            Mount.parse(bad)


def test_round_trip_through_the_file() -> None:
    s = build(
        SettingsInput(
            read_only=True,
            tmpfs=["/scratch:size=1m"],
            cap_add=["SYS_TIME"],
            cap_drop=["NET_RAW"],
            security_opt=["no-new-privileges", "seccomp=unconfined"],
            init=True,
            stop_timeout="7",
            add_host=["db:10.0.0.1"],
            dns=["192.0.2.1"],
            dns_search=["example.org"],
            ulimit=["nofile=1:2", "nofile=3:4"],
            device=["/dev/zero:/dev/z:r"],
            shm_size="16m",
            sysctl=["net.ipv4.ip_forward=1"],
            cpuset_cpus="0",
            oom_score_adj="-5",
        )
    )
    assert s.ulimits == (Ulimit("nofile", 3, 4),)  # the last of a name counts
    f = NspawnFile()
    to_file(s, f)
    text = f.render()
    assert "TemporaryFileSystem=/dev/shm:mode=1777,size=16777216" in text and "ResolvConf=off" in text
    back = from_file(NspawnFile.parse(text))
    assert back == s
    g = NspawnFile()
    to_file(back, g)
    assert g.render() == text
    assert ("DeviceAllow", "/dev/zero r") in unit_settings(s)
    assert ("Environment", "SYSTEMD_SECCOMP=0") in unit_settings(s)
    assert from_file(NspawnFile()) == RunSettings()


def test_privileged_and_duplicate_tmpfs() -> None:
    s = build(SettingsInput(privileged=True, cap_drop=["CHOWN"]))
    assert s.cap_add == ("all",) and s.cap_drop == () and s.unconfined
    with pytest.raises(InvalidArgument, match="two tmpfs"):
        build(SettingsInput(tmpfs=["/dev/shm"], shm_size="1m"))


def test_parse_until() -> None:
    assert parse_until("10m", now=1000.0) == 400_000_000
    assert parse_until("1h30m", now=10_000.0) == 4_600_000_000
    assert parse_until("1767348000.5") == 1_767_348_000_500_000
    assert parse_until("2026-01-02T10:00:00Z") == 1_767_348_000_000_000
    for bad in ("yesterday", "10x", "nan", "99999999999d"):
        with pytest.raises(InvalidArgument):
            parse_until(bad)


def test_declare_accepts_every_key_written() -> None:
    from nspawnctl.declare import USER_KEYS
    from nspawnctl.runopts import OWN_KEYS

    assert set(OWN_KEYS) <= set(USER_KEYS)


def test_unit_only_settings_reach_both_kinds_of_unit() -> None:
    """DeviceAllow=, OOMScoreAdjust= and SYSTEMD_SECCOMP=0: on the transient unit and in the
    drop-in of systemd-nspawn@NAME.service (what machinectl start runs)."""
    from pathlib import Path

    from nspawnctl.config import Paths
    from nspawnctl.run.persist import render_dropin
    from nspawnctl.run.units import Launch, unit_properties
    from nspawnctl.spec import ContainerSpec

    s = build(SettingsInput(device=["/dev/fuse"], oom_score_adj="-10", privileged=True))
    spec = ContainerSpec("c1", "ab" * 16, "img", "sha256:x", "now", command=["true"], settings=s)
    text = render_dropin(
        spec, Paths(), enabled=False, python="/usr/bin/python3", unified=True, template="@EXTRA@\n"
    )
    lines = text.splitlines()
    assert "DeviceAllow=/dev/fuse rwm" in lines and "OOMScoreAdjust=-10" in lines
    assert "Environment=SYSTEMD_SECCOMP=0" in lines
    props = unit_properties(spec, Path("/var/lib/machines"), Launch())
    assert ("DeviceAllow", "a(ss)", [["/dev/fuse", "rwm"]]) in props
    assert ("OOMScoreAdjust", "i", -10) in props
    env = [p for p in props if p[0] == "Environment"]
    assert len(env) == 1 and "SYSTEMD_SECCOMP=0" in env[0][2]


def _netns_child():  # type: ignore[no-untyped-def]
    """A child process in a network namespace of its own (root and unshare needed)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    child = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    for _ in range(200):
        if os.readlink(f"/proc/{child.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            return child
        time.sleep(0.01)
    child.kill()
    pytest.skip("unshare --net did not make a network namespace")


def test_apply_sysctls_writes_in_the_namespace_only() -> None:
    """Runs the real setns path on this Python (3.11 has no os.setns): the value lands in the
    child's namespace, not in the caller's, whose namespace stays its own."""
    import subprocess

    from nspawnctl.runopts import apply_sysctls

    key = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    before = open(key).read()
    own = os.readlink("/proc/thread-self/ns/net")
    child = _netns_child()
    try:
        path = f"/proc/{child.pid}/ns/net"
        apply_sysctls(path, ())
        apply_sysctls(path, (("net.ipv4.ip_unprivileged_port_start", "77"),))
        inside = subprocess.run(
            ["nsenter", f"--net={path}", "cat", key], capture_output=True, text=True, check=True
        ).stdout
        assert inside.strip() == "77"
        assert open(key).read() == before
        assert os.readlink("/proc/thread-self/ns/net") == own
        with pytest.raises(InvalidArgument, match="cannot set --sysctl"):
            apply_sysctls(path, (("net.ipv4.no_such_sysctl", "1"),))
    finally:
        child.kill()
        child.wait()


def test_privileged_opens_devices_and_api_file_systems_only_without_a_user_namespace() -> None:
    s = build(SettingsInput(privileged=True))
    host = unit_settings(s, private_users=False)
    assert ("DeviceAllow", "char-* rwm") in host and ("DeviceAllow", "block-* rwm") in host
    assert ("Environment", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1") in host
    userns = unit_settings(s, private_users=True)
    assert ("DeviceAllow", "char-* rwm") in userns
    assert ("Environment", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1") not in userns  # nspawn refuses it
    assert not any(k == "DeviceAllow" for k, _ in unit_settings(RunSettings()))


def test_ipc_sysctls_are_allowed_on_any_network_and_keep_nspawn_out_of_ipc() -> None:
    s = build(SettingsInput(sysctl=["kernel.shmmax=1", "fs.mqueue.msg_max=20", "kernel.sem=1 2 3 4"]))
    check_sysctls(s, "host")  # no network namespace needed for them
    assert ("Environment", "SYSTEMD_NSPAWN_SHARE_NS_IPC=1") in unit_settings(s)
    net = build(SettingsInput(sysctl=["net.ipv4.ip_forward=1"]))
    with pytest.raises(InvalidArgument, match="network namespace"):
        check_sysctls(net, "host")
    assert ("Environment", "SYSTEMD_NSPAWN_SHARE_NS_IPC=1") not in unit_settings(net)
