"""Verification of downloads: the OpenPGP trust store and SHA256SUMS checksums.

Knows nothing of HTTP: it gets bytes (or a downloaded file) and says whether they may be trusted.
gnupg is imported only when a key or signature is actually handled.
"""

from __future__ import annotations

from .checksums import find_checksum
from .trust import KeyInfo, TrustedKey, TrustStore

__all__ = ["KeyInfo", "TrustStore", "TrustedKey", "find_checksum"]
