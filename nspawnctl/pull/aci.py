"""App Container Images (appc): found by discovery from a name, or given by URL, or a local file.

The signature (``.aci.asc``) covers the ``.aci`` exactly as served, so the download is copied to
a spool file on the pool's filesystem while it is extracted, and checked once complete; the
image ID is the sha512 of the uncompressed tar, as the appc spec defines it. The manifest comes
last in archives made by ``actool``, so the name and labels are checked after extraction too,
before the image becomes visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from ..errors import ArchiveError, InvalidArgument, InvalidReference, SignatureMissing, UntrustedSignature
from ..ref import ImageRef
from ..store.images import UNVERIFIED
from .options import HashingReader, PullOptions, PullResult, describe_signer

if TYPE_CHECKING:
    from ..fetch.http import Fetcher
    from ..formats.aci import AciManifest
    from ..spec import RunDefaults
    from ..store.images import Image, ImageStore
    from ..store.unpack import Limits, UnpackResult
    from ..verify.trust import TrustStore


def pull_aci_name(
    images: ImageStore, trust: TrustStore, text: str, name: str | None, options: PullOptions
) -> PullResult:
    """``example.com/app[:version]``: appc discovery, then the first endpoint found."""
    from ..fetch.discovery import discover
    from ..formats.aci import host_os_arch, split_name_version, valid_ac_name

    aci_name, version = split_name_version(text)
    host = aci_name.split("/", 1)[0]
    if "." not in host and host != "localhost":
        raise InvalidReference(
            f"cannot pull {text!r}: an image name starts with a domain, like example.com/app:1.0",
            hint="nspawnctl pulls App Container Images by name and tarballs or ACIs by https:// URL; "
            "registry images (docker.io) are not supported yet",
        )
    if options.verify == "checksum":
        raise _no_checksum()
    if not valid_ac_name(aci_name):
        raise InvalidReference(
            f"invalid image name {text!r}",
            hint="name an image like example.com/app:1.0, or pull the https:// URL of a tarball or .aci",
        )
    os_name, arch = host_os_arch()
    # "latest" only fills discovery templates; the ACI must match just what was asked (rkt does so)
    labels = {"os": os_name, "arch": arch, **({"version": version} if version else {})}
    ref = ImageRef.parse(name) if name else None
    fetcher = options.fetcher()
    try:
        found = discover(fetcher, aci_name, {"version": "latest", **labels})
        endpoint = found.endpoints[0]
        return _pull(
            images, trust, fetcher, endpoint.aci, endpoint.asc, aci_name, labels, ref, options, found.pubkeys
        )
    finally:
        fetcher.close()


def pull_aci_url(
    images: ImageStore, trust: TrustStore, url: str, name: str | None, options: PullOptions
) -> PullResult:
    """A direct ``https://.../app.aci`` (signature at ``.aci.asc``); trusted by its manifest's name."""
    from ..formats.aci import host_os_arch

    os_name, arch = host_os_arch()
    fetcher = options.fetcher()
    try:
        ref = ImageRef.parse(name) if name else None
        return _pull(
            images,
            trust,
            fetcher,
            url,
            _signature_url(url),
            None,
            {"os": os_name, "arch": arch},
            ref,
            options,
            [],
        )
    finally:
        fetcher.close()


def import_aci(
    images: ImageStore, stream: IO[bytes], name: str | None, source: str, limits: Limits | None = None
) -> Image:
    """``import FILE.aci``: no signature (the user vouches for a local file); the manifest names it."""
    given = ImageRef.parse(name) if name else None  # a bad NAME fails before any extraction
    refs: list[ImageRef] = []

    def check(result: UnpackResult) -> RunDefaults:
        manifest = _manifest(result)
        refs.append(given or _ref(manifest.name, manifest.version))
        return manifest.run_defaults()

    return images.import_archive(
        stream, lambda: refs[0], source=source, layout="aci", verify=check, limits=limits
    )


def _pull(
    images: ImageStore,
    trust: TrustStore,
    fetcher: Fetcher,
    url: str,
    sig_url: str,
    aci_name: str | None,
    labels: dict[str, str],
    ref: ImageRef | None,
    options: PullOptions,
    pubkeys: list[str],
) -> PullResult:
    fetcher.check_url(url)
    if options.verify == "checksum":
        raise _no_checksum()
    signature: bytes | None = None
    if options.verify == "signature":
        signature = fetcher.get_small(sig_url, missing_ok=True)
        if not signature:
            with fetcher.open(url):  # no image at all says DownloadNotFound, which is the better error
                pass
            raise SignatureMissing(
                f"no signature at {sig_url}",
                hint="ask the publisher to sign the ACI; --verify=no takes it unverified",
            )
        if aci_name is not None:
            if not trust.keys_for(aci_name):
                hint = (
                    f"the publisher offers {pubkeys[0]}: check its fingerprint, then "
                    f"'nspawnctl trust add {pubkeys[0]} --prefix {aci_name}'"
                    if pubkeys
                    else f"'nspawnctl trust add KEYFILE --prefix {aci_name}' with the publisher's key"
                )
                raise UntrustedSignature(f"no key is trusted for {aci_name}", hint=hint)
            trust.check_signer(aci_name, signature)  # before the large download

    existing = images.find(url=url)
    if existing is not None and not _reusable(trust, existing, aci_name, labels, options):
        existing = None
    label = url.rsplit("/", 1)[-1]
    with (
        options.progress(label) as progress,
        fetcher.open(
            url,
            etag=existing.origin.get("etag") if existing else None,
            last_modified=existing.origin.get("last_modified") if existing else None,
            progress=progress,
        ) as download,
        images.spool() as spool_path,
        open(spool_path, "wb") as spool,
    ):
        if download.not_modified and existing is not None:
            options.notify(f"{existing.short_id}: already present, not downloaded again")
            name_ref = ref or _default_ref(existing)
            tagged = images.tag(existing.id, name_ref)
            verified = existing.origin.get("verified", "")
            return PullResult(tagged, downloaded=False, verified=verified, ref=str(name_ref))
        reader = HashingReader(download, copy_to=spool)
        # the URL asked for is the key of the next pull; where redirects led is kept beside it
        origin: dict[str, str | None] = {"url": url, "final_url": download.url}
        names: list[ImageRef] = []

        def check(result: UnpackResult) -> RunDefaults:
            digest = reader.finish()
            manifest = _manifest(result)
            expected_name = aci_name or manifest.name
            verified = UNVERIFIED
            if signature is not None:  # first: nothing in the manifest counts before this
                key = trust.verify(expected_name, Path(spool_path), signature, subject=label)
                verified = describe_signer(key)
                origin["signer"] = key.fingerprint
                origin["trust_name"] = expected_name
            manifest.check_matches(expected_name, labels)
            origin.update(
                verified=verified,
                download=f"sha256:{digest}",
                etag=download.etag,
                last_modified=download.last_modified,
                aci_name=manifest.name,
                version=manifest.version,
                os=manifest.labels.get("os"),
                arch=manifest.labels.get("arch"),
            )
            names.append(ref or _ref(manifest.name, manifest.version))
            if manifest.ignored_fields():
                options.notify(f"{label}: not applied: {', '.join(manifest.ignored_fields())}")
            return manifest.run_defaults()

        image = images.import_archive(
            cast("IO[bytes]", reader),
            lambda: names[0],
            source=url,
            layout="aci",
            verify=check,
            origin=origin,
            limits=options.limits(),
        )
    return PullResult(image, downloaded=True, verified=str(origin["verified"]), ref=str(names[0]))


def _reusable(
    trust: TrustStore, image: Image, aci_name: str | None, labels: dict[str, str], options: PullOptions
) -> bool:
    """A 304 may reuse an image only if it is what this pull asks for (name, version, os, arch) and,
    when signatures count, its signer is still trusted for that name."""
    origin = image.origin
    name = aci_name or origin.get("aci_name")
    if origin.get("aci_name") != name or any(origin.get(k) != v for k, v in labels.items()):
        return False
    if options.verify != "signature":
        return True
    signer = origin.get("signer")
    return bool(signer and name and any(k.fingerprint == signer for k in trust.keys_for(name)))


def _no_checksum() -> InvalidArgument:
    return InvalidArgument(
        "an ACI has no checksum file: it is verified by its signature",
        hint="use --verify=signature (the default), or --verify=no to take it unverified",
    )


def _signature_url(url: str) -> str:
    """``.asc`` goes on the path: a query (a signed download link, say) stays after it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + ".asc"))


def _manifest(result: UnpackResult) -> AciManifest:
    from ..formats.aci import AciManifest

    if result.manifest is None:
        raise ArchiveError("not an ACI: no manifest")
    return AciManifest.parse(result.manifest)


def _ref(aci_name: str, version: str | None) -> ImageRef:
    try:
        return ImageRef(ImageRef.parse(aci_name).name, ImageRef.parse(f"x:{version or 'latest'}").tag)
    except InvalidReference:
        raise InvalidReference(
            f"cannot name the image {aci_name}:{version} locally",
            hint="give a local name: nspawnctl pull SOURCE NAME[:TAG]",
        ) from None


def _default_ref(image: Image) -> ImageRef:
    return _ref(str(image.origin.get("aci_name") or "image"), image.origin.get("version"))
