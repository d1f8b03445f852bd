"""A self-signed certificate for development and first start.

Production uses a CA certificate (see docs/operations.md); this one lets
`make run` and the tests speak TLS on every port from the first minute. It
covers the mail host name and the `autoconfig.`/`autodiscover.` names that
Thunderbird and Outlook look up, plus localhost.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate_names(hostname: str, domains: list[str]) -> list[str]:
    names = [hostname]
    for d in domains:
        names += [f"autoconfig.{d}", f"autodiscover.{d}"]
    names.append("localhost")
    return list(dict.fromkeys(names))


def write_self_signed(cert_path: Path, key_path: Path, hostname: str, domains: list[str],
                      days: int = 825) -> list[str]:
    """Write a key (0600) and a certificate; returns the names it covers."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = certificate_names(hostname, domains)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return names

