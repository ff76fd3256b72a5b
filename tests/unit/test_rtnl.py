"""The netlink codecs (pure), and the netns/veth/address code on a real kernel inside a throwaway
network and mount namespace (``unshare -mn``: the machine's own network is never touched)."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nspawnctl.errors import NetworkError
from nspawnctl.net import names, netns, rtnl


def nlmsg(kind: int, body: bytes, seq: int = 7, flags: int = 0) -> bytes:
    return rtnl.message(kind, flags, seq, body)


def test_attributes_are_padded_and_parsed_back() -> None:
    a = rtnl.str_attr(rtnl.IFLA_IFNAME, "ve-web")  # 4 + 7 bytes, padded to 12
    assert len(a) == 12 and a[:4] == struct.pack("=HH", 11, rtnl.IFLA_IFNAME)
    parsed = rtnl.parse_attrs(a + rtnl.u32_attr(rtnl.IFLA_MASTER, 9))
    assert parsed == {rtnl.IFLA_IFNAME: b"ve-web\0", rtnl.IFLA_MASTER: struct.pack("=I", 9)}
    assert rtnl.parse_attrs(a[:7]) == {}  # truncated: nothing, no error
    nested = rtnl.attr(rtnl.IFLA_LINKINFO | 0x8000, a)  # NLA_F_NESTED is masked off
    assert rtnl.parse_attrs(nested) == {rtnl.IFLA_LINKINFO: a}


def test_messages_split_and_errors_decode() -> None:
    err = nlmsg(rtnl.NLMSG_ERROR, struct.pack("=i", -19) + b"\0" * 16, seq=3)
    done = nlmsg(rtnl.NLMSG_DONE, b"\0\0\0\0", seq=4)
    msgs = list(rtnl.split_messages(err + done + b"\1\2"))
    assert [(m.kind, m.seq) for m in msgs] == [(rtnl.NLMSG_ERROR, 3), (rtnl.NLMSG_DONE, 4)]
    assert rtnl.error_code(msgs[0]) == 19
    assert list(rtnl.split_messages(err[:-4])) == []  # a length past the end: dropped


def test_veth_request_carries_the_peer_and_its_netns() -> None:
    body = rtnl.new_veth("ve-c1", "host0", 42)
    assert rtnl.parse_link(body).name == "ve-c1"
    info = rtnl.parse_attrs(rtnl.parse_attrs(body, rtnl.IFINFOMSG.size)[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth\0"
    peer = rtnl.parse_attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    assert rtnl.parse_link(peer).name == "host0"
    assert rtnl.parse_attrs(peer, rtnl.IFINFOMSG.size)[rtnl.IFLA_NET_NS_FD] == struct.pack("=I", 42)


def test_link_and_address_replies_parse() -> None:
    link = rtnl.ifinfo(index=5, flags=rtnl.IFF_UP) + rtnl.str_attr(rtnl.IFLA_IFNAME, "vb-a")
    assert rtnl.parse_link(link + rtnl.u32_attr(rtnl.IFLA_MASTER, 4)) == rtnl.Link(5, "vb-a", 1, 4)
    assert rtnl.parse_link(link).master is None
    ll = rtnl.parse_addr(rtnl.new_address(5, ipaddress.IPv4Interface("169.254.3.4/16")))
    mine = rtnl.parse_addr(rtnl.new_address(5, ipaddress.IPv4Interface("192.168.5.17/28")))
    assert mine == rtnl.Addr(5, ipaddress.IPv4Interface("192.168.5.17/28"))
    assert rtnl.global_ipv4(ll, 5) is None  # networkd's link-local one is not the address
    assert rtnl.global_ipv4(mine, 5) == ipaddress.IPv4Interface("192.168.5.17/28")
    assert rtnl.global_ipv4(mine, 6) is None  # another link's
    v6 = rtnl.IFADDRMSG.pack(socket.AF_INET6, 64, 0, 0, 5) + rtnl.attr(
        rtnl.IFA_ADDRESS, b"\xfe\x80" + b"\0" * 14
    )
    assert rtnl.global_ipv4(rtnl.parse_addr(v6), 5) is None
    assert rtnl.parse_addr(rtnl.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, 5)) is None  # no address


def test_default_route_request() -> None:
    body = rtnl.default_route(ipaddress.IPv4Address("10.0.7.1"), 3)
    family, dst_len, _, _, table, proto, scope, kind, _ = rtnl.RTMSG.unpack_from(body)
    assert (family, dst_len, table, proto, scope, kind) == (socket.AF_INET, 0, 254, 3, 0, 1)
    attrs = rtnl.parse_attrs(body, rtnl.RTMSG.size)
    assert attrs == {rtnl.RTA_GATEWAY: bytes([10, 0, 7, 1]), rtnl.RTA_OIF: struct.pack("=I", 3)}


def test_short_replies_are_network_errors_not_struct_errors() -> None:
    with pytest.raises(NetworkError, match="malformed netlink reply"):
        rtnl.error_code(rtnl.Msg(rtnl.NLMSG_ERROR, 0, 1, b"\0\0"))
    with pytest.raises(NetworkError, match="malformed netlink reply"):
        rtnl.parse_link(b"\0" * (rtnl.IFINFOMSG.size - 1))
    with pytest.raises(NetworkError, match="malformed netlink reply"):
        rtnl.parse_addr(b"\0" * 3)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to send to another netlink socket")
def test_a_reply_not_from_the_kernel_is_ignored() -> None:
    with rtnl.Rtnl() as r, socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, rtnl.NETLINK_ROUTE) as forger:
        forger.bind((0, 0))
        forged = nlmsg(rtnl.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16, seq=r.seq + 1)
        forger.sendto(forged, (r.sock.getsockname()[0], 0))
        assert any(link.name == "lo" for link in r.links())  # the kernel's answer, not the forgery


def test_an_interrupted_netns_thread_is_waited_for_and_its_result_closed() -> None:
    closed = threading.Event()

    class Result:
        def close(self) -> None:
            closed.set()

    def work() -> Result:
        time.sleep(0.1)  # the caller is in its wait by then
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # Ctrl-C in the wait
        time.sleep(0.3)
        return Result()

    with pytest.raises(KeyboardInterrupt):
        netns._in_thread(work)
    assert closed.is_set()


def test_an_interrupted_create_leaves_nothing_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fn: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(names, "NETNS_DIR", tmp_path)
    monkeypatch.setattr(netns, "_prepare_dir", lambda libc: None)
    monkeypatch.setattr(netns, "_in_thread", interrupted)
    with pytest.raises(KeyboardInterrupt):
        netns.create("nspawnctl-t")
    assert list(tmp_path.iterdir()) == []


REAL = textwrap.dedent(
    """
    import ipaddress, pathlib, subprocess, sys, threading
    from nspawnctl.net import kernel, names, rtnl
    names.NETNS_DIR = pathlib.Path(sys.argv[1])
    ns = "nspawnctl-t"
    def sh(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout
    with kernel.Kernel() as k:
        k.netns_add(ns)
        k.watch_addresses()
        k.add_bridge("vz-t")
        k.add_veth("vb-t", ns)
        k.set_master("vb-t", "vz-t")
        assert k.links_of_master("vz-t") == ["vb-t"]
        assert k.wait_address("vz-t", 0.1) is None  # none yet: waited, then None
        def networkd():  # later, from elsewhere: wait_address gets it from the address event
            with rtnl.Rtnl() as other:
                other.add_address("vz-t", ipaddress.IPv4Interface("169.254.9.9/16"))
                other.add_address("vz-t", ipaddress.IPv4Interface("10.9.0.1/24"))
        threading.Timer(0.3, networkd).start()
        gw = k.wait_address("vz-t", 5)
        assert gw == ipaddress.IPv4Interface("10.9.0.1/24"), gw
        k.ns_address(ipaddress.IPv4Interface("10.9.0.2/24"))
        k.ns_default_route(gw.ip)
        enter = f"nsenter --net={names.NETNS_DIR / ns} "
        print(sh(enter + "ip -4 -o addr show dev host0").split()[3])
        print(sh(enter + "ip route show default").strip())
        print(sh(enter + "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").strip())
        print(sh(enter + "ip -o link show lo").split()[2])
        try:
            k.add_veth("vb-t", ns)
        except Exception as e:
            print(type(e).__name__, e)
        k.del_link("vb-t")
        k.del_link("vz-t")
        k.netns_del(ns)
        print(k.link_exists("vb-t"), sorted(p.name for p in names.NETNS_DIR.iterdir()))
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_on_a_real_kernel_in_a_throwaway_namespace(tmp_path: Path) -> None:
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = ["unshare", "-mn", "--propagation", "private", sys.executable, "-c", REAL, str(netns_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"no namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "10.9.0.2/24",
        "default via 10.9.0.1 dev host0",
        "0",  # ip_unprivileged_port_start, inside only
        "<LOOPBACK,UP,LOWER_UP>",
        "NetlinkError cannot create veth vb-t: File exists",
        "False []",
    ]
