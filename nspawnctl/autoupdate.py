"""podman's ``auto-update`` with rollback: newer verified images for the containers that ask.

A container opts in with ``[X-Nspawnctl] AutoUpdate=registry|local`` in its definition:

- registry: its image came from a registry (or a release URL); a newer image is one whose
  manifest digest (the URL's SHA256SUMS line) differs from what was pulled. It is pulled with the
  same verification as ``pull``.
- local: the image name now points at another local image (pulled or imported by hand).

An update stops the container, recreates it on the new image from the same definition (same name,
same ID, every other key kept), and starts it. It must come up: with a health check it must turn
healthy, without one it must still be running a moment later; else (or after ``timeout``) the
container's old root (its writable layer) and definition, kept aside meanwhile, are put back and
started again, and the image name is pointed back at the old image. Only running containers are
updated, as podman does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import NspawnctlError

if TYPE_CHECKING:
    from .client import Client
    from .pull import PullOptions
    from .spec import ContainerSpec
    from .status import ContainerStatus
    from .store.images import Image

DEFAULT_TIMEOUT = 120.0
"""Seconds a recreated container gets to turn healthy (or keep running) before the rollback."""
SETTLE = 3.0
"""Seconds a container without a health check must keep running after its start to count as up."""
POLL = 0.5


@dataclass(frozen=True)
class Update:
    """One row of podman's table; ``updated``: true, false, pending (dry run), rolled back, failed."""

    unit: str
    container: str
    image: str
    policy: str
    updated: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Unit": self.unit,
            "ContainerName": self.container,
            "Image": self.image,
            "Policy": self.policy,
            "Updated": self.updated,
            "Error": self.error,
        }


def auto_update(
    client: Client,
    options: PullOptions,
    dry_run: bool = False,
    rollback: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Update]:
    """Check (and unless ``dry_run`` update) every running container that asks for it."""
    out = []
    for status in client.containers.list():
        spec = status.spec
        if spec.auto_update is None:
            continue
        unit = status.unit or ""
        try:
            out.append(_one(client, status, options, dry_run, rollback, timeout))
        except NspawnctlError as e:
            out.append(Update(unit, spec.name, spec.image, spec.auto_update, "failed", e.message))
    return out


def _one(
    client: Client,
    status: ContainerStatus,
    options: PullOptions,
    dry_run: bool,
    rollback: bool,
    timeout: float,
) -> Update:
    spec = status.spec
    policy = spec.auto_update or ""
    row = Update(status.unit or "", spec.name, spec.image, policy, "false")
    if spec.auto_remove:
        return _with(row, "failed", "a --rm container is removed when stopped: it cannot be recreated")
    old = client.images.get(spec.image_id)
    if policy == "local":
        new = client.images.get(spec.image)
        if new.id == old.id:
            return row
        if dry_run:
            return _with(row, "pending")
    else:
        source = old.origin.get("reference") or old.origin.get("url") or old.source
        if dry_run:
            return _with(row, "pending" if _newer(old, source, options) else "false")
        name = _pull_name(old, spec.image)
        new = client.images.pull(_pull_source(old, source), name, options=options).image
        if new.id == old.id:
            return row
    return _update(client, row, spec, old, new, rollback, timeout)


def _with(row: Update, updated: str, error: str | None = None) -> Update:
    from dataclasses import replace

    return replace(row, updated=updated, error=error)


def _pull_source(image: Image, source: str) -> str:
    return f"docker://{source}" if "reference" in image.origin else source


def _pull_name(image: Image, name: str) -> str | None:
    """The name a release URL's pull tags: the one the container was run by, when it still names
    the old image (else the pull would tag the URL's file name and the container's name would
    keep pointing at the old image). Nothing when it was run by ID or the name has moved on. A
    registry pull tags its reference, which is that name already."""
    from .errors import InvalidReference
    from .ref import ImageRef

    if "reference" in image.origin:
        return None
    try:
        ref = str(ImageRef.parse(name))
    except InvalidReference:  # not a name: run by ID
        return None
    return name if ref in image.refs else None


def _newer(image: Image, source: str, options: PullOptions) -> bool:
    """Whether the source has other content than ``image``, asked without downloading it."""
    if "reference" in image.origin:
        pulled = image.origin.get("index") or image.origin.get("manifest")
        return _registry_digest(source, options) != pulled
    if "url" in image.origin:
        return _release_digest(source, options) != image.origin.get("download")
    return False


def _registry_digest(source: str, options: PullOptions) -> str:
    """The digest the tag points at now (an index's or a manifest's, as the pull recorded)."""
    from .fetch.auth import find_credentials
    from .fetch.registry import RegistryClient, RegistryOptions
    from .ref import RegistryRef

    ref = RegistryRef.parse(source)
    credentials = (
        find_credentials(ref.registry, options.auth_file, warn=options.notify) if options.auth_file else None
    )
    reg = RegistryOptions(tls_verify=options.tls_verify, ca_cert=options.ca_cert, credentials=credentials)
    with RegistryClient(ref.registry, reg) as rc:
        rc.probe()
        _data, _media_type, digest = rc.get_manifest(ref.repository, ref.reference)
    return str(digest)


def _release_digest(url: str, options: PullOptions) -> str | None:
    """The tarball's line in its SHA256SUMS (a dry run only reports; the pull verifies)."""
    import posixpath
    from urllib.parse import unquote, urljoin, urlsplit

    from .verify.checksums import find_checksum

    sums = options.fetcher().get_small(urljoin(url, "SHA256SUMS"), missing_ok=True)
    if sums is None:
        return None
    found = find_checksum(sums, posixpath.basename(unquote(urlsplit(url).path)))
    return None if found is None else f"sha256:{found}"


def _update(
    client: Client, row: Update, spec: ContainerSpec, old: Image, new: Image, rollback: bool, timeout: float
) -> Update:
    """Stop the container and recreate it on ``new`` from its own definition, as ``apply`` does
    for a changed image: the new root is swapped in by the store's ``recreate`` with the old one
    kept aside (so a failure or a kill at any step leaves the old container, or what the next
    command repairs, never none), then started and waited for. Up: the old root goes. Not up:
    with ``rollback`` the old root and definition come back (its writable layer too) and run
    again, and the image name points at the old image again; without, the new one stays."""
    containers = client.containers
    store = containers.store
    name = spec.name
    containers.stop(name)
    try:
        with containers.rewriting(name):  # no start between the stop and the swap (it takes the lock)
            path, previous = store.definition(name)
            store.recreate(spec.with_changes(image_id=new.id), new, previous.copy(), keep_old=True)
    except NspawnctlError as e:  # the container is as it was: it runs again
        why = f"cannot recreate the container on {new.short_id}: {e.message}"
        return _with(row, "failed", why + _start_again(client, name))
    try:
        containers.start(name)
        error = None if timeout == 0 else _wait_up(client, name, timeout)
    except NspawnctlError as e:
        error = f"the container did not start on {new.short_id}: {e.message}"
    if error is None or not rollback:
        store.finish_recreate(name)
        return _with(row, "true") if error is None else _with(row, "failed", error)
    try:
        containers.stop(name)
        with containers.rewriting(name):
            store.undo_recreate(name, path, previous)
    except NspawnctlError as e:
        return _with(row, "failed", f"{error}; putting the previous container back failed too: {e.message}")
    client.images.tag(old.id, spec.image)  # the name points at what runs; the next run retries
    return _with(row, "rolled back", error + _start_again(client, name))


def _start_again(client: Client, name: str) -> str:
    """Start the (previous) container again: "" when it started, else why not, for the row."""
    try:
        client.containers.start(name)
    except NspawnctlError as e:
        return f"; the previous container did not start again: {e.message}"
    return ""


def _wait_up(client: Client, name: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while True:
        status = client.containers.get(name)
        if not status.running:
            code = status.exit.exit_code if status.exit else "?"
            return f"the container stopped (exit code {code})"
        if status.spec.health is not None:
            health = status.health.status if status.health else "starting"
            if health == "healthy":
                return None
            if health == "unhealthy":
                return "the container turned unhealthy"
        elif time.monotonic() - start >= SETTLE:
            return None
        if time.monotonic() > deadline:
            return f"the container did not turn healthy within {timeout:.0f} s"
        time.sleep(POLL)
