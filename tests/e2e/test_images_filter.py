"""``images [REPOSITORY[:TAG]] -f KEY=VALUE`` and ``image prune --filter`` on a pool of the test's
own (the ``private`` fixture), so every listed row is one the test made."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CLI, root_with, wait_for
from dockerapi import docker

Run = Callable[..., subprocess.CompletedProcess[str]]
OLD1, MID1, MID2, NEW1, NONE = (
    "e2e/flt-old:v1",
    "e2e/flt-mid:v1",
    "e2e/flt-mid:v2",
    "e2e/flt-new:v1",
    "<none>:<none>",
)


def _import(
    run: Run,
    root: Path,
    name: str | None = None,
    label: str | None = None,
    after: int | None = None,
) -> tuple[str, int]:
    """Import ``root`` (as NAME, with LABEL) once the clock is past second ``after``, so that
    images made one after another have creation times of their own: (ID, creation second; the
    store keeps seconds)."""
    if after is not None:
        wait_for(f"the clock past {after}", lambda: time.time() >= after + 1)
    label_args = ["-c", f"LABEL {label}"] if label else []
    record = json.loads(run("import", "--json", *label_args, str(root), *([name] if name else [])).stdout)
    return record["id"], int(datetime.fromisoformat(record["created"]).timestamp())


def _names(run: Run, *args: str) -> list[str]:
    """REPOSITORY:TAG of each row ``images ARGS`` lists (in the listing's order)."""
    out = run("images", "--format", "{{.Repository}}:{{.Tag}}", *args).stdout
    return out.splitlines()


@pytest.mark.serial
def test_images_filters_and_the_repository_argument(
    private: tuple[Run, Path], busybox_dir: Path, tmp_path: Path
) -> None:
    run, _ = private

    def root(marker: str) -> Path:
        return root_with(busybox_dir, tmp_path / marker, f"{marker}\n")

    old, t_old = _import(run, root("old"), OLD1, "tier=web")
    mid, t_mid = _import(run, root("mid"), MID1, "tier=db", after=t_old)
    run("tag", mid, MID2)
    new, t_new = _import(run, root("new"), NEW1, after=t_mid)
    dangling, _ = _import(run, root("none"), after=t_new)
    everything = sorted([OLD1, MID1, MID2, NEW1, NONE])
    assert sorted(_names(run)) == everything

    # REPOSITORY: every tag of it; REPOSITORY:TAG: that one row, in the default table too
    assert sorted(_names(run, "e2e/flt-mid")) == [MID1, MID2]
    rows = [line.split()[:3] for line in run("images", MID2).stdout.splitlines()]
    assert rows == [["REPOSITORY", "TAG", "IMAGE"], ["e2e/flt-mid", "v2", mid[7:19]]]
    assert _names(run, "e2e/flt-nothing") == []
    assert sorted(_names(run, "-f", "reference=e2e/flt-*:v1")) == [MID1, NEW1, OLD1]
    assert sorted(_names(run, "-f", "reference=*/flt-old", "--filter", "reference=e2e/flt-new")) == [
        NEW1,
        OLD1,
    ]
    assert _names(run, "-f", "reference=*") == []  # * stops at /, as docker's
    listed = json.loads(run("images", "--json", MID1).stdout)
    assert [(i["id"], i["refs"]) for i in listed] == [(mid, [MID1])]  # the matching name only

    # dangling, -q, --no-trunc
    assert run("images", "-q", "-f", "dangling=true").stdout.split() == [dangling[7:19]]
    assert run("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split() == [dangling]
    assert sorted(run("images", "-q", "-f", "dangling=false").stdout.split()) == sorted(
        i[7:19] for i in (old, mid, new)
    )

    # labels: ANDed, and negated
    assert sorted(_names(run, "-f", "label=tier")) == [MID1, MID2, OLD1]
    assert _names(run, "-f", "label=tier=web") == [OLD1]
    assert _names(run, "-f", "label=tier", "-f", "label=tier=nope") == []
    assert sorted(_names(run, "-f", "label!=tier")) == [NONE, NEW1]
    assert _names(run, "-f", "label!=tier", "-f", "dangling=false") == [NEW1]

    # before / since an image (by name or ID), until a time
    assert _names(run, "-f", "before=e2e/flt-mid:v2") == [OLD1]
    assert sorted(_names(run, "-f", "since=" + mid[7:19])) == [NONE, NEW1]
    assert sorted(_names(run, "-f", "since=e2e/flt-old:v1", "-f", "before=e2e/flt-new:v1")) == [MID1, MID2]
    assert sorted(_names(run, "-f", f"until={t_mid}.5")) == [MID1, MID2, OLD1]
    assert _names(run, "-f", "until=1h") == []  # nothing here is an hour old

    # --digests (imported: none), -a (no intermediate images: the same list)
    table = run("images", "--digests", "e2e/flt-new").stdout.splitlines()
    assert table[0].split()[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    assert table[1].split()[:4] == ["e2e/flt-new", "v1", "<none>", new[7:19]]
    assert sorted(_names(run, "-a")) == everything

    # refusals: what is wrong, and nothing listed
    proc = run("images", "-f", "before=e2e/flt-gone:v1", check=False)
    assert proc.returncode == 125 and "no such image: e2e/flt-gone:v1" in proc.stderr and proc.stdout == ""
    proc = run("images", "-q", "-f", "colour=red", check=False)
    assert proc.returncode == 2 and "invalid filter 'colour'" in proc.stderr and proc.stdout == ""
    assert "reference=" in proc.stderr  # the hint names the filters
    proc = run("images", "--filter", "dangling=maybe", check=False)
    assert proc.returncode == 2 and "invalid filter 'dangling=maybe'" in proc.stderr
    proc = run("images", "-f", "until=yesterday", check=False)
    assert proc.returncode == 2 and "invalid filter 'until=yesterday'" in proc.stderr


@pytest.mark.serial
def test_image_prune_filters(private: tuple[Run, Path], busybox_dir: Path, tmp_path: Path) -> None:
    run, _ = private

    def root(marker: str) -> Path:
        return root_with(busybox_dir, tmp_path / marker, f"{marker}\n")

    web, t_web = _import(run, root("web"), "e2e/prune-web:v1", "tier=web")
    db, t_db = _import(run, root("db"), "e2e/prune-db:v1", "tier=db", after=t_web)
    loose, _ = _import(run, root("loose"), after=t_db)

    def ids() -> set[str]:
        return {i["id"] for i in json.loads(run("images", "--json").stdout)}

    # without -a only dangling images are candidates: the label picks none of them
    assert run("image", "prune", "-f", "--filter", "label=tier").stdout == "Total reclaimed space: 0B\n"
    pruned = json.loads(run("image", "prune", "-a", "-f", "--json", "--filter", "label=tier=web").stdout)
    assert pruned["images"] == [web] and pruned["untagged"] == ["e2e/prune-web:v1"]
    assert ids() == {db, loose}
    # until: created before it; the loose image is newer than db's second
    pruned = json.loads(run("image", "prune", "-a", "-f", "--json", "--filter", f"until={t_db}.5").stdout)
    assert pruned["images"] == [db] and ids() == {loose}
    pruned = json.loads(run("image", "prune", "-f", "--json", "--filter", "label!=tier").stdout)
    assert pruned["images"] == [loose] and ids() == set()

    proc = run("image", "prune", "-f", "--filter", "reference=e2e/*", check=False)
    assert proc.returncode == 2 and "invalid filter 'reference'" in proc.stderr and "until=" in proc.stderr


def test_docker_images_and_image_prune_filters_through_the_api(
    api: dict[str, str], nsp: CLI, busybox_dir: Path, tmp_path: Path
) -> None:
    """The docker CLI on the service: the same filters (the library's), in docker's words."""
    tag = uuid.uuid4().hex[:8]
    a_ref, b_ref = f"e2e/flt-api-{tag}-a:v1", f"e2e/flt-api-{tag}-b:v1"
    nsp.images.update({a_ref, b_ref})
    a, t_a = _import(nsp, root_with(busybox_dir, tmp_path / "a", f"a-{tag}\n"), a_ref, f"e2e.flt={tag}")
    b, _ = _import(
        nsp, root_with(busybox_dir, tmp_path / "b", f"b-{tag}\n"), b_ref, f"e2e.flt={tag}", after=t_a
    )

    def names(*filters: str) -> list[str]:
        proc = docker(api, "images", "--format", "{{.Repository}}:{{.Tag}}",
                      "--filter", f"reference=e2e/flt-api-{tag}-*", *filters)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return sorted(proc.stdout.split())

    assert names() == [a_ref, b_ref]
    assert names("--filter", f"before={b_ref}") == [a_ref]
    assert names("--filter", f"since={a_ref}") == [b_ref]
    assert names("--filter", f"until={t_a}.5") == [a_ref]
    assert names("--filter", f"label=e2e.flt={tag}", "--filter", "label!=e2e.flt=other") == [a_ref, b_ref]
    assert names("--filter", "label!=e2e.flt") == []
    proc = docker(api, "images", "--filter", f"since=e2e/flt-api-{tag}-gone:v1")
    assert proc.returncode != 0 and "No such image" in proc.stderr
    proc = docker(api, "images", "--filter", "dangling=maybe")
    assert proc.returncode != 0 and "invalid filter 'dangling=maybe'" in proc.stderr

    def ids() -> set[str]:
        return {i["id"] for i in nsp.json("images") if any(tag in r for r in i["refs"])}

    proc = docker(
        api, "image", "prune", "-a", "-f", "--filter", f"label=e2e.flt={tag}", "--filter", f"until={t_a}.5"
    )
    assert proc.returncode == 0 and a in proc.stdout and b not in proc.stdout, proc.stderr
    assert ids() == {b}
    proc = docker(api, "image", "prune", "-a", "-f", "--filter", f"label=e2e.flt={tag}")
    assert proc.returncode == 0 and b in proc.stdout, proc.stderr
    assert ids() == set()
