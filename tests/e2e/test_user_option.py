"""-u/--user (and the API's Config.User) checked at create against the image's /etc/passwd:
systemd-nspawn's User= is a user of the container's database and takes no group, so a user
without an entry, or a group other than the user's primary one, is refused before anything is
made; the primary group is accepted and left out of the definition."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI
from dockerapi import curl, docker

NO_ENTRY = "user 4242 has no entry in the image's /etc/passwd"
OTHER_GROUP = "runs in group 1000"
# glibc's getent as nspawn runs it: "initgroups KEY" prints KEY and the groups listing KEY as a
# member (none for a number, which is no member name), where the busybox image's small one
# (tests/host/demo.py) knows user names only
GETENT = """#!/bin/sh
case "$1" in
initgroups) printf %s "$2"; grep -E "^[^:]*:[^:]*:[0-9]+:(.*,)?$2(,|\\$)" /etc/group | cut -d: -f3 |
  while read -r g; do printf ' %s' "$g"; done; echo;;
*) grep -m1 -E "^$2:|^[^:]*:[^:]*:$2:" "/etc/$1" || exit 2;;
esac
"""


@pytest.fixture(scope="module")
def app_image(busybox_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """busybox with a user ``app`` (1000:1000), its group ``app`` and a second group ``second``."""
    root = tmp_path_factory.mktemp("user-option") / "root"
    shutil.copytree(busybox_dir, root, symlinks=True)
    with (root / "etc" / "passwd").open("a") as f:
        f.write("app:x:1000:1000::/tmp:/bin/sh\n")
    with (root / "etc" / "group").open("a") as f:
        f.write("app:x:1000:\nsecond:x:2000:app\n")
    (root / "bin" / "getent").write_text(GETENT)
    ref = f"e2e/user-{uuid.uuid4().hex[:8]}:latest"
    subprocess.run(["nspawnctl", "import", str(root), ref], check=True, capture_output=True)
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


def _made() -> tuple[str, str]:
    """What a refused create must not leave: containers and machined's images."""
    ps = subprocess.run(["nspawnctl", "ps", "-a", "-q", "--no-trunc"], capture_output=True, text=True).stdout
    images = subprocess.run(
        ["machinectl", "list-images", "--no-legend"], capture_output=True, text=True
    ).stdout
    return ps, images


@pytest.mark.serial
def test_run_as_a_user_of_the_image_and_refusals_at_create(nsp: CLI, app_image: str) -> None:
    out = nsp("run", "--rm", "-u", "app", app_image, "sh", "-c", "id -u; id -G").stdout
    assert out == "1000\n1000 2000\n"  # the user's groups from the image's /etc/group
    out = nsp("run", "--rm", "-u", "1000:1000", app_image, "sh", "-c", "id -u; id -g").stdout
    assert out == "1000\n1000\n"
    name = nsp.name("user")
    nsp("create", "--name", name, "-u", "1000:app", app_image, "true")
    generated = nsp("generate", name).stdout
    assert "User=1000\n" in generated and "1000:" not in generated  # the user alone, as nspawn takes it
    nsp("rm", name)
    before = _made()
    for user, said in (("1000:2000", OTHER_GROUP), ("app:second", OTHER_GROUP), ("4242", NO_ENTRY)):
        for verb in ("run", "create"):
            proc = nsp(verb, "--name", nsp.name("user"), "-u", user, app_image, "id", check=False)
            assert proc.returncode == 125, proc.stderr
            assert said in proc.stderr and "hint: " in proc.stderr
    assert f"nspawnctl: error: {NO_ENTRY}: systemd-nspawn runs the command as a user" in proc.stderr
    assert _made() == before  # nothing half-made
    assert nsp("run", "--rm", "-u", "0:0", app_image, "id", "-u").stdout == "0\n"


@pytest.mark.serial
def test_the_api_refuses_config_user_with_a_400(api: dict[str, str], app_image: str, nsp: CLI) -> None:
    before = _made()
    for user, said in (("1000:2000", OTHER_GROUP), ("4242", NO_ENTRY)):
        body = json.dumps({"Image": app_image, "User": user, "Cmd": ["id"]})
        code, reply = curl(
            "-X", "POST", "-H", "Content-Type: application/json", "-d", body, "http://d/containers/create"
        )
        message = str(reply["message"])
        assert code == 400 and message.startswith("Config.User: ") and said in message, reply
    assert _made() == before
    proc = docker(api, "run", "--rm", "-u", "4242", app_image, "id")  # skips where no docker CLI
    assert proc.returncode == 125 and NO_ENTRY in proc.stderr, proc.stderr
    proc = docker(api, "run", "--rm", "-u", "1000:1000", app_image, "sh", "-c", "id -u; id -g")
    assert (proc.returncode, proc.stdout) == (0, "1000\n1000\n"), proc.stderr
    assert _made() == before


@pytest.mark.serial
def test_an_image_user_with_no_entry_is_refused_at_create(nsp: CLI, app_image: str, tmp_path: Path) -> None:
    """The image's USER (here from a build) goes the same way: nspawn would fail the start."""
    (tmp_path / "Dockerfile").write_text(f"FROM {app_image}\nUSER 4242\n")
    tag = f"e2e/user-ghost-{uuid.uuid4().hex[:8]}:latest"
    nsp.images.add(tag)
    nsp("build", "-q", "-t", tag, str(tmp_path), timeout=300)
    before = _made()
    proc = nsp("run", "--rm", tag, "id", check=False)
    assert proc.returncode == 125 and "the image's USER 4242 has no entry" in proc.stderr, proc.stderr
    assert _made() == before
    assert nsp("run", "--rm", "-u", "app", tag, "id", "-u").stdout == "1000\n"  # -u overrides it
