"""Local TLS material for trying a federation: a CA, a SuperLink certificate, SuperNode keys.

For evaluation on one machine or a private network only; a consortium in production uses
certificates from its own PKI. What is written to ``folder``::

    ca.crt, ca.key               a self-signed certificate authority (10 years)
    superlink.crt, superlink.key the SuperLink's certificate, signed by the CA, valid for the
                                 given host names/IPs (default localhost and 127.0.0.1)
    nodes/<name>, <name>.pub     an EC P-384 key pair per SuperNode (OpenSSH format), the form
                                 ``flower-supernode --auth-supernode-private-key`` and
                                 ``flwr supernode register`` expect
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.errors import ConfigError
from consortia.federation.certificates import alt_names, ca_certificate, not_before

NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    """Write ``data``; a private file is created 0600 (and an existing one narrowed before any
    byte is written), so a key is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not private:
        path.write_bytes(data)
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)
    return path


def check_node_name(name: str) -> str:
    """A SuperNode name becomes a file name under ``nodes/``: letters, digits, ``_ . -`` only,
    not starting with ``.`` or ``-`` (so no ``..``, no ``/``, no hidden files or options)."""
    if not NODE_NAME.fullmatch(name):
        raise ConfigError(
            f"node name {name!r}: use letters, digits, '_', '.' and '-' only, starting with a letter, digit or '_'"
        )
    return name


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Consortia local CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def generate_tls(folder: str | Path, hosts: Sequence[str] = ("localhost", "127.0.0.1"), days: int = 825) -> TlsFiles:
    """A CA and a SuperLink certificate for ``hosts`` (DNS names or IP addresses)."""
    folder = Path(folder)
    now = not_before()
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = ca_certificate(ca_key, _name("Consortia local CA"), days=3650)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(alt_names(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    no_pw = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(folder / "ca.key", ca_key.private_bytes(pem, pkcs8, no_pw), private=True)
    return TlsFiles(
        ca_cert=_write(folder / "ca.crt", ca_cert.public_bytes(pem)),
        server_cert=_write(folder / "superlink.crt", cert.public_bytes(pem)),
        server_key=_write(folder / "superlink.key", key.private_bytes(pem, pkcs8, no_pw), private=True),
    )


def generate_node_key(folder: str | Path, name: str) -> tuple[Path, Path]:
    """An EC P-384 key pair for SuperNode authentication: (private key, public key)."""
    check_node_name(name)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    folder = Path(folder) / "nodes"
    return _write(folder / name, private, private=True), _write(folder / f"{name}.pub", public + b"\n")
