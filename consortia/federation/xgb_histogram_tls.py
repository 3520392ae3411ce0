"""TLS for XGBoost's federated communicator in a deployment: one throw-away CA per run.

XGBoost's federated server and workers speak gRPC with mutual TLS: the server presents a
certificate the workers check against a CA, and accepts only workers whose client certificate
that CA signed. Per run, the ServerApp makes a CA and the server's certificate (for the host the
nodes dial), and signs one client certificate per institution over the public key the
institution sent with its quantile summary. Each institution makes its key pair itself and its
private key never leaves the node (it waits in the node's own run state, which the SuperNode
keeps locally); the CA's private key lives only in the ServerApp's memory. Nothing here is
reused after the run. EC P-256 keys: cheap to make, accepted by gRPC's BoringSSL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.federation.certificates import alt_names, ca_certificate, not_before
from consortia.learners.xgboost.histogram import ServerTls, WorkerTls

_PEM = serialization.Encoding.PEM


def new_key() -> tuple[str, str]:
    """(private key PEM, public key PEM): what an institution makes for itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(_PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Consortia XGBoost run CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


@dataclass
class RunAuthority:
    """The run's CA: signs the server's certificate and the institutions' client certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, days: int = 2) -> RunAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = ca_certificate(key, _name("Consortia XGBoost run CA"), days=days, path_length=0)
        return cls(key, cert)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(_PEM).decode()

    def _sign(self, subject: str, public_key: object, usage: x509.ObjectIdentifier, hosts: tuple[str, ...]) -> str:
        now = not_before()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(self.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(alt_names(hosts), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(_PEM).decode()

    def server_files(self, folder: Path, hosts: tuple[str, ...]) -> ServerTls:
        """The federated server's key and certificate (valid for ``hosts``) and the CA, as files."""
        key_pem, public_pem = new_key()
        public = serialization.load_pem_public_key(public_pem.encode())
        cert = self._sign(hosts[0], public, ExtendedKeyUsageOID.SERVER_AUTH, hosts)
        return ServerTls(
            key=write(folder / "server.key", key_pem, private=True),
            cert=write(folder / "server.crt", cert),
            client_ca=write(folder / "ca.crt", self.cert_pem),
        )

    def client_cert(self, institution: str, public_key_pem: str) -> str:
        """A client certificate for the key an institution sent (PEM)."""
        public = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError(f"{institution}: the XGBoost client key must be an EC public key")
        return self._sign(institution, public, ExtendedKeyUsageOID.CLIENT_AUTH, ())


def write(path: Path, text: str, private: bool = False) -> str:
    """Write a PEM file; a private one is created 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return str(path)


def worker_files(folder: Path, ca_pem: str, key_pem: str, cert_pem: str) -> WorkerTls:
    """One institution's worker TLS files: the run's CA, its own key and its client certificate."""
    return WorkerTls(
        server_ca=write(folder / "ca.crt", ca_pem),
        client_key=write(folder / "client.key", key_pem, private=True),
        client_cert=write(folder / "client.crt", cert_pem),
    )
