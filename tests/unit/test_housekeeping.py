"""system df's arithmetic and info's host facts, on records built here."""

from __future__ import annotations

from pathlib import Path

from nspawnctl.diskusage import container_usage, image_usage, volume_usage
from nspawnctl.spec import ContainerSpec
from nspawnctl.store.images import Image
from nspawnctl.sysinfo import cgroup_version, filesystem, memory_bytes, os_name


def image(id: str, size: int, layers: list[str] | None = None) -> Image:
    return Image(id=id, created="2026-12-07T00:00:00Z", size=size, source="test", layers=layers or [])


def container(image_id: str) -> ContainerSpec:
    return ContainerSpec(name=f"c-{image_id}", id="0" * 64, image="x", image_id=image_id, created="")


def test_layers_shared_by_images_are_counted_once() -> None:
    imgs = [image("a", 300, ["l1", "l2"]), image("b", 200, ["l1", "l3"]), image("c", 50)]
    layers = {"l1": 100, "l2": 200, "l3": 100, "orphan": 7}
    usage = image_usage(imgs, layers, [container("a")])
    assert (usage.total, usage.active) == (3, 1)
    assert usage.size == 50 + 100 + 200 + 100 + 7  # c's own root, each layer once, the orphan too
    # prune -a frees b (its own layer l3; l1 is a's too), c, and the orphan layer
    assert usage.reclaimable == 100 + 50 + 7


def test_nothing_in_use_is_all_reclaimable_and_in_use_nothing() -> None:
    imgs = [image("a", 300, ["l1"]), image("c", 50)]
    layers = {"l1": 300}
    assert image_usage(imgs, layers, []).reclaimable == 350
    assert image_usage(imgs, layers, [container("a"), container("c")]).reclaimable == 0


def test_containers_size_is_unknown_not_zero() -> None:
    usage = container_usage(["running", "exited", "created", "restarting"])
    assert (usage.total, usage.active, usage.size, usage.reclaimable) == (4, 2, None, None)


def test_host_facts_read_from_files(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    assert os_name(release) == "Debian GNU/Linux 13 (trixie)"
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\nMemFree: 1 kB\n")
    assert memory_bytes(meminfo) == 16384 * 1024
    assert memory_bytes(tmp_path / "missing") == 0
    (tmp_path / "cg").mkdir()
    assert cgroup_version(str(tmp_path / "cg")) == 1
    (tmp_path / "cg" / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroup_version(str(tmp_path / "cg")) == 2
    assert filesystem(tmp_path).total > 0
    assert filesystem(tmp_path / "missing").total == 0


def test_volumes_bound_by_a_container_are_not_reclaimable() -> None:
    usage = volume_usage([(100, True), (30, False), (0, False)])
    assert (usage.kind, usage.total, usage.active, usage.size, usage.reclaimable) == (
        "Local Volumes",
        3,
        1,
        130,
        30,
    )


def test_systemd_version_reads_as_systemctl_prints_it() -> None:
    from nspawnctl.sysinfo import SystemdVersion

    assert SystemdVersion("257.13-1~deb13u1", "", "", "", "").display() == "systemd 257 (257.13-1~deb13u1)"
    assert SystemdVersion("258", "", "", "", "").display() == "systemd 258 (258)"


def test_info_counts_split_as_docker_does() -> None:
    from nspawnctl.sysinfo import container_counts, docker_split

    counts = container_counts(["running", "restarting", "paused", "created", "exited", "exited"])
    assert counts["total"] == 6 and counts["exited"] == 2
    # a restarting container is Running (docker's), a paused one apart, created and exited Stopped
    assert docker_split(counts) == (2, 1, 3)
    assert docker_split(container_counts([])) == (0, 0, 0)
