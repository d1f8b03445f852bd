"""Everything the SMTP handler needs, handed in by the composition root (`mailserver/`).

smtp/ imports only policy and storage; the store, the clamd client, the
resolver and the notice sender are built in `mailserver.smtp_wiring` and
passed here, so tests and the server assemble the same objects.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from policy.limits import QuotaCheck, message_size_limit
from policy.model import Policy
from policy.settings import Settings
from smtp.authn import SenderAuthenticator
from smtp.clamd import ClamdClient
from smtp.dns import Resolver
from smtp.dsn import Renderer
from smtp.ratelimit import SendRateLimiter
from smtp.signing import DkimSigner
from smtp.spamd import SpamdClient
from storage.auth import AuthService
from storage.directory import Directory
from storage.maillog import MailLog
from storage.queue import OutboundQueue
from storage.records import Account

log = logging.getLogger("smtp")


class Store(Protocol):
    """The part of storage.store.MailStore that SMTP uses (/work/STORE_API.md)."""

    async def check_quota(self, account: Account, incoming: int) -> QuotaCheck: ...

    async def deliver(self, account: Account, message: bytes, *, folder: str = ..., system: bool = ...) -> Any: ...

    async def deliver_many(self, accounts: list[Account], message: bytes, *, folder: str = ...,
                           system: bool = ...) -> dict[int, Any]: ...

    async def create_mailbox(self, account: Account) -> list[str]: ...


Notify = Callable[[str, str], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    policy: Policy
    directory: Directory
    auth: AuthService
    store: Store
    clamd: ClamdClient
    signer: DkimSigner
    rates: SendRateLimiter
    maillog: MailLog
    size_limit: int
    clock: Callable[[], datetime]
    # The server certificate of STARTTLS and port 465; owned and reloaded by the composition root.
    tls_context: ssl.SSLContext
    # The outbound queue (remote recipients, held mail), the one DNS resolver, and the text of bounces
    queue: OutboundQueue
    resolver: Resolver
    render_report: Renderer
    sender_auth: SenderAuthenticator | None = None
    # Sends a notice (subject, text) to postmaster@ (built by the composition root)
    notify_postmaster: Notify | None = None
    # SpamAssassin (Đ8.2.b, Đ13.6); unconfigured: no scoring, said at start and in /healthz
    spamd: SpamdClient = field(default_factory=SpamdClient)

    @property
    def domains(self) -> list[str]:
        return self.settings.domains

    def set_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): checks read `policy` at each message; the SIZE limit and the Đ6.2.b
        window are derived values, so they are derived again (new connections advertise the new SIZE)."""
        self.policy = policy
        self.size_limit = message_size_limit(policy.attachments)
        self.rates.window = policy.sending.window.approx_seconds
        self.rates.hold_after = policy.sending.hold_after_refusals

    async def hold_account(self, account: Account, reason: str) -> None:
        """Đ6.2.b: hold the account's outbound mail, audit it, tell postmaster@. Suspension stays an
        operator's decision (the regulation speaks of a warning from the security authority)."""
        if not await self.directory.hold_outbound(account, reason, actor="system:smtp-rate-limit"):
            return
        log.warning("outbound mail of %s put on hold: %s", account.address, reason)
        self.maillog.event("hold", account=account.address, reason=reason, result="held")
        if self.notify_postmaster is not None:
            subject = f"Outbound mail of {account.address} is on hold (Article 6.2.b)"
            text = (
                f"Tài khoản {account.address} gửi thư bất thường và đã bị tạm giữ thư gửi đi.\r\n"
                f"The account {account.address} sent an unusual burst of mail; its outbound mail is on hold.\r\n"
                f"Reason: {reason}\r\n\r\n"
                "The account can still log in and read mail. What it sends now waits in the queue:\r\n"
                f"  mailserver queue list --account {account.address}\r\n"
                "If it is compromised, suspend it and delete what it sent:\r\n"
                f"  mailserver account suspend {account.address} --reason \"compromised (Đ6.2.b)\"\r\n"
                f"  mailserver queue delete --account {account.address}\r\n"
                "If the mail is legitimate, let it go and let the account send again:\r\n"
                f"  mailserver queue release --account {account.address}\r\n"
                f"  mailserver account release {account.address}\r\n"
            )
            try:
                await self.notify_postmaster(subject, text)
            except Exception:
                log.exception("could not notify postmaster about the hold of %s", account.address)
