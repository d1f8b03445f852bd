"""The IMAP listeners (143 with STARTTLS, 993 with implicit TLS) and what their sessions share.

`ImapBackend` holds what every session of this process shares: the
authentication service, the store, the limits, and the fan-out of the
store's change events to the sessions of each account (one store
subscription per account, however many connections Thunderbird opens).
`ImapServer` is one listener; `mailserver.serve` starts one per configured
port and they share one backend.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from imap_gateway import tls
from imap_gateway.commands import State
from imap_gateway.conn import Connection
from imap_gateway.session import Session
from policy.model import AttachmentPolicy
from storage.auth import AuthService
from storage.metrics import ServerMetrics
from storage.records import Account

# Importing the command modules registers their handlers.
from imap_gateway import (  # noqa: F401  isort: skip
    append, copymove, fetch, flags, folders, idle, login, mailbox, quota, search,
)

log = logging.getLogger("imap")


@dataclass
class ImapBackend:
    hostname: str
    auth: AuthService
    store: Any  # storage's MailStore (public API only)
    append_limit: int  # RFC 7889 APPENDLIMIT = the SMTP SIZE limit (policy.limits.message_size_limit)
    attachments: AttachmentPolicy
    ssl_context: ssl.SSLContext | None
    # Dates in SEARCH (BEFORE/ON/SINCE) are calendar days here: the policy's time zone.
    timezone: tzinfo = UTC
    # The App's shared counters (storage/metrics.py); logins are counted by AuthService itself,
    # open sessions by an observer the composition root adds.
    metrics: ServerMetrics | None = None
    # Called with (event name, session): "login", "logout".
    observers: list[Callable[[str, Session], None]] = field(default_factory=list)
    # Called with a copymove.Transfer after each successful COPY/MOVE (spam training, wired in mailserver/).
    transfer_observers: list[Callable[[Any], None]] = field(default_factory=list)
    sessions: set[Session] = field(default_factory=set)
    by_account: dict[int, set[Session]] = field(default_factory=dict)
    _listeners: dict[int, Callable[[Any], None]] = field(default_factory=dict)

    def notify(self, what: str, session: Session) -> None:
        for cb in self.observers:
            try:
                cb(what, session)
            except Exception:
                log.exception("IMAP observer failed")

    def transferred(self, transfer: Any) -> None:
        """Tell the observers where COPY/MOVE filed messages; they must only queue work."""
        for cb in self.transfer_observers:
            try:
                cb(transfer)
            except Exception:
                log.exception("IMAP transfer observer failed")

    async def login(self, session: Session, account: Account) -> None:
        """Enter the authenticated state: open the account's store session, follow its changes."""
        session.account = account
        if self.store is not None:
            session.mbox = await self.store.session(account)
            peers = self.by_account.get(account.id)
            if peers is None:
                peers = self.by_account[account.id] = set()
                self._listeners[account.id] = listener = self._fan_out(account.id)
                self.store.subscribe(account.id, listener)
            peers.add(session)
        session.state = State.authenticated
        self.notify("login", session)

    def _fan_out(self, account_id: int) -> Callable[[Any], None]:
        def deliver(event: Any) -> None:
            for s in list(self.by_account.get(account_id, ())):
                s.on_store_event(event)

        return deliver

    def forget(self, session: Session) -> None:
        account = session.account
        if account is None:
            return
        peers = self.by_account.get(account.id)
        if peers is not None:
            peers.discard(session)
            if not peers:
                del self.by_account[account.id]
                listener = self._listeners.pop(account.id, None)
                if listener is not None and self.store is not None:
                    self.store.unsubscribe(account.id, listener)
        self.notify("logout", session)


class ImapServer:
    """One listener. Implements mailserver.serve's Service protocol."""

    def __init__(self, name: str, host: str | None, port: int, backend: ImapBackend, *, implicit_tls: bool,
                 allow_plaintext_login: bool = False) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.backend = backend
        self.implicit_tls = implicit_tls
        self.allow_plaintext_login = allow_plaintext_login
        self._server: asyncio.Server | None = None
        self.sessions: set[Session] = set()
        self.draining = False  # SIGTERM: sessions end after the command they are executing

    # Session reads these through its server.
    @property
    def hostname(self) -> str:
        return self.backend.hostname

    @property
    def auth(self) -> AuthService:
        return self.backend.auth

    @property
    def store(self) -> Any:
        return self.backend.store

    @property
    def append_limit(self) -> int:
        return self.backend.append_limit

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.backend.ssl_context

    @property
    def attachments(self) -> AttachmentPolicy:
        return self.backend.attachments

    @property
    def timezone(self) -> tzinfo:
        return self.backend.timezone

    # ------------------------------------------------------------ Service

    async def start(self) -> list[str]:
        loop = asyncio.get_running_loop()
        factory: Any = lambda: Connection(self._serve)  # noqa: E731
        if self.implicit_tls:
            if self.backend.ssl_context is None:
                raise RuntimeError(f"{self.name}: implicit TLS needs a certificate")
            factory = tls.implicit_tls_factory(loop, self.backend.ssl_context, factory)
        self._server = await loop.create_server(factory, self.host, self.port, reuse_address=True, backlog=512)
        return [_where(s.getsockname()) for s in self._server.sockets]

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def drain(self, grace: float) -> None:
        """SIGTERM: accept no new connection; sessions waiting for a command or in IDLE get BYE at once;
        a command executing (an APPEND being saved, a MOVE) may finish for `grace` seconds, then BYE."""
        if self._server is None:
            return
        self._server.close()
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.sessions and loop.time() < deadline:
            for s in list(self.sessions):
                if not s.busy or s.idling:
                    s.shutdown()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.draining = True
        for s in list(self.sessions):
            s.shutdown()
        tasks = [s.conn.task for s in self.sessions if s.conn.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for t in pending:
                t.cancel()
        await self._server.wait_closed()
        self._server = None

    # ------------------------------------------------------------ sessions

    async def _serve(self, conn: Connection) -> None:
        session = Session(self, conn)
        self.sessions.add(session)
        self.backend.sessions.add(session)
        if self.backend.metrics is not None:
            # Connections per listener; logged-in sessions are counted by the composition root's observer.
            self.backend.metrics.connections.labels(listener=self.name).inc()
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self.backend.sessions.discard(session)

    async def login(self, session: Session, account: Account) -> None:
        await self.backend.login(session, account)

    def forget(self, session: Session) -> None:
        self.backend.forget(session)

    def transferred(self, transfer: Any) -> None:
        self.backend.transferred(transfer)


def _where(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

