"""Every DNS record a mail domain needs, as zone-file lines an operator can paste.

Outside mail servers find us by MX and A/AAAA, judge our mail by SPF, DKIM
and DMARC (REQUIREMENTS.md: "so that mail from the domain is not marked as
spam elsewhere"), and Outlook and Thunderbird find their settings by the
`autoconfig`/`autodiscover` names and the SRV records of RFC 6186 (IMAP,
submission) and RFC 8314 (implicit TLS: `_imaps`, `_submissions`). Host
names and ports come from mailserver.yaml through `mailserver.endpoints`,
the same list the autoconfig documents use, so the two cannot disagree.

What this module cannot know is written as a comment line (`;`) telling
the operator what to do: the public IP addresses when they are not given,
a DKIM key not generated yet, the reverse DNS that only the network
provider can set. Comments keep the output a valid zone-file fragment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailserver.endpoints import CLIENT_LISTENERS
from policy.settings import Settings
from smtp.signing import GeneratedKey, quoted_txt

TTL = 3600
# RFC 8314 §5.1: implicit TLS is preferred, so it gets the lower (better) SRV priority.
SRV_PRIORITY = {"SSL": 0, "STARTTLS": 10}


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, with the final dot
    type: str
    value: str  # the record data as written in a zone file
    why: str

    def line(self) -> str:
        return f"{self.name:<34} {TTL} IN {self.type:<5} {self.value}"

    def public(self) -> dict[str, str | int]:
        return {"name": self.name, "ttl": TTL, "type": self.type, "value": self.value, "why": self.why}


def fqdn(name: str) -> str:
    return name.rstrip(".") + "."


def listener_addresses(settings: Settings) -> list[str]:
    """Public addresses the listeners are bound to, when they are explicit and not loopback or private."""
    out = []
    for _, listener in settings.listeners.items():
        try:
            addr = ipaddress.ip_address(listener.host)
        except ValueError:
            continue
        if addr.is_global and str(addr) not in out:
            out.append(str(addr))
    return out


def mail_records(settings: Settings, domain: str, *, ipv4: list[str], ipv6: list[str],
                 dkim: list[GeneratedKey]) -> tuple[list[Record], list[str]]:
    """(records, comment lines for what the operator must still do)."""
    host = fqdn(settings.hostname)
    zone = fqdn(domain)
    notes: list[str] = []
    records = [Record(zone, "MX", f"10 {host}", f"mail for @{domain} is delivered to {settings.hostname}")]

    addresses = ipv4 + ipv6 or listener_addresses(settings)
    for addr in addresses:
        kind = "A" if ipaddress.ip_address(addr).version == 4 else "AAAA"
        records.append(Record(host, kind, addr, "the address of the mail server"))
    if not addresses:
        notes.append(f"A/AAAA: give the public address of {settings.hostname} with --ipv4/--ipv6 "
                     "to print its A and AAAA records")
    else:
        notes.append("PTR: ask the network provider to point the reverse DNS of "
                     f"{', '.join(addresses)} to {host} (many receivers refuse mail without it)")

    records.append(Record(zone, "TXT", quoted_txt("v=spf1 mx -all"),
                          f"SPF: only the MX host sends mail for @{domain}; everything else fails"))
    for key in dkim:
        active = " (signing now)" if key.selector == settings.dkim.selector else ""
        records.append(Record(fqdn(key.record_name), "TXT", quoted_txt(key.record),
                              f"DKIM public key, {key.algorithm}, selector {key.selector}{active}"))
    if not dkim:
        notes.append(f"DKIM: no key for {domain} yet; run `mailserver dkim keygen --domain {domain} "
                     f"--selector {settings.dkim.selector}`, then run this command again to print the DKIM record")
    records.append(Record(f"_dmarc.{zone}", "TXT",
                          quoted_txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
                          "DMARC: mail failing SPF and DKIM goes to spam; daily reports to postmaster@"))

    for name in ("autoconfig", "autodiscover"):
        records.append(Record(f"{name}.{zone}", "CNAME", host,
                              f"{'Thunderbird' if name == 'autoconfig' else 'Outlook'} finds its settings here"))

    # RFC 6186 (and RFC 8314 for the implicit-TLS names): where clients connect.
    for listener_name, _kind, security in CLIENT_LISTENERS:
        listener = getattr(settings.listeners, listener_name)
        # RFC 6186 §4: a target of "." says the service is not offered
        value = f"{SRV_PRIORITY[security]} 1 {listener.port} {host}" if listener.enabled else "0 0 0 ."
        records.append(Record(f"_{listener_name}._tcp.{zone}", "SRV", value,
                              f"{listener_name} ({'implicit TLS' if security == 'SSL' else 'STARTTLS'})"))
    for pop in ("pop3", "pop3s"):
        records.append(Record(f"_{pop}._tcp.{zone}", "SRV", "0 0 0 .", "POP3 is not offered (RFC 6186 §4)"))
    web = settings.listeners.web
    if web.enabled and web.tls:
        records.append(Record(f"_autodiscover._tcp.{zone}", "SRV", f"0 1 {web.port} {host}",
                              "Outlook's fallback when autodiscover.<domain> does not answer"))
    return records, notes


def zone_text(domain: str, records: list[Record], notes: list[str]) -> str:
    lines = [f"; DNS records for {domain} (mailserver dns records)"]
    lines += [f"; TODO {n}" for n in notes]
    for r in records:
        lines.append(f"; {r.why}")
        lines.append(r.line())
    return "\n".join(lines) + "\n"
