"""Image references: local names with digests, registry references and docker's normalisation."""

from __future__ import annotations

import pytest

from nspawnctl.errors import InvalidReference
from nspawnctl.ref import (
    ImageRef,
    RegistryRef,
    has_explicit_registry,
    normalize_short,
    valid_digest,
)

D = "sha256:" + "0123456789abcdef" * 4
E = "sha256:" + "fedcba9876543210" * 4


# -- local references ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "name", "tag", "digest", "string"),
    [
        ("busybox", "busybox", "latest", None, "busybox:latest"),
        ("busybox:1.36", "busybox", "1.36", None, "busybox:1.36"),
        (f"busybox@{D}", "busybox", "latest", D, f"busybox@{D}"),
        (f"busybox:1.36@{D}", "busybox", "latest", D, f"busybox@{D}"),  # the digest is what counts
        ("127.0.0.1:5000/acc/bb:v1", "127.0.0.1:5000/acc/bb", "v1", None, "127.0.0.1:5000/acc/bb:v1"),
        (f"127.0.0.1:5000/acc/bb@{D}", "127.0.0.1:5000/acc/bb", "latest", D, f"127.0.0.1:5000/acc/bb@{D}"),
        ("docker.io/library/alpine:3.20", "docker.io/library/alpine", "3.20", None, None),
        ("localhost/x", "localhost/x", "latest", None, "localhost/x:latest"),
        ("[::1]:5000/x:Tag_1", "[::1]:5000/x", "Tag_1", None, None),
    ],
)
def test_local_refs(text: str, name: str, tag: str, digest: str | None, string: str | None) -> None:
    ref = ImageRef.parse(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert str(ref) == (string or text)


@pytest.mark.parametrize(
    "text",
    [
        "x@sha256:00",
        f"x@{D.upper()}",
        "x@sha512:" + "a" * 128,
        "x@",
        f"x@{D}@{D}",
        "@" + D,
        "UPPER",
        "a:b:c",
        "a/:b",
        ":tag",
        "x:",
        "x:.bad",
        "bad name",
        "x" * 256,
    ],
)
def test_bad_local_refs(text: str) -> None:
    with pytest.raises(InvalidReference):
        ImageRef.parse(text)


def test_uppercase_gets_the_lowercase_spelling_as_hint() -> None:
    with pytest.raises(InvalidReference) as e:
        ImageRef.parse("Busybox:1")
    assert e.value.hint is not None and "busybox" in e.value.hint


# -- registry references -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("docker://alpine", "docker.io", "library/alpine", "latest", None),
        ("docker://quay.io/org/app:v2", "quay.io", "org/app", "v2", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/alpine:edge", "docker.io", "library/alpine", "edge", None),
        ("registry-1.docker.io/user/app", "docker.io", "user/app", "latest", None),
        ("Docker.IO/library/alpine", "docker.io", "library/alpine", "latest", None),
        ("registry-1.docker.io:443/library/alpine", "docker.io", "library/alpine", "latest", None),
        ("registry.hub.docker.com/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io:443/user/app", "docker.io", "user/app", "latest", None),
        ("docker.io:443/alpine", "docker.io", "library/alpine", "latest", None),
        ("quay.io:443/org/app", "quay.io", "org/app", "latest", None),
        ("quay.io:4430/org/app", "quay.io:4430", "org/app", "latest", None),
        # found by the fuzzer (tests/fuzz/corpus/ref): without its port, "io" is no longer a host
        ("io:443/org/app", "io:443", "org/app", "latest", None),
        ("localhost:443/x", "localhost", "x", "latest", None),
        ("docker.io/library/alpine", "docker.io", "library/alpine", "latest", None),
        ("127.0.0.1:5000/acc/bb:v1", "127.0.0.1:5000", "acc/bb", "v1", None),
        ("127.0.0.1:5000/acc/bb", "127.0.0.1:5000", "acc/bb", "latest", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/a/b/c:1", "localhost:5000", "a/b/c", "1", None),
        ("reg.example.com/x", "reg.example.com", "x", "latest", None),
        ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
        ("a.b-c__d", "docker.io", "library/a.b-c__d", "latest", None),  # no '/' after it: not a host
        (f"alpine@{D}", "docker.io", "library/alpine", None, D),
        (f"alpine:3.20@{D}", "docker.io", "library/alpine", "3.20", D),
        (f"127.0.0.1:5000/acc/bb@{D}", "127.0.0.1:5000", "acc/bb", None, D),
        ("x:UPPER_tag", "docker.io", "library/x", "UPPER_tag", None),
    ],
)
def test_registry_refs(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = RegistryRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)
    assert RegistryRef.parse(str(ref)) == ref  # str() is a normal form


def test_local_name_of_a_registry_ref() -> None:
    assert str(RegistryRef.parse("127.0.0.1:5000/acc/bb:v1").local) == "127.0.0.1:5000/acc/bb:v1"
    assert str(RegistryRef.parse("alpine").local) == "docker.io/library/alpine:latest"
    local = RegistryRef.parse(f"alpine:3@{D}").local
    assert str(local) == f"docker.io/library/alpine@{D}" and local.digest == D
    # the local name is itself a valid local reference, with the same meaning
    assert ImageRef.parse(str(local)) == local
    local = RegistryRef.parse("localhost:5000/a:b").local
    assert ImageRef.parse(str(local)) == local == ImageRef("localhost:5000/a", "b")


def test_digest_wins_over_tag() -> None:
    ref = RegistryRef.parse(f"quay.io/a/b:v1@{E}")
    assert ref.reference == E and str(ref) == f"quay.io/a/b:v1@{E}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Alpine", "invalid image reference"),
        ("MyUser/app", "invalid image reference"),
        ("alpine@sha256:00", "sha256 is 64 lowercase hex digits"),
        (f"alpine@{D.upper()}", "invalid digest"),
        (f"alpine@sha256:{'A' * 64}", "sha256 is 64 lowercase hex digits"),
        ("alpine@sha512:" + "a" * 128, "unsupported digest"),
        ("alpine@md5:abc", "unsupported digest"),
        ("alpine@", "invalid digest"),
        (f"alpine@{D}@{D}", "invalid digest"),
        ("alpine:", "invalid tag"),
        ("alpine:-x", "invalid tag"),
        ("alpine:" + "t" * 129, "invalid tag"),
        ("docker://", "invalid image reference"),
        ("", "invalid image reference"),
        ("quay.io/", "invalid image reference"),
        ("quay.io//x", "invalid image reference"),
        ("-bad.host/x", "invalid registry"),
        ("host:port/x", "invalid registry"),
        ("a.b-c__d/e", "invalid registry"),  # a '.' before the first '/' makes it a host
        ("a:b:c", "invalid image reference"),
        ("a b", "invalid image reference"),
        ("quay.io/" + "x" * 250, "longer than 255"),
        ("https://quay.io/x", "invalid"),
    ],
)
def test_bad_registry_refs(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as e:
        RegistryRef.parse(text)
    assert message in str(e.value)
    assert e.value.hint


def test_uppercase_hints() -> None:
    with pytest.raises(InvalidReference) as e:
        RegistryRef.parse("Alpine:3")
    assert e.value.hint == "repository names must be lowercase: alpine"
    with pytest.raises(InvalidReference) as e:
        RegistryRef.parse("quay.io/Org/App")
    assert e.value.hint == "repository names must be lowercase: quay.io/org/app"
    with pytest.raises(InvalidReference) as e:
        RegistryRef.parse(f"x@sha256:{'AB' * 32}")
    assert e.value.hint == f"use sha256:{'ab' * 32}"


@pytest.mark.parametrize(
    ("text", "explicit"),
    [
        ("alpine", False),
        ("user/app", False),
        ("docker://alpine", False),
        (f"alpine@{D}", False),
        ("localhost/x", True),
        ("localhost:5000/x", True),
        ("127.0.0.1:5000/acc/bb:v1", True),
        ("docker://quay.io/a/b", True),
        ("docker.io/library/alpine", True),
        ("localhost", False),  # a repository named localhost on Docker Hub
        ("a.b", False),
    ],
)
def test_has_explicit_registry(text: str, explicit: bool) -> None:
    assert has_explicit_registry(text) is explicit


def test_normalize_short() -> None:
    assert normalize_short("alpine") == "docker.io/library/alpine:latest"
    assert normalize_short("alpine:3") == "docker.io/library/alpine:3"
    assert normalize_short("user/app") == "docker.io/user/app:latest"
    assert normalize_short("127.0.0.1:5000/acc/bb:v1") == "127.0.0.1:5000/acc/bb:v1"
    assert normalize_short(f"alpine@{D}") == f"docker.io/library/alpine@{D}"
    assert normalize_short("Alpine") is None
    assert normalize_short("a:b:c") is None


def test_valid_digest() -> None:
    assert valid_digest(D)
    for bad in (D.upper(), D[:-1], D + "0", "sha512:" + "0" * 128, "sha256:../../etc", f"{D}\n", ""):
        assert not valid_digest(bad)
