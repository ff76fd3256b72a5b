"""Pool layouts told from mountinfo-like data, the adoption plan, and the rendered mount units."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nspawnctl.errors import PoolError
from nspawnctl.store.pool import (
    Layout,
    Move,
    adoption_plan,
    detect_layout,
    make_private_dirs,
    mount_in,
    parse_mountinfo,
    render_units,
    secure_directory,
    undo_adoption_text,
)

POOL, STORE = "/var/lib/machines", "/var/lib/nspawnctl"

EXT4_ROOT = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
PROC = "23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"
# Fedora: the root is the subvolume "root" of one btrfs filesystem; /var/lib/machines is in it.
FEDORA = (
    "60 1 0:31 /root / rw,relatime shared:1 - btrfs /dev/vda3 rw,subvol=/root\n"
    "61 60 0:31 /home /home rw,relatime shared:2 - btrfs /dev/vda3 rw,subvol=/home\n" + PROC
)
# systemd's var-lib-machines.mount: machined's loopback file's top level on /var/lib/machines.
MACHINED_RAW = (
    EXT4_ROOT + PROC + "90 22 0:45 / /var/lib/machines rw,relatime shared:40 - btrfs /dev/loop3 rw\n"
)
# nspawnctl's layout: the top level on the store, its "machines" subvolume bound on the pool.
NSPAWNCTL = (
    EXT4_ROOT
    + "91 22 0:46 / /var/lib/nspawnctl rw,relatime shared:41 - btrfs /dev/loop4 rw,subvolid=5,subvol=/\n"
    + "92 22 0:46 /machines /var/lib/machines rw,relatime shared:41 - btrfs /dev/loop4 rw,subvol=/machines\n"
)
# a btrfs filesystem mounted on /var/lib only (the test host's "btrfs-varlib" boot)
VARLIB = EXT4_ROOT + "93 22 0:47 / /var/lib rw,relatime shared:42 - btrfs /dev/loop5 rw\n"


def test_parse_mountinfo_unescapes_and_keeps_the_mounted_directory() -> None:
    mounts = parse_mountinfo(NSPAWNCTL + r"94 22 0:48 / /mnt/a\040b rw - tmpfs tmp\040fs rw" + "\n")
    assert [m.mount_point for m in mounts] == ["/", "/var/lib/nspawnctl", "/var/lib/machines", "/mnt/a b"]
    assert mounts[2].root == "/machines" and mounts[2].device == "0:46" and mounts[2].fstype == "btrfs"
    assert mounts[3].source == "tmp fs"


def test_mount_in_takes_the_longest_and_last_stacked_mount_point() -> None:
    mounts = parse_mountinfo(
        EXT4_ROOT + "95 22 0:50 / /var rw - tmpfs t rw\n96 22 0:51 / /var rw - xfs x rw\n"
    )
    assert mount_in(mounts, "/var/lib/machines").fstype == "xfs"
    assert mount_in(mounts, "/variable").fstype == "ext4"


@pytest.mark.parametrize(
    ("table", "store_exists", "layout", "ready"),
    [
        (FEDORA, False, Layout.BTRFS_VARLIB, False),  # created in place on first use
        (FEDORA, True, Layout.BTRFS_VARLIB, True),
        (VARLIB, False, Layout.BTRFS_VARLIB, False),
        (MACHINED_RAW, False, Layout.MACHINED_LOOPBACK, False),
        (MACHINED_RAW, True, Layout.MACHINED_LOOPBACK, False),  # e.g. an empty directory on ext4
        (NSPAWNCTL, True, Layout.NSPAWNCTL_POOL, True),
        (EXT4_ROOT + PROC, False, Layout.NO_BTRFS, False),
        (EXT4_ROOT, True, Layout.NO_BTRFS, False),
    ],
)
def test_detect_layout(table: str, store_exists: bool, layout: Layout, ready: bool) -> None:
    found = detect_layout(parse_mountinfo(table), POOL, STORE, store_exists)
    assert (found.layout, found.ready) == (layout, ready)


def test_a_subvolume_mounted_on_the_pool_alone_is_split() -> None:
    """Not the top level, and the store's parent is elsewhere: no place for the store on it."""
    table = EXT4_ROOT + "97 22 0:52 /@machines /var/lib/machines rw - btrfs /dev/sdb1 rw,subvol=/@machines\n"
    assert detect_layout(parse_mountinfo(table), POOL, STORE, False).layout is Layout.SPLIT


def test_a_store_on_another_btrfs_is_split() -> None:
    table = FEDORA + "98 60 0:53 / /var/lib/nspawnctl rw - btrfs /dev/sdc rw\n"
    assert detect_layout(parse_mountinfo(table), POOL, STORE, True).layout is Layout.SPLIT


def test_adoption_moves_every_entry_hidden_ones_too() -> None:
    plan = adoption_plan(["oldbox", ".hidden", "vm.raw"])
    assert [(m.name, m.target) for m in plan] == [
        (".hidden", "machines/.hidden"),
        ("oldbox", "machines/oldbox"),
        ("vm.raw", "machines/vm.raw"),
    ]
    assert adoption_plan([]) == []


def test_adoption_refuses_a_machine_named_like_the_subvolume() -> None:
    with pytest.raises(PoolError) as e:
        adoption_plan(["oldbox", "machines"])
    assert "machinectl rename machines" in (e.value.hint or "")


def test_undo_lists_the_moves_back_and_the_units() -> None:
    text = "\n".join(undo_adoption_text([Move("a"), Move("b")], Path(STORE), "/x.raw"))
    assert "cd /var/lib/nspawnctl && mv machines/a machines/b ." in text
    assert "systemctl disable --now var-lib-machines.mount var-lib-nspawnctl.mount" in text
    assert "rm /etc/systemd/system/var-lib-machines.mount /etc/systemd/system/var-lib-nspawnctl.mount" in text


def test_units_are_rendered_for_the_pool_file() -> None:
    units = render_units("/var/lib/nspawnctl.raw", "loop", Path(__file__).resolve().parents[2] / "units")
    store = units["var-lib-nspawnctl.mount"]
    assert "What=/var/lib/nspawnctl.raw\n" in store and "Options=loop,nosuid,nodev\n" in store
    # the pool keeps setuid (su/sudo in containers, whose roots are bound from it) but not devices
    assert "Options=bind,nodev,suid\n" in units["var-lib-machines.mount"]
    assert "ConditionPathExists=/var/lib/nspawnctl.raw\n" in store
    assert "ConditionPathExists=/var/lib/nspawnctl.raw\n" in units["var-lib-machines.mount"]
    assert "@" not in "".join(
        line for t in units.values() for line in t.splitlines() if not line.startswith("#")
    )
    assert "machines.raw" not in units["var-lib-nspawnctl.mount"].split("[Unit]")[1]


def test_units_for_a_device_still_get_nosuid_nodev_once() -> None:
    templates = Path(__file__).resolve().parents[2] / "units"
    assert "Options=nosuid,nodev\n" in render_units("/dev/sdb1", "", templates)["var-lib-nspawnctl.mount"]
    again = render_units("/x.raw", "loop,nodev,nosuid", templates)["var-lib-nspawnctl.mount"]
    assert "Options=loop,nodev,nosuid\n" in again


def test_parse_mountinfo_keeps_the_mount_options() -> None:
    mounts = parse_mountinfo(
        NSPAWNCTL.replace("/var/lib/nspawnctl rw,relatime", "/var/lib/nspawnctl rw,nosuid,nodev")
    )
    assert mounts[1].options == {"rw", "nosuid", "nodev"}
    assert "nosuid" not in mounts[2].options


def test_secure_directory_makes_it_private_and_refuses_another_owner(tmp_path: Path) -> None:
    d = tmp_path / "pool"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    assert secure_directory(d) == f"{d} was mode 0755, now 0700"
    assert d.stat().st_mode & 0o777 == 0o700
    assert secure_directory(d) is None
    os.chown(d, 65534, 65534)
    with pytest.raises(PoolError) as e:
        secure_directory(d)
    assert "owned by uid 65534" in e.value.message and "chown root:root" in (e.value.hint or "")


def test_make_private_dirs_makes_every_new_directory_0700(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        make_private_dirs(tmp_path / "a" / "b" / "store")
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "store"):
        assert p.stat().st_mode & 0o777 == 0o700
    make_private_dirs(tmp_path / "a" / "b" / "store")  # there already: fine


def test_adoption_copies_what_is_not_a_subvolume() -> None:
    """A .raw image, a .nspawn file or a plain directory cannot be renamed into another subvolume
    (EXDEV): those are copied with reflinks, subvolumes renamed."""
    plan = adoption_plan(["oldbox", "vm.raw", "oldbox.nspawn"], lambda name: name == "oldbox")
    assert [(m.name, m.subvolume) for m in plan] == [
        ("oldbox", True),
        ("oldbox.nspawn", False),
        ("vm.raw", False),
    ]


def test_adoption_waits_for_a_transfer_in_progress() -> None:
    with pytest.raises(PoolError) as e:
        adoption_plan(["oldbox", ".#import-abc"])
    assert ".#import-abc" in e.value.message and "list-transfers" in (e.value.hint or "")


def test_undo_quotes_names_and_deletes_the_subvolume() -> None:
    text = "\n".join(undo_adoption_text([Move("a b;c")], Path(STORE), "/x.raw"))
    assert "mv 'machines/a b;c' ." in text
    assert "btrfs subvolume delete /var/lib/nspawnctl/machines" in text
