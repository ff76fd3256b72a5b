"""Container names: docker's names, the machine names derived from them, generated names.

A container is known to machined, systemd and the pool by its *machine name*, which must be a host
name (systemd's ``hostname_is_valid``: letters, digits, inner hyphens, dot-separated labels, at
most 64 characters). docker allows more (``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, moby's
``daemon/names``): compose and docker-py name containers ``project_web_1``. Such a name is kept as
given (``[X-Nspawnctl] Name=`` in the definition) and the machine name is derived from it by one
rule, ``_`` -> ``-``; a docker name whose derived name is still no host name (a trailing ``_``,
``_`` next to a dot, ``..``) is refused. The rule is a function of the name alone, so a lookup by
the given name costs one file read, and two names with one machine name (``a_b``, ``a-b``) are a
conflict, never one container.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

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
            f"invalid container name {name[:80]!r}",
            hint="use letters, digits and inner hyphens (dots between parts), at most 64 characters",
        )
    return name


# moby's daemon/names.RestrictedNamePattern, one character allowed too (as machine names always were)
_DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_RULES = (
    "use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters; "
    "'_' becomes '-' in the machine name, which must be a host name ('-' and '_' only between "
    "letters or digits, '.' between parts)"
)


def machine_name_of(text: str) -> str | None:
    """The machine name a docker name ``text`` stands for (``_`` -> ``-``), or None when ``text``
    is no docker name or its machine name is no host name."""
    if len(text) > MAX_NAME or not _DOCKER_NAME.fullmatch(text):
        return None
    machine = text.replace("_", "-")
    return machine if _MACHINE_NAME.fullmatch(machine) else None


@dataclass(frozen=True)
class ContainerName:
    """A container's name as given and its machine name; made only by :meth:`parse`, which
    bounds and checks it once (everything after takes the two as valid)."""

    given: str
    machine: str

    @classmethod
    def parse(cls, text: str) -> ContainerName:
        """``text`` as a container name (docker's rules), or InvalidName saying the rules."""
        machine = machine_name_of(text)
        if machine is None:
            if len(text) <= MAX_NAME and _DOCKER_NAME.fullmatch(text):
                machine_text = text.replace("_", "-")
                why = f"invalid container name {text!r}: its machine name {machine_text!r} is no host name"
            else:
                why = f"invalid container name {text[:80]!r}" + ("..." if len(text) > 80 else "")
            raise InvalidName(why, hint=_RULES)
        return cls(text, machine)

    @property
    def kept(self) -> str | None:
        """What the definition keeps as ``Name=``: the given name when it is not the machine name."""
        return self.given if self.given != self.machine else None


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
