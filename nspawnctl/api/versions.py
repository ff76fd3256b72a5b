"""Which Engine API versions the service speaks, and the ``/vX.Y`` prefix of a request path."""

from __future__ import annotations

import re

MIN_VERSION = (1, 24)
MAX_VERSION = (1, 47)
"""Advertised as ``Api-Version``: a newer client negotiates down to it (docker CLI, docker-py)."""

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def fmt(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


class UnsupportedVersion(ValueError):
    """A ``/vX.Y/`` path outside MIN_VERSION..MAX_VERSION."""


def split_path(path: str) -> tuple[tuple[int, int], str]:
    """The API version a path asks for (the newest when unversioned) and the path without it."""
    m = _PREFIX.match(path)
    if m is None:
        return MAX_VERSION, path
    version = (int(m.group(1)), int(m.group(2)))
    if version > MAX_VERSION:
        raise UnsupportedVersion(
            f"client version {fmt(version)} is too new. Maximum supported API version is {fmt(MAX_VERSION)}"
        )
    if version < MIN_VERSION:
        raise UnsupportedVersion(
            f"client version {fmt(version)} is too old. Minimum supported API version is {fmt(MIN_VERSION)}, "
            "please upgrade your client to a newer version"
        )
    return version, m.group(3)
