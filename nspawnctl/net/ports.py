"""Published ports: ``-p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]``.

TCP: a transient socket unit ``nspawnctl-NAME_portHOSTPORT-tcp.socket`` listens on the host and its
service runs systemd-socket-proxyd to CONTAINER_IP:CTRPORT, sandboxed (a dynamic user, a read-only
file system). Both are PartOf= the container's unit, so stopping the container stops them even
when its ExecStopPost does not get to. Unlike nspawn's own Port= (a DNAT
rule that skips 127.0.0.0/8), a listening socket also answers on localhost; without HOSTIP it
listens on every address, IPv4 and IPv6.

UDP: an element ``udp . HOSTPORT : CONTAINER_IP . CTRPORT`` in systemd-networkd's nft map
``ip io.systemd.nat map_port_ipport``, exactly what nspawn's Port= adds. So UDP ports answer on the
host's own non-loopback addresses only (networkd's output chain skips 127.0.0.0/8), on every such
address (a HOSTIP is refused: the map has no address in its key), and only while networkd keeps
its table (restarting networkd flushes it).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import Paths
from ..errors import InvalidArgument, NetworkError, PortInUse, SystemdError
from ..spec import ContainerSpec, PortMapping, check_port_mappings, owns_netns
from . import ipcmd, statefile
from .statefile import NetState

PROXYD = (Path("/usr/lib/systemd/systemd-socket-proxyd"), Path("/lib/systemd/systemd-socket-proxyd"))
NFT_MAP = ["ip", "io.systemd.nat", "map_port_ipport"]
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_RANGE = (32768, 60999)  # docker's, and Linux's default ephemeral range


@contextmanager
def picking(paths: Paths) -> Iterator[None]:
    """Held from picking free host ports until the definition that records them is written:
    two creates running at once never pick the same port (the second sees the first's file)."""
    paths.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(paths.state / "ports.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def port_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's ephemeral port range (where docker picks too), or docker's default."""
    try:
        low, high = (int(w) for w in (text if text is not None else PORT_RANGE.read_text()).split())
    except (OSError, ValueError):
        return DEFAULT_RANGE
    return (low, high) if 0 < low <= high < 65536 else DEFAULT_RANGE


def pick_ports(
    ports: Iterable[PortMapping],
    taken: Iterable[str],
    free: Any = None,
    candidates: Iterable[int] | None = None,
) -> list[PortMapping]:
    """``ports`` with every picked one (host port 0) given the lowest port of the ephemeral range
    that no container records (``taken``: their ``Publish=`` values, running or not), that this
    container does not publish already, and that nothing on the host holds now (``free``, by
    default a bind test). Call it under :func:`picking`."""
    ports = list(ports)
    is_free = free or (lambda pm: not _bind_in_use(pm))
    used = {(m.protocol, m.host_port) for m in (PortMapping.parse(t) for t in taken)}
    used |= {(pm.protocol, pm.host_port) for pm in ports if not pm.picked}
    low, high = port_range()
    pool = list(candidates) if candidates is not None else range(low, high + 1)
    # per protocol and address, where the search goes on: every candidate before it is used or
    # busy, so the picking is one pass over the range (it runs under the global ports lock)
    cursor: dict[tuple[str, str | None], int] = {}
    out = []
    for pm in ports:
        if not pm.picked:
            out.append(pm)
            continue
        i, choice = cursor.get((pm.protocol, pm.host_ip), 0), None
        while choice is None and i < len(pool):
            port, i = pool[i], i + 1
            if (pm.protocol, port) not in used and is_free(candidate := replace(pm, host_port=port)):
                choice = candidate
        cursor[(pm.protocol, pm.host_ip)] = i
        if choice is not None:
            used.add((pm.protocol, choice.host_port))
            out.append(choice)
        else:
            raise PortInUse(
                f"no free host port for {pm} in {low}-{high}",
                hint="publish it on a port of your choice: -p HOSTPORT:" + pm.key,
            )
    return out


def unit_base(name: str, pm: PortMapping) -> str:
    """``nspawnctl-NAME_portHOSTPORT-PROTO``: container names never hold "_", so this is never
    the unit of a container (``nspawnctl-NAME-8080-tcp.service`` could be)."""
    return f"nspawnctl-{name}_port{pm.host_port}-{pm.protocol}"


def host_ip(pm: PortMapping) -> str:
    """The address docker shows for a published port: 0.0.0.0 when no HOSTIP was given (our
    socket listens on every address, IPv6 too)."""
    return pm.host_ip or "0.0.0.0"


def host_endpoint(pm: PortMapping) -> str:
    """``0.0.0.0:32768`` or ``[::1]:32768``, as ``docker port`` prints it."""
    ip = host_ip(pm)
    return f"[{ip}]:{pm.host_port}" if ":" in ip else f"{ip}:{pm.host_port}"


def docker_ports(spec: ContainerSpec) -> dict[str, list[dict[str, str]] | None]:
    """docker's ``NetworkSettings.Ports``: every published port with its host bindings, every
    exposed but unpublished one with null."""
    out: dict[str, list[dict[str, str]] | None] = {key: None for key in spec.exposed}
    for pm in spec.ports:
        bindings = out.get(pm.key) or []
        bindings.append({"HostIp": host_ip(pm), "HostPort": str(pm.host_port)})
        out[pm.key] = bindings
    return out


def check_ports(paths: Paths, spec: ContainerSpec) -> None:
    """Fail early, before anything is created: a port published twice, or already taken on the
    host (by a program, or by another nspawnctl container, even a stopped-but-not-cleaned one).

    Ports the container's own state records are not checked for a listener: that is its own
    proxy, left by a run whose teardown failed (``up`` removes it, then checks again)."""
    if not spec.ports:
        return
    if not owns_netns(spec.network):
        raise InvalidArgument(
            f"-p needs a network namespace of the container's own, not --network {spec.network}",
            hint="use --network veth or zone:NAME (or leave --network out: -p implies veth)",
        )
    check_port_mappings(spec.ports)
    states = statefile.all_states()
    others = [st for st in states if st.name != spec.name]
    own = next((st.ports for st in states if st.name == spec.name), [])
    for pm in spec.ports:
        owner = next((st.name for st in others if _clashes(pm, st.ports)), None)
        if owner is not None or (not _clashes(pm, own) and _bind_in_use(pm)):
            raise PortInUse(
                f"port {pm.host_port}/{pm.protocol} is already in use on the host",
                hint=(f"container {owner} publishes it; " if owner else "")
                + f"choose another host port: -p OTHER:{pm.container_port}",
            )


def _clashes(pm: PortMapping, published: list[str]) -> bool:
    for text in published:
        other = PortMapping.parse(text)
        same_ip = not pm.host_ip or not other.host_ip or pm.host_ip == other.host_ip
        if other.protocol == pm.protocol and other.host_port == pm.host_port and same_ip:
            return True
    return False


def _bind_in_use(pm: PortMapping) -> bool:
    """Try to bind what the socket unit (or the DNAT rule) will take; only EADDRINUSE counts.
    Without a HOSTIP that is every address (127.0.0.1 too: a program there holds only that one);
    with one, just that address."""
    if pm.host_ip:
        targets = [(socket.AF_INET6 if ":" in pm.host_ip else socket.AF_INET, pm.host_ip)]
    else:
        targets = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")]
    return any(_bind_fails(fam, ip, pm) for fam, ip in targets)


def _bind_fails(fam: socket.AddressFamily, ip: str, pm: PortMapping) -> bool:
    kind = socket.SOCK_STREAM if pm.protocol == "tcp" else socket.SOCK_DGRAM
    try:
        sock = socket.socket(fam, kind)
    except OSError:  # no IPv6 on this host
        return False
    with sock:
        if kind == socket.SOCK_STREAM:  # as systemd's listening sockets: TIME_WAIT is no conflict
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((ip, pm.host_port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            if e.errno == errno.EADDRNOTAVAIL and ip == pm.host_ip:
                raise InvalidArgument(
                    f"-p {pm}: {ip} is not an address of this host",
                    hint="use one of the host's addresses, or none",
                ) from None
    return False


def publish(st: NetState, ports: list[PortMapping], unit: str | None = None) -> None:
    """Publish ``ports`` to ``st.address``; every unit and map element is recorded in ``st`` (and
    saved) before it is made, so ``down`` removes it even when a later one fails."""
    if not ports:
        return
    assert st.address is not None
    tcp = [pm for pm in ports if pm.protocol == "tcp"]
    for pm in ports:
        if pm.protocol == "udp":
            _publish_udp(st, pm)
    if tcp:
        _publish_tcp(st, tcp, unit)


def _publish_udp(st: NetState, pm: PortMapping) -> None:
    """``create``, not ``add``: an element already there is someone else's mapping (nspawn's Port=
    of another machine) and stays theirs."""
    key = f"udp . {pm.host_port}"
    st.nft_elements.append(key)
    st.ports.append(str(pm))
    statefile.save(st)
    try:
        ipcmd.run(["nft", "create", "element", *NFT_MAP, f"{{ {key} : {st.address} . {pm.container_port} }}"])
    except NetworkError as e:
        if "File exists" in e.message:
            st.nft_elements.remove(key)  # not ours: down() must leave it
            st.ports.remove(str(pm))
            statefile.save(st)
            raise PortInUse(
                f"port {pm.host_port}/udp is already in use on the host",
                hint="another machine publishes it (networkd's nft map io.systemd.nat); "
                f"choose another host port: -p OTHER:{pm.container_port}/udp",
            ) from None
        raise NetworkError(
            f"cannot publish {pm}: {e.message}",
            hint=e.hint
            or "the map is systemd-networkd's (made for IPMasquerade= on ve-/vz- links): "
            "is systemd-networkd running?",
        ) from None


def _publish_tcp(st: NetState, tcp: list[PortMapping], unit: str | None) -> None:
    from ..systemd.bus import run_sync

    proxyd = next((p for p in PROXYD if p.exists()), None)
    if proxyd is None:
        raise NetworkError(
            "systemd-socket-proxyd not found", hint="install systemd (it ships systemd-socket-proxyd)"
        )
    jobs = []
    for pm in tcp:
        base = unit_base(st.name, pm)
        st.proxy_units += [f"{base}.socket", f"{base}.service"]
        st.ports.append(str(pm))
        jobs.append((pm, base, _socket_props(st, pm, unit), _service_props(st, pm, proxyd, unit)))
    statefile.save(st)

    async def go(bus: Any) -> list[tuple[PortMapping, str, str]]:
        from ..systemd.manager import Manager

        m = Manager(bus)
        out = []
        for pm, base, sock_props, svc_props in jobs:
            for leftover in (f"{base}.socket", f"{base}.service"):  # it would block the name
                await m.stop_if_loaded(leftover)
            result = await m.start_transient(f"{base}.socket", sock_props, [(f"{base}.service", svc_props)])
            out.append((pm, base, result))
        return out

    for pm, base, result in run_sync(go):
        if result != "done":
            raise NetworkError(
                f"cannot listen on host port {pm.host_port}/tcp (socket unit {base}.socket: {result})",
                hint=f"see journalctl -u {base}.socket",
            )


def _listen_address(pm: PortMapping) -> str:
    if not pm.host_ip:
        return str(pm.host_port)
    ip = ipaddress.ip_address(pm.host_ip)
    return f"[{ip}]:{pm.host_port}" if ip.version == 6 else f"{ip}:{pm.host_port}"


def _owner(st: NetState, unit: str | None) -> str:
    return f"container {st.name}" + (f" ({unit})" if unit else "")


def _part_of(unit: str | None) -> list[Any]:
    """Stopped with the container's unit; no ordering or BindsTo=: up() runs in that unit's
    ExecStartPre, and a start job waiting for the unit's own start would never finish."""
    return [("PartOf", "as", [unit])] if unit else []


def _socket_props(st: NetState, pm: PortMapping, unit: str | None) -> list[Any]:
    return [
        ("Description", "s", f"nspawnctl: port {pm} of {_owner(st, unit)}"),
        ("Listen", "a(ss)", [["Stream", _listen_address(pm)]]),
        ("CollectMode", "s", "inactive-or-failed"),
        *_part_of(unit),
    ]


def _service_props(st: NetState, pm: PortMapping, proxyd: Path, unit: str | None) -> list[Any]:
    target = f"{st.address}:{pm.container_port}"
    return [
        ("Description", "s", f"nspawnctl: proxy for port {pm} of {_owner(st, unit)}"),
        ("ExecStart", "a(sasb)", [[str(proxyd), [str(proxyd), target], False]]),
        ("CollectMode", "s", "inactive-or-failed"),
        *_part_of(unit),
        # it only passes bytes between the socket it is given and the container
        ("DynamicUser", "b", True),
        ("PrivateTmp", "b", True),
        ("ProtectSystem", "s", "strict"),
        ("ProtectHome", "s", "yes"),
        ("NoNewPrivileges", "b", True),
    ]


def unpublish(st: NetState) -> None:
    """Stop the proxies and drop the map elements; best effort, as ``down`` must always finish."""
    for key in st.nft_elements:
        ipcmd.try_run(["nft", "delete", "element", *NFT_MAP, f"{{ {key} }}"])
    if st.proxy_units:
        from ..systemd.bus import run_sync

        async def go(bus: Any) -> None:
            from ..systemd.manager import Manager

            m = Manager(bus)
            for unit in st.proxy_units:
                await m.stop_if_loaded(unit)

        try:
            run_sync(go)
        except SystemdError:
            pass
