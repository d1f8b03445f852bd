"""Other organisations' mail servers on loopback, found through real DNS answers, for the outbound tests.

Each remote server is an aiosmtpd `Sink` bound to its own loopback address
(127.0.0.2, 127.0.0.3, ...) on one shared free port, which the tests'
`outbound.port` names (MX records carry host names, not ports). The DNS
server the tests start (tests/smtp_support.py) publishes `MX 10
mx.<domain>` and `mx.<domain> A 127.0.0.N` for each, so the queue routes by
real MX and A lookups. A sink can accept, refuse some recipients (5xx),
answer 4xx a number of times before accepting, drop the connection in the
middle of DATA, hold its answer until the test opens a gate, never answer at all, advertise or
withhold PIPELINING, SMTPUTF8, 8BITMIME, SIZE, STARTTLS, and require AUTH.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AioSMTP
from aiosmtpd.smtp import AuthResult, LoginPassword, syntax

from smtp.outbound.service import OutboundService
from storage.queue import Entry
from tests.helpers import cli
from tests.smtp_fixtures import SmtpEnv, close_env, message, open_env
from tests.smtp_support import Clamd, DnsServer

SINK_ADDRESSES = [*(f"127.0.0.{n}" for n in range(2, 14)), "::1"]
WAIT = 60.0  # seconds any wait may take on a loaded machine before the test fails


def bind_shared_port(addresses: list[str]) -> tuple[int, list[socket.socket]]:
    """Listening sockets on every address with one port number (free on all of them)."""
    for _ in range(100):
        socks: list[socket.socket] = []
        try:
            first = socket.socket()
            socks.append(first)
            first.bind((addresses[0], 0))
            port = first.getsockname()[1]
            for a in addresses[1:]:
                s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
                socks.append(s)
                s.bind((a, port))
        except OSError:
            for s in socks:
                s.close()
            continue
        for s in socks:
            s.setblocking(False)  # not listening until a sink starts on it: until then, connections are refused
        return port, socks
    raise RuntimeError("no port free on every sink address")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    tls: bool


@dataclass
class Behaviour:
    pipelining: bool = True
    smtputf8: bool = True
    eightbitmime: bool = True
    size: int | None = None  # SIZE to advertise (and enforce)
    tls: ssl.SSLContext | None = None  # offer STARTTLS
    auth: tuple[str, str] | None = None  # require AUTH (after STARTTLS) with this user and password
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # recipient → refusal
    data_replies: list[str] = field(default_factory=list)  # answers to the next DATAs, then 250
    drop_data: int = 0  # drop the connection in the middle of the next N DATAs
    gate: asyncio.Event | None = None  # hold the answer to DATA until set
    silent: bool = False  # accept connections and never say a word (not even the greeting)


class SinkSMTP(AioSMTP):
    """aiosmtpd with connection counting and a DATA that can break off half way."""

    def __init__(self, sink: Sink, **kw: Any) -> None:
        super().__init__(sink, **kw)
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS upgrade of a counted connection
            self.sink.connections += 1
            self.sink.open_now += 1
            self.sink.max_open = max(self.sink.max_open, self.sink.open_now)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.open_now = max(0, self.sink.open_now - 1)
        super().connection_lost(exc)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        b = self.sink.behaviour
        if b.drop_data > 0 and self.envelope.rcpt_tos:
            b.drop_data -= 1
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.read(200)  # part of the message ...
            self.sink.drops += 1
            assert self.transport is not None
            self.transport.abort()  # ... and the line goes dead
            return
        await super().smtp_DATA(arg)


class SilentPeer(asyncio.Protocol):
    """A host that accepts the TCP connection and never answers: the client's greeting timeout ends it."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sink.connections += 1
        self.sink.silenced.append(transport)


class Sink:
    """One remote MX host (the hooks are aiosmtpd's handler interface)."""

    def __init__(self, name: str, address: str, sock: socket.socket, behaviour: Behaviour) -> None:
        self.name = name
        self.address = address
        self.sock = sock
        self.behaviour = behaviour
        self.received: list[Received] = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.drops = 0
        self.silenced: list[asyncio.BaseTransport] = []
        self.data_seen = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> Sink:
        b = self.behaviour

        def make() -> asyncio.Protocol:
            if b.silent:
                return SilentPeer(self)
            kw: dict[str, Any] = {"hostname": self.name, "enable_SMTPUTF8": b.smtputf8, "decode_data": False,
                                  "data_size_limit": b.size, "tls_context": b.tls}
            if b.auth is not None:
                kw.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
            return SinkSMTP(self, **kw)

        self.server = await asyncio.get_running_loop().create_server(make, sock=self.sock)
        return self

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.behaviour.auth == (data.login.decode(), data.password.decode())
        return AuthResult(success=ok, handled=False)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in self.silenced:
            t.abort()

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        b = self.behaviour
        out = [r for r in responses
               if not (r[4:] == "8BITMIME" and not b.eightbitmime)]
        if b.pipelining:
            out.insert(len(out) - 1, "250-PIPELINING")
        return out

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = self.behaviour.rcpt_replies.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        b = self.behaviour
        self.data_seen.set()
        if b.gate is not None:
            await b.gate.wait()
        if b.data_replies:
            return b.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or
                                      envelope.content, list(envelope.mail_options), session.ssl is not None))
        return f"250 2.0.0 Ok: queued as {self.name}-{len(self.received)}"

    async def wait_received(self, n: int = 1, timeout: float = WAIT) -> list[Received]:
        await until(lambda: len(self.received) >= n, timeout, f"{self.name} to receive {n} message(s)")
        return self.received


async def until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def sink_tls_context(tmp: Path) -> ssl.SSLContext:
    """A self-signed certificate for a sink offering STARTTLS."""
    from mailserver.tlsgen import write_self_signed

    cert, key = tmp / "sink-cert.pem", tmp / "sink-key.pem"
    if not cert.exists():
        write_self_signed(cert, key, "mx.sink.test", ["sink.test"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class RunningClock:
    """The server's clock: real time plus what the test has skipped forward (retries, delay notices, expiry).
    It keeps running, so the CLI (real time) and the server agree on what is due."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class OutboundEnv:
    """The SMTP service, the queue's workers, a settable clock, and remote servers reached through DNS."""

    def __init__(self, smtp: SmtpEnv, outbound: OutboundService, clock: RunningClock, port: int,
                 socks: list[socket.socket]) -> None:
        self.smtp = smtp
        self.outbound = outbound
        self.clock = clock
        self.port = port
        self._socks = dict(zip(SINK_ADDRESSES, socks, strict=True))
        self.sinks: list[Sink] = []

    @property
    def app(self) -> Any:
        return self.smtp.app

    @property
    def queue(self) -> Any:
        return self.smtp.app.queue

    @property
    def dns(self) -> DnsServer:
        return self.smtp.dns

    def free_address(self) -> str:
        """A loopback address no sink uses yet (nothing listens there: connections are refused)."""
        return next(a for a in SINK_ADDRESSES if ":" not in a and a not in {s.address for s in self.sinks})

    async def sink(self, domain: str, *, preference: int = 10, host: str | None = None, address: str | None = None,
                   mx: bool = True, **behaviour: Any) -> Sink:
        """A remote server for `domain`: `MX preference <host>` and the host's A (or AAAA) record point here.
        With mx=False the domain itself carries the address (the implicit MX of RFC 5321 §5.1)."""
        address = address or self.free_address()
        host = host or (f"mx{len(self.sinks) + 1}.{domain}" if mx else domain)
        s = await Sink(host, address, self._socks[address], Behaviour(**behaviour)).start()
        self.sinks.append(s)
        if mx:
            self.dns.zone.mx.setdefault(domain, []).append((preference, host))
        (self.dns.zone.aaaa if ":" in address else self.dns.zone.a)[host] = [address]
        return s

    async def person(self, name: str, **kw: Any) -> str:
        return await self.smtp.person(name, **kw)

    async def send(self, sender: str, rcpts: list[str], data: bytes | None = None, *,
                   mail_options: list[str] | None = None, **msg: Any) -> str:
        """Submit as `sender` (587, STARTTLS, AUTH); returns the queue id of the 250."""
        c = await self.smtp.login(sender)
        try:
            _, text = await c.sendmail(sender, rcpts, data or message(sender, ", ".join(rcpts), **msg),
                                       mail_options=mail_options)
        finally:
            await c.quit()
        m = re.search(r"queued as ([A-Z0-9]+)", text)
        assert m, text
        return m.group(1)

    async def entry(self, queue_id: str) -> Entry | None:
        return await self.queue.get(queue_id)

    async def wait_gone(self, queue_id: str, timeout: float = WAIT) -> None:
        """Until the message has left the queue (every recipient delivered or reported)."""
        deadline = time.monotonic() + timeout
        while await self.queue.get(queue_id) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue_id} is still queued: {await self.queue.get(queue_id)}")
            await asyncio.sleep(0.05)

    async def wait_state(self, queue_id: str, rcpt: str, state: str, timeout: float = WAIT) -> Entry:
        deadline = time.monotonic() + timeout
        while True:
            e = await self.queue.get(queue_id)
            if e is not None and e.lease_owner is None:
                r = next((r for r in e.recipients if r.rcpt == rcpt), None)
                if r is not None and r.state == state:
                    return e
            if time.monotonic() > deadline:
                raise AssertionError(f"{rcpt} of {queue_id} never became {state}: {e}")
            await asyncio.sleep(0.05)

    def advance(self, **delta: float) -> None:
        """Move the server's clock forward (retries, delay notices, expiry) and wake the workers."""
        self.clock.offset += timedelta(**delta)
        self.outbound.wake()

    def log_events(self, **query: Any) -> list[dict[str, Any]]:
        return self.smtp.log_events(**query)

    async def inbox(self, address: str) -> list[bytes]:
        return await self.smtp.inbox(address)

    def publish_dkim(self) -> Callable[[bytes], bool]:
        """`mailserver dkim keygen`, then the DKIM record `mailserver dns records` prints goes into the
        test DNS server; returns a dkimpy verifier that looks keys up there, as a receiving MTA would."""
        import dkim
        import dns.zone

        cfg = self.smtp.config
        cli(cfg, "dkim", "keygen", "--domain", "phuyen.gov.vn", "--selector", "mail", check=True)
        zone_text = cli(cfg, "dns", "records", "--ipv4", "192.0.2.10", check=True).stdout
        zone = dns.zone.from_text(zone_text, origin="phuyen.gov.vn.", relativize=False, check_origin=False)
        name = "mail._domainkey.phuyen.gov.vn"
        rdataset = zone.get_rdataset(name + ".", "TXT")
        assert rdataset is not None, zone_text
        self.dns.zone.txt[name] = [b"".join(next(iter(rdataset)).strings).decode()]
        port = self.dns.port

        def dnsfunc(qname: bytes, timeout: float = 5) -> bytes | None:
            r = dns.resolver.Resolver(configure=False)
            r.nameservers, r.port, r.lifetime = ["127.0.0.1"], port, timeout
            try:
                answer = r.resolve(qname.decode().rstrip("."), "TXT")
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return None
            return b"".join(next(iter(answer)).strings)

        return lambda data: bool(dkim.verify(data, dnsfunc=dnsfunc))


# generous on a loaded machine; a test shortens one with @pytest.mark.outbound_config(timeouts={...})
TEST_TIMEOUTS = {"connect": 10, "greeting": 60, "command": 60, "mail": 60, "rcpt": 60, "data_init": 60,
                 "data_block": 60, "data_end": 60}


def outbound_test_settings(timeouts: dict[str, float] | None = None) -> str:
    t = {**TEST_TIMEOUTS, **(timeouts or {})}
    return "  poll_interval: 0.2\n  timeouts: {" + ", ".join(f"{k}: {v}" for k, v in t.items()) + "}\n"


@pytest.fixture
async def outbound_env(tmp_path: Path, clamd_daemon: Clamd, dns: DnsServer, request: pytest.FixtureRequest) \
        -> AsyncIterator[OutboundEnv]:
    marker = request.node.get_closest_marker("outbound_config")
    kw = marker.kwargs if marker else {}
    port, socks = bind_shared_port(SINK_ADDRESSES)
    clock = RunningClock()
    extra = (f"outbound:\n  port: {port}\n" + outbound_test_settings(kw.get("timeouts")) + kw.get("outbound", "")
             + kw.get("extra", ""))
    smtp = await open_env(tmp_path, clamd_daemon, dns, policy=kw.get("policy", ""), extra=extra, clock=clock)
    outbound = OutboundService(smtp.service.svc, smtp.app.metrics)
    await outbound.start()
    env = OutboundEnv(smtp, outbound, clock, port, socks)
    try:
        yield env
    finally:
        await outbound.stop()
        for s in env.sinks:
            await s.stop()
        await close_env(smtp)
        for s in socks:
            s.close()


@dataclass
class Report:
    """A bounce or delay notice as the sender's mail program shows it."""

    raw: bytes
    subject: str
    text: str  # the human part, decoded (Vietnamese and English)
    status: str  # the message/delivery-status part
    headers: str  # the original's header fields (text/rfc822-headers)


def parse_report(raw: bytes) -> Report:
    import email
    from email import policy

    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = parts[1]
    status_text = "\n".join(str(block) for block in status.get_payload()) if status.is_multipart() \
        else status.get_payload()
    return Report(raw, str(msg["Subject"]), parts[0].get_content(), status_text,
                  parts[2].get_payload(decode=True).decode("utf-8", "replace"))


async def reports_in(env: OutboundEnv, address: str, n: int = 1, timeout: float = WAIT) -> list[Report]:
    """The bounces and delay notices in a local sender's INBOX, once there are `n`."""
    found: list[bytes] = []

    async def look() -> bool:
        nonlocal found
        found = [m for m in await env.inbox(address) if b"multipart/report" in m]
        return len(found) >= n

    deadline = time.monotonic() + timeout
    while not await look():
        if time.monotonic() > deadline:
            raise AssertionError(f"{address} got {len(found)} reports, expected {n}")
        await asyncio.sleep(0.05)
    return [parse_report(m) for m in found]
