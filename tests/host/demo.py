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


def make_busybox_root(dest: Path, marker: str = "busybox", busybox: str | Path | None = None) -> Path:
    """A minimal root: static busybox plus its applet links and an /etc; no /usr, like many small images."""
    busybox = busybox or shutil.which("busybox") or "/bin/busybox"
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


SHELL_IMAGE = "bb"
WWW = Path("/srv/www")
TOUR_TARBALL = Path("/root/rootfs.tar.xz")
BOOT_IMAGE_DIR = Path("/srv/bootimg")  # the test host's Debian root with systemd (testhost.py)
SHELL_BANNER = f"""
nspawnctl test host: systemd 257 as PID 1, a btrfs pool, nspawnctl installed from this checkout.
Ready for the README's tour:
  {SHELL_IMAGE}                  a busybox image (nspawnctl run --rm {SHELL_IMAGE} echo hi)
  {TOUR_TARBALL}  a Debian trixie root: nspawnctl import rootfs.tar.xz debian:13
  {WWW}/index.html  for the httpd example
Images and containers stay in .build/host/pool.img until 'make clean'. 'exit' powers the host off.
"""


def prepare_shell() -> int:
    """Inside the test host: what the README's tour needs, made once (the root and pool persist)."""
    if subprocess.run(["nspawnctl", "image", "inspect", SHELL_IMAGE], capture_output=True).returncode != 0:
        rootfs = Path(f"/var/tmp/nspawnctl-shell-{SHELL_IMAGE}")
        shutil.rmtree(rootfs, ignore_errors=True)
        make_busybox_root(rootfs)
        _sh("nspawnctl", "import", str(rootfs), SHELL_IMAGE)
        shutil.rmtree(rootfs, ignore_errors=True)
    WWW.mkdir(parents=True, exist_ok=True)
    (WWW / "index.html").write_text("hello from an nspawnctl container\n")
    Path("/root/site.conf").write_text("# an httpd.conf for 'nspawnctl cp ./site.conf web:/etc/httpd.conf'\n")
    if not TOUR_TARBALL.exists() and BOOT_IMAGE_DIR.is_dir():
        tmp = TOUR_TARBALL.with_name(TOUR_TARBALL.name + ".tmp")
        print(f"making {TOUR_TARBALL} from {BOOT_IMAGE_DIR} (once) ...", flush=True)
        tar = ["tar", "-C", str(BOOT_IMAGE_DIR), "--numeric-owner", "--xattrs", "-cf", str(tmp)]
        subprocess.run([*tar, "--use-compress-program", "xz -T0 -1", "."], check=True)
        tmp.rename(TOUR_TARBALL)
    print(SHELL_BANNER, flush=True)
    return 0


def main() -> int:
    args = sys.argv[1:]
    if args == ["--prepare-shell"]:
        return prepare_shell()
    systemd_host = Path("/run/systemd/system").is_dir()
    if args == ["--shell"] and systemd_host:
        print("this host runs systemd: nspawnctl runs right here (try 'nspawnctl pool check'); no test host")
        return 0
    if not systemd_host or args == ["--shell"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import testhost

        return testhost.shell() if args == ["--shell"] else testhost.demo()
    return local_demo()


if __name__ == "__main__":
    raise SystemExit(main())
