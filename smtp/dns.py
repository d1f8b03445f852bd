"""The one DNS resolver of the SMTP checks (SPF, DKIM, DMARC) and of outbound routing (MX, A, AAAA).

One `dns.asyncresolver.Resolver` configured from `mailserver.yaml`
(`dns.nameservers`, `dns.port`, `dns.timeout`; empty nameservers means
/etc/resolv.conf), so operators and tests point every lookup at one place.

pyspf and dkimpy are synchronous and CPU-heavy on large messages, so they
run in a worker thread (`asyncio.to_thread`); their lookups come back to the
event loop through `ThreadBridge`, which submits the query to the loop and
waits. A timeout or server failure is `DnsTemporary` (→ "temperror", never a
refusal); NXDOMAIN and "no answer" are empty results (→ "none").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver


class DnsTemporary(Exception):
    """A lookup that may succeed later (timeout, SERVFAIL): results say temperror."""


CACHE_MAX = 10_000
NEGATIVE_TTL = 60  # seconds an empty answer is remembered (RFC 2308 lets the SOA decide; we stay short)


class Resolver:
    """Answers are cached for their TTL (at most an hour): every message from a big provider
    would otherwise repeat the same SPF and DMARC queries."""

    def __init__(self, nameservers: Sequence[str] = (), port: int = 53, timeout: float = 5.0) -> None:
        if nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = list(nameservers)
        else:
            r = dns.asyncresolver.Resolver()
        r.port = port
        r.timeout = timeout
        r.lifetime = timeout
        self._r = r
        self.timeout = timeout
        self._cache: dict[tuple[str, str], tuple[float, list[object] | None]] = {}

    async def query(self, name: str, qtype: str) -> list[object]:
        """Answer rdatas; [] for NXDOMAIN or no data; DnsTemporary otherwise."""
        return await self.lookup(name, qtype) or []

    async def lookup(self, name: str, qtype: str) -> list[object] | None:
        """Like `query`, but None when the name does not exist at all (NXDOMAIN), which outbound
        routing must tell apart from a name without records of this type (RFC 5321 §5.1 implicit MX)."""
        key = (name.lower().rstrip("."), qtype)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        result = await self._lookup(name, qtype)
        if len(self._cache) >= CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
        self._cache[key] = (now + result[0], result[1])
        return result[1]

    async def _lookup(self, name: str, qtype: str) -> tuple[float, list[object] | None]:
        try:
            answer = await self._r.resolve(name, qtype, search=False)
        except dns.resolver.NXDOMAIN:
            return NEGATIVE_TTL, None
        except dns.resolver.NoAnswer:
            return NEGATIVE_TTL, []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as e:
            raise DnsTemporary(f"{qtype} {name}: {e.__class__.__name__}") from None
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong, dns.exception.SyntaxError):
            return NEGATIVE_TTL, None
        ttl = min(3600, answer.rrset.ttl if answer.rrset is not None else NEGATIVE_TTL)
        return ttl, list(answer)

    async def txt(self, name: str) -> list[bytes]:
        """TXT records, each with its character-strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
        return [b"".join(r.strings) for r in await self.query(name, "TXT")]  # type: ignore[attr-defined]


class ThreadBridge:
    """Lets code running in a worker thread use the loop's resolver, with a deadline."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self.resolver = resolver
        self.loop = loop

    def query(self, name: str, qtype: str) -> list[object]:
        fut = asyncio.run_coroutine_threadsafe(self.resolver.query(name, qtype), self.loop)
        try:
            return fut.result(self.resolver.timeout + 1)
        except TimeoutError:
            fut.cancel()
            raise DnsTemporary(f"{qtype} {name}: timeout") from None

    def txt(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in self.query(name, "TXT")]  # type: ignore[attr-defined]
