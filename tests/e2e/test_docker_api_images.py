"""Images made and moved through the Docker Engine API (issue 15): ``docker commit``, ``tag``,
``import``, ``save``, ``load`` and docker-py's ``inspect_distribution``, each checked by running
the image made (its files and config) and through ``nspawnctl images``; bad input (unknown
names, truncated, hostile and cut-off uploads) refused with nothing half-made and nothing
written outside the store."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, Env, subvolumes
from dockerapi import SOCKET, curl, docker

STORE_IMAGES = Path("/var/lib/nspawnctl/images")


def leftovers() -> list[str]:
    """Staging subvolumes and upload spools of the store (none once a request is over)."""
    return sorted(p.name for p in STORE_IMAGES.glob(".tmp-*"))


def refs(nsp: CLI) -> list[str]:
    return [r for i in nsp.json("images") for r in i["refs"]]


def tar_bytes(*entries: tuple[str, bytes | None], gz: bool = False) -> bytes:
    """(name, data) entries; data None: a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            else:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def post(path: str, body: bytes) -> tuple[int, Any]:
    """A POST of raw bytes through curl (the status and the JSON answer)."""
    proc = subprocess.run(
        ["curl", "-s", "--unix-socket", SOCKET, "-w", "\n%{http_code}", "-X", "POST",
         "-H", "Content-Type: application/x-tar", "--data-binary", "@-", f"http://d{path}"],
        input=body, capture_output=True, timeout=120,
    )  # fmt: skip
    text, _, code = proc.stdout.decode().rpartition("\n")
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return int(code), lines[-1] if lines else {}


@pytest.fixture(scope="module")
def made(api: dict[str, str], pulled: str) -> Iterator[dict[str, str]]:
    """A container that wrote a file, committed by `docker commit` with changes."""
    nsp = CLI()
    ctr = nsp.name("commit")
    ref = f"e2e/committed-{uuid.uuid4().hex[:8]}:v1"
    nsp.images.add(ref)
    proc = docker(api, "run", "--name", ctr, pulled, "sh", "-c", "echo from-the-container > /marker")
    assert proc.returncode == 0, proc.stderr
    proc = docker(
        api, "commit", "-m", "made by e2e", "-a", "tester",
        "-c", "ENV GREETING=hello", "-c", 'CMD ["cat", "/marker"]', "-c", "EXPOSE 8000",
        "-c", "LABEL e2e.made=commit", ctr, ref,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    yield {"ref": ref, "id": proc.stdout.strip(), "container": ctr}
    nsp.cleanup()


def test_commit_makes_an_image_that_runs_with_the_changes(
    api: dict[str, str],
    made: dict[str, str],
    pulled: str,
    nsp: CLI,
) -> None:
    assert made["id"].startswith("sha256:")
    assert made["ref"] in refs(nsp)  # the library's store has it under that name
    proc = docker(api, "run", "--rm", made["ref"])  # CMD from --change: the committed file
    assert (proc.returncode, proc.stdout) == (0, "from-the-container\n"), proc.stderr
    proc = docker(api, "run", "--rm", made["ref"], "sh", "-c", "echo $GREETING")
    assert proc.stdout == "hello\n", proc.stderr
    fmt = "{{json .Config.ExposedPorts}} {{json .Config.Labels}} {{.Comment}} {{.Author}} {{.Parent}}"
    proc = docker(api, "image", "inspect", "-f", fmt, made["ref"])
    parent = docker(api, "image", "inspect", "-f", "{{.Id}}", pulled).stdout.strip()
    assert proc.stdout.split() == [
        '{"8000/tcp":{}}',
        '{"e2e.made":"commit"}',
        "made",
        "by",
        "e2e",
        "tester",
        parent,
    ]


@pytest.mark.serial
def test_commit_refuses_unknown_containers_and_unsupported_changes(
    api: dict[str, str], made: dict[str, str], nsp: CLI
) -> None:
    before = refs(nsp)
    proc = docker(api, "commit", "no-such-container-x", "e2e/never:1")
    assert proc.returncode != 0 and "No such container" in proc.stderr
    proc = docker(api, "commit", "-c", "RUN rm -rf /", made["container"], "e2e/never:2")
    assert proc.returncode != 0 and "RUN" in proc.stderr and "not supported" in proc.stderr
    code, answer = curl("-X", "POST", "-H", "Content-Type: application/json", "-d", '{"Hostname": "x"}',
                        f"http://d/commit?container={made['container']}&repo=e2e/never&tag=3")  # fmt: skip
    assert code == 400 and "Hostname" in answer["message"]
    assert refs(nsp) == before and leftovers() == []


def test_tag_through_the_api_and_the_reference_filter(
    api: dict[str, str], made: dict[str, str], nsp: CLI
) -> None:
    other = f"e2e/tagged-{uuid.uuid4().hex[:8]}"
    nsp.images.add(f"{other}:v2")
    proc = docker(api, "tag", made["ref"], f"{other}:v2")
    assert proc.returncode == 0, proc.stderr
    ids = {r: i["id"] for i in nsp.json("images") for r in i["refs"]}
    assert ids[f"{other}:v2"] == made["id"]  # the same image under a second name
    proc = docker(api, "images", "--format", "{{.Repository}}:{{.Tag}}", other)  # filters=reference
    assert proc.stdout.split() == [f"{other}:v2"], proc.stderr
    assert docker(api, "images", "-q", "--filter", "label=e2e.made=commit").stdout.split() != []
    proc = docker(api, "tag", "e2e/no-such-image:1", f"{other}:v3")
    assert proc.returncode != 0 and "No such image" in proc.stderr
    code, answer = curl("-X", "POST", f"http://d/images/{made['ref']}/tag?repo=Bad%20Name")
    assert code == 400 and "Bad Name" in answer["message"]


def test_import_of_a_rootfs_tar_with_changes(
    api: dict[str, str], busybox_dir: Path, tmp_path: Path, nsp: CLI
) -> None:
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(busybox_dir), str(root)], check=True)
    (root / "hello.txt").write_text("imported\n")
    archive = tmp_path / "root.tar.gz"
    subprocess.run(["tar", "-C", str(root), "-czf", str(archive), "."], check=True)
    ref = f"e2e/imported-{uuid.uuid4().hex[:8]}:v1"
    nsp.images.add(ref)
    proc = docker(api, "import", "-c", 'CMD ["cat", "/hello.txt"]', "-c", "WORKDIR /tmp", str(archive), ref)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("sha256:")
    assert ref in refs(nsp)
    proc = docker(api, "run", "--rm", ref)
    assert (proc.returncode, proc.stdout) == (0, "imported\n"), proc.stderr
    assert docker(api, "run", "--rm", ref, "pwd").stdout == "/tmp\n"


@pytest.mark.serial
def test_import_refuses_bad_archives_leaving_nothing(api: dict[str, str], nsp: CLI) -> None:
    before_refs, before_subvols = refs(nsp), subvolumes()
    outside = Path("/escaped-by-import")
    cases = {
        "truncated": tar_bytes(("a.bin", os.urandom(100000)), gz=True)[:50000],
        "hostile": tar_bytes(("../../../escaped-by-import", b"evil")),
        "not-a-tar": b"this is no archive at all" * 100,
    }
    for name, body in cases.items():  # in-band errors after a 200, as dockerd's
        code, answer = post(f"/images/create?fromSrc=-&repo=e2e/bad-{name}", body)
        assert code == 200 and answer.get("error"), (name, code, answer)
    code, answer = post("/images/create?fromSrc=-&changes=RUN+true", tar_bytes(("a", b"a")))
    assert code == 400 and "RUN" in answer["message"]
    code, answer = post("/images/create?fromSrc=http://example.test/x.tar", b"")
    assert code == 400 and "fromSrc" in answer["message"]
    # a client hanging up in the middle of its upload
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(SOCKET)
        s.sendall(b"POST /v1.47/images/create?fromSrc=-&repo=e2e/bad-cut HTTP/1.1\r\nHost: d\r\n"
                  b"Content-Length: 10000000\r\n\r\n" + tar_bytes(("a", b"a" * 50000)))  # fmt: skip
    deadline = time.monotonic() + 20
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not outside.exists()
    assert refs(nsp) == before_refs and subvolumes() == before_subvols and leftovers() == []


def test_save_then_load_round_trips_an_image(
    api: dict[str, str], made: dict[str, str], tmp_path: Path, nsp: CLI
) -> None:
    out = tmp_path / "saved.tar"
    proc = docker(api, "save", "-o", str(out), made["ref"])
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [made["ref"]]
        config = json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        assert config["config"]["Cmd"] == ["cat", "/marker"]
        names = tf.getnames()
    assert any(n.endswith("layer.tar") for n in names)
    assert docker(api, "rmi", made["ref"]).returncode == 0
    assert made["ref"] not in refs(nsp)
    proc = docker(api, "load", "-i", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"Loaded image: {made['ref']}" in proc.stdout
    assert made["ref"] in refs(nsp)
    proc = docker(api, "run", "--rm", made["ref"])  # same files, same Cmd
    assert (proc.returncode, proc.stdout) == (0, "from-the-container\n"), proc.stderr
    proc = docker(api, "run", "--rm", made["ref"], "sh", "-c", "echo $GREETING")
    assert proc.stdout == "hello\n"
    fmt = "{{json .Config.Labels}} {{json .Config.ExposedPorts}}"
    assert docker(api, "image", "inspect", "-f", fmt, made["ref"]).stdout.split() == [
        '{"e2e.made":"commit"}', '{"8000/tcp":{}}'
    ]  # fmt: skip
    proc = docker(api, "save", "e2e/no-such-image:1", "-o", str(tmp_path / "x.tar"))
    assert proc.returncode != 0 and "No such image" in proc.stderr
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"no archive")
    proc = docker(api, "load", "-i", str(bad))
    assert proc.returncode != 0 and "not a tar archive" in proc.stderr


@pytest.mark.serial
def test_load_refuses_bad_archives_leaving_nothing(made: dict[str, str], tmp_path: Path, nsp: CLI) -> None:
    before_refs, before_subvols = refs(nsp), subvolumes()
    layer = tar_bytes(("etc", None), ("../../../../escaped-by-load", b"evil"))
    import hashlib

    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()  # fmt: skip
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["e2e/hostile:1"], "Layers": ["l/layer.tar"]}])
    hostile = tar_bytes(("manifest.json", manifest.encode()), ("c.json", config), ("l/layer.tar", layer))
    wrong_digest = tar_bytes(
        ("manifest.json", manifest.encode()), ("c.json", config), ("l/layer.tar", tar_bytes(("ok", b"ok")))
    )
    escape = json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["e2e/bad:1"], "Layers": ["x"]}])
    cases = {
        "hostile layer": hostile,
        "layer not its diff ID": wrong_digest,
        "names outside": tar_bytes(("manifest.json", escape.encode())),
        "truncated": hostile[: len(hostile) // 2],
        "rootfs, no manifest": tar_bytes(("hello", b"hi")),
    }
    for name, body in cases.items():  # in-band errors after a 200, as dockerd's
        code, answer = post("/images/load", body)
        assert code == 200 and answer.get("error"), (name, code, answer)
    assert not Path("/escaped-by-load").exists()
    assert refs(nsp) == before_refs and subvolumes() == before_subvols and leftovers() == []


def test_inspect_distribution_through_the_registry(api: dict[str, str], oci: Env) -> None:
    import docker as dockerpy

    client = dockerpy.APIClient(base_url=f"unix://{SOCKET}")
    try:
        data = client.inspect_distribution(oci.ref("bb"))
        assert data["Descriptor"]["digest"].startswith("sha256:")
        assert data["Descriptor"]["size"] > 0 and "manifest" in data["Descriptor"]["mediaType"]
        assert {"os": "linux", "architecture": "amd64"} in data["Platforms"]
        with pytest.raises(dockerpy.errors.NotFound):
            client.inspect_distribution(oci.ref("no-such-image"))
    finally:
        client.close()
