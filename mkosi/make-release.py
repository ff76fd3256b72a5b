#!/usr/bin/env python3
"""Turn a container root into signed releases that any web server can host and `nspawnctl pull` takes.

Two formats, both plain files:

* an importd-style tarball release (what `machinectl pull-tar` and `importctl pull-tar` expect):
  NAME.tar.xz, optionally NAME.nspawn, SHA256SUMS listing both, and SHA256SUMS.gpg, a detached
  binary signature of SHA256SUMS;
* an App Container Image (appc spec/aci.md): a compressed tar with exactly `manifest` and `rootfs/`,
  named NAME-VERSION-OS-ARCH.aci, with NAME-VERSION-OS-ARCH.aci.asc, an ASCII-armored detached
  signature over the .aci file as served; plus the HTML page that appc discovery fetches.

Archives are written by GNU tar, never by Python: it keeps numeric owners, modes (setuid, sticky),
xattrs (file capabilities), hardlinks and real mtimes faithfully. Signing uses the gpg CLI.
Only the Python standard library is needed. See mkosi/README.md for the whole workflow.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROG = "make-release.py"
AC_VERSION = "0.8.11"
# appc identifiers, names and environment variable names (spec/types.md).
AC_IDENTIFIER = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")
AC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z_0-9.-]*$")
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(.+)$")
# The os/arch pairs appc knows (schema/types/labels.go); its arch names differ from uname's.
VALID_OS_ARCH = {
    "linux": {"amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b"}
    | {"ppc64", "ppc64le", "s390x"},
    "freebsd": {"amd64", "i386", "arm"},
    "darwin": {"x86_64", "i386"},
}
UNAME_TO_APPC = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "aarch64_be": "aarch64_be",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
    "armv7b": "armv7b",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
# Compressor commands (stdin -> stdout) and the file suffix each gives; gzip -n leaves out the
# name and timestamp so that the same tar gives the same bytes.
COMPRESSORS: dict[str, tuple[list[str] | None, str]] = {
    "xz": (["xz", "-T0", "-c"], ".xz"),
    "gz": (["gzip", "-n", "-c"], ".gz"),
    "zst": (["zstd", "-q", "-T0", "-c"], ".zst"),
    "none": (None, ""),
}
DECOMPRESSORS = {
    "xz": ["xz", "-dc"],
    "gz": ["gzip", "-dc"],
    "zst": ["zstd", "-q", "-dc"],
    "bz2": ["bzip2", "-dc"],
}
# GNU tar, faithful: POSIX format (needed for xattrs and sub-second mtimes), numeric owners, every
# xattr namespace, a stable member order; atime/ctime left out so that the archive depends on the
# tree alone.
TAR_CREATE = [
    "tar",
    "--create",
    "--file=-",
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    "--numeric-owner",
    "--xattrs",
    "--xattrs-include=*",
    "--sort=name",
]
TAR_EXTRACT = ["tar", "--extract", "--numeric-owner", "--same-owner", "--preserve-permissions"]
TAR_EXTRACT += ["--xattrs", "--xattrs-include=*"]


class ReleaseError(Exception):
    """A failure to report as one line on stderr; `code` 2 means the arguments were wrong."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# --- running tools ---------------------------------------------------------------------------


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        raise ReleaseError(f"'{name}' is not installed (needed to write the release)")


def pipeline(commands: Sequence[list[str] | None], out: Path, stdin: Path | None = None) -> None:
    """Run commands connected by pipes (None entries skipped), the last writing to `out`."""
    cmds = [c for c in commands if c is not None]
    for cmd in cmds:
        need_tool(cmd[0])
    procs: list[subprocess.Popen[bytes]] = []
    # stderr goes to files: a pipe nobody reads while the pipeline runs could fill and hang it.
    logs = [tempfile.TemporaryFile() for _ in cmds]
    with open(out, "wb") as sink, open(stdin or os.devnull, "rb") as source:
        upstream = source.fileno()
        for i, cmd in enumerate(cmds):
            last = i == len(cmds) - 1
            proc = subprocess.Popen(
                cmd, stdin=upstream, stdout=sink if last else subprocess.PIPE, stderr=logs[i]
            )
            if procs and procs[-1].stdout is not None:
                procs[-1].stdout.close()  # the next process owns the read end now
            if proc.stdout is not None:
                upstream = proc.stdout.fileno()
            procs.append(proc)
        codes = [proc.wait() for proc in procs]
    for cmd, code, log in zip(cmds, codes, logs, strict=True):
        log.seek(0)
        text = log.read().decode(errors="replace").strip().splitlines()
        log.close()
        if code != 0:
            raise ReleaseError(f"{cmd[0]} failed (exit {code}): {text[-1] if text else 'no message'}")


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    need_tool(cmd[0])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise ReleaseError(f"{what} failed: {lines[-1] if lines else f'{cmd[0]} exited {proc.returncode}'}")
    return proc


def sniff_compression(path: Path) -> str:
    """xz, gz, zst, bz2 or none (a plain tar); ReleaseError for anything else."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zst"
    if head.startswith(b"BZh"):
        return "bz2"
    if head[257:262] == b"ustar":
        return "none"
    raise ReleaseError(f"{path} is neither a directory nor a tarball (tar, .gz, .xz, .zst, .bz2)", 2)


# --- files -----------------------------------------------------------------------------------


def temp_beside(final: Path) -> Path:
    """A temporary name in the same directory, so that the final rename is atomic and web servers
    never serve a half-written release file."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def publish(tmp: Path, final: Path) -> Path:
    tmp.chmod(0o644)  # web servers read these as another user
    os.replace(tmp, final)
    return final


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def update_sums(directory: Path, written: Sequence[Path]) -> tuple[Path, bool]:
    """(Re)write DIR/SHA256SUMS in the `<hex> *<file>` form systemd-importd matches: lines for the
    files just written replace older ones, lines of other files still present are kept, the rest
    is dropped. Returns the path and whether the content changed."""
    path = directory / "SHA256SUMS"
    old = path.read_text() if path.exists() else ""
    entries: dict[str, str] = {}
    for line in old.splitlines():
        m = SUMS_LINE.match(line)
        if not m:
            if line.strip():
                warn(f"dropping a line SHA256SUMS does not parse: {line!r}")
            continue
        digest, name = m.groups()
        if (directory / name).is_file():
            entries[name] = digest.lower()
        else:
            warn(f"dropping the SHA256SUMS line of {name}, which is no longer in {directory}")
    for f in written:
        entries[f.name] = sha256_file(f)
    new = "".join(f"{entries[name]} *{name}\n" for name in sorted(entries))
    if new != old:
        tmp = temp_beside(path)
        tmp.write_text(new)
        publish(tmp, path)
    return path, new != old


# --- signing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A gpg secret key to sign with, in the default keyring or in `homedir`."""

    keyid: str
    homedir: Path | None = None

    def gpg(self, *args: str) -> list[str]:
        home = ["--homedir", str(self.homedir)] if self.homedir else []
        return ["gpg", "--batch", "--no-tty", *home, *args]

    def check(self) -> None:
        """Fail before any work is done when the key is not there."""
        need_tool("gpg")
        if self.homedir and not self.homedir.is_dir():
            raise ReleaseError(f"gpg home directory {self.homedir} does not exist", 2)
        proc = subprocess.run(
            self.gpg("--with-colons", "--list-secret-keys", "--", self.keyid), capture_output=True, text=True
        )
        if proc.returncode != 0 or not any(line.startswith("sec:") for line in proc.stdout.splitlines()):
            where = f"gpg home {self.homedir}" if self.homedir else "the default gpg keyring"
            raise ReleaseError(
                f"no secret key '{self.keyid}' in {where} (list them with: gpg --list-secret-keys)", 2
            )

    def sign(self, path: Path, out: Path, armor: bool) -> Path:
        tmp = temp_beside(out)
        tmp.unlink(missing_ok=True)
        cmd = self.gpg("--local-user", self.keyid, "--detach-sign", *(["--armor"] if armor else []))
        try:
            run([*cmd, "--output", str(tmp), "--", str(path)], f"signing {path.name}")
        except ReleaseError:
            tmp.unlink(missing_ok=True)
            raise
        return publish(tmp, out)


def signer_from(args: argparse.Namespace) -> Signer | None:
    if args.gpg_homedir and not args.sign:
        raise ReleaseError("--gpg-homedir given without --sign KEYID", 2)
    if not args.sign:
        return None
    signer = Signer(args.sign, Path(args.gpg_homedir) if args.gpg_homedir else None)
    signer.check()
    return signer


# --- tarball releases ------------------------------------------------------------------------


def tar_suffix(compress: str) -> str:
    return ".tar" + COMPRESSORS[compress][1]


def check_root(root: Path) -> None:
    if not root.exists():
        raise ReleaseError(f"{root} does not exist: give a root directory or a tarball", 2)
    if not (root.is_dir() or root.is_file()):
        raise ReleaseError(f"{root} is neither a directory nor a tarball", 2)


def write_tar(root: Path, out: Path, compress: str) -> None:
    """Write ROOT (a directory, or a tarball recompressed as asked) to `out`."""
    compressor = COMPRESSORS[compress][0]
    if root.is_dir():
        pipeline([[*TAR_CREATE, "-C", str(root), "."], compressor], out)
        return
    found = sniff_compression(root)
    if found == compress:
        shutil.copyfile(root, out)  # the very bytes mkosi wrote
    else:
        pipeline([DECOMPRESSORS.get(found, ["cat"]), compressor], out, stdin=root)


def make_tarball(
    root: Path, name: str, out: Path, compress: str, nspawn: Path | None, signer: Signer | None
) -> list[Path]:
    check_root(root)
    if not RELEASE_NAME.match(name) or name.endswith((".tar", ".nspawn")):
        raise ReleaseError(f"release name {name!r} must be a plain file name without suffix, e.g. debian", 2)
    if nspawn is not None and not nspawn.is_file():
        raise ReleaseError(f"settings file {nspawn} does not exist", 2)
    out.mkdir(parents=True, exist_ok=True)
    final = out / (name + tar_suffix(compress))
    tmp = temp_beside(final)
    try:
        write_tar(root, tmp, compress)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    written = [publish(tmp, final)]
    if nspawn is not None:
        settings = out / f"{name}.nspawn"
        tmp = temp_beside(settings)
        shutil.copyfile(nspawn, tmp)
        written.append(publish(tmp, settings))
    sums, changed = update_sums(out, written)
    written.append(sums)
    if signer is not None:
        written.append(signer.sign(sums, out / "SHA256SUMS.gpg", armor=False))
    elif changed:
        for stale in (out / "SHA256SUMS.gpg", out / "SHA256SUMS.asc"):
            if stale.exists():
                stale.unlink()
                warn(f"removed {stale}: it signed the old SHA256SUMS (sign again with --sign KEYID)")
    return written


# --- App Container Images --------------------------------------------------------------------


def host_arch() -> str:
    machine = platform.machine()
    return UNAME_TO_APPC.get(machine, machine)


def split_pair(value: str, option: str, sep: str = "=") -> tuple[str, str]:
    key, found, rest = value.partition(sep)
    if not found or not key:
        raise ReleaseError(f"{option} {value!r}: expected KEY{sep}VALUE", 2)
    return key, rest


def parse_port(value: str) -> dict[str, object]:
    parts = value.split(":")
    if len(parts) != 3:
        raise ReleaseError(f"--port {value!r}: expected NAME:PROTOCOL:PORT, e.g. http:tcp:8080", 2)
    name, proto, port = parts
    if not AC_NAME.match(name):
        raise ReleaseError(f"--port {value!r}: the name must be lowercase letters, digits and '-'", 2)
    if proto not in ("tcp", "udp"):
        raise ReleaseError(f"--port {value!r}: the protocol must be tcp or udp", 2)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ReleaseError(f"--port {value!r}: the port must be a number from 1 to 65535", 2)
    return {"name": name, "protocol": proto, "port": int(port)}


def parse_mount(value: str) -> dict[str, object]:
    parts = value.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ReleaseError(f"--mount {value!r}: expected NAME:/PATH[:ro]", 2)
    if not AC_NAME.match(parts[0]):
        raise ReleaseError(f"--mount {value!r}: the name must be lowercase letters, digits and '-'", 2)
    if not parts[1].startswith("/"):
        raise ReleaseError(f"--mount {value!r}: the path must be absolute", 2)
    return {"name": parts[0], "path": parts[1], "readOnly": len(parts) == 3 and parts[2] == "ro"}


@dataclass(frozen=True)
class AciSpec:
    """What goes into the manifest."""

    name: str
    version: str
    os: str
    arch: str
    exec: list[str]
    env: list[str]
    user: str
    group: str
    workdir: str
    ports: list[str]
    mounts: list[str]
    labels: list[str]

    def manifest(self) -> dict[str, object]:
        if not AC_IDENTIFIER.match(self.name):
            raise ReleaseError(
                f"--name {self.name!r} is not an AC identifier (lowercase, e.g. example.com/app)", 2
            )
        if not self.version or "/" in self.version or self.version.startswith("."):
            raise ReleaseError(f"--version {self.version!r} must be non-empty, without '/'", 2)
        if self.arch not in VALID_OS_ARCH.get(self.os, set()):
            known = ", ".join(f"{o}/{a}" for o, arches in VALID_OS_ARCH.items() for a in sorted(arches))
            raise ReleaseError(
                f"--os {self.os} --arch {self.arch} is not an appc os/arch (one of {known})", 2
            )
        if not self.workdir.startswith("/"):
            raise ReleaseError(f"--workdir {self.workdir!r} must be absolute", 2)
        labels = {"version": self.version, "os": self.os, "arch": self.arch}
        for item in self.labels:
            key, value = split_pair(item, "--label")
            if not AC_IDENTIFIER.match(key) or key == "name" or key in labels:
                raise ReleaseError(
                    f"--label {item!r}: the key must be an AC identifier other than name, version, os, arch",
                    2,
                )
            labels[key] = value
        environment = []
        for item in self.env:
            key, value = split_pair(item, "--env")
            if not ENV_NAME.match(key):
                raise ReleaseError(f"--env {item!r}: {key!r} is not a valid variable name", 2)
            environment.append({"name": key, "value": value})
        app: dict[str, object] = {}
        if self.exec:
            app["exec"] = self.exec
        app.update(user=self.user, group=self.group, workingDirectory=self.workdir)
        if environment:
            app["environment"] = environment
        if self.ports:
            app["ports"] = [parse_port(p) for p in self.ports]
        if self.mounts:
            app["mountPoints"] = [parse_mount(m) for m in self.mounts]
        return {
            "acKind": "ImageManifest",
            "acVersion": AC_VERSION,
            "name": self.name,
            "labels": [{"name": k, "value": v} for k, v in labels.items()],
            "app": app,
        }

    def file_name(self) -> str:
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}-{self.os}-{self.arch}.aci"


def write_aci_tar(root: Path, manifest: bytes, out: Path, compress: str) -> None:
    """`manifest` then `rootfs` and `rootfs/...`: the transform renames `.` to `rootfs` in member
    names and hardlink targets, but not in symlink targets (flag S), which stay as in the root."""
    with tempfile.TemporaryDirectory(prefix="aci-", dir=out.parent) as meta:
        manifest_file = Path(meta) / "manifest"
        manifest_file.write_bytes(manifest)
        manifest_file.chmod(0o644)
        st = root.stat()
        os.utime(manifest_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # same bytes for the same root
        # Both -C absolute: tar resolves a relative -C against the previous one.
        cmd = [*TAR_CREATE, r"--transform=s,^\.,rootfs,S", "-C", str(Path(meta).resolve()), "manifest"]
        cmd += ["-C", str(root.resolve()), "."]
        pipeline([cmd, COMPRESSORS[compress][0]], out)


def make_aci(root: Path, spec: AciSpec, out: Path, compress: str, signer: Signer | None) -> list[Path]:
    check_root(root)
    manifest = (json.dumps(spec.manifest(), indent=2) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    final = out / spec.file_name()
    tmp = temp_beside(final)
    try:
        if root.is_dir():
            write_aci_tar(root, manifest, tmp, compress)
        else:
            # GNU tar cannot rename members while copying them from another archive: unpack it
            # (faithfully, which needs root for the owners) and pack it again.
            sniff_compression(root)
            if os.geteuid() != 0:
                raise ReleaseError(
                    f"making an ACI from the tarball {root} unpacks it, which needs root to keep "
                    "file owners: run as root, or pass a root directory",
                    2,
                )
            with tempfile.TemporaryDirectory(prefix="aci-root-", dir=out) as unpacked:
                run([*TAR_EXTRACT, "--file", str(root), "-C", unpacked], f"unpacking {root}")
                write_aci_tar(Path(unpacked), manifest, tmp, compress)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    written = [publish(tmp, final)]
    if signer is not None:
        written.append(signer.sign(final, final.with_name(final.name + ".asc"), armor=True))
    return written


# --- discovery -------------------------------------------------------------------------------


def discovery_page(prefix: str, templates: Sequence[str], pubkeys: Sequence[str]) -> str:
    """The page `https://{name}?ac-discovery=1` returns (appc spec/discovery.md)."""
    if not AC_IDENTIFIER.match(prefix):
        raise ReleaseError(
            f"--prefix {prefix!r} is not an AC identifier (lowercase, e.g. example.com/app)", 2
        )
    for template in templates:
        if "{ext}" not in template:
            raise ReleaseError(
                f"--template {template!r} lacks {{ext}}: the image (aci) and its signature (aci.asc) "
                "must get different URLs",
                2,
            )
        if " " in template:
            raise ReleaseError(f"--template {template!r} must not contain spaces", 2)

    def meta(name: str, value: str) -> str:
        return f'<meta name="{name}" content="{html.escape(prefix + " " + value)}">'

    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(prefix)}</title>",
        *(meta("ac-discovery", t) for t in templates),
        *(meta("ac-discovery-pubkeys", k) for k in pubkeys),
        "</head>",
        f"<body><p>App Container Images under {html.escape(prefix)}.</p></body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"


# --- mkosi -----------------------------------------------------------------------------------


def mkosi_output(config: Path) -> Path:
    """The newest tarball mkosi left in CONFIG/mkosi.output (Format=tar)."""
    outdir = config / "mkosi.output"
    found = (
        [p for p in outdir.glob("*.tar*") if p.is_file() and not p.is_symlink()] if outdir.is_dir() else []
    )
    if not found:
        raise ReleaseError(f"no tarball in {outdir}: does {config}/mkosi.conf say Format=tar?")
    return max(found, key=lambda p: p.stat().st_mtime)


# --- command line ----------------------------------------------------------------------------


def add_signing(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--sign", metavar="KEYID", help=f"sign {what} with this gpg secret key (fingerprint, id or uid)"
    )
    p.add_argument(
        "--gpg-homedir",
        metavar="DIR",
        help="gpg home directory holding the key (default: gpg's own, ~/.gnupg)",
    )


def add_aci_app(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("manifest app section (what `nspawnctl run IMAGE` runs by default)")
    ex = g.add_mutually_exclusive_group()
    ex.add_argument(
        "--exec",
        action="append",
        default=[],
        metavar="ARG",
        help="command and arguments, one --exec each (--exec /bin/sh --exec -c --exec 'echo hi')",
    )
    ex.add_argument(
        "--exec-json", metavar="JSON", help='the command as a JSON list, e.g. \'["/bin/sh","-c","echo hi"]\''
    )
    g.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeat)")
    g.add_argument(
        "--user", default="0", help="user: a name from the image's /etc/passwd or a uid (default 0)"
    )
    g.add_argument("--group", default="0", help="group: a name or a gid (default 0)")
    g.add_argument("--workdir", default="/", help="working directory, absolute (default /)")
    g.add_argument(
        "--port", action="append", default=[], metavar="NAME:PROTO:PORT", help="e.g. http:tcp:8080"
    )
    g.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="NAME:/PATH[:ro]",
        help="a mount point the app expects",
    )


def exec_list(args: argparse.Namespace) -> list[str]:
    if args.exec_json is None:
        return list(args.exec)
    try:
        value = json.loads(args.exec_json)
    except json.JSONDecodeError as e:
        raise ReleaseError(f"--exec-json is not JSON: {e}", 2) from e
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ReleaseError("--exec-json must be a non-empty JSON list of strings", 2)
    return value


def aci_spec(args: argparse.Namespace, name: str) -> AciSpec:
    return AciSpec(
        name=name,
        version=args.version,
        os=args.os,
        arch=args.arch or host_arch(),
        exec=exec_list(args),
        env=args.env,
        user=args.user,
        group=args.group,
        workdir=args.workdir,
        ports=args.port,
        mounts=args.mount,
        labels=args.label,
    )


def cmd_tarball(args: argparse.Namespace) -> list[Path]:
    signer = signer_from(args)
    nspawn = Path(args.nspawn) if args.nspawn else None
    return make_tarball(Path(args.root), args.name, Path(args.out), args.compress, nspawn, signer)


def cmd_aci(args: argparse.Namespace) -> list[Path]:
    signer = signer_from(args)
    return make_aci(Path(args.root), aci_spec(args, args.name), Path(args.out), args.compress, signer)


def cmd_discovery(args: argparse.Namespace) -> list[Path]:
    page = discovery_page(args.prefix, args.template, args.pubkeys)
    if args.output is None:
        sys.stdout.write(page)
        return []
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out)
    tmp.write_text(page)
    return [publish(tmp, out)]


def cmd_build(args: argparse.Namespace) -> list[Path]:
    signer = signer_from(args)
    config = Path(args.config)
    if not (config / "mkosi.conf").is_file():
        raise ReleaseError(f"{config}/mkosi.conf does not exist: give the mkosi config with --config", 2)
    if args.aci_name and not args.version:
        raise ReleaseError("--aci-name needs --version", 2)
    if not args.skip_mkosi:
        need_tool("mkosi")
        subprocess.run(["mkosi", "-C", str(config), "--force", "build"], check=True)
    image = mkosi_output(config)
    out = Path(args.out) if args.out else config / "mkosi.output" / "release"
    written = make_tarball(image, args.name, out, args.compress, None, signer)
    if args.aci_name:
        written += make_aci(image, aci_spec(args, args.aci_name), out, "gz", signer)
    return written


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Make signed releases that nspawnctl pull (and machinectl pull-tar) take: importd-style "
        "tarballs with SHA256SUMS and SHA256SUMS.gpg, and App Container Images with .aci.asc signatures. "
        "See mkosi/README.md.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "tarball",
        help="a tarball release: NAME.tar.xz [+ NAME.nspawn] + SHA256SUMS [+ SHA256SUMS.gpg]",
        description="Write OUT/NAME.tar.xz (or .tar.gz, .tar.zst, .tar) from ROOT, copy --nspawn to "
        "OUT/NAME.nspawn, (re)write OUT/SHA256SUMS ('<sha256> *<file>' lines, those of other files kept) and "
        "with --sign write OUT/SHA256SUMS.gpg, a detached binary signature, as systemd-importd expects. "
        "Without --sign a now-stale SHA256SUMS.gpg is removed.",
    )
    p.add_argument(
        "root", metavar="ROOT|TARBALL", help="a root directory, or a tarball (e.g. mkosi's Format=tar)"
    )
    p.add_argument("--name", required=True, help="release file name without suffix, e.g. debian")
    p.add_argument("--out", required=True, metavar="DIR", help="release directory (created if missing)")
    p.add_argument("--compress", choices=["xz", "gz", "zst", "none"], default="xz", help="default: xz")
    p.add_argument("--nspawn", metavar="FILE", help="a .nspawn settings file to publish beside the tarball")
    add_signing(p, "SHA256SUMS")
    p.set_defaults(func=cmd_tarball)

    p = sub.add_parser(
        "aci",
        help="an App Container Image: NAME-VERSION-OS-ARCH.aci [+ .aci.asc]",
        description="Write OUT/<last name component>-VERSION-OS-ARCH.aci: a tar with a JSON 'manifest' and "
        "'rootfs/' (appc spec 0.8.11), gzip-compressed by default; with --sign also the ASCII-armored "
        "detached signature .aci.asc over the file as written. A tarball ROOT is unpacked first "
        "(which needs root).",
    )
    p.add_argument("root", metavar="ROOT|TARBALL", help="a root directory, or a tarball")
    p.add_argument("--name", required=True, help="image name (AC identifier), e.g. example.com/app")
    p.add_argument("--version", required=True, help="the 'version' label, e.g. 1.0")
    p.add_argument("--os", default="linux", help="the 'os' label (default linux)")
    p.add_argument("--arch", help=f"the 'arch' label in appc's names (default: this host's, {host_arch()})")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="another label (repeat)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--compress", choices=["gz", "xz", "none"], default="gz", help="default: gz")
    add_aci_app(p)
    add_signing(p, "the .aci (ASCII-armored .aci.asc)")
    p.set_defaults(func=cmd_aci)

    p = sub.add_parser(
        "discovery",
        help="the HTML page served at https://NAME?ac-discovery=1",
        description="Print (or write with --output) an HTML page with ac-discovery and ac-discovery-pubkeys "
        "meta tags. Templates may use {name}, {version}, {os}, {arch} and must use {ext} (aci or aci.asc).",
    )
    p.add_argument("--prefix", required=True, help="the names this page covers, e.g. example.com/app")
    p.add_argument(
        "--template",
        required=True,
        action="append",
        metavar="URL",
        help="e.g. 'https://host/path/{name}-{version}-{os}-{arch}.{ext}' (repeat for mirrors)",
    )
    p.add_argument(
        "--pubkeys", action="append", default=[], metavar="URL", help="URL of the signing key (repeat)"
    )
    p.add_argument("--output", metavar="FILE", help="write the page here instead of to stdout")
    p.set_defaults(func=cmd_discovery)

    p = sub.add_parser(
        "build",
        help="build the mkosi image, then make a tarball release (and an ACI) of it",
        description="Run 'mkosi -C CONFIG --force build' (needs mkosi >= 25 and root; see mkosi/README.md) "
        "and turn its Format=tar output into a tarball release, and with --aci-name also an ACI, in OUT.",
    )
    p.add_argument(
        "--config", default=str(Path(__file__).resolve().parent / "debian"), help="mkosi config dir"
    )
    p.add_argument("--out", metavar="DIR", help="release directory (default: CONFIG/mkosi.output/release)")
    p.add_argument("--name", default="debian", help="tarball release name (default debian)")
    p.add_argument(
        "--compress", choices=["xz", "gz", "zst", "none"], default="xz", help="tarball compression"
    )
    p.add_argument("--skip-mkosi", action="store_true", help="use the existing mkosi output, do not build")
    p.add_argument(
        "--aci-name", metavar="NAME", help="also write an ACI with this name, e.g. example.com/debian"
    )
    p.add_argument("--version", help="the ACI's version label")
    p.add_argument("--os", default="linux", help=argparse.SUPPRESS)
    p.add_argument("--arch", help="the ACI's arch label (default: this host's)")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="another ACI label (repeat)")
    add_aci_app(p)
    add_signing(p, "SHA256SUMS and the ACI")
    p.set_defaults(func=cmd_build)
    return top


def join_exec_args(argv: Sequence[str]) -> list[str]:
    """`--exec -c` -> `--exec=-c`: argparse takes a value starting with '-' for an option, and a
    command line is full of those (sh -c), so every --exec takes the next word, whatever it is."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            out += [arg, *it]
            break
        out.append(arg if arg != "--exec" else "--exec=" + next(it, ""))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(join_exec_args(sys.argv[1:] if argv is None else argv))
    try:
        written = args.func(args)
    except ReleaseError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.code
    except subprocess.CalledProcessError as e:
        print(f"{PROG}: error: {e.cmd[0]} exited {e.returncode}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
