"""open_output: what export -o, cp to a host path and generate -o do with the destination."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.hostfile import open_output


def write(path: Path | str, data: bytes) -> None:
    with open_output(path) as f:
        f.write(data)


def test_a_new_file_appears_complete_with_the_umask_applied(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write(tmp_path / "out.tar", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "out.tar").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "out.tar").stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["out.tar"]


def test_an_existing_file_keeps_its_mode_and_owner_and_survives_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(b"old")
    os.chown(target, 65534, 65534)
    target.chmod(0o604)
    write(target, b"new")
    st = target.stat()
    assert target.read_bytes() == b"new" and stat.S_IMODE(st.st_mode) == 0o604
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    with pytest.raises(RuntimeError), open_output(target) as f:
        f.write(b"half")
        raise RuntimeError("cut")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.tar"]


def test_a_device_is_written_into_never_replaced() -> None:
    before = os.stat("/dev/null")
    write("/dev/null", b"x" * 100000)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_fifo_is_written_into_for_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write(fifo, b"through the fifo")
    reader.join(10)
    assert got == [b"through the fifo"] and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_symlink_is_followed_and_stays_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    write(tmp_path / "link", b"new")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").read_bytes() == b"new"
    (tmp_path / "dangling").symlink_to("made")
    write(tmp_path / "dangling", b"made")
    assert (tmp_path / "made").read_bytes() == b"made" and (tmp_path / "dangling").is_symlink()
    (tmp_path / "null").symlink_to("/dev/null")
    write(tmp_path / "null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_failure_through_a_dangling_symlink_leaves_no_file(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("target")
    with pytest.raises(RuntimeError), open_output(tmp_path / "link") as f:
        f.write(b"half")
        raise RuntimeError("cut")
    assert sorted(os.listdir(tmp_path)) == ["link"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "dl").symlink_to("d")
    for path in (tmp_path / "d", tmp_path / "dl"):
        with pytest.raises(InvalidArgument, match="directory"), open_output(path):
            pass
    assert os.listdir(tmp_path / "d") == []
