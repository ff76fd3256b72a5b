"""review #4: a running build pins its FROM and ``COPY --from`` images: ``rmi`` of either (by
its last tag, even with -f) is refused with docker's conflict message while the build runs, and
``image prune`` keeps the FROM image once its name went to another image; the build then
succeeds, and once it has ended the pins are gone."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import CLI


def _build(nsp: CLI, context: Path, dockerfile: str) -> str:
    (context / "Dockerfile").write_text(dockerfile)
    image = nsp("build", "-q", str(context), timeout=300).stdout.strip()
    nsp.images.add(image)
    return image


@pytest.mark.serial
def test_rmi_of_a_running_builds_from_image_is_refused(tmp_path: Path, busybox: str, nsp: CLI) -> None:
    tag = uuid.uuid4().hex[:8]
    base, other = f"e2e/pin-base-{tag}:latest", f"e2e/pin-other-{tag}:latest"
    # two images of their own (a label makes their IDs differ from busybox's): rmi deletes them
    base_id = _build(nsp, tmp_path, f"FROM {busybox}\nLABEL pin=base-{tag}\n")
    nsp("tag", base_id, base)
    nsp("tag", _build(nsp, tmp_path, f"FROM {busybox}\nLABEL pin=other-{tag}\nWORKDIR /made\n"), other)
    nsp.images.update({base, other})
    (tmp_path / "Dockerfile").write_text(
        f"FROM {base}\nCOPY --from={other} /made /made\n"
        "RUN echo waiting-for-go && while [ ! -e /go ]; do sleep 0.1; done\n"
    )
    proc = subprocess.Popen(
        ["nspawnctl", "build", "-t", f"e2e/pinned-{tag}:latest", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    nsp.images.add(f"e2e/pinned-{tag}:latest")
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 120
        while "\nwaiting-for-go\n" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "\nwaiting-for-go\n" in seen, seen
        for ref in (base, other):
            refused = nsp("rmi", "-f", ref, check=False)
            assert refused.returncode == 125, refused.stderr
            assert "conflict: unable to delete" in refused.stderr, refused.stderr
            assert "image is being used by running build" in refused.stderr, refused.stderr
            assert "hint: wait for the build to end" in refused.stderr
        nsp("tag", busybox, base)  # the FROM image loses its name: dangling, yet pinned
        nsp("image", "prune", "-f")
        assert base_id in {i["id"] for i in nsp.json("images")}, "prune took the build's FROM image"
        (run,) = [n for n in nsp("ps", "--format", "{{.Names}}").stdout.split() if n.startswith("build-")]
        nsp("exec", run, "touch", "/go")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Successfully tagged" in seen + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    made = nsp("run", "--rm", f"e2e/pinned-{tag}:latest", "ls", "-d", "/made").stdout.strip()
    assert made == "/made"
    nsp("image", "prune", "-f")  # the build has ended: its pins are gone
    assert base_id not in {i["id"] for i in nsp.json("images")}
    nsp("rmi", other)
