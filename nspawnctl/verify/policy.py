"""Which registry images may be pulled, and with what guarantees: ``/etc/nspawnctl/policy.json``.

The file has the shape of containers-policy.json(5), which podman and skopeo read, so a reader of
one reads the other::

    {
      "default": [{"type": "insecureAcceptAnything"}],
      "transports": {
        "docker": {
          "registry.example.com": [{"type": "requireTLS"}],
          "registry.example.com/prod": [{"type": "requireTLS"}, {"type": "requireDigest"}],
          "docker.io": [{"type": "reject"}]
        }
      }
    }

Without a file every registry gets the baseline: every manifest and blob is checked against its
sha256 digest, over TLS with the certificate verified unless the user says ``--tls-verify=false``.
A scope's requirements can only add to that:

- ``reject``: nothing from this scope is pulled;
- ``requireTLS``: ``--tls-verify=false`` is refused for this scope;
- ``requireDigest``: only references pinned by digest (``NAME@sha256:...``) are pulled, so the
  content is exactly what the policy's author chose, whatever a tag points to today;
- ``insecureAcceptAnything``: the baseline alone.

Signature requirements (``signedBy``, ``sigstoreSigned``) are not checked by nspawnctl for registry
images yet; a scope that asks for them is refused rather than silently weakened. Scopes match as in
containers-policy.json: the most specific of ``host/repo:tag``, ``host/repo``, its namespaces,
``host``, ``*.domain`` wildcards, then ``default``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, PolicyDenied

KNOWN = ("insecureAcceptAnything", "reject", "requireTLS", "requireDigest")
UNSUPPORTED = ("signedBy", "sigstoreSigned", "signedBaseLayer")


@dataclass(frozen=True)
class Decision:
    """What applies to one pull: the scope that matched and its requirement types."""

    scope: str  # "" for the default
    requirements: tuple[str, ...]

    def describe(self) -> str:
        where = f"policy scope {self.scope!r}" if self.scope else "the default policy"
        return f"{where} ({', '.join(self.requirements) or 'baseline'})"


class Policy:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise InvalidArgument(f"cannot read the policy {self.path}: {e.strerror}") from e
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise InvalidArgument(
                f"the policy {self.path} is not valid JSON: {why}", hint="fix or remove the file"
            ) from e
        if not isinstance(data, dict):
            raise InvalidArgument(f"the policy {self.path} must be a JSON object", hint="see README")
        return data

    def decide(self, registry: str, repository: str, tag: str | None) -> Decision:
        """The requirements of the most specific scope for ``registry/repository[:tag]``."""
        data = self._load()
        transports = data.get("transports", {})
        scopes = transports.get("docker", {}) if isinstance(transports, dict) else None
        if not isinstance(scopes, dict):
            raise InvalidArgument(f"the policy {self.path}: transports.docker must be an object")
        for scope in _candidates(registry, repository, tag):
            if scope in scopes:
                return Decision(scope, self._types(scopes[scope], scope))
        return Decision("", self._types(data.get("default", []), "default"))

    def _types(self, reqs: Any, scope: str) -> tuple[str, ...]:
        if not isinstance(reqs, list) or not all(isinstance(r, dict) and "type" in r for r in reqs):
            raise InvalidArgument(
                f'the policy {self.path}: {scope!r} must be a list of {{"type": ...}} objects'
            )
        types = tuple(str(r["type"]) for r in reqs)
        for t in types:
            if t not in KNOWN and t not in UNSUPPORTED:
                raise InvalidArgument(
                    f"the policy {self.path}: unknown requirement type {t!r} in {scope!r}",
                    hint=f"use one of: {', '.join(KNOWN)}",
                )
        return types

    def check(
        self, registry: str, repository: str, tag: str | None, digest: str | None, tls_verify: bool
    ) -> Decision:
        """Raise PolicyDenied unless the policy allows this pull, before anything is downloaded."""
        decision = self.decide(registry, repository, tag)
        name = f"{registry}/{repository}"
        for t in decision.requirements:
            if t == "reject":
                raise PolicyDenied(
                    f"{name}: pulls are rejected by {decision.describe()}",
                    hint=f"see {self.path}",
                )
            if t in UNSUPPORTED:
                raise PolicyDenied(
                    f"{name}: {decision.describe()} requires {t} signatures, which nspawnctl cannot "
                    "check for registry images",
                    hint=f"pull it with podman or skopeo, or change {self.path}",
                )
            if t == "requireTLS" and not tls_verify:
                raise PolicyDenied(
                    f"{name}: {decision.describe()} requires TLS with a verified certificate",
                    hint="drop --tls-verify=false (use --ca-cert for a private CA)",
                )
            if t == "requireDigest" and digest is None:
                raise PolicyDenied(
                    f"{name}: {decision.describe()} allows only references pinned by digest",
                    hint=f"pull {name}@sha256:<digest>",
                )
        return decision


def _candidates(registry: str, repository: str, tag: str | None) -> list[str]:
    """Scopes from most to least specific, as containers-policy.json orders them."""
    out = []
    full = f"{registry}/{repository}"
    if tag:
        out.append(f"{full}:{tag}")
    parts = full.split("/")
    for n in range(len(parts), 0, -1):
        out.append("/".join(parts[:n]))
    host = registry.split(":", 1)[0]
    labels = host.split(".")
    for n in range(1, len(labels)):
        out.append("*." + ".".join(labels[n:]))
    return out
