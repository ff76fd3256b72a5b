"""Networks: veth by default, zones whose members find each other by name, published ports reached
on the host's own address and on 127.0.0.1, a taken port refused cleanly, nothing left behind."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from conftest import CLI

from nspawnctl import net

# ends on SIGTERM (httpd as PID 1 would ignore it, and each stop would wait out its 10 s timeout)
HTTPD = (
    "trap 'exit 0' TERM; mkdir -p /www && echo hello from $0 > /www/index.html; httpd -f -p 80 -h /www & wait"
)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def leftovers(name: str) -> list[str]:
    """What a container's network could leave behind: netns, host-side link, proxy units, state."""
    found = []
    if net.netns_name(name) in ip("netns", "list").split():
        found.append(f"netns {net.netns_name(name)}")
    for link in (net.veth_name(name), net.zone_port_name(name)):
        if subprocess.run(["ip", "link", "show", "dev", link], capture_output=True).returncode == 0:
            found.append(f"link {link}")
    units = subprocess.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", f"nspawnctl-{name}*"],
        capture_output=True,
        text=True,
    ).stdout
    found += [f"unit {line.split()[0]}" for line in units.splitlines() if line.strip()]
    if net.state(name) is not None:
        found.append("state file")
    return found


def assert_clean(name: str, timeout: float = 10) -> None:
    """Wait (ExecStopPost may still be running as ``rm`` returns) until nothing is left."""
    deadline = time.monotonic() + timeout
    while (left := leftovers(name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"left behind by {name}: {left}"


def show(unit: str, prop: str) -> str:
    return subprocess.run(
        ["systemctl", "show", "--value", "-p", prop, unit], capture_output=True, text=True
    ).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def fetch(url: str, timeout: float = 15) -> str:
    """GET ``url``, retrying while the payload's server is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def host_address() -> Iterator[tuple[str, str]]:
    """The test host has only lo: a veth pair (no dummy links in this kernel) gives it an address of
    its own, not on 127.0.0.0/8. Yields (interface, address)."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"nspt{tag}a", f"nspt{tag}b"
    addr = f"10.231.{int(tag[:2], 16)}.1"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/24", "dev", a], check=True)
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "link", "set", b, "up"], check=True)
        yield a, addr
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)


def test_zone_members_reach_each_other_by_name(nsp: CLI, busybox: str) -> None:
    zone = f"z{uuid.uuid4().hex[:8]}"
    server, client = nsp.name("srv"), nsp.name("cli")
    nsp("run", "-d", "--name", server, "--network", f"zone:{zone}", busybox, "sh", "-c", HTTPD, server)
    got = ""
    deadline = time.monotonic() + 20
    while "hello from" not in got and time.monotonic() < deadline:  # until httpd listens
        proc = nsp(
            "run",
            "--name",
            client,
            "--network",
            f"zone:{zone}",
            busybox,
            "sh",
            "-c",
            f"ip -o -4 addr show dev host0; wget -q -T 3 -O- http://{server}/index.html",
            check=False,
        )
        got = proc.stdout
        nsp("rm", "-f", client)
    assert f"hello from {server}" in got, got
    server_addr = nsp("exec", server, "ip", "-o", "-4", "addr", "show", "dev", "host0").stdout.split()[3]
    client_addr = got.split()[3]
    assert server_addr != client_addr and server_addr.split(".")[:3] == client_addr.split(".")[:3]
    hosts = nsp("exec", server, "cat", "/etc/hosts").stdout
    assert f"{server_addr.split('/')[0]}\t{server}" in hosts
    nsp("rm", "-f", server)
    for name in (server, client):
        assert_clean(name)
    # nspawnctl made the bridge, and removed it with the last member
    assert subprocess.run(["ip", "link", "show", "dev", f"vz-{zone}"], capture_output=True).returncode != 0


def test_published_port_on_host_address_and_localhost(
    nsp: CLI, busybox: str, host_address: tuple[str, str]
) -> None:
    _, addr = host_address
    name, port = nsp.name("web"), free_port()
    nsp("run", "-d", "--name", name, "-p", f"{port}:80", busybox, "sh", "-c", HTTPD, name)
    assert fetch(f"http://{addr}:{port}/index.html") == f"hello from {name}\n"
    assert fetch(f"http://127.0.0.1:{port}/index.html") == f"hello from {name}\n"
    sock, svc = f"nspawnctl-{name}_port{port}-tcp.socket", f"nspawnctl-{name}_port{port}-tcp.service"
    active = subprocess.run(["systemctl", "is-active", sock], capture_output=True, text=True).stdout.strip()
    assert active == "active"
    assert show(sock, "PartOf") == f"nspawnctl-{name}.service"
    # the proxy runs sandboxed, under a dynamic user (and proxied the requests above so)
    props = ("PartOf", "DynamicUser", "PrivateTmp", "ProtectSystem", "ProtectHome", "NoNewPrivileges")
    assert [show(svc, p) for p in props] == [
        f"nspawnctl-{name}.service",
        "yes",
        "yes",
        "strict",
        "yes",
        "yes",
    ]
    pid = show(svc, "MainPID")
    assert pid != "0" and int(subprocess.check_output(["stat", "-c", "%u", f"/proc/{pid}"])) != 0
    nsp("rm", "-f", name)
    assert_clean(name)
    with pytest.raises(OSError):  # the proxy went with the container
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3)


def test_port_in_use_is_refused_and_nothing_is_left(nsp: CLI, busybox: str) -> None:
    name = nsp.name("busy")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = nsp("run", "-d", "--name", name, "-p", f"{port}:80", busybox, "sleep", "300", check=False)
    assert proc.returncode != 0
    assert f"port {port}/tcp is already in use on the host" in proc.stderr, proc.stderr
    assert "hint:" in proc.stderr
    assert name not in nsp("ps", "-q").stdout.split()
    state = subprocess.run(
        ["systemctl", "is-active", f"nspawnctl-{name}.service"], capture_output=True, text=True
    )
    assert state.stdout.strip() != "active"
    assert_clean(name, timeout=0)


def test_network_none_has_only_loopback(nsp: CLI, busybox: str) -> None:
    out = nsp("run", "--rm", "--network", "none", busybox, "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]


def test_network_host_sees_the_hosts_interfaces(
    nsp: CLI, busybox: str, host_address: tuple[str, str]
) -> None:
    ifname, addr = host_address
    out = nsp("run", "--rm", "--network", "host", busybox, "ip", "-o", "-4", "addr").stdout
    assert ifname in out and addr in out


def test_default_network_is_veth_and_ready_before_the_payload(nsp: CLI, busybox: str) -> None:
    """The payload's first network operation reaches the host through its gateway: no sleep, no retry."""
    assert net.networkd_running()

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"gateway-ok\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        name = nsp.name("veth")
        script = (
            f"set -- $(ip route show default); wget -q -T 5 -O- http://$3:{server.server_address[1]}/; "
            "ip -o link show host0 >/dev/null && echo has-host0"
        )
        out = nsp("run", "--rm", "--name", name, busybox, "sh", "-c", script).stdout
        assert out == "gateway-ok\nhas-host0\n"
        assert_clean(name)
    finally:
        server.shutdown()
        server.server_close()


def test_published_udp_port_on_host_address(nsp: CLI, busybox: str, host_address: tuple[str, str]) -> None:
    """UDP goes through networkd's nft map (host addresses only). busybox has no UDP server, so the
    listener is a python3 entered into the container's netns: the DNAT to its address is what counts."""
    _, addr = host_address
    name, port = nsp.name("udp"), free_port()
    nsp("run", "-d", "--name", name, "-p", f"{port}:5353/udp", busybox, "sleep", "300")
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            net.netns_name(name),
            "python3",
            "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353));"
            "print('ready', flush=True); s.settimeout(10); print(s.recv(100).decode(), flush=True)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"udp-hello", (addr, port))
    assert listener.stdout.readline() == "udp-hello\n"
    listener.wait(timeout=5)
    nsp("rm", "-f", name)
    assert_clean(name)
    rules = subprocess.run(
        ["nft", "list", "map", "ip", "io.systemd.nat", "map_port_ipport"], capture_output=True, text=True
    )
    assert f"udp . {port} " not in rules.stdout


def test_stop_then_start_publishes_again(nsp: CLI, busybox: str) -> None:
    """Even after a teardown that did not happen: the container's own leftover socket is no conflict."""
    name, port = nsp.name("again"), free_port()
    nsp("run", "-d", "--name", name, "-p", f"{port}:80", busybox, "sh", "-c", HTTPD, name)
    assert fetch(f"http://127.0.0.1:{port}/index.html") == f"hello from {name}\n"
    nsp("stop", name)
    nsp("start", name)
    assert fetch(f"http://127.0.0.1:{port}/index.html") == f"hello from {name}\n"
    nsp("rm", "-f", name)
    assert_clean(name)


def test_second_start_under_the_other_unit_leaves_the_network_alone(nsp: CLI, busybox: str) -> None:
    name, port = nsp.name("twice"), free_port()
    nsp("run", "-d", "--name", name, "-p", f"{port}:80", busybox, "sh", "-c", HTTPD, name)
    assert fetch(f"http://127.0.0.1:{port}/index.html") == f"hello from {name}\n"
    before = net.state(name)
    try:
        nsp("enable", name)
        proc = subprocess.run(["systemctl", "start", f"systemd-nspawn@{name}.service"], capture_output=True)
        assert proc.returncode != 0
        # enabled means Restart=: end its retries (the stop waits for a running ExecStopPost, which
        # must have left the network alone)
        subprocess.run(["systemctl", "stop", f"systemd-nspawn@{name}.service"], check=True)
        assert net.state(name) == before
        assert fetch(f"http://127.0.0.1:{port}/index.html", timeout=5) == f"hello from {name}\n"
    finally:
        subprocess.run(["systemctl", "stop", f"systemd-nspawn@{name}.service"], capture_output=True)
        nsp("disable", name, check=False)
        subprocess.run(["systemctl", "reset-failed", f"systemd-nspawn@{name}.service"], capture_output=True)
    nsp("rm", "-f", name)
    assert_clean(name)
