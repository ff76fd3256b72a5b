"""Picked host ports (-p CTRPORT, -p IP::CTRPORT, -P) answering on the host, ``port``, inspect's
NetworkSettings.Ports; images pulled by run (--pull); named volumes kept across containers,
writable for a non-root user under a user namespace, refused while in use, pruned; generate ->
rm -> apply recreating a container that uses them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, Env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from demo import make_busybox_root

VOLUMES = Path("/var/lib/nspawnctl/volumes")
# ends on SIGTERM (httpd as PID 1 would ignore it, and each stop would wait out its 10 s timeout)
HTTPD = (
    "trap 'exit 0' TERM; mkdir -p /www && echo hello from $0 > /www/index.html; httpd -f -p 80 -h /www & wait"
)
TWO = (
    "mkdir -p /www && echo hello from $0 > /www/index.html && httpd -p 81 -h /www "
    "&& exec httpd -f -p 80 -h /www"
)


def fetch(url: str, timeout: float = 15) -> str:
    """GET ``url``, retrying while the payload's server is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def web(oci: Env) -> str:
    """A registry image (pushed once, pulled by the tests' ``run``): busybox, ExposedPorts 80/tcp
    and 81/tcp, and /data owned by nobody (65534) holding /data/seed."""
    import ocibuild as ob

    layout = ob.Layout(oci.workdir / f"ports-oci-{uuid.uuid4().hex[:6]}")
    base = ob.Layer(ob.LayerSpec().tree(make_busybox_root(oci.workdir / "ports-bb")), "gzip")
    data = ob.Layer(
        ob.LayerSpec()
        .dir("data", 0o755, uid=65534, gid=65534)
        .file("data/seed", "seeded\n", 0o644, uid=65534, gid=65534),
        "gzip",
    )
    config = {
        "Cmd": ["/bin/sh", "-c", TWO, "web"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "ExposedPorts": {"80/tcp": {}, "81/tcp": {}},
    }
    img = layout.image("web", [base, data], config)
    layout.save()
    repo = f"ports/web-{uuid.uuid4().hex[:6]}"
    ob.push(layout, img, oci.reg.url(""), repo, "v1", ca=oci.tls.ca)
    return oci.reg.ref(repo, "v1")


@pytest.fixture
def vols(nsp: CLI) -> Iterator[list[str]]:
    """Volume names to remove after the test (once its containers are gone)."""
    names: list[str] = []
    yield names
    nsp.cleanup()
    for n in names:
        nsp("volume", "rm", "-f", n, check=False)


def ports_of(nsp: CLI, name: str) -> dict[str, str]:
    """``port NAME`` as {"80/tcp": "0.0.0.0:32768"}, checking docker's line format."""
    out = nsp("port", name).stdout
    lines = [line.split(" -> ") for line in out.splitlines()]
    assert all(len(parts) == 2 for parts in lines), out
    return dict((a, b) for a, b in lines)


def test_run_pulls_the_missing_image_and_publish_all_answers(nsp: CLI, web: str, oci: Env) -> None:
    name = nsp.name("pa")
    nsp.images.add(web)
    assert nsp("image", "inspect", web, check=False).returncode != 0  # not here yet
    proc = nsp("run", "-d", "--ca-cert", oci.ca, "-P", "--name", name, web)
    assert proc.stdout.strip() == name
    # the pull's own report, on stderr ("up to date": the same content from an earlier session; a
    # layer "already here": the same base layer, pulled by a test running meanwhile)
    report = "".join(line for line in proc.stderr.splitlines(True) if not line.endswith(": already here\n"))
    assert f"Pulling {web} (--pull missing)\nVerified: digests (sha256) over TLS\n" in report
    assert f"Pulled {web}" in proc.stderr or f"Image is up to date for {web}" in proc.stderr
    assert web.rsplit(":", 1)[0] in nsp("images").stdout
    ports = ports_of(nsp, name)
    assert sorted(ports) == ["80/tcp", "81/tcp"]
    host_ports = {k: int(v.removeprefix("0.0.0.0:")) for k, v in ports.items()}
    assert len(set(host_ports.values())) == 2
    for key, port in host_ports.items():
        assert fetch(f"http://127.0.0.1:{port}/index.html") == "hello from web\n", key
    info = nsp.json("inspect", name)[0]
    assert info["NetworkSettings"]["Ports"] == {
        k: [{"HostIp": "0.0.0.0", "HostPort": str(p)}] for k, p in host_ports.items()
    }
    assert nsp("port", name, "81").stdout == f"0.0.0.0:{host_ports['81/tcp']}\n"
    assert nsp("port", name, "81/tcp").stdout == f"0.0.0.0:{host_ports['81/tcp']}\n"
    missing = nsp("port", name, "82", check=False)
    assert missing.returncode != 0 and "no public port '82/tcp'" in missing.stderr
    # already here: the second run pulls nothing
    second = nsp.name("pa")
    proc = nsp("create", "--ca-cert", oci.ca, "-p", "80", "--name", second, web)
    assert "Pull" not in proc.stderr
    ports2 = nsp.json("inspect", second)[0]["NetworkSettings"]["Ports"]
    assert ports2["81/tcp"] is None  # exposed, not published: null, as docker's
    (binding,) = ports2["80/tcp"]
    assert int(binding["HostPort"]) not in host_ports.values()  # recorded ports are never picked twice


def test_pull_never_and_local_names_are_not_pulled(nsp: CLI, oci: Env) -> None:
    name = nsp.name("pn")
    ref = oci.reg.ref("ports/never-pulled", "v1")
    proc = nsp("run", "--pull", "never", "--ca-cert", oci.ca, "--name", name, ref, "true", check=False)
    assert proc.returncode == 125
    assert re.search(r"^nspawnctl: error: no such image: .*never-pulled", proc.stderr, re.M), proc.stderr
    assert "hint:" in proc.stderr
    assert name not in nsp("ps", "-a").stdout
    proc = nsp("run", "--name", name, f"e2e/nothing-{uuid.uuid4().hex[:6]}", "true", check=False)
    assert proc.returncode == 125 and "no such image" in proc.stderr and "Pull" not in proc.stderr
    proc = nsp("run", "--pull", "sometimes", "e2e/x", "true", check=False)
    assert proc.returncode == 2 and "invalid --pull" in proc.stderr
    # a pull that is refused (nothing at that reference) is a clear error, and nothing is made
    proc = nsp(
        "run", "--ca-cert", oci.ca, "--name", name, oci.reg.ref("ports/absent", "v9"), "true", check=False
    )
    assert proc.returncode == 125 and "nspawnctl: error:" in proc.stderr
    assert name not in nsp("ps", "-a").stdout


def test_picked_ports_answer_and_are_recorded(nsp: CLI, busybox: str) -> None:
    name = nsp.name("pp")
    nsp("run", "-d", "--name", name, "-p", "80", "-p", "127.0.0.1::80", busybox, "sh", "-c", HTTPD, name)
    out = nsp("port", name).stdout.splitlines()
    assert (
        len(out) == 2
        and out[0].startswith("80/tcp -> 0.0.0.0:")
        and out[1].startswith("80/tcp -> 127.0.0.1:")
    )
    any_port = int(out[0].rsplit(":", 1)[1])
    local_port = int(out[1].rsplit(":", 1)[1])
    assert fetch(f"http://127.0.0.1:{any_port}/index.html") == f"hello from {name}\n"
    assert fetch(f"http://127.0.0.1:{local_port}/index.html") == f"hello from {name}\n"
    assert nsp.json("inspect", name)[0]["NetworkSettings"]["Ports"] == {
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": str(any_port)},
            {"HostIp": "127.0.0.1", "HostPort": str(local_port)},
        ]
    }
    # stop and start: the same ports again (they are in the definition)
    nsp("stop", name)
    nsp("start", name)
    assert nsp("port", name).stdout.splitlines() == out
    assert fetch(f"http://127.0.0.1:{any_port}/index.html") == f"hello from {name}\n"


def test_creates_at_once_never_pick_the_same_port(nsp: CLI, busybox: str) -> None:
    names = [nsp.name("race") for _ in range(4)]
    procs = [
        subprocess.Popen(
            ["nspawnctl", "create", "--name", n, "-p", "80", busybox, "true"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    picked = [nsp("port", n, "80").stdout.strip() for n in names]
    assert len(set(picked)) == 4, picked


def test_named_volume_outlives_its_containers_and_is_shared(nsp: CLI, busybox: str, vols: list[str]) -> None:
    vol = f"v{uuid.uuid4().hex[:8]}"
    vols.append(vol)
    assert nsp("volume", "create", "--label", "team=ports", vol).stdout == f"{vol}\n"
    assert nsp("volume", "create", vol).stdout == f"{vol}\n"  # there already: kept as it is
    assert vol in nsp("volume", "ls", "-q").stdout.split()
    assert re.search(rf"^local +{vol}$", nsp("volume", "ls").stdout, re.M)
    (info,) = json.loads(nsp("volume", "inspect", vol).stdout)
    assert info["Name"] == vol and info["Driver"] == "local" and info["Labels"] == {"team": "ports"}
    assert info["Mountpoint"] == str(VOLUMES / vol) and info["Scope"] == "local"
    show = subprocess.run(["btrfs", "subvolume", "show", info["Mountpoint"]], capture_output=True)
    assert show.returncode == 0  # a btrfs subvolume of its own
    writer = nsp.name("vw")
    nsp("run", "--name", writer, "-v", f"{vol}:/data", busybox, "sh", "-c", "echo kept > /data/f")
    nsp("rm", writer)
    assert (VOLUMES / vol / "f").read_text() == "kept\n"
    assert nsp("run", "--rm", "-v", f"{vol}:/data:ro", busybox, "cat", "/data/f").stdout == "kept\n"
    # stored with the container's own IDs (root is 0), whatever range the user namespace picked
    assert (VOLUMES / vol / "f").stat().st_uid == 0


def test_volume_made_by_run_is_writable_for_a_non_root_user(
    nsp: CLI, busybox: str, web: str, oci: Env, vols: list[str]
) -> None:
    # docker's copy-up: the fresh volume gets the image's /data (owned by nobody) and its seed
    vol = f"v{uuid.uuid4().hex[:8]}"
    vols.append(vol)
    nsp.images.add(web)
    proc = nsp(
        "run", "--rm", "--ca-cert", oci.ca, "-u", "nobody", "-v", f"{vol}:/data", web,
        "sh", "-c", "echo by-nobody > /data/mine && cat /data/seed && id -u",
    )  # fmt: skip
    assert proc.stdout == "seeded\n65534\n"
    assert vol in nsp("volume", "ls", "-q").stdout.split()
    st = (VOLUMES / vol / "mine").stat()
    assert (st.st_uid, (VOLUMES / vol).stat().st_uid) == (65534, 65534)
    # a volume of an image without that directory: root inside makes it nobody's, nobody writes
    vol2 = f"v{uuid.uuid4().hex[:8]}"
    vols.append(vol2)
    nsp("run", "--rm", "-v", f"{vol2}:/srv/v", busybox, "chown", "nobody", "/srv/v")
    proc = nsp(
        "run", "--rm", "-u", "nobody", "-v", f"{vol2}:/srv/v", busybox, "sh", "-c", "echo x > /srv/v/y"
    )
    assert (VOLUMES / vol2 / "y").read_text() == "x\n"
    refused = nsp(
        "run", "--rm", "-u", "nobody", "-v", f"{vol}:/data", web, "touch", "/seed-not-mine", check=False
    )
    assert refused.returncode != 0  # the root of the image stays root's


@pytest.mark.serial
def test_volume_in_use_is_refused_even_with_force_then_pruned(
    nsp: CLI, busybox: str, vols: list[str]
) -> None:
    used, unused = f"v{uuid.uuid4().hex[:8]}", f"v{uuid.uuid4().hex[:8]}"
    vols += [used, unused]
    nsp("volume", "create", unused)
    ctr = nsp.name("vu")
    nsp("create", "--name", ctr, "-v", f"{used}:/data", busybox, "true")  # created, never started
    for args in (["volume", "rm", used], ["volume", "rm", "-f", used]):
        proc = nsp(*args, check=False)
        assert proc.returncode == 125, proc.stderr
        assert f"nspawnctl: error: volume {used} is in use by container {ctr}" in proc.stderr
        assert "hint:" in proc.stderr
    assert (VOLUMES / used).is_dir()
    assert nsp("volume", "inspect", used).stdout.count(ctr) == 1  # UsedBy
    proc = nsp("volume", "prune", check=False)  # no terminal, no --force: refused
    assert proc.returncode != 0 and unused in nsp("volume", "ls", "-q").stdout
    out = nsp("volume", "prune", "-f").stdout  # named volumes are kept without -a, as docker's
    assert unused not in out and (VOLUMES / unused).is_dir()
    assert nsp("volume", "prune", "-f", "-a", "--filter", "label=nosuch").stdout.count(unused) == 0
    out = nsp("volume", "prune", "-f", "-a").stdout
    assert "Deleted Volumes:\n" in out and unused in out and used not in out
    assert not (VOLUMES / unused).exists() and (VOLUMES / used).is_dir()
    nsp("rm", ctr)
    out = nsp("system", "prune", "-f", "--volumes").stdout
    assert used in out and not (VOLUMES / used).exists()
    assert nsp("volume", "rm", "-f", used).returncode == 0  # gone already: no error with -f
    proc = nsp("volume", "rm", used, check=False)
    assert proc.returncode == 125 and "no such volume" in proc.stderr


def test_generate_recreates_ports_and_volumes(nsp: CLI, busybox: str, vols: list[str], workdir: Path) -> None:
    vol = f"v{uuid.uuid4().hex[:8]}"
    vols.append(vol)
    name = nsp.name("gpv")
    nsp(
        "run", "-d", "--name", name, "-p", "80", "-v", f"{vol}:/www", busybox,
        "sh", "-c", "echo from-volume > /www/index.html && exec httpd -f -p 80 -h /www",
    )  # fmt: skip
    (mapping,) = nsp("port", name).stdout.splitlines()
    port = int(mapping.rsplit(":", 1)[1])
    assert fetch(f"http://127.0.0.1:{port}/index.html") == "from-volume\n"
    before = nsp.json("inspect", name)[0]
    text = nsp("generate", name).stdout
    assert f"Publish={port}:80/tcp" in text and f"{VOLUMES / vol}:/www" in text
    defs = workdir / f"defs-{uuid.uuid4().hex[:6]}"
    defs.mkdir()
    (defs / f"{name}.nspawn").write_text(text)
    nsp("rm", "-f", name)
    assert (VOLUMES / vol / "index.html").read_text() == "from-volume\n"
    assert nsp("apply", str(defs)).stdout == f"{name} created\n"
    assert fetch(f"http://127.0.0.1:{port}/index.html") == "from-volume\n"
    after = nsp.json("inspect", name)[0]
    for key in ("Image", "Command", "Config"):
        assert after[key] == before[key], key
    assert after["NetworkSettings"]["Ports"] == before["NetworkSettings"]["Ports"]
    assert nsp("generate", name).stdout == text


@pytest.mark.serial
def test_a_refused_run_makes_no_volume_and_foo_json_is_a_name_of_its_own(
    nsp: CLI, busybox: str, vols: list[str]
) -> None:
    # review F5: the volumes were made before the request was checked, and kept
    vol = f"v{uuid.uuid4().hex[:8]}"
    vols.append(vol)
    before = set(nsp("volume", "ls", "-q").stdout.split())
    for _ in range(2):
        proc = nsp(
            "run", "--rm", "-v", f"{vol}:/d", "--mount", "type=volume,target=/cache",
            "--entrypoint", "", busybox, check=False,
        )  # fmt: skip
        assert proc.returncode != 0 and proc.stderr.startswith("nspawnctl: error: an empty --entrypoint")
        assert "hint:" in proc.stderr
    assert set(nsp("volume", "ls", "-q").stdout.split()) == before
    assert not (VOLUMES / vol).exists()
    # review L5: volume NAME's record was NAME.json, the path of volume NAME.json
    vols += [f"{vol}.json"]
    nsp("volume", "create", "--label", "k=1", vol)
    nsp("volume", "create", "--label", "k=2", f"{vol}.json")
    assert {vol, f"{vol}.json"} <= set(nsp("volume", "ls", "-q").stdout.split())
    (a,) = json.loads(nsp("volume", "inspect", vol).stdout)
    (b,) = json.loads(nsp("volume", "inspect", f"{vol}.json").stdout)
    assert (a["Labels"], b["Labels"]) == ({"k": "1"}, {"k": "2"})


@pytest.mark.serial
def test_run_rm_removes_its_anonymous_volumes_and_keeps_named_ones(
    nsp: CLI, busybox: str, vols: list[str]
) -> None:
    """docker's --rm: `-v /path` and `--mount type=volume` without a source are anonymous volumes
    (labelled com.docker.volume.anonymous) that go with the container; a named one stays."""
    named = f"v{uuid.uuid4().hex[:8]}"
    vols.append(named)
    before = set(nsp("volume", "ls", "-q").stdout.split())
    out = nsp(
        "run", "--rm", "-v", "/anon", "--mount", "type=volume,dst=/m", "-v", f"{named}:/n", busybox,
        "sh", "-c", "touch /anon/a /m/b /n/c && echo ok",
    ).stdout  # fmt: skip
    assert out == "ok\n"
    assert set(nsp("volume", "ls", "-q").stdout.split()) == before | {named}
    assert (VOLUMES / named / "c").is_file()
    # detached --rm: removed by the unit's stop hook, the anonymous volume with it; the payload
    # runs until the test lets it end (a timed one could be gone before the next command ran)
    ctr = nsp.name("anon")
    wait_go = "until [ -e /anon/go ]; do sleep 0.1; done"
    nsp("run", "-d", "--rm", "--name", ctr, "-v", "/anon", busybox, "sh", "-c", wait_go)
    anon = [v for v in nsp("volume", "ls", "-q").stdout.split() if v not in before | {named}]
    assert len(anon) == 1 and len(anon[0]) == 64, anon
    labels = json.loads(nsp("volume", "inspect", anon[0]).stdout)[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    # it ends: its removal may be over before a `wait` looks, and (as dockerd's) the container
    # is gone before its anonymous volumes are
    (VOLUMES / anon[0] / "go").touch()
    deadline = time.monotonic() + 60
    while ctr in nsp("ps", "-a", "-q").stdout.split() or anon[0] in nsp("volume", "ls", "-q").stdout.split():
        assert time.monotonic() < deadline, f"{ctr} or its volume {anon[0]} was not removed"
        time.sleep(0.1)
    assert set(nsp("volume", "ls", "-q").stdout.split()) == before | {named}
    # without --rm the anonymous volume outlives its container (docker's rm without -v)
    kept = nsp.name("anon")
    nsp("run", "--name", kept, "-v", "/anon", busybox, "true")
    anon = [v for v in nsp("volume", "ls", "-q").stdout.split() if v not in before | {named}]
    vols += anon
    nsp("rm", kept)
    assert len(anon) == 1 and anon[0] in nsp("volume", "ls", "-q").stdout.split()
    # rm -v takes the anonymous one along, never a named one
    gone = nsp.name("anon")
    nsp("run", "--name", gone, "-v", "/anon", "-v", f"{named}:/n", busybox, "true")
    anon2 = [v for v in nsp("volume", "ls", "-q").stdout.split() if v not in before | {named, *anon}]
    assert len(anon2) == 1, anon2
    nsp("rm", "-v", gone)
    left = set(nsp("volume", "ls", "-q").stdout.split())
    assert anon2[0] not in left and named in left and anon[0] in left


@pytest.mark.serial
def test_volume_prune_racing_creates_never_takes_a_volume_a_container_got(
    nsp: CLI, busybox: str, vols: list[str]
) -> None:
    names = [f"v{uuid.uuid4().hex[:8]}" for _ in range(4)]
    vols += names
    pruner = subprocess.Popen(
        ["sh", "-c", "while :; do nspawnctl volume prune -f >/dev/null 2>&1; done"], start_new_session=True
    )
    try:
        ctrs = []
        for vol in names:
            ctrs.append(nsp.name("race"))
            nsp("create", "--name", ctrs[-1], "-v", f"{vol}:/data", busybox, "true")
    finally:
        os.killpg(pruner.pid, signal.SIGKILL)
        pruner.wait()
    for vol, ctr in zip(names, ctrs, strict=True):
        assert (VOLUMES / vol).is_dir(), f"{vol} of {ctr} was pruned"
        assert json.loads(nsp("volume", "inspect", vol).stdout)[0]["UsedBy"] == [ctr]
