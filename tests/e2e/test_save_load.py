"""The CLI's ``save``, ``load``, ``commit --change`` and ``import --change`` (issue 15's image
endpoints had them; docker's CLI has them): a round trip through a file and through a pipe, the
changed CMD/ENV/LABEL seen by running the image, every tag of a load, a terminal refused, and bad
input refused with nothing left in the store."""

from __future__ import annotations

import io
import json
import os
import pty
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, subvolumes

STORE_IMAGES = Path("/var/lib/nspawnctl/images")


def leftovers() -> list[str]:
    """Staging subvolumes and spools of the store (none once a command is over)."""
    return sorted(p.name for p in STORE_IMAGES.glob(".tmp-*"))


def refs(cli: CLI) -> list[str]:
    return sorted(r for i in cli.json("images") for r in i["refs"])


@pytest.fixture(scope="module")
def committed(cli: CLI, busybox: str) -> Iterator[str]:
    """A container that wrote a file, committed with --change."""
    ctr = cli.name("commit")
    ref = f"e2e/cli-commit-{uuid.uuid4().hex[:8]}:v1"
    cli.images.add(ref)
    cli("run", "--name", ctr, busybox, "sh", "-c", "echo from-the-container > /marker")
    cli(
        "commit", "-c", "ENV GREETING=hello", "--change", 'CMD ["cat", "/marker"]',
        "-c", "LABEL e2e.made=cli", "-c", "EXPOSE 8000", ctr, ref,
    )  # fmt: skip
    yield ref


def test_commit_change_sets_what_the_image_runs(cli: CLI, committed: str) -> None:
    assert cli("run", "--rm", committed).stdout == "from-the-container\n"
    assert cli("run", "--rm", committed, "sh", "-c", "echo $GREETING").stdout == "hello\n"
    image = cli("image", "inspect", "-f", "{{json .Config.Labels}} {{json .Config.Cmd}}", committed)
    assert image.stdout.split() == ['{"e2e.made":"cli"}', '["cat","/marker"]']


def test_save_to_a_file_then_load_it(cli: CLI, committed: str, tmp_path: Path) -> None:
    out = tmp_path / "saved.tar"
    out.write_bytes(b"old")
    out.chmod(0o640)
    cli("save", "-o", str(out), committed)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # written into, its mode kept
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [committed] and config["config"]["Cmd"] == ["cat", "/marker"]
    cli("rmi", committed)
    assert committed not in refs(cli)
    proc = cli("load", "-i", str(out))
    assert proc.stdout == f"Loaded image: {committed}\n"
    assert "Loading layer 1/1" in proc.stderr
    assert cli("run", "--rm", committed).stdout == "from-the-container\n"
    assert cli("run", "--rm", committed, "sh", "-c", "echo $GREETING").stdout == "hello\n"


def test_save_through_a_pipe_gives_every_tag(cli: CLI, committed: str) -> None:
    second = f"e2e/cli-second-{uuid.uuid4().hex[:8]}:v2"
    cli.images.add(second)
    cli("tag", committed, second)
    saved = subprocess.run(["nspawnctl", "image", "save", committed, second], capture_output=True, check=True)
    cli("rmi", committed, second)
    proc = cli("image", "load", "-q", input=saved.stdout)
    assert sorted(proc.stdout.splitlines()) == sorted(
        [f"Loaded image: {committed}", f"Loaded image: {second}"]
    )
    assert proc.stderr == ""  # -q: no progress
    assert {committed, second} <= set(refs(cli))
    assert cli("run", "--rm", second).stdout == "from-the-container\n"


def test_save_refuses_a_terminal_and_unknown_images(cli: CLI, committed: str, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            ["nspawnctl", "save", committed], stdout=follower, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2  # a usage error, as export's
    assert b"nspawnctl: error: refusing to write an archive to a terminal" in proc.stderr
    assert b"hint:" in proc.stderr
    out = tmp_path / "none.tar"
    proc = cli("save", "-o", str(out), committed, "e2e/no-such-image:1", check=False)
    assert proc.returncode != 0 and "e2e/no-such-image" in proc.stderr
    assert not out.exists()  # nothing written for a name that is not there


@pytest.mark.serial
def test_bad_input_leaves_nothing(cli: CLI, committed: str, tmp_path: Path) -> None:
    ctr = next(c for c in cli.containers if c.startswith("commit-"))
    before_refs, before_subvols = refs(cli), subvolumes()
    not_tar = cli("load", input=b"no archive at all" * 100, check=False)
    assert not_tar.returncode == 125 and "nspawnctl: error: not a tar archive" in not_tar.stderr
    assert "hint:" in not_tar.stderr
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(buf.getvalue())
    no_manifest = cli("load", "-i", str(rootfs), check=False)
    assert no_manifest.returncode == 125 and "no manifest.json" in no_manifest.stderr
    missing = cli("load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "hint:" in missing.stderr
    bad_change = cli("commit", "-c", "RUN echo hi", ctr, "e2e/never-made:1", check=False)
    assert bad_change.returncode == 2 and "RUN: not supported" in bad_change.stderr
    assert "hint: supported: CMD" in bad_change.stderr
    bad_import = cli("import", "-c", "WORKDIR relative", str(rootfs), "e2e/never-made:2", check=False)
    assert bad_import.returncode == 2 and "not an absolute path" in bad_import.stderr
    assert refs(cli) == before_refs and subvolumes() == before_subvols and leftovers() == []


def test_import_change_sets_the_run_defaults(cli: CLI, busybox: str, tmp_path: Path) -> None:
    ref = f"e2e/cli-import-{uuid.uuid4().hex[:8]}:v1"
    cli.images.add(ref)
    exported = tmp_path / "root.tar"
    cli("export", "-o", str(exported), busybox)
    cli("import", "-c", "ENV MODE=prod", "-c", "CMD echo mode=$MODE", str(exported), ref)
    assert cli("run", "--rm", ref).stdout == "mode=prod\n"
