"""``--privileged`` gives the container the host's device nodes as they are when it starts
(docker's), next to nspawn's own /dev and the container's volumes; without it they are absent;
the definition keeps only ``Privileged=yes``. The test host is itself an nspawn container with
nspawn's small /dev, so the nodes are made in it here (harmless ones: zero, null, loop-control)."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI

TAG = f"nspawnctl-e2e-{uuid.uuid4().hex[:6]}"


pytestmark = pytest.mark.serial  # tests/e2e/conftest.py: why serial


def mknod(path: Path, mode: int, major: int, minor: int, made: list[Path]) -> None:
    """A char node at ``path`` unless one is there (then it is the host's and stays)."""
    if path.exists():
        return
    path.parent.mkdir(exist_ok=True)
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
    os.chmod(path, mode)  # past the umask
    made.append(path)


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[Path]]:
    made: list[Path] = []
    try:
        mknod(Path(f"/dev/{TAG}-zero"), 0o600, 1, 5, made)  # root only: unreadable to nobody
        mknod(Path(f"/dev/{TAG}/null"), 0o666, 1, 3, made)  # in a directory, for everyone
        mknod(Path("/dev/loop-control"), 0o660, 10, 237, made)
        yield made
    finally:
        for path in [*made, Path(f"/dev/{TAG}-late")]:
            path.unlink(missing_ok=True)
        if Path(f"/dev/{TAG}").is_dir():
            Path(f"/dev/{TAG}").rmdir()


SHOW = (
    f"ls -ln /dev/{TAG}-zero /dev/{TAG}/null /dev/{TAG}-late /dev/loop-control /dev/null; "
    f"head -c 3 /dev/{TAG}-zero | od -An -tx1; echo hi > /dev/{TAG}/null && echo wrote; "
    "echo x > /dev/null && echo null-ok; losetup -f; touch /data/f && echo volume-ok"
)


def test_privileged_gets_the_hosts_devices_at_start(nsp: CLI, busybox: str, nodes: list[Path]) -> None:
    name = nsp.name("privdev")
    vol = f"vol-{name}"
    nsp("create", "--name", name, "--privileged", "--userns", "host", "-v", f"{vol}:/data",
        busybox, "sleep", "600")  # fmt: skip
    text = nsp("generate", name).stdout
    assert "Privileged=yes" in text.splitlines() and TAG not in text and "loop" not in text
    late: list[Path] = []
    mknod(Path(f"/dev/{TAG}-late"), 0o666, 1, 3, late)  # after create: read at start
    nsp("start", name)
    out = nsp("exec", name, "sh", "-c", SHOW, check=False)
    lines = out.stdout.splitlines()
    by_name = {line.split()[-1]: line for line in lines if line.startswith("c")}
    assert by_name[f"/dev/{TAG}-zero"].split()[2:6] == ["0", "0", "1,", "5"], out
    assert by_name[f"/dev/{TAG}/null"].split()[4:6] == ["1,", "3"], out
    assert f"/dev/{TAG}-late" in by_name and "/dev/loop-control" in by_name, out
    assert by_name["/dev/null"].split()[4:6] == ["1,", "3"], out  # nspawn's own, still there
    assert " 00 00 00" in lines and "wrote" in lines and "null-ok" in lines, out
    assert any(line.startswith("/dev/loop") for line in lines), out  # LOOP_CTL_GET_FREE answered
    assert "volume-ok" in lines and out.returncode == 0, out  # the volume's bind kept beside them
    assert nsp("generate", name).stdout == text  # nothing of the devices frozen into the file
    nsp("rm", "-f", name)
    nsp("volume", "rm", vol)


def test_without_privileged_absent_and_under_a_user_namespace_owned_by_nobody(
    nsp: CLI, busybox: str, nodes: list[Path]
) -> None:
    plain = nsp("run", "--rm", busybox, "ls", f"/dev/{TAG}-zero", "/dev/loop-control", check=False)
    said = plain.stderr + plain.stdout
    assert plain.returncode != 0 and said.count("No such file") == 2, plain
    # the default user namespace: the nodes are there but owned by nobody, only their bits for
    # "others" apply (docker refuses --privileged with userns-remap; nspawnctl documents this)
    show = f"ls -ln /dev/{TAG}/null; echo hi > /dev/{TAG}/null && echo wrote; head -c1 /dev/{TAG}-zero"
    userns = nsp("run", "--rm", "--privileged", busybox, "sh", "-c", show, check=False)
    assert userns.stdout.split()[2:4] == ["65534", "65534"] and "wrote" in userns.stdout, userns
    assert userns.returncode != 0 and "Permission denied" in userns.stderr, userns
