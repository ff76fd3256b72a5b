"""Registry credentials in the auth.json format podman, skopeo and buildah read (docker's too).

``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}``. Keys are registry hosts;
docker writes URLs (``https://index.docker.io/v1/`` for Docker Hub), which are read as their
host. Keys with a path (podman's per-namespace credentials, ``quay.io/org``) match no registry
here: a login for one namespace must not be sent for the whole registry.

Other top-level keys and other registries' entries are kept as they are when the file is
rewritten. Passwords never appear in an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from ..ref import canonical_registry

__all__ = ["AuthFile", "auth_files", "find_credentials", "registry_key"]


def registry_key(text: str) -> str | None:
    """The registry host a key or argument names (``https://host/v1/`` -> ``host``; Docker Hub's
    aliases -> ``docker.io``; a default ``:443`` dropped), or None for a namespace key
    (``host/org``) or an empty one."""
    key = text.strip().lower()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            # docker's URL keys: the path is the API version, never a namespace
            key = key[len(scheme) :].split("/", 1)[0]
            break
    else:
        key = key.rstrip("/")
        if "/" in key:
            return None
    if not key:
        return None
    return canonical_registry(key)


class AuthFile:
    """One auth.json file; every call reads it afresh, so concurrent logins lose nothing read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, registry: str) -> tuple[str, str] | None:
        """(user, password) for ``registry``, or None when the file or an entry is missing."""
        want = _host(registry)
        auths = self._auths(self._load())
        # An exact key wins over an alias (docker's "https://index.docker.io/v1/").
        keys = sorted(auths, key=lambda k: k.strip().lower() != want)
        for key in keys:
            if registry_key(key) == want:
                found = self._decode(key, auths[key])
                if found is not None:
                    return found
        return None

    def set(self, registry: str, user: str, password: str) -> None:
        """Store credentials under ``registry`` (replacing its aliases); file 0600, atomic."""
        host = _host(registry)
        if not user or ":" in user:
            raise InvalidArgument(
                f"invalid user name {user!r} for {host}", hint="a user name is not empty and has no ':'"
            )
        if any(ch in user + password for ch in "\r\n\0"):
            raise InvalidArgument("user names and passwords cannot contain line breaks or NUL characters")
        data = self._load()
        auths = self._auths(data)
        for key in [k for k in auths if registry_key(k) == host]:
            del auths[key]
        auths[host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}
        data["auths"] = auths
        self._save(data)

    def remove(self, registry: str) -> bool:
        """Forget ``registry`` (every key naming it); False when there was nothing to forget."""
        host = _host(registry)
        data = self._load()
        auths = self._auths(data)
        keys = [k for k in auths if registry_key(k) == host]
        if not keys:
            return False
        for key in keys:
            del auths[key]
        data["auths"] = auths
        self._save(data)
        return True

    def remove_all(self) -> list[str]:
        """Forget every registry; returns the keys removed. Other top-level keys stay."""
        data = self._load()
        removed = sorted(self._auths(data))
        if removed:
            data["auths"] = {}
            self._save(data)
        return removed

    def registries(self) -> list[str]:
        """The keys that hold credentials, as written in the file."""
        return sorted(self._auths(self._load()))

    # --- internals ------------------------------------------------------------------------------

    def _error(self, why: str) -> InvalidArgument:
        return InvalidArgument(
            f"{self.path} is not a valid auth file: {why}",
            hint='expected {"auths": {"HOST": {"auth": "BASE64(user:password)"}}}; fix or remove it',
        )

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise InvalidArgument(f"cannot read {self.path}: {e.strerror}") from e
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except RecursionError as e:
            raise self._error("not JSON (nested too deeply)") from e
        except (ValueError, UnicodeDecodeError) as e:
            raise self._error(f"not JSON ({e})") from e
        if not isinstance(data, dict):
            raise self._error("the top level is not an object")
        return data

    def _auths(self, data: dict[str, Any]) -> dict[str, Any]:
        auths = data.get("auths", {})
        if auths is None:
            return {}
        if not isinstance(auths, dict):
            raise self._error('"auths" is not an object')
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise self._error(f'the entry for "{key}" is not an object')
        return dict(auths)

    def _decode(self, key: str, entry: dict[str, Any]) -> tuple[str, str] | None:
        encoded = entry.get("auth")
        if encoded is None or encoded == "":
            return None  # a credential helper's entry, or an identity token only: nothing for us
        if not isinstance(encoded, str):
            raise self._error(f'"auth" of "{key}" is not a string')
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as e:
            raise self._error(f'"auth" of "{key}" is not base64 of "user:password"') from e
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise self._error(f'"auth" of "{key}" is not base64 of "user:password"')
        return user, password

    def _save(self, data: dict[str, Any]) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            parent.mkdir(mode=0o700, parents=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def auth_files(primary: Path) -> list[Path]:
    """Where credentials are looked up, in order: nspawnctl's file, then podman's and docker's."""
    paths = [primary]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    paths.append(home / ".config" / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG")
    paths.append(Path(docker) / "config.json" if docker else home / ".docker" / "config.json")
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def find_credentials(
    registry: str, primary: Path, warn: Callable[[str], None] | None = None
) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from the first file that has them (others are only read).

    nspawnctl's own file (``primary``) must be valid; a malformed podman or docker file is
    skipped (``warn`` is told why): another tool's file must not break every pull.
    """
    for path in auth_files(primary):
        try:
            found = AuthFile(path).get(registry)
        except InvalidArgument as e:
            if path == primary:
                raise
            if warn is not None:
                warn(f"ignoring {e.message}")
            continue
        if found is not None:
            return found
    return None


def _host(registry: str) -> str:
    host = registry_key(registry)
    if host is None:
        raise InvalidArgument(
            f"invalid registry {registry!r}",
            hint="give a registry host[:port], like docker.io or localhost:5000",
        )
    return host
