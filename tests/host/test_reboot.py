"""Enabled containers come back after the host reboots; disabled ones do not.

Runs on the machine itself (not inside the host), like test_pool_init.py: it reboots the test host
(testhost.reboot(): a host booted by systemd-nspawn exits on reboot, the harness boots it again).
Root only; the harness builds and boots the host if needed. Rebooting ends whatever else runs in
the host (other e2e runs included).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import testhost

TAG = uuid.uuid4().hex[:8]
ENABLED = f"boot-on-{TAG}"
DISABLED = f"boot-off-{TAG}"
IMAGE = f"reboot-bb-{TAG}"
ROOTFS = f"/var/tmp/reboot-bb-{TAG}"
SERVE = 'trap "exit 0" TERM; echo serving; while :; do sleep 1; done'


sh, ok = testhost.host_sh, testhost.host_ok


def machine_state(name: str) -> str:
    code, out, _ = sh("machinectl", "show", name, "--property=State", "--value")
    return out.strip() if code == 0 else "absent"


def running() -> list[str]:
    return sh("nspawnctl", "ps", "-q")[1].split()


@pytest.fixture(scope="module")
def host() -> Iterator[None]:
    cleanup = [
        *(["nspawnctl", "rm", "-f", name] for name in (ENABLED, DISABLED)),
        ["nspawnctl", "rmi", "-f", IMAGE],
        ["rm", "-rf", ROOTFS],
    ]
    with testhost.booted("pool", cleanup):
        yield


def test_enabled_container_runs_again_after_reboot(host: None) -> None:
    testhost.make_busybox_in_host(ROOTFS)
    ok("nspawnctl", "import", ROOTFS, IMAGE)
    for name in (ENABLED, DISABLED):
        ok("nspawnctl", "create", "--name", name, IMAGE, "sh", "-c", SERVE)
    ok("nspawnctl", "enable", "--now", ENABLED)
    ok("nspawnctl", "enable", DISABLED)
    ok("nspawnctl", "disable", DISABLED)
    ok("nspawnctl", "start", DISABLED)
    assert {ENABLED, DISABLED} <= set(running())
    assert ok("systemctl", "is-enabled", f"systemd-nspawn@{ENABLED}.service").strip() == "enabled"

    testhost.reboot()

    deadline = time.monotonic() + 90
    while machine_state(ENABLED) != "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert machine_state(ENABLED) == "running"
    assert ok("systemctl", "is-active", f"systemd-nspawn@{ENABLED}.service").strip() == "active"
    assert ENABLED in running()
    info = ok("nspawnctl", "inspect", ENABLED)
    assert f'"Unit": "systemd-nspawn@{ENABLED}.service"' in info and '"Enabled": true' in info
    assert ok("nspawnctl", "exec", ENABLED, "echo", "alive") == "alive\n"
    # the disabled one stays down; nothing started it at boot
    assert DISABLED not in running()
    assert machine_state(DISABLED) == "absent"
    assert DISABLED in sh("nspawnctl", "ps", "-a", "-q")[1].split()
