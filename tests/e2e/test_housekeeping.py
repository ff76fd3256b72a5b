"""Housekeeping a docker user reaches for: ``version``, ``info``, ``system df``, ``container prune``
and shell completion, checked against what systemd, the kernel and the store say themselves."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path

import pytest
from conftest import CLI

POOL = Path("/var/lib/machines")


def systemctl_version() -> str:
    """The version as ``systemctl --version`` prints it: 'systemd 257 (257.9-1~deb13u1)'."""
    first = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, check=True)
    return first.stdout.splitlines()[0]


@pytest.mark.surface
def test_version_names_systemd_as_the_server(nsp: CLI) -> None:
    out = nsp("version").stdout
    assert out.startswith("Client: nspawnctl\n Version:")
    server = out.split("Server: systemd\n", 1)[1]
    version = re.search(r"Version:\s+(\S+)", server)
    assert version is not None, out
    assert version.group(1) in systemctl_version(), (version.group(1), systemctl_version())
    assert re.search(r"Kernel Version:\s+" + re.escape(platform.release()) + "\n", server), server
    data = nsp.json("version")
    assert data["Server"]["version"] == version.group(1)
    assert data["Server"]["kernel"] == platform.release()
    assert "dbus-fast" in data["Client"]["dependencies"] or "dbus-next" in data["Client"]["dependencies"]


@pytest.mark.serial
def test_info_counts_what_runs_and_what_is_stopped(nsp: CLI, busybox: str) -> None:
    running, stopped = nsp.name("info-up"), nsp.name("info-down")
    nsp("run", "-d", "--network", "host", "--name", running, busybox, "sleep", "300")
    nsp("create", "--name", stopped, busybox, "true")
    data = nsp.json("info")
    ps_all = nsp("ps", "-aq").stdout.split()
    ps_up = nsp("ps", "-q").stdout.split()
    assert data["containers"]["total"] == len(ps_all)
    assert data["containers"]["running"] + data["containers"]["restarting"] == len(ps_up)
    assert data["images"] == len(nsp("images", "-q", "--no-trunc").stdout.split())
    assert data["cgroup_version"] == (2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1)
    st = os.statvfs(POOL)
    assert data["pool"]["total"] == st.f_blocks * st.f_frsize
    assert data["cpus"] == os.cpu_count()
    text = nsp("info").stdout
    assert re.search(r"^ Containers:\s+\d+$", text, re.M) and re.search(
        r"^ Storage Driver:\s+btrfs", text, re.M
    )
    assert re.search(r"^ Pool:\s+/var/lib/machines \(.* free of ", text, re.M), text
    again = nsp.json("system", "info")
    assert (
        again["containers"] == data["containers"] and again["client"]["version"] == data["client"]["version"]
    )


@pytest.mark.serial
def test_info_shows_systemd_version_the_pool_the_store_and_counts(nsp: CLI, busybox: str) -> None:
    """Issue 14's ``info``: the host's systemd version as ``systemctl --version`` says it, where the
    pool and the store are, and the counts moving by one as a container runs, one is made and an
    image is committed; the same in --json, -f and ``system info -f``."""
    before = nsp.json("info")
    running, stopped = nsp.name("info-up"), nsp.name("info-down")
    nsp("run", "-d", "--network", "none", "--name", running, busybox, "sleep", "300")
    nsp("create", "--network", "none", "--name", stopped, busybox, "true")
    committed = f"e2e/info-{running}:1"
    nsp.images.add(committed)
    nsp("commit", stopped, committed)
    text = nsp("info").stdout
    fields = dict(re.findall(r"^ ?(\w[\w ]*\w):\s+(.*)$", text, re.M))
    assert fields["Server Version"] == systemctl_version(), (fields, systemctl_version())
    assert fields["Pool"].startswith("/var/lib/machines (") and fields["Store"].startswith(
        "/var/lib/nspawnctl ("
    ), text
    after = nsp.json("info")
    assert after["systemd"]["version"] in systemctl_version().split("(")[1]
    c0, c1 = before["containers"], after["containers"]
    assert (c1["total"], c1["running"], c1["created"]) == (
        c0["total"] + 2,
        c0["running"] + 1,
        c0["created"] + 1,
    )
    assert after["images"] == before["images"] + 1 == len(nsp("images", "-q", "--no-trunc").stdout.split())
    assert re.search(rf"^  Running:\s+{c1['running'] + c1['restarting']}$", text, re.M), text
    assert re.search(rf"^  Stopped:\s+{c1['created'] + c1['exited']}$", text, re.M), text
    assert re.search(r"^  Paused:\s+0$", text, re.M) and f" Images:           {after['images']}\n" in text, (
        text
    )
    assert (after["pool"]["path"], after["store"]["path"]) == ("/var/lib/machines", "/var/lib/nspawnctl")
    template = "{{.systemd.version}} {{.containers.running}} {{.images}} {{.pool.path}} {{.store.path}}"
    paths = "/var/lib/machines /var/lib/nspawnctl"
    want = f"{after['systemd']['version']} {c1['running']} {after['images']} {paths}\n"
    assert nsp("info", "-f", template).stdout == want
    assert nsp("system", "info", "--format", template).stdout == want
    assert json.loads(nsp("info", "-f", "{{json .containers}}").stdout) == c1
    bad = nsp("info", "-f", "{{.nope", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("nspawnctl: error: "), bad.stderr


@pytest.mark.serial
def test_system_df_counts_images_in_use_and_what_prune_frees(nsp: CLI, busybox: str) -> None:
    before = {row["Type"]: row for row in nsp.json("system", "df")}
    name = nsp.name("df")
    nsp("create", "--name", name, busybox, "true")
    after = {row["Type"]: row for row in nsp.json("system", "df")}
    assert after["Containers"]["TotalCount"] == before["Containers"]["TotalCount"] + 1
    assert after["Containers"]["Size"] is None  # btrfs cannot tell a snapshot's own bytes apart
    images = after["Images"]
    assert images["TotalCount"] == len(nsp("images", "-q", "--no-trunc").stdout.split())
    assert images["Active"] >= 1
    assert 0 <= images["Reclaimable"] <= images["Size"]
    # the busybox image is in use now: what prune -a frees cannot include it
    size = nsp.json("inspect", busybox)[0]["size"]
    assert images["Size"] >= size
    if before["Images"]["Active"] < images["Active"]:  # nothing else held it before
        assert before["Images"]["Reclaimable"] - images["Reclaimable"] == size
    table = nsp("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert table[2].split()[0] == "Containers" and table[2].split()[3:] == ["n/a", "n/a"]
    assert table[3].startswith("Local Volumes ")


@pytest.mark.serial
def test_system_df_counts_volumes_and_what_volume_prune_frees(nsp: CLI, busybox: str) -> None:
    used, unused = nsp.name("dfv-used"), nsp.name("dfv-unused")
    try:
        name = nsp.name("dfv")
        nsp("run", "--network", "host", "--name", name, "-v", f"{used}:/v", busybox,
            "sh", "-c", "head -c 300000 /dev/zero > /v/blob")  # fmt: skip
        nsp("volume", "create", unused)
        nsp("run", "--rm", "--network", "host", "-v", f"{unused}:/v", busybox,
            "sh", "-c", "head -c 70000 /dev/zero > /v/blob")  # fmt: skip
        rows = {row["Type"]: row for row in nsp.json("system", "df")}
        vols = rows["Local Volumes"]
        listed = nsp("volume", "ls", "-q").stdout.split()
        assert vols["TotalCount"] == len(listed) and used in listed and unused in listed
        assert vols["Size"] >= 370000 and vols["Active"] >= 1
        assert vols["Reclaimable"] >= 70000  # the unbound one; the bound one is not reclaimable
        assert vols["Size"] - vols["Reclaimable"] >= 300000
    finally:
        nsp.cleanup()
        nsp("volume", "rm", "-f", used, unused, check=False)


@pytest.mark.serial
def test_container_prune_removes_stopped_keeps_running(nsp: CLI, busybox: str) -> None:
    up, created, exited = nsp.name("pr-up"), nsp.name("pr-created"), nsp.name("pr-exited")
    nsp("run", "-d", "--network", "host", "--name", up, busybox, "sleep", "300")
    nsp("create", "--name", created, busybox, "true")
    assert (
        nsp(
            "run", "--network", "host", "--name", exited, busybox, "sh", "-c", "exit 4", check=False
        ).returncode
        == 4
    )
    refused = nsp("container", "prune", check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert (POOL / created).exists()
    out = nsp("container", "prune", "-f").stdout.splitlines()
    assert out[0] == "Deleted Containers:"
    assert created in out and exited in out and up not in out
    assert out[-1].startswith("Total containers removed: ")
    names = nsp("ps", "-aq").stdout.split()
    assert up in names and created not in names and exited not in names
    assert not (POOL / created).exists() and not (POOL / exited).exists()
    assert (POOL / up).is_dir()
    assert isinstance(nsp.json("container", "prune", "-f")["containers"], list)


def in_bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` as a child of bash (``; true`` keeps bash from exec'ing it): typer finds the
    shell to complete for among its parents, as it would under a user's interactive shell."""
    return subprocess.run(
        ["bash", "-c", f"{command}; true"], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.surface
def test_shell_completion_completes_commands_and_options(nsp: CLI, tmp_path: Path) -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {
            **os.environ,
            "_NSPAWNCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
        return nsp(env=env).stdout.split()

    assert "pull" in complete("nspawnctl pu", 1) and "ps" not in complete("nspawnctl pu", 1)
    assert "--network" in complete("nspawnctl run --netw", 2)
    # --install-completion writes a script bash sources at start; complete through a real bash
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "SHELL": "/bin/bash"}
    shown = in_bash("nspawnctl --show-completion", env)
    assert "_NSPAWNCTL_COMPLETE" in shown.stdout, shown
    installed = in_bash("nspawnctl --install-completion", env)
    assert "completion installed" in installed.stdout, installed
    assert "nspawnctl" in (home / ".bashrc").read_text()
    probe = (
        "source ~/.bashrc; COMP_WORDS=(nspawnctl ima); COMP_CWORD=1; "
        "_nspawnctl_completion nspawnctl; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert set(done.stdout.split()) == {"images", "image"}, done
