"""Helpers of the Docker Engine API tests (test_docker_api*.py, test_docker_clients.py): the
socket, the docker CLI and curl against it, a docker-py client. Their fixtures (``api``,
``pulled``, ``dpy``) are in conftest.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SOCKET = "/run/nspawnctl/docker.sock"
SERVICE = "nspawnctl-docker.service"
DROPIN = Path(f"/etc/systemd/system/{SERVICE}.d/e2e-ca.conf")


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True).stdout.strip()


def wait_for(check: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def debian_12() -> bool:
    return Path("/etc/debian_version").read_text().startswith("12")


def docker(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None and debian_12():
        # tests/host/testhost.py SUITE_WITHOUT: Debian 12 packages no docker CLI of its own
        pytest.skip("Debian 12 has no docker-cli package (issue 15: the docker CLI is tested on Debian 13)")
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)


def curl(*args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", SOCKET, "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else {}


@contextmanager
def dockerpy_client() -> Iterator[Any]:
    """docker-py on the socket, closed at the end: an open connection keeps the service from its
    idle exit."""
    import docker as dockerpy

    client = dockerpy.DockerClient(base_url=f"unix://{SOCKET}")
    try:
        yield client
    finally:
        client.close()
