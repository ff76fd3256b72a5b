"""run/payloadwait.py and execenv.setting_up: an exec waits until the container's PID 1 has
executed its payload."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

from nspawnctl.run.execenv import setting_up
from nspawnctl.run.payloadwait import payload_started


def test_a_leader_running_its_parents_binary_without_a_child_is_waited_for() -> None:
    # the "leader" is a fork of this interpreter (nspawn's child runs nspawn's binary) that then
    # executes sleep (its payload) once told to
    code = "import os,sys; sys.stdin.readline(); os.execvp('sleep', ['sleep', '30'])"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        # the child runs this interpreter's binary, as nspawn's child runs nspawn's
        assert os.stat(f"/proc/{proc.pid}/exe").st_ino == os.stat(f"/proc/{os.getpid()}/exe").st_ino
        assert setting_up(proc.pid)

        async def go() -> bool:
            waiting = asyncio.ensure_future(payload_started(proc.pid, timeout=60))
            await asyncio.sleep(0.05)
            early = waiting.done()
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            await waiting
            return early

        assert asyncio.run(go()) is False  # it waited, then returned once the payload ran
        assert not setting_up(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_a_gone_leader_or_another_binary_is_no_wait() -> None:
    proc = subprocess.Popen([shutil.which("true") or "/bin/true"])
    proc.wait()
    assert not setting_up(proc.pid)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not setting_up(sleeper.pid)  # runs sleep, not this interpreter's binary
    finally:
        sleeper.kill()
        sleeper.wait()
    asyncio.run(payload_started(proc.pid, timeout=60))
