"""End-to-end fixtures: run inside a booted systemd host (see tests/host/testhost.py) as root.

Everything is real: the nspawnctl CLI as installed, systemd, machined, journald and the btrfs pool.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from demo import make_busybox_root
from dockerapi import DROPIN, SOCKET, debian_12, docker, dockerpy_client

if TYPE_CHECKING:
    import ocibuild as ob
    from pki import TLS
    from registry import Registry

BOOT_IMAGE_DIR = Path("/srv/bootimg")

# A suite started from a background job (`make test &`, `setsid ... &`) inherits SIGINT ignored,
# and so would every nspawnctl it starts (a disposition survives exec): the tests of Ctrl-C need
# the CLI to see it, as it does from a terminal. A handler is reset to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    # `-m surface`: what `make test` runs against Debian's packaged libraries (trixie, `--install
    # debian`) and on systemd 252 / Python 3.11 (bookworm; the full suite there is `make test-252`);
    # the full suite runs on trixie with the venv install. Mark a test
    # `@pytest.mark.surface` when it is the one that drives a library's part of nspawnctl: argv
    # parsing, help, errors and output (typer, click, rich), D-Bus (dbus-fast), the journal,
    # HTTP and signatures (requests, urllib3, python-gnupg), zstd, btrfsutil.
    config.addinivalue_line("markers", "surface: the library-facing subset run against Debian's packages")
    config.addinivalue_line(
        "markers", "serial: asserts on, or changes, what the whole host holds: run alone, after the workers"
    )
    if config.getoption("numprocesses", None) and config.getoption("dist", "no") != "loadfile":
        raise pytest.UsageError(
            "the end-to-end tests in xdist workers need --dist loadfile (see pytest_xdist_make_scheduler): "
            "use 'testhost.py test --workers N'"
        )
    if not Path("/run/systemd/system").is_dir() or os.geteuid() != 0:
        raise pytest.UsageError(
            "the end-to-end tests need root on a host booted with systemd; run them with "
            "'python3 tests/host/testhost.py test' (or 'make test')"
        )


# The fixtures that enable the Docker API service: one socket unit for the whole host.
API_FIXTURES = frozenset({"api", "pulled", "dpy"})


def api_modules(where: Path) -> frozenset[str]:
    """The test modules (``tests/e2e/test_x.py``) that use the Docker API service: a function of
    theirs (a test or a fixture) takes one of API_FIXTURES. Read from the source, because xdist's
    controller, which schedules, collects nothing; each worker checks it against what it collected
    (pytest_collection_modifyitems)."""
    found = set()
    for path in sorted(where.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and API_FIXTURES & {a.arg for a in node.args.args}:
                found.add(f"tests/e2e/{path.name}")
                break
    return frozenset(found)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: no error where xdist is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N --dist loadfile`` (`make test`; tests/host/testhost.py e2e_argvs): a module's tests
    run on one worker, one after the other, as without workers (its module fixtures are made once,
    its tests may share what they make), and so do all the modules that use the Docker API service
    (its fixture enables and disables the host's one service). The workers otherwise share the
    host: a test that asserts on, or changes, what the whole host holds (a pool with nothing new in
    it, a prune, a host-wide file or service), or has a time bound a second worker's load could
    break, is marked ``serial`` and runs alone afterwards, in a run of its own. (xdist's own
    loadgroup cannot group across modules on pytest 9.2: it renames nodes through an attribute
    pytest no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    api = api_modules(Path(__file__).resolve().parent)

    class ModuleScheduling(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "docker-api" if module in api else module

    return ModuleScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "private" in item.fixturenames:  # its pool is its own, not the containers' definitions
            item.add_marker(pytest.mark.serial)
    if hasattr(config, "workerinput"):  # an xdist worker: the scheduler's api_modules() holds
        api = api_modules(Path(__file__).resolve().parent)
        for item in items:
            module = item.nodeid.split("::", 1)[0]
            if API_FIXTURES & set(item.fixturenames) and module not in api:
                raise pytest.UsageError(f"{item.nodeid} uses the Docker API service: api_modules() misses it")


class CLI:
    """Runs the installed ``nspawnctl`` and keeps track of what the test created, to clean it up."""

    def __init__(self) -> None:
        self.containers: set[str] = set()
        self.images: set[str] = set()

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        raw = subprocess.run(["nspawnctl", *args], input=input, capture_output=True, timeout=timeout, **kw)
        proc = subprocess.CompletedProcess(
            raw.args, raw.returncode, raw.stdout.decode(errors="replace"), raw.stderr.decode(errors="replace")
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"nspawnctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def wait_logs(self, name: str, text: str, count: int = 1, timeout: float = 30) -> str:
        """Wait until the container's logs hold ``text`` ``count`` times (no fixed sleeps: CI is slow)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self("logs", name).stdout
            if out.count(text) >= count:
                return out
            if time.monotonic() > deadline:
                # the caller asserts on what it got; the warning names a wait that cost its timeout
                warnings.warn(f"wait_logs: {text!r} x{count} not in {name}'s logs ({timeout}s)", stacklevel=2)
                return out
            time.sleep(0.1)

    def name(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.containers.add(name)
        return name

    def cleanup(self) -> None:
        """One `rm -f` and one `rmi -f` for all the test made (each goes on past a name that is gone
        already; one command per name made teardown a sixth of the suite's time); a container still
        listed after that, or images after a failure other than a missing one, are removed one by one."""
        if self.containers:
            self("rm", "-f", *sorted(self.containers), check=False)
            left = set(self("ps", "-a", "-q", check=False).stdout.split()) & self.containers
            for name in sorted(left):
                self("rm", "-f", name, check=False)
        if self.images and self("rmi", "-f", *sorted(self.images), check=False).returncode not in (0, 1):
            for image in sorted(self.images):
                self("rmi", "-f", image, check=False)


@pytest.fixture
def nsp() -> Iterator[CLI]:
    cli = CLI()
    yield cli
    cli.cleanup()


@pytest.fixture(scope="module")
def cli() -> Iterator[CLI]:
    """``nsp`` for a module's shared containers (what they leave is removed after the module)."""
    c = CLI()
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path("/var/tmp") / f"nspawnctl-e2e-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_dir(workdir: Path) -> Path:
    return make_busybox_root(workdir / "busybox-root")


@pytest.fixture(scope="session")
def busybox(busybox_dir: Path) -> Iterator[str]:
    """The image most tests run: imported once per session from a directory, under a name of the
    session's own (sessions may overlap; removing the name leaves another session's)."""
    ref = f"e2e/busybox-{uuid.uuid4().hex[:8]}:latest"
    subprocess.run(["nspawnctl", "import", str(busybox_dir), ref], check=True, capture_output=True)
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


@pytest.fixture(scope="session")
def boot_image() -> Iterator[str]:
    """A Debian root with systemd inside, built by the harness (tests/host/testhost.py)."""
    if not BOOT_IMAGE_DIR.is_dir():
        pytest.fail(f"{BOOT_IMAGE_DIR} is missing: the test host should have been built with it")
    ref = f"e2e/debian-boot-{uuid.uuid4().hex[:8]}:latest"
    subprocess.run(["nspawnctl", "import", str(BOOT_IMAGE_DIR), ref], check=True, capture_output=True)
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


def tar_of(root: Path, dest: Path, mode: str = "w") -> Path:
    with tarfile.open(dest, mode) as tf:
        tf.add(root, arcname=".")
    return dest


def subvolumes() -> str:
    return subprocess.run(
        ["btrfs", "subvolume", "list", "/var/lib/machines"], capture_output=True, text=True, check=True
    ).stdout


def unit_show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)], capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@dataclass
class Env:
    """The registry of the OCI tests (test_oci.py) and the fault tests' registry pulls."""

    std: ob.StandardImages
    tls: TLS
    reg: Registry  # HTTPS with the tests' CA, no auth; holds acc/<tag>:v1
    workdir: Path

    @property
    def ca(self) -> str:
        return str(self.tls.ca)

    def ref(self, tag: str, version: str = "v1") -> str:
        return self.reg.ref(f"acc/{tag}", version)

    def basic_auth_registry(self, name: str, users: dict[str, str]) -> Registry:
        """Another registry on the same storage (the same images) that asks for Basic auth of
        ``users``; its files under ``workdir/name``. A context manager, as start_registry's."""
        from registry import start_registry

        return start_registry(
            self.workdir / name, tls=self.tls, auth="htpasswd", users=users, storage=self.reg.storage
        )


@pytest.fixture(scope="session")
def oci(workdir: Path) -> Iterator[Env]:
    """One registry per session, filled with ocibuild's standard images (defined here, once, so
    every module that pulls from it shares it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ocibuild as ob
    from pki import make_tls
    from registry import start_registry

    std = ob.standard_images(ob.Layout(workdir / "oci"), make_busybox_root(workdir / "oci-busybox"))
    tls = make_tls(workdir / "oci-tls", ["registry.example.test"])
    with start_registry(workdir / "reg-open", tls=tls) as reg:
        ob.push_standard(std, reg.url(""), ca=tls.ca)
        yield Env(std, tls, reg, workdir)


def systemd_version() -> int:
    """The host's systemd version (252 on Debian 12, 257 on Debian 13): for the few behaviours
    that differ (the tests expect each version's own)."""
    out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[1])


@pytest.fixture(scope="module")
def api(oci: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The Docker API's socket unit enabled (the registry's CA given to the service), and the
    environment the docker CLI runs in (test_docker_api*.py, test_docker_clients.py)."""
    if shutil.which("docker") is None and not debian_12():
        pytest.fail("the docker CLI is missing: the test host should have docker-cli")
    DROPIN.parent.mkdir(parents=True, exist_ok=True)
    DROPIN.write_text(f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={oci.ca}\n")
    subprocess.run(["nspawnctl", "system", "service", "enable"], check=True, capture_output=True)
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{SOCKET}",
        "DOCKER_CONFIG": str(tmp_path_factory.mktemp("docker-config")),
    }
    yield env
    subprocess.run(["nspawnctl", "system", "service", "disable"], capture_output=True)
    shutil.rmtree(DROPIN.parent, ignore_errors=True)
    subprocess.run(["systemctl", "daemon-reload"], capture_output=True)


@pytest.fixture(scope="module")
def pulled(api: dict[str, str], oci: Env) -> Iterator[str]:
    """An image pulled through the API by `docker pull`."""
    ref = oci.ref("bb")
    proc = docker(api, "pull", ref)
    assert proc.returncode == 0, proc.stderr
    assert "Status: " in proc.stdout
    yield ref
    subprocess.run(["nspawnctl", "rmi", "-f", ref], capture_output=True)


@pytest.fixture(scope="module")
def dpy() -> Iterator[Any]:
    """A docker-py client on the API's socket for the module."""
    with dockerpy_client() as client:
        yield client


# -- helpers several test files share (plain functions; fixtures above and below) ---------------
IMAGES = Path("/var/lib/nspawnctl/images")
S = 1_000_000_000  # a second in docker's nanoseconds
IDLE = "trap 'exit 0' TERM; while :; do sleep 600 & wait; done"
"""``sh -c`` payload that idles and ends at once on stop's SIGTERM: as PID 1 a bare ``sleep`` has
no default signal action, so a stop waits the whole 10 s timeout for its SIGKILL (use IDLE where
the test stops or restarts the container and its exit code is not the point)."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll until ``probe`` returns something truthy (no fixed sleeps: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def health_of(nsp: CLI, name: str) -> dict[str, Any]:
    """The container's ``State.Health`` from inspect ({} without a check)."""
    state: dict[str, Any] = nsp.json("inspect", name)[0]["State"]
    return state.get("Health") or {}


def healthcheck_image(
    oci: Env, tag: str, version: str, ok: bool, labels: dict[str, str] | None = None,
    check: str = "test -f /ok",
) -> ob.BuiltImage:  # fmt: skip
    """A busybox image pushed to ``oci``'s registry as acc/<tag>:v1, whose /version says
    ``version``; its HEALTHCHECK (``check``) passes when /ok exists (``ok``)."""
    import ocibuild as ob

    root = make_busybox_root(oci.workdir / f"hc-root-{uuid.uuid4().hex[:6]}")
    layer = ob.LayerSpec().tree(root).file("version", f"{version}\n")
    if ok:
        layer = layer.file("ok", "yes\n")
    layout = ob.Layout(oci.workdir / f"hc-{uuid.uuid4().hex[:6]}")
    img = layout.image(
        tag,
        [ob.Layer(layer, "gzip")],
        {
            "Cmd": ["/bin/sh", "-c", IDLE],  # auto-update stops it
            "Healthcheck": {"Test": ["CMD-SHELL", check], "Interval": S, "Retries": 1},
            "Labels": labels or {},
        },
    )
    layout.save()
    ob.push(layout, img, oci.reg.url(""), f"acc/{tag}", "v1", ca=oci.tls.ca)
    return img


def root_with(busybox_dir: Path, where: Path, marker: str) -> Path:
    """A copy of the busybox root whose /etc/marker is new: a file never read yet (atime == mtime,
    so the first read moves its atime under relatime) and an image ID of its own."""
    shutil.copytree(busybox_dir, where, symlinks=True)
    (where / "etc" / "marker").write_text(marker)
    return where


@pytest.fixture
def private(nsp: CLI) -> Iterator[tuple[Callable[..., subprocess.CompletedProcess[str]], Path]]:
    """nspawnctl on a pool and store of the test's own (on the host's btrfs), so that prune sees,
    and removes, only what the test made."""
    base = IMAGES.parent / f".e2e-prune-{uuid.uuid4().hex[:8]}"
    (base / "machines").mkdir(parents=True)
    (base / "store").mkdir()
    env = {**os.environ, "NSPAWNCTL_POOL": str(base / "machines"), "NSPAWNCTL_STORE": str(base / "store")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return nsp(*args, check=check, env=env)

    try:
        yield run, base / "store"
    finally:
        for ctr in run("ps", "-a", "-q", check=False).stdout.split():
            run("rm", "-f", ctr, check=False)
        run("image", "prune", "-a", "-f", check=False)
        for sub in sorted(base.glob("*/*"), reverse=True) + sorted(base.glob("store/*/*"), reverse=True):
            if sub.is_dir() and not sub.is_symlink() and sub.stat().st_ino == 256:  # a subvolume
                subprocess.run(["btrfs", "subvolume", "delete", str(sub)], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def drive_pty(argv: list[str], typed: bytes, prompt: bytes = b"# ", timeout: float = 30) -> tuple[bytes, int]:
    """Run ``argv`` on a new pseudo-terminal, type ``typed`` once ``prompt`` shows (as a user
    does: systemd-nspawn 252 discards what was typed before the container's terminal was set up,
    257 keeps it) and read until it closes; (what the terminal showed, the exit code). Killed
    after ``timeout`` seconds, so a hang fails the test instead of the session."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    deadline = time.time() + timeout
    typed_yet = False
    while time.time() < deadline:
        if not typed_yet and prompt in out:
            os.write(fd, typed)
            typed_yet = True
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    if time.time() >= deadline:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)
