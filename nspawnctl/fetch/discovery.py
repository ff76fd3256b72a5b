"""appc discovery: from a name like ``example.com/app`` to the URLs of its ACI, signature and keys.

The rules follow appc's ``spec/discovery.md`` and its reference implementation: GET
``https://{name}?ac-discovery=1``, read ``<meta name="ac-discovery" content="PREFIX TEMPLATE">``
tags anywhere in the page, keep those whose PREFIX is a plain string prefix of the name, fill in
``{name}``, ``{ext}`` and every label, skip templates left with an unfilled ``{...}``, and walk up
the name (``example.com/a/b``, ``example.com/a``, ``example.com``) until a page yields something.
With ``--insecure`` a failed HTTPS request is retried over plain HTTP, as rkt did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, TypeVar

from ..errors import DownloadNotFound, FetchError

if TYPE_CHECKING:
    from .http import Fetcher

T = TypeVar("T")

__all__ = ["Discovery", "Endpoint", "discover", "discover_pubkeys", "discovery_urls"]

_MAX_PAGE = 1 << 20
_UNRENDERED = re.compile(r"\{.*?\}")
DEFAULT_VERSION = "latest"


@dataclass(frozen=True)
class Endpoint:
    aci: str
    asc: str


@dataclass(frozen=True)
class Discovery:
    prefix: str
    """The name, or the parent of it, whose page had the tags."""
    endpoints: list[Endpoint]
    """Rendered templates in page order; templates with a variable we could not fill are skipped."""
    pubkeys: list[str]
    """``ac-discovery-pubkeys`` URLs on the same page whose prefix matches the name."""


@dataclass(frozen=True)
class _Meta:
    name: str
    prefix: str
    value: str


class _MetaParser(HTMLParser):
    """Collects ``<meta name="ac-..." content="PREFIX VALUE">`` from anywhere in the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[_Meta] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        values = dict(attrs)
        name = values.get("name") or ""
        content = (values.get("content") or "").strip()
        if not name.startswith("ac-"):
            return
        prefix, _, value = content.partition(" ")
        value = value.strip()
        if prefix and value:
            self.found.append(_Meta(name, prefix, value))


def parse_meta(page: bytes) -> list[tuple[str, str, str]]:
    """(tag name, prefix, value) of every ``ac-*`` meta tag, in page order."""
    parser = _MetaParser()
    parser.feed(page.decode("utf-8", errors="replace"))
    parser.close()
    return [(m.name, m.prefix, m.value) for m in parser.found]


def render(template: str, name: str, labels: Mapping[str, str], ext: str) -> str | None:
    """Fill in ``{name}``, every label and ``{ext}``; None when a ``{...}`` is left over."""
    text = template.replace("{name}", name)
    for label, value in labels.items():
        if label not in ("name", "ext"):
            text = text.replace("{" + label + "}", value)
    text = text.replace("{ext}", ext)
    return None if _UNRENDERED.search(text) else text


def walk(name: str) -> Iterator[str]:
    """The name, then each parent path, down to the host: where discovery pages are looked for."""
    parts = name.strip("/").split("/")
    for end in range(len(parts), 0, -1):
        yield "/".join(parts[:end])


def discovery_urls(path: str, insecure: bool) -> list[str]:
    """The URLs tried for one path: HTTPS, and plain HTTP after it when insecure."""
    urls = [f"https://{path}?ac-discovery=1"]
    if insecure:
        urls.append(f"http://{path}?ac-discovery=1")
    return urls


def discover(fetcher: Fetcher, name: str, labels: Mapping[str, str]) -> Discovery:
    """Where to download ``name`` with ``labels`` (version, os, arch); the first page with endpoints wins.

    Raises DownloadNotFound (listing the URLs tried) when no page yields an endpoint, or the
    FetchError of the first failure when no page could be fetched at all (e.g. a TLS error).
    """
    values = dict(labels)
    if not values.get("version"):
        values["version"] = DEFAULT_VERSION

    def endpoints_of(path: str, meta: list[tuple[str, str, str]]) -> Discovery | None:
        endpoints: list[Endpoint] = []
        for tag, _, value in meta:
            if tag == "ac-discovery":
                aci = render(value, name, values, "aci")
                asc = render(value, name, values, "aci.asc")
                if aci is not None and asc is not None:
                    endpoints.append(Endpoint(aci, asc))
        pubkeys = [value for tag, _, value in meta if tag == "ac-discovery-pubkeys"]
        return Discovery(path, endpoints, pubkeys) if endpoints else None

    return _first_page(fetcher, name, "no ACI found by discovery for", endpoints_of)


def discover_pubkeys(fetcher: Fetcher, name: str) -> list[str]:
    """The ``ac-discovery-pubkeys`` URLs for ``name``, from the first page (walking up) that has any.

    Raises like :func:`discover` when no page names a key.
    """

    def keys_of(path: str, meta: list[tuple[str, str, str]]) -> list[str] | None:
        return [value for tag, _, value in meta if tag == "ac-discovery-pubkeys"] or None

    return _first_page(fetcher, name, "no public keys found by discovery for", keys_of)


def _first_page(
    fetcher: Fetcher, name: str, what: str, pick: Callable[[str, list[tuple[str, str, str]]], T | None]
) -> T:
    """Walk up ``name``; ``pick`` sees each page's tags whose prefix covers the name."""
    tried: list[str] = []
    failures: list[FetchError] = []
    fetched_any = False
    for path in walk(name):
        page = _fetch_page(fetcher, path, tried, failures)
        if page is None:
            continue
        fetched_any = True
        found = pick(path, [m for m in parse_meta(page) if name.startswith(m[1])])
        if found is not None:
            return found
    raise _nothing_found(what, name, tried, failures, fetched_any)


def _fetch_page(fetcher: Fetcher, path: str, tried: list[str], failures: list[FetchError]) -> bytes | None:
    """The discovery page for one path, or None (failure recorded) so that the walk goes on."""
    for url in discovery_urls(path, fetcher.options.insecure):
        tried.append(url)
        try:
            page = fetcher.get_small(url, max_bytes=_MAX_PAGE)
        except FetchError as e:
            failures.append(e)
            continue
        if page is not None:
            return page
    return None


def _nothing_found(
    what: str, name: str, tried: list[str], failures: list[FetchError], fetched_any: bool
) -> FetchError:
    problems = [f for f in failures if not isinstance(f, DownloadNotFound)]
    if problems and not fetched_any:
        # Not one page came back: "nothing found" would hide the reason (certificate, DNS, refused).
        first = problems[0]
        return FetchError(f"discovery for {name} failed: {first.message}", hint=first.hint)
    return DownloadNotFound(
        f"{what} {name} (tried: {', '.join(tried)})",
        hint="check the name; the server's page must carry an ac-discovery meta tag for it, "
        "or pull the https:// URL of the .aci directly",
    )
