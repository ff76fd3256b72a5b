"""Container identity (store/containers.py resolve), labels in the .nspawn file, and the ps
filters (filters.py): pure logic over definition files in a temporary directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import ContainerNotFound, InvalidArgument
from nspawnctl.filters import Candidate, parse_filters
from nspawnctl.labels import parse_labels, read_label_file
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, file_to_spec, spec_to_file
from nspawnctl.store.containers import ContainerStore, new_container_id
from nspawnctl.store.pool import Pool


def _spec(name: str, cid: str, labels: dict[str, str] | None = None) -> ContainerSpec:
    return ContainerSpec(
        name=name, id=cid, image="img", image_id="sha256:" + "a" * 64, created="2026-01-01T00:00:00+00:00",
        command=["/bin/true"], labels=labels or {},
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> ContainerStore:
    paths = Paths(
        pool=tmp_path / "machines", store=tmp_path / "store",
        settings=tmp_path / "etc-nspawn", runtime_settings=tmp_path / "run-nspawn",
    )  # fmt: skip
    for p in (paths.pool, paths.store, paths.settings):
        p.mkdir()
    s = ContainerStore(Pool(paths))
    ids = {
        "web": "abc1" + "0" * 60,
        "db": "abc2" + "1" * 60,
        "old": "fe" * 16,  # a 32-hex ID of an older version
        "abc1": "9" * 64,  # a name that looks like a prefix of web's ID
        "cafe": "ca" + "f" * 62,
    }
    for name, cid in ids.items():
        spec_to_file(_spec(name, cid)).save(paths.settings / f"{name}.nspawn")
    (paths.settings / "foreign.nspawn").write_text("[Exec]\nBoot=yes\n")  # not nspawnctl's
    return s


def test_new_ids_are_64_hex() -> None:
    a, b = new_container_id(), new_container_id()
    assert re.fullmatch("[0-9a-f]{64}", a) and a != b


def test_resolve_takes_exact_name_then_full_id_then_unique_prefix(store: ContainerStore) -> None:
    assert store.resolve("web") == "web"
    assert store.resolve("abc1") == "abc1"  # the exact name wins over web's ID prefix
    assert store.resolve("abc2") == "db"
    assert store.resolve("abc2" + "1" * 60) == "db"
    assert store.resolve("fefe") == "old"  # 32-hex IDs keep working
    assert store.resolve("fe" * 16) == "old"
    assert store.resolve("cafe") == "cafe"  # a name first, though "cafe" is also a prefix of its ID
    assert store.resolve("caff") == "cafe"
    assert store.resolve("foreign") == "foreign"  # a name is the caller's to judge


def test_resolve_refuses_an_ambiguous_prefix_naming_the_candidates(store: ContainerStore) -> None:
    with pytest.raises(InvalidArgument, match="ambiguous: db, web") as e:
        store.resolve("abc")
    assert e.value.exit_code == 2 and e.value.hint


@pytest.mark.parametrize("text", ["nope", "abc3", "ABC1", "0", "abc1" + "0" * 61])
def test_resolve_of_what_matches_nothing_is_no_such_container(store: ContainerStore, text: str) -> None:
    with pytest.raises(ContainerNotFound, match=f"no such container: {text}") as e:
        store.resolve(text)
    assert e.value.hint and "ps -a" in e.value.hint


def test_labels_round_trip_through_the_nspawn_file() -> None:
    labels = {
        "a": "1",
        "with space": "x y",
        "quote": 'it\'s "q"',
        "empty": "",
        "back\\slash": "a\\b",
        "eq": "a=b",
    }
    text = spec_to_file(_spec("c", "1" * 64, labels)).render()
    assert "[X-Nspawnctl]" in text and text.count("Label=") == len(labels)
    assert file_to_spec("c", NspawnFile.parse(text)).labels == labels


def test_labels_with_line_breaks_and_control_characters_round_trip() -> None:
    """An image's multi-line description label (or anything else) is stored and read back as is."""
    from nspawnctl.labels import labels_from_words

    labels = {
        "org.opencontainers.image.description": "line1\nline2\r\n\tend",
        "ctl": "\x00\x1b[31m\x7f",
        "trail": "ends in \\",
        "looks\\nescaped": "\\n \\x41 \\\\",
        "k=ey\n": "v",
        "unicode": "caf\u00e9 \u2028",
    }
    text = spec_to_file(_spec("c", "1" * 64, labels)).render()
    assert text.count("Label=") == len(labels)
    assert file_to_spec("c", NspawnFile.parse(text)).labels == labels
    # a word written before escaping: unknown backslash sequences stay as they are
    assert labels_from_words(["path=C:\\dir\\file"]) == {"path": "C:\\dir\\file"}


def test_label_parsing_and_files(tmp_path: Path) -> None:
    assert parse_labels(["a=1", "b", "a=2", "c=x=y"]) == {"a": "2", "b": "", "c": "x=y"}
    with pytest.raises(InvalidArgument, match="invalid label"):
        parse_labels(["=v"])
    f = tmp_path / "labels"
    f.write_text("# comment\n\n  k=v  \r\nbare\n")
    assert read_label_file(str(f)) == ["k=v", "bare"]
    with pytest.raises(InvalidArgument, match="cannot read label file"):
        read_label_file(str(tmp_path / "none"))


def _c(
    name: str, status: str = "running", labels: dict[str, str] | None = None, code: int | None = None
) -> Candidate:
    return Candidate(
        name,
        name.encode().hex().ljust(64, "0"),
        labels or {},
        status,
        "e2e/img:1",
        "sha256:" + "d" * 64,
        code,
    )


def test_filters_or_within_a_key_but_label_and_across_keys() -> None:
    web = _c("web", labels={"tier": "web", "team": "x"})
    db = _c("db", status="exited", labels={"tier": "db"}, code=3)
    bare = _c("bare", status="created")

    def match(*items: str) -> list[str]:
        f = parse_filters(items)
        return [c.name for c in (web, db, bare) if f.matches(c)]

    assert match() == ["web", "db", "bare"]
    assert match("label=tier") == ["web", "db"]
    assert match("label=tier=web", "label=tier=db") == []  # label values are ANDed (docker's)
    assert match("label=tier", "status=exited") == ["db"]
    assert match("label=team", "label=tier=web") == ["web"]
    assert match("label=team", "label=tier=db") == []
    assert match("name=^b") == ["bare"]
    assert match("name=a") == ["bare"]  # a regular expression searched in the name
    assert match("id=" + b"web".hex()) == ["web"]
    assert match("exited=3") == ["db"] and match("exited=0") == []
    assert match("status=created", "status=running") == ["web", "bare"]
    assert match("ancestor=e2e/img:1") == ["web", "db", "bare"]
    assert match("ancestor=dddd") == ["web", "db", "bare"]  # an image ID prefix
    assert match("ancestor=e2e/other") == []
    assert parse_filters(["status=exited"]).wants_stopped and not parse_filters(["label=a"]).wants_stopped


def test_filters_same_image_callback_for_other_names_of_the_image() -> None:
    f = parse_filters(["ancestor=alias:latest"])
    assert not f.matches(_c("x"))
    assert f.matches(_c("x"), lambda text, image_id: text == "alias:latest" and image_id.endswith("d"))


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("colour=red", "invalid filter 'colour'"),
        ("status=asleep", "status=asleep"),
        ("exited=x", "exited=x"),
        ("name=(", "name= takes a name or part of one"),
        ("name=^([0-9a-f]|[0-9a-f])*z", "nspawnctl runs no other regular expressions"),  # no ReDoS
        ("label=", "a value is needed"),
        ("status", "expected name=value"),
    ],
)
def test_bad_filters_are_usage_errors(item: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(words)) as e:
        parse_filters([item])
    assert e.value.exit_code == 2


def test_a_blank_label_key_never_makes_a_definition_unloadable() -> None:
    """Review 15 #5: ``Label==x`` (written before keys were checked) used to raise on every load,
    so the container vanished from ``ps`` and could not be removed."""
    from nspawnctl.labels import labels_from_words

    text = spec_to_file(_spec("c", "1" * 64, {"": "x", " ": "y", "ok": "1"})).render()
    assert file_to_spec("c", NspawnFile.parse(text)).labels == {"ok": "1"}
    assert labels_from_words(["=x", "a=b=c", "bare"]) == {"a": "b=c", "bare": ""}


def test_labels_are_checked_in_the_library_at_create() -> None:
    """The API's ``Labels`` and an image's config reach create without parse_labels: a blank key
    given is an error, a blank key from the image is dropped."""
    from nspawnctl.labels import check_labels, merge_labels

    with pytest.raises(InvalidArgument, match="invalid label"):
        merge_labels({}, {"": "x"})
    with pytest.raises(InvalidArgument, match="invalid label"):
        check_labels({"  ": "x"})
    assert merge_labels({"": "img", " ": "i", "a": "img", "b": "img"}, {"a": "given"}) == {
        "a": "given",
        "b": "img",
    }


def test_filters_select_is_the_one_container_selection_of_ps_and_the_api() -> None:
    """Review 15 R2: the API and ``ps`` each built candidates and resolved ancestors themselves."""
    from types import SimpleNamespace

    from nspawnctl.errors import ImageNotFound
    from nspawnctl.filters import parse_filters, select

    def status(name: str, state: str, code: int | None, labels: dict[str, str]) -> Any:
        spec = SimpleNamespace(
            name=name,
            display_name=name,
            id=name * 8,
            labels=labels,
            image="img:1",
            image_id="sha256:" + "a" * 64,
        )
        return SimpleNamespace(
            spec=spec, state=state, exit=SimpleNamespace(exit_code=code) if code is not None else None
        )

    class Images:
        def get(self, ref: str) -> Any:
            if ref == "other-tag":
                return SimpleNamespace(id="sha256:" + "a" * 64)
            raise ImageNotFound(ref)

    sts = [
        status("a", "exited", 3, {"t": "1"}),
        status("b", "running", 3, {}),
        status("c", "exited", 0, {"t": "2"}),
    ]
    names = lambda f: [s.spec.name for s in select(sts, parse_filters(f), Images())]  # noqa: E731
    assert names([]) == ["a", "b", "c"]
    assert names(["exited=3"]) == ["a"]  # b's code is not an exit: it runs
    assert names(["label=t"]) == ["a", "c"] and names(["label=t=2"]) == ["c"]
    assert names(["ancestor=other-tag"]) == ["a", "b", "c"]
    assert names(["ancestor=nosuch"]) == []
