"""The one authentication service SMTP AUTH, IMAP LOGIN and the web page use.

Order of checks: the brute-force limiter first (a blocked client costs no
hashing), then the password (off the event loop), and only then the account's
state, so a wrong password never reveals whether an account is suspended.

Outlook and Thunderbird open several connections and reconnect often; paying
argon2 (~150 ms of CPU) every time would cap a 2-core server at a dozen logins
a second. Successful verifications are therefore remembered for a short while,
keyed by a keyed hash (HMAC with a per-process secret) of account, stored
hash and password: the password itself is never kept, a password change
(in any process) changes the stored hash and so misses the cache, and
`invalidate()` drops an account's entries on any local change.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from policy.errors import ValidationFailed
from policy.lockstate import Access, LockState, PasswordState, password_reason
from policy.passwords import check_password
from storage.directory import Directory
from storage.limiter import Block, BruteForceLimiter
from storage.records import Account

# A valid argon2id hash of a random password: verifying against it when the
# account does not exist costs the same time as a real check.
_DUMMY_PASSWORD = os.urandom(16).hex()


class Purpose(StrEnum):
    mail = "mail"  # IMAP, SMTP submission: an expired password is refused
    web = "web"  # the password page: an expired password may sign in to change it


class Outcome(StrEnum):
    ok = "ok"
    bad_credentials = "bad-credentials"
    blocked = "blocked"
    suspended = "suspended"
    revoked = "revoked"
    password_expired = "password-expired"
    must_change = "must-change-password"


@dataclass(frozen=True)
class AuthResult:
    outcome: Outcome
    account: Account | None = None
    access: Access | None = None
    block: Block | None = None
    text_en: str = ""
    text_vi: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.ok

    @property
    def text(self) -> str:
        return f"{self.text_en} / {self.text_vi}" if self.text_vi else self.text_en


@dataclass(frozen=True)
class LoginEvent:
    """What every login attempt reports to listeners (mail log, metrics, audit of blocks)."""

    address: str
    client_ip: str
    protocol: str
    outcome: Outcome


class AuthService:
    def __init__(
        self,
        directory: Directory,
        limiter: BruteForceLimiter,
        account_url: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.limiter = limiter
        self.account_url = account_url
        self.monotonic = monotonic
        # the composition root sets it again when SIGHUP reloads the policy
        self.cache_ttl = directory.policy.auth.cache_ttl.approx_seconds
        self._secret = os.urandom(32)
        self._cache: dict[bytes, tuple[int, float]] = {}
        self._dummy_hash: str | None = None
        self.listeners: list[Callable[[LoginEvent], None]] = []
        directory.on_change.append(self.invalidate)
        self.stats = {"verifications": 0, "cache_hits": 0}

    # ---------------------------------------------------------------- cache

    def _key(self, account: Account, password: str) -> bytes:
        msg = f"{account.id}\0{account.password_hash}\0{password}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def _cached(self, key: bytes) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            return False
        if hit[1] < self.monotonic():
            del self._cache[key]
            return False
        return True

    def _remember(self, account: Account, key: bytes) -> None:
        if len(self._cache) > 50_000:
            now = self.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[1] >= now}
        self._cache[key] = (account.id, self.monotonic() + self.cache_ttl)

    def invalidate(self, account_id: int) -> None:
        for k in [k for k, (aid, _) in self._cache.items() if aid == account_id]:
            del self._cache[k]

    # ---------------------------------------------------------------- login

    async def _verify(self, account: Account | None, password: str) -> tuple[bool, bool]:
        if account is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.directory.hasher.hash_async(_DUMMY_PASSWORD)
            await self.directory.hasher.verify_async(password, self._dummy_hash)
            return False, False
        key = self._key(account, password)
        if self._cached(key):
            self.stats["cache_hits"] += 1
            return True, False
        self.stats["verifications"] += 1
        ok, rehash = await self.directory.hasher.verify_async(password, account.password_hash)
        if ok and not rehash:
            self._remember(account, key)
        return ok, rehash

    def _emit(self, address: str, client_ip: str, protocol: str, outcome: Outcome) -> None:
        event = LoginEvent(address, client_ip, protocol, outcome)
        for cb in self.listeners:
            cb(event)

    async def authenticate(
        self,
        address: str,
        password: str,
        *,
        client_ip: str,
        protocol: str,
        purpose: Purpose = Purpose.mail,
        now: datetime | None = None,
    ) -> AuthResult:
        address = address.strip().lower()
        block = self.limiter.check(client_ip, address)
        if block is not None:
            self._emit(address, client_ip, protocol, Outcome.blocked)
            return AuthResult(Outcome.blocked, block=block, text_en=block.text_en, text_vi=block.text_vi)

        account = await self.directory.get_account(address)
        ok, rehash = await self._verify(account, password)
        if not ok or account is None:
            started = self.limiter.record_failure(client_ip, address, password)
            if started is not None:
                await self.directory.audit(
                    "system:auth-limiter", "auth.block", address,
                    after={"scope": started.scope, "key": started.key, "protocol": protocol,
                           "seconds": int(started.retry_after)},
                    rule="Đ6.2.b brute-force protection",
                )
            self._emit(address, client_ip, protocol, Outcome.bad_credentials)
            return AuthResult(
                Outcome.bad_credentials,
                text_en="invalid address or password",
                text_vi="sai địa chỉ hoặc mật khẩu",
            )

        self.limiter.record_success(client_ip, address)
        if rehash:
            # Imported hash ({SSHA512}, $6$, bcrypt ...): replace with argon2id now.
            new_hash = await self.directory.hasher.hash_async(password)
            account = await self.directory.store_password_hash(
                account, new_hash, must_change=account.must_change_password, actor="system:auth",
                action="account.rehash", reset_age=False,
            )
            self._remember(account, self._key(account, password))

        access = self.directory.access(account, now)
        result = self._judge(account, access, purpose)
        self._emit(account.address, client_ip, protocol, result.outcome)
        if result.ok:
            await self.directory.record_activity(account.id, "login", now)
        return result

    def _judge(self, account: Account, access: Access, purpose: Purpose) -> AuthResult:
        if access.state == LockState.revoked:
            return AuthResult(Outcome.revoked, account, access, text_en=access.reason_en, text_vi=access.reason_vi)
        if access.state == LockState.suspended:
            return AuthResult(Outcome.suspended, account, access, text_en=access.reason_en,
                              text_vi=access.reason_vi)
        if purpose == Purpose.mail and access.password != PasswordState.ok:
            vi, en = password_reason(access, self.account_url)
            outcome = Outcome.must_change if access.password == PasswordState.must_change else Outcome.password_expired
            return AuthResult(outcome, account, access, text_en=en, text_vi=vi)
        return AuthResult(Outcome.ok, account, access)

    # ---------------------------------------------------------------- change

    async def change_password(self, account: Account, current: str, new: str, *, actor: str) -> Account:
        """Self-service change (Đ9 rules, and never the current password again)."""
        ok, _ = await self.directory.hasher.verify_async(current, account.password_hash)
        if not ok:
            raise ValidationFailed("current_password", "the current password is wrong")
        problems = check_password(new, self.directory.policy.passwords, self.directory.hasher.byte_limit)
        if problems:
            raise ValidationFailed("password", "does not meet Đ9: needs " + ", ".join(p.en for p in problems))
        same, _ = await self.directory.hasher.verify_async(new, account.password_hash)
        if same:
            raise ValidationFailed("password", "the new password must differ from the current one")
        new_hash = await self.directory.hasher.hash_async(new)
        updated = await self.directory.store_password_hash(
            account, new_hash, must_change=False, actor=actor, action="account.password-change"
        )
        self.invalidate(account.id)
        return updated
