"""``nspawnctl auto-update --install-timer|--uninstall-timer``: the daily timer installed from the
CLI with the running nspawnctl's absolute path, listed and enabled by systemd; its service, started
by hand, updates a container marked for it; uninstalled again; a mask is left alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CLI, unit_show

SYSTEMD = Path("/etc/systemd/system")
UNIT = "nspawnctl-auto-update"
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def _journal(invocation: str) -> str:
    return subprocess.run(
        ["journalctl", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}"], capture_output=True, text=True
    ).stdout


def assert_runs_daily() -> None:
    """The installed timer fires once a day: its file says so, systemd read it so, and its next
    elapse is within a day plus the randomized delay."""
    timer = (SYSTEMD / f"{UNIT}.timer").read_text().splitlines()
    assert "OnCalendar=daily" in timer, timer
    delay = int(next(line.split("=", 1)[1] for line in timer if line.startswith("RandomizedDelaySec=")))
    now = time.time()
    shown = subprocess.run(
        ["systemctl", "show", "--timestamp=unix", f"{UNIT}.timer", "-p", "TimersCalendar", "-p",
         "NextElapseUSecRealtime"],
        capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"},
    ).stdout  # fmt: skip
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    # the calendar's own next elapse (--timestamp=unix: "@SECONDS"), the coming midnight
    match = re.fullmatch(r"\{ OnCalendar=\*-\*-\* 00:00:00 ; next_elapse=@(\d+) \}", props["TimersCalendar"])
    assert match, props
    assert now < int(match[1]) <= now + 24 * 3600, (now, props)
    # when it fires: that plus the random delay (systemd prints this one as a date, in TZ)
    fires = datetime.strptime(props["NextElapseUSecRealtime"], "%a %Y-%m-%d %H:%M:%S UTC")
    assert int(match[1]) <= fires.replace(tzinfo=UTC).timestamp() <= int(match[1]) + delay, props


@pytest.mark.serial
def test_install_timer_runs_this_nspawnctl_updates_a_marked_container_and_uninstalls(
    nsp: CLI, busybox: str
) -> None:
    ref = f"e2e/autt-{uuid.uuid4().hex[:6]}:1"
    nsp("tag", busybox, ref)
    nsp.images.add(ref)
    name = nsp.name("autt")
    nsp("run", "-d", "--name", name, "--network", "none", "--auto-update", "local", ref, "sh", "-c", LOOP)
    # a newer image under the container's name: its /version, which the running root then loses
    nsp("exec", name, "sh", "-c", "echo 2 > /version")
    nsp("commit", name, ref)
    nsp("exec", name, "rm", "/version")
    # Persistent=true: a stamp of an earlier run in this host (the test's, before the last midnight)
    # would make the timer catch up at once; a first install has none
    Path(f"/var/lib/systemd/timers/stamp-{UNIT}.timer").unlink(missing_ok=True)
    try:
        out = nsp("auto-update", "--install-timer", "--timeout", "60").stdout
        assert f"{UNIT}.timer enabled and started" in out, out
        service = (SYSTEMD / f"{UNIT}.service").read_text()
        nspawnctl = Path(shutil.which("nspawnctl") or "nspawnctl").resolve()
        assert f"ExecStart={nspawnctl} auto-update --timeout 60" in service.splitlines(), service
        timers = subprocess.run(["systemctl", "list-timers", "--all"], capture_output=True, text=True).stdout
        assert f"{UNIT}.timer" in timers and f"{UNIT}.service" in timers, timers
        shown = unit_show(f"{UNIT}.timer", "ActiveState", "UnitFileState")
        assert shown == {"ActiveState": "active", "UnitFileState": "enabled"}, shown
        assert_runs_daily()
        nsp("auto-update", "--install-timer", "--timeout", "60")  # again: the same, no error

        start = ["systemctl", "start", f"{UNIT}.service"]
        subprocess.run(start, check=True, capture_output=True, timeout=300)
        done = unit_show(f"{UNIT}.service", "Result", "ExecMainStatus", "InvocationID")
        assert done["Result"] == "success" and done["ExecMainStatus"] == "0", done
        journal = _journal(done["InvocationID"])
        assert re.search(r"^UNIT\s+CONTAINER\s+IMAGE\s+POLICY\s+UPDATED", journal, re.M), journal
        assert re.search(rf"^\S+\s+{name}\s+{re.escape(ref)}\s+local\s+true$", journal, re.M), journal
        assert nsp("exec", name, "cat", "/version").stdout == "2\n"

        out = nsp("auto-update", "--uninstall-timer").stdout
        assert out.startswith("Removed "), out
        assert not (SYSTEMD / f"{UNIT}.service").exists() and not (SYSTEMD / f"{UNIT}.timer").exists()
        assert unit_show(f"{UNIT}.timer", "LoadState")["LoadState"] == "not-found"
        assert nsp("auto-update", "--uninstall-timer").stdout == "The timer was not installed\n"

        # a masked timer (a symlink to /dev/null) is the admin's: refused, left as it is
        (SYSTEMD / f"{UNIT}.timer").symlink_to("/dev/null")
        bad = nsp("auto-update", "--install-timer", check=False)
        assert bad.returncode == 125, bad
        assert bad.stderr.startswith("nspawnctl: error: ") and "not a regular file" in bad.stderr, bad.stderr
        assert "hint: " in bad.stderr
        assert (SYSTEMD / f"{UNIT}.timer").readlink() == Path("/dev/null")
        assert not (SYSTEMD / f"{UNIT}.service").exists()
    finally:
        subprocess.run(["systemctl", "disable", "--now", f"{UNIT}.timer"], capture_output=True)
        for ext in ("service", "timer"):
            (SYSTEMD / f"{UNIT}.{ext}").unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
