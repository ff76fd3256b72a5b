"""docker-py's own integration tests (containers, exec, images) against nspawnctl's Docker API.

Runs inside the booted trixie test host (`make test-docker-py` puts docker-py's checkout at the
tag of the installed docker-py into the host and calls this with its path). Docker Hub is not
reachable, so the images the tests name (alpine:3.10, alpine:latest, busybox:latest) are a busybox
image, and hello-world a one-file image of its own (the tests pull, save, load and prune it, never
run it), served by a local registry as registry-1.docker.io: an /etc/hosts line and a certificate of
the tests' CA, which the service trusts through a drop-in (REQUESTS_CA_BUNDLE). Everything is
undone at the end. Prints pytest's counts per file and writes a JUnit XML beside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e"), str(HERE.parent / "host")]

import ocibuild as ob  # noqa: E402
from demo import make_busybox_root  # noqa: E402
from pki import make_tls  # noqa: E402
from registry import start_registry  # noqa: E402
from standin import add_alpine_parts  # noqa: E402

HUB = "registry-1.docker.io"
IMAGES = ("library/alpine:3.10", "library/alpine:latest", "library/busybox:latest")
HELLO = "library/hello-world:latest"  # an image apart: prune must not take busybox with it
FILES = (
    "tests/integration/api_container_test.py",
    "tests/integration/api_exec_test.py",
    "tests/integration/api_image_test.py",
    "tests/integration/models_containers_test.py",
    "tests/integration/models_images_test.py",
)
SERVICE = "nspawnctl-docker.service"
DROPIN = Path(f"/etc/systemd/system/{SERVICE}.d/docker-py-tests.conf")
HOSTS = Path("/etc/hosts")
HOSTS_LINE = f"127.0.0.1 {HUB}  # docker-py-tests\n"


def serve_images(work: Path) -> tuple[object, Path]:
    """A registry on 127.0.0.1:443 named registry-1.docker.io holding IMAGES (all one busybox image)
    and HELLO."""
    layout = ob.Layout(work / "oci")
    root = add_alpine_parts(make_busybox_root(work / "bb-root"))
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    image = layout.image(
        None, [ob.Layer(ob.LayerSpec().tree(root), "gzip")], {"Cmd": ["/bin/sh"], "Env": env}
    )
    tls = make_tls(work / "tls", [HUB])
    reg = start_registry(work / "registry", port=443, host=HUB, tls=tls)
    text = "Hello from a stand-in of Docker's hello-world\n"
    layer = ob.Layer(ob.LayerSpec().file("hello", text, 0o755), "gzip")
    hello = layout.image(None, [layer], {"Cmd": ["/hello"]})
    for ref, img in [*((r, image) for r in IMAGES), (HELLO, hello)]:
        repo, _, tag = ref.partition(":")
        ob.push(layout, img, reg.url(""), repo, tag, ca=tls.ca)
    return reg, tls.ca


def containers() -> list[str]:
    out = subprocess.run(["nspawnctl", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return out.stdout.split()


def summary(junit: Path) -> str:
    """Counts per file and one line per failing test (its first line of error)."""
    lines, total = [], Counter()
    per_file: dict[str, Counter[str]] = {}
    failures = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "").rsplit(".", 1)[0].rsplit(".", 1)[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}[child.tag]
                if child.tag != "skipped":
                    msg = (child.get("message") or child.text or "").strip().splitlines()
                    failures.append(
                        f"  {case.get('classname')}::{case.get('name')}: {msg[0][:200] if msg else ''}"
                    )
        per_file.setdefault(name, Counter())[outcome] += 1
        total[outcome] += 1
    for name, c in sorted(per_file.items()):
        lines.append(
            f"{name}: " + ", ".join(f"{c[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if c[k])
        )
    lines.append("total: " + ", ".join(f"{total[k]} {k}" for k in ("passed", "failed", "errors", "skipped")))
    return "\n".join([*lines, "failing:", *failures])


def main(argv: list[str]) -> int:
    checkout = Path(argv[1]).resolve()
    extra = argv[2:]
    import docker

    # cgroup v2 (make test-docker-py boots the host in mode unified): pause freezes the unit
    hierarchy = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1 (pause tests fail)"
    print(f"docker-py {docker.__version__}, tests from {checkout}, cgroup {hierarchy}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="docker-py-tests-"))
    hosts = HOSTS.read_text()
    before = set(containers())
    reg = None
    try:
        HOSTS.write_text(hosts + HOSTS_LINE)
        reg, ca = serve_images(work)
        DROPIN.parent.mkdir(parents=True, exist_ok=True)
        DROPIN.write_text(f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={ca}\n")
        subprocess.run(["nspawnctl", "system", "service", "enable"], check=True)
        subprocess.run(
            ["nspawnctl", "pull", f"docker.io/{IMAGES[0]}"],
            check=True,
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(ca)},
        )
        junit = checkout / "junit.xml"
        env = {
            **os.environ,
            "DOCKER_HOST": "unix:///run/nspawnctl/docker.sock",
            # the per-test time limit (helpers.py's paramiko comes with the test extra's docker[ssh])
            "PYTHONPATH": str(HERE / "plugins"),
        }
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "-rN",
                "-p",
                "dockerpy_timeout",
                f"--junitxml={junit}",
                "-o",
                "junit_family=xunit1",
                *FILES,
                *extra,
            ],
            cwd=checkout,
            env=env,
        )
        if junit.exists():
            print(summary(junit))
    finally:
        HOSTS.write_text(hosts)
        subprocess.run(["nspawnctl", "system", "service", "disable"], capture_output=True)
        left = [n for n in containers() if n not in before]  # where the suite's own tearDown failed
        if left:
            print(f"removing {len(left)} containers the tests left: {' '.join(left)}")
            subprocess.run(["nspawnctl", "rm", "-f", *left], capture_output=True)
        for ref in (*IMAGES, HELLO):
            subprocess.run(["nspawnctl", "rmi", "-f", f"docker.io/{ref}"], capture_output=True)
        DROPIN.unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
        if reg is not None:
            reg.stop()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
