"""Picked host ports, -P, docker's port shapes, --pull policies and named volumes: the pure parts."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nspawnctl.errors import ImageNotFound, InvalidArgument, PortInUse
from nspawnctl.net.ports import docker_ports, host_endpoint, pick_ports, port_range
from nspawnctl.pull.policy import ensure_image, pullable
from nspawnctl.spec import (
    MAX_EXPOSED,
    ContainerSpec,
    PortMapping,
    Volume,
    exposed_ports,
    image_exposed,
    parse_publish,
    publish_all,
)
from nspawnctl.store.volumes import _inside, check_volume_name, parse_labels


@pytest.mark.parametrize(
    ("text", "expected", "back"),
    [
        ("80", PortMapping(0, 80), "80/tcp"),
        ("53/udp", PortMapping(0, 53, "udp"), "53/udp"),
        ("127.0.0.1::80", PortMapping(0, 80, "tcp", "127.0.0.1"), "127.0.0.1::80/tcp"),
        ("[::1]::80", PortMapping(0, 80, "tcp", "::1"), "[::1]::80/tcp"),
        ("8080:80", PortMapping(8080, 80), "8080:80/tcp"),
    ],
)
def test_picked_port_forms(text: str, expected: PortMapping, back: str) -> None:
    pm = PortMapping.parse(text)
    assert pm == expected and str(pm) == back and PortMapping.parse(str(pm)) == pm
    assert pm.picked == (pm.host_port == 0)


@pytest.mark.parametrize("text", ["0:80", "80:", "::80:", "1.2.3.4:80", "65536", "x"])
def test_bad_picked_forms(text: str) -> None:
    with pytest.raises(InvalidArgument):
        PortMapping.parse(text)


def test_a_definition_always_names_its_host_port() -> None:
    assert parse_publish("8080:80") == PortMapping(8080, 80)
    with pytest.raises(InvalidArgument, match="needs its host port"):
        parse_publish("80")


def test_pick_takes_the_lowest_port_nobody_records_or_holds() -> None:
    held = {32769}
    ports = [PortMapping(0, 80), PortMapping(8080, 81), PortMapping(0, 443), PortMapping(0, 53, "udp")]
    picked = pick_ports(
        ports,
        taken=["32768:9/tcp", "32770:1/udp"],  # other containers' Publish=, running or not
        free=lambda pm: pm.host_port not in held,
        candidates=range(32768, 32780),
    )
    assert [str(p) for p in picked] == ["32770:80/tcp", "8080:81/tcp", "32771:443/tcp", "32768:53/udp"]


def test_pick_skips_this_containers_own_explicit_ports() -> None:
    picked = pick_ports([PortMapping(0, 80), PortMapping(5000, 81)], [], lambda pm: True, range(5000, 5002))
    assert picked[0].host_port == 5001


def test_pick_fails_cleanly_when_the_range_is_full() -> None:
    with pytest.raises(PortInUse, match="no free host port"):
        pick_ports([PortMapping(0, 80)], ["5000:1/tcp"], lambda pm: True, range(5000, 5001))


def test_pick_is_one_pass_over_the_range() -> None:
    # F11: 2000 picked ports test each candidate port once, not the range again per port
    tested: list[int] = []
    picked = pick_ports(
        [PortMapping(0, p) for p in range(1, 2001)],
        taken=["40000:1/tcp"],
        free=lambda pm: tested.append(pm.host_port) is None and pm.host_port % 7 != 0,
        candidates=range(32768, 61000),
    )
    assert len({pm.host_port for pm in picked}) == 2000
    assert len(tested) == len(set(tested))  # no port bind-tested twice
    assert 40000 not in {pm.host_port for pm in picked}


def test_image_exposed_is_bounded() -> None:
    assert image_exposed(["80/tcp", "80", "53/udp"], "img") == ["80/tcp", "53/udp"]
    assert len(image_exposed([f"1-{MAX_EXPOSED}/tcp"], "img")) == MAX_EXPOSED
    with pytest.raises(InvalidArgument, match="image evil exposes more than"):
        image_exposed(["1-65535/tcp"], "evil")


def test_port_range() -> None:
    assert port_range("32768\t60999\n") == (32768, 60999)
    assert port_range("garbage") == (32768, 60999)
    assert port_range("5000 4000") == (32768, 60999)


def test_exposed_ports() -> None:
    assert exposed_ports("80/tcp") == ["80/tcp"]
    assert exposed_ports("53/UDP") == ["53/udp"]
    assert exposed_ports("8080") == ["8080/tcp"]
    assert exposed_ports("http:8080/tcp") == ["8080/tcp"]  # an ACI port
    assert exposed_ports("8000-8002/tcp") == ["8000/tcp", "8001/tcp", "8002/tcp"]
    assert exposed_ports("80/sctp") == [] and exposed_ports("0/tcp") == [] and exposed_ports("x") == []


def test_publish_all_adds_what_is_not_published() -> None:
    got = publish_all([PortMapping(8080, 80)], ["80/tcp", "443/tcp", "53/udp"])
    assert got == [PortMapping(8080, 80), PortMapping(0, 443), PortMapping(0, 53, "udp")]


def _spec(**kw: Any) -> ContainerSpec:
    return ContainerSpec(name="c", id="x", image="i", image_id="i", created="", **kw)


def test_docker_ports_shape() -> None:
    spec = _spec(
        ports=[PortMapping(32768, 80), PortMapping(8443, 443, "tcp", "127.0.0.1")],
        exposed=["80/tcp", "9000/tcp"],
    )
    assert docker_ports(spec) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
        "9000/tcp": None,
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
    }
    assert host_endpoint(PortMapping(32768, 80)) == "0.0.0.0:32768"
    assert host_endpoint(PortMapping(1, 80, "tcp", "::1")) == "[::1]:1"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("localhost:5000/app:1", True),
        ("registry.example.test/acc/x:v1", True),
        ("docker://alpine", True),
        ("https://example.com/img.tar.xz", True),
        ("example.com/app:1.0", True),  # an ACI name, or a registry
        ("alpine", False),
        ("e2e/busybox:latest", False),
        ("0123456789ab", False),
    ],
)
def test_pullable(ref: str, expected: bool) -> None:
    assert pullable(ref) is expected


def _ensure(ref: str, policy: str, local: set[str]) -> tuple[str, list[str]]:
    pulled: list[str] = []

    def get(r: str) -> Any:
        if r not in local:
            raise ImageNotFound(f"no such image: {r}")
        return f"local {r}"

    def pull(r: str) -> Any:
        pulled.append(r)
        return SimpleNamespace(image=f"pulled {r}")

    return ensure_image(ref, policy, get, pull), pulled


def test_pull_policies() -> None:
    reg = "localhost:5000/app:1"
    assert _ensure(reg, "missing", {reg}) == ("local " + reg, [])
    assert _ensure(reg, "missing", set()) == ("pulled " + reg, [reg])
    assert _ensure(reg, "always", {reg}) == ("pulled " + reg, [reg])
    with pytest.raises(ImageNotFound, match="no such image"):
        _ensure(reg, "never", set())
    with pytest.raises(ImageNotFound):  # a local-only name is never pulled
        _ensure("busybox", "missing", set())
    with pytest.raises(InvalidArgument, match="local image name"):
        _ensure("busybox", "always", {"busybox"})
    with pytest.raises(InvalidArgument, match="invalid --pull"):
        _ensure(reg, "sometimes", {reg})


def test_named_volume_parse() -> None:
    v = Volume.parse("data:/srv/data:ro")
    assert v.named and v.host == "data" and v.container == "/srv/data" and v.read_only
    assert not Volume.parse("/host:/ctr").named
    for bad in ("./data:/x", "-x:/y", "data:rel", "data"):
        with pytest.raises(InvalidArgument):
            Volume.parse(bad)


def test_volume_names_and_labels() -> None:
    assert check_volume_name("my_vol.1-a") == "my_vol.1-a"
    for bad in ("", "-a", ".a", "a/b", "a b"):
        with pytest.raises(InvalidArgument):
            check_volume_name(bad)
    assert parse_labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(InvalidArgument):
        parse_labels(["=v"])


def test_copy_up_source_never_follows_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to("/etc")
    (tmp_path / "file").write_text("x")
    assert _inside(tmp_path, "/data/sub") == tmp_path / "data" / "sub"
    assert _inside(tmp_path, "/link") is None
    assert _inside(tmp_path, "/file") is None
    assert _inside(tmp_path, "/data/../link") is None
    assert _inside(tmp_path, "/missing") is None
    assert _inside(tmp_path, "/") is None


def test_publish_all_implies_a_network_of_its_own() -> None:
    from nspawnctl.client import RunOptions, _network_and_userns

    assert _network_and_userns(RunOptions(publish_all=True))[0] == "veth"
    with pytest.raises(InvalidArgument, match="-P needs a network of the container's own"):
        _network_and_userns(RunOptions(publish_all=True, network="host"))


def test_tree_size_counts_files_of_a_very_deep_tree(tmp_path: Path) -> None:
    """Review L4: os.walk recursed (RecursionError at ~1000 levels on 3.11) in volume prune/system df."""
    from nspawnctl.store.files import tree_size

    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1200):  # made level by level (pathlib's mkdir(parents=True) recurses too)
        os.mkdir("d", dir_fd=fd)
        fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    f = os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    os.write(f, b"x" * 10)
    os.close(f)
    os.close(fd)
    (tmp_path / "g").write_bytes(b"y" * 5)
    (tmp_path / "link").symlink_to("/etc")  # not followed, not counted
    assert tree_size(tmp_path) == 15
    assert tree_size(tmp_path / "missing") == 0
    # taken down level by level too: pytest's own cleanup (shutil.rmtree) would recurse
    fds = [os.open(tmp_path, os.O_RDONLY)]
    for _ in range(1200):
        fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
    os.unlink("f", dir_fd=fds.pop())
    for fd in reversed(fds):
        os.rmdir("d", dir_fd=fd)
        os.close(fd)


def _plain_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A VolumeStore on plain directories (btrfs stubbed)."""
    import shutil
    from types import SimpleNamespace

    from nspawnctl.store import btrfs
    from nspawnctl.store.volumes import VolumeStore

    monkeypatch.setattr(btrfs, "is_subvolume", lambda p: Path(p).is_dir() and not Path(p).is_symlink())
    monkeypatch.setattr(btrfs, "create_subvolume", lambda p: Path(p).mkdir())
    monkeypatch.setattr(btrfs, "delete", lambda p: shutil.rmtree(p, ignore_errors=True))
    return VolumeStore(SimpleNamespace(store=tmp_path), dict)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", [("foo", "foo.json"), ("foo.json", "foo")])
def test_volumes_foo_and_foo_json_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: tuple[str, str]
) -> None:
    """Review L5: foo's record was volumes/foo.json, the path of volume foo.json."""
    store = _plain_volumes(tmp_path, monkeypatch)
    for name in order:
        store.create(name, {"n": name})
    want = [("foo", {"n": "foo"}), ("foo.json", {"n": "foo.json"})]
    assert [(v.name, v.labels) for v in store.list()] == want
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == [".meta", "foo", "foo.json"]
    assert store.remove("foo") and [v.name for v in store.list()] == ["foo.json"]
    assert store.get("foo.json").labels == {"n": "foo.json"}


def test_an_older_volume_record_is_read_and_moved_out_of_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _plain_volumes(tmp_path, monkeypatch)
    (tmp_path / "volumes" / "foo").mkdir(parents=True)
    (tmp_path / "volumes" / "foo.json").write_text('{"CreatedAt": "then", "Labels": {"a": "1"}}')
    assert store.get("foo").labels == {"a": "1"}
    store.create("foo.json")
    assert store.get("foo").created == "then" and store.get("foo.json").labels == {}


def test_prune_takes_anonymous_volumes_by_their_label_and_filters_by_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 15 R3: the API pruned a named volume whose name was 64 hex digits by default, and
    the CLI pruned named ones always; one library prune for both, anonymity by the label."""
    from nspawnctl.listfilters import VOLUME_PRUNE_KEYS, parse_list_filters
    from nspawnctl.store.volumes import ANONYMOUS_LABEL

    def only(*words: str) -> Any:
        return parse_list_filters(words, VOLUME_PRUNE_KEYS)

    store = _plain_volumes(tmp_path, monkeypatch)
    hexname = "a" * 64
    store.create(hexname, {"tier": "web"})  # named by the user, though it looks random
    store.create("anon", {ANONYMOUS_LABEL: "", "tier": "web"})
    store.create("anon2", {ANONYMOUS_LABEL: ""})
    store.create("named", {"tier": "db"})
    assert store.prune(anonymous_only=True, filters=only("label=tier=web"))[0] == ["anon"]
    assert store.prune(anonymous_only=True)[0] == ["anon2"]
    assert store.prune(filters=only("label!=tier=db"))[0] == [hexname]
    assert store.prune(filters=only("label=tier"))[0] == ["named"]
    assert store.list() == []
