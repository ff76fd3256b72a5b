"""``--mount type=volume,volume-subpath=SUB`` and the API's ``Mounts[].VolumeOptions.Subpath``:
the container sees only SUB (ro and rw, a directory or a file), bound from a file descriptor at
each start (run/subpaths.py), so another container swapping SUB for a symlink to ``/`` in a loop
never gets the host's root mounted; the stage goes when the container stops; ``generate`` keeps
the bind; docker-py's Subpath does the same."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, IDLE, unit_show

VOLUMES = Path("/var/lib/nspawnctl/volumes")
STAGES = Path("/run/nspawnctl/subpaths")


def stage_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if f" {STAGES}/" in line]


@pytest.fixture(scope="module")
def marker() -> Iterator[str]:
    """A file only the host's / has: a container that sees it at its mount point escaped."""
    name = f"host-only-{uuid.uuid4().hex[:8]}"
    Path("/", name).write_text("host\n")
    yield name
    Path("/", name).unlink()


@pytest.fixture(scope="module")
def vol(cli: CLI) -> Iterator[str]:
    """A volume with sub/hello, other/secret and a file note.txt."""
    name = f"vs{uuid.uuid4().hex[:8]}"
    cli("volume", "create", name)
    (VOLUMES / name / "sub").mkdir()
    (VOLUMES / name / "sub" / "hello").write_text("in sub\n")
    (VOLUMES / name / "other").mkdir()
    (VOLUMES / name / "other" / "secret").write_text("not for you\n")
    (VOLUMES / name / "note.txt").write_text("a note\n")
    (VOLUMES / name / "link").symlink_to("/")
    yield name
    cli.cleanup()
    cli("volume", "rm", "-f", name, check=False)


def nspawn_binds(name: str) -> list[str]:
    """The --bind sources:targets on the running nspawn's command line (whichever unit runs it)."""
    for unit in (f"nspawnctl-{name}.service", f"systemd-nspawn@{name}.service"):
        pid = unit_show(unit, "MainPID").get("MainPID", "0")
        if pid != "0":
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            assert "--settings=trusted" in argv, argv
            binds = [a.partition("=")[2] for a in argv if a.startswith(("--bind=", "--bind-ro="))]
            return [":".join(b.split(":")[:2]) for b in binds]
    raise AssertionError(f"{name} runs under no unit")


def leave_stage(name: str, source: Path) -> None:
    """A stage as a start killed after mounting it leaves it."""
    (STAGES / name / "0").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(source), str(STAGES / name / "0")], check=True)


def mount(vol: str, sub: str, dst: str = "/d", ro: bool = False) -> list[str]:
    return ["--mount", f"type=volume,src={vol},dst={dst},volume-subpath={sub}" + (",readonly" if ro else "")]


@pytest.mark.serial
def test_sees_only_the_subpath_rw_ro_and_file_generate_and_stage(
    cli: CLI, busybox: str, vol: str, tmp_path: Path
) -> None:
    name = cli.name("vs")
    cli("run", "-d", "--name", name, "--network", "none", *mount(vol, "sub"), busybox, "sh", "-c", IDLE)
    assert cli("exec", name, "ls", "/d").stdout == "hello\n"
    cli("exec", name, "sh", "-c", "echo from-ctr > /d/written")
    assert (VOLUMES / vol / "sub" / "written").read_text() == "from-ctr\n"  # lands in the volume's SUB
    assert stage_mounts() == [f"{STAGES}/{name}/0"]
    assert nspawn_binds(name) == [f"{STAGES}/{name}/0:/d"]  # nspawn got the stage, not the path
    assert os.stat(STAGES).st_mode & 0o777 == 0o700
    # generate keeps the bind in [X-Nspawnctl] VolumeSubpath=; Bind= names the stage, never the
    # volume's SUB path (a stock start would bind it through symlinks); rm + apply recreates it
    text = cli("generate", name).stdout
    assert f"VolumeSubpath={VOLUMES}/{vol}:sub:/d\n" in text and f"Bind={STAGES}/{name}/0:/d" in text, text
    assert f"{VOLUMES}/{vol}/sub" not in text, text
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / f"{name}.nspawn").write_text(text)
    cli("rm", "-f", name)
    assert not (STAGES / name).exists() and stage_mounts() == []  # the post hook unstaged it
    assert cli("apply", str(defs)).stdout == f"{name} created\n"
    assert cli("exec", name, "cat", "/d/written").stdout == "from-ctr\n"
    assert nspawn_binds(name) == [f"{STAGES}/{name}/0:/d"]  # the drop-in's hook exec, as run -d
    assert cli("generate", name).stdout == text
    cli("stop", name)
    assert not (STAGES / name).exists() and stage_mounts() == []
    # what a killed start leaves (a stage still mounted): the next start mounts SUB afresh, a
    # prune removes it (and one of a container that is gone)
    leave_stage(name, VOLUMES / vol / "other")
    cli("start", name)
    assert cli("exec", name, "ls", "/d").stdout == "hello\nwritten\n"  # SUB, walked again
    assert stage_mounts() == [f"{STAGES}/{name}/0"]
    cli("stop", name)
    # rm removes a stage a killed start left at once (not only the next start or a prune)
    leave_stage(name, VOLUMES / vol / "other")
    cli("rm", name)
    assert stage_mounts() == [] and not (STAGES / name).exists()
    leave_stage(f"gone-{name}", VOLUMES / vol / "other")
    cli("container", "prune", "-f")
    assert stage_mounts() == [] and list(STAGES.iterdir()) == []
    # read-only, in the foreground (run --rm: the unit's pre hook stages it), and a file subpath
    ro = cli(
        "run", "--rm", *mount(vol, "sub", ro=True), *mount(vol, "note.txt", "/n.txt"), busybox,
        "sh", "-c", "cat /d/hello /n.txt; ls /d; touch /d/x || echo read-only",
    )  # fmt: skip
    assert ro.stdout == "in sub\na note\nhello\nwritten\nread-only\n", ro
    assert not (VOLUMES / vol / "sub" / "x").exists() and stage_mounts() == []
    # refused at create, one line and a hint, nothing made
    before = cli("ps", "-a", "-q").stdout
    refusals = (("link", "'link' is a symbolic link"), ("nope", "has no nope"), ("../x", "volume-subpath"))
    for sub, why in refusals:
        proc = cli("create", *mount(vol, sub), busybox, "true", check=False)
        assert proc.returncode in (2, 125) and why in proc.stderr and "hint:" in proc.stderr, proc
    assert cli("ps", "-a", "-q").stdout == before


@pytest.mark.serial
def test_swapping_the_subpath_for_a_symlink_never_mounts_the_host(
    cli: CLI, busybox: str, vol: str, marker: str
) -> None:
    """runc's CVE-2021-30465 shape: B, with the whole volume rw, swaps SUB for a symlink to / in
    a loop while A (SUB at /d) is started again and again."""
    a, b = cli.name("vsa"), cli.name("vsb")
    cli("create", "--name", a, "--network", "none", *mount(vol, "sub", ro=True), busybox,
        "sh", "-c", f"if test -e /d/{marker}; then echo ESCAPED; else ls /d; fi")  # fmt: skip
    swap = "while :; do mv /v/sub /v/real; ln -s / /v/sub; rm /v/sub; mv /v/real /v/sub; done"
    cli("run", "-d", "--name", b, "--network", "none", "-v", f"{vol}:/v", busybox, "sh", "-c", swap)
    mounted = failed = 0
    try:
        for _ in range(8):
            proc = cli("start", a, check=False)
            if proc.returncode != 0:  # the walk met the symlink or the renamed-away SUB
                assert "volume-subpath" in proc.stderr or "has no sub" in proc.stderr, proc.stderr
                assert proc.stderr.startswith("nspawnctl: error:"), proc.stderr
                failed += 1
                continue
            assert cli("wait", a).stdout.strip() == "0"
            mounted += 1
    finally:
        cli("rm", "-f", b)
        sub = VOLUMES / vol / "sub"
        if sub.is_symlink():
            sub.unlink()
        if (VOLUMES / vol / "real").exists():
            (VOLUMES / vol / "real").rename(sub)
    logs = cli("logs", a).stdout
    assert "ESCAPED" not in logs and marker not in logs, logs
    assert logs.count("hello\n") == mounted, (logs, mounted, failed)
    assert mounted + failed == 8 and stage_mounts() == []
    # after the attack the container starts and sees SUB
    cli("start", a)
    assert cli("wait", a).stdout.strip() == "0" and cli("logs", a).stdout.count("hello\n") == mounted + 1


def test_docker_api_subpath(api: dict[str, str], cli: CLI, busybox: str, vol: str) -> None:
    import docker as dockerpy

    client = dockerpy.APIClient(base_url="unix:///run/nspawnctl/docker.sock")
    try:
        m = dockerpy.types.Mount("/m", vol, read_only=True, subpath="other")
        ctr = client.create_container(
            busybox, ["sh", "-c", "cat /m/secret; ls /m"], host_config=client.create_host_config(mounts=[m])
        )
        cli.containers.add(ctr["Id"][:12])
        client.start(ctr)
        assert client.wait(ctr)["StatusCode"] == 0
        assert client.logs(ctr) == b"not for you\nsecret\n"
        name = client.inspect_container(ctr)["Name"].lstrip("/")
        text = cli("generate", name).stdout
        assert (
            f"BindReadOnly={STAGES}/{name}/0:/m" in text and f"VolumeSubpath={VOLUMES}/{vol}:other:/m" in text
        )
        bad = dockerpy.types.Mount("/m", vol, subpath="link")
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.create_container(busybox, ["true"], host_config=client.create_host_config(mounts=[bad]))
        assert e.value.status_code == 400 and "symbolic link" in str(e.value), e.value
        client.remove_container(ctr)
    finally:
        client.close()


@pytest.mark.serial
def test_a_stock_start_fails_closed_and_rename_keeps_the_stage_by_name(
    cli: CLI, busybox: str, vol: str, marker: str
) -> None:
    """systemd's own unit (``machinectl start``, ``systemd-nspawn@``) reads the definition with no
    pre hook: its Bind= names a stage that does not exist then, so the start fails, even with SUB
    swapped for a symlink to /; nspawnctl's start (and after a rename) binds SUB."""
    a = cli.name("vss")
    script = f"if test -e /d/{marker}; then echo ESCAPED; else ls /d; fi"
    cli("create", "--name", a, "--network", "none", *mount(vol, "sub"), busybox, "sh", "-c", script)
    text = Path(f"/etc/systemd/nspawn/{a}.nspawn").read_text()
    assert f"{VOLUMES}/{vol}/sub" not in text and f"Bind={STAGES}/{a}/0:/d" in text, text
    sub, real = VOLUMES / vol / "sub", VOLUMES / vol / "real"
    sub.rename(real)
    sub.symlink_to("/")
    unit = f"systemd-nspawn@{a}.service"
    try:
        stock = subprocess.run(["systemctl", "start", unit], capture_output=True, text=True)
        assert stock.returncode != 0, stock
        assert stage_mounts() == []
    finally:
        sub.unlink()
        real.rename(sub)
        subprocess.run(["systemctl", "reset-failed", unit], check=False)
    journal = subprocess.run(["journalctl", "-q", "-u", unit], capture_output=True, text=True).stdout
    assert "ESCAPED" not in journal and marker not in journal, journal
    cli("start", a)
    assert cli("wait", a).stdout.strip() == "0" and "ESCAPED" not in cli("logs", a).stdout
    # a rename moves the stage in Bind= to the new name, and it still starts
    b = cli.name("vsr")
    cli("rename", a, b)
    text = Path(f"/etc/systemd/nspawn/{b}.nspawn").read_text()
    assert f"Bind={STAGES}/{b}/0:/d" in text and f"VolumeSubpath={VOLUMES}/{vol}:sub:/d\n" in text, text
    cli("start", b)
    assert cli("wait", b).stdout.strip() == "0"
    assert cli("logs", b).stdout.count("hello\n") == 2


def test_rm_v_keeps_an_anonymous_volume_another_container_binds_by_subpath(cli: CLI, busybox: str) -> None:
    """--rm / rm -v deletes a container's anonymous volumes unless another container binds one,
    also by a subpath (the same "in use" as volume rm)."""
    a, b = cli.name("vsanon"), cli.name("vsuser")
    cli("create", "--name", a, "--network", "none", "-v", "/data", busybox, "true")
    text = Path(f"/etc/systemd/nspawn/{a}.nspawn").read_text()
    bind = next(line for line in text.splitlines() if line.startswith(f"Bind={VOLUMES}/"))
    anon = bind.removeprefix(f"Bind={VOLUMES}/").split(":")[0]
    (VOLUMES / anon / "x").mkdir()
    cli("create", "--name", b, "--network", "none", *mount(anon, "x"), busybox, "true")
    cli("rm", "-v", a)
    assert (VOLUMES / anon / "x").is_dir()  # B's volume is still there
    cli("rm", b)
    assert cli("volume", "rm", anon).returncode == 0
