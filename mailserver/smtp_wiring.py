"""Build the SMTP service and the outbound queue's workers from the App (the composition root hands smtp/
everything it uses: one resolver, one mail log, the bounce templates)."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

from mailserver.app import App
from mailserver.notices import DeliveryReports
from policy.limits import message_size_limit
from policy.settings import Settings
from smtp.authn import SenderAuthenticator
from smtp.clamd import ClamdClient
from smtp.dns import Resolver
from smtp.outbound.service import OutboundService
from smtp.ratelimit import SendRateLimiter
from smtp.service import SmtpService
from smtp.services import Services
from smtp.signing import DkimSigner
from smtp.spamd import SpamdClient
from storage.maillog import MailLog
from storage.metrics import ServerMetrics


def metrics_observer(metrics: ServerMetrics) -> Callable[[dict[str, Any]], None]:
    """Count mail-log events into the shared Prometheus metrics (labels from small fixed sets)."""

    def observe(rec: dict[str, Any]) -> None:
        event, listener = rec["event"], rec.get("listener") or "smtp"
        if event == "connect":
            metrics.connections.labels(listener=listener).inc()
        elif event == "accepted":
            metrics.messages_accepted.labels(listener=listener).inc()
        elif event == "deferred" and rec.get("stage") == "outbound":
            metrics.deliveries.labels(result="deferred").inc()
        elif event in ("rejected", "deferred"):
            # the check's function name (smtp/checks.py) or the stage: a fixed, small set
            reason = rec.get("check") or rec.get("stage") or "other"
            metrics.messages_rejected.labels(listener=listener, reason=reason).inc()
        elif event == "virus":
            metrics.virus_found.labels(listener=listener).inc()
        elif event == "delivered":
            metrics.deliveries.labels(result="remote" if rec.get("result") == "remote" else "local").inc()
        elif event == "bounced":
            metrics.deliveries.labels(result="bounced").inc()
        # Đ8.2.b: the spam decision and score ride on the message's accepted/rejected/deferred line
        if event in ("accepted", "rejected", "deferred") and rec.get("spam") not in (None, "off"):
            metrics.spam_checks.labels(listener=listener, decision=rec["spam"]).inc()
            if "spam_score" in rec:
                metrics.spam_score.labels(listener=listener).observe(rec["spam_score"])

    return observe


def clamd_client(settings: Settings) -> ClamdClient:
    """The one way to reach clamd: the SMTP checks scan through it, /healthz pings through it."""
    c = settings.clamd
    return ClamdClient(socket=c.socket, host=c.host, port=c.port, timeout=c.timeout)


def spamd_client(settings: Settings) -> SpamdClient:
    """The one way to reach spamd: SMTP scores through it, IMAP training learns through it, /healthz
    pings through it, `mailserver spam check` reports through it."""
    c = settings.spamd
    return SpamdClient(socket=c.socket, host=c.host, port=c.port, timeout=c.timeout)


def build_services(app: App) -> Services:
    settings, policy = app.settings, app.policy
    resolver = Resolver(settings.dns.nameservers, settings.dns.port, settings.dns.timeout)
    reports = DeliveryReports(settings, policy)
    app.policy_listeners.append(reports.set_policy)
    svc = Services(
        settings=settings,
        policy=policy,
        directory=app.directory,
        auth=app.auth,
        store=app.store,
        clamd=clamd_client(settings),
        signer=DkimSigner(settings.dkim_keys, settings.dkim.selector, settings.dkim.ed25519),
        rates=SendRateLimiter(policy.sending.window.approx_seconds, policy.sending.hold_after_refusals),
        maillog=MailLog(settings.paths.log_dir, policy.tz),
        size_limit=message_size_limit(policy.attachments),
        clock=app.clock,
        queue=app.queue,
        resolver=resolver,
        render_report=reports.render,
        sender_auth=SenderAuthenticator(resolver),
        tls_context=app.server_tls().context,
        spamd=spamd_client(settings),
    )

    async def notify_postmaster(subject: str, text: str) -> None:
        target = await app.directory.postmaster_target()
        if target is None:
            return
        m = EmailMessage(policy=SMTP)
        m["From"] = formataddr(("Hệ thống thư điện tử công vụ", f"postmaster@{settings.primary_domain}"))
        m["To"] = f"postmaster@{settings.primary_domain}"
        m["Subject"] = subject
        m["Date"] = format_datetime(app.clock())
        m["Message-ID"] = make_msgid(domain=settings.hostname)
        m["Auto-Submitted"] = "auto-generated"
        m.set_content(text)
        await app.store.deliver(target, m.as_bytes(), system=True)

    svc.notify_postmaster = notify_postmaster
    app.policy_listeners.append(svc.set_policy)
    svc.maillog.listeners.append(metrics_observer(app.metrics))
    return svc


def build_mail_services(app: App) -> tuple[OutboundService, SmtpService]:
    """The queue's workers and the SMTP listeners, sharing one resolver and one mail log. The workers
    start first and stop last, so nothing is queued while they are not there to see it."""
    svc = build_services(app)
    outbound = OutboundService(svc, app.metrics)
    app.policy_listeners.append(outbound.set_policy)
    return outbound, SmtpService(svc)
