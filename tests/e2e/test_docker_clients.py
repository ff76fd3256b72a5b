"""Docker's client ecosystem against the API service (issue 15): testcontainers-python, and the
docker CLI and docker-py over ssh (`nspawnctl system dial-stdio` as the remote end).

docker-py's own integration suite is `make test-docker-py` (tests/dockerpy/run.py), not here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, Env, make_busybox_root
from dockerapi import docker, wait_for

TESTCONTAINERS_SCRIPT = r"""
import json, subprocess, sys, urllib.request
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

image = sys.argv[1]
# busybox httpd without -f returns once it listens: "serving" comes after the port is open
serve = "mkdir -p /www && echo hello-tc > /www/index.html && httpd -p 80 -h /www && echo serving && sleep 600"
with DockerContainer(image).with_command(["sh", "-c", serve]).with_exposed_ports(80) as c:
    wait_for_logs(c, "serving", timeout=60)
    host, port = c.get_container_host_ip(), c.get_exposed_port(80)
    body = urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10).read().decode()
    cid = c.get_wrapped_container().id
    ps = subprocess.run(["nspawnctl", "ps", "--no-trunc"], capture_output=True, text=True).stdout
    inspect = json.loads(subprocess.run(["nspawnctl", "inspect", cid], capture_output=True, text=True).stdout)
    print(json.dumps({"id": cid, "host": host, "port": port, "body": body, "ps": ps, "inspect": inspect}))
"""


def tc_env(api_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**api_env, "TESTCONTAINERS_RYUK_DISABLED": "true", **extra}


@pytest.fixture(scope="module")
def testcontainers() -> None:
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        # the test extra brings it into the venv install; Debian 13 has no python3-testcontainers
        pytest.skip(
            "testcontainers-python is not installed (Debian packages none: the venv install tests it)"
        )


def test_testcontainers_container_serves_http(
    api: dict[str, str],
    pulled: str,
    testcontainers: None,
    nsp: CLI,
) -> None:
    """A DockerContainer with an exposed port (a free host port) and wait_for_logs, Ryuk disabled."""
    proc = subprocess.run(
        [sys.executable, "-c", TESTCONTAINERS_SCRIPT, pulled],
        env=tc_env(api),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["body"] == "hello-tc\n"
    assert (got["host"], got["port"] > 0) == ("localhost", True)
    assert got["id"] in got["ps"]  # a normal nspawnctl container while it ran
    labels = got["inspect"][0]["Config"]["Labels"] if isinstance(got["inspect"], list) else {}
    assert labels.get("org.testcontainers") == "true", got["inspect"]
    assert got["id"] not in nsp("ps", "-a", "--no-trunc").stdout  # removed when the block ended


# --------------------------------------------------------------------------- Ryuk

RYUK_STANDIN = r"""
# A stand-in for testcontainers/ryuk, whose image is on Docker Hub (out of reach here), run by
# busybox `nc -ll -e` once per connection (the socket on stdin/stdout): ryuk's protocol (label
# filters, one a line, each answered ACK), and once the client has been gone for
# RYUK_RECONNECTION_TIMEOUT, the containers matching a filter are removed through the Docker API on
# /var/run/docker.sock, the socket testcontainers binds in; then the reaper ends, as ryuk does.
import json, os, signal, socket, sys, time

def api(method, path):
    with socket.socket(socket.AF_UNIX) as s:  # HTTP/1.0: the answer ends where the stream ends
        s.connect("/var/run/docker.sock")
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        data = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body

filters = []
try:
    for line in sys.stdin.buffer:
        if line.startswith(b"label="):
            filters.append(line.decode().strip()[len("label="):])
        sys.stdout.buffer.write(b"ACK\n")
        sys.stdout.flush()
except OSError:  # a reset connection is a client gone too
    pass
if filters:
    time.sleep(float(os.environ.get("RYUK_RECONNECTION_TIMEOUT", "10s").rstrip("s")))
    for c in json.loads(api("GET", "/containers/json?all=1")[1]):
        labels = c.get("Labels") or {}
        if any(labels.get(k) == v for k, _, v in (f.partition("=") for f in filters)):
            api("DELETE", f"/containers/{c['Id']}?force=1&v=1")
    os.kill(os.getppid(), signal.SIGTERM)  # nc (not PID 1): the container ends, AutoRemove removes it
"""
# busybox nc listens within a millisecond of the start: testcontainers-python connects right after
# the start without waiting for the "Started!" line, and a published port accepts at once (the
# host's socket) and closes the connection again when the container does not listen yet.
RYUK_CMD = [
    "/bin/sh",
    "-c",
    "echo 'ryuk stand-in: Started!'; nc -ll -p 8080 -e /usr/bin/python3 -I -S /ryuk.py; true",
]

# What the stand-in's image takes of the host's standard library: the top-level modules and the
# packages it imports (the rest would only make the image bigger).
STDLIB_PACKAGES = ("encodings", "json", "re", "collections", "importlib", "lib-dynload")

RYUK_CLIENT = r"""
import json, os, sys
from testcontainers.core.container import DockerContainer

c = DockerContainer(sys.argv[1]).with_command(["sleep", "600"]).start()
print(json.dumps({"id": c.get_wrapped_container().id}), flush=True)
os.kill(os.getpid(), 9)  # a test run that dies: no atexit, no stop; Ryuk must clean up
"""


def python_root(dest: Path) -> Path:
    """A busybox root plus this host's Python (the interpreter, its libraries, the part of the
    standard library the stand-in needs) and the Ryuk stand-in as /ryuk.py."""
    make_busybox_root(dest)
    real = Path(os.path.realpath(sys.executable))
    stdlib = Path(os.__file__).parent
    dynload = stdlib / "lib-dynload"
    libs: set[str] = set()
    for binary in [real, *dynload.glob("*.so")]:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        libs.update(w for w in out.split() if w.startswith("/"))
    for lib in libs:
        target = dest / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)
    (dest / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(real, dest / "usr/bin/python3")
    target = dest / str(stdlib).lstrip("/")
    for package in STDLIB_PACKAGES:
        shutil.copytree(stdlib / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    for module in stdlib.glob("*.py"):
        shutil.copy2(module, target / module.name)
    (dest / "var/run").mkdir(parents=True, exist_ok=True)
    (dest / "ryuk.py").write_text(RYUK_STANDIN)
    return dest


@pytest.fixture(scope="module")
def ryuk_image(oci: Env, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stand-in as an OCI image in the session's registry (uncompressed: quick to build)."""
    import ocibuild as ob

    root = python_root(tmp_path_factory.mktemp("ryuk") / "root")
    layout = ob.Layout(tmp_path_factory.mktemp("ryuk-oci"))
    image = layout.image(
        None,
        [ob.Layer(ob.LayerSpec().tree(root), "none")],
        {"Cmd": RYUK_CMD, "ExposedPorts": {"8080/tcp": {}}},
    )
    ob.push(layout, image, oci.reg.url(""), "acc/ryuk", "v1", ca=oci.tls.ca)
    return oci.ref("ryuk")


def test_testcontainers_with_ryuk_cleans_up_after_a_killed_run(
    api: dict[str, str],
    pulled: str,
    testcontainers: None,
    ryuk_image: str,
    nsp: CLI,
) -> None:
    """Ryuk enabled: its container gets the API socket bound in (HostConfig.Binds), reaches the API
    through it, and removes the session's containers after the test process was killed."""

    def reapers() -> set[str]:
        names = nsp("ps", "-a", "--format", "{{.Names}}").stdout.split()
        return {n for n in names if n.startswith("testcontainers-ryuk-")}

    before = reapers()
    env = {**api, "RYUK_CONTAINER_IMAGE": ryuk_image, "RYUK_RECONNECTION_TIMEOUT": "1s"}
    proc = subprocess.run(
        [sys.executable, "-c", RYUK_CLIENT, pulled], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    cid = json.loads(proc.stdout.strip().splitlines()[-1])["id"]

    assert reapers() - before, "no Ryuk container was made"

    def gone() -> bool:  # the session's container, and the reaper itself once it is done
        return cid not in nsp("ps", "-a", "--no-trunc").stdout and reapers() <= before

    assert wait_for(gone, timeout=60), nsp("ps", "-a").stdout


# --------------------------------------------------------------------------- ssh

SSH_ALIAS = "nspawnctl-e2e"
SSH_CONFIG = Path("/root/.ssh/config")
AUTHORIZED = Path("/root/.ssh/authorized_keys")


@pytest.fixture(scope="module")
def ssh_host(api: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """sshd of the test host with a key whose authorized_keys line forces `nspawnctl system
    dial-stdio` (the README's setup), reached as the ssh alias SSH_ALIAS; undone afterwards."""
    if shutil.which("sshd") is None or shutil.which("ssh") is None:
        pytest.skip("openssh is not in this host (tests/host/testhost.py: trixie only)")
    d = tmp_path_factory.mktemp("ssh")
    key = d / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["systemctl", "start", "ssh.service"], check=True, capture_output=True)
    saved = {p: (p.read_text() if p.exists() else None) for p in (SSH_CONFIG, AUTHORIZED)}
    SSH_CONFIG.parent.mkdir(mode=0o700, exist_ok=True)
    with AUTHORIZED.open("a") as f:
        f.write(f'command="nspawnctl system dial-stdio",restrict {(d / "id.pub").read_text()}')
    with SSH_CONFIG.open("a") as f:
        f.write(
            f"\nHost {SSH_ALIAS}\n  HostName 127.0.0.1\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
            f"  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {d / 'known_hosts'}\n"
        )
    yield f"root@{SSH_ALIAS}"
    for path, text in saved.items():
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)


def test_docker_cli_and_docker_py_over_ssh(
    api: dict[str, str],
    pulled: str,
    ssh_host: str,
    nsp: CLI,
    request: pytest.FixtureRequest,
) -> None:
    env = {**api, "DOCKER_HOST": f"ssh://{ssh_host}"}
    proc = docker(env, "version", "--format", "{{.Server.Os}} {{.Server.APIVersion}}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["linux", "1.47"]
    proc = docker(env, "run", "--rm", pulled, "sh", "-c", "echo hi-over-ssh; exit 3")
    assert (proc.returncode, proc.stdout) == (3, "hi-over-ssh\n"), proc.stderr
    name = nsp.name("ssh")
    proc = docker(env, "run", "-d", "--name", name, pulled, "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    assert name in docker(env, "ps", "--format", "{{.Names}}").stdout.split()
    assert name in nsp("ps").stdout  # the same containers as on the host's socket
    import docker as dockerpy

    # docker-py runs the ssh binary (use_ssh_client) rather than paramiko, which it does not require
    client = dockerpy.DockerClient(base_url=f"ssh://{ssh_host}", use_ssh_client=True)
    request.addfinalizer(client.close)
    assert client.containers.get(name).status == "running"
    assert client.containers.run(pulled, ["echo", "py-over-ssh"], remove=True) == b"py-over-ssh\n"
    proc = docker(env, "rm", name)  # running: dockerd's words, which docker-py's tests look for
    assert proc.returncode != 0 and "stop the container before removing" in proc.stderr, proc.stderr
    assert docker(env, "rm", "-f", name).returncode == 0
    assert name not in nsp("ps", "-a").stdout


def test_the_forced_command_gives_no_shell(ssh_host: str) -> None:
    """The key reaches the API and nothing else: a command asked for is not run."""
    proc = subprocess.run(
        ["ssh", "-T", ssh_host, "id"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert "uid=" not in proc.stdout


def test_wait_answers_the_exit_of_a_container_that_restarts(
    api: dict[str, str],
    pulled: str,
    nsp: CLI,
) -> None:
    """docker-py's test_create_with_restart_policy: `wait` answers the first exit even though the
    restart policy starts the container again (it used to wait forever), `logs --until`, and
    `rm -f` removes it."""
    name = nsp.name("rs")
    proc = docker(
        api,
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "always",
        pulled,
        "sh",
        "-c",
        "echo up; sleep 1; exit 3",
    )
    assert proc.returncode == 0, proc.stderr
    proc = docker(api, "wait", name, timeout=90)
    assert (proc.returncode, proc.stdout.strip()) == (0, "3"), proc.stderr
    # docker-py's test_logs_with_until: until is a UNIX time (1970 here: nothing logged before it)
    assert docker(api, "logs", "--until", "1970-01-01T00:00:01Z", name).stdout == ""
    assert "up" in docker(api, "logs", "--until", "2100-01-01T00:00:00Z", name).stdout.split()
    assert docker(api, "rm", "-f", name).returncode == 0
    assert name not in nsp("ps", "-a").stdout
