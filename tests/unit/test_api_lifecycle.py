"""The Docker API's lifecycle and resource shapes (issue 15): stats, events, networks, volumes,
filters and the update body, as pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h11")

from nspawnctl.api import resources
from nspawnctl.api.handlers import routes
from nspawnctl.api.handlers.containers import _name_pattern
from nspawnctl.api.handlers.lifecycle import update_change
from nspawnctl.api.http import ApiError
from nspawnctl.run.events import Event
from nspawnctl.run.stats import Sample
from nspawnctl.spec import ContainerSpec
from nspawnctl.status import ContainerStatus
from nspawnctl.store.volumes import VolumeInfo


def spec(name: str, network: str = "host", labels: dict[str, str] | None = None) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        id=name * 8,
        image="bb",
        image_id="sha256:1",
        created="2026-12-07T07:00:00+00:00",
        command=["sh"],
        network=network,
        labels=labels or {},
    )


@pytest.mark.parametrize(
    ("method", "path", "handler"),
    [
        ("POST", "/containers/abc/pause", "pause"),
        ("POST", "/containers/abc/unpause", "unpause"),
        ("POST", "/containers/abc/rename", "rename"),
        ("GET", "/containers/abc/top", "top"),
        ("GET", "/containers/abc/stats", "stats"),
        ("POST", "/containers/abc/update", "update"),
        ("POST", "/containers/prune", "prune"),
        ("GET", "/events", "events"),
        ("GET", "/networks", "list_networks"),
        ("GET", "/networks/bridge", "inspect"),
        ("POST", "/networks/create", "create"),
        ("GET", "/volumes", "list_volumes"),
        ("POST", "/volumes/create", "create"),
        ("POST", "/volumes/prune", "prune"),
        ("GET", "/volumes/v1", "inspect"),
        ("DELETE", "/volumes/v1", "remove"),
        ("GET", "/system/df", "df"),
        ("POST", "/images/prune", "prune_images"),
        ("POST", "/build/prune", "prune_build_cache"),
        ("POST", "/networks/prune", "prune"),
    ],
)
def test_routes(method: str, path: str, handler: str) -> None:
    assert routes().route(method, path)[0].__name__ == handler


def test_filters_query_both_forms_and_unknown_keys() -> None:
    assert resources.parse_filters(
        '{"label": ["a=1", "b"], "status": {"exited": true}}', ("label", "status")
    ) == {
        "label": ["a=1", "b"],
        "status": ["exited"],
    }
    assert resources.parse_filters(None, ("x",)) == {}
    with pytest.raises(ApiError, match="invalid filter 'colour'") as e:
        resources.parse_filters('{"colour": ["red"]}', ("label",))
    assert e.value.status == 400
    with pytest.raises(ApiError, match="malformed"):
        resources.parse_filters("{", ("label",))
    assert resources.filter_words({"label": ["a=1", "b"]}) == ["label=a=1", "label=b"]


def test_name_filter_as_docker_matches_slash_names() -> None:
    assert _name_pattern("^/web$") == "^web$"
    assert _name_pattern("/web") == "web"
    assert _name_pattern("we") == "we"


def test_host_cpu_time_from_proc_stat() -> None:
    text = "cpu  100 20 30 400 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert resources.host_cpu_ns(text, 100) == (100 + 20 + 30 + 400 + 5 + 6 + 7 + 8) * 10_000_000
    assert resources.host_cpu_ns("", 100) == 0


def _docker_cli_cpu_percent(msg: dict[str, Any]) -> float:
    """The docker CLI's calculateCPUPercentUnix."""
    cpu, pre = msg["cpu_stats"], msg["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system_delta = cpu["system_cpu_usage"] - pre.get("system_cpu_usage", 0)
    return (
        cpu_delta / system_delta * cpu["online_cpus"] * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    )


def test_stats_message_gives_the_docker_cli_sane_numbers() -> None:
    before = resources.Reading(
        Sample("i" * 64, "web", 0, True, 10 << 20, 100 << 20, 1_000_000_000, 4096, 8192, 3, 10, 20),
        1_700_000_000_000_000_000,
        200_000_000_000,
    )
    # a second later: half a CPU's second used, 2 CPUs gave 2 s of host CPU time
    now = resources.Reading(
        Sample("i" * 64, "web", 1, True, 20 << 20, 100 << 20, 1_500_000_000, 4096, 8192, 4, 110, 220),
        1_700_000_001_000_000_000,
        202_000_000_000,
    )
    msg = resources.stats_json(now, before, 2, with_networks=True)
    assert msg["name"] == "/web" and msg["id"] == "i" * 64
    assert msg["read"] == "2023-11-14T22:13:21.000000000Z" and msg["preread"].startswith(
        "2023-11-14T22:13:20"
    )
    assert _docker_cli_cpu_percent(msg) == pytest.approx(50.0)
    assert msg["memory_stats"] == {"usage": 20 << 20, "stats": {}, "limit": 100 << 20}
    assert msg["pids_stats"] == {"current": 4}
    assert msg["networks"]["eth0"]["rx_bytes"] == 110 and msg["networks"]["eth0"]["tx_bytes"] == 220
    ops = {e["op"]: e["value"] for e in msg["blkio_stats"]["io_service_bytes_recursive"]}
    assert ops == {"read": 4096, "write": 8192}
    one_shot = resources.stats_json(now, None, 2, with_networks=False)
    assert "networks" not in one_shot and one_shot["preread"] == resources.ZERO_TIME
    assert one_shot["precpu_stats"]["cpu_usage"] == {"total_usage": 0}
    assert "system_cpu_usage" not in one_shot["precpu_stats"]


def test_stats_of_a_stopped_container_are_empty_as_dockerd() -> None:
    msg = resources.stats_json(resources.Reading(Sample("i", "web", 0), 5, 6), None, 2, True)
    assert msg["read"] == resources.ZERO_TIME and msg["memory_stats"] == {} and msg["pids_stats"] == {}
    assert "networks" not in msg and msg["cpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_events_carry_docker_fields_and_the_container_labels() -> None:
    e = Event("die", "c" * 64, "web", "bb:1", 1_700_000_000_123_456_789, {"exitCode": "3"})
    msg = resources.event_json(e, {"team": "a", "name": "shadowed"})
    assert msg["Type"] == "container" and msg["Action"] == "die" and msg["status"] == "die"
    assert msg["time"] == 1_700_000_000 and msg["timeNano"] == 1_700_000_000_123_456_789
    assert msg["Actor"] == {
        "ID": "c" * 64,
        "Attributes": {"team": "a", "name": "web", "image": "bb:1", "exitCode": "3"},
    }
    assert resources.label_matches(["team", "team=a"], {"team": "a"})
    assert not resources.label_matches(["team=b"], {"team": "a"})


def test_networks_builtin_zones_and_members() -> None:
    assert [
        resources.network_name(m) for m in ("veth", "host", "none", "private", "zone:web", "bridge:br0")
    ] == [
        "bridge",
        "host",
        "none",
        "none",
        "web",
        "br0",
    ]
    statuses = [
        ContainerStatus(spec("a", "zone:web"), "running"),
        ContainerStatus(spec("b", "veth"), "exited"),
        ContainerStatus(spec("c", "zone:db"), "created"),
    ]
    nets = resources.networks(statuses, {"web": "10.0.3.0/24"})
    assert [n.name for n in nets] == ["bridge", "host", "none", "web", "db"]
    drivers = {n.name: n.driver for n in nets}
    assert drivers == {"bridge": "bridge", "host": "host", "none": "null", "web": "bridge", "db": "bridge"}
    web = resources.find_network(nets, "web").to_json()
    assert web["IPAM"]["Config"] == [{"Subnet": "10.0.3.0/24", "Gateway": "10.0.3.1"}]
    assert web["Scope"] == "local"
    assert list(web["Containers"]) == ["a" * 8]  # running members only
    assert web["Containers"]["a" * 8]["Name"] == "a"
    assert len(web["Id"]) == 64 and resources.find_network(nets, web["Id"][:12]).name == "web"
    with pytest.raises(ApiError) as e:
        resources.find_network(nets, "nope")
    assert e.value.status == 404


def test_volumes_shape_and_filters(tmp_path: Path) -> None:
    named = VolumeInfo("data", tmp_path, "2026-12-07T07:00:00Z", {"k": "v"}, ["web"])
    anon = VolumeInfo("ab" * 32, tmp_path, "2026-12-07T07:00:00Z")
    msg = resources.volume_json(named)
    assert msg["Name"] == "data" and msg["Driver"] == "local" and msg["Labels"] == {"k": "v"}
    assert msg["Mountpoint"] == str(tmp_path) and msg["UsageData"]["RefCount"] == 1
    from nspawnctl.errors import InvalidArgument
    from nspawnctl.listfilters import VOLUME_KEYS, parse_list_filters, volume_subject

    def match(info: VolumeInfo, *words: str) -> bool:
        return parse_list_filters(words, VOLUME_KEYS).matches(volume_subject(info))

    assert match(named, "name=at", "label=k=v", "dangling=false")
    assert not match(named, "dangling=true")
    assert match(anon, "dangling=1", "driver=local")
    with pytest.raises(InvalidArgument, match="dangling"):
        match(anon, "dangling=maybe")


def test_update_body_becomes_the_library_update() -> None:
    change = update_change(
        {"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 50, "MemorySwappiness": -1, "CpuShares": 0}
    )
    assert change.memory.bytes == 64 << 20 and change.cpus.usec == 500_000 and change.pids.count == 50
    assert change.restart is None
    assert update_change({"CpuQuota": 50_000, "CpuPeriod": 100_000}).cpus.usec == 500_000
    assert update_change({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}).restart == "always"
    assert update_change({"RestartPolicy": {"Name": ""}}).empty
    # docker-py's form: the retry count goes with on-failure (docker's on-failure:N)
    on_failure = {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 42}}
    assert update_change(on_failure).restart == "on-failure:42"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"CpuShares": 1}, "CpuShares"),
        ({"BlkioWeight": 300}, "BlkioWeight"),
        ({"Memory": "64m"}, "Memory"),
        ({"PidsLimit": -1}, "PidsLimit"),
        ({"NanoCpus": 1, "CpuQuota": 1}, "NanoCpus"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "MaximumRetryCount"),
        ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "MaximumRetryCount"),
        ([], "body"),
    ],
)
def test_update_refuses_what_it_cannot_apply_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(ApiError, match=field) as e:
        update_change(body)
    assert e.value.status == 400


def test_create_labels_reach_the_run_options() -> None:
    from nspawnctl.api.translate import create_options

    _req, options = create_options({"Image": "bb", "Labels": {"team": "life", "x": ""}}, "web")
    assert options.labels == {"team": "life", "x": ""}
