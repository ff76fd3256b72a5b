"""``cp`` out of a container to a host path: nothing that grants privilege lands on the host
(setuid/setgid bits, file capabilities, security/trusted xattrs, device nodes)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from test_unpack import CAP_NET_RAW, dir_, make_tar, node, reg

from nspawnctl.errors import ArchiveError, UnsafeArchive
from nspawnctl.store.copy import Dest, extract_into, receive_copy


def keep(u: int, g: int) -> tuple[int, int]:
    return u, g


def copy_to_host(data: bytes, dest: Path) -> None:
    """What copy_out does with the container's stream, to host path ``dest``."""
    exists = dest.exists()
    info = Dest(str(dest), exists, dest.is_dir(), dest.name)

    def open_target(into: bool) -> int:
        return os.open(dest if into else dest.parent, os.O_RDONLY | os.O_DIRECTORY)

    receive_copy("/app", info, open_target, io.BytesIO(data), keep, host=True)


def hostile_app() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    helper, data = reg("app/helper", b"#!/bin/sh\n", mode=0o6755, uid=0, gid=0)
    helper.pax_headers = {
        "SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.trusted.secret": "x",
        "SCHILY.xattr.user.keep": "yes",
    }
    return [
        dir_("app", mode=0o2755),
        (helper, data),
        reg("app/tmpdir-sticky", b"s", mode=0o1644),
    ]


def test_setuid_setgid_and_capabilities_are_dropped(tmp_path: Path) -> None:
    copy_to_host(make_tar(*hostile_app()), tmp_path / "out")
    helper = tmp_path / "out" / "helper"
    assert stat.S_IMODE(helper.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "tmpdir-sticky").stat().st_mode) == 0o1644
    assert os.listxattr(helper) == ["user.keep"]
    assert os.getxattr(helper, "user.keep") == b"yes"


def test_into_a_container_the_bits_stay(tmp_path: Path) -> None:
    # the same extractor without host mode (cp into a container, images) stays faithful
    extract_into(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), io.BytesIO(make_tar(*hostile_app())), keep)
    helper = tmp_path / "app" / "helper"
    assert stat.S_IMODE(helper.stat().st_mode) == 0o6755
    assert os.getxattr(helper, "security.capability") == CAP_NET_RAW


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_a_device_node_is_refused_and_the_new_copy_removed(tmp_path: Path, kind: bytes) -> None:
    entries = [*hostile_app(), node("app/disk", kind, 8, 0, mode=0o666), reg("app/z", b"z")]
    with pytest.raises(UnsafeArchive) as e:
        copy_to_host(make_tar(*entries), tmp_path / "out")
    assert "device node 'out/disk'" in str(e.value) and "nothing was copied" in str(e.value)
    assert e.value.hint is not None and "'-'" in e.value.hint
    assert list(tmp_path.iterdir()) == []


def test_a_device_as_the_source_itself_is_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="device node 'mem'"):
        copy_to_host(make_tar(node("mem", tarfile.CHRTYPE, 1, 1, mode=0o666)), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_a_device_in_a_merged_copy_says_what_was_copied(tmp_path: Path) -> None:
    (tmp_path / "out" / "app").mkdir(parents=True)
    (tmp_path / "out" / "app" / "mine").write_text("kept")
    entries = [dir_("app"), reg("app/a", b"a"), node("app/disk", tarfile.BLKTYPE, 8, 0, mode=0o666)]
    with pytest.raises(UnsafeArchive, match=r"what came before it in the copy is in .*out"):
        copy_to_host(make_tar(*entries), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "app").iterdir()) == ["a", "mine"]


def deep_tree(top: Path, depth: int) -> None:
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        (Path(f"/proc/self/fd/{fd}") / "f").write_text("x")
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.symlink("/", "up", dir_fd=fd)  # never followed
    os.close(fd)


def extract_over(dest: Path, data: bytes) -> None:
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        extract_into(fd, io.BytesIO(data), keep)
    finally:
        os.close(fd)


def test_a_deep_directory_is_replaced_without_recursion(tmp_path: Path) -> None:
    deep_tree(tmp_path / "a", 250)
    extract_over(tmp_path, make_tar(reg("a", b"file now")))
    assert (tmp_path / "a").read_bytes() == b"file now"
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_a_directory_nested_too_deep_to_replace_is_an_error(tmp_path: Path) -> None:
    deep_tree(tmp_path / "a", 300)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ArchiveError, match="nested deeper than 256 directories"):
        extract_over(tmp_path, make_tar(reg("a", b"file now")))
    assert len(os.listdir("/proc/self/fd")) == fds  # no fd left open
    assert (tmp_path / "a").is_dir()
