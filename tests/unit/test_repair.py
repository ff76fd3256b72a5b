"""What a command killed half way leaves, and how the next one repairs it (store/containers.py,
images.py, layers.py), on a real loop-mounted btrfs (skipped without root and btrfs tools)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_layers import apply, btrfs_mount, tar  # noqa: F401  (btrfs_mount: a fixture)

from nspawnctl.client import Client
from nspawnctl.config import Paths
from nspawnctl.errors import ContainerNotFound, ImageNotFound, NameInUse, PoolError
from nspawnctl.spec import ContainerSpec
from nspawnctl.store import btrfs
from nspawnctl.store.containers import ContainerStore, ExitRecord
from nspawnctl.store.images import Image, ImageStore
from nspawnctl.store.layers import LayerStore
from nspawnctl.store.pool import Pool


@pytest.fixture
def pool(btrfs_mount: Path, request: pytest.FixtureRequest) -> Pool:  # noqa: F811
    base = btrfs_mount / ("repair-" + request.node.name.replace("/", "_"))
    paths = Paths(
        pool=base / "machines",
        store=base / "store",
        settings=base / "etc-nspawn",
        runtime_settings=base / "run-nspawn",
    )
    paths.pool.mkdir(parents=True)
    paths.store.mkdir()
    return Pool(paths)


@pytest.fixture
def image(pool: Pool) -> Image:
    root = pool.paths.store / "img"
    btrfs.create_subvolume(root)
    (root / "hello").write_text("hi\n")
    return Image(id="sha256:" + "a" * 64, created="", size=3, source="test", path=root)


@pytest.fixture
def image2(pool: Pool) -> Image:
    root = pool.paths.store / "img2"
    btrfs.create_subvolume(root)
    (root / "hello").write_text("new\n")
    return Image(id="sha256:" + "b" * 64, created="", size=4, source="test", path=root)


def spec(name: str, auto_remove: bool = False) -> ContainerSpec:
    return ContainerSpec(
        name=name, id="0" * 32, image="img", image_id="sha256:" + "a" * 64, created="",
        command=["/bin/true"], auto_remove=auto_remove,
    )  # fmt: skip


def test_create_makes_root_and_definition_and_leaves_no_staging(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    assert (pool.paths.pool / "c1" / "hello").read_text() == "hi\n"
    assert (pool.paths.settings / "c1.nspawn").is_file()
    assert sorted(os.listdir(pool.paths.pool)) == ["c1"]
    assert store.names() == {"c1"}


def test_a_create_killed_before_its_rename_is_hidden_then_rolled_back(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    os.rename(pool.paths.pool / "c1", pool.paths.pool / ".#nspawnctl-c1.create")  # as if killed there
    assert store.names() == set()
    with pytest.raises(ContainerNotFound):
        store.get("c1")
    store.create(spec("c1"), image)  # the name is not stuck: the leftover is rolled back first
    assert sorted(os.listdir(pool.paths.pool)) == ["c1"]


def test_a_removal_killed_after_its_rename_is_finished_by_the_next_change(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    store.record_exit("c1", ExitRecord(0, "", ""))
    os.rename(pool.paths.pool / "c1", pool.paths.pool / ".#nspawnctl-c1.rm")
    assert store.names() == set()
    store.prune_locked_leftovers()
    assert os.listdir(pool.paths.pool) == []
    assert not (pool.paths.settings / "c1.nspawn").exists()
    assert not (pool.paths.state / "c1.json").exists()


def test_an_rm_container_whose_definition_vanished_with_run_is_removed(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1", auto_remove=True), image)
    assert (pool.paths.state / "c1.autoremove").is_file()
    (pool.paths.runtime_settings / "c1.nspawn").unlink()  # a reboot
    store.prune_locked_leftovers()
    assert os.listdir(pool.paths.pool) == []
    assert not (pool.paths.state / "c1.autoremove").exists()


def test_a_foreign_pool_entry_is_never_ours_to_remove(pool: Pool, image: Image) -> None:
    (pool.paths.pool / "other").mkdir()
    store = ContainerStore(pool)
    with pytest.raises(NameInUse, match="did not make") as e:
        store.create(spec("other"), image)
    assert "machinectl remove other" in (e.value.hint or "")
    store.prune_locked_leftovers()
    assert (pool.paths.pool / "other").is_dir()


def test_create_from_an_image_removed_meanwhile_says_so_and_leaves_nothing(pool: Pool, image: Image) -> None:
    btrfs.delete(image.path)
    with pytest.raises(ImageNotFound, match="was removed"):
        ContainerStore(pool).create(spec("c1", auto_remove=True), image)
    assert os.listdir(pool.paths.pool) == []
    assert not pool.paths.state.exists() or not os.listdir(pool.paths.state)


def test_layer_halves_left_by_a_killed_removal_are_swept(pool: Pool) -> None:
    layers = LayerStore(pool)
    one = apply(layers, None, tar(("a", b"1")))
    two = apply(layers, one, tar(("b", b"2")))
    btrfs.delete(one.path)  # killed between the subvolume and its record
    (layers.dir / f"{two.path.name}.json").unlink()  # or the other way round (the old order)
    assert [la.chain_id for la in layers.list()] == []
    layers.prune(set)
    assert sorted(os.listdir(layers.dir)) == []


def test_image_halves_left_by_a_killed_rmi_or_import_are_swept(pool: Pool) -> None:
    images = ImageStore(pool)
    images.dir.mkdir(parents=True)
    orphan_root = images.dir / ("b" * 64)
    btrfs.create_subvolume(orphan_root)  # an rmi killed after the record went
    (images.dir / f"{'c' * 64}.json").write_text(json.dumps({"created": "", "size": 0}))  # no root
    (pool.paths.store / ".refs.json.999999999-0000").write_text("{}")  # a dead pull's temp refs
    assert images.list() == []
    assert images.prune(lambda _: []) == []
    assert os.listdir(images.dir) == []
    assert not list(pool.paths.store.glob(".refs.json.*"))


def test_repair_removes_dead_definition_temp_files_but_not_an_editors(pool: Pool) -> None:
    settings = pool.paths.settings
    settings.mkdir()
    (settings / ".web.nspawn.ab12cd_9").write_text("[Exec]\n")  # NspawnFile.save killed mid-way
    (settings / ".web.nspawn.swp").write_text("vim")
    ContainerStore(pool).prune_locked_leftovers()
    assert os.listdir(settings) == [".web.nspawn.swp"]


def test_a_layer_an_image_links_to_is_kept_even_without_its_record(pool: Pool) -> None:
    layers = LayerStore(pool)
    top = apply(layers, None, tar(("a", b"1")))
    pool.paths.images.mkdir(parents=True, exist_ok=True)
    (pool.paths.images / ("d" * 64)).symlink_to(f"../layers/{top.path.name}")
    (layers.dir / f"{top.path.name}.json").unlink()  # damaged, not a crash of ours
    layers.sweep_locked()
    assert top.path.is_dir()


# -- a payload's nested subvolume, a leftover that cannot go (review 12, findings 1, 5, 7) ----------
def test_a_container_whose_root_holds_a_nested_subvolume_is_removable(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    btrfs.create_subvolume(pool.paths.pool / "c1" / "nested")  # what a payload can do in its userns
    btrfs.create_subvolume(pool.paths.pool / "c1" / "nested" / "deeper")
    store.remove("c1")
    assert os.listdir(pool.paths.pool) == []
    store.create(spec("c1"), image)  # the name is free again


def test_a_killed_removal_of_a_nested_root_is_finished_and_blocks_no_create(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    btrfs.create_subvolume(pool.paths.pool / "c1" / "nested")
    os.rename(pool.paths.pool / "c1", pool.paths.pool / ".#nspawnctl-c1.rm")  # killed there
    store.create(spec("c2"), image)
    assert sorted(os.listdir(pool.paths.pool)) == ["c2"]


@pytest.fixture
def stuck_leftover(pool: Pool) -> Iterator[Path]:
    """A removal's leftover that cannot be deleted (an immutable file in a plain directory)."""
    entry = pool.paths.pool / ".#nspawnctl-c1.rm"
    entry.mkdir()
    (entry / "f").write_text("x")
    subprocess.run(["chattr", "+i", str(entry / "f")], check=True)
    yield entry
    subprocess.run(["chattr", "-i", str(entry / "f")], check=True)


def test_one_leftover_that_cannot_go_blocks_only_its_own_name(
    pool: Pool, image: Image, stuck_leftover: Path
) -> None:
    told: list[str] = []
    store = ContainerStore(pool, told.append)
    (pool.paths.pool / ".#nspawnctl-c3.rm").mkdir()  # another leftover: still repaired
    store.create(spec("c2"), image)
    assert sorted(os.listdir(pool.paths.pool)) == [".#nspawnctl-c1.rm", "c2"]
    assert len(told) == 1 and str(stuck_leftover) in told[0] and told[0].startswith("warning: ")
    store.prune_locked_leftovers()
    assert len(told) == 2
    with pytest.raises(PoolError, match="could not be removed"):
        store.create(spec("c1"), image)
    assert store.names() == {"c2"}


def test_image_prune_repairs_a_killed_create_first(pool: Pool, image: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    os.rename(pool.paths.pool / "c1", pool.paths.pool / ".#nspawnctl-c1.create")  # killed there
    Client(pool.paths).images.prune()
    assert os.listdir(pool.paths.pool) == []
    assert not (pool.paths.settings / "c1.nspawn").exists()


# -- a recreate killed at each step ---------------------------------------------------------------
def _hello(pool: Pool, name: str = "c1") -> str:
    return (pool.paths.pool / name / "hello").read_text()


def test_a_recreate_killed_after_its_snapshot_leaves_the_container_as_it_was(
    pool: Pool, image: Image, image2: Image
) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    btrfs.snapshot(image2.path, pool.paths.pool / ".#nspawnctl-c1.new")  # killed there
    store.create(spec("c2"), image)
    assert sorted(os.listdir(pool.paths.pool)) == ["c1", "c2"]
    assert _hello(pool) == "hi\n"


def test_a_recreate_killed_between_its_renames_gets_its_old_root_back(
    pool: Pool, image: Image, image2: Image
) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    btrfs.snapshot(image2.path, pool.paths.pool / ".#nspawnctl-c1.new")
    os.rename(pool.paths.pool / "c1", pool.paths.pool / ".#nspawnctl-c1.old")  # killed there
    store.prune_locked_leftovers()
    assert sorted(os.listdir(pool.paths.pool)) == ["c1"]
    assert _hello(pool) == "hi\n"
    assert store.get("c1").image_id == image.id


def test_an_apply_killed_before_finishing_its_recreate_leaves_no_old_root(
    pool: Pool, image: Image, image2: Image
) -> None:
    ContainerStore(pool).create(spec("c1"), image)
    pid = os.fork()
    if pid == 0:  # the apply: recreate keeping the old root aside, then killed
        try:
            ContainerStore(pool).recreate(spec("c1"), image2, keep_old=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.path.isdir(pool.paths.pool / ".#nspawnctl-c1.old")
    store = ContainerStore(pool)
    store.prune_locked_leftovers()
    assert sorted(os.listdir(pool.paths.pool)) == ["c1"]
    assert _hello(pool) == "new\n"
    assert not (pool.paths.state / ".c1.recreate").exists()


def test_the_old_root_a_live_apply_keeps_aside_survives_others_repair(
    pool: Pool, image: Image, image2: Image
) -> None:
    applying = ContainerStore(pool)
    applying.create(spec("c1"), image)
    applying.recreate(spec("c1"), image2, keep_old=True)
    ContainerStore(pool).create(spec("c2"), image)  # another command's repair
    applying.create(spec("c3"), image)  # and the apply's own
    assert os.path.isdir(pool.paths.pool / ".#nspawnctl-c1.old")
    path, previous = applying.definition("c1")
    applying.undo_recreate("c1", path, previous)  # still possible: the new root did not start
    assert _hello(pool) == "hi\n"
    applying.recreate(spec("c1"), image2, keep_old=True)
    applying.finish_recreate("c1")
    assert sorted(os.listdir(pool.paths.pool)) == ["c1", "c2", "c3"]
    assert not list(pool.paths.state.glob(".c1.recreate"))


def test_rm_also_removes_a_recreates_leftovers(pool: Pool, image: Image, image2: Image) -> None:
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    store.recreate(spec("c1"), image2, keep_old=True)
    btrfs.snapshot(image2.path, pool.paths.pool / ".#nspawnctl-c1.new")
    store.remove("c1")
    assert os.listdir(pool.paths.pool) == []


def test_an_attached_rm_run_that_died_is_removed_once_its_unit_is_gone(
    pool: Pool, image: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A foreground run --rm without a network removes its container itself (no ExecStopPost):
    killed meanwhile, it leaves state/NAME.attached unlocked; the next change removes the
    container, but only once its unit's cgroup is gone, and never while the run holds the lock."""
    from nspawnctl.store import containers

    cgroups = tmp_path / "machine.slice"
    monkeypatch.setattr(containers, "CGROUP_ROOTS", (cgroups,))
    store = ContainerStore(pool)
    store.create(spec("c1", auto_remove=True), image)
    with store.attached("c1"):  # the run is alive: nothing is touched
        store.prune_locked_leftovers()
        assert store.names() == {"c1"}
    (cgroups / "nspawnctl-c1.service").mkdir(parents=True)  # the run died; its payload runs on
    store.prune_locked_leftovers()
    assert store.names() == {"c1"}
    (cgroups / "nspawnctl-c1.service").rmdir()  # the payload ended
    store.create(spec("c2"), image)  # the next change repairs
    assert store.names() == {"c2"}
    assert not (pool.paths.state / "c1.attached").exists()
    assert not (pool.paths.state / "c1.autoremove").exists()
    assert sorted(os.listdir(pool.paths.pool)) == ["c2"]


def test_the_attached_file_appears_already_locked(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """No moment in which a repair could find state/NAME.attached unlocked while its run lives."""
    import fcntl

    from nspawnctl.store import containers as mod

    store = ContainerStore(pool)
    seen: list[bool] = []
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        seen.append(Path(dst).exists())  # not there before the rename
        real_rename(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # locked from its first moment
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)

    monkeypatch.setattr(mod.os, "rename", rename)
    with store.attached("c1"):
        assert seen == [False]
        assert [p.name for p in pool.paths.state.iterdir()] == ["c1.attached"]


def test_a_run_killed_naming_its_attached_lock_leaves_a_temporary_the_repair_removes(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is made under a temporary name and renamed, both under the pool lock: a repair
    (which holds that lock) finds a temporary only when its run died between the two."""
    from nspawnctl.store import containers as mod

    store = ContainerStore(pool)
    held: list[bool] = []
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        import fcntl

        fd = os.open(pool.paths.lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the pool lock is held meanwhile
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(True)
        finally:
            os.close(fd)
        real_rename(src, dst)

    monkeypatch.setattr(mod.os, "rename", rename)
    with store.attached("c1"):
        pass
    assert held == [True]
    leftover = pool.paths.state / ".c2.attached.k1ll3d"  # as the killed run left it
    leftover.write_bytes(b"")
    store.prune_locked_leftovers()
    assert not leftover.exists()
