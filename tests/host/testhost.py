#!/usr/bin/env python3
"""A disposable systemd test host for nspawnctl's end-to-end tests.

The development and CI machines do not run systemd as PID 1 (no system bus, no
machined, no journald), but nspawnctl drives systemd and machined over D-Bus.
So the end-to-end tests run inside a minimal Debian root booted with
``systemd-nspawn -b``: a real systemd host that can start nested containers.

Usage (as root, from the repository checkout)::

    tests/host/testhost.py build          # debootstrap the roots (cached)
    tests/host/testhost.py up             # mount the btrfs pool, install the project, boot
    tests/host/testhost.py exec -- CMD    # run CMD inside the booted host
    tests/host/testhost.py down           # power off, unmount, detach the loop device
    tests/host/testhost.py reboot         # down + up, keeping the pool
    tests/host/testhost.py test [--keep] [--install venv|debian] [--unit] [--prebuild SUITE] [--workers N]
                                [-- PYTEST_ARGS]
    tests/host/testhost.py demo
    tests/host/testhost.py shell          # up, a busybox image ready, bash inside, down on exit
    tests/host/testhost.py leftovers      # exit 1 if a host, loop device or mount of .build is left
    tests/host/testhost.py status | clean

Every command takes ``--suite trixie|bookworm`` (default trixie, or $TESTHOST_SUITE): trixie is
systemd 257 with Python 3.13, bookworm systemd 252 with Python 3.11. Each suite's host has its own
state directory (``.build/host``, ``.build/host-bookworm``), so both can stay built.

Every state lives under ``<repo>/.build/host`` (per suite, see above); the only things outside it are
the kernel mounts and the loop device that ``down`` undoes. The module is
stdlib-only and importable, so a pytest fixture can call ``build()``, ``up()``,
``exec_in_host()`` / ``run_in_host()`` and ``down()`` directly.

Each step's docstring or comment says why it is done the way it is: most of it
is a workaround for something seen to fail on the machines this runs on.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Bump whenever the way a root is built or configured changes: it is part of the
# cache key, so the next `build` starts from scratch instead of reusing a root
# made by older code.
SETUP_VERSION = 1

# The Debian releases a host can be built from (`--suite`, or TESTHOST_SUITE in the environment):
# trixie has systemd 257 and Python 3.13, bookworm systemd 252 and Python 3.11. Each suite has its
# own state directory (suite_dir()), so both hosts can be kept built side by side.
SUITES = ("trixie", "bookworm")
DEFAULT_SUITE = "trixie"
SUITE = DEFAULT_SUITE  # rebound by use_suite() below
MIRROR = os.environ.get("TESTHOST_MIRROR", "http://deb.debian.org/debian")

# What the host needs to run nspawnctl and its tests, for both installs (see install_project):
# Debian's python3-* packages for the Debian-packages install, and python3-venv plus what builds
# btrfsutil from source (gcc, python3-dev, libbtrfsutil-dev) for the venv install from PyPI.
HOST_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "systemd-container",
    "dbus",
    "btrfs-progs",
    "iproute2",
    "python3",
    "python3-dbus-fast",
    "python3-btrfsutil",
    "python3-typer",
    "python3-gnupg",
    "python3-requests",
    "python3-pytest",
    "python3-hypothesis",
    "python3-zstandard",
    "python3-pip",
    "python3-setuptools",
    "python3-venv",
    "python3-dev",
    "gcc",
    "libbtrfsutil-dev",
    "busybox-static",
    "gnupg",
    "curl",
    "nftables",
    "zstd",
    "xz-utils",
    "ca-certificates",
    "tar",
    "util-linux",
    "procps",
    "openssl",
    "strace",  # tests/e2e/test_faults.py: kills nspawnctl at each rename/unlink/subvolume ioctl
    # debootstrap does not resolve virtual packages: python3-zstandard depends on
    # python3-cffi-backend-api-{min,max}, which only python3-cffi-backend provides.
    "python3-cffi-backend",
    # Registry pulls: real registries (CNCF distribution), skopeo to push images to them, and
    # htpasswd -B for their Basic-auth users (tests/e2e/registry.py).
    "docker-registry",
    "skopeo",
    "apache2-utils",
    # skopeo needs golang-github-containers-common, which depends on the virtual
    # container-network-stack: name a provider (see python3-cffi-backend above).
    "containernetworking-plugins",
    # the peer of bench/pull_registry.py: skopeo copy + umoci unpack
    "umoci",
    # the peer of bench/bench.py's run rows: `podman run --rm` with crun, and podman's default
    # network backend for a root container (a bridge with a veth per container, like nspawnctl's)
    "podman",
    "crun",
    "netavark",
    # the Docker Engine API service (nspawnctl/api): h11 for the Debian install, and its e2e
    # clients: the real docker CLI and docker-py (tests/e2e/test_docker_api.py)
    "python3-h11",
    "docker-cli",
    "python3-docker",
    # the API over ssh (tests/e2e/test_docker_clients.py): `DOCKER_HOST=ssh://root@localhost`
    "openssh-server",
    "openssh-client",
)
# What a suite's archive lacks. Debian 12 has no docker-cli (only docker.io, which brings dockerd and
# containerd along): on bookworm the Docker API's e2e tests skip (their fixtures pull through the
# docker CLI; tests/e2e/test_docker_api.py says why; issue 15): the API is tested on trixie.
# The ssh transport is tested on trixie alone too (its test drives the docker CLI).
SUITE_WITHOUT: dict[str, tuple[str, ...]] = {"bookworm": ("docker-cli", "openssh-server", "openssh-client")}
# An OS image with systemd inside, for the tests of `--boot`.
BOOTIMG_PACKAGES: tuple[str, ...] = ("systemd", "systemd-sysv", "dbus")

HOSTNAME = "testhost"
BOOT_TIMEOUT = 120.0
POWEROFF_TIMEOUT = 30.0
POOL_SIZE = "8G"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SRC_IN_HOST = "/src"
BOOTIMG_IN_HOST = "/srv/bootimg"

REPO = Path(__file__).resolve().parents[2]
STAMP_NAME = ".testhost-stamp"
LOOP_DEVICES = 16
# How up() prepares /var/lib before the boot:
#   pool          the harness's btrfs pool (pool.img) in nspawnctl's layout: the e2e suite's host
#   bare          plain directories on the machine's filesystem, loop devices bound in ("no btrfs")
#   btrfs-varlib  a btrfs image holding a copy of the root's /var/lib, mounted on it (a btrfs root,
#                 as on Fedora: /var/lib/machines is a directory on btrfs)
#   machines-raw  machined's loopback file /var/lib/machines.raw with an existing machine OLD_MACHINE
#                 in it, mounted by the host's own var-lib-machines.mount (loop devices bound in)
# "unified": the pool mode on the unified cgroup v2 hierarchy (the machine is hybrid; nspawn mounts
# cgroup2 for the host when told to), where systemd can freeze units (pause/unpause).
MODES = ("pool", "bare", "btrfs-varlib", "machines-raw", "unified")
UNIFIED_MODES = ("unified",)
VARLIB_SIZE = "4G"
MACHINES_RAW_REL = "var/lib/machines.raw"
MACHINES_RAW_SIZE = "2G"
OLD_MACHINE = "oldbox"
OLD_RAW_MACHINE = "olddisk"  # a .raw image beside it
OLD_DIR_MACHINE = "olddir"  # a machine in a plain directory
OLD_MACHINE_PAYLOAD = "oldbox payload"

# What `nspawnctl pool init` writes into the host root: removed again after the pool-init tests so
# that the next normal boot gets the harness's own pool.
POOL_INIT_FILES = (
    "var/lib/nspawnctl.raw",
    MACHINES_RAW_REL,
    "etc/systemd/system/var-lib-nspawnctl.mount",
    "etc/systemd/system/var-lib-machines.mount",
    "etc/systemd/system/local-fs.target.wants/var-lib-nspawnctl.mount",
    "etc/systemd/system/local-fs.target.wants/var-lib-machines.mount",
    "etc/systemd/system/machines.target.wants/var-lib-machines.mount",
)

# How nspawnctl is installed in the host (`--install`): "venv" is the install a user does, a fresh
# venv resolving the newest releases pyproject.toml allows from PyPI (made in a chroot before boot:
# the booted host has no network); "debian" is Debian's python3-* packages plus `pip install
# --no-deps` into the system Python. The host keeps the last one made (INSTALL_MARK).
INSTALLS = ("venv", "debian")
DEFAULT_INSTALL = "venv"
VENV_IN_HOST = "/opt/nspawnctl"
# pip's cache inside the host root, i.e. inside the clone's .build/ (survives until a rebuild).
PIP_CACHE_IN_HOST = "/var/cache/nspawnctl-pip"

# Debian's own packages of the dependencies are too old for pyproject.toml's ranges on these suites:
# `--install debian` says so and is skipped there.
DEBIAN_INSTALL_UNSUPPORTED = {
    "bookworm": "Debian 12's packages are older than pyproject.toml allows (python3-typer 0.7.0 < 0.15.2, "
    "python3-dbus-fast 1.84 < 2.44.1, python3-zstandard 0.20 < 0.23, python3-gnupg 0.4.9 < 0.5.4, "
    "python3-requests 2.28 < 2.32.3)",
}

# Where the btrfs pool appears, relative to the host root.
STORE_REL = "var/lib/nspawnctl"
MACHINES_REL = "var/lib/machines"


class HarnessError(RuntimeError):
    """A step of the harness failed; the message says which and why."""


class UnsupportedInstall(HarnessError):
    """The suite cannot do this install at all (not a failure of a step): `test` skips it."""


def suite_dir(suite: str) -> Path:
    """A suite's state directory: trixie keeps the original .build/host, others .build/host-SUITE."""
    return REPO / ".build" / ("host" if suite == DEFAULT_SUITE else f"host-{suite}")


def use_suite(suite: str) -> None:
    """Point the harness's paths at ``suite``'s host (SUITES).

    The paths are module globals, read by every step; the choice is exported as TESTHOST_SUITE so
    that the boot helper (a new process of this script) and the tests in tests/host follow it.
    """
    global SUITE, BUILD, ROOT, BOOTIMG, POOL, CONSOLE_LOG, NSPAWN_PID, LEADER_PID, LOCK, MODE_FILE
    global VARLIB_IMG, INSTALL_MARK
    if suite not in SUITES:
        raise HarnessError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
    SUITE = suite
    BUILD = suite_dir(suite)
    ROOT = BUILD / "root"
    BOOTIMG = BUILD / "bootimg"
    POOL = BUILD / "pool.img"
    CONSOLE_LOG = BUILD / "console.log"
    NSPAWN_PID = BUILD / "nspawn.pid"
    LEADER_PID = BUILD / "leader.pid"
    LOCK = BUILD / "lock"
    MODE_FILE = BUILD / "mode"  # how the host was last booted (MODES); reboot() boots it the same way
    VARLIB_IMG = BUILD / "varlib.img"
    INSTALL_MARK = BUILD / "install"
    os.environ["TESTHOST_SUITE"] = suite


use_suite(os.environ.get("TESTHOST_SUITE") or DEFAULT_SUITE)


# --------------------------------------------------------------------------- logging


def log(message: str) -> None:
    """Progress goes to stderr so that `exec` keeps the host command's stdout clean."""
    print(f"[testhost] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Log a step's start and its duration ("[testhost] debootstrap 63.2s")."""
    log(f"{name} ...")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        log(f"{name} FAILED after {time.monotonic() - start:.1f}s")
        raise
    log(f"{name} {time.monotonic() - start:.1f}s")


# --------------------------------------------------------------------------- processes


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command on the machine; on failure raise with its output in the message."""
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(
        args,
        text=True,
        timeout=timeout,
        env=env,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
        raise HarnessError(f"{' '.join(args)} exited {proc.returncode}" + (f":\n{detail}" if detail else ""))
    return proc


def chroot_env() -> dict[str, str]:
    """A minimal environment, so nothing of the machine's (pyenv, proxies' quirks) leaks in."""
    return {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}


def run_chroot(root: Path, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a command inside a root that is not booted (during build, and before boot)."""
    return run(["chroot", root, *argv], env=chroot_env(), capture=True)


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


# --------------------------------------------------------------------------- locking

_lock_depth = 0
_lock_file: int | None = None


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialize state-changing commands (two `test` runs must not boot the host twice).

    Reentrant within one process: flock() on a second descriptor of the same file
    would deadlock when test() calls build() and up().
    """
    global _lock_depth, _lock_file
    if _lock_depth == 0:
        BUILD.mkdir(parents=True, exist_ok=True)
        _lock_file = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(_lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # e.g. `make test`'s build started in the background
            with step(f"wait for another command on the {SUITE} host (its lock)"):
                fcntl.flock(_lock_file, fcntl.LOCK_EX)
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0 and _lock_file is not None:
            os.close(_lock_file)
            _lock_file = None


# --------------------------------------------------------------------------- mounts


def _unescape_mountinfo(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below path in our mount namespace, deepest first."""
    base = os.path.realpath(path)
    found: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape_mountinfo(line.split()[4])
            if point == base or point.startswith(base + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mountpoint(path: Path) -> bool:
    return Path(os.path.realpath(path)) in mounts_below(path)


def unmount(path: Path) -> None:
    """Unmount one mount point (all stacked mounts on it); lazily if it stays busy."""
    for attempt in range(10):
        if not is_mountpoint(path):
            return
        if run(["umount", path], check=False, capture=True).returncode != 0:
            time.sleep(0.3 * (attempt + 1))
    if is_mountpoint(path):
        log(f"{path} still busy, detaching it lazily")
        run(["umount", "--lazy", path], check=False, capture=True)


def unmount_below(path: Path) -> None:
    """Unmount everything under path, deepest first (a crashed debootstrap leaves /proc mounted)."""
    while points := mounts_below(path):
        before = len(points)
        for point in points:
            unmount(point)
        if len(mounts_below(path)) >= before:
            raise HarnessError(f"cannot unmount {points[0]}")


def remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount out of the tree (a bind of the machine's /dev, say)."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_below(path)
    run(["rm", "-rf", "--one-file-system", path])


def detach_loops(image: Path) -> None:
    """Detach loop devices still backed by image (mount -o loop normally auto-clears them)."""
    out = run(
        ["losetup", "--associated", image, "--noheadings", "--output", "NAME"], check=False, capture=True
    ).stdout
    for dev in out.split():
        run(["losetup", "--detach", dev], check=False, capture=True)


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class RootSpec:
    """One debootstrapped tree and the inputs that decide whether a cached copy is still good."""

    name: str
    path: Path
    packages: tuple[str, ...]
    extra_key: str = ""

    def stamp(self) -> str:
        key = json.dumps(
            {
                "suite": SUITE,
                "variant": "minbase",
                "packages": sorted(self.packages),
                "setup": SETUP_VERSION,
                "extra": self.extra_key,
            },
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def tmp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def is_current(self) -> bool:
        return read_stamp(self.path) == self.stamp()


def read_stamp(root: Path) -> str | None:
    try:
        return (root / STAMP_NAME).read_text().strip()
    except OSError:
        return None


def bootimg_spec() -> RootSpec:
    return RootSpec("bootimg", BOOTIMG, BOOTIMG_PACKAGES)


def root_spec() -> RootSpec:
    """The host root embeds the boot image, so its key includes the image's."""
    extra = bootimg_spec().stamp() + "".join(f" {item}" for item in SUITE_SETUP.get(SUITE, ()))
    packages = tuple(p for p in HOST_PACKAGES if p not in SUITE_WITHOUT.get(SUITE, ()))
    return RootSpec("root", ROOT, packages, extra_key=extra)


# What configure_host_root does beyond the common setup, per suite (part of the root's cache key).
NEWER_BUSYBOX = "busybox-static/trixie"
JOURNAL_CAP = "journald-SplitMode=none-SystemMaxUse=256M"
SUITE_SETUP: dict[str, tuple[str, ...]] = {"bookworm": (NEWER_BUSYBOX, JOURNAL_CAP)}


# bookworm's busybox-static 1.35 `wget` segfaults on any URL, on the host and in containers (whose
# busybox images are copies of the host's busybox): such hosts get trixie's busybox-static.
BUSYBOX_SUITE = "trixie"


def newer_busybox_deb(root: Path) -> Path:
    """trixie's busybox-static .deb: from the trixie host's package cache if that was built, else
    downloaded by the root's apt from a one-off trixie source list (nothing of it stays in the root)."""
    cached = sorted((suite_dir(BUSYBOX_SUITE) / "debcache" / "root").glob("busybox-static_*.deb"))
    if cached:
        return cached[-1]
    scratch = Path("/var/tmp/testhost-busybox")
    remove_tree(root / scratch.relative_to("/"))
    (root / scratch.relative_to("/") / "lists" / "partial").mkdir(parents=True)
    (root / scratch.relative_to("/") / "sources.list").write_text(f"deb {MIRROR} {BUSYBOX_SUITE} main\n")
    opts = [
        f"-oDir::Etc::SourceList={scratch}/sources.list",
        "-oDir::Etc::SourceParts=-",
        f"-oDir::State::Lists={scratch}/lists",
    ]
    run_chroot(root, ["apt-get", *opts, "update"])
    download = f"cd {scratch} && apt-get {' '.join(opts)} download busybox-static/{BUSYBOX_SUITE}"
    run_chroot(root, ["sh", "-c", download])
    found = sorted((root / scratch.relative_to("/")).glob("busybox-static_*.deb"))
    if not found:
        raise HarnessError(f"apt-get download busybox-static/{BUSYBOX_SUITE} left no .deb in {scratch}")
    return found[-1]


def ensure_host_tools() -> None:
    """Install what the harness runs on the machine, so a fresh machine works too."""
    wanted = {
        "debootstrap": "debootstrap",
        "systemd-nspawn": "systemd-container",
        "mkfs.btrfs": "btrfs-progs",
        "nsenter": "util-linux",
        "losetup": "mount",
    }
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if not missing:
        return
    with step(f"apt-get install {' '.join(missing)}"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update"], env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


# Running debootstraps: they run in worker threads, so an interrupt of the main thread
# must stop them explicitly, or they go on writing into a tree the next build deletes.
_debootstraps: list[subprocess.Popen[bytes]] = []


def stop_debootstraps() -> None:
    for proc in list(_debootstraps):
        proc.terminate()


def debootstrap(spec: RootSpec) -> None:
    """debootstrap into spec.tmp; its verbose output goes to a log, shown only on failure."""
    cache = BUILD / "debcache" / spec.name  # one cache per tree: two debootstraps must not
    cache.mkdir(parents=True, exist_ok=True)  # write the same .deb at the same time
    logfile = BUILD / f"debootstrap-{spec.name}.log"
    argv: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        f"--include={','.join(spec.packages)}",
        f"--cache-dir={cache}",
        SUITE,
        spec.tmp,
        MIRROR,
    ]
    with step(f"debootstrap {spec.name}"), open(logfile, "w") as out:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        _debootstraps.append(proc)
        try:
            proc.wait()
        finally:
            _debootstraps.remove(proc)
    if proc.returncode != 0:
        raise HarnessError(
            f"debootstrap {spec.name} exited {proc.returncode}; {logfile}:\n"
            f"{tail(logfile)}\n--- {spec.tmp}/debootstrap/debootstrap.log:\n"
            f"{tail(spec.tmp / 'debootstrap' / 'debootstrap.log')}"
        )


def configure_common(root: Path) -> None:
    """Drop the downloaded .debs (debootstrap leaves them in /var/cache/apt/archives)."""
    run_chroot(root, ["apt-get", "clean"])


def configure_host_root(root: Path) -> None:
    """Make the root boot straight to `running` as a host nspawnctl can manage containers on."""
    configure_common(root)
    # pip/apt over HTTPS in a chroot of this root go through the machine's proxy,
    # whose CA only the machine's bundle has.
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    # With --private-network the host never gets "online": unmasked, wait-online
    # holds the boot in `starting` for minutes.
    run_chroot(root, ["systemctl", "mask", "systemd-networkd-wait-online.service"])
    # networkd hands out addresses on the containers' veths (--network-veth tests).
    run_chroot(root, ["systemctl", "enable", "systemd-networkd.service"])
    # The package enables a registry on :5000; the tests start their own, on ports they choose.
    run_chroot(root, ["systemctl", "mask", "docker-registry.service"])
    # No password prompt can ever stall an emergency shell on the pipe console.
    run_chroot(root, ["passwd", "--delete", "root"])
    if NEWER_BUSYBOX in SUITE_SETUP.get(SUITE, ()):
        with step(f"install {BUSYBOX_SUITE}'s busybox-static"):
            deb = newer_busybox_deb(root)
            shutil.copyfile(deb, root / "tmp" / deb.name)
            run_chroot(root, ["dpkg", "-i", f"/tmp/{deb.name}"])
            (root / "tmp" / deb.name).unlink()
            remove_tree(root / "var/tmp/testhost-busybox")
            # apt must not "upgrade" it back to the suite's own
            run_chroot(root, ["apt-mark", "hold", "busybox-static"])
    if JOURNAL_CAP in SUITE_SETUP.get(SUITE, ()):
        # journald 252 keeps an active file of its own (8 MiB at least) for every UID that logs, and
        # each user-namespaced container is a new UID: one e2e run left 850 MB in the root, which
        # SystemMaxUse= alone does not vacuum (it removes archived files only). One file for all,
        # capped; nspawnctl reads the journal by fields, whichever file holds them.
        conf = root / "etc/systemd/journald.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "testhost.conf").write_text("[Journal]\nSplitMode=none\nSystemMaxUse=256M\n")
    for rel in (STORE_REL, MACHINES_REL, SRC_IN_HOST.lstrip("/")):
        (root / rel).mkdir(parents=True, exist_ok=True)
    with step("copy boot image into host root"):
        target = root / BOOTIMG_IN_HOST.lstrip("/")
        remove_tree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--reflink=auto", BOOTIMG, target])
        (target / STAMP_NAME).unlink(missing_ok=True)


def finish(spec: RootSpec) -> None:
    """Stamp the finished temp tree and rename it into place: a root that exists is complete."""
    (spec.tmp / STAMP_NAME).write_text(spec.stamp() + "\n")
    remove_tree(spec.path)
    spec.tmp.rename(spec.path)


def build(force: bool = False) -> None:
    """Debootstrap the host root and the boot image, reusing them while their stamps match."""
    ensure_host_tools()
    with locked():
        boot, host = bootimg_spec(), root_spec()
        todo = [s for s in (boot, host) if force or not s.is_current()]
        if not todo:
            log(f"roots up to date ({ROOT}, {BOOTIMG})")
            return
        if host in todo and (is_up() or mounts_below(ROOT)):
            log("host root is in use and must be rebuilt: taking the host down first")
            down()
        with step(f"build {' + '.join(s.name for s in todo)}"):
            for spec in todo:
                remove_tree(spec.tmp)
                remove_tree(spec.path)
            with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                futures = [pool.submit(debootstrap, s) for s in todo]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    stop_debootstraps()  # one failed or we were interrupted: stop the other
                    raise
            if boot in todo:
                configure_common(boot.tmp)
                finish(boot)
            if host in todo:
                with step("configure host root"):
                    configure_host_root(host.tmp)
                finish(host)


def require_built() -> None:
    if not root_spec().is_current():
        raise HarnessError(f"no current host root in {ROOT}: run `testhost.py build` first")


# --------------------------------------------------------------------------- project copy


def project_files() -> list[str]:
    """Tracked plus untracked-but-not-ignored files: what a commit would hold, and no .build."""
    proc = run(
        ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=False,
        capture=True,
    )
    if proc.returncode == 0:
        names = [n for n in proc.stdout.split("\0") if n]
    else:
        log("not a git checkout: copying the working tree minus build outputs")
        skip = {".build", ".git", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache"}
        names = []
        for dirpath, dirnames, filenames in os.walk(REPO):
            dirnames[:] = [d for d in dirnames if d not in skip and not d.endswith(".egg-info")]
            names += [os.path.relpath(os.path.join(dirpath, f), REPO) for f in filenames]
    return sorted(n for n in set(names) if os.path.lexists(REPO / n))


def sync_source() -> None:
    """Replace ROOT/src with a fresh copy of the checkout (the host sees it as /src)."""
    dest = ROOT / SRC_IN_HOST.lstrip("/")
    with step(f"copy project to {SRC_IN_HOST}"):
        remove_tree(dest)
        for name in project_files():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target, follow_symlinks=False)


_PIP_QUIET = ["--quiet", "--root-user-action=ignore", "--disable-pip-version-check"]


def pip_install_argv(install: str = "debian") -> list[str]:
    """The offline install of /src alone: its dependencies are already there.

    "debian": into the system Python, dependencies from Debian's packages. "venv": into the
    existing venv, whose dependencies came from PyPI when it was made (make_venv_argvs).
    """
    venv = install == "venv"
    return [
        f"{VENV_IN_HOST}/bin/python" if venv else "python3",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--force-reinstall",
        *([] if venv else ["--break-system-packages"]),
        *_PIP_QUIET,
        SRC_IN_HOST,
    ]


def make_venv_argvs() -> list[list[str]]:
    """A fresh venv with /src and its test extra, newest allowed releases from PyPI (needs network).

    Not editable: the install a user does. setuptools (the build backend) goes in as well, so that
    a booted host, which has no network, can reinstall /src into it (pip_install_argv).
    """
    python = f"{VENV_IN_HOST}/bin/python"
    return [
        ["python3", "-m", "venv", "--clear", VENV_IN_HOST],
        [
            python,
            "-m",
            "pip",
            "install",
            "--upgrade",
            "--upgrade-strategy",
            "eager",
            *_PIP_QUIET,
            f"{SRC_IN_HOST}[test]",
            "setuptools>=61",
        ],
        [python, "-m", "pip", "list", "--format=freeze"],
    ]


def host_python(install: str) -> str:
    """The interpreter that has nspawnctl importable in the given install (pytest runs under it)."""
    return f"{VENV_IN_HOST}/bin/python" if install == "venv" else "python3"


def switch_argvs(install: str) -> list[list[str]]:
    """Make /usr/local/bin/nspawnctl the given install's, with the other one out of the way.

    The system install's script and the venv's symlink share that path: pip must not write
    through the symlink into the venv, and the system Python must not find a stale nspawnctl.
    """
    remove_link = ["sh", "-c", "if [ -L /usr/local/bin/nspawnctl ]; then rm /usr/local/bin/nspawnctl; fi"]
    if install == "venv":
        return [
            ["python3", "-m", "pip", "uninstall", "-y", "--break-system-packages", *_PIP_QUIET, "nspawnctl"],
            remove_link,
            # (pip's uninstall takes an emptied /usr/local/bin with it)
            ["sh", "-c", f"mkdir -p /usr/local/bin && ln -s {VENV_IN_HOST}/bin/nspawnctl /usr/local/bin/"],
        ]
    return [remove_link]


def check_install_supported(install: str) -> None:
    """Refuse an install the suite cannot do (DEBIAN_INSTALL_UNSUPPORTED), saying why."""
    if install == "debian" and SUITE in DEBIAN_INSTALL_UNSUPPORTED:
        raise UnsupportedInstall(
            f"--install debian on {SUITE}: {DEBIAN_INSTALL_UNSUPPORTED[SUITE]}; use --install venv"
        )


def current_install() -> str:
    try:
        mode = INSTALL_MARK.read_text().strip()
    except OSError:
        return DEFAULT_INSTALL
    return mode if mode in INSTALLS else DEFAULT_INSTALL


def install_project(booted: bool, install: str | None = None) -> None:
    """Install /src into the host as ``install`` says (default: the host's last install).

    Before boot this runs in a chroot of the root, which has the machine's network: the venv is
    made afresh from PyPI there. Once booted (refreshing /src) there is no network: /src alone is
    reinstalled into the install that is there.
    """
    install = install or current_install()
    if install not in INSTALLS:
        raise HarnessError(f"unknown install {install!r}: one of {', '.join(INSTALLS)}")
    check_install_supported(install)
    src = ROOT / SRC_IN_HOST.lstrip("/")
    if not ((src / "pyproject.toml").exists() or (src / "setup.py").exists()):
        log("no pyproject.toml yet: skipping the install of nspawnctl into the host")
        return

    def host_run(argv: list[str]) -> str:
        if booted:
            proc = run_in_host(argv, capture=True, env={"PIP_CACHE_DIR": PIP_CACHE_IN_HOST})
            if proc.returncode != 0:
                raise HarnessError(f"{' '.join(argv)} failed in the host:\n{proc.stdout}{proc.stderr}")
            return proc.stdout
        # pip in a venv may bring its own CA bundle: the machine's proxy needs the root's bundle.
        env = {
            **chroot_env(),
            "PIP_CACHE_DIR": PIP_CACHE_IN_HOST,
            "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        }
        return run(["chroot", ROOT, *argv], env=env, capture=True).stdout

    INSTALL_MARK.unlink(missing_ok=True)
    with step(f"install nspawnctl in host ({install})"):
        if install == "venv" and not booted:
            for argv in make_venv_argvs():
                out = host_run(argv)
            wanted = (
                "typer",
                "click",
                "rich",
                "dbus-fast",
                "btrfsutil",
                "zstandard",
                "python-gnupg",
                "requests",
                "urllib3",
                "pytest",
            )
            log("venv: " + " ".join(p for p in out.split() if p.split("==")[0].lower() in wanted))
        elif install == "venv" and not (ROOT / VENV_IN_HOST.lstrip("/") / "bin" / "python").exists():
            raise HarnessError(
                f"no venv at {VENV_IN_HOST} in the booted host, which has no network to make one: "
                "`testhost.py down`, then `up --install venv` makes it before the boot"
            )
        else:
            host_run(pip_install_argv(install))
        for argv in switch_argvs(install):
            host_run(argv)
    INSTALL_MARK.write_text(install + "\n")


# --------------------------------------------------------------------------- pool


def mount_pool() -> None:
    """Mount the btrfs pool into the root, in the boot's mount namespace, before the boot (later
    mounts do not propagate into the booted host).

    The pool's top level is /var/lib/nspawnctl (nspawnctl's store) and its subvolume
    `machines` is bind-mounted on /var/lib/machines, so snapshots between the two are
    snapshots within one btrfs filesystem.
    """
    store, machines = ROOT / STORE_REL, ROOT / MACHINES_REL
    if not POOL.exists():
        with step(f"create {POOL_SIZE} btrfs pool"):
            tmp = POOL.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            run(["truncate", "--size", POOL_SIZE, tmp])
            run(["mkfs.btrfs", "-q", tmp], capture=True)
            tmp.rename(POOL)
    store.mkdir(parents=True, exist_ok=True)
    machines.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(store):  # the options of nspawnctl's mount units (units/)
        run(["mount", "-t", "btrfs", "-o", "loop,nosuid,nodev", POOL, store])
    if not (store / "machines").exists():
        run(["btrfs", "subvolume", "create", store / "machines"], capture=True)
    if not is_mountpoint(machines):
        run(["mount", "-o", "bind,nodev,suid", store / "machines", machines])


def unmount_pool() -> None:
    """Undo mount_pool (and anything else left mounted in the root); never fails when done."""
    if ROOT.exists():
        unmount_below(ROOT)
    for image in (POOL, VARLIB_IMG):
        if image.exists():
            detach_loops(image)


def make_btrfs_image(image: Path, size: str) -> None:
    """A sparse file with a fresh btrfs, made under a temporary name so no half image is left."""
    tmp = image.with_name(image.name + ".tmp")
    tmp.unlink(missing_ok=True)
    run(["truncate", "--size", size, tmp])
    run(["mkfs.btrfs", "-q", tmp], capture=True)
    tmp.rename(image)


@contextlib.contextmanager
def mounted_image(image: Path) -> Iterator[Path]:
    """Loop-mount an image on a scratch directory of the machine for a while, then let it go."""
    point = BUILD / f"{image.name}.mnt"
    point.mkdir(exist_ok=True)
    run(["mount", "-t", "btrfs", "-o", "loop", image, point])
    loops = [dev for dev, back in harness_loops() if back == os.fspath(image)]
    try:
        yield point
    finally:
        unmount(point)
        release_loops(loops)
        point.rmdir()


def mount_varlib(fresh: bool) -> None:
    """btrfs /var/lib: the root's /var/lib copied into a btrfs image mounted on it before boot."""
    target = ROOT / "var/lib"
    if fresh or not VARLIB_IMG.exists():
        VARLIB_IMG.unlink(missing_ok=True)
        make_btrfs_image(VARLIB_IMG, VARLIB_SIZE)
        with mounted_image(VARLIB_IMG) as point:
            run(["cp", "-a", f"{target}/.", point])
            # the harness's mount points: a btrfs-root host has no /var/lib/nspawnctl, and its
            # /var/lib/machines is a subvolume that systemd-tmpfiles makes at boot ("Q" line)
            for name in ("nspawnctl", "machines"):
                with contextlib.suppress(OSError):
                    (point / name).rmdir()
    if not is_mountpoint(target):
        run(["mount", "-t", "btrfs", "-o", "loop", VARLIB_IMG, target])


def make_machines_raw() -> None:
    """machined's loopback file, holding OLD_MACHINE: a busybox subvolume with a payload to cat."""
    from demo import make_busybox_root  # tests/host/demo.py, next to this file

    raw = ROOT / MACHINES_RAW_REL
    make_btrfs_image(raw, MACHINES_RAW_SIZE)
    with mounted_image(raw) as point:
        machine = point / OLD_MACHINE
        run(["btrfs", "subvolume", "create", machine], capture=True)
        make_busybox_root(machine, marker=OLD_MACHINE, busybox=ROOT / "usr/bin/busybox")
        (machine / "usr").mkdir()  # systemd-nspawn -M refuses a tree without /usr as "no OS tree"
        (machine / "payload").write_text(OLD_MACHINE_PAYLOAD + "\n")
        # what else machined's pool holds on real hosts, none of it a subvolume (adoption copies
        # those with reflinks): a settings file, a raw disk image, a machine in a plain directory
        (point / f"{OLD_MACHINE}.nspawn").write_text("[Exec]\nEnvironment=FROM_NSPAWN_FILE=1\n")
        with open(point / f"{OLD_RAW_MACHINE}.raw", "wb") as f:
            f.write(os.urandom(1 << 20))
        plain = point / OLD_DIR_MACHINE
        make_busybox_root(plain, marker=OLD_DIR_MACHINE, busybox=ROOT / "usr/bin/busybox")
        (plain / "usr").mkdir(exist_ok=True)
        (plain / "payload").write_text(OLD_MACHINE_PAYLOAD + "\n")


def check_machined_mount() -> None:
    """The host's own var-lib-machines.mount must have loop-mounted machines.raw at boot."""
    state = run_in_host(["systemctl", "is-active", "var-lib-machines.mount"], capture=True).stdout.strip()
    found = run_in_host(["findmnt", "-no", "FSTYPE,SOURCE", "/var/lib/machines"], capture=True).stdout.split()
    if state != "active" or found[:1] != ["btrfs"] or not found[1:2] or "loop" not in found[1]:
        raise HarnessError(
            f"var-lib-machines.mount is {state}, /var/lib/machines is {' '.join(found) or 'not mounted'}: "
            f"machined's loopback was not mounted at boot; console:\n{tail(CONSOLE_LOG)}"
        )


def harness_loops() -> list[tuple[str, str]]:
    """(device, backing file) of every loop device backed by a file of this checkout's .build.

    A loop device the booted host set up itself names its file as the host sees it
    (/var/lib/machines.raw), so such a name is looked up in ROOT and matched by inode.
    """
    proc = run(
        ["losetup", "--list", "--json", "--output", "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN"],
        check=False,
        capture=True,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    base = os.fspath(REPO / ".build") + "/"
    found = []
    for dev in json.loads(proc.stdout).get("loopdevices", []):
        back = (dev.get("back-file") or "").removesuffix(" (deleted)")
        if back.startswith(base):
            found.append((dev["name"], back))
            continue
        for suite in SUITES:  # the other suite's host may be up too, or left over
            in_root = suite_dir(suite) / "root" / back.lstrip("/")
            try:
                st = in_root.stat()
            except OSError:
                continue
            if (
                back
                and str(st.st_ino) == str(dev.get("back-ino"))
                and (f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" == str(dev.get("back-maj:min")).strip())
            ):
                found.append((dev["name"], os.fspath(in_root)))
                break
    return found


def release_loops(devices: Sequence[str]) -> None:
    """Detach the given loop devices if still attached, and have the kernel forget the btrfs it
    registered on them (a detached loop device stays in btrfs's device list otherwise)."""
    attached = dict(harness_loops())
    for dev in devices:
        if dev in attached:
            run(["losetup", "--detach", dev], check=False, capture=True)
        if shutil.which("btrfs"):
            run(["btrfs", "device", "scan", "--forget", dev], check=False, capture=True)


def leftovers() -> list[str]:
    """What a test session must not leave: a running nspawn of .build, a loop device backed by a
    file under .build, a mount under .build. Empty when all is clean."""
    build = REPO / ".build"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"systemd-nspawn") and any(a.startswith(os.fsencode(build)) for a in argv):
            found.append(f"systemd-nspawn {entry.name} runs: {b' '.join(argv).decode(errors='replace')}")
    found += [f"loop device {dev} is backed by {back}" for dev, back in harness_loops()]
    found += [f"{point} is mounted" for point in mounts_below(build)]
    return found


# --------------------------------------------------------------------------- boot state


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int | None) -> bool:
    """True for a running process; a zombie counts as gone (its reaper may be slow or absent)."""
    if pid is None:
        return False
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def nspawn_pid() -> int | None:
    """The recorded systemd-nspawn PID, if that process is still our nspawn (PIDs get reused)."""
    pid = _read_pid(NSPAWN_PID)
    if not alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return (
        pid if cmdline and cmdline[0].endswith(b"systemd-nspawn") and os.fsencode(ROOT) in cmdline else None
    )


def is_up() -> bool:
    return nspawn_pid() is not None


def leader_pid() -> int:
    """The host's PID 1 (systemd), as seen from the machine; what nsenter enters."""
    pid = _read_pid(LEADER_PID)
    if not is_up() or not alive(pid):
        raise HarnessError("the test host is not up: run `testhost.py up`")
    assert pid is not None
    return pid


def find_leader(parent: int, timeout: float = 15.0) -> int:
    """The child of systemd-nspawn that lives in a new PID namespace: the container's init."""
    own_ns = os.readlink("/proc/self/ns/pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            stat = _proc_stat(int(entry.name))
            if stat is None or stat[1] != parent:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/pid") != own_ns:
                    return int(entry.name)
        if not alive(parent):
            break
        time.sleep(0.05)
    raise HarnessError(f"no container leader under systemd-nspawn {parent}; console:\n{tail(CONSOLE_LOG)}")


# Popen objects of nspawns this process started: kept so they can be reaped, not left as zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def loop_binds() -> list[str]:
    """Bind the machine's loop devices into a bare host, so `pool init` can loop-mount its pool.

    nspawn's /dev has no loop devices and nothing inside creates nodes (no udev), so the nodes a
    loop mount may be handed by /dev/loop-control must exist before the boot.
    """
    binds = ["--bind=/dev/loop-control"]
    for n in range(LOOP_DEVICES):
        node = Path(f"/dev/loop{n}")
        if not node.exists():
            os.mknod(node, 0o660 | 0o060000, os.makedev(7, n))
        binds.append(f"--bind={node}")
    return binds


BOOT_HELPER = "_boot-in-namespace"


def prepare_mounts(mode: str, fresh: bool) -> None:
    """The mode's /var/lib (see MODES); runs in the boot's own mount namespace (see boot())."""
    if mode in ("pool", *UNIFIED_MODES):
        with step("mount pool"):
            mount_pool()
    elif mode == "btrfs-varlib":
        with step("mount btrfs /var/lib"):
            mount_varlib(fresh)
    elif mode == "machines-raw" and fresh:
        with step(f"make {MACHINES_RAW_REL} with machine {OLD_MACHINE}"):
            make_machines_raw()


def boot_in_namespace(mode: str, fresh: bool, nspawn_argv: list[str]) -> int:
    """The helper boot() starts under `unshare --mount`: mount, then become systemd-nspawn."""
    try:
        prepare_mounts(mode, fresh)
    except (HarnessError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    os.execvp(nspawn_argv[0], nspawn_argv)


def boot(mode: str = "pool", fresh: bool = True) -> int:
    """Start systemd-nspawn -b in the background, in its own session so it outlives this script.

    The pool and the other mounts of the mode are made in a mount namespace of the boot's own
    (`unshare --mount`, private propagation): the machine's namespace never holds them, so another
    systemd-nspawn started meanwhile (another checkout's test host) cannot take a copy of them
    that would keep the loop device busy after this host is down; and when this host's nspawn
    exits, its namespace and every mount in it go with it. Loop devices are bound into the modes
    whose host mounts its own loopback file.
    """
    argv = [
        "systemd-nspawn",
        "--directory",
        os.fspath(ROOT),
        "--machine",
        HOSTNAME,
        "--boot",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--link-journal=no",
        # A pty as /dev/console whose output nspawn copies to console.log: systemd's
        # "[  OK  ] Started ..." lines show where a boot got stuck. (With
        # --console=pipe there is no /dev/console and systemd prints nothing.)
        "--console=read-only",
        *(loop_binds() if mode in ("bare", "machines-raw") else []),
    ]
    script = os.fspath(Path(__file__).resolve())
    helper = [sys.executable, script, BOOT_HELPER, mode, "fresh" if fresh else "keep", "--"]
    argv = ["unshare", "--mount", "--propagation", "private", "--", *helper, *argv]
    # Plain text in console.log: nspawn hands TERM on to the host's systemd.
    env = {"PATH": os.environ.get("PATH", HOST_PATH), "TERM": "dumb", "SYSTEMD_COLORS": "0"}
    env["TESTHOST_SUITE"] = SUITE  # the helper mounts into this suite's root
    if mode in UNIFIED_MODES:
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    with open(CONSOLE_LOG, "wb") as console:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=console,
            env=env,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    NSPAWN_PID.write_text(f"{proc.pid}\n")
    leader = find_leader(proc.pid)
    LEADER_PID.write_text(f"{leader}\n")
    return leader


def wait_until_running(timeout: float = BOOT_TIMEOUT) -> str:
    """Wait for `systemctl is-system-running` to say running or degraded; return that state."""
    deadline = time.monotonic() + timeout
    state, error = "unknown", ""
    while True:
        if not is_up():
            raise HarnessError(f"systemd-nspawn exited during boot; console:\n{tail(CONSOLE_LOG)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HarnessError(
                f"host not running after {timeout:.0f}s (state {state}"
                f"{'; ' + error if error else ''}); console:\n{tail(CONSOLE_LOG)}"
            )
        try:
            proc = run_in_host(["systemctl", "is-system-running", "--wait"], capture=True, timeout=remaining)
            state, error = proc.stdout.strip() or "unknown", proc.stderr.strip()
        except subprocess.TimeoutExpired:
            continue
        if state in ("running", "degraded"):
            break
        if state in ("maintenance", "stopping"):
            raise HarnessError(f"host state {state}; console:\n{tail(CONSOLE_LOG)}")
        time.sleep(0.2)  # "offline": the bus is not up yet, systemctl fails at once
    if state == "degraded":
        failed = run_in_host(["systemctl", "--failed", "--no-pager"], capture=True).stdout
        log(f"host is degraded:\n{failed}")
    return state


def up(
    timeout: float = BOOT_TIMEOUT,
    bare: bool = False,
    mode: str | None = None,
    fresh: bool = True,
    install: str | None = None,
) -> None:
    """Prepare /var/lib for the mode (MODES), install the current checkout and boot the host;
    refresh /src if it's up.

    ``bare`` is mode "bare" (no pool, for testing `nspawnctl pool init`). ``fresh`` starts the
    mode's /var/lib from scratch (what `pool init` made is removed); reboot() keeps it instead.
    """
    mode = mode or ("bare" if bare else "pool")
    if mode not in MODES:
        raise HarnessError(f"unknown boot mode {mode!r} (one of {', '.join(MODES)})")
    with locked():
        require_built()
        if is_up():
            log("host already up: refreshing /src")
            sync_source()
            install_project(booted=True, install=install)
            wait_until_running(timeout)
            return
        MODE_FILE.write_text(mode + "\n")
        if mode in ("pool", *UNIFIED_MODES) or fresh:
            clear_pool_init()
        sync_source()
        install_project(booted=False, install=install)
        with step("boot host"):
            boot(mode, fresh)
            wait_until_running(timeout)
        if mode == "machines-raw" and fresh:
            check_machined_mount()


def boot_mode() -> str:
    """The mode the host was last booted in ("pool" if never)."""
    try:
        mode = MODE_FILE.read_text().strip()
    except OSError:
        return "pool"
    return mode if mode in MODES else "pool"


def clear_pool_init() -> None:
    """Remove what `nspawnctl pool init` and the layout modes left (pool files, mount units)."""
    for rel in POOL_INIT_FILES:
        path = ROOT / rel
        if path.is_symlink() or path.exists():
            path.unlink()
    if not is_mountpoint(ROOT / "var/lib"):
        VARLIB_IMG.unlink(missing_ok=True)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None:
            child.poll()
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def poweroff(timeout: float = POWEROFF_TIMEOUT) -> None:
    """Power the host off cleanly, and kill it if it has not stopped after timeout."""
    pid = nspawn_pid()
    if pid is None:
        return
    leader = _read_pid(LEADER_PID)
    with step("power off host"):
        try:
            run_in_host(["systemctl", "poweroff", "--no-block"], capture=True, timeout=10)
        except (HarnessError, subprocess.TimeoutExpired):
            if alive(leader):
                assert leader is not None
                os.kill(leader, signal.SIGRTMIN + 4)  # systemd's "poweroff" signal
        if not _wait_gone(pid, timeout):
            log(f"host did not stop within {timeout:.0f}s: killing it")
            for victim in (leader, pid):
                if alive(victim):
                    assert victim is not None
                    os.kill(victim, signal.SIGKILL)
            _wait_gone(pid, 10)
        _children.pop(pid, None)


def down() -> None:
    """Power off, unmount the pool, detach every loop device of .build and make the kernel forget
    their btrfs; a no-op when already down."""
    with locked():
        # the host's own ones go at poweroff: note them now (this suite's only: the other may be up)
        loops = [dev for dev, back in harness_loops() if back.startswith(os.fspath(BUILD) + "/")]
        poweroff()
        with step("unmount pool"):
            unmount_pool()
        release_loops(loops)
        NSPAWN_PID.unlink(missing_ok=True)
        LEADER_PID.unlink(missing_ok=True)


def reboot(timeout: float = BOOT_TIMEOUT) -> None:
    """Power off and boot again in the same mode without rebuilding; pools and images are kept."""
    with locked():
        mode = boot_mode()
        down()
        up(timeout, mode=mode, fresh=False)


def status() -> str:
    state = "down"
    if is_up():
        proc = run_in_host(["systemctl", "is-system-running"], capture=True, timeout=10)
        state = f"up (nspawn {nspawn_pid()}, leader {_read_pid(LEADER_PID)}): {proc.stdout.strip()}"
    built = "built" if root_spec().is_current() else "not built"
    return f"{SUITE} host {state}; root {built}; pool {'present' if POOL.exists() else 'absent'}"


def clean() -> None:
    """Remove everything the harness made (down first, so rm never walks into the pool)."""
    with locked():
        down()
        for path in (ROOT, BOOTIMG, ROOT.with_name("root.tmp"), BOOTIMG.with_name("bootimg.tmp")):
            remove_tree(path)
        POOL.unlink(missing_ok=True)
        VARLIB_IMG.unlink(missing_ok=True)
    log(f"removed the roots and the pool (kept the package cache {BUILD / 'debcache'})")


# --------------------------------------------------------------------------- exec


def host_env(extra: dict[str, str] | None = None) -> list[str]:
    """KEY=VALUE list for `env -i`: a clean, predictable environment inside the host."""
    env = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": "/root", "USER": "root"}
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    env.update(extra or {})
    return [f"{k}={v}" for k, v in env.items()]


def host_argv(argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None) -> list[str]:
    """nsenter into all of the leader's namespaces, then `env` sets the environment and cwd.

    nsenter's own --wd opens its directory before entering the mount namespace,
    i.e. on the machine; `env -C` changes directory inside the host instead.
    """
    inner = ["env", "-i", *(["-C", cwd] if cwd else []), *host_env(env), *argv]
    return ["nsenter", "--target", str(leader_pid()), "--all", *inner]


def run_in_host(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the booted host; capture=True collects stdout/stderr as text.

    Caveat: the entered process stays in this script's cgroup; use systemd-run
    inside the host when the cgroup matters.
    """
    pipe = subprocess.PIPE if capture else None
    return subprocess.run(
        host_argv(argv, cwd, env),
        text=True,
        input=input,
        timeout=timeout,
        stdout=pipe,
        stderr=pipe,
        env={"PATH": os.environ.get("PATH", HOST_PATH)},
    )


def host_sh(*argv: str, timeout: float = 300) -> tuple[int, str, str]:
    """A command in the booted host: (exit code, stdout, stderr); for the tests in tests/host."""
    proc = run_in_host(list(argv), capture=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def host_ok(*argv: str) -> str:
    """A command in the booted host that must succeed; its stdout."""
    code, out, err = host_sh(*argv)
    assert code == 0, f"{' '.join(argv)} exited {code}: {err}"
    return out


def make_busybox_in_host(rootfs: str, marker: str = "busybox") -> None:
    """A busybox root at ``rootfs`` inside the booted host (tests/host/demo.py's recipe)."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, '/src/tests/host'); "
        f"from demo import make_busybox_root; make_busybox_root(Path({rootfs!r}), marker={marker!r})"
    )
    host_ok("python3", "-c", code)


@contextlib.contextmanager
def booted(mode: str = "pool", cleanup: Sequence[Sequence[str]] = ()) -> Iterator[None]:
    """A host booted afresh in ``mode`` for one test module; on the way out the ``cleanup``
    commands run in it (failures ignored), then it goes down and what `pool init` made goes."""
    if os.geteuid() != 0:
        raise HarnessError("needs root: it boots the test host")
    build()
    down()
    up(mode=mode)  # a fresh start: what `pool init` made before is gone
    try:
        yield
    finally:
        if is_up():
            for argv in cleanup:
                host_sh(*argv)
        down()  # a test session leaves no host running (test_leftovers.py)
        clear_pool_init()


def exec_in_host(argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None) -> int:
    """Run a command inside the host with our stdin/stdout/stderr; return its exit code."""
    code = run_in_host(argv, cwd=cwd, env=env).returncode
    return 128 - code if code < 0 else code  # killed by a signal: shell convention


# --------------------------------------------------------------------------- test / demo


def start_prebuild(suite: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`build --suite SUITE` in a process of its own, its output to a log in that suite's state
    directory. It takes that suite's lock, so that suite's next command waits for it."""
    logfile = suite_dir(suite) / "prebuild.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the {suite} roots meanwhile (log: {logfile})")
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "build", "--suite", suite],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, logfile


def finish_prebuild(proc: subprocess.Popen[bytes], logfile: Path, suite: str, interrupted: bool) -> None:
    """Wait for a start_prebuild() process (stop it on an interrupt). A failure does not fail this
    run: that suite's own pass builds again and reports it there."""
    if interrupted and proc.poll() is None:
        proc.terminate()  # unwinds like Ctrl-C: its debootstraps stop, the half-made tree goes
    with step(f"wait for the {suite} roots"):
        code = proc.wait()
    if code != 0 and not interrupted:
        log(f"building the {suite} roots exited {code} (its pass builds again); {logfile}:\n{tail(logfile)}")


def test(
    pytest_args: Sequence[str] = (),
    keep: bool = False,
    install: str | None = None,
    unit: bool = False,
    prebuild: Sequence[str] = (),
    workers: int = 1,
) -> int:
    """build, up, run the e2e suite inside the host, down (unless keep); pytest's exit code.

    ``install`` says how nspawnctl is installed in the host (INSTALLS; default: the host's last
    install, else a venv); the suites run under that install's interpreter, and the installed
    ``nspawnctl`` is smoke-checked first. ``unit`` runs the unit tests in the host first (Python
    3.13), from tests/unit so that they import the installed package, not /src. ``prebuild`` names
    other suites whose roots are built meanwhile (`make test`: bookworm's debootstraps, network- and
    disk-bound, run while this suite's tests mostly wait on systemd); started once this suite's
    own roots are built, and waited for before returning. ``workers`` > 1 runs the suite in that
    many pytest-xdist workers, then the tests marked ``serial`` alone (e2e_argvs).
    """
    try:
        check_install_supported(install or current_install())
    except UnsupportedInstall as exc:
        log(f"SKIPPED: {exc}")
        return 0
    build()
    others = [(*start_prebuild(s), s) for s in dict.fromkeys(prebuild) if s != SUITE]
    interrupted = True
    try:
        code = _test_in_host(pytest_args, keep, install, unit, workers)
        interrupted = False
        return code
    finally:
        for proc, logfile, suite in others:
            finish_prebuild(proc, logfile, suite, interrupted)


def _test_in_host(
    pytest_args: Sequence[str], keep: bool, install: str | None, unit: bool, workers: int
) -> int:
    """test()'s part after the build: up, smoke check, unit and e2e suites, down (unless keep)."""
    try:
        up(install=install)
        mode = current_install()
        python = host_python(mode)
        with step(f"smoke check ({mode} install)"):
            code = exec_in_host([python, f"{SRC_IN_HOST}/tests/smoke.py", "/usr/local/bin/nspawnctl"])
        if code != 0:
            return code
        units = start_unit_in_host(python, mode) if unit else None
        try:
            codes: list[int] = []
            for what, argv in e2e_argvs(python, pytest_args, workers):
                if codes and not worth_going_on(codes[-1], pytest_args):
                    log(f"pytest e2e{what}: not run (the run before exited {codes[-1]})")
                    break
                with step(f"pytest e2e{what} ({mode} install)"):
                    codes.append(exec_in_host(argv, cwd=SRC_IN_HOST))
            code = functools.reduce(combine_codes, codes)
        finally:
            unit_code = finish_unit_in_host(*units, mode) if units else 0
        return code or unit_code
    finally:
        if keep:
            log("--keep: host left up (`testhost.py down` stops it)")
        else:
            down()


def e2e_argvs(python: str, pytest_args: Sequence[str], workers: int) -> list[tuple[str, list[str]]]:
    """The pytest runs of the e2e suite: one, or with ``workers`` > 1 the suite in that many
    pytest-xdist workers (a module's tests, or all the Docker API service's, on one worker: see
    tests/e2e/conftest.py) and then the tests marked ``serial`` (they assert on, or change, what the
    whole host holds) alone. The caller's own ``-m`` keeps the single run (one -m only counts)."""
    e2e = [python, "-m", "pytest", "-v", "--durations=25", f"{SRC_IN_HOST}/tests/e2e"]
    own = ("-m", "-n", "--numprocesses", "--dist")  # the caller's own choice of tests or workers
    if workers <= 1 or any(a.startswith(own) for a in pytest_args):
        return [("", [*e2e, *pytest_args])]
    parallel = [*e2e, "-n", str(workers), "--dist", "loadfile", "-m", "not serial", *pytest_args]
    return [(f" in {workers} workers", parallel), (" serial", [*e2e, "-m", "serial", *pytest_args])]


def worth_going_on(code: int, pytest_args: Sequence[str]) -> bool:
    """Whether the serial run follows a parallel run that exited ``code``: not after an interrupt,
    an internal or usage error (2, 3, 4), nor after a failure under -x/--maxfail."""
    if code in (2, 3, 4):
        return False
    return code != 1 or not any(a in ("-x", "--exitfirst") or a.startswith("--maxfail") for a in pytest_args)


def combine_codes(first: int, second: int) -> int:
    """pytest's exit codes of two runs of one suite: a failure in either; 5 (nothing collected) only
    when neither ran a test (a -k that picks only serial tests leaves the parallel run empty)."""
    if first in (0, 5) and second in (0, 5):
        return 5 if first == second == 5 else 0
    return first if first not in (0, 5) else second


# The unit suite beside the e2e one: the unit tests are CPU-bound, the e2e tests mostly wait on systemd,
# so together they take the e2e suite's time (a 2-core machine: ~2 min less per pass). Niced, so the
# e2e tests' commands come first when both want the CPU.
UNIT_NICE = "5"


def start_unit_in_host(python: str, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The unit suite (run from tests/unit, so that it imports the installed package, not /src) in
    the host in the background, its output to a log in the suite's state directory."""
    logfile = BUILD / f"unit-{mode}.log"
    log(f"pytest unit ({mode} install) in the background, beside the e2e suite (log: {logfile})")
    argv = ["nice", "-n", UNIT_NICE, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."]
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            host_argv(argv, cwd=f"{SRC_IN_HOST}/tests/unit"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", HOST_PATH)},
            start_new_session=True,  # a Ctrl-C of the e2e suite reaches it through finish_unit_in_host
        )
    return proc, logfile


def finish_unit_in_host(proc: subprocess.Popen[bytes], logfile: Path, mode: str) -> int:
    """Wait for start_unit_in_host()'s suite (stopped if the e2e suite was interrupted), print its
    output, return its exit code."""
    interrupted = sys.exc_info()[0] is not None
    if interrupted and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    with step(f"wait for pytest unit ({mode} install)"):
        code = proc.wait()
    sys.stdout.write(logfile.read_text(errors="replace"))
    sys.stdout.flush()
    return 128 - code if code < 0 else code


def demo() -> int:
    """The README's first command on a machine without systemd: tests/host/demo.py inside the host."""
    build()
    try:
        up()
        with step("demo"):
            return exec_in_host(["python3", f"{SRC_IN_HOST}/tests/host/demo.py"], cwd=SRC_IN_HOST)
    finally:
        down()


def shell() -> int:
    """`make shell`: boot the host, ready the README tour's images, an interactive shell inside;
    the host goes down when the shell exits."""
    build()
    try:
        up()
        with step("prepare the shell"):
            prepare = ["python3", f"{SRC_IN_HOST}/tests/host/demo.py", "--prepare-shell"]
            code = exec_in_host(prepare, cwd="/root")
        if code != 0:
            return code
        return exec_in_host(["bash", "-l"], cwd="/root")
    finally:
        down()


# --------------------------------------------------------------------------- CLI


def _strip_dashdash(args: list[str]) -> list[str]:
    return args[1:] if args[:1] == ["--"] else args


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise HarnessError(f"--env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testhost.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    # every command takes --suite: which Debian release's host it builds, boots, enters or stops
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--suite",
        choices=SUITES,
        default=os.environ.get("TESTHOST_SUITE") or DEFAULT_SUITE,
        help="trixie (systemd 257, Python 3.13; the default) or bookworm (systemd 252, Python 3.11)",
    )

    def add(name: str, **kw: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    b = add("build", help="debootstrap the host root and the boot image (cached)")
    b.add_argument("--force", action="store_true", help="rebuild even if the stamps match")
    u = add("up", help="mount the pool, install the checkout and boot the host")
    u.add_argument("--install", choices=INSTALLS, help="venv (from PyPI, the default) or debian packages")
    u.add_argument("--mode", choices=MODES, help="how to boot it (default pool; unified: cgroup v2)")
    e = add("exec", help="run a command inside the booted host")
    e.add_argument("--cwd", help="working directory inside the host")
    e.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    add("down", help="power off and unmount (no-op when down)")
    add("reboot", help="down, then up again without rebuilding")
    t = add(
        "test",
        help="build, up, pytest tests/e2e inside the host, down",
        usage="testhost.py test [--suite trixie|bookworm] [--keep] [--install venv|debian] [--unit] "
        "[--prebuild SUITE] [--workers N] [--] [PYTEST_ARGS...]",
    )
    t.add_argument("--keep", action="store_true", help="leave the host up afterwards")
    t.add_argument("--install", choices=INSTALLS, help="how nspawnctl is installed in the host")
    t.add_argument("--unit", action="store_true", help="run the unit tests in the host first")
    t.add_argument(
        "--workers", type=int, default=1, metavar="N", help="run the e2e suite in N pytest-xdist workers"
    )
    t.add_argument(
        "--prebuild", action="append", choices=SUITES, default=[], help="build SUITE's roots meanwhile"
    )
    t.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest as they are")
    add("demo", help="import a busybox dir and run a container in the host")
    add("shell", help="boot the host with a busybox image ready, a shell inside, then down")
    add("leftovers", help="list nspawns, loop devices, mounts of .build (exit 1 if any)")
    add("status", help="say whether the host is built and up")
    add("clean", help="down, then delete the roots and the pool")
    return p


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally: down()` and the debootstrap cleanup run."""
    raise KeyboardInterrupt


def _parse(argv: list[str]) -> argparse.Namespace:
    """argparse, except that `test` hands everything after its own --keep to pytest.

    argparse's REMAINDER stops at the first option it does not know (`test -k foo`
    is an error), but pytest's options are exactly what `test` has to pass on.
    """
    if argv[:1] == ["test"] and not {"-h", "--help"} & set(argv[1:2]):
        rest = argv[1:]
        suite = os.environ.get("TESTHOST_SUITE") or DEFAULT_SUITE
        ns = argparse.Namespace(
            command="test", keep=False, install=None, unit=False, suite=suite, prebuild=[], workers=1
        )
        while rest:  # the harness's own options come first; the first other word is pytest's
            if rest[0] in ("--keep", "--unit"):
                setattr(ns, rest[0][2:], True)
                rest = rest[1:]
            elif (rest[0] == "--install" and len(rest) > 1) or rest[0].startswith("--install="):
                value = rest[0].partition("=")[2] or rest[1]
                rest = rest[1:] if "=" in rest[0] else rest[2:]
                if value not in INSTALLS:
                    parser().error(f"--install: one of {', '.join(INSTALLS)}, not {value!r}")
                ns.install = value
            elif (rest[0] == "--prebuild" and len(rest) > 1) or rest[0].startswith("--prebuild="):
                value = rest[0].partition("=")[2] or rest[1]
                rest = rest[1:] if "=" in rest[0] else rest[2:]
                if value not in SUITES:
                    parser().error(f"--prebuild: one of {', '.join(SUITES)}, not {value!r}")
                ns.prebuild.append(value)
            elif (rest[0] == "--suite" and len(rest) > 1) or rest[0].startswith("--suite="):
                value = rest[0].partition("=")[2] or rest[1]
                rest = rest[1:] if "=" in rest[0] else rest[2:]
                if value not in SUITES:
                    parser().error(f"--suite: one of {', '.join(SUITES)}, not {value!r}")
                ns.suite = value
            elif (rest[0] == "--workers" and len(rest) > 1) or rest[0].startswith("--workers="):
                value = rest[0].partition("=")[2] if "=" in rest[0] else rest[1]
                rest = rest[1:] if "=" in rest[0] else rest[2:]
                if not re.fullmatch(r"[0-9]{1,2}", value) or not 1 <= int(value) <= 16:
                    parser().error(f"--workers: a number of pytest-xdist workers from 1 to 16, not {value!r}")
                ns.workers = int(value)
            else:
                break
        ns.pytest_args = _strip_dashdash(rest)
        return ns
    return parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == [BOOT_HELPER]:  # boot(): MODE fresh|keep -- NSPAWN_ARGV...
        return boot_in_namespace(raw[1], raw[2] == "fresh", raw[4:])
    args = _parse(raw)
    signal.signal(signal.SIGTERM, _terminate)
    if os.geteuid() != 0:
        log("must run as root (debootstrap, mount, nsenter)")
        return 1
    try:
        use_suite(args.suite)
        if args.command == "build":
            build(force=args.force)
        elif args.command == "up":
            up(install=args.install, mode=args.mode)
        elif args.command == "exec":
            cmd = _strip_dashdash(args.cmd)
            if not cmd:
                log("exec needs a command: testhost.py exec [--cwd DIR] -- CMD...")
                return 2
            return exec_in_host(cmd, cwd=args.cwd, env=_parse_env(args.env))
        elif args.command == "down":
            down()
        elif args.command == "reboot":
            reboot()
        elif args.command == "test":
            return test(
                args.pytest_args,
                keep=args.keep,
                install=args.install,
                unit=args.unit,
                prebuild=args.prebuild,
                workers=args.workers,
            )
        elif args.command == "demo":
            return demo()
        elif args.command == "shell":
            return shell()
        elif args.command == "leftovers":
            found = leftovers()
            print("\n".join(found) or "nothing left")
            return 1 if found else 0
        elif args.command == "status":
            print(status())
        elif args.command == "clean":
            clean()
    except HarnessError as exc:
        log(f"error: {exc}")
        return 125 if args.command == "exec" else 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
