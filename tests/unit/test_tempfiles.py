"""nspawnctl.tempfiles: mkstemp's names and modes without loading tempfile on the start path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nspawnctl.store.containers import _SAVE_TEMP
from nspawnctl.tempfiles import mkstemp


def test_a_new_private_file_named_as_mkstemp_names_it(tmp_path: Path) -> None:
    fd, path = mkstemp(tmp_path, ".web.nspawn.")
    try:
        st = os.fstat(fd)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert os.get_inheritable(fd) is False
        assert os.path.dirname(path) == str(tmp_path)
        assert _SAVE_TEMP.fullmatch(os.path.basename(path))  # the sweep of leftovers finds it
        os.write(fd, b"x")
        assert Path(path).read_bytes() == b"x"
    finally:
        os.close(fd)


def test_names_differ_and_an_existing_name_is_never_reused(tmp_path: Path) -> None:
    made = set()
    for _ in range(50):
        fd, path = mkstemp(tmp_path, "p.")
        os.close(fd)
        made.add(path)
    assert len(made) == 50


def test_a_symlink_in_the_way_is_not_followed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "target"
    (tmp_path / "p.aaaaaaaa").symlink_to(target)
    draws = iter([bytes(8), bytes([1] * 8)])  # "aaaaaaaa" (taken by the symlink), then "bbbbbbbb"
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    fd, path = mkstemp(tmp_path, "p.")
    os.close(fd)
    assert path.endswith("p.bbbbbbbb")
    assert not target.exists()


def test_write_atomic_renames_a_whole_file_over_and_leaves_no_temporary(tmp_path: Path) -> None:
    from nspawnctl.tempfiles import write_atomic

    path = tmp_path / "unit.service"
    path.write_text("old\n")
    inode = path.stat().st_ino
    write_atomic(path, "new\n", 0o644)
    assert path.read_text() == "new\n" and path.stat().st_ino != inode
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    write_atomic(path, "quiet\n", 0o600, sync=False)
    assert path.read_text() == "quiet\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["unit.service"]
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):  # a failed rename removes its temporary file
        write_atomic(tmp_path / "d", "x", 0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "unit.service"]
