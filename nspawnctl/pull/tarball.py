"""Tarball releases as systemd-importd publishes them (``machinectl pull-tar``, ``importctl``).

``https://host/dir/foo.tar.xz`` comes with ``SHA256SUMS`` and its detached signature
``SHA256SUMS.gpg`` in the same directory, and maybe ``foo.nspawn``. The signature covers
SHA256SUMS; the tarball (and the settings file) are trusted through their lines in it. Small
files are fetched and checked first, so a release signed by an untrusted key is refused before
its tarball is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, cast
from urllib.parse import unquote, urljoin, urlsplit

from ..errors import (
    ArchiveError,
    ChecksumMismatch,
    InvalidArgument,
    InvalidReference,
    SignatureMissing,
    UnsafeArchive,
    UntrustedSignature,
    VerificationFailed,
)
from ..ref import ImageRef
from ..spec import RunDefaults
from ..store.images import UNVERIFIED
from .options import TRAILING_MAX, HashingReader, PullOptions, PullResult, describe_signer

if TYPE_CHECKING:
    from ..fetch.http import Fetcher
    from ..store.images import Image, ImageStore
    from ..store.unpack import UnpackResult
    from ..verify.trust import TrustStore

# systemd's tar_strip_suffixes(), longest first.
TAR_SUFFIXES = (".tar.xz", ".tar.gz", ".tar.bz2", ".tar.zst", ".tgz", ".tbz2", ".txz", ".tzst", ".tar")
SUMS = "SHA256SUMS"
SIGNATURES = ("SHA256SUMS.gpg", "SHA256SUMS.asc")


def strip_tar_suffix(filename: str) -> str:
    for suffix in TAR_SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename


def trust_name(url: str) -> str:
    """The name a URL's signature is trusted under: ``host[:port]/path`` (trust prefixes match it)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    netloc = f"{host}:{parts.port}" if parts.port and parts.port != default_port else host
    return netloc + posixpath.normpath(unquote(parts.path) or "/").rstrip("/")


def pull_tarball(
    images: ImageStore, trust: TrustStore, url: str, name: str | None, options: PullOptions
) -> PullResult:
    fetcher = options.fetcher()
    try:
        return _pull(images, trust, fetcher, url, name, options)
    finally:
        fetcher.close()


def _pull(
    images: ImageStore, trust: TrustStore, fetcher: Fetcher, url: str, name: str | None, options: PullOptions
) -> PullResult:
    fetcher.check_url(url)
    filename = posixpath.basename(unquote(urlsplit(url).path))
    if not filename or filename in (SUMS, *SIGNATURES):
        raise InvalidArgument(
            f"{url} does not name a tarball", hint="pull the URL of a .tar, .tar.xz, ... file"
        )
    stem = strip_tar_suffix(filename)
    ref = _local_ref(name, stem)
    notices: list[str] = []  # told only once the pull succeeded: an error must be the first line
    expected: str | None = None
    sums = b""
    verified = UNVERIFIED
    if options.verify in ("signature", "checksum"):
        got = fetcher.get_small(urljoin(url, SUMS), missing_ok=True)
        if got is None:
            raise VerificationFailed(
                f"no {SUMS} next to {url}, so the download cannot be verified",
                hint="a release publishes SHA256SUMS and SHA256SUMS.gpg beside the tarball; "
                "--verify=no takes it unverified",
            )
        sums = got
        verified = "checksum"
        if options.verify == "signature":
            signature = None
            for sig_name in SIGNATURES:
                signature = fetcher.get_small(urljoin(url, sig_name), missing_ok=True)
                if signature is not None:
                    break
            if not signature:
                raise SignatureMissing(
                    f"{SUMS} at {urljoin(url, '.')} is not signed (no {' or '.join(SIGNATURES)})",
                    hint="ask the publisher for a signed release; --verify=checksum checks the "
                    "checksum alone",
                )
            try:
                key = trust.verify(trust_name(url), sums, signature, subject=f"{SUMS} at {urljoin(url, '.')}")
            except UntrustedSignature as e:
                release_dir = trust_name(urljoin(url, "."))
                e.hint = (
                    f"check the publisher's key, then: nspawnctl trust add KEYFILE --prefix {release_dir}"
                )
                raise
            verified = describe_signer(key)
        from ..verify.checksums import find_checksum

        expected = find_checksum(sums, filename)
        if expected is None:
            raise ChecksumMismatch(
                f"{SUMS} at {urljoin(url, '.')} has no line for {filename}",
                hint="the release is incomplete; check the URL",
            )

    # before any reuse: the settings are part of the release and are verified like the tarball
    defaults = _settings(fetcher, url, stem, sums, options, notices.append) or RunDefaults()
    etag = modified = None
    if expected is not None:
        existing = images.find(download=f"sha256:{expected}")
        if existing is not None:
            images.annotate(existing.id, {**existing.origin, "url": url, "verified": verified}, defaults)
            return _present(images, existing, ref, verified, notices, options)
    else:  # nothing to compare with but the server's ETag for this URL
        existing = images.find(url=url)
        if existing is not None:
            etag, modified = existing.origin.get("etag"), existing.origin.get("last_modified")

    with (
        options.progress(filename) as progress,
        fetcher.open(url, etag=etag, last_modified=modified, progress=progress, prefetch=True) as download,
    ):
        if download.not_modified and existing is not None:
            images.annotate(existing.id, {**existing.origin, "verified": verified}, defaults)
            return _present(images, existing, ref, verified, notices, options)
        reader = HashingReader(download)
        # the URL asked for is the key of the next pull; where redirects led is kept beside it
        origin: dict[str, str | None] = {"url": url, "final_url": download.url, "verified": verified}

        def check_digest(trailing_max: int = TRAILING_MAX) -> str:
            digest = reader.finish(trailing_max)
            if expected is not None and digest != expected:
                raise ChecksumMismatch(
                    f"checksum of {filename} does not match {SUMS}: the file was changed or damaged",
                    hint="nothing was kept; if the release is being updated, pull again later",
                )
            return digest

        def check(result: UnpackResult) -> RunDefaults | None:
            digest = check_digest()
            origin.update(
                download=f"sha256:{digest}", etag=download.etag, last_modified=download.last_modified
            )
            return None

        try:
            image = images.import_archive(
                cast("IO[bytes]", reader),
                ref,
                source=url,
                defaults=defaults,
                verify=check,
                origin=origin,
                limits=options.limits(),
            )
        except UnsafeArchive:
            raise
        except ArchiveError:
            if expected is not None:
                # a changed byte breaks decompression before the end: name the real cause if the
                # rest is small enough to read; otherwise the archive error stands
                with contextlib.suppress(ArchiveError):
                    check_digest(trailing_max=64 << 20)
            raise
    for text in notices:
        options.notify(text)
    return PullResult(image=image, downloaded=True, verified=verified, notices=notices, ref=str(ref))


def _present(
    images: ImageStore, image: Image, ref: ImageRef, verified: str, notices: list[str], options: PullOptions
) -> PullResult:
    for text in notices:
        options.notify(text)
    options.notify(f"{image.short_id}: already present, not downloaded again")
    image = images.tag(image.id, ref)
    return PullResult(image=image, downloaded=False, verified=verified, notices=notices, ref=str(ref))


def _local_ref(name: str | None, stem: str) -> ImageRef:
    if name:
        return ImageRef.parse(name)
    try:
        return ImageRef.parse(stem.lower())
    except InvalidReference:
        raise InvalidReference(
            f"cannot make an image name from {stem!r}", hint="give one: nspawnctl pull URL NAME[:TAG]"
        ) from None


def _settings(
    fetcher: Fetcher,
    url: str,
    stem: str,
    sums: bytes,
    options: PullOptions,
    notice: Callable[[str], None],
) -> RunDefaults | None:
    """The release's optional ``stem.nspawn``, checked like the tarball; only harmless keys count."""
    settings_name = f"{stem}.nspawn"
    data = fetcher.get_small(urljoin(url, settings_name), missing_ok=True)
    if data is None:
        return None
    if options.verify != "no":
        from ..verify.checksums import find_checksum

        expected = find_checksum(sums, settings_name)
        if expected is None or hashlib.sha256(data).hexdigest() != expected:
            raise ChecksumMismatch(
                f"settings file {settings_name} is "
                + ("not listed in" if expected is None else "different from what is listed in")
                + f" {SUMS}",
                hint="the release is inconsistent or was tampered with; nothing was kept",
            )
    from ..formats.settings import settings_defaults

    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise VerificationFailed(f"settings file {settings_name} is not text") from None
    defaults, ignored = settings_defaults(text, urljoin(url, settings_name))
    if ignored:
        notice(f"{settings_name}: ignored settings a download may not grant: {', '.join(ignored)}")
    return defaults
