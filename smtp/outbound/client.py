"""One client connection to a remote SMTP server, on aiosmtplib.

aiosmtplib does the connection, EHLO, STARTTLS (RFC 3207) and AUTH; what a
sending MTA needs beyond it lives here:

* PIPELINING (RFC 2920): MAIL, every RCPT and DATA go out in one write and
  their replies are read in order. aiosmtplib's protocol parses one reply
  per read and drops bytes that arrive while a parsed reply waits, which is
  exactly what a pipelining server sends, so after the greeting the
  connection switches to `ReplyQueueProtocol`, which queues every complete
  reply.
* Timeouts per command, as RFC 5321 §4.5.3.2 lists them (MAIL 5 min, RCPT
  5 min, DATA initiation 2 min, each data block 3 min, the final dot
  10 min), and a short TCP connect timeout, so a dead address costs 30 s,
  not 5 minutes.
* The body is streamed from the queue file in blocks, dot-stuffed on the
  way (RFC 5321 §4.5.2), never held whole in memory.
* SIZE (RFC 1870), BODY=8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531) are
  declared when offered and needed; `incompatible()` says when a server
  cannot take a message at all (too big, 8-bit or UTF-8 it does not
  accept), which is a permanent failure rather than something to retry,
  because converting the message would break its DKIM signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
from aiosmtplib.errors import SMTPException, SMTPReadTimeoutError, SMTPServerDisconnected
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from policy.settings import OutboundTimeouts
from smtp.outbound.routing import Hop, Route
from smtp.replies import DEFAULT_ENHANCED, Reply

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_REPLY_TEXT = 600
MAX_BUFFERED = 1024 * 1024


def remote_reply(code: int, message: str) -> Reply:
    """A server's reply as a `Reply`: its enhanced code when it gave one (RFC 3463), the text on one
    line, control characters removed (it goes into logs and bounces), and not too long."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    m = _ENHANCED.match(text)
    if m:
        enhanced, text = m.group(1), text[m.end():]
        # later lines repeat the enhanced code: drop the repeats
        text = text.replace(f" {enhanced} ", " ")
    else:
        enhanced = DEFAULT_ENHANCED.get(str(code), f"{str(code)[0]}.0.0" if code >= 200 else "4.0.0")
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > MAX_REPLY_TEXT:
        text = text[: MAX_REPLY_TEXT - 1] + "…"
    return Reply(code, enhanced, text)


class ConnectFailure(Exception):
    """The server could not be used (no connection, bad greeting, TLS required but failed ...)."""

    def __init__(self, reply: Reply, *, tls_failed: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed  # opportunistic STARTTLS broke: retry this host without it


class LostConnection(Exception):
    """The connection broke during a transaction (`data_sent`: after the final dot, so the remote
    may have the message: delivery is at least once)."""

    def __init__(self, reply: Reply, data_sent: bool) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.data_sent = data_sent


class ReplyQueueProtocol(SMTPProtocol):
    """aiosmtplib's protocol with every complete reply queued, for pipelined commands (RFC 2920)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Any) -> None:
        super().__init__(loop=loop, connection_lost_callback=on_lost)
        self._replies: deque[SMTPResponse] = deque()
        self._failure: BaseException | None = None
        self._arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            while (reply := self._read_response_from_buffer()) is not None:
                self._replies.append(reply)
            if len(self._buffer) > MAX_BUFFERED:
                raise SMTPException("the server sent an endless reply")
        except Exception as e:  # a malformed reply ends the connection
            self._failure = self._failure or e
            if self.transport is not None:
                self.transport.close()
        self._arrived.set()

    def eof_received(self) -> bool:
        self._failure = self._failure or SMTPServerDisconnected("the server closed the connection")
        self._arrived.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._failure = self._failure or SMTPServerDisconnected(f"connection lost{f': {exc}' if exc else ''}")
        self._arrived.set()
        super().connection_lost(exc)

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        while not self._replies:
            if self._failure is not None:
                raise self._failure
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                raise SMTPReadTimeoutError("timed out waiting for the server's reply") from None
        return self._replies.popleft()

    async def start_tls(self, tls_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> SMTPResponse:
        reply = await super().start_tls(tls_context, server_hostname=server_hostname, timeout=timeout)
        if self._replies:
            # RFC 3207 §4.2: nothing may follow the 220 before the handshake (a command injection)
            self._replies.clear()
            raise SMTPException("the server sent more after its STARTTLS reply (RFC 3207 §4.2)")
        return reply

    async def drain(self, timeout: float) -> None:
        """Wait until the transport's buffer is written out (the per-block timeout of §4.5.3.2.5)."""
        try:
            await asyncio.wait_for(self._drain_helper(), timeout)
        except TimeoutError:
            raise SMTPReadTimeoutError("timed out sending the message") from None


def _use_reply_queue(client: aiosmtplib.SMTP) -> None:
    """Switch a freshly greeted connection to `ReplyQueueProtocol` (asyncio's `set_protocol`)."""
    transport = client.transport
    assert transport is not None and client.protocol is not None
    loop = asyncio.get_running_loop()
    new = ReplyQueueProtocol(loop, lambda p: client.close() if p is client.protocol else None)
    new._buffer.extend(client.protocol._buffer)
    transport.set_protocol(new)
    new.connection_made(transport)
    client.protocol = new


def tls_description(client: aiosmtplib.SMTP) -> str | None:
    """`TLSv1.3 TLS_AES_256_GCM_SHA384` for the log, the bounce and Received: of the remote."""
    try:
        obj = client.get_transport_info("ssl_object")
    except SMTPServerDisconnected:
        return None
    if obj is None:
        return None
    cipher = obj.cipher()
    return f"{obj.version()} {cipher[0]}" if cipher else obj.version()


def opportunistic_context() -> ssl.SSLContext:
    """RFC 7435 opportunistic security: encrypt whenever offered, accept any certificate (MX hosts
    have no way to name theirs without DANE or MTA-STS), so TLS never makes delivery fail."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def verified_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)


@dataclass
class Connection:
    """One open, greeted (EHLO), possibly encrypted and logged-in connection."""

    hop: Hop
    client: aiosmtplib.SMTP
    timeouts: OutboundTimeouts
    tls: str | None = None
    uses: int = 0
    created: float = field(default_factory=time.monotonic)
    failed: bool = False  # unusable for another transaction

    @property
    def alive(self) -> bool:
        return not self.failed and self.client.is_connected

    def offers(self, extension: str) -> bool:
        return self.client.supports_extension(extension)

    @property
    def size_limit(self) -> int | None:
        """The SIZE the server declared (RFC 1870 §4: 0 or none means no fixed limit)."""
        value = self.client.esmtp_extensions.get("size", "")
        return int(value) if value.strip().isdigit() and int(value) > 0 else None

    async def close(self, polite: bool = True) -> None:
        if polite and self.alive:
            with contextlib.suppress(Exception):
                await self.client.quit(timeout=10)
        self.client.close()


async def _tcp(hop: Hop, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in hop.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (hop.address, hop.port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(hop: Hop, route: Route, *, helo: str, timeouts: OutboundTimeouts,
                  try_starttls: bool = True) -> Connection:
    """TCP (connect timeout), greeting (§4.5.3.2.1), EHLO (HELO if refused), STARTTLS, AUTH."""
    where = str(hop)
    try:
        sock = await _tcp(hop, timeouts.connect)
    except TimeoutError:
        raise ConnectFailure(Reply(451, "4.4.1", f"no answer from {where} within {timeouts.connect:g} s")) from None
    except OSError as e:
        raise ConnectFailure(Reply(451, "4.4.1", f"cannot connect to {where}: {e.strerror or e}")) from None
    implicit = route.tls == "implicit"
    ctx = verified_context(route.ca_file) if route.verify else opportunistic_context()
    client = aiosmtplib.SMTP(hostname=hop.name, sock=sock, local_hostname=helo, timeout=timeouts.greeting,
                             use_tls=implicit, start_tls=False, tls_context=ctx if implicit else None)
    conn = Connection(hop, client, timeouts)
    step = "the greeting"
    try:
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectResponseError as e:
            raise ConnectFailure(_failure(e.code, e.message, where, "greeted")) from None
        _use_reply_queue(client)
        step = "EHLO"
        await _hello(client, timeouts.command)
        if implicit:
            conn.tls = tls_description(client)
        elif route.tls in ("required", "opportunistic") and try_starttls:
            if client.supports_extension("starttls"):
                step = "STARTTLS"
                try:
                    await client.starttls(server_hostname=hop.name, tls_context=ctx, timeout=timeouts.command)
                except (ssl.SSLError, SMTPException, OSError) as e:
                    if route.tls == "required":
                        raise ConnectFailure(Reply(451, "4.7.10", f"TLS is required but the handshake with {where} "
                                                                  f"failed: {_why(e)}")) from None
                    raise ConnectFailure(Reply(451, "4.7.10", f"STARTTLS with {where} failed: {_why(e)}"),
                                         tls_failed=True) from None
                conn.tls = tls_description(client)
                step = "EHLO after STARTTLS"
                await _hello(client, timeouts.command)
            elif route.tls == "required":
                raise ConnectFailure(Reply(451, "4.7.10", f"TLS is required for this destination but {where} "
                                                          "does not offer STARTTLS"))
        if route.username is not None:
            step = "AUTH"
            try:
                await client.login(route.username, route.password or "", timeout=timeouts.command)
            except aiosmtplib.SMTPAuthenticationError as e:
                raise ConnectFailure(Reply(451, "4.7.8", f"login to {where} as {route.username} failed: "
                                                         f"{remote_reply(e.code, e.message)}")) from None
            except aiosmtplib.SMTPException as e:
                raise ConnectFailure(Reply(451, "4.7.8", f"login to {where} failed: {_why(e)}")) from None
    except ConnectFailure:
        client.close()
        raise
    except aiosmtplib.SMTPResponseException as e:
        client.close()
        raise ConnectFailure(_failure(e.code, e.message, where, f"answered {step}")) from None
    except (SMTPException, OSError, TimeoutError) as e:
        client.close()
        raise ConnectFailure(Reply(451, "4.4.2", f"{where} failed during {step}: {_why(e)}")) from None
    return conn


async def _hello(client: aiosmtplib.SMTP, timeout: float) -> None:
    try:
        await client.ehlo(timeout=timeout)
    except aiosmtplib.SMTPHeloError as e:
        if e.code < 500:
            raise
        await client.helo(timeout=timeout)  # RFC 5321 §3.2: an old server may know only HELO


def _failure(code: int, message: str, where: str, what: str) -> Reply:
    reply = remote_reply(code, message)
    # a refusal at connection level says nothing final about the recipients: try elsewhere or later
    return Reply(451, "4.4.1" if reply.code >= 500 else reply.enhanced, f"{where} {what} with {reply}")


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, SMTPReadTimeoutError | TimeoutError):
        return "timeout"
    return _CONTROL.sub(" ", text)[:200]


# ------------------------------------------------------------------ one transaction


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" is the null reverse-path
    recipients: list[str]
    size: int
    eightbit: bool  # 8-bit bytes anywhere: BODY=8BITMIME
    utf8_headers: bool  # UTF-8 in header fields (RFC 6532)
    utf8_addresses: bool  # UTF-8 in the sender or a recipient address

    @property
    def smtputf8(self) -> bool:
        """Either needs SMTPUTF8 (RFC 6531 §3.4)."""
        return self.utf8_headers or self.utf8_addresses


@dataclass
class Result:
    mail: Reply
    rcpt: dict[str, Reply] = field(default_factory=dict)
    data: Reply | None = None  # the reply to the final dot; None when the message was not sent


def incompatible(conn: Connection, env: Envelope) -> Reply | None:
    """A message this server cannot take whatever we retry: a permanent failure to report."""
    limit = conn.size_limit
    if limit is not None and env.size > limit:
        return Reply(552, "5.3.4", f"the message ({env.size:,} bytes) is larger than {conn.hop} accepts "
                                   f"({limit:,} bytes, RFC 1870)")
    if env.smtputf8 and not conn.offers("smtputf8"):
        # RFC 6531 §3.2 / RFC 3463 X.6.7 (address) and X.6.9 (message headers)
        if env.utf8_addresses:
            return Reply(553, "5.6.7", f"an address has Vietnamese (UTF-8) letters and {conn.hop} does not accept "
                                       "them (no SMTPUTF8, RFC 6531)")
        return Reply(554, "5.6.9", f"the message's header fields have Vietnamese (UTF-8) letters and {conn.hop} "
                                   "does not accept them (no SMTPUTF8, RFC 6531)")
    if env.eightbit and not conn.offers("8bitmime"):
        return Reply(554, "5.6.3", f"the message has 8-bit content and {conn.hop} accepts only 7-bit mail "
                                   "(no 8BITMIME, RFC 6152)")
    return None


def _address(addr: str, utf8: bool) -> bytes:
    if _CONTROL.search(addr) or "<" in addr or ">" in addr:
        raise ValueError(f"unsafe address {addr!r}")
    return f"<{addr}>".encode("utf-8" if utf8 else "ascii")


def _mail_command(conn: Connection, env: Envelope) -> bytes:
    params = []
    if conn.offers("size"):
        params.append(f"SIZE={env.size}")
    if env.eightbit and conn.offers("8bitmime"):
        params.append("BODY=8BITMIME")
    if env.smtputf8:
        params.append("SMTPUTF8")
    return b" ".join([b"MAIL FROM:" + _address(env.sender, env.smtputf8), *(p.encode() for p in params)]) + b"\r\n"


async def send(conn: Connection, env: Envelope, body: AsyncIterator[bytes]) -> Result:
    """MAIL, RCPT..., DATA and the body; pipelined when the server offers PIPELINING (RFC 2920 §3.1).

    Replies of the server are results; only a broken connection raises (`LostConnection`)."""
    t = conn.timeouts
    proto = conn.client.protocol
    if not isinstance(proto, ReplyQueueProtocol):
        raise LostConnection(Reply(451, "4.4.2", f"connection to {conn.hop} is closed"), data_sent=False)
    conn.uses += 1
    mail = _mail_command(conn, env)
    rcpts = [b"RCPT TO:" + _address(r, env.smtputf8) + b"\r\n" for r in env.recipients]
    step, data_sent = "MAIL", False
    try:
        if conn.offers("pipelining"):
            proto.write(mail + b"".join(rcpts) + b"DATA\r\n")
            result = Result(await _reply(proto, t.mail))
            step = "RCPT"
            for r in env.recipients:
                result.rcpt[r] = await _reply(proto, t.rcpt)
            step = "DATA"
            data_reply = await _reply(proto, t.data_init)
        else:
            proto.write(mail)
            result = Result(await _reply(proto, t.mail))
            if not result.mail.ok:
                return await _reset(conn, result)
            step = "RCPT"
            for r, cmd in zip(env.recipients, rcpts, strict=True):
                proto.write(cmd)
                result.rcpt[r] = await _reply(proto, t.rcpt)
            if not any(rep.ok for rep in result.rcpt.values()):
                return await _reset(conn, result)
            step = "DATA"
            proto.write(b"DATA\r\n")
            data_reply = await _reply(proto, t.data_init)
        if data_reply.code != 354:
            if result.mail.ok and any(rep.ok for rep in result.rcpt.values()):
                result.data = data_reply  # refused DATA: the answer for every accepted recipient
            return await _reset(conn, result)
        step = "the message"
        accepted = result.mail.ok and any(rep.ok for rep in result.rcpt.values())
        if accepted:
            await _write_body(proto, body, t.data_block)
        proto.write(b".\r\n")  # RFC 2920: a 354 after refusals still needs its end (an empty message)
        data_sent = accepted
        step = "the end of the message"
        final = await _reply(proto, t.data_end)
        if not accepted:
            return await _reset(conn, result)
        result.data = final
        return result
    except (SMTPException, OSError, TimeoutError) as e:
        conn.failed = True
        conn.client.close()
        when = "after the message was sent (it may have arrived; it will be sent again)" if data_sent \
            else f"during {step}"
        raise LostConnection(Reply(451, "4.4.2", f"connection to {conn.hop} lost {when}: {_why(e)}"),
                             data_sent) from None


async def _reply(proto: ReplyQueueProtocol, timeout: float) -> Reply:
    r = await proto.read_response(timeout)
    return remote_reply(r.code, r.message)


async def _reset(conn: Connection, result: Result) -> Result:
    """RSET after a refused transaction so the connection can carry the next one."""
    try:
        r = await conn.client.execute_command(b"RSET", timeout=conn.timeouts.command)
        if r.code != 250:
            conn.failed = True
    except (SMTPException, OSError, TimeoutError):
        conn.failed = True
    return result


async def _write_body(proto: ReplyQueueProtocol, body: AsyncIterator[bytes], block_timeout: float) -> None:
    """Dot-stuffing (RFC 5321 §4.5.2) chunk by chunk; the message ends with CRLF before the dot."""
    line_start, last = True, b"\r\n"
    async for chunk in body:
        if not chunk:
            continue
        if line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        line_start = chunk.endswith(b"\n")
        last = (last + chunk)[-2:]
        proto.write(chunk)
        await proto.drain(block_timeout)
    if last != b"\r\n":
        proto.write(b"\r\n")


async def still_usable(conn: Connection) -> bool:
    """A pooled connection about to be reused: still there and answering?"""
    if not conn.alive:
        return False
    try:
        r = await conn.client.execute_command(b"NOOP", timeout=conn.timeouts.command)
    except (SMTPException, OSError, TimeoutError):
        conn.failed = True
        return False
    return r.code == 250
