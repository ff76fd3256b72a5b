"""OCI and Docker schema 2 images: manifests, indexes, image configs, and choosing a platform.

What a registry serves is validated here before anything acts on it: every digest must be a
canonical sha256 before it can name a file or a URL path, every media type must be one nspawnctl
can unpack, and every config string that ends up in a .nspawn file must be free of the characters
that end a line there. The image config becomes the image's run defaults (``run_defaults``).
Docker schema 1 manifests (deprecated since 2017, unverifiable) are refused.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
import re
import signal
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArchiveError, InvalidArgument, NotFound, VerificationFailed
from ..ref import valid_digest
from ..spec import RunDefaults

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "IMAGE_MANIFESTS",
    "INDEXES",
    "LAYER_COMPRESSION",
    "MAX_LAYERS",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "chain_ids",
    "check_platform",
    "ignored_fields",
    "parse_config",
    "parse_manifest",
    "run_defaults",
    "select_platform",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
_DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
_NONDISTRIBUTABLE = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)

INDEXES = (OCI_INDEX, DOCKER_LIST)
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
# Layer media type -> how its blob is compressed (None: a plain tar).
LAYER_COMPRESSION: dict[str, str | None] = {
    OCI_LAYER: None,
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER: None,
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
}
# The Accept header of a manifest request: without it old registries answer with schema 1.
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
# Each layer is a btrfs snapshot of the one below; docker itself stops at 125.
MAX_LAYERS = 256

_ATTESTATION = ("vnd.docker.reference.type", "attestation-manifest")
_LINE_END = re.compile("[\n\r\0]")  # systemd ends a .nspawn line at each of them
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_PLATFORM_WORD = re.compile(r"[a-z0-9][a-z0-9._-]*")
_PORT = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/([A-Za-z]+))?")
_PROTOCOLS = ("tcp", "udp", "sctp")
_ROOT = ("", "root", "0")
_HINT = "the image is malformed; ask its publisher to fix it"

# platform.machine() -> (GOARCH, variant); a variant here is required of the image (32-bit arm).
_HOST_ARCHES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None),
    "mips64": ("mips64", None),
}
# Other spellings of GOARCH values seen in indexes, as containerd normalises them.
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
}


# -- platforms -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """An OS and CPU as OCI names them (GOOS/GOARCH), e.g. linux/arm64 or linux/arm/v7."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``OS/ARCH[/VARIANT]`` as docker's ``--platform`` takes it."""
        parts = text.strip().lower().split("/")
        if not 2 <= len(parts) <= 3 or not all(_PLATFORM_WORD.fullmatch(p) for p in parts):
            raise InvalidArgument(
                f"invalid platform {text!r}", hint="use OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        """This machine: ``platform.machine()`` mapped to GOARCH (x86_64 -> amd64, armv7l -> arm/v7)."""
        machine = host_platform.machine()
        arch, variant = _HOST_ARCHES.get(machine, (machine.lower(), None))
        return cls("linux", arch, variant)

    def normalized(self) -> tuple[str, str, str | None]:
        """(os, arch, variant) with the spellings that mean the same made equal: aarch64 is arm64,
        arm64/v8 is arm64, amd64/v1 is amd64, a bare arm is arm/v7."""
        arch, variant = self.architecture, self.variant
        if arch in _ARCH_ALIASES:
            arch, implied = _ARCH_ALIASES[arch]
            variant = variant or implied
        if variant and variant.isdigit():
            variant = f"v{variant}"
        if (arch, variant) in (("arm64", "v8"), ("arm64", "v8.0"), ("amd64", "v1")):
            variant = None
        elif arch == "arm" and variant is None:
            variant = "v7"
        return self.os, arch, variant


def _compatible_variants(arch: str, variant: str | None) -> list[str | None]:
    """What a CPU of this variant runs, best first: a 32-bit arm vN runs vN down to v5."""
    if arch == "arm" and variant and re.fullmatch(r"v[5-8]", variant):
        return [f"v{n}" for n in range(int(variant[1]), 4, -1)]
    return [variant]


# -- descriptors, manifests, indexes -------------------------------------------------------------
@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob or manifest: its media type, digest (canonical sha256) and size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def compression(self) -> str | None:
        """For a layer: "gzip", "zstd", or None for a plain tar."""
        return LAYER_COMPRESSION.get(self.media_type)

    @property
    def is_attestation(self) -> bool:
        """BuildKit's provenance/SBOM entries of an index (platform unknown/unknown)."""
        p = self.platform
        unknown = p is not None and (p.os, p.architecture) == ("unknown", "unknown")
        return unknown or self.annotations.get(_ATTESTATION[0]) == _ATTESTATION[1]


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list: one manifest per platform."""

    manifests: list[Descriptor]
    media_type: str = OCI_INDEX


@dataclass(frozen=True)
class Manifest:
    """One image: its config blob and its layers, base first."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def parse_manifest(data: bytes, media_type: str) -> Index | Manifest:
    """Validate a manifest or index as served with Content-Type ``media_type`` (parameters are
    ignored; an empty or generic type falls back to the body's ``mediaType``, then its shape)."""
    served = media_type.partition(";")[0].strip().lower()
    if served in _DOCKER_SCHEMA1:
        raise _schema1()
    doc = _json_object(data, "manifest")
    if doc.get("schemaVersion") == 1:
        raise _schema1()
    if doc.get("schemaVersion") != 2:
        raise _bad("manifest", f"schemaVersion is {doc.get('schemaVersion')!r}, not 2")
    declared = doc.get("mediaType")
    if declared is not None:
        declared = _string(declared, "manifest", "mediaType")
        if declared in _DOCKER_SCHEMA1:
            raise _schema1()
    kinds = (*INDEXES, *IMAGE_MANIFESTS)
    if served in kinds:
        if declared is not None and declared != served:
            raise _bad("manifest", f"the registry served it as {served} but it says it is {declared}")
        kind = served
    elif declared is not None:
        kind = declared
    elif "manifests" in doc:
        kind = OCI_INDEX
    else:
        kind = OCI_MANIFEST
    if kind in INDEXES:
        return _parse_index(doc, kind)
    if kind in IMAGE_MANIFESTS:
        return _parse_image_manifest(doc, kind)
    raise ArchiveError(
        f"unsupported manifest type {kind}",
        hint="nspawnctl pulls OCI and Docker schema 2 container images",
    )


def _parse_index(doc: dict[str, Any], kind: str) -> Index:
    if "config" in doc or "layers" in doc:
        raise _bad("index", "it has config or layers, as an image manifest has")
    entries = _list(doc.get("manifests"), "index", "manifests")
    out = []
    for i, item in enumerate(entries):
        where = f"manifests[{i}]"
        raw = _object(item, "index", where)
        known = raw.get("mediaType") in (*INDEXES, *IMAGE_MANIFESTS)
        try:
            out.append(_descriptor(raw, "index", where))
        except ArchiveError:
            if known:
                raise
            # entries of types nspawnctl does not know (artifacts, signatures) must not fail a pull
    return Index(out, kind)


def _parse_image_manifest(doc: dict[str, Any], kind: str) -> Manifest:
    if "manifests" in doc:
        raise _bad("manifest", "it has manifests, as an index has")
    config = _descriptor(_object(doc.get("config"), "manifest", "config"), "manifest", "config")
    if config.media_type not in _CONFIGS:
        raise ArchiveError(
            f"the manifest is not a container image: its config is {config.media_type}",
            hint="nspawnctl pulls container images; this reference names another kind of artifact",
        )
    layers = []
    raw_layers = _list(doc.get("layers"), "manifest", "layers")
    if not raw_layers:
        raise ArchiveError(
            "the image has no layers", hint="nspawnctl needs at least one layer to make a root filesystem"
        )
    if len(raw_layers) > MAX_LAYERS:
        raise ArchiveError(
            f"the image has {len(raw_layers)} layers, more than nspawnctl takes ({MAX_LAYERS})",
            hint="flatten the image (fewer layers) and push it again",
        )
    for i, item in enumerate(raw_layers):
        where = f"layers[{i}]"
        layer = _descriptor(_object(item, "manifest", where), "manifest", where)
        if layer.media_type in _NONDISTRIBUTABLE:
            raise ArchiveError(
                f"{where} is a non-distributable (foreign) layer ({layer.media_type})",
                hint="such layers (Windows base layers) are not supported",
            )
        if layer.media_type not in LAYER_COMPRESSION:
            raise ArchiveError(
                f"{where} has media type {layer.media_type}, which nspawnctl cannot unpack",
                hint="nspawnctl unpacks tar layers, plain, gzip or zstd compressed",
            )
        layers.append(layer)
    return Manifest(kind, config, layers)


def _descriptor(raw: dict[str, Any], what: str, where: str) -> Descriptor:
    media_type = _string(raw.get("mediaType"), what, f"{where}.mediaType")
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise _bad(what, f"{where}.mediaType {media_type!r} is not a media type")
    digest = _string(raw.get("digest"), what, f"{where}.digest")
    if not valid_digest(digest):
        # checked before the digest can reach a URL or a file name
        raise ArchiveError(
            f"invalid {what}: {where}.digest {digest!r} is not sha256:<64 lowercase hex digits>",
            hint=f"{_HINT} (nspawnctl supports sha256 digests only)",
        )
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(what, f"{where}.size must be a non-negative integer")
    plat = None
    if raw.get("platform") is not None:
        p = _object(raw["platform"], what, f"{where}.platform")
        plat = Platform(
            _string(p.get("os"), what, f"{where}.platform.os"),
            _string(p.get("architecture"), what, f"{where}.platform.architecture"),
            _optional(p.get("variant"), what, f"{where}.platform.variant"),
        )
    annotations = _string_map(raw.get("annotations"), what, f"{where}.annotations", control_ok=True)
    return Descriptor(media_type, digest, size, plat, annotations)


# -- choosing a platform -------------------------------------------------------------------------
def select_platform(index: Index, want: Platform) -> Descriptor:
    """The image manifest of ``index`` for ``want``: the first best match, as the spec says.

    Attestations and entries of unknown types are skipped. ``want.variant`` set: required (a
    32-bit arm vN also takes lower variants, best first); unset: any variant, preferring the
    default one (arm64 = v8, amd64 = v1). An index whose only image has no platform gives that
    image: its config says the platform, which the caller checks (``check_platform``). A nested
    index is refused when nothing else matches.
    """
    images = [d for d in index.manifests if d.media_type in IMAGE_MANIFESTS and not d.is_attestation]
    w_os, w_arch, w_variant = want.normalized()
    ranked: list[tuple[int, int, Descriptor]] = []
    for pos, d in enumerate(images):
        if d.platform is None:
            continue
        e_os, e_arch, e_variant = d.platform.normalized()
        if (e_os, e_arch) != (w_os, w_arch):
            continue
        if want.variant is not None:
            accepted = _compatible_variants(w_arch, w_variant)
            if e_variant not in accepted:
                continue
            rank = accepted.index(e_variant)
        else:
            rank = 0 if e_variant == w_variant else 1
        ranked.append((rank, pos, d))
    if ranked:
        return min(ranked, key=lambda r: (r[0], r[1]))[2]
    if len(images) == 1 and images[0].platform is None:
        return images[0]
    if any(d.media_type in INDEXES for d in index.manifests):
        raise ArchiveError(
            "the image index refers to another index (nested indexes are not supported)",
            hint="pull the inner index by its digest: NAME@sha256:…",
        )
    offered = sorted({str(d.platform) for d in images if d.platform is not None})
    if not offered:
        raise NotFound("the image index lists no container images", hint="check the name and tag")
    raise NotFound(
        f"the image is not available for {want}; it is for {', '.join(offered)}",
        hint=f"choose one with --platform, e.g. --platform {offered[0]}",
    )


def check_platform(config: ImageConfig, want: Platform) -> None:
    """Refuse an image whose config is for another platform than the one chosen (an index entry
    without a platform, or a manifest pulled by digest)."""
    have = Platform(config.os, config.architecture, config.variant)
    h_os, h_arch, h_variant = have.normalized()
    w_os, w_arch, w_variant = want.normalized()
    ok = (h_os, h_arch) == (w_os, w_arch)
    if ok and want.variant is not None:
        ok = h_variant in _compatible_variants(w_arch, w_variant)
    if not ok:
        raise VerificationFailed(
            f"the image is for {have}, not {want}",
            hint=f"pull it with --platform {have} to run it under emulation, or choose another tag",
        )


# -- image config --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageConfig:
    """A validated image config blob: its platform, its layers' diff IDs and how to run it."""

    os: str
    architecture: str
    variant: str | None
    diff_ids: list[str]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    exposed_ports: list[str] = field(default_factory=list)  # "8080/tcp", "53/udp", "8000-8010/tcp"
    volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None  # canonical: "SIGQUIT", "SIGRTMIN+3"
    created: str | None = None
    healthcheck: dict[str, Any] | None = None  # docker's shape, checked (health.image_healthcheck)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def parse_config(data: bytes) -> ImageConfig:
    """Validate a config blob (OCI or Docker). Optional fields may be null (= absent) and unknown
    fields are ignored, as the spec says."""
    what = "image config"
    doc = _json_object(data, what)
    os_ = _string(doc.get("os"), what, "os")
    arch = _string(doc.get("architecture"), what, "architecture")
    if not os_ or not arch:
        raise _bad(what, "os and architecture are required")
    variant = _optional(doc.get("variant"), what, "variant")
    rootfs = _object(doc.get("rootfs"), what, "rootfs")
    if rootfs.get("type") != "layers":
        raise _bad(what, f"rootfs.type is {rootfs.get('type')!r}, not 'layers'")
    diff_ids = []
    for i, d in enumerate(_list(rootfs.get("diff_ids"), what, "rootfs.diff_ids")):
        d = _string(d, what, f"rootfs.diff_ids[{i}]")
        if not valid_digest(d):
            raise _bad(what, f"rootfs.diff_ids[{i}] {d!r} is not sha256:<64 lowercase hex digits>")
        diff_ids.append(d)
    created = _optional(doc.get("created"), what, "created")
    c = doc.get("config")
    c = {} if c is None else _object(c, what, "config")
    env = _words(c.get("Env"), what, "config.Env")
    for i, e in enumerate(env):
        if "=" not in e or e.startswith("="):
            raise _bad(what, f"config.Env[{i}] {e!r} is not NAME=VALUE")
    workdir = _optional(c.get("WorkingDir"), what, "config.WorkingDir")
    if workdir is not None and not workdir.startswith("/"):
        raise _bad(what, f"config.WorkingDir {workdir!r} is not an absolute path")
    user = _optional(c.get("User"), what, "config.User")
    if user is not None and (any(ch.isspace() for ch in user) or user.count(":") > 1):
        raise _bad(what, f"config.User {user!r} is not USER[:GROUP]")
    volumes = list(_string_map(c.get("Volumes"), what, "config.Volumes", values=False))
    for v in volumes:
        if not v.startswith("/"):
            raise _bad(what, f"config.Volumes has {v!r}, which is not an absolute path")
    ports = _string_map(c.get("ExposedPorts"), what, "config.ExposedPorts", values=False)
    stop = _optional(c.get("StopSignal"), what, "config.StopSignal")
    return ImageConfig(
        os=os_,
        architecture=arch,
        variant=variant,
        diff_ids=diff_ids,
        entrypoint=_words(c.get("Entrypoint"), what, "config.Entrypoint"),
        cmd=_words(c.get("Cmd"), what, "config.Cmd"),
        env=env,
        workdir=workdir,
        user=user,
        exposed_ports=[_port(p, what) for p in ports],
        volumes=volumes,
        labels=_string_map(c.get("Labels"), what, "config.Labels", control_ok=True),
        stop_signal=None if stop is None else _signal(stop, what),
        created=created,
        healthcheck=_healthcheck(c.get("Healthcheck"), what),
    )


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The ChainID of each layer stack, base first: ChainID(L0) = DiffID(L0),
    ChainID(L0..n) = sha256("<ChainID(L0..n-1)> <DiffID(Ln)>")."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not valid_digest(diff_id):
            raise _bad("image config", f"diff ID {diff_id!r} is not sha256:<64 lowercase hex digits>")
        if out:
            diff_id = "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        out.append(diff_id)
    return out


def run_defaults(config: ImageConfig) -> RunDefaults:
    """What ``run`` does with the image when the user says nothing: Entrypoint + Cmd, Env,
    WorkingDir, the user (systemd-nspawn's User= takes a user only: a group is dropped and
    reported by ``ignored_fields``; root is the default and left out), StopSignal."""
    user = None if config.user is None else config.user.partition(":")[0]
    return RunDefaults(
        command=list(config.cmd),
        env=list(config.env),
        workdir=config.workdir,
        user=None if user in _ROOT else user,
        ports=list(config.exposed_ports),
        volumes=list(config.volumes),
        entrypoint=list(config.entrypoint),
        labels=dict(config.labels),
        stop_signal=None if config.stop_signal == "SIGTERM" else config.stop_signal,
        healthcheck=config.healthcheck,
    )


def ignored_fields(config: ImageConfig) -> list[str]:
    """Config fields present that nspawnctl does not apply, for a notice."""
    ignored = []
    if config.user and ":" in config.user:
        ignored.append("config.User group (systemd-nspawn runs the user with its own groups)")
    return ignored


# -- helpers -------------------------------------------------------------------------------------
def _healthcheck(doc: object, what: str) -> dict[str, Any] | None:
    """config.Healthcheck (HEALTHCHECK) in docker's shape; a malformed one refuses the image."""
    from ..errors import InvalidArgument
    from ..health import image_healthcheck

    try:
        return image_healthcheck(doc)
    except InvalidArgument as e:
        raise _bad(what, e.message) from None


def _schema1() -> ArchiveError:
    return ArchiveError(
        "Docker schema 1 manifests are not supported (deprecated, and their content cannot be verified)",
        hint="push the image again with a current docker, podman or skopeo (schema 2 or OCI)",
    )


def _bad(what: str, detail: str) -> ArchiveError:
    return ArchiveError(f"invalid {what}: {detail}", hint=_HINT)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _bad(what, f"it is not JSON ({e})") from e
    return _object(doc, what, f"the {what}")


def _object(value: object, what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(what, f"{where} must be an object")
    return value


def _list(value: object, what: str, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(what, f"{where} must be a list")
    return value


def _string(value: object, what: str, where: str, control_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(what, f"{where} must be a string")
    if not control_ok and _LINE_END.search(value):
        # these values end up in a .nspawn file, where a line break would start a new, trusted line
        raise _bad(what, f"{where} contains a line break or NUL")
    return value


def _optional(value: object, what: str, where: str) -> str | None:
    """A string where null and "" both mean absent."""
    return None if value is None else _string(value, what, where) or None


def _words(value: object, what: str, where: str) -> list[str]:
    """An argv-like list of strings; docker also writes a single string for a one-word list."""
    if isinstance(value, str):
        return [_string(value, what, where)]
    return [_string(w, what, f"{where}[{i}]") for i, w in enumerate(_list(value, what, where))]


def _string_map(
    value: object, what: str, where: str, values: bool = True, control_ok: bool = False
) -> dict[str, str]:
    """A JSON object of strings (``values=False``: only the keys matter, as in {"/data": {}})."""
    if value is None:
        return {}
    out: dict[str, str] = {}
    for key, v in _object(value, what, where).items():
        _string(key, what, f"{where} key", control_ok)
        out[key] = _string(v, what, f"{where}[{key!r}]", control_ok) if values else ""
    return out


def _port(text: str, what: str) -> str:
    """``8080``, ``8080/tcp``, ``53/udp``, ``8000-8010/tcp`` -> with the protocol spelled out."""
    m = _PORT.fullmatch(text)
    proto = (m.group(3) or "tcp").lower() if m else ""
    if not m or proto not in _PROTOCOLS:
        raise _bad(what, f"config.ExposedPorts has {text!r}, not PORT[/tcp|udp|sctp]")
    first = int(m.group(1))
    last = int(m.group(2) or first)
    if not 1 <= first <= last <= 65535:
        raise _bad(what, f"config.ExposedPorts has {text!r}, outside 1-65535")
    span = str(first) if first == last else f"{first}-{last}"
    return f"{span}/{proto}"


def _signal(text: str, what: str) -> str:
    """A signal as docker's StopSignal takes it (QUIT, SIGQUIT, 3, SIGRTMIN+3) -> the canonical
    name systemd's KillSignal= takes (SIGQUIT, SIGRTMIN+3)."""
    name = text.strip().upper()
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if re.fullmatch(r"[0-9]{1,3}", name):  # not str.isdigit(): "²" is a digit that int() refuses
        number = int(name)
        if rtmin < number <= rtmax:
            return f"SIGRTMIN+{number - rtmin}"
        try:
            return signal.Signals(number).name
        except ValueError:
            pass
    else:
        name = name if name.startswith("SIG") else f"SIG{name}"
        m = re.fullmatch(r"SIGRTM(IN|AX)(?:([+-])([0-9]{1,2}))?", name)
        if m:
            offset = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
            number = (rtmin if m.group(1) == "IN" else rtmax) + offset
            if rtmin <= number <= rtmax:
                return "SIGRTMIN" if number == rtmin else f"SIGRTMIN+{number - rtmin}"
        elif name in signal.Signals.__members__:
            return signal.Signals[name].name  # aliases (SIGIOT, SIGCLD) by their usual name
    raise _bad(what, f"config.StopSignal {text!r} is not a signal")
