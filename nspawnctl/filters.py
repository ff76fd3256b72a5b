"""docker's ``ps --filter KEY=VALUE``: which containers a listing shows.

Semantics as docker's: the values of one key are ORed (but ``label``'s, which must all hold,
as dockerd's MatchKVList), different keys ANDed; ``name`` is a
name or part of one searched in the name (``.`` any character, ``[...]`` classes, ``^``/``$``
anchors: no other regular expression runs), ``id`` a prefix of the ID, ``label`` a key (any value)
or ``KEY=VALUE``, ``status`` one of docker's states, ``ancestor`` the image as the container
names it (NAME[:TAG]) or a prefix of its ID, ``exited`` the exit code of an exited container.
An unknown key or a bad value is an InvalidArgument (exit 2) before anything is listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import InvalidArgument

if TYPE_CHECKING:
    from .client import Images
    from .status import ContainerStatus

KEYS = ("ancestor", "exited", "id", "label", "name", "status")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


@dataclass(frozen=True)
class Candidate:
    """What a filter looks at in one container."""

    name: str
    id: str
    labels: dict[str, str]
    status: str  # created | running | restarting | exited (docker's words)
    image: str  # the reference the container was made from, as given
    image_id: str  # sha256:<hex> or sha512-<hex>
    exit_code: int | None = None


@dataclass(frozen=True)
class Filters:
    """Parsed ``--filter`` values, by key."""

    by_key: dict[str, list[str]] = field(default_factory=dict)

    @property
    def wants_stopped(self) -> bool:
        """A status filter lists stopped containers without ``-a`` (docker's daemon does so)."""
        return "status" in self.by_key

    def matches(self, c: Candidate, same_image: Callable[[str, str], bool] | None = None) -> bool:
        """Whether ``c`` passes every key; ``same_image(text, image_id)`` may say that an
        ``ancestor`` value names the container's image in another way (a tag of the same ID)."""
        checks = {
            "name": lambda v: re.search(v, c.name) is not None,
            "id": lambda v: c.id.startswith(v),
            "label": lambda v: _label(v, c.labels),
            "status": lambda v: c.status == v,
            "ancestor": lambda v: _ancestor(v, c, same_image),
            "exited": lambda v: c.status == "exited" and c.exit_code == int(v),
        }
        return all(
            (all if key == "label" else any)(checks[key](v) for v in values)
            for key, values in self.by_key.items()
        )


def candidate(st: ContainerStatus) -> Candidate:
    """What the filters look at in a container's status (the exit code only once it exited)."""
    s = st.spec
    code = st.exit.exit_code if st.exit and st.state == "exited" else None
    return Candidate(s.display_name, s.id, s.labels, st.state, s.image, s.image_id, code)


def select(statuses: Sequence[ContainerStatus], filters: Filters, images: Images) -> list[ContainerStatus]:
    """The containers that pass ``filters`` (``ps --filter``, the API's ``GET /containers/json``);
    an ``ancestor`` value may name the container's image by another tag of the same ID, which
    ``images`` (Client.images) resolves."""
    from .errors import NspawnctlError

    if not filters.by_key:
        return list(statuses)

    def same_image(text: str, image_id: str) -> bool:
        try:
            return bool(images.get(text).id == image_id)
        except NspawnctlError:
            return False

    return [st for st in statuses if filters.matches(candidate(st), same_image)]


def parse_filters(items: Iterable[str]) -> Filters:
    """``KEY=VALUE`` items into Filters; refuses unknown keys and values that cannot match."""
    by_key: dict[str, list[str]] = {}
    for item in items:
        from .imagefilters import split_item  # the item checks every command's filters share

        key, value = split_item(item, KEYS, _HINT)
        if key == "name":  # no user regex runs in backtracking re (ReDoS): a name, '.', ^ and $
            from .listfilters import name_pattern

            name_pattern(key, value)
        elif key == "status" and value not in STATUSES:
            raise InvalidArgument(
                f"invalid filter 'status={value}'", hint=f"status is one of: {', '.join(STATUSES)}"
            )
        elif key == "exited" and not re.fullmatch(r"-?[0-9]{1,9}", value):
            raise InvalidArgument(f"invalid filter 'exited={value}'", hint="an exit code, e.g. exited=0")
        by_key.setdefault(key, []).append(value)
    return Filters(by_key)


_HINT = f"filters are {', '.join(k + '=...' for k in KEYS)}; e.g. --filter status=exited"


def _label(value: str, labels: dict[str, str]) -> bool:
    key, eq, wanted = value.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == wanted


def _ancestor(value: str, c: Candidate, same_image: Callable[[str, str], bool] | None) -> bool:
    if value == c.image or _without_latest(value) == _without_latest(c.image):
        return True
    hex_id = value.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]+", hex_id) and c.image_id.removeprefix("sha256:").startswith(hex_id):
        return True
    return same_image is not None and same_image(value, c.image_id)


def _without_latest(ref: str) -> str:
    return ref.removesuffix(":latest")
