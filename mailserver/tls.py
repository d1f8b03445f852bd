"""The server's TLS certificate, owned by the composition root and shared by every listener.

SMTP (25 STARTTLS, 587 STARTTLS, 465), IMAP (143 STARTTLS, 993) and the web
listener all hand the same `ServerTls.context` to asyncio. Certificates are
renewed every 60 to 90 days by the provider's ACME client, so `reload()`
(SIGHUP, see `mailserver.reload`) must change the certificate of every
listener at once, for new connections only, without dropping the
connections that are open.

Why a callback and not `load_cert_chain()` on the live context: OpenSSL
keeps one certificate per key type in a context, so loading an RSA
certificate into a context that held an ECDSA one leaves the ECDSA
certificate in place and clients that prefer ECDSA keep getting the old one
(measured here). Instead, `context` is a front context whose server-name
callback — OpenSSL calls it for every ClientHello, with or without SNI —
points the connection at the current, freshly built context. A connection
keeps the context it started with, so open IMAP sessions are untouched.

A new certificate is validated before it replaces the old one (key matches,
parses, not expired); on any problem the old one stays and the reason is
raised for the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from mailserver.tlsgen import certificate_names
from policy.errors import MailserverError
from policy.settings import Settings

log = logging.getLogger("mailserver.tls")

# Warn in the log (and through the metric) this long before the certificate expires.
EXPIRY_WARNING_DAYS = 14


class CertificateError(MailserverError):
    """The configured certificate or key cannot be used; the field names the file."""


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    names: tuple[str, ...]
    not_after: datetime
    sha256: str  # fingerprint of the leaf certificate, to tell renewals apart in the log

    def describe(self) -> str:
        return (f"{self.subject} (names {', '.join(self.names) or 'none'}; "
                f"valid until {self.not_after:%Y-%m-%d %H:%M} UTC; sha256 {self.sha256[:16]}…)")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the given certificate chain and key: the one set of TLS settings of every listener."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # Session tickets cost memory per connection in OpenSSL for TLS 1.3 and buy
    # little for long-lived IMAP connections; one ticket is enough for a reconnect.
    ctx.num_tickets = 1
    return ctx


def describe_certificate(pem: bytes) -> CertificateInfo:
    """The leaf (first) certificate of a PEM chain."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(cns[0].value) if cns else cert.subject.rfc4514_string()
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return CertificateInfo(subject, names, cert.not_valid_after_utc, fingerprint)


def missing_names(info: CertificateInfo, hostname: str, domains: list[str]) -> list[str]:
    """Names clients connect to that the certificate does not cover (wildcards count one label)."""
    wanted = [n for n in certificate_names(hostname, domains) if n != "localhost"]
    return [n for n in wanted if not any(_matches(pattern, n) for pattern in info.names)]


def _matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def load_checked(cert: Path, key: Path, now: datetime | None = None) -> tuple[ssl.SSLContext, CertificateInfo]:
    """Build a context from the files as they are now, refusing what would break TLS for clients.

    The files are copied to a private folder first and both the check and the
    context use those copies: an ACME client that writes the certificate and
    the key one after the other can never give us a certificate with the
    previous key.
    """
    now = now or datetime.now(UTC)
    try:
        cert_pem = cert.read_bytes()
    except OSError as e:
        raise CertificateError("tls.cert", f"cannot read {cert}: {e.strerror or e}") from e
    try:
        key_pem = key.read_bytes()
    except OSError as e:
        raise CertificateError("tls.key", f"cannot read {key}: {e.strerror or e}") from e
    try:
        info = describe_certificate(cert_pem)
    except ValueError as e:
        raise CertificateError("tls.cert", f"{cert} is not a PEM certificate: {e}") from e
    if info.not_after <= now:
        raise CertificateError("tls.cert", f"{cert} expired on {info.not_after:%Y-%m-%d %H:%M} UTC")
    private = Path(tempfile.mkdtemp(prefix="mailserver-tls-"))
    try:
        os.chmod(private, 0o700)
        c, k = private / "cert.pem", private / "key.pem"
        c.write_bytes(cert_pem)
        fd = os.open(k, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        try:
            ctx = server_context(c, k)
        except ssl.SSLError as e:
            raise CertificateError("tls.key", f"{key} does not match {cert} or is not a PEM key: {e.reason or e}") \
                from e
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return ctx, info


class ServerTls:
    """The certificate every listener presents; `reload()` swaps it for new connections everywhere."""

    def __init__(self, cert: Path, key: Path, hostname: str, domains: list[str]) -> None:
        self.cert, self.key = cert, key
        self.hostname, self.domains = hostname, domains
        self.current, self.info = load_checked(cert, key)
        # The front context: every listener gets this one object. Its own certificate is only
        # used if the callback below were not called, which OpenSSL does not do.
        self.context = server_context(cert, key)
        self.context.sni_callback = self._select
        self.loaded_at = datetime.now(UTC)
        self.warn_about(self.info)

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _front: ssl.SSLContext) -> None:
        # Called in the handshake of each new connection (also without SNI): present the current certificate.
        if ssl_object.context is not self.current:
            ssl_object.context = self.current

    def reload(self) -> bool:
        """Load the files again. True when the certificate changed; raises CertificateError and keeps the
        old certificate when the new files are unusable."""
        ctx, info = load_checked(self.cert, self.key)
        changed = info.sha256 != self.info.sha256
        self.current, self.info, self.loaded_at = ctx, info, datetime.now(UTC)
        self.warn_about(info)
        return changed

    def warn_about(self, info: CertificateInfo) -> None:
        missing = missing_names(info, self.hostname, self.domains)
        if missing:
            log.warning("the certificate does not cover %s: Outlook and Thunderbird will warn users "
                        "(request a certificate for these names too, docs/operations.md)", ", ".join(missing))
        days = (info.not_after - datetime.now(UTC)).total_seconds() / 86400
        if days < EXPIRY_WARNING_DAYS:
            log.warning("the certificate expires in %.1f days (%s): is the ACME client renewing it?",
                        days, f"{info.not_after:%Y-%m-%d %H:%M} UTC")


def tls_for(settings: Settings) -> ServerTls:
    """The ServerTls of a configuration (`tls.cert`/`tls.key`, or the pair `init` wrote)."""
    return ServerTls(settings.cert_path, settings.key_path, settings.hostname, settings.domains)
