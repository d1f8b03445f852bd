"""Commands of any state and of the not-authenticated state (RFC 3501 §6.1, §6.2).

CAPABILITY, NOOP, LOGOUT, ID (RFC 2971), ENABLE (RFC 5161), STARTTLS, LOGIN
and AUTHENTICATE PLAIN (RFC 4616, with SASL-IR, RFC 4959).

Every password goes to the foundation's `AuthService`, which applies the
brute-force limiter shared with SMTP and the web, and the lock states
(policy.lockstate). We only translate its outcome into the response code a
client understands (RFC 5530):

| outcome              | reply                          | what the client does                  |
|----------------------|--------------------------------|---------------------------------------|
| bad credentials      | NO [AUTHENTICATIONFAILED]      | asks for the password again           |
| blocked (limiter)    | NO [UNAVAILABLE]               | shows the text: try again later       |
| suspended (Đ6.1)     | NO [CONTACTADMIN]              | shows the reason and whom to contact  |
| revoked (Đ5.3.b)     | NO [AUTHORIZATIONFAILED]       | shows the reason                      |
| expired / must change| NO [EXPIRED]                   | shows where to change the password    |

A send-locked account (Đ5.3.b) logs in normally: it may still read.
"""

from __future__ import annotations

import binascii
import logging
from typing import TYPE_CHECKING

from imap_gateway import texts, wire
from imap_gateway.commands import ANY, NOT_AUTH, State, command
from imap_gateway.conn import LineTooLong
from imap_gateway.parse import ParseError, Parser
from imap_gateway.responses import REPLIED, No, Ok, line
from storage.auth import Outcome

if TYPE_CHECKING:
    from imap_gateway.session import Session

log = logging.getLogger("imap")

OUTCOME_CODES = {
    Outcome.bad_credentials: "AUTHENTICATIONFAILED",
    Outcome.blocked: "UNAVAILABLE",
    Outcome.suspended: "CONTACTADMIN",
    Outcome.revoked: "AUTHORIZATIONFAILED",
    Outcome.password_expired: "EXPIRED",
    Outcome.must_change: "EXPIRED",
}

SERVER_ID = {"name": "phuyen-mailserver", "vendor": "Phu Yen provincial government", "version": "0.1.0"}
MAX_ID_PAIRS = 30  # RFC 2971 §3.3


@command("CAPABILITY", ANY)
async def cmd_capability(s: Session, tag: str, p: Parser) -> str:
    p.end()
    s.untagged(f"CAPABILITY {s.capabilities()}")
    return "CAPABILITY completed"


@command("NOOP", ANY)
async def cmd_noop(s: Session, tag: str, p: Parser) -> str:
    """Also the classic way to poll: the session sends pending updates before the OK."""
    p.end()
    return "NOOP completed"


@command("LOGOUT", ANY)
async def cmd_logout(s: Session, tag: str, p: Parser) -> str:
    p.end()
    s.untagged(f"BYE {texts.LOGOUT}")
    s.state = State.logout
    return "LOGOUT completed"


@command("ID", ANY)
async def cmd_id(s: Session, tag: str, p: Parser) -> str:
    """RFC 2971: we log what the client says it is (useful when a user reports a problem)."""
    p.sp()
    fields: dict[str, str] = {}
    if not p.take(b"NIL"):
        p.open_paren()
        p.take_sp()  # aioimaplib writes "( ... )" with spaces inside; harmless to accept
        while not p.close_paren():
            if fields:
                p.sp()
                if p.close_paren():
                    break
            key = p.string("a field name").decode("utf-8", "replace")[:30]
            p.sp()
            value = p.nil_or_string()
            if len(fields) < MAX_ID_PAIRS:
                fields[key] = "" if value is None else value.decode("utf-8", "replace")[:1024]
    p.end()
    s.client_id = fields
    if fields:
        log.info("IMAP client %s says %s", s.conn.peer_ip, fields)
    pairs = " ".join(f'"{k}" {wire.string(v).decode()}' for k, v in SERVER_ID.items())
    s.untagged(f"ID ({pairs})")
    return "ID completed"


@command("ENABLE", frozenset({State.authenticated}))
async def cmd_enable(s: Session, tag: str, p: Parser) -> str:
    """RFC 5161 §3.1: only before a folder is selected; QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)."""
    p.sp()
    asked = [p.word("a capability")]
    while p.take_sp():
        asked.append(p.word("a capability"))
    p.end()
    offered = set(s.capabilities().split())
    newly: list[str] = []
    for cap in asked:
        if cap in offered and cap in ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT") and cap not in s.enabled:
            s.enabled.add(cap)
            newly.append(cap)
            if cap == "QRESYNC":
                s.enabled.add("CONDSTORE")
    s.untagged("ENABLED" + "".join(" " + c for c in newly))
    return "ENABLE completed"


@command("STARTTLS", NOT_AUTH)
async def cmd_starttls(s: Session, tag: str, p: Parser) -> Ok:
    p.end()
    if s.conn.is_tls:
        raise No(None, "TLS is already active", status="BAD")
    ctx = s.server.ssl_context
    if ctx is None:
        raise No(None, "STARTTLS is not available", status="BAD")
    s.send(line(tag, "OK", "begin TLS negotiation now"))
    await s.drain()
    await s.conn.start_tls(ctx)
    return REPLIED


@command("LOGIN", NOT_AUTH)
async def cmd_login(s: Session, tag: str, p: Parser) -> Ok:
    p.sp()
    user = p.astring("a user name")
    p.sp()
    password = p.astring("a password")
    p.end()
    if not s.login_allowed:
        raise No("PRIVACYREQUIRED", texts.TLS_FIRST)
    return await authenticate(s, _utf8(user, "user name"), _utf8(password, "password"))


@command("AUTHENTICATE", NOT_AUTH)
async def cmd_authenticate(s: Session, tag: str, p: Parser) -> Ok:
    p.sp()
    mechanism = p.word("a SASL mechanism")
    initial: bytes | None = None
    if p.take_sp():
        initial = p.atom("an initial response").encode("ascii")  # RFC 4959: base64 or "="
    p.end()
    if mechanism != "PLAIN":
        raise No(None, f"unsupported SASL mechanism {mechanism}; use PLAIN")
    if not s.login_allowed:
        raise No("PRIVACYREQUIRED", texts.TLS_FIRST)
    if initial is None:
        s.send(b"+ \r\n")  # RFC 4616: PLAIN has no challenge, the server sends an empty one
        await s.drain()
        try:
            initial = (await s.conn.readline(8192)).rstrip(b"\r\n")
        except LineTooLong:
            raise No(None, "authentication data too long", status="BAD") from None
        if initial == b"*":  # RFC 3501 §6.2.2: the client cancelled
            raise No(None, "AUTHENTICATE cancelled", status="BAD")
    try:
        decoded = b"" if initial == b"=" else binascii.a2b_base64(initial, strict_mode=True)
    except binascii.Error:
        raise No(None, "invalid base64 in the SASL response", status="BAD") from None
    parts = decoded.split(b"\x00")
    if len(parts) != 3:
        raise No(None, "a PLAIN response is authzid NUL authcid NUL password", status="BAD")
    authzid, authcid, password = (_utf8(x, "SASL response") for x in parts)
    if authzid and authzid.lower() != authcid.lower():
        raise No("AUTHORIZATIONFAILED", texts.both("logging in as another user is not allowed",
                                                   "không được đăng nhập thay người khác"))
    return await authenticate(s, authcid, password)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"the {what} is not valid UTF-8") from None


async def authenticate(s: Session, address: str, password: str) -> Ok:
    server = s.server
    result = await server.auth.authenticate(address, password, client_ip=s.conn.peer_ip, protocol="imap")
    if not result.ok or result.account is None:
        code = OUTCOME_CODES.get(result.outcome, "AUTHENTICATIONFAILED")
        log.info("IMAP login refused for %s from %s: %s", address, s.conn.peer_ip, result.outcome.value)
        raise No(code, result.text or texts.both("login refused", "đăng nhập bị từ chối"))
    await server.login(s, result.account)
    return Ok(texts.LOGIN_OK, f"CAPABILITY {s.capabilities()}")
