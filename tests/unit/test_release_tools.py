"""The producer side and the e2e test infrastructure, checked on the development machine.

mkosi/make-release.py must write releases that the consumers' own tools accept (gpg --verify,
sha256sum -c, a tar with exactly manifest + rootfs/); tests/e2e/webserver.py, pki.py and gpgkeys.py
must behave as the end-to-end pull tests rely on. Run as root (the test root is owned by uid 1000).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_RELEASE = REPO / "mkosi" / "make-release.py"
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import gpgkeys  # noqa: E402
import pki  # noqa: E402
import webserver  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a root tree owned by uid 1000)")

# VFS_CAP_REVISION_2 with cap_net_raw permitted+effective, as `setcap cap_net_raw+ep` writes it.
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def release(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(MAKE_RELEASE), *args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny root: a setuid file with a hardlink and a file capability, relative and absolute
    symlinks, a sticky directory; everything owned by 1000:1000."""
    r = tmp_path_factory.mktemp("root") / "rootfs"
    (r / "bin").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "tmp").mkdir(mode=0o1777)
    (r / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.link(r / "bin" / "tool", r / "bin" / "tool-link")
    (r / "bin" / "ping").write_bytes(b"ping")
    (r / "etc" / "os-release").write_text("ID=test\n")
    (r / "etc" / "rel").symlink_to("../bin/tool")
    (r / "etc" / "abs").symlink_to("/bin/tool")
    for p in [r, *r.rglob("*")]:
        os.chown(p, 1000, 1000, follow_symlinks=False)
    (r / "bin" / "tool").chmod(0o4755)  # after chown, which clears setuid
    (r / "tmp").chmod(0o1777)
    os.setxattr(r / "bin" / "ping", "security.capability", CAP_NET_RAW)
    return r


@pytest.fixture(scope="module")
def key() -> Iterator[tuple[Path, str]]:
    home = gpgkeys.new_home()
    try:
        yield home, gpgkeys.make_key(home, "Release Test <release@example.com>")
    finally:
        gpgkeys.kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def gpg_verify(home: Path, signature: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--status-fd", "1", "--verify", str(signature), str(data)],
        capture_output=True,
        text=True,
    )


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tf:
        infos = tf.getmembers()
    names = [m.name for m in infos]
    assert len(names) == len(set(names)), "duplicate entries"
    return {m.name: m for m in infos}


# --- make-release.py tarball -------------------------------------------------------------------


def test_tarball_release_is_signed_and_checksummed(root: Path, key: tuple[Path, str], tmp_path: Path) -> None:
    home, fpr = key
    out = tmp_path / "rel"
    settings = tmp_path / "x.nspawn"
    settings.write_text("[Exec]\nEnvironment=A=1\n")
    proc = release(
        "tarball", str(root), "--name", "demo", "--out", str(out), "--nspawn", str(settings),
        "--sign", fpr, "--gpg-homedir", str(home),
    )  # fmt: skip
    written = {Path(line).name for line in proc.stdout.split()}
    assert written == {"demo.tar.xz", "demo.nspawn", "SHA256SUMS", "SHA256SUMS.gpg"}
    assert (out / "demo.nspawn").read_text() == settings.read_text()

    sums = (out / "SHA256SUMS").read_text()
    expected = "".join(
        f"{hashlib.sha256((out / n).read_bytes()).hexdigest()} *{n}\n" for n in ("demo.nspawn", "demo.tar.xz")
    )
    assert sums == expected
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0

    sig = (out / "SHA256SUMS.gpg").read_bytes()
    assert not sig.startswith(b"-----BEGIN"), "importd wants a binary signature"
    good = gpg_verify(home, out / "SHA256SUMS.gpg", out / "SHA256SUMS")
    assert good.returncode == 0 and f"VALIDSIG {fpr}" in good.stdout
    tampered = tmp_path / "SHA256SUMS"
    tampered.write_text(sums.replace(sums[0], "0" if sums[0] != "0" else "1", 1))
    assert gpg_verify(home, out / "SHA256SUMS.gpg", tampered).returncode != 0

    m = members(out / "demo.tar.xz")
    assert {"./bin/tool", "./bin/tool-link", "./etc/rel", "./etc/abs", "./tmp"} <= set(m)
    tool, link = m["./bin/tool"], m["./bin/tool-link"]
    assert (tool.uid, tool.gid, tool.mode) == (1000, 1000, 0o4755)
    assert link.islnk() and link.linkname == "./bin/tool"
    assert m["./etc/rel"].linkname == "../bin/tool" and m["./etc/abs"].linkname == "/bin/tool"
    assert m["./tmp"].mode == 0o1777
    assert m["./bin/ping"].pax_headers.get("SCHILY.xattr.security.capability") is not None


def test_tarball_update_keeps_other_lines_and_drops_a_stale_signature(
    root: Path, key: tuple[Path, str], tmp_path: Path
) -> None:
    home, fpr = key
    out = tmp_path / "rel"
    release(
        "tarball", str(root), "--name", "demo", "--out", str(out), "--sign", fpr, "--gpg-homedir", str(home)
    )
    first = (out / "SHA256SUMS").read_text()
    proc = release("tarball", str(root), "--name", "demo", "--out", str(out), "--compress", "zst")
    assert "SHA256SUMS.gpg" in proc.stderr and not (out / "SHA256SUMS.gpg").exists()
    lines = (out / "SHA256SUMS").read_text().splitlines()
    assert [line.split(" *")[1] for line in lines] == ["demo.tar.xz", "demo.tar.zst"]
    assert lines[0] + "\n" == first
    # A tarball as input (mkosi's output) with the same compression is copied byte for byte.
    release("tarball", str(out / "demo.tar.zst"), "--name", "copy", "--out", str(out), "--compress", "zst")
    assert (out / "copy.tar.zst").read_bytes() == (out / "demo.tar.zst").read_bytes()
    release("tarball", str(out / "demo.tar.zst"), "--name", "plain", "--out", str(out), "--compress", "none")
    assert set(members(out / "plain.tar")) == set(members(out / "demo.tar.xz"))


def test_release_errors_are_clear(root: Path, key: tuple[Path, str], tmp_path: Path) -> None:
    home, _ = key
    missing = release("tarball", str(tmp_path / "nope"), "--name", "x", "--out", str(tmp_path), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    nokey = release(
        "tarball", str(root), "--name", "x", "--out", str(tmp_path / "o"), "--sign", "nobody@example.com",
        "--gpg-homedir", str(home), check=False,
    )  # fmt: skip
    assert nokey.returncode == 2 and "no secret key 'nobody@example.com'" in nokey.stderr
    assert not (tmp_path / "o").exists(), "nothing is written when the key is missing"
    badname = release(
        "aci", str(root), "--name", "Example.com/App", "--version", "1", "--out", str(tmp_path), check=False
    )
    assert badname.returncode == 2 and "AC identifier" in badname.stderr
    badarch = release(
        "aci", str(root), "--name", "example.com/app", "--version", "1", "--arch", "arm64",
        "--out", str(tmp_path), check=False,
    )  # fmt: skip
    assert badarch.returncode == 2 and "linux/aarch64" in badarch.stderr


# --- make-release.py aci / discovery ------------------------------------------------------------


def test_aci_layout_manifest_and_signature(root: Path, key: tuple[Path, str], tmp_path: Path) -> None:
    home, fpr = key
    out = tmp_path / "aci"
    proc = release(
        "aci", str(root), "--name", "example.com/team/app", "--version", "1.0", "--arch", "aarch64",
        "--exec", "/bin/sh", "--exec", "-c", "--exec", "echo hi",
        "--env", "GREETING=hello world", "--env", "X=",
        "--user", "1000", "--group", "100", "--workdir", "/tmp", "--port", "http:tcp:8080",
        "--mount", "data:/data:ro", "--mount", "cache:/var/cache", "--label", "channel=stable",
        "--out", str(out), "--sign", fpr, "--gpg-homedir", str(home),
    )  # fmt: skip
    aci = out / "app-1.0-linux-aarch64.aci"
    assert proc.stdout.split() == [str(aci), str(aci) + ".asc"]
    assert aci.read_bytes()[:2] == b"\x1f\x8b", "gzip by default"
    asc = Path(str(aci) + ".asc")
    assert asc.read_bytes().startswith(b"-----BEGIN PGP SIGNATURE-----")
    good = gpg_verify(home, asc, aci)
    assert good.returncode == 0 and f"VALIDSIG {fpr}" in good.stdout

    m = members(aci)
    assert {n.split("/")[0] for n in m} == {"manifest", "rootfs"}
    assert m["manifest"].isfile() and m["rootfs"].isdir()
    assert m["rootfs"].uid == 1000, "the rootfs entry carries the root directory's metadata"
    assert {"rootfs/bin/tool", "rootfs/bin/tool-link", "rootfs/etc/rel", "rootfs/tmp"} <= set(m)
    assert m["rootfs/bin/tool-link"].linkname == "rootfs/bin/tool"
    assert m["rootfs/etc/rel"].linkname == "../bin/tool", "symlink targets are left alone"
    assert m["rootfs/etc/abs"].linkname == "/bin/tool"
    assert (m["rootfs/bin/tool"].mode, m["rootfs/bin/tool"].uid) == (0o4755, 1000)
    assert "SCHILY.xattr.security.capability" in m["rootfs/bin/ping"].pax_headers

    with tarfile.open(aci) as tf:
        f = tf.extractfile("manifest")
        assert f is not None
        manifest = json.load(f)
    assert manifest == {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/team/app",
        "labels": [
            {"name": "version", "value": "1.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "aarch64"},
            {"name": "channel", "value": "stable"},
        ],
        "app": {
            "exec": ["/bin/sh", "-c", "echo hi"],
            "user": "1000",
            "group": "100",
            "workingDirectory": "/tmp",
            "environment": [{"name": "GREETING", "value": "hello world"}, {"name": "X", "value": ""}],
            "ports": [{"name": "http", "protocol": "tcp", "port": 8080}],
            "mountPoints": [
                {"name": "data", "path": "/data", "readOnly": True},
                {"name": "cache", "path": "/var/cache", "readOnly": False},
            ],
        },
    }


def test_aci_defaults_host_arch_and_exec_json(root: Path, tmp_path: Path) -> None:
    arch = {"x86_64": "amd64", "aarch64": "aarch64"}.get(os.uname().machine, os.uname().machine)
    proc = release(
        "aci", str(root), "--name", "app", "--version", "2", "--exec-json", '["/bin/tool","a b"]',
        "--compress", "none", "--out", str(tmp_path),
    )  # fmt: skip
    aci = tmp_path / f"app-2-linux-{arch}.aci"
    assert proc.stdout.split() == [str(aci)]
    with tarfile.open(aci, "r:") as tf:
        f = tf.extractfile("manifest")
        assert f is not None
        manifest = json.load(f)
    assert manifest["app"] == {
        "exec": ["/bin/tool", "a b"],
        "user": "0",
        "group": "0",
        "workingDirectory": "/",
    }
    assert {"name": "arch", "value": arch} in manifest["labels"]


def test_build_turns_mkosi_output_into_tarball_and_aci(root: Path, tmp_path: Path) -> None:
    """`build --skip-mkosi` on a config whose mkosi.output holds a Format=tar image: the tarball
    is published as is, and the ACI made from it has the same tree as one made from the root."""
    config = tmp_path / "cfg"
    (config / "mkosi.output").mkdir(parents=True)
    (config / "mkosi.conf").write_text("[Output]\nFormat=tar\n")
    image = config / "mkosi.output" / "debian.tar.zst"
    release(
        "tarball", str(root), "--name", "debian", "--out", str(config / "mkosi.output"), "--compress", "zst"
    )
    (config / "mkosi.output" / "SHA256SUMS").unlink()
    out = tmp_path / "out"
    proc = release(
        "build", "--skip-mkosi", "--config", str(config), "--out", str(out),
        "--name", "deb", "--compress", "zst",
        "--aci-name", "example.com/debian", "--version", "13", "--arch", "amd64", "--exec", "/sbin/init",
    )  # fmt: skip
    assert [Path(p).name for p in proc.stdout.split()] == [
        "deb.tar.zst",
        "SHA256SUMS",
        "debian-13-linux-amd64.aci",
    ]
    assert (out / "deb.tar.zst").read_bytes() == image.read_bytes()
    release("aci", str(root), "--name", "example.com/debian", "--version", "13", "--arch", "amd64",
            "--exec", "/sbin/init", "--out", str(tmp_path / "direct"))  # fmt: skip
    from_tar, from_dir = (
        members(out / "debian-13-linux-amd64.aci"),
        members(tmp_path / "direct" / "debian-13-linux-amd64.aci"),
    )
    assert set(from_tar) == set(from_dir)

    def meta(m: tarfile.TarInfo) -> tuple[object, ...]:
        return m.mode, m.uid, m.gid, m.linkname, m.pax_headers.get("SCHILY.xattr.security.capability")

    assert {n: meta(m) for n, m in from_tar.items()} == {n: meta(m) for n, m in from_dir.items()}


class MetaTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("name") or "").startswith("ac-"):
            self.tags.append((a["name"] or "", a.get("content") or ""))


def test_discovery_page() -> None:
    template = "https://repo.example.test:8443/aci/{name}-{version}-{os}-{arch}.{ext}"
    proc = release(
        "discovery", "--prefix", "example.com/app", "--template", template,
        "--pubkeys", "https://repo.example.test/key.asc?a=1&b=2",
    )  # fmt: skip
    parser = MetaTags()
    parser.feed(proc.stdout)
    assert parser.tags == [
        ("ac-discovery", f"example.com/app {template}"),
        ("ac-discovery-pubkeys", "example.com/app https://repo.example.test/key.asc?a=1&b=2"),
    ]
    noext = release("discovery", "--prefix", "example.com/app", "--template", "https://h/x.aci", check=False)
    assert noext.returncode == 2 and "{ext}" in noext.stderr


# --- webserver.py, pki.py -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> pki.TLS:
    return pki.make_tls(tmp_path_factory.mktemp("pki"), ["repo.example.test", "example.com"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: pki.TLS) -> Iterator[webserver.Running]:
    docroot = tmp_path_factory.mktemp("docroot")
    (docroot / "big.bin").write_bytes(os.urandom(300_000))
    (docroot / "sub").mkdir()
    (docroot / "sub" / "f.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(1000))
    (docroot / "_discovery" / "team").mkdir(parents=True)
    (docroot / "_discovery" / "team" / "app.html").write_text("<p>team/app</p>")
    (docroot / "_discovery" / "index.html").write_text("<p>index</p>")
    log = docroot.parent / "requests.log"
    with webserver.start(docroot, log, http=0, https=0, cert=tls.cert, key=tls.key) as srv:
        yield srv
    assert srv.proc.returncode == 0, "the server exits cleanly on SIGTERM"


def get(
    srv: webserver.Running, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        try:
            body = resp.read()
        except http.client.IncompleteRead as e:
            body = b"INCOMPLETE:" + e.partial
        return resp, body
    finally:
        conn.close()


def wait_log(srv: webserver.Running, line: str) -> list[str]:
    """The server logs once a reply is complete, which may be just after the client has read it."""
    deadline = time.monotonic() + 5
    while line not in srv.log_lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    return srv.log_lines()


def test_static_files_with_conditional_get(server: webserver.Running) -> None:
    resp, body = get(server, "/big.bin")
    assert resp.status == 200 and len(body) == 300_000 and resp.headers["Content-Length"] == "300000"
    etag, modified = resp.headers["ETag"], resp.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith('W/"')
    assert get(server, "/big.bin", headers={"If-None-Match": etag})[0].status == 304
    assert get(server, "/big.bin", headers={"If-None-Match": '"other"'})[0].status == 200
    assert get(server, "/big.bin", headers={"If-Modified-Since": modified})[0].status == 304
    head, body = get(server, "/big.bin", "HEAD")
    assert head.status == 200 and body == b"" and head.headers["Content-Length"] == "300000"
    assert get(server, "/sub")[0].status == 404, "no directory listings"
    assert get(server, "/missing")[0].status == 404
    assert get(server, "/../requests.log")[0].status == 403
    lines = wait_log(server, "GET /../requests.log 403 35")
    assert "GET /big.bin 200 300000" in lines and "GET /big.bin 304 0" in lines
    assert "HEAD /big.bin 200 0" in lines and "GET /../requests.log 403 35" in lines


def test_discovery_pages(server: webserver.Running) -> None:
    resp, body = get(server, "/team/app?ac-discovery=1", headers={"Host": "example.com"})
    assert (
        resp.status == 200
        and body == b"<p>team/app</p>"
        and resp.headers["Content-Type"].startswith("text/html")
    )
    assert get(server, "/?ac-discovery=1")[1] == b"<p>index</p>"
    assert get(server, "/team/other?ac-discovery=1")[0].status == 404
    assert "GET /team/app?ac-discovery=1 200 15" in wait_log(server, "GET /team/app?ac-discovery=1 200 15")


def test_faults(server: webserver.Running) -> None:
    resp, body = get(server, "/drop/big.bin")
    assert resp.headers["Content-Length"] == "300000"
    assert body.startswith(b"INCOMPLETE:") and len(body) - len(b"INCOMPLETE:") == 150_000

    resp, body = get(server, "/gzip-encoded/sub/f.tar.gz")
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip" and len(body) == 1002
    assert get(server, "/sub/f.tar.gz")[0].headers.get("Content-Encoding") is None

    resp, _ = get(server, "/redirect/sub/f.tar.gz?x=1")
    assert resp.status == 302 and resp.headers["Location"] == "/sub/f.tar.gz?x=1"

    start = time.monotonic()
    resp, body = get(server, "/slow/big.bin")
    assert len(body) == 300_000 and time.monotonic() - start >= 4 * webserver.SLOW_DELAY
    lines = wait_log(server, "GET /slow/big.bin 200 300000")
    assert "GET /drop/big.bin 200 150000" in lines and "GET /redirect/sub/f.tar.gz?x=1 302 0" in lines


def test_https_with_strict_verification(server: webserver.Running, tls: pki.TLS) -> None:
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13 does this by default
    with urllib.request.urlopen(f"https://127.0.0.1:{server.https}/big.bin", context=ctx, timeout=10) as r:
        assert r.status == 200 and len(r.read()) == 300_000
    for name in ("repo.example.test", "example.com"):
        with (
            socket.create_connection(("127.0.0.1", server.https), timeout=10) as sock,
            ctx.wrap_socket(sock, server_hostname=name) as tls_sock,
        ):
            assert tls_sock.version() is not None
    with (
        socket.create_connection(("127.0.0.1", server.https), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(sock, server_hostname="other.example")
    # Without the CA the certificate is refused: the CA is what makes it work.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(
            f"https://127.0.0.1:{server.https}/big.bin", context=ssl.create_default_context(), timeout=10
        )
