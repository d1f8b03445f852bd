"""`mailserver dns records`: the DNS records a mail domain needs (MX, A, SPF, DKIM, DMARC, CNAMEs, SRV)."""

from __future__ import annotations

import argparse
import ipaddress

from mailserver.cli.common import Context, out, served_domain
from policy.errors import ValidationFailed


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dns", help="DNS records the service needs")
    dsub = p.add_subparsers(dest="dns_command", metavar="ACTION", required=True)
    rec = dsub.add_parser(
        "records", parents=parents, help="print every record of a mail domain as zone-file lines",
        description="MX, A/AAAA, SPF, DKIM, DMARC, the autoconfig/autodiscover CNAMEs and the SRV records of "
        "RFC 6186 and RFC 8314, with the host name and ports of mailserver.yaml. What cannot be known here "
        "(the public address, a DKIM key not generated yet) is printed as a `; TODO` comment.",
    )
    rec.add_argument("--domain", help="a domain this server serves (default: the primary one)")
    rec.add_argument("--ipv4", action="append", default=[], metavar="ADDRESS",
                     help="public IPv4 address of the mail host (repeatable)")
    rec.add_argument("--ipv6", action="append", default=[], metavar="ADDRESS",
                     help="public IPv6 address of the mail host (repeatable)")
    rec.set_defaults(handler=records)


def _addresses(values: list[str], version: int, field: str) -> list[str]:
    out = []
    for v in values:
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            raise ValidationFailed(field, f'"{v}" is not an IP address') from None
        if addr.version != version:
            raise ValidationFailed(field, f'"{v}" is not an IPv{version} address')
        out.append(str(addr))
    return out


async def records(ctx: Context, args: argparse.Namespace) -> int:
    # Loaded here: the DKIM code pulls in dkimpy and PyNaCl, which other commands do not need.
    from mailserver.dnsrecords import mail_records, zone_text
    from smtp.signing import published_keys

    settings = ctx.loaded.settings  # no database needed: records follow the configuration
    domain = served_domain(settings.domains, args.domain)
    ipv4 = _addresses(args.ipv4, 4, "ipv4")
    ipv6 = _addresses(args.ipv6, 6, "ipv6")
    recs, notes = mail_records(settings, domain, ipv4=ipv4, ipv6=ipv6,
                               dkim=published_keys(settings.dkim_keys, domain))
    out(ctx, {"domain": domain, "records": [r.public() for r in recs], "todo": notes},
        lambda: zone_text(domain, recs, notes).rstrip("\n"))
    return 0
