"""store/dockerarchive.py's reading of a load's outer archive: names from manifest.json are only
looked up (never extracted), and every count and size a hostile upload controls is bounded."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nspawnctl.errors import ArchiveError
from nspawnctl.store import dockerarchive
from nspawnctl.store.dockerarchive import _Archive, _entries, _plain


def _tar(path: Path, *entries: tuple[str, bytes | None, str | None], **kw: Any) -> Path:
    with tarfile.open(path, mode="w", **kw) as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if link is not None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
            else:
                ti.size = len(data or b"")
            tf.addfile(ti, io.BytesIO(data or b"") if link is None else None)
    return path


def test_members_are_only_looked_up(tmp_path: Path) -> None:
    """A missing name, a link, a path out of the archive and a non-string are refused."""
    manifest = ("manifest.json", b'[{"Config": "c.json"}]', None)
    p = _tar(tmp_path / "a.tar", manifest, ("link", None, "/etc/passwd"), ("./c.json", b"{}", None))
    with open(p, "rb") as f:
        archive = _Archive(f)
        assert _entries(archive) == [{"Config": "c.json"}]
        assert archive.member_bytes("c.json", "image config") == b"{}"  # "./c.json" in the tar
        for name in ("../../etc/passwd", "link", 5, ""):
            with pytest.raises(ArchiveError):
                archive.member(name, "layer")  # type: ignore[arg-type]
    no_manifest = _tar(tmp_path / "b.tar", ("hello", b"hi", None))
    with open(no_manifest, "rb") as f, pytest.raises(ArchiveError, match=r"no manifest\.json"):
        _entries(_Archive(f))
    not_a_list = _tar(tmp_path / "c.tar", ("manifest.json", b'{"a": 1}', None))
    with open(not_a_list, "rb") as f, pytest.raises(ArchiveError, match="not a list"):
        _entries(_Archive(f))


def test_counts_and_header_sizes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockerarchive, "MAX_MEMBERS", 3)
    p = _tar(tmp_path / "many.tar", *((f"f{i}", b"x", None) for i in range(4)))
    with open(p, "rb") as f, pytest.raises(ArchiveError, match="more than 3 members"):
        _Archive(f)
    # a pax header of 2 MiB (tarfile would hold it whole in memory): refused by the reader
    big = _tar(tmp_path / "pax.tar", ("x", b"", None), format=tarfile.PAX_FORMAT)
    with tarfile.open(big, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("x")
        ti.pax_headers = {"comment": "y" * (2 << 20)}
        tf.addfile(ti, io.BytesIO(b""))
    with open(big, "rb") as f, pytest.raises(ArchiveError):
        _Archive(f)
    monkeypatch.setattr(dockerarchive, "MAX_IMAGES", 1)
    two = _tar(tmp_path / "two.tar", ("manifest.json", b'[{"Config": "a"}, {"Config": "b"}]', None))
    with open(two, "rb") as f, pytest.raises(ArchiveError, match="more than 1 images"):
        _entries(_Archive(f))


def test_a_compressed_archive_is_read_from_a_decompressed_copy(tmp_path: Path) -> None:
    plain = _tar(tmp_path / "p.tar", ("manifest.json", b"[]", None))
    packed = tmp_path / "p.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    spool = tmp_path / "spool"
    images: Any = SimpleNamespace(spool=lambda: _spool(spool))
    with _plain(images, packed) as out:
        assert out == spool and out.read_bytes() == plain.read_bytes()
    assert not spool.exists()  # the copy is gone afterwards
    with _plain(images, plain) as out:
        assert out == plain  # an uncompressed one is read in place


def _spool(path: Path) -> Any:
    import contextlib

    @contextlib.contextmanager
    def cm() -> Any:
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    return cm()


def _fake_tar(data: bytes) -> Any:
    def write_root(root: Path, out: Any) -> None:
        out.write(data)

    return write_root


def test_save_spools_a_root_within_the_pools_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root's tar is counted as it lands: past the free space less the reserve it stops, and
    a reader that went away stops it too; the digest is the spooled file's."""
    import hashlib

    data = b"x" * (3 << 20)
    dest = tmp_path / "layer"
    digest = dockerarchive._spool_root(_fake_tar(data), tmp_path, dest, lambda: False)
    assert digest == hashlib.sha256(data).hexdigest() and dest.read_bytes() == data

    def usage(_: Any) -> Any:  # the pool fills as the spool grows
        left = (1 << 20) - (tmp_path / "big").stat().st_size
        return SimpleNamespace(free=dockerarchive.SPACE_RESERVE + left)

    monkeypatch.setattr(dockerarchive.shutil, "disk_usage", usage)
    with pytest.raises(ArchiveError, match="free on the image pool"):
        dockerarchive._spool_root(_fake_tar(data), tmp_path, tmp_path / "big", lambda: False)
    assert (tmp_path / "big").stat().st_size <= (1 << 20) + dockerarchive.CHUNK
    monkeypatch.undo()
    with pytest.raises(ArchiveError, match="went away"):
        dockerarchive._spool_root(_fake_tar(data), tmp_path, tmp_path / "gone", lambda: True)


def test_a_failing_root_writer_fails_the_save(tmp_path: Path) -> None:
    def broken(root: Path, out: Any) -> None:
        out.write(b"half")
        raise ArchiveError("tar failed: boom")

    with pytest.raises(ArchiveError, match="boom"):
        dockerarchive._spool_root(broken, tmp_path, tmp_path / "layer", lambda: False)


def test_room_asks_the_filesystem_only_now_and_then(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked = []
    room = dockerarchive.Room(tmp_path)

    def usage(path: Any) -> Any:  # 100 MiB above the reserve, less what was written
        asked.append(path)
        return SimpleNamespace(free=dockerarchive.SPACE_RESERVE + (100 << 20) - room.written)

    monkeypatch.setattr(dockerarchive.shutil, "disk_usage", usage)
    assert all(room.take(1 << 20) for _ in range(64)) and len(asked) == 1
    assert all(room.take(1 << 20) for _ in range(36)) and not room.take(1 << 20)
    assert len(asked) == 3


def test_a_piped_archive_is_spooled_and_removed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    images: Any = SimpleNamespace(spool=lambda: _spool(spool))
    with dockerarchive.spooled(images, io.BytesIO(b"archive")) as path:
        assert path.read_bytes() == b"archive"
    assert not spool.exists()
