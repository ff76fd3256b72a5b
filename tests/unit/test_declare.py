"""Declared containers: loading with FILE:LINE errors, plan/diff classification, apply's steps,
generate's round trip, down; and the run/create options that feed the same spec."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from nspawnctl import declare
from nspawnctl.client import RunOptions, _network_and_userns
from nspawnctl.errors import (
    ContainerNotFound,
    ContainerRunning,
    DefinitionError,
    FetchError,
    ImageNotFound,
    InvalidArgument,
)
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, PortMapping, RunDefaults, Volume, file_to_spec, spec_to_file
from nspawnctl.store.images import Image
from nspawnctl.values import MemoryBytes, merge_env

IMG = Image(
    id="sha256:" + "aa" * 32,
    created="2026-01-01T00:00:00+00:00",
    size=1,
    source="test",
    refs=["e2e/busybox:latest"],
    defaults=RunDefaults(command=["sh"], env=["PATH=/usr/bin:/bin"]),
)
IMG2 = replace(IMG, id="sha256:" + "bb" * 32)


@pytest.fixture(autouse=True)
def networkd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default network as on a host with systemd-networkd: veth."""
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: True)


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every volume on a filesystem that ID-maps; no network state; published ports checked
    against a list of ports "in use" instead of this machine's sockets."""
    from nspawnctl.errors import PortInUse

    taken: list[str] = []

    def check_ports(paths: object, spec: ContainerSpec) -> None:
        for pm in spec.ports:
            if str(pm.host_port) in taken:
                raise PortInUse(f"port {pm.host_port}/{pm.protocol} is already in use on the host")

    monkeypatch.setattr("nspawnctl.idmap.fs_type", lambda path: "ext4")
    monkeypatch.setattr("nspawnctl.net.check_ports", check_ports)
    monkeypatch.setattr("nspawnctl.net.state", lambda name: None)
    return taken


# -- fakes: a store of .nspawn texts, images by reference, containers that record calls --------
@dataclass
class FakeStore:
    files: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    holding: str = ""  # the container whose lock is held: every rewrite asserts it (review 18 #4)

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        assert not self.holding  # never nested (a start would take it again)
        self.holding = name
        try:
            yield
        finally:
            self.holding = ""

    def names(self) -> set[str]:
        return set(self.files)

    def resolve(self, name: str) -> str:
        return name

    def get(self, name: str) -> ContainerSpec:
        if name not in self.files:
            raise ContainerNotFound(f"no such container: {name}")
        return file_to_spec(name, NspawnFile.parse(self.files[name]))

    def in_use(self, name: str) -> bool:
        return name in self.files or name == "foreign"

    def has(self, name: str) -> bool:
        return name in self.files

    def given_name(self, name: str) -> str | None:
        return NspawnFile.parse(self.files[name]).get("X-Nspawnctl", "Name") if name in self.files else None

    def taken_message(self, machine: str, wanted: str) -> str:
        return f"the name {wanted!r} is already in use: container {self.given_name(machine) or machine!r}"

    def root(self, name: str) -> Path:
        return Path("/pool") / name

    def definition(self, name: str) -> tuple[Path, NspawnFile]:
        return Path(f"/etc/{name}.nspawn"), NspawnFile.parse(self.files[name])

    def create(self, spec: ContainerSpec, image: Image, base: NspawnFile | None = None) -> ContainerSpec:
        self.calls.append(f"create {spec.name}")
        self.files[spec.name] = spec_to_file(spec, base).render()
        return spec

    def rewrite(self, spec: ContainerSpec, base: NspawnFile | None = None) -> None:
        assert self.holding == spec.name
        self.calls.append(f"rewrite {spec.name}")
        self.files[spec.name] = spec_to_file(spec, base).render()

    def recreate(
        self, spec: ContainerSpec, image: Image, base: NspawnFile | None = None, keep_old: bool = False
    ) -> None:
        assert self.holding == spec.name
        self.calls.append(f"recreate {spec.name}" + (" (old kept)" if keep_old else ""))
        self.files[spec.name] = spec_to_file(spec, base).render()

    def finish_recreate(self, name: str) -> None:
        self.calls.append(f"finish_recreate {name}")

    def undo_recreate(self, name: str, path: Path, previous: NspawnFile) -> None:
        assert self.holding == name
        self.calls.append(f"undo_recreate {name}")
        self.files[name] = previous.render()

    def restore_definition(self, name: str, path: Path, previous: NspawnFile) -> None:
        assert self.holding == name
        self.calls.append(f"restore_definition {name}")
        self.files[name] = previous.render()

    def remove(self, name: str) -> None:
        self.calls.append(f"store.remove {name}")
        self.files.pop(name, None)


@dataclass
class FakeImages:
    known: dict[str, Image] = field(default_factory=lambda: {"e2e/busybox:latest": IMG})
    pullable: dict[str, Image] = field(default_factory=dict)
    pulls: list[str] = field(default_factory=list)

    def get(self, ref: str) -> Image:
        if ref not in self.known:
            raise ImageNotFound(f"no such image: {ref}")
        return self.known[ref]

    def pull(self, ref: str) -> Any:
        self.pulls.append(ref)
        if ref not in self.pullable:
            raise FetchError(f"cannot reach {ref}")
        self.known[ref] = self.pullable[ref]
        return type("R", (), {"image": self.pullable[ref]})()


@dataclass
class FakeContainers:
    store: FakeStore
    running: set[str] = field(default_factory=set)
    enabled: set[str] = field(default_factory=set)

    def _call(self, what: str) -> None:
        self.store.calls.append(what)

    def get(self, name: str) -> Any:
        return type("S", (), {"running": name in self.running})()

    def start(self, name: str) -> None:
        assert not self.store.holding  # a start takes the container's lock itself
        self._call(f"start {name}")
        self.running.add(name)

    def stop(self, name: str, timeout: float = 10) -> None:
        assert not self.store.holding  # never held across a wait for the unit
        self._call(f"stop {name}")
        self.running.discard(name)

    @contextlib.contextmanager
    def rewriting(self, name: str) -> Iterator[None]:
        with self.store.locked(name):
            if name in self.running:
                raise ContainerRunning(f"container {name} was started meanwhile")
            yield

    def persist(self, name: str) -> None:
        self._call(f"persist {name}")

    def enable(self, name: str) -> None:
        self._call(f"enable {name}")
        self.enabled.add(name)

    def disable(self, name: str) -> None:
        self._call(f"disable {name}")
        self.enabled.discard(name)

    def is_enabled(self, name: str) -> bool:
        return name in self.enabled

    def unpersist(self, name: str) -> None:
        self._call(f"unpersist {name}")
        self.enabled.discard(name)

    def remove(self, name: str, force: bool = False) -> None:
        self._call(f"remove {name}")
        del self.store.files[name]
        self.running.discard(name)
        self.enabled.discard(name)


class FailingStart(FakeContainers):
    def start(self, name: str) -> None:
        from nspawnctl.errors import SystemdError

        self._call(f"start {name}")
        raise SystemdError(f"container {name} failed to start: boom")


class StartFailsOnce(FakeContainers):
    """The first start (the new definition's) fails; the one after it (the old's) works."""

    failed: bool = False

    def start(self, name: str) -> None:
        from nspawnctl.errors import SystemdError

        if not self.failed:
            self.failed = True
            self._call(f"start {name} (fails)")
            raise SystemdError(f"container {name} failed to start: boom")
        super().start(name)


class FakeClient:
    def __init__(self) -> None:
        self.paths = None
        self.images = FakeImages()
        self.containers = FakeContainers(FakeStore())


WEB = """# the web server
[Exec]
Parameters=sh -c 'echo up; sleep 600'
Environment=GREETING=hello

[X-Nspawnctl]
Image=e2e/busybox:latest
Network=host
"""


def write(d: Path, name: str, text: str) -> Path:
    p = d / f"{name}.nspawn"
    p.write_text(text)
    return p


# -- loading and its errors ---------------------------------------------------------------------
def test_load_dir_sorted_names_from_files(tmp_path: Path) -> None:
    write(tmp_path, "web", WEB)
    write(tmp_path, "db", WEB)
    (tmp_path / "README").write_text("not a definition")
    defs = declare.load(tmp_path)
    assert [d.name for d in defs] == ["db", "web"]
    assert defs[1].image == "e2e/busybox:latest" and defs[1].enable


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("[Exec]\nBoot=no\nnonsense\n", ":3:", "expected KEY=VALUE"),
        ("[Exec\n", ":1:", "invalid section header"),
        ("[Exec]\nBoot=no\n", "x.nspawn: no Image= in [X-Nspawnctl]", ""),
        ("[X-Nspawnctl]\nImage=a\nNetwork=bridge\n", ":3:", "invalid network"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=veth\nPublish=80\n", ":4:", "invalid port mapping"),
        ("[X-Nspawnctl]\nImage=a\n\nRestart=sometimes\n", ":4:", "invalid restart policy"),
        ("[X-Nspawnctl]\nImage=a\nRestrat=always\n", ":3:", "unknown key"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=host\nPublish=8080:80\n", ":4:", "needs a network of"),
        ("[X-Nspawnctl]\nImage=a\nEnable=maybe\n", ":3:", "not a boolean"),
        ("[X-Nspawnctl]\nImage=a\nMemoryMax=lots\n", ":3:", "invalid size"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=veth\nPublish=8080:80\nPublish=8080:81\n", ":5:", "twice"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=veth\nPublish=127.0.0.1:53:53/udp\n", ":4:", "UDP"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=veth\nPublish=[::1]8080:80\n", ":4:", "invalid port"),
        ("[Files]\nBind=/tmp:/data:bogus\n[X-Nspawnctl]\nImage=a\n", ":2:", "unknown bind option"),
        ("[Network]\nBridge=nsp-no-such-br\n[X-Nspawnctl]\nImage=a\n", ":2:", "no bridge nsp-no-such"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=bridge:nsp-no-br\n", ":3:", "no bridge nsp-no-br"),
        ("[Network]\nBridge=a/b\n[X-Nspawnctl]\nImage=a\n", ":2:", "invalid interface name"),
        ("[Network]\nPrivate=yes\n[X-Nspawnctl]\nImage=a\nNetwork=veth\n", ":2:", "keep one of them"),
        ("[Network]\nPrivate=maybe\n[X-Nspawnctl]\nImage=a\n", ":2:", "not a boolean"),
        ("[Exec]\nEnvironment=NOEQUALS\n[X-Nspawnctl]\nImage=a\n", ":2:", "is not KEY=VALUE"),
        ("[Exec]\nParameters=sh -c 'open\n[X-Nspawnctl]\nImage=a\n", ":2:", "unterminated quote"),
        ("[Files]\nBind=/nonexistent-dir-xyz:/data\n[X-Nspawnctl]\nImage=a\n", ":2:", "does not exist"),
        ("[Network]\nZone=way-too-long-zone\n[X-Nspawnctl]\nImage=a\n", ":2:", "invalid zone"),
        ("[Network]\nPort=nope\n[X-Nspawnctl]\nImage=a\n", ":2:", "invalid port"),
        # found by the fuzzer (tests/fuzz/corpus/nspawn): digits that int() refuses crashed apply
        ("[Network]\nPort=\u00b2:80\n[X-Nspawnctl]\nImage=a\n", ":2:", "invalid port"),
        ("[X-Nspawnctl]\nImage=a\nNetwork=veth\nPublish=80:" + "9" * 5000 + "\n", ":4:", "invalid port"),
        ("[X-Nspawnctl]\nImage=a\nTasksMax=\u00b2\n", ":3:", "not a whole number of processes"),
        ("[X-Nspawnctl]\nImage=a\nUnsetEnvironment=A=1\n", ":3:", "takes variable names"),
    ],
)
def test_definition_errors_name_file_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    p = write(tmp_path, "x", text)
    with pytest.raises(DefinitionError) as e:
        declare.load(p)
    assert where in e.value.message and what in e.value.message
    assert e.value.message.startswith(str(p))


def test_every_files_errors_are_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a", "[X-Nspawnctl]\nImage=x\nRestart=bad\n")
    write(tmp_path, "b", "[Exec]\nbroken\n")
    with pytest.raises(DefinitionError) as e:
        declare.load(tmp_path)
    assert f"{tmp_path}/a.nspawn:3:" in e.value.message and f"{tmp_path}/b.nspawn:2:" in e.value.message


def test_the_file_name_must_be_a_container_name(tmp_path: Path) -> None:
    p = write(tmp_path, "bad_name_", WEB)
    with pytest.raises(DefinitionError, match=r"bad_name_\.nspawn: the file's name is the container's name"):
        declare.load(p)
    (d,) = declare.load(write(tmp_path, "my_app", WEB))  # a docker name: machine my-app, kept as given
    assert (d.name, d.given, d.shown) == ("my-app", "my_app", "my_app")
    other = tmp_path / "web.conf"
    other.write_text(WEB)
    with pytest.raises(DefinitionError, match=r"named NAME\.nspawn"):
        declare.load(other)


# -- what the container would be ------------------------------------------------------------
def test_desired_fills_in_the_images_defaults(tmp_path: Path) -> None:
    d = declare.load(write(tmp_path, "web", "[X-Nspawnctl]\nImage=e2e/busybox:latest\nMemoryMax=64M\n"))[0]
    spec, f, notices = declare.desired(d, IMG)
    assert spec.command == ["sh"] and spec.env == ["PATH=/usr/bin:/bin"]
    assert spec.network == "veth" and spec.private_users and spec.limits.memory == MemoryBytes(64 << 20)
    assert f.get("X-Nspawnctl", "ImageId") == IMG.id and f.get("Exec", "PrivateUsers") == "pick"
    assert notices == []


def test_default_network_without_networkd_comes_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: False)
    d = declare.load(write(tmp_path, "web", "[X-Nspawnctl]\nImage=e2e/busybox:latest\n"))[0]
    spec, _, notices = declare.desired(d, IMG)
    assert spec.network == "host" and len(notices) == 1 and notices[0].startswith("web: ")


def test_user_keys_and_comments_survive_and_volumes_are_idmapped(tmp_path: Path) -> None:
    text = "# mine\n[Exec]\nCapability=CAP_NET_ADMIN\n[Files]\nBind=/tmp:/data\n" + WEB.split("\n", 1)[1]
    d = declare.load(write(tmp_path, "web", text))[0]
    spec, f, _ = declare.desired(d, IMG)
    out = f.render()
    assert out.startswith("# mine\n") and "Capability=CAP_NET_ADMIN" in out
    assert spec.volumes == [Volume("/tmp", "/data", options=("idmap",))]
    assert spec.env == ["PATH=/usr/bin:/bin", "GREETING=hello"]
    assert spec.command == ["sh", "-c", "echo up; sleep 600"]


def test_privateusers_no_is_the_opt_out(tmp_path: Path) -> None:
    d = declare.load(write(tmp_path, "web", "[Exec]\nPrivateUsers=no\n" + WEB.split("\n", 1)[1]))[0]
    spec, f, _ = declare.desired(d, IMG)
    assert not spec.private_users and f.get("Files", "PrivateUsersOwnership") is None


def test_merge_env_bare_keys_unset_the_images_and_stay_last() -> None:
    assert merge_env(["A=1", "B=2"], ["B", "C=3"]) == ["A=1", "C=3", "B"]
    assert merge_env(["A=1"], ["A", "A=4"]) == ["A=4"]


def test_merge_env_keeps_first_place_and_last_value() -> None:
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4", "A=1"]) == ["A=1", "B=3", "C=4"]


# -- plan: create, unchanged, update, recreate ------------------------------------------------
def test_plan_classifies(tmp_path: Path) -> None:
    client = FakeClient()
    p = write(tmp_path, "web", WEB)
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "create" and item.spec is not None
    outcomes = declare.apply(client, p)  # type: ignore[arg-type]
    assert [o.text for o in outcomes] == ["web created"]
    assert client.containers.store.calls == ["create web", "persist web", "start web", "enable web"]
    installed = client.containers.store.get("web")

    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "unchanged" and item.changes == []
    assert item.spec is not None and item.spec.id == installed.id  # the Id (and the logs) stay

    write(tmp_path, "web", WEB.replace("sleep 600", "sleep 601"))
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "update" and item.needs_restart
    assert [str(c) for c in item.changes] == [
        "[Exec] Parameters: sh -c 'echo up; sleep 600' -> sh -c 'echo up; sleep 601'"
    ]

    write(tmp_path, "web", WEB + "Enable=no\n")
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "update" and not item.needs_restart

    client.images.known["e2e/busybox:latest"] = IMG2
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "recreate"
    assert item.spec is not None and item.spec.id != installed.id


def test_a_file_named_with_underscores_is_that_container_under_its_machine_name(tmp_path: Path) -> None:
    """my_app.nspawn: container my_app, machine my-app (names.py); my-app.nspawn is then taken."""
    client = FakeClient()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    p = write(tmp_path / "a", "my_app", WEB)
    assert [o.text for o in declare.apply(client, p)] == ["my_app created"]  # type: ignore[arg-type]
    store = client.containers.store
    assert store.calls[0] == "create my-app" and "Name=my_app" in store.files["my-app"]
    assert store.get("my-app").display_name == "my_app"
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "unchanged" and item.changes == []
    other = write(tmp_path / "b", "my-app", WEB)
    with pytest.raises(DefinitionError, match="container 'my_app'"):
        declare.plan(client, declare.load(other))  # type: ignore[arg-type]
    assert [(o.name, o.action) for o in declare.down(client, other)] == [("my-app", "missing")]  # type: ignore[arg-type]
    assert [(o.name, o.action) for o in declare.down(client, p)] == [("my_app", "removed")]  # type: ignore[arg-type]


def test_apply_restarts_only_what_changed(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "web", WEB)
    write(tmp_path, "db", WEB.replace("Network=host\n", "Network=host\nEnable=no\n"))
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    calls = client.containers.store.calls
    assert "enable db" not in calls and "enable web" in calls
    calls.clear()
    write(tmp_path, "web", WEB.replace("GREETING=hello", "GREETING=bye"))
    texts = [o.text for o in declare.apply(client, tmp_path)]  # type: ignore[arg-type]
    assert texts == ["db unchanged", "web updated (restarted)"]
    assert calls == ["stop web", "rewrite web", "persist web", "start web", "enable web"]
    calls.clear()
    client.containers.running.discard("db")
    texts = [o.text for o in declare.apply(client, tmp_path)]  # type: ignore[arg-type]
    assert texts == ["db unchanged (started)", "web unchanged"] and calls == ["start db"]


class StartedByAnother(FakeContainers):
    """Another command starts the container again right after apply's stop."""

    def stop(self, name: str, timeout: float = 10) -> None:
        self._call(f"stop {name}")


def test_apply_leaves_a_container_started_meanwhile_as_it_is(tmp_path: Path) -> None:
    """review 18 #4: the rewrite is refused under a start that read the old definition."""
    client = FakeClient()
    write(tmp_path, "web", WEB)
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    store = client.containers.store
    client.containers = StartedByAnother(store, running={"web"})
    before = store.files["web"]
    store.calls.clear()
    write(tmp_path, "web", WEB.replace("GREETING=hello", "GREETING=bye"))
    [outcome] = declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert outcome.action == "failed" and outcome.text == "web failed: container web was started meanwhile"
    assert store.calls == ["stop web"] and store.files["web"] == before  # not rolled back: untouched


def test_a_missing_image_is_pulled_and_an_unpullable_one_changes_nothing(tmp_path: Path) -> None:
    client = FakeClient()
    client.images.pullable["example.org/app:1"] = IMG2
    write(tmp_path, "a", WEB.replace("e2e/busybox:latest", "example.org/app:1"))
    write(tmp_path, "b", WEB)
    p = write(tmp_path, "c", "# c\n[X-Nspawnctl]\nNetwork=host\n\nImage=nowhere.invalid/x:1\n")
    with pytest.raises(DefinitionError) as e:
        declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert f"{p}:5: image nowhere.invalid/x:1 is not here and cannot be pulled" in e.value.message
    assert client.containers.store.calls == []  # nothing created, nothing started
    assert client.images.pulls == ["example.org/app:1", "nowhere.invalid/x:1"]
    p.unlink()
    assert [o.action for o in declare.apply(client, tmp_path)] == ["created", "created"]  # type: ignore[arg-type]


def test_diff_does_not_pull(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "a", WEB.replace("e2e/busybox:latest", "example.org/app:1"))
    [item] = declare.plan(client, declare.load(tmp_path), pull=False)  # type: ignore[arg-type]
    assert item.action == "create" and item.image is None and client.images.pulls == []


def test_names_taken_by_others_are_refused(tmp_path: Path) -> None:
    client = FakeClient()
    with pytest.raises(DefinitionError, match="taken by a machine nspawnctl did not make"):
        declare.plan(client, declare.load(write(tmp_path, "foreign", WEB)))  # type: ignore[arg-type]


def test_down_skips_missing_names(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "web", WEB)
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    write(tmp_path, "gone", "[broken")  # only names matter to down
    client.containers.store.calls.clear()
    outcomes = declare.down(client, tmp_path)  # type: ignore[arg-type]
    assert [(o.name, o.action) for o in outcomes] == [("gone", "missing"), ("web", "removed")]
    assert client.containers.store.calls == ["disable web", "stop web", "remove web"]


# -- generate --------------------------------------------------------------------------------
def test_generate_then_apply_makes_an_equal_container(tmp_path: Path) -> None:
    client = FakeClient()
    spec = ContainerSpec(
        name="web",
        id="0123456789abcdef0123456789abcdef",
        image="e2e/busybox:latest",
        image_id=IMG.id,
        created="2026-01-02T00:00:00+00:00",
        command=["/entry", "sh", "-c", "echo 'it''s'; sleep 1"],
        entrypoint=["/entry"],
        env=["PATH=/usr/bin:/bin", "A=two words", "B=$x", "GONE"],  # GONE: the API's bare Env
        volumes=[Volume("/tmp", "/data", options=("idmap",))],
        workdir="/srv",
        network="veth",
        ports=[PortMapping(8080, 80)],
        restart="on-failure",
        private_users=True,
        auto_remove=False,
    )
    client.containers.store.files["web"] = spec_to_file(spec).render()
    assert "Enable=no" in declare.generate(client, "web")  # type: ignore[arg-type]
    client.containers.enabled.add("web")
    text = declare.generate(client, "web")  # type: ignore[arg-type]
    assert "Enable" not in text
    f = NspawnFile.parse(text)
    assert f.get("X-Nspawnctl", "Id") is None and f.get("X-Nspawnctl", "ImageId") is None
    assert f.get("X-Nspawnctl", "Created") is None and f.get("X-Nspawnctl", "Image") == "e2e/busybox:latest"
    assert f.get_all("Exec", "Environment") == ["PATH=/usr/bin:/bin", "'A=two words'", "B=$x"]
    assert f.get("X-Nspawnctl", "UnsetEnvironment") == "GONE"
    assert f.get_words("Exec", "Parameters") == spec.command
    # the container is gone; apply of the generated file makes the same one
    installed = client.containers.store.files.pop("web")
    d = declare.load(write(tmp_path, "web", text))[0]
    new, f2, _ = declare.desired(d, IMG)
    assert replace(new, id=spec.id, created=spec.created) == spec
    assert declare.changes(NspawnFile.parse(installed), f2) == []


def test_generate_then_apply_keeps_every_run_option(tmp_path: Path) -> None:
    """Issue 14's run options, health check, labels and stop signal survive generate -> apply
    (tests/e2e/test_generate_roundtrip.py checks the same in the booted host, by behaviour)."""
    from nspawnctl.health import HealthConfig
    from nspawnctl.runflags import Mount, SettingsInput, build

    tmpfs = Mount.parse("type=tmpfs,target=/mt,tmpfs-size=4M,tmpfs-mode=1770").tmpfs
    assert tmpfs is not None
    settings = build(
        SettingsInput(
            read_only=True, tmpfs=["/tt:mode=1770,size=3M", "/x:ro,noexec"], cap_add=["SYS_TIME"],
            cap_drop=["NET_RAW", "CHOWN"], security_opt=["no-new-privileges", "seccomp=unconfined"],
            init=True, stop_timeout="7", add_host=["foo:10.1.2.3"], dns=["10.0.0.53"],
            dns_search=["example.com"], ulimit=["nofile=1000:2000", "nproc=-1"],
            device=["/dev/null:/dev/n:rw"], shm_size="32M",
            sysctl=["net.ipv4.ip_forward=1", "kernel.msgmax=65536"], cpuset_cpus="0",
            oom_score_adj="100", cpu_shares="512", memory_swap="1G",
        ),
        [tmpfs],
    )  # fmt: skip
    spec = ContainerSpec(
        name="opts",
        id="0123456789abcdef0123456789abcdef",
        image="e2e/busybox:latest",
        image_id=IMG.id,
        created="2026-01-02T00:00:00+00:00",
        command=["sh", "/ro/probe.sh"],
        env=["PATH=/usr/bin:/bin", "X=1"],
        volumes=[Volume("/tmp", "/ro", read_only=True, options=("idmap",))],
        workdir="/work/dir",
        network="veth",
        ports=[PortMapping(32768, 8080)],
        private_users=True,
        stop_signal="SIGUSR1",
        settings=settings,
        health=HealthConfig(["CMD-SHELL", "exit 0"], interval=3600 * 10**9, retries=2),
        labels={"a": "b"},
    )
    for privileged in (False, True):
        if privileged:
            spec = replace(spec, settings=replace(settings, privileged=True, cap_add=("all",), cap_drop=()))
        client = FakeClient()
        client.containers.store.files["opts"] = spec_to_file(spec).render()
        client.containers.enabled.add("opts")  # (else Enable=no: the one key run's file lacks)
        text = declare.generate(client, "opts")  # type: ignore[arg-type]
        installed = client.containers.store.files.pop("opts")
        d = declare.load(write(tmp_path, "opts", text))[0]
        new, f, _ = declare.desired(d, IMG)
        assert replace(new, id=spec.id, created=spec.created) == spec
        assert declare.changes(NspawnFile.parse(installed), f) == []


# -- run/create options ----------------------------------------------------------------------
def test_run_options_network_ports_restart_userns(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _network_and_userns(RunOptions()) == ("veth", True, None)
    assert _network_and_userns(RunOptions(userns="host", network="none")) == ("none", False, None)
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: False)
    network, _, notice = _network_and_userns(RunOptions())
    assert network == "host" and notice
    assert _network_and_userns(RunOptions(ports=[PortMapping(80, 80)]))[0] == "veth"
    with pytest.raises(InvalidArgument, match="-p needs a network of the container's own"):
        _network_and_userns(RunOptions(network="host", ports=[PortMapping(80, 80)]))
    with pytest.raises(InvalidArgument, match="--restart cannot be combined with --rm"):
        _network_and_userns(RunOptions(restart="always", auto_remove=True))
    with pytest.raises(InvalidArgument, match="--userns"):
        _network_and_userns(RunOptions(userns="root"))


def test_cli_options_parse_into_run_options() -> None:
    from nspawnctl.cli.containers import _options

    opts: Any = _options(
        "web", [], [], ["/tmp:/data"], None, None, None, False, None, None, None, False, None,
        "zone:lab", ["127.0.0.1:8080:80", "53:53/udp"], "on-failure", "auto",
    )  # fmt: skip
    assert opts.network == "zone:lab" and opts.restart == "on-failure" and opts.userns == "auto"
    assert opts.ports == [PortMapping(8080, 80, "tcp", "127.0.0.1"), PortMapping(53, 53, "udp")]
    with pytest.raises(InvalidArgument):
        _options("w", [], [], [], None, None, None, False, None, None, None, False, None, "bad/net")


def test_apply_enables_again_what_was_disabled_by_hand(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "web", WEB)
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    client.containers.enabled.clear()
    client.containers.store.calls.clear()
    assert [o.text for o in declare.apply(client, tmp_path)] == ["web unchanged"]  # type: ignore[arg-type]
    assert client.containers.store.calls == ["persist web", "enable web"]


# -- a bridge of the host: nspawn's own Bridge=, passed through ---------------------------------
@pytest.fixture
def bridges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/sys/class/net with one bridge, br0."""
    sys_net = tmp_path / "sys-net"
    (sys_net / "br0" / "bridge").mkdir(parents=True)
    (sys_net / "eth0").mkdir()
    monkeypatch.setattr(declare, "SYS_NET", sys_net)
    return sys_net


def test_a_hand_written_bridge_is_passed_through_never_the_hosts_network(
    tmp_path: Path, bridges: Path
) -> None:
    text = "[Network]\nBridge=br0\nVirtualEthernetExtra=a:b\n[X-Nspawnctl]\nImage=e2e/busybox:latest\n"
    d = declare.load(write(tmp_path, "web", text))[0]
    spec, f, _ = declare.desired(d, IMG)
    assert spec.network == "bridge:br0"
    assert f.get("Network", "Bridge") == "br0" and f.get("Network", "VirtualEthernetExtra") == "a:b"
    assert f.get("Network", "Private") is None and f.get("Exec", "ResolvConf") is None
    assert file_to_spec("web", f).network == "bridge:br0"  # read back the same
    with pytest.raises(DefinitionError, match="Bridge=eth0: there is no bridge eth0"):
        declare.load(write(tmp_path, "web", text.replace("br0", "eth0")))
    with pytest.raises(DefinitionError, match=r"web\.nspawn:2: Zone= and Bridge= cannot both be set"):
        declare.load(write(tmp_path, "web", text.replace("[Network]\n", "[Network]\nZone=z\n")))
    with pytest.raises(DefinitionError, match=r":2: publishing 80:80/tcp needs a network of the container"):
        declare.load(write(tmp_path, "web", text.replace("[Network]\n", "[Network]\nPort=80\n")))


def test_network_bridge_in_own_key_agrees_with_nspawns(tmp_path: Path, bridges: Path) -> None:
    text = "[Network]\nBridge=br0\n[X-Nspawnctl]\nImage=e2e/busybox:latest\nNetwork=bridge:br0\n"
    spec, f, _ = declare.desired(declare.load(write(tmp_path, "web", text))[0], IMG)
    assert spec.network == "bridge:br0" and f.get("Network", "Bridge") == "br0"
    with pytest.raises(
        DefinitionError, match=r":2: \[Network\] Bridge=br0 means network bridge:br0, but .*:5 says"
    ):
        declare.load(write(tmp_path, "web", text.replace("Network=bridge:br0", "Network=host")))


# -- plan: what the host must give before anything changes ---------------------------------------
PORTED = WEB.replace("Network=host\n", "Network=veth\nPublish=8080:80\n")


def test_two_files_publishing_one_port_change_nothing(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "a", PORTED)
    b = write(tmp_path, "b", PORTED.replace("Publish=8080:80", "Publish=8081:81\nPublish=8080:80"))
    with pytest.raises(
        DefinitionError, match=rf"{b}:10: port 8080/tcp is published by a too \(.*a\.nspawn:9\)"
    ):
        declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert client.containers.store.calls == []


def test_a_port_taken_on_the_host_is_reported_at_its_line(tmp_path: Path, host: list[str]) -> None:
    client = FakeClient()
    host.append("8080")
    p = write(tmp_path, "a", PORTED)
    with pytest.raises(DefinitionError, match=rf"{p}:9: port 8080/tcp is already in use"):
        declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert client.containers.store.calls == []


def test_ports_a_running_container_holds_are_its_own(
    tmp_path: Path, host: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nspawnctl.net.statefile import NetState

    client = FakeClient()
    write(tmp_path, "a", PORTED)
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    host.append("8080")  # now held by a itself
    state = NetState("a", "veth", "nspawnctl-a", "ve-a", ports=["8080:80/tcp"])
    monkeypatch.setattr("nspawnctl.net.state", lambda name: state if name == "a" else None)
    write(tmp_path, "a", PORTED.replace("GREETING=hello", "GREETING=bye"))
    assert [o.text for o in declare.apply(client, tmp_path)] == ["a updated (restarted)"]  # type: ignore[arg-type]
    write(tmp_path, "a", PORTED.replace("Publish=8080:80", "Publish=8080:80\nPublish=8080:80/udp"))
    with pytest.raises(DefinitionError, match=r"a\.nspawn:10: port 8080/udp is already in use"):
        declare.plan(client, declare.load(tmp_path))  # type: ignore[arg-type]


def test_veth_without_networkd_is_refused_at_the_line_that_chose_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: False)
    client = FakeClient()
    p = write(tmp_path, "a", WEB.replace("Network=host", "Network=zone:lab"))
    with pytest.raises(DefinitionError, match=rf"{p}:8: network zone:lab needs systemd-networkd"):
        declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    p = write(tmp_path, "a", WEB.replace("Network=host\n", "Publish=8080:80\n"))  # -p implies veth
    with pytest.raises(DefinitionError, match=rf"{p}:8: network veth needs systemd-networkd"):
        declare.plan(client, declare.load(p))  # type: ignore[arg-type]


def test_a_running_unchanged_container_needs_nothing_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: list[str]
) -> None:
    client = FakeClient()
    p = write(tmp_path, "a", PORTED)
    declare.apply(client, p)  # type: ignore[arg-type]
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: False)
    host.append("8080")
    assert [i.action for i in declare.plan(client, declare.load(p))] == ["unchanged"]  # type: ignore[arg-type]
    client.containers.running.clear()  # stopped: apply would start it, and that cannot work
    with pytest.raises(DefinitionError, match="needs systemd-networkd"):
        declare.plan(client, declare.load(p))  # type: ignore[arg-type]


def test_a_created_container_that_cannot_start_is_removed_again(tmp_path: Path) -> None:
    client = FakeClient()
    client.containers = FailingStart(client.containers.store)
    write(tmp_path, "web", WEB)
    [outcome] = declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert outcome.action == "failed" and outcome.error is not None
    assert outcome.text == "web failed: container web failed to start: boom; it was removed again"
    assert client.containers.store.calls == [
        "create web",
        "persist web",
        "start web",
        "unpersist web",
        "remove web",
    ]
    assert client.containers.store.files == {} and client.containers.enabled == set()


def test_a_failed_removal_still_cleans_up_what_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nspawnctl.errors import SystemdError

    class RemoveFails(FailingStart):
        def remove(self, name: str, force: bool = False) -> None:
            self._call(f"remove {name}")
            raise SystemdError("cannot reset the unit")

    client = FakeClient()
    client.containers = RemoveFails(client.containers.store)
    downs: list[str] = []
    monkeypatch.setattr("nspawnctl.net.down", lambda paths, name: downs.append(name))
    write(tmp_path, "web", WEB)
    [outcome] = declare.apply(client, tmp_path)  # type: ignore[arg-type]
    assert outcome.action == "failed"
    assert outcome.text == (
        "web failed: container web failed to start: boom; removing it failed too "
        "(container: cannot reset the unit): nspawnctl rm -f web"
    )
    calls = client.containers.store.calls
    assert calls == [
        "create web",
        "persist web",
        "start web",
        "unpersist web",
        "remove web",
        "store.remove web",
    ]
    assert downs == ["web"] and client.containers.store.files == {}


@pytest.mark.parametrize("recreate", [False, True])
def test_a_changed_container_that_cannot_start_gets_its_previous_definition_back(
    tmp_path: Path, recreate: bool
) -> None:
    client = FakeClient()
    p = write(tmp_path, "web", WEB)
    declare.apply(client, p)  # type: ignore[arg-type]
    before = client.containers.store.files["web"]
    client.containers = StartFailsOnce(client.containers.store, running={"web"}, enabled={"web"})
    calls = client.containers.store.calls
    calls.clear()
    if recreate:
        client.images.known["e2e/busybox:latest"] = IMG2
    else:
        write(tmp_path, "web", WEB.replace("sleep 600", "sleep 601"))
    [outcome] = declare.apply(client, p)  # type: ignore[arg-type]
    what = "recreate" if recreate else "update"
    assert outcome.action == "failed" and outcome.error is not None
    assert outcome.text == (
        f"web: {what} failed (container web failed to start: boom); the previous definition is running again"
    )
    change, undo = (
        ("recreate web (old kept)", "undo_recreate web")
        if recreate
        else ("rewrite web", "restore_definition web")
    )
    assert calls == ["stop web", change, "persist web", "start web (fails)", "stop web", undo, "persist web",
                     "start web"]  # fmt: skip
    assert client.containers.store.files["web"] == before
    assert client.containers.running == {"web"} and client.containers.enabled == {"web"}


def test_a_recreate_that_starts_drops_the_old_root(tmp_path: Path) -> None:
    client = FakeClient()
    p = write(tmp_path, "web", WEB)
    declare.apply(client, p)  # type: ignore[arg-type]
    calls = client.containers.store.calls
    calls.clear()
    client.images.known["e2e/busybox:latest"] = IMG2
    [outcome] = declare.apply(client, p)  # type: ignore[arg-type]
    assert outcome.text == "web recreated (new image, restarted)"
    assert calls == ["stop web", "recreate web (old kept)", "persist web", "start web", "finish_recreate web",
                     "enable web"]  # fmt: skip


def test_the_recorded_network_stays_when_the_file_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    p = write(tmp_path, "web", WEB.replace("Network=host\n", ""))
    declare.apply(client, p)  # type: ignore[arg-type]
    assert client.containers.store.get("web").network == "veth"
    monkeypatch.setattr("nspawnctl.net.detect.networkd_running", lambda: False)
    client.containers.running.clear()
    monkeypatch.setattr(declare, "_check_host", lambda client, items: [])  # networkd is not the point here
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.action == "unchanged" and item.spec is not None and item.spec.network == "veth"
    client.containers.store.files.clear()  # a new container: the default is decided now
    [item] = declare.plan(client, declare.load(p))  # type: ignore[arg-type]
    assert item.spec is not None and item.spec.network == "host" and item.notices


def test_volumes_on_filesystems_without_idmap_are_mounted_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nspawnctl.idmap.fs_type", lambda path: "nfs4" if path == "/tmp" else "btrfs")
    text = (
        "[Files]\nBind=/tmp:/data\nBind=/:/root-of-host:noidmap\nBindReadOnly=/var:/v\n"
        + WEB.split("\n", 1)[1]
    )
    spec, f, notices = declare.desired(declare.load(write(tmp_path, "web", text))[0], IMG)
    assert spec.volumes == [
        Volume("/tmp", "/data"),
        Volume("/", "/root-of-host", options=("noidmap",)),
        Volume("/var", "/v", True, ("idmap",)),
    ]
    assert f.get_all("Files", "Bind") == ["/tmp:/data", "/:/root-of-host:noidmap"]
    assert notices == [
        "web: volume /tmp is on nfs4, which cannot be ID-mapped: root in the container may not be able "
        "to write to it; use --userns host or :noidmap to silence"
    ]


# -- down, store -----------------------------------------------------------------------------
def test_down_checks_every_name_before_removing_anything(tmp_path: Path) -> None:
    client = FakeClient()
    write(tmp_path, "web", WEB)
    declare.apply(client, tmp_path)  # type: ignore[arg-type]
    write(tmp_path, "bad_name_", WEB)
    client.containers.store.calls.clear()
    with pytest.raises(DefinitionError, match=r"bad_name_\.nspawn: the file's name"):
        declare.down(client, tmp_path)  # type: ignore[arg-type]
    assert client.containers.store.calls == [] and "web" in client.containers.store.files


def test_recreate_swaps_in_a_staged_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from nspawnctl.config import Paths
    from nspawnctl.errors import PoolError
    from nspawnctl.store import btrfs
    from nspawnctl.store.containers import ContainerStore
    from nspawnctl.store.pool import Pool

    def snapshot(source: Path, dest: Path, read_only: bool = False) -> None:
        if "broken" in str(source):
            raise PoolError(f"cannot snapshot into {dest}")
        shutil.copytree(source, dest, symlinks=True)

    monkeypatch.setattr(btrfs, "snapshot", snapshot)
    monkeypatch.setattr(btrfs, "delete", lambda p: shutil.rmtree(p, ignore_errors=True))
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store", settings=tmp_path / "etc")
    paths.pool.mkdir()
    store = ContainerStore(Pool(paths))
    monkeypatch.setattr(Pool, "check", lambda self: None)
    old_img, new_img = tmp_path / "img1", tmp_path / "img2"
    (old_img / "etc").mkdir(parents=True)
    (old_img / "etc" / "v").write_text("1")
    (new_img / "etc").mkdir(parents=True)
    (new_img / "etc" / "v").write_text("2")
    spec = ContainerSpec(name="web", id="ab", image="x", image_id="1", created="now", command=["sh"])
    store.create(spec, replace(IMG, path=old_img))
    (paths.pool / "web" / "mine").write_text("written by the container")

    broken = replace(IMG, path=tmp_path / "broken")
    with pytest.raises(PoolError):
        store.recreate(replace(spec, image_id="2"), broken)
    assert (paths.pool / "web" / "mine").exists() and store.get("web").image_id == "1"  # untouched

    store.recreate(replace(spec, image_id="2"), replace(IMG, path=new_img))
    assert (paths.pool / "web" / "etc" / "v").read_text() == "2" and store.get("web").image_id == "2"
    assert sorted(p.name for p in paths.pool.iterdir()) == ["web"]  # nothing staged is left

    # kept aside until the new one has started; put back (root and definition) when it did not
    (paths.pool / "web" / "mine").write_text("written by the container")
    previous = store.definition("web")
    store.recreate(replace(spec, image_id="3"), replace(IMG, path=old_img), keep_old=True)
    assert (paths.pool / "web" / "etc" / "v").read_text() == "1" and store.get("web").image_id == "3"
    assert len(list(paths.pool.iterdir())) == 2
    store.undo_recreate("web", *previous)
    assert (paths.pool / "web" / "mine").exists() and store.get("web").image_id == "2"
    assert previous[0].read_text() == previous[1].render()
    assert sorted(p.name for p in paths.pool.iterdir()) == ["web"]
    store.recreate(replace(spec, image_id="3"), replace(IMG, path=old_img), keep_old=True)
    store.finish_recreate("web")
    assert not (paths.pool / "web" / "mine").exists() and store.get("web").image_id == "3"
    assert sorted(p.name for p in paths.pool.iterdir()) == ["web"]


def test_an_empty_publish_resets_the_list(tmp_path: Path) -> None:
    text = PORTED.replace("Publish=8080:80", "Publish=8080:80\nPublish=\nPublish=8080:80\nPublish=9090:90")
    d = declare.load(write(tmp_path, "a", text))[0]  # no "published twice"
    assert [(str(pm), at.rsplit(":", 1)[1]) for pm, at in declare.port_lines(d.file)] == [
        ("8080:80/tcp", "11"),
        ("9090:90/tcp", "12"),
    ]
    spec, _, _ = declare.desired(d, IMG)
    assert spec.ports == [PortMapping(8080, 80), PortMapping(9090, 90)]
