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


def _victim(tmp_path: Path) -> Path:
    """A root-owned file standing for /etc/shadow, in a directory standing for /etc."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "shadow").write_bytes(b"secret")
    os.chown(etc / "shadow", 0, 0)
    (etc / "shadow").chmod(0o600)
    return etc


def _untouched(etc: Path) -> None:
    st = (etc / "shadow").stat()
    assert (etc / "shadow").read_bytes() == b"secret" and (st.st_uid, st.st_gid) == (0, 0)
    assert os.listdir(etc) == ["shadow"]  # no temporary file made there either


def _swap_for_link(directory: Path, to: Path) -> None:
    directory.rename(directory.with_name(directory.name + ".old"))
    directory.symlink_to(to)


def test_a_directory_swapped_for_a_symlink_while_writing_cannot_redirect_the_write(tmp_path: Path) -> None:
    etc = _victim(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "shadow").write_bytes(b"old")
    os.chown(tmp_path / "d" / "shadow", 65534, 65534)
    with open_output(tmp_path / "d" / "shadow") as f:
        _swap_for_link(tmp_path / "d", etc)
        f.write(b"new")
    _untouched(etc)
    written = tmp_path / "d.old" / "shadow"  # the directory that was opened
    assert written.read_bytes() == b"new" and written.stat().st_uid == 65534


def test_a_file_swapped_while_writing_is_left_and_the_write_refused(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    with pytest.raises(InvalidArgument, match="changed while being written"), open_output(target) as f:
        f.write(b"new")
        (tmp_path / "other").write_bytes(b"other")
        (tmp_path / "other").rename(target)
    assert target.read_bytes() == b"other" and os.listdir(tmp_path) == ["out"]
    with (
        pytest.raises(InvalidArgument, match="changed while being written"),
        open_output(tmp_path / "new") as f,
    ):
        f.write(b"new")
        (tmp_path / "new").write_bytes(b"made meanwhile")
    assert (tmp_path / "new").read_bytes() == b"made meanwhile"


def test_a_link_target_whose_directory_is_swapped_after_it_was_resolved_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the reviewer's scenario: bob's ~/out -> ~/d/shadow; root exports to ~/out; right after the
    # link is resolved bob swaps ~/d for a symlink to /etc
    etc = _victim(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "shadow").write_bytes(b"bob's")
    os.chown(tmp_path / "d" / "shadow", 65534, 65534)
    (tmp_path / "out").symlink_to(tmp_path / "d" / "shadow")
    readlink = os.readlink

    def swapping(path: str | os.PathLike[str], *args: object, **kwargs: object) -> str:
        real = readlink(path)
        if str(path).startswith("/proc/self/fd/"):
            _swap_for_link(tmp_path / "d", etc)
        return str(real)

    monkeypatch.setattr(os, "readlink", swapping)
    with (
        pytest.raises(InvalidArgument, match="changed while being written"),
        open_output(tmp_path / "out") as f,
    ):
        f.write(b"bob's own shadow")
    monkeypatch.undo()
    _untouched(etc)
    assert (tmp_path / "d.old" / "shadow").read_bytes() == b"bob's"
    assert os.listdir(tmp_path / "d.old") == ["shadow"]


def test_a_link_target_swapped_while_writing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    with (
        pytest.raises(InvalidArgument, match="changed while being written"),
        open_output(tmp_path / "link") as f,
    ):
        f.write(b"new")
        (tmp_path / "other").write_bytes(b"other")
        (tmp_path / "other").rename(tmp_path / "real")
    assert (tmp_path / "real").read_bytes() == b"other"
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]
