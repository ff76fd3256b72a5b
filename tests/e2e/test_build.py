"""``nspawnctl build`` and the API's ``POST /build`` (docker-py's images.build): a Dockerfile
with RUN/COPY/ENV/WORKDIR/CMD built and run; a failing RUN, a killed build and a context symlink
to a host file leave nothing behind and reach nothing outside the context."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, subvolumes

BUILD_PREFIX = "build-"


def _state(nsp: CLI) -> tuple[set[str], set[str], list[str]]:
    """Image IDs, container names and the pool's subvolumes: what a build must not leave."""
    images = {i["id"] for i in nsp.json("images")}
    containers = set(nsp("ps", "-a", "--format", "{{.Names}}").stdout.split())
    paths = sorted(line.rpartition(" path ")[2] for line in subvolumes().splitlines())
    return images, containers, paths


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, busybox: str) -> Path:
    d = tmp_path_factory.mktemp("ctx")
    (d / "hello.txt").write_text("hello from the context\n")
    (d / "sub").mkdir()
    (d / "sub" / "inner.txt").write_text("inner\n")
    os.symlink("/etc/hostname", d / "sub" / "host-link")  # copied as a link, never its target
    (d / "sub" / "secret.txt").write_text("not to be copied\n")
    (d / ".dockerignore").write_text("# docker's rules\n**/secret.txt\n")
    (d / "Dockerfile").write_text(
        f"# syntax=docker/dockerfile:1\n"
        f"FROM {busybox}\n"
        "ARG GREETING=hello\n"
        "ENV APP_MODE=prod \\\n"
        "    OTHER=x\n"
        "WORKDIR /app\n"
        "COPY hello.txt ./\n"
        "COPY --chown=1000:1000 sub /app/sub/\n"
        'RUN echo "$GREETING $APP_MODE from run" > made.txt && echo run-output-line\n'
        "LABEL org.example.built=yes\n"
        "EXPOSE 8080\n"
        'CMD ["sh", "-c", "cat hello.txt made.txt sub/inner.txt; echo mode=$APP_MODE; pwd; '
        'stat -c %u sub/inner.txt; readlink sub/host-link; test -e sub/secret.txt || echo ignored"]\n'
    )
    return d


@pytest.mark.serial
def test_cli_build_then_run(context: Path, nsp: CLI) -> None:
    before = _state(nsp)
    tag = f"e2e/built-{os.urandom(4).hex()}:v1"
    nsp.images.add(tag)
    proc = nsp(
        "build", "-t", tag, "--build-arg", "GREETING=hi", "--label", "extra=1", str(context), timeout=300
    )
    out = proc.stdout
    assert "Step 1/10 : FROM" in out and "Step 7/10 : RUN" in out
    assert "run-output-line" in out  # the RUN's output streamed
    assert "Successfully built " in out and f"Successfully tagged {tag}" in out
    name = nsp.name("built")
    run = nsp("run", "--rm", "--name", name, tag, timeout=120)
    assert run.stdout.splitlines() == [
        "hello from the context",
        "hi prod from run",
        "inner",
        "mode=prod",
        "/app",
        "1000",
        "/etc/hostname",
        "ignored",
    ]
    info = nsp.json("image", "inspect", tag)
    info = info[0] if isinstance(info, list) else info
    defaults = info["defaults"]
    assert defaults["labels"] == {"org.example.built": "yes", "extra": "1"} | {
        k: v for k, v in defaults["labels"].items() if k not in ("org.example.built", "extra")
    }
    assert defaults["labels"]["org.example.built"] == "yes" and defaults["labels"]["extra"] == "1"
    assert "8080/tcp" in defaults["ports"] and defaults["workdir"] == "/app"
    # only the built image is new: the intermediate ones and the RUN's container are gone
    images, containers, _ = _state(nsp)
    assert images - before[0] == {info["id"]}
    assert not [c for c in containers - before[1] if c.startswith(BUILD_PREFIX)]


@pytest.mark.serial
def test_multi_stage_copy_from(tmp_path: Path, busybox: str, nsp: CLI) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"ARG BASE={busybox}\n"
        "FROM $BASE AS builder\n"
        "RUN echo built-in-stage > /artifact\n"
        "FROM ${BASE}\n"
        "COPY --from=builder /artifact /artifact\n"
        "COPY --from=0 /artifact /again\n"
        "CMD cat /artifact /again\n"
    )
    before = _state(nsp)
    built = nsp("build", "-q", str(tmp_path), timeout=300).stdout.strip()
    nsp.images.add(built)
    name = nsp.name("stages")
    assert nsp("run", "--rm", "--name", name, built).stdout == "built-in-stage\nbuilt-in-stage\n"
    first = nsp("build", "-q", "--target", "builder", str(tmp_path), timeout=300).stdout.strip()
    nsp.images.add(first)
    assert (
        nsp("run", "--rm", "--name", nsp.name("target"), first, "cat", "/artifact").stdout
        == "built-in-stage\n"
    )
    assert _state(nsp)[0] - before[0] == {built, first}  # the stages' images are gone with the build
    proc = nsp("build", "--target", "nosuch", str(tmp_path), check=False)
    assert proc.returncode == 2 and "failed to reach build target nosuch" in proc.stderr


@pytest.mark.serial
def test_failing_run_leaves_nothing(tmp_path: Path, busybox: str, nsp: CLI) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nCOPY f /f\nRUN echo before; exit 3\nCMD true\n")
    before = _state(nsp)
    proc = nsp("build", "-t", "e2e/never:latest", str(tmp_path), check=False, timeout=300)
    assert proc.returncode == 1
    assert "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3" in proc.stderr
    assert "before" in proc.stdout
    assert _state(nsp) == before
    assert nsp("image", "inspect", "e2e/never:latest", check=False).returncode != 0


@pytest.mark.serial
def test_context_escapes_and_bad_dockerfile(tmp_path: Path, busybox: str, nsp: CLI) -> None:
    os.symlink("/etc/shadow", tmp_path / "shadow")
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nCOPY shadow /s\n")
    before = _state(nsp)
    proc = nsp("build", str(tmp_path), check=False)
    assert proc.returncode == 1 and "file not found in build context" in proc.stderr, proc.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nCOPY ../../../etc/passwd /p\n")
    proc = nsp("build", str(tmp_path), check=False)
    assert proc.returncode == 1 and "file not found in build context" in proc.stderr, proc.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nFROB x\n")
    proc = nsp("build", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nspawnctl: error: Dockerfile line 2: unknown instruction: FROB")
    assert "hint: " in proc.stderr
    assert _state(nsp) == before


@pytest.mark.serial
def test_a_killed_build_is_repaired_by_the_next(tmp_path: Path, busybox: str, nsp: CLI) -> None:
    """Also: a prune meanwhile keeps the running build's intermediate image, and the repair
    leaves containers alone whatever labels they carry (the builder's marks are its own)."""
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nLABEL nspawnctl.build=x\n")
    labelled = nsp("build", "-q", str(tmp_path), timeout=300).stdout.strip()
    nsp.images.add(labelled)
    strangers = {  # the label from the image; one set with --label, a dead PID in it
        nsp.name("lbl"): [labelled],
        nsp.name("lbl"): ["--label", "nspawnctl.build=999999:1:x", busybox],
    }
    for name, args in strangers.items():
        nsp("create", "--name", name, *args, "true")
    (tmp_path / "Dockerfile").write_text(  # stage one's image: unused, untagged, needed later
        f"FROM {busybox} AS one\nWORKDIR /made\n"
        f"FROM {busybox}\nRUN echo started-run && sleep 300\nCOPY --from=one /made /made\n"
    )
    before = _state(nsp)
    proc = subprocess.Popen(
        ["nspawnctl", "build", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 120
    while "\nstarted-run\n" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "\nstarted-run\n" in seen, seen  # the payload's line, not the step's
    steps = _state(nsp)[0] - before[0]
    assert steps, "stage one's WORKDIR made an intermediate image"
    nsp("image", "prune", "-f")
    assert steps <= _state(nsp)[0], "prune took the running build's intermediate image"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    left = set(nsp("ps", "-a", "--format", "{{.Names}}").stdout.split()) - before[1]
    assert [c for c in left if c.startswith(BUILD_PREFIX)], "the kill left the RUN's container"
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nCMD true\n")
    built = nsp("build", "-q", str(tmp_path), timeout=300).stdout.strip()
    nsp.images.add(built)
    images, containers, _ = _state(nsp)
    assert images - before[0] == {built}
    assert not [c for c in containers - before[1] if c.startswith(BUILD_PREFIX)]
    assert set(strangers) <= containers, "the repair removed containers that were not the build's"
    labelled_ps = nsp(
        "ps", "-a", "--filter", "label=nspawnctl.build", "--format", "{{.Names}}"
    ).stdout.split()
    assert set(strangers) <= set(labelled_ps)


@pytest.mark.serial
@pytest.mark.surface
def test_docker_py_images_build(api: dict[str, str], busybox: str, dpy: Any, nsp: CLI) -> None:
    import docker as dockerpy

    image, logs = dpy.images.build(
        fileobj=io.BytesIO(f"FROM {busybox}\nCMD echo hello world".encode()), tag="e2e/dpy-built:latest"
    )
    nsp.images.add("e2e/dpy-built:latest")
    assert any("Successfully built" in chunk.get("stream", "") for chunk in logs)
    assert "e2e/dpy-built:latest" in image.tags
    assert dpy.containers.run(image, remove=True) == b"hello world\n"
    assert "e2e/dpy-built:latest" in [r for i in nsp.json("images") for r in i["refs"]]
    before = _state(nsp)
    with pytest.raises(dockerpy.errors.BuildError) as e:
        dpy.images.build(fileobj=io.BytesIO(f"FROM {busybox}\nRUN exit 1".encode()))
    assert "The command '/bin/sh -c exit 1' returned a non-zero code: 1" in e.exconly()
    assert e.value.build_log
    assert _state(nsp) == before


def test_docker_cli_build_and_refused_fields(api: dict[str, str], context: Path, nsp: CLI) -> None:
    from dockerapi import curl, docker

    tag = f"e2e/docker-built-{os.urandom(4).hex()}:latest"
    nsp.images.add(tag)
    env = {**api, "DOCKER_BUILDKIT": "0"}  # the classic builder's API (no buildx in the host)
    proc = docker(env, "build", "-t", tag, "--build-arg", "GREETING=yo", str(context), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "run-output-line" in proc.stdout and f"Successfully tagged {tag}" in proc.stdout
    run = docker(api, "run", "--rm", tag)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:2] == ["hello from the context", "yo prod from run"]
    code, body = curl("-X", "POST", "http://d/v1.47/build?remote=http://example.test/ctx.tar")
    assert code == 400 and "remote" in str(body["message"])
