"""The three SMTP listeners of `mailserver serve`.

| listener      | port (prod) | TLS                  | AUTH                 | accepts mail for        |
|---------------|-------------|----------------------|----------------------|-------------------------|
| `smtp`        | 25          | STARTTLS offered     | not offered          | our domains only (MX)   |
| `submission`  | 587         | STARTTLS, then AUTH  | PLAIN, LOGIN         | anyone, after AUTH      |
| `submissions` | 465         | implicit (RFC 8314)  | PLAIN, LOGIN         | anyone, after AUTH      |
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from typing import Any

from policy.settings import Listener
from smtp.handler import Handler
from smtp.protocol import ConnectionLimits, MailSMTP
from smtp.services import Services

NAMES = ("smtp", "submission", "submissions")
log = logging.getLogger("smtp.service")


class SmtpService:
    name = "smtp"

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.handler = Handler(svc)
        self.servers: list[asyncio.AbstractServer] = []
        self.limits: dict[str, ConnectionLimits] = {}
        # every connection of every listener, for the drain at SIGTERM (closed ones drop out by themselves)
        self.connections: weakref.WeakSet[MailSMTP] = weakref.WeakSet()
        # for /healthz (mailserver.serve): the listeners this service opens
        self.listeners = tuple(n for n in NAMES if getattr(svc.settings.listeners, n).enabled)

    def _factory(self, listener: str, tls: ssl.SSLContext) -> Any:
        s = self.svc.settings.smtp
        limits = self.limits.setdefault(listener, ConnectionLimits(s.max_connections, s.max_connections_per_ip))

        def make() -> MailSMTP:
            protocol = MailSMTP(
                self.handler,
                listener=listener,
                implicit_tls=listener == "submissions",
                limits=limits,
                data_timeout=s.data_timeout,
                authenticate=self.handler.authenticate,
                offer_auth=listener != "smtp",
                size_limit=self.svc.size_limit,
                hostname=self.svc.settings.hostname,
                ident="ESMTP",
                tls_context=tls,
                enable_SMTPUTF8=True,
                timeout=s.command_timeout,
            )
            self.connections.add(protocol)
            return protocol

        return make

    async def start(self) -> list[str]:
        settings = self.svc.settings
        if not self.svc.clamd.configured:
            log.warning("clamd is not configured: every message is refused with 451 4.7.1 (Đ8.2.b) "
                        "unless policy virus.on_scanner_error is accept")
        # The composition root's context: the same certificate as IMAP and the web, swapped by a reload.
        tls = self.svc.tls_context
        loop = asyncio.get_running_loop()
        where = []
        for name in self.listeners:
            listener: Listener = getattr(settings.listeners, name)
            server = await loop.create_server(
                self._factory(name, tls), host=listener.bind_host, port=listener.port,
                ssl=tls if name == "submissions" else None, reuse_address=True,
            )
            self.servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                where.append(f"{name} {host}:{port}")
        return where

    def _open(self) -> list[MailSMTP]:
        return [p for p in self.connections if p.transport is not None]

    async def drain(self, grace: float) -> None:
        """SIGTERM: accept no new connection; idle clients get 421 at once; a transaction under way (from
        MAIL to the reply after DATA) may finish for `grace` seconds. Nothing is lost either way: a
        message is acknowledged only once it is on disk, and a client cut off before that retries."""
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            for protocol in self._open():
                if not protocol.in_transaction:
                    protocol.close_for_shutdown()
            busy = self._open()
            if not busy or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        if busy:
            log.warning("closing %d SMTP connection(s) in the middle of a transaction after %g s; "
                        "their clients will send again", len(busy), grace)

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for protocol in self._open():
            protocol.close_for_shutdown()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        self.svc.maillog.close()
