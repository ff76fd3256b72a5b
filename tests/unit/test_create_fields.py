"""--cpu-shares, --memory-swap, --cgroupns, --isolation, --volume-driver, --mac-address and their
create fields: checked once at their type, kept in the definition, turned into unit properties."""

from __future__ import annotations

from typing import Any

import pytest

from nspawnctl.cpumem import check_swap, cpu_weight, parse_cpu_shares, parse_memory_swap, swap_max
from nspawnctl.errors import InvalidArgument
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.runflags import SettingsInput, build
from nspawnctl.runopts import (
    RunSettings,
    check_mac_network,
    check_volume_driver,
    from_file,
    to_file,
    unit_settings,
)

GiB = 1 << 30


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (3, 2), (512, 59), (1024, 100), (2048, 174), (262143, 10000), (262144, 10000)],
)
def test_cpu_shares_become_runc_s_weight(shares: int, weight: int) -> None:
    assert cpu_weight(shares) == weight


@pytest.mark.parametrize("text", ["0", "1", "262145", "-5", "1.5", "", "lots"])
def test_cpu_shares_out_of_range_name_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--cpu-shares"):
        parse_cpu_shares(text)


def test_memory_swap_is_memory_plus_swap() -> None:
    assert parse_memory_swap("1G") == GiB and parse_memory_swap("-1") == -1
    assert swap_max(GiB, 700 << 20) == GiB - (700 << 20)
    assert swap_max(-1, GiB) == 2**64 - 1
    check_swap(GiB, GiB)  # equal: no swap, allowed
    check_swap(-1, None)  # unlimited swap and no memory limit: nothing to limit
    with pytest.raises(InvalidArgument, match="needs a memory limit"):
        check_swap(GiB, None)
    with pytest.raises(InvalidArgument, match="below the memory limit"):
        check_swap(GiB, 2 * GiB)
    with pytest.raises(InvalidArgument, match="--memory-swap"):
        parse_memory_swap("-2")


def test_settings_round_trip_through_the_definition_and_reach_the_unit() -> None:
    s = build(
        SettingsInput(
            cpu_shares="512", memory_swap="1g", isolation="default", volume_driver="local",
            cgroupns="private", mac_address="02:42:AC:11:00:0A",
        )
    )  # fmt: skip
    assert (s.cpu_shares, s.memory_swap, s.isolation, s.volume_driver) == (512, GiB, "default", "local")
    assert s.mac_address == "02:42:ac:11:00:0a"
    f = NspawnFile()
    to_file(s, f)
    text = f.render()
    for line in ("CPUShares=512", f"MemorySwap={GiB}", "Isolation=default", "VolumeDriver=local"):
        assert line in text
    assert "MacAddress=02:42:ac:11:00:0a" in text
    assert from_file(NspawnFile.parse(text)) == s
    props = dict(unit_settings(s, memory=700 << 20))
    assert props["CPUWeight"] == "59" and props["MemorySwapMax"] == str(GiB - (700 << 20))
    unlimited = dict(unit_settings(RunSettings(memory_swap=-1), memory=GiB))
    assert unlimited["MemorySwapMax"] == "infinity"
    shown = s.to_json()
    assert (shown["CpuShares"], shown["MemorySwap"], shown["Isolation"]) == (512, GiB, "default")
    assert (shown["CgroupnsMode"], shown["VolumeDriver"]) == ("private", "local")


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("cgroupns", "host", "--cgroupns"),
        ("isolation", "hyperv", "--isolation"),
        ("volume_driver", "bad name", "--volume-driver"),
        ("mac_address", "01:00:5e:00:00:01", "--mac-address"),  # multicast
        ("mac_address", "02:42:ac:11:00", "--mac-address"),
        ("memory_swap", "lots", "--memory-swap"),
    ],
)
def test_refused_values_name_the_flag(field: str, value: str, flag: str) -> None:
    with pytest.raises(InvalidArgument, match=flag):
        build(SettingsInput(**{field: value}))


def test_driver_and_mac_need_what_they_act_on() -> None:
    check_volume_driver(RunSettings(volume_driver="foo"), makes_volumes=False)  # docker keeps it
    with pytest.raises(InvalidArgument, match="'foo' is not available"):
        check_volume_driver(RunSettings(volume_driver="foo"), makes_volumes=True)
    mac = RunSettings(mac_address="02:42:ac:11:00:0a")
    check_mac_network(mac, "veth")
    check_mac_network(mac, "zone:web")
    with pytest.raises(InvalidArgument, match="--mac-address"):
        check_mac_network(mac, "host")


def test_veth_peer_gets_the_address() -> None:
    from nspawnctl.net.rtnl import new_veth

    mac = bytes.fromhex("0242ac11000a")
    assert mac in new_veth("ve-x", "host0", 3, mac)
    assert mac not in new_veth("ve-x", "host0", 3)


def test_mount_volume_options() -> None:
    from nspawnctl.runflags import Mount
    from nspawnctl.runopts import VolumeOptions

    m = Mount.parse("type=volume,src=data,dst=/d,volume-nocopy,volume-label=a=b=c")
    assert m.options == VolumeOptions(True, (("a", "b=c"),))
    sub = Mount.parse("type=volume,src=data,dst=/d,volume-subpath=x//y/")  # bound from an fd
    assert sub.options == VolumeOptions(subpath="x/y")
    assert Mount.parse("type=volume,dst=/d,volume-driver=local").options == VolumeOptions()
    for bad in (
        "type=volume,src=data,dst=/d,volume-subpath=../etc",
        "type=volume,src=data,dst=/d,volume-subpath=/abs",
        "type=volume,dst=/d,volume-subpath=x",  # an anonymous volume has no subdirectory
        "type=bind,src=/srv,dst=/d,volume-nocopy",
        "type=volume,dst=/d,volume-driver=nfs",
    ):
        with pytest.raises(InvalidArgument):
            Mount.parse(bad)


def test_subpath_stays_inside_the_volume(tmp_path: Any) -> None:
    from nspawnctl.config import Paths
    from nspawnctl.store.subpath import may_be_subpath
    from nspawnctl.store.volumes import VolumeStore

    store = VolumeStore(Paths(store=tmp_path), dict)
    vol = store.root / "v"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "f").write_text("x")
    (vol / "link").symlink_to("/etc")
    store.exists = lambda name: name == "v"  # type: ignore[method-assign]  # no btrfs here
    assert store.subpath("v", "sub") == vol / "sub" and store.subpath("v", "sub/f") == vol / "sub" / "f"
    for bad in ("link", "link/passwd", "missing", "sub/../../x"):
        with pytest.raises(InvalidArgument):
            store.subpath("v", bad)
    assert store.owner_of(str(vol / "sub")) == "v" and store.owner_of(str(vol)) == "v"
    assert store.owner_of("/srv/x") is None
    assert may_be_subpath(str(vol / "sub")) and not may_be_subpath(str(vol))


# -- the Docker API's create and update ------------------------------------------------------------
pytest.importorskip("h11")


def _create(host: dict[str, Any], **config: Any) -> tuple[Any, Any]:
    from nspawnctl.api.translate import create_options

    return create_options({"Image": "bb", "HostConfig": host, **config}, None)


def test_api_create_fields() -> None:
    from nspawnctl.api.run_settings import SWAPPINESS_DISCARDED

    req, opts = _create(
        {"CpuShares": 512, "Memory": 700 << 20, "MemorySwap": GiB, "MemorySwappiness": 40,
         "CgroupnsMode": "private", "Isolation": "default", "VolumeDriver": "local"},
        MacAddress="02:42:ac:11:00:0a",
    )  # fmt: skip
    s = opts.settings
    assert (s.cpu_shares, s.memory_swap, s.isolation, s.volume_driver) == (512, GiB, "default", "local")
    assert s.mac_address == "02:42:ac:11:00:0a"
    assert req.warnings == (SWAPPINESS_DISCARDED,)
    req, opts = _create({"MemorySwappiness": -1, "CpuShares": 0, "MemorySwap": 0, "Isolation": ""})
    assert req.warnings == () and opts.settings == RunSettings()


@pytest.mark.parametrize(
    ("host", "field"),
    [
        ({"CpuShares": 1}, "HostConfig.CpuShares"),
        ({"CpuShares": "512"}, "HostConfig.CpuShares"),
        ({"MemorySwap": GiB}, "HostConfig.MemorySwap"),  # without Memory
        ({"Memory": 2 * GiB, "MemorySwap": GiB}, "HostConfig.MemorySwap"),
        ({"MemorySwappiness": 101}, "HostConfig.MemorySwappiness"),
        ({"CgroupnsMode": "host"}, "HostConfig.CgroupnsMode"),
        ({"Isolation": "process"}, "HostConfig.Isolation"),
    ],
)
def test_api_refusals_name_the_field(host: dict[str, Any], field: str) -> None:
    from nspawnctl.api.http import ApiError

    with pytest.raises(ApiError) as e:
        _create(host)
    assert e.value.status == 400 and field in e.value.message


def test_api_mac_from_the_endpoint() -> None:
    from nspawnctl.api.http import ApiError

    endpoint = {"NetworkingConfig": {"EndpointsConfig": {"default": {"MacAddress": "02:42:AC:11:00:0B"}}}}
    assert _create({}, **endpoint)[1].settings.mac_address == "02:42:ac:11:00:0b"  # the docker CLI's
    assert (
        _create({}, MacAddress="02:42:ac:11:00:0b", **endpoint)[1].settings.mac_address == "02:42:ac:11:00:0b"
    )
    with pytest.raises(ApiError, match="MacAddress"):
        _create({}, MacAddress="02:42:ac:11:00:0c", **endpoint)


def test_api_volume_options() -> None:
    from nspawnctl.runopts import VolumeOptions

    mount = {
        "Type": "volume", "Source": "data", "Target": "/d", "ReadOnly": True,
        "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"},
                          "DriverConfig": {"Name": "local", "Options": {}}},
    }  # fmt: skip
    _, opts = _create({"Mounts": [mount]})
    assert opts.named_volumes == [("data", "/d", True)]
    assert opts.volume_options == {"/d": VolumeOptions(True, (("k", "v"),))}
    from nspawnctl.api.http import ApiError

    for bad in ({"DriverConfig": {"Name": "nfs"}}, {"DriverConfig": {"Name": "local", "Options": {"o": "x"}}},
                {"Subpath": "../x"}, {"Labels": ["k"]}):  # fmt: skip
        with pytest.raises(ApiError) as e:
            _create({"Mounts": [{**mount, "VolumeOptions": bad}]})
        assert e.value.status == 400 and "Mounts[0]" in e.value.message
    _, opts = _create({"Mounts": [{**mount, "VolumeOptions": {"Subpath": "a/b"}}]})
    assert opts.volume_options == {"/d": VolumeOptions(subpath="a/b")}


def test_api_update_cpu_shares() -> None:
    from nspawnctl.api.handlers.lifecycle import update_change
    from nspawnctl.run.update import unit_changes

    change = update_change({"CpuShares": 3, "MemorySwappiness": -1})
    assert change.cpu_shares == 3 and unit_changes(change) == [("CPUWeight", "t", 2)]
