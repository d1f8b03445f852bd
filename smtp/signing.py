"""DKIM signing of submitted mail (RFC 6376; ed25519 per RFC 8463).

Mail is signed here, once, before it is delivered locally or handed to the
outbound queue, so everything that leaves the province carries the
domain's signature and DMARC passes elsewhere. Keys live in
`<dkim.keys>/<domain>/<selector>.rsa.pem` (PKCS#1 PEM) and
`<selector>.ed25519.key` (base64 seed, dkimpy's format); `keygen()` writes
them with mode 0600 and returns the TXT record to publish at
`<selector>._domainkey.<domain>`. Rotating a key: generate under a new
selector, publish, then change `dkim.selector`.

Signing hashes the whole body (~0.25 s for 20 MB), so it runs in a worker
thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import dkim
import nacl.encoding
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("smtp.dkim")

# RFC 6376 §5.4.1 recommended header fields, plus the MIME ones (a changed
# Content-Type would otherwise keep a valid signature on altered content).
SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to", b"references",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"sender", b"list-unsubscribe",
]


def key_paths(keys: Path, domain: str, selector: str) -> tuple[Path, Path]:
    folder = keys / domain
    return folder / f"{selector}.rsa.pem", folder / f"{selector}.ed25519.key"


def quoted_txt(value: str) -> str:
    """A TXT value as quoted strings of at most 255 bytes each (RFC 1035 §3.3.14): DKIM keys are longer."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


@dataclass(frozen=True)
class GeneratedKey:
    path: Path
    record_name: str
    record: str  # the TXT value, unsplit

    @property
    def algorithm(self) -> str:
        return "ed25519" if self.path.name.endswith(".ed25519.key") else "rsa"

    @property
    def selector(self) -> str:
        return self.record_name.split("._domainkey.", 1)[0]

    def zone_line(self) -> str:
        """The record in zone-file form."""
        return f"{self.record_name}. IN TXT ( {quoted_txt(self.record)} )"


def _rsa_record(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; h=sha256; p={base64.b64encode(der).decode()}"


def _ed25519_record(sk: nacl.signing.SigningKey) -> str:
    return f"v=DKIM1; k=ed25519; p={sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()}"


def published_keys(keys: Path, domain: str) -> list[GeneratedKey]:
    """The record to publish for every key `keygen` wrote for the domain (`mailserver dns records`)."""
    folder = keys / domain
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.rsa.pem")):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key")
        selector = path.name[: -len(".rsa.pem")]
        found.append(GeneratedKey(path, f"{selector}._domainkey.{domain}", _rsa_record(key)))
    for path in sorted(folder.glob("*.ed25519.key")):
        sk = nacl.signing.SigningKey(path.read_bytes().strip(), encoder=nacl.encoding.Base64Encoder)
        selector = path.name[: -len(".ed25519.key")]
        found.append(GeneratedKey(path, f"{selector}._domainkey.{domain}", _ed25519_record(sk)))
    return found


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; use another selector (or --force to replace it)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(keys: Path, domain: str, selector: str, algorithm: str = "rsa", bits: int = 2048,
           force: bool = False) -> GeneratedKey:
    rsa_path, ed_path = key_paths(keys, domain, selector)
    name = f"{selector}._domainkey.{domain}"
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        _write_private(rsa_path, pem, force=force)
        return GeneratedKey(rsa_path, name, _rsa_record(key))
    if algorithm == "ed25519":
        sk = nacl.signing.SigningKey.generate()
        _write_private(ed_path, sk.encode(encoder=nacl.encoding.Base64Encoder), force=force)
        return GeneratedKey(ed_path, name, _ed25519_record(sk))
    raise ValueError(f'"{algorithm}" is not a DKIM key type (rsa or ed25519)')


class DkimSigner:
    def __init__(self, keys: Path, selector: str, ed25519: bool = False) -> None:
        self.keys = keys
        self.selector = selector
        self.ed25519 = ed25519
        self._cache: dict[str, list[tuple[bytes, bytes]]] = {}
        self._warned: set[str] = set()

    def _keys_for(self, domain: str) -> list[tuple[bytes, bytes]]:
        """[(algorithm, key bytes)] present for the domain; read once per process."""
        if domain not in self._cache:
            found = []
            rsa_path, ed_path = key_paths(self.keys, domain, self.selector)
            if rsa_path.exists():
                found.append((b"rsa-sha256", rsa_path.read_bytes()))
            if self.ed25519 and ed_path.exists():
                found.append((b"ed25519-sha256", ed_path.read_bytes().strip()))
            self._cache[domain] = found
        return self._cache[domain]

    def has_key(self, domain: str) -> bool:
        return bool(self._keys_for(domain))

    def sign_sync(self, message: bytes, domain: str) -> bytes:
        """The DKIM-Signature header line(s) to prepend (empty when the domain has no key)."""
        keys = self._keys_for(domain)
        if not keys:
            if domain not in self._warned:
                self._warned.add(domain)
                rsa_path, _ = key_paths(self.keys, domain, self.selector)
                log.warning("no DKIM key for %s (%s); run `mailserver dkim keygen --domain %s --selector %s`",
                            domain, rsa_path, domain, self.selector)
            return b""
        out = b""
        for algorithm, key in keys:
            out += dkim.sign(message, self.selector.encode(), domain.encode(), key,
                             canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algorithm,
                             include_headers=SIGNED_HEADERS)
        return out

    async def sign(self, message: bytes, domain: str) -> bytes:
        if not self.has_key(domain):
            return self.sign_sync(message, domain)
        return await asyncio.to_thread(self.sign_sync, message, domain)
