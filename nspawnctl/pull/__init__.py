"""Pull images over HTTP(S): the glue of fetch -> verify -> store.

Three kinds of source:

- tarballs as systemd-importd publishes them (``foo.tar.xz`` with ``SHA256SUMS`` and
  ``SHA256SUMS.gpg`` beside it, optionally ``foo.nspawn``): see :mod:`.tarball`;
- App Container Images found by appc discovery from a name, or given by URL: see :mod:`.aci`;
- OCI and Docker images in a registry (``docker://REF``, ``alpine``, ``host:port/repo:tag``,
  ``NAME@sha256:...``): see :mod:`.oci`.

A name with a dotted host and no port (``example.com/app:1.0``) could be either an appc name or a
registry reference: it is a registry image when ``https://HOST/v2/`` answers like a registry,
otherwise appc discovery takes it.

Everything streams: one pass downloads, hashes, decompresses and extracts, and the image becomes
visible only after verification passed (the store's ``verify`` hook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .options import PullOptions, PullResult

if TYPE_CHECKING:
    from ..store.images import ImageStore
    from ..verify.trust import TrustStore


def pull(
    images: ImageStore, trust: TrustStore, source: str, name: str | None, options: PullOptions
) -> PullResult:
    """Pull ``source`` (an URL of a tarball or ACI, or an appc name) and name it ``name``."""
    if source.startswith(("http://", "https://")):
        if _url_path(source).endswith(".aci"):
            from .aci import pull_aci_url

            return pull_aci_url(images, trust, source, name, options)
        from .tarball import pull_tarball

        return pull_tarball(images, trust, source, name, options)
    if "://" in source and not source.startswith("docker://"):
        from ..errors import InvalidArgument

        scheme = source.split("://", 1)[0]
        raise InvalidArgument(
            f"cannot pull {source!r}: unknown transport {scheme!r}",
            hint="pull docker://REFERENCE, an https:// URL of a tarball or .aci, or an image name "
            "like example.com/app:1.0",
        )
    if _is_registry(source, options):
        from ..ref import RegistryRef
        from .oci import pull_registry

        return pull_registry(images, RegistryRef.parse(source), name, options)
    from .aci import pull_aci_name

    return pull_aci_name(images, trust, source, name, options)


def _is_registry(source: str, options: PullOptions) -> bool:
    """docker://, digests, short names, ports and localhost are registry references for sure; a
    dotted host alone is one when it answers the registry API probe."""
    from ..ref import has_explicit_registry

    if source.startswith("docker://") or "@" in source or not has_explicit_registry(source):
        return True
    host = source.split("/", 1)[0]
    if ":" in host or host == "localhost":
        return True
    from ..fetch.registry import RegistryClient, RegistryOptions

    with RegistryClient(host, RegistryOptions(tls_verify=options.tls_verify, ca_cert=options.ca_cert)) as c:
        return c.is_registry()


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


__all__ = ["PullOptions", "PullResult", "pull"]
