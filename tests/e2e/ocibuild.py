"""OCI images built by hand for the registry tests, and what their filesystems must hold.

Independent of nspawnctl (the tests must not share code with what they test): layers are tar files
written with tarfile, compressed with gzip / zstd or left plain; manifests, configs and indexes are
JSON written here; the result is an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/*``) that ``skopeo copy oci:DIR:TAG docker://...`` pushes, or ``push()`` uploads byte
for byte through the registry API (skopeo gzips uncompressed layers and rewrites Docker media types,
``push()`` does not).

Every layer records what it does as a list of operations, so the expected root filesystem of an
image is computed here by applying those operations to a model (``Tree``) with the OCI rules
(whiteouts remove only what lower layers put there; an opaque marker empties its directory of lower
content wherever it appears in the layer; hardlinks share content). ``tree_of(path)`` reads a real
directory into the same model, and ``diff_trees`` says how two differ::

    layout = Layout(workdir / "oci")
    base = LayerSpec().tree(busybox_root)
    img = layout.image("bb", [Layer(base, "gzip")], {"Cmd": ["/bin/sh", "-c", "echo hi"]})
    layout.save()
    skopeo_copy(layout.path, "bb", reg.ref("acc/bb", "v1"))
    assert not diff_trees(img.tree, tree_of(pulled_root))

``standard_images(layout, busybox_root)`` builds the set the e2e tests use (see its docstring).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zstandard
from registry import Session

Compression = Literal["gzip", "zstd", "none"]
MTIME = 1_700_000_000  # fixed: the same content gives the same layer digest in every run

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = {
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
}
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_platform() -> str:
    """The platform nspawnctl should pick on this machine, "linux/amd64" or "linux/arm64/v8"."""
    arch = GOARCH.get(platform.machine(), platform.machine())
    return {"arm64": "linux/arm64/v8", "arm": "linux/arm/v7"}.get(arch, f"linux/{arch}")


# --------------------------------------------------------------------------- the filesystem model


@dataclass(frozen=True)
class Node:
    """What one path holds: kind "dir" | "file" | "symlink"; data = sha256 of a file / symlink target."""

    kind: str
    mode: int = 0o755  # permission bits with setuid/setgid/sticky (0o777 for symlinks, not compared)
    uid: int = 0
    gid: int = 0
    data: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.mode:04o} {self.uid}:{self.gid}" + (f" {self.data}" if self.data else "")


Tree = dict[str, Node]  # relative path ("bin/sh", no leading "./" or "/") -> Node; the root not included


def tree_of(root: Path) -> Tree:
    """A real directory as a Tree (never follows symlinks)."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                node = Node("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            elif stat.S_ISLNK(st.st_mode):
                node = Node("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                node = Node("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, sha256(path.read_bytes()))
            else:
                node = Node(
                    f"special:{stat.S_IFMT(st.st_mode):o}", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                )
            out[rel] = node
    return out


def diff_trees(expected: Tree, actual: Tree, ignore: tuple[str, ...] = ()) -> list[str]:
    """Differences as readable lines (empty: equal); paths under an ``ignore`` prefix are skipped."""

    def skip(p: str) -> bool:
        return any(p == i or p.startswith(i.rstrip("/") + "/") for i in ignore)

    lines = []
    for path in sorted(set(expected) | set(actual)):
        if skip(path):
            continue
        want, got = expected.get(path), actual.get(path)
        if want is None:
            lines.append(f"unexpected {path}: {got}")
        elif got is None:
            lines.append(f"missing {path}: {want}")
        elif want != got:
            lines.append(f"differs {path}: want {want}, got {got}")
    return lines


# --------------------------------------------------------------------------- layers


@dataclass
class Op:
    """One tar entry of a layer spec."""

    kind: str  # dir | file | symlink | hardlink | whiteout | opaque
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""  # symlink target, or the hardlink's target path


def _clean(path: str) -> str:
    p = path.strip("/")
    if not p or ".." in p.split("/"):
        raise ValueError(f"bad layer path {path!r}")
    return p


class LayerSpec:
    """The entries of one layer, in tar order; every method returns self (chainable)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerSpec:
        self.ops.append(Op("dir", _clean(path), mode, uid, gid))
        return self

    def file(
        self, path: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> LayerSpec:
        self.ops.append(
            Op("file", _clean(path), mode, uid, gid, data.encode() if isinstance(data, str) else data)
        )
        return self

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0) -> LayerSpec:
        self.ops.append(Op("symlink", _clean(path), 0o777, uid, gid, target=target))
        return self

    def hardlink(self, path: str, target: str) -> LayerSpec:
        """``path`` becomes another name of ``target`` (which may come from a lower layer)."""
        self.ops.append(Op("hardlink", _clean(path), target=_clean(target)))
        return self

    def whiteout(self, path: str) -> LayerSpec:
        """Remove ``path`` (and what is below it) of the lower layers: a ``DIR/.wh.NAME`` entry."""
        self.ops.append(Op("whiteout", _clean(path)))
        return self

    def opaque(self, dir: str) -> LayerSpec:
        """Hide everything lower layers put in ``dir``: a ``DIR/.wh..wh..opq`` entry."""
        self.ops.append(Op("opaque", _clean(dir)))
        return self

    def raw(self, name: str, data: bytes = b"", mode: int = 0o644) -> LayerSpec:
        """A regular-file entry named exactly ``name`` (e.g. a bare ``.wh.``); not modelled."""
        self.ops.append(Op("raw", name, mode, data=data))
        return self

    def tree(self, root: Path, prefix: str = "") -> LayerSpec:
        """Everything under a real directory (parents before children), owned 0:0, modes kept."""
        pre = prefix.strip("/") + "/" if prefix.strip("/") else ""
        found = LayerSpec()
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                rel = pre + str(path.relative_to(root))
                st = path.lstat()
                if stat.S_ISDIR(st.st_mode):
                    found.dir(rel, stat.S_IMODE(st.st_mode))
                elif stat.S_ISLNK(st.st_mode):
                    found.symlink(rel, os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    found.file(rel, path.read_bytes(), stat.S_IMODE(st.st_mode))
        # Sorted by path components: a directory comes right before its contents.
        self.ops += sorted(found.ops, key=lambda op: op.path.split("/"))
        return self

    # --- output ---------------------------------------------------------------------------------

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for op in self.ops:
                info = tarfile.TarInfo(op.path)
                info.mtime, info.uid, info.gid, info.mode = MTIME, op.uid, op.gid, op.mode
                payload = None
                if op.kind == "dir":
                    info.type = tarfile.DIRTYPE
                elif op.kind in ("file", "raw"):
                    info.size, payload = len(op.data), io.BytesIO(op.data)
                elif op.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, op.target
                elif op.kind == "hardlink":
                    info.type, info.linkname, info.mode = tarfile.LNKTYPE, op.target, 0o644
                elif op.kind == "whiteout":
                    parent, _, name = op.path.rpartition("/")
                    info.name, info.mode = (f"{parent}/" if parent else "") + ".wh." + name, 0o644
                elif op.kind == "opaque":
                    info.name, info.mode = op.path + "/.wh..wh..opq", 0o644
                tf.addfile(info, payload)
        return buf.getvalue()

    def apply(self, tree: Tree) -> tuple[Tree, list[tuple[str, str]]]:
        """This layer applied on ``tree`` with the OCI rules: (new tree, hardlink pairs it made)."""
        lower = dict(tree)
        out = dict(tree)
        links: list[tuple[str, str]] = []
        for op in self.ops:  # opaque directories hide lower content wherever the marker appears
            if op.kind == "opaque":
                for p in [p for p in lower if p.startswith(op.path + "/")]:
                    out.pop(p, None)
        written: set[str] = set()
        for op in self.ops:
            if op.kind == "whiteout":
                for p in [
                    p for p in out if (p == op.path or p.startswith(op.path + "/")) and p not in written
                ]:
                    del out[p]
                continue
            if op.kind in ("opaque", "raw"):
                continue
            parent = op.path.rpartition("/")[0]
            if parent and out.get(parent, Node("missing")).kind != "dir":
                raise ValueError(f"layer entry {op.path}: parent {parent} is not a directory in the model")
            old = out.get(op.path)
            if old is not None and not (old.kind == "dir" and op.kind == "dir"):
                for p in [p for p in out if p.startswith(op.path + "/")]:
                    del out[p]
            if op.kind == "dir":
                node = Node("dir", op.mode, op.uid, op.gid)
            elif op.kind == "file":
                node = Node("file", op.mode, op.uid, op.gid, sha256(op.data))
            elif op.kind == "symlink":
                node = Node("symlink", 0o777, op.uid, op.gid, op.target)
            else:  # hardlink: the same inode as its target
                if out.get(op.target, Node("missing")).kind != "file":
                    raise ValueError(f"hardlink {op.path} -> {op.target}: not a file in the model")
                node = out[op.target]
                links.append((op.path, op.target))
            out[op.path] = node
            written.add(op.path)
        return out, links


# How a layer's tar ends: "full" as tarfile writes it (padding, end-of-archive marker, record
# padding); "no-trailer" right after the last member's data, as `umoci insert` writes layers;
# "cut-data" two bytes before that, inside the last member's data (a layer that is truncated).
TarEnd = Literal["full", "no-trailer", "cut-data"]


def end_tar(tar: bytes, end: TarEnd) -> bytes:
    if end == "full":
        return tar
    last = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()[-1]
    assert last.isfile() and last.size >= 2, "the last member must be a file with data"
    data_end = last.offset_data + last.size
    return tar[: data_end if end == "no-trailer" else data_end - 2]


@dataclass
class Layer:
    """A layer spec, how its blob is compressed, and how its tar ends."""

    spec: LayerSpec
    compression: Compression = "gzip"
    end: TarEnd = "full"


@dataclass(frozen=True)
class BuiltLayer:
    digest: str  # of the blob as pushed by push() (skopeo may recompress "none" layers)
    size: int
    diff_id: str  # sha256 of the uncompressed tar
    media_type: str
    compression: Compression


def compress(data: bytes, how: Compression) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


# --------------------------------------------------------------------------- images


@dataclass
class BuiltImage:
    """One image manifest in the layout, and what a pull must produce from it."""

    tag: str | None
    platform: str  # "linux/amd64", "linux/arm/v7"
    media_type: str  # of the manifest
    manifest: bytes
    digest: str  # of the manifest bytes
    config: dict[str, Any]  # the whole config document
    config_bytes: bytes
    config_digest: str  # the image ID
    layers: list[BuiltLayer]
    tree: Tree  # the expected root filesystem
    hardlinks: list[tuple[str, str]]  # pairs of paths that must be one inode

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def size(self) -> int:
        return len(self.manifest)


@dataclass
class BuiltIndex:
    tag: str | None
    media_type: str
    manifest: bytes
    digest: str
    images: list[BuiltImage]  # in index order (attestations not included)
    descriptors: list[dict[str, Any]] = field(default_factory=list)  # the index's `manifests`

    def for_platform(self, plat: str) -> BuiltImage:
        return next(i for i in self.images if i.platform == plat)


class Layout:
    """An OCI image layout directory being written; ``save()`` writes index.json with the tags."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.tags: dict[str, dict[str, Any]] = {}  # tag -> descriptor
        self.blobs: dict[str, str] = {}  # digest -> media type (for push)

    def add_blob(self, data: bytes, media_type: str = "application/octet-stream") -> dict[str, Any]:
        digest = sha256(data)
        target = self.path / "blobs" / "sha256" / digest.split(":")[1]
        if not target.exists():
            target.write_bytes(data)
        self.blobs.setdefault(digest, media_type)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def blob(self, digest: str) -> bytes:
        return (self.path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    def layer(self, layer: Layer, docker: bool = False) -> tuple[BuiltLayer, LayerSpec]:
        tar = end_tar(layer.spec.tar(), layer.end)
        blob = compress(tar, layer.compression)
        media_type = (DOCKER_LAYER if docker else OCI_LAYER)[layer.compression]
        desc = self.add_blob(blob, media_type)
        return BuiltLayer(desc["digest"], len(blob), sha256(tar), media_type, layer.compression), layer.spec

    def image(
        self,
        tag: str | None,
        layers: list[Layer],
        exec_config: dict[str, Any] | None = None,
        *,
        platform: str | None = None,
        docker: bool = False,
        annotations: dict[str, str] | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> BuiltImage:
        """An image manifest over ``layers`` (base first). exec_config is the config's ``config``
        object (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal);
        extra_config is merged into the top level (e.g. to add odd fields)."""
        plat = platform or host_platform()
        os_, arch, *variant = plat.split("/")
        built: list[BuiltLayer] = []
        tree: Tree = {}
        links: list[tuple[str, str]] = []
        for layer in layers:
            bl, spec = self.layer(layer, docker)
            built.append(bl)
            tree, made = spec.apply(tree)
            links += made
        config: dict[str, Any] = {
            "created": "2023-11-14T22:13:20Z",
            "architecture": arch,
            "os": os_,
            "config": exec_config or {},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in built]},
            "history": [
                {"created": "2023-11-14T22:13:20Z", "created_by": f"ocibuild layer {i}"}
                for i in range(len(built))
            ],
        }
        if variant:
            config["variant"] = variant[0]
        config.update(extra_config or {})
        config_bytes = json.dumps(config, indent=2).encode()
        config_desc = self.add_blob(config_bytes, DOCKER_CONFIG if docker else OCI_CONFIG)
        manifest_doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": config_desc,
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in built],
        }
        if annotations:
            manifest_doc["annotations"] = annotations
        manifest = json.dumps(manifest_doc, indent=2).encode()
        desc = self.add_blob(manifest, manifest_doc["mediaType"])
        img = BuiltImage(
            tag, plat, manifest_doc["mediaType"], manifest, desc["digest"], config, config_bytes,
            config_desc["digest"], built, tree, _expand_links(links),
        )  # fmt: skip
        if tag:
            self.tags[tag] = {**desc, "annotations": {"org.opencontainers.image.ref.name": tag}}
        return img

    def attestation(self, subject: BuiltImage) -> dict[str, Any]:
        """A BuildKit-style attestation manifest for ``subject``: its index entry (unknown/unknown)."""
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": []}).encode()
        layer = self.add_blob(statement, "application/vnd.in-toto+json")
        config = self.add_blob(json.dumps({"architecture": "unknown", "os": "unknown"}).encode(), OCI_CONFIG)
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
        ).encode()
        desc = self.add_blob(manifest, OCI_MANIFEST)
        desc["platform"] = {"architecture": "unknown", "os": "unknown"}
        desc["annotations"] = {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject.digest,
        }
        return desc

    def index(
        self,
        tag: str | None,
        images: list[BuiltImage],
        *,
        docker: bool = False,
        extra: list[dict[str, Any]] | None = None,
    ) -> BuiltIndex:
        """An index (or Docker manifest list) of ``images``, each entry with its platform; ``extra``
        descriptors (attestations, odd entries) are appended as they are."""
        entries: list[dict[str, Any]] = []
        for img in images:
            os_, arch, *variant = img.platform.split("/")
            plat: dict[str, Any] = {"architecture": arch, "os": os_}
            if variant:
                plat["variant"] = variant[0]
            entries.append(
                {"mediaType": img.media_type, "digest": img.digest, "size": img.size, "platform": plat}
            )
        entries += extra or []
        media_type = DOCKER_LIST if docker else OCI_INDEX
        data = json.dumps(
            {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=2
        ).encode()
        desc = self.add_blob(data, media_type)
        if tag:
            self.tags[tag] = {**desc, "annotations": {"org.opencontainers.image.ref.name": tag}}
        return BuiltIndex(tag, media_type, data, desc["digest"], images, entries)

    def save(self) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(self.tags.values())}
        (self.path / "index.json").write_text(json.dumps(doc, indent=2))


def _expand_links(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(set(pairs))


# --------------------------------------------------------------------------- pushing


def skopeo_copy(
    layout: Path,
    tag: str,
    dest: str,
    *,
    all: bool = False,
    creds: tuple[str, str] | None = None,
    cert_dir: Path | None = None,
    tls_verify: bool = False,
    format: str | None = None,
) -> str:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST``; returns the pushed manifest digest.

    dest is HOST:PORT/REPO:TAG. cert_dir: a directory with the CA as ``ca.crt`` (see cert_dir_for).
    format: "v2s2" converts to Docker schema2 media types (gzip layers only), "oci" keeps OCI.
    """
    digestfile = layout / f".digest-{os.getpid()}"
    argv = [
        "skopeo",
        "copy",
        "--quiet",
        f"--digestfile={digestfile}",
        f"--dest-tls-verify={str(tls_verify).lower()}",
    ]
    if all:
        argv.append("--all")
    if creds:
        argv.append(f"--dest-creds={creds[0]}:{creds[1]}")
    if cert_dir:
        argv.append(f"--dest-cert-dir={cert_dir}")
    if format:
        argv.append(f"--format={format}")
    argv += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HOME": str(layout)})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    digest = digestfile.read_text().strip()
    digestfile.unlink()
    return digest


def cert_dir_for(ca: Path, dir: Path) -> Path:
    """A containers-certs.d style directory (``ca.crt``) for skopeo's --dest-cert-dir."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "ca.crt").write_bytes(ca.read_bytes())
    return dir


def push(
    layout: Layout,
    target: BuiltImage | BuiltIndex,
    registry_url: str,
    repository: str,
    tag: str | None = None,
    *,
    creds: tuple[str, str] | None = None,
    ca: Path | None = None,
) -> str:
    """Upload an image or index byte for byte (blobs, then manifests, children first); its digest.

    registry_url: ``http(s)://HOST:PORT``. Unlike skopeo nothing is converted or recompressed, so the
    digests in ``target`` are the registry's. Returns the top manifest's digest.
    """
    session = Session(registry_url, creds, ca)
    images = target.images if isinstance(target, BuiltIndex) else [target]
    extra = [d for d in target.descriptors[len(images) :]] if isinstance(target, BuiltIndex) else []
    for img in images:
        for digest in [img.config_digest, *(layer.digest for layer in img.layers)]:
            _upload_blob(session, repository, digest, layout.blob(digest))
        _put_manifest(session, repository, img.digest, img.manifest, img.media_type)
    for desc in extra:  # attestations and the like: their blobs, then them
        doc = json.loads(layout.blob(desc["digest"]))
        for child in [doc["config"], *doc.get("layers", [])]:
            _upload_blob(session, repository, child["digest"], layout.blob(child["digest"]))
        _put_manifest(session, repository, desc["digest"], layout.blob(desc["digest"]), desc["mediaType"])
    top_digest = target.digest
    _put_manifest(session, repository, tag or top_digest, target.manifest, target.media_type)
    return top_digest


def _upload_blob(session: Session, repo: str, digest: str, data: bytes) -> None:
    status, _, _ = session.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    if status == 200:
        return
    status, headers, body = session.request("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
    if status != 202:
        raise RuntimeError(f"blob upload start for {repo}: {status} {body[:300]!r}")
    location = headers["location"]
    sep = "&" if "?" in location else "?"
    if location.startswith("/"):
        location = session.base + location
    status, _, body = session.request(
        "PUT",
        f"{location}{sep}digest={digest}",
        {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        data=data,
    )
    if status != 201:
        raise RuntimeError(f"blob upload {digest} to {repo}: {status} {body[:300]!r}")


def _put_manifest(session: Session, repo: str, reference: str, data: bytes, media_type: str) -> None:
    status, _, body = session.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", {"Content-Type": media_type}, data=data
    )
    if status != 201:
        raise RuntimeError(f"manifest PUT {repo}:{reference}: {status} {body[:300]!r}")


# --------------------------------------------------------------------------- the standard set


@dataclass
class StandardImages:
    layout: Layout
    bb: BuiltImage  # busybox alone
    app: BuiltImage  # bb's layer + 2 layers: files, links, owners, whiteouts; full config
    app2: BuiltImage  # bb's and app's first two layers + its own third
    docker: BuiltImage  # Docker schema2 media types, 2 gzip layers (base shared with bb)
    multi: BuiltIndex  # OCI index: 3 platforms + an attestation; each has /etc/platform
    multi_docker: BuiltIndex  # Docker manifest list: 2 platforms
    tags: dict[str, BuiltImage | BuiltIndex]  # layout tag -> what it is


APP_SCRIPT = """#!/bin/sh
echo "app-entrypoint args:$* user:$(id -u):$(id -g) cwd:$(pwd) greeting:$GREETING"
"""


def standard_images(layout: Layout, busybox_root: Path) -> StandardImages:
    """The images the e2e tests pull (layout tags in brackets):

    [bb]  one gzip layer: busybox_root as it is (tests/host/demo.py make_busybox_root).
          Cmd ["/bin/sh", "-c", "echo hello-from-oci"], Env PATH + BB=1.
    [app] layers: the bb layer (same blob), L2 (zstd), L3 (uncompressed tar):
          L2 adds /app (dir 0755), /app/run.sh (0755, the Entrypoint), /app/data.txt, /app/hard
          (hardlink to /app/data.txt), /app/link -> data.txt, /app/setuid (04755), /app/owned
          (1000:1000, 0600), /srv/old/{a,b}, /srv/keep, /etc/removed-later, /opt/gone/x;
          L3 whites out /etc/removed-later, the directory /opt/gone, and bin/vi (from the base
          layer; bin/ed or bin/less if busybox has no vi), hardlinks /app/hard-lower to L2's
          /app/data.txt, makes /srv/old
          opaque AFTER adding /srv/old/new (the marker comes after: still only lower content goes),
          adds /app/l3.txt, writes /app/data2.txt and then whites it out in the same layer
          (must survive: a whiteout removes only lower content), replaces /etc/marker.
          Config: Entrypoint ["/app/run.sh"], Cmd ["default-arg"], Env PATH + GREETING=hello-env,
          WorkingDir /app, User "0:0", ExposedPorts 8080/tcp + 53/udp, Volumes /data,
          Labels {"org.example.role": "app"}, StopSignal SIGTERM.
    [app2] the bb layer + app's L2 (same blobs) + its own L3 (gzip) with /app2.txt;
          Cmd ["/bin/cat", "/app2.txt"].
    [docker] Docker schema2 manifest/config/layer media types: the bb layer (Docker gzip media
          type, same blob bytes) + a gzip layer with /etc/docker-image; Cmd ["cat", "/etc/docker-image"].
    [multi] OCI index: linux/arm/v7 first, then the host platform, then linux/s390x, then an
          attestation manifest (unknown/unknown) for the host image; each image = the bb layer +
          a gzip layer with /etc/platform holding its platform string.
    [multi-docker] Docker manifest list: linux/s390x then the host platform, Docker media types.
    """
    host = host_platform()
    victim = next((v for v in ("bin/vi", "bin/ed", "bin/less") if (busybox_root / v).is_symlink()), None)
    if victim is None:
        raise RuntimeError(f"{busybox_root} has none of bin/vi, bin/ed, bin/less to white out")
    base = Layer(LayerSpec().tree(busybox_root), "gzip")
    env_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    bb = layout.image(
        "bb", [base], {"Cmd": ["/bin/sh", "-c", "echo hello-from-oci"], "Env": [env_path, "BB=1"]}
    )

    l2 = (
        LayerSpec()
        .dir("app")
        .file("app/run.sh", APP_SCRIPT, 0o755)
        .file("app/data.txt", "data\n")
        .hardlink("app/hard", "app/data.txt")
        .symlink("app/link", "data.txt")
        .file("app/setuid", "not really a program\n", 0o4755)
        .file("app/owned", "owned by 1000\n", 0o600, uid=1000, gid=1000)
        .dir("srv")
        .dir("srv/old")
        .file("srv/old/a", "a\n")
        .file("srv/old/b", "b\n")
        .file("srv/keep", "keep\n")
        .file("etc/removed-later", "gone in L3\n")
        .dir("opt")
        .dir("opt/gone")
        .file("opt/gone/x", "x\n")
    )
    l3 = (
        LayerSpec()
        .whiteout("etc/removed-later")
        .whiteout(victim)
        .whiteout("opt/gone")
        .hardlink("app/hard-lower", "app/data.txt")
        .file("srv/old/new", "new in L3\n")
        .opaque("srv/old")
        .file("app/l3.txt", "layer 3\n")
        .file("app/data2.txt", "written and whited out in the same layer\n")
        .whiteout("app/data2.txt")
        .file("etc/marker", "app\n")
    )
    layer2 = Layer(l2, "zstd")
    app = layout.image(
        "app",
        [base, layer2, Layer(l3, "none")],
        {
            "Entrypoint": ["/app/run.sh"],
            "Cmd": ["default-arg"],
            "Env": [env_path, "GREETING=hello-env"],
            "WorkingDir": "/app",
            "User": "0:0",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"org.example.role": "app"},
            "StopSignal": "SIGTERM",
        },
    )
    app2 = layout.image(
        "app2",
        [base, layer2, Layer(LayerSpec().file("app2.txt", "app2\n"), "gzip")],
        {"Cmd": ["/bin/cat", "/app2.txt"], "Env": [env_path]},
    )
    docker = layout.image(
        "docker",
        [base, Layer(LayerSpec().file("etc/docker-image", "docker schema2\n"), "gzip")],
        {"Cmd": ["cat", "/etc/docker-image"], "Env": [env_path]},
        docker=True,
    )

    def platform_image(plat: str, docker: bool = False) -> BuiltImage:
        marker = Layer(LayerSpec().file("etc/platform", plat + "\n"), "gzip")
        return layout.image(None, [base, marker], {"Cmd": ["cat", "/etc/platform"], "Env": [env_path]},
                            platform=plat, docker=docker)  # fmt: skip

    others = [p for p in ("linux/arm/v7", "linux/s390x") if p != host]
    arm, s390x = others[0], others[-1]
    members = [platform_image(arm), platform_image(host), platform_image(s390x)]
    multi = layout.index("multi", members, extra=[layout.attestation(members[1])])
    multi_docker = layout.index(
        "multi-docker", [platform_image(s390x, docker=True), platform_image(host, docker=True)], docker=True
    )
    layout.save()
    tags: dict[str, BuiltImage | BuiltIndex] = {
        "bb": bb, "app": app, "app2": app2, "docker": docker, "multi": multi, "multi-docker": multi_docker,
    }  # fmt: skip
    return StandardImages(layout, bb, app, app2, docker, multi, multi_docker, tags)


def push_standard(
    images: StandardImages,
    registry_url: str,
    prefix: str = "acc",
    creds: tuple[str, str] | None = None,
    ca: Path | None = None,
) -> dict[str, str]:
    """push() every standard image as ``PREFIX/<tag>:v1``; layout tag -> manifest digest."""
    return {
        tag: push(images.layout, target, registry_url, f"{prefix}/{tag}", "v1", creds=creds, ca=ca)
        for tag, target in images.tags.items()
    }
