"""GnuPG through python-gnupg, one throw-away homedir per operation.

The trust store, not a gpg keyring, is the record of what is trusted: every operation imports the
keys it needs into a fresh private homedir, asks gpg, and wipes the homedir. gpg starts an agent even
to import public keys, and that agent outlives us unless told to stop, so leaving a ``Keyring`` block
kills every gpg daemon of its homedir. python-gnupg's quirks (its ``valid`` flag, its status
strings, Latin-1 output) stay in this module; callers get plain records.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import CommandFailed

HOME_PREFIX = "nspawnctl-gpg-"
"""Temporary homedirs are ``/tmp/nspawnctl-gpg-XXXXXXXX``: short, because agent socket paths
must fit in 108 bytes (a long ``$TMPDIR`` would not)."""

# Membership in the keyring is the trust decision (as systemd-importd does): gpg's own web of
# trust would only add warnings. Never go looking for keys on the network.
GPG_OPTIONS = ("--trust-model", "always", "--no-auto-key-retrieve")

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class PublicKey:
    """A key as gpg lists it: primary fingerprint, user IDs, dates (ISO 8601, UTC)."""

    fingerprint: str
    uids: list[str]
    created: str | None
    expires: str | None
    ids: frozenset[str]
    """Key IDs (16 hex) and fingerprints of the primary key and its subkeys: gpg names a signer by
    whichever it has, and that may be a subkey."""


@dataclass(frozen=True)
class ImportSummary:
    fingerprints: list[str]
    secret: bool
    """The data held a secret key (imported into the throw-away homedir only)."""


@dataclass(frozen=True)
class SignatureCheck:
    """What gpg said about a detached signature.

    ``good`` means a cryptographically good signature by an unexpired, unrevoked key that was in
    the keyring; whether that key is trusted for a name is the caller's decision.
    """

    good: bool
    problem: str | None
    """None, "bad" (data changed), "no-key", "expired-key", "revoked-key", "expired-signature",
    "no-signature" (not OpenPGP signature data) or "error"."""
    fingerprint: str | None
    """Primary key fingerprint when gpg reported it (a signing subkey is mapped to its primary)."""
    key_id: str | None
    detail: str | None


def _iso(epoch: str | None) -> str | None:
    if not epoch or not epoch.isdigit():
        return None
    return datetime.fromtimestamp(int(epoch), UTC).isoformat()


def _unescape(text: str) -> str:
    """gpg's colon listings escape ':' and control characters as ``\\xHH``."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _base_dir() -> str:
    for d in ("/tmp", "/var/tmp", "/run"):
        if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return d
    return tempfile.gettempdir()


class Keyring:
    """A private gpg homedir that lives as long as a ``with`` block.

    On exit gpg's daemons for that homedir (agent, keyboxd, dirmngr) are killed and the directory
    is removed, whatever happened inside.
    """

    def __init__(self) -> None:
        self.home: Path | None = None
        self._gpg: Any = None

    def __enter__(self) -> Keyring:
        home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX, dir=_base_dir()))
        self.home = home
        try:
            os.chmod(home, 0o700)
            try:
                import gnupg
            except ImportError as e:
                raise CommandFailed(
                    "python-gnupg is not installed",
                    hint="install it (Debian: apt install python3-gnupg; else pip install python-gnupg)",
                ) from e
            try:
                gpg = gnupg.GPG(gnupghome=str(home), options=list(GPG_OPTIONS))
            except OSError as e:
                raise CommandFailed(
                    f"cannot run gpg: {e}", hint="install GnuPG (Debian: apt install gpg gpg-agent)"
                ) from e
            # User IDs are UTF-8; python-gnupg decodes Latin-1 by default (0.5.4 has no kwarg for it).
            gpg.encoding = "utf-8"
            self._gpg = gpg
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        home = self.home
        if home is None:
            return
        self.home, self._gpg = None, None
        for args in (["--kill", "all"], ["--remove-socketdir"]):
            try:
                subprocess.run(
                    ["gpgconf", "--homedir", str(home), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(home, ignore_errors=True)

    @property
    def gpg(self) -> Any:
        if self._gpg is None:
            raise RuntimeError("Keyring used outside its with block")
        return self._gpg

    def import_keys(self, data: bytes) -> ImportSummary:
        """Import every key in ``data`` (armored or binary)."""
        result = self.gpg.import_keys(data)
        fprs = [f.upper() for f in (result.fingerprints or [])]
        secret = int(getattr(result, "sec_read", 0) or 0) > 0
        return ImportSummary(list(dict.fromkeys(fprs)), secret)

    def has_secret_keys(self) -> bool:
        return bool(self.gpg.list_keys(secret=True))

    def keys(self) -> list[PublicKey]:
        out = []
        for k in self.gpg.list_keys():
            ids = {str(k.get("keyid") or ""), str(k["fingerprint"])}
            for sub in k.get("subkeys", []):
                ids.update(str(x or "") for x in sub[:1] + sub[2:3])  # [keyid, caps, fingerprint, ...]
            out.append(
                PublicKey(
                    fingerprint=str(k["fingerprint"]).upper(),
                    uids=[_unescape(u) for u in k.get("uids", []) if u],
                    created=_iso(k.get("date")),
                    expires=_iso(k.get("expires")),
                    ids=frozenset(i.upper() for i in ids if i),
                )
            )
        return out

    def export(self, fingerprint: str) -> bytes:
        """The ASCII-armored public key (never the secret part)."""
        armored = self.gpg.export_keys([fingerprint], secret=False, armor=True)
        text = armored if isinstance(armored, str) else bytes(armored).decode("ascii")
        if "BEGIN PGP PUBLIC KEY BLOCK" not in text:
            raise CommandFailed(f"gpg could not export key {fingerprint}")
        return text.encode("ascii")

    def delete(self, fingerprints: list[str]) -> None:
        if fingerprints:
            self.gpg.delete_keys(fingerprints)

    def verify(self, data: bytes | Path, signature: bytes) -> SignatureCheck:
        """Check a detached signature (armored or binary) over ``data`` (in memory or a file)."""
        assert self.home is not None
        sig_path = self.home / "signature"
        sig_path.write_bytes(signature)
        if isinstance(data, Path):
            with open(sig_path, "rb") as sig:
                v = self.gpg.verify_file(sig, data_filename=str(data))
        else:
            v = self.gpg.verify_data(str(sig_path), data)
        return self._check(v)

    def _check(self, v: Any) -> SignatureCheck:
        key_id = str(v.key_id).upper() if v.key_id else None
        fpr = str(v.pubkey_fingerprint).upper() if v.pubkey_fingerprint else None
        if fpr is None:
            # No VALIDSIG: gpg named the signer by the issuer fingerprint or key ID, maybe of a subkey.
            issuer = str(v.fingerprint).upper() if v.fingerprint else None
            wanted = issuer or key_id
            primary = next((k.fingerprint for k in self.keys() if wanted in k.ids), None) if wanted else None
            fpr = primary or issuer
        status = str(v.status or "")
        key_status = str(v.key_status or "")
        if v.valid and not key_status:
            return SignatureCheck(True, None, fpr, key_id, status)
        if "expired" in key_status:
            problem = "expired-key"
        elif "revoked" in key_status:
            problem = "revoked-key"
        elif status == "signature bad":
            problem = "bad"
        elif status == "no public key":
            problem = "no-key"
        elif status == "signature expired":
            problem = "expired-signature"
        elif status.startswith("signature expected") or status == "unexpected data":
            problem = "no-signature"
        else:
            problem = "error"
        detail = key_status or status
        if not detail:
            lines = str(v.stderr or "").strip().splitlines()
            detail = lines[-1] if lines else "gpg failed"
        return SignatureCheck(False, problem, fpr, key_id, detail)
