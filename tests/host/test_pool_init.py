"""`nspawnctl pool init` on a host whose /var/lib/machines is not btrfs, across a reboot.

Runs on the machine itself (not inside the host): it has to boot the test host without the
harness's pool, and reboot it. Root only; the harness builds the host if needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import testhost

CONTAINER = f"persist-{uuid.uuid4().hex[:8]}"
IMAGE = f"tiny-{uuid.uuid4().hex[:8]}"


sh = testhost.host_sh


@pytest.fixture(scope="module")
def bare_host() -> Iterator[None]:
    # container definitions live in the host's /etc, not in the pool: remove what we made
    cleanup = [["nspawnctl", "rm", "-f", CONTAINER], ["nspawnctl", "rmi", "-f", IMAGE]]
    with testhost.booted("bare", cleanup):
        yield


def test_commands_refuse_a_plain_directory_pool(bare_host: None) -> None:
    code, _, err = sh("nspawnctl", "images")
    assert code == 125
    assert "not on btrfs" in err.splitlines()[0] and "nspawnctl pool init" in err


def test_a_failed_pool_init_leaves_nothing(bare_host: None) -> None:
    # 1M is too small for mkfs.btrfs: the file is made, then the init fails half-way
    code, _, err = sh("nspawnctl", "pool", "init", "--size", "1M")
    assert code == 125 and "mkfs.btrfs" in err
    assert sh("ls", "/var/lib/nspawnctl.raw")[0] != 0
    for unit in ("var-lib-nspawnctl.mount", "var-lib-machines.mount"):
        assert sh("ls", f"/etc/systemd/system/{unit}")[0] != 0
    assert sh("findmnt", "/var/lib/machines")[0] != 0


def nothing_left(machines: str = "") -> None:
    """What a failed pool init must not leave: the loopback file, a unit, a mount (``machines``:
    what /var/lib/machines had mounted before, as findmnt shows its source)."""
    assert sh("ls", "/var/lib/nspawnctl.raw")[0] != 0
    for unit in ("var-lib-nspawnctl.mount", "var-lib-machines.mount"):
        assert sh("ls", f"/etc/systemd/system/{unit}")[0] != 0, unit
    assert sh("findmnt", "/var/lib/nspawnctl")[0] != 0
    assert sh("findmnt", "-no", "SOURCE", "/var/lib/machines")[1] == machines


def test_pool_init_never_mounts_over_a_mount_point(bare_host: None) -> None:
    # /var/lib/machines already a filesystem of its own: another one (tmpfs, holding a machine),
    # and a btrfs one (a subvolume mount of another file)
    assert (
        sh("sh", "-c", "mount -t tmpfs tmpfs /var/lib/machines && touch /var/lib/machines/precious")[0] == 0
    )
    try:
        code, _, err = sh("nspawnctl", "pool", "init", "--size", "3G")
        assert code == 125 and "/var/lib/machines is a mount point already (tmpfs" in err
        nothing_left("tmpfs\n")
        assert sh("ls", "/var/lib/machines/precious")[0] == 0
    finally:
        sh("umount", "/var/lib/machines")
    script = (
        "truncate -s 300M /var/tmp/other.raw && mkfs.btrfs -f -q /var/tmp/other.raw && mkdir -p /mnt/o && "
        "mount -o loop /var/tmp/other.raw /mnt/o && btrfs -q subvolume create /mnt/o/sub && umount /mnt/o && "
        "mount -o loop,subvol=sub /var/tmp/other.raw /var/lib/machines"
    )
    assert sh("sh", "-c", script)[0] == 0
    try:
        before = sh("findmnt", "-no", "SOURCE", "/var/lib/machines")[1]
        code, _, err = sh("nspawnctl", "pool", "init", "--size", "3G")
        assert code == 125, err
        nothing_left(before)
    finally:
        sh("umount", "/var/lib/machines")
        sh("rm", "-f", "/var/tmp/other.raw")


def test_pool_init_keeps_a_file_or_unit_it_did_not_make(bare_host: None) -> None:
    assert sh("sh", "-c", "echo mine > /var/lib/nspawnctl.raw")[0] == 0
    code, _, err = sh("nspawnctl", "pool", "init", "--size", "3G")
    assert code == 125 and "/var/lib/nspawnctl.raw exists already" in err
    assert sh("cat", "/var/lib/nspawnctl.raw")[1] == "mine\n"
    sh("rm", "/var/lib/nspawnctl.raw")
    unit = "/etc/systemd/system/var-lib-machines.mount"
    assert sh("sh", "-c", f"echo '# by the admin' > {unit}")[0] == 0
    code, _, err = sh("nspawnctl", "pool", "init", "--size", "3G")
    assert code == 125 and f"{unit} exists already" in err
    assert sh("cat", unit)[1] == "# by the admin\n"
    sh("rm", unit)
    nothing_left()


def test_a_pool_init_killed_half_way_leaves_nothing(bare_host: None) -> None:
    # SIGTERM as soon as the file exists (mkfs, the units or the mounts are under way then)
    script = (
        "nspawnctl pool init --size 3G & pid=$!; "
        "while [ ! -e /var/lib/nspawnctl.raw ]; do sleep 0.01; done; kill -TERM $pid; wait $pid"
    )
    code, _, _ = sh("sh", "-c", script)
    assert code != 0
    nothing_left()


def test_pool_init_creates_a_pool_that_survives_reboot(bare_host: None) -> None:
    code, out, err = sh("nspawnctl", "pool", "init", "--size", "3G")
    assert code == 0, err
    assert "/var/lib/nspawnctl.raw" in out
    assert sh("ls", "/var/lib/machines.raw")[0] != 0  # machined's own name stays free
    assert "What=/var/lib/nspawnctl.raw" in sh("systemctl", "cat", "var-lib-nspawnctl.mount")[1]
    code, out, _ = sh("nspawnctl", "pool", "check")
    assert code == 0 and "layout: nspawnctl's pool" in out and "/var/lib/nspawnctl.raw" in out
    for unit in ("var-lib-nspawnctl.mount", "var-lib-machines.mount"):
        assert sh("systemctl", "is-enabled", unit)[1].strip() == "enabled"
        assert sh("systemctl", "is-active", unit)[1].strip() == "active"
    assert sh("findmnt", "-no", "FSTYPE", "/var/lib/machines")[1].strip() == "btrfs"
    check_private_and_options()
    # a pool made before the units had the options: pool check says so, pool init fixes it
    old_units = (
        "sed -i 's/^Options=.*/Options=loop/' /etc/systemd/system/var-lib-nspawnctl.mount && "
        "sed -i 's/^Options=.*/Options=bind/' /etc/systemd/system/var-lib-machines.mount && "
        "systemctl daemon-reload && mount -o remount,suid,dev /var/lib/nspawnctl && "
        "mount -o remount,bind,suid,dev /var/lib/machines"
    )
    assert sh("sh", "-c", old_units)[0] == 0
    code, _, err = sh("nspawnctl", "pool", "check")
    assert code == 125 and "lacks nosuid,nodev" in err and "'nspawnctl pool init' fixes" in err
    code, out, err = sh("nspawnctl", "pool", "init")
    assert code == 0 and "updated the mount options" in out, err
    assert "Options=loop,nosuid,nodev" in sh("systemctl", "cat", "var-lib-nspawnctl.mount")[1]
    assert "Options=bind,nodev,suid" in sh("systemctl", "cat", "var-lib-machines.mount")[1]
    check_private_and_options()
    # a second init changes nothing
    code, out, _ = sh("nspawnctl", "pool", "init")
    assert code == 0 and "nothing to do" in out
    # it is a working pool: an image and a container in it
    assert (
        sh("sh", "-c", "mkdir -p /var/tmp/r/bin /var/tmp/r/etc && cp /bin/busybox /var/tmp/r/bin/sh")[0] == 0
    )
    assert sh("nspawnctl", "import", "/var/tmp/r", IMAGE)[0] == 0
    code, out, err = sh("nspawnctl", "run", "--name", CONTAINER, IMAGE, "/bin/sh", "-c", "echo kept > /f")
    assert code == 0, err
    testhost.reboot()
    # after the reboot the mount units bring the same pool back
    assert sh("findmnt", "-no", "FSTYPE", "/var/lib/nspawnctl")[1].strip() == "btrfs"
    assert sh("nspawnctl", "pool", "check")[0] == 0
    assert IMAGE in sh("nspawnctl", "images")[1]
    assert sh("cat", f"/var/lib/machines/{CONTAINER}/f")[1] == "kept\n"
    assert CONTAINER in sh("machinectl", "list-images", "--no-legend")[1]
    check_private_and_options()


def check_private_and_options() -> None:
    """The new filesystem's root (the store) and its machines subvolume (the pool) are 0700; the
    store is mounted nosuid,nodev, the pool nodev but not nosuid (setuid in containers)."""
    assert sh("stat", "-c", "%a %u", "/var/lib/nspawnctl", "/var/lib/machines")[1] == "700 0\n700 0\n"
    store = set(sh("findmnt", "-no", "OPTIONS", "-M", "/var/lib/nspawnctl")[1].strip().split(","))
    pool = set(sh("findmnt", "-no", "OPTIONS", "-M", "/var/lib/machines")[1].strip().split(","))
    assert {"nosuid", "nodev"} <= store
    assert "nodev" in pool and "nosuid" not in pool
