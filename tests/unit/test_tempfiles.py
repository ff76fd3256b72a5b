"""nspawnctl.tempfiles: mkstemp's names and modes without loading tempfile on the start path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
