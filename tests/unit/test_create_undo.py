"""Containers.create makes volumes only once the request is checked, and undoes them (and the
container) when a later step fails (review F5)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nspawnctl.client import Containers, RunOptions, Volumes
from nspawnctl.errors import InvalidArgument, NameInUse, VolumeCopyFailed
from nspawnctl.spec import ContainerSpec, RunDefaults, Volume
from nspawnctl.store.images import Image
from nspawnctl.store.volumes import VolumeStore

ROOT = Path("/pool/volumes")


class _VolumeStore:
    """The volume store's bookkeeping without btrfs."""

    def __init__(self, existing: tuple[str, ...] = ()) -> None:
        self.volumes = set(existing)
        self.made: list[str] = []
        self.labels: dict[str, dict[str, str]] = {}

    def path(self, name: str) -> Path:
        return ROOT / name

    def name_of(self, host: str) -> str | None:
        return Path(host).name if Path(host).parent == ROOT else None

    def exists(self, name: str) -> bool:
        return name in self.volumes

    def create(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.volumes.add(name)
        self.made.append(name)
        self.labels[name] = labels or {}

    def remove(self, name: str, force: bool = False) -> bool:
        self.volumes.discard(name)
        return True


class _Store:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.containers: dict[str, ContainerSpec] = {}

    def names_in_use(self) -> list[str]:
        return []

    def create(self, spec: ContainerSpec, image: Image, prepare: Any = None) -> ContainerSpec:
        if prepare is not None:  # the real store: under the pool lock, before the snapshot
            prepare()
        if self.fail:  # a failure after the volumes were made (the snapshot, the definition)
            raise self.fail
        self.containers[spec.name] = spec
        return spec

    def remove(self, name: str) -> None:
        del self.containers[name]


def _containers(
    tmp_path: Path, vstore: _VolumeStore, store: _Store, copy_up: Any = None
) -> tuple[Containers, Volumes]:
    image = Image(
        id="sha256:" + "0" * 64, created="", size=0, source="", defaults=RunDefaults(), path=tmp_path
    )
    pool = SimpleNamespace(check=lambda: None, lock=contextlib.nullcontext)
    client = SimpleNamespace(pool=pool, images=SimpleNamespace(ensure=lambda text, policy, options: image))
    volumes = object.__new__(Volumes)
    volumes._client = client  # type: ignore[assignment]
    volumes.store = vstore  # type: ignore[assignment,misc]
    if copy_up is not None:
        volumes.copy_up = copy_up  # type: ignore[method-assign]
    client.volumes = volumes
    containers = object.__new__(Containers)
    containers._client = client  # type: ignore[assignment]
    containers.store = store  # type: ignore[assignment]
    return containers, volumes


def test_a_refused_create_makes_no_volume(tmp_path: Path) -> None:
    vstore = _VolumeStore()
    containers, _ = _containers(tmp_path, vstore, _Store())
    options = RunOptions(name="c", volumes=[Volume.parse("data:/d")], named_volumes=[(None, "/cache", False)])
    with pytest.raises(InvalidArgument, match="no command given"):
        containers.create("img", [], options)
    assert vstore.made == [] and vstore.volumes == set()


def test_volumes_are_made_last_and_undone_when_the_create_fails(tmp_path: Path) -> None:
    vstore = _VolumeStore(existing=("old",))
    containers, _ = _containers(tmp_path, vstore, _Store(fail=NameInUse("taken")))
    options = RunOptions(name="c", volumes=[Volume.parse("data:/d"), Volume.parse("old:/o")])
    with pytest.raises(NameInUse):
        containers.create("img", ["/bin/true"], options)
    assert vstore.made == ["data"] and vstore.volumes == {"old"}  # the one it found stays


def test_a_failed_copy_up_removes_the_container_and_its_new_volumes(tmp_path: Path) -> None:
    def copy_up(volumes: list[Volume], root: Path) -> None:
        raise VolumeCopyFailed("cannot copy", hint="h")

    vstore, store = _VolumeStore(), _Store()
    containers, _ = _containers(tmp_path, vstore, store, copy_up)
    with pytest.raises(VolumeCopyFailed):
        containers.create("img", ["/bin/true"], RunOptions(name="c", volumes=[Volume.parse("data:/d")]))
    assert store.containers == {} and vstore.volumes == set()


def test_created_with_its_volumes(tmp_path: Path) -> None:
    vstore, store = _VolumeStore(), _Store()
    containers, _ = _containers(tmp_path, vstore, store, lambda volumes, root: None)
    spec = containers.create("img", ["/bin/true"], RunOptions(name="c", volumes=[Volume.parse("data:/d")]))
    assert [v.host for v in spec.volumes] == [str(ROOT / "data")] and vstore.volumes == {"data"}


def test_copy_up_failure_is_an_error_and_leaves_the_volume_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "image" / "data").mkdir(parents=True)
    (tmp_path / "image" / "data" / "f").write_text("x")
    (tmp_path / "store" / "volumes" / "v").mkdir(parents=True)
    store = VolumeStore(SimpleNamespace(store=tmp_path / "store"), dict)  # type: ignore[arg-type]

    def cp(argv: list[str], **kwargs: Any) -> None:
        (tmp_path / "store" / "volumes" / "v" / "half").mkdir()
        (tmp_path / "store" / "volumes" / "v" / "half" / "f").write_text("x")
        raise subprocess.CalledProcessError(1, argv, b"", b"cp: No space left on device")

    monkeypatch.setattr(subprocess, "run", cp)
    with pytest.raises(VolumeCopyFailed, match="No space left on device") as e:
        store.copy_up("v", tmp_path / "image", "/data")
    assert e.value.hint and list((tmp_path / "store" / "volumes" / "v").iterdir()) == []


def test_anonymous_volumes_get_dockers_label_and_named_ones_do_not(tmp_path: Path) -> None:
    vstore, store = _VolumeStore(), _Store()
    containers, _ = _containers(tmp_path, vstore, store, lambda volumes, root: None)
    opts = RunOptions(name="c", volumes=[Volume.parse("/anon"), Volume.parse("data:/d")])
    spec = containers.create("img", ["/bin/true"], opts)
    anon = Path(spec.volumes[0].host).name
    assert spec.volumes[0].container == "/anon" and len(anon) == 64
    assert vstore.labels == {anon: {"com.docker.volume.anonymous": ""}, "data": {}}
