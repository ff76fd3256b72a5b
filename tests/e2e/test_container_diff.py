"""docker's ``diff``: `nspawnctl container diff` and ``GET /containers/{id}/changes`` (docker CLI,
docker-py) list exactly what a container added, changed and deleted against its image, running
and stopped, from a btrfs send stream of a temporary read-only snapshot that never stays behind."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI
from demo import make_busybox_root
from dockerapi import docker

POOL = Path("/var/lib/machines")
STATE = Path("/var/lib/nspawnctl/state")
PREFIX = ".#nspawnctl-diff-"

# What the payload does to the image (a busybox root plus /srv/tree, /srv/mv and /opt/f), and
# what docker's diff says of it: ancestors of a change as C, a renamed entry as D + A (with what
# is below it), a deleted directory without its children, mtime-only changes as C, a new hard link
# or symlink as A, reads (and the ctime a new link gives its file) as nothing.
SCRIPT = r"""set -e
echo hi > /etc/newf
mkdir -p /data/sub
echo x > /data/sub/f
rm /bin/ls
chmod 600 /etc/passwd
mv /etc/group /etc/group2
rm -rf /srv/tree
mv /srv/mv /srv/moved
touch -d '2001-01-01 00:00' /opt/f
cat /etc/os-release /opt/g > /dev/null
ln /opt/g /opt/hl
ln -s /etc/passwd /lnk
printf x > "$(printf '/odd name\tz')"
printf x > "$(printf '/bad\377')"
echo ready
exec sleep 1000
"""
EXPECTED = [
    "C /bin",
    "D /bin/ls",
    "A /data",
    "A /data/sub",
    "A /data/sub/f",
    "C /etc",
    "D /etc/group",
    "A /etc/group2",
    "A /etc/newf",
    "C /etc/passwd",
    "A /lnk",
    "A /odd name\tz",
    "C /opt",
    "C /opt/f",
    "A /opt/hl",
    "C /srv",
    "A /srv/moved",
    "A /srv/moved/x",
    "A /srv/moved/y",
    "D /srv/mv",
    "D /srv/tree",
]
BAD = "A /bad\ufffd"  # a name that is not UTF-8: raw bytes on the CLI, U+FFFD in JSON (as dockerd)
KINDS = {"C": 0, "A": 1, "D": 2}


def expected_text() -> list[str]:
    return sorted([*EXPECTED, BAD], key=lambda line: line[2:].split("/"))


def leftovers() -> list[str]:
    found = [n for n in os.listdir(POOL) if n.startswith(PREFIX)]
    return found + [n for n in os.listdir(STATE) if n.startswith(".diff-")]


@pytest.fixture(scope="module")
def image(workdir: Path) -> Iterator[str]:
    root = make_busybox_root(workdir / f"diff-root-{uuid.uuid4().hex[:6]}", marker="diff")
    for rel, text in (("srv/tree/a", "a"), ("srv/tree/b/c", "c"), ("srv/mv/x", "x"), ("srv/mv/y", "y")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "opt").mkdir()
    (root / "opt" / "f").write_text("f")
    (root / "opt" / "g").write_text("g")
    ref = f"e2e/diff-{uuid.uuid4().hex[:8]}:latest"
    subprocess.run(["nspawnctl", "import", str(root), ref], check=True, capture_output=True)
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


@pytest.fixture(scope="module")
def changed(image: str) -> Iterator[tuple[CLI, str]]:
    """A container that made the changes above and is still running."""
    cli = CLI()
    name = cli.name("diff")
    script = "; ".join(SCRIPT.strip().splitlines())  # a .nspawn file holds no line feed
    cli("run", "-d", "--name", name, image, "sh", "-c", script)
    assert "ready" in cli.wait_logs(name, "ready")
    yield cli, name
    cli.cleanup()


@pytest.mark.serial
def test_diff_of_a_running_container(changed: tuple[CLI, str]) -> None:
    cli, name = changed
    assert cli("ps", "--filter", f"name={name}", "-q").stdout.strip()
    proc = cli("container", "diff", name)
    assert proc.stdout.splitlines() == expected_text()
    assert proc.stderr == ""
    assert leftovers() == []


@pytest.mark.serial
def test_json_and_the_docker_api_answer_the_same(changed: tuple[CLI, str], api: dict[str, str]) -> None:
    import docker as dockerpy

    cli, name = changed
    want = [{"Path": line[2:], "Kind": KINDS[line[0]]} for line in expected_text()]
    assert cli.json("container", "diff", name) == want
    client = dockerpy.APIClient(base_url=api["DOCKER_HOST"])
    try:
        assert client.diff(name) == want
        spec_id = cli.json("inspect", name)[0]["Id"]
        assert client.diff(spec_id[:12]) == want  # docker-py passes the ID
    finally:
        client.close()
    proc = docker(api, "diff", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected_text()
    missing = docker(api, "diff", "no-such-container-diff")
    assert missing.returncode != 0 and "No such container" in missing.stderr
    assert leftovers() == []


@pytest.mark.serial
def test_diff_of_the_stopped_container_is_the_same(changed: tuple[CLI, str]) -> None:
    cli, name = changed
    cli("stop", "-t", "1", name)
    assert cli("container", "diff", name).stdout.splitlines() == expected_text()
    assert leftovers() == []


@pytest.mark.serial
def test_a_killed_diffs_snapshot_is_removed_by_the_next_and_a_live_ones_is_kept(
    changed: tuple[CLI, str],
) -> None:
    """A diff killed (SIGKILL, by strace at its first pipe2: the send's pipe, made once the
    read-only snapshot exists) leaves its snapshot and a free lock; the next diff removes them
    and keeps the snapshot of a diff under way (its lock held: here by the test)."""
    cli, name = changed
    killed = subprocess.run(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=pipe2",
         "-e", "inject=pipe2:signal=KILL:when=1", "nspawnctl", "container", "diff", name],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == 128 + 9 or killed.returncode == -9, killed
    dead = leftovers()
    assert len(dead) == 2 and any(n.startswith(PREFIX) for n in dead), dead
    live = PREFIX + "11aa11aa11aa11aa"
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(POOL / name), str(POOL / live)],
        check=True,
        capture_output=True,
    )
    held = os.open(STATE / ".diff-11aa11aa11aa11aa.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cli("container", "diff", name).stdout.splitlines() == expected_text()
        assert sorted(leftovers()) == [live, ".diff-11aa11aa11aa11aa.lock"]
    finally:
        os.close(held)
    cli("container", "diff", name)
    assert leftovers() == []
    assert name in cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_a_fresh_container_shows_nothing_and_bad_names_fail(image: str, nsp: CLI) -> None:
    """What nspawn itself makes in every container (its mount points, /var/log/journal, the /usr a
    minimal image lacks) is no change of the payload's, as docker's init layer hides its own."""
    name = nsp.name("diff0")
    nsp("run", "--name", name, image, "true")
    assert nsp("container", "diff", name).stdout == ""
    assert nsp.json("container", "diff", name) == []
    proc = nsp("container", "diff", "no-such-diff", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith("nspawnctl: error: no such container: no-such-diff")


@pytest.mark.serial
def test_image_gone(workdir: Path, nsp: CLI, api: dict[str, str]) -> None:
    """After 'rmi --force' of an imported image there is nothing to compare with (a btrfs snapshot
    keeps no copy of its source): a clear error, 409 through the API, and nothing left behind."""
    root = make_busybox_root(workdir / f"diff-gone-{uuid.uuid4().hex[:6]}", marker="gone")
    ref = f"e2e/diff-gone-{uuid.uuid4().hex[:8]}:latest"
    nsp("import", str(root), ref)
    nsp.images.add(ref)
    name = nsp.name("diffgone")
    nsp("create", "--name", name, ref, "true")
    nsp("rmi", "-f", ref)
    proc = nsp("container", "diff", name, check=False)
    assert proc.returncode == 125
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"nspawnctl: error: container {name} cannot be compared with its image")
    assert lines[1].startswith("hint: ")
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", api["DOCKER_HOST"].removeprefix("unix://"),
         f"http://d/v1.47/containers/{name}/changes", "-w", "\n%{http_code}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    body, code = out.rsplit("\n", 1)
    assert code == "409"
    assert "cannot be compared with its image" in json.loads(body)["message"]
    assert leftovers() == []
