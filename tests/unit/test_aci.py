"""Tests for nspawnctl.formats.aci: manifest validation, run defaults, and matching the request."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from nspawnctl.errors import ArchiveError, InvalidReference, VerificationFailed
from nspawnctl.formats import aci
from nspawnctl.formats.aci import AciManifest, host_os_arch, split_name_version, valid_ac_name
from nspawnctl.spec import RunDefaults

FULL: dict[str, Any] = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [
        {"name": "version", "value": "1.0.0"},
        {"name": "arch", "value": "amd64"},
        {"name": "os", "value": "linux"},
    ],
    "app": {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "user": "100",
        "group": "300",
        "supplementaryGids": [400, 500],
        "eventHandlers": [{"exec": ["/usr/bin/data-downloader"], "name": "pre-start"}],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}, {"name": "A.b-c", "value": "x=y"}],
        "isolators": [{"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}}],
        "mountPoints": [
            {"name": "work", "path": "/var/lib/work", "readOnly": False},
            {"name": "conf", "path": "/etc/app", "readOnly": True},
        ],
        "ports": [
            {"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": True},
            {"name": "range", "port": 5000, "protocol": "udp", "count": 3},
        ],
    },
    "annotations": [
        {"name": "authors", "value": "Carly Container <carly@example.com>"},
        {"name": "created", "value": "2014-10-27T19:32:58.203Z"},
    ],
    "dependencies": [],
    "pathWhitelist": [],
}


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def manifest(**changes: Any) -> bytes:
    """FULL with top-level keys replaced (None deletes one)."""
    doc = copy.deepcopy(FULL)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return encode(doc)


def with_app(**changes: Any) -> bytes:
    app = copy.deepcopy(FULL["app"])
    for key, value in changes.items():
        if value is None:
            app.pop(key, None)
        else:
            app[key] = value
    return manifest(app=app)


# --- parsing ----------------------------------------------------------------------------------


def test_parse_full_manifest() -> None:
    m = AciManifest.parse(encode(FULL))
    assert m.name == "example.com/reduce-worker"
    assert m.labels == {"version": "1.0.0", "arch": "amd64", "os": "linux"}
    assert m.version == "1.0.0"
    assert m.annotations["authors"] == "Carly Container <carly@example.com>"
    assert m.app is not None and m.app["user"] == "100"
    assert m.raw == FULL


def test_parse_minimal_manifest() -> None:
    m = AciManifest.parse(b'{"acKind":"ImageManifest","acVersion":"0.1.0","name":"a"}')
    assert (m.name, m.labels, m.app, m.annotations, m.version) == ("a", {}, None, {}, None)
    assert m.run_defaults() == RunDefaults()
    assert m.ignored_fields() == []


@pytest.mark.parametrize("version", ["0.8.11", "0.0.1", "0.8.11-rc.1", "0.8.11+git", "0.10.0-alpha+build.5"])
def test_versions_of_spec_major_zero_accepted(version: str) -> None:
    assert AciManifest.parse(manifest(acVersion=version)).name == FULL["name"]


@pytest.mark.parametrize("name", ["a", "example.com/app", "a-b.c_d~e/f0", "0"])
def test_valid_names(name: str) -> None:
    assert AciManifest.parse(manifest(name=name)).name == name


def test_null_app_and_lists_are_absent() -> None:
    m = AciManifest.parse(manifest(app=None, labels=None, annotations=None))
    assert m.app is None and m.labels == {} and m.annotations == {}
    raw = json.loads(manifest())
    raw["app"] = None
    raw["labels"] = None
    raw["dependencies"] = None
    assert AciManifest.parse(encode(raw)).app is None


INVALID: list[tuple[bytes, str]] = [
    (b"not json", "it is not JSON"),
    (b"\xff\xfe\x00garbage", "it is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "it is not JSON"),
    (b"[]", "the manifest must be an object"),
    (manifest(acKind="PodManifest"), "acKind is 'PodManifest', not 'ImageManifest'"),
    (manifest(acKind=None), "acKind is None, not 'ImageManifest'"),
    (manifest(acVersion=None), "acVersion must be a string"),
    (manifest(acVersion="0.8"), "acVersion '0.8' is not a semantic version"),
    (manifest(acVersion="v0.8.1"), "is not a semantic version"),
    (manifest(acVersion="1.0.0"), "acVersion 1.0.0 is not an appc 0.x version"),
    (manifest(acVersion="9" * 5000 + ".0.0"), "is not an appc 0.x version"),  # int() refuses it
    (manifest(acVersion="\u0660.8.1"), "is not a semantic version"),
    (manifest(name=None), "name must be a string"),
    (manifest(name=""), "name '' is not a valid AC identifier"),
    (manifest(name="Example.com/App"), "is not a valid AC identifier"),
    (manifest(name="example.com/app:1.0"), "is not a valid AC identifier"),
    (manifest(name="a//b"), "is not a valid AC identifier"),
    (manifest(name="a/"), "is not a valid AC identifier"),
    (manifest(name="a\n"), "name contains a control character"),
    (manifest(labels={"version": "1"}), "labels must be a list"),
    (manifest(labels=[{"name": "version", "value": 1}]), "labels[0].value must be a string"),
    (manifest(labels=[{"name": "Version", "value": "1"}]), "labels[0].name 'Version' is not a valid"),
    (manifest(labels=[{"name": "os", "value": "linux"}] * 2), "labels has 'os' twice"),
    (manifest(labels=[{"name": "name", "value": "x"}]), "'name' cannot be a label"),
    (manifest(labels=["os"]), "labels[0] must be an object"),
    (manifest(annotations=[{"name": "a b", "value": "x"}]), "annotations[0].name 'a b' is not a valid"),
    (manifest(app=[]), "app must be an object"),
    (with_app(user=None), "app.user is required"),
    (with_app(user=""), "app.user is required"),
    (with_app(group=None), "app.group is required"),
    (with_app(user=0), "app.user must be a string"),
    (with_app(user="a:b"), "app.user 'a:b' is not a user name or number"),
    (with_app(exec="/bin/sh"), "app.exec must be a list"),
    (with_app(exec=["/bin/sh", 1]), "app.exec[1] must be a string"),
    (with_app(exec=[""]), "app.exec[0] is empty"),
    (with_app(workingDirectory="opt"), "app.workingDirectory 'opt' must be an absolute path"),
    (with_app(environment=[{"name": "1X", "value": "y"}]), "app.environment[0].name '1X' is not a valid"),
    (with_app(environment=[{"name": "A B", "value": "y"}]), "is not a valid environment variable name"),
    (with_app(environment=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]), "has 'A' twice"),
    (with_app(environment=[{"name": "A"}]), "app.environment[0].value must be a string"),
    (with_app(supplementaryGIDs=["wheel"]), "app.supplementaryGIDs[0] must be an integer"),
    (with_app(supplementaryGids=[True]), "app.supplementaryGids[0] must be an integer"),
    (with_app(supplementaryGids=[-1]), "app.supplementaryGids[0] is negative"),
    (
        with_app(mountPoints=[{"name": "Work", "path": "/w"}]),
        "app.mountPoints[0].name 'Work' is not a valid AC",
    ),
    (with_app(mountPoints=[{"name": "a.b", "path": "/w"}]), "is not a valid AC name"),
    (with_app(mountPoints=[{"name": "w", "path": "w"}]), "app.mountPoints[0].path 'w' must be an absolute"),
    (with_app(mountPoints=[{"name": "w"}]), "app.mountPoints[0].path must be a string"),
    (
        with_app(mountPoints=[{"name": "w", "path": "/w", "readOnly": "yes"}]),
        "readOnly must be true or false",
    ),
    (
        with_app(ports=[{"name": "p", "port": 0, "protocol": "tcp"}]),
        "app.ports[0].port 0 is not in the range",
    ),
    (with_app(ports=[{"name": "p", "port": 65536, "protocol": "tcp"}]), "not in the range 1-65535"),
    (
        with_app(ports=[{"name": "p", "port": "80", "protocol": "tcp"}]),
        "app.ports[0].port must be an integer",
    ),
    (with_app(ports=[{"name": "p", "port": 65535, "protocol": "tcp", "count": 2}]), "beyond 65535"),
    (with_app(ports=[{"name": "p", "port": 80, "protocol": "t/cp"}]), "is not a protocol name"),
    (with_app(ports=[{"name": "p", "port": 80}]), "app.ports[0].protocol must be a string"),
    (with_app(ports=[{"name": "P", "port": 80, "protocol": "tcp"}]), "app.ports[0].name 'P' is not a valid"),
    (with_app(eventHandlers=[{"name": "post-start", "exec": []}]), "'post-start' is not one of"),
    (with_app(eventHandlers=[{"name": "pre-start"}] * 2), "app.eventHandlers has 'pre-start' twice"),
    (with_app(isolators=[{"value": 1}]), "app.isolators[0].name must be a string"),
]


@pytest.mark.parametrize(("data", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_manifest(data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError) as e:
        AciManifest.parse(data)
    assert str(e.value).startswith("invalid ACI manifest: "), str(e.value)
    assert message in str(e.value), str(e.value)
    assert e.value.hint


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            manifest(dependencies=[{"imageName": "example.com/base"}]),
            "ACI dependencies (images layered under this one) are not supported by nspawnctl",
        ),
        (manifest(pathWhitelist=["/usr/bin/app"]), "ACI pathWhitelist is not supported by nspawnctl"),
        (
            with_app(user="/usr/bin/app"),
            "ACI app.user given as a path (/usr/bin/app) is not supported by nspawnctl",
        ),
        (
            with_app(group="/etc/app"),
            "ACI app.group given as a path (/etc/app) is not supported by nspawnctl",
        ),
    ],
    ids=["dependencies", "pathWhitelist", "user-path", "group-path"],
)
def test_unsupported_features_refused(data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError) as e:
        AciManifest.parse(data)
    assert str(e.value) == message
    assert e.value.hint


def test_both_spellings_of_supplementary_gids() -> None:
    for key in ("supplementaryGIDs", "supplementaryGids"):
        app = {k: v for k, v in FULL["app"].items() if k != "supplementaryGids"}
        m = AciManifest.parse(manifest(app={**app, key: [10, 20]}))
        assert m.app is not None and m.app[key] == [10, 20]
        assert f"app.{key}" in m.ignored_fields()


# --- run defaults -----------------------------------------------------------------------------


def test_run_defaults_mapping() -> None:
    d = AciManifest.parse(encode(FULL)).run_defaults()
    assert d == RunDefaults(
        command=["/usr/bin/reduce-worker", "--quiet"],
        env=["REDUCE_WORKER_DEBUG=true", "A.b-c=x=y"],
        workdir="/opt/work",
        user="100",
        boot=False,
        ports=["health:4000/tcp", "range:5000-5002/udp"],
        volumes=["work:/var/lib/work", "conf:/etc/app:ro"],
    )


@pytest.mark.parametrize(
    ("user", "group", "expected"),
    [
        ("root", "root", None),
        ("0", "0", None),
        ("root", "0", None),
        ("0", "root", None),
        ("app", "root", "app"),
        ("1000", "0", "1000"),
        ("root", "wheel", None),  # nspawn's User= has no group: app.group is reported instead
        ("app", "app", "app"),
        ("1000", "1000", "1000"),
    ],
)
def test_run_defaults_user(user: str, group: str, expected: str | None) -> None:
    assert AciManifest.parse(with_app(user=user, group=group)).run_defaults().user == expected


@pytest.mark.parametrize(("workdir", "expected"), [("/", None), (None, None), ("", None), ("/srv", "/srv")])
def test_run_defaults_workdir(workdir: str | None, expected: str | None) -> None:
    # None is a JSON null, which Go's decoder (and this parser) treats like an absent key.
    data = manifest(app={**FULL["app"], "workingDirectory": workdir})
    assert AciManifest.parse(data).run_defaults().workdir == expected
    assert AciManifest.parse(with_app(workingDirectory=None)).run_defaults().workdir is None


def test_run_defaults_of_bare_app() -> None:
    d = AciManifest.parse(manifest(app={"user": "0", "group": "0"})).run_defaults()
    assert d == RunDefaults()


def test_ignored_fields() -> None:
    assert AciManifest.parse(encode(FULL)).ignored_fields() == [
        "app.eventHandlers",
        "app.isolators",
        "app.supplementaryGids",
        "app.group",
        "app.ports.socketActivated",
    ]


# --- matching the request ----------------------------------------------------------------------


@pytest.fixture
def amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aci.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(aci.platform, "system", lambda: "Linux")


def test_check_matches_accepts_the_requested_image(amd64_host: None) -> None:
    m = AciManifest.parse(encode(FULL))
    m.check_matches("example.com/reduce-worker", {"version": "1.0.0", "os": "linux", "arch": "amd64"})
    m.check_matches("example.com/reduce-worker", {})


def test_check_matches_other_name() -> None:
    m = AciManifest.parse(encode(FULL))
    with pytest.raises(VerificationFailed) as e:
        m.check_matches("example.com/other", {})
    assert str(e.value) == "the ACI is named example.com/reduce-worker, not example.com/other"
    assert e.value.hint


def test_check_matches_wrong_arch(amd64_host: None) -> None:
    m = AciManifest.parse(
        manifest(labels=[{"name": "arch", "value": "aarch64"}, {"name": "os", "value": "linux"}])
    )
    with pytest.raises(VerificationFailed) as e:
        m.check_matches(m.name, {"os": "linux", "arch": "amd64"})
    assert str(e.value) == "the ACI is for arch aarch64, this host is amd64"
    assert e.value.hint and "amd64" in e.value.hint


def test_check_matches_wrong_version() -> None:
    m = AciManifest.parse(encode(FULL))
    with pytest.raises(VerificationFailed) as e:
        m.check_matches(m.name, {"version": "2.0"})
    assert str(e.value) == "the ACI example.com/reduce-worker has version 1.0.0, not 2.0 as asked"


def test_check_matches_missing_label(amd64_host: None) -> None:
    m = AciManifest.parse(manifest(labels=[]))
    with pytest.raises(VerificationFailed, match="has no arch label, but arch amd64 was asked for"):
        m.check_matches(m.name, {"arch": "amd64"})


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "amd64"),
        ("i686", "i386"),
        ("i386", "i386"),
        ("aarch64", "aarch64"),
        ("armv7l", "armv7l"),
        ("armv6l", "armv6l"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
    ],
)
def test_host_os_arch(machine: str, arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aci.platform, "machine", lambda: machine)
    monkeypatch.setattr(aci.platform, "system", lambda: "Linux")
    assert host_os_arch() == ("linux", arch)


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com/app:1.0", ("example.com/app", "1.0")),
        ("example.com/app", ("example.com/app", None)),
        ("example.com:8443/app", ("example.com:8443/app", None)),
        ("example.com:8443/app:v2.1-rc1", ("example.com:8443/app", "v2.1-rc1")),
        ("app:latest", ("app", "latest")),
        ("a/b/c:1:2", ("a/b/c:1", "2")),
    ],
)
def test_split_name_version(text: str, expected: tuple[str, str | None]) -> None:
    assert split_name_version(text) == expected


@pytest.mark.parametrize("text", ["example.com/app:", ":1.0"])
def test_split_name_version_empty_parts(text: str) -> None:
    with pytest.raises(InvalidReference):
        split_name_version(text)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/app", True),
        ("a", True),
        ("a-b.c_d~e/f0", True),
        ("Example.com/app", False),
        ("example.com/app:1.0", False),
        ("example.com:8443/app", False),
        ("", False),
        ("a//b", False),
        ("/a", False),
        ("a\n", False),
    ],
)
def test_valid_ac_name(name: str, valid: bool) -> None:
    assert valid_ac_name(name) is valid


@pytest.mark.parametrize("field", ["workingDirectory", "user"])
def test_line_breaks_in_values_are_refused(field: str) -> None:
    """A line break would become a new line of the container's trusted .nspawn file."""
    app = {**FULL["app"], field: "/\n[Files]\nBind=/:/host"}
    with pytest.raises(ArchiveError, match="control character"):
        AciManifest.parse(manifest(app=app))
