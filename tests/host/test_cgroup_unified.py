"""pause/unpause on the unified cgroup v2 hierarchy, where systemd really freezes a unit.

The machine boots its controllers on cgroup v1 (hybrid), where systemd refuses FreezeUnit, so the
normal e2e pass can only check the clean refusal. Here the test host is booted in mode "unified"
(systemd-nspawn mounts cgroup2 as the host's /sys/fs/cgroup: SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
and the e2e pause tests run inside it, taking their cgroup v2 branch: the unit's cgroup reports
"frozen 1", the payload's counter stops advancing while paused and goes on after unpause.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import testhost


@pytest.fixture(scope="module")
def host() -> Iterator[None]:
    with testhost.booted("unified"):
        yield


def test_the_host_runs_on_the_unified_hierarchy(host: None) -> None:
    assert testhost.host_ok("stat", "-fc", "%T", "/sys/fs/cgroup").strip() == "cgroup2fs"
    assert testhost.host_ok("systemctl", "is-system-running").strip() in ("running", "degraded")


def test_pause_freezes_and_unpause_resumes_the_payload(host: None) -> None:
    python = testhost.host_python(testhost.current_install())
    tests = ["tests/e2e/test_lifecycle_verbs.py", "tests/e2e/test_exec_confined.py"]  # exec refused
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "pause", *tests]
    proc = testhost.run_in_host(argv, cwd=testhost.SRC_IN_HOST, capture=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout, proc.stdout
