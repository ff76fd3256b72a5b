"""Where things live. Defaults are the systemd locations; env vars and CLI options override them.

Overrides exist so tests (and unusual hosts) can point nspawnctl elsewhere; machined and
``machinectl`` only see containers under the default pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POOL = Path("/var/lib/machines")
DEFAULT_STORE = Path("/var/lib/nspawnctl")
DEFAULT_SETTINGS = Path("/etc/systemd/nspawn")
DEFAULT_RUNTIME_SETTINGS = Path("/run/systemd/nspawn")
DEFAULT_TRUST = Path("/etc/nspawnctl/trust")
DEFAULT_AUTH = Path("/etc/nspawnctl/auth.json")
DEFAULT_POLICY = Path("/etc/nspawnctl/policy.json")


@dataclass(frozen=True)
class Paths:
    """The directories nspawnctl works in."""

    pool: Path = DEFAULT_POOL
    """Containers: writable snapshots, named like the machine (machined's pool)."""
    store: Path = DEFAULT_STORE
    """Images and nspawnctl's own state; on the same btrfs filesystem as ``pool``."""
    settings: Path = DEFAULT_SETTINGS
    """Persistent ``.nspawn`` files (one per container, survive reboots)."""
    runtime_settings: Path = DEFAULT_RUNTIME_SETTINGS
    """``.nspawn`` files of ``--rm`` containers, gone after a reboot like the containers."""
    trust: Path = DEFAULT_TRUST
    """Public keys trusted to sign images, per name prefix (rkt's layout: root.d/, prefix.d/)."""
    auth: Path = DEFAULT_AUTH
    """Registry credentials written by ``login``, in the auth.json format podman and skopeo read."""
    policy: Path = DEFAULT_POLICY
    """Which registries and names may be pulled, and how verified (policy.json's shape); optional."""

    @property
    def images(self) -> Path:
        return self.store / "images"

    @property
    def layers(self) -> Path:
        """OCI layers: read-only subvolumes keyed by chain ID, each a snapshot of its parent."""
        return self.store / "layers"

    @property
    def state(self) -> Path:
        return self.store / "state"

    @property
    def lock(self) -> Path:
        return self.store / "lock"

    @classmethod
    def from_env(cls, pool: str | None = None, store: str | None = None) -> Paths:
        env = os.environ
        return cls(
            pool=Path(pool or env.get("NSPAWNCTL_POOL") or DEFAULT_POOL),
            store=Path(store or env.get("NSPAWNCTL_STORE") or DEFAULT_STORE),
            settings=Path(env.get("NSPAWNCTL_SETTINGS_DIR") or DEFAULT_SETTINGS),
            runtime_settings=Path(env.get("NSPAWNCTL_RUNTIME_SETTINGS_DIR") or DEFAULT_RUNTIME_SETTINGS),
            trust=Path(env.get("NSPAWNCTL_TRUST_DIR") or DEFAULT_TRUST),
            auth=Path(env.get("REGISTRY_AUTH_FILE") or DEFAULT_AUTH),
            policy=Path(env.get("NSPAWNCTL_POLICY") or DEFAULT_POLICY),
        )
