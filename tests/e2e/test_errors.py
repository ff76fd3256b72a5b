"""Bad input: a clear one-line error, a non-zero exit, and nothing half-made left in the pool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import CLI, subvolumes
from demo import make_busybox_root

STAGING = Path("/var/lib/nspawnctl/images")


def pool_snapshot() -> tuple[str, list[str], list[str]]:
    return (
        re.sub(r" gen \d+ ", " ", subvolumes()),  # a generation moves with any btrfs commit
        sorted(os.listdir(STAGING)) if STAGING.is_dir() else [],  # made by the first import
        sorted(os.listdir("/etc/systemd/nspawn")) if Path("/etc/systemd/nspawn").is_dir() else [],
    )


def assert_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode not in (0, None)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("nspawnctl: error: "), proc.stderr
    for w in words:
        assert w in first, first


@pytest.mark.serial
@pytest.mark.surface
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "e2e/no-such-image", "true"], ["no such image", "e2e/no-such-image"]),
        (["start", "no-such-ctr"], ["no such container", "no-such-ctr"]),
        (["logs", "no-such-ctr"], ["no such container"]),
        (["exec", "no-such-ctr", "true"], ["no such container"]),
        (["rm", "no-such-ctr"], ["no such container"]),
        (["run", "--name", "bad_name_", "IMAGE", "true"], ["invalid container name", "host name"]),
        (["run", "--name", "-dash", "IMAGE", "true"], ["invalid container name"]),
        (["run", "--memory", "lots", "IMAGE", "true"], ["invalid size"]),
        (["import", "/nonexistent.tar", "x"], ["cannot read", "/nonexistent.tar"]),
        (["run", "Bad:Ref:x", "true"], ["invalid image reference"]),
        # digits that int() refuses ("²" is one to str.isdigit()): tracebacks before (issue 12)
        (["run", "-p", "\u00b2:80", "IMAGE", "true"], ["invalid port mapping"]),
        (["kill", "-s", "\u00b2", "no-such-ctr"], ["\u00b2", "not a signal"]),
        (["logs", "--tail", "\u00b2", "no-such-ctr"], ["invalid --tail"]),
    ],
)
def test_bad_input_is_refused_cleanly(nsp: CLI, busybox: str, args: list[str], words: list[str]) -> None:
    args = [busybox if a == "IMAGE" else a for a in args]
    before = pool_snapshot()
    assert_error(nsp(*args, check=False), *words)
    assert pool_snapshot() == before


@pytest.mark.serial
def test_duplicate_name(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("create", "--name", name, busybox, "true")
    before = pool_snapshot()
    assert_error(nsp("run", "--name", name, busybox, "true", check=False), "already in use", name)
    assert pool_snapshot() == before


@pytest.mark.serial
def test_rmi_of_image_in_use(nsp: CLI, workdir: Path) -> None:
    # content of its own: an image shared with the session's busybox would keep another name
    root = make_busybox_root(workdir / f"inuse-{os.getpid()}", marker=f"inuse-{os.getpid()}")
    nsp.images.add("e2e/inuse:latest")
    nsp("import", str(root), "e2e/inuse")
    nsp("tag", "e2e/inuse", "e2e/inuse:only")
    name = nsp.name()
    nsp("create", "--name", name, "e2e/inuse:only", "true")
    nsp("rmi", "e2e/inuse")  # another name is left: just untagged
    before = pool_snapshot()
    assert_error(nsp("rmi", "e2e/inuse:only", check=False), "in use", name)
    assert pool_snapshot() == before
    nsp("rmi", "-f", "e2e/inuse:only")  # the container keeps its own snapshot
    assert nsp("start", name).returncode == 0


def test_exec_into_stopped_container(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("create", "--name", name, busybox, "true")
    assert_error(nsp("exec", name, "true", check=False), "not running", name)


@pytest.mark.serial
def test_unreadable_and_hostile_tarballs(nsp: CLI, tmp_path: Path, busybox_dir: Path) -> None:
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(4096))
    truncated = tmp_path / "truncated.tar.xz"
    full = subprocess.run(
        ["tar", "-C", str(busybox_dir), "-cJf", "-", "."], capture_output=True, check=True
    ).stdout
    truncated.write_bytes(full[: len(full) // 2])
    import io
    import tarfile

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../escaped")
        data = b"pwned"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    before = pool_snapshot()
    for bad, word in ((garbage, "archive"), (truncated, "archive"), (evil, "../escaped")):
        assert_error(nsp("import", str(bad), "e2e/bad", check=False), word)
    assert not Path("/var/lib/nspawnctl/escaped").exists()
    assert not [e for e in os.listdir(STAGING) if e.startswith(".tmp-")]
    assert pool_snapshot() == before
    assert "e2e/bad:latest" not in {r for i in nsp.json("images") for r in i["refs"]}


def test_pool_not_btrfs(nsp: CLI, tmp_path: Path) -> None:
    env = {**os.environ, "NSPAWNCTL_POOL": str(tmp_path), "NSPAWNCTL_STORE": str(tmp_path)}
    for args in (["images"], ["ps"], ["run", "x", "true"], ["import", "/srv", "x"]):
        proc = nsp(*args, check=False, env=env)
        assert_error(proc, "not on btrfs")
        assert "nspawnctl pool init" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_two_runs_racing_for_one_name(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    results: list[subprocess.CompletedProcess[str]] = []

    def go() -> None:
        results.append(nsp("run", "-d", "--name", name, busybox, "sleep", "60", check=False))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and all(c != 0 for c in codes[1:]), [r.stderr for r in results]
    for r in results:
        if r.returncode:
            assert "already in use" in r.stderr
    assert name in nsp("ps", "-q").stdout.split()


# -- usage errors through the installed nspawnctl, as docker words them ----------------------


@pytest.mark.serial
@pytest.mark.surface
@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["run"], ["nspawnctl: error: missing argument 'IMAGE'", "hint: see 'nspawnctl run --help'"]),
        (
            ["run", "--bogus", "IMAGE", "true"],
            ["nspawnctl: error: unknown flag: --bogus", "hint: see 'nspawnctl run --help'"],
        ),
        (
            ["create", "--rm", "--bogus", "IMAGE"],
            ["nspawnctl: error: unknown flag: --bogus", "hint: see 'nspawnctl create --help'"],
        ),
        (
            ["exec", "-it", "--bogus", "CTR", "ls"],
            ["nspawnctl: error: unknown flag: --bogus", "hint: see 'nspawnctl exec --help'"],
        ),
        (
            ["run", "-dz", "IMAGE"],
            ["nspawnctl: error: unknown shorthand flag: 'z' in -dz", "hint: see 'nspawnctl run --help'"],
        ),
        (
            ["rnu", "IMAGE", "true"],
            ['nspawnctl: error: unknown command "rnu"', "hint: did you mean \"run\"? see 'nspawnctl --help'"],
        ),
        (
            ["ps", "--bogus"],
            ["nspawnctl: error: unknown flag: --bogus", "hint: see 'nspawnctl ps --help'"],
        ),
    ],
    ids=["missing", "run-flag", "create-flag", "exec-flag", "shorthand", "typo", "ps-flag"],
)
def test_usage_errors_are_docker_like(nsp: CLI, busybox: str, args: list[str], lines: list[str]) -> None:
    name = nsp.name()
    if "CTR" in args:
        nsp("run", "-d", "--name", name, busybox, "sleep", "60")
    args = [{"IMAGE": busybox, "CTR": name}.get(a, a) for a in args]
    before = pool_snapshot()
    proc = nsp(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == lines
    assert proc.stdout == ""
    assert pool_snapshot() == before


@pytest.mark.surface
def test_options_after_the_image_are_the_payloads(nsp: CLI, busybox: str) -> None:
    proc = nsp("run", "--rm", busybox, "sh", "-c", 'echo "$@"', "sh", "--bogus", "-z")
    assert proc.stdout == "--bogus -z\n"


@pytest.mark.surface
def test_json_errors_are_said_once(nsp: CLI, tmp_path: Path) -> None:
    """With --json an error is the JSON envelope on stdout and nothing else, for every --json command."""
    proc = nsp("inspect", "--json", "e2e-no-such-thing", check=False)
    assert proc.returncode == 125 and proc.stderr == ""
    assert proc.stdout.count("\n") == 1
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "not-found" and "e2e-no-such-thing" in err["message"] and err["hint"]
    env = {**os.environ, "NSPAWNCTL_POOL": str(tmp_path), "NSPAWNCTL_STORE": str(tmp_path)}
    for args in (["ps", "--json"], ["images", "--json"], ["image", "inspect", "x"], ["inspect", "x"]):
        proc = nsp(*args, check=False, env=env)
        assert proc.returncode == 125 and proc.stderr == "", (args, proc.stderr)
        assert json.loads(proc.stdout)["error"]["code"] == "pool-not-btrfs"
    proc = nsp("images", "--json", "--bogus", check=False)
    assert proc.returncode == 2 and proc.stderr == ""
    assert json.loads(proc.stdout)["error"] == {
        "code": "usage",
        "message": "unknown flag: --bogus",
        "hint": "see 'nspawnctl images --help'",
    }
