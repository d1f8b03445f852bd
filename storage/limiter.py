"""The brute-force limiter SMTP, IMAP and the web share.

Failures are counted three ways inside a sliding window: per (client IP,
account) to stop guessing one password, per IP to stop spraying many
accounts, and per account to stop a distributed attack. Offices reach the
server from one NAT address, so trusted networks are exempt from the per-IP
and per-account counts (a colleague's typo must not lock the whole office
out, nor an attacker elsewhere lock out a user sitting in the office); the
per-(IP, account) count still applies to them. After the monthly password
change (Đ13.3) phones keep retrying the old password: a repeat of the same
wrong password is counted once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from policy.model import AuthPolicy


@dataclass
class _Counter:
    times: deque[float] = field(default_factory=deque)
    seen: dict[bytes, float] = field(default_factory=dict)
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Block:
    scope: str  # "ip-account", "ip" or "account"
    key: str
    retry_after: float  # seconds

    @property
    def text_en(self) -> str:
        return f"too many failed logins; try again in {int(self.retry_after // 60) + 1} minutes"

    @property
    def text_vi(self) -> str:
        return f"đăng nhập sai quá nhiều lần; hãy thử lại sau {int(self.retry_after // 60) + 1} phút"


def ip_key(ip: str) -> str:
    """IPv6 clients are counted per /64, as one host usually owns the whole prefix."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class BruteForceLimiter:
    def __init__(
        self,
        rules: AuthPolicy,
        trusted_networks: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_networks or []]
        self.clock = clock
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._secret = os.urandom(32)
        self.set_rules(rules)

    def set_rules(self, rules: AuthPolicy) -> None:
        """New limits (a policy reloaded by SIGHUP) apply from the next failure; counts so far are kept,
        so a reload never unblocks an attacker."""
        self.rules = rules
        self.window = rules.window.approx_seconds
        self.cooling_off = rules.cooling_off.approx_seconds

    def is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def _keys(self, ip: str, account: str) -> list[tuple[str, str, int]]:
        account = account.lower()
        keys = [("ip-account", f"{ip_key(ip)} {account}", self.rules.max_failures_per_ip_account)]
        if not self.is_trusted(ip):
            keys.append(("ip", ip_key(ip), self.rules.max_failures_per_ip))
            keys.append(("account", account, self.rules.max_failures_per_account))
        return keys

    def check(self, ip: str, account: str) -> Block | None:
        """A current block for this attempt, if any (checked before verifying)."""
        now = self.clock()
        for scope, key, _limit in self._keys(ip, account):
            c = self._counters.get((scope, key))
            if c and c.blocked_until > now:
                return Block(scope, key, c.blocked_until - now)
        return None

    def record_failure(self, ip: str, account: str, password: str) -> Block | None:
        """Count a failure; returns the block it starts, if it starts one."""
        now = self.clock()
        fp = hmac.new(self._secret, f"{account.lower()}\0{password}".encode(), hashlib.sha256).digest()
        started: Block | None = None
        for scope, key, limit in self._keys(ip, account):
            c = self._counters.setdefault((scope, key), _Counter())
            self._expire(c, now)
            if fp in c.seen:
                continue  # the same wrong password again: counted once
            c.seen[fp] = now
            c.times.append(now)
            if len(c.times) >= limit and c.blocked_until <= now:
                c.blocked_until = now + self.cooling_off
                started = started or Block(scope, key, self.cooling_off)
        self._gc(now)
        return started

    def record_success(self, ip: str, account: str) -> None:
        """A correct password clears that client's count for that account."""
        self._counters.pop(("ip-account", f"{ip_key(ip)} {account.lower()}"), None)

    def _expire(self, c: _Counter, now: float) -> None:
        horizon = now - self.window
        while c.times and c.times[0] < horizon:
            c.times.popleft()
        for fp in [fp for fp, t in c.seen.items() if t < horizon]:
            del c.seen[fp]

    def _gc(self, now: float) -> None:
        """Forget idle counters so a scan of many addresses cannot grow memory forever."""
        if len(self._counters) < 10_000:
            return
        horizon = now - self.window
        idle = [
            k for k, c in self._counters.items()
            if c.blocked_until <= now and (not c.times or c.times[-1] < horizon)
        ]
        for k in idle:
            del self._counters[k]

    def failures(self, scope: str, key: str) -> int:
        c = self._counters.get((scope, key))
        return len(c.times) if c else 0
