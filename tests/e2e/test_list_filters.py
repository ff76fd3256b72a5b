"""``--filter`` of ``ps`` (labels ANDed), ``volume ls``, ``network ls``, ``container prune``,
``volume prune``, ``network prune`` and ``system prune`` (the library's listfilters.py), with
exact rows: volumes and containers on a pool of the test's own (``private``), networks (shared
by every pool) under names of the test's own; then the same filters through the Docker API."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CLI, wait_for
from dockerapi import docker

Run = Callable[..., subprocess.CompletedProcess[str]]


def _created(run: Run, name: str) -> int:
    """A container's creation second (its definition keeps seconds)."""
    created = json.loads(run("inspect", name).stdout)[0]["Created"]
    return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


@pytest.mark.serial
def test_ps_labels_volume_ls_and_the_prunes(private: tuple[Run, Path], busybox_dir: Path) -> None:
    run, _ = private
    image = "e2e/lf:v1"
    image_id = json.loads(run("import", "--json", str(busybox_dir), image).stdout)["id"]

    def create(name: str, *args: str) -> None:
        run("create", "--name", name, *args, image, "true")

    runner = f"lf-run-{uuid.uuid4().hex[:6]}"  # running: a machine name, so one of the host's own
    run("run", "-d", "--network", "none", "--name", runner, image, "sleep", "600")
    create("lf-web", "-l", "tier=web", "-l", "team=x")
    create("lf-db", "-l", "tier=db", "-l", "team=x")
    t_db = _created(run, "lf-db")
    wait_for(f"the clock past {t_db}", lambda: time.time() >= t_db + 1)
    create("lf-bare", "-v", "lf-used:/data")

    def ps(*filters: str) -> list[str]:
        return sorted(run("ps", "-a", "--format", "{{.Names}}", *filters).stdout.split())

    # ps: label values ANDed (docker's), other keys' values ORed
    assert ps("--filter", "label=team", "--filter", "label=tier=web") == ["lf-web"]
    assert ps("-f", "label=tier=web", "-f", "label=tier=db") == []
    assert ps("-f", "label=team") == ["lf-db", "lf-web"]
    assert ps("-f", "name=lf-web", "-f", "name=lf-bare") == ["lf-bare", "lf-web"]

    # volume ls
    run("volume", "create", "--label", "tier=db", "lf-data")
    run("volume", "create", "--label", "tier=web", "--label", "k=v", "lf-logs")

    def volumes(*filters: str) -> list[str]:
        return sorted(run("volume", "ls", "-q", *filters).stdout.split())

    assert volumes() == ["lf-data", "lf-logs", "lf-used"]
    assert volumes("-f", "dangling=true") == ["lf-data", "lf-logs"]
    assert volumes("--filter", "dangling=false") == ["lf-used"]
    assert volumes("-f", "name=lf-l") == ["lf-logs"]
    assert volumes("-f", "name=^lf-data$", "-f", "name=^lf-used$") == ["lf-data", "lf-used"]
    assert volumes("-f", "label=tier=web", "-f", "label=k") == ["lf-logs"]
    assert volumes("-f", "label=tier", "-f", "name=lf-d") == ["lf-data"]
    assert volumes("-f", "driver=local") == ["lf-data", "lf-logs", "lf-used"]
    assert volumes("-f", "driver=nfs") == []
    rows = [line.split() for line in run("volume", "ls", "-f", "name=logs").stdout.splitlines()]
    assert rows == [["DRIVER", "VOLUME", "NAME"], ["local", "lf-logs"]]
    assert [v["Name"] for v in json.loads(run("volume", "ls", "--json", "-f", "label=k=v").stdout)] == [
        "lf-logs"
    ]
    for bad, message in (
        ("label!=tier", "invalid filter 'label!'"),  # not one of volume ls's (dockerd's)
        ("dangling=maybe", "invalid filter 'dangling=maybe'"),
        ("colour=red", "invalid filter 'colour'"),
    ):
        proc = run("volume", "ls", "-q", "-f", bad, check=False)
        assert (proc.returncode, proc.stdout) == (2, "") and message in proc.stderr, proc.stderr
        assert bad.startswith("dangling") or "dangling=..." in proc.stderr  # the hint names the filters

    # volume prune: label! too; a bound volume stays whatever the filter says
    pruned = json.loads(run("volume", "prune", "-a", "-f", "--json", "--filter", "label!=tier=web").stdout)
    assert pruned["volumes"] == ["lf-data"] and volumes() == ["lf-logs", "lf-used"]
    proc = run("volume", "prune", "-f", "--filter", "until=1h", check=False)
    assert (
        proc.returncode == 2
        and "invalid filter 'until'" in proc.stderr
        and volumes() == ["lf-logs", "lf-used"]
    )

    # container prune: until=T takes the stopped containers created before T (lf-web; lf-db has
    # the label! filter's label), not lf-bare (created after T) nor the running one (before T);
    # refusals before the question
    proc = run("container", "prune", "-f", "--filter", "until=1h")  # nothing is an hour old
    assert proc.stdout == "Total containers removed: 0\n"
    assert ps() == sorted(["lf-bare", "lf-db", "lf-web", runner])
    assert _created(run, runner) <= t_db < _created(run, "lf-bare")
    removed = json.loads(
        run(
            "container", "prune", "-f", "--json", "--filter", f"until={t_db}.5", "--filter", "label!=tier=db"
        ).stdout
    )
    assert removed["containers"] == ["lf-web"] and ps() == sorted(["lf-bare", "lf-db", runner])
    assert run("ps", "-q").stdout.split() == [runner]  # still running
    run("rm", "-f", runner)
    proc = run("container", "prune", "--filter", "name=lf", check=False)
    assert proc.returncode == 2 and "invalid filter 'name'" in proc.stderr and "until=..." in proc.stderr
    proc = run("container", "prune", "-f", "--filter", "until=soon", check=False)
    assert (
        proc.returncode == 2 and "invalid filter 'until=soon'" in proc.stderr and ps() == ["lf-bare", "lf-db"]
    )

    # system prune: the same filters on containers and images; until not with --volumes
    proc = run("system", "prune", "-f", "--volumes", "--filter", "until=1h", check=False)
    assert proc.returncode == 2 and 'the "until" filter is not supported with --volumes' in proc.stderr
    assert ps() == ["lf-bare", "lf-db"]
    result = json.loads(run("system", "prune", "-a", "-f", "--json", "--filter", "label=tier").stdout)
    assert result["containers"] == ["lf-db"] and result["images"] == []  # the image has no tier label
    result = json.loads(
        run("system", "prune", "-a", "-f", "--volumes", "--json", "--filter", "label!=tier").stdout
    )
    assert result["containers"] == ["lf-bare"] and result["images"] == [image_id]
    assert result["volumes"] == ["lf-used"]  # lf-logs has a tier label
    assert ps() == [] and volumes() == ["lf-logs"]


def test_network_ls_and_prune_filters(nsp: CLI) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"lfn{tag}a", f"lfn{tag}b"
    a_id = nsp("network", "create", "--label", f"e2e.lf={tag}", "--label", "role=a", a).stdout.strip()
    nsp("network", "create", "--label", f"e2e.lf={tag}", b)
    try:

        def names(*filters: str) -> list[str]:
            out = nsp("network", "ls", "--json", *filters, check=False)
            assert out.returncode == 0, out.stderr
            return sorted(n["Name"] for n in json.loads(out.stdout))

        assert names("-f", f"name=lfn{tag}") == [a, b]
        assert names("-f", f"name=^lfn{tag}a$", "-f", "name=^none$") == sorted(["none", a])
        assert names("-f", "type=builtin") == ["bridge", "host", "none"]
        assert names("-f", "type=custom", "-f", f"name=lfn{tag}") == [a, b]
        assert names("-f", "driver=host", "-f", "driver=null") == ["host", "none"]
        assert names("-f", f"id={a_id[:12]}") == [a]
        assert names("-f", f"label=e2e.lf={tag}", "-f", "label=role") == [a]
        assert names("-f", f"label=e2e.lf={tag}", "-f", "dangling=true") == [a, b]  # no members
        assert names("-f", f"name=lfn{tag}", "-f", "dangling=false") == []
        assert names("-f", f"name=lfn{tag}", "-f", "scope=local") == [a, b]
        ids = nsp("network", "ls", "-q", "--no-trunc", "-f", f"name=^lfn{tag}a$").stdout.split()
        assert ids == [a_id]
        proc = nsp("network", "ls", "-f", "type=overlay", check=False)
        assert (proc.returncode, proc.stdout) == (2, "") and "invalid filter 'type=overlay'" in proc.stderr
        proc = nsp("network", "ls", "-f", "colour=red", check=False)
        assert proc.returncode == 2 and "invalid filter 'colour'" in proc.stderr

        # prune: until (created before) and labels, only these two in play
        proc = nsp("network", "prune", "-f", "--filter", f"label=e2e.lf={tag}", "--filter", "until=1h")
        assert proc.stdout == "" and names("-f", f"name=lfn{tag}") == [a, b]
        proc = nsp("network", "prune", "-f", "--filter", f"label=e2e.lf={tag}", "--filter", "label!=role")
        assert proc.stdout == f"Deleted Networks:\n{b}\n" and names("-f", f"name=lfn{tag}") == [a]
    finally:
        for n in (a, b):
            nsp("network", "rm", "-f", n, check=False)


def test_the_filters_through_the_docker_cli(api: dict[str, str], nsp: CLI, busybox: str) -> None:
    """The docker CLI on the service: the same filters (the library's), in docker's words."""
    tag = uuid.uuid4().hex[:6]
    vol_a, vol_b, net = f"lfa{tag}", f"lfb{tag}", f"lfapi{tag}"
    keep, gone = nsp.name("lfkeep"), nsp.name("lfgone")
    nsp(
        "create",
        "--name",
        keep,
        "-l",
        f"e2e.lf={tag}",
        "-l",
        "keep=1",
        "-v",
        f"{vol_b}:/data",
        busybox,
        "true",
    )
    nsp("create", "--name", gone, "-l", f"e2e.lf={tag}", busybox, "true")
    nsp("volume", "create", "--label", f"e2e.lf={tag}", vol_a)
    net_id = nsp("network", "create", "--label", f"e2e.lf={tag}", net).stdout.strip()
    try:

        def out(*args: str) -> list[str]:
            proc = docker(api, *args)
            assert proc.returncode == 0, proc.stderr
            return sorted(proc.stdout.split())

        assert out("volume", "ls", "-q", "--filter", f"name={tag}") == [vol_a, vol_b]
        assert out("volume", "ls", "-q", "--filter", f"name={tag}", "--filter", "dangling=true") == [vol_a]
        assert out("volume", "ls", "-q", "--filter", f"label=e2e.lf={tag}") == [vol_a]
        proc = docker(api, "volume", "ls", "--filter", "dangling=maybe")
        assert proc.returncode != 0 and "invalid filter 'dangling=maybe'" in proc.stderr
        assert out("network", "ls", "-q", "--no-trunc", "--filter", f"label=e2e.lf={tag}") == [net_id]
        assert out("network", "ls", "--format", "{{.Name}}", "--filter", "type=builtin") == [
            "bridge",
            "host",
            "none",
        ]
        assert out(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=e2e.lf={tag}", "--filter", "label=keep"
        ) == [keep]

        # this test's label: until=1h alone would remove other tests' stopped containers on the host
        proc = docker(
            api, "container", "prune", "-f", "--filter", "until=1h", "--filter", f"label=e2e.lf={tag}"
        )
        assert proc.returncode == 0, proc.stderr
        proc = docker(
            api, "container", "prune", "-f", "--filter", f"label=e2e.lf={tag}", "--filter", "label!=keep"
        )
        assert proc.returncode == 0, proc.stderr
        assert nsp("ps", "-a", "-q", "--filter", f"label=e2e.lf={tag}").stdout.split() == [keep]
        proc = docker(api, "container", "prune", "-f", "--filter", "name=x")
        assert proc.returncode != 0 and "invalid filter 'name'" in proc.stderr
        proc = docker(
            api, "network", "prune", "-f", "--filter", f"label=e2e.lf={tag}", "--filter", "until=1h"
        )
        assert proc.returncode == 0 and net not in proc.stdout, proc.stderr
        # system prune: the same filters to each kind's prune (the API's, one request each)
        proc = docker(
            api, "system", "prune", "-f", "--filter", f"label=e2e.lf={tag}", "--filter", "label!=keep"
        )
        assert proc.returncode == 0 and net in proc.stdout, proc.stderr
        assert net_id not in nsp("network", "ls", "-q", "--no-trunc").stdout
        assert nsp("ps", "-a", "-q", "--filter", f"label=e2e.lf={tag}").stdout.split() == [keep]
        proc = docker(
            api,
            "volume",
            "prune",
            "-a",
            "-f",
            "--filter",
            f"label!=e2e.lf={tag}",
            "--filter",
            f"label=nope{tag}",
        )
        assert proc.returncode == 0 and vol_a not in proc.stdout, proc.stderr
    finally:
        nsp("rm", "-f", keep, gone, check=False)
        nsp("network", "rm", "-f", net, check=False)
        nsp("volume", "rm", "-f", vol_a, vol_b, check=False)
