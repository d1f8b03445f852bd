"""The regulation at the door: each check is a small function returning a `Reply` (refuse) or None (go on).

The handler runs them in order at MAIL, RCPT and after DATA (aiosmtpd's
hook style), so each rule is one short function with its article and the
exact reply a user meets. The README lists every one of these replies.

| stage | check                   | refusal                    | rule        |
|-------|-------------------------|----------------------------|-------------|
| MAIL  | auth_required           | 530 5.7.0                  | submission  |
| MAIL  | declared_size           | 552 5.3.4                  | Đ7.3.b      |
| MAIL  | sender_may_send         | 550 5.7.1                  | Đ5.3.b, Đ6  |
| MAIL  | outbound_hold           | (accepted, held in queue)  | Đ6.2.b      |
| MAIL  | envelope_sender         | 553 5.7.1 / 550 5.7.1      | identity    |
| MAIL  | message_rate            | 451 4.7.1                  | Đ6.2.b      |
| RCPT  | recipient_count         | 452 4.5.3                  | config      |
| RCPT  | relay                   | 554 5.7.1 / 553 5.1.3      | no relay    |
| RCPT  | known_recipient         | 550 5.1.1                  | Đ5.3.b      |
| RCPT  | recipient_rate          | 451 4.7.1                  | Đ6.2.b      |
| RCPT  | recipient_quota         | 552 5.2.2 / 452 4.2.2      | Đ7.3.b      |
| DATA  | attachments             | 552 5.3.4                  | Đ7.3.b      |
| DATA  | from_header             | 550 5.7.1                  | identity    |
| DATA  | virus                   | 554 5.7.1 / 451 4.7.1      | Đ8.2.b      |
| DATA  | dmarc                   | 550 5.7.1                  | RFC 7489    |
| DATA  | spam                    | 550 5.7.1 / 451 4.7.1      | Đ8.2.b      |
| DATA  | outbound_spam           | 550 5.7.1 / 451 4.7.1      | Đ13.6       |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

from policy.attachments import attachment_report
from policy.units import format_size
from smtp import spam as spamfilter
from smtp.addresses import Kind, classify
from smtp.authn import Results
from smtp.clamd import ScannerUnavailable
from smtp.headers import header_value, split_message
from smtp.replies import Reply
from smtp.services import Services
from smtp.spam import Decision

log = logging.getLogger("smtp.checks")

SUBMISSION = ("submission", "submissions")


@dataclass
class Recipient:
    address: str  # as normalised
    accounts: list[Any]  # storage.records.Account
    remote: list[str] = field(default_factory=list)  # addresses outside our domains: the outbound queue


@dataclass
class Step:
    """What one SMTP command is about, handed to every check of its stage."""

    svc: Services
    session: Any  # smtp.protocol.MailSession
    envelope: Any  # smtp.protocol.MailEnvelope
    address: str = ""
    recipient: Recipient | None = None
    content: bytes = b""
    auth_results: Results | None = None
    # Our Received: field for this message (built before the DATA checks: spamd scores with it)
    received: bytes = b""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def submission(self) -> bool:
        return self.session.listener in SUBMISSION

    @property
    def spam(self) -> spamfilter.Outcome | None:
        """What the spam check decided (smtp/spam.py), once it has run."""
        return self.notes.get("spam")


Check = Callable[[Step], Awaitable[Reply | None]]


def mb(n: int) -> str:
    """Sizes in refusal texts: MB (10^6), as the regulation writes them, with the exact binary figure."""
    return f"{n / 1e6:.1f} MB ({format_size(n)})"


# ---------------------------------------------------------------- MAIL FROM


async def auth_required(st: Step) -> Reply | None:
    if st.submission and st.session.account is None:
        return Reply(530, "5.7.0", "Authentication required: log in (AUTH) with your mailbox address and "
                                   "password first / Cần đăng nhập trước khi gửi thư")
    return None


async def declared_size(st: Step) -> Reply | None:
    """Đ7.3.b: refuse at MAIL FROM when SIZE= already says the message is too big (RFC 1870)."""
    size = st.envelope.declared_size
    limit = st.svc.size_limit
    if size is not None and size > limit:
        return Reply(552, "5.3.4", f"Message size {mb(size)} exceeds the limit of {mb(limit)} "
                                   f"(attachments up to {mb(st.svc.policy.attachments.max_total)}, Đ7.3.b)")
    return None


async def sender_may_send(st: Step) -> Reply | None:
    """Đ5.3.b, Đ6.1: a send-locked account logs in but cannot send (policy.lockstate decides)."""
    if not st.submission:
        return None
    access = st.svc.directory.access(st.session.account)
    if not access.may_send:
        return Reply(550, "5.7.1", f"Sending is locked for this mailbox: {access.reason}")
    return None


async def outbound_hold(st: Step) -> Reply | None:
    """Đ6.2.b: the mail of an account held after a burst is accepted but waits in the outbound queue
    (local recipients too) until an operator releases or deletes it."""
    if st.submission:
        st.envelope.hold = await st.svc.directory.outbound_hold(st.session.account)
    return None


async def envelope_sender(st: Step) -> Reply | None:
    """Identity: staff send as themselves, their aliases or granted unit mailboxes; nobody else
    may use our domains in the envelope without logging in."""
    svc = st.svc
    sender = st.address
    if st.submission:
        addr = classify(sender, svc.domains) if sender else None
        if addr is None or not await svc.directory.may_send_as(st.session.account, addr.address):
            return Reply(553, "5.7.1", f"You may not send as <{sender}>: use your own address, an alias of it or "
                                       "a unit mailbox you were granted / Không được gửi thư với địa chỉ này")
        return None
    if sender and classify(sender, svc.domains).kind == Kind.local:
        return Reply(550, "5.7.1", f"Mail from <{sender}> must be sent through submission with a login "
                                   "(ports 587/465), not to the MX")
    return None


async def message_rate(st: Step) -> Reply | None:
    """Đ6.2.b: messages per window per account."""
    if not st.submission:
        return None
    account = st.session.account
    messages, _ = await st.svc.directory.send_limit(account)
    if st.svc.rates.usage(account.id).messages >= messages:
        return await _rate_refusal(st, f"{messages} messages")
    return None


async def count_refusal(st: Step, reason: str) -> None:
    """Đ6.2.b: every refusal of an account's sending counts (rate limits, spam); enough of them inside
    one window is the burst of a compromised account, and its outbound mail is put on hold."""
    svc, account = st.svc, st.session.account
    if svc.rates.record_refusal(account.id):
        await svc.hold_account(account, f"{reason}; {svc.policy.sending.hold_after_refusals} refusals within "
                                        f"{svc.policy.sending.window}")


async def _rate_refusal(st: Step, what: str) -> Reply:
    svc, account = st.svc, st.session.account
    minutes = svc.rates.retry_after(account.id) // 60 + 1
    await count_refusal(st, f"sending limit of {what} per {svc.policy.sending.window} exceeded")
    return Reply(451, "4.7.1", f"Sending limit reached: {what} per {svc.policy.sending.window} "
                               f"(Article 6.2.b); try again in {minutes} minutes / Vượt giới hạn gửi thư")


MAIL_CHECKS: list[Check] = [auth_required, declared_size, sender_may_send, outbound_hold, envelope_sender,
                            message_rate]


# ---------------------------------------------------------------- RCPT TO


async def recipient_count(st: Step) -> Reply | None:
    limit = st.svc.settings.smtp.max_recipients
    if len(st.envelope.rcpt_tos) >= limit:
        # RFC 5321 §4.5.3.1.10: 452 lets the client send the rest in another transaction
        return Reply(452, "4.5.3", f"Too many recipients: at most {limit} per message")
    return None


async def relay(st: Step) -> Reply | None:
    """Only our domains are delivered here; every address trick is refused, never interpreted.
    Logged-in staff may send anywhere: remote recipients go to the outbound queue."""
    addr = classify(st.address, st.svc.domains)
    if addr.kind == Kind.invalid:
        return Reply(553, "5.1.3", f"Bad recipient address <{st.address}>: {addr.why}")
    if addr.kind == Kind.relay_trick:
        return Reply(554, "5.7.1", f"Relaying denied: <{st.address}> ({addr.why})")
    if addr.kind == Kind.remote and not st.submission:
        return Reply(554, "5.7.1", f"Relaying denied: this server accepts mail only for "
                                   f"{', '.join(st.svc.domains)}")
    st.notes["address"] = addr.address
    st.notes["remote"] = addr.kind == Kind.remote
    return None


async def known_recipient(st: Step) -> Reply | None:
    """Revoked mailboxes are unknown (Đ5.3.b); suspended ones still receive (Đ6.1). An alias may point
    outside (its remote targets go to the outbound queue)."""
    address = st.notes["address"]
    if st.notes["remote"]:
        st.recipient = Recipient(address, [], [address])
        return None
    res = await st.svc.directory.resolve(address)
    if res is None:
        return Reply(550, "5.1.1", f"No such mailbox here: <{address}> / Hộp thư không tồn tại")
    st.recipient = Recipient(address, res.accounts, res.remote)
    return None


async def recipient_rate(st: Step) -> Reply | None:
    """Đ6.2.b: recipients per window per account."""
    if not st.submission:
        return None
    account = st.session.account
    _, recipients = await st.svc.directory.send_limit(account)
    if st.svc.rates.usage(account.id).recipients + len(st.envelope.rcpt_tos) + 1 > recipients:
        return await _rate_refusal(st, f"{recipients} recipients")
    return None


async def recipient_quota(st: Step) -> Reply | None:
    """Đ7.3.b: current usage plus the declared SIZE must fit (a mailbox exactly full still fits)."""
    assert st.recipient is not None
    incoming = st.envelope.declared_size or 0
    full = []
    for account in st.recipient.accounts:
        check = await st.svc.store.check_quota(account, incoming)
        if not check.fits:
            full.append((account, check))
    if full and len(full) == len(st.recipient.accounts) and not st.recipient.remote:
        _, check = full[0]
        return over_quota_reply(st.svc, st.recipient.address, check.used, check.quota)
    return None


def over_quota_reply(svc: Services, address: str, used: int, quota: int) -> Reply:
    text = (f"Mailbox <{address}> is full: {format_size(used)} of {format_size(quota)} used "
            "(Article 7.3.b) / Hộp thư người nhận đã đầy")
    if svc.policy.quota.over_quota == "tempfail":
        return Reply(452, "4.2.2", text)
    return Reply(552, "5.2.2", text)


RCPT_CHECKS: list[Check] = [recipient_count, relay, known_recipient, recipient_rate, recipient_quota]


# ---------------------------------------------------------------- after DATA


async def attachments(st: Step) -> Reply | None:
    """Đ7.3.b: decoded attachments ≤ 15 MiB (policy), whatever their encoding on the wire."""
    limit = st.svc.policy.attachments.max_total
    if len(st.content) < limit:
        return None  # cannot hold more decoded bytes than it has
    report = attachment_report(st.content)
    st.notes["attachments"] = report.total
    if report.total > limit:
        return Reply(552, "5.3.4", f"Attachments total {mb(report.total)}; the limit is {mb(limit)} per message "
                                   "(Article 7.3.b) / Tệp đính kèm vượt quá giới hạn 15MB mỗi thư")
    return None


def _from_addresses(content: bytes) -> list[str]:
    head, _ = split_message(content)
    return [a for _, a in getaddresses([header_value(head, "From") or ""]) if a]


async def from_header(st: Step) -> Reply | None:
    """Identity also in the header the recipient sees: every From: address must be the sender's to use."""
    if not st.submission:
        return None
    addresses = _from_addresses(st.content)
    if not addresses:
        return Reply(550, "5.6.0", "The message has no From: header field (RFC 5322 §3.6)")
    for a in addresses:
        if not await st.svc.directory.may_send_as(st.session.account, a):
            return Reply(550, "5.7.1", f"The From: header names <{a}>, which you may not send as / "
                                       "Không được gửi thư với địa chỉ người gửi này")
    return None


async def virus(st: Step) -> Reply | None:
    """Đ8.2.b: clamd scans every message before it is accepted; no verdict means no acceptance."""
    try:
        verdict = await st.svc.clamd.scan(st.content)
    except ScannerUnavailable as e:
        log.error("virus scan failed: %s", e)
        st.notes["scan"] = "unavailable"
        if st.svc.policy.virus.on_scanner_error == "accept":
            return None
        return Reply(451, "4.7.1", "Virus scanner temporarily unavailable; please try again later (Article 8.2.b)")
    if verdict.infected:
        st.notes["virus"] = verdict.signature
        return Reply(554, "5.7.1", f"Virus found: {verdict.signature}; the message was not accepted "
                                   "(Article 8.2.b) / Thư chứa virus, không được chấp nhận")
    st.notes["scan"] = "clean"
    return None


async def dmarc(st: Step) -> Reply | None:
    """MX only: SPF, DKIM and DMARC into Authentication-Results; p=reject failures refused if policy says."""
    if st.submission or st.svc.sender_auth is None:
        return None
    head, _ = split_message(st.content)
    st.auth_results = await st.svc.sender_auth.check(
        st.content, head, client_ip=st.session.client_ip, mail_from=st.envelope.sender,
        helo=st.session.host_name or "",
    )
    r = st.auth_results
    if r.dmarc == "fail" and r.dmarc_policy == "reject" and st.svc.policy.dmarc.enforce_reject:
        return Reply(550, "5.7.1", f"Rejected by the DMARC policy of {r.from_domain} (RFC 7489): "
                                   "the message is not authenticated by its domain")
    return None


SPAMD_DOWN = "Spam filter temporarily unavailable; please try again later"


async def spam(st: Step) -> Reply | None:
    """Đ8.2.b: spamd scores mail from outside; Junk from `spam.junk`, refused from `spam.reject`; the
    allow and block lists of each recipient first (smtp/spam.py, policy/spam.py)."""
    if st.submission:
        return None
    svc = st.svc
    accounts = list({a.id: a for rcpt in st.envelope.recipients for a in rcpt.accounts}.values())
    r = st.auth_results
    trusted = r is None or (r.spf not in ("fail", "softfail") and r.dmarc != "fail")
    outcome = await spamfilter.inbound(svc, st.content, st.received, accounts, st.envelope.sender or "",
                                       _from_addresses(st.content), trusted)
    st.notes["spam"] = outcome
    if outcome.decision == Decision.tempfail:
        return Reply(451, "4.7.1", f"{SPAMD_DOWN} (Article 8.2.b)")
    if outcome.decision == Decision.blocked:
        return Reply(550, "5.7.1", f"Message refused: the sender is on a block list ({outcome.note}) "
                                   "(Article 8.2.b) / Người gửi nằm trong danh sách chặn")
    if outcome.decision == Decision.reject:
        assert outcome.score is not None
        return Reply(550, "5.7.1", f"Message refused as spam: SpamAssassin score {outcome.score.score:.1f}, "
                                   f"the limit is {svc.policy.spam.reject:.1f} (Article 8.2.b) / "
                                   "Thư bị từ chối vì là thư rác")
    return None


MAX_RULES_IN_REPLY = 6


async def outbound_spam(st: Step) -> Reply | None:
    """Đ13.6: no spam leaves through the province's system. Submitted mail is scored too; a refusal
    names the rules (the sender is our own staff, who may need to rephrase) and counts toward the
    Đ6.2.b hold, because a compromised account sends spam."""
    if not st.submission:
        return None
    svc = st.svc
    outcome = await spamfilter.outbound(svc, st.content, st.received)
    st.notes["spam"] = outcome
    if outcome.decision == Decision.tempfail:
        return Reply(451, "4.7.1", f"{SPAMD_DOWN} (Article 13.6)")
    if not outcome.refused:
        return None
    assert outcome.score is not None
    score = outcome.score.score
    limit = svc.policy.spam.outbound_reject
    rules = list(outcome.score.rules)
    shown = ", ".join(rules[:MAX_RULES_IN_REPLY]) + (", ..." if len(rules) > MAX_RULES_IN_REPLY else "")
    await count_refusal(st, f"a message scored {score:.1f} as spam (Article 13.6)")
    return Reply(550, "5.7.1", f"Your message was not sent: the spam filter scored it {score:.1f}, the limit for "
                               f"outgoing mail is {limit:.1f} (rules: {shown or 'none'}); Article 13.6 forbids "
                               f"sending spam. If this is a mistake, contact postmaster@{svc.settings.primary_domain}"
                               " / Thư không được gửi vì bị đánh giá là thư rác")


DATA_CHECKS: list[Check] = [attachments, from_header, virus, dmarc, spam, outbound_spam]


async def run(checks: list[Check], st: Step) -> Reply | None:
    for check in checks:
        reply = await check(st)
        if reply is not None:
            st.notes["check"] = check.__name__
            return reply
    return None
