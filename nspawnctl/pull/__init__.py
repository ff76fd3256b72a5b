"""Pull images over HTTP(S): the glue of fetch -> verify -> store.

Two kinds of release, both plain files on a web server:

- tarballs as systemd-importd publishes them (``foo.tar.xz`` with ``SHA256SUMS`` and
  ``SHA256SUMS.gpg`` beside it, optionally ``foo.nspawn``): see :mod:`.tarball`;
- App Container Images found by appc discovery from a name, or given by URL: see :mod:`.aci`.

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
    if "://" in source:
        from ..errors import InvalidArgument

        scheme = source.split("://", 1)[0]
        raise InvalidArgument(
            f"cannot pull {source!r}: unknown transport {scheme!r}",
            hint="pull an https:// URL of a tarball or .aci, or an image name like example.com/app:1.0",
        )
    from .aci import pull_aci_name

    return pull_aci_name(images, trust, source, name, options)


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


__all__ = ["PullOptions", "PullResult", "pull"]
