"""Declared networks (net/networks.py): the declaration files, names, subnets, removal while
attached, the --network value, connect/disconnect of a definition, and aliases in hosts files."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import Conflict, InvalidArgument, NotFound
from nspawnctl.listfilters import NETWORK_PRUNE_KEYS, parse_list_filters
from nspawnctl.net import names, networks, statefile, zone
from nspawnctl.runopts import RunSettings, parse_network_alias
from nspawnctl.spec import ContainerSpec


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setattr(statefile, "RUN_DIR", tmp_path / "run")
    monkeypatch.setattr(names, "NETNS_DIR", tmp_path / "netns")
    (tmp_path / "netns").mkdir()
    monkeypatch.setenv("NSPAWNCTL_NETWORKD_DIR", str(tmp_path / "networkd"))
    monkeypatch.setattr(networks, "reload_networkd", lambda: None)
    monkeypatch.setattr(networks, "_bridge_ports", lambda name: False)
    return Paths(
        pool=tmp_path / "pool",
        store=tmp_path / "store",
        settings=tmp_path / "settings",
        runtime_settings=tmp_path / "rsettings",
    )


def test_create_records_a_declaration_with_a_stable_id(paths: Paths) -> None:
    decl = networks.create(paths, "appnet", labels={"tier": "web"})
    assert len(decl.id) == 64 and int(decl.id, 16) >= 0
    saved = json.loads((paths.store / "networks" / "appnet.json").read_text())
    assert saved["id"] == decl.id and saved["labels"] == {"tier": "web"} and saved["subnet"] is None
    assert networks.get(paths, "appnet") == decl
    assert networks.get(paths, decl.id[:10]) == decl  # by ID prefix, as docker
    assert [n.name for n in networks.list(paths)] == ["appnet"]
    assert not (Path(str(networks.networkd_dir())) / "70-nspawnctl-vz-appnet.network").exists()


def test_duplicate_builtin_and_bad_names_are_refused(paths: Paths) -> None:
    networks.create(paths, "appnet")
    with pytest.raises(Conflict, match="already exists"):
        networks.create(paths, "appnet")
    with pytest.raises(Conflict, match="already exists"):
        networks.create(paths, "bridge")
    for bad in ("a/b", "", "a b", "-x", "x" * 129):
        with pytest.raises(InvalidArgument):
            networks.create(paths, bad)
    assert [n.name for n in networks.list(paths)] == ["appnet"]


def test_subnet_writes_a_networkd_file_and_overlaps_are_refused(paths: Paths) -> None:
    decl = networks.create(paths, "lan", subnet="10.89.7.0/24")
    assert decl.gateway == "10.89.7.1"
    text = networks.networkd_file("lan").read_text()
    assert "Name=vz-lan" in text and "Address=10.89.7.1/24" in text and "IPMasquerade=ipv4" in text
    with pytest.raises(Conflict, match="overlaps"):
        networks.create(paths, "lan2", subnet="10.89.0.0/16")
    for bad in ("10.89.8.1/24", "8.8.8.0/24", "10.0.0.0/31", "nonsense"):
        with pytest.raises(InvalidArgument):
            networks.create(paths, "lan3", subnet=bad)
    networks.remove(paths, "lan")
    assert not networks.networkd_file("lan").exists()


def test_internal_is_refused_by_the_library_and_leaves_nothing(paths: Paths) -> None:
    for subnet in (None, "10.89.9.0/24"):
        with pytest.raises(networks.InternalNotSupported, match="internal networks are not supported"):
            networks.create(paths, "iso", subnet=subnet, internal=True)
    assert networks.list(paths) == [] and not networks.networkd_file("iso").exists()


def test_unowned_networkd_files_are_swept(paths: Paths) -> None:
    networks.create(paths, "lan", subnet="10.89.7.0/24")
    orphan = networks.networkd_file("ghost")  # a file no declaration owns (a killed create/remove)
    orphan.write_text("[Match]\nName=vz-ghost\n")
    networks.create(paths, "other")  # any change under the networks lock sweeps
    assert not orphan.exists() and networks.networkd_file("lan").exists()
    orphan.write_text("[Match]\nName=vz-ghost\n")
    assert networks.prune(paths, parse_list_filters(["label=nomatch=1"], NETWORK_PRUNE_KEYS)) == []
    assert orphan.exists(), "a filtered prune removes only what its filters select: no sweep"
    assert networks.prune(paths) == ["lan", "other"]
    assert not orphan.exists()


def test_a_failed_networkd_write_leaves_no_declaration(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(decl: networks.NetworkDecl) -> str:
        assert (paths.store / "networks" / "lan.json").exists()  # the declaration comes first
        raise OSError("disk full")

    monkeypatch.setattr(networks, "networkd_text", boom)
    with pytest.raises(OSError):
        networks.create(paths, "lan", subnet="10.89.7.0/24")
    assert networks.list(paths) == [] and list(networks.networkd_dir().iterdir()) == []


def test_concurrent_overlapping_creates_one_wins(paths: Paths) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def make(i: int) -> str:
        try:
            return networks.create(paths, f"n{i}", subnet=f"10.90.{i}.0/24" if i % 2 else "10.90.0.0/16").name
        except Conflict:
            return ""

    with ThreadPoolExecutor(8) as pool:
        made = [n for n in pool.map(make, range(16)) if n]
    nets = [ipaddress.IPv4Network(d.subnet) for d in networks.list(paths) if d.subnet]
    assert len(made) == len(nets) >= 1
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_remove_refused_while_a_member_runs(paths: Paths) -> None:
    decl = networks.create(paths, "appnet")
    with zone.locked("appnet") as zf:
        zf.leases["web"] = "10.0.7.2"
    (names.NETNS_DIR / names.netns_name("web")).touch()  # web's namespace: it runs
    with pytest.raises(Conflict, match=f"network appnet id {decl.id} has active endpoints"):
        networks.remove(paths, "appnet")
    assert networks.prune(paths) == []
    (names.NETNS_DIR / names.netns_name("web")).unlink()  # a stale lease does not hold it
    assert networks.prune(paths) == ["appnet"]
    with pytest.raises(NotFound):
        networks.remove(paths, "appnet")


def test_prune_by_label(paths: Paths) -> None:
    networks.create(paths, "a", labels={"keep": "no"})
    networks.create(paths, "b")
    networks.create(paths, "c", labels={"keep": "yes"})

    def prune(*words: str, now: float | None = None) -> list[str]:
        return networks.prune(paths, parse_list_filters(words, NETWORK_PRUNE_KEYS, now))

    assert prune("label=keep=no") == ["a"]
    assert [n.name for n in networks.list(paths)] == ["b", "c"]
    assert prune("until=1h") == []  # made just now
    assert prune("label!=keep") == ["b"]
    assert prune("until=1h", now=time.time() + 7200) == ["c"]
    assert networks.list(paths) == []


def test_network_values(paths: Paths) -> None:
    networks.create(paths, "appnet")
    assert networks.parse(paths, "appnet") == "zone:appnet"
    assert networks.parse(paths, "zone:other") == "zone:other"  # made at first use, as before
    assert networks.parse(paths, "bridge") == "veth"
    assert networks.parse(paths, "host") == "host"
    with pytest.raises(NotFound, match="network nosuch not found"):
        networks.parse(paths, "nosuch")
    with pytest.raises(InvalidArgument):
        networks.parse(paths, "bad/name")


def test_connect_and_disconnect_change_the_definition() -> None:
    spec = ContainerSpec(name="web", id="a" * 64, image="img", image_id="b" * 64, created="", network="veth")
    joined = networks.connect_spec(spec, "appnet", ["www", "www"])
    assert joined.network == "zone:appnet" and joined.settings.network_aliases == ("www",)
    with pytest.raises(Conflict, match="already exists in network appnet"):
        networks.connect_spec(joined, "appnet")
    with pytest.raises(Conflict, match="one network"):
        networks.connect_spec(joined, "other")
    left = networks.disconnect_spec(joined, "appnet")
    assert left.network == "none" and left.settings.network_aliases == ()
    with pytest.raises(Conflict, match="not connected"):
        networks.disconnect_spec(left, "appnet")


def test_alias_names() -> None:
    assert parse_network_alias("db-primary.local") == "db-primary.local"
    for bad in ("", "a b", "x/y", "-x"):
        with pytest.raises(InvalidArgument):
            parse_network_alias(bad)


def test_members_hosts_files_name_aliases(paths: Paths) -> None:
    from nspawnctl.nspawnfile import NspawnFile
    from nspawnctl.runopts import to_file

    paths.settings.mkdir()
    for name, aliases in (("web", ("www",)), ("db", ("database", "pg"))):
        f = NspawnFile()
        to_file(RunSettings(network_aliases=aliases), f)
        f.save(paths.settings / f"{name}.nspawn")
        (paths.pool / name / "etc").mkdir(parents=True)
    zf = zone.ZoneFile("appnet", leases={"web": "10.0.7.2", "db": "10.0.7.3"})
    zone.write_hosts(paths, zf)
    hosts = (paths.pool / "web" / "etc" / "hosts").read_text()
    assert "10.0.7.3\tdb\n" in hosts and "10.0.7.3\tdatabase pg\n" in hosts and "10.0.7.2\twww\n" in hosts
    assert (paths.pool / "db" / "etc" / "hosts").read_text() == hosts


def test_records_are_dockers_shape_once_for_both_front_ends(paths: Paths) -> None:
    decl = networks.create(paths, "lan", subnet="10.89.9.0/24", labels={"a": "b"})
    recs = networks.records(
        [decl],
        {"lan": "10.89.9.0/24", "free": "10.0.4.0/24"},
        [("web", "zone:lan"), ("db", "bridge:br0"), ("x", "veth")],
        [("zone:lan", networks.Endpoint("web", "c" * 64, "10.89.9.2/24"))],
    )
    assert [r.name for r in recs] == ["bridge", "host", "none", "lan", "free", "br0"]
    assert [r.driver for r in recs[:3]] == ["bridge", "host", "null"]
    free = recs[4].to_json()
    assert free["Id"] == networks.zone_id("free") and free["IPAM"]["Config"] == [  # type: ignore[index]
        {"Subnet": "10.0.4.0/24", "Gateway": "10.0.4.1"}
    ]
    out = recs[3].to_json()
    assert out["Options"] == {"nspawnctl.network": "zone", "com.docker.network.bridge.name": "vz-lan"}
    assert out["Id"] == decl.id and out["Driver"] == "bridge" and out["Labels"] == {"a": "b"}
    assert out["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "10.89.9.0/24", "Gateway": "10.89.9.1"}],
    }
    assert out["Containers"] == {
        "c" * 64: {
            "Name": "web",
            "EndpointID": "",
            "MacAddress": "",
            "IPv4Address": "10.89.9.2/24",
            "IPv6Address": "",
        }
    }


def test_api_networking_config() -> None:
    from nspawnctl.api.http import ApiError
    from nspawnctl.api.translate import networking

    ep = {"EndpointsConfig": {"appnet": {"Aliases": ["hello"], "DriverOpts": {"key1": "a"}, "NetworkID": ""}}}
    network, endpoint = networking({"NetworkingConfig": ep}, "appnet")
    assert network == "appnet" and endpoint is not None
    assert endpoint.aliases == ("hello",) and endpoint.driver_opts == (("key1", "a"),)
    assert networking({"NetworkingConfig": ep}, "")[0] == "appnet"  # the endpoint names the network
    assert networking({"NetworkingConfig": {"appnet": None}}, "appnet") == ("appnet", None)  # docker-py's
    assert networking({}, "bridge") == (None, None) and networking({}, "host") == ("host", None)
    two = {"EndpointsConfig": {"appnet": {}, "bar": {"Aliases": ["x"]}}}
    bad: list[tuple[dict[str, object], str, str]] = [
        ({"NetworkingConfig": two}, "appnet", "one network"),
        ({"NetworkingConfig": {"EndpointsConfig": {"bar": {}}}}, "appnet", "not the container's network"),
        (
            {
                "NetworkingConfig": {
                    "EndpointsConfig": {"appnet": {"IPAMConfig": {"IPv4Address": "10.1.1.9"}}}
                }
            },
            "appnet",
            "IPAMConfig",
        ),
        ({"NetworkingConfig": {"EndpointsConfig": {"appnet": {"Aliases": ["a b"]}}}}, "appnet", "alias"),
        ({}, "container:web", "container:web"),
    ]
    for body, mode, words in bad:
        with pytest.raises(ApiError, match=words) as e:
            networking(body, mode)
        assert e.value.status == 400
    # the endpoint's MacAddress is the container's host0 (run_settings reads it), not refused here
    mac = {"NetworkingConfig": {"EndpointsConfig": {"appnet": {"MacAddress": "02:42:ac:11:00:02"}}}}
    assert networking(mac, "appnet")[0] == "appnet"


def test_api_network_create_body() -> None:
    from nspawnctl.api.handlers.networks import create_args
    from nspawnctl.api.http import ApiError

    body = {
        "Name": "lan",
        "Driver": "bridge",
        "CheckDuplicate": True,
        "Labels": {"a": "b"},
        "IPAM": {
            "Driver": "default",
            "Config": [{"Subnet": "10.89.3.0/24", "Gateway": "10.89.3.1"}],
            "Options": {},
        },
        "Internal": True,
        "Options": {},
        "EnableIPv6": False,
    }
    assert create_args(body) == ("lan", "10.89.3.0/24", True, {"a": "b"})
    for change, words in (
        ({"Driver": "overlay"}, "Driver"),
        ({"Name": ""}, "Name"),
        ({"EnableIPv6": True}, "EnableIPv6"),
        ({"Options": {"com.docker.network.bridge.name": "x"}}, "Options"),
        ({"IPAM": {"Config": [{"Subnet": "10.89.3.0/24", "Gateway": "10.89.3.9"}]}}, "Gateway"),
        ({"IPAM": {"Config": [{"IPRange": "10.89.3.0/25"}]}}, "IPRange"),
        ({"Labels": {"a": 1}}, "Labels"),
    ):
        with pytest.raises(ApiError, match=words) as e:
            create_args({**body, **change})
        assert e.value.status == 400


def test_a_long_name_gets_a_zone_of_its_id(paths: Paths) -> None:
    decl = networks.create(paths, "dockerpytest_5f9eb50c7810c08f", subnet="10.89.5.0/24")
    assert decl.zone == "n" + decl.id[:11] and len(f"vz-{decl.zone}") <= 15
    assert networks.parse(paths, decl.name) == f"zone:{decl.zone}"
    assert networks.by_zone(paths, decl.zone) == decl and networks.get(paths, decl.name) == decl
    assert f"Name=vz-{decl.zone}" in networks.networkd_file(decl.zone).read_text()
    (rec,) = [
        r for r in networks.records([decl], {decl.zone: None}, [("w", f"zone:{decl.zone}")], []) if r.decl
    ]
    assert rec.name == decl.name and rec.zone == decl.zone and rec.to_json()["Name"] == decl.name
    short = networks.create(paths, "short")
    assert short.zone == "short"
    networks.remove(paths, decl.name)
    assert not networks.networkd_file(decl.zone).exists()


class _Store:
    def __init__(self, spec: ContainerSpec) -> None:
        self.spec, self.written, self.held = spec, [], False  # type: ignore[var-annotated]

    def get(self, name: str) -> ContainerSpec:
        return self.spec

    def definition(self, name: str) -> tuple[None, None]:
        return None, None

    def rewrite(self, spec: ContainerSpec, base: object = None) -> None:
        assert self.held  # every rewrite under the container's lock
        self.spec = spec
        self.written.append(spec)

    @contextlib.asynccontextmanager
    async def alocked(self, name: str) -> AsyncIterator[None]:
        self.held = True
        try:
            yield
        finally:
            self.held = False


class _Runtime:
    """The unit's state as read under the lock: running, a start queued, or nothing."""

    def __init__(self, store: _Store, state: str) -> None:
        self.store, self.state = store, state

    async def busy(self, name: str) -> object:
        assert self.store.held  # read under the lock, right before the rewrite
        from nspawnctl.systemd.manager import UnitState

        if self.state == "running":
            return UnitState("nspawnctl-web.service", "loaded", "active", "running")
        if self.state == "queued":
            return UnitState("nspawnctl-web.service", "loaded", "inactive", "dead", job_id=7)
        return None


def test_membership_change_refuses_a_running_or_starting_container_under_the_lock() -> None:
    import asyncio

    from nspawnctl.errors import ContainerRunning
    from nspawnctl.systemd.manager import UnitState

    assert UnitState("u", "loaded", "inactive", "dead", job_id=3).busy
    assert not UnitState("u", "loaded", "inactive", "dead").busy
    spec = ContainerSpec(name="web", id="a" * 64, image="img", image_id="b" * 64, created="", network="veth")

    def join(s: ContainerSpec) -> ContainerSpec:
        return networks.connect_spec(s, "appnet", ["www"])

    for state in ("running", "queued"):
        store = _Store(spec)
        with pytest.raises(ContainerRunning, match="stopped containers only"):
            asyncio.run(networks.achange_definition(_Runtime(store, state), store, "web", join))  # type: ignore[arg-type]
        assert store.written == [] and not store.held
    store = _Store(spec)
    new = asyncio.run(networks.achange_definition(_Runtime(store, ""), store, "web", join))  # type: ignore[arg-type]
    assert new.network == "zone:appnet" and store.written == [new] and not store.held
    left = asyncio.run(
        networks.achange_definition(  # type: ignore[arg-type]
            _Runtime(store, ""), store, "web", lambda s: networks.disconnect_spec(s, "appnet")
        )
    )
    assert left.network == "none"
