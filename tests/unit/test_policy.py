"""The registry trust policy: scopes, requirement types, and what is refused before any download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument, PolicyDenied
from nspawnctl.verify.policy import Policy


def policy(tmp_path: Path, data: object) -> Policy:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    return Policy(path)


def test_no_file_is_the_baseline(tmp_path: Path) -> None:
    p = Policy(tmp_path / "absent.json")
    d = p.check("docker.io", "library/alpine", "latest", None, tls_verify=False)
    assert d.scope == "" and d.requirements == ()


def test_most_specific_scope_wins(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    "reg.example.com": [{"type": "requireTLS"}],
                    "reg.example.com/team": [{"type": "requireDigest"}],
                    "reg.example.com/team/app:stable": [{"type": "insecureAcceptAnything"}],
                    "*.example.org": [{"type": "insecureAcceptAnything"}],
                }
            },
        },
    )
    assert p.decide("reg.example.com", "other/x", "1").scope == "reg.example.com"
    assert p.decide("reg.example.com", "team/app", "1").scope == "reg.example.com/team"
    assert p.decide("reg.example.com", "team/app", "stable").scope == "reg.example.com/team/app:stable"
    assert p.decide("a.b.example.org", "x", None).scope == "*.example.org"
    assert p.decide("docker.io", "library/alpine", "latest").scope == ""
    # a scope is a whole path component: "team" does not cover "teammate"
    assert p.decide("reg.example.com", "teammate/app", "1").scope == "reg.example.com"


def test_reject_and_default_reject(tmp_path: Path) -> None:
    p = policy(tmp_path, {"default": [{"type": "reject"}], "transports": {"docker": {"ok.test": []}}})
    with pytest.raises(PolicyDenied, match="rejected by the default policy"):
        p.check("docker.io", "library/alpine", "latest", None, tls_verify=True)
    assert p.check("ok.test", "a/b", "1", None, tls_verify=True).scope == "ok.test"


def test_require_tls_refuses_tls_verify_false(tmp_path: Path) -> None:
    p = policy(tmp_path, {"transports": {"docker": {"reg.test:5000": [{"type": "requireTLS"}]}}})
    with pytest.raises(PolicyDenied, match="requires TLS") as e:
        p.check("reg.test:5000", "a", "1", None, tls_verify=False)
    assert e.value.hint and "--tls-verify=false" in e.value.hint
    p.check("reg.test:5000", "a", "1", None, tls_verify=True)


def test_require_digest(tmp_path: Path) -> None:
    p = policy(tmp_path, {"transports": {"docker": {"reg.test": [{"type": "requireDigest"}]}}})
    with pytest.raises(PolicyDenied, match="pinned by digest"):
        p.check("reg.test", "a", "latest", None, tls_verify=True)
    p.check("reg.test", "a", None, "sha256:" + "a" * 64, tls_verify=True)


def test_signatures_are_refused_not_weakened(tmp_path: Path) -> None:
    p = policy(tmp_path, {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}]})
    with pytest.raises(PolicyDenied, match="signedBy signatures"):
        p.check("docker.io", "library/alpine", "latest", None, tls_verify=True)


@pytest.mark.parametrize(
    "data, message",
    [
        ("{", "not valid JSON"),
        ([], "must be a JSON object"),
        ({"default": [{"type": "trustMe"}]}, "unknown requirement type 'trustMe'"),
        ({"default": {"type": "reject"}}, "must be a list"),
        ({"transports": {"docker": []}}, "transports.docker must be an object"),
    ],
)
def test_malformed_policies_are_errors(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(InvalidArgument, match=message):
        Policy(path).check("docker.io", "library/alpine", "latest", None, tls_verify=True)


@pytest.mark.parametrize(
    "text",
    [
        "registry-1.docker.io:443/library/alpine",
        "registry.hub.docker.com/library/alpine",
        "index.docker.io:443/alpine",
        "docker.io:443/alpine",
    ],
)
def test_docker_hub_spellings_do_not_escape_a_docker_io_scope(tmp_path: Path, text: str) -> None:
    from nspawnctl.ref import RegistryRef

    p = policy(tmp_path, {"transports": {"docker": {"docker.io": [{"type": "reject"}]}}})
    ref = RegistryRef.parse(text)
    with pytest.raises(PolicyDenied):
        p.check(ref.registry, ref.repository, ref.tag, ref.digest, tls_verify=True)


def test_deeply_nested_json_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        Policy(path).check("docker.io", "library/alpine", "latest", None, tls_verify=True)
