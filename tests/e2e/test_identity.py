"""Identity, listing and labels (issue 14): 64-hex IDs, every verb by name, ID or unique prefix,
ps's CONTAINER ID column, --no-trunc, --filter, -n/-l, --format, inspect -f, images --format,
-l/--label and --label-file (kept by generate), and image labels from the OCI config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import CLI, Env
from test_errors import assert_error

from nspawnctl.config import DEFAULT_SETTINGS

HEX64 = re.compile(r"[0-9a-f]{64}")


def _id(nsp: CLI, name: str) -> str:
    return nsp("inspect", "-f", "{{.Id}}", name).stdout.strip()


def _row(nsp: CLI, name: str, *args: str) -> list[str]:
    """The ps line of ``name`` split on runs of 2+ spaces (the table's column gaps)."""
    lines = nsp("ps", "-a", *args).stdout.splitlines()
    rows = [re.split(r"\s{2,}", ln) for ln in lines[1:]]
    return [r for r in rows if r[-1] == name][0]


@pytest.mark.surface
def test_every_verb_takes_the_full_id_or_a_unique_prefix(nsp: CLI, busybox: str) -> None:
    name = nsp.name("ident")
    nsp("run", "-d", "--name", name, busybox, "sh", "-c", "echo ident-up; exec sleep 600")
    cid = _id(nsp, name)
    assert HEX64.fullmatch(cid), cid
    assert nsp.json("inspect", name)[0]["Id"] == cid
    assert [c["Id"] for c in nsp.json("ps") if c["Name"] == name] == [cid]  # --json has it too

    header = nsp("ps").stdout.splitlines()[0]
    assert header.split()[:2] == ["CONTAINER", "ID"] and header.rstrip().endswith("NAMES"), header
    row = _row(nsp, name)
    assert row[0] == cid[:12] and row[1] == busybox, row
    assert _row(nsp, name, "--no-trunc")[0] == cid

    prefix = cid[:10]
    nsp.wait_logs(prefix, "ident-up")
    assert nsp("exec", prefix, "echo", "in-by-prefix").stdout == "in-by-prefix\n"
    assert nsp("inspect", "-f", "{{.Name}} {{.State.Status}}", cid).stdout == f"{name} running\n"
    assert nsp("stop", "-t", "1", prefix).stdout == f"{prefix}\n"  # echoes what it was given, as docker
    assert nsp("inspect", "-f", "{{.State.Status}}", name).stdout == "exited\n"
    nsp("start", cid)
    assert nsp("inspect", "-f", "{{.State.Running}}", prefix).stdout == "true\n"
    nsp("restart", "-t", "1", prefix)
    nsp("kill", cid[:6])
    assert "Label=" not in nsp("generate", cid[:7]).stdout
    nsp("rm", "-f", prefix)
    assert name not in nsp("ps", "-aq").stdout.split()


def test_ambiguous_prefix_names_the_candidates_and_a_missing_one_is_not_found(nsp: CLI, busybox: str) -> None:
    by_first: dict[str, str] = {}
    pair: tuple[str, str] | None = None
    for _ in range(17):  # 16 hex digits: two of 17 IDs share their first one
        name = nsp.name("amb")
        nsp("create", "--name", name, busybox, "true")
        first = _id(nsp, name)[0]
        if first in by_first:
            pair = (by_first[first], name)
            break
        by_first[first] = name
    assert pair is not None
    proc = nsp("inspect", "-f", "{{.Id}}", "--type", "container", first, check=False)
    assert proc.returncode == 2, proc.stderr
    assert_error(proc, "ambiguous", pair[0], pair[1])
    proc = nsp("rm", first, check=False)
    assert_error(proc, "ambiguous")
    assert all(n in nsp("ps", "-aq").stdout.split() for n in pair)  # nothing was removed

    ids = {_id(nsp, n) for n in by_first.values()} | {_id(nsp, pair[1])}
    missing = next(
        p for p in (f"{d}{'0' * 11}" for d in "0123456789abcdef") if not any(i.startswith(p) for i in ids)
    )
    proc = nsp("start", missing, check=False)
    assert proc.returncode == 125
    assert_error(proc, "no such container", missing)
    assert proc.stderr.splitlines()[1].startswith("hint: ")


def test_a_container_with_an_old_32_hex_id_keeps_working(nsp: CLI, busybox: str) -> None:
    name = nsp.name("old")
    nsp("create", "--name", name, busybox, "true")
    path = DEFAULT_SETTINGS / f"{name}.nspawn"
    old = "0123abcd" * 4
    text = path.read_text()
    path.write_text(re.sub(r"(?m)^Id=.*$", f"Id={old}", text))
    assert nsp("inspect", "-f", "{{.Id}}", old[:9]).stdout == f"{old}\n"
    assert _row(nsp, name)[0] == old[:12]
    nsp("start", old)
    nsp("rm", "-f", old[:9])
    assert not path.exists()


@pytest.mark.serial
def test_ps_filters_last_and_format(nsp: CLI, busybox: str) -> None:
    a, b, c = nsp.name("fa"), nsp.name("fb"), nsp.name("fc")
    nsp("run", "-d", "--name", a, "-l", "tier=web", "-l", "team=x", busybox, "sleep", "600")
    nsp("run", "--name", b, "-l", "tier=db", busybox, "sh", "-c", "exit 3", check=False)
    nsp("create", "--name", c, "--label", "tier", busybox, "true")

    def names(*filters: str, all_: bool = True) -> set[str]:
        args = ["ps", "--format", "{{.Names}}", *(["-a"] if all_ else [])]
        for f in filters:
            args += ["--filter", f]
        return set(nsp(*args).stdout.split()) & {a, b, c}

    assert names("label=tier") == {a, b, c}
    assert names("label=tier=web") == {a}
    assert names("label=tier=web", "label=tier=db") == set()  # labels: every one must hold (docker's)
    assert names("label=tier", "label=team=x") == {a}
    assert names("status=running", "status=exited") == {a, b}  # another key: its values ORed
    assert names("label=tier", "status=exited") == {b}  # two keys: ANDed
    assert names("status=running") == {a}
    assert names("status=created", all_=False) == {c}  # a status filter shows stopped ones too
    assert names("exited=3") == {b}
    assert names("exited=0") == set()
    assert names(f"name={a}") == {a}
    assert names("name=^f[bc]-") == {b, c}
    assert names(f"id={_id(nsp, c)[:8]}") == {c}
    assert names(f"ancestor={busybox}", "label=team") == {a}
    assert names("ancestor=e2e/not-this-one") == set()
    for bad, word in (
        ("colour=red", "invalid filter"),
        ("status=sleeping", "status"),
        ("name", "name=value"),
    ):
        proc = nsp("ps", "--filter", bad, check=False)
        assert proc.returncode == 2, proc.stderr
        assert_error(proc, word)

    assert nsp("ps", "-l", "--format", "{{.Names}}").stdout == f"{c}\n"
    assert nsp("ps", "-n", "2", "--format", "{{.Names}}").stdout == f"{c}\n{b}\n"

    out = nsp(
        "ps", "-a", "--filter", f"name={a}", "--format", 'table {{.ID}}\\t{{.Names}}\\t{{.Label "tier"}}'
    )
    lines = out.stdout.splitlines()
    assert re.split(r"\s{3,}", lines[0]) == ["CONTAINER ID", "NAMES", "LABEL"], lines
    assert lines[1].split() == [_id(nsp, a)[:12], a, "web"], lines
    row = json.loads(nsp("ps", "--filter", f"name={a}", "--format", "{{json .}}").stdout)
    assert row["Names"] == a and row["State"] == "running" and row["Labels"] == "team=x,tier=web", row
    assert row["ID"] == _id(nsp, a)[:12] and row["Status"].startswith("Up"), row
    full = nsp("ps", "--no-trunc", "--filter", f"name={a}", "--format", "{{.ID}}|{{.Command}}").stdout
    assert full == f'{_id(nsp, a)}|"sleep 600"\n'

    proc = nsp("ps", "--format", "{{.Nope}}", check=False)
    assert proc.returncode == 2, proc.stderr
    assert_error(proc, "can't evaluate field Nope")


@pytest.mark.surface
def test_inspect_format_on_containers_and_images(nsp: CLI, busybox: str) -> None:
    name = nsp.name("insp")
    nsp("create", "--name", name, "-l", "a=1", "-l", "b=two words", busybox, "true")
    f = '{{.State.Status}} {{.Config.Labels}} {{index .Config.Labels "b"}} {{json .HostConfig.RestartPolicy}}'
    assert nsp("inspect", "-f", f, name).stdout == 'created map[a:1 b:two words] two words {"Name":"no"}\n'
    assert json.loads(nsp("inspect", "--format", "{{json .Config.Labels}}", name).stdout) == {
        "a": "1",
        "b": "two words",
    }
    assert nsp("inspect", "-f", "{{json .NetworkSettings.Ports}}", name).stdout == "{}\n"
    proc = nsp("inspect", "-f", "{{.State.Nope}}", name, check=False)
    assert proc.returncode == 2
    assert_error(proc, "can't evaluate field Nope")
    proc = nsp("inspect", "-f", "{{if .State}}x{{end}}", name, check=False)
    assert proc.returncode == 2 and "not supported" in proc.stderr

    image_id = nsp("image", "inspect", "-f", "{{.Id}}", busybox).stdout.strip()
    assert image_id.startswith("sha256:"), image_id
    short = image_id.removeprefix("sha256:")[:12]
    assert nsp("inspect", "-f", "{{.Id}} {{json .RepoTags}}", short).stdout == f'{image_id} ["{busybox}"]\n'
    assert nsp("image", "inspect", "-f", "{{.Config.Labels}}", short).stdout == "map[]\n"
    assert nsp("inspect", "--type", "image", "-f", "{{.Id}}", busybox).stdout == f"{image_id}\n"
    assert_error(nsp("inspect", "--type", "image", "-f", "{{.Id}}", name, check=False), "no such image")
    assert json.loads(nsp("inspect", "--type", "image", name, check=False).stdout)["error"]["code"] == (
        "image-not-found"
    )
    # the JSON stays as it was (scripts read it)
    assert "defaults" in nsp("image", "inspect", busybox).stdout

    # images --format, and tag/rmi by an ID prefix (docker's)
    tag = f"e2e/ident-tag-{name[-8:]}:v1"
    nsp.images.add(tag)
    nsp("tag", short, tag)
    rows = nsp("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert f"{tag} {short}" in rows and f"{busybox} {short}" in rows, rows
    table = nsp("images", "--format", "table {{.Repository}}\\t{{.ID}}").stdout.splitlines()
    assert re.split(r"\s{3,}", table[0]) == ["REPOSITORY", "IMAGE ID"], table
    assert json.loads(nsp("images", "--format", "{{json .}}").stdout.splitlines()[0]).keys() >= {"ID", "Size"}
    assert_error(nsp("images", "--format", "{{.Bogus}}", check=False), "can't evaluate field Bogus")


@pytest.mark.serial
def test_labels_from_flags_file_and_image_survive_generate(nsp: CLI, oci: Env, workdir: Path) -> None:
    from test_oci import pull

    ref = oci.ref("app")
    pull(nsp, oci, ref)
    labels = workdir / "labels.txt"
    labels.write_text("# a comment\n\nfrom.file=yes\nshared=file\n")
    name = nsp.name("lab")
    nsp(
        "create", "--name", name, "--label-file", str(labels), "-l", "shared=flag",
        "-l", "org.example.role=mine", "-l", "spaced=a b 'c'", "-l", "multi=line1\nline2 \\", ref,
    )  # fmt: skip
    want = {"from.file": "yes", "shared": "flag", "org.example.role": "mine", "spaced": "a b 'c'"}
    want["multi"] = "line1\nline2 \\"  # as an image's multi-line description label: escaped in Label=
    assert nsp.json("inspect", name)[0]["Config"]["Labels"] == want  # the flag wins over the image's
    other = nsp.name("lab")
    nsp("create", "--name", other, ref)
    assert nsp.json("inspect", other)[0]["Config"]["Labels"] == {"org.example.role": "app"}
    text = nsp("generate", name).stdout
    assert "Label=shared=flag" in text and "Label=from.file=yes" in text, text
    defs = workdir / f"defs-{name}"
    defs.mkdir()
    (defs / f"{name}.nspawn").write_text(text)
    nsp("rm", name)
    assert nsp("apply", str(defs)).stdout == f"{name} created\n"
    assert nsp.json("inspect", name)[0]["Config"]["Labels"] == want
    assert nsp("generate", name).stdout == text
    assert_error(nsp("create", "-l", "=v", ref, check=False), "invalid label")
    assert_error(
        nsp("create", "--label-file", str(workdir / "none"), ref, check=False), "cannot read label file"
    )


def test_the_newer_verbs_take_an_id_prefix_too(nsp: CLI, busybox: str) -> None:
    """wait, top, update, port, stats, rename and the path guard: the same lookup as every verb."""
    name = nsp.name("ident2")
    nsp("run", "-d", "--name", name, "-p", "80", busybox, "sh", "-c", "exec sleep 600")
    prefix = _id(nsp, name)[:10]
    assert "sleep 600" in nsp("top", prefix).stdout
    nsp("update", "--pids-limit", "77", prefix)
    assert nsp("inspect", "-f", "{{.HostConfig.PidsLimit}}", name).stdout == "77\n"
    assert (
        nsp("port", prefix, "80")
        .stdout.strip()
        .endswith(nsp.json("inspect", name)[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    )
    assert name in nsp("stats", "--no-stream", prefix).stdout
    nsp("kill", prefix)
    assert nsp("wait", prefix).stdout.strip() == "137"
    renamed = nsp.name("ident2-new")
    nsp("rename", prefix, renamed)
    assert nsp("inspect", "-f", "{{.Name}}", prefix).stdout == f"{renamed}\n"
    for bad in ("../../etc/passwd", "a/b", ".."):
        out = nsp("stop", bad, check=False)
        assert out.returncode == 125 and "no such container" in out.stderr, out
