"""spec.py's network, port, size and bind helpers, and which volumes get ``:idmap``."""

from __future__ import annotations

from pathlib import Path

import pytest

from nspawnctl import idmap
from nspawnctl.client import RunOptions, _network_and_userns
from nspawnctl.errors import InvalidArgument
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import (
    ContainerSpec,
    PortMapping,
    Volume,
    check_bind_options,
    check_port_mappings,
    file_to_spec,
    nspawn_network,
    parse_network,
    parse_nspawn_port,
    parse_size,
    spec_to_file,
)


def spec(**kw: object) -> ContainerSpec:
    return ContainerSpec(name="web", id="ab", image="x", image_id="1", created="now", **kw)  # type: ignore[arg-type]


# -- networks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "keys, network",
    [
        ("", None),
        ("Private=no\nVirtualEthernet=no\n", "host"),
        ("Private=yes\n", "none"),
        ("Private=yes\nInterface=eth1\n", "private"),
        ("VirtualEthernet=yes\n", "veth"),
        ("Port=8080:80\n", "veth"),
        ("Zone=lab\n", "zone:lab"),
        ("Bridge=br0\n", "bridge:br0"),
        ("Bridge=br0\nPort=80\n", "bridge:br0"),
        ("Bridge=br0\nPrivate=no\n", "bridge:br0"),  # a bridge is never the host's network
    ],
)
def test_nspawns_own_network_keys(keys: str, network: str | None) -> None:
    assert nspawn_network(NspawnFile.parse(f"[Network]\n{keys}")) == network


def test_a_bridge_round_trips_and_keeps_the_users_network_keys() -> None:
    text = "[Network]\nBridge=br0\nMACVLAN=eth1\nPrivate=no\nPort=80\n\n[X-Nspawnctl]\nId=ab\n"
    s = file_to_spec("web", NspawnFile.parse(text))
    assert s.network == "bridge:br0"
    f = spec_to_file(s, NspawnFile.parse(text))
    assert f.get("Network", "Bridge") == "br0" and f.get("Network", "MACVLAN") == "eth1"
    assert f.get("Network", "Private") is None and f.get("Network", "Port") is None
    assert f.get("X-Nspawnctl", "Network") == "bridge:br0"
    assert file_to_spec("web", f).network == "bridge:br0"
    # from the command line: nothing but Bridge=
    f = spec_to_file(spec(network="bridge:br0"))
    assert [(a.key, a.value) for a in f.assignments("Network")] == [("Bridge", "br0")]
    # and away from it again, to the host's network
    f = spec_to_file(spec(network="host"), f)
    assert f.get("Network", "Bridge") is None and f.get("Network", "Private") == "no"


@pytest.mark.parametrize(
    "text", ["bridge:", "bridge:a/b", "bridge:has space", "bridge:sixteen-chars-xy", "lan"]
)
def test_bad_networks(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_network(text)


def test_bridge_network_at_create() -> None:
    assert _network_and_userns(RunOptions(network="bridge:br0"))[0] == "bridge:br0"
    with pytest.raises(InvalidArgument, match="-p needs a network of the container's own"):
        _network_and_userns(RunOptions(network="bridge:br0", ports=[PortMapping(80, 80)]))


# -- ports --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, pm",
    [
        ("8080:80", PortMapping(8080, 80)),
        ("127.0.0.1:8080:80/tcp", PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("[::1]:8080:80", PortMapping(8080, 80, "tcp", "::1")),
        ("53:53/udp", PortMapping(53, 53, "udp")),
    ],
)
def test_port_mappings(text: str, pm: PortMapping) -> None:
    assert PortMapping.parse(text) == pm and PortMapping.parse(str(pm)) == pm


@pytest.mark.parametrize(
    "text", ["[::1]8080:80", "[::1]:8080", "[::1", "80:", "80:80/sctp", "0:80", "x:1:2", "1.2.3.4:80"]
)
def test_bad_port_mappings(text: str) -> None:
    with pytest.raises(InvalidArgument):
        PortMapping.parse(text)


def test_port_lists_that_no_host_can_publish() -> None:
    check_port_mappings([PortMapping(80, 80), PortMapping(80, 80, "udp"), PortMapping(81, 80)])
    with pytest.raises(InvalidArgument, match="port 80/tcp is published twice"):
        check_port_mappings([PortMapping(80, 80), PortMapping(80, 81, "tcp", "127.0.0.1")])
    with pytest.raises(InvalidArgument, match="a host address for a UDP port is not supported"):
        check_port_mappings([PortMapping(53, 53, "udp", "127.0.0.1")])
    # and so at create, long before a start would find out
    with pytest.raises(InvalidArgument, match="published twice"):
        _network_and_userns(RunOptions(ports=[PortMapping(80, 80), PortMapping(80, 81)]))
    with pytest.raises(InvalidArgument, match="UDP"):
        _network_and_userns(RunOptions(ports=[PortMapping(53, 53, "udp", "10.0.0.1")]))


@pytest.mark.parametrize(
    "value, pm",
    [
        ("80", PortMapping(80, 80)),
        ("8080:80", PortMapping(8080, 80)),
        ("udp:53", PortMapping(53, 53, "udp")),
        ("tcp:8443:443", PortMapping(8443, 443)),
    ],
)
def test_nspawns_port_key(value: str, pm: PortMapping) -> None:
    assert parse_nspawn_port(value) == pm


# -- sizes, binds -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [
        ("64M", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("100", 100),
        ("1.5G", 3 << 29),
        ("64MiB", 64 << 20),
    ],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "", "0", "-1M", "1P"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(text)


def test_bind_values() -> None:
    v = Volume.from_bind("/a\\:b:/c:idmap,rbind", read_only=True)
    assert v == Volume("/a:b", "/c", True, ("idmap", "rbind")) and v.bind_value() == "/a\\:b:/c:idmap,rbind"
    assert Volume.from_bind("/a") == Volume("/a", "/a")
    check_bind_options(v)
    with pytest.raises(InvalidArgument, match="unknown bind option 'bogus'"):
        check_bind_options(Volume.from_bind("/a:/b:bogus"))


# -- which volumes are ID-mapped ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "fstype, kernel, ok",
    [
        ("btrfs", (6, 18), True),
        ("ext4", (5, 12), True),
        ("xfs", (6, 1), True),
        ("tmpfs", (6, 3), True),
        ("tmpfs", (6, 2), False),
        ("overlay", (5, 19), True),
        ("overlay", (5, 15), False),
        ("nfs", (6, 18), False),
        ("nfs4", (6, 18), False),
        ("cifs", (6, 18), False),
        ("fuse.sshfs", (6, 18), False),
        ("vfat", (6, 18), True),
    ],
)
def test_which_filesystems_id_map(fstype: str, kernel: tuple[int, int], ok: bool) -> None:
    assert idmap.can_idmap(fstype, kernel) is ok


def test_zfs_id_maps_from_openzfs_2_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = tmp_path / "version"
    monkeypatch.setattr(idmap, "ZFS_VERSION", version)
    assert not idmap.can_idmap("zfs")  # no zfs module at all
    version.write_text("2.1.11-1\n")
    assert not idmap.can_idmap("zfs")
    version.write_text("2.2.2-0ubuntu9\n")
    assert idmap.can_idmap("zfs")


def test_kernel_version() -> None:
    assert idmap.kernel_version("6.18.0-1-amd64") == (6, 18)
    assert idmap.kernel_version("5.4.0") == (5, 4)
    assert idmap.kernel_version("weird") == (0, 0)
    assert idmap.kernel_version() >= (3, 0)  # this machine's


def test_idmap_volumes_decides_per_source_and_leaves_explicit_options() -> None:
    types = {"/data": "ext4", "/nfs": "nfs", "/scratch": "tmpfs", "/gone": None}
    said: list[str] = []
    vols = [
        Volume("/data", "/d"),
        Volume("/nfs", "/n"),
        Volume("/nfs", "/n2", options=("noidmap",)),
        Volume("/nfs", "/n3", options=("idmap",)),
        Volume("/scratch", "/s", True),
        Volume("/gone", "/g"),
    ]
    out = idmap.idmap_volumes(vols, said.append, types.get, kernel=(6, 1))
    assert [v.options for v in out] == [("idmap",), (), ("noidmap",), ("idmap",), (), ()]
    assert said == [
        "volume /nfs is on nfs, which cannot be ID-mapped: root in the container may not be able to "
        "write to it; use --userns host or :noidmap to silence",
        "volume /scratch is on tmpfs, which cannot be ID-mapped: root in the container may not be able to "
        "write to it; use --userns host or :noidmap to silence",
        "volume /gone is on a filesystem that cannot be ID-mapped: root in the container may not be able "
        "to write to it; use --userns host or :noidmap to silence",
    ]
    assert idmap.idmap_volumes([Volume("/scratch", "/s")], said.append, types.get, (6, 3))[0].idmap


def test_fs_type_reads_mountinfo() -> None:
    assert idmap.fs_type("/proc/self") == "proc"
    assert idmap.fs_type("/proc/does-not-exist/x") == "proc"  # the mount that would hold it
