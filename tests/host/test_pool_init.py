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
