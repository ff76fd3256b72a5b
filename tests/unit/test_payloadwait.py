"""run/payloadwait.py: an exec waits until the container's PID 1 has executed its payload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from nspawnctl.run.payloadwait import payload_started, still_nspawn


def test_a_leader_still_running_the_binary_is_waited_for_until_it_executes_another() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    # "nspawn" here is the shell: the leader runs it first, then executes sleep (its payload)
    proc = subprocess.Popen([sh, "-c", "read x; exec sleep 30"], stdin=subprocess.PIPE)
    try:
        assert still_nspawn(proc.pid, sh)
        assert not still_nspawn(proc.pid, shutil.which("sleep") or "/bin/sleep")

        async def go() -> bool:
            waiting = asyncio.ensure_future(payload_started(proc.pid, sh, timeout=60))
            await asyncio.sleep(0.05)
            early = waiting.done()
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            await waiting
            return early

        assert asyncio.run(go()) is False  # it waited, then returned once the payload ran
        assert not still_nspawn(proc.pid, sh)
    finally:
        proc.kill()
        proc.wait()


def test_a_gone_leader_or_missing_binary_is_no_wait() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not still_nspawn(proc.pid, shutil.which("true") or "/bin/true")
    assert not still_nspawn(1, "/nonexistent/systemd-nspawn")
    asyncio.run(payload_started(proc.pid, "/nonexistent", timeout=60))
