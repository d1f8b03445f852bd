"""Thunderbird autoconfig and Outlook autodiscover documents, validated as those clients read them.

The Thunderbird checks follow what its reader (accountcreation's
readFromXML) requires of each server: a known `type`, a host name, a port
in 1..65535, a `username`, a `socketType` of plain/SSL/STARTTLS and an
`authentication` it knows; it takes the first valid server and keeps the
rest as alternatives. The Outlook checks follow the POX schema: the
response namespace Outlook asked for, `AccountType` email, `Action`
settings, one `Protocol` per type with `Server`, `Port`, `LoginName` and
`Encryption` (SSL = implicit TLS, TLS = STARTTLS), and the POX error codes.
Host names and ports must be those of the configuration.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from mailserver.app import App
from policy.loader import load
from tests.helpers import write_config
from tests.webtest import running_web

pytestmark = pytest.mark.asyncio

HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
TB_INCOMING_TYPES = {"pop3", "imap", "nntp", "exchange"}
TB_SOCKET_TYPES = {"plain", "SSL", "STARTTLS"}
TB_AUTH = {"password-cleartext", "plain", "password-encrypted", "secure", "GSSAPI", "NTLM", "OAuth2"}
TB_OUT_AUTH = TB_AUTH | {"none", "client-IP-address", "smtp-after-pop"}

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
OUTER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"


def thunderbird_servers(document: str) -> tuple[ET.Element, list[dict], list[dict]]:
    """Parse as Thunderbird does; every server must be one Thunderbird accepts."""
    root = ET.fromstring(document)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and HOSTNAME_RE.match(provider.get("id", ""))
    domains = [d.text for d in provider.findall("domain")]
    assert domains and all(HOSTNAME_RE.match(d or "") for d in domains)

    def server(el: ET.Element, allowed_auth: set[str]) -> dict:
        port = int(el.findtext("port", "0"))
        assert 1 <= port <= 65535
        host = el.findtext("hostname", "")
        assert HOSTNAME_RE.match(host), host
        assert el.findtext("username"), "Thunderbird needs a username even for password logins"
        socket = el.findtext("socketType")
        assert socket in TB_SOCKET_TYPES
        assert el.findtext("authentication") in allowed_auth
        return {"type": el.get("type"), "host": host, "port": port, "socket": socket,
                "username": el.findtext("username"), "auth": el.findtext("authentication")}

    incoming = [server(el, TB_AUTH) for el in provider.findall("incomingServer")]
    assert all(s["type"] in TB_INCOMING_TYPES for s in incoming)
    outgoing = [server(el, TB_OUT_AUTH) for el in provider.findall("outgoingServer")]
    assert all(s["type"] == "smtp" for s in outgoing)
    assert incoming and outgoing
    return provider, incoming, outgoing


def outlook_request(address: str, schema: str = RESPONSE_NS) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="{REQUEST_NS}">
  <Request>
    <EMailAddress>{address}</EMailAddress>
    <AcceptableResponseSchema>{schema}</AcceptableResponseSchema>
  </Request>
</Autodiscover>""".encode()


def outlook_protocols(document: str) -> dict[str, dict]:
    root = ET.fromstring(document)
    assert root.tag == f"{{{OUTER_NS}}}Autodiscover"
    response = root.find(f"{{{RESPONSE_NS}}}Response")
    assert response is not None, "the Response must be in the schema Outlook asked for"
    ns = {"r": RESPONSE_NS}
    account = response.find("r:Account", ns)
    assert account.findtext("r:AccountType", namespaces=ns) == "email"
    assert account.findtext("r:Action", namespaces=ns) == "settings"
    out = {}
    for p in account.findall("r:Protocol", ns):
        kind = p.findtext("r:Type", namespaces=ns)
        assert kind in {"IMAP", "SMTP", "POP3"} and kind not in out, "one Protocol per type"
        fields = {child.tag.split("}")[1]: child.text for child in p}
        assert HOSTNAME_RE.match(fields["Server"])
        assert 1 <= int(fields["Port"]) <= 65535
        assert fields["Encryption"] in {"None", "SSL", "TLS", "Auto"}
        for onoff in ("SSL", "SPA", "AuthRequired", "DomainRequired"):
            assert fields[onoff] in {"on", "off"}
        out[kind] = fields
    return out


def outlook_error_code(document: str) -> str:
    root = ET.fromstring(document)
    code = root.find(f".//{{{OUTER_NS}}}ErrorCode")
    assert code is not None, document
    return code.text or ""


@pytest.fixture
async def served(tmp_path):
    cfg = write_config(tmp_path)
    app = await App.open(loaded=load(cfg))
    async with running_web(app) as w:
        yield w
    await app.close()


def ports(app) -> dict[str, int]:
    return {name: getattr(app.settings.listeners, name).port for name in ("imap", "imaps", "submission",
                                                                          "submissions")}


# ---------------------------------------------------------------- Thunderbird


async def test_thunderbird_autoconfig_has_the_configured_hosts_and_ports(served):
    p = ports(served.app)
    async with served.client() as c:
        for path in ("/mail/config-v1.1.xml?emailaddress=nguyenvana%40phuyen.gov.vn",
                     "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=nguyenvana@phuyen.gov.vn",
                     "/.well-known/autoconfig/mail/config-v1.1.xml"):
            page = await c.get(path)
            assert page.status == 200 and page.headers["Content-Type"].startswith("application/xml")
            provider, incoming, outgoing = thunderbird_servers(page.text)
            assert provider.get("id") == "phuyen.gov.vn"
            assert [d.text for d in provider.findall("domain")] == ["phuyen.gov.vn"]
            # implicit TLS first (RFC 8314), STARTTLS as the alternative
            assert [(s["type"], s["host"], s["port"], s["socket"]) for s in incoming] == [
                ("imap", "mail.phuyen.gov.vn", p["imaps"], "SSL"),
                ("imap", "mail.phuyen.gov.vn", p["imap"], "STARTTLS"),
            ]
            assert [(s["host"], s["port"], s["socket"]) for s in outgoing] == [
                ("mail.phuyen.gov.vn", p["submissions"], "SSL"),
                ("mail.phuyen.gov.vn", p["submission"], "STARTTLS"),
            ]
            assert {s["username"] for s in incoming + outgoing} == {"%EMAILADDRESS%"}
            assert {s["auth"] for s in incoming + outgoing} == {"password-cleartext"}


async def test_thunderbird_autoconfig_refuses_other_domains(served):
    async with served.client() as c:
        page = await c.get("/mail/config-v1.1.xml?emailaddress=someone@gmail.com")
        assert page.status == 404


async def test_disabled_listeners_are_not_offered_to_clients(tmp_path):
    cfg = write_config(tmp_path)
    text = cfg.read_text().replace("  imap: {host: 127.0.0.1,", "  imap: {enabled: false, host: 127.0.0.1,")
    text = text.replace("  submissions: {host: 127.0.0.1,", "  submissions: {enabled: false, host: 127.0.0.1,")
    cfg.write_text(text)
    app = await App.open(loaded=load(cfg))
    try:
        async with running_web(app) as w, w.client() as c:
            _, incoming, outgoing = thunderbird_servers((await c.get("/mail/config-v1.1.xml")).text)
            assert [s["socket"] for s in incoming] == ["SSL"] and [s["socket"] for s in outgoing] == ["STARTTLS"]
            protocols = outlook_protocols((await c.post_raw(outlook_request("a@phuyen.gov.vn"))).text)
            assert protocols["SMTP"]["Port"] == str(app.settings.listeners.submission.port)
            assert protocols["SMTP"]["Encryption"] == "TLS"
    finally:
        await app.close()


# ---------------------------------------------------------------- Outlook


async def test_outlook_autodiscover_pox_response(served):
    p = ports(served.app)
    async with served.client() as c:
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
            page = await c.post_raw(outlook_request("NguyenVanA@phuyen.gov.vn"), path)
            assert page.status == 200 and page.headers["Content-Type"].startswith("application/xml")
            protocols = outlook_protocols(page.text)
            assert set(protocols) == {"IMAP", "SMTP"}
            imap, smtp = protocols["IMAP"], protocols["SMTP"]
            assert (imap["Server"], imap["Port"], imap["Encryption"], imap["SSL"]) == (
                "mail.phuyen.gov.vn", str(p["imaps"]), "SSL", "on")
            assert (smtp["Server"], smtp["Port"], smtp["Encryption"]) == (
                "mail.phuyen.gov.vn", str(p["submissions"]), "SSL")
            assert imap["LoginName"] == smtp["LoginName"] == "nguyenvana@phuyen.gov.vn"
            assert imap["AuthRequired"] == smtp["AuthRequired"] == "on" and imap["SPA"] == "off"


async def test_outlook_autodiscover_errors_use_the_pox_codes(served):
    async with served.client() as c:
        assert outlook_error_code((await c.post_raw(b"not xml")).text) == "600"
        assert outlook_error_code((await c.post_raw(b"<Autodiscover/>")).text) == "600"
        mobile = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
        assert outlook_error_code((await c.post_raw(outlook_request("a@phuyen.gov.vn", mobile))).text) == "601"
        assert outlook_error_code((await c.post_raw(outlook_request("a@example.org"))).text) == "500"
        bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + outlook_request("&a;@phuyen.gov.vn")[21:]
        assert outlook_error_code((await c.post_raw(bomb)).text) == "600"
        assert (await c.get("/autodiscover/autodiscover.xml")).status == 405


async def test_outlook_answer_does_not_reveal_whether_a_mailbox_exists(served):
    await served.app.directory.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="t")
    async with served.client() as c:
        known = (await c.post_raw(outlook_request("stttt@phuyen.gov.vn"))).text
        unknown = (await c.post_raw(outlook_request("khongco@phuyen.gov.vn"))).text
    assert known.replace("stttt", "X") == unknown.replace("khongco", "X")
