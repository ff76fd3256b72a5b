"""volume-subpath: the walk a start makes before it binds the opened fd (run/subpaths.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument, VolumeNotFound
from nspawnctl.run import subpaths
from nspawnctl.run.hostdevices import mount_args
from nspawnctl.run.units import Launch, nspawn_argv
from nspawnctl.spec import ContainerSpec, Volume


@pytest.fixture
def vols(tmp_path: Path) -> Path:
    root = tmp_path / "volumes"
    vol = root / "v"
    (vol / "a" / "b").mkdir(parents=True)
    (vol / "a" / "b" / "data").write_text("x")
    (vol / "a" / "up").symlink_to("..")
    (vol / "link").symlink_to("/")
    (vol / "a" / "flink").symlink_to("b/data")
    os.mkfifo(vol / "fifo")
    return root


def _kind(fd: int) -> int:
    try:
        return os.fstat(fd).st_mode
    finally:
        os.close(fd)


def test_walk_opens_directories_and_files(vols: Path) -> None:
    assert stat.S_ISDIR(_kind(subpaths.open_subpath(vols, "v", "a/b")))
    assert stat.S_ISREG(_kind(subpaths.open_subpath(vols, "v", "a/b/data")))  # docker allows a file


@pytest.mark.parametrize(
    ("sub", "why"),
    [
        ("link", "'link' is a symbolic link"),
        ("link/etc", "'link' is a symbolic link"),
        ("a/up/a", "'up' is a symbolic link"),
        ("a/flink", "'flink' is a symbolic link"),
        ("a/b/data/x", "'data' is not a directory"),
        ("fifo", "'fifo' is not a directory or regular file"),
        ("a/missing/x", "'missing' is missing"),
        ("../v", "without '.' or '..'"),
        ("a/../a", "without '.' or '..'"),
        ("/etc", "without '.' or '..'"),
        ("a//b", "without '.' or '..'"),
    ],
)
def test_walk_refuses(vols: Path, sub: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        os.close(subpaths.open_subpath(vols, "v", sub))
    assert why in e.value.message, e.value.message


def test_walk_of_a_missing_volume(vols: Path) -> None:
    with pytest.raises(VolumeNotFound):
        subpaths.open_subpath(vols, "nope", "a")


def test_the_fd_keeps_what_was_walked(vols: Path) -> None:
    """A swap after the walk changes nothing the fd holds (what the stage mounts)."""
    fd = subpaths.open_subpath(vols, "v", "a/b")
    try:
        os.rename(vols / "v" / "a" / "b", vols / "v" / "a" / "old")
        (vols / "v" / "a" / "b").symlink_to("/")
        assert os.listdir(f"/proc/self/fd/{fd}") == ["data"]
    finally:
        os.close(fd)


def test_binds_and_argv(vols: Path, tmp_path: Path) -> None:
    spec = ContainerSpec(
        name="c",
        id="0" * 32,
        image="i",
        image_id="1" * 64,
        created="2026-01-01T00:00:00+00:00",
        volumes=[
            Volume(str(vols / "v" / "a" / "b"), "/d", True),
            Volume(str(vols / "v"), "/whole"),
            Volume(str(vols / "v" / "a"), "/a", options=("idmap",)),
            Volume("/srv/x", "/x"),
            Volume(str(vols / ".meta" / "x"), "/m"),
        ],
    )
    stages = tmp_path / "stages"
    got = subpaths.binds(vols, spec, stages)
    assert [(b.volume, b.sub, b.stage) for b in got] == [
        ("v", "a", str(stages / "c" / "0")),
        ("v", "a/b", str(stages / "c" / "1")),
    ]
    staged = {b.host: b.stage for b in got}
    args = mount_args(spec, (), staged)
    assert f"--bind-ro={stages}/c/1:/d" in args and f"--bind={stages}/c/0:/a:idmap" in args
    assert f"--bind={vols}/v:/whole" in args and "--bind=/srv/x:/x" in args
    assert not any(f"{vols}/v/a" in a for a in args)
    argv = nspawn_argv(spec, Path("/p"), Launch(staged=tuple(staged.items())))
    assert "--settings=trusted" in argv and f"--bind-ro={stages}/c/1:/d" in argv
    assert "--settings=override" in nspawn_argv(spec, Path("/p"), Launch())


@pytest.mark.skipif(os.geteuid() != 0, reason="umount2 needs root")
def test_unstage_never_removes_volume_files(tmp_path: Path) -> None:
    """A stage left unmounted is removed; a non-empty one (never the case, but) is kept whole."""
    stages = tmp_path / "stages"
    (stages / "c" / "0").mkdir(parents=True)
    (stages / "c" / "1").write_text("")
    subpaths.unstage("c", stages)
    assert not (stages / "c").exists()
    (stages / "d" / "0").mkdir(parents=True)
    (stages / "d" / "0" / "keep").write_text("x")
    with pytest.raises(OSError):
        subpaths.unstage("d", stages)
    assert (stages / "d" / "0" / "keep").read_text() == "x"
    subpaths.sweep(keep=["d"], stage_root=stages)  # a kept name's stage is not touched
    assert (stages / "d" / "0" / "keep").exists()
    for name in ("e", "f", "g"):
        (stages / name / "0").mkdir(parents=True)
    (tmp_path / "machines").mkdir()
    (tmp_path / "machines" / "f").write_text("")  # runs, from another store
    subpaths.sweep(keep=["d", "g"], gone=["g"], stage_root=stages, machines=tmp_path / "machines")
    assert sorted(os.listdir(stages)) == ["d", "f"]
