"""Filters of ``ps`` (filters.py: label values ANDed, as docker's) and of the other lists and
prunes (listfilters.py: volume ls, network ls, container/system prune), with their refusals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.filters import Candidate, parse_filters
from nspawnctl.listfilters import (
    CONTAINER_PRUNE_KEYS,
    NETWORK_KEYS,
    SYSTEM_PRUNE_KEYS,
    VOLUME_KEYS,
    VOLUME_PRUNE_KEYS,
    Subject,
    container_subject,
    parse_list_filters,
    volume_subject,
)


def _ctr(**labels: str) -> Candidate:
    return Candidate("web", "1" * 64, labels, "running", "img", "sha256:" + "a" * 64)


def test_ps_label_filters_are_anded_as_dockers() -> None:
    """docker: ``--filter label=a --filter label=b`` lists what has both (MatchKVList)."""
    both = parse_filters(["label=a", "label=b"])
    assert both.matches(_ctr(a="1", b="2"))
    assert not both.matches(_ctr(a="1"))
    assert not both.matches(_ctr(b="2"))
    assert not parse_filters(["label=a=1", "label=a=2"]).matches(_ctr(a="1"))
    # other keys stay ORed within the key
    assert parse_filters(["status=exited", "status=running"]).matches(_ctr())


NOW = 1_767_348_000.0  # 2026-01-02T10:00:00Z
HOUR = 3_600_000_000


def _subject(name: str, **kw: Any) -> Subject:
    return Subject(name, kw.pop("id", name.encode().hex()), **kw)


def test_volume_ls_filters() -> None:
    from nspawnctl.store.volumes import VolumeInfo

    used = VolumeInfo("data", Path("/v/data"), "2026-01-02T09:00:00Z", {"tier": "db", "k": ""}, ["web"])
    loose = VolumeInfo("ab" * 32, Path("/v/x"), "2026-01-02T09:00:00Z", {"tier": "web"})

    def names(*words: str) -> list[str]:
        only = parse_list_filters(words, VOLUME_KEYS)
        return [v.name for v in (used, loose) if only.matches(volume_subject(v))]

    assert names() == ["data", "ab" * 32]
    assert names("dangling=true") == ["ab" * 32] and names("dangling=0") == ["data"]
    assert names("name=at") == ["data"] and names("name=^d", "name=^a") == ["data", "ab" * 32]
    assert names("driver=local") == ["data", "ab" * 32] and names("driver=nfs") == []
    assert names("label=tier") == ["data", "ab" * 32]
    assert names("label=tier=db", "label=k") == ["data"]
    assert names("label=tier=db", "label=tier=web") == []  # every label must hold
    assert names("label=tier", "dangling=false", "name=a") == ["data"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["colour=red"], "invalid filter 'colour'"),
        (["label!=x"], "invalid filter 'label!'"),  # not one of volume ls's (dockerd's)
        (["until=1h"], "invalid filter 'until'"),
        (["dangling"], "bad format of filter 'dangling'"),
        (["dangling=maybe"], "invalid filter 'dangling=maybe'"),
        (["dangling=true", "dangling=false"], "dangling=true and dangling=false together"),
        (["name="], "invalid filter 'name=': a value is needed"),
        (["name=(x"], "invalid filter 'name=(x': name= takes a name or part of one"),
        (["label==v"], "no label key"),
        (["name=" + "x" * 5000], "over 4096 characters"),
    ],
)
def test_volume_ls_refusals(words: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)) as e:
        parse_list_filters(words, VOLUME_KEYS)
    assert e.value.exit_code == 2 and e.value.hint


def test_network_ls_filters() -> None:
    bridge = _subject("bridge", driver="bridge", builtin=True)
    host = _subject("host", driver="host", builtin=True)
    web = _subject("webnet", id="f00d" + "0" * 60, driver="bridge", labels={"team": "a"}, dangling=True)
    db = _subject("dbnet", driver="bridge", labels={"team": "b", "x": "1"})

    def names(*words: str) -> list[str]:
        only = parse_list_filters(words, NETWORK_KEYS)
        return [n.name for n in (bridge, host, web, db) if only.matches(n)]

    assert names("type=custom") == ["webnet", "dbnet"] and names("type=builtin") == ["bridge", "host"]
    assert names("driver=host") == ["host"] and names("driver=bridge", "type=custom") == ["webnet", "dbnet"]
    assert names("name=net$") == ["webnet", "dbnet"] and names("name=host", "name=^web") == ["host", "webnet"]
    assert names("id=f00d") == ["webnet"]
    assert names("dangling=true") == ["webnet"]  # a built-in one is never dangling (dockerd's)
    assert names("dangling=false") == ["bridge", "host", "dbnet"]
    assert names("label=team", "label=x=1") == ["dbnet"]
    assert names("scope=local") == ["bridge", "host", "webnet", "dbnet"] and names("scope=swarm") == []
    for bad, hint in (("type=overlay", "builtin"), ("scope=planet", "local")):
        with pytest.raises(InvalidArgument, match=re.escape(f"invalid filter '{bad}'")) as e:
            parse_list_filters([bad], NETWORK_KEYS)
        assert hint in (e.value.hint or "")


def test_prune_filters_until_and_labels() -> None:
    old = _subject("old", labels={"tier": "web"}, created_us=int(NOW * 1e6) - 3 * HOUR)
    new = _subject("new", labels={"tier": "db"}, created_us=int(NOW * 1e6) - HOUR // 2)
    unknown = _subject("unknown")  # no creation time: an until filter never takes it

    def names(*words: str) -> list[str]:
        only = parse_list_filters(words, CONTAINER_PRUNE_KEYS, now=NOW)
        return [s.name for s in (old, new, unknown) if only.matches(s)]

    assert names() == ["old", "new", "unknown"]
    assert names("until=1h") == ["old"] and names("until=10m") == ["old", "new"]
    assert names("until=2026-01-02T09:00:00Z") == ["old"]
    assert names("label=tier") == ["old", "new"] and names("label!=tier=web") == ["new", "unknown"]
    assert names("label!=tier", "label!=other") == ["unknown"]
    assert names("label=tier", "until=1h") == ["old"]
    with pytest.raises(InvalidArgument, match="invalid filter 'until=yesterday'"):
        parse_list_filters(["until=yesterday"], CONTAINER_PRUNE_KEYS)
    with pytest.raises(InvalidArgument, match="invalid filter 'name'") as e:
        parse_list_filters(["name=x"], CONTAINER_PRUNE_KEYS)
    assert "until=..." in (e.value.hint or "")
    assert not parse_list_filters([], SYSTEM_PRUNE_KEYS)


def test_volume_prune_all_key() -> None:
    assert parse_list_filters(["all=true"], VOLUME_PRUNE_KEYS).all is True
    assert parse_list_filters(["all=0", "label=a"], VOLUME_PRUNE_KEYS).all is False
    assert parse_list_filters(["label=a"], VOLUME_PRUNE_KEYS).all is None
    with pytest.raises(InvalidArgument, match="all=true and all=false together"):
        parse_list_filters(["all=1", "all=false"], VOLUME_PRUNE_KEYS)


def test_container_subject_from_a_definition() -> None:
    from nspawnctl.spec import ContainerSpec

    spec = ContainerSpec(
        name="c", id="1" * 64, image="img", image_id="sha256:" + "a" * 64,
        created="2026-01-02T09:00:00+00:00",
        command=["/bin/true"], labels={"a": "1"},
    )  # fmt: skip
    s = container_subject(spec)
    assert s.labels == {"a": "1"} and s.created_us == int((NOW - 3600) * 1e6)
    assert parse_list_filters(["until=30m", "label=a=1"], CONTAINER_PRUNE_KEYS, NOW).matches(s)


NOT_A_NAME = (
    "takes a name or part of one, optionally anchored with ^ and $"
    " (nspawnctl runs no other regular expressions)"
)


@pytest.mark.parametrize(
    "value",
    [
        "^([0-9a-f]|[0-9a-f])*z",  # catastrophic backtracking in re: hung the API's event loop
        "a{4294967296}",  # OverflowError in re.compile
        "(" * 2000 + ")" * 2000,  # RecursionError in re.compile
        "a*",
        "web|db",
        "x" * 257,
    ],
)
@pytest.mark.parametrize("key", ["name", "id"])
def test_name_and_id_run_no_user_regex(key: str, value: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"{key}= {NOT_A_NAME}")) as e:
        parse_list_filters([f"{key}={value}"], NETWORK_KEYS)
    assert e.value.exit_code == 2 and e.value.hint


def test_name_filter_dot_anchors_and_dashes() -> None:
    only = parse_list_filters(["name=^my-net.1$", "name=_x"], NETWORK_KEYS)
    assert only.matches(_subject("my-netA1")) and only.matches(_subject("a_x_b"))
    assert not only.matches(_subject("my-netA12")) and not only.matches(_subject("xmy-net.1"))
    only = parse_list_filters(["name=" + "a" * 256], NETWORK_KEYS)
    assert only.matches(_subject("a" * 300))
