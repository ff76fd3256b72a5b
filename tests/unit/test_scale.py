"""Nothing in the store grows with the square of the containers or images (issue 13's scale part):
a command on one container reads one definition, a listing reads each definition or image record
once, whatever the count. Counted (files read), not timed; on a real loop-mounted btrfs (skipped
without root and btrfs tools), with the fixtures of test_layers.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_layers import (  # noqa: F401  (btrfs_mount, pool, layers, images: fixtures)
    BASE,
    CONFIG_A,
    CONFIG_B,
    UPPER,
    apply,
    btrfs_mount,
    images,
    import_image,
    layers,
    pool,
    tar,
)

from nspawnctl.config import Paths
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec
from nspawnctl.store import btrfs
from nspawnctl.store.containers import ContainerStore
from nspawnctl.store.images import Image, ImageStore
from nspawnctl.store.layers import LayerStore
from nspawnctl.store.pool import Pool


def spec(name: str) -> ContainerSpec:
    return ContainerSpec(
        name=name, id="0" * 32, image="img", image_id="sha256:" + "a" * 64, created="", command=["/bin/true"]
    )


@pytest.fixture
def store(btrfs_mount: Path, request: pytest.FixtureRequest) -> ContainerStore:  # noqa: F811
    """A container store whose definitions go to the test's own directories, not /etc or /run."""
    base = btrfs_mount / ("scale-" + request.node.name.replace("/", "_"))
    paths = Paths(
        pool=base / "machines",
        store=base / "store",
        settings=base / "etc-nspawn",
        runtime_settings=base / "run",
    )
    paths.pool.mkdir(parents=True)
    paths.store.mkdir()
    return ContainerStore(Pool(paths))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the definitions NspawnFile.load reads, in order."""
    seen: list[str] = []
    real = NspawnFile.load.__func__  # type: ignore[attr-defined]

    def load(cls: type[NspawnFile], path: Path) -> NspawnFile:
        seen.append(path.stem)
        return real(cls, path)  # type: ignore[no-any-return]

    monkeypatch.setattr(NspawnFile, "load", classmethod(load))
    return seen


def test_one_container_reads_one_definition_and_a_listing_each_once(
    store: ContainerStore, reads: list[str]
) -> None:
    paths = store.pool.paths
    root = paths.store / "img"
    btrfs.create_subvolume(root)
    image = Image(id="sha256:" + "a" * 64, created="", size=0, source="test", path=root)
    for k in range(30):
        store.create(spec(f"c{k}"), image)
    paths.settings.mkdir(exist_ok=True)
    paths.settings.joinpath("foreign.nspawn").write_text("[Exec]\nBoot=yes\n")  # not nspawnctl's
    reads.clear()
    store.create(spec("c30"), image)
    assert reads == []  # the name check reads no definition (it once parsed all of them)
    assert store.has("c7") and reads == ["c7"]
    assert not store.has("foreign") and not store.has("nothing")
    reads.clear()
    assert [s.name for s in store.list()] == sorted(f"c{k}" for k in range(31))
    assert sorted(reads) == sorted([*(f"c{k}" for k in range(31)), "foreign"])  # each once
    assert store.names() == {f"c{k}" for k in range(31)}
    assert store.names_in_use() == store.names() | {"foreign"}
    store.remove("c3")
    assert not store.has("c3") and "c3" not in store.names_in_use()


def test_shared_sizes_of_all_images_read_the_records_once(
    images: ImageStore,  # noqa: F811
    layers: LayerStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    other = apply(layers, base, tar(("other", b"o")))
    import_image(images, [base, upper], CONFIG_A, "app:a")
    import_image(images, [base, other], CONFIG_B, "app:b")
    import_image(images, [base], "sha256:" + "c" * 64, "app:c")
    imgs = images.list()
    opened: list[str] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: opened.append("x") or real(text, *a, **k))
    sizes = images.shared_sizes(imgs)
    # each image record once for all images (not once per image), and the one shared layer's record
    assert len(opened) == len(imgs) + 1
    monkeypatch.setattr(json, "loads", real)
    assert sizes == {i.id: images.shared_size(i) for i in imgs}
    assert sizes[CONFIG_A] == sizes[CONFIG_B] == sizes["sha256:" + "c" * 64] == base.size
    assert [i.refs for i in imgs] == [images.get(i.id).refs for i in imgs]
