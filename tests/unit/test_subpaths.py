"""volume-subpath: the walk a start makes before it binds the opened fd (run/subpaths.py)."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument, VolumeNotFound
from nspawnctl.nspawnfile import OWN_SECTION, NspawnFile
from nspawnctl.run import subpaths
from nspawnctl.run.hostdevices import mount_args
from nspawnctl.run.units import Launch, nspawn_argv
from nspawnctl.spec import ContainerSpec, Volume, file_to_spec, spec_to_file


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


def _subpath_spec(vols: Path, name: str = "c") -> ContainerSpec:
    return ContainerSpec(
        name=name,
        id="0" * 32,
        image="i",
        image_id="1" * 64,
        created="2026-01-01T00:00:00+00:00",
        volumes=[
            Volume(str(vols / "v" / "a" / "b"), "/d", True, subpath="a/b"),
            Volume(str(vols / "v"), "/whole"),
            Volume(str(vols / "v" / "a:x"), "/c:olon", options=("idmap",), subpath="a:x"),
        ],
    )


def test_definition_binds_the_stage_never_the_subpath(vols: Path, tmp_path: Path) -> None:
    """Review 18 #1: a stock ``machinectl start`` reads Bind= without the pre hook; it must name
    the stage (missing then: the start fails), never STORE/volumes/V/SUB (a symlink swap escapes)."""
    spec = _subpath_spec(vols)
    f = spec_to_file(spec)
    binds = f.get_all("Files", "Bind") + f.get_all("Files", "BindReadOnly")
    assert not any(b.startswith(f"{vols}/v/") for b in binds), binds
    stages = subpaths.STAGE_ROOT / "c"
    assert f.get_all("Files", "BindReadOnly") == [f"{stages}/0:/d"]
    assert f.get_all("Files", "Bind") == [f"{vols}/v:/whole", f"{stages}/1:/c\\:olon:idmap"]
    assert f.get_all(OWN_SECTION, "VolumeSubpath") == [f"{vols}/v:a/b:/d", f"{vols}/v:a\\:x:/c\\:olon"]
    # the stages a start mounts are the ones the file names (same order)
    assert {b.host: b.stage for b in subpaths.binds(vols, spec)} == {
        f"{vols}/v/a/b": f"{stages}/0",
        f"{vols}/v/a:x": f"{stages}/1",
    }
    # nspawn's argv binds the stages this start made (here under tmp), in any number
    many = dataclasses.replace(
        spec, volumes=[Volume(f"{vols}/v/s{i:02}", f"/m{i}", subpath=f"s{i:02}") for i in range(12)]
    )
    made = {b.host: b.stage for b in subpaths.binds(vols, many, tmp_path)}
    args = mount_args(many, (), made)
    assert args == [f"--bind={tmp_path}/c/{i}:/m{i}" for i in range(12)]
    back = file_to_spec("c", NspawnFile.parse(f.render()))
    assert sorted(back.volumes, key=str) == sorted(spec.volumes, key=str)
    assert spec_to_file(back).render() == f.render()


def test_a_subpath_key_without_its_stage_bind_is_refused(vols: Path) -> None:
    f = spec_to_file(_subpath_spec(vols))
    f.set_all("Files", "BindReadOnly", [])
    with pytest.raises(InvalidArgument, match="VolumeSubpath= of /d has no stage Bind="):
        file_to_spec("c", f)
    f.set_all(OWN_SECTION, "VolumeSubpath", ["relative:a:/d"])
    with pytest.raises(InvalidArgument, match="invalid"):
        file_to_spec("c", f)


def test_in_use_counts_a_bind_inside_a_volume(tmp_path: Path) -> None:
    """Review 18 #14: one "in use" for volume rm and --rm's anonymous volumes."""
    from nspawnctl.config import Paths
    from nspawnctl.store.volumes import VolumeStore

    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")
    store = VolumeStore(paths, dict)
    vols = store.root
    a = _subpath_spec(vols, "a")
    b = ContainerSpec(name="b", id="2" * 32, image="i", image_id="1" * 64, created="", volumes=[
        Volume(str(vols / "anon"), "/x"), Volume("/srv", "/srv")])  # fmt: skip
    assert store.users_by_path([a, b]) == {
        f"{vols}/v": ["a", "a", "a"],
        f"{vols}/anon": ["b"],
        "/srv": ["b"],
    }


def test_a_bind_inside_a_volume_is_written_as_a_subpath(vols: Path) -> None:
    """A -v of STORE/volumes/V/SUB (or an older definition's Bind=) is stored as --mount's
    volume-subpath: the definition names the stage, never the path."""
    from nspawnctl.store.subpath import marked

    volumes = [Volume(str(vols / "v" / "a"), "/a"), Volume(str(vols / "v"), "/v"), Volume("/srv/x", "/x")]
    spec = ContainerSpec(name="c", id="0" * 32, image="i", image_id="1" * 64, created="", volumes=volumes)
    got = marked(vols, spec)
    assert [v.subpath for v in got.volumes] == ["a", "", ""]
    assert spec_to_file(got).get_all("Files", "Bind") == [
        f"{subpaths.STAGE_ROOT}/c/0:/a",
        f"{vols}/v:/v",
        "/srv/x:/x",
    ]
