"""A host whose /var/lib is btrfs (a btrfs root, as on Fedora): nspawnctl makes its store in place.

Runs on the machine itself: it boots the test host in mode "btrfs-varlib" (a btrfs image holding
a copy of the root's /var/lib, mounted on it before the boot; no loop devices inside the host).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import testhost

TAG = uuid.uuid4().hex[:8]
IMAGE = f"varlib-{TAG}"
CONTAINER = f"varlib-ctr-{TAG}"
ROOTFS = f"/var/tmp/varlib-{TAG}"


sh, ok = testhost.host_sh, testhost.host_ok


@pytest.fixture(scope="module")
def host() -> Iterator[None]:
    with testhost.booted("btrfs-varlib"):
        yield


def test_store_is_made_in_place_on_first_use(host: None) -> None:
    assert ok("findmnt", "-no", "FSTYPE", "/var/lib").strip() == "btrfs"
    assert sh("ls", "-d", "/var/lib/nspawnctl")[0] != 0  # nothing there before the first command
    assert ok("nspawnctl", "images").startswith("REPOSITORY")
    # a subvolume of /var/lib's filesystem, root's only
    assert ok("btrfs", "subvolume", "show", "/var/lib/nspawnctl")
    assert ok("stat", "-c", "%a", "/var/lib/nspawnctl").strip() == "700"
    out = ok("nspawnctl", "pool", "check")
    assert "layout: btrfs /var/lib" in out
    assert "nothing to do" in ok("nspawnctl", "pool", "init")
    # no loopback file, no mount units: nothing but the subvolume
    assert sh("sh", "-c", "ls /var/lib/*.raw")[0] != 0
    assert sh("ls", "/etc/systemd/system/var-lib-nspawnctl.mount")[0] != 0
    assert sh("findmnt", "/var/lib/nspawnctl")[0] != 0


def test_images_and_containers_work_and_machinectl_clean_spares_the_store(host: None) -> None:
    testhost.make_busybox_in_host(ROOTFS, marker=TAG)
    ok("nspawnctl", "import", ROOTFS, IMAGE)
    assert ok("nspawnctl", "run", "--rm", IMAGE, "cat", "/etc/marker") == f"{TAG}\n"
    ok("nspawnctl", "create", "--name", CONTAINER, IMAGE, "true")
    assert CONTAINER in ok("machinectl", "list-images", "--no-legend")
    ok("machinectl", "clean")
    assert IMAGE in ok("nspawnctl", "images")
    ok("nspawnctl", "rm", "-f", CONTAINER)
    ok("nspawnctl", "rmi", IMAGE)
