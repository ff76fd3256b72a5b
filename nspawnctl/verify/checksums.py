"""Find a file's SHA-256 in a SHA256SUMS file, by systemd-importd's rules.

A line must *start* with the digest, then ``" *"``, ``"  "`` or ``" "`` and exactly the file name:
matching anywhere else in a line would let ``evil  foo.tar.xz`` hide inside another entry.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument

_HEX = re.compile(rb"[0-9a-fA-F]{64}")


def find_checksum(sums: bytes, filename: str) -> str | None:
    """The lowercase hex SHA-256 listed for ``filename`` (a bare file name), or None.

    The first matching line wins, as in systemd. CRLF line ends and a last line without a newline
    are tolerated; GNU's escaped lines (a leading backslash) never match a plain name.
    """
    if not filename or "/" in filename or filename in (".", "..") or "\n" in filename or "\0" in filename:
        raise InvalidArgument(
            f"not a file name: {filename!r}", hint="the checksum file lists bare file names, without '/'"
        )
    name = filename.encode()
    tails = (b" *" + name, b"  " + name, b" " + name)
    for line in sums.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if _HEX.fullmatch(line[:64]) and line[64:] in tails:
            return line[:64].decode("ascii").lower()
    return None
