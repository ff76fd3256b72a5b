"""The trust store with real gpg: who may sign what, and every way a signature can fail.

Keys are made once per session with python-gnupg (ed25519, no passphrase: fast) in a short
throw-away homedir whose agent is killed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nspawnctl.errors import (
    InvalidArgument,
    NotFound,
    SignatureMissing,
    UntrustedSignature,
    VerificationFailed,
)
from nspawnctl.verify import gpg as gpg_module
from nspawnctl.verify.trust import TrustStore, name_matches, normalize_fingerprint, validate_prefix

pytest.importorskip("gnupg")
if shutil.which("gpg") is None:  # pragma: no cover
    pytest.skip("gpg is not installed", allow_module_level=True)

DATA = b"6f1ed002ab5595859014ebf0951522d9a1a0e2e3d0d7c2b4f2a0c8a2f2b2a2c2  app.tar.xz\n"


@dataclass
class Key:
    fingerprint: str
    public: bytes
    uid: str


@dataclass
class Keys:
    """Signing keys and signatures over ``DATA``, made in one private gpg homedir."""

    home: str
    gpg: Any
    alice: Key
    bob: Key
    sub: Key
    """Certify-only primary key with a signing subkey."""
    expired: Key
    revoked: Key
    sigs: dict[str, bytes]

    def sign(self, key: Key, data: bytes, binary: bool = False) -> bytes:
        s = self.gpg.sign(data, keyid=key.fingerprint, detach=True, binary=binary)
        assert s.status == "signature created", s.stderr
        return bytes(s.data)

    def secret(self, key: Key) -> bytes:
        return str(self.gpg.export_keys([key.fingerprint], secret=True, expect_passphrase=False)).encode()


def _gen(gpg: Any, name: str, **kw: Any) -> Key:
    params = {"key_type": "EDDSA", "key_curve": "ed25519", "key_usage": "sign", "no_protection": True}
    params.update(kw)
    email = f"{name.lower()}@example.com"
    k = gpg.gen_key(gpg.gen_key_input(name_real=name, name_email=email, **params))
    assert k.fingerprint, k.stderr
    return Key(str(k.fingerprint), str(gpg.export_keys([k.fingerprint])).encode(), f"{name} <{email}>")


def make_keys() -> Keys:
    import gnupg

    home = tempfile.mkdtemp(prefix="ntk-", dir="/tmp")
    gpg = gnupg.GPG(gnupghome=home)
    alice = _gen(gpg, "Alice")
    bob = _gen(gpg, "Bob")
    sub = _gen(gpg, "Sub", key_usage="cert", subkey_type="EDDSA", subkey_curve="ed25519", subkey_usage="sign")
    # A key that expired in 2020, and a signature it made while it was valid.
    past = gnupg.GPG(gnupghome=home, options=["--faked-system-time", "20200101T000000!"])
    expired = _gen(past, "Expired", expire_date="1d")
    sig = past.sign(DATA, keyid=expired.fingerprint, detach=True)
    assert sig.status == "signature created", sig.stderr
    sigs = {"expired": bytes(sig.data)}
    # A key that signed, then was revoked.
    revoked = _gen(gpg, "Revoked")
    keys = Keys(home, gpg, alice, bob, sub, expired, revoked, sigs)
    sigs["revoked"] = keys.sign(revoked, DATA)
    cert = Path(home, "openpgp-revocs.d", f"{revoked.fingerprint}.rev").read_text()
    gpg.import_keys(cert.replace(":-----BEGIN", "-----BEGIN"))
    revoked.public = str(gpg.export_keys([revoked.fingerprint])).encode()
    sigs["alice"] = keys.sign(alice, DATA)
    sigs["alice-binary"] = keys.sign(alice, DATA, binary=True)
    sigs["bob"] = keys.sign(bob, DATA)
    sigs["sub"] = keys.sign(sub, DATA)
    return keys


def close_keys(keys: Keys) -> None:
    subprocess.run(["gpgconf", "--homedir", keys.home, "--kill", "all"], check=False)
    shutil.rmtree(keys.home, ignore_errors=True)


@pytest.fixture(scope="session")
def keys() -> Iterator[Keys]:
    k = make_keys()
    yield k
    close_keys(k)


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "trust")


def files(store: TrustStore) -> list[str]:
    return sorted(str(p.relative_to(store.directory)) for p in store.directory.rglob("*") if p.is_file())


# --- names and prefixes --------------------------------------------------------------------------


def test_prefix_matching_is_per_component() -> None:
    assert name_matches("example.com/app", "example.com/app")
    assert name_matches("example.com/app/x", "example.com/app")
    assert name_matches("example.com/app", "example.com")
    assert not name_matches("example.com/app", "example.com/ap")
    assert not name_matches("example.com/application", "example.com/app")
    assert not name_matches("example.comm/app", "example.com")
    assert name_matches("anything", None)


@pytest.mark.parametrize(
    "prefix",
    ["", "/example.com", "example.com/", "example.com//app", "example.com/../etc", "./x", "a b", "x/*", "é"],
)
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        validate_prefix(prefix)
    assert "invalid prefix" in e.value.message and e.value.hint


def test_valid_prefixes() -> None:
    for p in ["example.com", "example.com/app", "localhost:8080/releases/v1.0~rc_1", "a-b.c"]:
        assert validate_prefix(p) == p


def test_fingerprint_normalisation() -> None:
    fpr = "DE50FC2096590ADCC2304A418C3603B0CCC86DB3"
    assert normalize_fingerprint("de50 fc20 9659 0adc c230  4a41 8c36 03b0 ccc8 6db3") == fpr
    assert normalize_fingerprint("0x" + fpr.lower()) == fpr
    for bad in ["8C3603B0CCC86DB3", fpr[:-1], fpr + "0", fpr[:-1] + "G", ""]:
        with pytest.raises(InvalidArgument, match="not a full key fingerprint"):
            normalize_fingerprint(bad)


# --- inspect, add, list, remove ------------------------------------------------------------------


def test_inspect_reads_keys_without_storing(keys: Keys, store: TrustStore) -> None:
    info = store.inspect(keys.alice.public + keys.bob.public)
    assert [i.fingerprint for i in info] == [keys.alice.fingerprint, keys.bob.fingerprint]
    assert info[0].uids == [keys.alice.uid]
    assert info[0].created and info[0].created.startswith("20") and info[0].expires is None
    assert not store.directory.exists()


def test_inspect_binary_key_and_expiry(keys: Keys, store: TrustStore) -> None:
    binary = bytes(keys.gpg.export_keys([keys.expired.fingerprint], armor=False))
    (info,) = store.inspect(binary)
    assert info.fingerprint == keys.expired.fingerprint
    assert info.expires is not None and info.expires.startswith("2020-01-02")


@pytest.mark.parametrize("data", [b"", b"not a key\n", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n"])
def test_inspect_refuses_non_keys(store: TrustStore, data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="no OpenPGP public key") as e:
        store.inspect(data)
    assert "gpg --armor --export" in (e.value.hint or "")


def test_secret_keys_are_refused(keys: Keys, store: TrustStore) -> None:
    secret = keys.secret(keys.alice)
    assert b"PRIVATE KEY BLOCK" in secret
    for call in (lambda: store.inspect(secret), lambda: store.add(secret, None)):
        with pytest.raises(InvalidArgument, match="secret key"):
            call()
    assert not store.directory.exists()


def test_add_writes_rkt_layout(keys: Keys, store: TrustStore) -> None:
    old = os.umask(0o077)
    try:
        ((root_key, added),) = store.add(keys.alice.public, None)
        ((prefix_key, added2),) = store.add(keys.bob.public, "example.com/app")
    finally:
        os.umask(old)
    assert added and added2
    assert files(store) == [
        f"prefix.d/example.com/app/{keys.bob.fingerprint}",
        f"root.d/{keys.alice.fingerprint}",
    ]
    assert root_key.path == store.directory / "root.d" / keys.alice.fingerprint
    assert root_key.prefix is None and root_key.uids == [keys.alice.uid]
    assert prefix_key.prefix == "example.com/app"
    for d in [store.directory / "root.d", store.directory / "prefix.d" / "example.com"]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o755
    text = root_key.path.read_text()
    assert stat.S_IMODE(root_key.path.stat().st_mode) == 0o644
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----") and "PRIVATE" not in text
    # the stored file is the key itself
    assert [i.fingerprint for i in store.inspect(root_key.path.read_bytes())] == [keys.alice.fingerprint]


def test_add_again_is_a_no_op(keys: Keys, store: TrustStore) -> None:
    ((k, added),) = store.add(keys.alice.public, "example.com")
    before = k.path.read_bytes(), k.path.stat().st_mtime_ns
    ((k2, again),) = store.add(keys.alice.public, "example.com")
    assert added and not again
    assert k2.path == k.path and (k.path.read_bytes(), k.path.stat().st_mtime_ns) == before
    # the same key for another scope is a new trust
    ((_, other),) = store.add(keys.alice.public, None)
    assert other
    assert [(t.fingerprint, t.prefix) for t in store.list()] == [
        (keys.alice.fingerprint, None),
        (keys.alice.fingerprint, "example.com"),
    ]


def test_add_several_keys_from_one_file(keys: Keys, store: TrustStore) -> None:
    result = store.add(keys.alice.public + keys.bob.public, "example.com")
    assert [(k.fingerprint, new) for k, new in result] == [
        (keys.alice.fingerprint, True),
        (keys.bob.fingerprint, True),
    ]
    # each key in its own file
    for k, _ in result:
        assert [i.fingerprint for i in store.inspect(k.path.read_bytes())] == [k.fingerprint]


def test_add_rejects_bad_prefix(keys: Keys, store: TrustStore) -> None:
    with pytest.raises(InvalidArgument):
        store.add(keys.alice.public, "../escape")
    assert not store.directory.exists()


def test_list_is_sorted_with_uids(keys: Keys, store: TrustStore) -> None:
    assert store.list() == []
    store.add(keys.bob.public, "z.example")
    store.add(keys.alice.public, "a.example/app")
    store.add(keys.sub.public, None)
    listed = store.list()
    assert [(k.prefix, k.fingerprint) for k in listed] == [
        (None, keys.sub.fingerprint),
        ("a.example/app", keys.alice.fingerprint),
        ("z.example", keys.bob.fingerprint),
    ]
    assert [k.uids for k in listed] == [[keys.sub.uid], [keys.alice.uid], [keys.bob.uid]]
    assert all(len(k.fingerprint) == 40 and k.fingerprint == k.fingerprint.upper() for k in listed)
    assert listed[1].to_json() == {
        "fingerprint": keys.alice.fingerprint,
        "prefix": "a.example/app",
        "root": False,
        "uids": [keys.alice.uid],
        "path": str(store.directory / "prefix.d" / "a.example" / "app" / keys.alice.fingerprint),
    }


def test_list_ignores_stray_files(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    (store.directory / "root.d" / ".tmp123.tmp").write_text("x")
    (store.directory / "root.d" / "README").write_text("x")
    (store.directory / "root.d" / keys.bob.fingerprint).write_bytes(b"")  # rkt's empty "mask" file
    assert [k.fingerprint for k in store.list()] == [keys.alice.fingerprint]


def test_rkt_lowercase_file_names(keys: Keys, store: TrustStore) -> None:
    """rkt names key files in lowercase: such a copied-in key is found, not added twice, removable."""
    d = store.directory / "prefix.d" / "example.com"
    d.mkdir(parents=True)
    (d / keys.alice.fingerprint.lower()).write_bytes(keys.alice.public)
    assert [(k.fingerprint, k.prefix) for k in store.list()] == [(keys.alice.fingerprint, "example.com")]
    assert store.verify("example.com/app", DATA, keys.sigs["alice"]).fingerprint == keys.alice.fingerprint
    ((_, added),) = store.add(keys.alice.public, "example.com")
    assert not added
    store.remove(keys.alice.fingerprint)
    assert not d.exists()


def test_binary_secret_key_is_refused(keys: Keys, store: TrustStore) -> None:
    binary = bytes(
        keys.gpg.export_keys([keys.bob.fingerprint], secret=True, armor=False, expect_passphrase=False)
    )
    with pytest.raises(InvalidArgument, match="secret key"):
        store.add(binary, None)
    assert not store.directory.exists()


def test_remove_from_every_scope_and_prune(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    store.add(keys.alice.public, "example.com/app/deep")
    store.add(keys.bob.public, "example.com")
    grouped = " ".join(keys.alice.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    removed = store.remove(grouped)
    assert [(k.fingerprint, k.prefix) for k in removed] == [
        (keys.alice.fingerprint, None),
        (keys.alice.fingerprint, "example.com/app/deep"),
    ]
    assert removed[0].uids == [keys.alice.uid]
    assert files(store) == [f"prefix.d/example.com/{keys.bob.fingerprint}"]
    assert not (store.directory / "prefix.d" / "example.com" / "app").exists()
    assert (store.directory / "root.d").is_dir()
    with pytest.raises(NotFound, match=f"no trusted key has fingerprint {keys.alice.fingerprint}") as e:
        store.remove(keys.alice.fingerprint)
    assert e.value.hint and "nspawnctl trust list" in e.value.hint
    store.remove(keys.bob.fingerprint)
    assert not (store.directory / "prefix.d" / "example.com").exists()
    assert (store.directory / "prefix.d").is_dir()


def test_remove_wants_a_full_fingerprint(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    with pytest.raises(InvalidArgument):
        store.remove(keys.alice.fingerprint[-16:])
    assert len(store.list()) == 1


def test_keys_for(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    store.add(keys.bob.public, "example.com/app")
    store.add(keys.sub.public, "example.com/ap")
    fprs = lambda name: [k.fingerprint for k in store.keys_for(name)]  # noqa: E731
    assert fprs("example.com/app") == [keys.alice.fingerprint, keys.bob.fingerprint]
    assert fprs("example.com/app/x") == [keys.alice.fingerprint, keys.bob.fingerprint]
    assert fprs("example.com/apple") == [keys.alice.fingerprint]
    assert fprs("example.com/ap") == [keys.alice.fingerprint, keys.sub.fingerprint]
    assert store.keys_for("example.com/app")[1].uids == [keys.bob.uid]


# --- verification --------------------------------------------------------------------------------


def test_root_key_verifies_any_name(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    for name in ["example.com/app", "localhost:8080/x/app.tar.xz"]:
        k = store.verify(name, DATA, keys.sigs["alice"])
        assert k.fingerprint == keys.alice.fingerprint and k.prefix is None and k.uids == [keys.alice.uid]


def test_prefix_key_verifies_names_under_it(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, "example.com/app")
    assert store.verify("example.com/app", DATA, keys.sigs["alice"]).prefix == "example.com/app"
    assert (
        store.verify("example.com/app/tools", DATA, keys.sigs["alice"]).fingerprint == keys.alice.fingerprint
    )


def test_binary_and_armored_signatures_over_bytes_and_files(
    keys: Keys, store: TrustStore, tmp_path: Path
) -> None:
    store.add(keys.alice.public, None)
    f = tmp_path / "SHA256SUMS"
    f.write_bytes(DATA)
    for sig in (keys.sigs["alice"], keys.sigs["alice-binary"]):
        assert store.verify("n", DATA, sig).fingerprint == keys.alice.fingerprint
        assert store.verify("n", f, sig).fingerprint == keys.alice.fingerprint
    assert keys.sigs["alice"].startswith(b"-----BEGIN PGP SIGNATURE")
    assert not keys.sigs["alice-binary"].startswith(b"-----")


def test_subkey_signature_maps_to_primary(keys: Keys, store: TrustStore) -> None:
    store.add(keys.sub.public, "example.com")
    assert store.verify("example.com/app", DATA, keys.sigs["sub"]).fingerprint == keys.sub.fingerprint
    with pytest.raises(UntrustedSignature) as e:
        store.verify("other.org/app", DATA, keys.sigs["sub"])
    assert f"key {keys.sub.fingerprint} ({keys.sub.uid})" in e.value.message
    assert "trusted only for prefix example.com, not for other.org/app" in e.value.message


def test_key_of_another_prefix_is_refused(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, "example.com/ap")
    store.add(keys.bob.public, "example.com/app")
    with pytest.raises(UntrustedSignature) as e:
        store.verify("example.com/app", DATA, keys.sigs["alice"], subject="SHA256SUMS")
    assert e.value.message == (
        f"SHA256SUMS is signed by key {keys.alice.fingerprint} ({keys.alice.uid}), "
        "which is trusted only for prefix example.com/ap, not for example.com/app"
    )
    assert (
        e.value.hint == "to trust it for this name too: nspawnctl trust add KEYFILE --prefix example.com/app"
    )
    with pytest.raises(UntrustedSignature, match=re.escape("trusted only for prefix example.com/ap")):
        store.check_signer("example.com/app", keys.sigs["alice"])


def test_unknown_key_is_refused(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    with pytest.raises(UntrustedSignature) as e:
        store.verify("example.com/app", DATA, keys.sigs["bob"])
    # gpg >= 2.2.7 reports the issuer's fingerprint; older ones only the key ID
    assert keys.bob.fingerprint[-16:] in e.value.message
    assert e.value.message.endswith("which is not trusted for example.com/app")
    assert "nspawnctl trust add KEYFILE --prefix example.com/app" in (e.value.hint or "")


def test_empty_store_refuses(keys: Keys, store: TrustStore) -> None:
    with pytest.raises(UntrustedSignature, match=re.escape("not trusted for example.com/app")):
        store.verify("example.com/app", DATA, keys.sigs["alice"])
    with pytest.raises(UntrustedSignature, match=re.escape("not trusted for example.com/app")):
        store.check_signer("example.com/app", keys.sigs["alice"])


def test_tampered_data(keys: Keys, store: TrustStore, tmp_path: Path) -> None:
    store.add(keys.alice.public, None)
    changed = DATA.replace(b"6f1e", b"6f1f")
    f = tmp_path / "SHA256SUMS"
    f.write_bytes(changed)
    for data in (changed, f, DATA + b"\n", b""):
        with pytest.raises(VerificationFailed) as e:
            store.verify("example.com/app", data, keys.sigs["alice"], subject="SHA256SUMS")
        assert type(e.value) is VerificationFailed
        assert e.value.message == "signature does not match SHA256SUMS: the file was changed after signing"


@pytest.mark.parametrize("sig", [b"", b" \n"])
def test_missing_signature(keys: Keys, store: TrustStore, sig: bytes) -> None:
    store.add(keys.alice.public, None)
    for call in (lambda: store.verify("x", DATA, sig), lambda: store.check_signer("x", sig)):
        with pytest.raises(SignatureMissing, match="the signature for x is empty"):
            call()


def test_garbage_signature(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, None)
    for call in (
        lambda: store.verify("x", DATA, b"<html>not found</html>\n"),
        lambda: store.check_signer("x", b"<html>not found</html>\n"),
    ):
        with pytest.raises(VerificationFailed, match="is not an OpenPGP signature"):
            call()


def test_expired_and_revoked_keys(keys: Keys, store: TrustStore) -> None:
    store.add(keys.expired.public, None)
    store.add(keys.revoked.public, None)
    with pytest.raises(VerificationFailed) as e:
        store.verify("x", DATA, keys.sigs["expired"], subject="SHA256SUMS")
    assert type(e.value) is VerificationFailed
    assert e.value.message == (
        f"SHA256SUMS is signed by key {keys.expired.fingerprint} ({keys.expired.uid}), which has expired"
    )
    with pytest.raises(VerificationFailed) as e:
        store.verify("x", DATA, keys.sigs["revoked"])
    assert type(e.value) is VerificationFailed and e.value.message.endswith(", which was revoked")
    assert keys.revoked.fingerprint in e.value.message


def test_check_signer(keys: Keys, store: TrustStore) -> None:
    store.add(keys.alice.public, "example.com")
    store.add(keys.sub.public, "example.com")
    assert store.check_signer("example.com/app", keys.sigs["alice"]) is None
    assert store.check_signer("example.com/app", keys.sigs["alice-binary"]) is None
    assert store.check_signer("example.com/app", keys.sigs["sub"]) is None
    with pytest.raises(UntrustedSignature, match=re.escape("not trusted for example.com/app")):
        store.check_signer("example.com/app", keys.sigs["bob"])
    with pytest.raises(
        UntrustedSignature, match=re.escape("trusted only for prefix example.com, not for other.org")
    ):
        store.check_signer("other.org", keys.sigs["alice"])


def test_file_named_after_another_key_trusts_nothing(keys: Keys, store: TrustStore) -> None:
    """Trust follows the file name: Bob's key hidden in Alice's file does not make Bob trusted."""
    store.add(keys.alice.public, None)
    (store.directory / "root.d" / keys.alice.fingerprint).write_bytes(keys.bob.public)
    with pytest.raises(UntrustedSignature):
        store.verify("x", DATA, keys.sigs["bob"])
    with pytest.raises(UntrustedSignature):
        store.check_signer("x", keys.sigs["bob"])


# --- no gpg daemons left behind -------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_no_gpg_daemon_survives(keys: Keys, store: TrustStore, monkeypatch: pytest.MonkeyPatch) -> None:
    homes: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        home = real_mkdtemp(*args, **kwargs)
        homes.append(home)
        return home

    monkeypatch.setattr(gpg_module.tempfile, "mkdtemp", recording_mkdtemp)
    calls: list[Callable[[], object]] = [
        lambda: store.inspect(keys.alice.public),
        lambda: store.add(keys.alice.public, "example.com"),
        lambda: store.list(),
        lambda: store.verify("example.com/app", DATA, keys.sigs["alice"]),
        lambda: store.check_signer("example.com/app", keys.sigs["alice"]),
    ]
    for call in calls:
        call()
    with pytest.raises(UntrustedSignature):
        store.verify("other.org/app", DATA, keys.sigs["alice"])
    assert len(homes) >= len(calls) + 1
    for home in homes:
        assert len(home) < 40 and Path(home).name.startswith(gpg_module.HOME_PREFIX)
        assert not os.path.exists(home)
    deadline = time.monotonic() + 5
    while (left := [p for h in homes for p in _processes_mentioning(h)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


def test_the_daemon_check_would_see_an_agent(keys: Keys) -> None:
    """Control for the test above: importing a key does start an agent that outlives gpg."""
    import gnupg

    home = tempfile.mkdtemp(prefix="ntc-", dir="/tmp")
    try:
        gnupg.GPG(gnupghome=home).import_keys(keys.alice.public)
        assert any("gpg-agent" in p or "keyboxd" in p for p in _processes_mentioning(home))
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)
