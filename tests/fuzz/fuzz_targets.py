"""Fuzz targets for the parsers that read strangers' input: one per parser, each a hypothesis
strategy of near-valid inputs (bytes) and a check that runs one input through the real code.

The property is the same for every target: the parser returns a valid result or raises one of
nspawnctl's own errors (``nspawnctl.errors.NspawnctlError``), never another exception, within a
time bound and a memory bound; the tar extractor also never writes outside its root and leaks no
file descriptor. An input is always bytes, so that the corpus (``corpus/<target>/``) holds
exactly what a target reads, and the replay test and ``run.py`` share this module.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import resource
import shutil
import signal
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from nspawnctl.errors import NspawnctlError

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TIME_LIMIT = 10.0  # seconds per input (the tar target runs three layouts per input)
MEMORY_LIMIT = 1 << 30  # bytes of address space per input, above what the process already has
TAR_MEMORY_LIMIT = 512 << 20  # extraction streams: 1 MiB chunks, headers capped at 1 MiB
MAX_INPUT = 1 << 20  # corpus and generated inputs stay below this


class PropertyViolation(AssertionError):
    """The input broke the target's property (an escape, a leak, a wrong round trip)."""


class Hang(Exception):
    """One input ran longer than TIME_LIMIT."""


@contextlib.contextmanager
def bounded(seconds: float = TIME_LIMIT, memory: int = MEMORY_LIMIT) -> Iterator[None]:
    """Run the body with a wall-clock limit (SIGALRM raises Hang) and an address-space limit
    (MemoryError past it), both restored afterwards. Main thread only."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"one input took longer than {seconds} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    old = signal.signal(signal.SIGALRM, alarm)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def expect_own_errors(fn: Callable[[], object]) -> object:
    """Call ``fn``; an nspawnctl error is a fine answer to bad input, None is returned then."""
    try:
        return fn()
    except NspawnctlError:
        return None


@dataclass(frozen=True)
class Target:
    name: str
    strategy: Callable[[], st.SearchStrategy[bytes]]
    check: Callable[[bytes], None]


# ---------------------------------------------------------------------------------------------
# mutation of seeds (shared)


def corpus_files(target: str) -> list[Path]:
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


SKIP_SEEDS: set[str] = set()  # corpus files not to mutate (run.py --skip: a known, unfixed failure)
HEADER_BOMBS = True  # run.py --no-header-bombs: leave them out of the tar strategy


def corpus_inputs(target: str) -> list[bytes]:
    return [p.read_bytes() for p in corpus_files(target) if p.name not in SKIP_SEEDS]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], fix: Callable[[bytes], bytes] | None = None) -> bytes:
    """A seed with a few byte-level edits: flips, inserts, deletes, truncation, duplication."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[pos] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, ord("0"), ord("7"), ord("/"), ord("\n")]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup" and n:
            end = min(n, pos + draw(st.integers(1, 1024)))
            data[pos:pos] = data[pos:end]
    out = bytes(data)
    if fix is not None and draw(st.booleans()):
        out = fix(out)
    return out[:MAX_INPUT]


def _seeded(target: str, structured: st.SearchStrategy[bytes], fix: Callable[[bytes], bytes] | None = None):
    seeds = corpus_inputs(target)
    if not seeds:
        return structured
    return st.one_of(structured, mutated(seeds, fix))


# ---------------------------------------------------------------------------------------------
# tar extraction (nspawnctl/store/unpack.py)

FUZZ_ROOT = Path("/tmp/nspawnctl-fuzz")
ESCAPE = FUZZ_ROOT / "escape"  # every process's canary: must stay empty
_NAME_PARTS = [
    "a", "b", "d", "f", "link", "evil", "rel", "..", ".", "", "rootfs", "manifest", ".wh.a", ".wh.d",
    ".wh..wh..opq", ".wh..wh.plnk", ".wh.", ".wh..", "etc", "passwd", "\u00e9", "x" * 120, "sp ace",
    "dev", "null",
]  # fmt: skip
_LINK_TARGETS = [
    str(ESCAPE), "/tmp/nspawnctl-fuzz", "../escape", "../../escape", "../../../tmp/nspawnctl-fuzz/escape",
    "/", "..", ".", "", "a", "d/f", "link", "evil", "rel", "/etc/passwd", "rootfs/a", "/rootfs/d/f",
    "../sentinel", "d/../../sentinel", "x" * 5000,
]  # fmt: skip
_TYPES = [
    tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
    tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE, b"V", b"Z", b"\xff",
]  # fmt: skip
_PAX_KEYS = [
    "path", "linkpath", "size", "uid", "gid", "mtime", "atime", "uname", "gname", "comment",
    "SCHILY.xattr.user.x", "SCHILY.xattr.security.capability", "SCHILY.xattr.trusted.overlay.opaque",
    "SCHILY.xattr.", "LIBARCHIVE.xattr.user.y", "LIBARCHIVE.xattr.%00", "SCHILY.devmajor",
    "GNU.sparse.major", "GNU.sparse.minor", "GNU.sparse.name", "GNU.sparse.realsize", "GNU.sparse.size",
    "GNU.sparse.numblocks", "GNU.sparse.offset", "GNU.sparse.numbytes", "GNU.sparse.map", "hdrcharset",
]  # fmt: skip
_PAX_VALUES = [
    "0", "1", "-1", "1.5", "1e9", "99999999999999999999999", "-99999999999999999999", "nan", "",
    "/", "../escape", "a/b", "0,10,20,30", "0,1", "x" * 300, "AAAA", "AA==", "!!", "\u00e9", "BINARY",
    "1.0", "0.1",
]  # fmt: skip


def _name(draw: st.DrawFn, parts: list[str]) -> str:
    comps = draw(st.lists(st.sampled_from(parts), min_size=1, max_size=5))
    lead = draw(st.sampled_from(["", "", "/", "./", "//"]))
    tail = draw(st.sampled_from(["", "", "/"]))
    return lead + "/".join(comps) + tail


@st.composite
def _tar_member(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(_name(draw, _NAME_PARTS))
    ti.type = draw(st.sampled_from(_TYPES))
    ti.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0, 0o7777]))
    ti.uid = draw(st.sampled_from([0, 1000, 65534, 0xFFFFFFFE, 0xFFFFFFFF, 2**40]))
    ti.gid = draw(st.sampled_from([0, 1000, 65534]))
    ti.mtime = draw(st.sampled_from([0, 1_600_000_000, 2**33, 1.5]))
    if ti.type in (tarfile.LNKTYPE, tarfile.SYMTYPE):
        named = draw(st.booleans())
        ti.linkname = _name(draw, _NAME_PARTS) if named else draw(st.sampled_from(_LINK_TARGETS))
    if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor = draw(st.sampled_from([1, 7, 259, 0]))
        ti.devminor = draw(st.sampled_from([3, 0, 255, 2**20 - 1]))
    data = b""
    if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, b"Z", b"\xff"):
        data = draw(st.one_of(st.binary(max_size=64), st.just(b"\0" * 5000)))
    if draw(st.integers(0, 3)) == 0:
        ti.pax_headers = draw(
            st.dictionaries(st.sampled_from(_PAX_KEYS), st.sampled_from(_PAX_VALUES), max_size=3)
        )
    ti.size = len(data)
    return ti, data


def _checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    assert len(block) == 512


def _octal(value: int, width: int) -> bytes:
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    return bytes([0x80]) + (value % 256 ** (width - 1)).to_bytes(width - 1, "big")  # base-256


@st.composite
def _raw_header(draw: st.DrawFn) -> bytes:
    """A hand-made ustar/GNU header (with its data) for what tarfile's writer cannot make: lying
    sizes, base-256 numbers, old GNU sparse maps, bad checksums, odd magic."""
    block = bytearray(512)
    name = _name(draw, _NAME_PARTS).encode("utf-8", "surrogateescape")[:100]
    block[0 : len(name)] = name
    block[100:108] = _octal(draw(st.sampled_from([0o644, 0o4755, 0o7777, 2**21])), 8)
    block[108:116] = _octal(draw(st.sampled_from([0, 2**31, 2**63 - 1])), 8)
    block[116:124] = _octal(0, 8)
    size = draw(st.sampled_from([0, 1, 511, 512, 513, 4096, 2**33, 2**62]))
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(draw(st.sampled_from([0, 2**40])), 12)
    kind = draw(st.sampled_from([*_TYPES, b"S", b"L", b"K", b"x", b"g", b"X"]))
    block[156:157] = kind
    link = draw(st.sampled_from(_LINK_TARGETS)).encode()[:100]
    block[157 : 157 + len(link)] = link
    gnu = draw(st.booleans())
    block[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    if gnu and kind == b"S":
        # old GNU sparse: 4 (offset, numbytes) pairs at 386, isextended at 482, realsize at 483
        for i in range(4):
            off = draw(st.sampled_from([0, 1, 512, 4096, 2**33, 2**62]))
            num = draw(st.sampled_from([0, 1, 512, 4096, 2**40]))
            block[386 + 24 * i : 398 + 24 * i] = _octal(off, 12)
            block[398 + 24 * i : 410 + 24 * i] = _octal(num, 12)
        extended = draw(st.booleans())
        block[482] = 1 if extended else 0
        block[483:495] = _octal(draw(st.sampled_from([0, 4096, 2**40, 2**62])), 12)
    else:
        extended = False
    prefix = draw(st.sampled_from([b"", b"..", b"/", b"rootfs", b"a/b"]))
    if not gnu:
        block[345 : 345 + len(prefix)] = prefix
    _checksum(block)
    if draw(st.integers(0, 9)) == 0:
        block[148:156] = b"0000000\0"
    out = bytes(block)
    for _ in range(draw(st.integers(0, 2)) if extended else 0):
        ext = bytearray(512)
        for i in range(21):
            ext[24 * i : 24 * i + 12] = _octal(draw(st.sampled_from([0, 512, 2**33])), 12)
            ext[24 * i + 12 : 24 * i + 24] = _octal(draw(st.sampled_from([0, 1, 512])), 12)
        ext[504] = draw(st.sampled_from([0, 1]))
        out += bytes(ext)
    stored = min(size, 4096)
    data = draw(st.sampled_from([b"", b"x" * stored, b"\0" * stored, b"0,10\n" * (stored // 5)]))
    return out + data + bytes(-len(data) % 512)


def _pax_sparse(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    """A GNU sparse 1.0 member: pax records plus a decimal map in front of the data."""
    ti = tarfile.TarInfo(_name(draw, _NAME_PARTS))
    region = st.tuples(st.sampled_from([0, 1, 512, 4096, 2**40]), st.sampled_from([0, 1, 100]))
    regions = draw(st.lists(region, max_size=3))
    head = f"{len(regions)}\n" + "".join(f"{o}\n{n}\n" for o, n in regions)
    head_bytes = head.encode()
    head_bytes += bytes(-len(head_bytes) % 512)
    body = b"s" * sum(n for _, n in regions)
    ti.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": _name(draw, _NAME_PARTS),
        "GNU.sparse.realsize": str(draw(st.sampled_from([0, 100, 4096, 2**40, 2**62]))),
    }
    data = head_bytes + body
    ti.size = len(data)
    return ti, data


@st.composite
def _header_bomb(draw: st.DrawFn) -> bytes:
    """An extended header (pax, global pax, GNU long name or link) far over Limits.max_header,
    with its body: compressed, it is small; read whole, it is not."""
    block = bytearray(512)
    block[0:13] = b"././@LongLink"
    kind = draw(st.sampled_from([b"x", b"g", b"L", b"K"]))
    size = draw(st.sampled_from([(1 << 20) + 1, 8 << 20, 200 << 20]))  # below check_tar's max_bytes
    for start, end, value in ((100, 108, 0o644), (108, 116, 0), (116, 124, 0), (136, 148, 0)):
        block[start:end] = _octal(value, end - start)
    block[124:136] = _octal(size, 12)
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    _checksum(block)
    record = draw(st.sampled_from([b"a", b"\0", b"18 comment=aaaaaa\n"]))
    body = record * (size // len(record)) + b"a" * (size % len(record))
    return bytes(block) + body + bytes(-size % 512)


def fix_tar_checksums(data: bytes) -> bytes:
    """Recompute the checksum of every block that looks like a ustar header."""
    buf = bytearray(data)
    for off in range(0, len(buf) - 511, 512):
        if buf[off + 257 : off + 262] == b"ustar":
            block = bytearray(buf[off : off + 512])
            _checksum(block)
            buf[off : off + 512] = block
    return bytes(buf)


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


@st.composite
def tar_archives(draw: st.DrawFn) -> bytes:
    """A tar stream of up to 8 members, written by tarfile or by hand, sometimes an ACI (a
    manifest and rootfs/), maybe cut, padded or compressed."""
    buf = io.BytesIO()
    fmt = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        if draw(st.booleans()):
            manifest = json.dumps(
                {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app"}
            ).encode()
            ti = tarfile.TarInfo("manifest")
            ti.size = len(manifest)
            tf.addfile(ti, io.BytesIO(manifest))
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(["member", "member", "member", "raw", "sparse", "bomb"]))
            if kind == "bomb" and (not HEADER_BOMBS or draw(st.integers(0, 9))):
                kind = "member"  # rare: they are slow to make
            if kind in ("raw", "bomb"):
                # hand-made headers go after what tarfile wrote so far
                raw = draw(_raw_header() if kind == "raw" else _header_bomb())
                tf.fileobj.write(raw)  # type: ignore[union-attr]
                tf.offset += len(raw)
                continue
            ti, data = _pax_sparse(draw) if kind == "sparse" else draw(_tar_member())
            if draw(st.booleans()) and not ti.name.startswith(("rootfs", "/rootfs", "./rootfs")):
                ti.name = "rootfs/" + ti.name.lstrip("/")
            try:
                tf.addfile(ti, io.BytesIO(data))
            except (ValueError, UnicodeError, OverflowError, tarfile.TarError):
                continue  # the writer refuses it (e.g. a ustar name too long): skip the member
    data = buf.getvalue()
    end = draw(st.sampled_from(["keep", "keep", "cut", "strip", "garbage"]))
    if end == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif end == "strip":
        data = data.rstrip(b"\0")
    elif end == "garbage":
        data += draw(st.binary(min_size=1, max_size=600))
    compression = draw(st.sampled_from(["none", "none", "gzip", "xz", "bzip2", "zstd"]))
    if len(data) > MAX_INPUT:
        compression = "zstd"  # a header bomb: only compressed does it fit in an input
    data = _compress(compression, data)
    if draw(st.integers(0, 9)) == 0 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data[:MAX_INPUT]


def _tar_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("tar", tar_archives(), fix_tar_checksums)


def _snapshot(path: Path) -> list[tuple[str, int, int, int]]:
    """What a directory holds, recursively, without following symlinks."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for n in sorted(dirnames + filenames):
            st_ = os.lstat(os.path.join(dirpath, n))
            out.append((os.path.join(dirpath, n), st_.st_mode, st_.st_nlink, st_.st_size))
    return sorted(out)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _lower_tree(root: Path) -> None:
    """A parent layer for the "layer" layout, with symlinks that lead out of the image."""
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"lower")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    os.symlink(str(ESCAPE), root / "evil")
    os.symlink("../../escape", root / "rel")
    os.symlink("/", root / "link")
    os.symlink("..", root / "d" / "up")


def _workdir() -> Path:
    FUZZ_ROOT.mkdir(mode=0o700, exist_ok=True)
    ESCAPE.mkdir(mode=0o700, exist_ok=True)
    work = FUZZ_ROOT / f"w{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=0o700)
    (work / "sentinel").write_bytes(b"sentinel")
    return work


def check_tar(data: bytes) -> None:
    """Extract ``data`` in each layout (rootfs, aci, layer onto a lower tree) into a fresh root
    inside a work directory; nothing outside the root may change, no fd may leak, and a
    successful extraction leaves no temporary file."""
    from nspawnctl.store.unpack import Limits, unpack_tar

    limits = Limits(max_bytes=256 << 20, max_entries=10_000)
    work = _workdir()
    before_work = _snapshot(work)
    before_escape = _snapshot(ESCAPE)
    try:
        for layout in ("rootfs", "aci", "layer"):
            root = work / "root"
            root.mkdir(mode=0o700)
            if layout == "layer":
                _lower_tree(root)
            fds = _open_fds()
            ok = False
            try:
                with bounded(memory=TAR_MEMORY_LIMIT):
                    unpack_tar(io.BytesIO(data), root, limits=limits, layout=layout)
                ok = True
            except NspawnctlError:
                pass
            finally:
                if _open_fds() != fds:
                    raise PropertyViolation(f"{layout}: {_open_fds() - fds} file descriptors leaked")
            if _snapshot(ESCAPE) != before_escape:
                raise PropertyViolation(f"{layout}: something was written into {ESCAPE}")
            after = [e for e in _snapshot(work) if not e[0].startswith(str(root) + "/") and e[0] != str(root)]
            if after != before_work or (work / "sentinel").read_bytes() != b"sentinel":
                raise PropertyViolation(f"{layout}: the work directory outside the root changed: {after}")
            if ok:
                for dirpath, dirnames, filenames in os.walk(root):
                    for n in dirnames + filenames:
                        if n.startswith(".nspawnctl-unpack-"):
                            raise PropertyViolation(f"{layout}: a temporary file was left: {dirpath}/{n}")
            _rmtree(root)
    finally:
        _rmtree(work)


def _rmtree(path: Path) -> None:
    """Remove what an extraction made, whatever its modes (a directory of mode 0 included)."""
    if not path.exists() and not path.is_symlink():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    shutil.rmtree(path)


# ---------------------------------------------------------------------------------------------
# OCI manifests, indexes, configs (nspawnctl/formats/oci.py)

_DIGEST = "sha256:" + "a" * 64
_OCI_TYPES = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/json",
    "",
    "text/plain; charset=utf-8",
]
_SELECTORS = ["config", *_OCI_TYPES[:5], "application/json", ""]

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "/", "sha256:" + "A" * 64, _DIGEST, "linux", "amd64", "arm", "v7", "8",
                     "SIGRTMIN+3", "\u00b2", "9" * 5000, "80/tcp", "65536/udp", "1-0/tcp", "\n", "a\0b"]),
)  # fmt: skip
_json_any = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _descriptor(media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _DIGEST, "size": 10}


def _valid_docs() -> dict[str, dict[str, Any]]:
    return {
        "index": {
            "schemaVersion": 2,
            "mediaType": _OCI_TYPES[0],
            "manifests": [
                {**_descriptor(_OCI_TYPES[1]), "platform": {"os": "linux", "architecture": "amd64"}},
                {
                    **_descriptor(_OCI_TYPES[1]),
                    "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
                },
                {**_descriptor(_OCI_TYPES[1]), "platform": {"os": "unknown", "architecture": "unknown"}},
                {**_descriptor(_OCI_TYPES[0])},
            ],
        },
        "manifest": {
            "schemaVersion": 2,
            "mediaType": _OCI_TYPES[1],
            "config": _descriptor(_OCI_TYPES[5]),
            "layers": [_descriptor(_OCI_TYPES[7]), _descriptor(_OCI_TYPES[8])],
        },
        "config": {
            "os": "linux",
            "architecture": "amd64",
            "variant": None,
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [_DIGEST, _DIGEST]},
            "config": {
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": "echo hi",
                "Env": ["PATH=/usr/bin", "A=b"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000-8010": {}},
                "Volumes": {"/data": {}},
                "Labels": {"a": "b"},
                "StopSignal": "SIGQUIT",
                "Healthcheck": {"Test": ["CMD", "true"]},
            },
        },
    }


@st.composite
def _mutated_doc(draw: st.DrawFn, doc: Any, depth: int = 0) -> Any:
    """A JSON value like ``doc``: each node kept, mutated recursively, dropped or replaced."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(_json_any)
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if draw(st.integers(0, 9)) == 0:
                continue  # drop the key
            out[k] = draw(_mutated_doc(v, depth + 1))
        if draw(st.integers(0, 4)) == 0:
            key = draw(st.sampled_from([*doc.keys(), "x", "manifests", "layers", "config"]))
            out[key] = draw(_json_any)
        return out
    if isinstance(doc, list):
        items = [draw(_mutated_doc(v, depth + 1)) for v in doc if draw(st.integers(0, 9))]
        if items and draw(st.integers(0, 4)) == 0:
            items.append(draw(st.sampled_from(items)))
        return items
    if isinstance(doc, str) and choice == 1:
        return draw(
            st.sampled_from(
                [doc.upper(), doc + "\n", doc[:-1], "", doc + doc, "\u00b2", "9" * 5000, "9" * 5000 + doc,
                 doc.replace("0", "\u0660").replace("1", "\u00b9"), " " + doc, doc + "\x85", "-" + doc]
            )
        )  # fmt: skip
    return doc


def _encode(draw: st.DrawFn, doc: Any) -> bytes:
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@st.composite
def oci_inputs(draw: st.DrawFn) -> bytes:
    """``SELECTOR\\n`` then the body: SELECTOR is "config" or the Content-Type a manifest was
    served with."""
    docs = _valid_docs()
    which = draw(st.sampled_from(list(docs)))
    selector = "config" if which == "config" else draw(st.sampled_from(_SELECTORS[1:]))
    doc = draw(_mutated_doc(docs[which]))
    return selector.encode() + b"\n" + _encode(draw, doc)


def check_oci(data: bytes) -> None:
    from nspawnctl.formats import oci

    selector, _, body = data.partition(b"\n")
    kind = selector.decode("utf-8", "replace")
    with bounded():
        if kind == "config":
            config = expect_own_errors(lambda: oci.parse_config(body))
            if config is not None:
                assert isinstance(config, oci.ImageConfig)
                oci.run_defaults(config)
                oci.ignored_fields(config)
                oci.chain_ids(config.diff_ids)
                expect_own_errors(lambda: oci.check_platform(config, oci.Platform("linux", "amd64")))
                expect_own_errors(lambda: oci.check_platform(config, oci.Platform("linux", "arm", "v6")))
            return
        parsed = expect_own_errors(lambda: oci.parse_manifest(body, kind))
        if isinstance(parsed, oci.Index):
            for want in ("linux/amd64", "linux/arm/v7", "linux/arm64", "linux/arm"):
                expect_own_errors(lambda w=want: oci.select_platform(parsed, oci.Platform.parse(w)))
            for d in parsed.manifests:
                if d.platform is not None:
                    d.platform.normalized()
                    expect_own_errors(lambda p=d.platform: oci.select_platform(parsed, p))
        elif parsed is not None:
            assert isinstance(parsed, oci.Manifest)
            for layer in parsed.layers:
                assert layer.compression in (None, "gzip", "zstd")


def _oci_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("oci", oci_inputs())


# ---------------------------------------------------------------------------------------------
# ACI manifests (nspawnctl/formats/aci.py)


def _valid_aci() -> dict[str, Any]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [
            {"name": "version", "value": "1.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"},
        ],
        "annotations": [{"name": "authors", "value": "x"}],
        "app": {
            "exec": ["/bin/sh", "-c", "echo hi"],
            "user": "0",
            "group": "0",
            "supplementaryGIDs": [1, 2],
            "workingDirectory": "/srv",
            "environment": [{"name": "PATH", "value": "/usr/bin"}],
            "eventHandlers": [{"name": "pre-start", "exec": ["/bin/true"]}],
            "isolators": [{"name": "resource/cpu", "value": {"limit": "1"}}],
            "mountPoints": [{"name": "data", "path": "/data", "readOnly": True}],
            "ports": [{"name": "http", "port": 80, "protocol": "tcp", "count": 2, "socketActivated": True}],
        },
    }


@st.composite
def aci_inputs(draw: st.DrawFn) -> bytes:
    return _encode(draw, draw(_mutated_doc(_valid_aci())))


def check_aci(data: bytes) -> None:
    from nspawnctl.formats.aci import AciManifest, split_name_version

    with bounded():
        m = expect_own_errors(lambda: AciManifest.parse(data))
        if m is None:
            return
        assert isinstance(m, AciManifest)
        m.run_defaults()
        m.ignored_fields()
        _ = m.version
        expect_own_errors(lambda: m.check_matches("example.com/app", {"os": "linux", "arch": "amd64"}))
        expect_own_errors(lambda: m.check_matches(m.name, dict(m.labels)))
        expect_own_errors(lambda: split_name_version(f"{m.name}:{m.version or ''}"))


def _aci_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("aci", aci_inputs())


# ---------------------------------------------------------------------------------------------
# .nspawn files (nspawnctl/nspawnfile.py, formats/settings.py, declare.py)

_SECTIONS = ["Exec", "Files", "Network", "X-Nspawnctl", "exec", "", "Exec]", "[Exec", " Exec "]
_KEYS = [
    "Boot", "Parameters", "Environment", "User", "WorkingDirectory", "Capability", "Bind",
    "BindReadOnly", "Image", "Enable", "Network", "Port", "VirtualEthernet", "Zone", "Bridge",
    "Memory", "CPUs", "PidsLimit", "Restart", "Id", "Private", "", " ", "Limit\u00e9", "Publish",
    "Entrypoint", "MemoryMax", "TasksMax", "NotifyReady", "PrivateUsers", "KillSignal", "ImageId",
    "Created", "AutoRemove",
]  # fmt: skip
_VALUES = [
    "", "yes", "no", "maybe", "/bin/sh -c 'echo hi'", '"a b" c\\ d', "'unterminated", "a\\", "\\",
    "A=b", "=b", "A", "A B=c", "/srv", "srv", "1000", "u:g", "bb", "bb:latest", "veth", "zone:z",
    "zone:" + "z" * 20, "8080:80", "80", "99999:1", "tcp:1:2", "/src:/dst", "/src:/dst:ro", "a:b:c:d",
    "nan", "inf", "1e999", "99999999999999999999", "-1", "0", "1G", "1.5", "\t", "\u00e9", "\u2028",
    "$(x)", "%i", "x" * 300, "\u00b2", "\u0663", "9" * 5000, "pick", "SIGRTMIN+3", "rtmin+99", "always",
    "on-failure:3", "on-failure:\u00b2", "unless-stopped", "+/src:/dst", "-/nonexistent:/x", "/:/",
    "127.0.0.1:8080:80/udp", "[::1]:80:80", "0x10", "1e3", "-0", "0.0", "1K", "1T", "99999999999P",
    "\u00b2:80", "8080:\u00b2/tcp", "127.0.0.1:\u0663:80",
]  # fmt: skip


@st.composite
def nspawn_texts(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["section", "assign", "assign", "assign", "comment", "blank", "junk"]))
        if kind == "section":
            lines.append(f"[{draw(st.sampled_from(_SECTIONS))}]")
        elif kind == "assign":
            key = draw(st.sampled_from(_KEYS))
            value = draw(st.one_of(st.sampled_from(_VALUES), st.text(max_size=12)))
            sp = draw(st.sampled_from(["", " ", "\t"]))
            cont = draw(st.sampled_from(["", "", "", "\\", " \\"]))
            lines.append(f"{sp}{key}{sp}={sp}{value}{cont}")
        elif kind == "comment":
            lines.append(draw(st.sampled_from(["# c", "; c", "#\\", "  # x"])))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
        else:
            lines.append(draw(st.text(max_size=10)))
    sep = draw(st.sampled_from(["\n", "\n", "\r\n", "\r", "\x0b", "\x1c", "\u2028"]))
    text = sep.join(lines) + draw(st.sampled_from(["", "\n", "\\"]))
    return text.encode("utf-8", "surrogatepass")


def check_nspawn(data: bytes) -> None:
    """The parser, the untrusted-settings reader (pull), the apply reader (declare), and the
    quoting round trip of the words on each line."""
    from nspawnctl import declare
    from nspawnctl.formats.settings import settings_defaults
    from nspawnctl.nspawnfile import NspawnFile, quote_words, split_words

    text = data.decode("utf-8", "surrogateescape")
    with bounded():
        f = expect_own_errors(lambda: NspawnFile.parse(text, "fuzz.nspawn"))
        if f is not None:
            assert isinstance(f, NspawnFile)
            again = NspawnFile.parse(f.render(), "fuzz.nspawn")  # line numbers may differ: not compared
            before = [(a.section, a.key, a.value) for a in f.assignments()]
            after = [(a.section, a.key, a.value) for a in again.assignments()]
            if after != before and not _splits_lines(text):
                raise PropertyViolation("render() then parse() changes the assignments")
            for a in f.assignments():
                expect_own_errors(lambda v=a.value: split_words(v))
            g = f.copy()
            expect_own_errors(lambda: g.set("Exec", "Parameters", "x y"))
            expect_own_errors(lambda: g.set_all("Exec", "Environment", []))
            g.render()
        expect_own_errors(lambda: settings_defaults(text, "https://example.com/x.nspawn"))
        for line in text.split("\n")[:8]:
            words = line.split(" ")
            quoted = expect_own_errors(lambda w=words: quote_words(w))
            if quoted is not None and split_words(str(quoted)) != words:
                raise PropertyViolation(f"quote_words/split_words do not round-trip {words!r}")
    work = FUZZ_ROOT / f"n{os.getpid()}"
    FUZZ_ROOT.mkdir(mode=0o700, exist_ok=True)
    work.mkdir(mode=0o700, exist_ok=True)
    try:
        path = work / "ctr.nspawn"
        path.write_bytes(data)
        with bounded():
            expect_own_errors(lambda: declare.load(path))
    finally:
        shutil.rmtree(work)


def _splits_lines(text: str) -> bool:
    """str.splitlines() breaks at more than \\n (\\r, \\x0b, \\x1c, \\u2028, ...); a value holding
    one of those re-reads differently after render(), which writes \\n alone."""
    return len(text.splitlines()) != len(text.split("\n")) - (1 if text.endswith("\n") else 0)


def _nspawn_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("nspawn", nspawn_texts())


# ---------------------------------------------------------------------------------------------
# references and names (nspawnctl/ref.py, names.py)

_REF_PARTS = [
    "docker.io", "index.docker.io", "localhost", "127.0.0.1:5000", "[::1]:5000", "[::1]", "quay.io:443",
    "library", "alpine", "Alpine", "a", "a-b", "a__b", "a.b", "a--b", "-a", "a.", "_", "..", ".", "",
    "x" * 64, "x" * 300, "\u00e9", "\u0131", "\u212a", "host:99999", "host:", ":5000",
]  # fmt: skip
_TAGS = ["", ":latest", ":v1.0", ":", ":-x", ":" + "t" * 129, ":\u00e9", ":a:b"]
_DIGESTS = ["", "@" + _DIGEST, "@sha256:" + "A" * 64, "@sha512:" + "a" * 128, "@", "@sha256:", "@a@b",
            "@sha256:" + "a" * 63, "@x+y.z:abc="]  # fmt: skip


@st.composite
def ref_texts(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    prefix = draw(st.sampled_from(["", "", "docker://"]))
    parts = draw(st.lists(st.sampled_from(_REF_PARTS), min_size=1, max_size=4))
    text = prefix + "/".join(parts) + draw(st.sampled_from(_TAGS)) + draw(st.sampled_from(_DIGESTS))
    if draw(st.integers(0, 5)) == 0:
        text = text.upper()
    return text.encode("utf-8", "surrogatepass")


def check_ref(data: bytes) -> None:
    """Every reference and name parser; what parses must print as itself and parse again to the
    same value."""
    from nspawnctl import names, ref
    from nspawnctl.formats.aci import split_name_version, valid_ac_name
    from nspawnctl.formats.oci import Platform

    text = data.decode("utf-8", "surrogateescape")
    with bounded():
        local = expect_own_errors(lambda: ref.ImageRef.parse(text))
        if isinstance(local, ref.ImageRef) and ref.ImageRef.parse(str(local)) != local:
            raise PropertyViolation(f"ImageRef {text!r} -> {local} does not parse back to itself")
        remote = expect_own_errors(lambda: ref.RegistryRef.parse(text))
        if isinstance(remote, ref.RegistryRef):
            if ref.RegistryRef.parse(str(remote)) != remote:
                raise PropertyViolation(f"RegistryRef {text!r} -> {remote} does not parse back to itself")
            pulled = remote.local
            if ref.ImageRef.parse(str(pulled)) != pulled:
                raise PropertyViolation(f"the local name {pulled} of {remote} is not a valid ImageRef")
            assert remote.reference
        ref.normalize_short(text)
        ref.has_explicit_registry(text)
        ref.looks_like_id(text)
        ref.valid_digest(text)
        ref.canonical_registry(text)
        expect_own_errors(lambda: names.check_machine_name(text))
        given = expect_own_errors(lambda: names.ContainerName.parse(text))
        if isinstance(given, names.ContainerName) and not names.is_machine_name(given.machine):
            raise PropertyViolation(f"the machine name of {text!r} is no machine name")
        expect_own_errors(lambda: names.check_zone_name(text))
        expect_own_errors(lambda: split_name_version(text))
        valid_ac_name(text)
        expect_own_errors(lambda: Platform.parse(text))


def _ref_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("ref", ref_texts())


# ---------------------------------------------------------------------------------------------
# the Docker API's request side (nspawnctl/api: http.py's reader and limits, translate.py)
#
# An input is ``MODE\n`` then the rest: ``create`` a containers/create body (JSON),
# ``http`` raw bytes a client sends on one connection, ``auth`` an X-Registry-Auth header.

_API_KEYS = [
    "Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Hostname", "Labels", "ExposedPorts",
    "HostConfig", "Tty", "OpenStdin", "AttachStdin", "NetworkingConfig", "Frobnicate", "",
]  # fmt: skip
_API_HOST_KEYS = [
    "Binds", "AutoRemove", "RestartPolicy", "Memory", "NanoCpus", "PidsLimit", "NetworkMode", "PortBindings",
    "LogConfig", "CapAdd", "MemorySwappiness", "Privileged", "Mounts",
]  # fmt: skip
_API_NESTED_KEYS = ["Name", "MaximumRetryCount", "Type", "Config", "80/tcp", "HostPort", "HostIp", "a"]


def _api_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 70), 1 << 70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "bb", "/bin/sh", "80", "0", "host", "none", "always", "journald", "a:b", "-1",
                         "1g", ":::", "/a:/b:ro", "x" * 300, "\u00e9", "\x00"]),
    )  # fmt: skip
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(_API_NESTED_KEYS + _API_HOST_KEYS), inner, max_size=3),
        ),
        max_leaves=12,
    )


@st.composite
def api_create_bodies(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = draw(st.dictionaries(st.sampled_from(_API_KEYS), _api_values(), max_size=5))
    if draw(st.booleans()):
        body["Image"] = draw(st.sampled_from(["bb", "", 5, None]))
    if draw(st.booleans()):
        body["HostConfig"] = draw(st.dictionaries(st.sampled_from(_API_HOST_KEYS), _api_values(), max_size=4))
    text = json.dumps(body, allow_nan=True)
    if draw(st.integers(0, 6)) == 0:
        text = "[" * draw(st.integers(30, 3000)) + text
    return b"create\n" + text.encode("utf-8", "surrogatepass")


_HTTP_METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "G\x00T", ""]
_HTTP_TARGETS = [
    "/_ping", "/v1.44/containers/create", "/v1.99/info", "/v1.2/info", "//[x/",
    "/containers/x/archive?path=/", "/%zz", "/images/a%2Fb/json", "*", "http://h/x",
    "/" + "a" * 70000, "/?" + "&" * 500,
]  # fmt: skip
_HTTP_HEADERS = [
    "Host: d", "Content-Length: 5", "Content-Length: 99999999999", "Content-Length: -1",
    "Content-Length: 1, 2",
    "Transfer-Encoding: chunked", "Transfer-Encoding: gzip", "Connection: Upgrade", "Upgrade: tcp",
    "X-Registry-Auth: e30=", "Expect: 100-continue", "X-Big: " + "b" * 70000, "bad header", ": x",
]  # fmt: skip


@st.composite
def api_http_streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        line = f"{draw(st.sampled_from(_HTTP_METHODS))} {draw(st.sampled_from(_HTTP_TARGETS))} HTTP/1.1"
        headers = draw(st.lists(st.sampled_from(_HTTP_HEADERS), max_size=4))
        head = "\r\n".join([line, *headers]) + "\r\n\r\n"
        out += head.encode("latin-1") + draw(st.binary(max_size=64))
    return b"http\n" + out


@st.composite
def api_auth_headers(draw: st.DrawFn) -> bytes:
    import base64

    value: Any = draw(
        st.one_of(
            st.dictionaries(
                st.sampled_from(["username", "password", "serveraddress", "identitytoken", "auth", "email"]),
                _api_values(),
                max_size=4,
            ),
            _api_values(),
        )
    )
    raw = json.dumps(value).encode()
    url = base64.urlsafe_b64encode(raw)
    text = draw(st.sampled_from([url, base64.b64encode(raw), url.rstrip(b"="), raw]))
    return b"auth\n" + text


def check_api(data: bytes) -> None:
    """The request side of the Docker API service: a create body becomes RunOptions or a 400
    (ApiError), raw client bytes become requests or an ApiError (400/405/413/431) or the end of
    the connection, an X-Registry-Auth header credentials or a 400; never another exception."""
    from nspawnctl.api.http import ApiError

    mode, _, rest = data.partition(b"\n")
    with bounded():
        try:
            if mode == b"create":
                _api_create(rest)
            elif mode == b"auth":
                from nspawnctl.api.translate import registry_auth

                registry_auth(rest.decode("latin-1"))
            else:
                _api_http(rest)
        except (ApiError, NspawnctlError):
            pass


def _api_create(rest: bytes) -> None:
    from nspawnctl.api.http import Request
    from nspawnctl.api.translate import create_options

    request = Request("POST", "/containers/create", "/containers/create", (1, 47), {}, {}, rest)
    req, _ = create_options(request.json(), "fuzz")
    if not isinstance(req.image, str) or not req.image or not all(isinstance(c, str) for c in req.command):
        raise PropertyViolation(f"create_options accepted a bad image or command: {req!r}")


def _api_http(rest: bytes) -> None:
    """Every request the connection reads from ``rest`` (small caps, so the limits are met)."""
    import asyncio

    from nspawnctl.api.http import ApiError, Connection

    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(rest)
        reader.feed_eof()
        conn = Connection(
            reader,
            None,  # type: ignore[arg-type]  # never written to: requests are only read
            max_body=256,
            max_head=1024,
            streams_body=lambda method, path: path.endswith("/archive") and method == "PUT",
        )
        conn.start()
        try:
            for _ in range(8):
                try:
                    request = await conn.next_request()
                except ApiError:
                    return
                if request is None:
                    return
                if request.streamed:
                    n = 0
                    try:
                        async for chunk in conn.body():
                            n += len(chunk)
                    except Exception as e:
                        from nspawnctl.api.http import ClientGone

                        if not isinstance(e, ClientGone):
                            raise
                        return
                elif len(request.body) > 256:
                    raise PropertyViolation(f"a body of {len(request.body)} bytes passed the 256-byte cap")
                _json_or_api_error(request)
                request.arg("path")
                request.flag("force")
                if not conn.can_go_on():
                    return
        finally:
            if conn._pump is not None:
                conn._pump.cancel()

    asyncio.run(main())


def _json_or_api_error(request: Any) -> None:
    from nspawnctl.api.http import ApiError

    with contextlib.suppress(ApiError, NspawnctlError):
        request.json()


def _api_strategy() -> st.SearchStrategy[bytes]:
    return _seeded("api", st.one_of(api_create_bodies(), api_http_streams(), api_auth_headers()))


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tar", _tar_strategy, check_tar),
        Target("oci", _oci_strategy, check_oci),
        Target("aci", _aci_strategy, check_aci),
        Target("nspawn", _nspawn_strategy, check_nspawn),
        Target("ref", _ref_strategy, check_ref),
        Target("api", _api_strategy, check_api),
    )
}
