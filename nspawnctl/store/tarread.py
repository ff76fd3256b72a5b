"""A streaming reader of untrusted tar archives (ustar, pax, GNU) with every size bounded.

Python's tarfile reads pax and GNU long-name headers whole into memory, parses pax records with
cost that depends on the version, and its bounds can only be added through private methods
that newer versions stop calling. This reader follows the published formats (POSIX ustar and
pax, GNU tar's long names and sparse formats: old GNU, pax 0.0, 0.1 and 1.0) and decides
before reading each piece whether it is allowed to be that big: an extended header, the
records of one member, a sparse map. It reads forward only (pipes work) and keeps nothing of a
member once the next one is read.

Where an archive may end follows Go's archive/tar (what podman, containerd and umoci read
layers with): at a header boundary with no end-of-archive marker, after one zero block, or
inside the last member's padding once all its data is there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nspawnctl.errors import ArchiveError

__all__ = ["BLOCK", "Member", "TarLimits", "TarReader"]

BLOCK = 512

REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
GNU_SPARSE = b"S"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
PAX_LOCAL = frozenset({b"x", b"X"})  # "X": Solaris' name for the same thing
PAX_GLOBAL = b"g"
# No data follows these headers, whatever their size field says (tarfile and Go agree).
HEADER_ONLY = frozenset({LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE})

_POSIX_MAGIC = b"ustar\x00"
_GNU_MAGIC = b"ustar  \x00"
_TRUNCATED_HINT = "the file or download was cut short; fetch it again, or ask its publisher to rebuild it"


@dataclass(frozen=True)
class TarLimits:
    """What a hostile archive may make this reader hold in memory."""

    max_header: int = 1 << 20  # bytes of extended headers (pax, GNU long names) for one member
    max_global: int = 1 << 20  # bytes of pax global records in force at once
    # Global records are merged into every later member's records: few keep that cheap (writers
    # put one there, if any: git archive's commit ID).
    max_global_records: int = 64
    max_sparse: int = 1 << 16  # data regions of one sparse file


@dataclass
class Member:
    """One archive member as the headers describe it. Mutable: a caller may rename it."""

    name: str  # utf-8 with surrogateescape, so that any byte name round-trips
    type: bytes  # the one-byte type flag
    mode: int
    uid: int
    gid: int
    size: int  # apparent size (of a sparse file: with its holes)
    mtime_ns: int
    atime_ns: int | None
    linkname: str
    devmajor: int
    devminor: int
    offset: int  # stream offset of its first header (extended ones included)
    offset_data: int  # stream offset of its stored data
    stored: int  # bytes of data stored after the header (0 for header-only types)
    sparse: list[tuple[int, int]] | None = None  # (offset, length) data regions, in order
    pax_headers: dict[str, str] = field(default_factory=dict)

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def issparse(self) -> bool:
        return self.sparse is not None


def _nts(field_: bytes) -> bytes:
    return field_.split(b"\0", 1)[0]


def _number(field_: bytes, what: str) -> int:
    """An octal (or GNU base-256) header number field."""
    if field_ and field_[0] & 0x80:
        value = int.from_bytes(field_[1:], "big")
        if field_[0] == 0xFF:  # negative, two's complement
            value -= 1 << (8 * (len(field_) - 1))
        elif field_[0] != 0x80:
            raise ArchiveError(f"the archive has an invalid {what} field in a header")
        return value
    text = _nts(field_).strip(b" ")
    if not text:
        return 0
    if text.isdigit() and not text.translate(None, b"01234567"):
        return int(text, 8)
    raise ArchiveError(f"the archive has an invalid {what} field in a header")


def _checksum_ok(block: bytes) -> bool:
    try:
        want = _number(block[148:156], "checksum")
    except ArchiveError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b >= 128)
    return want in (unsigned, signed)


def _decimal(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise ArchiveError(f"the archive has an invalid {what} value {value[:40]!r} in a pax header")
    return int(value)


def _pax_ns(value: str | None) -> int | None:
    """Nanoseconds from a pax time "SECONDS[.FRACTION]", exactly; None if absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    secs, _, frac = text.lstrip("-").partition(".")
    if not (secs.isascii() and secs.isdigit() and len(secs) <= 20) or not (
        frac.isascii() and (frac.isdigit() or not frac)
    ):
        return None
    return sign * (int(secs) * 1_000_000_000 + int((frac + "000000000")[:9]))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class _Pending:
    """Extended headers read for the member that follows them."""

    offset: int
    pax: dict[str, str] = field(default_factory=dict)
    sparse_offsets: list[int] = field(default_factory=list)  # pax sparse 0.0, in record order
    sparse_sizes: list[int] = field(default_factory=list)
    unset: set[str] = field(default_factory=set)  # global keys an empty local record unsets
    longname: bytes | None = None
    longlink: bytes | None = None
    size: int = 0  # bytes of extended headers so far


class TarReader:
    """Iterate the members of a tar stream; read each one's data before asking for the next.

    ``read`` is the decompressed stream (short reads allowed, b"" at its end); ``tell`` says how
    many bytes it has given. ``end`` is set once the archive ended: the offset where its
    end-of-archive marker (or, without one, the stream's end) starts.
    """

    def __init__(self, read: Callable[[int], bytes | memoryview], limits: TarLimits = TarLimits()) -> None:
        self._read = read
        self._limits = limits
        self._pos = 0
        self._globals: dict[str, str] = {}
        self._globals_size = 0
        self._member: Member | None = None
        self._left = 0  # stored bytes of the current member not read yet
        self._padding = 0
        self.end: int | None = None

    # -- raw stream ---------------------------------------------------------------------------

    def _read_upto(self, n: int) -> bytes:
        parts: list[bytes | memoryview] = []
        got = 0
        while got < n:
            data = self._read(min(n - got, 1 << 20))
            if not data:
                break
            parts.append(data)
            got += len(data)
        self._pos += got
        return b"".join(parts) if len(parts) != 1 else bytes(parts[0])

    def _truncated(self, m: Member) -> ArchiveError:
        return ArchiveError(
            f"the archive is truncated: member {m.name!r} has only {self._pos - m.offset_data} "
            f"of its {m.stored} bytes",
            hint=_TRUNCATED_HINT,
        )

    # -- data ---------------------------------------------------------------------------------

    def read(self, n: int) -> bytes | memoryview:
        """Up to n bytes of the current member's stored data (b"" once it is all read); a
        memoryview where the stream gave one (large reads of a pipelined unpack)."""
        m = self._member
        if m is None or self._left == 0:
            return b""
        data = self._read(min(n, self._left))
        if not data:
            raise self._truncated(m)
        self._pos += len(data)
        self._left -= len(data)
        return data

    def _skip_rest(self) -> bool:
        """Skip the current member's unread data and padding; False if the stream ended in the
        padding (a clean end, as Go sees it)."""
        m = self._member
        while self._left:
            if not self.read(min(self._left, 1 << 20)):  # pragma: no cover - read raises first
                break
        if m is None:
            return True
        self._member = None
        pad = -m.stored % BLOCK if m.type not in HEADER_ONLY else 0
        got = len(self._read_upto(pad))
        return got == pad

    # -- headers ------------------------------------------------------------------------------

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive."""
        if self.end is not None:
            return None
        if not self._skip_rest():
            self.end = self._pos
            return None
        pending: _Pending | None = None
        while True:
            start = self._pos
            block = self._read_upto(BLOCK)
            if len(block) < BLOCK:
                if not block and pending is None:
                    self.end = start
                    return None
                raise self._cut_header(start, block, pending)
            if not any(block):
                if pending is not None:
                    raise ArchiveError(
                        f"the archive has an extended header at offset {pending.offset} "
                        "that describes no member"
                    )
                self.end = start
                second = self._read_upto(BLOCK)
                if 0 < len(second) < BLOCK:
                    raise ArchiveError(
                        f"the archive is truncated: it ends inside the block at offset {start + BLOCK} "
                        "(a partial header or end-of-archive marker)",
                        hint="the file or download was cut short; fetch it again",
                    )
                return None
            if not _checksum_ok(block):
                if start == 0:
                    raise ArchiveError(
                        "cannot read the tar archive: it is not a tar archive (bad header checksum)"
                    )
                raise ArchiveError(
                    f"the archive has invalid or extra data at offset {start} "
                    "(a corrupt header, or concatenated archives)"
                )
            typ = block[156:157]
            size = _number(block[124:136], "size")
            if size < 0:
                raise ArchiveError(f"the archive has a negative size in the header at offset {start}")
            if typ in PAX_LOCAL or typ == PAX_GLOBAL or typ in (GNU_LONGNAME, GNU_LONGLINK):
                if pending is None:
                    pending = _Pending(start)
                limit = (
                    self._limits.max_global if typ == PAX_GLOBAL else self._limits.max_header - pending.size
                )
                if size > limit:
                    raise ArchiveError(
                        f"the archive has a {size}-byte extended header at offset {start} "
                        f"(limit {self._limits.max_header} per member)"
                    )
                data = self._read_upto(size)
                if len(data) < size:
                    raise ArchiveError(
                        f"the archive is truncated: it ends inside the extended header at offset {start}",
                        hint=_TRUNCATED_HINT,
                    )
                self._read_upto(-size % BLOCK)  # padding; EOF there is caught by the next header
                if typ == PAX_GLOBAL:
                    self._global(data, start)
                    continue
                pending.size += size
                if typ == GNU_LONGNAME:
                    pending.longname = _nts(data)
                elif typ == GNU_LONGLINK:
                    pending.longlink = _nts(data)
                else:
                    self._pax(data, start, pending)
                continue
            return self._member_from(block, start, typ, size, pending)

    def _cut_header(self, start: int, block: bytes, pending: _Pending | None) -> ArchiveError:
        padded = block + bytes(BLOCK - len(block))
        if any(padded) and _checksum_ok(padded):
            name = _decode(_nts(padded[:100]))
            what = f"it ends inside the header of member {name!r}"
        elif pending is not None and not block:
            what = f"it ends after the extended header at offset {pending.offset}, before its member"
        else:
            return ArchiveError(
                f"the archive is truncated: it ends inside the block at offset {start} "
                "(a partial header or end-of-archive marker)",
                hint="the file or download was cut short; fetch it again",
            )
        return ArchiveError(f"the archive is truncated: {what}", hint=_TRUNCATED_HINT)

    def _records(self, data: bytes, offset: int) -> list[tuple[str, str]]:
        """Parse pax records "LENGTH KEY=VALUE\\n"; LENGTH counts the whole record."""
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(data):
            if data[pos] == 0:  # some writers pad the records with NULs
                if any(data[pos:]):
                    break
                return out
            space = data.find(b" ", pos, pos + 21)
            if space <= pos or not data[pos:space].isdigit():
                break
            length = int(data[pos:space])
            end = pos + length
            if length < 5 or end > len(data) or data[end - 1] != 0x0A:
                break
            key, eq, value = data[space + 1 : end - 1].partition(b"=")
            if not eq or not key:
                break
            out.append((_decode(key), _decode(value)))
            pos = end
        else:
            return out
        raise ArchiveError(f"the archive has an invalid pax header at offset {offset}")

    def _global(self, data: bytes, offset: int) -> None:
        for key, value in self._records(data, offset):
            if value:
                self._globals[key] = value
            else:
                self._globals.pop(key, None)
        self._globals_size = sum(len(k) + len(v) for k, v in self._globals.items())
        if self._globals_size > self._limits.max_global:
            raise ArchiveError(
                f"the archive's pax global headers add up to more than {self._limits.max_global} bytes"
            )
        if len(self._globals) > self._limits.max_global_records:
            raise ArchiveError(
                f"the archive's pax global headers hold more than {self._limits.max_global_records} records"
            )

    def _pax(self, data: bytes, offset: int, pending: _Pending) -> None:
        for key, value in self._records(data, offset):
            if key == "GNU.sparse.offset":
                pending.sparse_offsets.append(_decimal(value, key))
            elif key == "GNU.sparse.numbytes":
                pending.sparse_sizes.append(_decimal(value, key))
            elif value:
                pending.pax[key] = value
            else:  # an empty value unsets the key (a global one too), as Go reads it
                pending.pax.pop(key, None)
                pending.unset.add(key)
            if len(pending.sparse_offsets) > self._limits.max_sparse:
                raise self._too_sparse(offset)

    def _too_sparse(self, offset: int) -> ArchiveError:
        return ArchiveError(
            f"the archive has a sparse file with more than {self._limits.max_sparse} data regions "
            f"(header at offset {offset})"
        )

    def _member_from(
        self, block: bytes, start: int, typ: bytes, size: int, pending: _Pending | None
    ) -> Member:
        magic = block[257:265]
        name = _nts(block[0:100])
        if magic[:6] == _POSIX_MAGIC:
            prefix = _nts(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if typ == AREGTYPE and name.endswith(b"/"):
            typ = DIRTYPE
        pax = dict(self._globals)
        if pending is not None:
            for key in pending.unset:
                pax.pop(key, None)
            pax.update(pending.pax)
        if pending is not None and pending.longname is not None:
            name = pending.longname
        linkname = (
            pending.longlink if pending is not None and pending.longlink is not None else _nts(block[157:257])
        )
        header_mtime = _number(block[136:148], "mtime")
        m = Member(
            name=_decode(name),
            type=typ,
            mode=_number(block[100:108], "mode"),
            uid=_number(block[108:116], "uid"),
            gid=_number(block[116:124], "gid"),
            size=size,
            mtime_ns=header_mtime * 1_000_000_000,
            atime_ns=None,
            linkname=_decode(linkname),
            devmajor=_number(block[329:337], "devmajor") if magic[:5] == b"ustar" else 0,
            devminor=_number(block[337:345], "devminor") if magic[:5] == b"ustar" else 0,
            offset=pending.offset if pending is not None else start,
            offset_data=self._pos,
            stored=size,
            pax_headers=pax,
        )
        regions: list[tuple[int, int]] | None = None
        if typ == GNU_SPARSE and magic == _GNU_MAGIC:
            regions = self._old_sparse(block, start)
            m.size = _number(block[483:495], "realsize")
            m.offset_data = self._pos
        self._apply_pax(m, pax)
        self._member = m
        m.stored = 0 if typ in HEADER_ONLY else m.stored
        self._left = m.stored
        if pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0":
            regions = self._sparse_10(m, start)
            m.size = _decimal(pax.get("GNU.sparse.realsize", "0"), "GNU.sparse.realsize")
            if "GNU.sparse.name" in pax:
                m.name = pax["GNU.sparse.name"]
        elif pending is not None and (
            pending.sparse_offsets or "GNU.sparse.size" in pending.pax or "GNU.sparse.map" in pending.pax
        ):
            regions = self._pax_sparse(m, pax, pending, start)
        if m.type == DIRTYPE and len(m.name) > 1:
            m.name = m.name.rstrip("/")  # as tarfile reports it; the extractor splits on "/"
        if regions is not None:
            m.sparse = self._check_regions(m, regions)
            if m.type == GNU_SPARSE:
                m.type = REGTYPE
        return m

    def _apply_pax(self, m: Member, pax: dict[str, str]) -> None:
        if "path" in pax:
            m.name = pax["path"]
        if "linkpath" in pax:
            m.linkname = pax["linkpath"]
        for key in ("uid", "gid"):
            if key in pax:
                setattr(m, key, _decimal(pax[key], key))
        if "size" in pax:
            m.size = m.stored = _decimal(pax["size"], "size")
        mtime = _pax_ns(pax.get("mtime"))
        if mtime is not None:
            m.mtime_ns = mtime
        m.atime_ns = _pax_ns(pax.get("atime"))

    def _old_sparse(self, block: bytes, start: int) -> list[tuple[int, int]]:
        """Old GNU sparse: four (offset, numbytes) slots in the header at 386, more in 512-byte
        extension blocks (21 slots each) while the "isextended" byte is set."""
        regions: list[tuple[int, int]] = []

        def slots(buf: bytes, count: int) -> None:
            for i in range(count):
                entry = buf[i * 24 : i * 24 + 24]
                if not any(entry[:12]) and not any(entry[12:]):
                    continue
                regions.append((_number(entry[:12], "sparse offset"), _number(entry[12:], "sparse size")))

        slots(block[386:482], 4)
        extended = block[482]
        while extended:
            ext_at = self._pos
            ext = self._read_upto(BLOCK)
            if len(ext) < BLOCK:
                raise ArchiveError(
                    f"the archive is truncated: it ends inside the sparse header at offset {ext_at}",
                    hint=_TRUNCATED_HINT,
                )
            slots(ext[:504], 21)
            extended = ext[504]
            if len(regions) > self._limits.max_sparse:
                raise self._too_sparse(start)
        return regions

    def _pax_sparse(
        self, m: Member, pax: dict[str, str], pending: _Pending, start: int
    ) -> list[tuple[int, int]]:
        """pax sparse 0.0 (repeated offset/numbytes records) and 0.1 (one comma-separated map)."""
        if "GNU.sparse.map" in pax:
            text = pax["GNU.sparse.map"]
            numbers = [_decimal(v, "GNU.sparse.map") for v in text.split(",")] if text else []
            if len(numbers) % 2 or len(numbers) // 2 > self._limits.max_sparse:
                raise self._too_sparse(start) if len(numbers) % 2 == 0 else self._bad_map(m)
            regions = list(zip(numbers[0::2], numbers[1::2], strict=True))
        else:
            if len(pending.sparse_offsets) != len(pending.sparse_sizes):
                raise self._bad_map(m)
            regions = list(zip(pending.sparse_offsets, pending.sparse_sizes, strict=True))
        if "GNU.sparse.size" in pax:
            m.size = _decimal(pax["GNU.sparse.size"], "GNU.sparse.size")
        elif "GNU.sparse.realsize" in pax:
            m.size = _decimal(pax["GNU.sparse.realsize"], "GNU.sparse.realsize")
        if "GNU.sparse.name" in pax:
            m.name = pax["GNU.sparse.name"]
        return regions

    def _sparse_10(self, m: Member, start: int) -> list[tuple[int, int]]:
        """pax sparse 1.0: the map leads the stored data, as decimal lines (count, then offset and
        size per region), padded to a block boundary."""
        numbers: list[int] = []
        want: int | None = None
        buf = b""
        used = 0
        while want is None or len(numbers) < 1 + 2 * want:
            if b"\n" not in buf:
                if len(buf) > 40 or self._left == 0:
                    raise self._bad_map(m)
                chunk = self.read(BLOCK)
                used += len(chunk)
                buf += chunk
                continue
            line, _, buf = buf.partition(b"\n")
            numbers.append(_decimal(line.decode("ascii", "replace"), "GNU.sparse map"))
            if want is None:
                want = numbers[0]
                if want > self._limits.max_sparse:
                    raise self._too_sparse(start)
        m.stored -= used
        m.offset_data = self._pos
        return list(zip(numbers[1::2], numbers[2::2], strict=True))

    def _bad_map(self, m: Member) -> ArchiveError:
        return ArchiveError(f"archive member {m.name!r} has an invalid sparse map")

    def _check_regions(self, m: Member, regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Ordered, inside the apparent size, and adding up to the stored data. Empty regions
        hold nothing: GNU tar ends a map with one at the file's size when it ends in a hole."""
        pos = 0
        total = 0
        kept: list[tuple[int, int]] = []
        for offset, length in regions:
            if offset < pos or length < 0 or offset + length > m.size:
                raise self._bad_map(m)
            if length:
                kept.append((offset, length))
            pos = offset + length
            total += length
        if total != m.stored:
            raise self._bad_map(m)
        return kept
