"""auto-update's recreate: the old container survives a failed or killed update, and a rollback
puts back its own root (writable layer included), not a fresh snapshot of the old image."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from nspawnctl import autoupdate
from nspawnctl.errors import ContainerNotFound, ContainerRunning, PoolError
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, RunDefaults, file_to_spec, spec_to_file
from nspawnctl.status import ContainerStatus
from nspawnctl.store.images import Image

OLD = Image(
    id="sha256:" + "aa" * 32,
    created="2026-01-01T00:00:00+00:00",
    size=1,
    source="test",
    refs=["app:latest"],
    defaults=RunDefaults(command=["sh"]),
)
NEW = replace(OLD, id="sha256:" + "bb" * 32)


@dataclass
class FakeStore:
    """Definitions and roots by name; a root is a string saying what it holds. ``fail`` makes
    every new snapshot fail (ENOSPC), as a full pool would."""

    files: dict[str, str] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)
    aside: dict[str, tuple[str, str]] = field(default_factory=dict)
    fail: bool = False
    holding: str = ""  # the container whose lock is held (FakeContainers.rewriting)

    def _snapshot(self, image: Image) -> str:
        if self.fail:
            raise PoolError("cannot snapshot: No space left on device")
        return f"fresh {image.id[7:9]}"

    def get(self, name: str) -> ContainerSpec:
        if name not in self.files:
            raise ContainerNotFound(f"no such container: {name}")
        return file_to_spec(name, NspawnFile.parse(self.files[name]))

    def definition(self, name: str) -> tuple[Path, NspawnFile]:
        return Path(f"/etc/{name}.nspawn"), NspawnFile.parse(self.files[name])

    def create(self, spec: ContainerSpec, image: Image, base: NspawnFile | None = None) -> ContainerSpec:
        root = self._snapshot(image)
        self.files[spec.name] = spec_to_file(spec, base).render()
        self.roots[spec.name] = root
        return spec

    def remove(self, name: str) -> None:
        self.files.pop(name, None)
        self.roots.pop(name, None)

    def recreate(
        self, spec: ContainerSpec, image: Image, base: NspawnFile | None = None, keep_old: bool = False
    ) -> None:
        assert self.holding == spec.name  # review 18 #4: only under the container's lock
        root = self._snapshot(image)
        if keep_old:
            self.aside[spec.name] = (self.roots[spec.name], self.files[spec.name])
        self.roots[spec.name] = root
        self.files[spec.name] = spec_to_file(spec, base).render()

    def finish_recreate(self, name: str) -> None:
        del self.aside[name]

    def undo_recreate(self, name: str, path: Path, previous: NspawnFile) -> None:
        assert self.holding == name
        self.roots[name], _ = self.aside.pop(name)
        self.files[name] = previous.render()


@dataclass
class FakeContainers:
    store: FakeStore
    running: set[str] = field(default_factory=set)
    dies_on: str = ""  # a root made from this image stops right after its start
    restarted_by_another: str = ""  # started again (by another command) right after each stop

    def list(self) -> list[ContainerStatus]:
        return [self.get(n) for n in sorted(self.store.files)]

    def get(self, name: str) -> ContainerStatus:
        state = "running" if name in self.running else "exited"
        return ContainerStatus(self.store.get(name), state, unit="u")

    def stop(self, name: str) -> None:
        if name != self.restarted_by_another:
            self.running.discard(name)

    @contextlib.contextmanager
    def rewriting(self, name: str) -> Iterator[None]:
        if name in self.running:
            raise ContainerRunning(f"container {name} was started meanwhile")
        self.store.holding = name
        try:
            yield
        finally:
            self.store.holding = ""

    def start(self, name: str) -> None:
        self.store.get(name)
        if not (self.dies_on and self.store.roots[name] == f"fresh {self.dies_on[7:9]}"):
            self.running.add(name)


@dataclass
class FakeImages:
    names: dict[str, str] = field(default_factory=lambda: {"app:latest": NEW.id})

    def get(self, ref: str) -> Image:
        ref = self.names.get(ref, ref)
        return {OLD.id: OLD, NEW.id: NEW}[ref]

    def tag(self, image_id: str, name: str) -> None:
        self.names[name] = image_id


@dataclass
class FakeClient:
    containers: FakeContainers
    images: FakeImages = field(default_factory=FakeImages)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    """Container ``web`` on OLD, running, with changes in its writable layer; ``app:latest``
    now names NEW (a ``local`` update is due)."""
    monkeypatch.setattr(autoupdate, "SETTLE", 0.0)
    spec = ContainerSpec(
        name="web", id="1" * 32, image="app:latest", image_id=OLD.id, created="now",
        command=["sleep", "9"], auto_update="local",
    )  # fmt: skip
    store = FakeStore(files={"web": spec_to_file(spec).render()}, roots={"web": "old root, with writes"})
    return FakeClient(FakeContainers(store, running={"web"}))


def update(client: FakeClient, rollback: bool = True) -> autoupdate.Update:
    [row] = autoupdate.auto_update(client, options=None, rollback=rollback)  # type: ignore[arg-type]
    return row


def test_an_update_that_works_swaps_the_root_and_keeps_the_definition(client: FakeClient) -> None:
    before = client.containers.store.get("web")
    row = update(client)
    assert (row.updated, row.error) == ("true", None)
    store = client.containers.store
    assert store.roots == {"web": "fresh bb"} and store.aside == {}
    after = store.get("web")
    assert after.image_id == NEW.id and after.id == before.id and after.command == before.command
    assert client.containers.running == {"web"}


def test_a_failed_snapshot_leaves_the_old_container_running(client: FakeClient) -> None:
    store = client.containers.store
    before = store.files["web"]
    store.fail = True
    row = update(client)
    assert row.updated == "failed" and row.error is not None and "No space left on device" in row.error
    assert store.files == {"web": before} and store.roots == {"web": "old root, with writes"}
    assert client.containers.running == {"web"}


def test_a_container_started_again_after_the_stop_is_left_alone(client: FakeClient) -> None:
    """review 18 #4: the swap waits for the container's lock and is refused under a start."""
    store = client.containers.store
    before = store.files["web"]
    client.containers.restarted_by_another = "web"
    row = update(client)
    assert row.updated == "failed" and row.error is not None and "started meanwhile" in row.error
    assert store.files == {"web": before} and store.roots == {"web": "old root, with writes"}
    assert store.aside == {} and client.containers.running == {"web"}


def test_a_rollback_puts_back_the_old_root_not_a_fresh_one(client: FakeClient) -> None:
    store = client.containers.store
    before = store.files["web"]
    client.containers.dies_on = NEW.id
    row = update(client)
    assert row.updated == "rolled back" and row.error == "the container stopped (exit code ?)"
    assert store.roots == {"web": "old root, with writes"} and store.aside == {}
    assert store.files == {"web": before} and client.containers.running == {"web"}
    assert client.images.names["app:latest"] == OLD.id


def test_without_rollback_the_new_container_stays_and_the_old_root_goes(client: FakeClient) -> None:
    store = client.containers.store
    client.containers.dies_on = NEW.id
    row = update(client, rollback=False)
    assert row.updated == "failed" and row.error == "the container stopped (exit code ?)"
    assert store.roots == {"web": "fresh bb"} and store.aside == {}


def test_a_release_url_pull_tags_the_name_the_container_runs_by() -> None:
    url = Image(
        "sha256:" + "ab" * 32,
        "now",
        1,
        "https://x/rel/app.tar.xz",
        origin={"url": "https://x/rel/app.tar.xz"},
        refs=["web/app:1", "abab:latest"],
    )
    assert autoupdate._pull_name(url, "web/app:1") == "web/app:1"
    assert autoupdate._pull_name(url, "abab") == "abab"  # a name of hex letters is a name
    assert autoupdate._pull_name(url, "ab" * 6) is None  # run by an ID prefix: the URL's default name
    assert autoupdate._pull_name(url, "web/other:1") is None  # a name that has moved on: not taken
    assert autoupdate._pull_name(url, "sha256:" + "ab" * 32) is None
    registry = Image("sha256:" + "cd" * 32, "now", 1, "r/app:1", origin={"reference": "r/app:1"})
    assert autoupdate._pull_name(registry, "r/app:1") is None  # the pull tags its reference
