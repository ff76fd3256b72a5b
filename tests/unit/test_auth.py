"""Tests for nspawnctl.fetch.auth: auth.json as podman, skopeo and docker write it."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.fetch.auth import AuthFile, auth_files, find_credentials, registry_key


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_round_trip_modes_and_format(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "nspawnctl" / "auth.json"
    auth = AuthFile(path)
    assert auth.get("localhost:5000") is None  # no file yet
    auth.set("localhost:5000", "alice", "pa:ss wörd")
    assert auth.get("localhost:5000") == ("alice", "pa:ss wörd")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # What podman writes and reads: base64 of "user:password" under the host.
    assert json.loads(path.read_text()) == {"auths": {"localhost:5000": {"auth": b64("alice:pa:ss wörd")}}}
    auth.set("localhost:5000", "bob", "new")
    assert auth.get("localhost:5000") == ("bob", "new")
    assert [p.name for p in path.parent.iterdir()] == ["auth.json"]  # no temporary files left


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    AuthFile(tmp_path / "auth.json").set("quay.io", "u", "p")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "auth.json").stat().st_mode) == 0o600


def test_other_registries_and_top_level_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write(
        path,
        {
            "auths": {"quay.io": {"auth": b64("q:1")}, "ghcr.io": {"auth": b64("g:2"), "email": "x@y"}},
            "credHelpers": {"gcr.io": "gcloud"},
        },
    )
    auth = AuthFile(path)
    auth.set("localhost:5000", "alice", "secret")
    data = json.loads(path.read_text())
    assert data["credHelpers"] == {"gcr.io": "gcloud"}
    assert data["auths"]["ghcr.io"] == {"auth": b64("g:2"), "email": "x@y"}
    assert auth.registries() == ["ghcr.io", "localhost:5000", "quay.io"]
    assert auth.remove("quay.io") is True
    assert auth.remove("quay.io") is False
    assert auth.registries() == ["ghcr.io", "localhost:5000"]
    assert auth.remove_all() == ["ghcr.io", "localhost:5000"]
    assert json.loads(path.read_text()) == {"auths": {}, "credHelpers": {"gcr.io": "gcloud"}}
    assert auth.remove_all() == []


def test_docker_keys_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    write(
        path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                "https://registry.example.com:5000": {"auth": b64("ex:pw")},
                "quay.io/team": {"auth": b64("team:pw")},  # podman's per-namespace key
                "ghcr.io": {},  # a credential helper's entry: nothing for us
            },
            "credsStore": "desktop",
        },
    )
    auth = AuthFile(path)
    assert auth.get("docker.io") == ("hub", "pw")
    assert auth.get("index.docker.io") == ("hub", "pw")
    assert auth.get("registry.example.com:5000") == ("ex", "pw")
    assert auth.get("quay.io") is None  # a namespace login is not sent for the whole registry
    assert auth.get("ghcr.io") is None
    # A new login replaces the alias rather than leaving two entries for one registry.
    auth.set("docker.io", "hub2", "pw2")
    data = json.loads(path.read_text())
    assert "https://index.docker.io/v1/" not in data["auths"]
    assert data["auths"]["docker.io"] == {"auth": b64("hub2:pw2")}
    assert auth.remove("index.docker.io") is True
    assert auth.get("docker.io") is None


def test_exact_key_wins_over_alias(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write(
        path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("old:1")},
                "docker.io": {"auth": b64("new:2")},
            }
        },
    )
    assert AuthFile(path).get("docker.io") == ("new", "2")


def test_registry_key() -> None:
    assert registry_key("https://index.docker.io/v1/") == "docker.io"
    assert registry_key("registry-1.docker.io") == "docker.io"
    assert registry_key("https://registry-1.docker.io:443/v2/") == "docker.io"
    assert registry_key("registry.hub.docker.com") == "docker.io"
    assert registry_key("quay.io:443") == "quay.io"
    assert registry_key("LocalHost:5000/") == "localhost:5000"
    assert registry_key("http://host:80/v2/") == "host:80"
    assert registry_key("quay.io/org") is None
    assert registry_key("") is None


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"auths": []}', '{"auths": {"quay.io": "x"}}', b"\xff\xfe".decode("latin-1")],
)
def test_malformed_file_is_a_clear_error_and_never_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    auth = AuthFile(path)
    for call in (
        lambda: auth.get("localhost:5000"),
        lambda: auth.set("localhost:5000", "alice", "secret"),
        lambda: auth.remove("localhost:5000"),
        auth.remove_all,
    ):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.message.startswith(f"{path} is not a valid auth file: ")
        assert info.value.hint and "fix or remove it" in info.value.hint
    assert path.read_text() == content  # bad input loses nothing


@pytest.mark.parametrize("value", [["x"], "%%%not-base64", b64("no-colon"), b64(":nouser")])
def test_malformed_entry_is_named_without_showing_it(tmp_path: Path, value: object) -> None:
    path = tmp_path / "auth.json"
    write(path, {"auths": {"localhost:5000": {"auth": value}, "quay.io": {"auth": b64("q:1")}}})
    auth = AuthFile(path)
    with pytest.raises(InvalidArgument) as info:
        auth.get("localhost:5000")
    assert info.value.message.startswith(f'{path} is not a valid auth file: "auth" of "localhost:5000"')
    assert str(value) not in info.value.message
    assert auth.get("quay.io") == ("q", "1")  # other entries still usable
    auth.set("localhost:5000", "alice", "secret")  # a new login replaces the broken entry
    assert auth.get("localhost:5000") == ("alice", "secret")


def test_bad_user_names_and_registries(tmp_path: Path) -> None:
    auth = AuthFile(tmp_path / "auth.json")
    with pytest.raises(InvalidArgument, match="user name"):
        auth.set("quay.io", "a:b", "pw")
    with pytest.raises(InvalidArgument, match="user name"):
        auth.set("quay.io", "", "pw")
    with pytest.raises(InvalidArgument, match="line breaks"):
        auth.set("quay.io", "a", "pw\nx")
    with pytest.raises(InvalidArgument, match="invalid registry"):
        auth.set("quay.io/org", "a", "pw")
    assert not (tmp_path / "auth.json").exists()


def test_find_credentials_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    primary = tmp_path / "etc" / "auth.json"
    assert auth_files(primary) == [
        primary,
        runtime / "containers" / "auth.json",
        home / ".config" / "containers" / "auth.json",
        home / ".docker" / "config.json",
    ]
    assert find_credentials("quay.io", primary) is None  # no files at all

    write(home / ".docker" / "config.json", {"auths": {"quay.io": {"auth": b64("docker:1")}}})
    assert find_credentials("quay.io", primary) == ("docker", "1")
    write(home / ".config" / "containers" / "auth.json", {"auths": {"quay.io": {"auth": b64("user:2")}}})
    assert find_credentials("quay.io", primary) == ("user", "2")
    write(runtime / "containers" / "auth.json", {"auths": {"quay.io": {"auth": b64("runtime:3")}}})
    assert find_credentials("quay.io", primary) == ("runtime", "3")
    AuthFile(primary).set("quay.io", "primary", "4")
    assert find_credentials("quay.io", primary) == ("primary", "4")
    assert find_credentials("ghcr.io", primary) is None

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert auth_files(primary)[-1] == tmp_path / "dockercfg" / "config.json"
    assert len(auth_files(primary)) == 3
    # Only the primary file is ever written.
    assert sorted(os.listdir(primary.parent)) == ["auth.json"]


def test_malformed_secondary_files_are_skipped_the_primary_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    primary = tmp_path / "etc" / "auth.json"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text("{not json")
    write(home / ".config" / "containers" / "auth.json", {"auths": {"ghcr.io": "not an object"}})
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    warnings: list[str] = []
    assert find_credentials("quay.io", primary, warnings.append) is None  # anonymous pulls still work
    assert find_credentials("quay.io", primary) is None  # the old signature too
    assert len(warnings) == 3 and all(w.startswith("ignoring ") for w in warnings)
    assert "nested too deeply" in warnings[2]
    write(home / ".docker" / "config.json", {"auths": {"quay.io": {"auth": b64("docker:1")}}})
    assert find_credentials("quay.io", primary) == ("docker", "1")
    primary.parent.mkdir(parents=True)
    primary.write_text("{not json")
    with pytest.raises(InvalidArgument, match="is not a valid auth file"):
        find_credentials("quay.io", primary, warnings.append)


def test_deeply_nested_json_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidArgument, match=r"not JSON \(nested too deeply\)"):
        AuthFile(path).get("quay.io")
