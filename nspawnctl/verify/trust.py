"""The trust store: which OpenPGP keys may sign images, and for which names.

rkt's layout, so its keys can be copied in: ``root.d/<FPR>`` trusts a key for every name,
``prefix.d/<prefix>/<FPR>`` for names under that prefix; one ASCII-armored public key per file,
named by its uppercase fingerprint. The files are the whole truth: gpg only ever sees a throw-away
keyring holding the keys trusted for the name at hand, and a signature counts only when gpg finds it
good *and* the signer's primary fingerprint is one of those keys (python-gnupg's ``valid`` alone
would accept any key that happened to be in the keyring).
"""

from __future__ import annotations

import builtins
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidArgument,
    NotFound,
    SignatureMissing,
    UntrustedSignature,
    VerificationFailed,
)
from .gpg import Keyring, PublicKey, SignatureCheck

FINGERPRINT = re.compile(r"[0-9A-F]{40}(?:[0-9A-F]{24})?")
"""v4 keys have 40 hex digits; v5/v6 keys 64."""
_COMPONENT = re.compile(r"[A-Za-z0-9._~:-]+")


def validate_prefix(prefix: str) -> str:
    """A prefix is a name or the start of one, cut at a '/': ``example.com`` or ``example.com/app``."""
    bad = None
    if not prefix:
        bad = "it is empty"
    elif prefix.startswith("/") or prefix.endswith("/"):
        bad = "it must not start or end with '/'"
    else:
        for part in prefix.split("/"):
            if part in ("", ".", ".."):
                bad = "empty, '.' and '..' components are not allowed"
                break
            if not _COMPONENT.fullmatch(part):
                bad = f"{part!r} has characters other than letters, digits and . _ ~ : -"
                break
    if bad:
        raise InvalidArgument(
            f"invalid prefix {prefix!r}: {bad}",
            hint="a prefix is an image name or its start, like example.com or example.com/app",
        )
    return prefix


def normalize_fingerprint(text: str) -> str:
    """Accept gpg's grouped display ("DE50 FC20 ..."), any case; never a short key ID."""
    fpr = "".join(text.split()).upper()
    if fpr.startswith("0X"):
        fpr = fpr[2:]
    if not FINGERPRINT.fullmatch(fpr):
        raise InvalidArgument(
            f"not a full key fingerprint: {text!r}",
            hint="give all 40 hex digits, as 'nspawnctl trust list' shows them",
        )
    return fpr


def name_matches(name: str, prefix: str | None) -> bool:
    """Per path component: prefix ``example.com/ap`` does not cover ``example.com/app``."""
    return prefix is None or name == prefix or name.startswith(prefix + "/")


@dataclass(frozen=True)
class KeyInfo:
    """A key read from a file, not (yet) trusted."""

    fingerprint: str
    uids: list[str]
    created: str | None
    expires: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "uids": list(self.uids),
            "created": self.created,
            "expires": self.expires,
        }


@dataclass(frozen=True)
class TrustedKey:
    fingerprint: str
    prefix: str | None
    """None: a root key, trusted for every name."""
    uids: list[str]
    path: Path

    @property
    def scope(self) -> str:
        return "every name (root)" if self.prefix is None else f"prefix {self.prefix}"

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "prefix": self.prefix,
            "root": self.prefix is None,
            "uids": list(self.uids),
            "path": str(self.path),
        }


@dataclass(frozen=True)
class _Entry:
    fingerprint: str
    prefix: str | None
    path: Path


def _unreadable(e: OSError) -> None:
    """os.walk skips what it cannot read; a key silently missing would be a wrong 'untrusted'."""
    if not isinstance(e, FileNotFoundError):
        raise e


def _makedirs(path: Path) -> None:
    """Create missing directories 0755 whatever the umask (gpg and rkt expect readable keys)."""
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, 0o755)


def _write_file(dest: Path, data: bytes) -> None:
    """Atomically: a half-written key file would be a key that silently verifies nothing."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class TrustStore:
    """Keys trusted to sign images, per name prefix (``Paths.trust``, /etc/nspawnctl/trust)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.root_dir = self.directory / "root.d"
        self.prefix_dir = self.directory / "prefix.d"

    # -- reading the files ---------------------------------------------------------------------

    def _scan(self) -> list[_Entry]:
        """Every non-empty key file; other files (temporaries, rkt's empty masks) are ignored."""
        entries = []
        for d, prefix in [(self.root_dir, None)] + [
            (Path(dirpath), os.path.relpath(dirpath, self.prefix_dir))
            for dirpath, _, _ in os.walk(self.prefix_dir, onerror=_unreadable)
            if dirpath != str(self.prefix_dir)
        ]:
            try:
                names = sorted(os.listdir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for n in names:
                fpr = n.upper()
                path = d / n
                regular = path.is_file() and not path.is_symlink()
                if FINGERPRINT.fullmatch(fpr) and regular and path.stat().st_size > 0:
                    entries.append(_Entry(fpr, prefix, path))
        return entries

    def _load(self, ring: Keyring, entries: list[_Entry]) -> list[TrustedKey]:
        """Import the entries' keys into ``ring``, and nothing else: a file holding a key other than
        the one it is named after must not make that other key trusted."""
        if entries:
            ring.import_keys(b"\n".join(e.path.read_bytes() for e in entries))
        expected = {e.fingerprint for e in entries}
        keys = ring.keys()
        ring.delete([k.fingerprint for k in keys if k.fingerprint not in expected])
        uids = {k.fingerprint: k.uids for k in keys}
        return [
            TrustedKey(e.fingerprint, e.prefix, list(uids.get(e.fingerprint, [])), e.path) for e in entries
        ]

    def _with_uids(self, entries: list[_Entry]) -> list[TrustedKey]:
        if not entries:
            return []
        with Keyring() as ring:
            return self._load(ring, entries)

    @staticmethod
    def _sorted(keys: list[TrustedKey]) -> list[TrustedKey]:
        return sorted(keys, key=lambda k: (k.prefix is not None, k.prefix or "", k.fingerprint))

    # -- keys ----------------------------------------------------------------------------------

    @staticmethod
    def _read_keys(ring: Keyring, data: bytes) -> list[PublicKey]:
        if b"PRIVATE KEY BLOCK" in data:
            raise _secret_key_error()
        imported = ring.import_keys(data)
        if imported.secret or ring.has_secret_keys():
            raise _secret_key_error()
        keys = ring.keys()
        if not keys:
            raise InvalidArgument(
                "no OpenPGP public key found in the key data",
                hint="give a public key file, armored or binary (gpg --armor --export FINGERPRINT)",
            )
        order = {f: i for i, f in enumerate(imported.fingerprints)}
        return sorted(keys, key=lambda k: order.get(k.fingerprint, len(order)))

    def inspect(self, data: bytes) -> list[KeyInfo]:
        """The keys in a key file, to show before trusting them."""
        with Keyring() as ring:
            keys = self._read_keys(ring, data)
        return [KeyInfo(k.fingerprint, list(k.uids), k.created, k.expires) for k in keys]

    def add(self, data: bytes, prefix: str | None) -> list[tuple[TrustedKey, bool]]:
        """Trust every key in ``data`` for ``prefix`` (None: every name). A key already trusted for
        that scope is left as it is (False)."""
        if prefix is not None:
            validate_prefix(prefix)
        directory = self.root_dir if prefix is None else self.prefix_dir.joinpath(*prefix.split("/"))
        out = []
        with Keyring() as ring:
            for k in self._read_keys(ring, data):
                dest = directory / k.fingerprint
                existing = [e for e in self._scan() if e.fingerprint == k.fingerprint and e.prefix == prefix]
                if existing:
                    out.append((TrustedKey(k.fingerprint, prefix, list(k.uids), existing[0].path), False))
                    continue
                armored = ring.export(k.fingerprint)
                _makedirs(directory)
                _write_file(dest, armored)
                out.append((TrustedKey(k.fingerprint, prefix, list(k.uids), dest), True))
        return out

    def list(self) -> builtins.list[TrustedKey]:
        return self._sorted(self._with_uids(self._scan()))

    def remove(self, fingerprint: str) -> builtins.list[TrustedKey]:
        """Untrust a key for every scope it is trusted for."""
        fpr = normalize_fingerprint(fingerprint)
        matching = [e for e in self._scan() if e.fingerprint == fpr]
        if not matching:
            raise NotFound(
                f"no trusted key has fingerprint {fpr}",
                hint="see the trusted keys with: nspawnctl trust list",
            )
        removed = self._sorted(self._with_uids(matching))
        for e in matching:
            e.path.unlink()
            d = e.path.parent
            while d != self.prefix_dir and d.is_relative_to(self.prefix_dir):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent
        return removed

    def keys_for(self, name: str) -> builtins.list[TrustedKey]:
        """Root keys and the keys of every prefix ``name`` falls under."""
        return self._sorted(self._with_uids([e for e in self._scan() if name_matches(name, e.prefix)]))

    # -- signatures ----------------------------------------------------------------------------

    def check_signer(self, name: str, signature: bytes) -> None:
        """Before a large download: is the signature's issuer a key trusted for ``name``?

        Checking the signature against empty data (as rkt does) answers without the data: "bad
        signature" means gpg has the key, "no public key" that no trusted key made it.
        """
        if not signature.strip():
            raise _missing(name)
        entries = [e for e in self._scan() if name_matches(name, e.prefix)]
        with Keyring() as ring:
            trusted = {k.fingerprint: k for k in self._load(ring, entries)}
            check = ring.verify(b"", signature)
        if check.problem == "no-signature":
            raise _not_a_signature(name)
        if check.problem == "no-key" or (check.fingerprint and check.fingerprint not in trusted):
            raise self._untrusted(name, signature, check, f"the signature for {name} was made by")
        if check.problem == "error":
            raise VerificationFailed(f"could not check the signature for {name}: {check.detail}")

    def verify(
        self, name: str, data: bytes | Path, signature: bytes, *, subject: str | None = None
    ) -> TrustedKey:
        """Accept a detached signature over ``data`` only if a key trusted for ``name`` made it.

        ``subject`` names the signed file in messages ("SHA256SUMS", "app-1.0.aci").
        """
        what = subject or f"the download for {name}"
        if not signature.strip():
            raise _missing(name)
        entries = [e for e in self._scan() if name_matches(name, e.prefix)]
        with Keyring() as ring:
            trusted = {k.fingerprint: k for k in self._load(ring, entries)}
            check = ring.verify(data, signature)
        if check.good and check.fingerprint in trusted:
            return trusted[check.fingerprint]
        signer = _describe(check, trusted)
        if check.problem == "no-signature":
            raise _not_a_signature(name)
        if check.problem == "bad":
            raise VerificationFailed(
                f"signature does not match {what}: the file was changed after signing",
                hint="download it again; if that fails the same way, the published file was altered",
            )
        if check.problem in ("expired-key", "revoked-key"):
            state = "has expired" if check.problem == "expired-key" else "was revoked"
            raise VerificationFailed(
                f"{what} is signed by {signer}, which {state}",
                hint="ask the publisher for a release signed with a current key, then trust that key",
            )
        if check.problem == "expired-signature":
            raise VerificationFailed(
                f"the signature over {what} by {signer} has expired",
                hint="ask the publisher for a fresh signature",
            )
        if check.good or check.problem == "no-key":
            raise self._untrusted(name, signature, check, f"{what} is signed by")
        raise VerificationFailed(f"could not verify the signature over {what}: {check.detail}")

    def _untrusted(self, name: str, signature: bytes, check: SignatureCheck, lead: str) -> UntrustedSignature:
        """Name the signer, and say so if it is trusted, but for other prefixes only."""
        elsewhere = [e for e in self._scan() if not name_matches(name, e.prefix)]
        owner: TrustedKey | None = None
        if elsewhere:
            # The signer may be a subkey gpg names by key ID only: ask a keyring of all stored keys.
            with Keyring() as ring:
                known = {k.fingerprint: k for k in self._load(ring, elsewhere)}
                probe = ring.verify(b"", signature)
            if probe.fingerprint in known:
                owner = known[probe.fingerprint]
        if owner is not None:
            prefixes = sorted({e.prefix or "" for e in elsewhere if e.fingerprint == owner.fingerprint})
            return UntrustedSignature(
                f"{lead} {_describe_key(owner.fingerprint, owner.uids)}, which is trusted "
                f"only for prefix {', '.join(prefixes)}, not for {name}",
                hint=f"to trust it for this name too: nspawnctl trust add KEYFILE --prefix {name}",
            )
        return UntrustedSignature(
            f"{lead} {_describe(check, {})}, which is not trusted for {name}",
            hint=f"check the publisher's key fingerprint, then: nspawnctl trust add KEYFILE --prefix {name}",
        )


def _describe_key(fpr: str, uids: list[str]) -> str:
    return f"key {fpr}" + (f" ({uids[0]})" if uids else "")


def _describe(check: SignatureCheck, known: dict[str, TrustedKey]) -> str:
    if check.fingerprint:
        k = known.get(check.fingerprint)
        return _describe_key(check.fingerprint, k.uids if k else [])
    if check.key_id:
        return f"key ID {check.key_id}"
    return "an unknown key"


def _missing(name: str) -> SignatureMissing:
    return SignatureMissing(
        f"the signature for {name} is empty",
        hint="the publisher must provide a detached OpenPGP signature (gpg --detach-sign)",
    )


def _not_a_signature(name: str) -> VerificationFailed:
    return VerificationFailed(
        f"the signature for {name} is not an OpenPGP signature",
        hint="expected a detached signature, armored (.asc) or binary (.gpg, .sig)",
    )


def _secret_key_error() -> InvalidArgument:
    return InvalidArgument(
        "the key data holds a secret key; nspawnctl only takes public keys",
        hint="export the public key: gpg --armor --export FINGERPRINT > key.asc",
    )
