"""Image references: ``name[:tag][@digest]`` locally, ``[registry/]repository[:tag][@digest]`` on a
registry, parsed once into typed values.

The tag is what follows the last ``:`` after the last ``/``, so a registry port
(``127.0.0.1:5000/acc/bb:v1``) is never mistaken for a tag. Registry references are normalised
the way docker does (``alpine`` is ``docker.io/library/alpine:latest``), so the same image gets
the same local name whichever spelling pulled it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
"""Every name of Docker Hub (references, credential files): each one means docker.io, so that a
policy scope, a login or a local name for docker.io is found whichever spelling was used."""
_OFFICIAL_PREFIX = "library/"
_TRANSPORT = "docker://"
_MAX_NAME = 255  # distribution's NameTotalLengthMax, registry host included
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_HOST = re.compile(rf"(?:{_DOMAIN}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_HEX_ID = re.compile(r"(?:sha256:)?[0-9a-f]{3,64}|(?:sha512-)?[0-9a-f]{3,128}")

_LOCAL_HINT = (
    "use NAME[:TAG][@sha256:DIGEST] with lowercase letters, digits and . _ - in the name, e.g. debian:12"
)
_REMOTE_HINT = (
    "use [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. alpine:3.20 or quay.io/org/app:v1"
)


@dataclass(frozen=True, order=True)
class ImageRef:
    """A local image name: ``name:tag``, or ``name@sha256:…`` when pinned to a digest (``tag`` is
    then the default and means nothing)."""

    name: str
    tag: str = DEFAULT_TAG
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``name[:tag][@digest]``; raise InvalidReference with a hint on anything else."""
        rest, digest = _split_digest(text, text, _LOCAL_HINT)
        name, tag = _split_tag(rest)
        if not _valid_name(name) or (tag is not None and not _TAG.fullmatch(tag)):
            raise InvalidReference(f"invalid image reference {text!r}", hint=_hint_for(name, _LOCAL_HINT))
        # with a digest the tag says nothing more (docker pulls by the digest): it is dropped
        return cls(name, DEFAULT_TAG if digest or tag is None else tag, digest)


@dataclass(frozen=True)
class RegistryRef:
    """An image on a registry, normalised: ``registry`` is a lowercase host[:port] (``docker.io``
    for Docker Hub, whatever spelling named it), ``repository`` its path there (official Docker
    Hub images under ``library/``). ``tag`` is None only when a digest alone was given; when both
    are given the digest is what is pulled."""

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"

    @property
    def reference(self) -> str:
        """What the manifest is fetched by: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def local(self) -> ImageRef:
        """The local name the pulled image gets, e.g. ``127.0.0.1:5000/acc/bb:v1``."""
        name = f"{self.registry}/{self.repository}"
        return ImageRef(name, DEFAULT_TAG if self.digest else self.tag or DEFAULT_TAG, self.digest)

    @classmethod
    def parse(cls, text: str) -> RegistryRef:
        """Parse and normalise a docker-style reference (an optional ``docker://`` prefix is
        dropped); raise InvalidReference with a hint on anything else."""
        rest, digest = _split_digest(text.removeprefix(_TRANSPORT), text, _REMOTE_HINT)
        name, tag = _split_tag(rest)
        registry, path = _split_registry(name)
        if registry is None:
            registry = DOCKER_HUB
        elif not _HOST.fullmatch(registry):
            raise InvalidReference(f"invalid registry {registry!r} in {text!r}", hint=_REMOTE_HINT)
        else:
            registry = canonical_registry(registry)
        if registry == DOCKER_HUB and path and "/" not in path:
            path = _OFFICIAL_PREFIX + path
        parts = path.split("/")
        if not path or not all(_COMPONENT.fullmatch(p) for p in parts):
            raise InvalidReference(f"invalid image reference {text!r}", hint=_hint_for(name, _REMOTE_HINT))
        if len(registry) + 1 + len(path) > _MAX_NAME:
            raise InvalidReference(
                f"invalid image reference {text!r}: the name is longer than {_MAX_NAME} characters",
                hint="use a shorter repository name",
            )
        if tag is not None and not _TAG.fullmatch(tag):
            raise InvalidReference(
                f"invalid tag {tag!r} in {text!r}",
                hint="a tag is up to 128 letters, digits and _ . - (not starting with . or -)",
            )
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, path, tag, digest)


def familiar(ref: str) -> str:
    """docker's short form of a Docker Hub name (``alpine:3.10`` for ``docker.io/library/alpine:3.10``),
    as its clients show and compare RepoTags."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def canonical_registry(host: str) -> str:
    """A registry host[:port] as nspawnctl names it: lowercase, without the default port 443,
    and ``docker.io`` for every Docker Hub alias (``registry-1.docker.io:443`` is docker.io)."""
    host = host.lower()
    bare = host.removesuffix(":443")
    if _split_registry(f"{bare}/x")[0] is None:
        bare = host  # "io:443" stays: a bare "io/…" would read as a Docker Hub user's repository
    return DOCKER_HUB if bare in DOCKER_HUB_ALIASES else bare


def has_explicit_registry(text: str) -> bool:
    """Whether ``text`` names its registry (``quay.io/x``, ``localhost:5000/x``, ``localhost/x``)
    rather than leaving it to the Docker Hub default (``alpine``, ``user/app``)."""
    body = text.removeprefix(_TRANSPORT).partition("@")[0]
    return _split_registry(body)[0] is not None


def normalize_short(text: str) -> str | None:
    """The local name a registry pull of ``text`` stores (``alpine`` ->
    ``docker.io/library/alpine:latest``), or None when ``text`` cannot be a registry reference.
    For finding a pulled image by the short name it was pulled with."""
    try:
        return str(RegistryRef.parse(text).local)
    except InvalidReference:
        return None


def looks_like_id(text: str) -> bool:
    """True for an image ID or a prefix of one (``sha256:ab12…``, ``sha512-ab12…``, ``ab12…``)."""
    return bool(_HEX_ID.fullmatch(text))


def valid_digest(text: str) -> bool:
    """Whether ``text`` is a digest nspawnctl accepts: ``sha256:`` and 64 lowercase hex digits."""
    return DIGEST.fullmatch(text) is not None


# -- helpers -------------------------------------------------------------------------------------
def _split_digest(body: str, text: str, hint: str) -> tuple[str, str | None]:
    """``name@sha256:…`` -> (name, digest); only sha256 in its canonical (lowercase) form.
    ``text`` is what the user wrote, for messages."""
    rest, at, digest = body.partition("@")
    if not at:
        return body, None
    if DIGEST.fullmatch(digest):
        return rest, digest
    if "@" in digest or not _ANY_DIGEST.fullmatch(digest):
        raise InvalidReference(f"invalid digest {digest!r} in {text!r}", hint=hint)
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256":
        lower = encoded.lower()
        raise InvalidReference(
            f"invalid digest {digest!r} in {text!r}: sha256 is 64 lowercase hex digits",
            hint=f"use sha256:{lower}" if DIGEST.fullmatch(f"sha256:{lower}") else hint,
        )
    raise InvalidReference(
        f"unsupported digest {digest!r} in {text!r}",
        hint="only sha256:<64 lowercase hex digits> digests are supported",
    )


def _split_tag(text: str) -> tuple[str, str | None]:
    """The tag follows the last ':' after the last '/'; a registry port is never a tag."""
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1 :]
    return text, None


def _split_registry(name: str) -> tuple[str | None, str]:
    """The first component is a registry host when a '/' follows it and it has a '.' or ':' or is
    ``localhost`` (docker's rule, except that uppercase does not make a host: ``MyUser/app`` gets
    the lowercase hint rather than a connection to a host named MyUser)."""
    first, slash, path = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, path
    return None, name


def _valid_name(name: str) -> bool:
    if not name or len(name) > _MAX_NAME:
        return False
    registry, path = _split_registry(name)
    if registry is not None and not _HOST.fullmatch(registry):
        return False
    return all(_COMPONENT.fullmatch(p) for p in path.split("/"))


def _hint_for(name: str, hint: str) -> str:
    """Uppercase is the commonest mistake; say so, with the lowercase spelling."""
    if name != name.lower() and _valid_name(name.lower()):
        return f"repository names must be lowercase: {name.lower()}"
    return hint
