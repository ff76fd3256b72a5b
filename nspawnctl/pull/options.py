"""What a pull is told and what it reports, plus the byte-stream plumbing pulls share."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from ..errors import ArchiveError, InvalidArgument

if TYPE_CHECKING:
    from ..fetch.http import Fetcher, ProgressFn
    from ..store.images import Image
    from ..store.unpack import Limits
    from ..verify.trust import TrustedKey

VERIFY_MODES = ("signature", "checksum", "no")

ProgressFactory = Callable[[str], AbstractContextManager["ProgressFn | None"]]


@contextlib.contextmanager
def _no_progress(label: str) -> Iterator[None]:
    yield None


def _no_notice(text: str) -> None:
    pass


@dataclass(frozen=True)
class PullOptions:
    verify: str = "signature"
    """signature: a trusted key must have signed it; checksum: SHA256SUMS only; no: take it as is."""
    insecure: bool = False
    """Permit plain http://. It never weakens verification: only ``verify`` does that."""
    ca_cert: str | None = None
    """A PEM bundle of CAs for HTTPS (default: the system's, or $REQUESTS_CA_BUNDLE)."""
    progress: ProgressFactory = _no_progress
    """Called with a label per download; yields a callback for (bytes done, total) or None."""
    notify: Callable[[str], None] = _no_notice
    """Receives notices worth a line on stderr (settings ignored, image already present)."""
    platform: str | None = None
    """Registry images: OS/ARCH[/VARIANT] to choose from a multi-platform index (default: the host's)."""
    tls_verify: bool = True
    """Registry images: False permits plain HTTP and unverified TLS for that registry (digests are
    still checked)."""
    auth_file: Path | None = None
    """Registry credentials (auth.json, as ``login`` writes it); None: pull anonymously."""
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    """(user, password) for this pull only, instead of ``auth_file``'s (the Docker API's
    X-Registry-Auth); never written anywhere, never in a repr or a message."""
    policy_file: Path | None = None
    """Which registries and names may be pulled (verify/policy.py); None: the baseline only."""
    max_ratio: float | None = None
    """Refuse content that unpacks to more than this many times its compressed size (0: no
    ratio limit; None: the default, unpack.DEFAULT_MAX_RATIO)."""

    def __post_init__(self) -> None:
        if self.verify not in VERIFY_MODES:
            raise InvalidArgument(
                f"invalid --verify={self.verify!r}", hint=f"use one of: {', '.join(VERIFY_MODES)}"
            )
        self.limits()  # refuses a NaN, infinite or negative max_ratio before anything is fetched

    def limits(self) -> Limits:
        """What a download may unpack to."""
        from ..store.unpack import Limits

        return Limits() if self.max_ratio is None else Limits(max_ratio=self.max_ratio)

    def fetcher(self) -> Fetcher:
        from ..fetch.http import Fetcher, FetchOptions

        return Fetcher(FetchOptions(insecure=self.insecure, ca_cert=self.ca_cert))


@dataclass(frozen=True)
class PullResult:
    image: Image
    downloaded: bool
    """False when the content was already here (only a name may have been added)."""
    verified: str
    """How the content was verified, in words: "signature by <FPR> (<uid>)", "checksum", "not verified"."""
    notices: list[str] = field(default_factory=list)
    ref: str = ""
    """The name the image got (or kept) by this pull."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def describe_signer(key: TrustedKey) -> str:
    return f"signature by {key.fingerprint}" + (f" ({key.uids[0]})" if key.uids else "")


TRAILING_MAX = 1 << 20
"""Bytes accepted after the end of the compressed archive (padding some writers add)."""


class HashingReader(io.RawIOBase):
    """Passes a download through while hashing it (and optionally copying it to a spool file).

    ``finish()`` reads what the consumer left (a decompressor may stop before trailing bytes), so
    the digest covers the whole body and a short body is noticed by the download itself; a body
    going on long after the archive ended, or past ``max_bytes``, is refused rather than stored.
    """

    def __init__(self, raw: _Readable, copy_to: IO[bytes] | None = None, max_bytes: int = 64 << 30) -> None:
        self._raw = raw
        self._copy = copy_to
        self._hash = hashlib.sha256()
        self._max = max_bytes
        self.done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        if not data:
            return 0
        n = len(data)
        self.done += n
        if self.done > self._max:
            raise ArchiveError(f"the download is larger than {self._max} bytes", hint="is the URL right?")
        b[:n] = data
        self._hash.update(data)
        if self._copy is not None:
            self._copy.write(data)
        return n

    def finish(self, trailing_max: int = TRAILING_MAX) -> str:
        """Read the rest (at most ``trailing_max`` bytes) and return the SHA-256 of everything."""
        left = trailing_max
        buf = bytearray(1 << 20)
        while n := self.readinto(memoryview(buf)[: min(len(buf), left + 1)]):
            left -= n
            if left < 0:
                raise ArchiveError(
                    f"the download goes on after the end of the archive (more than {trailing_max} bytes)",
                    hint="the file is damaged or not what it claims to be",
                )
        if self._copy is not None:
            self._copy.flush()
        return self._hash.hexdigest()
