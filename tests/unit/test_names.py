"""Container names as docker gives them (``my_app``) and the machine names derived from them
(names.py), their lookup (store/containers.py resolve), their place in the definition
(``[X-Nspawnctl] Name=``), renames between them (store/rename.py) and the events' names."""

from __future__ import annotations

from pathlib import Path

import pytest

from nspawnctl.config import Paths
from nspawnctl.errors import ContainerNotFound, InvalidArgument, InvalidName, NameInUse
from nspawnctl.names import MAX_NAME, ContainerName, machine_name_of
from nspawnctl.nspawnfile import OWN_SECTION, NspawnFile
from nspawnctl.run.events import Tracker
from nspawnctl.spec import ContainerSpec, file_to_spec, spec_to_file
from nspawnctl.store.containers import ContainerStore
from nspawnctl.store.pool import Pool
from nspawnctl.store.rename import rename, same_machine


@pytest.mark.parametrize(
    ("text", "machine"),
    [
        ("web", "web"),
        ("a", "a"),  # one character: a machine name as always (docker wants two)
        ("foobar_vol0", "foobar-vol0"),
        ("proj_web_1", "proj-web-1"),
        ("My_App.v2", "My-App.v2"),
        ("a__b", "a--b"),  # systemd allows inner runs of hyphens
        ("x" * MAX_NAME, "x" * MAX_NAME),
    ],
)
def test_a_docker_name_has_the_machine_name_with_hyphens_for_underscores(text: str, machine: str) -> None:
    name = ContainerName.parse(text)
    assert (name.given, name.machine) == (text, machine)
    assert name.kept == (text if "_" in text else None)
    assert machine_name_of(text) == machine


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a_", "machine name 'a-' is no host name"),  # docker allows it; a host name does not
        ("a._b", "machine name 'a.-b' is no host name"),
        ("a..b", "is no host name"),
        ("_a", "invalid container name '_a'"),  # docker refuses it too
        ("-a", "invalid container name"),
        ("a/b", "invalid container name"),
        ("../x", "invalid container name"),
        ("a b", "invalid container name"),
        ("ä", "invalid container name"),
        ("", "invalid container name"),
        ("x" * (MAX_NAME + 1), "invalid container name"),
        ("x" * 5000, "..."),  # bounded in the message too
    ],
)
def test_names_that_have_no_machine_name_are_refused_saying_the_rules(text: str, words: str) -> None:
    with pytest.raises(InvalidName) as e:
        ContainerName.parse(text)
    assert words in e.value.message and len(e.value.message) < 200
    assert e.value.hint and "'_' becomes '-'" in e.value.hint and "64" in e.value.hint
    assert machine_name_of(text) is None


def _spec(name: str, cid: str, given: str | None = None) -> ContainerSpec:
    return ContainerSpec(
        name=name, id=cid, image="img", image_id="sha256:" + "a" * 64, created="2026-01-01T00:00:00+00:00",
        command=["/bin/true"], given_name=given,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ContainerStore:
    paths = Paths(
        pool=tmp_path / "machines", store=tmp_path / "store",
        settings=tmp_path / "etc-nspawn", runtime_settings=tmp_path / "run-nspawn",
    )  # fmt: skip
    for p in (paths.pool, paths.store, paths.settings):
        p.mkdir()
    s = ContainerStore(Pool(paths))
    monkeypatch.setattr(Pool, "check", lambda self: None)  # a tmp directory is no btrfs pool
    spec_to_file(_spec("my-app", "a1" * 32, "my_app")).save(paths.settings / "my-app.nspawn")
    spec_to_file(_spec("a-b", "b2" * 32)).save(paths.settings / "a-b.nspawn")
    return s


def test_the_given_name_is_kept_in_the_definition_and_read_back(store: ContainerStore) -> None:
    path = store.settings_file("my-app")
    assert "Name=my_app" in path.read_text()
    spec = store.get("my-app")
    assert (spec.name, spec.given_name, spec.display_name) == ("my-app", "my_app", "my_app")
    plain = store.get("a-b")
    assert (plain.given_name, plain.display_name) == (None, "a-b")
    assert "Name=" not in store.settings_file("a-b").read_text()


def test_a_container_is_found_by_its_given_name_its_machine_name_and_its_id(store: ContainerStore) -> None:
    assert store.resolve("my_app") == "my-app"
    assert store.resolve("my-app") == "my-app"
    assert store.resolve("a1" * 32) == "my-app"
    assert store.resolve("a1a1") == "my-app"
    assert store.resolve("a-b") == "a-b"


@pytest.mark.parametrize("text", ["a_b", "my_app_", "other_x", "my__app"])
def test_a_name_is_not_found_through_another_names_machine_name(store: ContainerStore, text: str) -> None:
    """a-b was made as a-b: a_b is another name (one machine name, two containers never)."""
    with pytest.raises(ContainerNotFound, match="no such container"):
        store.resolve(text)


def test_a_name_whose_machine_name_is_taken_names_the_holder(store: ContainerStore) -> None:
    assert store.taken_message("a-b", "a_b") == (
        "the name 'a_b' is already in use: container 'a-b' has its machine name 'a-b' "
        "('_' is '-' in a machine name)"
    )
    assert "container 'my_app'" in store.taken_message("my-app", "my-app")
    assert store.taken_message("my-app", "my_app") == "the name 'my_app' is already in use"


def test_a_name_entry_that_is_not_the_files_machine_name_is_refused_at_its_line(tmp_path: Path) -> None:
    f = spec_to_file(_spec("web", "c3" * 32))
    f.set(OWN_SECTION, "Name", "other_name")
    f.save(tmp_path / "web.nspawn")
    with pytest.raises(InvalidArgument, match=r"web\.nspawn:\d+: Name=other_name: not a name of machine web"):
        file_to_spec("web", NspawnFile.load(tmp_path / "web.nspawn"), tmp_path / "web.nspawn")


def test_rename_between_names_of_one_machine_changes_only_the_name(store: ContainerStore) -> None:
    assert same_machine("my-app", "my-app") and same_machine("my-app", "my_app")
    assert not same_machine("my-app", "my_ap")
    spec = rename(store, "my-app", "my-app")  # the machine name as the name: Name= goes
    assert (spec.name, spec.given_name) == ("my-app", None)
    assert "Name=" not in store.settings_file("my-app").read_text()
    spec = rename(store, "my-app", "my_app")
    assert (spec.name, spec.given_name) == ("my-app", "my_app")
    assert store.resolve("my_app") == "my-app"


def test_rename_to_and_from_an_underscore_name_moves_the_machine(store: ContainerStore) -> None:
    spec = rename(store, "my-app", "new_name")
    assert (spec.name, spec.display_name, spec.id) == ("new-name", "new_name", "a1" * 32)
    assert not store.settings_file("my-app").exists()
    assert store.resolve("new_name") == "new-name"
    with pytest.raises(ContainerNotFound):
        store.resolve("my_app")
    spec = rename(store, "new-name", "plain")
    assert (spec.name, spec.given_name) == ("plain", None)
    assert "Name=" not in store.settings_file("plain").read_text()


def test_rename_onto_a_taken_machine_name_is_a_conflict(store: ContainerStore) -> None:
    with pytest.raises(NameInUse, match="container 'a-b' has its machine name 'a-b'"):
        rename(store, "my-app", "a_b")
    with pytest.raises(InvalidName, match="no host name"):
        rename(store, "my-app", "bad_")
    assert store.resolve("my_app") == "my-app"  # nothing moved


def test_events_carry_the_name_as_given(store: ContainerStore) -> None:
    tracker = Tracker(store)
    assert tracker.known["my-app"].shown == "my_app"
    spec_to_file(_spec("new-one", "d4" * 32, "new_one")).save(store.settings_file("new-one"))
    (event,) = tracker.definition_changed("new-one", added=True)
    assert (event.action, event.name) == ("create", "new_one")
    store.settings_file("new-one").unlink()
    (event,) = tracker.definition_changed("new-one", added=False)
    assert (event.action, event.name) == ("destroy", "new_one")
    spec = rename(store, "my-app", "renamed_app")
    (event,) = tracker.definition_changed(spec.name, added=True)
    assert (event.action, event.name, event.extra) == ("rename", "renamed_app", {"oldName": "my_app"})


def test_lookups_by_given_name_read_one_file_and_listing_each_once(
    store: ContainerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No quadratic cost: the given name's machine name is a function of the name alone."""
    for i in range(100):
        spec_to_file(_spec(f"c-{i}", f"{i:064x}", f"c_{i}")).save(store.settings_file(f"c-{i}"))
    loads: list[Path] = []
    real = NspawnFile.load

    def counting(path: Path) -> NspawnFile:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(NspawnFile, "load", staticmethod(counting))
    assert store.resolve("c_42") == "c-42" and loads == [store.settings_file("c-42")]
    loads.clear()
    shown = {s.display_name for s in store.list()}
    assert len(shown) == 102 and {"c_0", "c_99", "my_app", "a-b"} <= shown
    assert len(loads) == 102  # each definition once


def test_a_rename_keeping_the_machine_name_is_a_rename_event(store: ContainerStore) -> None:
    """``my_app`` -> ``my-app`` rewrites the same definition: the tracker sees its Name= change
    (review #13: docker emits a rename event; an unchanged rewrite emits none)."""
    tracker = Tracker(store)
    rename(store, "my-app", "my-app")
    (event,) = tracker.definition_changed("my-app", added=True)
    assert (event.action, event.name, event.extra) == ("rename", "my-app", {"oldName": "my_app"})
    assert tracker.definition_changed("my-app", added=True) == []  # rewritten, same name
