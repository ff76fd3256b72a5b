"""``/networks``: docker's networks as nspawnctl has them: ``bridge`` (each container's own NATed
veth link, nspawnctl's default), ``host``, ``none``, and each zone (a bridge its containers share).
Zones come and go with their containers, so creating or removing one through the API is refused."""

from __future__ import annotations

import asyncio

from ..context import Exchange
from ..http import ApiError
from ..resources import Network, find_network, networks, parse_filters
from ..routing import Router

FILTER_KEYS = ("driver", "id", "name", "type", "label", "scope", "dangling")


async def _all(ex: Exchange) -> list[Network]:
    from ...net.zone import zone_subnets

    specs = await asyncio.to_thread(ex.client.containers.store.list)
    statuses = await ex.client.containers.astatuses(ex.bus, specs) if specs else []
    return networks(statuses, await asyncio.to_thread(zone_subnets))


def _matches(n: Network, filters: dict[str, list[str]]) -> bool:
    checks = {
        "driver": lambda v: n.driver == v,
        "id": lambda v: n.id.startswith(v),
        "name": lambda v: v in n.name,
        "type": lambda v: v == ("builtin" if n.kind == "builtin" else "custom"),
        "label": lambda v: False,
        "scope": lambda v: v == "local",
        "dangling": lambda v: (v.lower() in ("1", "true")) == (not n.members and n.kind != "builtin"),
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items())


async def list_networks(ex: Exchange) -> None:
    filters = parse_filters(ex.request.arg("filters"), FILTER_KEYS)
    await ex.json([n.to_json() for n in await _all(ex) if _matches(n, filters)])


async def inspect(ex: Exchange, id: str) -> None:
    await ex.json(find_network(await _all(ex), id).to_json())


async def create(ex: Exchange) -> None:
    body = ex.request.json()
    name = body.get("Name") if isinstance(body, dict) else None
    raise ApiError(
        501,
        f"creating network {name or ''!s}: not supported: nspawnctl's zones are made by the first "
        "container that joins one (nspawnctl run --network zone:NAME) and go with the last",
    )


async def remove(ex: Exchange, id: str) -> None:
    n = find_network(await _all(ex), id)
    raise ApiError(
        501 if n.kind != "builtin" else 403,
        f"network {n.name}: "
        + (
            "a built-in network cannot be removed"
            if n.kind == "builtin"
            else "a zone goes with its last container"
        ),
    )


async def connect(ex: Exchange, id: str) -> None:
    find_network(await _all(ex), id)
    raise ApiError(501, "connecting a container to another network is not supported by nspawnctl")


async def prune(ex: Exchange) -> None:
    parse_filters(ex.request.arg("filters"), ("until", "label"))
    await ex.json({"NetworksDeleted": None})


def register(router: Router) -> None:
    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", connect)
