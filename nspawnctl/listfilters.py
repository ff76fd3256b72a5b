"""docker's ``--filter KEY=VALUE`` of ``volume ls``, ``network ls``, ``container prune``,
``system prune`` and ``volume prune``: which volumes, networks or containers they take.

Parsed once into :class:`ListFilters` (in imagefilters.py's style: a closed key set per
command, bounded values, the same messages), shared by the CLI and the Docker API
(``GET /volumes``, ``GET /networks``, ``POST /containers/prune``, ``POST /volumes/prune``).
Semantics as dockerd's:

- ``name=NAME`` / ``id=ID``: searched in the name / ID (its ``filters.Match``; a plain
  word is a substring), of docker's regular expressions only ``.``, ``[...]`` classes and
  ``^``/``$`` anchors (:func:`name_pattern`); several are ORed.
- ``driver=NAME``, ``scope=local|swarm|global``, ``type=builtin|custom``: exact, ORed.
- ``dangling=true|false`` (or 1|0): a volume no container binds, a network without
  containers (never a built-in one); or the others.
- ``label=KEY`` / ``label=KEY=VALUE``: it has that label (value); ``label!=...``: it has not;
  every label filter must hold (ANDed).
- ``until=TIME``: created before TIME (``10m``, ``2h30m`` ago, RFC 3339, a date, Unix time).
- ``all=true|false``: ``volume prune``'s: named volumes too, not only anonymous ones.

Different keys are ANDed. An unknown key or a bad value is an InvalidArgument (exit 2,
HTTP 400) before anything is listed or removed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidArgument
from .imagefilters import LabelTest, filter_bool, filter_hint, iso_us, label_test, split_item, until_us

if TYPE_CHECKING:
    from .net.networks import NetworkDecl, NetworkRecord
    from .spec import ContainerSpec
    from .store.volumes import VolumeInfo

VOLUME_KEYS = ("dangling", "driver", "label", "name")
"""``volume ls`` (dockerd's acceptedListFilters)."""
VOLUME_PRUNE_KEYS = ("all", "label", "label!")
NETWORK_KEYS = ("dangling", "driver", "id", "label", "name", "scope", "type")
NETWORK_PRUNE_KEYS = ("label", "label!", "until")
CONTAINER_PRUNE_KEYS = ("label", "label!", "until")
SYSTEM_PRUNE_KEYS = ("label", "label!", "until")
"""``system prune``: each kind's prune takes them (volumes no ``until``: docker's CLI refuses it)."""

SCOPES = ("local", "swarm", "global")
TYPES = ("builtin", "custom")


@dataclass(frozen=True)
class Subject:
    """What a filter looks at in one volume, network or container."""

    name: str
    id: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    driver: str = "local"
    dangling: bool = False  # bound by no container / a network without containers
    builtin: bool = False  # a network docker pre-defines (bridge, host, none)
    created_us: int | None = None  # µs since the epoch


@dataclass(frozen=True)
class ListFilters:
    """Parsed filters; empty tuples (and None) filter nothing."""

    names: tuple[re.Pattern[str], ...] = ()
    ids: tuple[re.Pattern[str], ...] = ()
    drivers: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    labels: tuple[LabelTest, ...] = ()
    dangling: bool | None = None
    until: tuple[int, ...] = ()  # µs since the epoch
    all: bool | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in ((), None) for f in dataclasses.fields(self))

    def matches(self, s: Subject) -> bool:
        """Whether ``s`` passes every filter (``all`` is the caller's: it is no test of one)."""
        if self.names and not any(p.search(s.name) for p in self.names):
            return False
        if self.ids and not any(p.search(s.id) for p in self.ids):
            return False
        if self.drivers and s.driver not in self.drivers:
            return False
        if self.scopes and "local" not in self.scopes:
            return False
        if self.types and ("builtin" if s.builtin else "custom") not in self.types:
            return False
        if not all(t.holds(s.labels) for t in self.labels):
            return False
        if self.dangling is not None and self.dangling != (s.dangling and not s.builtin):
            return False
        return not self.until or (s.created_us is not None and all(s.created_us < u for u in self.until))


MAX_NAME_PATTERN = 256
# name characters, `.` and `[...]` classes (docker's `name=^f[bc]-`); no quantifier, so linear time
_NAME_PATTERN = re.compile(r"\^?(?:[A-Za-z0-9_.-]|\[\^?[A-Za-z0-9_-]+\])+\$?")


def name_pattern(key: str, value: str) -> re.Pattern[str]:
    """A ``name=``/``id=`` value as a regex with no quantifiers (linear time: no ReDoS).

    Only a name or part of one, ``.`` any character as in docker's regex, optionally
    anchored with ``^``/``$``: arbitrary user regexes would run in backtracking ``re``."""
    if len(value) > MAX_NAME_PATTERN or not _NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"invalid filter '{key}={value[:60]}': {key}= takes a name or part of one, optionally anchored"
            " with ^ and $ (nspawnctl runs no other regular expressions)",
            hint=f"e.g. --filter {key}=^web or --filter {key}=db$ (at most {MAX_NAME_PATTERN} characters)",
        )
    try:
        return re.compile(value)
    except re.error as e:  # a reversed range: [z-a]
        raise InvalidArgument(
            f"invalid filter '{key}={value[:60]}': {e}", hint=f"e.g. --filter {key}=^web-[0-9]"
        ) from None


def parse_list_filters(items: Iterable[str], keys: Sequence[str], now: float | None = None) -> ListFilters:
    """``KEY=VALUE`` items into ListFilters; refuses keys outside ``keys`` and bad values.
    ``now`` (seconds) is what a relative ``until`` counts back from."""
    example = next(e for e in ("dangling=true", "label=KEY", "until=24h") if e.partition("=")[0] in keys)
    hint = filter_hint(keys, example)
    by_key: dict[str, list[str]] = {}
    labels: list[LabelTest] = []
    patterns: dict[str, list[re.Pattern[str]]] = {"name": [], "id": []}
    until: list[int] = []
    for item in items:
        key, value = split_item(item, keys, hint)
        shown = f"'{key}={value[:60]}'"
        if key in ("name", "id"):
            patterns[key].append(name_pattern(key, value))
        elif key in ("label", "label!"):
            labels.append(label_test(key, value, hint))
        elif key == "until":
            until.append(until_us(value, now))
        else:
            if key in ("dangling", "all"):
                value = str(filter_bool(key, value)).lower()
            elif key == "scope" and value not in SCOPES:
                raise InvalidArgument(f"invalid filter {shown}", hint=f"scope is one of: {', '.join(SCOPES)}")
            elif key == "type" and value not in TYPES:
                raise InvalidArgument(f"invalid filter {shown}", hint=f"type is one of: {', '.join(TYPES)}")
            by_key.setdefault(key, []).append(value)
    flags: dict[str, bool | None] = {}
    for key in ("dangling", "all"):
        values = set(by_key.pop(key, []))
        if len(values) > 1:
            raise InvalidArgument(f"invalid filter: {key}=true and {key}=false together", hint=hint)
        flags[key] = values.pop() == "true" if values else None
    return ListFilters(
        names=tuple(patterns["name"]),
        ids=tuple(patterns["id"]),
        drivers=tuple(by_key.get("driver", ())),
        scopes=tuple(by_key.get("scope", ())),
        types=tuple(by_key.get("type", ())),
        labels=tuple(labels),
        dangling=flags["dangling"],
        until=tuple(until),
        all=flags["all"],
    )


def refuse_until_with_volumes(filters: ListFilters, volumes: bool) -> None:
    """``system prune --volumes``'s filters: ``until`` is refused (volume prune has no such
    filter), as docker's CLI does, before anything is removed (or asked)."""
    if volumes and filters.until:
        raise InvalidArgument(
            'the "until" filter is not supported with --volumes',
            hint="prune volumes apart: nspawnctl volume prune --filter label=...",
        )


def volume_subject(info: VolumeInfo) -> Subject:
    return Subject(info.name, labels=info.labels, dangling=not info.users, created_us=iso_us(info.created))


def network_subject(n: NetworkRecord) -> Subject:
    created = iso_us(n.decl.created) if n.decl is not None else None
    return Subject(
        n.name,
        n.id,
        n.labels,
        n.driver,
        dangling=not n.members,
        builtin=n.kind == "builtin",
        created_us=created,
    )


def decl_subject(decl: NetworkDecl) -> Subject:
    """A declared network, as ``network prune`` sees it (members are its own check)."""
    return Subject(decl.name, decl.id, dict(decl.labels), "bridge", created_us=iso_us(decl.created))


def container_subject(spec: ContainerSpec) -> Subject:
    return Subject(spec.name, spec.id, spec.labels, created_us=iso_us(spec.created))
