"""User namespaces, on by default: the payload's root is a high UID on the host, files it makes are
root's inside and on disk (ID-mapped root), volumes stay writable; --userns host opts out."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI

POOL = Path("/var/lib/machines")


def leader_uids(name: str) -> list[int]:
    pid = subprocess.run(
        ["machinectl", "show", name, "-p", "Leader", "--value"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid: line for {pid}")


@pytest.fixture
def volume() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-userns-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o755)
    os.chown(d, 0, 0)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_payload_runs_under_a_shifted_uid_and_root_writes_files_and_volumes(
    nsp: CLI, busybox: str, volume: Path
) -> None:
    name = nsp.name("uns")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "-v", f"{volume}:/vol", busybox,
        "sh", "-c", "touch /made-inside && echo hi > /vol/from-inside && echo ready; exec sleep 600",
    )  # fmt: skip
    nsp.wait_logs(name, "ready")
    uids = leader_uids(name)
    assert min(uids) >= 65536, uids  # root inside is nobody special outside
    assert nsp("exec", name, "id", "-u").stdout.strip() == "0"
    assert nsp("exec", name, "stat", "-c", "%u", "/made-inside").stdout.strip() == "0"
    assert (POOL / name / "made-inside").stat().st_uid == 0  # ID-mapped root: root's on disk too
    written = volume / "from-inside"
    assert written.read_text() == "hi\n" and written.stat().st_uid == 0
    assert nsp("exec", name, "stat", "-c", "%u", "/vol/from-inside").stdout.strip() == "0"


def test_userns_host_runs_as_the_hosts_root(nsp: CLI, busybox: str) -> None:
    name = nsp.name("unh")
    nsp("run", "-d", "--name", name, "--network", "none", "--userns", "host", busybox, "sleep", "600")
    assert leader_uids(name) == [0, 0, 0, 0]
    assert "PrivateUsers=no" in Path(f"/etc/systemd/nspawn/{name}.nspawn").read_text()


@pytest.fixture
def tmpfs_volume() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-tmpfs-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,uid=0,gid=0", "tmpfs", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_a_tmpfs_volume_is_id_mapped_and_writable(nsp: CLI, busybox: str, tmpfs_volume: Path) -> None:
    """tmpfs ID-maps mounts since Linux 6.3 (the test host runs a newer kernel)."""
    name = nsp.name("untmp")
    nsp(
        "run", "-d", "--name", name, "--network", "none", "-v", f"{tmpfs_volume}:/vol", busybox,
        "sh", "-c", "echo hi > /vol/from-inside && echo ready; exec sleep 600",
    )  # fmt: skip
    nsp.wait_logs(name, "ready")
    assert f"Bind={tmpfs_volume}:/vol:idmap" in Path(f"/etc/systemd/nspawn/{name}.nspawn").read_text()
    written = tmpfs_volume / "from-inside"
    assert written.read_text() == "hi\n" and written.stat().st_uid == 0
