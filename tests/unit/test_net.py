"""The network layer without a kernel: ``ip``/``nft`` are faked, /run and the pool are temp dirs."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakenet import FakeIp, fake_network

from nspawnctl import net
from nspawnctl.config import Paths
from nspawnctl.errors import InvalidArgument, NetworkError, PortInUse
from nspawnctl.net import detect, files, names, ports, setup, statefile, zone
from nspawnctl.spec import ContainerSpec, PortMapping


def spec(name: str, network: str = "veth", ports: tuple[str, ...] = (), boot: bool = False) -> ContainerSpec:
    return ContainerSpec(
        boot=boot,
        name=name,
        id="0" * 32,
        image="busybox",
        image_id="sha256:" + "ab" * 32,
        created="2026-01-01T00:00:00+00:00",
        network=network,
        ports=[PortMapping.parse(p) for p in ports],
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Paths, FakeIp]:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    return fake_network(tmp_path, monkeypatch.setattr)


def root_of(paths: Paths, name: str) -> Path:
    (paths.pool / name / "etc").mkdir(parents=True, exist_ok=True)
    return paths.pool / name


# -- names -------------------------------------------------------------------------------------


def test_interface_names_fit_and_shortening_is_deterministic() -> None:
    assert net.veth_name("web") == "ve-web" and net.zone_port_name("web") == "vb-web"
    assert net.veth_name("a" * 12) == "ve-" + "a" * 12  # exactly 15: kept
    long1, long2 = net.veth_name("a" * 13), net.veth_name("a" * 14)
    assert len(long1) == len(long2) == 15 and long1 != long2
    assert long1.startswith("ve-aaaaaaaa") and long1 == net.veth_name("a" * 13)
    assert len(net.zone_port_name("x" * 64)) == 15
    assert net.bridge_name("z" * 12) == "vz-" + "z" * 12
    assert net.netns_name("web") == "nspawnctl-web"
    assert net.netns_path("web").endswith("/nspawnctl-web")


# -- addresses ---------------------------------------------------------------------------------


def test_allocation_never_collides_and_reuses_own_lease() -> None:
    gw = ipaddress.IPv4Interface("10.0.7.1/24")
    zf = zone.ZoneFile("z")
    alive = lambda n: True  # noqa: E731
    got = [zone.allocate(zf, f"c{i}", gw, alive) for i in range(5)]
    assert [str(a) for a in got] == [f"10.0.7.{i}" for i in range(2, 7)]
    zf.leases.pop("c1")  # 10.0.7.3 is free again: the lowest free one is taken
    assert str(zone.allocate(zf, "new", gw, alive)) == "10.0.7.3"
    assert str(zone.allocate(zf, "c4", gw, alive)) == "10.0.7.6"  # its own, kept
    # a stale lease naming an address someone else holds now is not reused
    zf.leases["ghost"] = "10.0.7.2"
    zf.leases["c0"] = "10.0.7.2"
    again = zone.allocate(zf, "ghost", gw, alive)
    assert str(again) not in {a for n, a in zf.leases.items() if n != "ghost"}
    assert len(set(zf.leases.values())) == len(zf.leases)


def test_allocation_drops_dead_members_and_other_subnets() -> None:
    gw = ipaddress.IPv4Interface("10.0.7.1/24")
    zf = zone.ZoneFile("z", "10.0.6.0/24", leases={"old": "10.0.6.2", "dead": "10.0.7.2", "live": "10.0.7.3"})
    addr = zone.allocate(zf, "me", gw, alive=lambda n: n == "live")
    assert str(addr) == "10.0.7.2" and zf.leases == {"live": "10.0.7.3", "me": "10.0.7.2"}
    assert zf.subnet == "10.0.7.0/24"


def test_veth_address_is_host_plus_one_and_a_full_zone_is_an_error() -> None:
    assert str(zone.pick_address(ipaddress.IPv4Interface("192.168.5.17/28"), set())) == "192.168.5.18"
    gw = ipaddress.IPv4Interface("10.0.0.1/30")
    assert str(zone.pick_address(gw, set())) == "10.0.0.2"
    with pytest.raises(NetworkError, match="no free address"):
        zone.pick_address(gw, {ipaddress.IPv4Address("10.0.0.2")})


def test_pick_address_wraps_around_and_never_lists_a_big_subnet(monkeypatch: pytest.MonkeyPatch) -> None:
    gw = ipaddress.IPv4Interface("10.0.0.14/28")  # hosts .1-.14: after the gateway comes .1
    assert str(zone.pick_address(gw, set())) == "10.0.0.1"
    assert str(zone.pick_address(gw, {ipaddress.IPv4Address("10.0.0.1")})) == "10.0.0.2"
    big = ipaddress.IPv4Interface("10.0.0.1/8")
    taken = {ipaddress.IPv4Address(f"10.0.0.{i}") for i in range(2, 200)}
    monkeypatch.setattr(ipaddress.IPv4Network, "hosts", None)  # no list of 16.7M hosts
    assert str(zone.pick_address(big, taken)) == "10.0.0.200"


def test_concurrent_leases_are_distinct(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    gw = ipaddress.IPv4Interface("10.0.7.1/24")
    names_ = [f"c{i}" for i in range(24)]
    for n in names_:
        root_of(paths, n)
        (names.NETNS_DIR / net.netns_name(n)).touch()
    got: dict[str, str] = {}
    barrier = threading.Barrier(len(names_))

    def worker(n: str) -> None:
        barrier.wait()
        got[n] = str(zone.lease(paths, "z", n, gw))

    threads = [threading.Thread(target=worker, args=(n,)) for n in names_]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got.values())) == len(names_)
    saved = json.loads((statefile.RUN_DIR / "zones" / "z.json").read_text())["leases"]
    assert saved == got
    # a restart of one member keeps its address
    assert str(zone.lease(paths, "z", "c5", gw)) == got["c5"]
    hosts = (paths.pool / "c0" / "etc" / "hosts").read_text()
    assert all(f"{got[n]}\t{n}\n" in hosts for n in names_)


# -- files in the container root ----------------------------------------------------------------


def test_hosts_file_content() -> None:
    text = files.hosts_file({"web": "10.0.7.2", "db": "10.0.7.3"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert lines[2:] == ["10.0.7.3\tdb", "10.0.7.2\tweb"]


def test_resolv_conf_skips_loopback_stubs(tmp_path: Path) -> None:
    host, uplink = tmp_path / "host", tmp_path / "uplink"
    host.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    uplink.write_text("nameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver 2001:db8::1\nsearch lan\n")
    text = files.resolv_conf(host, uplink)
    assert text is not None
    assert [w for w in text.splitlines() if w.startswith("nameserver")] == [
        "nameserver 192.0.2.1",
        "nameserver 2001:db8::1",
    ]
    assert "search lan" in text and "127.0.0.53" not in text
    host.write_text("nameserver 10.1.2.3\n")
    assert "nameserver 10.1.2.3" in (files.resolv_conf(host, uplink) or "")
    host.write_text("nameserver ::1\n")
    assert files.resolv_conf(host, tmp_path / "missing") is None


def test_writes_never_follow_symlinks_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("keep\n")
    # etc/hosts -> a host file: replaced by a regular file, the target untouched
    root = tmp_path / "r1"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").symlink_to(secret)
    assert files.write_in_root(root, "etc", "hosts", "new\n")
    assert not (root / "etc" / "hosts").is_symlink() and (root / "etc" / "hosts").read_text() == "new\n"
    assert secret.read_text() == "keep\n"
    # etc -> a host directory: skipped
    root2 = tmp_path / "r2"
    root2.mkdir()
    (root2 / "etc").symlink_to(outside)
    assert not files.write_in_root(root2, "etc", "hosts", "x\n")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # resolv.conf as a symlink is the image's choice: left alone
    (root / "etc" / "resolv.conf").symlink_to("../run/resolv.conf")
    assert not files.write_in_root(root, "etc", "resolv.conf", "nameserver 1.1.1.1\n", keep_symlink=True)
    assert os.readlink(root / "etc" / "resolv.conf") == "../run/resolv.conf"
    # no etc at all: made
    root3 = tmp_path / "r3"
    root3.mkdir()
    assert (
        files.write_in_root(root3, "etc", "hosts", "y\n") and (root3 / "etc" / "hosts").read_text() == "y\n"
    )


# -- up / down with a fake ip ------------------------------------------------------------------


def test_a_veth_up_and_down_use_no_zone_code_while_there_is_no_zone(tmp_path: Path) -> None:
    """A plain veth (a default run) gets its address without the zones' module, and a teardown
    without a record loads it only when a zone exists (the run path does not): in a fresh
    interpreter, as this module imports the zones' code itself."""
    code = f"""
import json, sys
from pathlib import Path
from fakenet import fake_network
from nspawnctl.net import setup, statefile
from nspawnctl.spec import ContainerSpec

paths, ip = fake_network(Path({str(tmp_path)!r}), setattr)
spec = ContainerSpec(name="c2", id="0" * 32, image="busybox", image_id="sha256:" + "ab" * 32,
                     created="2026-01-01T00:00:00+00:00", network="veth")
st = setup.up(paths, spec)
after_up = "nspawnctl.net.zone" in sys.modules
setup.down(paths, "c2")
setup.down(paths, "c2")  # again, without a record
print(json.dumps([st.address, after_up, "nspawnctl.net.zone" in sys.modules, sorted(ip.links),
                  (statefile.RUN_DIR / "zones").exists()]))
"""
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here.parents[1]), str(here)])
    env = {k: v for k, v in os.environ.items() if k != "INVOCATION_ID"} | {"PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    address, zone_after_up, zone_after_down, links, zones_dir = json.loads(proc.stdout)
    assert address == "192.168.5.18" and links == [] and not zones_dir
    assert not zone_after_up and not zone_after_down, "nspawnctl.net.zone was imported"


def test_up_veth_builds_everything_and_down_removes_it(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    root = root_of(paths, "c1")
    st = net.up(paths, spec("c1"))
    assert st is not None
    assert (st.address, st.gateway, st.prefixlen, st.host_link) == (
        "192.168.5.18",
        "192.168.5.17",
        28,
        "ve-c1",
    )
    assert ip.ran("ip", "netns", "add", "nspawnctl-c1")
    assert ip.ran(
        "ip", "link", "add", "ve-c1", "type", "veth", "peer", "name", "host0", "netns", "nspawnctl-c1"
    )
    assert ip.ran("ip", "-n", "nspawnctl-c1", "addr", "add", "192.168.5.18/28", "dev", "host0")
    assert ip.ran(
        "ip", "-n", "nspawnctl-c1", "route", "replace", "default", "via", "192.168.5.17", "dev", "host0"
    )
    assert "nameserver 192.0.2.53" in (root / "etc" / "resolv.conf").read_text()
    assert not (root / "etc" / "hosts").exists()  # a lone veth container gets no hosts file
    assert net.state("c1") == st
    n = len(ip.calls)
    assert net.up(paths, spec("c1")) == st and not any(c[:3] == ["ip", "netns", "add"] for c in ip.calls[n:])
    net.down(paths, "c1")
    assert not ip.links and not list(names.NETNS_DIR.iterdir()) and net.state("c1") is None
    net.down(paths, "c1")  # idempotent
    assert ip.opened == ip.closed  # every netlink socket closed again


def test_up_is_undone_when_a_step_fails(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    root_of(paths, "c1")
    ip.fail = lambda argv: "route" in argv
    with pytest.raises(NetworkError, match="boom"):
        net.up(paths, spec("c1", "zone:z"))
    assert not ip.links and not list(names.NETNS_DIR.iterdir())
    assert net.state("c1") is None and zone.zones_with("c1") == []


def test_no_address_from_networkd_is_a_clear_error(
    env: tuple[Paths, FakeIp], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, ip = env
    ip.addresses = {}
    monkeypatch.setattr(setup, "ADDRESS_TIMEOUT", 0.05)
    with pytest.raises(NetworkError, match="systemd-networkd") as e:
        net.up(paths, spec("c1"))
    assert "ve-c1" in e.value.message
    assert not ip.links and not list(names.NETNS_DIR.iterdir())


def test_zone_members_know_each_other_and_the_bridge_goes_with_the_last(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    a, b = root_of(paths, "a"), root_of(paths, "b")
    sa, sb = net.up(paths, spec("a", "zone:z")), net.up(paths, spec("b", "zone:z"))
    assert sa and sb and (sa.address, sb.address) == ("10.0.7.2", "10.0.7.3")
    assert sa.gateway == "10.0.7.1" and sa.host_link == "vb-a" and ip.masters["vz-z"] == {"vb-a", "vb-b"}
    for root in (a, b):
        hosts = (root / "etc" / "hosts").read_text()
        assert "10.0.7.2\ta\n" in hosts and "10.0.7.3\tb\n" in hosts
    net.down(paths, "a")
    assert "\ta\n" not in (b / "etc" / "hosts").read_text() and "vz-z" in ip.links
    sa2 = net.up(paths, spec("a", "zone:z"))
    assert sa2 and sa2.address == "10.0.7.2"
    net.down(paths, "a")
    net.down(paths, "b")
    assert not ip.links and not list((statefile.RUN_DIR / "zones").iterdir())  # no zone file, no lock left


def test_udp_port_goes_into_networkds_map(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    root_of(paths, "c1")
    port = _free_port(socket.SOCK_DGRAM)
    st = net.up(paths, spec("c1", ports=(f"{port}:53/udp",)))
    assert st and st.nft_elements == [f"udp . {port}"] and st.ports == [f"{port}:53/udp"]
    add = ["nft", "create", "element", "ip", "io.systemd.nat", "map_port_ipport"]
    assert ip.ran(*add, f"{{ udp . {port} : 192.168.5.18 . 53 }}")
    assert not ip.ran("nft", "delete")  # never someone else's element
    net.down(paths, "c1")
    assert ip.calls[-4:].count(["nft", "delete", "element", *add[3:], f"{{ udp . {port} }}"]) == 1
    assert not ip.elements


def test_udp_port_mapped_by_another_machine_is_in_use_and_kept(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    root_of(paths, "c1")
    port = _free_port(socket.SOCK_DGRAM)
    ip.elements.add(f"udp . {port}")  # nspawn's Port= of some other machine
    with pytest.raises(PortInUse, match=f"port {port}/udp is already in use"):
        net.up(paths, spec("c1", ports=(f"{port}:53/udp",)))
    assert ip.elements == {f"udp . {port}"} and not ip.ran("nft", "delete")
    assert net.state("c1") is None and not ip.links


def test_up_does_nothing_without_a_netns_of_its_own(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    for mode in ("host", "none", "private"):
        assert net.up(paths, spec("c1", mode)) is None
    assert ip.calls == []


# -- ports -------------------------------------------------------------------------------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_ports_sees_a_bound_socket_on_localhost(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUse) as e:
            net.check_ports(paths, spec("c1", ports=(f"{port}:80",)))
        assert e.value.message == f"port {port}/tcp is already in use on the host"
        assert e.value.hint == "choose another host port: -p OTHER:80"
    net.check_ports(paths, spec("c1", ports=(f"{port}:80",)))  # free again


def test_check_ports_names_the_container_that_publishes_it(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    port = _free_port()
    statefile.save(
        statefile.NetState("other", "veth", "nspawnctl-other", "ve-other", ports=[f"{port}:8080/tcp"])
    )
    with pytest.raises(PortInUse, match=f"port {port}/tcp") as e:
        net.check_ports(paths, spec("c1", ports=(f"{port}:80",)))
    assert e.value.hint and "container other publishes it" in e.value.hint
    net.check_ports(paths, spec("other", ports=(f"{port}:8080",)))  # its own state is no conflict
    net.check_ports(paths, spec("c1", ports=(f"{port}:80/udp",)))  # another protocol


def test_check_ports_refuses_what_cannot_work(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    with pytest.raises(InvalidArgument, match="not supported"):
        net.check_ports(paths, spec("c1", ports=("127.0.0.1:5353:53/udp",)))
    with pytest.raises(InvalidArgument, match="twice"):
        net.check_ports(paths, spec("c1", ports=("18080:80", "18080:81")))
    with pytest.raises(InvalidArgument, match="--network host"):
        net.check_ports(paths, spec("c1", "host", ports=("18080:80",)))
    with pytest.raises(InvalidArgument, match="not an address of this host"):
        net.check_ports(paths, spec("c1", ports=("192.0.2.77:18080:80",)))


# -- defaults ----------------------------------------------------------------------------------


def test_default_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "networkd_running", lambda: True)
    assert net.default_network("zone:a", []) == ("zone:a", None)
    assert net.default_network("host", [PortMapping(1, 2)]) == ("host", None)
    assert net.default_network(None, []) == ("veth", None)
    monkeypatch.setattr(detect, "networkd_running", lambda: False)
    assert net.default_network(None, [PortMapping(1, 2)]) == ("veth", None)
    network, notice = net.default_network(None, [])
    assert network == "host" and notice and "systemd-networkd is not running" in notice


def test_networkd_running_needs_state_file_and_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, netif = tmp_path / "proc", tmp_path / "netif-state"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "comm").write_text("systemd\n")
    (proc / "1" / "cmdline").write_bytes(b"/sbin/init\0")
    (proc / "self").mkdir()
    monkeypatch.setattr(detect, "PROC", proc)
    monkeypatch.setattr(detect, "NETIF_STATE", netif)
    assert not detect.networkd_running()
    (proc / "41").mkdir()
    (proc / "41" / "comm").write_text("systemd-network\n")
    (proc / "41" / "cmdline").write_bytes(b"/usr/lib/systemd/systemd-networkd\0")
    assert not detect.networkd_running()  # no state file
    netif.write_text("OPER_STATE=routable\n")
    assert detect.networkd_running()
    (proc / "41" / "cmdline").write_bytes(b"/usr/bin/systemd-networkd-wait-online\0")
    assert not detect.networkd_running()


def test_default_network_notice_names_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "networkd_running", lambda: False)
    _, notice = net.default_network(None, [], "web")
    assert notice and notice.startswith("systemd-networkd is not running: container web shares the host's")
    assert net.default_network(None, [])[1] == net.NO_NETWORKD


# -- runs of units: which one owns the network -------------------------------------------------


def test_up_records_the_unit_run_and_down_of_another_run_leaves_it(
    env: tuple[Paths, FakeIp], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, ip = env
    root_of(paths, "c1")
    monkeypatch.setenv("INVOCATION_ID", "aaaa")
    st = net.up(paths, spec("c1"), "nspawnctl-c1.service")
    assert st and (st.unit, st.invocation) == ("nspawnctl-c1.service", "aaaa")
    net.down(paths, "c1", invocation="bbbb")  # the post of a second start that was refused
    assert net.state("c1") == st and "ve-c1" in ip.links
    net.down(paths, "c1", invocation="aaaa")
    assert net.state("c1") is None and not ip.links


def test_up_refuses_a_network_another_running_unit_built(
    env: tuple[Paths, FakeIp], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nspawnctl.systemd import bus

    paths, ip = env
    root_of(paths, "c1")
    monkeypatch.setenv("INVOCATION_ID", "aaaa")
    st = net.up(paths, spec("c1"), "nspawnctl-c1.service")
    monkeypatch.setenv("INVOCATION_ID", "bbbb")
    active = {"nspawnctl-c1.service": True}
    asked: list[str] = []

    def fake_run_sync(fn: Callable[[object], object]) -> bool:
        asked.append("x")
        return active["nspawnctl-c1.service"]

    monkeypatch.setattr(bus, "run_sync", fake_run_sync)
    n = len(ip.calls)
    with pytest.raises(NetworkError, match=r"container c1's network is in use by nspawnctl-c1\.service"):
        net.up(paths, spec("c1"), "systemd-nspawn@c1.service")
    assert ip.calls[n:] == [] and net.state("c1") == st  # untouched
    # that unit is gone (its post never ran): a leftover, rebuilt for the new run
    active["nspawnctl-c1.service"] = False
    st2 = net.up(paths, spec("c1"), "systemd-nspawn@c1.service")
    assert st2 and (st2.unit, st2.invocation) == ("systemd-nspawn@c1.service", "bbbb")
    assert ip.calls[n:].count(["ip", "netns", "add", "nspawnctl-c1"]) == 1
    # a previous run of the same unit (Restart=, its post failed): rebuilt without asking systemd
    asked.clear()
    monkeypatch.setenv("INVOCATION_ID", "cccc")
    n = len(ip.calls)
    st3 = net.up(paths, spec("c1"), "systemd-nspawn@c1.service")
    assert st3 and st3.invocation == "cccc" and asked == []
    assert (
        ip.ran("ip", "link", "del", "ve-c1")
        and ip.calls[n:].count(["ip", "netns", "add", "nspawnctl-c1"]) == 1
    )


def test_up_rebuilds_a_state_made_for_another_spec(env: tuple[Paths, FakeIp]) -> None:
    paths, ip = env
    root_of(paths, "c1")
    port = _free_port(socket.SOCK_DGRAM)
    st = net.up(paths, spec("c1"))
    assert st and st.ports == []
    n = len(ip.calls)
    st2 = net.up(paths, spec("c1", ports=(f"{port}:53/udp",)))
    assert st2 and st2.ports == [f"{port}:53/udp"] and ip.elements == {f"udp . {port}"}
    assert ip.calls[n:].count(["ip", "netns", "add", "nspawnctl-c1"]) == 1
    st3 = net.up(paths, spec("c1", "zone:z", ports=(f"{port}:53/udp",)))
    assert st3 and st3.zone == "z" and st3.host_link == "vb-c1" and "ve-c1" not in ip.links


def test_resolv_conf_symlink_is_kept_only_for_booted_containers(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    for name, boot in (("app", False), ("booted", True)):
        root = root_of(paths, name)
        (root / "run").mkdir()
        stub = root / "run" / "stub-resolv.conf"
        stub.write_text("nameserver 127.0.0.53\n")
        (root / "etc" / "resolv.conf").symlink_to("../run/stub-resolv.conf")
        net.up(paths, spec(name, boot=boot))
        resolv = root / "etc" / "resolv.conf"
        assert resolv.is_symlink() == boot
        assert stub.read_text() == "nameserver 127.0.0.53\n"  # never written through
        if not boot:
            assert "nameserver 192.0.2.53" in resolv.read_text()


# -- published TCP ports: socket units ---------------------------------------------------------


def test_proxy_units_are_named_apart_from_any_container_unit() -> None:
    from nspawnctl.errors import InvalidName
    from nspawnctl.names import check_machine_name

    base = ports.unit_base("web", PortMapping(8080, 80))
    assert base == "nspawnctl-web_port8080-tcp"
    with pytest.raises(InvalidName):  # no container is named so that its unit is the proxy's
        check_machine_name(base.removeprefix("nspawnctl-"))


def test_tcp_publish_starts_sandboxed_proxies_part_of_the_container_unit(
    env: tuple[Paths, FakeIp], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio

    from nspawnctl.systemd import bus, manager

    paths, _ = env
    root_of(paths, "c1")
    proxyd = tmp_path / "systemd-socket-proxyd"
    proxyd.touch()
    monkeypatch.setattr(ports, "PROXYD", (proxyd,))
    started: list[tuple[str, dict[str, object], list[tuple[str, dict[str, object]]]]] = []
    stopped: list[str] = []

    async def start_transient(self: object, unit: str, props: list[Any], aux: Any = None) -> str:
        started.append((unit, {k: v for k, _, v in props}, [(n, {k: v for k, _, v in ps}) for n, ps in aux]))
        return "done"

    async def stop_if_loaded(self: object, unit: str) -> None:
        stopped.append(unit)

    monkeypatch.setattr(manager.Manager, "start_transient", start_transient)
    monkeypatch.setattr(manager.Manager, "stop_if_loaded", stop_if_loaded)
    monkeypatch.setattr(bus, "run_sync", lambda fn: asyncio.run(fn(None)))
    port = _free_port()
    st = net.up(paths, spec("c1", ports=(f"127.0.0.1:{port}:80",)), "nspawnctl-c1.service")
    base = f"nspawnctl-c1_port{port}-tcp"
    assert st and st.proxy_units == [f"{base}.socket", f"{base}.service"]
    ((sock, sprops, [(svc, vprops)]),) = started
    assert (sock, svc) == (f"{base}.socket", f"{base}.service")
    assert sprops["Listen"] == [["Stream", f"127.0.0.1:{port}"]]
    assert sprops["PartOf"] == vprops["PartOf"] == ["nspawnctl-c1.service"]
    assert "After" not in sprops and "BindsTo" not in sprops and "BindsTo" not in vprops
    assert vprops["ExecStart"] == [[str(proxyd), [str(proxyd), "192.168.5.18:80"], False]]
    sandbox = {
        k: vprops[k] for k in ("DynamicUser", "PrivateTmp", "ProtectSystem", "ProtectHome", "NoNewPrivileges")
    }
    assert sandbox == {
        "DynamicUser": True,
        "PrivateTmp": True,
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": True,
    }
    stopped.clear()
    net.down(paths, "c1")
    assert stopped == [f"{base}.socket", f"{base}.service"]


def test_check_ports_ignores_its_own_leftover_proxy(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    with socket.socket() as s:  # the container's own socket unit, left by a teardown that failed
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        statefile.save(statefile.NetState("c1", "veth", "nspawnctl-c1", "ve-c1", ports=[f"{port}:80/tcp"]))
        net.check_ports(paths, spec("c1", ports=(f"{port}:80",)))
        with pytest.raises(PortInUse):
            net.check_ports(paths, spec("c2", ports=(f"{port}:80",)))


def test_check_ports_with_a_host_address_checks_only_that_address(env: tuple[Paths, FakeIp]) -> None:
    paths, _ = env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        net.check_ports(paths, spec("c1", ports=(f"127.0.0.2:{port}:80",)))  # not where the socket listens
        with pytest.raises(PortInUse):
            net.check_ports(paths, spec("c1", ports=(f"127.0.0.1:{port}:80",)))


def test_manager_starts_auxiliary_units_in_the_same_call() -> None:
    import asyncio

    from nspawnctl.systemd.manager import Manager

    class Bus:
        def __init__(self) -> None:
            self.calls: list[tuple[str, list[Any] | None, list[int] | None]] = []

        def variant(self, sig: str, value: object) -> tuple[str, object]:
            return (sig, value)

        def on_signal(self, handler: object) -> None:
            pass

        async def add_match(self, rule: str) -> None:
            pass

        async def call(self, *args: Any) -> list[Any]:
            member, _sig, body, fds = args[3], args[4], args[5], args[6]
            self.calls.append((member, body, fds))
            return ["/job/1"] if member == "StartTransientUnit" else []

    b = Bus()
    m = Manager(b)  # type: ignore[arg-type]
    m._removed["/job/1"] = "done"
    result = asyncio.run(
        m.start_transient("a.socket", [("Description", "s", "d")], [("a.service", [("PartOf", "as", ["x"])])])
    )
    assert result == "done"
    assert b.calls[-1] == (
        "StartTransientUnit",
        ["a.socket", "fail", [["Description", ("s", "d")]], [["a.service", [["PartOf", ("as", ["x"])]]]]],
        [],
    )


def test_zone_subnets_reads_the_zone_state_files(tmp_path: Path) -> None:
    """Review 15 R4: the API parsed these files itself; the format lives in net/zone.py."""
    from nspawnctl.net.zone import zone_subnets

    assert zone_subnets(tmp_path / "none") == {}
    (tmp_path / "a.json").write_text('{"zone": "a", "subnet": "10.0.0.0/24", "leases": {}}')
    (tmp_path / "b.json").write_text('{"zone": "b", "subnet": null}')
    (tmp_path / "c.json").write_text("not json")
    (tmp_path / "d.json").write_text('["odd"]')
    (tmp_path / "a.lock").write_text("")
    assert zone_subnets(tmp_path) == {"a": "10.0.0.0/24", "b": None, "d": None}
