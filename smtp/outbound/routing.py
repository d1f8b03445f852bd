"""Where mail for a domain goes: static route, smarthost, or MX records (RFC 5321 §5.1, RFC 7505).

Order of precedence:

1. `outbound.routes` names the domain: that host and port (its A/AAAA looked
   up if it is a name). A route replaces the MX lookup and nothing else: the
   TLS policy, timeouts and retries are those of any destination.
2. `outbound.smarthost` is set: every other domain goes through it.
3. MX records (RFC 5321 §5.1): sorted by preference, hosts of equal
   preference in random order so load spreads; each host's addresses from
   A (and AAAA). No MX record at all: the domain itself is the implicit MX
   ("treated as if it had an MX of preference 0 pointing to that host").
   A null MX (a single MX whose exchange is ".", RFC 7505) means the domain
   accepts no mail: a permanent failure, with 556 5.1.10 (RFC 7505 §4.2).

A name that does not exist (NXDOMAIN) is a permanent failure (5.1.2); a DNS
timeout or server failure is temporary (4.4.3) and the message is retried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass

from policy.model import OutboundPolicy
from policy.settings import Outbound, parse_hostport
from smtp.dns import DnsTemporary, Resolver
from smtp.replies import Reply

MAX_MX_HOSTS = 5  # RFC 5321 §5.1 leaves the number to the client; Postfix tries 5 as well
MAX_ADDRESSES = 10


@dataclass(frozen=True)
class Hop:
    """One server to try: its name (for SNI and the log) and one of its addresses."""

    name: str
    address: str
    port: int

    def __str__(self) -> str:
        """`mx.example.org [192.0.2.1]:25`, as the mail log and bounces show it."""
        where = f"[{self.address}]:{self.port}"
        return where if self.name == self.address else f"{self.name} {where}"


@dataclass(frozen=True)
class Route:
    """How to reach one destination domain."""

    destination: str  # what concurrency limits count: the domain, "route <host:port>" or "smarthost"
    via: str  # mx | implicit-mx | route | smarthost
    hops: tuple[Hop, ...]
    tls: str  # opportunistic | required (STARTTLS) | implicit (TLS from the first byte) | none
    verify: bool = False  # check the certificate (the smarthost; MX hosts get opportunistic encryption)
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None


class RouteError(Exception):
    """No route: `reply` says why, temporary (4xx) or permanent (5xx)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class Router:
    def __init__(self, resolver: Resolver, settings: Outbound, policy: OutboundPolicy) -> None:
        self.resolver = resolver
        self.settings = settings
        self.policy = policy

    def _tls_for(self, domain: str) -> str:
        return "required" if self.policy.tls_required(domain) else "opportunistic"

    async def route(self, domain: str) -> Route:
        s = self.settings
        if domain in s.routes:
            host, port = parse_hostport(s.routes[domain], s.port)
            hops = await self._hops_of(host, port)
            if not hops:
                raise RouteError(Reply(451, "4.4.4", f"the route for {domain} names {host}, which has no address"))
            return Route(f"route {host}:{port}", "route", tuple(hops), self._tls_for(domain))
        if s.smarthost is not None:
            sh = s.smarthost
            hops = await self._hops_of(sh.host, sh.port)
            if not hops:
                raise RouteError(Reply(451, "4.4.4", f"the smarthost {sh.host} has no address"))
            tls = {"starttls": "required", "tls": "implicit", "none": "none"}[sh.tls]
            return Route("smarthost", "smarthost", tuple(hops), tls, verify=sh.verify,
                         ca_file=str(sh.ca_file) if sh.ca_file else None, username=sh.username,
                         password=sh.password)
        return await self._mx_route(domain)

    async def _mx_route(self, domain: str) -> Route:
        try:
            records = await self.resolver.lookup(domain, "MX")
        except DnsTemporary as e:
            raise RouteError(Reply(451, "4.4.3", f"DNS lookup of the MX records of {domain} failed ({e}); "
                                                 "will try again")) from None
        if records is None:
            raise RouteError(Reply(550, "5.1.2", f"the domain {domain} does not exist (DNS: no such name)"))
        mx = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower())  # type: ignore[attr-defined]
              for r in records]
        real = [(p, h) for p, h in mx if h not in ("", ".")]
        if mx and not real:
            # RFC 7505 §3: "0 ." says the domain accepts no mail at all
            raise RouteError(Reply(556, "5.1.10", f"the domain {domain} accepts no mail (null MX, RFC 7505)"))
        port = self.settings.port
        if not real:
            hops = await self._hops_of(domain, port, permanent_if_none=True)
            return Route(domain, "implicit-mx", tuple(hops), self._tls_for(domain))
        by_pref: dict[int, list[str]] = {}
        for pref, host in real:
            by_pref.setdefault(pref, []).append(host)
        ordered: list[str] = []
        for pref in sorted(by_pref):
            hosts = by_pref[pref]
            random.shuffle(hosts)  # RFC 5321 §5.1: spread load among equal preferences
            ordered += [h for h in hosts if h not in ordered]
        ordered = ordered[:MAX_MX_HOSTS]
        results = await asyncio.gather(*(self._hops_of(h, port) for h in ordered), return_exceptions=True)
        hops: list[Hop] = []
        temporary = None
        for res in results:
            if isinstance(res, RouteError):
                temporary = temporary or res
                continue
            if isinstance(res, BaseException):
                raise res
            hops += res
        if not hops:
            if temporary is not None:
                raise temporary
            raise RouteError(Reply(451, "4.4.4", f"no MX host of {domain} has an address "
                                                 f"({', '.join(ordered)}); will try again"))
        return Route(domain, "mx", tuple(hops[:MAX_ADDRESSES]), self._tls_for(domain))

    async def _hops_of(self, host: str, port: int, permanent_if_none: bool = False) -> list[Hop]:
        """A then AAAA addresses of a host (IPv4 first: many networks here have no IPv6 route)."""
        if _is_ip(host):
            return [Hop(host, host, port)]
        qtypes = ["A", "AAAA"] if self.settings.ipv6 else ["A"]
        try:
            answers = await asyncio.gather(*(self.resolver.lookup(host, q) for q in qtypes))
        except DnsTemporary as e:
            raise RouteError(Reply(451, "4.4.3", f"DNS lookup of {host} failed ({e}); will try again")) from None
        if all(a is None for a in answers) and permanent_if_none:
            raise RouteError(Reply(550, "5.1.2", f"the domain {host} does not exist (DNS: no such name)"))
        hops = [Hop(host, r.to_text(), port) for a in answers for r in (a or [])]  # type: ignore[attr-defined]
        if not hops and permanent_if_none:
            raise RouteError(Reply(550, "5.1.2", f"the domain {host} has no mail server (no MX, A or AAAA record)"))
        return hops
