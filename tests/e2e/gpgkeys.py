"""Signing keys for the tests, made and used with the gpg CLI.

Deliberately not python-gnupg: the tests must not share code with what they test (nspawnctl's
verification goes through python-gnupg). Each key lives in its own home directory; call
kill_agent(home) when done, gpg starts a gpg-agent per home that would otherwise stay running.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

# gpg-agent's socket lives in the home directory (unless /run/user/UID exists), and a Unix socket
# path must fit in 108 bytes: keep homes short, e.g. /tmp/gk-XXXXXXXX.
MAX_HOME = 80


def new_home(prefix: str = "gk-") -> Path:
    """A fresh, short, mode-0700 gpg home directory under /tmp."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _gpg(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], input=input, capture_output=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc


def _prepare(home: Path) -> None:
    if len(str(home)) > MAX_HOME:
        raise ValueError(f"gpg home {home} is too long for gpg-agent's socket; use gpgkeys.new_home()")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)  # gpg warns about, and agents may refuse, group- or world-readable homes


def make_key(home: Path, uid: str) -> str:
    """A new ed25519 sign-only key without passphrase; returns its 40-hex uppercase fingerprint."""
    _prepare(home)
    proc = _gpg(
        home, "--passphrase", "", "--status-fd", "1", "--quick-gen-key", uid, "ed25519", "sign", "never"
    )
    for line in proc.stdout.decode().splitlines():
        fields = line.split()
        if fields[:2] == ["[GNUPG:]", "KEY_CREATED"] and len(fields) >= 4:
            return fields[3].upper()
    raise RuntimeError(f"gpg made no key for {uid!r}: {proc.stderr.decode(errors='replace').strip()}")


def export_public(home: Path, fpr: str, armor: bool = True) -> bytes:
    """The public key, ASCII-armored (default) or binary."""
    data = _gpg(home, *(["--armor"] if armor else []), "--export", fpr).stdout
    if not data:
        raise RuntimeError(f"no public key {fpr} in {home}")
    return data


def sign_detached(home: Path, fpr: str, file: Path, armor: bool, out: Path | None = None) -> Path:
    """A detached signature of `file` by key `fpr`: FILE.asc (armored) or FILE.gpg (binary) unless
    `out` is given; an existing file is overwritten."""
    target = out or file.with_name(file.name + (".asc" if armor else ".gpg"))
    # "FPR!" makes gpg use exactly this key rather than any key matching it.
    _gpg(
        home,
        "--yes",
        "--local-user",
        f"{fpr}!",
        "--detach-sign",
        *(["--armor"] if armor else []),
        "--output",
        str(target),
        str(file),
    )
    return target


def kill_agent(home: Path) -> None:
    """Stop the gpg-agent (and any other daemon) gpg started for this home."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
