"""cp, commit, export and import on the real pool: files in and out of running and stopped
containers, snapshots that become images, and images out as tar or btrfs send streams and back."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

POOL = Path("/var/lib/machines")


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything import/export must keep: kinds, modes, owners, times, contents, link targets,
    device numbers, xattrs, and which paths share an inode."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""] if dirpath == str(root) else [*dirs, *files]:
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            extra: Any = None
            if stat.S_ISREG(kind):
                extra = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(kind):
                extra = os.readlink(path)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                extra = st.st_rdev
            xattrs = tuple(
                sorted(
                    (k, os.getxattr(path, k, follow_symlinks=False))
                    for k in os.listxattr(path, follow_symlinks=False)
                )
            )
            mtime = None if stat.S_ISDIR(kind) and rel == "." else st.st_mtime_ns
            out[rel] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_size if extra else 0,
                extra,
                xattrs,
                mtime,
            )
    links = sorted(sorted(group) for group in inodes.values())
    out["<hardlinks>"] = tuple(tuple(g) for g in links)
    return out


def image_path(nsp: CLI, ref: str) -> Path:
    return Path(nsp.json("image", "inspect", ref)[0]["path"])


def new_ref(nsp: CLI, prefix: str) -> str:
    ref = f"e2e/{prefix}-{uuid.uuid4().hex[:8]}:latest"
    nsp.images.add(ref)
    return ref


@pytest.fixture(scope="module")
def rich_dir(busybox_dir: Path) -> Path:
    """The busybox root plus what a faithful copy must keep: owners, setuid, a hard link, a
    device node, a FIFO, xattrs, an absolute symlink, an empty directory, a sparse file."""
    root = busybox_dir.parent / "files-rich-root"
    if root.exists():
        return root
    shutil.copytree(busybox_dir, root, symlinks=True)
    data = root / "srv" / "data"
    data.mkdir(parents=True)
    (data / "owned").write_text("owned by 1234:5678\n")
    os.chown(data / "owned", 1234, 5678)
    (data / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(data / "suid", 0o4755)
    os.link(data / "owned", data / "hardlink")
    os.mknod(data / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(data / "fifo")
    os.setxattr(data / "owned", "user.note", b"kept")
    os.setxattr(
        data / "suid", "security.capability", bytes.fromhex("0100000200200000000000000000000000000000")
    )
    os.symlink("/etc/marker", data / "abs-link")
    (data / "empty").mkdir()
    # POSIX ACLs are xattrs (user 1234 may read; a default ACL on a directory)
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF)]
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [*entries, (0x20, 4, 0xFFFFFFFF)])
    (data / "acl").write_text("acl\n")
    os.setxattr(data / "acl", "system.posix_acl_access", acl)
    os.setxattr(data / "empty", "system.posix_acl_default", acl)
    with open(data / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"start")
    return root


@pytest.fixture(scope="module")
def rich(rich_dir: Path) -> Any:
    ref = f"e2e/files-rich-{uuid.uuid4().hex[:6]}:latest"
    subprocess.run(["nspawnctl", "import", str(rich_dir), ref], check=True, capture_output=True)
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


def start(nsp: CLI, image: str, running: bool) -> str:
    name = nsp.name("cp")
    if running:
        nsp("run", "-d", "--name", name, image, "sleep", "600")
    else:
        nsp("create", "--name", name, image, "sleep", "600")
    return name


# -- cp -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_cp_both_ways(nsp: CLI, busybox: str, tmp_path: Path, running: bool) -> None:
    name = start(nsp, busybox, running)
    root = POOL / name
    src = tmp_path / "hello.txt"
    src.write_text("hello from the host\n")
    os.chmod(src, 0o640)
    os.chown(src, 1234, 1234)
    nsp("cp", str(src), f"{name}:/tmp/")
    if running:  # nspawn mounts a tmpfs on the container's /tmp: cp writes into that one
        assert nsp("exec", name, "cat", "/tmp/hello.txt").stdout == "hello from the host\n"
        assert nsp("exec", name, "stat", "-c", "%u:%g %a", "/tmp/hello.txt").stdout == "0:0 640\n"
        nsp(
            "exec", name, "sh", "-c", "mkdir -p /made/sub && echo inside > /made/sub/f && ln -s f /made/sub/l"
        )
    else:
        copied = root / "tmp" / "hello.txt"
        assert copied.read_text() == "hello from the host\n"
        st = copied.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 0)  # root inside
        (root / "made" / "sub").mkdir(parents=True)
        (root / "made" / "sub" / "f").write_text("inside\n")
        os.symlink("f", root / "made" / "sub" / "l")
    # a directory tree into a new name, and archive mode keeps owners
    tree_src = tmp_path / "tree"
    (tree_src / "a" / "b").mkdir(parents=True)
    (tree_src / "a" / "b" / "c.txt").write_text("deep\n")
    os.chown(tree_src / "a" / "b" / "c.txt", 1234, 4321)
    nsp("cp", "-a", str(tree_src), f"{name}:/root/newtree")
    deep = root / "root" / "newtree" / "a" / "b" / "c.txt"
    assert deep.read_text() == "deep\n" and (deep.stat().st_uid, deep.stat().st_gid) == (1234, 4321)
    # container -> host: a file into a directory, a directory as a new name, contents with /.
    out = tmp_path / "out"
    out.mkdir()
    nsp("cp", f"{name}:/etc/marker", str(out))
    assert (out / "marker").read_text() == "busybox\n"
    nsp("cp", f"{name}:/made", str(out / "made-copy"))
    assert (out / "made-copy" / "sub" / "f").read_text() == "inside\n"
    assert os.readlink(out / "made-copy" / "sub" / "l") == "f"
    nsp("cp", f"{name}:/made/sub/.", str(out))
    assert (out / "f").read_text() == "inside\n"
    # a tar stream out on stdout and back in on stdin
    tar = subprocess.run(["nspawnctl", "cp", f"{name}:/made", "-"], capture_output=True, check=True).stdout
    names = sorted(m.name for m in tarfile.open(fileobj=__import__("io").BytesIO(tar)))
    assert names == ["made", "made/sub", "made/sub/f", "made/sub/l"]
    nsp("cp", "-", f"{name}:/root", input=tar)
    assert (root / "root" / "made" / "sub" / "f").read_text() == "inside\n"


def test_cp_errors(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    name = start(nsp, busybox, running=False)
    r = nsp("cp", f"{name}:/nope", str(tmp_path), check=False)
    assert r.returncode != 0 and f"Could not find the file /nope in container {name}" in r.stderr
    r = nsp("cp", str(tmp_path), f"{name}:/missing/dir/x", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = nsp("cp", "/etc/hostname", "e2e-no-such-container:/tmp", check=False)
    assert r.returncode != 0 and "no such container" in r.stderr
    r = nsp("cp", f"{name}:/etc/marker", str(tmp_path / "missing" / "x"), check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_cp_cannot_escape_the_container_root(nsp: CLI, busybox: str, tmp_path: Path, running: bool) -> None:
    name = start(nsp, busybox, running)
    root = POOL / name
    os.symlink("/", root / "evil")
    os.symlink("../../../../../../", root / "var" / "up")
    marker = f"escape-{uuid.uuid4().hex[:8]}"
    src = tmp_path / marker
    src.write_text("must stay inside\n")
    nsp("cp", str(src), f"{name}:/evil/etc/")
    nsp("cp", str(src), f"{name}:/var/up/var/")
    nsp("cp", str(src), f"{name}:/../../../../root/")
    assert not Path("/etc", marker).exists() and not Path("/var", marker).exists()
    assert not Path("/root", marker).exists()
    for d in ("etc", "var", "root"):
        assert (root / d / marker).read_text() == "must stay inside\n"
    # reading through them reads the container's files, never the host's
    r = nsp("cp", f"{name}:/evil/etc/hostname", str(tmp_path / "h"), check=False)  # the host has one
    assert r.returncode != 0 and "Could not find the file" in r.stderr
    nsp("cp", f"{name}:/var/up/etc/marker", str(tmp_path / "m"))
    assert (tmp_path / "m").read_text() == "busybox\n"


# -- commit -------------------------------------------------------------------------------------


@pytest.mark.surface
def test_commit_running_container_then_run_the_image(nsp: CLI, busybox: str) -> None:
    name = nsp.name("commit")
    nsp("run", "-d", "--name", name, "-e", "GREETING=hi", "-w", "/tmp", busybox, "sleep", "600")
    nsp("exec", name, "sh", "-c", "echo committed > /etc/committed.txt")
    ref = new_ref(nsp, "committed")
    image_id = nsp("commit", name, ref).stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert nsp.json("inspect", name)[0]["State"]["Running"]  # a commit does not stop it
    img = nsp.json("image", "inspect", ref)[0]
    assert img["id"] == image_id
    assert img["defaults"]["command"] == ["sleep", "600"]
    assert "GREETING=hi" in img["defaults"]["env"] and img["defaults"]["workdir"] == "/tmp"
    ro = subprocess.run(["btrfs", "property", "get", img["path"], "ro"], capture_output=True, text=True)
    assert ro.stdout.strip() == "ro=true"
    assert nsp("run", "--rm", ref, "cat", "/etc/committed.txt").stdout == "committed\n"
    assert nsp("run", "--rm", ref, "sh", "-c", "echo $GREETING; pwd").stdout == "hi\n/tmp\n"
    # and with no command it runs what the container ran
    other = nsp.name("commit-run")
    nsp("run", "-d", "--name", other, ref)
    assert nsp.json("inspect", other)[0]["Command"] == ["sleep", "600"]


def test_commit_of_a_stopped_container_and_errors(nsp: CLI, busybox: str) -> None:
    name = nsp.name("commit")
    nsp("run", "--name", name, busybox, "sh", "-c", "echo stopped > /etc/state")
    ref = new_ref(nsp, "stopped")
    nsp("commit", name, ref)
    assert nsp("run", "--rm", ref, "cat", "/etc/state").stdout == "stopped\n"
    r = nsp("commit", "e2e-no-such-container", "e2e/x", check=False)
    assert r.returncode != 0 and "no such container" in r.stderr


# -- export / import ------------------------------------------------------------------------------


@pytest.mark.surface
def test_export_tar_import_round_trip(nsp: CLI, rich: str, tmp_path: Path) -> None:
    tarball = tmp_path / "rich.tar"
    nsp("export", rich, "-o", str(tarball))
    ref = new_ref(nsp, "tar-rt")
    nsp("import", str(tarball), ref)
    before, after = tree(image_path(nsp, rich)), tree(image_path(nsp, ref))
    assert "srv/data/null" in after and after["srv/data/hardlink"][2:4] == (1234, 5678)
    assert dict(after["srv/data/acl"][6]).get("system.posix_acl_access")
    assert after == before
    # stdout when it is not a terminal gives the same tar
    piped = subprocess.run(["nspawnctl", "export", rich], capture_output=True, check=True).stdout
    names = lambda data: sorted(tarfile.open(fileobj=__import__("io").BytesIO(data)).getnames())  # noqa: E731
    assert names(piped) == names(tarball.read_bytes())


def test_export_of_a_container(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    name = nsp.name("export")
    nsp("run", "-d", "--name", name, busybox, "sleep", "600")
    nsp("exec", name, "sh", "-c", "echo exported > /etc/exported.txt")
    tarball = tmp_path / "ctr.tar"
    nsp("export", name, "-o", str(tarball))
    with tarfile.open(tarball) as tf:
        member = tf.extractfile("./etc/exported.txt")
        assert member is not None and member.read() == b"exported\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    r = nsp("export", "e2e-nothing-here", "-o", str(tmp_path / "x.tar"), check=False)
    assert r.returncode != 0 and "no such image or container" in r.stderr
    assert not (tmp_path / "x.tar").exists()


def test_btrfs_send_full_and_incremental(nsp: CLI, rich: str, tmp_path: Path) -> None:
    name, name2 = nsp.name("send"), nsp.name("send")
    base, child = new_ref(nsp, "send-base"), new_ref(nsp, "send-child")
    nsp("run", "--name", name, rich, "true")
    nsp("commit", name, base)
    nsp("run", "--name", name2, base, "sh", "-c", "echo small change > /etc/changed")
    nsp("commit", name2, child)
    full, inc = tmp_path / "full.btrfs", tmp_path / "inc.btrfs"
    nsp("export", "--format", "btrfs-send", base, "-o", str(full))
    nsp("export", "--format", "btrfs-send", "--parent", base, child, "-o", str(inc))
    assert full.read_bytes().startswith(b"btrfs-stream\0")
    assert inc.stat().st_size * 10 < full.stat().st_size, (inc.stat().st_size, full.stat().st_size)
    # a parent that is not an ancestor is refused
    r = nsp(
        "export", "--format", "btrfs-send", "--parent", child, base, "-o", str(tmp_path / "bad"), check=False
    )
    assert r.returncode != 0 and "not an ancestor" in r.stderr
    assert not (tmp_path / "bad").exists()
    # not where its source subvolume is: a second subvolume answering to one UUID
    r = nsp("import", str(full), new_ref(nsp, "recv-here"), check=False)
    assert r.returncode != 0 and "already has that UUID" in r.stderr
    want_base, want_child = tree(image_path(nsp, base)), tree(image_path(nsp, child))
    nsp("rm", "-f", name, name2)
    nsp("rmi", "-f", base, child)
    # receive both: the same trees as the originals
    got_base, got_child = new_ref(nsp, "recv-base"), new_ref(nsp, "recv-child")
    nsp("import", str(full), got_base)
    nsp("import", str(inc), got_child)
    assert tree(image_path(nsp, got_base)) == want_base
    assert tree(image_path(nsp, got_child)) == want_child
    assert nsp("run", "--rm", got_child, "cat", "/etc/changed").stdout == "small change\n"
    # from stdin too; the same stream again is the same image
    again = new_ref(nsp, "recv-again")
    same = nsp("import", "-", again, input=full.read_bytes()).stdout.strip()
    assert same == nsp.json("image", "inspect", got_base)[0]["id"]
    # another stream claiming the same UUID is not
    data = full.read_bytes()
    evil = data[: -len(END)] + command(18, (15, b""), (5, struct.pack("<Q", 0o700))) + END
    r = nsp("import", "-", new_ref(nsp, "recv-evil"), input=evil, check=False)
    assert r.returncode != 0 and "a different one" in r.stderr


def test_incremental_stream_without_its_parent_is_refused(nsp: CLI, rich: str, tmp_path: Path) -> None:
    name = nsp.name("send")
    nsp("run", "--name", name, rich, "true")
    child = new_ref(nsp, "send-orphan")
    nsp("commit", name, child)
    inc = tmp_path / "inc.btrfs"
    nsp("export", "--format", "btrfs-send", "--parent", rich, child, "-o", str(inc))
    info = subprocess.run(
        ["btrfs", "subvolume", "show", str(image_path(nsp, rich))], capture_output=True, text=True
    )
    parent_uuid = next(
        line.split()[-1] for line in info.stdout.splitlines() if line.strip().startswith("UUID:")
    )
    data = inc.read_bytes()
    raw = uuid.UUID(parent_uuid).bytes
    assert raw in data[:4096]
    fake = uuid.uuid4()
    own = uuid.UUID(subvolume_uuid(image_path(nsp, child))).bytes  # not a subvolume here either
    inc.write_bytes(reseal(data.replace(raw, fake.bytes, 1).replace(own, uuid.uuid4().bytes, 1)))
    r = nsp("import", str(inc), new_ref(nsp, "orphan"), check=False)
    assert r.returncode != 0 and str(fake) in r.stderr and "parent" in r.stderr


# -- untrusted btrfs streams --------------------------------------------------------------------


def _crc32c(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc


def command(cmd: int, *attrs: tuple[int, bytes]) -> bytes:
    payload = b"".join(struct.pack("<HH", kind, len(data)) + data for kind, data in attrs)
    crc = _crc32c(struct.pack("<IHI", len(payload), cmd, 0) + payload)
    return struct.pack("<IHI", len(payload), cmd, crc) + payload


def reseal(data: bytes) -> bytes:
    """``data`` with its first command's checksum made right again (after an edit)."""
    length, cmd, _ = struct.unpack_from("<IHI", data, 17)
    payload = data[27 : 27 + length]
    crc = _crc32c(struct.pack("<IHI", length, cmd, 0) + payload)
    return data[:17] + struct.pack("<IHI", length, cmd, crc) + data[27:]


END = command(21)


def subvolume_uuid(path: Path, field: str = "UUID:") -> str:
    info = subprocess.run(
        ["btrfs", "subvolume", "show", str(path)], capture_output=True, text=True, check=True
    )
    return next(line.split()[-1] for line in info.stdout.splitlines() if line.strip().startswith(field))


def received_from(sent: str) -> list[str]:
    """Subvolumes on the pool received from the subvolume with UUID ``sent``."""
    out = subprocess.run(
        ["btrfs", "subvolume", "list", "-R", str(POOL)], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if sent in line]


def test_streams_that_reach_beyond_their_subvolume_are_refused(nsp: CLI, rich: str, tmp_path: Path) -> None:
    # a container with a secret: no stream may clone from it or build on it
    name = nsp.name("victim")
    nsp("run", "--name", name, rich, "sh", "-c", "echo secret > /etc/secret")
    victim = subvolume_uuid(POOL / name)
    own = new_ref(nsp, "own")
    nsp("commit", name, own)
    sent = subvolume_uuid(image_path(nsp, own))
    full = tmp_path / "full.btrfs"
    nsp("export", "--format", "btrfs-send", own, "-o", str(full))
    original = full.read_bytes()
    assert original.endswith(END)
    # the checks on the commands: under a UUID of no subvolume here (that is refused, below)
    fresh = uuid.uuid4()
    data = reseal(original.replace(uuid.UUID(sent).bytes, fresh.bytes, 1))
    sent_first, sent = sent, str(fresh)
    images_dir = image_path(nsp, own).parent
    before = {p.name for p in images_dir.iterdir()}

    def refused(stream: bytes, *words: str) -> None:
        r = nsp("import", "-", new_ref(nsp, "evil"), input=stream, check=False)
        assert r.returncode != 0, r.stdout
        for word in words:
            assert word in r.stderr, r.stderr
        assert received_from(sent) == []  # nothing received is left, under any name
        # no staging left by the import (other sessions' imports may be under way: their pids live)
        left = {p.name for p in images_dir.iterdir()} - before
        dead = [  # still there after its pid is gone (not one renamed away as its import ended)
            n
            for n in left
            if n.startswith(".tmp-")
            and not Path(f"/proc/{n.split('-')[1]}").exists()
            and (images_dir / n).exists()
        ]
        assert dead == [], dead

    # a clone from the container's subvolume
    clone = command(
        16,
        (18, struct.pack("<Q", 0)),
        (24, struct.pack("<Q", 4096)),
        (15, b"srv/data/owned"),
        (20, uuid.UUID(victim).bytes),
        (21, struct.pack("<Q", 1)),
        (22, b"etc/secret"),
        (23, struct.pack("<Q", 0)),
    )
    refused(data[: -len(END)] + clone + END, "clones data from subvolume", victim)
    # a second subvolume in the same stream, and a second stream after the first
    second = command(1, (15, b"extra"), (1, uuid.uuid4().bytes), (2, struct.pack("<Q", 1)))
    refused(data[: -len(END)] + second + END, "more than one subvolume")
    refused(data + data, "after its end")
    # a path that leaves the subvolume (for the image records next to it)
    refused(data[: -len(END)] + command(3, (15, b"../evil.json")) + END, "'..'")
    # an incremental stream whose parent is the container, not an image
    inc = tmp_path / "inc.btrfs"
    child = new_ref(nsp, "child")
    name2 = nsp.name("send")
    nsp("run", "--name", name2, own, "true")
    nsp("commit", name2, child)
    nsp("export", "--format", "btrfs-send", "--parent", own, child, "-o", str(inc))
    raw = inc.read_bytes()
    parent = uuid.UUID(subvolume_uuid(image_path(nsp, own))).bytes
    assert parent in raw[:4096]
    mine = uuid.UUID(subvolume_uuid(image_path(nsp, child))).bytes
    forged = raw.replace(parent, uuid.UUID(victim).bytes, 1).replace(mine, uuid.uuid4().bytes, 1)
    refused(reseal(forged), victim, "no image here")
    # a symlink out of the subvolume, then writes through and to it
    link = command(8, (15, b"r"), (17, b"/"))
    refused(
        data[: -len(END)] + link + command(18, (15, b"r"), (5, struct.pack("<Q", 0o777))) + END, "symlink"
    )
    refused(data[: -len(END)] + link + command(3, (15, b"r/evil.json")) + END, "through a symlink")
    refused(data[: -len(END)] + command(3, (15, b"..\0x")) + END, "NUL")
    # the stream's own UUID is the image's it was sent from: refused while that is here
    sent = sent_first
    refused(original, "already has that UUID")
    # and the honest streams still go in
    nsp("rm", "-f", name2)
    nsp("rmi", "-f", child, own)
    nsp("import", str(full), new_ref(nsp, "honest"))
    assert len(received_from(sent)) == 1
