"""The output of a run the Docker API service holds (``Tty``, ``OpenStdin``) reaches the journal
too (run/journalcopy.py): ``docker logs`` and ``nspawnctl logs`` have it, stdout at priority info
and stderr at err, and no copy unit or pipe stays once the run has ended."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

from conftest import CLI

SCRIPT = "echo out-line-$N; echo err-line-$N >&2; sleep 0.5"


def _copy_units() -> list[str]:
    out = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", "nspawnctl-output@*"],
        capture_output=True,
        text=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _journal(cid: str) -> list[dict[str, Any]]:
    subprocess.run(["journalctl", "--sync"], check=False)
    out = subprocess.run(
        ["journalctl", "-o", "json", f"NSPAWNCTL_CONTAINER_ID={cid}", "_TRANSPORT=stdout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_tty_run_output_in_logs(api: dict[str, str], pulled: str, dpy: Any, nsp: CLI) -> None:
    """docker run -dt: the service holds the terminal; logs still show what the payload wrote."""
    name = f"jc-{uuid.uuid4().hex[:8]}"
    c = dpy.containers.run(
        pulled, ["sh", "-c", SCRIPT], environment={"N": "1"}, tty=True, detach=True, name=name
    )
    try:
        assert c.wait(timeout=60)["StatusCode"] == 0
        _until(lambda: b"err-line-1" in c.logs(), f"docker logs never had the output: {c.logs()!r}")
        logs = c.logs()
        assert b"out-line-1" in logs and b"err-line-1" in logs  # a terminal joins them, as docker's
        out = nsp("logs", name)
        assert "out-line-1" in out.stdout and "err-line-1" in out.stdout, out
        _until(lambda: not _copy_units(), f"copy units left: {_copy_units()}")
    finally:
        c.remove(force=True)


def test_open_stdin_run_streams_apart(api: dict[str, str], pulled: str, dpy: Any, nsp: CLI) -> None:
    """docker run -di (pipes, no terminal): stdout and stderr reach the journal apart."""
    name = f"jc-{uuid.uuid4().hex[:8]}"
    c = dpy.containers.run(
        pulled, ["sh", "-c", SCRIPT], environment={"N": "2"}, stdin_open=True, detach=True, name=name
    )
    try:
        assert c.wait(timeout=60)["StatusCode"] == 0
        _until(lambda: b"err-line-2" in c.logs(stdout=False), f"no stderr in logs: {c.logs()!r}")
        assert c.logs(stdout=False).strip() == b"err-line-2"
        assert c.logs(stderr=False).strip() == b"out-line-2"
        entries = _journal(c.id)
        prio = {e["MESSAGE"]: e["PRIORITY"] for e in entries if isinstance(e.get("MESSAGE"), str)}
        assert prio.get("out-line-2") == "6" and prio.get("err-line-2") == "3", entries
        assert {e.get("SYSLOG_IDENTIFIER") for e in entries} == {name}
        out = nsp("logs", name)
        assert out.stdout.strip() == "out-line-2" and out.stderr.strip() == "err-line-2", out
        _until(lambda: not _copy_units(), f"copy units left: {_copy_units()}")
    finally:
        c.remove(force=True)
