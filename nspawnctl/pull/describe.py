"""What a registry says about an image without pulling it (docker's ``distribution/{name}/json``):
the manifest's descriptor and the platforms it offers, by the pull's own registry client and
credentials."""

from __future__ import annotations

from dataclasses import dataclass

from .options import PullOptions


@dataclass(frozen=True)
class Distribution:
    media_type: str
    digest: str  # of the manifest or index the reference names
    size: int
    platforms: list[dict[str, str]]  # OCI platform objects: os, architecture[, variant]


def describe(source: str, options: PullOptions | None = None) -> Distribution:
    """The manifest (or index) ``source`` (a registry reference) names, and its platforms: an
    index's entries (attestations left out), or a single manifest's config's os/architecture."""
    from ..formats import oci
    from ..ref import RegistryRef
    from .oci import registry_client

    options = options or PullOptions()
    ref = RegistryRef.parse(source)
    with registry_client(ref, options) as client:
        data, media_type, digest = client.get_manifest(ref.repository, ref.reference)
        parsed = oci.parse_manifest(data, media_type)
        if isinstance(parsed, oci.Index):
            platforms = [
                _platform(d.platform)
                for d in parsed.manifests
                if d.platform is not None and not d.is_attestation
            ]
        else:
            config = oci.parse_config(
                client.get_blob(ref.repository, parsed.config.digest, parsed.config.size)
            )
            platforms = [_platform(oci.Platform(config.os, config.architecture, config.variant))]
    return Distribution(media_type, digest, len(data), platforms)


def _platform(p: object) -> dict[str, str]:
    from ..formats.oci import Platform

    assert isinstance(p, Platform)
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    return out
