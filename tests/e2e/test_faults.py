"""Fault injection: nspawnctl killed (SIGKILL) at every rename, unlink and btrfs subvolume ioctl of
import, pull, commit, create, run, rm and rmi.

For each operation a first traced run counts its calls of each syscall (per process), then strace
(``-e inject=SYSCALL:signal=KILL:when=N``) kills it at the N-th call, for every N. After each kill:
nothing half made is visible (``ps -a``, ``images`` and ``machinectl list-images`` agree, every
listed container has its root), ``system prune -f`` leaves the pool exactly as before the operation
or as after it, and the operation run again succeeds. Ioctls are killed only at the btrfs
subvolume requests (their position among the process's ioctls is found in the counting run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CLI, Env, tar_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import webserver
from demo import make_busybox_root

FILE_CALLS = ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir")
BTRFS_IOCTLS = re.compile(
    r"BTRFS_IOC_(SNAP_CREATE_V2|SUBVOL_CREATE(_V2)?|SNAP_DESTROY(_V2)?|SUBVOL_SETFLAGS)\b"
)
STORE = Path("/var/lib/nspawnctl")
POOL = Path("/var/lib/machines")
DIRS = (
    STORE / "images",
    STORE / "layers",
    STORE / "state",
    POOL,
    Path("/etc/systemd/nspawn"),
    Path("/run/systemd/nspawn"),
    Path("/run/nspawnctl"),
)
PREFIX = "fault"


pytestmark = pytest.mark.serial  # tests/e2e/conftest.py: why serial


@dataclass
class Op:
    """An operation to break: ``setup`` makes what it needs (run before every attempt), ``argv``
    is the nspawnctl command, ``undo`` takes the pool back to the state before it."""

    argv: list[str]
    setup: Callable[[], None] = lambda: None
    undo: Callable[[], None] = lambda: None
    names: list[str] = field(default_factory=list)  # containers whose units must end first


def pool_state() -> dict[str, object]:
    """What a crash could leave: entries of the store, pool and definition directories (recursive
    under /run/nspawnctl), the refs, the subvolumes and nspawnctl's units."""
    state: dict[str, object] = {}
    for d in DIRS:
        if d.is_dir() and any(d.iterdir()):  # an empty one made on demand (layers) is no change
            if d == Path("/run/nspawnctl"):
                state[str(d)] = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
            else:
                state[str(d)] = sorted(os.listdir(d))
    state["store"] = sorted(
        n
        for n in os.listdir(STORE)
        if n != "lock" and (not (STORE / n).is_dir() or any((STORE / n).iterdir()))
    )
    refs = STORE / "refs.json"
    state["refs"] = json.loads(refs.read_text()) if refs.exists() else {}
    subvols = subprocess.run(
        ["btrfs", "subvolume", "list", "-o", str(POOL)], capture_output=True, text=True
    ).stdout
    store_subvols = subprocess.run(
        ["btrfs", "subvolume", "list", "-a", str(STORE)], capture_output=True, text=True
    ).stdout
    state["subvolumes"] = sorted(
        line.rsplit(" path ", 1)[-1] for line in (subvols + store_subvols).splitlines()
    )
    # an image of ours by its name, not its ID: a commit's ID moves with the running source's files
    for ref, image_id in dict(state["refs"]).items():  # type: ignore[call-overload]
        if ref.startswith(f"{PREFIX}/"):
            hexdigest = image_id.removeprefix("sha256:")
            state = json.loads(json.dumps(state).replace(hexdigest, ref))
    state = {k: sorted(v) if isinstance(v, list) else v for k, v in state.items()}
    units = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", f"nspawnctl-{PREFIX}-*"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    state["units"] = sorted(line.split()[0] for line in units.splitlines() if line.strip())
    return state


def diff(a: dict[str, object], b: dict[str, object]) -> str:
    return "; ".join(
        f"{k}: {a.get(k)} != {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    )


def strace(argv: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["strace", "-f", "-qq", *options, "nspawnctl", *argv], capture_output=True, text=True, timeout=120
    )


def kill_points(argv: list[str], out: Path) -> list[tuple[str, int]]:
    """(syscall, N) for the calls of the file syscalls and the btrfs subvolume ioctls, N counted
    per process as strace's injection counts them. A call site repeated with only names that vary
    (the extractor's rename of each file it wrote into the staging subvolume) is killed at its
    first and its last call: the ones between leave the same state."""
    strace(argv, "-o", str(out), "-e", f"trace={','.join(FILE_CALLS)},ioctl")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sites: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for line in out.read_text().splitlines():
        m = re.match(r"(\d+)\s+(\w+)\((.*)", line)
        if not m:
            continue
        pid, call, rest = m.groups()
        counts[pid, call] += 1
        if call in FILE_CALLS or (call == "ioctl" and BTRFS_IOCTLS.search(line)):
            site = re.sub(
                r"[0-9a-f]{6,}|\d+|\.nspawnctl-unpack-\w+|\"[^\"/]*\"", "#", rest.partition(" = ")[0]
            )
            sites[f"{call} {site}"].append((call, counts[pid, call]))
    return sorted({p for calls in sites.values() for p in (calls[0], calls[-1])})


def wait_units_gone(names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while time.monotonic() < deadline:
            active = subprocess.run(
                ["systemctl", "is-active", f"nspawnctl-{name}.service"], capture_output=True, text=True
            ).stdout.strip()
            if active in ("inactive", "failed", "unknown", ""):
                break
            time.sleep(0.1)


def check_visible(nsp: CLI) -> None:
    """What the commands show is whole: every container listed has its root, machined lists no
    container of ours that ps does not, and every image listed resolves."""
    ps = {c["Name"] for c in nsp.json("ps", "-a") if c["Name"].startswith(PREFIX)}
    for name in ps:
        assert (POOL / name).is_dir(), f"ps -a lists {name} without its root"
    images = subprocess.run(
        ["machinectl", "list-images", "--no-legend", "--no-pager"], capture_output=True, text=True
    ).stdout
    machined = {line.split()[0] for line in images.splitlines() if line.startswith(PREFIX)}
    assert machined == ps, f"machinectl list-images {machined} but ps -a {ps}"
    for image in nsp.json("images"):
        assert Path(image["path"]).is_dir(), f"images lists {image['id']} without its root"


@pytest.fixture(scope="module")
def tarballs(workdir: Path) -> dict[str, Path]:
    """Small busybox tarballs of different content (so each operation's image is its own)."""
    out = {}
    for marker in ("import", "pull", "rmi"):
        root = make_busybox_root(workdir / f"fault-{marker}", marker=f"fault-{marker}")
        out[marker] = tar_of(root, workdir / f"fault-{marker}.tar")
    return out


@pytest.fixture(scope="module")
def http(workdir: Path, tarballs: dict[str, Path]) -> Iterator[str]:
    with webserver.start(tarballs["pull"].parent, workdir / "fault-web.log") as srv:
        yield f"http://127.0.0.1:{srv.http}/{tarballs['pull'].name}"


def operations(
    nsp: CLI, busybox: str, tarballs: dict[str, Path], url: str, request: pytest.FixtureRequest
) -> dict[str, Op]:
    def quiet(*args: str) -> None:
        nsp(*args, check=False)

    def ensure_rmi_image() -> None:
        nsp("import", str(tarballs["rmi"]), f"{PREFIX}/rmi:1")

    def ensure_container(name: str, *run: str) -> Callable[[], None]:
        def make() -> None:
            if nsp("inspect", name, check=False).returncode != 0:
                nsp(
                    *(run or ("create",)), "--name", name, busybox, *(("sleep", "3600") if run else ("true",))
                )

        return make

    return {
        "import": Op(
            ["import", str(tarballs["import"]), f"{PREFIX}/import:1"],
            undo=lambda: quiet("rmi", f"{PREFIX}/import:1"),
        ),
        "pull": Op(
            ["pull", "-q", "--insecure", "--verify", "no", url, f"{PREFIX}/pull:1"],
            undo=lambda: quiet("rmi", f"{PREFIX}/pull:1"),
        ),
        "commit": Op(
            ["commit", f"{PREFIX}-src", f"{PREFIX}/commit:1"],
            setup=ensure_container(f"{PREFIX}-src", "run", "-d"),  # running: prune keeps it
            undo=lambda: quiet("rmi", f"{PREFIX}/commit:1"),
        ),
        "create": Op(
            ["create", "--name", f"{PREFIX}-c", busybox, "true"], undo=lambda: quiet("rm", f"{PREFIX}-c")
        ),
        "run": Op(["run", "--rm", "--name", f"{PREFIX}-r", busybox, "true"], names=[f"{PREFIX}-r"]),
        "rm": Op(
            ["rm", f"{PREFIX}-d"], setup=ensure_container(f"{PREFIX}-d"), undo=ensure_container(f"{PREFIX}-d")
        ),
        "rmi": Op(["rmi", f"{PREFIX}/rmi:1"], setup=ensure_rmi_image, undo=ensure_rmi_image),
        **({} if "oci" not in request.node.name else oci_operations(nsp, request.getfixturevalue("oci"))),
    }  # fmt: skip


def oci_operations(nsp: CLI, env: Env) -> dict[str, Op]:
    """A registry pull (two layers: a layer is staged, recorded and renamed into place, the image
    links to its top layer) and the rmi that deletes the image and its layers."""
    ref = env.ref("docker")
    pull = ["pull", "-q", "--ca-cert", env.ca, ref]
    nsp.images.update({ref, env.std.docker.config_digest})
    # the same content under another name (an earlier session's registry port) would keep it
    nsp("rmi", "-f", env.std.docker.config_digest, check=False)

    def ensure_pulled() -> None:
        nsp(*pull)

    def remove() -> None:
        nsp("rmi", ref, check=False)

    return {
        "pull-oci": Op(pull, undo=remove),
        "rmi-oci": Op(["rmi", ref], setup=ensure_pulled, undo=ensure_pulled),
    }


@pytest.mark.parametrize(
    "which", ["import", "pull", "commit", "create", "run", "rm", "rmi", "pull-oci", "rmi-oci"]
)
def test_kill_at_every_step_leaves_a_state_prune_and_the_next_command_repair(
    which: str,
    nsp: CLI,
    busybox: str,
    tarballs: dict[str, Path],
    http: str,
    workdir: Path,
    request: pytest.FixtureRequest,
) -> None:
    nsp.containers.update({f"{PREFIX}-src", f"{PREFIX}-c", f"{PREFIX}-r", f"{PREFIX}-d"})
    nsp.images.update({f"{PREFIX}/import:1", f"{PREFIX}/pull:1", f"{PREFIX}/commit:1", f"{PREFIX}/rmi:1"})
    op = operations(nsp, busybox, tarballs, http, request)[which]
    nsp("system", "prune", "-f")
    op.setup()
    before = pool_state()
    points = kill_points(op.argv, workdir / f"fault-{which}.strace")
    wait_units_gone(op.names)
    after = pool_state()
    assert after != before or which == "run", f"{which} changed nothing"
    assert any(call == "ioctl" for call, _ in points), f"{which}: no btrfs ioctl seen: {points}"
    op.undo()
    assert pool_state() == before, diff(pool_state(), before)

    for call, n in points:
        traced = strace(
            op.argv, "-o", "/dev/null", "-e", f"trace={call}", "-e", f"inject={call}:signal=KILL:when={n}"
        )
        where = f"{which} killed at {call} #{n}"
        assert traced.returncode in (-9, 137), f"{where}: not killed ({traced.returncode}): {traced.stderr}"
        wait_units_gone(op.names)
        check_visible(nsp)
        nsp("system", "prune", "-f")
        state = pool_state()
        assert state in (before, after), f"{where}: {diff(state, before)} | vs after: {diff(state, after)}"
        if state == before:  # the next command works: the operation again, to its end
            nsp(*op.argv)
            wait_units_gone(op.names)
            assert pool_state() == after, f"{where}, then again: {diff(pool_state(), after)}"
        op.undo()
        assert pool_state() == before, f"{where}, undone: {diff(pool_state(), before)}"
