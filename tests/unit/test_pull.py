"""The pull glue's pure parts: names, URLs and the hashing pass-through."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from nspawnctl.errors import ArchiveError, InvalidArgument
from nspawnctl.pull import PullOptions, pull
from nspawnctl.pull.aci import _signature_url
from nspawnctl.pull.options import HashingReader
from nspawnctl.pull.tarball import strip_tar_suffix, trust_name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://Example.COM/rel/foo.tar.xz", "example.com/rel/foo.tar.xz"),
        ("https://example.com:443/rel/foo.tar.xz", "example.com/rel/foo.tar.xz"),
        ("http://example.com:80/a/./b/../foo.tar", "example.com/a/foo.tar"),
        ("https://example.com:8443/foo.tar", "example.com:8443/foo.tar"),
    ],
)
def test_trust_name_of_a_url(url: str, name: str) -> None:
    assert trust_name(url) == name


@pytest.mark.parametrize(
    ("filename", "stem"),
    [("debian.tar.xz", "debian"), ("a.tgz", "a"), ("b.tar", "b"), ("c.tar.zst", "c"), (".tar", ".tar")],
)
def test_strip_tar_suffix(filename: str, stem: str) -> None:
    assert strip_tar_suffix(filename) == stem


def test_signature_url_keeps_the_query_after_the_path() -> None:
    assert _signature_url("https://h/app.aci?sig=x.y") == "https://h/app.aci.asc?sig=x.y"


def test_hashing_reader_hashes_everything_and_copies() -> None:
    data = b"x" * 1_500_000
    copy = io.BytesIO()
    reader = HashingReader(io.BytesIO(data), copy_to=copy)
    assert reader.read(1_000_000) == b"x" * 1_000_000  # the rest is within the trailing allowance
    assert reader.finish() == hashlib.sha256(data).hexdigest()
    assert copy.getvalue() == data


def test_hashing_reader_refuses_long_trailing_data_and_oversize_bodies() -> None:
    reader = HashingReader(io.BytesIO(b"a" * 100), max_bytes=1 << 30)
    with pytest.raises(ArchiveError, match="goes on after the end"):
        reader.finish(trailing_max=99)
    assert HashingReader(io.BytesIO(b"a" * 100)).finish(trailing_max=100)
    with pytest.raises(ArchiveError, match="larger than"):
        HashingReader(io.BytesIO(b"a" * 100), max_bytes=50).finish()


@pytest.mark.parametrize(
    "source, answers_v2, expected",
    [
        ("busybox", None, "registry"),
        ("debian:12", None, "registry"),
        ("library/alpine", None, "registry"),
        ("docker://example.com/app:1", None, "registry"),
        ("127.0.0.1:5000/acc/bb:v1", None, "registry"),
        ("localhost/x", None, "registry"),
        ("example.com/app@sha256:" + "a" * 64, None, "registry"),
        ("example.com/app:1.0", True, "registry"),
        ("example.com/app:1.0", False, "appc"),
    ],
)
def test_which_names_go_to_a_registry(
    source: str, answers_v2: bool | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a dotted host without a port is ambiguous (appc name or registry): the /v2/ probe decides."""
    import nspawnctl.pull.aci as aci_pull
    import nspawnctl.pull.oci as oci_pull
    from nspawnctl.fetch.registry import RegistryClient

    def probe(self: RegistryClient) -> bool:
        assert answers_v2 is not None, "an unambiguous name must not be probed"
        return answers_v2

    monkeypatch.setattr(RegistryClient, "is_registry", probe)
    monkeypatch.setattr(oci_pull, "pull_registry", lambda *a: "registry")
    monkeypatch.setattr(aci_pull, "pull_aci_name", lambda *a: "appc")
    assert pull(None, None, source, None, PullOptions()) == expected  # type: ignore[arg-type]


def test_unknown_transport_and_verify_mode() -> None:
    with pytest.raises(InvalidArgument, match="unknown transport"):
        pull(None, None, "ftp://h/x.tar", None, PullOptions())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="--verify"):
        PullOptions(verify="maybe")


def test_an_unverified_pull_never_replaces_what_a_verified_one_recorded(tmp_path: Path) -> None:
    from nspawnctl.config import Paths
    from nspawnctl.spec import RunDefaults
    from nspawnctl.store.images import ImageStore
    from nspawnctl.store.pool import Pool

    store = ImageStore(Pool(Paths(pool=tmp_path / "machines", store=tmp_path / "store")))
    store.dir.mkdir(parents=True)
    meta = store.dir / "abc.json"
    signed = {"url": "https://h/a.tar", "verified": "signature by X"}
    meta.write_text(json.dumps({"origin": signed, "defaults": {"command": ["/good"]}}))
    store._update(
        "abc", {"url": "http://h/a.tar", "verified": "not verified"}, RunDefaults(command=["/evil"])
    )
    assert json.loads(meta.read_text()) == {"origin": signed, "defaults": {"command": ["/good"]}}
    store._update("abc", {**signed, "verified": "checksum"}, RunDefaults(command=["/new"]))
    assert json.loads(meta.read_text())["defaults"]["command"] == ["/new"]


def test_a_pulled_image_cannot_be_named_by_a_digest(tmp_path: Path) -> None:
    """NAME@sha256:... would claim content that nobody checked against that digest."""
    from nspawnctl.client import Client
    from nspawnctl.config import Paths
    from nspawnctl.errors import InvalidReference

    client = Client(Paths(pool=tmp_path / "machines", store=tmp_path / "store"))
    with pytest.raises(InvalidReference, match="digest"):
        client.images.pull("docker://example.com/a:1", "mine@sha256:" + "a" * 64)
