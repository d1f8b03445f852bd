"""Password hashes: argon2id for new passwords, the old schemes for imported ones.

Units moving from Zimbra, LDAP or Dovecot bring hashes in their formats
(`{SSHA512}`, `{SSHA}`, `{SHA512-CRYPT}$6$…`, `{BLF-CRYPT}$2y$…`); users keep
their password and the hash is replaced by argon2id at the first successful
login (`needs_update`). libpass is used rather than passlib 1.7.4, which
fails every bcrypt hash with bcrypt 5.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from passlib.context import CryptContext

from policy.errors import ValidationFailed
from policy.model import HashPolicy

# Dovecot-style scheme prefixes whose payload is a plain crypt(3) string.
_CRYPT_PREFIXES = ("{SHA512-CRYPT}", "{SHA256-CRYPT}", "{BLF-CRYPT}", "{CRYPT}", "{ARGON2ID}", "{ARGON2I}")
BCRYPT_MAX_BYTES = 72

_SCHEMES = ["argon2", "bcrypt", "sha512_crypt", "sha256_crypt", "ldap_salted_sha512", "ldap_salted_sha1"]


def normalize_imported(stored: str) -> str:
    """A hash from another server in the form libpass recognises, or ValidationFailed."""
    value = stored.strip()
    upper = value.upper()
    for prefix in _CRYPT_PREFIXES:
        if upper.startswith(prefix):
            value = value[len(prefix) :]
            break
    if upper.startswith("{SSHA512}") or upper.startswith("{SSHA}"):
        brace = value.index("}")
        value = value[: brace + 1].upper() + value[brace + 1 :]
    if _context_for_identify.identify(value, required=False) is None:
        raise ValidationFailed("hash", f'unsupported or malformed password hash "{stored[:20]}…"')
    return value


_context_for_identify = CryptContext(schemes=_SCHEMES)


class PasswordHasher:
    """Hash and verify off the event loop, in a pool sized to the CPU count.

    argon2 releases the GIL, so threads give real parallelism; bounding the
    pool bounds the memory argon2 takes under a burst of logins.
    """

    def __init__(self, rules: HashPolicy) -> None:
        self.set_rules(rules)
        self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="pwhash")

    def set_rules(self, rules: HashPolicy) -> None:
        """New costs (a policy reloaded by SIGHUP) apply to the next hash; existing hashes still verify and
        are upgraded at the next login, as after any cost change."""
        self.rules = rules
        self.context = CryptContext(
            schemes=_SCHEMES,
            default=rules.scheme,
            deprecated="auto",
            argon2__type="ID",
            argon2__rounds=rules.argon2_time_cost,
            argon2__memory_cost=rules.argon2_memory_cost_kib,
            argon2__parallelism=rules.argon2_parallelism,
            bcrypt__rounds=rules.bcrypt_rounds,
        )

    @property
    def byte_limit(self) -> int | None:
        """bcrypt reads only 72 bytes; other schemes have no such limit."""
        return BCRYPT_MAX_BYTES if self.rules.scheme == "bcrypt" else None

    def hash(self, password: str) -> str:
        if self.byte_limit is not None and len(password.encode()) > self.byte_limit:
            raise ValidationFailed("password", f"longer than {self.byte_limit} bytes, the bcrypt limit")
        return self.context.hash(password)

    def verify(self, password: str, stored: str | None) -> tuple[bool, bool]:
        """(matches, should be rehashed with the current default)."""
        if not stored:
            return False, False
        try:
            ok = self.context.verify(password, stored)
        except (ValueError, TypeError):
            # malformed hash, or a >72-byte password against bcrypt: a plain failure
            return False, False
        return ok, ok and self.context.needs_update(stored)

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.hash, password)

    async def verify_async(self, password: str, stored: str | None) -> tuple[bool, bool]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.verify, password, stored)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
