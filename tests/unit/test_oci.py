"""Tests for nspawnctl.formats.oci (manifests, indexes, configs, platforms) and how an OCI image's
Entrypoint and Cmd become a container's command (docker's run semantics)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer

from nspawnctl.client import Containers, RunOptions
from nspawnctl.errors import ArchiveError, InvalidArgument, NotFound, VerificationFailed
from nspawnctl.formats import oci
from nspawnctl.formats.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    chain_ids,
    check_platform,
    ignored_fields,
    parse_config,
    parse_manifest,
    run_defaults,
    select_platform,
)
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, RunDefaults, file_to_spec, spec_to_file
from nspawnctl.status import ContainerStatus
from nspawnctl.store.images import Image


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def desc(media_type: str, n: int, size: int = 100, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(n), "size": size, **extra}


MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": oci.OCI_MANIFEST,
    "config": desc(oci.OCI_CONFIG, 0, 1234),
    "layers": [desc(oci.OCI_LAYER_GZIP, 1), desc(oci.OCI_LAYER_ZSTD, 2), desc(oci.OCI_LAYER, 3)],
    "annotations": {"org.opencontainers.image.created": "2025-01-01T00:00:00Z"},
}
DOCKER_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": oci.DOCKER_MANIFEST,
    "config": desc(oci.DOCKER_CONFIG, 0),
    "layers": [desc(oci.DOCKER_LAYER_GZIP, 1), desc(oci.DOCKER_LAYER_GZIP, 2)],
}


def manifest(**changes: Any) -> bytes:
    doc = copy.deepcopy(MANIFEST)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return encode(doc)


def entry(n: int, os: str, arch: str, variant: str | None = None, **extra: Any) -> dict[str, Any]:
    platform = {"os": os, "architecture": arch, **({"variant": variant} if variant else {})}
    return desc(extra.pop("mediaType", oci.OCI_MANIFEST), n, platform=platform, **extra)


def index(*entries: dict[str, Any], media_type: str = oci.OCI_INDEX) -> Index:
    parsed = parse_manifest(
        encode({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}), media_type
    )
    assert isinstance(parsed, Index)
    return parsed


def attestation(n: int, of: int) -> dict[str, Any]:
    """A BuildKit attestation entry, as docker buildx pushes them."""
    return entry(
        n,
        "unknown",
        "unknown",
        annotations={
            "vnd.docker.reference.digest": digest(of),
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )


# -- manifests -----------------------------------------------------------------------------------
def test_oci_manifest() -> None:
    m = parse_manifest(manifest(), oci.OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == oci.OCI_MANIFEST
    assert m.config == Descriptor(oci.OCI_CONFIG, digest(0), 1234)
    assert [layer.digest for layer in m.layers] == [digest(1), digest(2), digest(3)]
    assert [layer.compression for layer in m.layers] == ["gzip", "zstd", None]


def test_docker_schema2_manifest() -> None:
    m = parse_manifest(encode(DOCKER_MANIFEST), oci.DOCKER_MANIFEST + "; charset=utf-8")
    assert isinstance(m, Manifest) and m.media_type == oci.DOCKER_MANIFEST
    assert m.config.media_type == oci.DOCKER_CONFIG
    assert [layer.compression for layer in m.layers] == ["gzip", "gzip"]


def test_media_type_falls_back_to_the_body_then_the_shape() -> None:
    assert isinstance(parse_manifest(manifest(), "application/json"), Manifest)
    assert isinstance(parse_manifest(manifest(mediaType=None), ""), Manifest)  # OCI 1.0 had no mediaType
    assert isinstance(parse_manifest(manifest(mediaType=None), oci.OCI_MANIFEST), Manifest)
    idx = encode({"schemaVersion": 2, "manifests": [entry(1, "linux", "amd64")]})
    assert isinstance(parse_manifest(idx, "text/plain"), Index)


def test_media_type_mismatch_is_refused() -> None:
    with pytest.raises(
        ArchiveError, match=r"served it as .*manifest\.v2.* but it says .*oci\.image\.manifest"
    ):
        parse_manifest(manifest(), oci.DOCKER_MANIFEST)
    with pytest.raises(ArchiveError, match="has manifests, as an index has"):
        parse_manifest(manifest(manifests=[]), oci.OCI_MANIFEST)
    with pytest.raises(ArchiveError, match="has config or layers"):
        parse_manifest(manifest(mediaType=None), oci.OCI_INDEX)


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}', "application/json"),
        (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (b"{}", "application/vnd.docker.distribution.manifest.v1+json"),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+json"}',
            "",
        ),
    ],
)
def test_schema1_is_refused_clearly(data: bytes, media_type: str) -> None:
    with pytest.raises(ArchiveError, match="schema 1 manifests are not supported") as e:
        parse_manifest(data, media_type)
    assert e.value.hint and "schema 2" in e.value.hint


@pytest.mark.parametrize(
    "bad_digest",
    [
        digest(1).upper(),
        "sha256:" + "a" * 63,
        "sha256:../../../../etc/passwd",
        "sha512:" + "a" * 128,
        "sha256:" + "a" * 64 + "\n",
        "md5:abc",
        "",
        7,
    ],
)
def test_invalid_digests_never_get_through(bad_digest: object) -> None:
    layers = copy.deepcopy(MANIFEST["layers"])
    layers[1]["digest"] = bad_digest
    with pytest.raises(ArchiveError, match=r"layers\[1\]\.digest"):
        parse_manifest(manifest(layers=layers), oci.OCI_MANIFEST)
    config = {**MANIFEST["config"], "digest": bad_digest}
    with pytest.raises(ArchiveError, match=r"config\.digest"):
        parse_manifest(manifest(config=config), oci.OCI_MANIFEST)


def test_unknown_layer_type_is_named() -> None:
    layers = [desc("application/vnd.example.thing.v1+tar", 1)]
    with pytest.raises(ArchiveError, match=r"layers\[0\] has media type application/vnd.example.thing"):
        parse_manifest(manifest(layers=layers), oci.OCI_MANIFEST)
    foreign = [desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 1)]
    with pytest.raises(ArchiveError, match="non-distributable"):
        parse_manifest(manifest(layers=foreign), oci.OCI_MANIFEST)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": desc("application/vnd.cncf.helm.config.v1+json", 0)}, "not a container image"),
        ({"layers": []}, "no layers"),
        ({"layers": None}, "no layers"),
        ({"layers": [desc(oci.OCI_LAYER, i) for i in range(oci.MAX_LAYERS + 1)]}, "more than nspawnctl"),
        ({"schemaVersion": 3}, "schemaVersion is 3"),
        ({"config": None}, "config must be an object"),
        ({"layers": [{**desc(oci.OCI_LAYER, 1), "size": -1}]}, "size must be a non-negative integer"),
        ({"layers": [{**desc(oci.OCI_LAYER, 1), "size": True}]}, "size must be a non-negative integer"),
        ({"layers": [{**desc(oci.OCI_LAYER, 1), "size": "1"}]}, "size must be a non-negative integer"),
        ({"layers": [{**desc(oci.OCI_LAYER, 1), "mediaType": None}]}, "mediaType must be a string"),
        ({"layers": [{**desc(oci.OCI_LAYER, 1), "mediaType": "tar\n"}]}, "line break"),
        ({"layers": [desc(oci.OCI_LAYER, 1, annotations=[])]}, "annotations must be an object"),
    ],
)
def test_bad_manifests(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        parse_manifest(manifest(**changes), oci.OCI_MANIFEST)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'"x"', b"\xff\xfe", b"[" * 100000])
def test_not_a_manifest(data: bytes) -> None:
    with pytest.raises(ArchiveError, match="invalid manifest"):
        parse_manifest(data, oci.OCI_MANIFEST)


def test_unsupported_manifest_kind() -> None:
    with pytest.raises(ArchiveError, match=r"unsupported manifest type application/vnd\.example"):
        parse_manifest(manifest(mediaType="application/vnd.example+json"), "")


def test_index_keeps_unknown_entries_but_validates_known_ones() -> None:
    odd = {"mediaType": "application/vnd.example.sig", "digest": "sha512:" + "a" * 128, "size": 5}
    idx = index(entry(1, "linux", "amd64"), odd, desc("application/vnd.example.other", 2))
    assert [d.digest for d in idx.manifests] == [digest(1), digest(2)]  # the odd one is left out
    bad = {**entry(3, "linux", "arm64"), "digest": "sha256:xyz"}
    with pytest.raises(ArchiveError, match=r"manifests\[1\]\.digest"):
        index(entry(1, "linux", "amd64"), bad)
    with pytest.raises(ArchiveError, match=r"platform\.architecture must be a string"):
        index(desc(oci.OCI_MANIFEST, 1, platform={"os": "linux"}))


def test_docker_manifest_list() -> None:
    idx = index(
        entry(1, "linux", "amd64", mediaType=oci.DOCKER_MANIFEST),
        entry(2, "linux", "arm", "v7", mediaType=oci.DOCKER_MANIFEST),
        media_type=oci.DOCKER_LIST,
    )
    assert idx.media_type == oci.DOCKER_LIST
    assert idx.manifests[1].platform == Platform("linux", "arm", "v7")
    assert select_platform(idx, Platform("linux", "arm", "v7")).digest == digest(2)


# -- platforms -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "platform", "string"),
    [
        ("linux/amd64", Platform("linux", "amd64"), "linux/amd64"),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8"), "linux/arm64/v8"),
        ("Linux/ARM/v7", Platform("linux", "arm", "v7"), "linux/arm/v7"),
    ],
)
def test_platform_parse(text: str, platform: Platform, string: str) -> None:
    assert Platform.parse(text) == platform and str(platform) == string


@pytest.mark.parametrize(
    "text", ["amd64", "", "linux/", "/amd64", "linux/arm/v7/x", "linux/am d64", "linux/ä"]
)
def test_bad_platforms(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid platform"):
        Platform.parse(text)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("ppc64le", Platform("linux", "ppc64le")),
        ("s390x", Platform("linux", "s390x")),
        ("riscv64", Platform("linux", "riscv64")),
    ],
)
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str, expected: Platform) -> None:
    monkeypatch.setattr(oci.host_platform, "machine", lambda: machine)
    assert Platform.host() == expected


def test_normalized_spellings() -> None:
    assert Platform("linux", "aarch64").normalized() == ("linux", "arm64", None)
    assert Platform("linux", "arm64", "v8").normalized() == ("linux", "arm64", None)
    assert Platform("linux", "x86_64").normalized() == ("linux", "amd64", None)
    assert Platform("linux", "amd64", "v1").normalized() == ("linux", "amd64", None)
    assert Platform("linux", "arm").normalized() == ("linux", "arm", "v7")
    assert Platform("linux", "armhf").normalized() == ("linux", "arm", "v7")
    assert Platform("linux", "arm", "6").normalized() == ("linux", "arm", "v6")


MULTI = [
    entry(1, "linux", "amd64"),
    entry(2, "linux", "arm64", "v8"),
    entry(3, "linux", "arm", "v7"),
    entry(4, "linux", "arm", "v6"),
    entry(5, "linux", "ppc64le"),
    attestation(11, 1),
    attestation(12, 2),
]


@pytest.mark.parametrize(
    ("want", "chosen"),
    [
        (Platform("linux", "amd64"), 1),
        (Platform("linux", "arm64"), 2),
        (Platform("linux", "arm64", "v8"), 2),
        (Platform("linux", "aarch64"), 2),
        (Platform("linux", "arm", "v7"), 3),
        (Platform("linux", "arm", "v6"), 4),
        (Platform("linux", "arm", "v8"), 3),  # a 32-bit armv8 runs v7, the best below it
        (Platform("linux", "arm"), 3),  # no variant: the default one (v7)
        (Platform("linux", "ppc64le"), 5),
    ],
)
def test_select_platform(want: Platform, chosen: int) -> None:
    assert select_platform(index(*MULTI), want).digest == digest(chosen)


def test_attestations_are_skipped_wherever_they_are() -> None:
    idx = index(attestation(11, 1), entry(12, "unknown", "unknown"), entry(1, "linux", "amd64"))
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(1)
    # an attestation that claims a real platform is still skipped by its annotation
    sneaky = entry(13, "linux", "amd64", annotations={"vnd.docker.reference.type": "attestation-manifest"})
    idx = index(sneaky, entry(1, "linux", "amd64"))
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(1)
    with pytest.raises(NotFound) as e:
        select_platform(index(attestation(11, 1)), Platform("linux", "amd64"))
    assert "lists no container images" in str(e.value)


def test_variant_preference_without_a_wanted_variant() -> None:
    # no variant asked: an entry without one (or the default) wins over an earlier other variant
    idx = index(
        entry(1, "linux", "amd64", "v3"), entry(2, "linux", "amd64"), entry(3, "linux", "amd64", "v2")
    )
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(2)
    idx = index(entry(1, "linux", "arm64", "v9"), entry(2, "linux", "arm64", "v8"))
    assert select_platform(idx, Platform("linux", "arm64")).digest == digest(2)
    # only other variants: any is accepted, the first one
    idx = index(entry(1, "linux", "amd64", "v3"), entry(2, "linux", "amd64", "v2"))
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(1)
    # a wanted variant is required
    with pytest.raises(NotFound):
        select_platform(idx, Platform("linux", "amd64", "v4"))
    assert select_platform(idx, Platform("linux", "amd64", "v2")).digest == digest(2)


def test_first_match_wins() -> None:
    idx = index(entry(1, "linux", "amd64"), entry(2, "linux", "amd64"))
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(1)


def test_unknown_entry_types_are_skipped() -> None:
    idx = index(desc("application/vnd.example+json", 9, platform={"os": "linux", "architecture": "amd64"}))
    with pytest.raises(NotFound):
        select_platform(idx, Platform("linux", "amd64"))


def test_no_match_lists_what_there_is() -> None:
    with pytest.raises(NotFound) as e:
        select_platform(index(*MULTI), Platform("linux", "riscv64"))
    msg = str(e.value)
    assert "not available for linux/riscv64" in msg
    for offered in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le"):
        assert offered in msg
    assert "unknown" not in msg
    assert e.value.hint is not None and "--platform" in e.value.hint
    with pytest.raises(NotFound):
        select_platform(index(*MULTI), Platform("windows", "amd64"))


def test_nested_index() -> None:
    nested = entry(7, "linux", "amd64", mediaType=oci.OCI_INDEX)
    with pytest.raises(ArchiveError, match="nested indexes are not supported"):
        select_platform(index(nested), Platform("linux", "amd64"))
    with pytest.raises(ArchiveError, match="nested"):
        select_platform(index(nested, entry(2, "linux", "arm64")), Platform("linux", "amd64"))
    # a direct match is taken; the inner index is never followed
    assert select_platform(index(nested, entry(1, "linux", "amd64")), Platform("linux", "amd64")).digest == (
        digest(1)
    )


def test_an_only_image_without_platform_is_taken() -> None:
    idx = index(desc(oci.OCI_MANIFEST, 1))
    assert select_platform(idx, Platform("linux", "amd64")).digest == digest(1)
    with pytest.raises(NotFound):  # with two, nobody can say which
        select_platform(
            index(desc(oci.OCI_MANIFEST, 1), desc(oci.OCI_MANIFEST, 2)), Platform("linux", "amd64")
        )


def test_check_platform() -> None:
    cfg = parse_config(encode({**CONFIG, "architecture": "arm64", "variant": "v8"}))
    check_platform(cfg, Platform("linux", "arm64"))
    check_platform(cfg, Platform("linux", "aarch64"))
    with pytest.raises(VerificationFailed, match="is for linux/arm64/v8, not linux/amd64") as e:
        check_platform(cfg, Platform("linux", "amd64"))
    assert e.value.hint and "--platform linux/arm64/v8" in e.value.hint
    arm6 = parse_config(encode({**CONFIG, "architecture": "arm", "variant": "v6"}))
    check_platform(arm6, Platform("linux", "arm", "v7"))
    with pytest.raises(VerificationFailed):
        check_platform(
            parse_config(encode({**CONFIG, "architecture": "arm"})), Platform("linux", "arm", "v6")
        )


# -- configs -------------------------------------------------------------------------------------
CONFIG: dict[str, Any] = {
    "created": "2025-01-01T00:00:00Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "app:staff",
        "ExposedPorts": {"8080/tcp": {}, "53/UDP": {}, "9000": {}, "7000-7002/tcp": {}},
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world", "EMPTY="],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Volumes": {"/data": {}, "/var/cache": {}},
        "WorkingDir": "/srv",
        "Labels": {"maintainer": "someone", "description": "two\nlines"},
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD", "true"]},
        "ArgsEscaped": True,
        "OnBuild": None,
    },
    "rootfs": {"type": "layers", "diff_ids": [digest(101), digest(102)]},
    "history": [{"created_by": "ADD rootfs.tar /"}, {"created_by": "RUN x", "empty_layer": True}],
    "x-extra-field": {"anything": [1, 2]},
}


def config(**changes: Any) -> bytes:
    doc = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        doc["config"][key] = value
    return encode(doc)


def test_config() -> None:
    cfg = parse_config(encode(CONFIG))
    assert cfg.platform == Platform("linux", "amd64")
    assert cfg.diff_ids == [digest(101), digest(102)]
    assert cfg.entrypoint == ["/docker-entrypoint.sh"] and cfg.cmd == ["nginx", "-g", "daemon off;"]
    assert cfg.env == ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world", "EMPTY="]
    assert cfg.workdir == "/srv" and cfg.user == "app:staff"
    assert cfg.exposed_ports == ["8080/tcp", "53/udp", "9000/tcp", "7000-7002/tcp"]
    assert cfg.volumes == ["/data", "/var/cache"]
    assert cfg.labels == {"maintainer": "someone", "description": "two\nlines"}  # labels never reach .nspawn
    assert cfg.stop_signal == "SIGQUIT" and cfg.created == "2025-01-01T00:00:00Z" and cfg.healthcheck


def test_minimal_config_and_nulls() -> None:
    minimal = {"architecture": "arm64", "os": "linux", "variant": "v8", "rootfs": {"type": "layers"}}
    cfg = parse_config(encode(minimal))
    assert cfg == ImageConfig("linux", "arm64", "v8", [])
    nulls = {key: None for key in CONFIG["config"]}
    cfg = parse_config(encode({**CONFIG, "config": nulls, "created": None, "variant": None}))
    assert (cfg.entrypoint, cfg.cmd, cfg.env, cfg.labels) == ([], [], [], {})
    assert cfg.workdir is None and cfg.user is None
    assert cfg.stop_signal is None and cfg.variant is None and not cfg.healthcheck
    assert parse_config(encode({**CONFIG, "config": None})).cmd == []
    empty = parse_config(config(WorkingDir="", User=""))
    assert empty.workdir is None and empty.user is None


def test_a_single_string_is_a_one_word_list() -> None:
    cfg = parse_config(config(Cmd="/bin/sh", Entrypoint=None))
    assert cfg.cmd == ["/bin/sh"] and cfg.entrypoint == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Cmd", ["sh", "-c", "echo a\nrm -rf /"]),
        ("Entrypoint", ["/bin/x\r"]),
        ("Entrypoint", "/bin/x\x00"),
        ("Env", ["A=1\n[Exec]\nBoot=yes"]),
        ("WorkingDir", "/srv\nUser=root"),
        ("User", "app\n"),
        ("StopSignal", "TERM\n"),
        ("Volumes", {"/data\nBind=/:/host": {}}),
        ("ExposedPorts", {"80/tcp\n": {}}),
    ],
)
def test_line_breaks_are_refused(key: str, value: Any) -> None:
    with pytest.raises(ArchiveError, match="line break or NUL") as e:
        parse_config(config(**{key: value}))
    assert f"config.{key}" in str(e.value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**CONFIG, "os": None}, "os must be a string"),
        ({**CONFIG, "architecture": ""}, "os and architecture are required"),
        ({**CONFIG, "rootfs": None}, "rootfs must be an object"),
        ({**CONFIG, "rootfs": {"type": "tarball", "diff_ids": []}}, "rootfs.type is 'tarball'"),
        ({**CONFIG, "rootfs": {"type": "layers", "diff_ids": ["sha256:abc"]}}, r"diff_ids\[0\]"),
        ({**CONFIG, "rootfs": {"type": "layers", "diff_ids": [digest(1).upper()]}}, r"diff_ids\[0\]"),
        ({**CONFIG, "rootfs": {"type": "layers", "diff_ids": "x"}}, "diff_ids must be a list"),
        ({**CONFIG, "config": []}, "config must be an object"),
        ({**CONFIG, "config": {"Env": ["NOVALUE"]}}, r"Env\[0\] 'NOVALUE' is not NAME=VALUE"),
        ({**CONFIG, "config": {"Env": ["=x"]}}, "is not NAME=VALUE"),
        ({**CONFIG, "config": {"Cmd": ["a", 1]}}, r"Cmd\[1\] must be a string"),
        ({**CONFIG, "config": {"Cmd": {"a": 1}}}, "Cmd must be a list"),
        ({**CONFIG, "config": {"WorkingDir": "srv"}}, "not an absolute path"),
        ({**CONFIG, "config": {"Volumes": {"data": {}}}}, "not an absolute path"),
        ({**CONFIG, "config": {"Volumes": ["/data"]}}, "Volumes must be an object"),
        ({**CONFIG, "config": {"User": "a b"}}, "not USER"),
        ({**CONFIG, "config": {"User": "a:b:c"}}, "not USER"),
        ({**CONFIG, "config": {"ExposedPorts": {"http": {}}}}, "not PORT"),
        ({**CONFIG, "config": {"ExposedPorts": {"80/icmp": {}}}}, "not PORT"),
        ({**CONFIG, "config": {"ExposedPorts": {"0/tcp": {}}}}, "outside 1-65535"),
        ({**CONFIG, "config": {"ExposedPorts": {"70000": {}}}}, "outside 1-65535"),
        ({**CONFIG, "config": {"ExposedPorts": {"90-80/tcp": {}}}}, "outside 1-65535"),
        ({**CONFIG, "config": {"Labels": {"a": 1}}}, "must be a string"),
        ({**CONFIG, "config": {"StopSignal": "SIGNOPE"}}, "is not a signal"),
        ({**CONFIG, "config": {"StopSignal": "99"}}, "is not a signal"),
        ({**CONFIG, "config": {"StopSignal": "RTMIN+99"}}, "is not a signal"),
        # found by the fuzzer (tests/fuzz/corpus/oci): digits that int() refuses
        ({**CONFIG, "config": {"StopSignal": "\u00b2"}}, "is not a signal"),
        ({**CONFIG, "config": {"StopSignal": "9" * 5000}}, "is not a signal"),
        ({**CONFIG, "config": {"StopSignal": "\u0663"}}, "is not a signal"),
    ],
)
def test_bad_configs(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        parse_config(encode(doc))


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null"])
def test_not_a_config(data: bytes) -> None:
    with pytest.raises(ArchiveError, match="invalid image config"):
        parse_config(data)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("SIGQUIT", "SIGQUIT"),
        ("quit", "SIGQUIT"),
        ("3", "SIGQUIT"),
        ("15", "SIGTERM"),
        ("SIGIOT", "SIGABRT"),
        ("SIGRTMIN+3", "SIGRTMIN+3"),
        ("RTMIN+3", "SIGRTMIN+3"),
        ("SIGRTMIN", "SIGRTMIN"),
        ("SIGRTMAX-1", None),
        ("37", "SIGRTMIN+3"),
    ],
)
def test_stop_signals(given: str, canonical: str | None) -> None:
    import signal

    got = parse_config(config(StopSignal=given)).stop_signal
    if canonical is None:  # SIGRTMAX-1 depends on the C library's SIGRTMAX
        canonical = f"SIGRTMIN+{int(signal.SIGRTMAX) - 1 - int(signal.SIGRTMIN)}"
    if given == "37":
        canonical = f"SIGRTMIN+{37 - int(signal.SIGRTMIN)}"
    assert got == canonical


def test_chain_ids() -> None:
    a, b, c = digest(1), digest(2), digest(3)
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([]) == []
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b, c]) == [a, ab, abc]
    # the same diff on another base is another chain
    assert chain_ids([b, b])[1] != chain_ids([a, b])[1]
    with pytest.raises(ArchiveError):
        chain_ids([a, "sha256:../x"])


def test_run_defaults() -> None:
    cfg = parse_config(encode(CONFIG))
    d = run_defaults(cfg)
    assert d == RunDefaults(
        command=["nginx", "-g", "daemon off;"],
        env=["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world", "EMPTY="],
        workdir="/srv",
        user="app",  # systemd-nspawn's User= takes a user only
        boot=False,
        ports=["8080/tcp", "53/udp", "9000/tcp", "7000-7002/tcp"],
        volumes=["/data", "/var/cache"],
        entrypoint=["/docker-entrypoint.sh"],
        labels={"maintainer": "someone", "description": "two\nlines"},
        stop_signal="SIGQUIT",
        # the HEALTHCHECK is applied (health.py), in docker's shape with the defaults as 0
        healthcheck={"Test": ["CMD", "true"], "Interval": 0, "Timeout": 0, "StartPeriod": 0, "Retries": 0},
    )
    assert ignored_fields(cfg) == [
        "config.User group (systemd-nspawn runs the user with its own groups)",
    ]


def test_a_malformed_healthcheck_refuses_the_image() -> None:
    doc = json.loads(encode(CONFIG))
    doc["config"]["Healthcheck"] = {"Test": ["CMD-SHELL", "true"], "Interval": "30s"}
    with pytest.raises(ArchiveError, match=r"config.Healthcheck.Interval '30s' is not a duration"):
        parse_config(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("user", "expected"), [("root", None), ("0", None), ("0:0", None), ("1000:1000", "1000")]
)
def test_run_defaults_user(user: str, expected: str | None) -> None:
    assert run_defaults(parse_config(config(User=user))).user == expected


def test_run_defaults_sigterm_is_the_default() -> None:
    assert run_defaults(parse_config(config(StopSignal="TERM"))).stop_signal is None


def test_run_defaults_survive_the_image_record() -> None:
    """The image store keeps RunDefaults as asdict() JSON; old records have fewer keys."""
    from dataclasses import asdict

    d = run_defaults(parse_config(encode(CONFIG)))
    assert RunDefaults(**json.loads(json.dumps(asdict(d)))) == d
    old = {"command": ["/bin/sh"], "env": [], "workdir": None, "user": None, "boot": False}
    assert RunDefaults(**old) == RunDefaults(command=["/bin/sh"])


# -- run semantics: Entrypoint and Cmd -----------------------------------------------------------
class _Store:
    def names(self) -> list[str]:
        return []

    def create(self, spec: ContainerSpec, image: Image, prepare: Any = None) -> ContainerSpec:
        return spec


def create(defaults: RunDefaults, command: list[str], tmp_path: Path, **options: Any) -> ContainerSpec:
    """Containers.create against a stub store: the spec it would write."""
    image = Image(id=digest(0), created="", size=0, source="", defaults=defaults, path=tmp_path)
    client = SimpleNamespace(
        pool=SimpleNamespace(check=lambda: None),
        images=SimpleNamespace(get=lambda text: image, ensure=lambda text, policy, options: image),
        volumes=SimpleNamespace(
            resolve=lambda volumes: volumes,
            make=lambda volumes: [],
            discard=lambda names: None,
            copy_up=lambda volumes, root: None,
        ),
    )
    containers = object.__new__(Containers)
    containers._client = client  # type: ignore[assignment]
    containers.store = _Store()  # type: ignore[assignment]
    return containers.create("img", command, RunOptions(name="c", **options))


OCI = RunDefaults(command=["-g", "daemon off;"], entrypoint=["/entry.sh", "nginx"])
SH = RunDefaults(command=["/bin/sh"])
EP, CMD = ["/entry.sh", "nginx"], ["-g", "daemon off;"]


@pytest.mark.parametrize(
    ("defaults", "command", "entrypoint", "argv", "spec_entrypoint", "cmd"),
    [
        # run IMAGE: Entrypoint + Cmd
        (OCI, [], None, [*EP, *CMD], EP, CMD),
        # run IMAGE ARGS: Entrypoint + ARGS
        (OCI, ["-v"], None, [*EP, "-v"], EP, ["-v"]),
        # --entrypoint replaces the Entrypoint and drops the image's Cmd
        (OCI, [], "/bin/sh", ["/bin/sh"], ["/bin/sh"], []),
        (OCI, ["-c", "id"], "/bin/sh", ["/bin/sh", "-c", "id"], ["/bin/sh"], ["-c", "id"]),
        # --entrypoint '' clears it: ARGS are the whole command
        (OCI, ["/bin/ls", "/"], "", ["/bin/ls", "/"], [], ["/bin/ls", "/"]),
        # an image with Cmd only (or an ACI / .nspawn image): ARGS replace the command, as before
        (SH, [], None, ["/bin/sh"], [], ["/bin/sh"]),
        (SH, ["/bin/echo", "x"], None, ["/bin/echo", "x"], [], ["/bin/echo", "x"]),
        (SH, ["-x"], "/bin/bash", ["/bin/bash", "-x"], ["/bin/bash"], ["-x"]),
        # an image with Entrypoint only
        (RunDefaults(entrypoint=["/app"]), [], None, ["/app"], ["/app"], []),
        (RunDefaults(entrypoint=["/app"]), ["--help"], None, ["/app", "--help"], ["/app"], ["--help"]),
    ],
)
def test_entrypoint_and_cmd(
    tmp_path: Path,
    defaults: RunDefaults,
    command: list[str],
    entrypoint: str | None,
    argv: list[str],
    spec_entrypoint: list[str],
    cmd: list[str],
) -> None:
    spec = create(defaults, command, tmp_path, entrypoint=entrypoint)
    assert spec.command == argv and spec.entrypoint == spec_entrypoint and spec.cmd == cmd
    assert not spec.boot
    config = ContainerStatus(spec, "created").to_json()["Config"]
    assert config["Entrypoint"] == (spec_entrypoint or None) and config["Cmd"] == (cmd or None)
    # what inspect shows survives the .nspawn file
    back = file_to_spec("c", NspawnFile.parse(spec_to_file(spec).render()))
    assert (back.command, back.entrypoint, back.cmd) == (argv, spec_entrypoint, cmd)


def test_nothing_to_run(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="an empty --entrypoint drops the image's command too"):
        create(OCI, [], tmp_path, entrypoint="")
    with pytest.raises(InvalidArgument, match="no command given"):
        create(RunDefaults(), [], tmp_path)
    with pytest.raises(InvalidArgument, match="is an empty string"):
        create(RunDefaults(entrypoint=[""]), [], tmp_path)


def test_boot(tmp_path: Path) -> None:
    booted = RunDefaults(boot=True, command=["--log-level=debug"])
    spec = create(booted, [], tmp_path)
    assert spec.boot and spec.command == ["--log-level=debug"] and spec.entrypoint == []
    # a command, or --entrypoint, runs it instead of init
    assert not create(booted, ["/bin/sh"], tmp_path).boot
    spec = create(booted, [], tmp_path, entrypoint="/bin/sh")
    assert not spec.boot and spec.command == ["/bin/sh"]
    # --boot: the image's Entrypoint is not init's argv; --entrypoint with it is refused
    spec = create(OCI, [], tmp_path, boot=True)
    assert spec.boot and spec.entrypoint == [] and spec.command == ["-g", "daemon off;"]
    with pytest.raises(InvalidArgument, match="--entrypoint cannot be combined"):
        create(OCI, [], tmp_path, boot=True, entrypoint="/bin/sh")


def test_stop_signal_goes_to_the_nspawn_file(tmp_path: Path) -> None:
    spec = create(RunDefaults(command=["/x"], stop_signal="SIGQUIT"), [], tmp_path)
    text = spec_to_file(spec).render()
    assert "KillSignal=SIGQUIT" in text
    assert file_to_spec("c", NspawnFile.parse(text)).stop_signal == "SIGQUIT"
    assert ContainerStatus(spec, "created").to_json()["Config"]["StopSignal"] == "SIGQUIT"
    plain = create(RunDefaults(command=["/x"]), [], tmp_path)
    assert "KillSignal=SIGTERM" in spec_to_file(plain).render()
    assert ContainerStatus(plain, "created").to_json()["Config"]["StopSignal"] == "SIGTERM"


def test_inspect_shows_path_and_args(tmp_path: Path) -> None:
    out = ContainerStatus(create(OCI, ["-v"], tmp_path), "created").to_json()
    assert out["Path"] == "/entry.sh" and out["Args"] == ["nginx", "-v"]
    assert out["Command"] == ["/entry.sh", "nginx", "-v"]


def test_a_hand_edited_command_shows_as_cmd() -> None:
    spec = ContainerSpec("c", "0" * 32, "img", digest(0), "", command=["/other"], entrypoint=["/entry.sh"])
    assert spec.cmd == ["/other"]


def test_cli_entrypoint_option() -> None:
    from nspawnctl.cli import app as app_module

    app_module._register()
    group = typer.main.get_command(app_module.app)
    for name in ("run", "create"):
        command = group.commands[name]  # type: ignore[attr-defined]
        ctx = command.make_context(name, ["--entrypoint", "", "img", "--entrypoint", "x"])
        assert ctx.params["entrypoint"] == "" and list(ctx.params["command"]) == ["--entrypoint", "x"]
        ctx = command.make_context(name, ["--entrypoint=/bin/sh", "img"])
        assert ctx.params["entrypoint"] == "/bin/sh" and not ctx.params["command"]
        ctx = command.make_context(name, ["img"])
        assert ctx.params["entrypoint"] is None
