"""Certificate pieces shared by the deployment's CA (``engines.deployment.certs``) and histogram
XGBoost's per-run CA (``xgb_histogram_tls``): one way to make a CA and to name hosts."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes


def not_before() -> dt.datetime:
    """Five minutes ago: a certificate made now is valid on a machine whose clock is a little behind."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def ca_certificate(key: Any, name: x509.Name, days: int, path_length: int | None = None) -> x509.Certificate:
    """A self-signed CA certificate that may sign certificates (and revocation lists) only."""
    start = not_before()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )


def alt_names(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    """Hosts as subject alternative names: IP addresses as such, anything else as a DNS name."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)
