"""docker's ``--volumes-from CONTAINER[:ro|:rw]`` (the API's ``HostConfig.VolumesFrom``).

As dockerd (daemon/volumes.go, registerMountPoints), the source's mounts (volumes and bind mounts)
are copied at create time to the same destinations: a later source of the same destination wins,
and an explicit ``-v``/``--mount`` at that destination wins over all of them. A mount stays
read-only if the source's was; ``:ro`` makes them all read-only. The copies become the new
container's own ``Bind=``/``BindReadOnly=`` lines, so a later change of the source does not matter
and ``generate`` shows them; the list as given is kept as ``[X-Nspawnctl] VolumesFrom=`` for
inspect's ``HostConfig.VolumesFrom``. A shared volume is in use while either container binds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .errors import InvalidArgument
from .spec import Volume

# nspawn's ID-mapping options: decided anew for the new container (its own user namespace or none)
_IDMAP = frozenset({"idmap", "noidmap", "rootidmap", "owneridmap"})


@dataclass(frozen=True)
class VolumesFrom:
    container: str  # a name, ID or ID prefix, as given
    read_only: bool = False
    mode: str = ""  # "", "ro" or "rw" as given (kept for inspect)

    @classmethod
    def parse(cls, text: str) -> VolumesFrom:
        """``CONTAINER[:ro|:rw]``; docker's other modes (z, Z, propagation, nocopy) are refused."""
        container, _, mode = text.partition(":")
        if not container:
            raise InvalidArgument(
                f"invalid --volumes-from {text!r}: a container is expected",
                hint="--volumes-from CONTAINER[:ro|:rw]",
            )
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(
                f"invalid --volumes-from mode {mode!r} in {text!r}",
                hint="the mode is ro or rw: --volumes-from CONTAINER[:ro|:rw]",
            )
        return cls(container, mode == "ro", mode)

    def __str__(self) -> str:
        return f"{self.container}:{self.mode}" if self.mode else self.container


def inherit(sources: Iterable[tuple[VolumesFrom, Iterable[Volume]]], explicit: Iterable[str]) -> list[Volume]:
    """The mounts ``sources`` (each --volumes-from with its container's resolved volumes) give
    the new container, by destination: a later source wins, an ``explicit`` destination (``-v``,
    ``--mount``) is left to the explicit mount. ID-mapping options are dropped (the new
    container's own user namespace decides them)."""
    taken = set(explicit)
    out: dict[str, Volume] = {}
    for vf, volumes in sources:
        for v in volumes:
            if v.container in taken:
                continue
            options = tuple(o for o in v.options if o not in _IDMAP)
            out.pop(v.container, None)  # a later one at the same destination replaces it
            out[v.container] = replace(v, read_only=v.read_only or vf.read_only, options=options)
    return list(out.values())
