"""A minimal rtnetlink client on the stdlib's AF_NETLINK socket: the few link, address and route
requests a container network needs, made in-process instead of by one ``ip`` process each.

A netlink socket acts in the network namespace it was created in, so one socket per namespace
(net/netns.py makes the container's). The message codecs are pure functions (unit-tested);
:class:`Rtnl` only adds the socket, sequence numbers and error replies. (pyroute2 would do this too,
but importing it takes longer than the processes it would replace.)
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import NetworkError

NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24

IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_ADDRESS = 1
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
IFF_UP = 0x1

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTATTR = struct.Struct("=HH")  # length, type


class NetlinkError(NetworkError):
    """A request the kernel refused; ``errno`` says why (ENODEV: no such link)."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what}: {os.strerror(code)}")
        self.errno = code


# -- codecs ------------------------------------------------------------------------------------
def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes (a nested one is an attr whose payload is attrs)."""
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def str_attr(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def u32_attr(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


@dataclass
class Msg:
    """One netlink message: its header's type, flags and sequence number, and its body."""

    kind: int
    flags: int
    seq: int
    body: bytes


def split_messages(data: bytes) -> Iterator[Msg]:
    """The netlink messages in one datagram (a truncated tail is dropped)."""
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size or off + length > len(data):
            return
        yield Msg(kind, flags, seq, data[off + NLMSGHDR.size : off + length])
        off += _align(length)


def parse_attrs(data: bytes, off: int = 0) -> dict[int, bytes]:
    """rtattrs from ``off`` on: type (nested/byte-order flags masked) -> payload; the first wins."""
    out: dict[int, bytes] = {}
    while off + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, off)
        if length < RTATTR.size or off + length > len(data):
            break
        out.setdefault(kind & 0x3FFF, data[off + RTATTR.size : off + length])
        off += _align(length)
    return out


def _short(body: bytes, size: int, what: str) -> None:
    """A reply too short for its fixed header is the kernel's (or a forger's) fault, not a crash."""
    if len(body) < size:
        raise NetworkError(f"malformed netlink reply: {what} of {len(body)} bytes, want {size}")


def error_code(msg: Msg) -> int:
    """An NLMSG_ERROR's errno (0: an acknowledgement)."""
    _short(msg.body, 4, "error message")
    (code,) = struct.unpack_from("=i", msg.body)
    return -code


@dataclass
class Link:
    """An RTM_NEWLINK's interface: index, name, flags and its bridge (master), if any."""

    index: int
    name: str
    flags: int = 0
    master: int | None = None


def parse_link(body: bytes) -> Link:
    _short(body, IFINFOMSG.size, "link")
    _, _, index, flags, _ = IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body, IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    master = struct.unpack("=I", attrs[IFLA_MASTER])[0] if len(attrs.get(IFLA_MASTER, b"")) == 4 else None
    return Link(index, name, flags, master)


@dataclass
class Addr:
    """An RTM_NEWADDR's interface index and address."""

    index: int
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface = field(
        default_factory=lambda: ipaddress.IPv4Interface("0.0.0.0/0")
    )


def parse_addr(body: bytes) -> Addr | None:
    """An RTM_NEWADDR body; None for a family other than IPv4/IPv6 or one without an address."""
    _short(body, IFADDRMSG.size, "address")
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(body)
    attrs = parse_attrs(body, IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if family == socket.AF_INET and raw is not None and len(raw) == 4:
        return Addr(index, ipaddress.IPv4Interface((raw, prefixlen)))
    if family == socket.AF_INET6 and raw is not None and len(raw) == 16:
        return Addr(index, ipaddress.IPv6Interface((raw, prefixlen)))
    return None


def global_ipv4(addr: Addr | None, index: int) -> ipaddress.IPv4Interface | None:
    """``addr`` if it is an IPv4 address of link ``index`` that is not link-local (networkd's
    169.254/16 comes first, the /28 or /24 of 80-container-ve/vz.network later)."""
    if addr is None or addr.index != index or not isinstance(addr.interface, ipaddress.IPv4Interface):
        return None
    return None if addr.interface.ip.is_link_local else addr.interface


def new_veth(name: str, peer: str, peer_netns_fd: int, peer_mac: bytes | None = None) -> bytes:
    """RTM_NEWLINK body: veth ``name`` with ``peer`` in the netns of ``peer_netns_fd``, both down
    (a veth end cannot be made up: it has no peer yet, ENOTCONN); ``peer_mac``: the peer's address
    (else the kernel's random one)."""
    peer_info = ifinfo() + str_attr(IFLA_IFNAME, peer)
    if peer_mac is not None:
        peer_info += attr(IFLA_ADDRESS, peer_mac)
    peer_info += u32_attr(IFLA_NET_NS_FD, peer_netns_fd)
    data = attr(VETH_INFO_PEER, peer_info)
    linkinfo = str_attr(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA, data)
    return ifinfo() + str_attr(IFLA_IFNAME, name) + attr(IFLA_LINKINFO, linkinfo)


def new_bridge(name: str) -> bytes:
    linkinfo = str_attr(IFLA_INFO_KIND, "bridge")
    return ifinfo(flags=IFF_UP, change=IFF_UP) + str_attr(IFLA_IFNAME, name) + attr(IFLA_LINKINFO, linkinfo)


def new_address(index: int, iface: ipaddress.IPv4Interface) -> bytes:
    packed = iface.ip.packed
    return (
        IFADDRMSG.pack(socket.AF_INET, iface.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        + attr(IFA_LOCAL, packed)
        + attr(IFA_ADDRESS, packed)
    )


def default_route(gateway: ipaddress.IPv4Address, oif: int) -> bytes:
    return RTMSG.pack(
        socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    ) + (attr(RTA_GATEWAY, gateway.packed) + u32_attr(RTA_OIF, oif))


# -- the socket --------------------------------------------------------------------------------
class Rtnl:
    """One NETLINK_ROUTE socket (in the netns of the thread creating it); ``groups``: multicast
    groups to receive (RTMGRP_*), for waiting on events."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, groups))
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(message(kind, NLM_F_REQUEST | flags, self.seq, body))
        return self.seq

    def request(self, kind: int, flags: int, body: bytes, what: str, dump: bool = False) -> list[Msg]:
        """Send one request, return its replies (a dump's messages, or a GET's one; none for an
        ack); an error reply becomes NetlinkError("WHAT: strerror"). (NLM_F_DUMP's bits mean
        EXCL/REPLACE in a NEW request: only ``dump`` says whether this is one.)"""
        seq = self._send(kind, flags | (NLM_F_DUMP if dump else NLM_F_ACK), body)
        out: list[Msg] = []
        while True:
            data, (sender, _) = self.sock.recvfrom(1 << 16)
            if sender != 0:  # not the kernel: another process may send to this port
                continue
            for msg in split_messages(data):
                if msg.seq != seq:
                    continue
                if msg.kind == NLMSG_DONE:
                    return out
                if msg.kind == NLMSG_ERROR:
                    code = error_code(msg)
                    if code:
                        raise NetlinkError(what, code)
                    return out
                out.append(msg)
                if not msg.flags & NLM_F_MULTI:
                    return out

    # links
    def link(self, name: str) -> Link | None:
        try:
            (msg,) = self.request(RTM_GETLINK, 0, ifinfo() + str_attr(IFLA_IFNAME, name), f"link {name}")
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return parse_link(msg.body)

    def index(self, name: str) -> int:
        link = self.link(name)
        if link is None:
            raise NetlinkError(f"link {name}", errno.ENODEV)
        return link.index

    def links(self) -> list[Link]:
        return [parse_link(m.body) for m in self.request(RTM_GETLINK, 0, ifinfo(), "list links", dump=True)]

    def new_link(self, body: bytes, what: str) -> None:
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, what)

    def set_up(self, name: str) -> None:
        body = ifinfo(flags=IFF_UP, change=IFF_UP) + str_attr(IFLA_IFNAME, name)
        self.request(RTM_NEWLINK, 0, body, f"set {name} up")

    def set_master(self, name: str, master: str) -> None:
        body = ifinfo() + str_attr(IFLA_IFNAME, name) + u32_attr(IFLA_MASTER, self.index(master))
        self.request(RTM_NEWLINK, 0, body, f"set {name} master {master}")

    def delete_link(self, name: str) -> None:
        self.request(RTM_DELLINK, 0, ifinfo() + str_attr(IFLA_IFNAME, name), f"delete link {name}")

    # addresses and routes
    def addresses(self) -> list[Addr]:
        body = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        parsed = (parse_addr(m.body) for m in self.request(RTM_GETADDR, 0, body, "list addresses", dump=True))
        return [a for a in parsed if a is not None]

    def add_address(self, name: str, iface: ipaddress.IPv4Interface) -> None:
        what = f"add address {iface} to {name}"
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, new_address(self.index(name), iface), what)

    def replace_default_route(self, gateway: ipaddress.IPv4Address, name: str) -> None:
        what = f"default route via {gateway} dev {name}"
        body = default_route(gateway, self.index(name))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, what)

    # events
    def events(self, timeout: float) -> list[Msg] | None:
        """The notifications that arrive within ``timeout`` seconds (an empty list: none did);
        None when the kernel dropped some (ENOBUFS): the caller must look again."""
        self.sock.settimeout(max(timeout, 0.0))
        try:
            return list(split_messages(self.sock.recv(1 << 16)))
        except TimeoutError:
            return []
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                return None
            raise
