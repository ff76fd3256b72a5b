"""Registry pulls against real CNCF distribution registries that the tests start and fill.

The images are built by hand (tests/e2e/ocibuild.py) so that every layer, whiteout and digest is
known, pushed byte for byte, and pulled with the nspawnctl CLI over TLS with a CA the tests make;
Basic auth uses the registry's htpasswd and the Bearer flow a token server of the tests' own.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, Env, subvolumes
from test_errors import assert_error, pool_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ocibuild as ob
from demo import make_busybox_root
from registry import start_registry
from tokenserver import TokenServer

LAYERS = Path("/var/lib/nspawnctl/layers")
AUTH = Path("/etc/nspawnctl/auth.json")


def layers_snapshot() -> tuple[tuple[str, list[str], list[str]], list[str]]:
    return pool_snapshot(), sorted(os.listdir(LAYERS)) if LAYERS.is_dir() else []


def pull(nsp: CLI, env: Env, ref: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = nsp("pull", "--ca-cert", env.ca, *args, ref, check=check)
    if proc.returncode == 0:
        # the name, not the ID it prints: the standard images are the same bytes, so the same ID,
        # in every session's registry (an xdist worker's too), and `rmi -f ID` removes all names
        nsp.images.add(ref.removeprefix("docker://"))
    return proc


def inspect(nsp: CLI, ref: str) -> dict[str, object]:
    data = json.loads(nsp("image", "inspect", ref).stdout)
    assert isinstance(data, list) and len(data) == 1
    return data[0]  # type: ignore[no-any-return]


@pytest.mark.serial
def test_multi_layer_image_is_exactly_what_its_layers_say(nsp: CLI, oci: Env) -> None:
    ref = oci.ref("app")
    proc = pull(nsp, oci, ref)
    app = oci.std.app
    assert proc.stdout.strip() == app.config_digest
    info = inspect(nsp, ref)
    assert info["id"] == app.config_digest and info["layers"] == app.chain_ids
    assert ref in info["refs"]  # type: ignore[operator]
    # The container's filesystem is a snapshot of the top layer: compare it with the layers' sum.
    name = nsp.name("oci")
    nsp("create", "--name", name, ref)
    root = Path("/var/lib/machines") / name
    actual = ob.tree_of(root)
    if "usr" not in app.tree:  # create adds an empty /usr: nspawn refuses a root without one
        assert actual.pop("usr") == ob.Node("dir", 0o755)
    assert ob.diff_trees(app.tree, actual) == []
    assert not (root / "etc/removed-later").exists() and not (root / "opt/gone").exists()
    assert sorted(os.listdir(root / "srv/old")) == ["new"]  # opaque: lower a, b gone; this layer's stays
    assert (root / "app/data2.txt").is_file()  # a whiteout only removes lower content
    for a, b in app.hardlinks:
        assert (root / a).stat().st_ino == (root / b).stat().st_ino, (a, b)
    st = (root / "app/setuid").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    owned = (root / "app/owned").stat()
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1000, 1000, 0o600)


@pytest.mark.serial
@pytest.mark.surface
def test_run_uses_entrypoint_cmd_env_and_workdir(nsp: CLI, oci: Env) -> None:
    ref = oci.ref("app")
    pull(nsp, oci, ref)
    out = nsp("run", "--rm", ref).stdout
    assert "app-entrypoint args:default-arg user:0:0 cwd:/app greeting:hello-env" in out
    out = nsp("run", "--rm", ref, "one", "two").stdout  # ARGS replace Cmd, the Entrypoint stays
    assert "app-entrypoint args:one two " in out
    out = nsp("run", "--rm", "--entrypoint", "/bin/cat", ref, "/app/data.txt").stdout
    assert out.strip() == "data"
    proc = nsp(
        "run", "--rm", "--entrypoint", "/bin/sh", ref, "-c", "test ! -e /etc/removed-later; ls /srv/old"
    )
    assert proc.stdout.split() == ["new"]
    config = inspect(nsp, ref)["defaults"]
    assert config["entrypoint"] == ["/app/run.sh"] and config["command"] == ["default-arg"]  # type: ignore[index]
    assert "8080/tcp" in config["ports"] and config["labels"] == {"org.example.role": "app"}  # type: ignore[index]


@pytest.mark.serial
def test_image_with_only_cmd_and_docker_schema2(nsp: CLI, oci: Env) -> None:
    pull(nsp, oci, oci.ref("bb"))
    assert nsp("run", "--rm", oci.ref("bb")).stdout.strip() == "hello-from-oci"
    pull(nsp, oci, f"docker://{oci.ref('docker')}")
    assert nsp("run", "--rm", oci.ref("docker")).stdout.strip() == "docker schema2"


@pytest.mark.serial
def test_multi_arch_index_resolves_to_the_host_platform(nsp: CLI, oci: Env) -> None:
    host = ob.host_platform()
    for tag in ("multi", "multi-docker"):
        ref = oci.ref(tag)
        pull(nsp, oci, ref)
        assert nsp("run", "--rm", ref).stdout.strip() == host
        origin = inspect(nsp, ref)["origin"]
        assert origin["platform"] == host and origin["index"] == oci.reg.tag_digest(f"acc/{tag}", "v1")  # type: ignore[index]
    # --platform picks another entry (not runnable here, but stored and recorded)
    other = "linux/s390x"
    pull(nsp, oci, oci.ref("multi"), "--platform", other)
    info = inspect(nsp, oci.ref("multi"))
    assert info["id"] == oci.std.multi.for_platform(other).config_digest
    assert (Path(str(info["path"])) / "etc/platform").read_text().strip() == other
    proc = pull(nsp, oci, oci.ref("multi"), "--platform", "linux/mips64le", check=False)
    assert_error(proc, "linux/mips64le")
    assert "--platform" in proc.stderr


@pytest.mark.serial
def test_shared_base_layers_are_downloaded_and_stored_once(nsp: CLI, oci: Env) -> None:
    app, app2 = oci.std.app, oci.std.app2
    pull(nsp, oci, oci.ref("app"))
    mark = oci.reg.mark()
    pull(nsp, oci, oci.ref("app2"))
    fetched = {r.path.rsplit("/", 1)[1] for r in oci.reg.blob_gets(since=mark)}
    # only app2's own layer and its config: the two shared base layers came from the store
    assert fetched == {app2.layers[2].digest, app2.config_digest}, fetched
    assert app.chain_ids[:2] == app2.chain_ids[:2]
    listing = subvolumes()
    for chain in {*app.chain_ids, *app2.chain_ids}:
        assert listing.count(f"layers/{chain.split(':')[1]}") == 1, chain
    # each image is a link to its top layer: containers snapshot it, nothing is copied
    assert os.readlink(f"/var/lib/nspawnctl/images/{app2.config_digest.split(':')[1]}") == (
        f"../layers/{app2.chain_ids[-1].split(':')[1]}"
    )
    rows = [line.split() for line in nsp("images").stdout.splitlines()]
    assert rows[0][-2:] == ["SHARED", "SIZE"]
    row = next(r for r in rows if r[0] == oci.ref("app2").rsplit(":", 1)[0])
    assert row[-1] != "0B"
    # removing one image keeps what the other still uses
    nsp("rmi", oci.ref("app2"))
    assert (LAYERS / app.chain_ids[1].split(":")[1]).is_dir()
    assert not (LAYERS / app2.chain_ids[2].split(":")[1]).exists()
    assert nsp("run", "--rm", oci.ref("app")).returncode == 0


@pytest.mark.serial
def test_pull_by_digest_and_short_local_names(nsp: CLI, oci: Env) -> None:
    digest = oci.std.bb.digest
    ref = oci.reg.ref("acc/bb", digest)
    proc = pull(nsp, oci, ref)
    assert proc.stdout.strip() == oci.std.bb.config_digest
    assert ref in inspect(nsp, ref)["refs"]  # type: ignore[operator]
    assert nsp("run", "--rm", ref).stdout.strip() == "hello-from-oci"
    wrong = oci.reg.ref("acc/bb", "sha256:" + "0" * 64)
    assert_error(pull(nsp, oci, wrong, check=False), "no such image")


@pytest.mark.serial
def test_plain_http_registry_needs_tls_verify_false(nsp: CLI, oci: Env) -> None:
    with start_registry(oci.workdir / "reg-plain", storage=oci.reg.storage) as plain:
        ref = plain.ref("acc/bb", "v1")
        before = layers_snapshot()
        proc = nsp("pull", ref, check=False)
        assert_error(proc)
        assert "--tls-verify=false" in proc.stderr
        assert layers_snapshot() == before
        proc = nsp("pull", "--tls-verify=false", "--json", ref)
        data = json.loads(proc.stdout)
        nsp.images.add(data["id"])
        assert data["verified"] == "digests (sha256); TLS not verified (--tls-verify=false)"


@pytest.mark.serial
def test_unknown_tag_and_repository(nsp: CLI, oci: Env) -> None:
    before = layers_snapshot()
    assert_error(pull(nsp, oci, oci.ref("bb", "no-such-tag"), check=False), "no such image", "no-such-tag")
    assert_error(pull(nsp, oci, oci.reg.ref("acc/nothing", "v1"), check=False), "acc/nothing")
    assert layers_snapshot() == before


@pytest.mark.serial
@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupt_blob_is_refused_and_nothing_is_left(nsp: CLI, oci: Env, how: str) -> None:
    layout = ob.Layout(oci.workdir / f"oci-corrupt-{how}")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    mid = ob.Layer(ob.LayerSpec().file(f"etc/{how}", f"{how} {time.time()}\n"), "gzip")
    top = ob.Layer(ob.LayerSpec().file("etc/top", f"top {time.time()}\n"), "zstd")
    img = layout.image(f"c-{how}", [base, mid, top], {"Cmd": ["true"]})
    ob.push(layout, img, oci.reg.url(""), f"acc/corrupt-{how}", "v1", ca=oci.tls.ca)
    original = oci.reg.corrupt_blob(img.layers[2].digest, how)
    before = layers_snapshot()
    try:
        proc = pull(nsp, oci, oci.reg.ref(f"acc/corrupt-{how}", "v1"), check=False)
        assert_error(proc, img.layers[2].digest)
        assert "digest" in proc.stderr.splitlines()[0] or "bytes" in proc.stderr.splitlines()[0]
        assert layers_snapshot() == before  # the middle layer it had applied is gone again
        assert not list(Path("/var/lib/nspawnctl/layers").glob(".tmp-*"))
    finally:
        oci.reg.restore_blob(img.layers[2].digest, original)
    pull(nsp, oci, oci.reg.ref(f"acc/corrupt-{how}", "v1"))


@pytest.mark.serial
def test_run_and_create_refuse_a_corrupt_blob_as_pull_does_and_leave_nothing(nsp: CLI, oci: Env) -> None:
    """The pull that ``run``/``create`` start checks digests as ``pull`` does: a layer whose bytes do
    not match its digest is refused with pull's error, exit 125, no container and no image."""
    layout = ob.Layout(oci.workdir / "oci-corrupt-run")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    top = ob.Layer(ob.LayerSpec().file("etc/run", f"run {time.time()}\n"), "gzip")
    img = layout.image("c-run", [base, top], {"Cmd": ["true"]})
    ob.push(layout, img, oci.reg.url(""), "acc/corrupt-run", "v1", ca=oci.tls.ca)
    ref = oci.reg.ref("acc/corrupt-run", "v1")
    original = oci.reg.corrupt_blob(img.layers[1].digest, "flip")
    before = layers_snapshot()
    try:
        refused = pull(nsp, oci, ref, check=False)
        assert refused.returncode == 125, refused
        assert_error(refused, img.layers[1].digest)
        error = refused.stderr.splitlines()[0]
        for cmd in (["run", "--rm"], ["create"]):
            name = nsp.name("corrupt")
            proc = nsp(*cmd, "--ca-cert", oci.ca, "--name", name, ref, "true", check=False)
            assert proc.returncode == 125, (cmd, proc)
            assert f"Pulling {ref} (--pull missing)" in proc.stderr, proc.stderr
            assert error in proc.stderr.splitlines(), (cmd, proc.stderr)
            assert name not in nsp("ps", "-a", "-q").stdout.split()
            assert layers_snapshot() == before, cmd
        assert nsp("image", "inspect", ref, check=False).returncode != 0
    finally:
        oci.reg.restore_blob(img.layers[1].digest, original)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_top_layer_without_tar_trailer_pulls_and_runs(
    nsp: CLI, oci: Env, compression: ob.Compression
) -> None:
    """`umoci insert` writes layers that end right after the last member's data (no padding, no
    end-of-archive marker); Go's archive/tar, hence podman and containerd, accept them."""
    layout = ob.Layout(oci.workdir / f"oci-notrailer-{compression}")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    content = f"inserted {compression} {time.time()}\n"
    top = ob.Layer(ob.LayerSpec().file("etc/inserted", content), compression, end="no-trailer")
    img = layout.image(f"notrailer-{compression}", [base, top], {"Cmd": ["cat", "/etc/inserted"]})
    tar = ob.end_tar(top.spec.tar(), "no-trailer")
    assert len(tar) % 512 != 0 and img.layers[1].diff_id == ob.sha256(tar)
    ob.push(layout, img, oci.reg.url(""), f"acc/notrailer-{compression}", "v1", ca=oci.tls.ca)
    ref = oci.reg.ref(f"acc/notrailer-{compression}", "v1")
    assert pull(nsp, oci, ref).stdout.strip().splitlines()[-1] == img.config_digest
    assert inspect(nsp, ref)["layers"] == img.chain_ids  # the diff ID is that of the bytes as served
    assert nsp("run", "--rm", ref).stdout == content


@pytest.mark.serial
def test_layer_cut_inside_a_member_is_refused_and_nothing_is_left(nsp: CLI, oci: Env) -> None:
    layout = ob.Layout(oci.workdir / "oci-cutdata")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    mid = ob.Layer(ob.LayerSpec().file("etc/mid", f"mid {time.time()}\n"), "gzip")
    top = ob.Layer(ob.LayerSpec().file("etc/cut", f"cut {time.time()}\n"), "gzip", end="cut-data")
    img = layout.image("cutdata", [base, mid, top], {"Cmd": ["true"]})
    # every digest matches: only the tar itself is short
    ob.push(layout, img, oci.reg.url(""), "acc/cutdata", "v1", ca=oci.tls.ca)
    before = layers_snapshot()
    proc = pull(nsp, oci, oci.reg.ref("acc/cutdata", "v1"), check=False)
    assert_error(proc, "truncated", "etc/cut")
    assert proc.returncode == 125 and "hint: " in proc.stderr
    assert layers_snapshot() == before  # the middle layer it had applied is gone again
    assert not list(LAYERS.glob(".tmp-*"))
    assert not any(img.config_digest in line for line in nsp("images", "--no-trunc").stdout.splitlines())


def _login(nsp: CLI, registry: str, user: str, password: str, ca: str) -> subprocess.CompletedProcess[str]:
    return nsp(
        "login",
        "-u",
        user,
        "--password-stdin",
        "--ca-cert",
        ca,
        registry,
        input=password.encode(),
        check=False,
    )


@pytest.fixture
def clean_auth() -> Iterator[None]:
    saved = AUTH.read_bytes() if AUTH.exists() else None
    AUTH.unlink(missing_ok=True)
    yield
    if saved is None:
        AUTH.unlink(missing_ok=True)
    else:
        AUTH.write_bytes(saved)


@pytest.mark.serial
@pytest.mark.surface
def test_basic_auth_registry(nsp: CLI, oci: Env, clean_auth: None) -> None:
    with oci.basic_auth_registry("reg-basic", {"alice": "s3cret"}) as reg:
        ref = reg.ref("acc/app2", "v1")
        before = layers_snapshot()
        proc = pull(nsp, oci, ref, check=False)
        assert_error(proc, "requires authentication")
        assert f"nspawnctl login {reg.address}" in proc.stderr
        assert layers_snapshot() == before
        assert_error(_login(nsp, reg.address, "alice", "wrong", oci.ca), "wrong user name or password")
        assert not AUTH.exists()
        proc = _login(nsp, reg.address, "alice", "s3cret", oci.ca)
        assert proc.returncode == 0 and "Login Succeeded" in proc.stdout
        assert stat.S_IMODE(AUTH.stat().st_mode) == 0o600
        assert reg.address in json.loads(AUTH.read_text())["auths"]
        assert "s3cret" not in proc.stdout + proc.stderr
        pull(nsp, oci, ref)
        assert nsp("run", "--rm", ref).stdout.strip() == "app2"
        assert nsp("logout", reg.address).stdout.strip() == f"Removed login credentials for {reg.address}"
        assert_error(pull(nsp, oci, ref, check=False), "requires authentication")
        assert_error(nsp("logout", reg.address, check=False), "not logged in")


@pytest.mark.serial
def test_bearer_token_registry(nsp: CLI, oci: Env, clean_auth: None) -> None:
    with (
        TokenServer(oci.workdir / "tokens", {"bob": "t0ken-pw"}, tls=oci.tls, public={"acc/bb"}) as ts,
        start_registry(
            oci.workdir / "reg-token", tls=oci.tls, auth="token", token=ts, storage=oci.reg.storage
        ) as reg,
    ):
        # a public repository: an anonymous token is enough
        pull(nsp, oci, reg.ref("acc/bb", "v1"))
        anon = [r for r in ts.token_requests() if "repository:acc/bb:pull" in r.scopes]
        assert anon and anon[-1].user is None and anon[-1].granted
        # a private one: refused anonymously, with a clear message and nothing kept
        ref = reg.ref("acc/docker", "v1")
        before = layers_snapshot()
        proc = pull(nsp, oci, ref, check=False)
        assert_error(proc, "acc/docker")
        assert "login" in proc.stderr
        assert layers_snapshot() == before
        assert_error(_login(nsp, reg.address, "bob", "nope", oci.ca), "refused the credentials of bob")
        assert _login(nsp, reg.address, "bob", "t0ken-pw", oci.ca).returncode == 0
        pull(nsp, oci, ref)
        mine = [
            r for r in ts.token_requests() if r.user == "bob" and "repository:acc/docker:pull" in r.scopes
        ]
        assert mine and mine[-1].status == 200 and mine[-1].granted
        assert nsp("run", "--rm", ref).stdout.strip() == "docker schema2"
        nsp("logout", "--all")


@pytest.mark.serial
def test_policy_can_reject_or_require_digests(nsp: CLI, oci: Env) -> None:
    policy = Path("/etc/nspawnctl/policy.json")
    registry = oci.reg.address
    policy.write_text(
        json.dumps(
            {
                "transports": {
                    "docker": {
                        f"{registry}/acc/bb": [{"type": "requireDigest"}],
                        f"{registry}/acc/app": [{"type": "reject"}],
                    }
                }
            }
        )
    )
    try:
        assert_error(pull(nsp, oci, oci.ref("app"), check=False), "rejected by policy scope")
        assert_error(pull(nsp, oci, oci.ref("bb"), check=False), "pinned by digest")
        pull(nsp, oci, oci.reg.ref("acc/bb", oci.std.bb.digest))
    finally:
        policy.unlink()


@pytest.mark.serial
def test_interrupted_pull_leaves_no_image_and_prune_frees_its_layers(nsp: CLI, oci: Env) -> None:
    """A pull killed outright (no chance to roll back) leaves finished layers but no image;
    'image prune' frees them (a later pull would have reused them)."""
    layout = ob.Layout(oci.workdir / "oci-big")
    base = ob.Layer(ob.LayerSpec().file("small", f"{time.time()}\n"), "gzip")
    big = ob.Layer(ob.LayerSpec().file("big", os.urandom(192 << 20)), "none")
    img = layout.image("big", [base, big], {"Cmd": ["true"]})
    ob.push(layout, img, oci.reg.url(""), "acc/big", "v1", ca=oci.tls.ca)
    first = LAYERS / img.chain_ids[0].split(":")[1]
    proc = subprocess.Popen(["nspawnctl", "pull", "--ca-cert", oci.ca, oci.reg.ref("acc/big", "v1")])
    try:
        deadline = time.monotonic() + 60
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.exists(), "the first layer never appeared"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not any(img.config_digest in line for line in nsp("images", "--no-trunc").stdout.splitlines())
    proc2 = nsp("image", "prune", "--force")
    assert f"deleted: {img.chain_ids[0]}" in proc2.stdout.splitlines()
    assert proc2.stdout.startswith("Deleted Images:\n") and "Total reclaimed space: " in proc2.stdout
    assert not first.exists()
    assert not list(LAYERS.glob(".tmp-*"))  # the killed pull's staging went too
    assert_error(nsp("image", "prune", check=False), "without confirmation")


@pytest.mark.serial
def test_two_pulls_racing_share_one_copy(nsp: CLI, oci: Env) -> None:
    layout = ob.Layout(oci.workdir / "oci-race")
    base = ob.Layer(ob.LayerSpec().tree(oci.workdir / "oci-busybox"), "gzip")
    layers = [ob.Layer(ob.LayerSpec().file(f"etc/race{i}", f"{i} {time.time()}\n"), "gzip") for i in range(3)]
    img = layout.image("race", [base, *layers], {"Cmd": ["cat", "/etc/race2"]})
    ob.push(layout, img, oci.reg.url(""), "acc/race", "v1", ca=oci.tls.ca)
    ref = oci.reg.ref("acc/race", "v1")
    argv = ["nspawnctl", "pull", "-q", "--ca-cert", oci.ca, ref]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    nsp.images.add(img.config_digest)
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == img.config_digest
    listing = subvolumes()
    for chain in img.chain_ids:
        assert listing.count(f"layers/{chain.split(':')[1]}") == 1
    assert not list(LAYERS.glob(".tmp-*"))
    assert nsp("run", "--rm", ref).stdout.startswith("2 ")


@pytest.mark.serial
def test_image_env_over_the_kernels_limit_is_refused_at_create(nsp: CLI, oci: Env) -> None:
    """An image's 3 MB variable would fail every start (execve() takes at most 128 KiB each):
    refused when a container is made of it, naming the variable; nothing is made. (A line break
    in an image's Env is refused by pull already.)"""
    env, words = "BIG=" + "z" * (3 << 20), ["BIG", "Env of image", "131071"]
    tag = f"env-{uuid.uuid4().hex[:6]}"
    root = make_busybox_root(oci.workdir / f"oci-{tag}")
    img = oci.std.layout.image(
        tag, [ob.Layer(ob.LayerSpec().tree(root), "gzip")], {"Cmd": ["/bin/true"], "Env": [env]}
    )
    ob.push(oci.std.layout, img, oci.reg.url(""), f"acc/{tag}", "v1", ca=oci.tls.ca)
    ref = oci.ref(tag)
    pull(nsp, oci, ref)
    name = nsp.name("imgenv")
    before = pool_snapshot()
    for command in ("create", "run"):
        proc = nsp(command, "--name", name, ref, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        first = proc.stderr.splitlines()[0]
        assert first.startswith("nspawnctl: error: ") and all(w in first for w in words), first
    assert pool_snapshot() == before
