"""SPF (RFC 7208), DKIM verification (RFC 6376) and DMARC (RFC 7489) of mail arriving on the MX.

The results go into one `Authentication-Results` header (RFC 8601). Only a
DMARC failure under `p=reject` can refuse a message, and only when the
policy says so (`dmarc.enforce_reject`); DNS trouble records `temperror`
and never refuses (a provincial office must not lose mail because a
foreign resolver was slow).

pyspf and dkimpy are synchronous; both run in one worker thread per
message with their DNS lookups bridged to the loop's resolver
(`smtp.dns.ThreadBridge`), so hashing a 20 MB body never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from dataclasses import dataclass, field
from email.utils import getaddresses

import dkim
import spf
from dkim.util import InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from smtp.dns import DnsTemporary, Resolver, ThreadBridge

_bridge: contextvars.ContextVar[ThreadBridge | None] = contextvars.ContextVar("smtp_dns_bridge", default=None)
_psl: PublicSuffixList | None = None


def _spf_lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> list[tuple]:
    """pyspf's DNS driver, replaced so its lookups go through our resolver (same result shapes
    as pyspf's own dnspython driver)."""
    bridge = _bridge.get()
    if bridge is None:
        raise spf.TempError("DNS: no resolver configured")
    try:
        rdatas = bridge.query(name, qtype)
    except DnsTemporary as e:
        raise spf.TempError(f"DNS {e}") from None
    out: list[tuple] = []
    for r in rdatas:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))  # type: ignore[attr-defined]
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))  # type: ignore[attr-defined]
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))  # type: ignore[attr-defined]
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), r.strings))  # type: ignore[attr-defined]
    return out


# pyspf has no per-query resolver hook; its module-level driver is the documented extension point.
spf.DNSLookup = _spf_lookup


def org_domain(domain: str) -> str:
    """RFC 7489 §3.2 organizational domain, from the Public Suffix List shipped offline."""
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    return _psl.privatesuffix(domain.lower()) or domain.lower()


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass, fail, neutral, temperror, permerror
    domain: str = ""
    selector: str = ""


@dataclass(frozen=True)
class DmarcRecord:
    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass
class Results:
    spf: str = "none"
    spf_domain: str = ""
    dkim: list[DkimResult] = field(default_factory=list)
    dmarc: str = "none"
    dmarc_policy: str = ""  # the policy that applies to a failure: none, quarantine, reject
    from_domain: str = ""

    def header(self, authserv_id: str) -> str:
        """RFC 8601 §2.2 header field value."""
        parts = [authserv_id]
        parts.append(f"spf={self.spf} smtp.mailfrom={self.spf_domain or 'unknown'}")
        if not self.dkim:
            parts.append("dkim=none")
        for d in self.dkim:
            parts.append(f"dkim={d.result} header.d={d.domain or 'unknown'} header.s={d.selector or 'unknown'}")
        dm = f"dmarc={self.dmarc}"
        if self.dmarc_policy:
            dm += f" (p={self.dmarc_policy})"
        parts.append(f"{dm} header.from={self.from_domain or 'unknown'}")
        return ";\r\n\t".join(parts)


def parse_dmarc(txt: bytes) -> DmarcRecord | None:
    """RFC 7489 §6.3: `v=DMARC1` first, `p=` required (invalid p: treat as none per §6.6.3)."""
    try:
        text = txt.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for item in text.split(";"):
        k, sep, v = item.partition("=")
        if sep:
            tags.setdefault(k.strip().lower(), v.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().lower().startswith("v"):
        return None
    p = tags.get("p", "").lower()
    if p not in ("none", "quarantine", "reject"):
        if "rua" not in tags:
            return None
        p = "none"
    sp = tags.get("sp", "").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DmarcRecord(
        p=p, sp=sp if sp in ("none", "quarantine", "reject") else p,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r", pct=pct,
    )


def aligned(a: str, b: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict = same domain; relaxed = same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


_FROM_RE = re.compile(rb"^From[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def header_from_domains(header_block: bytes) -> list[str]:
    """Domains of the RFC5322.From field(s); DMARC needs exactly one (§6.6.1)."""
    domains = []
    for m in _FROM_RE.finditer(header_block):
        value = m.group(1).decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
        for _, addr in getaddresses([value]):
            if "@" in addr:
                domains.append(addr.rpartition("@")[2].lower().rstrip("."))
    return domains


def _spf_sync(client_ip: str, mail_from: str, helo: str) -> str:
    sender = mail_from or f"postmaster@{helo}"
    try:
        result, _expl = spf.check2(i=client_ip, s=sender, h=helo or "unknown", timeout=20)
    except Exception:  # pyspf raises on malformed input it cannot classify
        result = "permerror"
    return result


def _dkim_sync(message: bytes) -> list[DkimResult]:
    bridge = _bridge.get()
    results: list[DkimResult] = []
    d = dkim.DKIM(message, minkey=1024, timeout=5)
    signatures = [v for n, v in d.headers if n.lower() == b"dkim-signature"]
    for idx, sig in enumerate(signatures[:5]):
        try:
            tags = parse_tag_value(sig)
            domain = tags.get(b"d", b"").decode("ascii", "replace")
            selector = tags.get(b"s", b"").decode("ascii", "replace")
        except InvalidTagValueList:
            results.append(DkimResult("permerror"))
            continue

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            assert bridge is not None
            n = name.decode("ascii") if isinstance(name, bytes) else name
            recs = bridge.txt(n.rstrip("."))
            return recs[0] if recs else None

        try:
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            results.append(DkimResult("pass" if ok else "fail", domain, selector))
        except DnsTemporary:
            results.append(DkimResult("temperror", domain, selector))
        except Exception:  # DKIMException, and nacl's ValueError for a malformed ed25519 signature
            results.append(DkimResult("permerror", domain, selector))
    return results


def _check_sync(message: bytes | None, spf_args: tuple[str, str, str] | None) -> tuple[str | None, list[DkimResult]]:
    """SPF and DKIM in the worker thread (either may be skipped)."""
    spf_result = _spf_sync(*spf_args) if spf_args is not None else None
    return spf_result, _dkim_sync(message) if message is not None else []


SPF_CACHE_SECONDS = 60.0


class SenderAuthenticator:
    """SPF + DKIM + DMARC for one message, through one resolver."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        # (client ip, sender, helo) → (expiry, result): a sender's server delivering many messages in a
        # row is checked once a minute, not once per message (its DNS answers are cached anyway).
        self._spf: dict[tuple[str, str, str], tuple[float, str]] = {}

    async def _dmarc_record(self, domain: str) -> tuple[DmarcRecord | None, bool]:
        """(record, found at the organizational domain rather than the domain itself) — §6.6.3."""
        for name, from_org in ((domain, False), (org_domain(domain), True)):
            if from_org and name == domain:
                break
            for txt in await self.resolver.txt(f"_dmarc.{name}"):
                rec = parse_dmarc(txt)
                if rec is not None:
                    return rec, from_org
        return None, False

    async def check(self, message: bytes, header_block: bytes, *, client_ip: str, mail_from: str,
                    helo: str) -> Results:
        res = Results()
        res.spf_domain = mail_from.rpartition("@")[2].lower() if mail_from else helo.lower()
        key = (client_ip, mail_from.lower(), helo.lower())
        now = time.monotonic()
        cached = self._spf.get(key)
        spf_args = None if cached is not None and cached[0] > now else (client_ip, mail_from, helo)
        signed = b"dkim-signature:" in header_block.lower()
        if spf_args is not None or signed:
            bridge = ThreadBridge(self.resolver, asyncio.get_running_loop())
            token = _bridge.set(bridge)
            try:
                spf_result, res.dkim = await asyncio.to_thread(_check_sync, message if signed else None, spf_args)
            finally:
                _bridge.reset(token)
        if spf_args is None:
            assert cached is not None
            res.spf = cached[1]
        else:
            assert spf_result is not None
            res.spf = spf_result
            if spf_result != "temperror":
                if len(self._spf) > 10_000:
                    self._spf.clear()
                self._spf[key] = (now + SPF_CACHE_SECONDS, spf_result)
        froms = header_from_domains(header_block)
        if len(set(froms)) != 1:
            res.dmarc = "permerror" if froms else "none"
            return res
        res.from_domain = froms[0]
        try:
            record, from_org = await self._dmarc_record(res.from_domain)
        except DnsTemporary:
            res.dmarc = "temperror"
            return res
        if record is None:
            return res
        spf_ok = res.spf == "pass" and aligned(res.spf_domain, res.from_domain, record.aspf)
        dkim_ok = any(d.result == "pass" and aligned(d.domain, res.from_domain, record.adkim) for d in res.dkim)
        res.dmarc_policy = record.sp if from_org else record.p
        res.dmarc = "pass" if spf_ok or dkim_ok else "fail"
        return res
