"""``/containers/{id}/archive`` (issue 15): ``docker cp`` both ways and docker-py's
put_archive/get_archive, on a running and a stopped container, checked from the host side (the
container's root directory, ``nspawnctl exec``); hostile tars refused with nothing outside the root."""

from __future__ import annotations

import http.client
import io
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI
from dockerapi import SOCKET, docker

MACHINES = Path("/var/lib/machines")


def tar_of(*entries: tuple[str, bytes | None, str | None]) -> bytes:
    """(name, data, symlink target) entries; data None and no target: a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if link is not None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
            elif data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            else:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture(scope="module")
def running(api: dict[str, str], pulled: str) -> Iterator[str]:
    nsp = CLI()
    name = nsp.name("cp")
    proc = docker(api, "run", "-d", "--name", name, pulled, "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    assert nsp("exec", name, "sh", "-c", "mkdir -p /srv/real && ln -s /srv/real /linked").returncode == 0
    yield name
    nsp.cleanup()


def put_raw(path: str, body: bytes) -> int:
    """A PUT docker-py has no argument for (noOverwriteDirNonDir)."""
    conn = http.client.HTTPConnection("docker", timeout=60)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(SOCKET)
    conn.sock = sock
    try:
        conn.request("PUT", path, body=body, headers={"Content-Type": "application/x-tar"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def in_ctr(nsp: CLI, name: str, *cmd: str) -> str:
    proc = nsp("exec", name, *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_docker_cp_both_ways_on_a_running_container(
    api: dict[str, str],
    running: str,
    nsp: CLI,
    tmp_path: Path,
) -> None:
    name = running
    (tmp_path / "f.txt").write_text("file-in\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a-in\n")
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "b").write_text("b-in\n")
    # a file into /tmp: the container's own tmpfs, seen through its namespaces
    proc = docker(api, "cp", str(tmp_path / "f.txt"), f"{name}:/tmp/")
    assert proc.returncode == 0, proc.stderr
    assert in_ctr(nsp, name, "cat", "/tmp/f.txt") == "file-in\n"
    assert in_ctr(nsp, name, "stat", "-c", "%u:%g", "/tmp/f.txt") == "0:0\n"  # the container's root
    # a directory, to a new name
    proc = docker(api, "cp", str(tmp_path / "d"), f"{name}:/srv/copied")
    assert proc.returncode == 0, proc.stderr
    assert in_ctr(nsp, name, "cat", "/srv/copied/a", "/srv/copied/sub/b") == "a-in\nb-in\n"
    # into a symlinked directory: the link (absolute) resolves inside the container
    proc = docker(api, "cp", str(tmp_path / "f.txt"), f"{name}:/linked/")
    assert proc.returncode == 0, proc.stderr
    assert in_ctr(nsp, name, "cat", "/srv/real/f.txt") == "file-in\n"
    assert in_ctr(nsp, name, "test", "-L", "/linked") == ""  # still a link
    # and out again: a file, a directory
    proc = docker(api, "cp", f"{name}:/tmp/f.txt", str(tmp_path / "back.txt"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back.txt").read_text() == "file-in\n"
    proc = docker(api, "cp", f"{name}:/srv/copied", str(tmp_path / "back"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "sub" / "b").read_text() == "b-in\n"
    proc = docker(api, "cp", f"{name}:/no/such/file", str(tmp_path / "x"))
    assert proc.returncode != 0 and "no/such" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_docker_py_archives_and_hostile_tars(running: str, dpy: Any, nsp: CLI, tmp_path: Path) -> None:
    import docker as dockerpy

    name = running
    ctr = dpy.containers.get(name)
    assert ctr.put_archive("/srv", tar_of(("py", None, None), ("py/hello", b"hello\n", None)))
    assert in_ctr(nsp, name, "cat", "/srv/py/hello") == "hello\n"
    chunks, st = ctr.get_archive("/srv/py/hello")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        assert tf.getnames() == ["hello"]
        assert tf.extractfile("hello").read() == b"hello\n"  # type: ignore[union-attr]
    assert (st["name"], st["size"], st["linkTarget"]) == ("hello", 6, "")
    _, st = ctr.get_archive("/linked")
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/srv/real"
    _, st = ctr.get_archive("/srv")
    assert st["mode"] & (1 << 31)
    with pytest.raises(dockerpy.errors.NotFound):
        ctr.get_archive("/no/such")
    with pytest.raises(dockerpy.errors.NotFound):
        ctr.put_archive("/no/such", tar_of(("f", b"x", None)))
    # hostile: '../' names and a file through an absolute symlink are refused, nothing lands
    # outside the directory, the container or on the host
    for evil in (
        tar_of(("../../../../escaped-dotdot", b"no", None)),
        tar_of(("esc", None, "/etc"), ("esc/planted", b"no", None)),
        tar_of(("hostesc", None, str(tmp_path)), ("hostesc/planted", b"no", None)),
    ):
        with pytest.raises(dockerpy.errors.APIError) as e:
            ctr.put_archive("/srv/real", evil)
        assert e.value.status_code == 400, e.value
    assert not (tmp_path / "planted").exists()
    assert not Path("/escaped-dotdot").exists() and not Path("/etc/planted").exists()
    out = in_ctr(
        nsp, name, "sh", "-c", "ls /escaped-dotdot /srv/escaped-dotdot /etc/planted 2>/dev/null; true"
    )
    assert out == ""
    # noOverwriteDirNonDir: an existing directory is not replaced by a file
    status = put_raw(
        f"/v1.44/containers/{name}/archive?path=/srv&noOverwriteDirNonDir=1", tar_of(("py", b"f", None))
    )
    assert status == 400
    assert in_ctr(nsp, name, "test", "-d", "/srv/py") == ""
    # the service answers the next request
    assert dpy.ping()


def test_archive_of_a_stopped_container(
    api: dict[str, str],
    pulled: str,
    dpy: Any,
    nsp: CLI,
    tmp_path: Path,
) -> None:
    name = nsp.name("cps")
    proc = docker(api, "create", "--name", name, pulled, "cat", "/data/note")
    assert proc.returncode == 0, proc.stderr
    try:
        ctr = dpy.containers.get(name)
        assert ctr.put_archive("/", tar_of(("data", None, None), ("data/note", b"from-put\n", None)))
        root = MACHINES / name
        assert (root / "data" / "note").read_bytes() == b"from-put\n"  # in the container's root
        # owned by the container's root: the root directory's owner (its shift, when user-namespaced)
        assert (root / "data" / "note").stat().st_uid == root.stat().st_uid
        chunks, st = ctr.get_archive("/data/note")
        assert st["size"] == 9
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            assert tf.extractfile("note").read() == b"from-put\n"  # type: ignore[union-attr]
        proc = docker(api, "cp", f"{name}:/data/note", str(tmp_path / "note"))
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "note").read_text() == "from-put\n"
        # and the payload sees the file when it runs
        proc = docker(api, "start", "-a", name)
        assert (proc.returncode, proc.stdout) == (0, "from-put\n"), proc.stderr
        code = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-I",
                "--unix-socket",
                SOCKET,
                f"http://d/containers/{name}/archive?path=/nope",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert code == "404"
    finally:
        nsp("rm", "-f", name)
