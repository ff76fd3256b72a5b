"""--privileged's host device nodes: which are taken, and the nspawn command line they make."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nspawnctl.run.hostdevices import host_devices, mount_args, wanted
from nspawnctl.run.units import Launch, nspawn_argv
from nspawnctl.runopts import Device, RunSettings, Tmpfs
from nspawnctl.spec import ContainerSpec, Volume, file_to_spec, spec_to_file

SPEC = ContainerSpec(
    name="p",
    id="0123456789abcdef0123456789abcdef",
    image="busybox:latest",
    image_id="sha256:" + "ab" * 32,
    created="2026-12-07T10:00:00+00:00",
    command=["sh"],
    volumes=[Volume("/srv/data", "/data"), Volume("/etc/a:b", "/a:b", read_only=True)],
    settings=RunSettings(
        privileged=True,
        tmpfs=(Tmpfs.from_value("/run/x"),),
        devices=(Device("/dev/sda", "/dev/disk0", "rwm"), Device("/dev/kvm", "/dev/kvm", "rwm")),
    ),
)


@pytest.mark.parametrize(
    "rel",
    ["kvm", "loop-control", "loop7", "sda1", "bus/usb/001/002", "dri/card0", "ttyS0", "ttyUSB0", "ttyACM1"],
)
def test_host_devices_are_taken(rel: str) -> None:
    assert wanted(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "ptmx",
        "console",
        "fuse",
        "net/tun",
        "tty0",
        "tty12",
        "vcs",
        "vcs1",
        "vcsa1",
        "vcsu",
        "pts/0",
        "shm/x",
        "mqueue/q",
        "hugepages/x",
        "odd:name",
        "bus/usb/a b",
    ],
)
def test_nspawns_own_nodes_consoles_and_odd_names_are_not(rel: str) -> None:
    assert not wanted(rel)


def test_host_devices_walks_dev_without_symlinks_or_plain_files(tmp_path: Path) -> None:
    def node(rel: str, kind: int = stat.S_IFCHR) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mknod(path, kind | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")

    for rel in ("kvm", "null", "tty1", "bus/usb/001/001", "pts/0"):
        node(rel)
    node("loop0", stat.S_IFBLK)
    (tmp_path / "log").write_text("")  # a plain file, /dev/log's socket stands for such things
    (tmp_path / "cdrom").symlink_to("loop0")
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "by-id").symlink_to(tmp_path / "bus")  # a link to a directory: not followed
    assert host_devices(tmp_path) == ["/dev/bus/usb/001/001", "/dev/kvm", "/dev/loop0"]
    assert host_devices(tmp_path, limit=2) == ["/dev/bus/usb/001/001", "/dev/kvm"]


def test_mount_args_repeat_the_files_mounts_then_the_devices_no_mount_covers() -> None:
    devices = ("/dev/kvm", "/dev/disk0", "/dev/loop0", "/dev/bus/usb/001/001")
    args = mount_args(SPEC, devices)
    f = spec_to_file(SPEC)
    own = [f"--bind={v}" for v in f.get_all("Files", "Bind")]
    assert args[: len(own)] == own  # the volumes' and --device's binds, as the file has them
    assert "--bind=/srv/data:/data" in args and "--bind-ro=/etc/a\\:b:/a\\:b" in args
    assert "--tmpfs=/run/x" in args
    # /dev/kvm and /dev/disk0 are --device's binds already: not bound twice
    assert [a for a in args if a.startswith("--bind=/dev/")] == [
        "--bind=/dev/sda:/dev/disk0",
        "--bind=/dev/kvm:/dev/kvm",
        "--bind=/dev/loop0",
        "--bind=/dev/bus/usb/001/001",
    ]


def test_nspawn_argv_with_devices_trusts_the_command_line_for_mounts() -> None:
    plain = nspawn_argv(SPEC, Path("/p"), Launch())
    assert "--settings=override" in plain and not any(a.startswith("--bind") for a in plain)
    argv = nspawn_argv(SPEC, Path("/p"), Launch(devices=("/dev/loop0",)))
    assert "--settings=trusted" in argv and "--settings=override" not in argv
    assert argv[-1] == "--bind=/dev/loop0" and "--bind=/srv/data:/data" in argv


def test_the_definition_keeps_only_privileged() -> None:
    text = spec_to_file(SPEC).render()
    assert "Privileged=yes" in text and "loop" not in text
    from nspawnctl.nspawnfile import NspawnFile

    assert file_to_spec("p", NspawnFile.parse(text)) == SPEC
