"""rename in the store, the events tracker over a real store, and the inotify watch, on a real
loop-mounted btrfs (skipped without root and btrfs tools)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_layers import btrfs_mount  # noqa: F401  (a fixture)
from test_repair import image, pool, spec  # noqa: F401  (fixtures)

from nspawnctl.errors import NameInUse
from nspawnctl.run.events import Tracker
from nspawnctl.store.containers import ContainerStore, ExitRecord
from nspawnctl.store.images import Image
from nspawnctl.store.pool import Pool
from nspawnctl.store.rename import rename
from nspawnctl.store.watch import DefinitionChange, DefinitionWatch
from nspawnctl.systemd.manager import SERVICE_IFACE, UNIT_IFACE


def test_rename_moves_root_definition_and_exit_record(pool: Pool, image: Image) -> None:  # noqa: F811
    store = ContainerStore(pool)
    store.create(spec("c1"), image)
    store.record_exit("c1", ExitRecord(3, "exit-code", "now"))
    renamed = rename(store, "c1", "c2")
    assert renamed.name == "c2" and renamed.id == spec("c1").id
    assert (pool.paths.pool / "c2" / "hello").read_text() == "hi\n"
    assert not os.path.lexists(pool.paths.pool / "c1")
    assert store.names() == {"c2"}
    assert store.exit_record("c2") == ExitRecord(3, "exit-code", "now") and store.exit_record("c1") is None
    assert rename(store, "c2", "c2").name == "c2"


def test_rename_to_a_taken_name_changes_nothing(pool: Pool, image: Image) -> None:  # noqa: F811
    store = ContainerStore(pool)
    store.create(spec("a"), image)
    (pool.paths.pool / "b").mkdir()  # not ours, but the name is taken
    with pytest.raises(NameInUse):
        rename(store, "a", "b")
    assert store.names() == {"a"} and (pool.paths.pool / "a" / "hello").is_file()


def test_tracker_turns_changes_into_docker_events(pool: Pool, image: Image) -> None:  # noqa: F811
    store = ContainerStore(pool)
    tracker = Tracker(store)
    store.create(spec("c1"), image)
    (created,) = tracker.definition_changed("c1", True)
    assert (created.action, created.name, created.image) == ("create", "c1", "img")
    unit = "nspawnctl-c1.service"
    assert tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "activating"}) == []
    (start,) = tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "active", "SubState": "running"})
    assert start.action == "start" and start.id == created.id
    assert tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "active"}) == []  # said once
    tracker.unit_changed(unit, SERVICE_IFACE, {"ExecMainCode": 1, "ExecMainStatus": 4})
    (die,) = tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "inactive", "SubState": "dead"})
    assert die.action == "die" and die.extra == {"exitCode": "4"}  # no record: the unit's status
    assert tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "failed"}) == []
    rename(store, "c1", "c2")
    (renamed,) = tracker.definition_changed("c2", True)
    assert renamed.action == "rename" and renamed.extra == {"oldName": "c1"} and renamed.id == created.id
    assert tracker.definition_changed("c1", False) == []  # the old name's file going is the rename
    store.remove("c2")
    (destroy,) = tracker.definition_changed("c2", False)
    assert destroy.action == "destroy" and destroy.id == created.id
    assert tracker.unit_changed("ssh.service", UNIT_IFACE, {"ActiveState": "active"}) == []


def test_definition_watch_sees_files_appear_and_go(tmp_path: Path) -> None:
    async def go() -> list[DefinitionChange]:
        watch = DefinitionWatch([tmp_path / "a", tmp_path / "b"])
        try:
            tmp = tmp_path / "a" / ".web.nspawn.tmp"
            tmp.write_text("[Exec]\n")
            os.rename(tmp, tmp_path / "a" / "web.nspawn")
            (tmp_path / "b" / "db.nspawn").write_text("")
            (tmp_path / "a" / "web.nspawn").unlink()
            seen: list[DefinitionChange] = []
            while len(seen) < 3:
                seen += await asyncio.wait_for(watch.next(), 5)
            return seen
        finally:
            watch.close()

    assert asyncio.run(go()) == [
        DefinitionChange("web", True),
        DefinitionChange("db", True),
        DefinitionChange("web", False),
    ]


def test_a_start_seen_before_the_definitions_event_says_create_first(pool: Pool, image: Image) -> None:  # noqa: F811
    """systemd's signal of a fresh container's start can come before inotify's of its definition
    (a fast start): the create is said first, once, and the late inotify event adds nothing."""
    store = ContainerStore(pool)
    tracker = Tracker(store)
    store.create(spec("fast"), image)
    unit = "nspawnctl-fast.service"
    create, start = tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "active", "SubState": "running"})
    assert (create.action, start.action) == ("create", "start") and create.id == start.id
    assert tracker.definition_changed("fast", True) == []
    # a renamed one whose unit changes before the watch tells: a rename, not a create
    renamed = rename(store, "fast", "quick")
    (moved,) = tracker.unit_changed("nspawnctl-quick.service", UNIT_IFACE, {"ActiveState": "activating"})
    assert moved.action == "rename" and moved.extra == {"oldName": "fast"} and moved.id == renamed.id
    assert tracker.definition_changed("fast", False) == [] and tracker.definition_changed("quick", True) == []


def test_events_carry_labels_read_before_the_container_can_be_looked_up(pool: Pool, image: Image) -> None:  # noqa: F811
    """store.create writes the definition before it renames the root into place: inotify's
    event comes while store.get still says "no such container". The create carries the labels
    the definition has (the API's label filter dropped a create it could not look up), and so
    does every later event, the destroy too."""
    from dataclasses import replace

    from nspawnctl.errors import ContainerNotFound
    from nspawnctl.spec import spec_to_file

    store = ContainerStore(pool)
    tracker = Tracker(store)
    labelled = replace(spec("mid"), labels={"lifeev": "1", "a b": "c=d"})
    spec_to_file(labelled).save(store.settings_file("mid"))
    (pool.paths.pool / ".#nspawnctl-mid.create").mkdir()  # the snapshot, not yet in place
    with pytest.raises(ContainerNotFound):
        store.get("mid")
    (create,) = tracker.definition_changed("mid", True)
    assert create.action == "create" and create.labels == {"lifeev": "1", "a b": "c=d"}
    assert "lifeev" not in create.attributes()  # the CLI's line is as before
    (pool.paths.pool / ".#nspawnctl-mid.create").rename(pool.paths.pool / "mid")
    unit = "nspawnctl-mid.service"
    (start,) = tracker.unit_changed(unit, UNIT_IFACE, {"ActiveState": "active", "SubState": "running"})
    assert start.labels == create.labels
    store.remove("mid")
    (destroy,) = tracker.definition_changed("mid", False)
    assert destroy.action == "destroy" and destroy.labels == create.labels
