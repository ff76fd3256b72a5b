"""store/ownbytes.py: a container's own bytes against the tree it was copied from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nspawnctl.store.ownbytes import own_bytes


def test_only_new_and_changed_files_count(tmp_path: Path) -> None:
    base = tmp_path / "image"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "kept").write_bytes(b"x" * 100)
    (base / "replaced").write_bytes(b"z" * 10)
    root = tmp_path / "container"
    # a copy keeping inode numbers is what a snapshot is; hard links give the same here
    shutil.copytree(base, root, copy_function=os.link)
    assert own_bytes(root, base) == 0
    (root / "replaced").unlink()
    (root / "replaced").write_bytes(b"n" * 7)  # a new inode
    (root / "data").mkdir()
    (root / "data" / "new.bin").write_bytes(b"0" * 1000)
    os.symlink("/nowhere", root / "link")  # links and directories have no bytes of their own
    assert own_bytes(root, base) == 7 + 1000


def test_without_its_image_every_file_counts(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1" * 3)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"2" * 4)
    assert own_bytes(tmp_path, None) == 7
    assert own_bytes(tmp_path / "missing", None) == 0
