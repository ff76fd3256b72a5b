"""containers/create and inspect as dockerd does them for docker-py's own tests: Config.Volumes as
anonymous volumes, map fields never empty with a key, StopTimeout in inspect, Tmpfs options as
given, Env entries without "=" (dockerd: unset)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h11")

from nspawnctl.api.http import ApiError
from nspawnctl.api.render import container_inspect
from nspawnctl.api.translate import create_options, empty
from nspawnctl.errors import InvalidArgument
from nspawnctl.runopts import RunSettings, Tmpfs
from nspawnctl.spec import ContainerSpec, Volume, file_to_spec, spec_to_file
from nspawnctl.status import ContainerStatus
from nspawnctl.values import check_env

VOLS = "/var/lib/nspawnctl/volumes"
ANON = "a" * 64


def test_a_map_field_with_a_key_is_a_request() -> None:
    assert not empty({"/vol1": {}}, "Volumes")
    assert not empty({"HostConfig": {"Tmpfs": {"/t": ""}}})  # nested: the key counts there too
    assert not empty({"Labels": {"a": ""}})
    assert empty({"Type": "", "Config": {}}, "LogConfig")  # a struct of zero values asks nothing
    assert empty({}, "Volumes") and empty(None, "Volumes")


def test_config_volumes_are_anonymous_volumes() -> None:
    _req, opts = create_options({"Image": "bb", "Volumes": {"/vol1": {}, "/vol2": {}}}, "c")
    assert [(v.host, v.container) for v in opts.volumes] == [("", "/vol1"), ("", "/vol2")]


def test_a_volume_path_a_bind_or_mount_covers_is_theirs() -> None:
    body: dict[str, Any] = {
        "Image": "bb",
        "Volumes": {"/mnt": {}, "/m/": {}, "/t": {}, "/free": {}},
        "HostConfig": {
            "Binds": ["/srv:/mnt:rw"],
            "Mounts": [{"Type": "volume", "Source": "v", "Target": "/m"}],
            "Tmpfs": {"/t": ""},
        },
    }
    _req, opts = create_options(body, "c")
    assert [(v.host, v.container) for v in opts.volumes] == [("/srv", "/mnt"), ("", "/free")]


@pytest.mark.parametrize(
    "volumes", [{"rel": {}}, {"/a:/b": {}}, {"/a": {"x": 1}}, ["/a"], {"/a": None}]
)  # fmt: skip
def test_bad_config_volumes_are_a_400_naming_the_field(volumes: Any) -> None:
    with pytest.raises(ApiError) as e:
        create_options({"Image": "bb", "Volumes": volumes}, "c")
    assert e.value.status == 400 and "Volumes" in e.value.message


def test_an_unknown_map_field_with_keys_is_refused_not_dropped() -> None:
    with pytest.raises(ApiError) as e:
        create_options({"Image": "bb", "HostConfig": {"StorageOpt": {"size": ""}}}, "c")
    assert "HostConfig.StorageOpt" in e.value.message


def test_env_without_equals_passes_to_the_library() -> None:
    _req, opts = create_options({"Image": "bb", "Env": ["Foo", "Other=one", "Blank="]}, "c")
    assert opts.env == ["Foo", "Other=one", "Blank="]
    assert check_env(opts.env, bare=True) == opts.env
    with pytest.raises(InvalidArgument):
        check_env(["Foo"])  # the CLI's -e and image Env keep KEY=VALUE
    with pytest.raises(InvalidArgument):
        check_env(["=x"], bare=True)


def test_bare_env_keys_round_trip_through_the_definition_but_reach_no_environment() -> None:
    spec = ContainerSpec(
        name="c",
        id="c" * 64,
        image="bb",
        image_id="sha256:1",
        created="2026-12-07T10:00:00+00:00",
        env=["Foo", "Other=one", "Blank="],
    )
    f = spec_to_file(spec)
    text = f.render()
    assert "Environment=Other=one\n" in text and "Environment=Blank=\n" in text
    assert "\nEnvironment=Foo" not in text and "\nUnsetEnvironment=Foo\n" in text
    assert sorted(file_to_spec("c", f).env) == sorted(spec.env)


def test_tmpfs_options_are_kept_as_given() -> None:
    assert Tmpfs.parse("/tmp1:size=3M").value() == "/tmp1:size=3M"
    assert RunSettings(tmpfs=(Tmpfs.parse("/tmp1:size=3M"),)).to_json()["Tmpfs"] == {"/tmp1": "size=3M"}


def _inspect(**kw: Any) -> dict[str, Any]:
    spec = ContainerSpec(
        name="c",
        id="c" * 64,
        image="bb",
        image_id="sha256:1",
        created="2026-12-07T10:00:00+00:00",
        command=["sh"],
        **kw,
    )

    def name_of(host: str) -> str | None:
        return host.rsplit("/", 1)[1] if host.startswith(VOLS + "/") else None

    return container_inspect(ContainerStatus(spec, "created"), name_of)


def test_inspect_shows_stop_timeout_only_when_set() -> None:
    assert "StopTimeout" not in _inspect()["Config"]
    assert _inspect(settings=RunSettings(stop_timeout=7))["Config"]["StopTimeout"] == 7
    assert _inspect(settings=RunSettings(stop_timeout=0))["Config"]["StopTimeout"] == 0


def test_inspect_shows_volumes_as_docker() -> None:
    out = _inspect(
        volumes=[
            Volume(f"{VOLS}/{ANON}", "/vol1"),
            Volume(f"{VOLS}/data", "/data", read_only=True),
            Volume("/srv", "/srv"),
        ]
    )
    assert out["Config"]["Volumes"] == {"/vol1": {}}
    assert out["HostConfig"]["Binds"] == [f"{VOLS}/data:/data:ro", "/srv:/srv"]
    kinds = [(m["Type"], m.get("Name"), m["Destination"], m["RW"]) for m in out["Mounts"]]
    assert kinds == [
        ("volume", ANON, "/vol1", True),
        ("volume", "data", "/data", False),
        ("bind", None, "/srv", True),
    ]
    assert _inspect()["Config"]["Volumes"] is None


def test_a_stopped_containers_copy_goes_into_its_volumes(tmp_path: Path) -> None:
    from nspawnctl.files import in_mount
    from nspawnctl.store.copy import ContainerRoot

    a, b, f = tmp_path / "a", tmp_path / "b", tmp_path / "conf"
    a.mkdir(), b.mkdir(), f.write_text("x")
    mounts = (("/vol1", str(a), False), ("/vol1/ro", str(b), True), ("/etc/app.conf", str(f), False))
    root = ContainerRoot("/pool/c", "c", None, mounts)
    assert in_mount(root, "/vol1/data.txt") == (ContainerRoot(str(a), "c", None), "/data.txt")
    assert in_mount(root, "/vol1/ro/x")[0].path == str(b)  # the deepest mount
    assert in_mount(root, "/etc/x") == (root, "/etc/x")
    # the mount point itself: read as the mount's directory under the mount point's name
    assert in_mount(root, "/vol1") == (ContainerRoot(str(a), "c", None, top="vol1"), "/")
    assert in_mount(root, "/vol1/.") == (ContainerRoot(str(a), "c", None), "/.")  # its contents
    assert in_mount(root, "/vol1/", write=True) == (ContainerRoot(str(a), "c", None), "/")
    assert in_mount(root, "/vol1", at_mount=False) == (root, "/vol1")
    assert in_mount(root, "/vol1x/y")[0] is root
    with pytest.raises(InvalidArgument):
        in_mount(root, "/vol1/ro/x", write=True)
    # a file bind: the host file, found in its directory, named as in the container when read
    parent = ContainerRoot(str(tmp_path), "c", None)
    assert in_mount(root, "/etc/app.conf") == (replace(parent, top="app.conf"), "/conf")
    assert in_mount(root, "/etc/app.conf", write=True) == (parent, "/conf")
    assert in_mount(root, "/etc/app.conf/x") == (parent, "/conf/x")
