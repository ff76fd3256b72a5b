"""A throwaway certificate authority and server certificate for HTTPS tests, made with the openssl CLI.

Python 3.13's default SSL context sets VERIFY_X509_STRICT, which rejects what quick self-signed
recipes give: the CA must carry a critical basicConstraints CA:TRUE, keyUsage keyCertSign and a
subjectKeyIdentifier; the server certificate needs subjectAltName entries (the CN is never looked
at) and an authorityKeyIdentifier. Every extension is therefore spelled out in a config file
rather than left to the openssl version's defaults.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TLS:
    ca: Path  # PEM CA certificate: what clients trust (--ca-cert, REQUESTS_CA_BUNDLE)
    cert: Path  # PEM server certificate, signed by the CA
    key: Path  # PEM server private key (mode 0600)


CA_EXTENSIONS = """\
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

SERVER_EXTENSIONS = """\
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {san}
"""


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _new_key(path: Path) -> None:
    # EC P-256: instant to generate, and what every TLS stack accepts.
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def make_tls(dir: Path, hostnames: list[str]) -> TLS:
    """A CA and a certificate for `hostnames` (DNS SANs) plus IP 127.0.0.1, written to `dir`."""
    if not hostnames:
        raise ValueError("make_tls needs at least one hostname")
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        dir / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ca_ext, server_ext = dir / "ca.cnf", dir / "server.cnf"
    san = ", ".join([*(f"DNS:{h}" for h in hostnames), "IP:127.0.0.1"])
    ca_ext.write_text(CA_EXTENSIONS)
    server_ext.write_text(SERVER_EXTENSIONS.format(san=san))

    _new_key(ca_key)
    # The CA: a CSR self-signed through `x509 -req`, so that the extensions come from our file only.
    _openssl("req", "-new", "-key", str(ca_key), "-subj", "/CN=nspawnctl test CA", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-signkey", str(ca_key), "-days", "3650", "-sha256",
        "-set_serial", f"0x{secrets.token_hex(16)}", "-extfile", str(ca_ext), "-extensions", "ca",
        "-out", str(ca),
    )  # fmt: skip
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={hostnames[0]}", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-days", "365", "-sha256",
        "-set_serial", f"0x{secrets.token_hex(16)}", "-extfile", str(server_ext), "-extensions", "server",
        "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    return TLS(ca=ca, cert=cert, key=key)


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3:
        raise SystemExit("usage: pki.py DIR HOSTNAME...")
    print(make_tls(Path(sys.argv[1]), sys.argv[2:]))
