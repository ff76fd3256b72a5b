"""Images on the real btrfs pool: import from files, stdin and directories; tag, rmi, inspect."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, IMAGES, root_with, subvolumes, tar_of


def image_subvolumes() -> list[str]:
    out = subprocess.run(["btrfs", "subvolume", "list", "/var/lib/nspawnctl"], capture_output=True, text=True)
    return [line.split()[-1] for line in out.stdout.splitlines() if "images/" in line]


@pytest.mark.parametrize(("suffix", "mode"), [("tar", "w"), ("tar.gz", "w:gz"), ("tar.xz", "w:xz")])
def test_import_tarball_then_run_sees_its_files(
    nsp: CLI, busybox_dir: Path, tmp_path: Path, suffix: str, mode: str
) -> None:
    tarball = tar_of(busybox_dir, tmp_path / f"rootfs.{suffix}", mode)
    ref = f"e2e/tar-{suffix.replace('.', '-')}:v1"
    nsp.images.add(ref)
    image_id = nsp("import", str(tarball), ref).stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    listed = {r for i in nsp.json("images") for r in i["refs"]}
    assert ref in listed
    out = nsp("run", "--rm", ref, "cat", "/etc/marker")
    assert out.stdout == "busybox\n"


@pytest.mark.surface
def test_import_zstd_and_stdin_give_the_content_id(nsp: CLI, busybox_dir: Path, tmp_path: Path) -> None:
    plain = tar_of(busybox_dir, tmp_path / "rootfs.tar")
    zst = tmp_path / "rootfs.tar.zst"
    subprocess.run(["zstd", "-q", "-o", str(zst), str(plain)], check=True)
    nsp.images.update({"e2e/zst:latest", "e2e/stdin:latest"})
    id_zst = nsp("import", str(zst), "e2e/zst").stdout.strip()
    id_stdin = nsp("import", "-", "e2e/stdin", input=plain.read_bytes()).stdout.strip()
    # the ID is the digest of the uncompressed tar stream: compression does not change it
    assert id_zst == id_stdin
    import hashlib

    assert id_zst == "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest()


@pytest.mark.serial
def test_import_directory_and_reimport_adds_only_a_name(nsp: CLI, busybox_dir: Path) -> None:
    before = image_subvolumes()
    nsp.images.update({"e2e/dir-a:latest", "e2e/dir-b:latest"})
    first = nsp("import", str(busybox_dir), "e2e/dir-a").stdout.strip()
    after_first = image_subvolumes()
    second = nsp("import", str(busybox_dir), "e2e/dir-b").stdout.strip()
    assert first == second
    assert image_subvolumes() == after_first  # nothing new stored
    assert len(after_first) <= len(before) + 1
    image = nsp.json("image", "inspect", "e2e/dir-a")[0]
    assert {"e2e/dir-a:latest", "e2e/dir-b:latest"} <= set(image["refs"])
    assert Path(image["path"]).is_dir()
    ro = subprocess.run(["btrfs", "property", "get", image["path"], "ro"], capture_output=True, text=True)
    assert ro.stdout.strip() == "ro=true"


@pytest.mark.surface
def test_tag_and_rmi(nsp: CLI, busybox: str) -> None:
    nsp("tag", busybox, "e2e/other:v2")
    assert "e2e/other:v2" in nsp.json("image", "inspect", busybox)[0]["refs"]
    out = nsp("rmi", "e2e/other:v2")
    assert "Untagged: e2e/other:v2" in out.stdout and "Deleted" not in out.stdout
    # the image itself is still there under its first name
    assert nsp("run", "--rm", busybox, "true").returncode == 0


def test_rmi_deletes_the_subvolume_with_the_last_name(nsp: CLI, busybox_dir: Path, tmp_path: Path) -> None:
    root = busybox_dir.parent / "rmi-root"
    if not root.exists():
        import shutil

        shutil.copytree(busybox_dir, root, symlinks=True)
        (root / "etc" / "marker").write_text("rmi\n")
    image_id = nsp("import", str(root), "e2e/rmi").stdout.strip()
    hexid = image_id.split(":")[1]
    assert (IMAGES / hexid).is_dir()
    out = nsp("rmi", "e2e/rmi")
    assert "Deleted: e2e/rmi" in out.stdout
    assert not (IMAGES / hexid).exists() and not (IMAGES / f"{hexid}.json").exists()
    assert hexid not in " ".join(image_subvolumes())


@pytest.mark.serial
def test_images_survive_machinectl_clean(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("create", "--name", name, busybox, "true")
    subprocess.run(["machinectl", "clean", "--all"], capture_output=True, check=False)
    subprocess.run(["machinectl", "clean"], capture_output=True, check=False)
    # the container snapshot is machined's to clean; the image is not
    assert nsp("run", "--rm", busybox, "cat", "/etc/marker").stdout == "busybox\n"
    assert name not in subvolumes()


@pytest.mark.surface
def test_images_json_and_quiet(nsp: CLI, busybox: str) -> None:
    data = nsp.json("images")
    mine = [i for i in data if busybox in i["refs"]]
    assert mine and mine[0]["id"].startswith("sha256:") and mine[0]["size"] > 0
    quiet = nsp("images", "-q").stdout.split()
    assert mine[0]["id"][7:19] in quiet


def test_rmi_of_a_hex_looking_name_removes_only_that_name(nsp: CLI, busybox: str) -> None:
    nsp("tag", busybox, "cafe")
    nsp("tag", busybox, "cafe:v2")
    out = nsp("rmi", "cafe")
    assert out.stdout.splitlines() == ["Untagged: cafe:latest"]
    refs = nsp.json("image", "inspect", busybox)[0]["refs"]
    assert "cafe:v2" in refs and busybox in refs
    nsp("rmi", "cafe:v2")


@pytest.mark.serial
def test_importing_the_same_fresh_directory_three_times_gives_one_image(
    nsp: CLI, busybox_dir: Path, tmp_path: Path
) -> None:
    root = root_with(busybox_dir, tmp_path / "fresh", f"fresh {uuid.uuid4()}\n")
    ref = f"e2e/fresh-{uuid.uuid4().hex[:8]}:latest"
    nsp.images.add(ref)
    dangling_before = {i["id"] for i in nsp.json("images") if not i["refs"]}
    ids = [nsp("import", str(root), ref).stdout.strip() for _ in range(3)]
    assert len(set(ids)) == 1, ids
    listed = nsp.json("images")
    assert [i["refs"] for i in listed if i["id"] == ids[0]] == [[ref]]
    assert {i["id"] for i in listed if not i["refs"]} == dangling_before  # no <none> left behind
    assert ids[0][7:19] not in [line for line in nsp("images").stdout.splitlines() if "<none>" in line]


@pytest.mark.serial
def test_image_prune_removes_dangling_images_and_with_all_unused_ones(
    private: tuple[Callable[..., subprocess.CompletedProcess[str]], Path], busybox_dir: Path, tmp_path: Path
) -> None:
    run, store = private

    def listed() -> dict[str, list[str]]:
        return {i["id"]: i["refs"] for i in json.loads(run("images", "--json").stdout)}

    v1 = run("import", str(root_with(busybox_dir, tmp_path / "v1", "v1\n")), "e2e/app").stdout.strip()
    v2 = run("import", str(root_with(busybox_dir, tmp_path / "v2", "v2\n")), "e2e/app").stdout.strip()
    used = run("import", str(root_with(busybox_dir, tmp_path / "used", "used\n"))).stdout.strip()
    ctr = f"prune-{uuid.uuid4().hex[:8]}"
    run("create", "--name", ctr, used, "true")
    # the name moved to v2: v1 is dangling, shown as <none> like docker does; `used` never had one
    assert listed() == {v1: [], v2: ["e2e/app:latest"], used: []}
    rows = [line.split()[:3] for line in run("images").stdout.splitlines()]
    assert ["<none>", "<none>", v1[7:19]] in rows and ["e2e/app", "latest", v2[7:19]] in rows

    out = run("image", "prune", "-f").stdout.splitlines()
    assert out[:3] == ["Deleted Images:", f"deleted: {v1}", ""], out
    assert out[3].startswith("Total reclaimed space: ") and out[3] != "Total reclaimed space: 0B"
    assert len(out) == 4
    assert listed() == {v2: ["e2e/app:latest"], used: []}  # not the named one, not the one in use
    assert not (store / "images" / v1[7:]).exists()
    assert run("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    assert "without confirmation" in run("image", "prune", check=False).stderr

    # a dangling image goes with `rmi ID` too
    v3 = run("import", str(root_with(busybox_dir, tmp_path / "v3", "v3\n")), "e2e/app").stdout.strip()
    assert listed()[v2] == []
    assert run("rmi", v2[7:19]).stdout == f"Deleted: {v2[7:19]}\n"

    # --all: every image without a container, named or not
    pruned = json.loads(run("image", "prune", "-a", "-f", "--json").stdout)
    assert pruned["images"] == [v3] and pruned["untagged"] == ["e2e/app:latest"] and pruned["reclaimed"] > 0
    assert listed() == {used: []}
    run("rm", ctr)
    out = run("image", "prune", "-a", "-f").stdout.splitlines()
    assert out[:3] == ["Deleted Images:", f"deleted: {used}", ""]
    assert listed() == {}
