"""Tests for nspawnctl.store.layers and the OCI side of the image store, on a real btrfs.

A sparse file in /var/tmp becomes a loop-mounted btrfs for the module; this needs root, losetup,
mkfs.btrfs and the btrfsutil module, and the tests skip cleanly without them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import ArchiveError, InvalidArgument, NotFound, UnsafeArchive, VerificationFailed
from nspawnctl.ref import ImageRef
from nspawnctl.spec import RunDefaults
from nspawnctl.store import btrfs
from nspawnctl.store.images import UNVERIFIED, ImageStore
from nspawnctl.store.layers import Layer, LayerStore, chain_of
from nspawnctl.store.pool import Pool

# --- a loop-mounted btrfs ------------------------------------------------------------------------


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def btrfs_mount() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (losetup, mount)")
    for tool in ("losetup", "mkfs.btrfs", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    pytest.importorskip("btrfsutil")
    work = Path(tempfile.mkdtemp(prefix="nspawnctl-layers-", dir="/var/tmp"))
    image, mnt = work / "btrfs.img", work / "mnt"
    mnt.mkdir()
    device = None
    mounted = False
    try:
        with image.open("wb") as f:
            f.truncate(512 << 20)  # sparse
        try:
            _run("mkfs.btrfs", "-q", str(image))
            device = _run("losetup", "--find", "--show", str(image))
            _run("mount", "-t", "btrfs", device, str(mnt))
            mounted = True
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot mount a loop btrfs here: {e.stderr.strip()}")
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
        if device:
            subprocess.run(["losetup", "--detach", device], check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pool(btrfs_mount: Path, request: pytest.FixtureRequest) -> Pool:
    base = btrfs_mount / request.node.name.replace("/", "_")
    paths = Paths(pool=base / "machines", store=base / "store")
    paths.pool.mkdir(parents=True)
    paths.store.mkdir()
    return Pool(paths)


@pytest.fixture
def layers(pool: Pool) -> LayerStore:
    return LayerStore(pool)


@pytest.fixture
def images(pool: Pool) -> ImageStore:
    return ImageStore(pool)


# --- layer tars ----------------------------------------------------------------------------------


def member(
    name: str, data: bytes | None = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 1_600_000_000
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE and data else 0
    return ti


def tar(*entries: tuple[str, bytes | None] | tuple[str, bytes | None, bytes, str]) -> bytes:
    """Entries: (name, data) for files, (name, None) for directories, (name, None, type, link)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            name, data = entry[0], entry[1]
            if len(entry) == 4:
                tf.addfile(member(name, None, entry[2], entry[3]))
            elif data is None:
                tf.addfile(member(name, None, tarfile.DIRTYPE))
            else:
                tf.addfile(member(name, data), io.BytesIO(data))
    return buf.getvalue()


def diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def apply(store: LayerStore, parent: Layer | None, data: bytes, *, compressed: bool = True) -> Layer:
    import gzip

    blob = gzip.compress(data) if compressed else data
    did = diff_id(data)
    chain = chain_of(parent.chain_id if parent else None, did)
    return store.apply(parent, chain, did, diff_id(blob), io.BytesIO(blob))


BASE = tar(
    ("etc", None),
    ("etc/hostname", b"base\n"),
    ("etc/os-release", b"ID=test\n"),
    ("var", None),
    ("var/run", None, tarfile.SYMTYPE, "/run"),
    ("usr/lib/libc.so", b"libc"),
    ("usr/share/doc/README", b"docs"),
)
UPPER = tar(
    ("etc/hostname", b"upper\n"),
    ("usr/share/.wh.doc", b""),
    ("usr/lib/.wh..wh..opq", b""),
    ("usr/lib/libnew.so", b"new"),
    ("usr/bin/os-release-link", None, tarfile.LNKTYPE, "etc/os-release"),
)


def leftovers(store: LayerStore) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir() if p.name.startswith(".tmp-"))


# --- LayerStore ---------------------------------------------------------------------------------------


def test_layers_are_read_only_snapshots_of_their_parent(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    assert base.chain_id == base.diff_id == diff_id(BASE)
    assert base.parent is None and base.size == len(BASE)
    assert base.path == layers.dir / base.chain_id.removeprefix("sha256:")
    upper = apply(layers, base, UPPER)
    assert upper.parent == base.chain_id
    assert upper.chain_id == chain_of(base.chain_id, diff_id(UPPER)) != upper.diff_id
    for layer in (base, upper):
        assert btrfs.is_subvolume(layer.path)
        assert btrfs._btrfsutil().get_subvolume_read_only(str(layer.path))
    top = upper.path
    assert (top / "etc/hostname").read_text() == "upper\n"
    assert (top / "etc/os-release").read_text() == "ID=test\n"
    assert not (top / "usr/share/doc").exists() and (top / "usr/share").is_dir()
    assert os.listdir(top / "usr/lib") == ["libnew.so"]
    assert (top / "usr/bin/os-release-link").stat().st_ino == (top / "etc/os-release").stat().st_ino
    assert os.readlink(top / "var/run") == "/run"
    # The parent is untouched.
    assert (base.path / "etc/hostname").read_text() == "base\n"
    assert (base.path / "usr/share/doc/README").read_text() == "docs"
    assert (base.path / "etc/os-release").stat().st_nlink == 1
    assert layers.get(upper.chain_id) == upper
    assert {layer.chain_id for layer in layers.list()} == {base.chain_id, upper.chain_id}
    record = json.loads((layers.dir / f"{top.name}.json").read_text())
    assert record == {
        "chain_id": upper.chain_id,
        "diff_id": diff_id(UPPER),
        "parent": base.chain_id,
        "blob": upper.blob,
        "size": len(UPPER),
        "created": upper.created,
        "pid": os.getpid(),
    }
    assert leftovers(layers) == []


def test_diff_id_mismatch_keeps_nothing(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    wrong = diff_id(b"something else")
    with pytest.raises(VerificationFailed, match="does not match its diff ID") as e:
        layers.apply(base, chain_of(base.chain_id, wrong), wrong, "sha256:" + "0" * 64, io.BytesIO(UPPER))
    assert e.value.hint
    assert [layer.chain_id for layer in layers.list()] == [base.chain_id]
    assert sorted(os.listdir(layers.dir)) == sorted([base.path.name, f"{base.path.name}.json"])


def test_bad_layer_keeps_nothing(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    with pytest.raises(UnsafeArchive, match="passes through the symlink 'var/run'"):
        apply(layers, base, tar(("var/run/pwned", b"x")))
    with pytest.raises(ArchiveError, match="truncated"):  # inside etc/hostname's data (512..518)
        apply(layers, base, UPPER[:515], compressed=False)
    assert not Path("/run/pwned").exists()
    assert leftovers(layers) == [] and len(layers.list()) == 1
    assert os.readlink(base.path / "var/run") == "/run"


@pytest.mark.parametrize(
    ("chain", "diff", "blob"),
    [
        ("sha256:" + "0" * 64, diff_id(BASE), "sha256:" + "1" * 64),  # chain does not follow
        ("sha256:../../x", "sha256:../../x", "sha256:" + "1" * 64),
        (diff_id(BASE).upper(), diff_id(BASE).upper(), "sha256:" + "1" * 64),
        (diff_id(BASE), diff_id(BASE), "sha256:../x"),
    ],
)
def test_bad_ids_refused_before_anything(layers: LayerStore, chain: str, diff: str, blob: str) -> None:
    with pytest.raises(InvalidArgument):
        layers.apply(None, chain, diff, blob, io.BytesIO(BASE))
    assert not layers.dir.exists() or leftovers(layers) == []
    with pytest.raises(InvalidArgument):
        layers.get("sha256:../../etc")


def test_existing_layer_is_reused_without_reading(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)

    class Unread(io.RawIOBase):
        def readinto(self, buffer: object) -> int:
            raise AssertionError("read")

    assert layers.apply(None, base.chain_id, base.diff_id, base.blob, Unread()) == base  # type: ignore[arg-type]


def test_racing_apply_keeps_the_first(layers: LayerStore, pool: Pool) -> None:
    """A pull that finishes a layer while another is applying it: the second drops its copy."""
    base = apply(layers, None, BASE)
    first: list[Layer] = []

    class Racing(io.RawIOBase):
        def __init__(self) -> None:
            super().__init__()
            self.inner = io.BytesIO(UPPER)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            if not first:
                first.append(apply(LayerStore(pool), base, UPPER))
            data = self.inner.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)

    chain = chain_of(base.chain_id, diff_id(UPPER))
    second = layers.apply(base, chain, diff_id(UPPER), "sha256:" + "2" * 64, Racing())  # type: ignore[arg-type]
    assert second == first[0]
    assert leftovers(layers) == [] and len(layers.list()) == 2


def test_stale_staging_of_dead_process_is_swept(layers: LayerStore) -> None:
    layers.dir.mkdir(parents=True)
    proc = subprocess.Popen(["true"])
    proc.wait()
    stale = layers.dir / f".tmp-{proc.pid}-abcd"
    btrfs.create_subvolume(stale)
    btrfs.set_read_only(stale)
    live = layers.dir / f".tmp-{os.getpid()}-beef"
    btrfs.create_subvolume(live)
    apply(layers, None, BASE)
    assert not stale.exists() and live.exists()
    btrfs.delete(live)


def test_remove_and_prune(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    other = apply(layers, base, tar(("other", b"o")))
    layers.remove(base.chain_id)
    assert layers.get(base.chain_id) is None and not base.path.exists()
    assert (upper.path / "etc/os-release").exists()  # a layer is a whole filesystem
    layers.remove(base.chain_id)  # already gone: fine
    gone = layers.prune(lambda: {upper.chain_id})
    assert [layer.chain_id for layer in gone] == [other.chain_id]
    assert [layer.chain_id for layer in layers.list()] == [upper.chain_id]


def test_prune_spares_layers_of_a_pull_still_running(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    meta = layers.dir / f"{base.chain_id.removeprefix('sha256:')}.json"
    record = json.loads(meta.read_text())
    sleeper = subprocess.Popen(["sleep", "30"])  # stands in for the pull that made the layer
    try:
        meta.write_text(json.dumps({**record, "pid": sleeper.pid}))
        assert layers.prune(set) == [] and layers.get(base.chain_id) is not None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [layer.chain_id for layer in layers.prune(set)] == [base.chain_id]


# --- OCI images in the ImageStore ------------------------------------------------------------------

CONFIG_A = "sha256:" + "a" * 64
CONFIG_B = "sha256:" + "b" * 64


def import_image(
    images: ImageStore, chain: list[Layer], image_id: str, name: str, origin: dict[str, str] | None = None
) -> object:
    return images.import_layers(
        chain[-1],
        image_id=image_id,
        ref=ImageRef.parse(name),
        source=f"docker://{name}",
        defaults=RunDefaults(command=["/bin/sh"]),
        origin=origin or {"verified": "digests (sha256) over TLS"},
        layers=[layer.chain_id for layer in chain],
        size=sum(layer.size for layer in chain),
    )


def test_image_links_to_its_top_layer(images: ImageStore, layers: LayerStore, pool: Pool) -> None:
    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    import_image(images, [base, upper], CONFIG_A, "example.com/app:v1")
    img = images.get("example.com/app:v1")
    assert img.id == CONFIG_A and img.refs == ["example.com/app:v1"]
    assert img.layers == [base.chain_id, upper.chain_id]
    assert img.path == upper.path and img.size == len(BASE) + len(UPPER)
    assert img.defaults.command == ["/bin/sh"] and img.to_json()["layers"] == img.layers
    link = images.dir / ("a" * 64)
    assert os.readlink(link) == f"../layers/{upper.path.name}"
    record = json.loads((images.dir / f"{'a' * 64}.json").read_text())
    assert record["layers"] == img.layers and record["source"] == "docker://example.com/app:v1"
    assert [i.id for i in images.list()] == [CONFIG_A]
    assert images.get("a" * 12).id == CONFIG_A
    # A container is a writable snapshot of the top layer.
    root = pool.paths.pool / "c1"
    btrfs.snapshot(img.path, root)
    (root / "etc/hostname").write_text("container\n")
    assert (upper.path / "etc/hostname").read_text() == "upper\n"
    btrfs.delete(root)


def test_reimport_updates_origin_and_adds_ref(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "r/one", {"verified": "digests", "reference": "1"})
    import_image(images, [base], CONFIG_A, "r/two", {"verified": UNVERIFIED, "reference": "2"})
    img = images.get(CONFIG_A)
    assert img.refs == ["r/one:latest", "r/two:latest"]
    assert img.origin["reference"] == "1"  # an unverified pull never replaces a verified origin
    import_image(images, [base], CONFIG_A, "r/two", {"verified": "digests", "reference": "3"})
    assert images.get(CONFIG_A).origin["reference"] == "3"
    assert len(images.list()) == 1


def test_shared_layers_and_rmi(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    other = apply(layers, base, tar(("other", b"o")))
    import_image(images, [base, upper], CONFIG_A, "app:a")
    import_image(images, [base, other], CONFIG_B, "app:b")
    assert images.used_layers() == {base.chain_id, upper.chain_id, other.chain_id}
    a, b = images.get("app:a"), images.get("app:b")
    assert images.shared_size(a) == images.shared_size(b) == base.size
    untagged, deleted = images.remove("app:a", False, lambda _: [])
    assert (untagged, deleted) == (["app:a"], True)
    assert layers.get(upper.chain_id) is None and not upper.path.exists()
    assert layers.get(base.chain_id) is not None and layers.get(other.chain_id) is not None
    assert not os.path.lexists(images.dir / ("a" * 64))
    assert images.shared_size(images.get("app:b")) == 0
    images.remove("app:b", False, lambda _: [])
    assert layers.list() == [] and images.list() == [] and images.used_layers() == set()
    assert sorted(os.listdir(images.dir)) == []


def test_two_images_with_the_same_top_layer(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "x:a")
    import_image(images, [base], CONFIG_B, "x:b")
    images.remove(CONFIG_A, False, lambda _: [])
    assert images.get("x:b").path == base.path and base.path.is_dir()
    images.remove("x:b", False, lambda _: [])
    assert not base.path.exists()


def test_import_layers_checks_its_input(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    with pytest.raises(InvalidArgument):
        import_image(images, [base], "sha256:../../x", "x:a")
    with pytest.raises(InvalidArgument):
        images.import_layers(
            base, CONFIG_A, None, "s", RunDefaults(), {}, layers=["sha256:" + "c" * 64], size=0
        )
    layers.remove(base.chain_id)
    with pytest.raises(NotFound, match="was removed"):
        import_image(images, [base], CONFIG_A, "x:a")
    assert images.list() == [] and not os.path.lexists(images.dir / ("a" * 64))


def test_several_refs_are_written_at_once_or_the_new_image_goes(
    images: ImageStore, layers: LayerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load's RepoTags: all of them with the image, or (the write failing) no image at all."""
    base = apply(layers, None, BASE)
    refs = [ImageRef.parse("x:a"), ImageRef.parse("x:b")]
    chain = [base.chain_id]

    def fail(_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images, "_write_refs", fail)
    with pytest.raises(OSError):
        images.import_layers(base, CONFIG_A, refs, "s", RunDefaults(), {}, layers=chain, size=0)
    assert images.list() == [] and not os.path.lexists(images.dir / ("a" * 64))
    monkeypatch.undo()
    img = images.import_layers(base, CONFIG_A, refs, "s", RunDefaults(), {}, layers=chain, size=0)
    assert sorted(img.refs) == ["x:a", "x:b"]


def test_image_symlink_elsewhere_is_not_an_image(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "x:a")
    link = images.dir / ("a" * 64)
    link.unlink()
    link.symlink_to("/")
    assert images.list() == []
    link.unlink()
    link.symlink_to(f"../layers/{base.path.name}")
    assert images.get("x:a").path == base.path


# --- review fixes -----------------------------------------------------------------------------------


def test_rmi_of_a_short_name_untags_only_the_name_it_found(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "docker.io/library/alpine:latest")
    images.tag("docker.io/library/alpine:latest", ImageRef.parse("myalpine:1"))
    assert images.get("alpine").refs == ["docker.io/library/alpine:latest", "myalpine:1"]
    assert images.remove("alpine", False, lambda _: []) == (["docker.io/library/alpine:latest"], False)
    assert images.get("myalpine:1").refs == ["myalpine:1"] and layers.get(base.chain_id) is not None
    images.tag("myalpine:1", ImageRef.parse("other:2"))
    # an ID still removes every name
    assert images.remove("a" * 12, False, lambda _: []) == (["myalpine:1", "other:2"], True)
    assert images.list() == [] and layers.list() == []


def test_prune_reads_keep_under_the_lock_and_honours_only(
    images: ImageStore, layers: LayerStore, pool: Pool
) -> None:
    import fcntl

    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    other = apply(layers, base, tar(("other", b"o")))
    import_image(images, [base, upper], CONFIG_A, "app:a")

    def keep() -> set[str]:
        fd = os.open(pool.paths.lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the pool lock is held while keep() runs
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        return images.used_layers()

    assert layers.prune(keep, only={base.chain_id, upper.chain_id}) == []
    assert layers.get(other.chain_id) is not None  # not among ``only``
    assert [la.chain_id for la in layers.prune(keep, only={other.chain_id})] == [other.chain_id]
    assert [la.chain_id for la in layers.list()] == [base.chain_id, upper.chain_id]


def test_made_by_this_process(layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    assert layers.made_by_this_process(base.chain_id)
    meta = layers.dir / f"{base.chain_id.removeprefix('sha256:')}.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "pid": 1}))
    assert not layers.made_by_this_process(base.chain_id)
    assert not layers.made_by_this_process("sha256:" + "e" * 64)


def test_image_link_comes_before_its_record(
    images: ImageStore, layers: LayerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the two leaves a link that is no image and pins no layer; a pull again works."""
    import nspawnctl.store.images as images_mod

    base = apply(layers, None, BASE)
    real = images_mod.write_json

    def crash(path: Path, data: object) -> None:
        if path.name == f"{'a' * 64}.json":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(images_mod, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        import_image(images, [base], CONFIG_A, "x:a")
    monkeypatch.setattr(images_mod, "write_json", real)
    assert os.path.islink(images.dir / ("a" * 64)) and not (images.dir / f"{'a' * 64}.json").exists()
    assert images.list() == [] and images.used_layers() == set()
    assert [la.chain_id for la in layers.prune(images.used_layers)] == [base.chain_id]
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "x:a")
    assert images.get("x:a").path == base.path


def test_sweep_drops_rootless_records_and_dead_temp_files(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    import_image(images, [base], CONFIG_A, "x:a")
    orphan = images.dir / f"{'c' * 64}.json"
    orphan.write_text(json.dumps({"created": "", "size": 0, "layers": [base.chain_id, "sha256:" + "d" * 64]}))
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = images.dir / f".{'a' * 64}.json.{proc.pid}-abcd"
    live = images.dir / f".{'a' * 64}.json.{os.getpid()}-abcd"
    old = layers.dir / f".{'f' * 64}.json.0123abcd"
    refs_tmp = images.refs_file.with_name(f".refs.json.{proc.pid}-abcd")
    for f in (dead, live, old, refs_tmp):
        f.write_text("{")
    os.utime(old, (1_600_000_000, 1_600_000_000))
    assert "sha256:" + "d" * 64 in images.used_layers()  # pinned by a record with no image
    import_image(images, [base], CONFIG_B, "x:b")  # an import sweeps
    assert not orphan.exists() and not dead.exists() and not refs_tmp.exists() and live.exists()
    assert images.used_layers() == {base.chain_id}
    layers.prune(set)  # a layer prune sweeps the layer store
    assert not old.exists()
    live.unlink()


def _corrupt_blob() -> tuple[bytes, bytes, bytes]:
    """A layer with incompressible content, its gzip blob, and that blob damaged near its start."""
    import gzip

    data = tar(("big", os.urandom(1 << 20)))
    blob = gzip.compress(data)
    bad = bytearray(blob)
    for i in range(200, 400):
        bad[i] ^= 0xFF
    return data, blob, bytes(bad)


class _Verifying(io.RawIOBase):
    """Like a registry blob stream: VerificationFailed at EOF if the bytes read do not match."""

    def __init__(self, data: bytes, digest: str) -> None:
        super().__init__()
        self.inner, self.digest, self.hash = io.BytesIO(data), digest, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        if not data and "sha256:" + self.hash.hexdigest() != self.digest:
            raise VerificationFailed(f"blob {self.digest} does not match its digest")
        self.hash.update(data)
        buffer[: len(data)] = data
        return len(data)


def test_corrupt_blob_reports_its_digest_mismatch(layers: LayerStore) -> None:
    data, blob, bad = _corrupt_blob()
    did = diff_id(data)
    with pytest.raises(VerificationFailed, match="does not match its digest"):
        layers.apply(None, did, did, diff_id(blob), _Verifying(bad, diff_id(blob)))  # type: ignore[arg-type]
    # a blob that is what its digest says but will not decompress: the error names it
    with pytest.raises(ArchiveError, match=f"layer blob {diff_id(bad)}: ") as e:
        layers.apply(None, did, did, diff_id(bad), _Verifying(bad, diff_id(bad)))  # type: ignore[arg-type]
    assert not isinstance(e.value, UnsafeArchive)
    assert leftovers(layers) == [] and layers.list() == []


def test_damaged_layer_records(layers: LayerStore) -> None:
    from nspawnctl.errors import PoolError

    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    meta = layers.dir / f"{base.chain_id.removeprefix('sha256:')}.json"
    for damage in ("{not json", json.dumps({"parent": None}), json.dumps([1, 2]), "\xff"):
        meta.write_text(damage) if damage != "\xff" else meta.write_bytes(b"\xff")
        assert [la.chain_id for la in layers.list()] == [upper.chain_id]
        with pytest.raises(PoolError, match="is damaged"):
            layers.get(base.chain_id)
        assert layers.prune(lambda: {upper.chain_id}) == []


# --- image prune and directory imports -------------------------------------------------------------


def test_prune_removes_dangling_images_no_container_uses(images: ImageStore, layers: LayerStore) -> None:
    base = apply(layers, None, BASE)
    upper = apply(layers, base, UPPER)
    import_image(images, [base, upper], CONFIG_A, "app:v1")
    import_image(images, [base], CONFIG_B, "app:v1")  # the name moves: CONFIG_A is dangling now
    old = images.import_archive(io.BytesIO(tar(("f", b"old"))), ImageRef.parse("dir:v1"), "old")
    new = images.import_archive(io.BytesIO(tar(("f", b"new"))), ImageRef.parse("dir:v1"), "new")
    used = images.import_archive(io.BytesIO(tar(("f", b"used"))), None, "used")  # never named
    assert images.get(old.id).refs == [] and images.get(CONFIG_A).refs == []
    users = {used.id: ["ctr"]}
    gone = images.prune(lambda i: users.get(i, []))
    assert sorted(i.id for i in gone) == sorted([CONFIG_A, old.id])
    assert sorted(i.id for i in images.list()) == sorted([CONFIG_B, new.id, used.id])
    assert not old.path.exists() and layers.get(upper.chain_id) is None  # its own layer went
    assert layers.get(base.chain_id) is not None  # still CONFIG_B's
    # all_images: every image without a container, named or not
    gone = images.prune(lambda i: users.get(i, []), all_images=True)
    assert sorted((i.id, tuple(i.refs)) for i in gone) == sorted(
        [(CONFIG_B, ("app:v1",)), (new.id, ("dir:v1",))]
    )
    assert [i.id for i in images.list()] == [used.id] and json.loads(images.refs_file.read_text()) == {}
    assert layers.list() == []


def test_directory_stream_depends_only_on_content(tmp_path: Path) -> None:
    from nspawnctl.store.images import directory_tar_argv

    def digest(d: Path) -> str:
        out = subprocess.run(directory_tar_argv(d), check=True, capture_output=True).stdout
        return hashlib.sha256(out).hexdigest()

    def build(d: Path, names: list[str]) -> None:
        d.mkdir()
        for name in names:  # created in this order: directory listings may follow it
            (d / name).write_text(name)
            os.utime(d / name, ns=(1, 1_600_000_000_000_000_000))
        os.symlink("a", d / "link")
        os.utime(d / "link", ns=(1, 1_600_000_000_000_000_000), follow_symlinks=False)
        os.utime(d, ns=(1, 1_600_000_000_000_000_000))

    names = [f"f{i}" for i in range(30)] + ["a"]
    build(tmp_path / "one", names)
    build(tmp_path / "two", list(reversed(names)))
    first = digest(tmp_path / "one")
    assert digest(tmp_path / "two") == first  # not the order of the directory listing
    # reading moves atimes (relatime moves them on the first read), chmod to the same mode the
    # ctimes: neither is content
    for p in (tmp_path / "one").iterdir():
        st = p.lstat()
        os.utime(p, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns), follow_symlinks=False)
        if not p.is_symlink():
            os.chmod(p, st.st_mode)
    assert digest(tmp_path / "one") == first
    # what is content changes it
    os.utime(tmp_path / "one/a", ns=(1, 1_600_000_000_000_000_001))
    assert digest(tmp_path / "one") != first


def test_importing_a_fresh_directory_again_gives_the_same_image(images: ImageStore, tmp_path: Path) -> None:
    src = tmp_path / "fresh"
    (src / "etc").mkdir(parents=True)
    (src / "etc/marker").write_text("fresh\n")  # atime == mtime: the first read moves the atime
    ids = {images.import_directory(src, ImageRef.parse("fresh:v1")).id for _ in range(3)}
    assert len(ids) == 1 and len(images.list()) == 1
    assert images.list()[0].refs == ["fresh:v1"]
