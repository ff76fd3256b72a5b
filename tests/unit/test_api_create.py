"""containers/create: the run options beyond the basics, as the docker CLI sends them, become the
same RunOptions the run flags make (the same parsers); a wrong type or value is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("h11")

from nspawnctl.api.http import ApiError
from nspawnctl.api.translate import create_options
from nspawnctl.runflags import Mount, SettingsInput, build
from nspawnctl.runopts import Tmpfs

# What `docker run -d --cap-drop NET_RAW --read-only --tmpfs /t -p 80 -P --mount type=volume,src=v,dst=/v
# --ulimit nofile=512:1024 --stop-signal SIGINT ...` sends (docker-cli 26), trimmed of empty fields.
DOCKER_CLI_BODY: dict[str, Any] = {
    "Image": "bb", "Cmd": ["httpd", "-f"], "StopSignal": "SIGINT", "StopTimeout": 7,
    "ExposedPorts": {"80/tcp": {}},
    "Healthcheck": {"Test": ["CMD-SHELL", "test -e /t"], "Interval": 2_000_000_000, "Retries": 2},
    "HostConfig": {
        "CapAdd": ["SYS_TIME"], "CapDrop": ["NET_RAW"], "ReadonlyRootfs": True, "Tmpfs": {"/t": "size=1m"},
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": ""}]}, "PublishAllPorts": True,
        "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"},
                   {"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1 << 20,
                                                                          "Mode": 0o700}},
                   {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": True,
                    "BindOptions": {"Propagation": ""}}],
        "Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 1024}], "Init": True,
        "Dns": ["192.0.2.53"], "DnsSearch": ["example.test"], "ExtraHosts": ["db:192.0.2.7"],
        "Sysctls": {"net.ipv4.ip_forward": "1"}, "SecurityOpt": ["no-new-privileges"], "ShmSize": 8 << 20,
        "CpusetCpus": "0", "OomScoreAdj": 100, "Binds": ["data:/data:ro"],
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "rw"}],
        "Privileged": False, "MemorySwappiness": -1,
    },
}  # fmt: skip


def test_volumes_from_becomes_run_options() -> None:
    _, options = create_options({"Image": "bb", "HostConfig": {"VolumesFrom": ["a", "b:ro", "c:rw"]}}, None)
    assert [str(v) for v in options.volumes_from] == ["a", "b:ro", "c:rw"]
    assert [v.read_only for v in options.volumes_from] == [False, True, False]


def test_docker_cli_body_becomes_the_run_flags_options() -> None:
    _req, opts = create_options(DOCKER_CLI_BODY, "c")
    want = build(
        SettingsInput(
            read_only=True, tmpfs=["/t:size=1m"], cap_add=["SYS_TIME"], cap_drop=["NET_RAW"],
            security_opt=["no-new-privileges"], init=True, stop_timeout="7", add_host=["db:192.0.2.7"],
            dns=["192.0.2.53"], dns_search=["example.test"], ulimit=["nofile=512:1024"],
            device=["/dev/null:/dev/n:rw"], shm_size=str(8 << 20), sysctl=["net.ipv4.ip_forward=1"],
            cpuset_cpus="0", oom_score_adj="100",
        ),
        [Tmpfs("/scratch", ("size=1048576", "mode=700"))],
    )  # fmt: skip
    assert opts.settings == want
    assert opts.stop_signal == "SIGINT" and opts.publish_all
    assert [(p.host_port, p.container_port) for p in opts.ports] == [(0, 80)]  # 0: a free port
    assert opts.named_volumes == [("v", "/v", False)]
    assert [(v.host, v.container, v.read_only) for v in opts.volumes] == [
        ("data", "/data", True),
        ("/srv", "/srv", True),
    ]
    assert (
        opts.health.cmd == "test -e /t" and opts.health.interval == 2_000_000_000 and opts.health.retries == 2
    )
    assert Mount.parse("type=volume,src=v,dst=/v").source == "v"


def test_privileged_and_none_healthcheck() -> None:
    body = {"Image": "bb", "Healthcheck": {"Test": ["NONE"]}, "HostConfig": {"Privileged": True}}
    _req, opts = create_options(body, None)
    assert opts.settings.privileged and opts.settings.cap_add == ("all",) and opts.health.disabled


def test_docker_zero_values_ask_for_nothing() -> None:
    body = {
        "Image": "bb", "StopSignal": "", "Healthcheck": None,
        "HostConfig": {"CapAdd": None, "Tmpfs": None, "Mounts": None, "Ulimits": None, "ShmSize": 0,
                       "OomScoreAdj": 0, "Init": None, "PortBindings": {}, "PublishAllPorts": False},
    }  # fmt: skip
    _req, opts = create_options(body, None)
    assert opts.settings == build(SettingsInput()) and opts.stop_signal is None and not opts.publish_all


@pytest.mark.parametrize(
    ("host", "config", "field"),
    [
        ({"CapDrop": "NET_RAW"}, {}, "HostConfig.CapDrop"),
        ({"CapDrop": ["NOPE"]}, {}, "HostConfig.CapDrop"),
        ({"ReadonlyRootfs": "yes"}, {}, "HostConfig.ReadonlyRootfs"),
        ({"Tmpfs": ["/t"]}, {}, "HostConfig.Tmpfs"),
        ({"Tmpfs": {"/t": "size=lots"}}, {}, "HostConfig.Tmpfs"),
        ({"Tmpfs": {"/a:/b": ""}}, {}, "HostConfig.Tmpfs"),
        ({"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/x"}]}, {}, "HostConfig.Mounts[0]"),
        ({"Mounts": [{"Type": "npipe", "Target": "/x"}]}, {}, "HostConfig.Mounts[0]"),
        (
            {"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions": {"Labels": ["k"]}}]},
            {},
            "VolumeOptions",
        ),
        (
            {"Mounts": [{"Type": "volume", "Source": "a,target=/etc", "Target": "/x"}]},
            {},
            "HostConfig.Mounts[0]",
        ),
        ({"Mounts": {"Type": "volume"}}, {}, "HostConfig.Mounts"),
        ({"Ulimits": [{"Name": "nofile", "Soft": "1", "Hard": 2}]}, {}, "HostConfig.Ulimits"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 9, "Hard": 2}]}, {}, "HostConfig.Ulimits"),
        ({"Privileged": 1}, {}, "HostConfig.Privileged"),
        ({"SecurityOpt": ["apparmor=x"]}, {}, "HostConfig.SecurityOpt"),
        ({"Sysctls": {"kernel.hostname": "x"}}, {}, "HostConfig.Sysctls"),
        ({"Devices": [{"PathOnHost": "/dev/a:/dev/b"}]}, {}, "HostConfig.Devices"),
        ({"ShmSize": "64m"}, {}, "HostConfig.ShmSize"),
        ({"OomScoreAdj": 5000}, {}, "HostConfig.OomScoreAdj"),
        ({"CpusetCpus": "a"}, {}, "HostConfig.CpusetCpus"),
        ({"Dns": ["not-an-ip"]}, {}, "HostConfig.Dns"),
        ({"ExtraHosts": ["nohost"]}, {}, "HostConfig.ExtraHosts"),
        ({"VolumesFrom": ["other:z"]}, {}, "HostConfig.VolumesFrom"),
        ({"VolumesFrom": [":ro"]}, {}, "HostConfig.VolumesFrom"),
        ({"PublishAllPorts": "1"}, {}, "HostConfig.PublishAllPorts"),
        ({}, {"StopSignal": "SIGNOPE"}, "StopSignal"),
        ({}, {"StopSignal": 2}, "StopSignal"),
        ({}, {"StopTimeout": "10"}, "StopTimeout"),
        ({}, {"Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck.Test"),
        ({}, {"Healthcheck": {"Test": ["CMD-SHELL", "x"], "Interval": 5}}, "Healthcheck.Interval"),
        ({}, {"Healthcheck": {"Test": ["CMD-SHELL", "x"], "Retries": "3"}}, "Healthcheck.Retries"),
    ],
)
def test_refusals_name_the_field(host: dict[str, Any], config: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as e:
        create_options({"Image": "bb", "HostConfig": host, **config}, None)
    assert e.value.status == 400 and field in e.value.message
