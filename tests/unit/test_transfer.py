"""cp's path resolution and copies on plain directories, and btrfs send stream detection."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.errors import ArchiveError, CommandFailed, InvalidArgument, NotFound, PoolError, UnsafeArchive
from nspawnctl.files import import_stream, split_cp_arg
from nspawnctl.store import rootpath, transfer
from nspawnctl.store.copy import ContainerRoot, _renamer, copy_in, copy_out, place
from nspawnctl.store.transfer import (
    SEND_MAGIC,
    StreamBudget,
    StreamCheck,
    check_clone_sources,
    checked_commands,
    crc32c,
    is_send_stream,
    parse_stream_header,
    read_stream_header,
    rename_stream,
)
from nspawnctl.store.unpack import Limits

# -- path resolution inside a root ----------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hosts").write_text("inside\n")
    (r / "var" / "lib").mkdir(parents=True)
    os.symlink("/", r / "toroot")
    os.symlink("../../../../..", r / "var" / "lib" / "up")
    os.symlink("/etc", r / "etclink")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/etc/hosts", r / "hostslink")
    return r


def resolve(root: Path, path: str, follow_last: bool = True) -> str:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return rootpath.show(rootpath.resolve(fd, path, follow_last=follow_last))
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/hosts", "/etc/hosts"),
        ("etc/./hosts", "/etc/hosts"),
        ("/../../etc/hosts", "/etc/hosts"),
        ("/etc/../../../etc/hosts", "/etc/hosts"),
        ("/toroot/etc/hosts", "/etc/hosts"),
        ("/toroot/../..", "/"),
        ("/var/lib/up/etc", "/etc"),
        ("/var/lib/up", "/"),
        ("/etclink/hosts", "/etc/hosts"),
        ("/etclink/../var", "/var"),  # '..' after a symlink: physical, as the kernel does
        ("/hostslink", "/etc/hosts"),
        ("/etc/missing", "/etc/missing"),  # the last component may be missing
        ("/toroot/new", "/new"),
        ("/", "/"),
        ("", "/"),
    ],
)
def test_resolve_stays_inside_the_root(root: Path, path: str, expected: str) -> None:
    assert resolve(root, path) == expected


def test_resolve_keeps_a_final_symlink_unless_asked(root: Path) -> None:
    assert resolve(root, "/hostslink", follow_last=False) == "/hostslink"
    assert resolve(root, "/etclink/", follow_last=False) == "/etclink"  # the caller decides on '/'


def test_resolve_refuses_loops_and_non_directories(root: Path) -> None:
    with pytest.raises(OSError) as e:
        resolve(root, "/loop1")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError) as e:
        resolve(root, "/loop1/x")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        resolve(root, "/etc/hosts/x")
    with pytest.raises(FileNotFoundError):
        resolve(root, "/nope/x")


def test_open_dir_never_follows_a_symlink_swapped_in(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        comps = rootpath.resolve(fd, "/var/lib")
        (root / "var" / "lib").rename(root / "var" / "old")
        os.symlink("/", root / "var" / "lib")  # what a running payload could do meanwhile
        with pytest.raises(OSError) as e:
            rootpath.open_dir(fd, comps)
        assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(fd)


# -- docker cp destination rules --------------------------------------------------------------------


def p(src: str, is_dir: bool, dest: str, exists: bool, dest_dir: bool) -> tuple[bool, str | None]:
    src_base = os.path.basename(src.rstrip("/.").rstrip("/")) if src.strip("/.") else ""
    dest_base = os.path.basename(dest.rstrip("/"))
    pl = place(
        src=src,
        src_is_dir=is_dir,
        src_base=src_base,
        dest=dest,
        dest_exists=exists,
        dest_is_dir=dest_dir,
        dest_base=dest_base,
    )
    return pl.into_dest, pl.arcname


def test_place_follows_docker_cp() -> None:
    assert p("/a/f", False, "/d", True, True) == (True, "f")  # into an existing directory
    assert p("/a/f", False, "/d/g", False, False) == (False, "g")  # becomes DEST
    assert p("/a/f", False, "/d/g", True, False) == (False, "g")  # overwrites a file
    with pytest.raises(InvalidArgument, match="does not exist"):
        p("/a/f", False, "/d/new/", False, False)
    assert p("/a/dir", True, "/d", True, True) == (True, "dir")
    assert p("/a/dir/.", True, "/d", True, True) == (True, None)  # contents only
    assert p("/a/dir", True, "/d/new", False, False) == (False, "new")  # DEST is created
    assert p("/a/dir/.", True, "/d/new", False, False) == (False, "new")
    with pytest.raises(InvalidArgument, match="directory to a file"):
        p("/a/dir", True, "/d/file", True, False)


def test_split_cp_arg() -> None:
    assert split_cp_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_cp_arg("web:") == ("web", "")
    assert split_cp_arg("/tmp/a:b") == (None, "/tmp/a:b")
    assert split_cp_arg("./a:b") == (None, "./a:b")
    assert split_cp_arg("file") == (None, "file")
    assert split_cp_arg("-") == (None, "-")


# -- copies on plain directories --------------------------------------------------------------------


@pytest.fixture
def ctr(root: Path) -> Any:
    return ContainerRoot(str(root), "box")


def test_copy_in_through_symlinks_to_root_stays_inside(
    tmp_path: Path, root: Path, ctr: ContainerRoot
) -> None:
    src = tmp_path / "payload"
    src.write_text("hello\n")
    outside = tmp_path / "payload-out"
    escape = "/toroot/" + "../" * 6 + str(tmp_path.relative_to("/")) + "/payload-out"
    with pytest.raises(InvalidArgument, match="does not exist in container box"):
        copy_in(ctr, str(src), None, escape, archive=False)  # that path is looked up inside the root
    assert not outside.exists()
    copy_in(ctr, str(src), None, "/var/lib/up/escaped", archive=False)
    assert (root / "escaped").read_text() == "hello\n"
    assert not Path("/escaped").exists()
    copy_in(ctr, str(src), None, "/etclink", archive=False)  # a symlink to a directory: into it
    assert (root / "etc" / "payload").read_text() == "hello\n"


def test_copy_in_never_writes_through_a_symlink_in_the_destination(
    tmp_path: Path, root: Path, ctr: ContainerRoot
) -> None:
    # a directory copied over one in the container that holds a symlink to the host's /tmp
    target = tmp_path / "host-dir"
    target.mkdir()
    (root / "data").mkdir()
    os.symlink(str(target), root / "data" / "sub")
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x").write_text("x")
    copy_in(ctr, str(src), None, "/", archive=False)
    assert not (target / "x").exists()
    # the symlink was replaced by the copied directory, as tar replaces what is in its way
    assert not (root / "data" / "sub").is_symlink() and (root / "data" / "sub" / "x").read_text() == "x"


def test_copy_round_trip_keeps_metadata(tmp_path: Path, root: Path, ctr: ContainerRoot) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("data\n")
    os.chmod(src / "sub" / "f", 0o4751)
    os.utime(src / "sub" / "f", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.symlink("f", src / "sub" / "link")
    os.link(src / "sub" / "f", src / "sub" / "hard")
    xattrs = True
    try:
        os.setxattr(src / "sub" / "f", "user.test", b"\x00\xffbin")
    except OSError:
        xattrs = False
    os.mkfifo(src / "fifo")
    if os.geteuid() == 0:
        os.chown(src / "sub" / "f", 1234, 5678)
        os.chmod(src / "sub" / "f", 0o4751)  # chown clears setuid
    copy_in(ctr, str(src), None, "/opt", archive=True)
    got = root / "opt"
    st = os.stat(got / "sub" / "f")
    assert (got / "sub" / "f").read_text() == "data\n"
    assert st.st_mode & 0o7777 == 0o4751
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    assert os.readlink(got / "sub" / "link") == "f"
    assert os.stat(got / "sub" / "hard").st_ino == st.st_ino
    assert os.path.exists(got / "fifo")
    if xattrs:
        assert os.getxattr(got / "sub" / "f", "user.test") == b"\x00\xffbin"
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    # and out again, contents only, into an existing directory
    back = tmp_path / "back"
    back.mkdir()
    copy_out(ctr, "/opt/.", str(back), None, archive=True)
    assert (back / "sub" / "f").read_text() == "data\n"
    # to the host, even with archive, the setuid bit is dropped (numeric owners stay)
    assert os.stat(back / "sub" / "f").st_mode & 0o7777 == 0o751
    assert os.readlink(back / "sub" / "link") == "f"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as someone else")
def test_default_owners_are_root_inside_and_the_caller_outside(
    tmp_path: Path, root: Path, ctr: ContainerRoot
) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    os.chown(src, 1234, 1234)
    copy_in(ctr, str(src), None, "/f", archive=False)
    assert (os.stat(root / "f").st_uid, os.stat(root / "f").st_gid) == (0, 0)
    os.chown(root / "f", 4321, 4321)
    copy_out(ctr, "/f", str(tmp_path / "g"), None, archive=False)
    assert os.stat(tmp_path / "g").st_uid == os.getuid()


def test_copy_out_errors_and_file_rules(tmp_path: Path, ctr: ContainerRoot) -> None:
    with pytest.raises(NotFound, match="Could not find the file /nope in container box"):
        copy_out(ctr, "/nope", str(tmp_path / "x"), None, archive=False)
    with pytest.raises(InvalidArgument, match="does not exist"):
        copy_out(ctr, "/etc/hosts", str(tmp_path / "missing" / "x"), None, archive=False)
    copy_out(ctr, "/etc/hosts", str(tmp_path / "renamed"), None, archive=False)
    assert (tmp_path / "renamed").read_text() == "inside\n"
    copy_out(ctr, "/toroot/etc/hosts", str(tmp_path), None, archive=False)  # into a directory
    assert (tmp_path / "hosts").read_text() == "inside\n"
    copy_out(ctr, "/hostslink", str(tmp_path / "l"), None, archive=False)  # the link itself
    assert os.readlink(tmp_path / "l") == "/etc/hosts"


def test_tar_streams_both_ways(tmp_path: Path, root: Path, ctr: ContainerRoot) -> None:
    out = io.BytesIO()
    copy_out(ctr, "/etc", None, out, archive=True)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert names == ["etc", "etc/hosts"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"from a tar\n"
        ti = tarfile.TarInfo("./in/tar.txt")
        ti.size, ti.uid = len(data), 999
        tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    copy_in(ctr, None, buf, "/var", archive=False)
    assert (root / "var" / "in" / "tar.txt").read_bytes() == b"from a tar\n"
    with pytest.raises(InvalidArgument, match="must be an existing directory"):
        copy_in(ctr, None, io.BytesIO(b""), "/etc/hosts", archive=False)


# -- btrfs send streams -----------------------------------------------------------------------------


ME = uuid.UUID("11111111-2222-3333-4444-555555555555")


def tlv(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def command(cmd: int, *attrs: bytes) -> bytes:
    """A send command as the kernel writes it, checksum included."""
    payload = b"".join(attrs)
    crc = crc32c(struct.pack("<IHI", len(payload), cmd, 0) + payload)
    return struct.pack("<IHI", len(payload), cmd, crc) + payload


def send_header(parent: uuid.UUID | None, version: int = 1) -> bytes:
    attrs = [tlv(15, b"abc"), tlv(1, ME.bytes), tlv(2, struct.pack("<Q", 7))]
    if parent is not None:
        attrs += [tlv(20, parent.bytes), tlv(21, struct.pack("<Q", 42))]
    return SEND_MAGIC + struct.pack("<I", version) + command(2 if parent else 1, *attrs)


MKFILE, SYMLINK, WRITE, CLONE, END = 3, 8, 15, 16, 21


def clone(source: uuid.UUID) -> bytes:
    return command(
        CLONE,
        tlv(18, struct.pack("<Q", 0)),
        tlv(24, struct.pack("<Q", 4096)),
        tlv(15, b"f"),
        tlv(20, source.bytes),
        tlv(21, struct.pack("<Q", 7)),
        tlv(22, b"g"),
        tlv(23, struct.pack("<Q", 0)),
    )


def body(*commands: bytes) -> bytes:
    """The commands after the first: a file written, the given ones, and the end."""
    write = command(WRITE, tlv(15, b"f"), tlv(18, struct.pack("<Q", 0)), tlv(19, b"data" * 100))
    return command(MKFILE, tlv(15, b"f")) + write + b"".join(commands) + command(END)


def run_check(stream: bytes) -> tuple[bytes, str]:
    """What the checked stream feeds to btrfs receive, and the digest of the stream as sent."""
    src = io.BufferedReader(_Pipe(stream))
    head, header = read_stream_header(src)
    digest = hashlib.sha256()
    fed = b"".join(checked_commands(src, head, rename_stream(head, ".tmp-1-x"), StreamCheck(header), digest))
    return fed, digest.hexdigest()


def test_send_stream_header() -> None:
    full = parse_stream_header(send_header(None))
    assert (full.uuid, full.path, full.incremental) == ("11111111-2222-3333-4444-555555555555", "abc", False)
    parent = uuid.uuid4()
    inc = parse_stream_header(send_header(parent))
    assert inc.incremental and inc.parent_uuid == str(parent) and inc.parent_ctransid == 42
    stream = io.BytesIO(send_header(parent) + b"REST")
    head, header = read_stream_header(stream)
    assert head == send_header(parent) and stream.read() == b"REST" and header.parent_uuid == str(parent)
    assert is_send_stream(b"btrfs-stream\0\x01") and not is_send_stream(b"ustar")
    with pytest.raises(ArchiveError):
        parse_stream_header(b"btrfs-stream\0")
    with pytest.raises(ArchiveError):
        read_stream_header(io.BytesIO(SEND_MAGIC + b"\x01\0\0\0"))


def test_crc32c_and_renaming_the_received_subvolume() -> None:
    # the standard CRC-32C check value; btrfs uses the raw form (seed 0, no final inversion)
    assert crc32c(b"123456789", 0xFFFFFFFF) ^ 0xFFFFFFFF == 0xE3069283
    parent = uuid.uuid4()
    renamed = rename_stream(send_header(parent), ".tmp-1-abcd")
    header = parse_stream_header(renamed)
    assert header.path == ".tmp-1-abcd" and header.parent_uuid == str(parent)
    length, cmd, crc = struct.unpack_from("<IHI", renamed, 17)
    assert crc == crc32c(struct.pack("<IHI", length, cmd, 0) + renamed[27:])


class _Pipe(io.RawIOBase):
    """A stream that cannot seek, like stdin from a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_import_tells_send_streams_from_tarballs(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, bytes] = {}

    class Store:
        def import_archive(self, stream: Any, ref: Any, source: str, limits: Any = None) -> str:
            seen["tar"] = stream.read()
            return "tar"

    def receive(store: Any, stream: Any, ref: Any, source: str, limits: Any = None) -> str:
        seen["send"] = stream.read()
        return "send"

    monkeypatch.setattr("nspawnctl.store.transfer.receive", receive)
    stream = send_header(None) + b"more"
    assert import_stream(Store(), io.BufferedReader(_Pipe(stream)), None, "-") == "send"  # type: ignore[arg-type]
    assert seen["send"] == stream
    assert import_stream(Store(), io.BytesIO(stream), None, "f") == "send"  # type: ignore[arg-type]
    tar = b"not a btrfs stream, a tarball"
    assert import_stream(Store(), io.BufferedReader(_Pipe(tar)), None, "-") == "tar"  # type: ignore[arg-type]
    assert seen["tar"] == tar


def test_a_good_full_stream_passes_renamed_and_whole() -> None:
    stream = send_header(None) + body(clone(ME), command(SYMLINK, tlv(15, b"l"), tlv(17, b"../../etc")))
    fed, digest = run_check(stream)
    head_len = len(send_header(None))
    assert fed[head_len - 3 :] != stream[head_len - 3 :]  # the first command names the staging
    assert parse_stream_header(fed).path == ".tmp-1-x"
    assert fed.endswith(stream[head_len:])  # every other command unchanged
    assert digest == hashlib.sha256(stream).hexdigest()


def test_a_good_incremental_stream_may_clone_from_its_parent() -> None:
    parent = uuid.uuid4()
    stream = send_header(parent) + body(clone(parent), clone(ME))
    fed, digest = run_check(stream)
    assert parse_stream_header(fed).parent_uuid == str(parent)
    assert digest == hashlib.sha256(stream).hexdigest()


def test_a_version_2_data_attribute_runs_to_the_end_of_its_command() -> None:
    # type 19 without a length: its bytes would read as more attributes in version 1
    data = tlv(15, b"../../escape")
    write = command(WRITE, tlv(15, b"f"), tlv(18, struct.pack("<Q", 0)), struct.pack("<H", 19) + data)
    run_check(send_header(None, version=2) + body(write))
    with pytest.raises(ArchiveError):
        run_check(send_header(None, version=1) + body(write))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            command(1, tlv(15, b"second"), tlv(1, uuid.uuid4().bytes), tlv(2, bytes(8))),
            "more than one subvolume",
        ),
        (
            command(2, tlv(15, b"snap"), tlv(1, uuid.uuid4().bytes), tlv(20, ME.bytes)),
            "more than one subvolume",
        ),
        (clone(uuid.UUID("99999999-0000-0000-0000-000000000000")), "clones data from subvolume 99999999-"),
        (command(MKFILE, tlv(15, b"../x.json")), "with '..'"),
        (command(9, tlv(15, b"f"), tlv(16, b"a/../../b")), "with '..'"),
        (command(10, tlv(15, b"h"), tlv(17, b"../other/f")), "with '..'"),  # a hard link's source
        (command(MKFILE, tlv(15, b"a"), tlv(15, b"../b")), "repeats attribute 15"),
    ],
)
def test_refused_commands_never_reach_btrfs_receive(extra: bytes, message: str) -> None:
    parent = uuid.uuid4()
    src = io.BufferedReader(_Pipe(send_header(parent) + body(extra)))
    head, header = read_stream_header(src)
    fed = []
    with pytest.raises(UnsafeArchive, match=message):
        for chunk in checked_commands(src, head, head, StreamCheck(header), hashlib.sha256()):
            fed.append(chunk)
    assert fed == []  # the batch holding the offending command was never handed on


def test_a_stream_must_end_once() -> None:
    stream = send_header(None) + body()
    with pytest.raises(UnsafeArchive, match="after its end"):
        run_check(stream + send_header(None) + body())  # two streams concatenated
    with pytest.raises(ArchiveError, match="no end command"):
        run_check(stream[: -len(command(END))])
    with pytest.raises(ArchiveError, match="truncated"):
        run_check(stream[:-3])
    with pytest.raises(ArchiveError, match="checksum"):
        bad = bytearray(send_header(None))
        bad[-1] ^= 1
        parse_stream_header(bytes(bad))
    with pytest.raises(ArchiveError, match="version"):
        parse_stream_header(send_header(None, version=9))


class _Info:
    def __init__(self, id: int, uuid: bytes, received: bytes = bytes(16)) -> None:
        self.id, self.uuid, self.received_uuid = id, uuid, received


def test_clone_sources_must_be_images_of_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    image, container, sent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    images_dir = Path("/nonexistent/images")
    store = {
        256: (images_dir / ("a" * 64), _Info(256, image.bytes)),
        257: (images_dir / ("b" * 64), _Info(257, uuid.uuid4().bytes, sent.bytes)),
    }
    everything = [info for _, info in store.values()] + [_Info(300, container.bytes)]
    monkeypatch.setattr(transfer, "_store_subvolumes", lambda images: store)
    monkeypatch.setattr(transfer, "_subvolumes", lambda path: everything)

    class Images:
        dir = images_dir

    def check(parent: uuid.UUID | None) -> transfer.StreamBase:
        return check_clone_sources(Images(), parse_stream_header(send_header(parent)))  # type: ignore[arg-type]

    assert check(None) == transfer.StreamBase()
    assert check(image).parent == images_dir / ("a" * 64)  # by its own UUID
    assert check(sent).parent == images_dir / ("b" * 64)  # by the UUID it was received from
    with pytest.raises(NotFound, match="which is no image here"):
        check(container)  # another container's subvolume, found by UUID on the filesystem
    # a subvolume outside the store answering to the parent's UUID: receive would look there first
    everything.append(_Info(301, uuid.uuid4().bytes, image.bytes))
    with pytest.raises(UnsafeArchive, match="subvolumes 256, 301 all answer"):
        check(image)
    everything[-1] = _Info(301, uuid.uuid4().bytes, ME.bytes)  # or the stream's own
    with pytest.raises(UnsafeArchive, match="subvolume 301, which is no image"):
        check(None)


def test_stream_uuids_must_not_collide_with_the_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    image, other = uuid.uuid4(), uuid.uuid4()
    images_dir = Path("/nonexistent/images")
    store: dict[int, tuple[Path, _Info]] = {256: (images_dir / ("a" * 64), _Info(256, image.bytes))}
    everything = [store[256][1]]
    monkeypatch.setattr(transfer, "_store_subvolumes", lambda images: store)
    monkeypatch.setattr(transfer, "_subvolumes", lambda path: everything)

    class Images:
        dir = images_dir

    def check(parent: uuid.UUID | None) -> transfer.StreamBase:
        return check_clone_sources(Images(), parse_stream_header(send_header(parent)))  # type: ignore[arg-type]

    # a full stream with the UUID of a subvolume here (any: an image, a container)
    everything.append(_Info(300, ME.bytes))
    with pytest.raises(UnsafeArchive, match="subvolume 300 here already has that UUID"):
        check(None)
    with pytest.raises(UnsafeArchive, match="already has that UUID"):
        check(image)
    # an image received from the same UUID: only that same stream again (checked on its digest)
    everything[-1] = _Info(257, other.bytes, ME.bytes)
    store[257] = (images_dir / ("c" * 64), everything[-1])
    assert check(None).same == {"c" * 64}
    # ... but a layer or a staging subvolume received from it: refused
    store[257] = (Path("/nonexistent/layers") / ("c" * 64), everything[-1])
    with pytest.raises(UnsafeArchive, match="subvolume 257, which is no image"):
        check(None)
    del store[257]
    with pytest.raises(UnsafeArchive, match="subvolume 257, which is no image"):
        check(None)
    # a parent that two subvolumes answer to, even both images
    everything[-1] = _Info(257, other.bytes, image.bytes)
    store[257] = (images_dir / ("c" * 64), everything[-1])
    with pytest.raises(UnsafeArchive, match="subvolumes 256, 257 all answer"):
        check(image)
    del store[257], everything[-1]
    assert check(image).parent == images_dir / ("a" * 64)


def _checked(*commands: bytes, parent: set[tuple[bytes, ...]] | None = None, version: int = 1) -> None:
    """Run ``commands`` (after the first and before the end) through StreamCheck."""
    src = io.BufferedReader(_Pipe(send_header(None, version) + b"".join(commands) + command(END)))
    head, header = read_stream_header(src)
    check = StreamCheck(header, parent or set())
    for _ in checked_commands(src, head, head, check, hashlib.sha256()):
        pass


CHMOD, RENAME, LINK, UNLINK, RMDIR, MKDIR, CHOWN, UTIMES = 18, 9, 10, 11, 12, 4, 19, 20


def symlink(path: bytes, target: bytes) -> bytes:
    return command(SYMLINK, tlv(15, path), tlv(17, target))


def write(path: bytes) -> bytes:
    return command(WRITE, tlv(15, path), tlv(18, struct.pack("<Q", 0)), tlv(19, b"x"))


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        # a symlink to the image directory, then chmod through it: the store world-writable
        (
            (symlink(b"r", b"/"), command(CHMOD, tlv(15, b"r"), tlv(5, struct.pack("<Q", 0o777)))),
            "to a symlink",
        ),
        ((symlink(b"r", b"/"), write(b"r/" + b"a" * 64 + b".json")), "through a symlink"),
        ((symlink(b"r", b"/"), command(MKFILE, tlv(15, b"./r//x"))), "through a symlink"),
        ((symlink(b"r", b"/"), command(17, tlv(15, b"r"), tlv(4, bytes(8)))), "to a symlink"),
        ((symlink(b"r", b"/x"), command(LINK, tlv(15, b"h"), tlv(17, b"r"))), "hard link to a symlink"),
        (
            (
                symlink(b"r", b"/"),
                command(
                    CLONE,
                    tlv(18, bytes(8)),
                    tlv(24, bytes(8)),
                    tlv(15, b"f"),
                    tlv(20, ME.bytes),
                    tlv(21, bytes(8)),
                    tlv(22, b"r/img/etc/shadow"),
                    tlv(23, bytes(8)),
                ),
            ),
            "through a symlink",
        ),
        ((symlink(b"r", b"/"), command(RENAME, tlv(15, b"r/x"), tlv(16, b"y"))), "through a symlink"),
        # a directory holding a symlink renamed: the symlink moves with it
        (
            (
                command(MKDIR, tlv(15, b"d")),
                symlink(b"d/r", b"/"),
                command(RENAME, tlv(15, b"d"), tlv(16, b"e")),
                write(b"e/r/x"),
            ),
            "through a symlink",
        ),
        # a NUL: receive reads C strings, '..' for it
        ((command(MKFILE, tlv(15, b"..\x00x")),), "NUL"),
        ((command(13, tlv(15, b"f"), tlv(13, b"user.a\x00b"), tlv(14, b"v")),), "NUL"),
        ((command(MKFILE, tlv(15, b"f"), tlv(25, bytes(4))),), "attribute 25, unknown in version 1"),
        ((command(MKFILE, tlv(15, b"f"), tlv(0, b"")),), "attribute 0"),
        ((command(23, tlv(15, b"f")),), "command 23, unknown in version 1"),
    ],
)
def test_paths_through_symlinks_and_nul_bytes_are_refused(commands: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(UnsafeArchive, match=message):
        _checked(*commands)


def test_symlinks_of_the_parent_image_count_and_are_found_without_following(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    (parent / "etc" / "ssl").mkdir(parents=True)
    os.symlink("/", parent / "etc" / "ssl" / "up")
    os.symlink("/", parent / "root")
    os.symlink("/", parent / "etc" / "dirlink")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "no").symlink_to("/")
    os.symlink(tmp_path / "outside", parent / "outlink")  # never followed
    links = transfer.parent_symlinks(parent)
    assert links == {(b"etc", b"ssl", b"up"), (b"root",), (b"etc", b"dirlink"), (b"outlink",)}
    with pytest.raises(UnsafeArchive, match="through a symlink"):
        _checked(write(b"etc/ssl/up/x"), parent=links)
    with pytest.raises(UnsafeArchive, match="to a symlink"):
        _checked(command(CHMOD, tlv(15, b"root"), tlv(5, bytes(8))), parent=links)
    with pytest.raises(UnsafeArchive, match="through a symlink"):  # moved with its directory
        _checked(command(RENAME, tlv(15, b"etc"), tlv(16, b"e2")), write(b"e2/dirlink/x"), parent=links)
    # replaced: unlinked, or a directory renamed over it, then made a directory again
    _checked(
        command(UNLINK, tlv(15, b"root")), command(MKDIR, tlv(15, b"root")), write(b"root/x"), parent=links
    )
    _checked(
        command(UNLINK, tlv(15, b"etc/ssl/up")),
        command(RMDIR, tlv(15, b"etc/ssl")),
        command(MKDIR, tlv(15, b"etc/ssl")),
        command(MKDIR, tlv(15, b"etc/ssl/up")),
        write(b"etc/ssl/up/x"),
        parent=links,
    )
    _checked(
        command(MKDIR, tlv(15, b"d")),
        command(RENAME, tlv(15, b"d"), tlv(16, b"outlink")),
        write(b"outlink/x"),
        parent=links,
    )


def test_what_real_streams_do_with_symlinks_passes() -> None:
    _checked(
        symlink(b"l", b"../../etc"),
        command(CHOWN, tlv(15, b"l"), tlv(6, bytes(8)), tlv(7, bytes(8))),  # lchown
        command(UTIMES, tlv(15, b"l"), tlv(9, bytes(12)), tlv(10, bytes(12)), tlv(11, bytes(12))),
        command(13, tlv(15, b"l"), tlv(13, b"security.selinux"), tlv(14, b"x")),  # lsetxattr
        command(RENAME, tlv(15, b"l"), tlv(16, b"o257-1-0")),
        command(RENAME, tlv(15, b"o257-1-0"), tlv(16, b"m")),
        command(UNLINK, tlv(15, b"m")),
        command(MKDIR, tlv(15, b"m")),
        write(b"m/f"),
    )


def test_one_runner_feeds_collects_and_kills() -> None:
    out = io.BytesIO()
    with open(os.devnull, "wb") as sink:
        transfer._run(["cat"], "cat", feed=[b"a", b"b"], out=sink)
    with pytest.raises(ArchiveError, match="false failed: exit status 1"):
        transfer._run(["false"], "false", error=ArchiveError)

    def feed() -> Any:
        yield b"x"
        raise UnsafeArchive("bad command")

    with pytest.raises(UnsafeArchive):
        transfer._run(["cat"], "cat", feed=feed())
    with pytest.raises(CommandFailed, match="not installed"):
        transfer._run(["no-such-program-here"], "x", out=out)


def test_copy_members_outside_the_first_are_refused() -> None:
    rename = _renamer("etc", "conf")
    assert rename("etc") == "conf" and rename("./etc/hosts") == "conf/hosts"
    with pytest.raises(UnsafeArchive):
        rename("etcetera/passwd")  # would have become "conf/tera/passwd"
    with pytest.raises(UnsafeArchive):
        rename("var/lib")
    contents = _renamer("etc", None)
    assert contents("etc") is None and contents("etc/hosts") == "hosts"


# -- the byte caps of a send stream (those of a tar import) ---------------------------------------

TRUNCATE, FALLOCATE = 17, 23


def q(kind: int, value: int) -> bytes:
    return tlv(kind, struct.pack("<Q", value))


def _budgeted(
    *commands: bytes, limits: Limits, free: int = 1 << 40, total: int = 1 << 41, version: int = 1
) -> StreamBudget:
    looks: list[int] = []

    def space() -> tuple[int, int]:
        looks.append(1)
        return free, total

    budget = StreamBudget(limits, space)
    src = io.BufferedReader(_Pipe(send_header(None, version) + b"".join(commands) + command(END)))
    head, header = read_stream_header(src)
    fed = []
    try:
        for chunk in checked_commands(src, head, head, StreamCheck(header, budget=budget), hashlib.sha256()):
            fed.append(chunk)
    except BaseException:
        assert fed == []  # refused before btrfs receive saw any of it
        raise
    assert looks  # the free space was looked at
    return budget


def test_a_tiny_stream_asking_for_a_huge_fallocate_is_refused() -> None:
    bomb = command(FALLOCATE, tlv(15, b"f"), tlv(25, struct.pack("<I", 0)), q(18, 0), q(4, 1 << 50))
    with pytest.raises(ArchiveError, match=f"more than the limit of {64 << 30} bytes"):
        _budgeted(command(MKFILE, tlv(15, b"f")), bomb, limits=Limits(), version=2)
    # under the byte cap but more than the pool has above its reserve: the tar import's message
    with pytest.raises(
        PoolError,
        match=r"cannot unpack the btrfs send stream: the pool is full \(10.0 GiB free, 1.0 GiB is kept",
    ):
        _budgeted(
            command(FALLOCATE, tlv(15, b"f"), tlv(25, struct.pack("<I", 1)), q(18, 0), q(4, 20 << 30)),
            limits=Limits(),
            free=10 << 30,
            version=2,
        )
    # punching a hole frees space: not counted
    punch = command(FALLOCATE, tlv(15, b"f"), tlv(25, struct.pack("<I", 3)), q(18, 0), q(4, 1 << 50))
    budget = StreamBudget(Limits())
    src = io.BufferedReader(_Pipe(send_header(None, 2) + punch + command(END)))
    head, header = read_stream_header(src)
    list(checked_commands(src, head, head, StreamCheck(header, budget=budget), hashlib.sha256()))
    assert budget.total == 0


def test_writes_and_growing_truncates_count_against_the_limit() -> None:
    data = b"x" * 1000
    wr = command(WRITE, tlv(15, b"f"), q(18, 0), tlv(19, data))
    grow = command(TRUNCATE, tlv(15, b"f"), q(4, 5000))  # 4000 bytes past what was written
    budget = _budgeted(command(MKFILE, tlv(15, b"f")), wr, grow, limits=Limits(max_bytes=5000))
    assert budget.total == 5000
    with pytest.raises(ArchiveError, match="more than the limit of 4999 bytes"):
        _budgeted(command(MKFILE, tlv(15, b"f")), wr, grow, limits=Limits(max_bytes=4999))
    encoded = command(25, tlv(15, b"f"), q(18, 0), q(27, 1 << 20), q(28, 1 << 20), q(29, 0), tlv(19, data))
    stream = send_header(None, version=2) + command(MKFILE, tlv(15, b"f")) + encoded + command(END)
    src = io.BufferedReader(_Pipe(stream))
    head, header = read_stream_header(src)
    budget = StreamBudget(Limits(max_bytes=(1 << 20) - 1))
    with pytest.raises(ArchiveError, match="more than the limit"):
        list(checked_commands(src, head, head, StreamCheck(header, budget=budget), hashlib.sha256()))


def test_a_pool_at_its_reserve_takes_no_more_bytes() -> None:
    wr = command(WRITE, tlv(15, b"f"), q(18, 0), tlv(19, b"x"))
    with pytest.raises(PoolError, match="the pool is full"):
        _budgeted(command(MKFILE, tlv(15, b"f")), wr, limits=Limits(), free=1 << 20, total=1 << 40)
