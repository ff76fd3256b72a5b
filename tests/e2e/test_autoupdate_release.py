"""auto-update of a container whose image came from a release URL (a tarball + SHA256SUMS(.gpg), as
systemd-importd publishes them): a newer signed tarball at the same URL is pulled and run, one
whose health check fails is rolled back, and a tampered or unsigned one is refused.

The releases are made with the producer script (mkosi/make-release.py) and served over HTTPS by
tests/e2e/webserver.py on a free port of 127.0.0.1 (the tests' CA; its key trusted for the prefix)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, IDLE, health_of, wait_for
from test_pull import MAKE_RELEASE, WEBSERVER, release

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpgkeys
from demo import make_busybox_root
from pki import make_tls

LOOP = IDLE  # stops at once (auto-update stops it): not after the loop's sleep 1


@dataclass
class Release:
    dir: Path  # the release directory the server publishes
    url: str  # https://127.0.0.1:PORT/rel/app.tar.xz
    ca: str
    gpg: Path
    key: str
    workdir: Path

    def publish(self, version: str, healthy: bool = True, sign: bool = True) -> None:
        """app.tar.xz whose /etc/marker says ``version`` (and /ok exists when ``healthy``), with
        SHA256SUMS rewritten and, with ``sign``, signed (without, the stale signature is removed)."""
        root = make_busybox_root(self.workdir / f"root-{version}-{uuid.uuid4().hex[:6]}", marker=version)
        if healthy:
            (root / "ok").write_text("yes\n")
        if sign:
            release(root, self.dir, "app", self.gpg, self.key)
        else:  # the script removes the now-stale SHA256SUMS.gpg
            subprocess.run(
                [sys.executable, str(MAKE_RELEASE), "tarball", str(root), "--name", "app",
                 "--out", str(self.dir)],
                check=True, capture_output=True,
            )  # fmt: skip


@pytest.fixture(scope="module")
def rel(workdir: Path, cli: CLI) -> Iterator[Release]:
    base = workdir / f"aurel-{uuid.uuid4().hex[:6]}"
    docroot = base / "docroot"
    docroot.mkdir(parents=True)
    home = Path(f"/var/tmp/g{uuid.uuid4().hex[:6]}")
    home.mkdir(mode=0o700)
    tls = make_tls(base / "tls", ["localhost"])
    key = gpgkeys.make_key(home, "Release Key AU <au@example.test>")
    key_file = base / "key.asc"
    key_file.write_bytes(gpgkeys.export_public(home, key))
    server = subprocess.Popen(
        [sys.executable, str(WEBSERVER), "--root", str(docroot), "--https", "0", "--bind", "127.0.0.1",
         "--cert", str(tls.cert), "--key", str(tls.key), "--log", str(base / "requests.log")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = ""
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith("ready"), ready
        port = ready.split("https=")[1].split()[0]
        cli("trust", "add", str(key_file), "--prefix", f"127.0.0.1:{port}/rel", "--yes")
        yield Release(
            docroot / "rel", f"https://127.0.0.1:{port}/rel/app.tar.xz", str(tls.ca), home, key, base
        )
    finally:
        cli.cleanup()  # then every image pulled from the URL (the rolled-back ones have no name)
        pulled = [i["id"] for i in cli.json("images") if i["source"].startswith(f"https://127.0.0.1:{port}/")]
        if pulled:
            cli("rmi", "-f", *pulled, check=False)
        cli("trust", "rm", key, check=False)
        server.terminate()
        server.wait()
        gpgkeys.kill_agent(home)


def _auto_update(nsp: CLI, rel: Release, name: str, *args: str, code: int = 0) -> dict[str, Any]:
    """auto-update's JSON row of ``name`` (the run must exit ``code``)."""
    r = nsp("auto-update", "--ca-cert", rel.ca, "--json", *args, timeout=300, check=False)
    assert r.returncode == code, (r.returncode, r.stderr)
    [row] = [x for x in json.loads(r.stdout) if x["ContainerName"] == name]
    return row


def _state(nsp: CLI, name: str, ref: str) -> tuple[str, str, str, bool]:
    """The marker the container sees, the image it runs, the image its name points at, running."""
    info = nsp.json("inspect", name)[0]
    marker = nsp("exec", name, "cat", "/etc/marker").stdout.strip()
    named = nsp.json("image", "inspect", ref)[0]["id"]
    return marker, info["ImageId"], named, info["State"]["Running"]


@pytest.mark.serial
def test_release_url_image_is_updated_refused_when_unverified_and_rolled_back(rel: Release, cli: CLI) -> None:
    nsp = cli
    ref = f"e2e-aurel/app-{uuid.uuid4().hex[:6]}:1"
    rel.publish("v1")
    v1 = nsp("pull", "--ca-cert", rel.ca, rel.url, ref, timeout=300).stdout.strip()
    nsp.images.add(ref)
    name = nsp.name("aurel")
    nsp("run", "-d", "--name", name, "--network", "none", "--auto-update", "registry",
        "--health-cmd", "test -f /ok", "--health-interval", "1s", "--health-retries", "1",
        ref, "sh", "-c", LOOP)  # fmt: skip
    wait_for("healthy", lambda: health_of(nsp, name).get("Status") == "healthy")
    assert "AutoUpdate=registry" in nsp("generate", name).stdout
    assert _auto_update(nsp, rel, name, "--dry-run")["Updated"] == "false"

    rel.publish("v2")
    assert _auto_update(nsp, rel, name, "--dry-run")["Updated"] == "pending"
    assert _state(nsp, name, ref) == ("v1", v1, v1, True)  # a dry run changes nothing
    row = _auto_update(nsp, rel, name)
    assert (row["Updated"], row["Image"], row["Policy"]) == ("true", ref, "registry"), row
    marker, v2, named, running = _state(nsp, name, ref)
    assert (marker, named, running) == ("v2", v2, True) and v2 != v1
    assert health_of(nsp, name)["Status"] == "healthy"

    # a newer tarball that does not match the signed SHA256SUMS, then one with no signature at all
    rel.publish("v3")
    tarball = rel.dir / "app.tar.xz"
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    tarball.write_bytes(bytes(data))
    row = _auto_update(nsp, rel, name, code=125)
    assert row["Updated"] == "failed" and "checksum" in row["Error"], row
    assert _state(nsp, name, ref) == ("v2", v2, v2, True)
    rel.publish("v3", sign=False)
    row = _auto_update(nsp, rel, name, code=125)
    assert row["Updated"] == "failed" and "not signed" in row["Error"], row
    assert _state(nsp, name, ref) == ("v2", v2, v2, True)

    # signed, but its health check fails: rolled back to v2, the name pointing at v2 again
    rel.publish("v4", healthy=False)
    row = _auto_update(nsp, rel, name, "--timeout", "60")
    assert row["Updated"] == "rolled back" and "unhealthy" in row["Error"], row
    assert _state(nsp, name, ref) == ("v2", v2, v2, True)
    wait_for("healthy after the rollback", lambda: health_of(nsp, name).get("Status") == "healthy")
