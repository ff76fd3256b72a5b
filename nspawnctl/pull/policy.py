"""docker's ``--pull missing|always|never`` for ``create``/``run``: when to pull the image first.

Only references that say where they come from are pulled: a registry reference naming its
registry (``localhost:5000/app``, ``quay.io/x/y:1``, ``docker://...``), an https:// or http://
URL of a tarball or ACI, an appc name (``example.com/app:1.0``). A short name (``alpine``,
``e2e/busybox``) or an ID is a local name: nspawnctl never goes to Docker Hub unasked (``pull
alpine`` does that), so a missing one is the usual "no such image" error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ImageNotFound, InvalidArgument, InvalidReference

if TYPE_CHECKING:
    from ..store.images import Image
    from .options import PullResult

PULL_POLICIES = ("missing", "always", "never")


def check_pull_policy(text: str) -> str:
    if text not in PULL_POLICIES:
        raise InvalidArgument(f"invalid --pull {text!r}", hint="use missing, always or never")
    return text


def pullable(ref: str) -> bool:
    """Whether ``ref`` says where to pull it from (see the module's docstring)."""
    if ref.startswith(("http://", "https://", "docker://")):
        return True
    from ..ref import has_explicit_registry

    try:
        return has_explicit_registry(ref)
    except InvalidReference:
        return False


def ensure_image(
    ref: str, policy: str, get: Callable[[str], Image], pull: Callable[[str], PullResult]
) -> Image:
    """The image ``ref`` names, pulled first as ``policy`` says (``get`` finds a local image,
    ``pull`` pulls with the caller's verification options)."""
    check_pull_policy(policy)
    if policy == "always":
        if not pullable(ref):
            raise InvalidArgument(
                f"--pull always: {ref} is a local image name, there is nowhere to pull it from",
                hint="give a registry reference (HOST[:PORT]/NAME:TAG) or URL, or use --pull missing",
            )
        return pull(ref).image
    try:
        return get(ref)
    except (ImageNotFound, InvalidReference):
        if policy == "never" or not pullable(ref):
            if policy == "never" and pullable(ref):
                raise ImageNotFound(
                    f"no such image: {ref}",
                    hint=f"--pull never uses local images only: nspawnctl pull {ref}",
                ) from None
            raise
    return pull(ref).image
