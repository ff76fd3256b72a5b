"""Image references: ``name[:tag]``, parsed once into a typed value.

The tag is what follows the last ``:`` after the last ``/``, so a registry port
(``127.0.0.1:5000/acc/bb:v1``) is never mistaken for a tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

DEFAULT_TAG = "latest"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HEX_ID = re.compile(r"(?:sha256:)?[0-9a-f]{3,64}|(?:sha512-)?[0-9a-f]{3,128}")


@dataclass(frozen=True, order=True)
class ImageRef:
    name: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``name[:tag]``; raise InvalidReference with a hint on anything else."""
        if "@" in text:
            raise InvalidReference(
                f"invalid image reference {text!r}: digests are not accepted here",
                hint="name local images as NAME[:TAG]",
            )
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            name, tag = text[:colon], text[colon + 1 :]
        else:
            name, tag = text, DEFAULT_TAG
        if not _valid_name(name) or not _TAG.fullmatch(tag):
            raise InvalidReference(
                f"invalid image reference {text!r}",
                hint="use NAME[:TAG] with lowercase letters, digits and . _ - in the name, e.g. debian:12",
            )
        return cls(name, tag)


def _valid_name(name: str) -> bool:
    if not name or len(name) > 255:
        return False
    parts = name.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            return False
        parts = parts[1:]
    return all(_COMPONENT.fullmatch(p) for p in parts)


def looks_like_id(text: str) -> bool:
    """True for an image ID or a prefix of one (``sha256:ab12…``, ``sha512-ab12…``, ``ab12…``)."""
    return bool(_HEX_ID.fullmatch(text))
