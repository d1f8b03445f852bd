"""aiosmtpd's protocol, adjusted where a production MTA needs more than it gives.

* Every reply carries an RFC 3463 enhanced status code, including
  aiosmtpd's own ("250 OK" → "250 2.0.0 OK"), because we advertise
  ENHANCEDSTATUSCODES (RFC 2034); EHLO also advertises PIPELINING
  (RFC 2920: aiosmtpd already answers pipelined commands in order).
* DATA is read in large chunks, scanning for `CRLF.CRLF` and undoing
  dot-stuffing in bulk (RFC 5321 §4.5.2), instead of aiosmtpd's
  line-by-line loop (~20 ms of CPU per MiB, COMPONENTS.md). Bytes beyond the
  limit are counted and discarded, never buffered, and the reply is 552
  after the final dot (§4.2.5 asks to answer only then).
* Implicit TLS (port 465, RFC 8314): aiosmtpd only counts STARTTLS as TLS
  (its issue 281), so the 465 listener is built with `implicit_tls=True`,
  which makes AUTH available and records the TLS session for `Received:`.
* AUTH calls the foundation's async `AuthService` (aiosmtpd's authenticator
  hook is synchronous), so a login never blocks the loop.
* Connections per listener and per client address are capped (421 4.7.0).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import time
from base64 import b64decode
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from smtp.replies import with_enhanced_code

log = logging.getLogger("smtp.protocol")

TERMINATOR = b"\r\n.\r\n"
_SIMPLE_PATH = re.compile(r"\s*<([A-Za-z0-9!#$&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>(.*)$", re.S)
_TRAILING_DOT = re.compile(r"\s*<([^<>]*@[^<>]*[^.])\.>")
READ_CHUNK = 256 * 1024


class MailSession(Session):
    """aiosmtpd's session plus what our checks need."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.listener = ""
        self.client_ip = ""
        self.account: Any = None  # storage.records.Account after AUTH
        self.tls_info: str | None = None
        self.auth_failures = 0


class MailEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.queue_id = ""
        self.declared_size: int | None = None
        self.recipients: list[Any] = []  # smtp.checks.Recipient, parallel to rcpt_tos
        self.hold: dict[str, Any] | None = None  # Đ6.2.b: the sender's outbound hold, if any
        self.data_started = 0.0

    @property
    def sender(self) -> str:
        """The reverse-path without brackets; "" for the null sender of bounces (RFC 5321 §4.5.5).
        aiosmtpd keeps `mail_from` as "<>" for it (an empty value would mean "no MAIL yet")."""
        return "" if self.mail_from in (None, "<>") else str(self.mail_from)


AuthFunc = Callable[["MailSMTP", str, str, str], Awaitable[tuple[bool, str]]]


class ConnectionLimits:
    """Open connections of one listener, in total and per client address."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open: Counter[str] = Counter()

    def admit(self, ip: str) -> str | None:
        if sum(self.open.values()) >= self.total:
            return "421 4.7.0 Too many connections to this server; try again later"
        if self.open[ip] >= self.per_ip:
            return "421 4.7.0 Too many connections from your address; try again later"
        self.open[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class MailSMTP(SMTP):
    def __init__(self, handler: Any, *, listener: str, implicit_tls: bool = False,
                 limits: ConnectionLimits | None = None, data_timeout: float = 600.0,
                 authenticate: AuthFunc | None = None, offer_auth: bool = True, size_limit: int = 0,
                 **kwargs: Any) -> None:
        if implicit_tls:
            # RFC 8314: the whole connection is TLS; aiosmtpd cannot tell, so do not require STARTTLS for AUTH.
            kwargs["auth_require_tls"] = False
            kwargs["tls_context"] = None
        # SIZE is enforced here (at MAIL with our own text, and while reading DATA), not by aiosmtpd.
        kwargs["data_size_limit"] = None
        super().__init__(handler, **kwargs)
        self.size_limit = size_limit
        self.listener = listener
        self.implicit_tls = implicit_tls
        self.limits = limits
        self.data_timeout = data_timeout
        self._authenticate_async = authenticate
        self.offer_auth = offer_auth and authenticate is not None
        self._admitted_ip: str | None = None
        self._rejected = False
        self._plain_replies = False  # EHLO/HELO lines carry no enhanced code (RFC 2034 §3)
        self._greeted = False

    # ------------------------------------------------------------------ state

    def _create_session(self) -> MailSession:
        return MailSession(self.loop)

    def _create_envelope(self) -> MailEnvelope:
        return MailEnvelope()

    @property
    def is_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def _tls_description(self, transport: asyncio.BaseTransport) -> str | None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        cipher = ssl_object.cipher()
        return f"{ssl_object.version()} with cipher {cipher[0]} ({cipher[2]} bits)" if cipher else "TLS"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        seen_starttls = self._original_transport is not None
        if not seen_starttls and self.limits is not None:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if peer else "?"
            refusal = self.limits.admit(ip)
            if refusal is not None:
                self._rejected = True
                transport.write(refusal.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                log.info("refused connection from %s: %s", ip, refusal)
                return
            self._admitted_ip = ip
        super().connection_made(transport)
        assert self.session is not None
        session: MailSession = self.session  # type: ignore[assignment]
        session.listener = self.listener
        peer = session.peer
        session.client_ip = peer[0] if isinstance(peer, tuple) else str(peer)
        if self.implicit_tls or seen_starttls:
            session.tls_info = self._tls_description(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._rejected:
            return
        if self._admitted_ip is not None and self.limits is not None:
            self.limits.release(self._admitted_ip)
            self._admitted_ip = None
        super().connection_lost(error)

    # ------------------------------------------------------------------ shutdown (SIGTERM)

    @property
    def in_transaction(self) -> bool:
        """MAIL was accepted and the reply after DATA not yet sent: the drain lets this finish."""
        return self.envelope is not None and self.envelope.mail_from is not None

    def close_for_shutdown(self) -> None:
        """RFC 5321 §3.8: 421 and close; the client tries again later (nothing unacknowledged is lost)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.3.2 Service shutting down, please try again later\r\n")
            self.transport.close()

    # ------------------------------------------------------------------ replies

    async def push(self, status: Any) -> None:
        if not self._greeted:
            self._greeted = True  # the 220 greeting carries no enhanced code (RFC 2034 §3)
        elif isinstance(status, str) and not self._plain_replies:
            status = "\r\n".join(with_enhanced_code(line) for line in status.split("\r\n"))
        await super().push(status)

    # ------------------------------------------------------------------ EHLO

    async def _start_session(self, verb: str, hostname: str, extended: bool) -> bool:
        """Common to EHLO and HELO (RFC 5321 §4.1.1.1): a name is required, the transaction resets."""
        if not hostname:
            await self.push(f"501 5.5.4 Syntax: {verb} hostname")
            return False
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = extended
        # aiosmtpd's MAIL needs host_name; a custom EHLO must set it itself (COMPONENTS.md)
        self.session.host_name = hostname
        return True

    async def _push_plain(self, lines: list[str]) -> None:
        """EHLO/HELO reply lines: no enhanced codes there (RFC 2034 §3)."""
        self._plain_replies = True
        try:
            for n, line in enumerate(lines):
                await SMTP.push(self, f"250{'-' if n < len(lines) - 1 else ' '}{line}")
        finally:
            self._plain_replies = False

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._start_session("EHLO", hostname, True):
            return
        lines = [self.hostname, "PIPELINING", f"SIZE {self.size_limit}", "8BITMIME"]
        self.command_size_limits["MAIL"] = max(self.command_size_limits["MAIL"], 512 + 26 + 10 + 16)
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        if self.tls_context and not self.is_tls:
            lines.append("STARTTLS")
        if self.offer_auth and self.is_tls:
            lines.append("AUTH PLAIN LOGIN")
        lines.append("ENHANCEDSTATUSCODES")
        status = await self._call_handler_hook("EHLO", hostname, lines)
        if status is not MISSING and status is not None:
            lines = status
        await self._push_plain(lines)

    async def smtp_HELO(self, hostname: str) -> None:
        if await self._start_session("HELO", hostname, False):
            await self._push_plain([self.hostname])

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # A fully qualified domain with its trailing dot (`<user@phuyen.gov.vn.>`) is the same domain;
        # aiosmtpd's parser calls it malformed, so drop that one dot before parsing.
        m = _TRAILING_DOT.match(arg)
        if m:
            arg = arg[: m.end(1)] + arg[m.end(1) + 1 :]
        # The common case, a plain <local@domain>, without email's full RFC 5322 parser (~1 ms per call).
        simple = _SIMPLE_PATH.match(arg)
        if simple:
            return simple.group(1), simple.group(2)
        return super()._getaddr(arg)

    # ------------------------------------------------------------------ AUTH (RFC 4954)

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.offer_auth:
            await self.push("503 5.5.1 AUTH is not available on this port; staff send through submission "
                            "(587 with STARTTLS, or 465)")
            return
        if not self.is_tls:
            await self.push("538 5.7.11 Encryption required: use STARTTLS before AUTH")
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode the base64 credentials")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        try:
            _authzid, login, password = blob.split(b"\0")  # RFC 4616 §2
        except ValueError:
            await self.push("501 5.5.2 AUTH PLAIN needs authzid NUL login NUL password")
            return AuthResult(success=False, handled=True)
        return await self._check_login("PLAIN", login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode the base64 user name")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._check_login("LOGIN", login, password)

    async def _check_login(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        assert self._authenticate_async is not None
        try:
            user, pw = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            await self.push("501 5.5.2 Credentials must be UTF-8")
            return AuthResult(success=False, handled=True)
        ok, reply = await self._authenticate_async(self, mechanism, user, pw)
        if ok:
            return AuthResult(success=True, handled=False, auth_data=user, message=reply)
        await self.push(reply)
        if reply.startswith("421"):
            assert self.transport is not None
            self.transport.close()
        return AuthResult(success=False, handled=True)

    # ------------------------------------------------------------------ DATA (RFC 5321 §4.1.1.4)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        envelope: MailEnvelope = self.envelope  # type: ignore[assignment]
        envelope.data_started = time.monotonic()
        content, too_big = await self._read_data()
        if content is None:
            return  # connection gone
        if too_big or (self.size_limit and len(content) > self.size_limit):
            self._set_post_data_state()
            # Đ7.3.b: the limit is derived from the 15 MB attachment limit (base64 adds a third)
            await self.push(f"552 5.3.4 Message exceeds the size limit of {self.size_limit / 1e6:.1f} MB "
                            f"({self.size_limit} bytes)")
            return
        envelope.content = content
        envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 2.0.0 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes | None, bool]:
        """The message between 354 and CRLF.CRLF, dot-stuffing undone; (None, _) if the client left."""
        reader = self._reader
        limit = self.size_limit
        # Leading CRLF so a message that is only "." or starts with "." is handled by the same scan.
        buf = bytearray(b"\r\n")
        scanned = 0
        received = 0
        too_big = False
        deadline = time.monotonic() + self.data_timeout
        while True:
            found = buf.find(TERMINATOR, max(0, scanned - 4))
            if found >= 0:
                leftover = bytes(buf[found + len(TERMINATOR):])
                if leftover:
                    # Pipelined commands after the final dot (RFC 2920): give them back to the reader.
                    reader._buffer[:0] = leftover  # type: ignore[attr-defined]
                if too_big:
                    return b"", True
                body = bytes(buf[: found + 2])  # keeps the last line's CRLF; drops the leading one below
                return body.replace(b"\r\n.", b"\r\n")[2:], False
            scanned = len(buf)
            if too_big and len(buf) > 8:
                # Over the limit: keep only the tail needed to find the terminator.
                del buf[:-4]
                scanned = len(buf)
            if time.monotonic() > deadline:
                await self.push("451 4.4.2 DATA took too long; closing")
                assert self.transport is not None
                self.transport.close()
                return None, False
            try:
                chunk = await reader.read(READ_CHUNK)
            except (asyncio.CancelledError, ConnectionError):
                self._writer.close()
                raise
            if not chunk:
                return None, False
            self._reset_timeout()
            received += len(chunk)
            buf += chunk
            if limit and received > limit + 5 + limit // 50:
                # a little room for dot-stuffing; the exact size is checked after un-stuffing
                too_big = True
