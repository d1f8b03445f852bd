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
from typing import Any

from policy.settings import Listener
from smtp.handler import Handler
from smtp.protocol import ConnectionLimits, MailSMTP
from smtp.services import Services

NAMES = ("smtp", "submission", "submissions")
log = logging.getLogger("smtp.service")


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class SmtpService:
    name = "smtp"

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.handler = Handler(svc)
        self.servers: list[asyncio.AbstractServer] = []
        self.limits: dict[str, ConnectionLimits] = {}
        # for /healthz (mailserver.serve): the listeners this service opens
        self.listeners = tuple(n for n in NAMES if getattr(svc.settings.listeners, n).enabled)

    def _factory(self, listener: str, tls: ssl.SSLContext) -> Any:
        s = self.svc.settings.smtp
        limits = self.limits.setdefault(listener, ConnectionLimits(s.max_connections, s.max_connections_per_ip))

        def make() -> MailSMTP:
            return MailSMTP(
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

        return make

    async def start(self) -> list[str]:
        settings = self.svc.settings
        if not self.svc.clamd.configured:
            log.warning("clamd is not configured: every message is refused with 451 4.7.1 (Đ8.2.b) "
                        "unless policy virus.on_scanner_error is accept")
        tls = server_tls_context(str(settings.cert_path), str(settings.key_path))
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

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        self.svc.maillog.close()
