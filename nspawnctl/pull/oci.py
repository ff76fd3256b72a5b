"""Pull OCI and Docker images from a registry: reference -> registry -> layers -> image.

The manifest is chosen (by platform, from an index) and every blob is checked against its digest
while it streams; the config's diff IDs name the layers, and each layer becomes a read-only btrfs
snapshot of its parent keyed by its chain ID, so images that share base layers share them on disk
and a layer that is already here is not downloaded again. The image itself is the top layer plus
a record (its config's run defaults and where it came from).

What is verified: the manifest's digest (when pulled by digest; otherwise what TLS vouches for),
then the config and every layer against the digests the manifest lists, and every uncompressed
layer against the config's diff IDs. No signatures: the trust policy (verify/policy.py) decides
whether that is enough for a registry and name.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import NspawnctlError, VerificationFailed
from ..ref import ImageRef, RegistryRef
from .options import PullOptions, PullResult

if TYPE_CHECKING:
    from ..fetch.registry import RegistryClient
    from ..formats.oci import Descriptor, ImageConfig, Manifest, Platform
    from ..store.images import Image, ImageStore
    from ..store.layers import Layer, LayerStore


def registry_client(ref: RegistryRef, options: PullOptions) -> RegistryClient:
    """A client of ``ref``'s registry, probed (its API answers, auth negotiated) with the
    options' credentials (else the auth file's for that registry) and TLS settings."""
    from ..fetch.auth import find_credentials
    from ..fetch.registry import RegistryClient, RegistryOptions

    credentials = options.credentials or (
        find_credentials(ref.registry, options.auth_file, warn=options.notify) if options.auth_file else None
    )
    reg_options = RegistryOptions(
        tls_verify=options.tls_verify, ca_cert=options.ca_cert, credentials=credentials
    )
    client = RegistryClient(ref.registry, reg_options)
    try:
        client.probe()
    except BaseException:
        client.close()
        raise
    return client


def pull_registry(images: ImageStore, ref: RegistryRef, name: str | None, options: PullOptions) -> PullResult:
    """Pull ``ref`` from its registry and name it ``name`` (default: the reference itself)."""
    from ..formats import oci
    from ..store.layers import LayerStore
    from ..verify.policy import Policy

    local = ImageRef.parse(name) if name else ref.local
    if options.policy_file is not None:
        Policy(options.policy_file).check(
            ref.registry, ref.repository, ref.tag, ref.digest, options.tls_verify
        )
    want = oci.Platform.parse(options.platform) if options.platform else oci.Platform.host()
    with registry_client(ref, options) as client:
        manifest, manifest_digest, index_digest = _resolve(client, ref, want)
        config_bytes = client.get_blob(ref.repository, manifest.config.digest, manifest.config.size)
        config = oci.parse_config(config_bytes)
        _check_config(ref, manifest, config, want)
        for field in oci.ignored_fields(config):
            options.notify(f"Not applied: {field}")
        image_id = manifest.config.digest
        chains = oci.chain_ids(config.diff_ids)
        layers = LayerStore(images.pool)
        verified = (
            "digests (sha256) over TLS"
            if options.tls_verify
            else "digests (sha256); TLS not verified (--tls-verify=false)"
        )
        origin = {
            "registry": ref.registry,
            "repository": ref.repository,
            "reference": str(ref),
            "manifest": manifest_digest,
            "index": index_digest,
            "platform": str(oci.Platform(config.os, config.architecture, config.variant)),
            "verified": verified,
        }
        defaults = oci.run_defaults(config)
        existing = _existing(images, image_id)
        if existing is not None and all(layers.get(c) is not None for c in chains):
            images.annotate(existing.id, origin, defaults)
            images.tag(existing.id, local)
            return PullResult(images.get(existing.id), False, verified, ref=str(local))
        created: list[str] = []
        try:
            top = _fetch_layers(client, layers, ref, manifest, config.diff_ids, chains, options, created)
            size = sum(layer.size for layer in (layers.get(c) for c in chains) if layer is not None)
            image = images.import_layers(
                top,
                image_id=image_id,
                ref=local,
                source=f"docker://{ref}",
                defaults=defaults,
                origin=origin,
                layers=chains,
                size=size,
            )
        except BaseException:
            _roll_back(images, layers, created, options)
            raise
    return PullResult(image, True, verified, ref=str(local))


def _resolve(client: RegistryClient, ref: RegistryRef, want: Platform) -> tuple[Manifest, str, str | None]:
    """The image manifest for ``want``: (manifest, its digest, the index's digest or None)."""
    from ..formats import oci

    data, media_type, digest = client.get_manifest(ref.repository, ref.reference)
    parsed = oci.parse_manifest(data, media_type)
    if isinstance(parsed, oci.Manifest):
        return parsed, digest, None
    chosen = oci.select_platform(parsed, want)
    data, media_type, mdigest = client.get_manifest(ref.repository, chosen.digest)
    inner = oci.parse_manifest(data, media_type)
    if not isinstance(inner, oci.Manifest):
        raise VerificationFailed(
            f"{ref}: the index entry for {want} is itself an index, which is not supported",
            hint="pull the platform's manifest by digest",
        )
    return inner, mdigest, digest


def _check_config(ref: RegistryRef, manifest: Manifest, config: ImageConfig, want: Platform) -> None:
    from ..formats import oci

    if len(config.diff_ids) != len(manifest.layers):
        raise VerificationFailed(
            f"{ref}: the manifest lists {len(manifest.layers)} layers but the config "
            f"{len(config.diff_ids)} diff IDs",
            hint="the image is malformed; ask its publisher to rebuild it",
        )
    try:
        oci.check_platform(config, want)
    except VerificationFailed as e:
        raise VerificationFailed(f"{ref}: {e.message}", hint=e.hint) from e


def _existing(images: ImageStore, image_id: str) -> Image | None:
    from ..errors import NotFound

    try:
        return images.get(image_id)
    except NotFound:
        return None


def _fetch_layers(
    client: RegistryClient,
    layers: LayerStore,
    ref: RegistryRef,
    manifest: Manifest,
    diff_ids: list[str],
    chains: list[str],
    options: PullOptions,
    created: list[str],
) -> Layer:
    """Each layer that is not here yet: download, verify and apply it onto its parent's snapshot."""
    parent: Layer | None = None
    total = len(chains)
    for i, (desc, diff_id, chain) in enumerate(zip(manifest.layers, diff_ids, chains, strict=True), 1):
        have = layers.get(chain)
        if have is not None:
            options.notify(f"Layer {i}/{total} {_short(desc)}: already here")
            parent = have
            continue
        parent = _fetch_layer(client, layers, ref, desc, parent, diff_id, chain, options, f"{i}/{total}")
        if layers.made_by_this_process(chain):  # not one a racing pull made first
            created.append(chain)
    assert parent is not None  # a manifest has at least one layer (parse_manifest checks)
    return parent


def _fetch_layer(
    client: RegistryClient,
    layers: LayerStore,
    ref: RegistryRef,
    desc: Descriptor,
    parent: Layer | None,
    diff_id: str,
    chain: str,
    options: PullOptions,
    position: str,
) -> Layer:
    with options.progress(f"layer {position} {_short(desc)}") as progress:
        blob = client.open_blob(ref.repository, desc.digest, desc.size, progress)
        with contextlib.closing(blob):
            return layers.apply(parent, chain, diff_id, desc.digest, blob, limits=options.limits())


def _roll_back(images: ImageStore, layers: LayerStore, created: list[str], options: PullOptions) -> None:
    """A failed pull leaves nothing: drop the layers it made that no image uses (decided under
    the pool lock, so an image another pull records meanwhile keeps its layers)."""
    try:
        layers.prune(images.used_layers, only=set(created))
    except (NspawnctlError, OSError) as e:
        options.notify(f"could not remove the layers of the failed pull ({e}); 'nspawnctl image prune' will")


def _short(desc: Descriptor) -> str:
    return desc.digest.split(":", 1)[-1][:12]
