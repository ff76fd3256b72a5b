"""Image filters (nspawnctl/imagefilters.py): parsing with its refusals, matching as dockerd's,
and the two front-ends over them (the CLI's ``images``/``image prune``, ``GET /images/json``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.errors import ImageNotFound, InvalidArgument
from nspawnctl.imagefilters import (
    KEYS,
    PRUNE_KEYS,
    Bounds,
    ImageFilters,
    glob_pattern,
    matches,
    parse_image_filters,
    select,
)
from nspawnctl.spec import RunDefaults
from nspawnctl.store.images import Image

NOW = 1_767_348_000.0  # 2026-01-02T10:00:00Z


def image(n: int, refs: list[str], created: str = "2026-01-02T10:00:00+00:00", **labels: str) -> Image:
    return Image(f"sha256:{n:064x}", created, 0, "", refs=refs, defaults=RunDefaults(labels=labels))


ALPINE = image(1, ["docker.io/library/alpine:3.10", "me/app:v1"], k="v")
DANGLING = image(2, [], "2026-01-02T09:00:00+00:00")
OLD = image(3, ["acc/old:v1"], "2025-06-01T00:00:00+00:00", tier="web")
NEW = image(4, ["acc/new:v1", "acc/new:v2"], "2026-01-02T11:00:00+00:00", tier="db")
ALL = [ALPINE, DANGLING, OLD, NEW]


# what only() gives for each image with all its names
A, D, OL, N = "1:docker.io/library/alpine:3.10,me/app:v1", "2:", "3:acc/old:v1", "4:acc/new:v1,acc/new:v2"


def only(*items: str) -> list[str]:
    """The IDs' last digit of what ``select`` keeps, with the names that stay listed."""
    by_ref = {ALPINE.id: ALPINE, DANGLING.id: DANGLING, OLD.id: OLD, NEW.id: NEW}
    picked = select(ALL, parse_image_filters(items, now=NOW), lambda text: _get(by_ref, text))
    return [f"{i.id[-1]}:{','.join(i.refs)}" for i in picked]


def _get(by_id: dict[str, Image], text: str) -> Image:
    for img in by_id.values():
        if text == img.id or text in img.refs:
            return img
    raise ImageNotFound(f"no such image: {text}")


def test_no_filter_takes_everything_and_is_falsy() -> None:
    assert not parse_image_filters([]) and not ImageFilters()
    assert only() == [A, D, OL, N]


def test_the_old_api_unit_cases_still_hold() -> None:
    """What tests/unit/test_imagechanges.py asserted of the API's former image_matches."""

    def ok(img: Image, **by_key: list[str]) -> bool:
        return matches(img, parse_image_filters(f"{k}={v}" for k, vs in by_key.items() for v in vs))

    assert ok(ALPINE, reference=["alpine"])
    assert ok(ALPINE, reference=["me/*:v1"])
    assert not ok(ALPINE, reference=["alpine:latest"])
    assert ok(DANGLING, dangling=["true"]) and not ok(ALPINE, dangling=["1"])
    assert ok(ALPINE, label=["k", "k=v"]) and not ok(ALPINE, label=["k=w"])


@pytest.mark.parametrize(
    ("items", "listed"),
    [
        # NAME (every tag), NAME:TAG, familiar or as stored; only the matching names stay
        (["reference=alpine"], ["1:docker.io/library/alpine:3.10"]),
        (["reference=docker.io/library/alpine:3.10"], ["1:docker.io/library/alpine:3.10"]),
        (["reference=acc/new:v2"], ["4:acc/new:v2"]),
        (["reference=acc/new"], [N]),
        # globs as Go's path.Match: * stops at /; several references are ORed
        (["reference=acc/*"], [OL, N]),
        (["reference=*"], ["1:docker.io/library/alpine:3.10"]),
        (["reference=*/*:v1"], ["1:me/app:v1", OL, "4:acc/new:v1"]),
        (["reference=acc/[n]ew:v?", "reference=alpine"], ["1:docker.io/library/alpine:3.10", N]),
        (["reference=acc/[^n]*"], [OL]),
        (["reference=nothing*"], []),
        # dangling
        (["dangling=true"], [D]),
        (["dangling=FALSE"], [A, OL, N]),
        (["dangling=1", "dangling=true"], [D]),  # the same value twice is one
        # labels: ANDed; label! negates (an image without the key passes label!=KEY=VALUE)
        (["label=tier"], [OL, N]),
        (["label=tier=web"], [OL]),
        (["label=tier", "label=tier=db"], [N]),
        (["label=tier=web", "label=tier=db"], []),
        (["label!=tier"], [A, D]),
        (["label!=tier=web", "label=tier"], [N]),
        (["label=k="], []),  # an empty value is a value
        # before/since: strictly, by creation time, of the named image (name or ID)
        (["before=acc/new:v1"], [A, D, OL]),
        (["since=acc/old:v1"], [A, D, N]),
        (["since=acc/old:v1", "before=" + ALPINE.id], [D]),
        # until: created before that time; relative to now
        (["until=2026-01-02T10:00:00Z"], [D, OL]),
        (["until=2026-01-02T10:00:01Z"], [A, D, OL]),
        (["until=2h"], [OL]),  # 08:00
        (["until=1767348000.5"], [A, D, OL]),
        (["until=2025-12-31"], [OL]),
        # keys together are ANDed
        (["dangling=false", "until=2026-01-02T10:30:00Z", "reference=*/*"], ["1:me/app:v1", OL]),
        ([" Label =tier=web"], [OL]),  # key case and spaces as ps --filter
    ],
)
def test_select(items: list[str], listed: list[str]) -> None:
    assert only(*items) == listed


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("color=red", "invalid filter 'color'"),
        ("label", "bad format of filter 'label' (expected name=value)"),
        ("label=", "invalid filter 'label=': a value is needed"),
        ("label==v", "invalid filter 'label==v': no label key"),
        ("dangling=maybe", "invalid filter 'dangling=maybe'"),
        ("until=yesterday", "invalid filter 'until=yesterday': invalid time 'yesterday'"),
        ("until=200000d", "invalid filter 'until=200000d'"),
        ("reference=acc/[", "invalid reference filter 'acc/[': a malformed pattern"),
        ("reference=acc/[]", "malformed"),
        ("reference=acc/[a-]", "malformed"),
        ("reference=acc/[z-a]", "malformed"),
        ("reference=acc\\", "malformed"),
        ("before=" + "x" * 5000, "over 4096 characters"),
    ],
)
def test_bad_filters_are_refused_with_what_to_do(item: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_image_filters([item])
    assert message in str(e.value) and e.value.exit_code == 2
    assert e.value.hint


def test_refusal_hints_list_the_keys() -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_image_filters(["colour=red"])
    assert all(f"{k}=..." in str(e.value.hint) for k in KEYS)
    with pytest.raises(InvalidArgument, match="invalid filter 'reference'") as e:
        parse_image_filters(["reference=x"], PRUNE_KEYS)  # not a prune filter
    assert "until=24h" in str(e.value.hint) and "reference" not in str(e.value.hint)


def test_dangling_true_and_false_together_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="dangling=true and dangling=false"):
        parse_image_filters(["dangling=true", "dangling=0"])


def test_before_and_since_need_the_image() -> None:
    with pytest.raises(ImageNotFound, match="no such image: acc/gone"):
        only("before=acc/gone")
    with pytest.raises(ImageNotFound):
        only("dangling=true", "since=acc/gone")


def test_an_image_without_a_creation_time_passes_no_time_filter() -> None:
    timeless = image(9, ["acc/x:v1"], "")
    f = parse_image_filters(["until=1h"], now=NOW)
    assert not matches(timeless, f) and not matches(timeless, ImageFilters(), Bounds(before=(1,)))
    assert matches(timeless, parse_image_filters(["reference=acc/x"]))


@pytest.mark.parametrize(
    ("glob", "name", "hit"),
    [
        ("a*", "abc", True),
        ("a*", "a/b", False),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("a[b-d]c", "acc", True),
        ("a[^b-d]c", "acc", False),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("a.b", "axb", False),  # regular-expression characters are literal
        ("a[\\]]", "a]", True),
    ],
)
def test_glob_is_gos_path_match(glob: str, name: str, hit: bool) -> None:
    assert bool(glob_pattern(glob).fullmatch(name)) is hit


# -- the CLI --------------------------------------------------------------------------------------
def test_cli_refuses_a_bad_filter_before_touching_the_pool(tmp_path: Path) -> None:
    """Exit 2 and the message, though the pool (not btrfs) would fail every listing."""
    from test_cli import cli

    env = {"NSPAWNCTL_POOL": str(tmp_path / "pool"), "NSPAWNCTL_STORE": str(tmp_path / "store")}
    (tmp_path / "pool").mkdir()
    (tmp_path / "store").mkdir()
    for args in (["images", "-f", "colour=red"], ["image", "ls", "--filter", "dangling=maybe"],
                 ["image", "prune", "-f", "--filter", "dangling=true"]):  # fmt: skip
        proc = cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "nspawnctl: error: invalid filter" in proc.stderr
    proc = cli("images", "acc/[", env=env)
    assert proc.returncode == 2 and "invalid reference filter 'acc/['" in proc.stderr
    proc = cli("images", "--json", "--filter", "until=soon", env=env)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["code"] == "invalid-argument"
    assert not any((tmp_path / "store").iterdir())


def test_cli_images_help_names_the_filters() -> None:
    from test_cli import cli

    out = cli("images", "--help").stdout
    for word in ("REPOSITORY[:TAG]", "--filter", "dangling=true|false", "before=IMAGE", "--digests", "-a"):
        assert word in out, word
    assert "intermediate" in out
    assert "until=TIME" in cli("image", "prune", "--help").stdout


# -- GET /images/json -----------------------------------------------------------------------------
class FakeImages:
    def list(self) -> list[Image]:
        return list(ALL)

    def get(self, text: str) -> Image:
        return _get({i.id: i for i in ALL}, text)


class FakeClient:
    images = FakeImages()


def _api_get(target: str) -> tuple[int, Any]:
    from apiserve import serve_one

    from nspawnctl.api.handlers import images
    from nspawnctl.api.routing import Router

    router = Router()
    images.register(router)

    async def main() -> bytes:
        task, creader, cwriter = await serve_one(router, FakeClient())
        cwriter.write(f"GET {target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
        await cwriter.drain()
        got = await asyncio.wait_for(creader.read(), 10)
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return got

    head, _, body = asyncio.run(main()).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _q(filters: dict[str, Any]) -> str:
    from urllib.parse import quote

    return "/v1.44/images/json?filters=" + quote(json.dumps(filters))


def test_api_lists_the_matching_images_with_their_matching_tags() -> None:
    status, body = _api_get(_q({"reference": ["acc/*:v2", "alpine"]}))
    assert status == 200
    assert [(i["Id"][-1], i["RepoTags"]) for i in body] == [("1", ["alpine:3.10"]), ("4", ["acc/new:v2"])]
    status, body = _api_get(_q({"label": {"tier": True}, "since": ["acc/old:v1"]}))  # docker's old map form
    assert [i["Id"][-1] for i in body] == ["4"]
    status, body = _api_get(_q({"dangling": ["true"]}))
    assert [i["RepoTags"] for i in body] == [[]]


def test_api_refusals_are_dockers_400_and_404() -> None:
    status, body = _api_get(_q({"dangling": ["maybe"]}))
    assert status == 400 and "invalid filter 'dangling=maybe'" in body["message"]
    status, body = _api_get(_q({"colour": ["red"]}))
    assert status == 400 and "invalid filter 'colour'" in body["message"]
    status, body = _api_get(_q({"before": ["acc/gone"]}))
    assert status == 404 and body["message"].startswith("No such image")


def test_digest_column_is_the_pull_manifest_on_its_repository_rows() -> None:
    from nspawnctl.cli.images import _digest_of

    origin = {"registry": "r:5000", "repository": "acc/bb", "manifest": "sha256:" + "d" * 64}
    pulled = Image("sha256:" + "c" * 64, "", 0, "", refs=["r:5000/acc/bb:v1", "mine:1"], origin=origin)
    assert _digest_of(pulled, "r:5000/acc/bb:v1") == "sha256:" + "d" * 64
    assert _digest_of(pulled, "mine:1") == "<none>"  # a local tag: not in the registry
    assert _digest_of(pulled, "r:5000/acc/bb@sha256:" + "e" * 64) == "sha256:" + "e" * 64
    assert _digest_of(ALPINE, "me/app:v1") == "<none>"  # imported


def test_reference_glob_does_not_backtrack() -> None:
    """Many stars with a chunk that never ends the name took 44 s in one backtracking regex;
    Go's first fit per chunk (atomic groups) is linear. The bound is generous: it guards
    against exponential blowup only."""
    import time

    glob = "*[0-9a-f]" * 9 + "*Z"  # the backtracking regex: over 5 s (k=8: 2 s, k=10: 23 s)
    ref = "name@sha256:" + "0123456789abcdef" * 4
    start = time.perf_counter()
    assert glob_pattern(glob).fullmatch(ref) is None
    assert glob_pattern("*[0-9a-f]" * 12 + "*").fullmatch(ref)
    assert time.perf_counter() - start < 1.0


def test_api_image_prune_dangling_values() -> None:
    from nspawnctl.imagefilters import prune_dangling

    assert prune_dangling([]) is False and prune_dangling(["true", "1"]) is False
    assert prune_dangling(["FALSE"]) is True and prune_dangling(["0"]) is True
    with pytest.raises(InvalidArgument, match="dangling=true and dangling=false together"):
        prune_dangling(["true", "false"])
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        prune_dangling(["maybe"])
