"""Container names: valid machine names, and docker-style generated ones."""

from __future__ import annotations

import os
import re

from .errors import InvalidName

# systemd's hostname_is_valid(): dot-separated labels of letters, digits and inner hyphens, <= 64 chars.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_MACHINE_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
MAX_NAME = 64

_ADJECTIVES = (
    "brave",
    "calm",
    "clever",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "merry",
    "nimble",
    "proud",
    "quiet",
    "rapid",
    "sharp",
    "sunny",
    "tidy",
    "vivid",
    "witty",
)
_NOUNS = (
    "otter",
    "falcon",
    "badger",
    "heron",
    "lynx",
    "marten",
    "newt",
    "osprey",
    "panda",
    "quail",
    "raven",
    "salmon",
    "tapir",
    "urchin",
    "vole",
    "walrus",
    "yak",
    "zebra",
    "bison",
    "crane",
)


def is_machine_name(text: str) -> bool:
    """Whether ``text`` could name a container: what resolution looks up as a file name."""
    return len(text) <= MAX_NAME and _MACHINE_NAME.fullmatch(text) is not None


def check_machine_name(name: str) -> str:
    """Return ``name`` if systemd accepts it as a machine name, else raise InvalidName."""
    if len(name) > MAX_NAME or not _MACHINE_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid container name {name!r}",
            hint="use letters, digits and inner hyphens (dots between parts), at most 64 characters",
        )
    return name


def _pick(words: tuple[str, ...]) -> str:
    """A word picked by os.urandom (what the secrets module uses; importing it loads hashlib and
    random, ~2 ms of every ``run``); the modulo bias of 32 random bits is below 1e-7."""
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]


def generate_name(taken: set[str]) -> str:
    """A readable unused name such as ``merry-otter``; falls back to a random suffix."""
    for _ in range(50):
        name = f"{_pick(_ADJECTIVES)}-{_pick(_NOUNS)}"
        if name not in taken:
            return name
    return f"ctr-{os.urandom(4).hex()}"


_ZONE_NAME = re.compile(r"[A-Za-z0-9_-]{1,12}")


def check_zone_name(name: str) -> str:
    """A zone's bridge is ``vz-NAME``: an interface name, so at most 12 characters of [A-Za-z0-9_-]."""
    if not _ZONE_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid zone name {name!r}",
            hint="use at most 12 letters, digits, '-' or '_' (the bridge is called vz-NAME)",
        )
    return name
