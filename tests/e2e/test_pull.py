"""Pulls over HTTP(S) from a web server, a CA and signing keys that the tests make themselves.

The releases are made with the producer script (mkosi/make-release.py) from a busybox root,
served by tests/e2e/webserver.py on ports 80 and 443 under names in /etc/hosts, and verified
against nspawnctl's trust store.
"""

from __future__ import annotations

import os
import platform
import pty
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BOOT_IMAGE_DIR, CLI
from test_errors import assert_error, pool_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpgkeys
from demo import make_busybox_root
from pki import make_tls

REPO = Path(__file__).resolve().parents[2]
MAKE_RELEASE = REPO / "mkosi" / "make-release.py"
WEBSERVER = Path(__file__).resolve().parent / "webserver.py"
SITE = "images.example.test"
ACI_SITE = "aci.example.test"
HOSTS_MARK = "# nspawnctl e2e"
APPC_ARCH = {"x86_64": "amd64", "aarch64": "aarch64", "i686": "i386"}.get(
    platform.machine(), platform.machine()
)
WRONG_ARCH = "aarch64" if APPC_ARCH != "aarch64" else "amd64"


pytestmark = pytest.mark.serial  # tests/e2e/conftest.py: why serial


@dataclass
class Site:
    root: Path
    log: Path
    ca: Path
    gpg: Path
    key_a: str
    key_b: str
    key_a_file: Path
    key_b_file: Path
    trusted: list[str] = field(default_factory=list)

    def url(self, path: str, scheme: str = "https", host: str = SITE) -> str:
        return f"{scheme}://{host}/{path}"

    def gets(self, path: str) -> list[str]:
        """Requests for ``path`` that the server answered with content (200)."""
        return [
            line
            for line in self.log.read_text().splitlines()
            if line.split()[:3] == ["GET", f"/{path}", "200"]
        ]

    def pull(self, nsp: CLI, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return nsp("pull", "--ca-cert", str(self.ca), *args, check=check, timeout=300)

    def trust(self, nsp: CLI, key_file: Path, prefix: str | None) -> None:
        scope = ["--prefix", prefix] if prefix else ["--root"]
        nsp("trust", "add", str(key_file), *scope, "--yes")

    def untrust_all(self, nsp: CLI) -> None:
        for key in nsp.json("trust", "list"):
            nsp("trust", "rm", key["fingerprint"], check=False)


def release(src: Path, out: Path, name: str, home: Path, key: str, *extra: str) -> None:
    subprocess.run(
        [sys.executable, str(MAKE_RELEASE), "tarball", str(src), "--name", name, "--out", str(out),
         "--sign", key, "--gpg-homedir", str(home), *extra],
        check=True, capture_output=True,
    )  # fmt: skip


def aci(src: Path, out: Path, name: str, version: str, arch: str, home: Path, key: str) -> None:
    subprocess.run(
        [sys.executable, str(MAKE_RELEASE), "aci", str(src), "--name", name, "--version", version,
         "--arch", arch, "--exec", "/bin/sh", "--exec", "-c", "--exec", "echo aci-says $GREETING from $(pwd)",
         "--env", "GREETING=hello-aci", "--workdir", "/tmp", "--user", "0", "--group", "0",
         "--out", str(out), "--sign", key, "--gpg-homedir", str(home)],
        check=True, capture_output=True,
    )  # fmt: skip


def evil_tarball(path: Path, kind: str, victim: Path) -> None:
    """Archives that try to write outside their root."""
    with tarfile.open(path, "w") as tf:

        def add(info: tarfile.TarInfo, data: bytes = b"") -> None:
            info.size = len(data)
            tf.addfile(info, __import__("io").BytesIO(data) if data else None)

        d = tarfile.TarInfo("etc")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        add(d)
        if kind == "dotdot":
            add(tarfile.TarInfo(f"../../../../../../..{victim}/dotdot"), b"escaped\n")
        elif kind == "symlink":
            link = tarfile.TarInfo("etc/link")
            link.type = tarfile.SYMTYPE
            link.linkname = str(victim)
            add(link)
            add(tarfile.TarInfo("etc/link/pwned"), b"escaped\n")
        elif kind == "hardlink":
            hl = tarfile.TarInfo("etc/hl")
            hl.type = tarfile.LNKTYPE
            hl.linkname = "../../../../../../../etc/hostname"
            add(hl)
            add(tarfile.TarInfo("etc/hl"), b"overwritten\n")


@pytest.fixture(scope="module")
def site(workdir: Path) -> Iterator[Site]:
    base = workdir / "web"
    root = base / "docroot"
    root.mkdir(parents=True)
    home = Path(f"/var/tmp/g{uuid.uuid4().hex[:6]}")
    home.mkdir(mode=0o700)
    hosts = Path("/etc/hosts")
    original_hosts = hosts.read_text()
    hosts.write_text(original_hosts + f"127.0.0.1 {SITE} {ACI_SITE} {HOSTS_MARK}\n")
    server = None
    try:
        tls = make_tls(base / "tls", [SITE, ACI_SITE])
        key_a = gpgkeys.make_key(home, "Release Key A <a@example.test>")
        key_b = gpgkeys.make_key(home, "Other Key B <b@example.test>")
        keys = []
        for fpr, label in ((key_a, "a"), (key_b, "b")):
            f = base / f"key-{label}.asc"
            f.write_bytes(gpgkeys.export_public(home, fpr))
            keys.append(f)

        src = make_busybox_root(base / "rootfs", marker="release")
        settings = base / "bb.nspawn"
        settings.write_text("[Exec]\nEnvironment=FROM_NSPAWN=yes\nCapability=all\n")
        release(src, root / "rel", "bb", home, key_a, "--nspawn", str(settings))
        # Damaged copies of that release.
        for variant in ("tampered", "badsums", "unsigned"):
            shutil.copytree(root / "rel", root / variant)
        tarball = root / "tampered" / "bb.tar.xz"
        data = bytearray(tarball.read_bytes())
        data[len(data) // 2] ^= 0x01
        tarball.write_bytes(bytes(data))
        sums = root / "badsums" / "SHA256SUMS"
        sums.write_text(sums.read_text().replace("bb.nspawn", "bb-renamed.nspawn"))
        (root / "unsigned" / "SHA256SUMS.gpg").unlink()
        # Archives that try to escape; signed, so only the extractor stands in the way.
        victim = Path("/var/tmp") / f"victim-{uuid.uuid4().hex[:6]}"
        victim.mkdir()
        (root / "evil").mkdir()
        for kind in ("dotdot", "symlink", "hardlink"):
            evil_tarball(base / f"{kind}.tar", kind, victim)
            release(base / f"{kind}.tar", root / "evil", kind, home, key_a, "--compress", "none")
        (base / "victim").symlink_to(victim)

        # ACIs: aci.example.test/team/* are discovered through the page of aci.example.test/team.
        template = f"https://{ACI_SITE}/acis/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"
        acis = root / "acis" / ACI_SITE / "team"
        aci(src, acis, f"{ACI_SITE}/team/app", "1.0", APPC_ARCH, home, key_a)
        aci(src, base / "wrong", f"{ACI_SITE}/team/wrongarch", "1.0", WRONG_ARCH, home, key_a)
        for f in (base / "wrong").iterdir():
            f.rename(acis / f.name.replace(WRONG_ARCH, APPC_ARCH))
        page = subprocess.run(
            [sys.executable, str(MAKE_RELEASE), "discovery", "--prefix", f"{ACI_SITE}/team",
             "--template", template, "--pubkeys", f"https://{ACI_SITE}/keys/team.asc"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (root / "_discovery").mkdir()
        (root / "_discovery" / "team.html").write_text(page)
        (root / "keys").mkdir()
        shutil.copy(keys[0], root / "keys" / "team.asc")

        log = base / "requests.log"
        server = subprocess.Popen(
            [sys.executable, str(WEBSERVER), "--root", str(root), "--http", "80", "--https", "443",
             "--cert", str(tls.cert), "--key", str(tls.key), "--log", str(log)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith("ready"), ready
        yield Site(root, log, tls.ca, home, key_a, key_b, keys[0], keys[1])
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        gpgkeys.kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)
        hosts.write_text(original_hosts)


@pytest.fixture
def web(site: Site, nsp: CLI) -> Iterator[Site]:
    """The site, with an empty trust store before and after each test."""
    site.untrust_all(nsp)
    yield site
    site.untrust_all(nsp)


@pytest.mark.surface
def test_signed_tarball_is_pulled_verified_and_run(web: Site, nsp: CLI) -> None:
    web.trust(nsp, web.key_a_file, f"{SITE}/rel")
    nsp.images.update({"e2e-pull/bb:1", "e2e-pull/again:2"})
    proc = web.pull(nsp, web.url("rel/bb.tar.xz"), "e2e-pull/bb:1")
    assert f"signature by {web.key_a}" in proc.stderr
    image_id = proc.stdout.strip()
    assert image_id.startswith("sha256:")
    # the release's .nspawn file sets the environment; its Capability= line is not honoured
    assert "Capability" in proc.stderr
    out = nsp("run", "--rm", "e2e-pull/bb:1", "/bin/sh", "-c", "cat /etc/marker; echo env=$FROM_NSPAWN")
    assert out.stdout.split() == ["release", "env=yes"]

    # The same release again: nothing downloaded; a new name is just added.
    assert len(web.gets("rel/bb.tar.xz")) == 1
    again = web.pull(nsp, web.url("rel/bb.tar.xz"), "e2e-pull/again:2")
    assert again.stdout.strip() == image_id
    assert len(web.gets("rel/bb.tar.xz")) == 1
    assert {"e2e-pull/bb:1", "e2e-pull/again:2"} <= set(nsp.json("image", "inspect", image_id)[0]["refs"])
    # every gpg that verified was stopped again, agents included
    agents = [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"nspawnctl-gpg" in _read(p)]
    assert agents == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process is gone
        return b""


def test_two_pulls_racing_make_one_image(web: Site, nsp: CLI) -> None:
    web.trust(nsp, web.key_a_file, SITE)
    nsp.images.update({"e2e-race:1", "e2e-race:2"})
    for image in nsp.json("images"):  # both must really download
        if SITE in image["source"]:
            nsp("rmi", "-f", image["id"])
    before = sorted(os.listdir("/var/lib/nspawnctl/images"))
    procs = [
        subprocess.Popen(
            ["nspawnctl", "pull", "-q", "--ca-cert", str(web.ca), web.url("rel/bb.tar.xz"), f"e2e-race:{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = {out.strip() for out, _ in outs}
    assert len(ids) == 1
    (image_id,) = ids
    added = sorted(set(os.listdir("/var/lib/nspawnctl/images")) - set(before))
    hexid = image_id.split(":", 1)[1]
    assert added == [hexid, f"{hexid}.json"]  # one image, no staging left


def test_server_compression_header_does_not_change_what_is_checked(web: Site, nsp: CLI) -> None:
    """A server that labels .tar.xz as Content-Encoding: gzip: the bytes as served are what is hashed."""
    web.trust(nsp, web.key_a_file, SITE)
    nsp.images.add("e2e-gz:1")
    proc = web.pull(nsp, web.url("gzip-encoded/rel/bb.tar.xz"), "e2e-gz:1")
    assert f"signature by {web.key_a}" in proc.stderr


def test_default_name_comes_from_the_file_name(web: Site, nsp: CLI) -> None:
    web.trust(nsp, web.key_a_file, SITE)
    nsp.images.add("bb:latest")
    web.pull(nsp, web.url("rel/bb.tar.xz"))
    assert any("bb:latest" in i["refs"] for i in nsp.json("images"))


REFUSALS = {
    # case: (path, key trusted (a/b/None), prefix, words in the error)
    "key not trusted": ("rel/bb.tar.xz", None, None, ["not trusted"]),
    "key of another publisher": ("rel/bb.tar.xz", "b", SITE, ["not trusted"]),
    "key trusted for another prefix": ("rel/bb.tar.xz", "a", f"{SITE}/other", ["trusted only for prefix"]),
    "one byte of the tarball changed": ("tampered/bb.tar.xz", "a", SITE, ["checksum"]),
    "SHA256SUMS changed": ("badsums/bb.tar.xz", "a", SITE, ["signature"]),
    "signature missing": ("unsigned/bb.tar.xz", "a", SITE, ["not signed"]),
    "connection dropped half-way": ("drop/rel/bb.tar.xz", "a", SITE, ["connection closed"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_release_is_refused_and_leaves_nothing(web: Site, nsp: CLI, case: str) -> None:
    path, key, prefix, words = REFUSALS[case]
    if key is not None:
        web.trust(nsp, web.key_a_file if key == "a" else web.key_b_file, prefix)
    before = pool_snapshot()
    proc = web.pull(nsp, web.url(path), "e2e-refused:x", check=False)
    assert_error(proc, *words)
    assert pool_snapshot() == before
    assert not [i for i in nsp.json("images") if "e2e-refused:x" in i["refs"]]
    if case == "connection dropped half-way":  # it failed in the big download, not before
        (line,) = web.gets(path)
        size = (web.root / "rel" / "bb.tar.xz").stat().st_size
        assert int(line.split()[3]) == size // 2


@pytest.mark.parametrize(
    ("path", "words"), [("tampered/bb.tar.xz", "checksum"), ("unsigned/bb.tar.xz", "not signed")]
)
def test_run_and_create_refuse_what_pull_refuses_and_leave_nothing(
    web: Site, nsp: CLI, path: str, words: str
) -> None:
    """A release URL that ``pull`` refuses (one byte changed; no signature, though the key is trusted
    for the site) is refused by the pull that ``run``/``create`` start: exit 125, pull's own error,
    no container and no image."""
    web.trust(nsp, web.key_a_file, SITE)
    url = web.url(path)
    before, images = pool_snapshot(), nsp.json("images")
    refused = web.pull(nsp, url, check=False)
    assert refused.returncode == 125, refused
    assert_error(refused, words)
    error = refused.stderr.splitlines()[0]
    for cmd in (["run", "--rm"], ["create"]):
        name = nsp.name("refused")
        proc = nsp(*cmd, "--ca-cert", str(web.ca), "--name", name, url, "true", check=False, timeout=300)
        assert proc.returncode == 125, (cmd, proc)
        assert f"Pulling {url} (--pull missing)" in proc.stderr, proc.stderr
        assert error in proc.stderr.splitlines(), (cmd, proc.stderr)
        assert name not in nsp("ps", "-a", "-q").stdout.split()
        assert pool_snapshot() == before, cmd
    assert nsp.json("images") == images


def test_debian_release_made_with_the_producer_script(web: Site, nsp: CLI, boot_image: str) -> None:
    """A full Debian root (the one the --boot tests use), released, pulled and run: setuid bits,
    owners and modes come through the pull as the producer's tar wrote them."""
    release(BOOT_IMAGE_DIR, web.root / "debian", "debian", web.gpg, web.key_a, "--compress", "zst")
    web.trust(nsp, web.key_a_file, f"{SITE}/debian")
    nsp.images.add("e2e-pull/debian:13")
    web.pull(nsp, web.url("debian/debian.tar.zst"), "e2e-pull/debian:13")
    out = nsp("run", "--rm", "e2e-pull/debian:13", "stat", "-c", "%a %U", "/usr/bin/passwd", "/etc/shadow")
    expected = subprocess.run(
        ["stat", "-c", "%a %U", f"{BOOT_IMAGE_DIR}/usr/bin/passwd", f"{BOOT_IMAGE_DIR}/etc/shadow"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.stdout == expected and out.stdout.startswith("4755 root")
    ver = nsp("run", "--rm", "e2e-pull/debian:13", "cat", "/etc/debian_version").stdout
    assert ver == (BOOT_IMAGE_DIR / "etc" / "debian_version").read_text()


def test_plain_http_needs_insecure_and_insecure_does_not_skip_verification(web: Site, nsp: CLI) -> None:
    url = web.url("rel/bb.tar.xz", scheme="http")
    assert_error(web.pull(nsp, url, "e2e-http:1", check=False), "http")
    # --insecure permits HTTP, nothing else: the signature is still required and checked
    assert_error(web.pull(nsp, "--insecure", url, "e2e-http:1", check=False), "trusted")
    web.trust(nsp, web.key_a_file, SITE)
    nsp.images.add("e2e-http:1")
    proc = web.pull(nsp, "--insecure", url, "e2e-http:1")
    assert f"signature by {web.key_a}" in proc.stderr


def test_verify_checksum_and_no(web: Site, nsp: CLI) -> None:
    nsp.images.update({"e2e-sum:1", "e2e-nover:1"})
    # checksum: no key needed, but the checksum still counts
    assert_error(
        web.pull(nsp, "--verify=checksum", web.url("tampered/bb.tar.xz"), "e2e-sum:1", check=False),
        "checksum",
    )
    web.pull(nsp, "--verify=checksum", web.url("unsigned/bb.tar.xz"), "e2e-sum:1")
    proc = web.pull(nsp, "--verify=no", web.url("unsigned/bb.tar.xz"), "e2e-nover:1")
    assert "Not verified" in proc.stderr


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "hardlink"])
def test_archive_escaping_its_root_is_refused(web: Site, nsp: CLI, workdir: Path, kind: str) -> None:
    web.trust(nsp, web.key_a_file, SITE)
    victim = (workdir / "web" / "victim").resolve()
    hostname_links = os.stat("/etc/hostname").st_nlink
    before = pool_snapshot()
    proc = web.pull(nsp, web.url(f"evil/{kind}.tar"), f"e2e-evil-{kind}:1", check=False)
    assert_error(proc)
    assert "outside" in proc.stderr or "unsafe" in proc.stderr.lower(), proc.stderr
    assert pool_snapshot() == before
    assert list(victim.iterdir()) == []
    assert os.stat("/etc/hostname").st_nlink == hostname_links
    assert "overwritten" not in Path("/etc/hostname").read_text()


def test_aci_found_by_discovery_up_the_path_verified_and_run(web: Site, nsp: CLI) -> None:
    name = f"{ACI_SITE}/team/app"
    # untrusted: refused before the image is downloaded, pointing at the publisher's key
    proc = web.pull(nsp, f"{name}:1.0", check=False)
    assert_error(proc, "trusted")
    assert f"https://{ACI_SITE}/keys/team.asc" in proc.stderr
    assert not web.gets(f"acis/{name}-1.0-linux-{APPC_ARCH}.aci")

    web.trust(nsp, web.key_a_file, f"{ACI_SITE}/team")
    nsp.images.add(f"{name}:1.0")
    proc = web.pull(nsp, f"{name}:1.0")
    image_id = proc.stdout.strip()
    assert image_id.startswith("sha512-") and len(image_id) == 7 + 128
    # discovery asked for the name first, then walked up to aci.example.test/team
    log = web.log.read_text()
    assert "/team/app?ac-discovery=1 404" in log and "/team?ac-discovery=1 200" in log
    images = nsp("images").stdout
    assert image_id[:19] in images
    out = nsp("run", "--rm", f"{name}:1.0")
    assert out.stdout.strip() == "aci-says hello-aci from /tmp"
    # a command given to run replaces the manifest's exec
    assert nsp("run", "--rm", f"{name}:1.0", "cat", "/etc/marker").stdout.strip() == "release"
    # pulled again: the server answers 304 to the ETag, nothing is downloaded, a new name is added
    aci_path = f"acis/{name}-1.0-linux-{APPC_ARCH}.aci"
    assert len(web.gets(aci_path)) == 1
    nsp.images.add("e2e-aci:again")
    assert web.pull(nsp, f"{name}:1.0", "e2e-aci:again").stdout.strip() == image_id
    assert len(web.gets(aci_path)) == 1
    assert f"GET /{aci_path} 304" in web.log.read_text()


def test_aci_for_another_arch_is_refused(web: Site, nsp: CLI) -> None:
    web.trust(nsp, web.key_a_file, f"{ACI_SITE}/team")
    before = pool_snapshot()
    proc = web.pull(nsp, f"{ACI_SITE}/team/wrongarch:1.0", check=False)
    assert_error(proc, WRONG_ARCH)
    assert pool_snapshot() == before


def test_import_of_an_aci_file(web: Site, nsp: CLI) -> None:
    name = f"{ACI_SITE}/team/app"
    path = web.root / "acis" / f"{name}-1.0-linux-{APPC_ARCH}.aci"
    nsp.images.add(f"{name}:1.0")
    image_id = nsp("import", str(path)).stdout.strip()
    assert image_id.startswith("sha512-")
    assert nsp("run", "--rm", f"{name}:1.0").stdout.strip() == "aci-says hello-aci from /tmp"


@pytest.mark.surface
def test_progress_bar_on_a_terminal(web: Site, nsp: CLI) -> None:
    web.trust(nsp, web.key_a_file, SITE)
    nsp.images.add("e2e-progress:1")
    for image in nsp.json("images"):  # the content must really be downloaded
        if SITE in image["source"]:
            nsp("rmi", "-f", image["id"])
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["nspawnctl", "pull", "--ca-cert", str(web.ca), web.url("slow/rel/bb.tar.xz"), "e2e-progress:1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    while True:  # read while it runs, or a full pty buffer would block it
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.stdout is not None
    image_id = proc.stdout.read().decode().strip()
    assert proc.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    size_kb = (web.root / "rel" / "bb.tar.xz").stat().st_size / 1000
    assert "bb.tar.xz" in text and f"{size_kb:.1f}/{size_kb:.1f} kB" in text, text  # bytes done / total
    assert image_id.startswith("sha256:")
