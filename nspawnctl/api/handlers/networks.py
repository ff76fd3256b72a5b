"""``/networks``: docker's networks as nspawnctl has them: ``bridge`` (each container's own NATed
veth link, nspawnctl's default), ``host``, ``none``, the declared networks (net/networks.py: a zone
that exists without members) and each zone containers use (a bridge its containers share).
Create, remove, prune, connect and disconnect go through the library's net.networks, as
``nspawnctl network`` does."""

from __future__ import annotations

import asyncio
from typing import Any

from ...listfilters import NETWORK_KEYS, NETWORK_PRUNE_KEYS, network_subject, parse_list_filters
from ...net import networks as lib
from ..context import Exchange
from ..http import ApiError
from ..resources import filter_words, find_network, networks, parse_filters
from ..routing import Router
from ..translate import string, strings

CREATE_IGNORED = ("CheckDuplicate", "Scope", "ConfigOnly", "ConfigFrom", "Ingress", "EnableIPv4")


async def _all(ex: Exchange) -> list[lib.NetworkRecord]:
    from ...net.zone import zone_subnets

    specs = await asyncio.to_thread(ex.client.containers.store.list)
    statuses = await ex.client.containers.astatuses(ex.bus, specs) if specs else []
    declared = await asyncio.to_thread(lib.list, ex.client.paths)
    return networks(statuses, await asyncio.to_thread(zone_subnets), declared)


async def list_networks(ex: Exchange) -> None:
    """docker's filters through the library's (listfilters.py, as ``network ls --filter``)."""
    words = filter_words(parse_filters(ex.request.arg("filters"), NETWORK_KEYS))
    only = parse_list_filters(words, NETWORK_KEYS)
    await ex.json([n.to_json() for n in await _all(ex) if only.matches(network_subject(n))])


async def inspect(ex: Exchange, id: str) -> None:
    await ex.json(find_network(await _all(ex), id).to_json())


def _body(ex: Exchange) -> dict[str, Any]:
    body = ex.request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "a JSON object is expected")
    return body


def _bool(name: str, value: Any) -> bool:
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"{name}: a boolean is expected")
    return bool(value)


def create_args(body: dict[str, Any]) -> tuple[str, str | None, bool, dict[str, str]]:
    """(name, subnet, internal, labels) of a create body; a field nspawnctl cannot honour is a 400."""
    from ..translate import empty

    name = string("Name", body.get("Name"))
    if not name:
        raise ApiError(400, "Name: a network name is required")
    driver = string("Driver", body.get("Driver"))
    if driver not in ("", "bridge"):
        raise ApiError(400, f"Driver: {driver}: nspawnctl's networks are bridges (zones): use bridge")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiError(400, "Labels: an object of strings is expected")
    subnet: str | None = None
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise ApiError(400, "IPAM: an object is expected")
    if string("IPAM.Driver", ipam.get("Driver")) not in ("", "default"):
        raise ApiError(400, f"IPAM.Driver: {ipam.get('Driver')}: only the default IPAM driver")
    if not empty(ipam.get("Options"), "Options"):
        raise ApiError(400, "IPAM.Options: not supported by nspawnctl's networks")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or len(configs) > 1:
        raise ApiError(400, "IPAM.Config: at most one IPv4 subnet")
    for cfg in configs:
        if not isinstance(cfg, dict):
            raise ApiError(400, "IPAM.Config: a list of objects is expected")
        subnet = string("IPAM.Config.Subnet", cfg.get("Subnet")) or None
        for key, value in cfg.items():
            if key != "Subnet" and not empty(value, key):
                if key == "Gateway" and subnet and value == lib.first_host(subnet):
                    continue
                raise ApiError(
                    400, f"IPAM.Config.{key}: not supported (the bridge's address is the subnet's first host)"
                )
    for key in ("EnableIPv6", "Attachable"):
        if _bool(key, body.get(key)):
            raise ApiError(400, f"{key}: not supported by nspawnctl's networks")
    if not empty(body.get("Options"), "Options"):
        raise ApiError(400, "Options: driver options are not supported by nspawnctl's networks")
    internal = _bool("Internal", body.get("Internal"))
    known = {
        "Name",
        "Driver",
        "Labels",
        "IPAM",
        "Internal",
        "EnableIPv6",
        "Attachable",
        "Options",
        *CREATE_IGNORED,
    }
    for key, value in body.items():
        if key not in known and not empty(value, key):
            raise ApiError(400, f"{key}: not supported by nspawnctl's networks")
    return name, subnet, internal, {str(k): v for k, v in labels.items()}


async def create(ex: Exchange) -> None:
    name, subnet, internal, labels = create_args(_body(ex))
    if any(n.name == name for n in await _all(ex) if n.kind == "builtin"):
        raise ApiError(409, f"network with name {name} already exists")
    try:
        decl = await asyncio.to_thread(lib.create, ex.client.paths, name, subnet, internal, labels)
    except lib.InternalNotSupported as e:
        raise ApiError(400, f"Internal: {e.message}") from None
    await ex.json({"Id": decl.id, "Warning": ""}, status=201)


async def remove(ex: Exchange, id: str) -> None:
    n = find_network(await _all(ex), id)
    if n.kind == "builtin":
        raise ApiError(403, f"{n.name} is a pre-defined network and cannot be removed")
    if n.decl is None:
        raise ApiError(
            403 if n.members else 404,
            f"network {n.name}: a zone made by its containers (zone:{n.name}) goes with its last one",
        )
    try:
        await asyncio.to_thread(lib.remove, ex.client.paths, n.decl.name)
    except lib.NetworkInUse as e:
        raise ApiError(403, e.message) from None
    await ex.empty(204)


async def _change(ex: Exchange, id: str, connect: bool) -> None:
    body = _body(ex)
    n = find_network(await _all(ex), id)
    if n.kind != "zone":
        raise ApiError(400, f"network {n.name}: nspawnctl connects containers to zones only")
    ref = string("Container", body.get("Container"))
    if not ref:
        raise ApiError(400, "Container: a container name or ID is required")
    aliases: list[str] = []
    if connect:
        ep = body.get("EndpointConfig") or {}
        if not isinstance(ep, dict):
            raise ApiError(400, "EndpointConfig: an object is expected")
        from ..translate import ENDPOINT_IGNORED, empty

        for key, value in ep.items():
            if key not in ("Aliases", *ENDPOINT_IGNORED) and not empty(value, key):
                raise ApiError(400, f"EndpointConfig.{key}: not supported by nspawnctl's networks")
        aliases = strings("EndpointConfig.Aliases", ep.get("Aliases"))

    await lib.achange_membership(ex.client, ex.bus, ref, n.zone, connect, aliases)
    await ex.empty(200)


async def connect(ex: Exchange, id: str) -> None:
    await _change(ex, id, True)


async def disconnect(ex: Exchange, id: str) -> None:
    await _change(ex, id, False)


async def prune(ex: Exchange) -> None:
    words = filter_words(parse_filters(ex.request.arg("filters"), NETWORK_PRUNE_KEYS))
    removed = await asyncio.to_thread(
        lib.prune, ex.client.paths, parse_list_filters(words, NETWORK_PRUNE_KEYS)
    )
    await ex.json({"NetworksDeleted": removed or None})


def register(router: Router) -> None:
    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
