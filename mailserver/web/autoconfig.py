"""Automatic client setup: Thunderbird autoconfig and Outlook (POX) autodiscover documents.

Both documents are built from `mailserver.endpoints`, so they carry the
host name and ports of mailserver.yaml and never disagree with the DNS SRV
records `mailserver dns records` prints.

Thunderbird (the "config-v1.1.xml" format) asks
`https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=...` and then
`https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`. Its reader
takes the first `incomingServer`/`outgoingServer` it understands and keeps
the others as alternatives, so implicit TLS is listed first (RFC 8314).
`socketType` is `SSL` (implicit TLS) or `STARTTLS`; `password-cleartext` is
the right authentication because the server offers PLAIN/LOGIN only inside
TLS.

Outlook POSTs a request in the
`.../autodiscover/outlook/requestschema/2006` namespace to
`/autodiscover/autodiscover.xml` (some versions capitalise the path) and
expects one `Protocol` per type in the `.../outlook/responseschema/2006a`
namespace. `Encryption` (`SSL` = implicit TLS, `TLS` = STARTTLS) overrides
the older on/off `SSL` element in Outlook 2010 and later. Errors are an
`Error` element with the POX codes: 500 address not found here, 600 invalid
request, 601 response schema not available.

Neither document says whether an account exists: the answer is the same
for every address of a served domain, so autodiscover cannot be used to
enumerate mailboxes.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from mailserver.endpoints import Endpoint, client_endpoints, preferred
from policy.settings import Settings

OUTLOOK_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK_RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
AUTODISCOVER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"

PROVIDER_NAME = "Thư điện tử công vụ tỉnh Phú Yên"
MAX_REQUEST_BYTES = 16 * 1024  # an autodiscover request is a few hundred bytes


def domain_of(address: str) -> str | None:
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    return domain.rstrip(".").lower()


# ------------------------------------------------------------------ Thunderbird


def _thunderbird_server(e: Endpoint) -> list[str]:
    tag = "incomingServer" if e.kind == "imap" else "outgoingServer"
    return [
        f'    <{tag} type="{e.kind}">',
        f"      <hostname>{escape(e.host)}</hostname>",
        f"      <port>{e.port}</port>",
        f"      <socketType>{e.security}</socketType>",
        "      <authentication>password-cleartext</authentication>",
        "      <username>%EMAILADDRESS%</username>",
        f"    </{tag}>",
    ]


def thunderbird_config(settings: Settings) -> bytes:
    """The clientConfig document for every domain this server serves."""
    endpoints = client_endpoints(settings)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f"  <emailProvider id={quoteattr(settings.primary_domain)}>",
        *(f"    <domain>{escape(d)}</domain>" for d in settings.domains),
        f"    <displayName>{escape(PROVIDER_NAME)}</displayName>",
        f"    <displayShortName>{escape(settings.primary_domain)}</displayShortName>",
    ]
    for kind in ("imap", "smtp"):
        for e in endpoints:
            if e.kind == kind:
                lines += _thunderbird_server(e)
    lines += [
        f"    <documentation url={quoteattr(settings.account_url)}>",
        '      <descr lang="vi">Đổi mật khẩu và xem dung lượng hộp thư</descr>',
        '      <descr lang="en">Change your password and see your mailbox quota</descr>',
        "    </documentation>",
        "  </emailProvider>",
        "</clientConfig>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


# ------------------------------------------------------------------ Outlook


class AutodiscoverError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_outlook_request(body: bytes) -> str:
    """The EMailAddress of a POX request; AutodiscoverError for anything else."""
    if len(body) > MAX_REQUEST_BYTES:
        raise AutodiscoverError(600, "Invalid Request")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise AutodiscoverError(600, "Invalid Request")  # no DTDs: no entity expansion tricks
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise AutodiscoverError(600, "Invalid Request") from None
    ns = {"a": OUTLOOK_REQUEST_NS}
    if root.tag != f"{{{OUTLOOK_REQUEST_NS}}}Autodiscover":
        raise AutodiscoverError(600, "Invalid Request")
    address = (root.findtext("a:Request/a:EMailAddress", default="", namespaces=ns) or "").strip()
    schema = (root.findtext("a:Request/a:AcceptableResponseSchema", default="", namespaces=ns) or "").strip()
    if not address:
        raise AutodiscoverError(600, "Invalid Request")
    if schema != OUTLOOK_RESPONSE_SCHEMA:
        raise AutodiscoverError(601, "Provider is not available")
    return address


def _outlook_protocol(e: Endpoint, address: str) -> list[str]:
    lines = [
        "      <Protocol>",
        f"        <Type>{'IMAP' if e.kind == 'imap' else 'SMTP'}</Type>",
        f"        <Server>{escape(e.host)}</Server>",
        f"        <Port>{e.port}</Port>",
        "        <DomainRequired>off</DomainRequired>",
        f"        <LoginName>{escape(address)}</LoginName>",
        "        <SPA>off</SPA>",
        "        <SSL>on</SSL>",
        f"        <Encryption>{'SSL' if e.implicit_tls else 'TLS'}</Encryption>",
        "        <AuthRequired>on</AuthRequired>",
    ]
    if e.kind == "smtp":
        lines += ["        <UsePOPAuth>off</UsePOPAuth>", "        <SMTPLast>off</SMTPLast>"]
    return [*lines, "      </Protocol>"]


def outlook_response(settings: Settings, address: str) -> bytes:
    domain = domain_of(address)
    if domain is None or domain not in settings.domains:
        raise AutodiscoverError(500, "The email address cannot be found.")
    address = address.strip().lower()
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{AUTODISCOVER_NS}">',
        f'  <Response xmlns="{OUTLOOK_RESPONSE_SCHEMA}">',
        "    <User>",
        f"      <DisplayName>{escape(address)}</DisplayName>",
        f"      <AutoDiscoverSMTPAddress>{escape(address)}</AutoDiscoverSMTPAddress>",
        "    </User>",
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    for kind in ("imap", "smtp"):
        endpoint = preferred(settings, kind)
        if endpoint is not None:
            lines += _outlook_protocol(endpoint, address)
    lines += ["    </Account>", "  </Response>", "</Autodiscover>", ""]
    return "\n".join(lines).encode("utf-8")


def outlook_error(error: AutodiscoverError, now: datetime) -> bytes:
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{AUTODISCOVER_NS}">',
        "  <Response>",
        f'    <Error Time="{now:%H:%M:%S.%f}" Id="{secrets.randbelow(2**31)}">',
        f"      <ErrorCode>{error.code}</ErrorCode>",
        f"      <Message>{escape(error.message)}</Message>",
        "      <DebugData />",
        "    </Error>",
        "  </Response>",
        "</Autodiscover>",
        "",
    ]).encode("utf-8")
