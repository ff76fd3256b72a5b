#!/usr/bin/env python3
"""The README's demo: install nspawnctl, import a tiny busybox image and run a container in it.

On a systemd host this runs right here (the pool must be btrfs: see ``nspawnctl pool init``). On a
machine without systemd as PID 1 (the development machines) it boots the test host first
(tests/host/testhost.py) and runs itself inside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOTFS = Path("/var/tmp/nspawnctl-demo-rootfs")
MESSAGE = "Hello from a container"
GETENT = """#!/bin/sh
case "$1" in
initgroups) line=$(grep -m1 -E "^$2:" /etc/passwd) || exit 2; gid=${line#*:*:*:}; echo "$2 ${gid%%:*}";;
*) grep -m1 -E "^$2:|^[^:]*:[^:]*:$2:" "/etc/$1" || exit 2;;
esac
"""


def make_busybox_root(dest: Path, marker: str = "busybox") -> Path:
    """A minimal root: static busybox plus its applet links and an /etc; no /usr, like many small images."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    out = subprocess.run(
        [str(dest / "bin" / "busybox"), "--list"], capture_output=True, text=True, check=True
    )
    for applet in out.stdout.split():
        if applet != "busybox":
            (dest / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "tmp", "root", "proc", "sys", "dev", "run", "var"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (dest / "etc" / "os-release").write_text('ID=busybox\nNAME="BusyBox"\n')
    (dest / "etc" / "marker").write_text(marker + "\n")
    # systemd-nspawn runs "getent passwd USER" and "getent initgroups USER" inside the container to
    # switch users (-u); busybox has no getent applet, so the image brings a small one.
    getent = dest / "bin" / "getent"
    getent.write_text(GETENT)
    getent.chmod(0o755)
    return dest


def _sh(*argv: str, check: bool = True) -> int:
    print("$", " ".join(argv), flush=True)
    code = subprocess.run(argv).returncode
    if check and code != 0:
        raise SystemExit(code)
    return code


def local_demo() -> int:
    if not (shutil.which("busybox") or Path("/bin/busybox").exists()):
        subprocess.run(["apt-get", "install", "-y", "-q", "busybox-static"], check=True)
    shutil.rmtree(ROOTFS, ignore_errors=True)
    make_busybox_root(ROOTFS)
    _sh("nspawnctl", "pool", "check")
    subprocess.run(["nspawnctl", "rmi", "demo"], capture_output=True)  # left by an earlier demo
    _sh("nspawnctl", "import", str(ROOTFS), "demo")
    _sh("nspawnctl", "images")
    code = _sh("nspawnctl", "run", "--rm", "demo", "echo", MESSAGE, check=False)
    shutil.rmtree(ROOTFS, ignore_errors=True)
    return code


def main() -> int:
    if Path("/run/systemd/system").is_dir():
        return local_demo()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import testhost

    return testhost.demo()


if __name__ == "__main__":
    raise SystemExit(main())
