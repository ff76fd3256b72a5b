"""machined's loopback pool (/var/lib/machines.raw on /var/lib/machines, with a machine in it):
`pool init` adopts it, and the machine stays listed and starts, after a reboot too.

Runs on the machine itself: it boots the test host in mode "machines-raw" (the harness makes
machines.raw with the busybox machine OLD_MACHINE; the host's own var-lib-machines.mount mounts it).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import testhost

OLD = testhost.OLD_MACHINE
OLD_SET = {OLD, testhost.OLD_RAW_MACHINE, testhost.OLD_DIR_MACHINE}
TAG = uuid.uuid4().hex[:8]
IMAGE = f"adopt-{TAG}"
CONTAINER = f"adopt-ctr-{TAG}"
ROOTFS = f"/var/tmp/adopt-{TAG}"
SLEEPER = f"oldbox-sleeper-{TAG}"


sh, ok = testhost.host_sh, testhost.host_ok


def images() -> list[str]:
    return [line.split()[0] for line in ok("machinectl", "list-images", "--no-legend").splitlines() if line]


def old_machine_runs() -> str:
    """Start the old machine the way machined knows it (by name, from /var/lib/machines)."""
    return ok("systemd-nspawn", "-M", OLD, "--register=no", "-q", "--pipe", "/bin/cat", "/payload")


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.fixture(scope="module")
def host() -> Iterator[None]:
    cleanup = [
        ["systemctl", "stop", SLEEPER],
        ["nspawnctl", "rm", "-f", CONTAINER],
        ["nspawnctl", "rmi", "-f", IMAGE],
    ]
    with testhost.booted("machines-raw", cleanup):  # up checks that machined's mount mounted it
        yield


def test_commands_say_that_pool_init_adopts_the_pool(host: None) -> None:
    assert OLD in images()
    assert old_machine_runs() == f"{testhost.OLD_MACHINE_PAYLOAD}\n"
    code, _, err = sh("nspawnctl", "images")
    assert code == 125
    first, hint = err.splitlines()[0], err.split("hint:", 1)[-1]
    assert first.startswith("nspawnctl: error: /var/lib/machines is the top level")
    assert "nspawnctl pool init" in hint and "adopts" in hint and "subvolume" in hint


def test_pool_init_refuses_while_a_machine_runs(host: None) -> None:
    sleeper = ["systemd-nspawn", "-M", OLD, "-q", "--keep-unit", "/bin/sleep", "300"]
    ok("systemd-run", f"--unit={SLEEPER}", *sleeper)
    assert wait_for(lambda: sh("machinectl", "show", OLD)[0] == 0)
    code, _, err = sh("nspawnctl", "pool", "init")
    assert code == 125
    assert OLD in err.splitlines()[0] and "stop" in err.split("hint:", 1)[-1]
    ok("systemctl", "stop", SLEEPER)
    assert wait_for(lambda: sh("machinectl", "show", OLD)[0] != 0)
    assert sh("ls", "/var/lib/machines/machines")[0] != 0  # nothing was moved


def test_a_failed_adoption_puts_everything_back(host: None) -> None:
    # a process working in /var/lib/machines keeps machined's mount busy: the unmount fails
    # after the machines were moved, and pool init must move them back
    # (entered from outside, not a unit: systemd would stop a unit working there with the mount)
    script = "cd /var/lib/machines && echo $$ > /run/busy.pid && exec sleep 300"
    busy = subprocess.Popen(testhost.host_argv(["sh", "-c", script]))
    try:
        assert wait_for(lambda: sh("test", "-s", "/run/busy.pid")[0] == 0)
        code, out, err = sh("nspawnctl", "pool", "init")
    finally:
        sh("sh", "-c", "kill $(cat /run/busy.pid)")  # nsenter forked: the sleep is its child
        busy.wait()
    assert code == 125, out
    assert f"moved /var/lib/machines/{OLD}" in out and "var-lib-machines.mount" in err
    assert set(images()) == OLD_SET and sh("ls", "-d", f"/var/lib/machines/{OLD}/payload")[0] == 0
    assert sh("ls", f"/var/lib/machines/{OLD}.nspawn")[0] == 0
    assert sh("ls", "-d", "/var/lib/machines/machines")[0] != 0
    for unit in ("var-lib-nspawnctl.mount", "var-lib-machines.mount"):
        assert sh("ls", f"/etc/systemd/system/{unit}")[0] != 0
    assert sh("findmnt", "/var/lib/nspawnctl")[0] != 0
    assert sh("ls", "-A", "/var/lib/nspawnctl")[1] == ""  # absent, or the empty dir it was
    assert ok("findmnt", "-no", "FSTYPE", "/var/lib/machines").strip() == "btrfs"


def test_pool_init_adopts_and_keeps_every_machine(host: None) -> None:
    code, out, err = sh("nspawnctl", "pool", "init")
    assert code == 0, err
    assert f"moved /var/lib/machines/{OLD} -> machines/{OLD} of /var/lib/machines.raw" in out
    assert "to undo" in out
    (mv,) = [line for line in out.splitlines() if " && mv " in line]
    assert mv.endswith(" .") and all(f"machines/{name}" in mv for name in OLD_SET)
    assert "systemctl disable --now var-lib-machines.mount var-lib-nspawnctl.mount" in out
    # no new loopback file: machined's own is the pool now
    assert sh("ls", "/var/lib/nspawnctl.raw")[0] != 0
    assert "What=/var/lib/machines.raw" in ok("systemctl", "cat", "var-lib-nspawnctl.mount")
    assert "layout: nspawnctl's pool" in ok("nspawnctl", "pool", "check")
    # machined's filesystem root (now the store) and the new pool: 0700; the mounts' options
    assert ok("stat", "-c", "%a", "/var/lib/nspawnctl", "/var/lib/machines") == "700\n700\n"
    assert {"nosuid", "nodev"} <= set(
        ok("findmnt", "-no", "OPTIONS", "-M", "/var/lib/nspawnctl").strip().split(",")
    )
    pool_options = set(ok("findmnt", "-no", "OPTIONS", "-M", "/var/lib/machines").strip().split(","))
    assert "nodev" in pool_options and "nosuid" not in pool_options
    assert set(images()) >= OLD_SET
    assert old_machine_runs() == f"{testhost.OLD_MACHINE_PAYLOAD}\n"
    # what is not a subvolume was copied with reflinks, and the originals are gone from the top level
    dirm = testhost.OLD_DIR_MACHINE
    assert f"copied (reflinks) /var/lib/machines/{dirm} -> machines/{dirm}" in out
    assert ok("cat", f"/var/lib/machines/{OLD}.nspawn") == "[Exec]\nEnvironment=FROM_NSPAWN_FILE=1\n"
    assert ok("stat", "-c", "%s", f"/var/lib/machines/{testhost.OLD_RAW_MACHINE}.raw").strip() == str(1 << 20)
    run_dir = ["systemd-nspawn", "-M", dirm, "--register=no", "-q", "--pipe", "/bin/cat", "/payload"]
    assert ok(*run_dir) == f"{testhost.OLD_MACHINE_PAYLOAD}\n"
    for name in (dirm, f"{OLD}.nspawn", f"{testhost.OLD_RAW_MACHINE}.raw"):
        assert sh("ls", "-d", f"/var/lib/nspawnctl/{name}")[0] != 0, name
    # nspawnctl works there
    testhost.make_busybox_in_host(ROOTFS, marker=TAG)
    ok("nspawnctl", "import", ROOTFS, IMAGE)
    ok("nspawnctl", "run", "--name", CONTAINER, IMAGE, "sh", "-c", "echo kept > /f")
    assert {OLD, CONTAINER} <= set(images())
    assert "nothing to do" in ok("nspawnctl", "pool", "init")

    testhost.reboot()

    assert ok("findmnt", "-no", "FSTYPE", "/var/lib/nspawnctl").strip() == "btrfs"
    assert {OLD, CONTAINER} <= set(images())
    assert old_machine_runs() == f"{testhost.OLD_MACHINE_PAYLOAD}\n"
    assert IMAGE in ok("nspawnctl", "images")
    assert ok("cat", f"/var/lib/machines/{CONTAINER}/f") == "kept\n"
    assert "layout: nspawnctl's pool" in ok("nspawnctl", "pool", "check")
