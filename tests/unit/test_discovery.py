"""Tests for nspawnctl.fetch.discovery: appc discovery against local HTTPS and HTTP servers.

Discovery always asks ``https://{name}?ac-discovery=1``; names like ``127.0.0.1:PORT/project/app``
point it at a local server whose certificate is signed by a CA the tests make (see test_fetch).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from nspawnctl.errors import DownloadNotFound, FetchError
from nspawnctl.fetch.discovery import (
    Discovery,
    Endpoint,
    discover,
    discover_pubkeys,
    parse_meta,
    render,
    walk,
)
from nspawnctl.fetch.http import Fetcher, FetchOptions

# Shared with test_fetch (pytest puts this directory on sys.path): the servers and the throwaway CA.
from test_fetch import Server, body, redirect  # isort: skip

Handler = Callable[[BaseHTTPRequestHandler], None]
LABELS = {"version": "1.0", "os": "linux", "arch": "amd64"}


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


@pytest.fixture
def https(servers: list[Server], pki: tuple[Path, tuple[Path, Path]]) -> tuple[Server, Fetcher, str]:
    """An HTTPS server (routes to be filled in), a Fetcher trusting its CA, and its host:port."""
    servers.append(Server({}, tls=pki[1]))
    server = servers[-1]
    return server, Fetcher(FetchOptions(ca_cert=str(pki[0]), timeout=5)), f"127.0.0.1:{server.port}"


@pytest.fixture
def http(servers: list[Server]) -> tuple[Server, str]:
    """A plain HTTP server (routes to be filled in) and its host:port."""
    servers.append(Server({}))
    return servers[-1], f"127.0.0.1:{servers[-1].port}"


Setup = tuple[Server, Fetcher, str]


def page(*tags: tuple[str, str]) -> Handler:
    """A discovery page; tags are (meta name, content), some in <head>, the rest in <body>."""
    metas = [f'<meta name="{html.escape(n)}" content="{html.escape(c)}">' for n, c in tags]
    half = len(metas) // 2
    text = (
        "<!DOCTYPE html><html><head><title>app</title>"
        + "".join(metas[:half])
        + '<meta charset="utf-8"></head><body><p>images</p>'
        + "".join(metas[half:])
        + "</body></html>"
    )
    return body(text.encode(), Content_Type="text/html; charset=utf-8")


# --- pure rules -------------------------------------------------------------------------------


def test_parse_meta_takes_ac_tags_from_anywhere() -> None:
    text = b"""<html><head>
    <META NAME="ac-discovery" CONTENT="  example.com  https://example.com/{name}.{ext} ">
    <meta name="description" content="example.com not discovery">
    <meta name="ac-discovery" content="example.com">
    </head><body>
    <meta content="example.com/app https://keys.example.com/app.gpg" name="ac-discovery-pubkeys"/>
    <meta name="ac-discovery" content="example.com/x https://a/{name}?a=1&amp;b=2"></body></html>"""
    assert parse_meta(text) == [
        ("ac-discovery", "example.com", "https://example.com/{name}.{ext}"),
        ("ac-discovery-pubkeys", "example.com/app", "https://keys.example.com/app.gpg"),
        ("ac-discovery", "example.com/x", "https://a/{name}?a=1&b=2"),
    ]


def test_render_fills_every_label_and_skips_leftovers() -> None:
    template = "https://dl.example.com/{os}/{arch}/{name}-{version}.{ext}"
    assert render(template, "example.com/app", LABELS, "aci.asc") == (
        "https://dl.example.com/linux/amd64/example.com/app-1.0.aci.asc"
    )
    assert render("https://dl/{name}-{channel}.{ext}", "example.com/app", LABELS, "aci") is None
    # A label called "name" cannot replace the name.
    assert render("https://dl/{name}.{ext}", "a.com/b", {"name": "evil"}, "aci") == "https://dl/a.com/b.aci"


def test_walk_goes_up_to_the_host() -> None:
    assert list(walk("example.com/project/app")) == [
        "example.com/project/app",
        "example.com/project",
        "example.com",
    ]
    assert list(walk("127.0.0.1:8443")) == ["127.0.0.1:8443"]


# --- against servers --------------------------------------------------------------------------


def test_walks_up_to_the_first_page_with_endpoints(https: Setup) -> None:
    server, fetcher, host = https
    name = f"{host}/project/app"
    dl = f"https://{host}/dl"
    server.routes.update(
        {
            # The name's own page only names a key: no endpoints, so the walk goes on.
            "/project/app": page(("ac-discovery-pubkeys", f"{name} https://{host}/app-only.gpg")),
            "/project": page(
                ("ac-discovery", f"{host}/other {dl}/other/{{name}}.{{ext}}"),  # prefix does not match
                ("ac-discovery", f"{host}/project {dl}/{{os}}/{{arch}}/{{name}}-{{version}}.{{ext}}"),
                ("ac-discovery", f"{host}/project {dl}/{{name}}-{{channel}}.{{ext}}"),  # {channel}: skipped
                ("ac-discovery-pubkeys", f"{host}/project https://{host}/project.gpg"),
                ("ac-discovery-pubkeys", f"{host}/other https://{host}/other.gpg"),
                ("ac-discovery", f"{host} {dl}/flat/{{name}}.{{ext}}"),
            ),
            "/": page(("ac-discovery", f"{host} {dl}/never/{{name}}.{{ext}}")),
        }
    )
    found = discover(fetcher, name, LABELS)
    assert found == Discovery(
        prefix=f"{host}/project",
        endpoints=[
            Endpoint(f"{dl}/linux/amd64/{name}-1.0.aci", f"{dl}/linux/amd64/{name}-1.0.aci.asc"),
            Endpoint(f"{dl}/flat/{name}.aci", f"{dl}/flat/{name}.aci.asc"),
        ],
        pubkeys=[f"https://{host}/project.gpg"],
    )
    assert server.paths() == ["/project/app?ac-discovery=1", "/project?ac-discovery=1"]


def test_prefix_is_a_string_prefix_version_defaults_to_latest_redirects_followed(https: Setup) -> None:
    server, fetcher, host = https
    server.routes.update(
        {
            "/app": redirect("/pages/discovery.html", 301),
            "/pages/discovery.html": page(
                ("ac-discovery", f"{host}/ap https://cdn/{{name}}-{{version}}.{{ext}}")
            ),
        }
    )
    found = discover(fetcher, f"{host}/app", {"os": "linux", "arch": "amd64"})
    assert found.prefix == f"{host}/app"
    assert found.endpoints == [
        Endpoint(f"https://cdn/{host}/app-latest.aci", f"https://cdn/{host}/app-latest.aci.asc")
    ]
    assert found.pubkeys == []


def test_nothing_found_lists_the_urls_tried(https: Setup) -> None:
    server, fetcher, host = https
    # The host's page exists but has only a template that cannot be filled in.
    server.routes["/"] = page(("ac-discovery", f"{host} https://cdn/{{name}}-{{flavour}}.{{ext}}"))
    with pytest.raises(DownloadNotFound) as info:
        discover(fetcher, f"{host}/project/app", LABELS)
    tried = [
        f"https://{host}/project/app?ac-discovery=1",
        f"https://{host}/project?ac-discovery=1",
        f"https://{host}?ac-discovery=1",
    ]
    assert (
        info.value.message == f"no ACI found by discovery for {host}/project/app (tried: {', '.join(tried)})"
    )
    assert info.value.hint and "ac-discovery" in info.value.hint
    assert server.paths() == ["/project/app?ac-discovery=1", "/project?ac-discovery=1", "/?ac-discovery=1"]


def test_a_tls_failure_is_reported_not_hidden_as_not_found(https: Setup) -> None:
    server, _, host = https
    server.routes["/app"] = page(("ac-discovery", f"{host} https://cdn/{{name}}.{{ext}}"))
    with pytest.raises(FetchError) as info:
        discover(Fetcher(FetchOptions(timeout=5)), f"{host}/app", LABELS)  # the test CA is not trusted
    assert not isinstance(info.value, DownloadNotFound)
    assert info.value.message.startswith(f"discovery for {host}/app failed: certificate verification failed")
    assert info.value.hint and "--ca-cert" in info.value.hint


def test_insecure_falls_back_to_plain_http(http: tuple[Server, str]) -> None:
    server, host = http
    server.routes["/app"] = page(("ac-discovery", f"{host} http://{host}/dl/{{name}}.{{ext}}"))
    found = discover(Fetcher(FetchOptions(insecure=True, timeout=5)), f"{host}/app", LABELS)
    assert found.endpoints == [
        Endpoint(f"http://{host}/dl/{host}/app.aci", f"http://{host}/dl/{host}/app.aci.asc")
    ]
    assert server.paths() == ["/app?ac-discovery=1"]  # after the HTTPS attempt failed its handshake
    # Without --insecure there is no fallback: the HTTPS failure is the answer.
    with pytest.raises(FetchError, match=f"discovery for {host}/app failed: TLS connection to {host} failed"):
        discover(Fetcher(FetchOptions(timeout=5)), f"{host}/app", LABELS)
    assert server.paths() == ["/app?ac-discovery=1"]


def test_discover_pubkeys_walks_up_to_the_first_page_naming_keys(https: Setup) -> None:
    server, fetcher, host = https
    server.routes.update(
        {
            "/project/app": page(("ac-discovery", f"{host} https://cdn/{{name}}.{{ext}}")),
            "/": page(
                ("ac-discovery-pubkeys", f"{host}/elsewhere https://{host}/elsewhere.gpg"),
                ("ac-discovery-pubkeys", f"{host}/project https://{host}/project.gpg"),
                ("ac-discovery-pubkeys", f"{host} https://{host}/all.gpg"),
            ),
        }
    )
    assert discover_pubkeys(fetcher, f"{host}/project/app") == [
        f"https://{host}/project.gpg",
        f"https://{host}/all.gpg",
    ]
    server.routes.clear()
    server.routes["/project"] = page(("ac-discovery-pubkeys", f"{host}/other https://{host}/other.gpg"))
    with pytest.raises(DownloadNotFound) as info:
        discover_pubkeys(fetcher, f"{host}/project/app")
    assert info.value.message.startswith(f"no public keys found by discovery for {host}/project/app (tried: ")
