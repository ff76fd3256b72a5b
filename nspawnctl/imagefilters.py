"""docker's ``images --filter KEY=VALUE``: which images a listing (or a prune) takes.

Parsed once into :class:`ImageFilters`, shared by the CLI (``images -f``, ``image prune
--filter``) and the Docker API (``GET /images/json``, ``POST /images/prune``). Semantics as
dockerd's (its containerd image store, which has them all):

- ``reference=GLOB``: Go's ``path.Match`` (``*`` and ``?`` stop at ``/``) on a name as
  ``NAME:TAG`` or on ``NAME`` alone, familiar (``alpine`` for ``docker.io/library/alpine``) or
  as nspawnctl shows it; several are ORed, and only the names that matched are listed.
- ``dangling=true|false`` (or 1|0): images without a name, or with one.
- ``label=KEY`` / ``label=KEY=VALUE``: the image has that label (value); ``label!=KEY`` /
  ``label!=KEY=VALUE``: it has not; every label filter must hold (ANDed).
- ``before=IMAGE`` / ``since=IMAGE``: created before / after that image, which must exist.
- ``until=TIME``: created before TIME (``10m``, ``2h30m`` ago, RFC 3339, a date, Unix time).

Different keys are ANDed. An unknown key or a value that cannot match is an InvalidArgument
(exit 2, HTTP 400) before anything is listed; a before/since image that is not there an
ImageNotFound (exit 125, HTTP 404, docker's "No such image").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import InvalidArgument

if TYPE_CHECKING:
    from .store.images import Image

KEYS = ("before", "dangling", "label", "label!", "reference", "since", "until")
PRUNE_KEYS = ("label", "label!", "until")
"""What ``image prune --filter`` takes (docker's; dangling is its ``-a``)."""

MAX_VALUE = 4096  # characters of one filter's value: containerd's limit on a label


@dataclass(frozen=True)
class LabelTest:
    """One ``label``/``label!`` filter: KEY (any value) or KEY=VALUE, or its negation."""

    key: str
    value: str | None = None
    negate: bool = False

    def holds(self, labels: dict[str, str]) -> bool:
        present = self.key in labels and (self.value is None or labels[self.key] == self.value)
        return present != self.negate


@dataclass(frozen=True)
class ImageFilters:
    """Parsed image filters; empty tuples (and ``dangling`` None) filter nothing."""

    reference: tuple[re.Pattern[str], ...] = ()
    dangling: bool | None = None
    labels: tuple[LabelTest, ...] = ()
    before: tuple[str, ...] = ()  # images, as given (resolved by select)
    since: tuple[str, ...] = ()
    until: tuple[int, ...] = ()  # µs since the epoch

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in ((), None) for f in dataclasses.fields(self))


def parse_image_filters(
    items: Iterable[str], keys: Sequence[str] = KEYS, now: float | None = None
) -> ImageFilters:
    """``KEY=VALUE`` items into ImageFilters; refuses keys outside ``keys`` and bad values.
    ``now`` (seconds) is what a relative ``until`` counts back from."""
    hint = filter_hint(keys, "dangling=true" if "dangling" in keys else "until=24h")
    reference: list[re.Pattern[str]] = []
    dangling: set[bool] = set()
    labels: list[LabelTest] = []
    before: list[str] = []
    since: list[str] = []
    until: list[int] = []
    for item in items:
        key, value = split_item(item, keys, hint)
        if key == "reference":
            reference.append(glob_pattern(value))
        elif key == "dangling":
            dangling.add(filter_bool(key, value))
        elif key in ("label", "label!"):
            labels.append(label_test(key, value, hint))
        elif key == "before":
            before.append(value)
        elif key == "since":
            since.append(value)
        else:
            until.append(until_us(value, now))
    if len(dangling) > 1:
        raise InvalidArgument("invalid filter: dangling=true and dangling=false together", hint=hint)
    return ImageFilters(
        tuple(reference),
        dangling.pop() if dangling else None,
        tuple(labels),
        tuple(before),
        tuple(since),
        tuple(until),
    )


# -- one filter item: what image, volume, network and container filters share (listfilters.py
# builds on these; this module imports nothing of it) ------------------------------------------
def filter_hint(keys: Sequence[str], example: str) -> str:
    """The hint of a refused filter: the keys a command takes, and an example."""
    return f"filters are {', '.join(k + '=...' for k in keys)}; e.g. --filter {example}"


def split_item(item: str, keys: Sequence[str], hint: str) -> tuple[str, str]:
    """One ``KEY=VALUE`` item as (key, value): the key lower-cased and one of ``keys``, the value
    not empty and at most MAX_VALUE characters; else an InvalidArgument with ``hint``."""
    key, eq, value = item.partition("=")
    key = key.strip().lower()
    if not eq:
        raise InvalidArgument(f"bad format of filter {item[:80]!r} (expected name=value)", hint=hint)
    if key not in keys:
        raise InvalidArgument(f"invalid filter {key[:40]!r}", hint=hint)
    if not value:
        raise InvalidArgument(f"invalid filter '{key}=': a value is needed", hint=hint)
    if len(value) > MAX_VALUE:
        raise InvalidArgument(
            f"invalid filter '{key}=...': over {MAX_VALUE} characters", hint="give a shorter value"
        )
    return key, value


def label_test(key: str, value: str, hint: str) -> LabelTest:
    """A ``label``/``label!`` item's value (KEY or KEY=VALUE) as a LabelTest; no KEY is an
    InvalidArgument."""
    name, has_value, wanted = value.partition("=")
    if not name:
        raise InvalidArgument(f"invalid filter '{key}={value[:60]}': no label key", hint=hint)
    return LabelTest(name, wanted if has_value else None, key == "label!")


def until_us(value: str, now: float | None = None) -> int:
    """An ``until`` item's TIME in µs since the epoch (``now``, seconds: what a relative one
    counts back from); an unreadable one is an InvalidArgument naming the filter."""
    from .logtime import parse_until

    try:
        return parse_until(value, now)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid filter 'until={value[:60]}': {e}", hint=e.hint) from None


def iso_us(text: str) -> int | None:
    """An RFC 3339 time (a record's ``created``) in µs since the epoch; None when empty or
    unreadable."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def prune_dangling(values: Iterable[str]) -> bool:
    """``/images/prune``'s ``dangling`` values: whether every unused image goes (``false``,
    ``image prune -a``); a bad word or true and false together is an InvalidArgument."""
    words = {filter_bool("dangling", v) for v in values}
    if len(words) > 1:
        raise InvalidArgument(
            "invalid filter: dangling=true and dangling=false together", hint="give one of them"
        )
    return False in words


def filter_bool(key: str, value: str) -> bool:
    """A boolean filter's value: true|1 or false|0 (docker's words); else an InvalidArgument."""
    word = value.strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value[:60]}'", hint=f"{key} is true or false")


def glob_pattern(glob: str) -> re.Pattern[str]:
    """Go's ``path.Match`` pattern as a regular expression: ``*`` any run of non-``/``
    characters, ``?`` one, ``[a-z]``/``[^a-z]`` a class, ``\\`` escapes; a malformed one
    (an open ``[``, a trailing ``\\``) is an InvalidArgument."""
    out: list[str | None] = []  # None: a star
    i, n = 0, len(glob)
    bad = InvalidArgument(
        f"invalid reference filter {glob[:80]!r}: a malformed pattern",
        hint="use NAME[:TAG] with * ? [...] globs, e.g. reference='acc/*:v1'",
    )
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] is not None:  # consecutive stars are one
                out.append(None)
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i >= n:
                raise bad
            out.append(re.escape(glob[i]))
            i += 1
        elif c == "[":
            negate = i < n and glob[i] == "^"
            i += negate
            parts: list[str] = []
            while i >= n or glob[i] != "]" or not parts:
                lo, i = _class_char(glob, i, bad)
                if i < n and glob[i] == "-":
                    hi, i = _class_char(glob, i + 1, bad)
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                else:
                    parts.append(re.escape(lo))
            i += 1  # the closing ]
            out.append("[" + "^" * negate + "".join(parts) + "]")
        else:
            out.append(re.escape(c))
    try:
        return re.compile(_first_fit(out))
    except re.error:  # a reversed range such as [z-a]
        raise bad from None


def _first_fit(out: list[str | None]) -> str:
    """Go's path.Match without backtracking: each ``*CHUNK`` but the last takes the first
    fit of CHUNK (an atomic group, so the regex cannot retry it: linear, no ReDoS);
    only the last chunk may land anywhere, as it must end the name."""
    stars = [k for k, piece in enumerate(out) if piece is None]
    regex = []
    for k, piece in enumerate(out):
        if piece is not None:
            regex.append(piece)
        elif k == stars[-1]:
            regex.append("[^/]*")
        else:
            end = stars[stars.index(k) + 1]
            regex.append("(?>[^/]*?" + "".join(p for p in out[k + 1 : end] if p is not None) + ")")
            out[k + 1 : end] = [""] * (end - k - 1)
    return "".join(regex)


def _class_char(glob: str, i: int, bad: InvalidArgument) -> tuple[str, int]:
    """One character of a ``[...]`` class (``\\`` escapes); a bare ``-`` or ``]`` here, or the
    pattern's end, makes it malformed (as Go's ``path.Match``)."""
    if i >= len(glob) or glob[i] in "-]":
        raise bad
    if glob[i] == "\\":
        i += 1
        if i >= len(glob):
            raise bad
    return glob[i], i + 1


def name_matches(ref: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether one of ``patterns`` matches ``ref`` (as NAME:TAG or NAME@DIGEST, or its NAME), in
    its familiar form or as stored."""
    from .ref import familiar

    forms = {ref, familiar(ref)}
    forms |= {_name_of(f) for f in forms}
    return any(p.fullmatch(f) for p in patterns for f in forms)


def _name_of(ref: str) -> str:
    if "@" in ref:
        return ref.partition("@")[0]
    head, slash, last = ref.rpartition("/")
    return head + slash + last.partition(":")[0]


@dataclass(frozen=True)
class Bounds:
    """``before``/``since`` resolved: the creation times (µs) of the images they name."""

    before: tuple[int, ...] = ()
    since: tuple[int, ...] = ()


def resolve(filters: ImageFilters, get: Callable[[str], Image]) -> Bounds:
    """Look up the images ``before``/``since`` name (``get``: Client.images.get, which raises
    ImageNotFound); one without a creation time bounds nothing, as in dockerd."""
    before = [iso_us(get(text).created) for text in filters.before]
    since = [iso_us(get(text).created) for text in filters.since]
    return Bounds(tuple(t for t in before if t is not None), tuple(t for t in since if t is not None))


def matches(image: Image, filters: ImageFilters, bounds: Bounds = Bounds()) -> bool:
    """Whether ``image`` passes every filter (``bounds``: resolved before/since)."""
    if filters.reference and not any(name_matches(r, filters.reference) for r in image.refs):
        return False
    if filters.dangling is not None and filters.dangling == bool(image.refs):
        return False
    if not all(t.holds(image.defaults.labels) for t in filters.labels):
        return False
    if bounds.before or bounds.since or filters.until:
        created = iso_us(image.created)
        if created is None:
            return False
        if any(created >= b for b in bounds.before) or any(created <= s for s in bounds.since):
            return False
        if any(created >= u for u in filters.until):
            return False
    return True


def select(images: Sequence[Image], filters: ImageFilters, get: Callable[[str], Image]) -> list[Image]:
    """The images that pass ``filters``, with ``refs`` cut to the names that matched when a
    reference filter is given (as dockerd lists them). Raises ImageNotFound for a before/since
    image that is not there, before anything is listed."""
    if not filters:
        return list(images)
    bounds = resolve(filters, get)
    out = []
    for image in images:
        if matches(image, filters, bounds):
            if filters.reference:
                image = dataclasses.replace(
                    image, refs=[r for r in image.refs if name_matches(r, filters.reference)]
                )
            out.append(image)
    return out
